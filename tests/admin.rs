//! Topic administration and discovery: ApiVersions, Metadata (auto-create, topic ids),
//! CreateTopics, DeleteTopics, DescribeConfigs.

mod common;

use common::{batch, topic_name, Broker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiVersionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    MetadataRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

fn create(
    name: &str,
    partitions: i32,
    replication: i16,
    configs: &[(&str, &str)],
) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(replication)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        )
}

fn metadata(
    client: &mut common::Client,
    topic: &str,
    auto_create: bool,
) -> kafka_protocol::messages::MetadataResponse {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(auto_create);
    client.send(&request, 12)
}

#[test]
fn api_versions_lists_the_served_apis_in_every_version() {
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    for version in 0..=4 {
        let response = client.send(&ApiVersionsRequest::default(), version);
        assert_eq!(response.error_code, 0);
        let keys: Vec<i16> = response.api_keys.iter().map(|k| k.api_key).collect();
        // Produce, Fetch, ListOffsets, Metadata, the group APIs, ApiVersions, CreateTopics,
        // DeleteTopics, DescribeConfigs.
        for key in [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18, 19, 20, 32] {
            assert!(keys.contains(&key), "v{version} lacks api key {key}");
        }
        // Transactions are not served: AddPartitionsToTxn and EndTxn stay unadvertised.
        for key in [24, 26] {
            assert!(!keys.contains(&key), "v{version} advertises api key {key}");
        }
    }
}

#[test]
fn metadata_auto_creates_only_when_allowed() {
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    let response = metadata(&mut client, "not-yet", false);
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );

    let response = metadata(&mut client, "auto", true);
    let topic = &response.topics[0];
    assert_eq!(topic.error_code, 0);
    assert_eq!(topic.partitions.len(), 1);
    assert!(!topic.topic_id.is_nil());
    assert_eq!(response.brokers[0].port, i32::from(broker.port));
    assert_eq!(client.produce("auto", 0, batch(&["hello"])), (0, 0));
}

#[test]
fn create_topics_checks_like_kafka() {
    let broker = Broker::start(2, &[]);
    let mut client = broker.client();
    let request = CreateTopicsRequest::default().with_topics(vec![
        create("good", 4, 1, &[("retention.ms", "60000")]),
        create("replicated", 1, 3, &[]),
        create("bad name!", 1, 1, &[]),
        create("bad-config", 1, 1, &[("no.such.config", "1")]),
        create("no-partitions", 0, 1, &[]),
    ]);
    let codes: Vec<i16> = client
        .send(&request, 7)
        .topics
        .iter()
        .map(|t| t.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![
            0,
            ResponseError::InvalidReplicationFactor.code(),
            ResponseError::InvalidTopicException.code(),
            ResponseError::InvalidConfig.code(),
            ResponseError::InvalidPartitions.code(),
        ]
    );
    let again = CreateTopicsRequest::default().with_topics(vec![create("good", 4, 1, &[])]);
    assert_eq!(
        client.send(&again, 7).topics[0].error_code,
        ResponseError::TopicAlreadyExists.code()
    );

    let dry_run = CreateTopicsRequest::default()
        .with_topics(vec![create("dry-run", 2, 1, &[])])
        .with_validate_only(true);
    assert_eq!(client.send(&dry_run, 7).topics[0].error_code, 0);
    let response = metadata(&mut client, "dry-run", false);
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );

    // The override shows in DescribeConfigs as a topic setting.
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("good"))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("retention.ms")]))]);
    let response = client.send(&request, 4);
    let entry = &response.results[0].configs[0];
    assert_eq!(entry.value.as_deref(), Some("60000"));
    assert_eq!(entry.config_source, 1);
}

#[test]
fn delete_topics_removes_data_and_names() {
    let broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic("doomed", 3);
    client.produce("doomed", 0, batch(&["bye"]));
    let id = metadata(&mut client, "doomed", false).topics[0].topic_id;
    assert!(broker.data_dir().join("doomed-2").exists());

    // v6 deletes by id; v1 by name answers UNKNOWN_TOPIC_OR_PARTITION for a missing topic.
    let request = DeleteTopicsRequest::default()
        .with_topics(vec![DeleteTopicState::default().with_topic_id(id)]);
    let response = client.send(&request, 6);
    assert_eq!(response.responses[0].error_code, 0);
    for p in 0..3 {
        assert!(!broker.data_dir().join(format!("doomed-{p}")).exists());
    }
    let response = metadata(&mut client, "doomed", false);
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let request = DeleteTopicsRequest::default().with_topic_names(vec![topic_name("doomed")]);
    let response = client.send(&request, 1);
    assert_eq!(
        response.responses[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );

    // The name can be used again, from offset 0.
    client.create_topic("doomed", 1);
    assert_eq!(client.produce("doomed", 0, batch(&["again"])), (0, 0));
}

#[test]
fn init_producer_id_hands_out_distinct_ids_and_refuses_transactions() {
    use kafka_protocol::messages::{InitProducerIdRequest, ProducerId, TransactionalId};
    let broker = Broker::start(2, &[]);
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..4 {
        // Fresh connections land on either shard.
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response = broker.client().send(&request, 4);
        assert_eq!(response.error_code, 0);
        assert!(response.producer_id.0 >= 0);
        assert_eq!(response.producer_epoch, 0);
        ids.insert(response.producer_id.0);
    }
    assert_eq!(ids.len(), 4);
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = broker.client().send(&request, 4);
    assert_ne!(response.error_code, 0);
}
