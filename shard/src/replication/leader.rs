//! A leader's view of its followers, as Kafka's `Partition` keeps it: each follower's log end
//! (the offset of its last Fetch) and when it was last caught up; the high watermark (the
//! smallest log end over the ISR); and when to ask the controller to shrink or expand the
//! ISR. Pure state: the partition calls it with the time and its own log end.

use std::collections::BTreeMap;

use crate::controller::image::PartitionAssignment;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The fetch offset of its last Fetch; -1 until it fetches from this leader.
    log_end: i64,
    /// The last time its log end reached the leader's (Kafka's `lastCaughtUpTimeMs`).
    last_caught_up_ms: i64,
    last_fetch_ms: i64,
    /// The leader's log end at its last Fetch.
    last_fetch_leader_end: i64,
}

impl Progress {
    /// A replica that has not fetched from this leader yet. An ISR member gets a whole lag
    /// window from `now_ms` before it counts as behind, as in Kafka: counting from 0 shrank
    /// a new partition's ISR before its followers' first fetch.
    fn unknown(assignment: &PartitionAssignment, replica: i32, now_ms: i64) -> Progress {
        Progress {
            log_end: -1,
            last_caught_up_ms: if assignment.isr.contains(&replica) {
                now_ms
            } else {
                0
            },
            last_fetch_ms: 0,
            last_fetch_leader_end: -1,
        }
    }
}

#[derive(Debug)]
pub struct LeaderState {
    my_id: i32,
    assignment: PartitionAssignment,
    /// The leader's log end when it took this epoch: a follower joins the ISR only once it
    /// holds everything from earlier epochs (Kafka's leader-epoch start offset).
    epoch_start_offset: i64,
    followers: BTreeMap<i32, Progress>,
    /// The ISR of an AlterPartition sent and not yet answered.
    pending_isr: Option<Vec<i32>>,
}

impl LeaderState {
    /// Takes leadership at `log_end`. ISR members get a whole lag window from now before
    /// they count as behind, as in Kafka.
    pub fn new(
        my_id: i32,
        assignment: PartitionAssignment,
        log_end: i64,
        now_ms: i64,
    ) -> LeaderState {
        let followers = assignment
            .replicas
            .iter()
            .filter(|&&r| r != my_id)
            .map(|&r| (r, Progress::unknown(&assignment, r, now_ms)))
            .collect();
        LeaderState {
            my_id,
            assignment,
            epoch_start_offset: log_end,
            followers,
            pending_isr: None,
        }
    }

    pub fn assignment(&self) -> &PartitionAssignment {
        &self.assignment
    }

    /// The committed ISR (what `min.insync.replicas` counts).
    pub fn isr(&self) -> &[i32] {
        &self.assignment.isr
    }

    /// Takes a newer state of the same leadership (an ISR change committed by the
    /// controller). Followers keep their progress; new replicas start unknown.
    pub fn update(&mut self, assignment: PartitionAssignment, now_ms: i64) {
        if self.pending_isr.as_ref() == Some(&assignment.isr) {
            self.pending_isr = None;
        }
        for &r in assignment.replicas.iter().filter(|&&r| r != self.my_id) {
            self.followers
                .entry(r)
                .or_insert_with(|| Progress::unknown(&assignment, r, now_ms));
        }
        self.followers
            .retain(|r, _| assignment.replicas.contains(r));
        self.assignment = assignment;
    }

    /// Notes a Fetch from `replica` at `fetch_offset` while the leader's log ends at
    /// `leader_end`. False when `replica` is not a replica of this partition.
    pub fn record_fetch(
        &mut self,
        replica: i32,
        fetch_offset: i64,
        leader_end: i64,
        now_ms: i64,
    ) -> bool {
        let Some(p) = self.followers.get_mut(&replica) else {
            return false;
        };
        // Kafka's rule: caught up now if it asked for the leader's end; caught up as of its
        // previous fetch if it now asks at or past where the leader ended back then.
        if fetch_offset >= leader_end {
            p.last_caught_up_ms = p.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= p.last_fetch_leader_end {
            p.last_caught_up_ms = p.last_caught_up_ms.max(p.last_fetch_ms);
        }
        p.log_end = fetch_offset;
        p.last_fetch_leader_end = leader_end;
        p.last_fetch_ms = now_ms;
        true
    }

    /// The committed ISR plus the members of a pending change: while a change is in
    /// flight, the high watermark counts everyone either ISR holds, as Kafka's
    /// "maximal ISR" does, so it never passes a record a possible ISR lacks.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.assignment.isr.clone();
        for r in self.pending_isr.iter().flatten() {
            if !isr.contains(r) {
                isr.push(*r);
            }
        }
        isr
    }

    /// The smallest log end over the maximal ISR (the leader's own is `leader_end`).
    pub fn high_watermark(&self, leader_end: i64) -> i64 {
        self.maximal_isr()
            .iter()
            .map(|r| match self.followers.get(r) {
                Some(p) => p.log_end,
                None if *r == self.my_id => leader_end,
                // An ISR member that is not a replica holds nothing we can count on.
                None => -1,
            })
            .fold(leader_end, i64::min)
    }

