//! The controller's part of a shard (shard 0 in a single broker): it owns the topic table,
//! creates and deletes topics, and publishes each new table to every shard.

use std::sync::Arc;

use kafka_protocol::ResponseError;

use crate::controller::image::PartitionAssignment;
use crate::messages::{NewTopic, Request, TopicError};
use crate::shard::Shard;
use crate::topics::{
    partition_dir, validate_topic_name, write_partition_files, TopicInfo, TopicTable,
};

impl Shard {
    /// Controller: validates and creates topics, then publishes the new table.
    pub(crate) async fn controller_create(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<TopicInfo, TopicError>> {
        let Ok(_permit) = self.admin.acquire_permit(1).await else {
            return vec![Err(shutting_down()); topics.len()];
        };
        let mut table = (*self.topics()).clone();
        let mut results = Vec::with_capacity(topics.len());
        for new in topics {
            let result = self.create_one(&table, new, validate_only);
            if let (Ok(topic), false) = (&result, validate_only) {
                table = table.with(topic.clone());
            }
            results.push(result);
        }
        if !validate_only && results.iter().any(Result::is_ok) {
            self.publish(Arc::new(table)).await;
        }
        results
    }

    fn create_one(
        &self,
        table: &TopicTable,
        new: NewTopic,
        validate_only: bool,
    ) -> Result<TopicInfo, TopicError> {
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
        // A single broker holds and leads every partition.
        let topic = TopicInfo::new(
            new.name,
            uuid::Uuid::new_v4(),
            new.config,
            (0..new.partitions)
                .map(|_| PartitionAssignment::single(self.config.node_id))
                .collect(),
        );
        if !validate_only {
            for p in 0..topic.partitions {
                let dir = partition_dir(&self.config.log_dir, &topic.name, p);
                if let Err(e) = write_partition_files(&dir, &topic) {
                    return fail(
                        ResponseError::KafkaStorageError,
                        format!("cannot create {}: {e}", dir.display()),
                    );
                }
            }
        }
        Ok(topic)
    }

    /// Controller: removes topics from the table; each owner deletes its partitions' data.
    pub(crate) async fn controller_delete(
        &self,
        names: Vec<String>,
    ) -> Vec<Result<(), TopicError>> {
        let Ok(_permit) = self.admin.acquire_permit(1).await else {
            return vec![Err(shutting_down()); names.len()];
        };
        let mut table = (*self.topics()).clone();
        let mut results = Vec::with_capacity(names.len());
        for name in names {
            if table.get(&name).is_some() {
                table = table.without(&name);
                results.push(Ok(()));
            } else {
                results.push(Err(TopicError {
                    error: ResponseError::UnknownTopicOrPartition,
                    message: format!("topic {name} does not exist"),
                }));
            }
        }
        if results.iter().any(Result::is_ok) {
            self.publish(Arc::new(table)).await;
        }
        results
    }

    /// Controller: installs `table` on every shard and waits until each has opened or
    /// deleted its partitions accordingly.
    pub(crate) async fn publish(&self, table: Arc<TopicTable>) {
        let peers = (0..self.count).filter(|s| *s != self.id).map(|s| {
            let table = table.clone();
            async move { self.call(s, Request::Apply(table)).await }
        });
        futures_util::future::join(
            self.apply(table.clone()),
            futures_util::future::join_all(peers),
        )
        .await;
    }
}

pub(crate) fn shutting_down() -> TopicError {
    TopicError {
        error: ResponseError::BrokerNotAvailable,
        message: "the broker is shutting down".into(),
    }
}
