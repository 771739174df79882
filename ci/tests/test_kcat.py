"""Debian's kcat (librdkafka's command-line client): metadata listing, produce (-P) with keys
and headers, consume (-C -e -o beginning)."""

import json
import shutil
import subprocess
from collections import defaultdict

import pytest

from support import create_topic

PARTITIONS = 3
KEYS = 20
PER_KEY = 25


def kcat(*args, stdin: str = None) -> subprocess.CompletedProcess:
    binary = shutil.which("kcat") or shutil.which("kafkacat")
    if binary is None:
        pytest.fail("kcat is not installed (ci/install.sh installs it)")
    result = subprocess.run(
        [binary, *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kcat {' '.join(args)} failed:\n{result.stderr}"
    return result


def test_metadata_produce_and_consume(broker):
    b = broker.bootstrap
    topic = create_topic(b, PARTITIONS)

    meta = json.loads(kcat("-b", b, "-L", "-J").stdout)
    assert [br["name"] for br in meta["brokers"]] == [b], meta["brokers"]
    listed = {t["topic"]: t for t in meta["topics"]}
    assert topic in listed, f"{topic} not in {sorted(listed)}"
    parts = listed[topic]["partitions"]
    assert sorted(p["partition"] for p in parts) == list(range(PARTITIONS))
    broker_id = meta["brokers"][0]["id"]
    assert all(p["leader"] == broker_id for p in parts), parts

    # Keyed lines: each key's values must come back in order, on one partition.
    lines = [f"k{i % KEYS}|v{i % KEYS}-{i // KEYS}" for i in range(KEYS * PER_KEY)]
    kcat("-b", b, "-t", topic, "-P", "-K", "|", "-H", "origin=kcat", stdin="\n".join(lines) + "\n")

    out = kcat("-b", b, "-t", topic, "-C", "-e", "-o", "beginning", "-J", "-q").stdout
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(records) == len(lines), f"consumed {len(records)} of {len(lines)}"
    by_partition = defaultdict(list)
    for r in records:
        assert r["headers"] == ["origin", "kcat"], r
        assert r["tstype"] == "create", r
        by_partition[r["partition"]].append(r)
    values_of_key = defaultdict(list)
    partitions_of_key = defaultdict(set)
    for partition, rs in by_partition.items():
        assert [r["offset"] for r in rs] == list(range(len(rs))), f"partition {partition}"
        for r in rs:
            values_of_key[r["key"]].append(r["payload"])
            partitions_of_key[r["key"]].add(partition)
    for k in range(KEYS):
        key = f"k{k}"
        assert len(partitions_of_key[key]) == 1, (key, partitions_of_key[key])
        assert values_of_key[key] == [f"v{k}-{j}" for j in range(PER_KEY)], key
