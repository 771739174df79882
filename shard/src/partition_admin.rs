//! Admin operations on existing topics and partitions.
//!
//! - On each partition's owner shard ([`PartitionQuery`]): DeleteRecords moves the log start
//!   (leader only: NOT_LEADER_OR_FOLLOWER on a follower),
//!   OffsetForLeaderEpoch reads the leader-epoch cache, DescribeProducers the producer
//!   state, DescribeLogDirs the partition's size.
//! - Through the controller ([`TopicChange`]): CreatePartitions adds partitions, the config
//!   APIs replace a topic's (or the broker's) overrides. Once the image carrying the change
//!   is applied, each shard opens the new partitions and hands the changed settings to its
//!   open logs (`apply_topic_configs`). ElectLeaders answers once the controller has
//!   committed the elections; brokers and clients learn the new leaders from the next
//!   image, as from Kafka's controller.

use kafka_protocol::ResponseError;
use spate_core::config::BrokerConfig;
use spate_core::topic_config::TopicConfig;
use spate_log::ProducerInfo;

use crate::controller::commands::{Command, CommandOutcome, Election};
use crate::messages::{Reply, Request, TopicError};
use crate::metadata_sync::committed;
use crate::partition::NO_EPOCH_CHECK;
use crate::shard::Shard;
use crate::topic_config::topic_settings;
use crate::topics::{BrokerOverrides, TopicTable};

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
    /// ElectLeaders: preferred (or, `unclean`, any live replica) leaders for `partitions`
    /// (`None`: every partition), one result per partition (see `Command::ElectLeaders`).
    pub async fn elect_leaders(
        &self,
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<Election>, TopicError> {
        let command = Command::ElectLeaders {
            unclean,
            partitions,
        };
        match committed(self.cluster.submit(command)).await? {
            CommandOutcome::Elected(elections) => Ok(elections),
            other => Err(TopicError {
                error: ResponseError::UnknownServerError,
                message: format!("unexpected answer to ElectLeaders: {other:?}"),
            }),
        }
    }

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
                    p.delete_records(offset)
                        .await
                        .map(PartitionAnswer::LowWatermark)
                }
                PartitionOp::EpochEndOffset(epoch) => {
                    p.check_leader(NO_EPOCH_CHECK).map(|leader_epoch| {
                        PartitionAnswer::EpochEndOffset {
                            leader_epoch,
                            found: log.end_offset_for_epoch(epoch),
                        }
                    })
                }
                PartitionOp::Producers => Ok(PartitionAnswer::Producers(log.producers())),
                PartitionOp::Size => Ok(PartitionAnswer::Size {
                    bytes: log.size_bytes(),
                    offset_lag: 0,
                }),
            });
        }
        answers
    }

    /// Changes existing topics (and the broker's run-time configs) through the controller,
    /// one after another; one result per change, in order.
    pub async fn change_topics(
        &self,
        changes: Vec<TopicChange>,
        validate_only: bool,
    ) -> Vec<Result<(), TopicError>> {
        let count = changes.len();
        let request = Request::TopicChanges {
            changes,
            validate_only,
        };
        self.on_metadata_shard(request, count, |reply| match reply {
            Reply::TopicChanges(results) => Some(results),
            _ => None,
        })
        .await
    }

    pub(crate) async fn change_topics_here(
        &self,
        changes: Vec<TopicChange>,
        validate_only: bool,
    ) -> Vec<Result<(), TopicError>> {
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            results.push(self.change_one(change, validate_only).await);
        }
        results
    }

    async fn change_one(&self, change: TopicChange, validate_only: bool) -> Result<(), TopicError> {
        match change {
            TopicChange::Broker { overrides } => {
                self.change_broker(&overrides, validate_only).await
            }
            TopicChange::Partitions { topic, count } => {
                self.add_partitions(topic, count, validate_only).await
            }
            TopicChange::Config { topic, config } => {
                existing(&self.topics(), &topic)?;
                if validate_only {
                    return Ok(());
                }
                let command = Command::replace_topic_config(topic.clone(), config.pairs());
                self.write_metadata(command, |t| {
                    t.get(&topic).is_some_and(|info| info.config == config)
                })
                .await
            }
        }
    }

    /// CreatePartitions: grows `topic` to `count` partitions, placed by the controller.
    async fn add_partitions(
        &self,
        topic: String,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let current = existing(&self.topics(), &topic)?;
        if count <= current {
            let message = if count == current {
                format!("topic {topic} already has {count} partitions")
            } else {
                format!(
                    "topic {topic} has {current} partitions; partitions can only be added, not removed (asked for {count})"
                )
            };
            return Err(TopicError {
                error: ResponseError::InvalidPartitions,
                message,
            });
        }
        if validate_only {
            return Ok(());
        }
        let write = self
            .cluster
            .create_partitions(topic.clone(), count.unsigned_abs());
        self.await_write(write, |t| {
            t.get(&topic).is_some_and(|info| info.partitions >= count)
        })
        .await
    }

    /// Checks the broker's new run-time overrides and, unless only validating, commits
    /// those of each resource (this node, the cluster default) that changed.
    async fn change_broker(
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
        let table = self.topics();
        let current = table.broker_overrides();
        let resources = [
            (
                self.config.node_id.to_string(),
                &current.node,
                &overrides.node,
            ),
            (
                String::new(),
                &current.cluster_default,
                &overrides.cluster_default,
            ),
        ];
        for (resource, now, wanted) in resources {
            if now == wanted {
                continue;
            }
            let command = Command::replace_broker_config(resource, wanted.clone());
            self.write_metadata(command, |t| t.broker_overrides() == overrides)
                .await?;
        }
        Ok(())
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
            p.min_insync_replicas.set(settings.min_insync_replicas);
            p.log
                .set_producer_id_expiration_ms(broker.producer_id_expiration_ms);
        }
    }
}

/// The partition count of `topic`, or UNKNOWN_TOPIC_OR_PARTITION.
fn existing(table: &TopicTable, topic: &str) -> Result<i32, TopicError> {
    table
        .get(topic)
        .map(|t| t.partitions)
        .ok_or_else(|| TopicError {
            error: ResponseError::UnknownTopicOrPartition,
            message: format!("topic {topic} does not exist"),
        })
}
