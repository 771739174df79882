//! Metadata: brokers (just this one), topics with their ids and partitions. Unknown topics
//! are created when the client allows it and `auto.create.topics.enable` is set.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_shard::topics::TopicInfo;
use spate_shard::NewTopic;
use uuid::Uuid;

use super::Context;

/// The cluster id a single Spate broker reports.
pub const CLUSTER_ID: &str = "spate";
/// Kafka's "authorized operations not requested" value.
const OPERATIONS_OMITTED: i32 = i32::MIN;
/// The first versions that carry each field.
const CONTROLLER_ID_VERSION: i16 = 1;
const CLUSTER_ID_VERSION: i16 = 2;
const LEADER_EPOCH_VERSION: i16 = 7;
const TOPIC_IDS_VERSION: i16 = 10;

pub async fn handle(ctx: &Context, request: MetadataRequest) -> MetadataResponse {
    let config = ctx.shard.config();
    let node_id = config.node_id;
    // Before v4 there is no flag and Kafka always auto-creates.
    let allow_create =
        (ctx.version() < 4 || request.allow_auto_topic_creation) && config.auto_create_topics;
    let topics = match request.topics {
        // v0 sends an empty list for "all topics"; v1+ sends null.
        None => all_topics(ctx, node_id),
        Some(topics) if topics.is_empty() && ctx.version() == 0 => all_topics(ctx, node_id),
        Some(topics) => {
            let mut out = Vec::with_capacity(topics.len());
            for topic in topics {
                out.push(
                    requested_topic(
                        ctx,
                        topic.name.map(|n| n.0.to_string()),
                        topic.topic_id,
                        allow_create,
                    )
                    .await,
                );
            }
            out
        }
    };
    let (host, port) = advertised_address(config);
    let mut response = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(node_id))
            .with_host(StrBytes::from_string(host))
            .with_port(port)])
        .with_topics(topics);
    if ctx.version() >= CONTROLLER_ID_VERSION {
        response = response.with_controller_id(BrokerId(node_id));
    }
    if ctx.version() >= CLUSTER_ID_VERSION {
        response = response.with_cluster_id(Some(StrBytes::from_static_str(CLUSTER_ID)));
    }
    if ctx.version() < TOPIC_IDS_VERSION {
        for topic in &mut response.topics {
            topic.topic_id = Uuid::nil();
        }
    }
    if ctx.version() < LEADER_EPOCH_VERSION {
        for partition in response
            .topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            partition.leader_epoch = -1;
        }
    }
    response
}

fn all_topics(ctx: &Context, node_id: i32) -> Vec<MetadataResponseTopic> {
    ctx.shard
        .topics()
        .iter()
        .map(|t| topic_metadata(t, node_id))
        .collect()
}

async fn requested_topic(
    ctx: &Context,
    name: Option<String>,
    id: Uuid,
    allow_create: bool,
) -> MetadataResponseTopic {
    let node_id = ctx.shard.config().node_id;
    let table = ctx.shard.topics();
    let Some(name) = name else {
        return match table.get_by_id(id) {
            Some(topic) => topic_metadata(topic, node_id),
            None => error_topic(None, id, ResponseError::UnknownTopicId),
        };
    };
    if let Some(topic) = table.get(&name) {
        return topic_metadata(topic, node_id);
    }
    if !allow_create {
        return error_topic(
            Some(name),
            Uuid::nil(),
            ResponseError::UnknownTopicOrPartition,
        );
    }
    let new = NewTopic {
        name: name.clone(),
        partitions: ctx.shard.config().num_partitions,
        config: Default::default(),
    };
    match ctx.shard.create_topics(vec![new], false).await.pop() {
        Some(Ok(topic)) => topic_metadata(&topic, node_id),
        // Another client created it first.
        Some(Err(e)) if e.error == ResponseError::TopicAlreadyExists => {
            match ctx.shard.topics().get(&name) {
                Some(topic) => topic_metadata(topic, node_id),
                None => error_topic(Some(name), Uuid::nil(), ResponseError::LeaderNotAvailable),
            }
        }
        Some(Err(e)) => error_topic(Some(name), Uuid::nil(), e.error),
        None => error_topic(Some(name), Uuid::nil(), ResponseError::UnknownServerError),
    }
}

fn topic_metadata(topic: &TopicInfo, node_id: i32) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(node_id))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(node_id)])
                .with_isr_nodes(vec![BrokerId(node_id)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_OMITTED)
}

fn error_topic(name: Option<String>, id: Uuid, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
        .with_topic_id(id)
        .with_topic_authorized_operations(OPERATIONS_OMITTED)
}

/// `advertised.listeners`, else `listeners`, split into host and port. A wildcard bind
/// address (`0.0.0.0`, `::`) cannot be connected to from elsewhere: like Kafka, advertise
/// the machine's host name instead.
pub fn advertised_address(config: &spate_core::config::BrokerConfig) -> (String, i32) {
    let address = config
        .advertised_listen
        .as_deref()
        .unwrap_or(&config.listen);
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse().unwrap_or(0),
        ),
        None => (address, 0),
    };
    let host = match host {
        "" | "0.0.0.0" | "::" => host_name(),
        host => host.to_string(),
    };
    (host, port)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_core::config::BrokerConfig;

    #[test]
    fn advertises_the_listener_or_the_host_name_for_a_wildcard() {
        let mut config = BrokerConfig {
            listen: "127.0.0.1:9092".into(),
            ..BrokerConfig::default()
        };
        assert_eq!(advertised_address(&config), ("127.0.0.1".into(), 9092));
        config.listen = "0.0.0.0:9093".into();
        let (host, port) = advertised_address(&config);
        assert_eq!(port, 9093);
        assert!(!host.is_empty() && host != "0.0.0.0");
        config.advertised_listen = Some("[::1]:19092".into());
        assert_eq!(advertised_address(&config), ("::1".into(), 19092));
    }
}
