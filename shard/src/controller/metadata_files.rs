//! The controller's files under `<log.dirs>/spate-metadata/` (Spate's own format, not Kafka's
//! `__cluster_metadata`):
//!
//! - `log`: the Raft log, one record per entry: `u32` BE body length, `u32` BE CRC32C of the
//!   body, then the entry as JSON. Appends are fsynced before they are acknowledged, so a torn
//!   record can only be the last one, never acknowledged: reopening cuts it off. A bad record
//!   followed by good data is damage and stops start-up.
//! - `vote.json`, `committed.json`, `purged.json`, `snapshot.json`, `node.json`: small
//!   documents replaced atomically (write a temporary file, fsync, rename, fsync the dir).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::raft_types::Entry;

/// A log record larger than this is damage (metadata entries are a few KiB at most).
const MAX_RECORD_BYTES: u32 = 64 << 20;
const RECORD_HEADER_BYTES: u64 = 8;

/// Why the metadata directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("metadata file {path} is damaged: {reason}. Restore the directory from another controller (remove it to rejoin empty) or fix the file")]
    Corrupt { path: PathBuf, reason: String },
}

impl MetadataError {
    pub(crate) fn io(path: &Path, source: io::Error) -> MetadataError {
        MetadataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn corrupt(path: &Path, reason: impl Into<String>) -> MetadataError {
        MetadataError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Replaces `dir/name` with `value` as JSON, durably.
pub(crate) fn write_json<T: Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
) -> Result<(), MetadataError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let body =
        serde_json::to_vec(value).map_err(|e| MetadataError::io(&path, io::Error::other(e)))?;
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(dir)
    };
    write().map_err(|e| MetadataError::io(&path, e))
}

/// Reads `dir/name` as JSON; `None` if it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(
    dir: &Path,
    name: &str,
) -> Result<Option<T>, MetadataError> {
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(body) => serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| MetadataError::corrupt(&path, e.to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MetadataError::io(&path, e)),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The Raft log file. Entries are kept in memory by the store; this only persists them.
pub(crate) struct LogFile {
    path: PathBuf,
    file: File,
    /// Log index -> byte position of its record, to truncate a conflicting suffix.
    positions: BTreeMap<u64, u64>,
    len: u64,
}

impl LogFile {
    /// Opens (or creates) the log and returns its entries in index order.
    pub(crate) fn open(dir: &Path) -> Result<(LogFile, Vec<Entry>), MetadataError> {
        let path = dir.join("log");
        let io_err = |e| MetadataError::io(&path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err)?;
        let (entries, positions, valid) = parse_records(&path, &bytes)?;
        if valid < bytes.len() as u64 {
            tracing::warn!(
                "{}: cutting a torn last record ({} bytes at position {valid}) left by a crash; it was never acknowledged",
                path.display(),
                bytes.len() as u64 - valid
            );
            file.set_len(valid).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
        }
        Ok((
            LogFile {
                path,
                file,
                positions,
                len: valid,
            },
            entries,
        ))
    }

    /// Appends entries and fsyncs them.
    pub(crate) fn append<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<(), MetadataError> {
        let mut buf = Vec::new();
        let mut new_positions = Vec::new();
        for entry in entries {
            new_positions.push((entry.log_id.index, self.len + buf.len() as u64));
            encode_record(entry, &mut buf).map_err(|e| MetadataError::io(&self.path, e))?;
        }
        let write = |f: &mut File| -> io::Result<()> {
            f.write_all(&buf)?;
            f.sync_data()
        };
        if let Err(e) = write(&mut self.file) {
            // Leave no partial record behind a failed append.
            let _ = self.file.set_len(self.len);
            return Err(MetadataError::io(&self.path, e));
        }
        self.len += buf.len() as u64;
        self.positions.extend(new_positions);
        Ok(())
    }

    /// Removes the entries from `index` on.
    pub(crate) fn truncate_from(&mut self, index: u64) -> Result<(), MetadataError> {
        let Some(&pos) = self.positions.range(index..).next().map(|(_, p)| p) else {
            return Ok(());
        };
        self.file
            .set_len(pos)
            .map_err(|e| MetadataError::io(&self.path, e))?;
        self.file
            .sync_all()
            .map_err(|e| MetadataError::io(&self.path, e))?;
        self.positions.split_off(&index);
        self.len = pos;
        Ok(())
    }

    /// Replaces the whole file with these entries (after a purge): written beside, fsynced,
    /// renamed over.
    pub(crate) fn rewrite<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<(), MetadataError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join("log.tmp");
        let io_err = |e| MetadataError::io(&self.path, e);
        let mut buf = Vec::new();
        let mut positions = BTreeMap::new();
        for entry in entries {
            positions.insert(entry.log_id.index, buf.len() as u64);
            encode_record(entry, &mut buf).map_err(io_err)?;
        }
        let mut f = File::create(&tmp).map_err(io_err)?;
        f.write_all(&buf).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        fs::rename(&tmp, &self.path).map_err(io_err)?;
        sync_dir(dir).map_err(io_err)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io_err)?;
        self.positions = positions;
        self.len = buf.len() as u64;
        Ok(())
    }
}

fn encode_record(entry: &Entry, buf: &mut Vec<u8>) -> io::Result<()> {
    let body = serde_json::to_vec(entry).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l <= MAX_RECORD_BYTES)
        .ok_or_else(|| {
            io::Error::other(format!("log entry of {} bytes is too large", body.len()))
        })?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    buf.extend_from_slice(&body);
    Ok(())
}

type Parsed = (Vec<Entry>, BTreeMap<u64, u64>, u64);

/// Parses records until the end or a torn last record; returns the entries, their
/// positions, and the length of the valid prefix.
fn parse_records(path: &Path, bytes: &[u8]) -> Result<Parsed, MetadataError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut positions = BTreeMap::new();
    let mut pos = 0u64;
    let total = bytes.len() as u64;
    while pos < total {
        if total - pos < RECORD_HEADER_BYTES {
            break; // torn header
        }
        let at = pos as usize;
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        let crc = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        let end = pos + RECORD_HEADER_BYTES + u64::from(len);
        if end > total {
            break; // torn body
        }
        let body = &bytes[at + 8..end as usize];
        if len > MAX_RECORD_BYTES || crc32c::crc32c(body) != crc {
            if end == total {
                break; // the torn last record
            }
            return Err(MetadataError::corrupt(
                path,
                format!("bad record at byte {pos} (length {len}, checksum mismatch) followed by more data"),
            ));
        }
        let entry: Entry = serde_json::from_slice(body)
            .map_err(|e| MetadataError::corrupt(path, format!("record at byte {pos}: {e}")))?;
        if let Some(prev) = entries.last() {
            if entry.log_id.index != prev.log_id.index + 1 {
                return Err(MetadataError::corrupt(
                    path,
                    format!(
                        "entry {} follows entry {} at byte {pos}: the log has a gap",
                        entry.log_id.index, prev.log_id.index
                    ),
                ));
            }
        }
        positions.insert(entry.log_id.index, pos);
        entries.push(entry);
        pos = end;
    }
    Ok((entries, positions, pos))
}
