//! The admin APIs modern clients call, against the real binary: CreatePartitions,
//! DeleteRecords, AlterConfigs, IncrementalAlterConfigs, DescribeCluster, DescribeLogDirs,
//! OffsetForLeaderEpoch, DescribeProducers, ElectLeaders.

mod common;

use bytes::{Bytes, BytesMut};
use common::{batch, topic_name, Broker, Client};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, DescribeLogDirsRequest, DescribeProducersRequest, ElectLeadersRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, ListOffsetsRequest, MetadataRequest,
    OffsetForLeaderEpochRequest, ProducerId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn partition_count(client: &mut Client, topic: &str) -> usize {
    let request = MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(topic_name(topic))),
    ]));
    client.send(&request, 12).topics[0].partitions.len()
}

fn create_partitions(
    client: &mut Client,
    topic: &str,
    count: i32,
    validate_only: bool,
) -> (i16, String) {
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(topic))
            .with_count(count)])
        .with_timeout_ms(10_000)
        .with_validate_only(validate_only);
    let r = &client.send(&request, 3).results[0];
    (
        r.error_code,
        r.error_message.as_deref().unwrap_or("").to_string(),
    )
}

#[test]
fn create_partitions_adds_partitions_that_last() {
    let mut broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic("grow", 1);
    assert_eq!(create_partitions(&mut client, "grow", 3, true).0, 0);
    assert_eq!(
        partition_count(&mut client, "grow"),
        1,
        "validate_only changes nothing"
    );
    assert_eq!(create_partitions(&mut client, "grow", 3, false).0, 0);
    assert_eq!(partition_count(&mut client, "grow"), 3);
    for p in 0..3 {
        assert_eq!(client.produce("grow", p, batch(&["x"])), (0, 0));
    }
    let (code, message) = create_partitions(&mut client, "grow", 2, false);
    assert_eq!(code, ResponseError::InvalidPartitions.code());
    assert!(message.contains("3 partitions"), "{message}");
    assert_eq!(
        create_partitions(&mut client, "grow", 3, false).0,
        ResponseError::InvalidPartitions.code()
    );
    assert_eq!(
        create_partitions(&mut client, "nope", 3, false).0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    drop(client);
    broker.terminate();
    broker.launch();
    let mut client = broker.client();
    assert_eq!(partition_count(&mut client, "grow"), 3);
    // Every shard has opened its partitions before any accepts a connection.
    assert_eq!(client.produce("grow", 2, batch(&["y"])), (0, 1));
}

fn list_offset(client: &mut Client, topic: &str, timestamp: i64) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)])]);
    let p = client.send(&request, 7).topics[0].partitions[0].clone();
    assert_eq!(p.error_code, 0);
    p.offset
}

fn delete_records(client: &mut Client, topic: &str, partition: i32, offset: i64) -> (i16, i64) {
    let request = DeleteRecordsRequest::default()
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(partition)
                .with_offset(offset)])])
        .with_timeout_ms(10_000);
    let p = &client.send(&request, 2).topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

#[test]
fn delete_records_moves_the_log_start_and_consumers_see_it() {
    let broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic("trim", 1);
    for i in 0..5 {
        client.produce("trim", 0, batch(&[&format!("r{i}")]));
    }
    assert_eq!(delete_records(&mut client, "trim", 0, 3), (0, 3));
    assert_eq!(list_offset(&mut client, "trim", -2), 3);
    let below = client.fetch("trim", 0, 1, 0);
    assert_eq!(below.error_code, ResponseError::OffsetOutOfRange.code());
    let at = client.fetch("trim", 0, 3, 0);
    assert_eq!((at.error_code, at.log_start_offset), (0, 3));
    assert_eq!(
        delete_records(&mut client, "trim", 0, 99).0,
        ResponseError::OffsetOutOfRange.code()
    );
    // -1: up to the high watermark.
    assert_eq!(delete_records(&mut client, "trim", 0, -1), (0, 5));
    assert_eq!(
        delete_records(&mut client, "trim", 7, 1).0,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[test]
fn records_of_the_internal_offsets_topic_cannot_be_deleted() {
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    // Refused by name, as in Kafka, whether or not the topic exists yet.
    let invalid_topic = ResponseError::InvalidTopicException.code();
    assert_eq!(
        delete_records(&mut client, "__consumer_offsets", 0, 0),
        (invalid_topic, -1)
    );
}

fn describe_topic_config(client: &mut Client, topic: &str, key: &str) -> Option<String> {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(s(topic))
            .with_configuration_keys(Some(vec![s(key)]))]);
    let response = client.send(&request, 4);
    let entry = &response.results[0].configs[0];
    // Source 1 = a topic override; anything else is the broker's value.
    (entry.config_source == 1).then(|| entry.value.as_deref().unwrap_or("").to_string())
}

