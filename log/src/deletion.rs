//! Removing segment files without stalling the shard (Kafka's asynchronous segment delete).
//!
//! A segment leaving the log (retention, DeleteRecords, truncation) has its files renamed to
//! `<name>.deleted` at once, so its name is free for a later segment at the same base offset
//! and a crash leaves nothing that looks like log data (open removes `.deleted` files). The
//! files are unlinked later, on a helper thread: on ext4 an unlink of a segment file took up
//! to 4 ms under load (docs/benchmarks.md, finding 6), and on the shard's thread that
//! stalls every partition it serves.
//!
//! Reads in flight keep a deleted segment readable: its `.log` is unlinked only once no
//! `ReadSlice` holds it any more (Kafka instead waits `file.delete.delay.ms`). The shard
//! closes its descriptor first, so the kernel frees the file in the helper's `unlink`, not
//! in the shard's `close`.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc::{self, Sender};
use std::sync::OnceLock;
use std::time::Duration;

use crate::error::LogError;
use crate::segment::{self, SegmentFile};

pub const DELETED_SUFFIX: &str = ".deleted";

/// How often a deleted segment still being read is checked again.
const READER_POLL: Duration = Duration::from_millis(100);

/// A segment taken out of the log whose files are not unlinked yet.
pub(crate) struct Removed {
    pub base: i64,
    pub file: Rc<SegmentFile>,
}

/// `path` with `.deleted` appended.
fn deleted_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(DELETED_SUFFIX);
    PathBuf::from(name)
}

/// Renames the segments' files (`.log` and indexes) to `.deleted`, oldest first, so that a
/// crash part-way leaves a suffix of the log. Missing index files are skipped. One job on
/// glommio's blocking thread, as the caller holds the write lock.
pub(crate) async fn mark_deleted(dir: &Path, removed: &[Removed]) -> Result<(), LogError> {
    let paths: Vec<PathBuf> = removed
        .iter()
        .flat_map(|seg| segment::SUFFIXES.map(|suffix| segment::file_path(dir, seg.base, suffix)))
        .collect();
    glommio::executor()
        .spawn_blocking(move || {
            paths
                .iter()
                .try_for_each(|path| match std::fs::rename(path, deleted_path(path)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(LogError::io(path, e))
                    }
                    _ => Ok(()),
                })
        })
        .await
}

/// Unlinks the `.deleted` files of `removed` in the background: once no read holds a
/// segment's file, closes it here and has the helper thread unlink its files.
pub(crate) fn unlink_later(dir: PathBuf, removed: Vec<Removed>) {
    if removed.is_empty() {
        return;
    }
    glommio::spawn_local(async move {
        for seg in removed {
            let mut file = seg.file;
            let file = loop {
                match Rc::try_unwrap(file) {
                    Ok(file) => break file,
                    Err(shared) => {
                        file = shared;
                        glommio::timer::sleep(READER_POLL).await;
                    }
                }
            };
            if let Err(e) = file.close().await {
                tracing::warn!("closing a deleted segment: {e}");
            }
            for suffix in segment::SUFFIXES {
                unlink_on_helper(deleted_path(&segment::file_path(&dir, seg.base, suffix)));
            }
        }
    })
    .detach();
}

/// Queues `path` for the process's unlink thread (started on first use); unlinks it here
/// if that thread could not be started.
fn unlink_on_helper(path: PathBuf) {
    static HELPER: OnceLock<Option<Sender<PathBuf>>> = OnceLock::new();
    let helper = HELPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let spawned = std::thread::Builder::new()
            .name("spate-unlink".into())
            .spawn(move || rx.into_iter().for_each(|path| unlink(&path)));
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!("no unlink thread ({e}): deleting on the shard");
                None
            }
        }
    });
    match helper {
        Some(tx) => {
            if let Err(unsent) = tx.send(path) {
                unlink(&unsent.0); // the thread is gone; it never stops by itself
            }
        }
        None => unlink(&path),
    }
}

fn unlink(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(file = %path.display(), "unlink failed: {e}"),
    }
}
