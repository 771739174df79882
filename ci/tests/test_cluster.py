"""The cluster (issue 8) with real processes and real clients: 3 controller-only nodes and 3
broker-only nodes on 127.0.0.1 (ci/cluster.py), topics with replication factor 3 created by
confluent-kafka's AdminClient, brokers SIGKILLed and restarted, links cut by TCP proxies.

Every wait has a deadline and then asserts a state (who leads, who is in sync, what was
acknowledged, what each replica holds on disk); nothing asserts how fast it got there."""

import os
import signal
import struct
import time
import uuid
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, ElectionType, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from cluster_util import (
    CLIENT_CONF,
    DEADLINE_S,
    NO_LEADER,
    BackgroundProducer,
    Cluster,
    Kafka,
    RawProducer,
    fully_in_sync,
    has_leader,
    produce,
    produce_all,
    read_partition,
    replica_records,
    wait_for,
)

# --- fixtures and helpers ---


@pytest.fixture
def make_cluster(request, tmp_path):
    """Factory: `make_cluster(**Cluster kwargs)` returns a started cluster (3 controllers and
    3 brokers unless told otherwise), stopped after the test. Node logs stay under tmp_path;
    when the test fails the end of each is printed."""
    clusters = []

    def make(**kwargs) -> Cluster:
        kwargs.setdefault("brokers", 3)
        kwargs.setdefault("controllers", 3)
        cluster = Cluster(tmp_path / f"cluster{len(clusters)}", **kwargs)
        clusters.append(cluster)
        cluster.start()
        return cluster

    yield make
    failed = getattr(request.node, "call_failed", False)
    errors = []
    for cluster in clusters:
        if failed:
            print(f"--- node logs under {cluster.root}:\n{cluster.log_tails(60)}")
        try:
            cluster.stop()
        except RuntimeError as e:
            errors.append(str(e))
    if errors and not failed:
        pytest.fail("\n".join(errors))


def values(tag: str, n: int = 10) -> list:
    return [f"{tag}-{i}".encode() for i in range(n)]


def assert_replicas_hold(cluster: Cluster, topic: str, node_ids, expected: list) -> None:
    """Each replica's segment files on disk hold exactly `expected`, at offsets 0, 1, ..."""
    for node_id in node_ids:
        held = replica_records(cluster.node(node_id).data_dir, topic, 0)
        assert held == list(enumerate(expected)), (
            f"broker {node_id} holds {[v for _, v in held]}, expected {expected}"
        )


def wait_replica_holds(cluster: Cluster, topic: str, node_ids, expected: list) -> None:
    """Waits until each replica's segment files hold exactly `expected` (it has fetched it)."""

    def held(node_id):
        try:
            return replica_records(cluster.node(node_id).data_dir, topic, 0)
        except (AssertionError, IndexError, struct.error) as e:
            return e  # a batch being written: read again

    for node_id in node_ids:
        wait_for(
            f"broker {node_id} holding {len(expected)} records",
            lambda: held(node_id),
            lambda records: records == list(enumerate(expected)),
            cluster,
        )


def assert_partition_serves(cluster: Cluster, topic: str, expected: list) -> None:
    records = read_partition(cluster.bootstrap, topic, 0)
    assert records == list(enumerate(expected)), (
        f"partition serves {[v for _, v in records]}, expected {expected}"
    )


@dataclass
class AllDown:
    """The classic scenario's state once every broker is down."""

    topic: str
    leader: int
    follower1: int
    follower2: int
    a: list
    b: list
    c: list

    def brokers(self) -> list:
        return [self.leader, self.follower1, self.follower2]