fn alter(
    client: &mut Client,
    resource_type: i8,
    name: &str,
    pairs: &[(&str, &str)],
    validate_only: bool,
) -> (i16, String) {
    let request = AlterConfigsRequest::default()
        .with_resources(vec![alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(
                pairs
                    .iter()
                    .map(|(k, v)| {
                        alter_configs_request::AlterableConfig::default()
                            .with_name(s(k))
                            .with_value(Some(s(v)))
                    })
                    .collect(),
            )])
        .with_validate_only(validate_only);
    let r = &client.send(&request, 2).responses[0];
    (
        r.error_code,
        r.error_message.as_deref().unwrap_or("").to_string(),
    )
}

fn incremental(client: &mut Client, name: &str, ops: &[(&str, i8, Option<&str>)]) -> (i16, String) {
    incremental_on(client, TOPIC, name, ops)
}

fn incremental_on(
    client: &mut Client,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> (i16, String) {
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(
                ops.iter()
                    .map(|(k, op, v)| {
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s(k))
                            .with_config_operation(*op)
                            .with_value(v.map(s))
                    })
                    .collect(),
            ),
    ]);
    let r = &client.send(&request, 1).responses[0];
    (
        r.error_code,
        r.error_message.as_deref().unwrap_or("").to_string(),
    )
}

fn segment_files(broker: &Broker, topic: &str) -> usize {
    std::fs::read_dir(broker.data_dir().join(format!("{topic}-0")))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .ends_with(".log")
        })
        .count()
}

#[test]
fn config_changes_persist_and_reach_the_running_log() {
    let mut broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic("tuned", 1);
    assert_eq!(
        alter(
            &mut client,
            TOPIC,
            "tuned",
            &[("retention.ms", "3600000")],
            true
        )
        .0,
        0
    );
    assert_eq!(
        describe_topic_config(&mut client, "tuned", "retention.ms"),
        None
    );
    assert_eq!(
        alter(
            &mut client,
            TOPIC,
            "tuned",
            &[("retention.ms", "3600000")],
            false
        )
        .0,
        0
    );
    assert_eq!(
        describe_topic_config(&mut client, "tuned", "retention.ms").as_deref(),
        Some("3600000")
    );
    // Incremental: set a small segment size, drop the retention override.
    let (code, _) = incremental(
        &mut client,
        "tuned",
        &[
            ("segment.bytes", 0, Some("1048576")),
            ("retention.ms", 1, None),
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        describe_topic_config(&mut client, "tuned", "retention.ms"),
        None
    );
    assert_eq!(
        describe_topic_config(&mut client, "tuned", "segment.bytes").as_deref(),
        Some("1048576")
    );
    // The running log rolls at the new size.
    let value = "v".repeat(400_000);
    for _ in 0..4 {
        assert_eq!(client.produce("tuned", 0, batch(&[&value])).0, 0);
    }
    assert!(
        segment_files(&broker, "tuned") > 1,
        "no roll at segment.bytes=1048576"
    );
    // max.message.bytes applies at once too.
    assert_eq!(
        incremental(
            &mut client,
            "tuned",
            &[("max.message.bytes", 0, Some("1000"))]
        )
        .0,
        0
    );
    let (code, _) = client.produce("tuned", 0, batch(&[&"w".repeat(2000)]));
    assert_eq!(code, ResponseError::MessageTooLarge.code());
    assert_eq!(
        incremental(&mut client, "tuned", &[("max.message.bytes", 1, None)]).0,
        0
    );
    assert_eq!(client.produce("tuned", 0, batch(&[&"w".repeat(2000)])).0, 0);
    // Errors name the key.
    let (code, message) = incremental(&mut client, "tuned", &[("no.such.config", 0, Some("1"))]);
    assert_eq!(code, ResponseError::InvalidConfig.code());
    assert!(message.contains("no.such.config"), "{message}");
    let (code, message) = alter(
        &mut client,
        TOPIC,
        "tuned",
        &[("retention.ms", "soon")],
        false,
    );
    assert_eq!(code, ResponseError::InvalidConfig.code());
    assert!(message.contains("retention.ms"), "{message}");
    let (code, message) = alter(&mut client, BROKER, "", &[("log.dirs", "/tmp")], false);
    assert_eq!(code, ResponseError::InvalidConfig.code());
    assert!(message.contains("log.dirs"), "{message}");
    let (code, message) = alter(&mut client, BROKER, "", &[("bogus.key", "1")], false);
    assert_eq!(code, ResponseError::InvalidConfig.code());
    assert!(message.contains("bogus.key"), "{message}");
    assert_eq!(
        alter(
            &mut client,
            TOPIC,
            "missing",
            &[("retention.ms", "1")],
            false
        )
        .0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    // Failed requests changed nothing; the change outlives a restart.
    drop(client);
    broker.terminate();
    broker.launch();
    let mut client = broker.client();
    assert_eq!(
        describe_topic_config(&mut client, "tuned", "segment.bytes").as_deref(),
        Some("1048576")
    );
}

/// A broker config as DescribeConfigs shows it: (value, source code).
fn describe_broker_config(client: &mut Client, resource: &str, key: &str) -> (String, i8) {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(BROKER)
            .with_resource_name(s(resource))
            .with_configuration_keys(Some(vec![s(key)]))]);
    let response = client.send(&request, 4);
    let entry = &response.results[0].configs[0];
    (
        entry.value.as_deref().unwrap_or("").to_string(),
        entry.config_source,
    )
}

