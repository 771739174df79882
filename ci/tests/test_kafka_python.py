"""kafka-python: the same round trip as the confluent-kafka test, at a smaller scale, with
partitions assigned explicitly (no consumer group)."""

import time
from collections import defaultdict

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from support import Msg, check_served, create_topic, make_messages

PARTITIONS = 6
COUNT = 5_000


def test_round_trip_by_assignment(broker):
    topic = create_topic(broker.bootstrap, PARTITIONS)
    sent = make_messages(COUNT, "kafka-python")

    # kafka-python 3 producers are idempotent by default (KIP-679): InitProducerId first.
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    futures = [
        producer.send(
            topic,
            key=m.key,
            value=m.value,
            headers=list(m.headers),
            timestamp_ms=m.timestamp,
        )
        for m in sent
    ]
    producer.flush(timeout=60)
    placement = []
    for f in futures:
        meta = f.get(timeout=60)
        placement.append((meta.partition, meta.offset))
    producer.close()

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False
    )
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    consumed = defaultdict(list)
    count = 0
    deadline = time.monotonic() + 60
    while count < COUNT and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=1000, max_records=2000).items():
            for r in records:
                assert r.timestamp_type == 0, f"timestamp type {r.timestamp_type}"
                headers = tuple((k, v) for k, v in r.headers)
                consumed[tp.partition].append(
                    (r.offset, Msg(r.key, r.value, headers, r.timestamp))
                )
                count += 1
    highs = {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
    consumer.close()
    check_served(sent, placement, consumed, highs)
