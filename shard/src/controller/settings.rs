//! What a cluster node needs to know, independent of how the broker's config file spells it
//! (the binary maps `BrokerConfig` keys onto this).

use std::path::PathBuf;
use std::time::Duration;

/// One entry of `controller.quorum.voters`: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterAddress {
    pub node_id: i32,
    /// `host:port` of its controller listener.
    pub addr: String,
}

/// The settings of the cluster thread of one node.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `node.id`.
    pub node_id: i32,
    /// `controller.quorum.voters`. Empty means a single node that is its own one-voter quorum,
    /// in process, without a controller listener (it must have the controller role).
    pub voters: Vec<VoterAddress>,
    /// Present when `process.roles` has `controller`.
    pub controller: Option<ControllerSettings>,
    /// Present when `process.roles` has `broker`.
    pub broker: Option<BrokerSettings>,
    /// `socket.request.max.bytes`: the bound on a controller RPC frame.
    pub max_frame_bytes: usize,
}

/// The controller role.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// `<log.dirs>/spate-metadata/`.
    pub metadata_dir: PathBuf,
    /// Address the controller listener binds (`CONTROLLER://h:p` of `listeners`); `None`
    /// binds this node's entry of the voters. Unused without voters.
    pub listen: Option<String>,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub broker_session_timeout: Duration,
    /// `unclean.leader.election.enable`: the default for topics that do not set it.
    pub unclean_leader_election_enable: bool,
    /// Raft election timeout (Kafka's `controller.quorum.election.timeout.ms`): a follower
    /// that hears no leader for between this and twice this starts an election; the leader
    /// sends heartbeats at a third of it.
    pub election_timeout: Duration,
    /// Take a Raft snapshot (and purge the log before it) after this many entries.
    pub snapshot_after_entries: u64,
    /// `leader.imbalance.check.interval.seconds` when `auto.leader.rebalance.enable`: how
    /// often the active controller moves leaders back to their preferred replicas.
    pub leader_rebalance_interval: Option<Duration>,
}

/// The broker role.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// The advertised address clients reach this broker at.
    pub host: String,
    pub port: u16,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// How long a metadata write (or the controlled-shutdown fence) may take, retries
    /// included, before it fails.
    pub request_timeout: Duration,
}

impl ControllerSettings {
    /// Kafka's defaults for everything but the directory.
    pub fn new(metadata_dir: PathBuf) -> ControllerSettings {
        ControllerSettings {
            metadata_dir,
            listen: None,
            broker_session_timeout: Duration::from_millis(9000),
            unclean_leader_election_enable: false,
            election_timeout: Duration::from_millis(1000),
            snapshot_after_entries: 5000,
            leader_rebalance_interval: Some(Duration::from_secs(300)),
        }
    }
}

impl BrokerSettings {
    /// Kafka's defaults for everything but the advertised address.
    pub fn new(host: String, port: u16) -> BrokerSettings {
        BrokerSettings {
            host,
            port,
            rack: None,
            heartbeat_interval: Duration::from_millis(2000),
            request_timeout: Duration::from_millis(30000),
        }
    }
}