/// Kafka's config source codes.
const DYNAMIC_BROKER_CONFIG: i8 = 2;
const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
const STATIC_BROKER_CONFIG: i8 = 4;

#[test]
fn broker_configs_change_at_run_time() {
    let profile_dir = tempfile::tempdir().unwrap();
    // Keep everything until the run-time change; sweep often.
    let profile = common::write_profile(
        profile_dir.path(),
        "log.retention.ms: -1\nlog.retention.check.interval.ms: 50\n",
    );
    let mut broker = Broker::start(1, &["--config", profile.to_str().unwrap()]);
    let mut client = broker.client();
    // segment.ms 1 rolls at every append (records one second apart, all from 2023), so
    // every batch but the last sits in a closed segment retention may delete.
    let create = |client: &mut Client, name: &str, configs: &[(&str, &str)]| {
        let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(s(k))
                            .with_value(Some(s(v)))
                    })
                    .collect(),
            )]);
        assert_eq!(client.send(&request, 7).topics[0].error_code, 0);
        for i in 0..3 {
            let records = common::batch_at(common::BATCH_TIMESTAMP + i * 1_000, &["old"]);
            assert_eq!(client.produce(name, 0, records), (0, i));
        }
    };
    create(&mut client, "inherits", &[("segment.ms", "1")]);
    create(
        &mut client,
        "keeps",
        &[("segment.ms", "1"), ("retention.ms", "-1")],
    );

    // validate_only changes nothing.
    let change = [("log.retention.ms", "1000")];
    assert_eq!(alter(&mut client, BROKER, "1", &change, true).0, 0);
    assert_eq!(
        describe_broker_config(&mut client, "1", "log.retention.ms"),
        ("-1".to_string(), STATIC_BROKER_CONFIG)
    );
    assert_eq!(alter(&mut client, BROKER, "1", &change, false).0, 0);
    assert_eq!(
        describe_broker_config(&mut client, "1", "log.retention.ms"),
        ("1000".to_string(), DYNAMIC_BROKER_CONFIG)
    );
    // A topic without its own value inherits the new one.
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(s("inherits"))
            .with_configuration_keys(Some(vec![s("retention.ms")]))]);
    let entry = client.send(&request, 4).results[0].configs[0].clone();
    assert_eq!(entry.value.as_deref(), Some("1000"));

    // Retention now deletes the old segments of the inheriting topic, not of the other.
    let deadline = Instant::now() + common::PATIENCE;
    while client.fetch("inherits", 0, 2, 0).log_start_offset == 0 {
        assert!(
            Instant::now() < deadline,
            "retention never ran:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let kept = client.fetch("keeps", 0, 0, 0);
    assert_eq!((kept.error_code, kept.log_start_offset), (0, 0));

    // The cluster-wide default resource, through IncrementalAlterConfigs.
    let set_bytes = [("log.retention.bytes", 0, Some("50000000"))];
    assert_eq!(incremental_on(&mut client, BROKER, "", &set_bytes).0, 0);
    assert_eq!(
        describe_broker_config(&mut client, "", "log.retention.bytes"),
        ("50000000".to_string(), DYNAMIC_DEFAULT_BROKER_CONFIG)
    );

    // Bad values and keys that need a restart are refused naming the key.
    for (key, value) in [
        ("log.retention.ms", "soon"),
        ("log.segment.bytes", "10"),
        ("log.dirs", "/tmp"),
        ("no.such.key", "1"),
    ] {
        let (code, message) = incremental_on(&mut client, BROKER, "1", &[(key, 0, Some(value))]);
        assert_eq!(
            code,
            ResponseError::InvalidConfig.code(),
            "{key}: {message}"
        );
        assert!(message.contains(key), "{message}");
    }
    assert_eq!(
        alter(&mut client, BROKER, "7", &change, false).0,
        ResponseError::InvalidRequest.code()
    );

    // The changes outlive a restart; a delete puts the profile's value back.
    drop(client);
    broker.terminate();
    broker.launch();
    let mut client = broker.client();
    assert_eq!(
        describe_broker_config(&mut client, "1", "log.retention.ms"),
        ("1000".to_string(), DYNAMIC_BROKER_CONFIG)
    );
    assert_eq!(
        describe_broker_config(&mut client, "1", "log.retention.bytes"),
        ("50000000".to_string(), DYNAMIC_DEFAULT_BROKER_CONFIG)
    );
    let delete = [("log.retention.ms", 1, None)];
    assert_eq!(incremental_on(&mut client, BROKER, "1", &delete).0, 0);
    assert_eq!(
        describe_broker_config(&mut client, "1", "log.retention.ms"),
        ("-1".to_string(), STATIC_BROKER_CONFIG)
    );
    let kept = client.fetch("keeps", 0, 0, 0);
    assert_eq!((kept.error_code, kept.log_start_offset), (0, 0));
}

#[test]
fn describe_cluster_and_log_dirs() {
    let broker = Broker::start(2, &[]);
    let mut client = broker.client();
    let cluster = client.send(&DescribeClusterRequest::default().with_endpoint_type(1), 1);
    assert_eq!(cluster.error_code, 0);
    // The controller draws the id once, in Kafka's form (22 characters of base64).
    assert_eq!(cluster.cluster_id.len(), 22);
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.brokers[0].port, broker.port as i32);
    assert_eq!(cluster.controller_id, cluster.brokers[0].broker_id);
    let controllers = client.send(&DescribeClusterRequest::default().with_endpoint_type(2), 1);
    assert_eq!(
        controllers.error_code,
        ResponseError::UnsupportedEndpointType.code()
    );

    client.create_topic("sized", 2);
    client.produce("sized", 1, batch(&["some bytes"]));
    let dirs = client.send(&DescribeLogDirsRequest::default().with_topics(None), 4);
    assert_eq!(dirs.results.len(), 1);
    let dir = &dirs.results[0];
    assert_eq!(dir.error_code, 0);
    let topic = dir
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == "sized")
        .unwrap();
    let mut sizes: Vec<(i32, i64)> = topic
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.partition_size))
        .collect();
    sizes.sort();
    assert_eq!(sizes[0], (0, 0));
    assert_eq!(sizes[1].0, 1);
    assert!(sizes[1].1 > 0);
    let one = client.send(
        &DescribeLogDirsRequest::default().with_topics(Some(vec![
            DescribableLogDirTopic::default()
                .with_topic(topic_name("sized"))
                .with_partitions(vec![1, 9]),
        ])),
        4,
    );
    let partitions = &one.results[0].topics[0].partitions;
    assert_eq!(partitions.len(), 1);
    assert_eq!(partitions[0].partition_index, 1);
}

