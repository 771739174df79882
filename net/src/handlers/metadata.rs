//! Metadata: the live brokers, topics with their ids and partitions (leader, leader epoch,
//! replicas, ISR, offline replicas), all from the shard's topic table. Unknown topics are
//! created when the client allows it and `auto.create.topics.enable` is set.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_shard::controller::image::{PartitionAssignment, NO_LEADER};
use spate_shard::group_coordinator::OFFSETS_TOPIC;
use spate_shard::topics::{TopicInfo, TopicTable};
use spate_shard::{NewReplicas, NewTopic};
use uuid::Uuid;

use super::Context;

/// Kafka's "authorized operations not requested" value.
const OPERATIONS_OMITTED: i32 = i32::MIN;
/// The first versions that carry each field.
const CONTROLLER_ID_VERSION: i16 = 1;
const CLUSTER_ID_VERSION: i16 = 2;
const LEADER_EPOCH_VERSION: i16 = 7;
const TOPIC_IDS_VERSION: i16 = 10;

pub async fn handle(ctx: &Context, request: MetadataRequest) -> MetadataResponse {
    let config = ctx.shard.config();
    // Before v4 there is no flag and Kafka always auto-creates.
    let allow_create =
        (ctx.version() < 4 || request.allow_auto_topic_creation) && config.auto_create_topics;
    let topics = match request.topics {
        // v0 sends an empty list for "all topics"; v1+ sends null.
        None => all_topics(ctx),
        Some(topics) if topics.is_empty() && ctx.version() == 0 => all_topics(ctx),
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
    // Read after any auto-creation, so the brokers match the topics' latest table.
    let table = ctx.shard.topics();
    let mut response = MetadataResponse::default()
        .with_brokers(alive_brokers(&table))
        .with_topics(topics);
    if ctx.version() >= CONTROLLER_ID_VERSION {
        // As a KRaft broker does: clients cannot reach the controllers, so admin requests
        // go to a broker (this one), which forwards them.
        response = response.with_controller_id(BrokerId(config.node_id));
    }
    if ctx.version() >= CLUSTER_ID_VERSION {
        response =
            response.with_cluster_id(Some(StrBytes::from_string(table.cluster_id().to_string())));
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

/// The unfenced brokers: Kafka leaves fenced ones out of Metadata.
fn alive_brokers(table: &TopicTable) -> Vec<MetadataResponseBroker> {
    table
        .brokers()
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.clone().map(StrBytes::from_string))
        })
        .collect()
}

fn all_topics(ctx: &Context) -> Vec<MetadataResponseTopic> {
    let table = ctx.shard.topics();
    table.iter().map(|t| topic_metadata(t, &table)).collect()
}

async fn requested_topic(
    ctx: &Context,
    name: Option<String>,
    id: Uuid,
    allow_create: bool,
) -> MetadataResponseTopic {
    let table = ctx.shard.topics();
    let Some(name) = name else {
        return match table.get_by_id(id) {
            Some(topic) => topic_metadata(topic, &table),
            None => error_topic(None, id, ResponseError::UnknownTopicId),
        };
    };
    if let Some(topic) = table.get(&name) {
        return topic_metadata(topic, &table);
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
        replicas: NewReplicas::Factor(ctx.shard.config().default_replication_factor),
        config: Default::default(),
    };
    match ctx.shard.create_topics(vec![new], false).await.pop() {
        Some(Ok(topic)) => topic_metadata(&topic, &ctx.shard.topics()),
        // Another client created it first.
        Some(Err(e)) if e.error == ResponseError::TopicAlreadyExists => {
            let table = ctx.shard.topics();
            match table.get(&name) {
                Some(topic) => topic_metadata(topic, &table),
                None => error_topic(Some(name), Uuid::nil(), ResponseError::LeaderNotAvailable),
            }
        }
        Some(Err(e)) => error_topic(Some(name), Uuid::nil(), e.error),
        None => error_topic(Some(name), Uuid::nil(), ResponseError::UnknownServerError),
    }
}

fn topic_metadata(topic: &TopicInfo, table: &TopicTable) -> MetadataResponseTopic {
    let partitions = (0..)
        .zip(&topic.assignments)
        .map(|(index, assignment)| partition_metadata(index, assignment, table))
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name == OFFSETS_TOPIC)
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_OMITTED)
}

