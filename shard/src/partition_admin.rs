//! Admin operations on existing topics and partitions.
//!
//! - On each partition's owner shard ([`PartitionQuery`]): DeleteRecords moves the log start,
//!   OffsetForLeaderEpoch reads the leader-epoch cache, DescribeProducers the producer
//!   state, DescribeLogDirs the partition's size.
//! - On the controller ([`TopicChange`]): CreatePartitions adds partitions, the config APIs
//!   replace a topic's overrides. Both persist into the partition directories and publish
//!   a new topic table; each shard then opens the new partitions and hands the changed
//!   settings to its open logs (`apply_topic_configs`).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use spate_core::config::BrokerConfig;
use spate_core::topic_config::TopicConfig;
use spate_log::ProducerInfo;

use crate::controller::image::PartitionAssignment;
use crate::messages::{Reply, Request, TopicError};
use crate::partition::LEADER_EPOCH;
use crate::shard::{Shard, CONTROLLER_SHARD};
use crate::topic_admin::shutting_down;
use crate::topic_config::topic_settings;
use crate::topics::{
    partition_dir, write_broker_overrides, write_partition_files, BrokerOverrides, TopicInfo,
    TopicTable,
};

/// One question for a partition's owner.
#[derive(Debug, Clone)]
pub struct PartitionQuery {
    pub topic: String,
    pub partition: i32,
    pub op: PartitionOp,
}

#[derive(Debug, Clone, Copy)]
pub enum PartitionOp {
    /// DeleteRecords: move the log start to this offset (-1: the high watermark).
    DeleteRecords(i64),
    /// OffsetForLeaderEpoch for this epoch.
    EpochEndOffset(i32),
    /// DescribeProducers.
    Producers,
    /// DescribeLogDirs: size on disk.
    Size,
}

#[derive(Debug, Clone)]
pub enum PartitionAnswer {
    /// The new log start (Kafka's low watermark).
    LowWatermark(i64),
    /// The partition's leader epoch now, and the (epoch, end offset) found; None: no
    /// epoch at or below the asked one.
    EpochEndOffset {
        leader_epoch: i32,
        found: Option<(i32, i64)>,
    },
    Producers(Vec<ProducerInfo>),
    Size {
        bytes: u64,
        offset_lag: i64,
    },
}

/// One change the controller makes to an existing topic.
#[derive(Debug, Clone)]
pub enum TopicChange {
    /// CreatePartitions: the topic's new partition count (more than it has).
    Partitions { topic: String, count: i32 },
    /// AlterConfigs / IncrementalAlterConfigs: the topic's new overrides, validated.
    Config { topic: String, config: TopicConfig },
    /// AlterConfigs / IncrementalAlterConfigs on the broker: its new run-time overrides.
    Broker { overrides: BrokerOverrides },
}

/// DeleteRecords' "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

impl Shard {
    /// Runs `queries` on partitions that shard `owner` owns; one answer each, in order.
    pub async fn query_partitions(
        &self,
        owner: usize,
        queries: Vec<PartitionQuery>,
    ) -> Vec<Result<PartitionAnswer, ResponseError>> {
        if owner == self.id {
            return self.query_local(queries).await;
        }
        let count = queries.len();
        match self.call(owner, Request::PartitionQueries(queries)).await {
            Some(Reply::PartitionAnswers(answers)) => answers,
            _ => vec![Err(ResponseError::NotLeaderOrFollower); count],
        }
    }

    pub(crate) async fn query_local(
        &self,
        queries: Vec<PartitionQuery>,
    ) -> Vec<Result<PartitionAnswer, ResponseError>> {
        let mut answers = Vec::with_capacity(queries.len());
        for q in queries {
            let Some(p) = self.partition(&q.topic, q.partition) else {
                answers.push(Err(ResponseError::UnknownTopicOrPartition));
                continue;
            };
            let log = &p.log;
            answers.push(match q.op {
                PartitionOp::DeleteRecords(offset) => {
                    let offset = match offset {
                        HIGH_WATERMARK => log.high_watermark(),
                        offset => offset,
                    };
                    log.delete_before(offset)
                        .await
                        .map(PartitionAnswer::LowWatermark)
                        .map_err(|e| e.kafka_error())
                }
                PartitionOp::EpochEndOffset(epoch) => Ok(PartitionAnswer::EpochEndOffset {
                    leader_epoch: LEADER_EPOCH,
                    found: log.end_offset_for_epoch(epoch),
                }),
                PartitionOp::Producers => Ok(PartitionAnswer::Producers(log.producers())),
                PartitionOp::Size => Ok(PartitionAnswer::Size {
                    bytes: log.size_bytes(),
                    offset_lag: 0,
                }),
            });
        }
        answers
    }

    /// Changes existing topics through the controller; one result per change, in order.
    pub async fn change_topics(
        &self,
        changes: Vec<TopicChange>,
        validate_only: bool,
    ) -> Vec<Result<(), TopicError>> {
        if self.id == CONTROLLER_SHARD {
            return self.controller_change(changes, validate_only).await;
        }
        let count = changes.len();
        let request = Request::TopicChanges {
            changes,
            validate_only,
        };
        match self.call(CONTROLLER_SHARD, request).await {
            Some(Reply::TopicChanges(results)) => results,
            _ => vec![Err(shutting_down()); count],
        }
    }

