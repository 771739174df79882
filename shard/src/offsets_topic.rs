//! `__consumer_offsets`, the replicated topic the group coordinators keep their state in:
//! created through the controller the first time a coordinator is looked for (as Kafka's
//! FindCoordinator does), and led partition by partition by the brokers that coordinate
//! its groups.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use spate_core::topic_config::TopicConfig;

use crate::controller::image::NO_LEADER;
use crate::group_coordinator::{coordinator_partition, OFFSETS_TOPIC};
use crate::messages::{NewReplicas, NewTopic};
use crate::partition::{Partition, NO_EPOCH_CHECK};
use crate::shard::Shard;

impl Shard {
    /// The broker that coordinates `group_id`: the leader of its `__consumer_offsets`
    /// partition. COORDINATOR_NOT_AVAILABLE while the topic does not exist or the
    /// partition has no live leader.
    pub fn group_coordinator(&self, group_id: &str) -> Result<i32, ResponseError> {
        let partition = coordinator_partition(group_id, self.groups.config().offsets_partitions);
        let table = self.topics();
        match table.assignment(OFFSETS_TOPIC, partition) {
            Some(a) if a.leader != NO_LEADER && table.is_alive(a.leader) => Ok(a.leader),
            _ => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// FindCoordinator's lookup: as `group_coordinator`, and asks the controller for the
    /// topic when it does not exist yet (the client retries meanwhile).
    pub fn find_coordinator(self: &Rc<Self>, group_id: &str) -> Result<i32, ResponseError> {
        if self.topics().get(OFFSETS_TOPIC).is_none() && !self.creating_offsets_topic.get() {
            self.creating_offsets_topic.set(true);
            glommio::spawn_local(self.clone().create_offsets_topic()).detach();
        }
        self.group_coordinator(group_id)
    }

    async fn create_offsets_topic(self: Rc<Self>) {
        let config = &self.config;
        // A single node (its own one-voter controller) never has another broker.
        let factor = if config.controller_quorum_voters.is_empty() {
            1
        } else {
            config.offsets_topic_replication_factor
        };
        let segment_bytes = config.offsets_topic_segment_bytes.to_string();
        let overrides = TopicConfig::from_pairs([
            ("segment.bytes", Some(segment_bytes.as_str())),
            // Nothing is deleted by time or size: Kafka compacts this topic instead, and
            // the coordinator compacts each partition when it loads it.
            ("retention.ms", Some("-1")),
            ("retention.bytes", Some("-1")),
        ]);
        let new = overrides.map(|overrides| NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: config.offsets_topic_num_partitions,
            replicas: NewReplicas::Factor(factor),
            config: overrides,
        });
        let created = match new {
            Ok(new) => self.create_topics(vec![new], false).await.pop(),
            Err(e) => {
                tracing::error!("offsets.topic.segment.bytes: {}", e.message);
                None
            }
        };
        match created {
            Some(Ok(_)) => tracing::info!(
                "created {OFFSETS_TOPIC}: {} partitions, replication factor {factor}",
                config.offsets_topic_num_partitions
            ),
            Some(Err(e)) if e.error == ResponseError::TopicAlreadyExists => {}
            // Typically fewer live brokers than offsets.topic.replication.factor: the next
            // FindCoordinator tries again.
            Some(Err(e)) => tracing::warn!("cannot create {OFFSETS_TOPIC} yet: {}", e.message),
            None => {}
        }
        self.creating_offsets_topic.set(false);
    }

    /// The coordinator partitions this shard holds and this broker leads, with their
    /// leader epochs.
    pub(crate) fn led_coordinator_partitions(&self) -> Vec<(i32, i32, Rc<Partition>)> {
        self.partitions
            .borrow()
            .iter()
            .filter(|((topic, _), _)| topic == OFFSETS_TOPIC)
            .filter_map(|((_, index), p)| {
                let epoch = p.check_leader(NO_EPOCH_CHECK).ok()?;
                Some((*index, epoch, p.clone()))
            })
            .collect()
    }
}