    /// ISR members other than the leader that have not been caught up for more than
    /// `lag_ms`: the ISR without them, or `None` when nobody lags or a change is pending.
    pub fn shrink_proposal(&self, leader_end: i64, now_ms: i64, lag_ms: i64) -> Option<Vec<i32>> {
        if self.pending_isr.is_some() {
            return None;
        }
        let lagging = |r: &i32| {
            *r != self.my_id
                && self.followers.get(r).is_some_and(|p| {
                    p.log_end < leader_end && now_ms - p.last_caught_up_ms > lag_ms
                })
        };
        if !self.assignment.isr.iter().any(lagging) {
            return None;
        }
        Some(
            self.assignment
                .isr
                .iter()
                .copied()
                .filter(|r| !lagging(r))
                .collect(),
        )
    }

    /// `replica` has caught up (its log end has reached the high watermark and this
    /// leader's epoch start): the ISR with it, or `None`.
    pub fn expand_proposal(&self, replica: i32, high_watermark: i64) -> Option<Vec<i32>> {
        if self.pending_isr.is_some() || self.assignment.isr.contains(&replica) {
            return None;
        }
        let p = self.followers.get(&replica)?;
        if p.log_end < high_watermark || p.log_end < self.epoch_start_offset {
            return None;
        }
        let mut isr = self.assignment.isr.clone();
        isr.push(replica);
        Some(isr)
    }

    pub fn set_pending(&mut self, isr: Vec<i32>) {
        self.pending_isr = Some(isr);
    }

    /// The controller refused or did not answer: forget the change (a later check may
    /// propose it again).
    pub fn clear_pending(&mut self) {
        self.pending_isr = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(isr: &[i32]) -> PartitionAssignment {
        PartitionAssignment {
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 7,
        }
    }

    #[test]
    fn the_high_watermark_is_the_smallest_log_end_over_the_isr() {
        let mut s = LeaderState::new(1, assignment(&[1, 2]), 10, 0);
        assert_eq!(s.high_watermark(10), -1, "2 has not fetched yet");
        s.record_fetch(2, 7, 10, 1);
        assert_eq!(s.high_watermark(10), 7);
        // 3 is out of the ISR: its log end does not hold the high watermark back.
        s.record_fetch(3, 0, 10, 1);
        s.record_fetch(2, 10, 10, 2);
        assert_eq!(s.high_watermark(10), 10);
    }

    #[test]
    fn replicas_added_to_a_leadership_get_a_lag_window_from_then() {
        // A new partition's leader starts alone, then learns its followers (epoch 0 both).
        let alone = PartitionAssignment {
            replicas: vec![1],
            isr: vec![1],
            ..assignment(&[1])
        };
        let mut s = LeaderState::new(1, alone, 0, 0);
        s.update(assignment(&[1, 2, 3]), 100_000);
        s.record_fetch(2, 0, 5, 100_100);
        assert_eq!(
            s.shrink_proposal(5, 104_000, 5_000),
            None,
            "within the window"
        );
        assert_eq!(s.shrink_proposal(5, 105_001, 5_000), Some(vec![1]));
    }

    #[test]
    fn a_follower_behind_for_longer_than_the_lag_time_is_proposed_out() {
        let mut s = LeaderState::new(1, assignment(&[1, 2, 3]), 10, 1_000);
        s.record_fetch(2, 10, 10, 1_000);
        s.record_fetch(3, 10, 10, 1_000);
        // The leader appends; 3 keeps up, 2 stops fetching.
        s.record_fetch(3, 20, 20, 1_500);
        assert_eq!(s.shrink_proposal(20, 1_400, 500), None);
        s.record_fetch(3, 20, 20, 2_000);
        assert_eq!(s.shrink_proposal(20, 2_001, 500), Some(vec![1, 3]));
        s.set_pending(vec![1, 3]);
        assert_eq!(
            s.shrink_proposal(20, 5_000, 500),
            None,
            "one change at a time"
        );
        // While the shrink is pending the high watermark still counts 2.
        assert_eq!(s.high_watermark(20), 10);
        let mut committed = assignment(&[1, 3]);
        committed.partition_epoch = 8;
        s.update(committed, 0);
        assert_eq!(s.high_watermark(20), 20);
    }

    #[test]
    fn a_slow_but_steady_follower_stays_in() {
        let mut s = LeaderState::new(1, assignment(&[1, 2]), 0, 0);
        // Each fetch reaches where the leader ended at the previous one.
        for t in 1..100 {
            s.record_fetch(2, (t - 1) * 10, t * 10, t * 100);
        }
        assert_eq!(s.shrink_proposal(990, 9_950, 500), None);
    }

    #[test]
    fn a_follower_rejoins_once_it_reaches_the_high_watermark_and_the_epoch_start() {
        let mut s = LeaderState::new(1, assignment(&[1]), 50, 0);
        s.record_fetch(2, 40, 60, 1);
        assert_eq!(s.expand_proposal(2, 40), None, "below the epoch start");
        s.record_fetch(2, 55, 60, 2);
        assert_eq!(s.expand_proposal(2, 60), None, "below the high watermark");
        assert_eq!(s.expand_proposal(2, 55), Some(vec![1, 2]));
        assert_eq!(s.expand_proposal(1, 55), None, "already in");
        assert!(!s.record_fetch(9, 0, 60, 3), "not a replica");
    }
}
