"""Admin APIs through real clients: confluent-kafka's AdminClient adds partitions, alters and
describes topic configs (a lowered retention.ms deletes old segments on the running broker),
deletes records (consumers see the new log start), describes the cluster; kafka-python's
KafkaAdminClient does the basics and describes the log dirs."""

import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    ResourceType,
)

from support import close, create_topic

# Retention runs every 200 ms, so a lowered retention.ms shows within a test's patience.
PROFILE = "log.retention.check.interval.ms: 200\n"
PATIENCE_S = 30


@pytest.fixture
def fast_retention_broker(make_broker, tmp_path):
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    return make_broker(config=str(profile))


def topic_configs(admin: AdminClient, topic: str) -> dict:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=15)
    return {name: entry.value for name, entry in entries.items()}


def watermarks(bootstrap: str, topic: str, partition: int) -> tuple:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"spate-ci-{topic}"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def produce(bootstrap: str, topic: str, partition: int, count: int, size: int, timestamp=None):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    errors = []
    try:
        for i in range(count):
            p.produce(
                topic,
                value=b"%08d" % i + b"x" * size,
                partition=partition,
                timestamp=timestamp or 0,
                on_delivery=lambda err, m: err and errors.append(err),
            )
            p.poll(0)
        assert p.flush(60) == 0
    finally:
        close(p)
    assert not errors, errors[:3]


# AlterConfigs (the legacy API) is what is under test there, deprecated or not.
@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_partitions_configs_and_retention(fast_retention_broker):
    broker = fast_retention_broker
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = create_topic(broker.bootstrap, 2)

    admin.create_partitions([NewPartitions(topic, 4)])[topic].result(timeout=15)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 4
    with pytest.raises(KafkaException, match="partitions"):
        admin.create_partitions([NewPartitions(topic, 3)])[topic].result(timeout=15)

    # Small segments (Kafka's minimum), then a few of them of hour-old records.
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(timeout=15)
    assert topic_configs(admin, topic)["segment.bytes"] == "1048576"
    hour_ago = int(time.time() * 1000) - 3_600_000
    produce(broker.bootstrap, topic, 0, 400, 10_000, timestamp=hour_ago)
    low, high = watermarks(broker.bootstrap, topic, 0)
    assert (low, high) == (0, 400)

    # Lower retention.ms below the records' age: the sealed segments go.
    resource = ConfigResource(
        ResourceType.TOPIC, topic, set_config={"segment.bytes": "1048576", "retention.ms": "60000"}
    )
    admin.alter_configs([resource])[resource].result(timeout=15)
    assert topic_configs(admin, topic)["retention.ms"] == "60000"
    deadline = time.monotonic() + PATIENCE_S
    while watermarks(broker.bootstrap, topic, 0)[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    low, high = watermarks(broker.bootstrap, topic, 0)
    assert 0 < low <= high == 400, f"retention deleted nothing: watermarks {(low, high)}"

    # Errors name the key.
    bad = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    with pytest.raises(KafkaException, match="no.such.config"):
        admin.incremental_alter_configs([bad])[bad].result(timeout=15)
    node = admin.describe_cluster().result(timeout=15).nodes[0].id
    broker_res = ConfigResource(
        ResourceType.BROKER,
        str(node),
        incremental_configs=[
            ConfigEntry(
                "log.retention.ms", "soon", incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    # log.retention.ms may change at run time, but only to a number.
    with pytest.raises(KafkaException, match="log.retention.ms"):
        admin.incremental_alter_configs([broker_res])[broker_res].result(timeout=15)

    # The changes outlive a restart.
    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    configs = topic_configs(admin, topic)
    assert (configs["segment.bytes"], configs["retention.ms"]) == ("1048576", "60000")
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 4


def test_delete_records_and_describe_cluster(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = create_topic(broker.bootstrap, 2)
    produce(broker.bootstrap, topic, 1, 10, 10)
    deleted = admin.delete_records([TopicPartition(topic, 1, 4)])
    [(tp, future)] = deleted.items()
    assert future.result(timeout=15).low_watermark == 4
    assert watermarks(broker.bootstrap, topic, 1) == (4, 10)
    c = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}"}
    )
    try:
        c.assign([TopicPartition(topic, 1, OFFSET_BEGINNING)])
        got = []
        deadline = time.monotonic() + PATIENCE_S
        while len(got) < 6 and time.monotonic() < deadline:
            for m in c.consume(num_messages=100, timeout=1.0):
                if not m.error():
                    got.append(m.offset())
        assert got == list(range(4, 10))
    finally:
        c.close()

    cluster = admin.describe_cluster().result(timeout=15)
    # The controller draws the id once, in Kafka's form (22 characters of base64).
    assert len(cluster.cluster_id) == 22
    assert len(cluster.nodes) == 1
    assert cluster.nodes[0].port == broker.port
    assert cluster.controller.id == cluster.nodes[0].id


def test_kafka_python_admin_basics(broker):
    from kafka.admin import (
        ConfigResource as KConfigResource,
        ConfigResourceType,
        KafkaAdminClient,
        NewPartitions as KNewPartitions,
        NewTopic as KNewTopic,
    )

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        name = f"kp-{uuid.uuid4().hex[:8]}"
        admin.create_topics([KNewTopic(name, 1, 1, topic_configs={"retention.ms": "86400000"})])
        admin.create_partitions({name: KNewPartitions(3)})
        [described] = admin.describe_topics([name])
        assert len(described["partitions"]) == 3
        admin.alter_configs(
            [KConfigResource(ConfigResourceType.TOPIC, name, configs={"retention.ms": "7200000"})]
        )
        response = admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, name)])
        assert response["topic"][name]["retention.ms"]["value"] == "7200000"
        produce(broker.bootstrap, name, 2, 5, 100)
        [dirs] = admin.describe_log_dirs()
        assert len(dirs["log_dirs"]) == 1
        sizes = {
            (t["name"], p["partition_index"]): p["partition_size"]
            for t in dirs["log_dirs"][0]["topics"]
            for p in t["partitions"]
        }
        assert sizes[(name, 2)] > 0 and sizes[(name, 0)] == 0
        cluster = admin.describe_cluster()
        assert len(cluster["cluster_id"]) == 22
        assert len(cluster["brokers"]) == 1
    finally:
        admin.close()


def test_broker_configs_describe_the_profile_and_refuse_run_time_changes(make_broker, tmp_path):
    profile = tmp_path / "profile.yaml"
    profile.write_text("producer.id.expiration.ms: 3600000\n")
    broker = make_broker(config=str(profile))
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    node = str(admin.describe_cluster().result(timeout=15).nodes[0].id)
    resource = ConfigResource(ResourceType.BROKER, node)
    entries = admin.describe_configs([resource])[resource].result(timeout=15)
    expiration = entries["producer.id.expiration.ms"]
    assert expiration.value == "3600000"
    assert expiration.source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert entries["log.retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    change = ConfigResource(
        ResourceType.BROKER,
        node,
        incremental_configs=[
            ConfigEntry("log.dirs", "/elsewhere", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    with pytest.raises(KafkaException) as refused:
        admin.incremental_alter_configs([change])[change].result(timeout=15)
    assert "log.dirs" in str(refused.value)
