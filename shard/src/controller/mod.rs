//! The cluster's metadata: which brokers exist, which topics, where each partition's replicas
//! live, who leads it at which epoch and which replicas are in sync. Controllers replicate it
//! with Raft (openraft); brokers receive it and act on it.
//!
//! - `image`: the metadata itself ([`image::ClusterImage`]), the commands that change it, and
//!   the deterministic function applying a command (the Raft state machine's core).

pub mod image;
