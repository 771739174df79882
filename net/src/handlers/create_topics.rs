//! CreateTopics: name, partition count, replicas and configs are checked here; the
//! controller places the replicas (or takes the client's assignment) and commits the topic,
//! and the answer goes out once this broker has applied it. A replication factor above the
//! number of live brokers is INVALID_REPLICATION_FACTOR.

use std::collections::HashSet;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_core::topic_config::TopicConfig;
use spate_shard::topics::TopicInfo;
use spate_shard::{NewReplicas, NewTopic, TopicError};

use super::Context;

/// CreateTopics' "use the broker default" for partitions and replication factor.
const USE_DEFAULT: i32 = -1;
/// The first version that echoes partitions, replication factor and configs.
const DETAILS_VERSION: i16 = 5;
/// The first version that returns the new topic's id.
const TOPIC_ID_VERSION: i16 = 7;

pub async fn handle(ctx: &Context, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<_> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    // Checked topics go to the controller in one call; the others keep their error.
    let mut results: Vec<Result<NewTopic, TopicError>> = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        results.push(if duplicates.contains(topic.name.0.as_str()) {
            Err(TopicError {
                error: ResponseError::InvalidRequest,
                message: format!("topic {} is listed more than once", topic.name.0),
            })
        } else {
            check(ctx, topic)
        });
    }
    let to_create: Vec<NewTopic> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let mut created = ctx
        .shard
        .create_topics(to_create, request.validate_only)
        .await
        .into_iter();
    let topics = request
        .topics
        .into_iter()
        .zip(results)
        .map(|(topic, checked)| {
            let outcome = match checked {
                Ok(_) => created.next().unwrap_or_else(|| {
                    Err(TopicError {
                        error: ResponseError::UnknownServerError,
                        message: "the controller gave no answer".into(),
                    })
                }),
                Err(e) => Err(e),
            };
            topic_result(ctx, topic, outcome, ctx.version())
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn check(ctx: &Context, topic: &CreatableTopic) -> Result<NewTopic, TopicError> {
    let fail = |error, message: String| Err(TopicError { error, message });
    let config = ctx.shard.config();
    let factor = topic.replication_factor;
    let (partitions, replicas) = if topic.assignments.is_empty() {
        let factor = match i32::from(factor) {
            USE_DEFAULT => config.default_replication_factor,
            f if f >= 1 => factor,
            f => {
                return fail(
                    ResponseError::InvalidReplicationFactor,
                    format!(
                    "replication factor must be at least 1 (or -1 for the broker default), got {f}"
                ),
                )
            }
        };
        let partitions = match topic.num_partitions {
            USE_DEFAULT => config.num_partitions,
            n => n,
        };
        (partitions, NewReplicas::Factor(factor))
    } else {
        if topic.num_partitions != USE_DEFAULT || i32::from(factor) != USE_DEFAULT {
            return fail(
                ResponseError::InvalidRequest,
                "give either replica assignments or partitions and replication factor, not both"
                    .into(),
            );
        }
        let mut lists = Vec::with_capacity(topic.assignments.len());
        for (i, a) in topic.assignments.iter().enumerate() {
            if a.partition_index != i as i32 {
                return fail(
                    ResponseError::InvalidReplicaAssignment,
                    "assignments must list partitions 0, 1, ... in order".into(),
                );
            }
            lists.push(a.broker_ids.iter().map(|b| b.0).collect());
        }
        (lists.len() as i32, NewReplicas::Assigned(lists))
    };
    let config = TopicConfig::from_pairs(
        topic
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
    )
    .map_err(|e| TopicError {
        error: e.kafka_error(),
        message: e.message,
    })?;
    Ok(NewTopic {
        name: topic.name.0.to_string(),
        partitions,
        replicas,
        config,
    })
}

fn topic_result(
    ctx: &Context,
    topic: CreatableTopic,
    outcome: Result<TopicInfo, TopicError>,
    version: i16,
) -> CreatableTopicResult {
    let result = CreatableTopicResult::default().with_name(topic.name);
    match outcome {
        Ok(_) if version < DETAILS_VERSION => result,
        Ok(info) => {
            let configs = info
                .config
                .describe(&ctx.shard.effective_config())
                .into_iter()
                .map(|e| {
                    CreatableTopicConfigs::default()
                        .with_name(StrBytes::from_static_str(e.name))
                        .with_value(Some(StrBytes::from_string(e.value)))
                        .with_read_only(e.read_only)
                        .with_config_source(e.source.code())
                        .with_is_sensitive(e.sensitive)
                })
                .collect();
            let factor = info.assignment(0).map_or(0, |a| a.replicas.len());
            let result = result
                .with_num_partitions(info.partitions)
                .with_replication_factor(i16::try_from(factor).unwrap_or(i16::MAX))
                .with_configs(Some(configs));
            if version >= TOPIC_ID_VERSION {
                result.with_topic_id(info.id)
            } else {
                result
            }
        }
        Err(e) => result
            .with_error_code(e.error.code())
            .with_error_message(Some(StrBytes::from_string(e.message)))
            .with_configs(None),
    }
}