def take_every_broker_down(cluster: Cluster, kafka: Kafka, unclean: bool) -> AllDown:
    """RF 3 with min.insync.replicas=1 (so the shrinking ISR keeps acknowledging): produce A,
    kill follower 2, produce B, kill follower 1, produce C, kill the leader. A follower is
    killed once its segment files hold what was produced so far, and the next batch is
    produced once the controller has taken it out of the ISR. Then follower 2 holds [A],
    follower 1 [A, B] and the leader [A, B, C], which is checked on disk."""
    topic = kafka.create_topic(
        1, config={"unclean.leader.election.enable": unclean, "min.insync.replicas": 1}
    )
    start = kafka.wait_full_isr(topic)
    leader = start.leader
    follower1, follower2 = start.followers()
    a, b, c = values("A"), values("B"), values("C")

    produce_all(cluster.bootstrap, topic, a)
    wait_replica_holds(cluster, topic, [follower1, follower2], a)
    cluster.node(follower2).kill()
    state = kafka.wait_partition(
        topic, 0, f"ISR without {follower2}", lambda s: follower2 not in s.isr
    )
    assert state.leader == leader, f"leadership moved when a follower died: {state}"
    produce_all(cluster.bootstrap, topic, b)
    wait_replica_holds(cluster, topic, [follower1], a + b)
    cluster.node(follower1).kill()
    state = kafka.wait_partition(topic, 0, f"ISR of {leader} alone", lambda s: s.isr == (leader,))
    assert state.leader == leader, f"leadership moved when a follower died: {state}"
    produce_all(cluster.bootstrap, topic, c)
    cluster.node(leader).kill()

    assert_replicas_hold(cluster, topic, [follower2], a)
    assert_replicas_hold(cluster, topic, [follower1], a + b)
    assert_replicas_hold(cluster, topic, [leader], a + b + c)
    return AllDown(topic, leader, follower1, follower2, a, b, c)


def restart_broker(cluster: Cluster, node_id: int) -> None:
    cluster.node(node_id).start()
    cluster.wait_brokers_listed([node_id])


# --- no acknowledged loss under crashes ---

CRASH_ROUNDS = 6
PARTITIONS = 6
# Acknowledgements that must arrive while a broker is down: the cluster stays writable.
ACKS_WHILE_DOWN = 200


def test_no_acknowledged_message_is_lost_while_brokers_crash_one_at_a_time(make_cluster):
    cluster = make_cluster()
    kafka = Kafka(cluster)
    topic = kafka.create_topic(PARTITIONS, config={"min.insync.replicas": 2})
    kafka.wait_full_isr(topic, PARTITIONS)
    producer = BackgroundProducer(cluster.bootstrap, topic).start()
    try:
        for round_ in range(CRASH_ROUNDS):
            victim = cluster.brokers[round_ % len(cluster.brokers)]
            victim.kill()
            # The controller fences it: every partition led by a live broker, ISR without it.
            kafka.wait_partitions(
                topic,
                PARTITIONS,
                f"broker {victim.node_id} fenced out of leadership and ISR",
                lambda s: s.leader not in (NO_LEADER, victim.node_id)
                and victim.node_id not in s.isr,
            )
            before = producer.acked_count()
            wait_for(
                f"round {round_}: {ACKS_WHILE_DOWN} acknowledgements with broker "
                f"{victim.node_id} down",
                producer.acked_count,
                lambda n: n >= before + ACKS_WHILE_DOWN,
                cluster,
            )
            restart_broker(cluster, victim.node_id)
            kafka.wait_full_isr(topic, PARTITIONS)
    except BaseException:
        producer.abandon()
        raise
    missing = producer.finish()
    assert missing == 0, f"{missing} delivery reports never came"
    acked = producer.acked
    print(f"\n{producer.sent} produced, {len(acked)} acknowledged, {len(producer.errors)} failed")

    kafka.wait_full_isr(topic, PARTITIONS)
    served = {p: read_partition(cluster.bootstrap, topic, p) for p in range(PARTITIONS)}
    at = {(p, offset): value for p, records in served.items() for offset, value in records}
    lost = [(v, place) for v, place in acked.items() if at.get(place) != v]
    assert not lost, f"{len(lost)} acknowledged messages not served where acknowledged: {lost[:5]}"

    # Every replica holds what the leader serves (below the high watermark).
    cluster.stop()
    for p, records in served.items():
        for broker in cluster.brokers:
            held = replica_records(broker.data_dir, topic, p)
            assert held[: len(records)] == records, (
                f"partition {p}: broker {broker.node_id} holds a different log"
            )


# --- the classic "all brokers go down" case ---


