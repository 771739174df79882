//! Which shard owns a partition.
//!
//! The owner is a pure function of the topic name, the partition number and the shard
//! count, so every shard computes the same answer with no shared state, and a restart with
//! the same shard count puts every partition back on the same shard. The hash is FNV-1a,
//! written out here because `std`'s hasher is randomly seeded per process.

/// The shard (0-based) that owns `topic`-`partition` among `shards` shards.
pub fn owner_shard(topic: &str, partition: i32, shards: usize) -> usize {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    for byte in topic.bytes().chain(partition.to_be_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    (hash % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_in_range() {
        for p in 0..64 {
            let s = owner_shard("orders", p, 3);
            assert!(s < 3);
            assert_eq!(s, owner_shard("orders", p, 3));
        }
        assert_eq!(owner_shard("t", 0, 1), 0);
        assert_eq!(owner_shard("t", 0, 0), 0);
    }

    #[test]
    fn spreads_partitions_over_all_shards() {
        let mut seen = [false; 4];
        for p in 0..32 {
            seen[owner_shard("events", p, 4)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
