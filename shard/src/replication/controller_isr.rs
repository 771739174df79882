//! The broker's [`IsrUpdater`]: a leader's ISR change goes to the controller as an
//! AlterPartition command over the broker's controller link; the committed partition state
//! (or Kafka's refusal) comes back.

use futures_util::future::{FutureExt, LocalBoxFuture};
use kafka_protocol::ResponseError;

use super::link::{AlterIsr, IsrUpdater};
use crate::controller::broker_link::BrokerLink;
use crate::controller::commands::{Command, CommandOutcome};
use crate::controller::image::PartitionAssignment;
use crate::foreign_await::foreign;

impl IsrUpdater for BrokerLink {
    fn alter_partition(
        &self,
        change: AlterIsr,
    ) -> LocalBoxFuture<'static, Result<PartitionAssignment, ResponseError>> {
        let reply = self.submit(Command::AlterPartition {
            topic: change.topic,
            partition: change.partition,
            leader_id: change.leader_id,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            new_isr: change.new_isr,
        });
        async move {
            match foreign(reply).await {
                Ok(CommandOutcome::Partition(assignment)) => Ok(assignment),
                Ok(CommandOutcome::Refused(refusal)) => Err(refusal.error()),
                Ok(other) => {
                    tracing::warn!("AlterPartition answered {other:?}");
                    Err(ResponseError::UnknownServerError)
                }
                // No controller reachable: the leader keeps its ISR and proposes again later.
                Err(e) => {
                    tracing::warn!("AlterPartition not sent: {e}");
                    Err(ResponseError::RequestTimedOut)
                }
            }
        }
        .boxed_local()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::controller::node::ClusterNode;
    use crate::controller::settings::{BrokerSettings, ClusterSettings, ControllerSettings};

    #[test]
    fn an_isr_change_goes_through_the_controller_and_stale_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ClusterSettings {
            node_id: 1,
            voters: Vec::new(),
            controller: Some(ControllerSettings::new(dir.path().join("meta"))),
            broker: Some(BrokerSettings::new("127.0.0.1".into(), 9)),
            max_frame_bytes: 1 << 20,
        };
        let node = ClusterNode::start(settings).unwrap();
        let link = node.broker().unwrap().clone();
        let give_up = Instant::now() + Duration::from_secs(30);
        while link.latest().brokers.get(&1).is_none_or(|b| b.fenced) {
            assert!(Instant::now() < give_up, "the broker never registered");
            std::thread::sleep(Duration::from_millis(20));
        }
        let created =
            futures_lite::future::block_on(link.create_topic("t".into(), 1, 1, BTreeMap::new()));
        assert_eq!(created.unwrap(), CommandOutcome::Applied);
        let change = |leader_epoch, partition_epoch| AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader_id: 1,
            leader_epoch,
            partition_epoch,
            new_isr: vec![1],
        };
        let (committed, stale, fenced) = crate::run_local(async move {
            let committed = link.alter_partition(change(0, 0)).await;
            let stale = link.alter_partition(change(0, 7)).await;
            let fenced = link.alter_partition(change(-1, 0)).await;
            (committed, stale, fenced)
        });
        // One replica: the ISR it already has is all it can hold.
        let committed = committed.unwrap();
        assert_eq!((committed.leader, committed.isr), (1, vec![1]));
        assert_eq!(stale, Err(ResponseError::InvalidUpdateVersion));
        assert_eq!(fenced, Err(ResponseError::FencedLeaderEpoch));
        node.shutdown();
    }
}
