//! Producer ids for InitProducerId, unique without asking another shard: shard `s` of `n`
//! hands out ids congruent to `s` modulo `n`, each above the last it gave. They start from
//! the wall clock (milliseconds times `n`) and above the largest id any partition log of
//! this broker holds (its producer state survives restarts), so a restart never hands out
//! an id an earlier run gave, even if the clock went back.

use std::sync::atomic::{AtomicI64, Ordering};

/// The largest producer id found in any partition log opened by this process.
static MAX_SEEN: AtomicI64 = AtomicI64::new(-1);

/// Records a producer id found in a log.
pub(crate) fn note_seen(id: i64) {
    MAX_SEEN.fetch_max(id, Ordering::Relaxed);
}

/// The next id for shard `shard` of `shards`, after `last` (-1: none yet).
pub(crate) fn next(shard: usize, shards: usize, last: i64) -> i64 {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    next_at(
        shard,
        shards,
        last,
        now_ms,
        MAX_SEEN.load(Ordering::Relaxed),
    )
}

fn next_at(shard: usize, shards: usize, last: i64, now_ms: i64, max_seen: i64) -> i64 {
    let (shard, shards) = (shard as i64, shards as i64);
    let from_clock = now_ms * shards + shard;
    // The first id of this shard above `max_seen`.
    let above_seen = (max_seen.max(-1) + 1 - shard).div_euclid(shards) * shards + shard;
    let above_seen = if above_seen <= max_seen {
        above_seen + shards
    } else {
        above_seen
    };
    from_clock.max(last + shards).max(above_seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_to_their_shard_and_only_grow() {
        let a = next_at(1, 4, -1, 1_000, -1);
        assert_eq!(a, 4_001);
        assert_eq!(next_at(1, 4, a, 1_000, -1), 4_005);
        // The clock went back: still above the last one.
        assert_eq!(next_at(1, 4, 4_005, 10, -1), 4_009);
    }

    #[test]
    fn a_restart_starts_above_every_id_in_the_logs() {
        // The clock is behind the ids an earlier run handed out.
        for (max_seen, want) in [
            (9_000, 9_001),
            (9_001, 9_005),
            (9_002, 9_005),
            (9_004, 9_005),
        ] {
            let id = next_at(1, 4, -1, 10, max_seen);
            assert_eq!(id, want, "max seen {max_seen}");
            assert_eq!(id.rem_euclid(4), 1);
            assert!(id > max_seen);
        }
    }
}
