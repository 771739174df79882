"""What the cluster tests use besides ci/cluster.py: the cluster as real Kafka clients see it
(partition leaders, replicas and ISR from Metadata), producing with delivery reports, reading a
partition back, waiting for a state with a deadline, and reading a replica's log straight from
its segment files (Kafka's on-disk format) to say what each replica holds."""

import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.record.default_records import DefaultRecordBatchBuilder

import support  # noqa: F401  (puts ci/ on the path for `cluster`)
from cluster import Cluster  # noqa: E402,F401

# Upper bound for any wait on the cluster (fencing, elections, catch-up). Generous: the debug
# build shares two cores with the clients and other jobs. Never an assertion about speed.
DEADLINE_S = 120
NO_LEADER = -1

# librdkafka settings that let clients notice dead brokers and moved leaders quickly.
CLIENT_CONF = {
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 500,
    "retry.backoff.ms": 100,
    "retry.backoff.max.ms": 500,
    "topic.metadata.refresh.interval.ms": 1000,
    "log_level": 3,  # errors only: dead brokers are the point of these tests
}


@dataclass(frozen=True)
class PartitionState:
    """One partition as a Metadata response describes it, plus the brokers listed."""

    leader: int
    replicas: tuple
    isr: tuple
    brokers: frozenset
    error: object = None

    def followers(self) -> list:
        return [r for r in self.replicas if r != self.leader]


def wait_for(what: str, probe, ok, cluster: Cluster, timeout: float = DEADLINE_S):
    """Calls `probe()` until `ok(result)`, and returns that result. Fails after `timeout`
    with the last result and the end of every node's log. A node exiting by itself fails
    at once."""
    deadline = time.monotonic() + timeout
    while True:
        cluster.check_alive()
        last = probe()
        if ok(last):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{what}: not reached within {timeout}s; last seen: {last}\n{cluster.log_tails()}"
            )
        time.sleep(0.2)


def config_value(v) -> str:
    """A topic config value as Kafka spells it (`true`, not Python's `True`)."""
    return str(v).lower() if isinstance(v, bool) else str(v)


def fully_in_sync(s: PartitionState) -> bool:
    return s.leader != NO_LEADER and set(s.isr) == set(s.replicas)


def has_leader(s: PartitionState) -> bool:
    return s.leader != NO_LEADER


class Kafka:
    """A cluster seen through confluent-kafka: one AdminClient over every broker."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.admin = AdminClient({"bootstrap.servers": cluster.bootstrap, **CLIENT_CONF})

    def create_topic(self, partitions: int, replication_factor: int = 3, config=None) -> str:
        """Creates a fresh topic (retrying while the quorum or brokers are not ready, e.g.
        during a controller election) and waits until every partition has a leader."""
        name = f"t-{uuid.uuid4().hex[:10]}"
        topic = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config={k: config_value(v) for k, v in (config or {}).items()},
        )

        def attempt():
            try:
                self.admin.create_topics([topic], request_timeout=15)[name].result(timeout=30)
                return "created"
            except KafkaException as e:
                if e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    return "created"  # an earlier attempt's answer was lost
                return e

        wait_for(f"create {name}", attempt, lambda r: r == "created", self.cluster)
        self.wait_partitions(name, partitions, "a leader", has_leader)
        return name

    def partition(self, topic: str, partition: int = 0):
        """The partition's state from some live broker's Metadata, or the error met."""
        try:
            md = self.admin.list_topics(topic, timeout=5)
        except KafkaException as e:
            return e
        t = md.topics.get(topic)
        if t is None or t.partitions.get(partition) is None:
            return t.error if t is not None else "no such topic"
        p = t.partitions[partition]
        return PartitionState(
            leader=p.leader,
            replicas=tuple(p.replicas),
            isr=tuple(p.isrs),
            brokers=frozenset(md.brokers),
            error=p.error,
        )

    def wait_partition(self, topic: str, partition: int, what: str, ok) -> PartitionState:
        """Waits until the partition's metadata satisfies `ok(PartitionState)`."""
        return wait_for(
            f"{topic}-{partition}: {what}",
            lambda: self.partition(topic, partition),
            lambda s: isinstance(s, PartitionState) and ok(s),
            self.cluster,
        )

    def wait_partitions(self, topic: str, partitions: int, what: str, ok) -> None:
        """Waits until partitions 0..partitions-1 each satisfy `ok(PartitionState)`."""
        for p in range(partitions):
            self.wait_partition(topic, p, what, ok)

    def wait_full_isr(self, topic: str, partitions: int = 1) -> PartitionState:
        """Waits until every partition has a leader and all its replicas in sync; returns
        partition 0's state."""
        self.wait_partitions(topic, partitions, "every replica in sync", fully_in_sync)
        return self.wait_partition(topic, 0, "every replica in sync", fully_in_sync)


