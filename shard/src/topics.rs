//! The topic table: every topic's name, id, config overrides and partitions (each with its
//! replicas, leader, epochs and ISR), and the brokers of the cluster.
//!
//! The controller's image is the source (`TopicTable::from_image`); shard 0 publishes each
//! new table to every shard as an immutable snapshot behind an `Arc`; readers never lock.
//!
//! A partition directory `<topic>-<partition>` holds Kafka's `partition.metadata` (the topic
//! id) and `spate-topic.config` (the topic's overrides at creation). A log dir written before
//! Spate had a controller is rebuilt from those files (`scan_log_dir`) and imported once.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use spate_core::config::BrokerConfig;
use spate_core::topic_config::TopicConfig;
use uuid::Uuid;

use crate::controller::image::{BrokerRegistration, ClusterImage, PartitionAssignment};

/// Kafka's file holding a partition's topic id.
const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Spate's file holding the topic's config overrides.
const TOPIC_CONFIG_FILE: &str = "spate-topic.config";
/// The file in the log dir where brokers before the controller kept their run-time config
/// overrides (read when a single broker imports such a log dir).
const BROKER_DYNAMIC_FILE: &str = "spate-broker-dynamic.config";
/// The prefix of a cluster-wide default's line in that file (this broker's own are bare).
const DEFAULT_PREFIX: &str = "default:";
/// Kafka's limit on a topic name's length.
const MAX_TOPIC_NAME_LEN: usize = 249;
/// The cluster id a single broker (no controller quorum) reports.
pub const SINGLE_NODE_CLUSTER_ID: &str = "spate";

/// One topic as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: Uuid,
    /// The partition count: always `assignments.len()` (build with [`TopicInfo::new`] and
    /// grow with [`TopicInfo::add_partitions`] to keep it so).
    pub partitions: i32,
    /// The topic's config overrides.
    pub config: TopicConfig,
    /// Indexed by partition number: replicas, leader, epochs and ISR.
    pub assignments: Vec<PartitionAssignment>,
}

impl TopicInfo {
    pub fn new(
        name: String,
        id: Uuid,
        config: TopicConfig,
        assignments: Vec<PartitionAssignment>,
    ) -> TopicInfo {
        TopicInfo {
            name,
            id,
            partitions: partition_count(&assignments),
            config,
            assignments,
        }
    }

    /// The assignment of `partition`, if the topic has it.
    pub fn assignment(&self, partition: i32) -> Option<&PartitionAssignment> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.assignments.get(p))
    }

    /// Appends partitions with these assignments.
    pub fn add_partitions(&mut self, assignments: impl IntoIterator<Item = PartitionAssignment>) {
        self.assignments.extend(assignments);
        self.partitions = partition_count(&self.assignments);
    }
}

/// Topics are far below `i32::MAX` partitions: Kafka's partition numbers are INT32.
fn partition_count(assignments: &[PartitionAssignment]) -> i32 {
    i32::try_from(assignments.len()).unwrap_or(i32::MAX)
}

/// This broker's registration as the single-node table lists it: its advertised address,
/// unfenced.
pub fn local_broker(config: &BrokerConfig) -> BrokerRegistration {
    let (host, port) = config.advertised_address();
    BrokerRegistration {
        node_id: config.node_id,
        host,
        port,
        rack: None,
        incarnation: Uuid::new_v4(),
        epoch: 0,
        fenced: false,
    }
}

/// Broker configs changed at run time (AlterConfigs on the broker resource), by key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BrokerOverrides {
    /// Set on this broker's own resource (its node id).
    pub node: BTreeMap<String, String>,
    /// Set on the cluster-wide default resource (the empty name).
    pub cluster_default: BTreeMap<String, String>,
}

impl BrokerOverrides {
    /// Every override in the order to apply them: this broker's own win over the defaults.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.cluster_default
            .iter()
            .chain(&self.node)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn from_properties(text: &str) -> Result<BrokerOverrides, String> {
        let mut overrides = BrokerOverrides::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {line:?} is not `key=value`"))?;
            match key.strip_prefix(DEFAULT_PREFIX) {
                Some(key) => overrides.cluster_default.insert(key.into(), value.into()),
                None => overrides.node.insert(key.into(), value.into()),
            };
        }
        Ok(overrides)
    }
}

