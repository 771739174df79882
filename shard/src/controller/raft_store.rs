//! The controller's openraft storage: the Raft log, vote, committed index and snapshot, kept
//! in memory and persisted in the metadata directory ([`metadata_files`](super::metadata_files))
//! before openraft is told they are durable. The state machine is the [`ClusterImage`]; it is
//! rebuilt at start from the last snapshot plus the committed entries after it (openraft
//! replays them), and every applied change is published on a watch channel.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::{
    AnyError, EntryPayload, LogState, RaftLogReader, RaftSnapshotBuilder, RaftStorage, Snapshot,
    StorageIOError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::commands::CommandOutcome;
use super::image::ClusterImage;
use super::metadata_files::{read_json, write_json, LogFile, MetadataError};
use super::raft_types::{
    Entry, LogId, NodeId, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};

const VOTE: &str = "vote.json";
const COMMITTED: &str = "committed.json";
const PURGED: &str = "purged.json";
const SNAPSHOT: &str = "snapshot.json";
const NODE: &str = "node.json";

/// The Raft storage of one controller. Clones share the same state (openraft wants separate
/// log reader and snapshot builder handles).
#[derive(Clone)]
pub struct MetadataStore {
    inner: Arc<Mutex<Inner>>,
    images: Arc<watch::Sender<Arc<ClusterImage>>>,
}

struct Inner {
    dir: PathBuf,
    log_file: LogFile,
    log: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    image: ClusterImage,
    snapshot: Option<StoredSnapshot>,
}

/// `snapshot.json`: the image as of `meta.last_log_id`.
#[derive(Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    image: ClusterImage,
}

/// `node.json`: which node owns the directory, so a directory copied to (or configured for)
/// another node is refused instead of joining the quorum under a wrong identity.
#[derive(Serialize, Deserialize)]
struct NodeFile {
    node_id: NodeId,
}

impl MetadataStore {
    /// Opens (creating if needed) the metadata directory of controller `node_id`.
    pub fn open(dir: &Path, node_id: NodeId) -> Result<MetadataStore, MetadataError> {
        std::fs::create_dir_all(dir).map_err(|e| MetadataError::io(dir, e))?;
        match read_json::<NodeFile>(dir, NODE)? {
            Some(n) if n.node_id != node_id => {
                return Err(MetadataError::Corrupt {
                    path: dir.join(NODE),
                    reason: format!(
                        "the directory belongs to controller {}, not {node_id}",
                        n.node_id
                    ),
                })
            }
            Some(_) => {}
            None => write_json(dir, NODE, &NodeFile { node_id })?,
        }
        let vote = read_json(dir, VOTE)?;
        let committed = read_json(dir, COMMITTED)?;
        let last_purged: Option<LogId> = read_json(dir, PURGED)?;
        let snapshot: Option<StoredSnapshot> = read_json(dir, SNAPSHOT)?;
        let (log_file, entries) = LogFile::open(dir)?;
        let purged_index = last_purged.map(|l| l.index);
        // Entries at or below the purge point survive a crash during the purge's rewrite.
        let log: BTreeMap<u64, Entry> = entries
            .into_iter()
            .filter(|e| purged_index.is_none_or(|p| e.log_id.index > p))
            .map(|e| (e.log_id.index, e))
            .collect();
        if let (Some(p), Some(&first)) = (purged_index, log.keys().next()) {
            if first != p + 1 {
                return Err(MetadataError::Corrupt {
                    path: dir.join("log"),
                    reason: format!("the log starts at entry {first} but entries up to {p} were purged: entries are missing"),
                });
            }
        }
        let (last_applied, membership, image) = match &snapshot {
            Some(s) => (
                s.meta.last_log_id,
                s.meta.last_membership.clone(),
                s.image.clone(),
            ),
            None => (None, StoredMembership::default(), ClusterImage::default()),
        };
        let (images, _) = watch::channel(Arc::new(image.clone()));
        Ok(MetadataStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                log_file,
                log,
                last_purged,
                vote,
                committed,
                last_applied,
                membership,
                image,
                snapshot,
            })),
            images: Arc::new(images),
        })
    }

    /// True if this controller has never been part of a cluster (no vote, log or snapshot).
    pub fn is_empty(&self) -> bool {
        let inner = self.lock();
        inner.vote.is_none()
            && inner.log.is_empty()
            && inner.snapshot.is_none()
            && inner.last_purged.is_none()
    }

    /// The applied image, updated after every applied batch of entries.
    pub fn images(&self) -> watch::Receiver<Arc<ClusterImage>> {
        self.images.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, image: ClusterImage) {
        self.images.send_replace(Arc::new(image));
    }
}

