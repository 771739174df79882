//! DescribeConfigs: a topic's configs (its overrides over the broker profile) and the
//! broker's own settings, run-time overrides included (sourced DYNAMIC_BROKER_CONFIG when set
//! on this broker, DYNAMIC_DEFAULT_BROKER_CONFIG when set as the cluster-wide default). The
//! broker resource also shows `spate.shards`, the shard count.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_core::config::{BrokerConfig, DYNAMIC_KEYS};
use spate_core::topic_config::{ConfigEntry, ConfigSource, ConfigType};

use super::Context;

/// Kafka's resource type codes.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// The first version whose entries carry a type and documentation.
const TYPE_AND_DOCUMENTATION_VERSION: i16 = 3;

pub fn handle(ctx: &Context, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries = match resource.resource_type {
                TOPIC => topic_entries(ctx, &resource.resource_name),
                BROKER => broker_entries(ctx, &resource.resource_name),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not supported: use topic (2) or broker (4)"),
                )),
            };
            match entries {
                Ok(entries) => result.with_configs(
                    entries
                        .into_iter()
                        .filter(|e| {
                            resource
                                .configuration_keys
                                .as_ref()
                                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                        })
                        .map(|e| entry(e, &request, ctx.version()))
                        .collect(),
                ),
                Err((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn topic_entries(ctx: &Context, name: &str) -> Result<Vec<ConfigEntry>, (ResponseError, String)> {
    match ctx.shard.topics().get(name) {
        Some(topic) => Ok(topic.config.describe(&ctx.shard.effective_config())),
        None => Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        )),
    }
}

fn broker_entries(ctx: &Context, name: &str) -> Result<Vec<ConfigEntry>, (ResponseError, String)> {
    let config = ctx.shard.config();
    // An empty name is the cluster-wide default resource, which this broker also answers.
    if !name.is_empty() && name != config.node_id.to_string() {
        return Err((
            ResponseError::InvalidRequest,
            format!("this is broker {}, not broker {name}", config.node_id),
        ));
    }
    let topics = ctx.shard.topics();
    let overrides = topics.broker_overrides();
    let effective = ctx.shard.effective_config();
    let profile = broker_settings(config, ctx.shard.count());
    Ok(broker_settings(&effective, ctx.shard.count())
        .into_iter()
        .zip(profile)
        .map(
            |((name, value, default, config_type), (_, static_value, ..))| ConfigEntry {
                name,
                source: if overrides.node.contains_key(name) {
                    ConfigSource::DynamicBroker
                } else if overrides.cluster_default.contains_key(name) {
                    ConfigSource::DynamicDefaultBroker
                } else if static_value == default {
                    ConfigSource::Default
                } else {
                    ConfigSource::StaticBroker
                },
                value,
                read_only: !DYNAMIC_KEYS.contains(&name),
                sensitive: false,
                config_type,
                documentation: "",
                synonyms: Vec::new(),
            },
        )
        .collect())
}

/// The broker keys DescribeConfigs shows: (name, value, default value, type).
pub(crate) fn broker_settings(
    config: &BrokerConfig,
    shards: usize,
) -> Vec<(&'static str, String, String, ConfigType)> {
    let defaults = BrokerConfig::default();
    let never = |v: Option<u64>| v.map_or_else(|| i64::MAX.to_string(), |v| v.to_string());
    let row = |name, value: &dyn Fn(&BrokerConfig) -> String, config_type| {
        (name, value(config), value(&defaults), config_type)
    };
    vec![
        row("node.id", &|c| c.node_id.to_string(), ConfigType::Int),
        row("listeners", &|c| c.listen.clone(), ConfigType::String),
        row(
            "log.dirs",
            &|c| c.log_dir.display().to_string(),
            ConfigType::String,
        ),
        row(
            "num.partitions",
            &|c| c.num_partitions.to_string(),
            ConfigType::Int,
        ),
        row(
            "auto.create.topics.enable",
            &|c| c.auto_create_topics.to_string(),
            ConfigType::Boolean,
        ),
        row(
            "socket.request.max.bytes",
            &|c| c.socket_request_max_bytes.to_string(),
            ConfigType::Int,
        ),
        row(
            "message.max.bytes",
            &|c| c.message_max_bytes.to_string(),
            ConfigType::Int,
        ),
        row(
            "log.segment.bytes",
            &|c| c.log_segment_bytes.to_string(),
            ConfigType::Int,
        ),
        row(
            "log.roll.ms",
            &|c| c.log_roll_ms.to_string(),
            ConfigType::Long,
        ),
        row(
            "log.index.interval.bytes",
            &|c| c.log_index_interval_bytes.to_string(),
            ConfigType::Int,
        ),
        row(
            "log.retention.ms",
            &|c| c.log_retention_ms.to_string(),
            ConfigType::Long,
        ),
        row(
            "log.retention.bytes",
            &|c| c.log_retention_bytes.to_string(),
            ConfigType::Long,
        ),
        row(
            "log.flush.interval.messages",
            &|c| never(c.log_flush_interval_messages),
            ConfigType::Long,
        ),
        row(
            "log.flush.interval.ms",
            &|c| never(c.log_flush_interval_ms),
            ConfigType::Long,
        ),
        row(
            "producer.id.expiration.ms",
            &|c| c.producer_id_expiration_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "spate.shards",
            shards.to_string(),
            String::new(),
            ConfigType::Int,
        ),
    ]
}

fn entry(
    e: ConfigEntry,
    request: &DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResourceResult {
    let synonyms = if request.include_synonyms {
        e.synonyms
            .iter()
            .map(|s| {
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_static_str(s.name))
                    .with_value(Some(StrBytes::from_string(s.value.clone())))
                    .with_source(s.source.code())
            })
            .collect()
    } else {
        Vec::new()
    };
    let result = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(e.name))
        .with_value(Some(StrBytes::from_string(e.value)))
        .with_read_only(e.read_only)
        .with_config_source(e.source.code())
        .with_is_sensitive(e.sensitive)
        .with_synonyms(synonyms);
    if version < TYPE_AND_DOCUMENTATION_VERSION {
        return result;
    }
    result
        .with_config_type(e.config_type.code())
        .with_documentation(
            request
                .include_documentation
                .then(|| StrBytes::from_static_str(e.documentation)),
        )
}
