"""Consumer groups with real clients: partitions shared among members, rebalances when a
member dies or joins, commit-after-processing delivering every message, committed offsets
surviving broker restarts (clean and SIGKILL), static membership, cooperative-sticky,
kafka-python, aiokafka, `kcat -G`, and the AdminClient's group APIs.

Group members whose death is part of a test run as subprocesses (this file run as a
script); they print JSON lines: their assignment after each change and each message
processed (printed before its offset is committed, so a message processed but never
committed shows up as consumed twice)."""

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from support import create_topic

# Waits are bounds that fail a hung test, not timings under test.
WAIT_S = 60
SESSION_TIMEOUT_MS = 6000


def produce(bootstrap, topic, partitions, per_partition, start=0):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(start, start + per_partition):
        for part in range(partitions):
            p.produce(topic, f"{part}:{i}".encode(), partition=part)
    assert p.flush(30) == 0


def consumer_config(bootstrap, group, **extra):
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 500,
    }
    config.update(extra)
    return config


def member_main(bootstrap, group, topic, extra_json):
    """A group member process: consume, print, commit each message."""
    assigned = set()

    def show():
        print(json.dumps({"assigned": sorted(assigned)}), flush=True)

    def on_assign(consumer, partitions):
        assigned.update(p.partition for p in partitions)
        show()

    def on_revoke(consumer, partitions):
        assigned.difference_update(p.partition for p in partitions)
        show()

    c = Consumer(consumer_config(bootstrap, group, **json.loads(extra_json)))
    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    while True:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        print(json.dumps({"consumed": [m.partition(), m.offset()]}), flush=True)
        c.commit(m, asynchronous=False)


class Member:
    """A member subprocess and what it reported."""

    def __init__(self, bootstrap, group, topic, **extra):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, bootstrap, group, topic, json.dumps(extra)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.assigned = set()
        self.consumed = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            event = json.loads(line)
            with self.lock:
                if "assigned" in event:
                    self.assigned = set(event["assigned"])
                else:
                    self.consumed.append(tuple(event["consumed"]))

    def snapshot(self):
        with self.lock:
            return set(self.assigned), list(self.consumed)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


