//! ElectLeaders: with a single broker every partition's leader is its one (and preferred)
//! replica, so a named partition gets ELECTION_NOT_NEEDED, an unknown one
//! UNKNOWN_TOPIC_OR_PARTITION. Asked for all partitions (a null list), Kafka reports only
//! the partitions it elected or failed to; here that is none.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::Context;

/// Kafka's election types: preferred (0) and unclean (1).
const UNCLEAN: i8 = 1;

pub fn handle(ctx: &Context, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let table = ctx.shard.topics();
    let kind = match request.election_type {
        UNCLEAN => "unclean",
        _ => "preferred",
    };
    let results = request
        .topic_partitions
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let known = table.get(&t.topic.0).map(|info| info.partitions);
            let partitions = t
                .partitions
                .iter()
                .map(|&p| {
                    let result = PartitionResult::default().with_partition_id(p);
                    let (error, message) = match known {
                        Some(count) if p >= 0 && p < count => (
                            ResponseError::ElectionNotNeeded,
                            format!(
                                "{kind} election not needed: {}-{p} is led by its only replica",
                                t.topic.0
                            ),
                        ),
                        _ => (
                            ResponseError::UnknownTopicOrPartition,
                            format!("{}-{p} does not exist", t.topic.0),
                        ),
                    };
                    result
                        .with_error_code(error.code())
                        .with_error_message(Some(StrBytes::from_string(message)))
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(t.topic)
                .with_partition_result(partitions)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}
