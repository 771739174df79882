//! DeleteTopics: by name (v1-5) or by name or id (v6). The controller shard drops the topics
//! from the table and each owner shard deletes its partitions' directories.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::Context;

/// From v6 on, topics may be named by id.
const TOPIC_STATES_VERSION: i16 = 6;
/// The first version whose answers carry an error message.
const ERROR_MESSAGE_VERSION: i16 = 5;

pub async fn handle(ctx: &Context, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let table = ctx.shard.topics();
    // (name if the topic is known or was asked by name, id)
    let asked: Vec<(Option<String>, Uuid)> = if ctx.version() >= TOPIC_STATES_VERSION {
        request
            .topics
            .into_iter()
            .map(|t| match t.name {
                Some(name) => {
                    let id = table.get(&name.0).map_or(Uuid::nil(), |t| t.id);
                    (Some(name.0.to_string()), id)
                }
                None => (
                    table.get_by_id(t.topic_id).map(|t| t.name.clone()),
                    t.topic_id,
                ),
            })
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| {
                let id = table.get(&n.0).map_or(Uuid::nil(), |t| t.id);
                (Some(n.0.to_string()), id)
            })
            .collect()
    };
    let names: Vec<String> = asked.iter().filter_map(|(n, _)| n.clone()).collect();
    let mut outcomes = ctx.shard.delete_topics(names).await.into_iter();
    let responses = asked
        .into_iter()
        .map(|(name, id)| {
            let mut result = DeletableTopicResult::default()
                .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))));
            if ctx.version() >= TOPIC_STATES_VERSION {
                result = result.with_topic_id(id);
            }
            let outcome = match name {
                Some(_) => outcomes.next().unwrap_or(Err(spate_shard::TopicError {
                    error: ResponseError::UnknownServerError,
                    message: "the controller gave no answer".into(),
                })),
                None => Err(spate_shard::TopicError {
                    error: ResponseError::UnknownTopicId,
                    message: format!("no topic has id {id}"),
                }),
            };
            match outcome {
                Ok(()) => result,
                Err(e) if ctx.version() >= ERROR_MESSAGE_VERSION => result
                    .with_error_code(e.error.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
                Err(e) => result.with_error_code(e.error.code()),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