fn read_broker_overrides(log_dir: &Path) -> io::Result<BrokerOverrides> {
    let path = log_dir.join(BROKER_DYNAMIC_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BrokerOverrides::default()),
        Err(e) => return Err(e),
    };
    BrokerOverrides::from_properties(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// An immutable snapshot of every topic, the cluster's brokers, and this broker's run-time
/// config overrides.
#[derive(Debug, Default, Clone)]
pub struct TopicTable {
    by_name: BTreeMap<String, TopicInfo>,
    name_by_id: HashMap<Uuid, String>,
    broker_overrides: BrokerOverrides,
    brokers: BTreeMap<i32, BrokerRegistration>,
    cluster_id: String,
}

impl TopicTable {
    /// Every registered broker by node id, fenced ones included.
    pub fn brokers(&self) -> &BTreeMap<i32, BrokerRegistration> {
        &self.brokers
    }

    pub fn broker(&self, node_id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&node_id)
    }

    /// True if `node_id` is registered and not fenced.
    pub fn is_alive(&self, node_id: i32) -> bool {
        self.broker(node_id).is_some_and(|b| !b.fenced)
    }

    /// The node ids of the registered, unfenced brokers, ascending.
    pub fn alive_brokers(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.node_id)
            .collect()
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// A copy of this table with the brokers and cluster id replaced.
    pub fn with_brokers(
        &self,
        cluster_id: String,
        brokers: BTreeMap<i32, BrokerRegistration>,
    ) -> TopicTable {
        let mut table = self.clone();
        table.cluster_id = cluster_id;
        table.brokers = brokers;
        table
    }

    /// The assignment of `topic`-`partition`, if both exist.
    pub fn assignment(&self, topic: &str, partition: i32) -> Option<&PartitionAssignment> {
        self.get(topic).and_then(|t| t.assignment(partition))
    }

    /// The replicas of `assignment` whose broker is fenced or not registered (Kafka's
    /// offline replicas), in replica order.
    pub fn offline_replicas(&self, assignment: &PartitionAssignment) -> Vec<i32> {
        assignment
            .replicas
            .iter()
            .copied()
            .filter(|r| !self.is_alive(*r))
            .collect()
    }

    pub fn broker_overrides(&self) -> &BrokerOverrides {
        &self.broker_overrides
    }

    /// A copy of this table with the broker's overrides replaced.
    pub fn with_broker_overrides(&self, overrides: BrokerOverrides) -> TopicTable {
        let mut table = self.clone();
        table.broker_overrides = overrides;
        table
    }

    pub fn get(&self, name: &str) -> Option<&TopicInfo> {
        self.by_name.get(name)
    }

    pub fn get_by_id(&self, id: Uuid) -> Option<&TopicInfo> {
        self.name_by_id.get(&id).and_then(|n| self.by_name.get(n))
    }

    pub fn iter(&self) -> impl Iterator<Item = &TopicInfo> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// A copy of this table with `topic` added or replaced.
    pub fn with(&self, topic: TopicInfo) -> TopicTable {
        debug_assert_eq!(topic.partitions, partition_count(&topic.assignments));
        let mut table = self.clone();
        table.name_by_id.insert(topic.id, topic.name.clone());
        table.by_name.insert(topic.name.clone(), topic);
        table
    }

    /// A copy of this table without `name`.
    pub fn without(&self, name: &str) -> TopicTable {
        let mut table = self.clone();
        if let Some(topic) = table.by_name.remove(name) {
            table.name_by_id.remove(&topic.id);
        }
        table
    }
}

