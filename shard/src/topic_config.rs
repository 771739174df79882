//! What a topic's partitions run with: the topic's config (`spate_core::topic_config`)
//! resolved against the broker profile and turned into the log's settings.

use spate_core::config::BrokerConfig;
use spate_core::topic_config::TopicConfig;
use spate_log::LogConfig;

/// What a partition of a topic runs with.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    pub log: LogConfig,
    /// `max.message.bytes`: the largest batch a produce may append.
    pub max_message_bytes: usize,
    /// `min.insync.replicas`: ISR members an `acks=all` produce needs.
    pub min_insync_replicas: i32,
}

pub fn topic_settings(broker: &BrokerConfig, config: &TopicConfig) -> TopicSettings {
    let e = config.effective(broker);
    TopicSettings {
        log: LogConfig {
            segment_bytes: e.segment_bytes,
            roll_ms: e.segment_ms,
            index_interval_bytes: e.index_interval_bytes,
            retention_ms: e.retention_ms,
            retention_bytes: e.retention_bytes,
            flush_messages: e.flush_messages,
            flush_ms: e.flush_ms,
        },
        max_message_bytes: e.max_message_bytes,
        min_insync_replicas: e.min_insync_replicas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_reach_the_log_config() {
        let broker = BrokerConfig::default();
        let config =
            TopicConfig::from_pairs([("flush.messages", Some("1")), ("retention.ms", Some("-1"))])
                .unwrap();
        let s = topic_settings(&broker, &config);
        assert_eq!(s.log.flush_messages, Some(1));
        assert_eq!(s.log.retention_ms, -1);
        assert_eq!(s.max_message_bytes, broker.message_max_bytes);
    }
}
