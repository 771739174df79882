"""Shared pieces of the real-client tests: topics, generated messages, and the check that a
partition served back exactly what was acknowledged, in order, with keys, values, headers and
timestamps intact."""

import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "ci"))
from cluster import free_port  # noqa: E402,F401  (ci/ is not a package; tests import it from here)

# 256 distinct bytes to cut value padding from: values are binary and of varying length.
PAD = bytes(range(256)) * 2

@dataclass(frozen=True)
class Msg:
    key: bytes
    value: bytes
    headers: tuple  # ((name: str, value: bytes), ...)
    timestamp: int  # CreateTime, ms


def create_topic(bootstrap: str, partitions: int) -> str:
    """Creates a fresh topic with confluent-kafka's AdminClient and returns its name."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        operation_timeout=10,
        request_timeout=15,
    )
    futures[name].result(timeout=30)
    return name


def make_messages(n: int, tag: str, keys: int = 997) -> list:
    """`n` keyed messages with two headers each. Keys repeat (`keys` distinct ones), so each
    key's messages share a partition; timestamps are recent (retention must not touch them)
    and distinct."""
    base = int(time.time() * 1000) - n
    return [
        Msg(
            key=f"key-{i % keys}".encode(),
            value=f"{tag}-{i}:".encode() + PAD[i % 256 : i % 256 + i % 200],
            headers=(("seq", str(i).encode()), ("tag", tag.encode())),
            timestamp=base + i,
        )
        for i in range(n)
    ]


def check_served(sent: list, placement: list, consumed: dict, high_watermarks: dict) -> None:
    """`sent[i]` was acknowledged at `placement[i] = (partition, offset)`. Each partition
    must serve exactly its acknowledged messages, in produce order, from offset 0 up to its
    high watermark: none missing, none extra, none altered."""
    expected = defaultdict(list)
    partitions_of_key = defaultdict(set)
    for msg, (partition, offset) in zip(sent, placement):
        expected[partition].append((offset, msg))
        partitions_of_key[msg.key].add(partition)
    split = {k: p for k, p in partitions_of_key.items() if len(p) > 1}
    assert not split, f"keys spread over several partitions: {list(split.items())[:5]}"
    assert set(consumed) <= set(expected), f"messages from unexpected partitions {set(consumed)}"
    for partition, exp in sorted(expected.items()):
        offsets = [o for o, _ in exp]
        assert offsets == list(range(len(exp))), (
            f"partition {partition}: acknowledged offsets are not 0..{len(exp) - 1} "
            f"in produce order (first ones: {offsets[:10]})"
        )
        got = consumed.get(partition, [])
        assert len(got) == len(exp), (
            f"partition {partition}: consumed {len(got)} messages, {len(exp)} acknowledged"
        )
        for i, (e, g) in enumerate(zip(exp, got)):
            assert e == g, f"partition {partition}, message {i}: sent {e}, consumed {g}"
        assert high_watermarks[partition] == len(exp), (
            f"partition {partition}: high watermark {high_watermarks[partition]}, "
            f"{len(exp)} messages acknowledged"
        )


def close(producer: Producer) -> None:
    """Drops whatever is still queued, then closes: a producer left open keeps logging
    connection failures once its broker is gone."""
    producer.purge()
    producer.close()


def produce_confluent(bootstrap: str, topic: str, msgs: list, **conf) -> list:
    """Produces with confluent-kafka (acks=all) and returns each message's (partition,
    offset) from its delivery report; fails on any delivery error."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **conf})
    placement = [None] * len(msgs)
    errors = []

    def report(i):
        def on_delivery(err, m):
            if err is not None:
                errors.append((i, err))
            else:
                placement[i] = (m.partition(), m.offset())

        return on_delivery

    try:
        for i, m in enumerate(msgs):
            while True:
                try:
                    producer.produce(
                        topic,
                        key=m.key,
                        value=m.value,
                        headers=list(m.headers),
                        timestamp=m.timestamp,
                        on_delivery=report(i),
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        left = producer.flush(120)
    finally:
        close(producer)
    assert left == 0, f"{left} messages not delivered within 120 s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    return placement


def consume_confluent(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float = 120, **conf
):
    """Reads every partition from the beginning by assignment (no group membership, no
    commits) until `expected` messages arrived. Returns (consumed, high_watermarks)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"spate-ci-{topic}",  # required by the client; never joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            **conf,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        consumed = defaultdict(list)
        count = 0
        deadline = time.monotonic() + timeout_s
        while count < expected and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=10000, timeout=1.0):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consume error: {m.error()}")
                ts_type, ts = m.timestamp()
                assert ts_type == TIMESTAMP_CREATE_TIME, f"timestamp type {ts_type}"
                headers = tuple((k, v) for k, v in (m.headers() or []))
                consumed[m.partition()].append(
                    (m.offset(), Msg(m.key(), m.value(), headers, ts))
                )
                count += 1
        highs = {}
        for p in range(partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            highs[p] = high
        return consumed, highs
    finally:
        consumer.close()
