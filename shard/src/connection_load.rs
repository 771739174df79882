//! How many client connections each shard serves. Every shard accepts on the same port and
//! the kernel picks the shard by a hash of the connection's addresses (`SO_REUSEPORT`), so a
//! few connections often land on the same shard and leave another idle. A shard that
//! accepts a connection while another serves fewer hands it over (`Shard::hand_connection`).
//! The counts are atomics shared by all shards, read and written relaxed: a placement
//! decided on a count that is a moment old is still a good one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct ConnectionLoad {
    counts: Vec<AtomicUsize>,
}

impl ConnectionLoad {
    pub fn new(shards: usize) -> ConnectionLoad {
        ConnectionLoad {
            counts: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// The shard that should serve a connection shard `me` accepted: `me`, unless another
    /// serves fewer connections (then the first of those that serve fewest).
    pub fn place(&self, me: usize) -> usize {
        let load = |shard: usize| self.counts[shard].load(Ordering::Relaxed);
        let least = (0..self.counts.len())
            .min_by_key(|&s| load(s))
            .unwrap_or(me);
        if load(least) < load(me) {
            least
        } else {
            me
        }
    }

    /// Counts a connection on `shard` until the returned guard is dropped.
    pub fn open(self: &Arc<Self>, shard: usize) -> OpenConnection {
        self.counts[shard].fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            load: self.clone(),
            shard,
        }
    }
}

/// A connection being served; dropping it takes it off its shard's count.
pub struct OpenConnection {
    load: Arc<ConnectionLoad>,
    shard: usize,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.load.counts[self.shard].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_a_shard_serving_fewer_or_stays() {
        let load = Arc::new(ConnectionLoad::new(3));
        assert_eq!(load.place(1), 1, "all equal: stay");
        let a = load.open(1);
        assert_eq!(load.place(1), 0);
        let _b = load.open(0);
        assert_eq!(load.place(1), 2);
        let _c = load.open(2);
        assert_eq!(load.place(1), 1, "all equal again");
        drop(a);
        assert_eq!(load.place(0), 1);
        assert_eq!(load.place(1), 1);
    }
}
