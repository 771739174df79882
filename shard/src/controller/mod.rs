//! The cluster's metadata: which brokers exist, which topics, where each partition's replicas
//! live, who leads it at which epoch and which replicas are in sync. Controllers replicate it
//! with Raft (openraft); brokers receive it and act on it.
//!
//! - `image`: the metadata itself ([`image::ClusterImage`]).
//! - `commands`: the replicated commands that change it and their outcomes.
//! - `apply`: `ClusterImage::apply`, the deterministic transition (the Raft state machine).
//! - `election`: fencing and leader election (clean from the ISR, unclean if allowed).
//! - `assignment`: Kafka's replica placement, run by the active controller before proposing.
//! - `raft_types`: the openraft type configuration.
//! - `metadata_files`: the files of `<log.dirs>/spate-metadata/` (log records, atomic JSON).
//! - `raft_store`: openraft storage over those files, with the image as state machine.
//! - `rpc`: the controller wire protocol (length-prefixed JSON frames) and its messages.
//! - `raft_network`: openraft's RPCs between voters over that protocol.
//! - `voter`: one controller: Raft node, RPC answers, the active controller's duties
//!   (heartbeat tracking, fencing, replica placement).
//! - `server`: the controller listener.
//! - `client`: reaching the active controller (redirects, retries, or in process).
//! - `broker_link`: the broker's registration, heartbeats, images and writes; the
//!   [`broker_link::BrokerLink`] handle the shards use.
//! - `settings`: what the cluster thread needs ([`settings::ClusterSettings`]).
//! - `node`: the cluster thread ([`node::ClusterNode`]).

mod apply;
pub mod assignment;
pub mod broker_link;
pub mod client;
pub mod commands;
pub mod election;
pub mod image;
pub mod metadata_files;
pub mod node;
mod raft_network;
pub mod raft_store;
pub mod raft_types;
pub mod rpc;
mod server;
pub mod settings;
pub mod voter;

#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod raft_store_tests;