def produce(bootstrap: str, topic: str, values, partition: int = 0, timeout_s=60, **conf):
    """Produces `values` to one partition with acks=all and waits for every delivery report.
    Returns (acked [(value, offset)], failed [(value, error)]): what a client may count on
    and what it may not."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "compression.type": "none",
            "message.timeout.ms": int(timeout_s * 1000),
            **CLIENT_CONF,
            **conf,
        }
    )
    acked, failed = [], []

    def report(err, m):
        if err is None:
            acked.append((m.value(), m.offset()))
        else:
            failed.append((m.value(), err))

    try:
        for v in values:
            producer.produce(topic, value=v, partition=partition, on_delivery=report)
        left = producer.flush(timeout_s + 30)
    finally:
        producer.purge()
        producer.close()
    assert left == 0, f"{left} delivery reports missing after {timeout_s + 30}s"
    return acked, failed


def produce_all(bootstrap: str, topic: str, values, partition: int = 0, **conf) -> list:
    """Produces and requires every value acknowledged; returns the offsets."""
    acked, failed = produce(bootstrap, topic, values, partition, **conf)
    assert not failed, f"not acknowledged: {failed[:3]}"
    return [offset for _, offset in acked]


def read_partition(bootstrap: str, topic: str, partition: int, timeout_s=DEADLINE_S) -> list:
    """Reads the partition from its start to the high watermark the leader reports now, as
    [(offset, value)]."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"spate-ci-{topic}",  # required by the client; never joined
            "enable.auto.commit": False,
            **CLIENT_CONF,
        }
    )
    try:
        tp = TopicPartition(topic, partition)
        _, high = consumer.get_watermark_offsets(tp, timeout=30)
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        records = []
        deadline = time.monotonic() + timeout_s
        while (not records or records[-1][0] < high - 1) and high > 0:
            assert time.monotonic() < deadline, (
                f"{topic}-{partition}: read up to {records[-1][0] if records else None}, "
                f"high watermark {high}, within {timeout_s}s"
            )
            for m in consumer.consume(num_messages=10000, timeout=1.0):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consume error: {m.error()}")
                records.append((m.offset(), m.value()))
        return records
    finally:
        consumer.close()


class BackgroundProducer:
    """Produces numbered values (`b"<n>"`) round-robin to every partition from a thread, at a
    bounded rate, with acks=all and long retries, and records each delivery report: the
    acknowledged (partition, offset) of every value a client was told is safe."""

    def __init__(self, bootstrap: str, topic: str, per_second: int = 2000, **conf):
        self.topic = topic
        self.per_second = per_second
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "compression.type": "none",
                "linger.ms": 5,
                "message.timeout.ms": 120_000,
                **CLIENT_CONF,
                **conf,
            }
        )
        self.lock = threading.Lock()
        self.acked = {}  # value -> (partition, offset)
        self.errors = []
        self.sent = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def _report(self, err, m):
        with self.lock:
            if err is None:
                self.acked[m.value()] = (m.partition(), m.offset())
            else:
                self.errors.append(err)

    def _run(self):
        started = time.monotonic()
        while not self.stopping.is_set():
            due = int((time.monotonic() - started) * self.per_second)
            while self.sent < due and not self.stopping.is_set():
                try:
                    self.producer.produce(
                        self.topic, value=b"%d" % self.sent, on_delivery=self._report
                    )
                    self.sent += 1
                except BufferError:
                    break
            self.producer.poll(0.02)

    def start(self) -> "BackgroundProducer":
        self.thread.start()
        return self

    def finish(self, timeout_s: float = 180) -> int:
        """Stops producing and waits for every outstanding delivery report. Returns how many
        are still missing (0 expected)."""
        self.stopping.set()
        self.thread.join()
        left = self.producer.flush(timeout_s)
        self.abandon()
        return left

    def abandon(self) -> None:
        """Stops producing and drops whatever is not delivered yet (a test failing)."""
        self.stopping.set()
        self.thread.join()
        self.producer.purge()
        self.producer.close()


