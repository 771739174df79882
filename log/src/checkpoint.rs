//! The small per-partition state files beside the segments, each replaced atomically
//! (write a `.tmp`, fdatasync, rename) so a crash leaves the old or the new version.
//!
//! Kafka keeps one recovery-point, high-watermark and log-start file per log directory,
//! with a `topic partition offset` line per partition. Spate keeps them per partition
//! directory (a partition moves between shards and disks as a unit), in the same layout
//! with a single entry holding just the offset: `0` (version), `1` (count), `<offset>`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use glommio::io::OpenOptions;

use crate::error::LogError;

/// Offsets below this are on disk (fsynced); recovery after a crash scans only past it.
pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
/// The high watermark (Kafka's `replication-offset-checkpoint`).
pub const HIGH_WATERMARK_FILE: &str = "replication-offset-checkpoint";
pub const LOG_START_FILE: &str = "log-start-offset-checkpoint";
/// Present only while the log is cleanly closed; holds `logEnd activeBase activeSize`.
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
pub const TMP_SUFFIX: &str = ".tmp";

/// The file's bytes, or None if it does not exist.
pub async fn read(path: &Path) -> Result<Option<Vec<u8>>, LogError> {
    let file = match OpenOptions::new().read(true).buffered_open(path).await {
        Ok(file) => file,
        Err(e) => {
            let e = io::Error::from(e);
            return match e.kind() {
                io::ErrorKind::NotFound => Ok(None),
                _ => Err(LogError::io(path, e)),
            };
        }
    };
    let size = file.file_size().await.map_err(|e| LogError::io(path, e))?;
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        let got = file
            .read_at(out.len() as u64, size as usize - out.len())
            .await
            .map_err(|e| LogError::io(path, e))?;
        if got.is_empty() {
            break;
        }
        out.extend_from_slice(&got);
    }
    file.close().await.map_err(|e| LogError::io(path, e))?;
    Ok(Some(out))
}

/// Replaces `path` with `bytes`, durably. The temporary file's name is unique, so writers
/// never share one; leftovers of a crash are removed when the log is next opened.
pub async fn write_atomic(path: &Path, bytes: Vec<u8>) -> Result<(), LogError> {
    static NEXT_TMP: AtomicU64 = AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".{}{TMP_SUFFIX}",
        NEXT_TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .buffered_open(&tmp)
        .await
        .map_err(|e| LogError::io(&tmp, e))?;
    let len = bytes.len();
    let written = file
        .write_at(bytes, 0)
        .await
        .map_err(|e| LogError::io(&tmp, e))?;
    if written != len {
        return Err(LogError::io(
            &tmp,
            io::Error::new(io::ErrorKind::WriteZero, "short write"),
        ));
    }
    file.fdatasync().await.map_err(|e| LogError::io(&tmp, e))?;
    file.rename(path).await.map_err(|e| LogError::io(path, e))?;
    file.close().await.map_err(|e| LogError::io(path, e))?;
    Ok(())
}

pub fn offset_text(offset: i64) -> Vec<u8> {
    format!("0\n1\n{offset}\n").into_bytes()
}

pub fn parse_offset(bytes: &[u8]) -> Result<i64, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    match lines.as_slice() {
        ["0", "1", offset] => offset.parse().map_err(|_| format!("bad offset {offset:?}")),
        _ => Err(format!(
            "expected version 0, count 1 and an offset, found {text:?}"
        )),
    }
}

/// What a clean close recorded, to check that the files are as it left them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanShutdown {
    pub log_end: i64,
    pub active_base: i64,
    pub active_size: u64,
}

impl CleanShutdown {
    pub fn to_text(self) -> Vec<u8> {
        format!(
            "{} {} {}\n",
            self.log_end, self.active_base, self.active_size
        )
        .into_bytes()
    }

    pub fn parse(bytes: &[u8]) -> Option<CleanShutdown> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split_whitespace();
        let marker = CleanShutdown {
            log_end: parts.next()?.parse().ok()?,
            active_base: parts.next()?.parse().ok()?,
            active_size: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(marker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_files_round_trip() {
        assert_eq!(parse_offset(&offset_text(42)), Ok(42));
        assert!(parse_offset(b"0\n1\nx\n").is_err());
        assert!(parse_offset(b"1\n1\n5\n").is_err());
        assert!(parse_offset(b"").is_err());
        let marker = CleanShutdown {
            log_end: 10,
            active_base: 7,
            active_size: 300,
        };
        assert_eq!(CleanShutdown::parse(&marker.to_text()), Some(marker));
        assert_eq!(CleanShutdown::parse(b"1 2"), None);
    }
}