impl TopicTable {
    /// The shards' view of the controller's image, for broker `node_id`: every topic with
    /// its assignments, the brokers, and the run-time overrides that apply to this broker
    /// (the cluster default and its own). A topic config the controller accepted but this
    /// build cannot read (a newer broker's key) is logged and the topic runs on defaults.
    pub fn from_image(image: &ClusterImage, node_id: i32) -> TopicTable {
        let overrides = |resource: &str| image.broker_configs.get(resource).cloned();
        let mut table = TopicTable {
            broker_overrides: BrokerOverrides {
                node: overrides(&node_id.to_string()).unwrap_or_default(),
                cluster_default: overrides("").unwrap_or_default(),
            },
            brokers: image.brokers.clone(),
            cluster_id: image.cluster_id.clone(),
            ..TopicTable::default()
        };
        for (name, topic) in &image.topics {
            let pairs = topic
                .config
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str())));
            let config = TopicConfig::from_pairs(pairs).unwrap_or_else(|e| {
                tracing::error!("topic {name}: ignoring its config from the controller: {e}");
                TopicConfig::default()
            });
            let info = TopicInfo::new(name.clone(), topic.id, config, topic.partitions.clone());
            table.name_by_id.insert(info.id, info.name.clone());
            table.by_name.insert(info.name.clone(), info);
        }
        table
    }
}

/// Checks a topic name as Kafka's `Topic.validate` does.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be \"{name}\""));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(format!(
            "topic name is {} characters, the limit is {MAX_TOPIC_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} holds {c:?}: only ASCII letters, digits, '.', '_' and '-' are legal"
        ));
    }
    Ok(())
}

/// The directory of one partition.
pub fn partition_dir(log_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    log_dir.join(format!("{topic}-{partition}"))
}

/// Gives a partition directory this broker has not held before its `partition.metadata`
/// (Kafka's tools read the topic id there) and config file; one of this topic is left as
/// is. One of an older topic of the same name (deleted while this broker was down) is
/// stray data: it is removed, as Kafka removes stray logs.
pub fn write_new_partition_files(dir: &Path, topic: &TopicInfo) -> io::Result<()> {
    match read_topic_id(&dir.join(PARTITION_METADATA_FILE))? {
        Some(id) if id == topic.id => return Ok(()),
        Some(id) => {
            tracing::warn!(
                "removing {}: it holds topic id {} but {} is now {}",
                dir.display(),
                encode_topic_id(id),
                topic.name,
                encode_topic_id(topic.id)
            );
            std::fs::remove_dir_all(dir)?;
        }
        None => {}
    }
    write_partition_files(dir, topic)
}

/// Writes `partition.metadata` and the config file into a partition's directory, creating it.
pub fn write_partition_files(dir: &Path, topic: &TopicInfo) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomically(
        &dir.join(PARTITION_METADATA_FILE),
        format!("version: 0\ntopic_id: {}\n", encode_topic_id(topic.id)).as_bytes(),
    )?;
    write_atomically(
        &dir.join(TOPIC_CONFIG_FILE),
        topic.config.to_properties().as_bytes(),
    )
}

/// Rebuilds the single broker's topic table from the partition directories under
/// `config.log_dir`: every partition on this broker alone, which is the only broker listed.
/// Directories whose name is not `<valid topic>-<partition>` are skipped.
pub fn scan_log_dir(config: &BrokerConfig) -> io::Result<TopicTable> {
    let log_dir = config.log_dir.as_path();
    std::fs::create_dir_all(log_dir)?;
    let mut found: BTreeMap<String, (i32, PathBuf)> = BTreeMap::new();
    for entry in std::fs::read_dir(log_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some((topic, partition)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(partition) = partition.parse::<i32>() else {
            continue;
        };
        if partition < 0 || validate_topic_name(topic).is_err() {
            continue;
        }
        let slot = found
            .entry(topic.to_string())
            .or_insert((partition, entry.path()));
        if partition >= slot.0 {
            slot.0 = partition;
        }
        if partition == 0 {
            slot.1 = entry.path();
        }
    }
    let broker = local_broker(config);
    let mut table = TopicTable {
        broker_overrides: read_broker_overrides(log_dir)?,
        cluster_id: SINGLE_NODE_CLUSTER_ID.to_string(),
        brokers: BTreeMap::from([(broker.node_id, broker)]),
        ..TopicTable::default()
    };
    for (name, (max_partition, dir)) in found {
        let id = read_topic_id(&dir.join(PARTITION_METADATA_FILE))?;
        let topic_config = read_config(&dir.join(TOPIC_CONFIG_FILE))?;
        let topic = TopicInfo::new(
            name,
            id.unwrap_or_else(Uuid::new_v4),
            topic_config,
            (0..=max_partition)
                .map(|_| PartitionAssignment::single(config.node_id))
                .collect(),
        );
        if id.is_none() {
            // A directory from before ids were kept (or a lost file): give it one now.
            for p in 0..topic.partitions {
                write_partition_files(&partition_dir(log_dir, &topic.name, p), &topic)?;
            }
        }
        table = table.with(topic);
    }
    Ok(table)
}

fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn read_topic_id(path: &Path) -> io::Result<Option<Uuid>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .and_then(|id| decode_topic_id(id.trim())))
}

