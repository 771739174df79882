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

    /// Places a connection shard `me` accepted: on `me`, unless another serves fewer
    /// connections (then on the first of those that serve fewest). It counts there from
    /// now, before it gets there, so a burst of connections is spread too.
    pub fn place(self: &Arc<Self>, me: usize) -> OpenConnection {
        let load = |shard: usize| self.counts[shard].load(Ordering::Relaxed);
        let least = (0..self.counts.len())
            .min_by_key(|&s| load(s))
            .unwrap_or(me);
        let shard = if load(least) < load(me) { least } else { me };
        self.counts[shard].fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            load: self.clone(),
            shard,
        }
    }
}

/// A connection placed on a shard; dropping it takes it off that shard's count.
pub struct OpenConnection {
    load: Arc<ConnectionLoad>,
    shard: usize,
}

impl OpenConnection {
    /// The shard that serves the connection.
    pub fn shard(&self) -> usize {
        self.shard
    }
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
        let a = load.place(1);
        assert_eq!(a.shard(), 1, "all equal: stay");
        let b = load.place(1);
        assert_eq!(b.shard(), 0);
        let c = load.place(1);
        assert_eq!(c.shard(), 2);
        let d = load.place(1);
        assert_eq!(d.shard(), 1, "all equal again");
        drop((a, d));
        let e = load.place(0);
        assert_eq!(e.shard(), 1);
        assert_eq!(load.place(1).shard(), 1);
        drop((b, c, e));
    }
}
