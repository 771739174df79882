"""aiokafka: the same round trip as the confluent-kafka test, at a smaller scale, with
partitions assigned explicitly (no consumer group)."""

import asyncio
import time
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from support import Msg, check_served, create_topic, make_messages

PARTITIONS = 6
COUNT = 5_000


async def round_trip(bootstrap: str, topic: str, sent: list):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                key=m.key,
                value=m.value,
                headers=list(m.headers),
                timestamp_ms=m.timestamp,
            )
            for m in sent
        ]
        metas = await asyncio.wait_for(asyncio.gather(*futures), timeout=60)
    finally:
        await producer.stop()
    placement = [(meta.partition, meta.offset) for meta in metas]

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        consumed = defaultdict(list)
        count = 0
        deadline = time.monotonic() + 60
        while count < len(sent) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for tp, records in batches.items():
                for r in records:
                    assert r.timestamp_type == 0, f"timestamp type {r.timestamp_type}"
                    headers = tuple((k, bytes(v)) for k, v in r.headers)
                    consumed[tp.partition].append(
                        (r.offset, Msg(r.key, r.value, headers, r.timestamp))
                    )
                    count += 1
        highs = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()
    return placement, consumed, highs


def test_round_trip_by_assignment(broker):
    topic = create_topic(broker.bootstrap, PARTITIONS)
    sent = make_messages(COUNT, "aiokafka")
    placement, consumed, highs = asyncio.run(round_trip(broker.bootstrap, topic, sent))
    check_served(sent, placement, consumed, highs)