def test_all_brokers_down_without_unclean_election_waits_for_the_last_leader(make_cluster):
    cluster = make_cluster()
    kafka = Kafka(cluster)
    down = take_every_broker_down(cluster, kafka, unclean=False)

    # Former followers come back first: once the last leader is fenced no replica that is
    # in sync is alive, so none leads.
    for follower in (down.follower2, down.follower1):
        restart_broker(cluster, follower)
        state = kafka.wait_partition(
            down.topic,
            0,
            f"broker {follower} back and the last leader {down.leader} fenced",
            lambda s: follower in s.brokers and down.leader not in s.brokers,
        )
        assert state.leader == NO_LEADER, f"out-of-sync broker {follower} was elected: {state}"
        acked, failed = produce(cluster.bootstrap, down.topic, [b"X"], timeout_s=10)
        assert not acked and failed, "a partition without a leader acknowledged a write"

    restart_broker(cluster, down.leader)
    kafka.wait_partition(down.topic, 0, f"led by {down.leader}", lambda s: s.leader == down.leader)
    kafka.wait_full_isr(down.topic)
    everything = down.a + down.b + down.c
    assert_partition_serves(cluster, down.topic, everything)
    cluster.stop()
    assert_replicas_hold(cluster, down.topic, down.brokers(), everything)


def test_all_brokers_down_with_unclean_election_elects_a_stale_follower(make_cluster):
    cluster = make_cluster()
    kafka = Kafka(cluster)
    down = take_every_broker_down(cluster, kafka, unclean=True)

    restart_broker(cluster, down.follower2)
    kafka.wait_partition(
        down.topic, 0, f"led by follower 2 ({down.follower2})", lambda s: s.leader == down.follower2
    )
    d = values("D")
    produce_all(cluster.bootstrap, down.topic, d)

    restart_broker(cluster, down.follower1)
    restart_broker(cluster, down.leader)
    kafka.wait_full_isr(down.topic)
    # B and C were only on replicas that were out of sync when follower 2 took over.
    assert_partition_serves(cluster, down.topic, down.a + d)
    cluster.stop()
    assert_replicas_hold(cluster, down.topic, down.brokers(), down.a + d)


# --- controller failover ---


FAILOVERS = 2


def test_another_controller_takes_over_and_topics_and_leaders_keep_working(make_cluster):
    """The active controller (the one every controller names) is SIGKILLed, twice; another
    takes over, a topic is created and a partition leader is killed: the new active
    controller must create the topic and elect a new leader."""
    cluster = make_cluster()
    kafka = Kafka(cluster)
    for _ in range(FAILOVERS):
        active = wait_for(
            "an active controller", cluster.active_controller, lambda c: c is not None, cluster
        )
        cluster.node(active).kill()
        wait_for(
            f"a controller taking over from {active}",
            cluster.active_controller,
            lambda c: c is not None,
            cluster,
        )
        topic = kafka.create_topic(3)
        old = kafka.wait_partition(topic, 0, "a leader", has_leader).leader
        cluster.node(old).kill()
        state = kafka.wait_partition(
            topic, 0, f"a leader other than {old}", lambda s: s.leader not in (NO_LEADER, old)
        )
        assert old not in state.isr, f"dead broker {old} still in sync: {state}"
        produce_all(cluster.bootstrap, topic, values("after-failover"))
        restart_broker(cluster, old)
        cluster.node(active).start()


# --- committed offsets ---

OFFSETS_PARTITIONS = 5


def coordinator_partition(group: str, partitions: int) -> int:
    """Kafka's `abs(group.hashCode()) % partitions`, with Java's String.hashCode."""
    h = 0
    for ch in group:  # the names here are ASCII: one UTF-16 unit per character
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def committed(bootstrap: str, group: str, topic: str):
    """The group's committed offset of partition 0, or the error met asking for it."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **CLIENT_CONF})
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    except KafkaException as e:
        return e
    finally:
        consumer.close()


def commit(bootstrap: str, group: str, topic: str, offset: int):
    """Commits `offset` for partition 0 without joining the group; the error met, or None."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
         **CLIENT_CONF}
    )
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        return None
    except KafkaException as e:
        return e
    finally:
        consumer.close()


