"""A consumer parked in a long-poll Fetch (fetch.wait.max.ms=5000) must see a record as soon
as it is committed, not when its wait runs out. Each try lets the Fetch reach the broker and
wait, then produces one record and measures how long until the consumer has it. The bound (1 s
against a 5 s wait) only proves the broker woke the Fetch; it is not a latency target."""

import random
import statistics
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from support import close, create_topic

TRIES = 50
MAX_WAIT_MS = 5000


def next_value(consumer: Consumer, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = consumer.poll(0.05)
        if m is not None and not m.error():
            return m.value()
    return None


def test_waiting_fetch_wakes_on_produce(broker):
    topic = create_topic(broker.bootstrap, 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"spate-ci-{topic}",  # required by the client; never joined
            "enable.auto.commit": False,
            "fetch.wait.max.ms": MAX_WAIT_MS,
            "fetch.min.bytes": 1,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    latencies = []
    try:
        for i in range(TRIES):
            value = f"wake-{i}".encode()
            sent_at = []

            def send():
                # Long enough for the consumer's next Fetch to be parked on the broker.
                time.sleep(random.uniform(0.15, 0.35))
                sent_at.append(time.monotonic())
                producer.produce(topic, value=value)
                producer.flush(10)

            sender = threading.Thread(target=send)
            sender.start()
            got = next_value(consumer, timeout_s=15)
            received_at = time.monotonic()
            sender.join()
            assert got == value, f"try {i}: expected {value!r}, got {got!r}"
            latencies.append(received_at - sent_at[0])
    finally:
        consumer.close()
        close(producer)

    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=10)
    print(
        f"\nlong-poll wake-up latency over {len(ms)} tries (fetch.wait.max.ms={MAX_WAIT_MS}): "
        f"min {ms[0]:.1f} ms, median {statistics.median(ms):.1f} ms, "
        f"p90 {q[-1]:.1f} ms, max {ms[-1]:.1f} ms"
    )
    for lo, hi in [(0, 10), (10, 50), (50, 100), (100, 500), (500, 1000), (1000, 10**9)]:
        n = sum(lo <= x < hi for x in ms)
        if n:
            print(f"  {lo:>5}-{hi if hi < 10**9 else 'inf':>5} ms: {'#' * n} {n}")
    slow = [x for x in ms if x >= 1000]
    assert not slow, f"{len(slow)} wake-ups took >= 1 s (the Fetch waited out max_wait): {slow}"
