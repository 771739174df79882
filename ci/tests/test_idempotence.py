"""Idempotent producing across broker crashes: confluent-kafka with enable.idempotence=true
produces 500,000 small messages while the broker is SIGKILLed and restarted twice (same port,
same data dir, tuning/durable.yaml so an acknowledged batch is on disk). Batches written but
not acknowledged before a kill are retried by the client after the restart; the broker must
recognize them from the producer state it rebuilt, so a consumer then reads every message
exactly once, in produce order within each partition."""

import time
from collections import defaultdict

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from support import close, create_topic

PARTITIONS = 3
MESSAGES = 500_000
# Delivered-message counts at which the broker is killed and restarted.
KILL_AT = (MESSAGES // 4, MESSAGES // 2)


def test_idempotent_producer_survives_two_sigkills_exactly_once(make_broker):
    broker = make_broker(config="tuning/durable.yaml")
    topic = create_topic(broker.bootstrap, PARTITIONS)
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            # Retry through the restarts (a restart takes well under this).
            "message.timeout.ms": 120_000,
            "reconnect.backoff.max.ms": 200,
        }
    )
    placement = [None] * MESSAGES
    errors = []
    delivered = 0

    def on_delivery(err, m):
        nonlocal delivered
        if err is not None:
            errors.append(err)
            return
        i = int(m.value()[2:])
        placement[i] = (m.partition(), m.offset())
        delivered += 1

    kills = 0
    started = time.monotonic()
    try:
        for i in range(MESSAGES):
            value = b"m-%d" % i
            while True:
                try:
                    producer.produce(topic, key=b"k%d" % (i % 101), value=value, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            if kills < len(KILL_AT) and delivered >= KILL_AT[kills]:
                # Requests are in flight: some batches are written and never answered.
                broker.kill()
                kills += 1
                broker.start()
        while kills < len(KILL_AT):
            # The client got ahead of the kill points: wait for deliveries, then kill.
            producer.poll(0.05)
            if delivered >= KILL_AT[kills]:
                broker.kill()
                kills += 1
                broker.start()
        left = producer.flush(120)
        fatal = producer.poll(0)
    finally:
        close(producer)
    print(f"\nproduced {MESSAGES} with {kills} SIGKILLs in {time.monotonic() - started:.1f}s")
    assert kills == len(KILL_AT)
    assert left == 0, f"{left} messages not delivered"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]} (fatal poll: {fatal})"
    assert None not in placement

    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"spate-ci-{topic}",  # required by the client; never joined
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    served = defaultdict(list)
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        at_end = set()
        deadline = time.monotonic() + 120
        while len(at_end) < PARTITIONS and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=10_000, timeout=1.0):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(m.partition())
                        continue
                    raise AssertionError(f"consume error: {m.error()}")
                at_end.discard(m.partition())
                served[m.partition()].append((m.offset(), int(m.value()[2:])))
        highs = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()

    total = sum(len(v) for v in served.values())
    assert total == MESSAGES, f"consumed {total} messages, produced {MESSAGES} (duplicates or loss)"
    seen = set()
    for p, records in served.items():
        offsets = [o for o, _ in records]
        assert offsets == list(range(highs[p])), f"partition {p}: offsets are not 0..{highs[p]}"
        indexes = [i for _, i in records]
        assert indexes == sorted(indexes), f"partition {p}: messages out of produce order"
        seen.update(indexes)
        for offset, i in records:
            assert placement[i] == (p, offset), (
                f"message {i} acknowledged at {placement[i]}, served at {(p, offset)}"
            )
    assert seen == set(range(MESSAGES))