# --- what a replica holds on disk ---

_BATCH_HEADER = struct.Struct(">qiiBIhiqqqhii")  # Kafka's v2 record batch header, 61 bytes


def _varint(buf: bytes, at: int):
    """A zigzag varint (Kafka's record fields); returns (value, next position)."""
    shift = result = 0
    while True:
        b = buf[at]
        at += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), at
        shift += 7


def _bytes_field(buf: bytes, at: int):
    n, at = _varint(buf, at)
    if n < 0:
        return None, at
    return buf[at : at + n], at + n


def replica_records(data_dir: Path, topic: str, partition: int) -> list:
    """[(offset, value)] of every data record in the replica's segment files, in order: what
    this replica holds. Reads Kafka's format (uncompressed batches; control batches skipped)."""
    records = []
    part_dir = Path(data_dir) / f"{topic}-{partition}"
    for segment in sorted(part_dir.glob("*.log")):
        buf = segment.read_bytes()
        at = 0
        while at + _BATCH_HEADER.size <= len(buf):
            (base, length, _epoch, magic, _crc, attrs, _lod, _bts, _mts, _pid, _pe, _seq, count) = (
                _BATCH_HEADER.unpack_from(buf, at)
            )
            end = at + 12 + length
            assert magic == 2 and end <= len(buf), f"{segment}: bad batch at byte {at}"
            assert attrs & 0x07 == 0, f"{segment}: compressed batch at byte {at}"
            pos = at + _BATCH_HEADER.size
            for _ in range(count):
                size, pos = _varint(buf, pos)
                body_end = pos + size
                pos += 1  # attributes
                _, pos = _varint(buf, pos)  # timestamp delta
                delta, pos = _varint(buf, pos)
                _, pos = _bytes_field(buf, pos)  # key
                value, pos = _bytes_field(buf, pos)
                if not attrs & 0x20:  # not a control batch
                    records.append((base + delta, value))
                pos = body_end
            at = end
    return records


class RawProducer:
    """One connection to one broker speaking Produce v3 by hand, so a test controls what is
    in flight: `send` writes a request without waiting, `answered` peeks for a response,
    `receive` reads the next one. Records are built with kafka-python's batch builder."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=DEADLINE_S)
        self.correlation_id = 0

    def send(self, topic: str, partition: int, value: bytes, timeout_ms: int, acks: int = -1) -> int:
        """Sends one record; returns the request's correlation id."""
        builder = DefaultRecordBatchBuilder(
            magic=2, compression_type=0, is_transactional=False, producer_id=-1,
            producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
        )
        builder.append(0, timestamp=None, key=None, value=value, headers=[])
        batch = bytes(builder.build())
        self.correlation_id += 1
        name = topic.encode()
        body = (
            struct.pack(">hhih", 0, 3, self.correlation_id, 4) + b"test"  # header v1
            + struct.pack(">hhi", -1, acks, timeout_ms)  # no transactional id
            + struct.pack(">ih", 1, len(name)) + name
            + struct.pack(">iii", 1, partition, len(batch)) + batch
        )
        self.sock.sendall(struct.pack(">i", len(body)) + body)
        return self.correlation_id

    def answered(self) -> bool:
        """True when a response has (begun to) come back."""
        self.sock.setblocking(False)
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(DEADLINE_S)

    def receive(self):
        """The next response: (correlation id, error code, base offset) of its one partition."""
        size = struct.unpack(">i", self._read(4))[0]
        frame = self._read(size)
        correlation_id, topics, name_len = struct.unpack_from(">iih", frame, 0)
        at = 10 + name_len
        _partitions, _index, error, base_offset = struct.unpack_from(">iihq", frame, at)
        assert topics == 1, f"{topics} topics in a one-topic response"
        return correlation_id, error, base_offset

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "the broker closed the connection"
            buf += chunk
        return buf

    def close(self) -> None:
        self.sock.close()