def wait_for(what, check, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def balanced(members, partitions, each):
    sets = [m.snapshot()[0] for m in members]
    union = set().union(*sets)
    return all(len(s) == each for s in sets) and union == set(range(partitions))


def test_group_shares_partitions_survives_a_killed_member_and_covers_every_message(broker):
    b = broker.bootstrap
    topic = create_topic(b, 12)
    group = f"g-{uuid.uuid4().hex[:8]}"
    members = [Member(b, group, topic) for _ in range(3)]
    try:
        wait_for("3 members with 4 partitions each", lambda: balanced(members, 12, 4))
        produce(b, topic, 12, 50)
        wait_for(
            "the first 600 messages",
            lambda: sum(len(m.snapshot()[1]) for m in members) >= 600,
        )
        killed = members[0]
        killed_partitions, killed_consumed = killed.snapshot()
        killed.kill()
        survivors = members[1:]
        # Within the session timeout (plus the rebalance) the survivors own everything.
        wait_for("2 members with 6 partitions each", lambda: balanced(survivors, 12, 6))
        newcomer = Member(b, group, topic)
        members.append(newcomer)
        live = survivors + [newcomer]
        wait_for("4/4/4 after a new member joins", lambda: balanced(live, 12, 4))
        produce(b, topic, 12, 50, start=50)

        def covered():
            seen = set(killed_consumed)
            for m in live:
                seen.update(m.snapshot()[1])
            return len(seen) >= 1200

        wait_for("every message consumed", covered)
        counts = Counter(killed_consumed)
        for m in live:
            counts.update(m.snapshot()[1])
        assert set(counts) == {(p, o) for p in range(12) for o in range(100)}
        # Commit-after-processing: only the killed member's uncommitted tail (at most the
        # one message it processed before dying on each of its partitions) comes again.
        duplicates = [k for k, n in counts.items() if n > 1]
        assert all(p in killed_partitions for p, _ in duplicates), duplicates
        assert len(duplicates) <= len(killed_partitions), duplicates
    finally:
        for m in members:
            m.stop()


def committed(bootstrap, group, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def consume_and_commit(bootstrap, group, topic, count, **extra):
    """Consumes `count` messages in a group, committing each; returns their values."""
    c = Consumer(consumer_config(bootstrap, group, **extra))
    c.subscribe([topic])
    values = []
    deadline = time.monotonic() + WAIT_S
    try:
        while len(values) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            values.append(m.value().decode())
            c.commit(m, asynchronous=False)
    finally:
        c.close()
    assert len(values) == count, f"consumed {len(values)} of {count}"
    return values


def test_committed_offsets_survive_clean_restart_and_sigkill(broker):
    b = broker.bootstrap
    topic = create_topic(b, 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    produce(b, topic, 2, 30)
    first = consume_and_commit(b, group, topic, 20)
    before = committed(b, group, topic, 2)
    # -1001: nothing committed for a partition the 20 did not come from.
    assert sum(max(o, 0) for o in before.values()) == 20

    broker.restart()
    assert committed(broker.bootstrap, group, topic, 2) == before

    broker.kill()
    broker.start()
    assert committed(broker.bootstrap, group, topic, 2) == before
    # A restarted consumer resumes at its committed offsets: the other 40, no repeats.
    rest = consume_and_commit(broker.bootstrap, group, topic, 40)
    assert sorted(first + rest) == sorted(f"{p}:{i}" for p in range(2) for i in range(30))
    assert committed(broker.bootstrap, group, topic, 2) == {0: 30, 1: 30}


def test_a_member_keeps_its_assignment_across_a_broker_restart(broker):
    """The coordinator reloads the group's members and generation: after a clean restart
    (and after SIGKILL) the consumer carries on with no rebalance and keeps consuming."""
    b = broker.bootstrap
    topic = create_topic(b, 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    assigns = []
    c = Consumer(consumer_config(b, group))
    c.subscribe([topic], on_assign=lambda consumer, parts: assigns.append(len(parts)))
    try:
        deadline = time.monotonic() + WAIT_S
        while not assigns:
            assert time.monotonic() < deadline, "never assigned"
            c.poll(0.1)
        for stop in (broker.restart, lambda: (broker.kill(), broker.start())):
            stop()
            produce(broker.bootstrap, topic, 2, 5)
            got = 0
            deadline = time.monotonic() + WAIT_S
            while got < 10:
                assert time.monotonic() < deadline, f"consumed {got} of 10 after the restart"
                m = c.poll(0.2)
                if m is not None and not m.error():
                    got += 1
                    c.commit(m, asynchronous=False)
        assert assigns == [2], f"rebalanced after a restart: {assigns}"
    finally:
        c.close()


def test_cooperative_sticky_shares_and_rebalances_incrementally(broker):
    b = broker.bootstrap
    topic = create_topic(b, 6)
    group = f"g-{uuid.uuid4().hex[:8]}"
    conf = consumer_config(b, group, **{"partition.assignment.strategy": "cooperative-sticky"})
    owned = [set(), set()]

    def tracker(i):
        def on_assign(c, parts):
            owned[i].update(p.partition for p in parts)
            c.incremental_assign(parts)

        def on_revoke(c, parts):
            owned[i].difference_update(p.partition for p in parts)
            c.incremental_unassign(parts)

        return on_assign, on_revoke

    consumers = []
    try:
        for i in range(2):
            c = Consumer(conf)
            assign, revoke = tracker(i)
            c.subscribe([topic], on_assign=assign, on_revoke=revoke)
            consumers.append(c)
        deadline = time.monotonic() + WAIT_S
        while not (len(owned[0]) == 3 and len(owned[1]) == 3):
            assert time.monotonic() < deadline, f"no 3/3 split: {owned}"
            for c in consumers:
                c.poll(0.1)
        assert owned[0] | owned[1] == set(range(6))
        consumers.pop().close()
        deadline = time.monotonic() + WAIT_S
        while len(owned[0]) != 6:
            assert time.monotonic() < deadline, f"survivor did not get all 6: {owned}"
            consumers[0].poll(0.1)
    finally:
        for c in consumers:
            c.close()


def test_static_member_rejoins_without_a_rebalance(broker):
    b = broker.bootstrap
    topic = create_topic(b, 4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    assigns = [0, 0]

    def make(i):
        c = Consumer(consumer_config(b, group, **{"group.instance.id": f"member-{i}"}))

        def on_assign(consumer, parts):
            assigns[i] += 1

        c.subscribe([topic], on_assign=on_assign)
        return c

    a, other = make(0), make(1)
    deadline = time.monotonic() + WAIT_S
    while not (assigns[0] and assigns[1]):
        assert time.monotonic() < deadline, "static members never assigned"
        a.poll(0.1)
        other.poll(0.1)
    # A static member leaves no LeaveGroup behind when it closes, and coming back with
    # the same group.instance.id within the session timeout takes its place again.
    a.close()
    a = make(0)
    deadline = time.monotonic() + WAIT_S
    while assigns[0] < 2:
        assert time.monotonic() < deadline, "restarted static member never assigned"
        a.poll(0.1)
        other.poll(0.1)
    # Keep polling a while longer: the other member must see no rebalance at all.
    until = time.monotonic() + 2
    while time.monotonic() < until:
        a.poll(0.1)
        other.poll(0.1)
    assert assigns[1] == 1, "the other member was rebalanced"
    a.close()
    other.close()


def test_kafka_python_group_consumer(broker):
    from kafka import KafkaConsumer

    b = broker.bootstrap
    topic = create_topic(b, 3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    produce(b, topic, 3, 10)
    c = KafkaConsumer(
        topic,
        bootstrap_servers=b,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=WAIT_S * 1000,
    )
    values = []
    for m in c:
        values.append(m.value.decode())
        if len(values) == 30:
            break
    c.commit()
    c.close()
    assert sorted(values) == sorted(f"{p}:{i}" for p in range(3) for i in range(10))
    assert committed(b, group, topic, 3) == {0: 10, 1: 10, 2: 10}


def test_aiokafka_group_consumer(broker):
    from aiokafka import AIOKafkaConsumer

    b = broker.bootstrap
    topic = create_topic(b, 3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    produce(b, topic, 3, 10)

    async def run():
        c = AIOKafkaConsumer(
            topic,
            bootstrap_servers=b,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await c.start()
        values = []
        try:
            async with asyncio.timeout(WAIT_S):
                async for m in c:
                    values.append(m.value.decode())
                    if len(values) == 30:
                        break
            await c.commit()
        finally:
            await c.stop()
        return values

    values = asyncio.run(run())
    assert sorted(values) == sorted(f"{p}:{i}" for p in range(3) for i in range(10))
    assert committed(b, group, topic, 3) == {0: 10, 1: 10, 2: 10}


def test_kcat_balanced_consumer(broker):
    binary = shutil.which("kcat") or shutil.which("kafkacat")
    if binary is None:
        pytest.fail("kcat is not installed (ci/install.sh installs it)")
    b = broker.bootstrap
    topic = create_topic(b, 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    produce(b, topic, 2, 10)
    proc = subprocess.Popen(
        [binary, "-b", b, "-u", "-G", group, "-o", "beginning", "-f", "%s\\n", topic],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines = []
    try:
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        wait_for("kcat -G to print 20 messages", lambda: len(lines) >= 20)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    got = sorted(line.strip() for line in lines)
    assert got == sorted(f"{p}:{i}" for p in range(2) for i in range(10))


def test_admin_lists_describes_and_alters_groups(broker):
    b = broker.bootstrap
    topic = create_topic(b, 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": b})
    produce(b, topic, 2, 5)
    c = Consumer(consumer_config(b, group))
    c.subscribe([topic])
    deadline = time.monotonic() + WAIT_S
    while not c.assignment():
        assert time.monotonic() < deadline, "never assigned"
        c.poll(0.2)
    listed = admin.list_consumer_groups(request_timeout=30).result()
    assert group in {g.group_id for g in listed.valid}
    described = admin.describe_consumer_groups([group], request_timeout=30)[group].result()
    assert described.state.name == "STABLE"
    assert len(described.members) == 1
    parts = described.members[0].assignment.topic_partitions
    assert sorted((tp.topic, tp.partition) for tp in parts) == [(topic, 0), (topic, 1)]
    c.close()

    # Empty now: AlterConsumerGroupOffsets (an OffsetCommit with generation -1) works.
    wanted = [TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 4)]
    altered = admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, wanted)], request_timeout=30
    )[group].result()
    assert all(tp.error is None for tp in altered.topic_partitions)
    got = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=30
    )[group].result()
    assert {tp.partition: tp.offset for tp in got.topic_partitions} == {0: 3, 1: 4}

    deleted = admin.delete_consumer_groups([group], request_timeout=30)[group]
    deleted.result()
    listed = admin.list_consumer_groups(request_timeout=30).result()
    assert group not in {g.group_id for g in listed.valid}
    assert committed(b, group, topic, 2) == {0: -1001, 1: -1001}


if __name__ == "__main__":
    member_main(*sys.argv[1:])
