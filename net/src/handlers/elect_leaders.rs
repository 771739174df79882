//! ElectLeaders (KIP-460): the controller makes each named partition's preferred replica
//! its leader (or, for an unclean election, gives a leaderless partition any live replica)
//! and answers per partition: elected, ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE,
//! ELIGIBLE_LEADERS_NOT_AVAILABLE or UNKNOWN_TOPIC_OR_PARTITION. Asked for every partition
//! (a null list), it reports only those that got a new leader, as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Context;

/// Kafka's election types: preferred (0) and unclean (1).
const UNCLEAN: i8 = 1;

pub async fn handle(ctx: &Context, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let named: Option<Vec<(String, i32)>> = request.topic_partitions.map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.0.to_string(), p)))
            .collect()
    });
    // (topic, partition, error code, message)
    let results: Vec<(String, i32, i16, Option<String>)> = match ctx
        .shard
        .elect_leaders(request.election_type == UNCLEAN, named.clone())
        .await
    {
        Ok(elections) => elections
            .into_iter()
            .map(|e| {
                let (code, message) = e.refusal.map_or((0, None), |r| (r.code, Some(r.message)));
                (e.topic, e.partition, code, message)
            })
            .collect(),
        // The whole request failed (no controller, timed out): every named partition says so.
        Err(e) => named
            .unwrap_or_default()
            .into_iter()
            .map(|(topic, partition)| (topic, partition, e.error.code(), Some(e.message.clone())))
            .collect(),
    };
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for (topic, partition, code, message) in results {
        by_topic.entry(topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(partition)
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string)),
        );
    }
    let results = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            ReplicaElectionResult::default()
                .with_topic(TopicName(StrBytes::from_string(topic)))
                .with_partition_result(partitions)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}