fn read_config(path: &Path) -> io::Result<TopicConfig> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TopicConfig::default()),
        Err(e) => return Err(e),
    };
    TopicConfig::from_properties(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Kafka prints a topic id as URL-safe base64 of its 16 bytes, without padding.
pub fn encode_topic_id(id: Uuid) -> String {
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = String::with_capacity(22);
    for byte in id.as_bytes() {
        bits = (bits << 8) | u32::from(*byte);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(BASE64_URL[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(BASE64_URL[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}

pub fn decode_topic_id(text: &str) -> Option<Uuid> {
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut bytes = Vec::with_capacity(16);
    for c in text.bytes() {
        let value = BASE64_URL.iter().position(|b| *b == c)? as u32;
        bits = (bits << 6) | value;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
        }
    }
    Uuid::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_id_round_trips_in_kafkas_text_form() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        let text = encode_topic_id(id);
        assert_eq!(text.len(), 22);
        assert_eq!(decode_topic_id(&text), Some(id));
        assert_eq!(decode_topic_id("not base64!"), None);
    }

    #[test]
    fn names_are_checked_like_kafka() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("bad name").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn image_becomes_the_table_this_broker_sees() {
        use crate::controller::image::TopicImage;
        let broker = |node_id, fenced| BrokerRegistration {
            node_id,
            host: "127.0.0.1".into(),
            port: 9000 + node_id as u16,
            rack: None,
            incarnation: Uuid::new_v4(),
            epoch: 1,
            fenced,
        };
        let assignment = PartitionAssignment {
            replicas: vec![2, 1],
            isr: vec![2],
            leader: 2,
            leader_epoch: 3,
            partition_epoch: 5,
        };
        let id = Uuid::new_v4();
        let image = ClusterImage {
            version: 7,
            cluster_id: "c1".into(),
            brokers: BTreeMap::from([(1, broker(1, true)), (2, broker(2, false))]),
            topics: BTreeMap::from([(
                "t".to_string(),
                TopicImage {
                    id,
                    config: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
                    partitions: vec![assignment.clone(); 2],
                },
            )]),
            broker_configs: BTreeMap::from([
                (
                    "".to_string(),
                    BTreeMap::from([("log.retention.ms".into(), "5".into())]),
                ),
                (
                    "1".to_string(),
                    BTreeMap::from([("message.max.bytes".into(), "9".into())]),
                ),
                (
                    "2".to_string(),
                    BTreeMap::from([("log.roll.ms".into(), "1".into())]),
                ),
            ]),
            ..ClusterImage::default()
        };
        let table = TopicTable::from_image(&image, 1);
        assert_eq!(table.cluster_id(), "c1");
        assert!(!table.is_alive(1) && table.is_alive(2));
        let topic = table.get_by_id(id).unwrap();
        assert_eq!((topic.name.as_str(), topic.partitions), ("t", 2));
        assert_eq!(table.assignment("t", 1), Some(&assignment));
        assert_eq!(
            topic.config,
            TopicConfig::from_pairs([("retention.ms", Some("1000"))]).unwrap()
        );
        // Node 1 gets the cluster default and its own overrides, not node 2's.
        assert_eq!(
            table.broker_overrides().pairs(),
            vec![
                ("log.retention.ms".to_string(), "5".to_string()),
                ("message.max.bytes".to_string(), "9".to_string())
            ]
        );
    }

    fn config_in(dir: &Path, node_id: i32) -> BrokerConfig {
        BrokerConfig {
            log_dir: dir.to_path_buf(),
            node_id,
            listen: "127.0.0.1:19092".into(),
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn scan_rebuilds_topics_from_partition_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let topic = TopicInfo::new(
            "my-topic".into(),
            Uuid::new_v4(),
            TopicConfig::from_pairs([("retention.ms", Some("1000"))]).unwrap(),
            vec![PartitionAssignment::single(4); 3],
        );
        for p in 0..3 {
            write_partition_files(&partition_dir(dir.path(), "my-topic", p), &topic).unwrap();
        }
        std::fs::create_dir(dir.path().join("not a partition")).unwrap();
        let table = scan_log_dir(&config_in(dir.path(), 4)).unwrap();
        assert_eq!(table.len(), 1);
        assert_eq!(table.get("my-topic"), Some(&topic));
        assert_eq!(table.get_by_id(topic.id).map(|t| t.partitions), Some(3));
        assert_eq!(table.broker_overrides(), &BrokerOverrides::default());
        assert_eq!(
            table.assignment("my-topic", 2),
            Some(&PartitionAssignment::single(4))
        );
        assert_eq!(table.assignment("my-topic", 3), None);
        assert_eq!(table.assignment("my-topic", -1), None);
        // The table lists this broker alone, at its advertised address, unfenced.
        let brokers: Vec<_> = table.brokers().values().collect();
        assert_eq!(brokers.len(), 1);
        assert_eq!(
            (
                brokers[0].node_id,
                brokers[0].host.as_str(),
                brokers[0].port
            ),
            (4, "127.0.0.1", 19092)
        );
        assert!(table.is_alive(4) && !table.is_alive(5));
        assert_eq!(table.cluster_id(), SINGLE_NODE_CLUSTER_ID);
    }

    #[test]
    fn offline_replicas_are_fenced_or_unregistered() {
        let mut fenced = local_broker(&config_in(Path::new("x"), 2));
        fenced.fenced = true;
        let brokers = BTreeMap::from([
            (1, local_broker(&config_in(Path::new("x"), 1))),
            (2, fenced),
        ]);
        let table = TopicTable::default().with_brokers("c".into(), brokers);
        let assignment = PartitionAssignment {
            replicas: vec![3, 1, 2],
            isr: vec![1],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 7,
        };
        assert_eq!(table.offline_replicas(&assignment), vec![3, 2]);
        assert_eq!(table.cluster_id(), "c");
    }

    #[test]
    fn partition_count_follows_the_assignments() {
        let mut topic = TopicInfo::new(
            "t".into(),
            Uuid::new_v4(),
            TopicConfig::default(),
            vec![PartitionAssignment::single(1)],
        );
        assert_eq!(topic.partitions, 1);
        topic.add_partitions(vec![PartitionAssignment::single(1); 2]);
        assert_eq!(topic.partitions, 3);
        assert!(topic.assignment(2).is_some() && topic.assignment(3).is_none());
    }

    #[test]
    fn broker_overrides_survive_a_rescan() {
        let dir = tempfile::tempdir().unwrap();
        let mut overrides = BrokerOverrides::default();
        overrides
            .node
            .insert("log.retention.ms".into(), "1000".into());
        overrides
            .cluster_default
            .insert("log.retention.ms".into(), "5".into());
        std::fs::write(
            dir.path().join(BROKER_DYNAMIC_FILE),
            "default:log.retention.ms=5\nlog.retention.ms=1000\n",
        )
        .unwrap();
        let table = scan_log_dir(&config_in(dir.path(), 1)).unwrap();
        assert_eq!(table.broker_overrides(), &overrides);
        // This broker's own value comes last, so it wins.
        assert_eq!(
            overrides.pairs().last(),
            Some(&("log.retention.ms".to_string(), "1000".to_string()))
        );
    }
}