/// One partition as the table has it. A partition without a live leader answers
/// LEADER_NOT_AVAILABLE with leader -1, so clients refresh their metadata and retry.
fn partition_metadata(
    index: i32,
    assignment: &PartitionAssignment,
    table: &TopicTable,
) -> MetadataResponsePartition {
    let ids = |nodes: &[i32]| nodes.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let leader_alive = assignment.leader != NO_LEADER && table.is_alive(assignment.leader);
    let partition = MetadataResponsePartition::default()
        .with_partition_index(index)
        .with_leader_epoch(assignment.leader_epoch)
        .with_replica_nodes(ids(&assignment.replicas))
        .with_isr_nodes(ids(&assignment.isr))
        .with_offline_replicas(ids(&table.offline_replicas(assignment)));
    if leader_alive {
        partition.with_leader_id(BrokerId(assignment.leader))
    } else {
        partition
            .with_error_code(ResponseError::LeaderNotAvailable.code())
            .with_leader_id(BrokerId(NO_LEADER))
    }
}

fn error_topic(name: Option<String>, id: Uuid, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
        .with_topic_id(id)
        .with_topic_authorized_operations(OPERATIONS_OMITTED)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use spate_core::config::BrokerConfig;
    use spate_shard::topics::local_broker;

    use super::*;

    fn table_with(alive: &[i32], fenced: &[i32]) -> TopicTable {
        let broker = |id, is_fenced| {
            let mut b = local_broker(&BrokerConfig {
                node_id: id,
                ..BrokerConfig::default()
            });
            b.fenced = is_fenced;
            (id, b)
        };
        let brokers: BTreeMap<_, _> = alive
            .iter()
            .map(|id| broker(*id, false))
            .chain(fenced.iter().map(|id| broker(*id, true)))
            .collect();
        TopicTable::default().with_brokers("c".into(), brokers)
    }

    #[test]
    fn partitions_carry_leader_epoch_replicas_isr_and_offline_replicas() {
        let table = table_with(&[1, 2], &[3]);
        let assignment = PartitionAssignment {
            replicas: vec![2, 3, 4, 1],
            isr: vec![2, 1],
            leader: 2,
            leader_epoch: 5,
            partition_epoch: 9,
        };
        let p = partition_metadata(7, &assignment, &table);
        assert_eq!(p.error_code, 0);
        assert_eq!(p.partition_index, 7);
        assert_eq!(p.leader_id, BrokerId(2));
        assert_eq!(p.leader_epoch, 5);
        assert_eq!(p.replica_nodes, [2, 3, 4, 1].map(BrokerId).to_vec());
        assert_eq!(p.isr_nodes, [2, 1].map(BrokerId).to_vec());
        // 3 is fenced, 4 never registered.
        assert_eq!(p.offline_replicas, [3, 4].map(BrokerId).to_vec());
    }

    #[test]
    fn a_partition_without_a_live_leader_is_not_available() {
        let table = table_with(&[1], &[2]);
        let mut assignment = PartitionAssignment {
            replicas: vec![1, 2],
            isr: vec![2],
            leader: NO_LEADER,
            leader_epoch: 3,
            partition_epoch: 3,
        };
        let p = partition_metadata(0, &assignment, &table);
        assert_eq!(p.error_code, ResponseError::LeaderNotAvailable.code());
        assert_eq!(p.leader_id, BrokerId(NO_LEADER));
        assert_eq!(p.offline_replicas, vec![BrokerId(2)]);
        // A leader whose broker is fenced cannot be reached either.
        assignment.leader = 2;
        let p = partition_metadata(0, &assignment, &table);
        assert_eq!(p.error_code, ResponseError::LeaderNotAvailable.code());
        assert_eq!(p.leader_id, BrokerId(NO_LEADER));
    }

    #[test]
    fn only_unfenced_brokers_are_listed() {
        let table = table_with(&[1, 3], &[2]);
        let ids: Vec<_> = alive_brokers(&table).iter().map(|b| b.node_id).collect();
        assert_eq!(ids, vec![BrokerId(1), BrokerId(3)]);
    }
}
