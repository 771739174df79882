//! IncrementalAlterConfigs: SET, DELETE (back to the broker's value), APPEND and SUBTRACT
//! (list configs) on a topic's overrides; all of a resource's operations apply or none do.
//! On a broker resource SET and DELETE change the run-time overrides (see AlterConfigs).

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_core::topic_config::AlterOp;
use spate_shard::partition_admin::TopicChange;
use spate_shard::TopicError;

use super::alter_configs::{
    broker_change, check_duplicates, run, unsupported_resource, Checked, BROKER, TOPIC,
};
use super::Context;

pub async fn handle(
    ctx: &Context,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let table = ctx.shard.topics();
    let checked = request
        .resources
        .iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let change: Checked = match r.resource_type {
                TOPIC => check_duplicates(r.configs.iter().map(|c| c.name.as_str())).and_then(
                    |()| {
                        let Some(topic) = table.get(&name) else {
                            return Err(TopicError {
                                error: ResponseError::UnknownTopicOrPartition,
                                message: format!("topic {name} does not exist"),
                            });
                        };
                        let mut config = topic.config.clone();
                        for c in &r.configs {
                            let Some(op) = AlterOp::from_code(c.config_operation) else {
                                return Err(TopicError {
                                    error: ResponseError::InvalidRequest,
                                    message: format!(
                                        "unknown operation {} on `{}`: use 0 (set), 1 (delete), 2 (append) or 3 (subtract)",
                                        c.config_operation, c.name
                                    ),
                                });
                            };
                            config
                                .alter(c.name.as_str(), op, c.value.as_ref().map(|v| v.as_str()))
                                .map_err(|e| TopicError {
                                    error: e.kafka_error(),
                                    message: e.message,
                                })?;
                        }
                        Ok(TopicChange::Config {
                            topic: name.clone(),
                            config,
                        })
                    },
                ),
                BROKER => check_duplicates(r.configs.iter().map(|c| c.name.as_str())).and_then(
                    |()| {
                        broker_change(ctx, &name, r.configs.iter().map(|c| c.name.as_str()), |scope| {
                            for c in &r.configs {
                                let key = c.name.to_string();
                                match (AlterOp::from_code(c.config_operation), &c.value) {
                                    (Some(AlterOp::Set), Some(value)) => {
                                        scope.insert(key, value.to_string());
                                    }
                                    (Some(AlterOp::Delete), _) => {
                                        scope.remove(&key);
                                    }
                                    (Some(AlterOp::Set), None) => {
                                        return Err(TopicError {
                                            error: ResponseError::InvalidConfig,
                                            message: format!("setting `{key}` needs a value"),
                                        })
                                    }
                                    _ => {
                                        return Err(TopicError {
                                            error: ResponseError::InvalidRequest,
                                            message: format!(
                                                "operation {} on broker config `{key}`: use 0 (set) or 1 (delete)",
                                                c.config_operation
                                            ),
                                        })
                                    }
                                }
                            }
                            Ok(())
                        })
                    },
                ),
                other => Err(unsupported_resource(other)),
            };
            (r.resource_type, r.resource_name.clone(), change)
        })
        .collect();
    let responses = run(ctx, checked, request.validate_only)
        .await
        .into_iter()
        .map(|(resource_type, resource_name, outcome)| {
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource_type)
                .with_resource_name(resource_name);
            match outcome {
                Ok(()) => response,
                Err(e) => response
                    .with_error_code(e.error.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