def test_committed_offsets_survive_their_coordinator_being_killed(make_cluster):
    """A group's committed offset lives in a replicated `__consumer_offsets` partition (RF 3):
    when the broker leading it (the group's coordinator) is SIGKILLed, another replica leads
    it, coordinates the group, and answers the offset that was acknowledged."""
    cluster = make_cluster(settings={"offsets.topic.num.partitions": OFFSETS_PARTITIONS})
    kafka = Kafka(cluster)
    topic = kafka.create_topic(1)
    produce_all(cluster.bootstrap, topic, values("offsets", 20))
    group = "survivors"
    wait_for(f"a commit for {group}", lambda: commit(cluster.bootstrap, group, topic, 7),
             lambda e: e is None, cluster)
    assert committed(cluster.bootstrap, group, topic) == 7

    p = coordinator_partition(group, OFFSETS_PARTITIONS)
    state = kafka.wait_partition("__consumer_offsets", p, "every replica in sync", fully_in_sync)
    assert len(state.replicas) == 3, state
    coordinator = state.leader
    cluster.node(coordinator).kill()
    kafka.wait_partition(
        "__consumer_offsets", p, f"a leader other than {coordinator}",
        lambda s: s.leader not in (NO_LEADER, coordinator),
    )
    got = wait_for(
        f"{group}'s offset from the new coordinator",
        lambda: committed(cluster.bootstrap, group, topic),
        lambda r: not isinstance(r, KafkaException),
        cluster,
    )
    assert got == 7, f"committed offset after the coordinator died: {got}"
    # The new coordinator takes commits, and they survive the old one's return.
    wait_for("a commit to the new coordinator", lambda: commit(cluster.bootstrap, group, topic, 12),
             lambda e: e is None, cluster)
    restart_broker(cluster, coordinator)
    kafka.wait_partition("__consumer_offsets", p, "every replica in sync", fully_in_sync)
    assert committed(cluster.bootstrap, group, topic) == 12


# --- preferred leaders ---


def move_leadership_away(cluster: Cluster, kafka: Kafka, topic: str, partition: int) -> int:
    """SIGKILLs the partition's preferred replica (its leader), waits for another leader,
    restarts it and waits until it is back in sync. Returns its id."""
    state = kafka.wait_partition(topic, partition, "every replica in sync", fully_in_sync)
    preferred = state.replicas[0]
    assert state.leader == preferred, f"a new partition is led by its first replica: {state}"
    cluster.node(preferred).kill()
    kafka.wait_partition(
        topic, partition, f"a leader other than {preferred}",
        lambda s: s.leader not in (NO_LEADER, preferred),
    )
    restart_broker(cluster, preferred)
    kafka.wait_partition(topic, partition, "every replica in sync", fully_in_sync)
    return preferred


def test_elect_leaders_gives_the_lead_back_to_the_preferred_replica(make_cluster):
    """With auto.leader.rebalance.enable off, a restarted preferred replica catches up but
    leads nothing; AdminClient.elect_leaders(PREFERRED) makes it lead again, with every
    record in place; asked again, the election is not needed."""
    cluster = make_cluster(settings={"auto.leader.rebalance.enable": False})
    kafka = Kafka(cluster)
    topic = kafka.create_topic(1)
    written = values("before", 20)
    produce_all(cluster.bootstrap, topic, written)
    preferred = move_leadership_away(cluster, kafka, topic, 0)
    assert kafka.partition(topic, 0).leader != preferred
    tp = [TopicPartition(topic, 0)]
    elected = kafka.admin.elect_leaders(ElectionType.PREFERRED, tp).result(timeout=60)
    assert list(elected.values()) == [None], elected
    kafka.wait_partition(topic, 0, f"broker {preferred} leading", lambda s: s.leader == preferred)
    assert_partition_serves(cluster, topic, written)
    again = kafka.admin.elect_leaders(ElectionType.PREFERRED, tp).result(timeout=60)
    [error] = again.values()
    assert error is not None and error.code() == KafkaError.ELECTION_NOT_NEEDED, again


def test_leaders_move_back_to_their_preferred_replicas_on_their_own(make_cluster):
    """auto.leader.rebalance.enable (on by default), checked every second here: after a
    broker restarts and catches up, the partitions it is the preferred replica of are led
    by it again without anyone asking."""
    cluster = make_cluster(settings={"leader.imbalance.check.interval.seconds": 1})
    kafka = Kafka(cluster)
    topic = kafka.create_topic(3)
    preferred = move_leadership_away(cluster, kafka, topic, 0)
    for p in range(3):
        kafka.wait_partition(
            topic, p, "its preferred replica leading", lambda s: s.leader == s.replicas[0]
        )
    assert kafka.partition(topic, 0).leader == preferred


# --- isolation ---


