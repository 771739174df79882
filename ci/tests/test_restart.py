"""Everything acknowledged is served after a restart: a clean one (SIGTERM), and a crash
(SIGKILL) under tuning/durable.yaml, where every batch is fsynced before it is acknowledged."""

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from support import (
    check_served,
    close,
    consume_confluent,
    create_topic,
    make_messages,
    produce_confluent,
)

PARTITIONS = 3


def high_watermarks(bootstrap: str, topic: str) -> dict:
    """Each partition's high watermark. UNKNOWN_TOPIC_OR_PART is retried for a few seconds, as
    Kafka's clients treat it as retriable: a broker still opening its logs after a crash may
    not know every partition yet."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"spate-ci-{topic}"})
    highs = {}
    deadline = time.monotonic() + 10
    try:
        for p in range(PARTITIONS):
            while True:
                try:
                    highs[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    break
                except KafkaException as e:
                    unknown = e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
                    if not unknown or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        return highs
    finally:
        c.close()


def test_clean_restart_serves_everything_acknowledged(broker):
    topic = create_topic(broker.bootstrap, PARTITIONS)
    before = make_messages(20_000, "before")
    placement = produce_confluent(broker.bootstrap, topic, before)

    code = broker.stop()
    assert code == 0, f"spate exited with {code} on SIGTERM:\n{broker.log_tail()}"
    broker.start()

    # Appends after the restart continue each partition where it stopped.
    after = make_messages(2_000, "after")
    placement += produce_confluent(broker.bootstrap, topic, after)
    sent = before + after
    consumed, highs = consume_confluent(broker.bootstrap, topic, PARTITIONS, len(sent))
    check_served(sent, placement, consumed, highs)


def test_sigkill_under_durable_profile_loses_nothing_acknowledged(make_broker):
    broker = make_broker(config="tuning/durable.yaml")
    topic = create_topic(broker.bootstrap, PARTITIONS)

    # First a set that is fully acknowledged, then a second one killed mid-flight.
    settled = make_messages(3_000, "settled")
    acked = list(zip(settled, produce_confluent(broker.bootstrap, topic, settled)))

    in_flight = make_messages(6_000, "in-flight")
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2, "retries": 0}
    )
    placement = {}

    def report(i):
        def on_delivery(err, m):
            if err is None:
                placement[i] = (m.partition(), m.offset())

        return on_delivery

    for i, m in enumerate(in_flight):
        producer.produce(
            topic,
            key=m.key,
            value=m.value,
            headers=list(m.headers),
            timestamp=m.timestamp,
            on_delivery=report(i),
        )
    deadline = time.monotonic() + 60
    while len(placement) < len(in_flight) // 3 and time.monotonic() < deadline:
        producer.poll(0.01)
    broker.kill()
    # Whatever was not acknowledged by now never will be: drop it, and collect the reports.
    close(producer)
    acked += [(in_flight[i], p) for i, p in sorted(placement.items())]
    print(f"\n{len(acked)} acknowledged before SIGKILL ({len(placement)} of the in-flight set)")

    broker.start()
    highs = high_watermarks(broker.bootstrap, topic)
    consumed, highs_after = consume_confluent(
        broker.bootstrap, topic, PARTITIONS, sum(highs.values())
    )
    assert highs_after == highs

    served = {p: dict(records) for p, records in consumed.items()}
    for p, records in consumed.items():
        offsets = [o for o, _ in records]
        assert offsets == list(range(highs[p])), f"partition {p}: offsets are not 0..{highs[p]}"
    for msg, (p, offset) in acked:
        assert served.get(p, {}).get(offset) == msg, (
            f"acknowledged message at partition {p} offset {offset} lost or altered: "
            f"sent {msg}, served {served.get(p, {}).get(offset)}"
        )
    # Records appended but never acknowledged may survive; they must still be ones we sent.
    sent = set(settled) | set(in_flight)
    for p, records in consumed.items():
        for _, m in records:
            assert m in sent, f"partition {p} serves a record nobody sent: {m}"
    # And appends continue after the recovered tail.
    more = make_messages(500, "after-crash")
    more_placement = produce_confluent(broker.bootstrap, topic, more)
    for p, offset in more_placement:
        assert offset >= highs[p], f"partition {p}: offset {offset} reused after recovery"