fn epoch_end(
    client: &mut Client,
    topic: &str,
    partition: i32,
    epoch: i32,
    current: i32,
) -> (i16, i32, i64) {
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(current)
                .with_leader_epoch(epoch)])]);
    let p = &client.send(&request, 4).topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}

#[test]
fn offset_for_leader_epoch_reads_the_epoch_cache() {
    let broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic("epochs", 1);
    client.produce("epochs", 0, batch(&["a", "b", "c"]));
    assert_eq!(epoch_end(&mut client, "epochs", 0, 0, -1), (0, 0, 3));
    // An epoch above every known one is undefined, as in Kafka's `endOffsetFor`.
    assert_eq!(epoch_end(&mut client, "epochs", 0, 5, 0), (0, -1, -1));
    assert_eq!(
        epoch_end(&mut client, "epochs", 0, 0, 7).0,
        ResponseError::UnknownLeaderEpoch.code()
    );
    assert_eq!(
        epoch_end(&mut client, "epochs", 4, 0, -1).0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    client.create_topic("empty", 1);
    assert_eq!(epoch_end(&mut client, "empty", 0, 0, -1), (0, -1, -1));
}

fn idempotent_batch(id: i64, seq: i32) -> Bytes {
    idempotent_batch_at(id, seq, common::BATCH_TIMESTAMP)
}

fn idempotent_batch_at(id: i64, seq: i32, timestamp: i64) -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: id,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: seq,
        timestamp,
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
    buf.freeze()
}

