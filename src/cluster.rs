//! The node's place in the cluster: its profile's cluster keys as the cluster thread's
//! settings, and the one-time import of a log dir written before Spate had a controller.

use std::path::PathBuf;
use std::time::Duration;

use spate_core::config::BrokerConfig;
use spate_shard::controller::broker_link::BrokerLink;
use spate_shard::controller::commands::{Command, CommandOutcome};
use spate_shard::controller::settings::{
    BrokerSettings, ClusterSettings, ControllerSettings, VoterAddress,
};
use spate_shard::topics::{scan_log_dir, TopicTable};

/// The controller's metadata directory under the log dir.
const METADATA_DIR: &str = "spate-metadata";

/// How long a broker waits for the controller to answer its metadata writes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn settings(config: &BrokerConfig) -> ClusterSettings {
    let roles = config.process_roles;
    let controller = roles.controller.then(|| ControllerSettings {
        listen: config.controller_listen.clone(),
        broker_session_timeout: Duration::from_millis(config.broker_session_timeout_ms),
        unclean_leader_election_enable: config.unclean_leader_election_enable,
        leader_rebalance_interval: config
            .auto_leader_rebalance_enable
            .then(|| Duration::from_secs(config.leader_imbalance_check_interval_seconds)),
        ..ControllerSettings::new(metadata_dir(config))
    });
    let broker = roles.broker.then(|| {
        let (host, port) = config.advertised_address();
        BrokerSettings {
            heartbeat_interval: Duration::from_millis(config.broker_heartbeat_interval_ms),
            request_timeout: REQUEST_TIMEOUT,
            ..BrokerSettings::new(host, port)
        }
    });
    ClusterSettings {
        node_id: config.node_id,
        voters: config
            .controller_quorum_voters
            .iter()
            .map(|v| VoterAddress {
                node_id: v.id,
                addr: format!("{}:{}", v.host, v.port),
            })
            .collect(),
        controller,
        broker,
        max_frame_bytes: config.socket_request_max_bytes,
    }
}

fn metadata_dir(config: &BrokerConfig) -> PathBuf {
    config.log_dir.join(METADATA_DIR)
}

/// The topics of a log dir that a single broker wrote before it had a controller, when
/// this node is such a broker starting on it for the first time (no metadata yet); they
/// are then [`import`]ed. Reading them checks their files: a damaged one stops start-up.
pub fn legacy_topics(config: &BrokerConfig) -> Result<Option<TopicTable>, String> {
    let single = config.controller_quorum_voters.is_empty()
        && config.process_roles.broker
        && config.process_roles.controller;
    if !single || metadata_dir(config).exists() {
        return Ok(None);
    }
    let table = scan_log_dir(config)
        .map_err(|e| format!("cannot read the log dir {}: {e}", config.log_dir.display()))?;
    config
        .with_dynamic(&table.broker_overrides().pairs())
        .map_err(|e| format!("cannot use the broker's saved dynamic config: {e}"))?;
    let empty = table.is_empty() && table.broker_overrides().pairs().is_empty();
    Ok((!empty).then_some(table))
}

/// Commits `table`'s topics (same ids, configs and partition counts, on this broker) and
/// run-time overrides to the controller, once this broker has registered.
pub fn import(link: &BrokerLink, table: TopicTable) -> Result<(), String> {
    let node_id = link.node_id();
    futures_lite::future::block_on(async {
        let mut watch = link.watch();
        while !link.latest().brokers.contains_key(&node_id) {
            watch
                .changed()
                .await
                .ok_or("the cluster link stopped before this broker registered")?;
        }
        let overrides = table.broker_overrides();
        let mut commands: Vec<Command> = table
            .iter()
            .map(|topic| Command::CreateTopic {
                name: topic.name.clone(),
                id: topic.id,
                partitions: vec![vec![node_id]; topic.assignments.len()],
                config: topic.config.pairs(),
            })
            .collect();
        for (resource, pairs) in [
            (node_id.to_string(), &overrides.node),
            (String::new(), &overrides.cluster_default),
        ] {
            if !pairs.is_empty() {
                commands.push(Command::replace_broker_config(resource, pairs.clone()));
            }
        }
        for command in commands {
            match link.submit(command.clone()).await {
                Ok(CommandOutcome::Refused(refusal)) => {
                    return Err(format!("importing {command:?} was refused: {refusal}"))
                }
                Ok(_) => {}
                Err(e) => return Err(format!("importing {command:?} failed: {e}")),
            }
        }
        tracing::info!(
            topics = table.len(),
            "imported the log dir's topics into the controller"
        );
        Ok(())
    })
}