fn io_error(e: MetadataError) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write(AnyError::new(&e)),
    }
}

// The error type is openraft's.
#[allow(clippy::result_large_err)]
fn snapshot_of(s: &StoredSnapshot) -> Result<Snapshot<TypeConfig>, StorageError> {
    let data = serde_json::to_vec(&s.image).map_err(|e| StorageError::IO {
        source: StorageIOError::read_snapshot(Some(s.meta.signature()), AnyError::new(&e)),
    })?;
    Ok(Snapshot {
        meta: s.meta.clone(),
        snapshot: Box::new(Cursor::new(data)),
    })
}

impl RaftLogReader<TypeConfig> for MetadataStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .lock()
            .log
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MetadataStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let mut inner = self.lock();
        let last = inner.last_applied;
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: last,
                last_membership: inner.membership.clone(),
                snapshot_id: format!(
                    "{}-{}",
                    last.map(|l| l.leader_id.term).unwrap_or(0),
                    last.map(|l| l.index).unwrap_or(0)
                ),
            },
            image: inner.image.clone(),
        };
        write_json(&inner.dir, SNAPSHOT, &stored).map_err(io_error)?;
        let snapshot = snapshot_of(&stored)?;
        inner.snapshot = Some(stored);
        Ok(snapshot)
    }
}

impl RaftStorage<TypeConfig> for MetadataStore {
    type LogReader = MetadataStore;
    type SnapshotBuilder = MetadataStore;

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut inner = self.lock();
        write_json(&inner.dir, VOTE, vote).map_err(io_error)?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        write_json(&inner.dir, COMMITTED, &committed).map_err(io_error)?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        let last = inner.log.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn append_to_log<I>(&mut self, entries: I) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut inner = self.lock();
        inner.log_file.append(&entries).map_err(io_error)?;
        for e in entries {
            inner.log.insert(e.log_id.index, e);
        }
        Ok(())
    }

    async fn delete_conflict_logs_since(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner
            .log_file
            .truncate_from(log_id.index)
            .map_err(io_error)?;
        inner.log.split_off(&log_id.index);
        Ok(())
    }

    async fn purge_logs_upto(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        // The purge point first: a crash before the rewrite leaves extra entries, which
        // `open` drops; the reverse order could leave a log with a hole.
        write_json(&inner.dir, PURGED, &log_id).map_err(io_error)?;
        inner.last_purged = Some(log_id);
        let kept = inner.log.split_off(&(log_id.index + 1));
        inner.log = kept;
        let Inner { log_file, log, .. } = &mut *inner;
        log_file.rewrite(log.values()).map_err(io_error)?;
        Ok(())
    }

    async fn last_applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply_to_state_machine(
        &mut self,
        entries: &[Entry],
    ) -> Result<Vec<CommandOutcome>, StorageError> {
        let mut inner = self.lock();
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut changed = false;
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            let outcome = match &entry.payload {
                EntryPayload::Blank => CommandOutcome::Applied,
                EntryPayload::Normal(command) => {
                    changed = true;
                    inner.image.apply(entry.log_id.index, command.clone())
                }
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    CommandOutcome::Applied
                }
            };
            outcomes.push(outcome);
        }
        if changed {
            self.publish(inner.image.clone());
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let image: ClusterImage =
            serde_json::from_slice(snapshot.get_ref()).map_err(|e| StorageError::IO {
                source: StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e)),
            })?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            image: image.clone(),
        };
        let mut inner = self.lock();
        write_json(&inner.dir, SNAPSHOT, &stored).map_err(io_error)?;
        inner.snapshot = Some(stored);
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.image = image.clone();
        self.publish(image);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let inner = self.lock();
        inner.snapshot.as_ref().map(snapshot_of).transpose()
    }
}
