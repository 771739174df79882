//! spate-shard: the thread-per-core runtime. One pinned glommio executor per core, each
//! owning a disjoint set of partitions; cross-shard messages; the per-shard partition manager.