    pub(crate) async fn controller_change(
        &self,
        changes: Vec<TopicChange>,
        validate_only: bool,
    ) -> Vec<Result<(), TopicError>> {
        let Ok(_permit) = self.admin.acquire_permit(1).await else {
            return vec![Err(shutting_down()); changes.len()];
        };
        let mut table = (*self.topics()).clone();
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            if let TopicChange::Broker { overrides } = change {
                let outcome = self.change_broker(&overrides, validate_only);
                if outcome.is_ok() && !validate_only {
                    table = table.with_broker_overrides(overrides);
                }
                results.push(outcome);
                continue;
            }
            match self.change_one(&table, change, validate_only) {
                Ok(topic) => {
                    if !validate_only {
                        table = table.with(topic);
                    }
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if !validate_only && results.iter().any(Result::is_ok) {
            self.publish(Arc::new(table)).await;
        }
        results
    }

    fn change_one(
        &self,
        table: &TopicTable,
        change: TopicChange,
        validate_only: bool,
    ) -> Result<TopicInfo, TopicError> {
        let fail = |error, message: String| Err(TopicError { error, message });
        let name = match &change {
            TopicChange::Partitions { topic, .. } | TopicChange::Config { topic, .. } => topic,
            TopicChange::Broker { .. } => {
                return fail(
                    ResponseError::InvalidRequest,
                    "a broker change names no topic".into(),
                )
            }
        };
        let Some(current) = table.get(name) else {
            return fail(
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            );
        };
        let mut topic = current.clone();
        // The partition directories to (re)write: new ones, or all for a config change.
        let dirs = match change {
            TopicChange::Partitions { count, .. } => {
                if count < topic.partitions {
                    return fail(
                        ResponseError::InvalidPartitions,
                        format!(
                            "topic {name} has {} partitions; partitions can only be added, not removed (asked for {count})",
                            topic.partitions
                        ),
                    );
                }
                if count == topic.partitions {
                    return fail(
                        ResponseError::InvalidPartitions,
                        format!("topic {name} already has {count} partitions"),
                    );
                }
                let old = topic.partitions;
                // A single broker holds and leads every partition.
                topic.add_partitions(
                    (old..count).map(|_| PartitionAssignment::single(self.config.node_id)),
                );
                old..count
            }
            TopicChange::Config { config, .. } => {
                topic.config = config;
                0..topic.partitions
            }
            TopicChange::Broker { .. } => 0..0,
        };
        if !validate_only {
            for p in dirs {
                let dir = partition_dir(&self.config.log_dir, &topic.name, p);
                if let Err(e) = write_partition_files(&dir, &topic) {
                    return fail(
                        ResponseError::KafkaStorageError,
                        format!("cannot write {}: {e}", dir.display()),
                    );
                }
            }
        }
        Ok(topic)
    }

    /// Checks the broker's new run-time overrides and, unless only validating, persists them.
    fn change_broker(
        &self,
        overrides: &BrokerOverrides,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        self.config
            .with_dynamic(&overrides.pairs())
            .map_err(|e| TopicError {
                error: ResponseError::InvalidConfig,
                message: e.to_string(),
            })?;
        if validate_only {
            return Ok(());
        }
        write_broker_overrides(&self.config.log_dir, overrides).map_err(|e| TopicError {
            error: ResponseError::KafkaStorageError,
            message: format!("cannot write the broker's dynamic config: {e}"),
        })
    }

    /// The profile with the run-time overrides of `table` applied.
    pub(crate) fn broker_config_for(&self, table: &TopicTable) -> BrokerConfig {
        // The controller checked the overrides before publishing them (and start-up checked
        // the file), so this only falls back if that invariant is broken.
        self.config
            .with_dynamic(&table.broker_overrides().pairs())
            .unwrap_or_else(|e| {
                tracing::error!("ignoring the broker's dynamic config: {e}");
                (*self.config).clone()
            })
    }

    /// What the broker runs with now: the profile with the run-time overrides applied.
    pub fn effective_config(&self) -> BrokerConfig {
        self.broker_config_for(&self.topics())
    }

    /// Hands each open log of this shard the settings its topic's config (over the broker's,
    /// run-time overrides included) now gives.
    pub(crate) fn apply_topic_configs(&self, table: &TopicTable) {
        let broker = self.broker_config_for(table);
        for ((topic, _), p) in self.partitions.borrow().iter() {
            let Some(info) = table.get(topic) else {
                continue;
            };
            let settings = topic_settings(&broker, &info.config);
            if p.log.config() != settings.log {
                p.log.set_config(settings.log);
            }
            p.max_message_bytes.set(settings.max_message_bytes);
            p.log
                .set_producer_id_expiration_ms(broker.producer_id_expiration_ms);
        }
    }
}
