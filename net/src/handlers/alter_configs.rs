//! AlterConfigs: replaces a topic's config overrides with the given set (keys left out go
//! back to the broker's values), as Kafka's legacy API does. The controller persists them
//! beside the topic's partitions and every owner applies them to its open logs at once.
//!
//! On a broker resource (this node's id, or "" for the cluster-wide default) it replaces that
//! scope's run-time overrides of the keys in `DYNAMIC_KEYS`; the controller persists them in
//! the log dir and every shard applies them at once. Any other key is refused naming it
//! (INVALID_CONFIG, Kafka's code for a config it will not change dynamically or does not know).

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_core::config::DYNAMIC_KEYS;
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
                        BROKER => check_duplicates(r.configs.iter().map(|c| c.name.as_str()))
                            .and_then(|()| {
                                broker_change(
                                    ctx,
                                    &name,
                                    r.configs.iter().map(|c| c.name.as_str()),
                                    |scope| {
                                        // Keys left out (or sent without a value) lose
                                        // their override.
                                        *scope = r
                                            .configs
                                            .iter()
                                            .filter_map(|c| {
                                                let value = c.value.as_ref()?;
                                                Some((c.name.to_string(), value.to_string()))
                                            })
                                            .collect();
                                        Ok(())
                                    },
                                )
                            }),
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

/// A change to the broker's run-time overrides: `edit` rewrites the overrides of the scope
/// `resource` names (this broker's id, or "" for the cluster-wide default). Every key must be
/// one of `DYNAMIC_KEYS` and the result must pass the profile's checks.
pub(crate) fn broker_change<'a>(
    ctx: &Context,
    resource: &str,
    keys: impl Iterator<Item = &'a str>,
    edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), TopicError>,
) -> Checked {
    let config = ctx.shard.config();
    if !resource.is_empty() && resource != config.node_id.to_string() {
        return Err(TopicError {
            error: ResponseError::InvalidRequest,
            message: format!("this is broker {}, not broker {resource}", config.node_id),
        });
    }
    for key in keys {
        if !DYNAMIC_KEYS.contains(&key) {
            return Err(refuse_key(ctx, key));
        }
    }
    let mut overrides = ctx.shard.topics().broker_overrides().clone();
    edit(match resource.is_empty() {
        true => &mut overrides.cluster_default,
        false => &mut overrides.node,
    })?;
    config
        .with_dynamic(&overrides.pairs())
        .map_err(|e| TopicError {
            error: ResponseError::InvalidConfig,
            message: e.to_string(),
        })?;
    Ok(TopicChange::Broker { overrides })
}

/// Why a key outside `DYNAMIC_KEYS` is refused.
fn refuse_key(ctx: &Context, key: &str) -> TopicError {
    let known = broker_settings(ctx.shard.config(), ctx.shard.count())
        .iter()
        .any(|(name, ..)| *name == key);
    let message = match known {
        true => format!(
            "broker config `{key}` cannot be changed while Spate runs: set it in the broker profile and restart (changeable at run time: {})",
            DYNAMIC_KEYS.join(", ")
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
