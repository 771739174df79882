"""Idempotent producing across failures: confluent-kafka with enable.idempotence=true produces
500,000 small messages while the broker is SIGKILLed and restarted twice (same port, same data
dir, durable flush settings so an acknowledged batch is on disk), and while the connections
twice lose the broker's answers to requests the broker has already appended.

The lost answers make the client send batches again that the log already holds; a SIGKILL
may do the same. The broker must recognize each one from its producer state (rebuilt after
every crash) and answer with the original offsets, so a consumer then reads every message
exactly once, in produce order within each partition. Without that deduplication the
consumer sees duplicates: the test fails.

The client reaches the broker through a small TCP proxy (the broker advertises the proxy's
address), which is how answers are dropped."""

import socket
import threading
import time
from collections import defaultdict

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from support import close, create_topic, free_port

PARTITIONS = 3
MESSAGES = 500_000
# Delivered-message counts at which a failure is caused, in this order.
FAILURES = (
    (MESSAGES * 2 // 10, "drop answers"),
    (MESSAGES * 4 // 10, "sigkill"),
    (MESSAGES * 6 // 10, "drop answers"),
    (MESSAGES * 8 // 10, "sigkill"),
)
# How long the proxy swallows the broker's answers before cutting the connections: long
# enough for the broker to append what it was sent meanwhile.
SWALLOW_S = 0.3


class AnswerDroppingProxy:
    """Forwards 127.0.0.1:<port> to the broker. `drop_answers()` swallows everything the
    broker sends for a while, then closes every connection: requests that got through were
    appended, and their answers are lost."""

    def __init__(self, port: int, broker_port: int):
        self.port = port
        self.broker_port = broker_port
        self.swallow = threading.Event()
        self.lock = threading.Lock()
        self.conns = []
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.broker_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src, dst, answers):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if answers and self.swallow.is_set():
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def drop_answers(self):
        self.swallow.set()
        time.sleep(SWALLOW_S)
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.swallow.clear()

    def close(self):
        self.listener.close()


def test_idempotent_producer_survives_crashes_and_lost_answers_exactly_once(make_broker, tmp_path):
    # The broker advertises the proxy, so the proxy's port is chosen first. Flush settings
    # are tuning/durable.yaml's.
    proxy_port = free_port()
    profile = tmp_path / "durable-behind-proxy.yaml"
    profile.write_text(
        "log.flush.interval.messages: 1\n"
        "log.flush.interval.ms: 0\n"
        f"advertised.listeners: 127.0.0.1:{proxy_port}\n"
    )
    broker = make_broker(config=str(profile))
    proxy = AnswerDroppingProxy(proxy_port, broker.port)
    try:
        run(broker, proxy)
    finally:
        proxy.close()


def run(broker, proxy):
    bootstrap = f"127.0.0.1:{proxy.port}"
    topic = create_topic(bootstrap, PARTITIONS)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            # Retry through the failures (a restart takes well under this).
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

    done = []

    def fail_next():
        at, kind = FAILURES[len(done)]
        if kind == "sigkill":
            broker.kill()
            broker.start()
        else:
            proxy.drop_answers()
        done.append(kind)

    started = time.monotonic()
    try:
        for i in range(MESSAGES):
            while True:
                try:
                    producer.produce(
                        topic, key=b"k%d" % (i % 101), value=b"m-%d" % i, on_delivery=on_delivery
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            if len(done) < len(FAILURES) and delivered >= FAILURES[len(done)][0]:
                fail_next()
        while len(done) < len(FAILURES):
            # The client got ahead of the failure points: wait for deliveries.
            producer.poll(0.05)
            if delivered >= FAILURES[len(done)][0]:
                fail_next()
        left = producer.flush(120)
    finally:
        close(producer)
    print(f"\nproduced {MESSAGES} through {done} in {time.monotonic() - started:.1f}s")
    assert left == 0, f"{left} messages not delivered"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    assert None not in placement

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
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
