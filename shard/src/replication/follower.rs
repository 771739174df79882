//! How a follower finds where its log diverged from the new leader's (Kafka's
//! `getOffsetTruncationState`, KIP-101/KIP-279): it sends its latest epoch, the leader
//! answers the largest epoch it has at or below that one and where it ends, and the follower
//! cuts its log there. Pure: the fetcher feeds it the answer and the log's epoch cache.

/// What to do with the follower's log after one OffsetForLeaderEpoch answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Truncate to this offset; the logs now agree, start fetching.
    Done(i64),
    /// Truncate to this offset and ask again with the (now smaller) latest epoch: the
    /// follower does not know the epoch the leader answered with.
    Again(i64),
}

/// `leader_answer` is the leader's (epoch, end offset) for the follower's latest epoch, or
/// `None` (Kafka's UNDEFINED_EPOCH: the leader has nothing that old); `end_for` is the
/// follower's own epoch lookup (`PartitionLog::end_offset_for_epoch`).
pub fn truncation(
    leader_answer: Option<(i32, i64)>,
    end_for: impl Fn(i32) -> Option<(i32, i64)>,
    log_end: i64,
    high_watermark: i64,
) -> Truncation {
    let Some((leader_epoch, leader_end)) = leader_answer else {
        // Nothing to compare with: keep only what was committed, as Kafka does.
        return Truncation::Done(high_watermark.min(log_end));
    };
    match end_for(leader_epoch) {
        Some((epoch, end)) if epoch != leader_epoch => Truncation::Again(end.min(log_end)),
        Some((_, end)) => Truncation::Done(end.min(leader_end).min(log_end)),
        // The follower has no epoch that old: the leader's end is the safe point.
        None => Truncation::Done(leader_end.min(log_end)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower whose epochs 0, 2 and 3 start at offsets 0, 10 and 20; log end 30.
    fn follower(epoch: i32) -> Option<(i32, i64)> {
        match epoch {
            e if e < 0 => None,
            0 | 1 => Some((0, 10)),
            2 => Some((2, 20)),
            _ => Some((3, 30)),
        }
    }

    #[test]
    fn same_epoch_truncates_to_the_smaller_end() {
        // The leader also had epoch 3 but it ended at 25 (our 25..30 never committed).
        assert_eq!(
            truncation(Some((3, 25)), follower, 30, 15),
            Truncation::Done(25)
        );
        // The leader has more of epoch 3 than we do: nothing to cut.
        assert_eq!(
            truncation(Some((3, 40)), follower, 30, 15),
            Truncation::Done(30)
        );
    }

    #[test]
    fn an_epoch_the_follower_never_saw_takes_another_round() {
        // The leader's largest epoch <= 3 is 1, which we never had: cut back to where our
        // epoch 0 ended and ask again.
        assert_eq!(
            truncation(Some((1, 12)), follower, 30, 15),
            Truncation::Again(10)
        );
        // Next round we ask with epoch 0; the leader's epoch 0 ended at 8.
        assert_eq!(
            truncation(Some((0, 8)), follower, 10, 8),
            Truncation::Done(8)
        );
    }

    #[test]
    fn no_common_epoch_keeps_the_committed_part() {
        assert_eq!(truncation(None, follower, 30, 15), Truncation::Done(15));
        assert_eq!(
            truncation(Some((-5, 3)), follower, 30, 15),
            Truncation::Done(3)
        );
    }
}
