//! Topic creation and deletion: checked here against this broker's view of the cluster,
//! committed by the controller, and answered once the image carrying the change is applied
//! on this shard (see `metadata_sync`).

use kafka_protocol::ResponseError;

use crate::controller::assignment::assign_replicas;
use crate::controller::commands::Command;
use crate::controller::image::{PartitionAssignment, NO_LEADER};
use crate::messages::{NewReplicas, NewTopic, Reply, Request, TopicError};
use crate::shard::Shard;
use crate::topics::{validate_topic_name, TopicInfo, TopicTable};

impl Shard {
    /// Creates topics one after another; one result per topic, in order. With
    /// `validate_only` nothing is written and the result shows what would be created.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<TopicInfo, TopicError>> {
        let count = topics.len();
        let request = Request::CreateTopics {
            topics,
            validate_only,
        };
        self.on_metadata_shard(request, count, |reply| match reply {
            Reply::CreateTopics(results) => Some(results),
            _ => None,
        })
        .await
    }

    /// Deletes topics one after another; one result per name, in order.
    pub async fn delete_topics(&self, names: Vec<String>) -> Vec<Result<(), TopicError>> {
        let count = names.len();
        let request = Request::DeleteTopics { names };
        self.on_metadata_shard(request, count, |reply| match reply {
            Reply::DeleteTopics(results) => Some(results),
            _ => None,
        })
        .await
    }

    pub(crate) async fn create_topics_here(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<TopicInfo, TopicError>> {
        let mut results = Vec::with_capacity(topics.len());
        for new in topics {
            results.push(self.create_one(new, validate_only).await);
        }
        results
    }

    async fn create_one(
        &self,
        new: NewTopic,
        validate_only: bool,
    ) -> Result<TopicInfo, TopicError> {
        let table = self.topics();
        let replicas = check_new_topic(&table, &new)?;
        if validate_only {
            let assignments = replicas.into_iter().map(assignment_of).collect();
            return Ok(TopicInfo::new(
                new.name,
                uuid::Uuid::nil(),
                new.config,
                assignments,
            ));
        }
        let name = new.name.clone();
        let config = new.config.pairs();
        let created = |t: &TopicTable| t.get(&name).is_some();
        match new.replicas {
            NewReplicas::Factor(factor) => {
                let write = self.cluster.create_topic(
                    new.name,
                    new.partitions.unsigned_abs(),
                    factor.unsigned_abs(),
                    config,
                );
                self.await_write(write, created).await?;
            }
            NewReplicas::Assigned(lists) => {
                let command = Command::CreateTopic {
                    name: new.name,
                    id: uuid::Uuid::new_v4(),
                    partitions: lists,
                    config,
                };
                self.write_metadata(command, created).await?;
            }
        }
        self.published
            .borrow()
            .get(&name)
            .cloned()
            .ok_or_else(|| TopicError {
                error: ResponseError::UnknownTopicOrPartition,
                message: format!("topic {name} was deleted right after its creation"),
            })
    }

    pub(crate) async fn delete_topics_here(
        &self,
        names: Vec<String>,
    ) -> Vec<Result<(), TopicError>> {
        let mut results = Vec::with_capacity(names.len());
        for name in names {
            results.push(if self.topics().get(&name).is_none() {
                Err(TopicError {
                    error: ResponseError::UnknownTopicOrPartition,
                    message: format!("topic {name} does not exist"),
                })
            } else {
                let command = Command::DeleteTopic { name: name.clone() };
                self.write_metadata(command, |t| t.get(&name).is_none())
                    .await
            });
        }
        results
    }
}

/// Checks a new topic against `table` and returns the replica list of each partition (for a
/// replication factor, as the controller would place them; it places them itself).
fn check_new_topic(table: &TopicTable, new: &NewTopic) -> Result<Vec<Vec<i32>>, TopicError> {
    let fail = |error, message: String| Err(TopicError { error, message });
    if let Err(message) = validate_topic_name(&new.name) {
        return fail(ResponseError::InvalidTopicException, message);
    }
    if table.get(&new.name).is_some() {
        return fail(
            ResponseError::TopicAlreadyExists,
            format!("topic {} already exists", new.name),
        );
    }
    if new.partitions <= 0 {
        return fail(
            ResponseError::InvalidPartitions,
            format!(
                "number of partitions must be positive, got {}",
                new.partitions
            ),
        );
    }
    let alive = table.alive_brokers();
    match &new.replicas {
        NewReplicas::Factor(factor) => {
            let factor = usize::try_from(*factor).unwrap_or(0);
            assign_replicas(&alive, 0, new.partitions as usize, factor, 0).map_err(|refusal| {
                TopicError {
                    error: refusal.error(),
                    message: refusal.message,
                }
            })
        }
        NewReplicas::Assigned(lists) => {
            for (partition, list) in lists.iter().enumerate() {
                let mut seen = std::collections::BTreeSet::new();
                let unknown = list.iter().find(|b| table.broker(**b).is_none());
                if list.is_empty() || !list.iter().all(|b| seen.insert(*b)) || unknown.is_some() {
                    return fail(
                        ResponseError::InvalidReplicaAssignment,
                        format!(
                            "partition {partition}: replicas {list:?} must be distinct registered brokers (registered: {:?})",
                            table.brokers().keys().collect::<Vec<_>>()
                        ),
                    );
                }
            }
            Ok(lists.clone())
        }
    }
}

/// A new partition's state: led by its first replica, every replica in sync.
fn assignment_of(replicas: Vec<i32>) -> PartitionAssignment {
    PartitionAssignment {
        leader: replicas.first().copied().unwrap_or(NO_LEADER),
        isr: replicas.clone(),
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
    }
}
