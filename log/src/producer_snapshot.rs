//! Keeping the producer state across restarts (Kafka's `ProducerStateManager` snapshots):
//! `flush` and `close` write `<log end>.snapshot`; `open` loads the newest snapshot at or
//! below the log end and replays the producer batches written after it, so a crash loses
//! nothing the log itself kept. With no snapshot at all (a log written before snapshots
//! existed) the state is rebuilt from the last two segments, as Kafka does.

use std::path::{Path, PathBuf};

use crate::checkpoint;
use crate::error::LogError;
use crate::partition_log::PartitionLog;
use crate::producer_state::{ProducerBatch, ProducerState};
use crate::segment::{self, HeaderReader};

pub const SNAPSHOT_SUFFIX: &str = "snapshot";

/// Segments scanned for producer batches when there is no snapshot.
const SEGMENTS_WITHOUT_SNAPSHOT: usize = 2;

impl PartitionLog {
    /// Writes the producer state as of `end` (the log end when it was read), then removes
    /// older snapshots. Skipped when a snapshot at `end` exists.
    pub(crate) async fn write_producer_snapshot(&self, end: i64) -> Result<(), LogError> {
        let bytes = {
            let st = self.state.borrow();
            if st.producer_snapshot == end {
                return Ok(());
            }
            st.producers.to_snapshot(end)
        };
        let path = segment::file_path(&self.dir, end, SNAPSHOT_SUFFIX);
        checkpoint::write_atomic(&path, bytes).await?;
        self.state.borrow_mut().producer_snapshot = end;
        for (offset, path) in list_snapshots(&self.dir)? {
            if offset < end {
                remove(&path)?;
            }
        }
        Ok(())
    }

    /// Removes snapshots past `offset` (the log was truncated there).
    pub(crate) fn remove_snapshots_after(&self, offset: i64) -> Result<(), LogError> {
        for (at, path) in list_snapshots(&self.dir)? {
            if at > offset {
                remove(&path)?;
            }
        }
        let mut st = self.state.borrow_mut();
        if st.producer_snapshot > offset {
            st.producer_snapshot = -1;
        }
        Ok(())
    }

    /// Rebuilds the producer state on open (see the module docs). A damaged snapshot is
    /// removed and an older one (or the segments) used instead.
    pub(crate) async fn load_producer_state(&self) -> Result<(), LogError> {
        let (log_start, log_end) = (self.log_start_offset(), self.log_end_offset());
        let mut loaded = None;
        for (offset, path) in list_snapshots(&self.dir)?.into_iter().rev() {
            if offset > log_end {
                remove(&path)?;
                continue;
            }
            let bytes = checkpoint::read(&path).await?.unwrap_or_default();
            match ProducerState::from_snapshot(&bytes) {
                Ok(state) => {
                    loaded = Some((offset, state));
                    break;
                }
                Err(reason) => {
                    tracing::warn!(file = %path.display(), "ignoring a damaged producer snapshot: {reason}");
                    remove(&path)?;
                }
            }
        }
        let (from, mut producers, snapshot) = match loaded {
            Some((offset, state)) => (offset, state, offset),
            None => {
                let st = self.state.borrow();
                let bases: Vec<i64> = st.segments.keys().copied().collect();
                let from = bases[bases.len().saturating_sub(SEGMENTS_WITHOUT_SNAPSHOT)];
                (from, ProducerState::default(), -1)
            }
        };
        self.replay_producers(from.max(log_start), log_end, &mut producers)
            .await?;
        producers.remove_before(log_start);
        let mut st = self.state.borrow_mut();
        st.producers = producers;
        st.producer_snapshot = snapshot;
        Ok(())
    }

    /// Replays the producer batches holding offsets in [from, end).
    async fn replay_producers(
        &self,
        from: i64,
        end: i64,
        producers: &mut ProducerState,
    ) -> Result<(), LogError> {
        if from >= end {
            return Ok(());
        }
        let first = self.state.borrow().floor_segment(from);
        let bases: Vec<i64> = self
            .state
            .borrow()
            .segments
            .range(first..)
            .map(|(&b, _)| b)
            .collect();
        for base in bases {
            self.ensure_indexes(base).await?;
            let (file, size, hint) = {
                let st = self.state.borrow();
                let Some(seg) = st.segments.get(&base) else {
                    continue;
                };
                (
                    seg.file.clone(),
                    seg.size,
                    seg.offset_index.lookup(from).1 as u64,
                )
            };
            let chunk = 1 << 16;
            let mut reader = HeaderReader::new(&file, size, chunk);
            let Some((mut pos, mut header)) = reader.find_offset(hint, from).await? else {
                continue;
            };
            loop {
                if header.base_offset >= end {
                    return Ok(());
                }
                if let Some(batch) = ProducerBatch::of(&header, header.base_offset) {
                    producers.replay(&batch);
                }
                pos += header.total_len() as u64;
                if pos >= size {
                    break;
                }
                header = reader.header_at(pos).await?;
            }
        }
        Ok(())
    }
}

/// The snapshot files in `dir`, by offset.
fn list_snapshots(dir: &Path) -> Result<Vec<(i64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let name = entry.file_name();
        if let Some(offset) = name
            .to_str()
            .and_then(|n| segment::parse_file_name(n, SNAPSHOT_SUFFIX))
        {
            out.push((offset, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn remove(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LogError::io(path, e)),
        _ => Ok(()),
    }
}
