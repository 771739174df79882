//! The cluster's metadata: which brokers exist, which topics, where each partition's replicas
//! live, who leads it at which epoch and which replicas are in sync. Controllers replicate it
//! with Raft (openraft); brokers receive it and act on it.
//!
//! - `image`: the metadata itself ([`image::ClusterImage`]).
//! - `commands`: the replicated commands that change it and their outcomes.
//! - `apply`: `ClusterImage::apply`, the deterministic transition (the Raft state machine).
//! - `election`: fencing and leader election (clean from the ISR, unclean if allowed).
//! - `assignment`: Kafka's replica placement, run by the active controller before proposing.

mod apply;
pub mod assignment;
pub mod commands;
pub mod election;
pub mod image;

#[cfg(test)]
mod apply_tests;