#[test]
fn describe_producers_lists_idempotent_producers() {
    let broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic("producers", 2);
    let init = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let id = client.send(&init, 4).producer_id.0;
    for seq in 0..3 {
        assert_eq!(
            client.produce("producers", 1, idempotent_batch(id, seq)).0,
            0
        );
    }
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(topic_name("producers"))
        .with_partition_indexes(vec![0, 1, 5])]);
    let response = client.send(&request, 0);
    let partitions = &response.topics[0].partitions;
    assert_eq!(partitions[0].error_code, 0);
    assert!(partitions[0].active_producers.is_empty());
    assert_eq!(partitions[1].error_code, 0);
    let p = &partitions[1].active_producers[0];
    assert_eq!(
        (p.producer_id.0, p.producer_epoch, p.last_sequence),
        (id, 0, 2)
    );
    assert_eq!(p.last_timestamp, common::BATCH_TIMESTAMP);
    assert_eq!(
        partitions[2].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

fn producer_ids(client: &mut Client, topic: &str) -> Vec<i64> {
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(topic_name(topic))
        .with_partition_indexes(vec![0])]);
    let response = client.send(&request, 0);
    let mut ids: Vec<i64> = response.topics[0].partitions[0]
        .active_producers
        .iter()
        .map(|p| p.producer_id.0)
        .collect();
    ids.sort();
    ids
}

#[test]
fn producer_id_expiration_ms_reaches_every_partition() {
    // An hour's expiration forgets a producer last seen two hours ago; the one-day default
    // would keep it.
    let profile_dir = tempfile::tempdir().unwrap();
    let profile = common::write_profile(
        profile_dir.path(),
        "producer.id.expiration.ms: 3600000\nlog.retention.check.interval.ms: 20\n",
    );
    let broker = Broker::start(2, &["--config", profile.to_str().unwrap()]);
    let mut client = broker.client();
    client.create_topic("expiring", 1);
    let init = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let stale = client.send(&init, 4).producer_id.0;
    let fresh = client.send(&init, 4).producer_id.0;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let two_hours_ago = idempotent_batch_at(stale, 0, now - 2 * 3_600_000);
    assert_eq!(client.produce("expiring", 0, two_hours_ago).0, 0);
    assert_eq!(
        client
            .produce("expiring", 0, idempotent_batch_at(fresh, 0, now))
            .0,
        0
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while producer_ids(&mut client, "expiring").contains(&stale) {
        assert!(
            std::time::Instant::now() < deadline,
            "producer {stale} was never expired"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(producer_ids(&mut client, "expiring"), vec![fresh]);
}

#[test]
fn elect_leaders_is_never_needed_on_one_broker() {
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    client.create_topic("led", 2);
    let request = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(topic_name("led"))
            .with_partitions(vec![0, 1, 2])]))
        .with_timeout_ms(10_000);
    let response = client.send(&request, 2);
    let results = &response.replica_election_results[0].partition_result;
    let codes: Vec<i16> = results.iter().map(|r| r.error_code).collect();
    let not_needed = ResponseError::ElectionNotNeeded.code();
    assert_eq!(
        codes,
        vec![
            not_needed,
            not_needed,
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );
    let all = client.send(&request.clone().with_topic_partitions(None), 2);
    assert_eq!(all.error_code, 0);
    assert!(all.replica_election_results.is_empty());
}
