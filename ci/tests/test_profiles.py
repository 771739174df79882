"""The broker profiles in tuning/ as the binary reads them: each one starts a broker that
serves a round trip (with --data-dir and --listen overriding the profile), and a profile with
a mistake stops start-up with a message naming the key."""

import subprocess
from pathlib import Path

import pytest

from support import (
    REPO,
    check_served,
    consume_confluent,
    create_topic,
    free_port,
    make_messages,
    produce_confluent,
)

PROFILES = sorted(p.name for p in (REPO / "tuning").glob("*.yaml"))


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_serves(make_broker, profile):
    broker = make_broker(config=f"tuning/{profile}")
    topic = create_topic(broker.bootstrap, 2)
    sent = make_messages(2_000, profile)
    placement = produce_confluent(broker.bootstrap, topic, sent)
    consumed, highs = consume_confluent(broker.bootstrap, topic, 2, len(sent))
    check_served(sent, placement, consumed, highs)
    # --data-dir wins over the profile's log.dirs.
    assert (broker.data_dir / f"{topic}-0").is_dir(), sorted(broker.data_dir.iterdir())


@pytest.mark.parametrize(
    "yaml, expected",
    [
        ("log.segmnt.bytes: 1073741824\n", ["log.segmnt.bytes", "did you mean `log.segment.bytes`"]),
        ("num.partitions: many\n", ["num.partitions", "an integer"]),
        ("log.segment.bytes: 1000\n", ["log.segment.bytes", "1048576"]),
        ("listeners: \"SSL://127.0.0.1:9093\"\n", ["listeners", "PLAINTEXT"]),
    ],
    ids=["typo", "wrong-type", "out-of-range", "ssl-listener"],
)
def test_bad_profile_stops_startup(spate_bin, tmp_path: Path, yaml, expected):
    profile = tmp_path / "bad.yaml"
    profile.write_text(yaml)
    result = subprocess.run(
        [
            str(spate_bin),
            "serve",
            "--config",
            str(profile),
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0, f"spate started with {yaml!r}"
    for text in expected + [str(profile)]:
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr}"