def test_isolated_leader_is_fenced_and_cannot_acknowledge(make_cluster):
    """A leader cut off (TCP proxies) from the controllers and the other brokers, while this
    test's clients still reach it alone: an acks=all write to it is not acknowledged, the
    controller fences it and moves leadership, and when the links heal it rejoins and drops
    the write it could not replicate."""
    cluster = make_cluster(proxied=True)
    kafka = Kafka(cluster)
    net = cluster.network
    topic = kafka.create_topic(1, config={"min.insync.replicas": 2})
    leader = kafka.wait_full_isr(topic).leader
    before = values("before")
    produce_all(cluster.bootstrap, topic, before)
    others = [b.node_id for b in cluster.brokers if b.node_id != leader]

    net.isolate(leader)
    for other in others:
        net.cut(net.CLIENT, other)
    acked, failed = produce(
        cluster.bootstrap_of(leader),
        topic,
        [b"isolated"],
        timeout_s=20,
        **{"request.timeout.ms": 10000},
    )
    assert not acked, f"isolated leader {leader} acknowledged an acks=all write"
    assert failed

    # Watch from the rest of the cluster: the isolated broker still serves its stale view.
    for other in others:
        net.heal(net.CLIENT, other)
    net.cut(net.CLIENT, leader)
    kafka.wait_partition(
        topic,
        0,
        f"leadership moved off isolated broker {leader}",
        lambda s: s.leader in others and leader not in s.isr,
    )
    after = values("after")
    produce_all(cluster.bootstrap, topic, after)

    net.heal()
    kafka.wait_partition(
        topic,
        0,
        f"{leader} back in sync, following",
        lambda s: fully_in_sync(s) and s.leader in others,
    )
    assert_partition_serves(cluster, topic, before + after)
    cluster.stop()
    assert_replicas_hold(cluster, topic, [leader] + others, before + after)


def test_acks_all_requests_in_flight_are_appended_while_the_first_waits(make_cluster):
    """A connection with two acks=all Produce requests in flight: the second is appended while
    the first still waits for replicas (the followers are stopped with SIGSTOP), and both are
    answered in order, with consecutive offsets, once the followers run again."""
    # Failure detection slower than any wait here: the stopped followers stay in the ISR,
    # so nothing commits while they are stopped.
    patience_ms = 2 * DEADLINE_S * 1000
    cluster = make_cluster(
        settings={"broker.session.timeout.ms": patience_ms, "replica.lag.time.max.ms": patience_ms}
    )
    kafka = Kafka(cluster)
    topic = kafka.create_topic(1)
    leader = kafka.wait_full_isr(topic).leader
    followers = [b for b in cluster.brokers if b.node_id != leader]
    client = RawProducer("127.0.0.1", cluster.node(leader).broker_port)
    for f in followers:
        os.kill(f.pid, signal.SIGSTOP)
    try:
        # The first cannot time out (and so let the second in) before the wait's deadline.
        first = client.send(topic, 0, b"first", timeout_ms=patience_ms)
        second = client.send(topic, 0, b"second", timeout_ms=patience_ms)
        wait_replica_holds(cluster, topic, [leader], [b"first", b"second"])
        assert not client.answered(), "answered before any follower could fetch"
    finally:
        for f in followers:
            os.kill(f.pid, signal.SIGCONT)
    assert client.receive() == (first, 0, 0)
    assert client.receive() == (second, 0, 1)
    client.close()


def test_a_new_topic_takes_acks_all_writes_from_its_first_moment(make_cluster):
    """From the moment CreateTopics is sent, acks=all writes to partition 0 of the new
    replicated topic, sent to every broker in turn, are either not served yet (unknown
    partition, not the leader) or accepted: never refused for want of in-sync replicas,
    which a broker still opening the topic's partitions used to do with a partition it had
    opened but not yet given its assignment."""
    cluster = make_cluster()
    kafka = Kafka(cluster)
    topic = f"t-{uuid.uuid4().hex[:10]}"
    new = NewTopic(topic, num_partitions=200, replication_factor=3,
                   config={"min.insync.replicas": "2"})
    clients = [RawProducer("127.0.0.1", b.broker_port) for b in cluster.brokers]
    created = kafka.admin.create_topics([new], request_timeout=30)[topic]
    # Kafka's UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER.
    not_served = {3, 5, 6}
    answers = []
    deadline = time.monotonic() + DEADLINE_S
    while 0 not in answers:
        assert time.monotonic() < deadline, f"no write accepted: {answers[-10:]}"
        for client in clients:
            client.send(topic, 0, b"first", timeout_ms=30000)
            answers.append(client.receive()[1])
        assert set(answers) <= not_served | {0}, f"refused: {sorted(set(answers))}"
    created.result(timeout=60)
    for client in clients:
        client.close()
