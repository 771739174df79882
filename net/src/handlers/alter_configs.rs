//! AlterConfigs: replaces a topic's config overrides with the given set (keys left out go
//! back to the broker's values), as Kafka's legacy API does. The controller persists them
//! beside the topic's partitions and every owner applies them to its open logs at once.
//!
//! Broker configs are read from the profile at start-up; none can be changed while the
//! broker runs, so a broker resource is refused naming the key (INVALID_CONFIG, Kafka's
//! code for a config it will not change dynamically or does not know).

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_core::topic_config::TopicConfig;
use spate_shard::partition_admin::TopicChange;
use spate_shard::TopicError;

use super::describe_configs::broker_settings;
use super::Context;

/// Kafka's resource type codes.
pub(crate) const TOPIC: i8 = 2;
pub(crate) const BROKER: i8 = 4;

/// What to do for one resource of a request, or why not.
pub(crate) type Checked = Result<TopicChange, TopicError>;

pub async fn handle(ctx: &Context, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let checked =
        request
            .resources
            .iter()
            .map(|r| {
                let name = r.resource_name.to_string();
                let change =
                    match r.resource_type {
                        TOPIC => check_duplicates(r.configs.iter().map(|c| c.name.as_str()))
                            .and_then(|()| {
                                TopicConfig::from_pairs(r.configs.iter().map(|c| {
                                    (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))
                                }))
                                .map(|config| TopicChange::Config {
                                    topic: name.clone(),
                                    config,
                                })
                                .map_err(|e| TopicError {
                                    error: e.kafka_error(),
                                    message: e.message,
                                })
                            }),
                        BROKER => Err(refuse_broker(
                            ctx,
                            &name,
                            r.configs.iter().map(|c| c.name.as_str()),
                        )),
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
    AlterConfigsResponse::default().with_responses(responses)
}

/// Sends the valid changes to the controller; one outcome per resource, in order.
pub(crate) async fn run(
    ctx: &Context,
    checked: Vec<(i8, StrBytes, Checked)>,
    validate_only: bool,
) -> Vec<(i8, StrBytes, Result<(), TopicError>)> {
    let changes: Vec<TopicChange> = checked
        .iter()
        .filter_map(|(_, _, c)| c.as_ref().ok().cloned())
        .collect();
    let mut outcomes = ctx
        .shard
        .change_topics(changes, validate_only)
        .await
        .into_iter();
    checked
        .into_iter()
        .map(|(resource_type, name, checked)| {
            let outcome = match checked {
                Ok(_) => outcomes.next().unwrap_or(Err(TopicError {
                    error: ResponseError::UnknownServerError,
                    message: "the controller gave no answer".into(),
                })),
                Err(e) => Err(e),
            };
            (resource_type, name, outcome)
        })
        .collect()
}

/// Kafka refuses a resource that names a key twice.
pub(crate) fn check_duplicates<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), TopicError> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(TopicError {
                error: ResponseError::InvalidRequest,
                message: format!("config `{name}` appears more than once"),
            });
        }
    }
    Ok(())
}

/// Why a broker config change is refused, naming the first key.
pub(crate) fn refuse_broker<'a>(
    ctx: &Context,
    resource: &str,
    mut keys: impl Iterator<Item = &'a str>,
) -> TopicError {
    let config = ctx.shard.config();
    if !resource.is_empty() && resource != config.node_id.to_string() {
        return TopicError {
            error: ResponseError::InvalidRequest,
            message: format!("this is broker {}, not broker {resource}", config.node_id),
        };
    }
    let Some(key) = keys.next() else {
        return TopicError {
            error: ResponseError::InvalidRequest,
            message: "no broker config to change".into(),
        };
    };
    let known = broker_settings(config, ctx.shard.count())
        .iter()
        .any(|(name, ..)| *name == key);
    let message = match known {
        true => format!(
            "broker config `{key}` cannot be changed while Spate runs: set it in the broker profile and restart"
        ),
        false => format!("unknown broker config `{key}`"),
    };
    TopicError {
        error: ResponseError::InvalidConfig,
        message,
    }
}

pub(crate) fn unsupported_resource(resource_type: i8) -> TopicError {
    TopicError {
        error: ResponseError::InvalidRequest,
        message: format!(
            "resource type {resource_type} is not supported: use topic (2) or broker (4)"
        ),
    }
}
