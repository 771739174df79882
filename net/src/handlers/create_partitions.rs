//! CreatePartitions: adds partitions to existing topics (never removes any, as in Kafka).
//! The controller writes the new partition directories and publishes the table; the owner
//! shards open the new partitions. `validate_only` checks without changing anything.

use std::collections::HashSet;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_shard::partition_admin::TopicChange;
use spate_shard::TopicError;

use super::Context;

pub async fn handle(ctx: &Context, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let node_id = ctx.shard.config().node_id;
    let mut seen = HashSet::new();
    // Per topic: the change to make, or why not.
    let checked: Vec<(String, Result<TopicChange, TopicError>)> = request
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let fail = |error, message: String| Err(TopicError { error, message });
            let outcome = if !seen.insert(name.clone()) {
                fail(
                    ResponseError::InvalidRequest,
                    format!("topic {name} appears more than once in the request"),
                )
            } else if let Some(bad) = t
                .assignments
                .iter()
                .flatten()
                .flat_map(|a| a.broker_ids.iter())
                .find(|b| b.0 != node_id)
            {
                fail(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "broker {} does not exist; this cluster is broker {node_id} alone",
                        bad.0
                    ),
                )
            } else {
                Ok(TopicChange::Partitions {
                    topic: name.clone(),
                    count: t.count,
                })
            };
            (name, outcome)
        })
        .collect();
    let changes: Vec<TopicChange> = checked
        .iter()
        .filter_map(|(_, c)| c.as_ref().ok().cloned())
        .collect();
    let mut outcomes = ctx
        .shard
        .change_topics(changes, request.validate_only)
        .await
        .into_iter();
    let results = checked
        .into_iter()
        .map(|(name, checked)| {
            let outcome = match checked {
                Ok(_) => outcomes.next().unwrap_or(Err(TopicError {
                    error: ResponseError::UnknownServerError,
                    message: "the controller gave no answer".into(),
                })),
                Err(e) => Err(e),
            };
            let result = CreatePartitionsTopicResult::default().with_name(
                kafka_protocol::messages::TopicName(StrBytes::from_string(name)),
            );
            match outcome {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(e.error.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
