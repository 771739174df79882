//! Opening a partition log: finding its segments, loading their indexes, and recovering
//! from a crash (Kafka's `LogLoader`).
//!
//! After a clean close (`.kafka_cleanshutdown` present and matching the files) no log data
//! is read: offsets and indexes come from the checkpoints and index files. After a crash,
//! segments wholly below the recovery point are trusted the same way, and the segments from
//! the one holding the recovery point on are scanned: each batch's framing, CRC and offset
//! are checked and the indexes rebuilt. The first bad batch past the recovery point ends
//! the log (a torn write); one below it means flushed data was damaged, and opening fails
//! with [`LogError::Corrupt`] rather than dropping it. The marker is removed on open, so a
//! crash later is noticed.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use spate_core::record_batch::{self, BatchHeader, BATCH_HEADER_LEN};

use crate::checkpoint::{self, CleanShutdown};
use crate::clock::Clock;
use crate::config::LogConfig;
use crate::deletion;
use crate::error::LogError;
use crate::leader_epoch::{self, LeaderEpochCache};
use crate::offset_index::OffsetIndex;
use crate::partition_log::{Checkpoint, PartitionLog, State};
use crate::segment::{self, BatchMeta, LogSegment, SegmentFile};
use crate::time_index::{self, TimeIndex};

/// Bytes read at a time when scanning a segment.
const SCAN_CHUNK: u64 = 1 << 20;

/// A segment file found on disk.
struct Found {
    base: i64,
    file: Rc<SegmentFile>,
    size: u64,
}

/// The outcome of scanning a segment: its rebuilt state, the epochs its batches carry, and
/// where and why the scan stopped early, if it did.
struct Scan {
    segment: LogSegment,
    epochs: Vec<(i32, i64)>,
    problem: Option<(u64, String)>,
}

impl PartitionLog {
    /// Opens (creating the directory if missing) and recovers the log in `dir`.
    pub async fn open(
        dir: &Path,
        config: LogConfig,
        clock: Rc<dyn Clock>,
    ) -> Result<Rc<PartitionLog>, LogError> {
        std::fs::create_dir_all(dir).map_err(|e| LogError::io(dir, e))?;
        let now = clock.now_ms();
        let bases = list_segments(dir)?;

        let marker_path = dir.join(checkpoint::CLEAN_SHUTDOWN_FILE);
        let marker_bytes = checkpoint::read(&marker_path).await?;
        if marker_bytes.is_some() {
            std::fs::remove_file(&marker_path).map_err(|e| LogError::io(&marker_path, e))?;
            sync_dir(dir).await?;
        }
        let marker = marker_bytes.as_deref().and_then(CleanShutdown::parse);
        let recovery_ckpt = read_offset_file(dir, checkpoint::RECOVERY_POINT_FILE).await?;
        let hw_ckpt = read_offset_file(dir, checkpoint::HIGH_WATERMARK_FILE).await?;
        let start_ckpt = read_offset_file(dir, checkpoint::LOG_START_FILE).await?;
        let mut epochs = read_epochs(dir).await?;

        let mut found = Vec::with_capacity(bases.len());
        for base in bases {
            let path = segment::file_path(dir, base, segment::LOG_SUFFIX);
            let file = Rc::new(SegmentFile::open(path, false).await?);
            let size = file.size().await?;
            found.push(Found { base, file, size });
        }

        let interval = config.index_interval_bytes;
        let mut segments = BTreeMap::new();
        let mut scanned_epochs = Vec::new();
        let log_end;
        let mut recovered = false;
        if found.is_empty() {
            let base = start_ckpt.unwrap_or(0).max(0);
            let path = segment::file_path(dir, base, segment::LOG_SUFFIX);
            let file = Rc::new(SegmentFile::open(path, true).await?);
            segments.insert(base, LogSegment::new(base, file, now));
            log_end = base;
        } else if let Some(marker) = marker.filter(|m| matches_files(m, &found)) {
            let nexts = next_bases(&found, marker.log_end);
            let active_base = found.last().expect("checked non-empty").base;
            for (f, next) in found.into_iter().zip(nexts) {
                let eager = f.base == active_base;
                let seg = load_segment(dir, f, next, eager, interval, now).await?;
                segments.insert(seg.base_offset, seg);
            }
            log_end = marker.log_end;
        } else {
            recovered = true;
            let first_base = found[0].base;
            let recovery_point = recovery_ckpt.unwrap_or(first_base).max(first_base);
            let nexts = next_bases(&found, i64::MAX);
            let mut files = found.into_iter().zip(nexts).peekable();
            // Segments wholly below the recovery point were flushed: trust their indexes.
            // (The last segment always has a successor base of i64::MAX, so is never here.)
            while let Some((f, next)) = files.next_if(|(_, next)| *next <= recovery_point) {
                let seg = load_segment(dir, f, next, false, interval, now).await?;
                segments.insert(seg.base_offset, seg);
            }
            let mut expected = files.peek().map_or(recovery_point, |(f, _)| f.base);
            let mut last_file: Option<(Rc<SegmentFile>, u64)> = None;
            let mut scanned = Vec::new();
            while let Some((f, _)) = files.next() {
                if f.base != expected {
                    if expected < recovery_point {
                        return Err(LogError::corrupt(
                            f.file.path(),
                            0,
                            format!("segment starts at offset {} but the log before it ends at {expected}", f.base),
                        ));
                    }
                    remove_segments(
                        dir,
                        std::iter::once(f.base).chain(files.map(|(f, _)| f.base)),
                    )
                    .await?;
                    break;
                }
                let scan = scan_segment(&f.file, f.base, f.size, interval, now).await?;
                scanned.push(f.base);
                scanned_epochs.extend(scan.epochs);
                let mut seg = scan.segment;
                expected = seg.next_offset;
                last_file = Some((f.file.clone(), seg.size));
                if let Some((position, reason)) = scan.problem {
                    if seg.next_offset < recovery_point {
                        return Err(LogError::corrupt(
                            f.file.path(),
                            position,
                            format!("{reason}; offsets from {} to the recovery point {recovery_point} were flushed and are lost", seg.next_offset),
                        ));
                    }
                    tracing::warn!(file = %f.file.path().display(), position, "cutting a torn log tail: {reason}");
                    f.file.truncate(position).await?;
                    seg.size = position;
                    segments.insert(seg.base_offset, seg);
                    remove_segments(dir, files.map(|(f, _)| f.base)).await?;
                    break;
                }
                segments.insert(seg.base_offset, seg);
            }
            if expected < recovery_point {
                let (path, size) = last_file
                    .map(|(f, size)| (f.path().to_path_buf(), size))
                    .unwrap_or_else(|| (dir.to_path_buf(), 0));
                return Err(LogError::corrupt(
                    &path,
                    size,
                    format!("the log ends at offset {expected} but offsets below {recovery_point} were flushed"),
                ));
            }
            log_end = expected;
            if segments.is_empty() {
                // Every segment file was gone or discarded: start empty at the log end.
                let path = segment::file_path(dir, log_end, segment::LOG_SUFFIX);
                let file = Rc::new(SegmentFile::open(path, true).await?);
                segments.insert(log_end, LogSegment::new(log_end, file, now));
            }
            // Scanned segments that are no longer active get the indexes the scan rebuilt, so
            // that once trusted they never meet index files older than their data.
            let active_base = *segments.keys().next_back().expect("checked non-empty");
            for base in scanned.into_iter().filter(|&b| b != active_base) {
                if let Some(seg) = segments.get_mut(&base) {
                    seg.seal_time_index();
                    let (index, time) = (seg.offset_index.to_bytes(), seg.time_index.to_bytes());
                    segment::write_index_files(dir, base, index, time).await?;
                }
            }
            // What recovery kept is now the flushed log: sync every segment from the one
            // holding the old recovery point on.
            let from = segments
                .range(..=recovery_point)
                .next_back()
                .map_or(i64::MIN, |(&base, _)| base);
            let unsynced: Vec<_> = segments
                .range(from..)
                .map(|(_, s)| s.file.clone())
                .collect();
            for file in unsynced {
                file.sync().await?;
            }
        }

        let first_base = *segments.keys().next().expect("at least one segment");
        let log_start = start_ckpt
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end);
        let high_watermark = hw_ckpt.unwrap_or(log_start).clamp(log_start, log_end);
        for (epoch, start) in scanned_epochs {
            epochs.assign(epoch, start);
        }
        epochs.truncate_from_end(log_end);
        epochs.truncate_from_start(log_start);
        let state = State::new(
            config,
            segments,
            log_start,
            log_end,
            high_watermark,
            log_end,
            epochs,
            now,
        );
        let log = PartitionLog::from_state(dir.to_path_buf(), clock, state);
        log.load_producer_state().await?;
        if recovered {
            log.write_checkpoints(&Checkpoint::ALL).await?;
        }
        Ok(log)
    }
}

fn matches_files(marker: &CleanShutdown, found: &[Found]) -> bool {
    let last = found.last().expect("checked non-empty");
    last.base == marker.active_base
        && last.size == marker.active_size
        && marker.log_end >= last.base
}

/// For each segment, the base offset of the one after it (`last` for the last one).
fn next_bases(found: &[Found], last: i64) -> Vec<i64> {
    found
        .iter()
        .skip(1)
        .map(|f| f.base)
        .chain(std::iter::once(last))
        .collect()
}

/// The base offsets of the `.log` files in `dir`. Leftover checkpoint `.tmp` files,
/// `.deleted` segment files and index files without a log are removed (debris of an
/// interrupted write or delete).
fn list_segments(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(checkpoint::TMP_SUFFIX) || name.ends_with(deletion::DELETED_SUFFIX) {
            std::fs::remove_file(entry.path()).map_err(|e| LogError::io(&entry.path(), e))?;
        } else if let Some(base) = segment::parse_file_name(name, segment::LOG_SUFFIX) {
            logs.push(base);
        } else if let Some(base) = segment::parse_file_name(name, segment::INDEX_SUFFIX)
            .or_else(|| segment::parse_file_name(name, segment::TIME_INDEX_SUFFIX))
        {
            indexes.push((base, entry.path()));
        }
    }
    logs.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            std::fs::remove_file(&path).map_err(|e| LogError::io(&path, e))?;
        }
    }
    Ok(logs)
}

pub(crate) async fn sync_dir(dir: &Path) -> Result<(), LogError> {
    let handle = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| LogError::io(dir, e))?;
    handle.sync().await.map_err(|e| LogError::io(dir, e))?;
    handle.close().await.map_err(|e| LogError::io(dir, e))
}

/// An offset checkpoint; a damaged one counts as missing (all three are safe to lose:
/// recovery then scans more, the log start falls back to the first segment, the high
/// watermark to the log start).
async fn read_offset_file(dir: &Path, name: &str) -> Result<Option<i64>, LogError> {
    let path = dir.join(name);
    let Some(bytes) = checkpoint::read(&path).await? else {
        return Ok(None);
    };
    match checkpoint::parse_offset(&bytes) {
        Ok(offset) => Ok(Some(offset)),
        Err(reason) => {
            tracing::warn!(file = %path.display(), "ignoring a damaged checkpoint: {reason}");
            Ok(None)
        }
    }
}

async fn read_epochs(dir: &Path) -> Result<LeaderEpochCache, LogError> {
    let path = dir.join(leader_epoch::FILE_NAME);
    let Some(bytes) = checkpoint::read(&path).await? else {
        return Ok(LeaderEpochCache::default());
    };
    let parsed = std::str::from_utf8(&bytes)
        .map_err(|_| "not UTF-8".to_string())
        .and_then(LeaderEpochCache::parse_checkpoint);
    match parsed {
        Ok(cache) => Ok(cache),
        Err(reason) => {
            tracing::warn!(file = %path.display(), "ignoring a damaged leader-epoch checkpoint: {reason}");
            Ok(LeaderEpochCache::default())
        }
    }
}

/// A segment below the recovery point (or of a cleanly closed log), ending at `next`. A
/// sealed segment reads only the last entry of its time index (its largest timestamp, for
/// retention and time lookups) and loads its indexes on first use, so an idle log's memory
/// does not grow with its size. The active segment (`eager`) loads them now.
async fn load_segment(
    dir: &Path,
    found: Found,
    next: i64,
    eager: bool,
    interval: u32,
    now: i64,
) -> Result<LogSegment, LogError> {
    let Found { base, file, size } = found;
    if !eager {
        if let Some(largest) = read_largest_timestamp(dir, base, next).await? {
            return Ok(LogSegment::unloaded(base, file, size, next, largest, now));
        }
    }
    let (offset_index, time_index) =
        load_indexes(dir, &file, base, size, next, interval, now).await?;
    Ok(LogSegment::loaded(
        base,
        file,
        size,
        next,
        offset_index,
        time_index,
        now,
    ))
}

/// The indexes of a trusted segment ending at `next`, from its index files, or rebuilt by a
/// scan if those are missing or inconsistent (and then written back). A scan finding damage
/// is an error: this data was flushed.
pub(crate) async fn load_indexes(
    dir: &Path,
    file: &Rc<SegmentFile>,
    base: i64,
    size: u64,
    next: i64,
    interval: u32,
    now: i64,
) -> Result<(OffsetIndex, TimeIndex), LogError> {
    let index_path = segment::file_path(dir, base, segment::INDEX_SUFFIX);
    let time_path = segment::file_path(dir, base, segment::TIME_INDEX_SUFFIX);
    let index = checkpoint::read(&index_path).await?;
    let time = checkpoint::read(&time_path).await?;
    let parsed = match (index, time) {
        (Some(index), Some(time)) => OffsetIndex::parse(base, &index, size, Some(next))
            .and_then(|i| TimeIndex::parse(base, &time, Some(next)).map(|t| (i, t))),
        _ => Err("missing".to_string()),
    };
    let reason = match parsed {
        Ok(indexes) => return Ok(indexes),
        Err(reason) => reason,
    };
    tracing::info!(segment = %file.path().display(), "rebuilding indexes ({reason})");
    let scan = scan_segment(file, base, size, interval, now).await?;
    if let Some((position, reason)) = scan.problem {
        return Err(LogError::corrupt(file.path(), position, reason));
    }
    let mut seg = scan.segment;
    if seg.next_offset != next {
        return Err(LogError::corrupt(
            file.path(),
            seg.size,
            format!(
                "segment ends at offset {} but the log continues at {next}",
                seg.next_offset
            ),
        ));
    }
    seg.seal_time_index();
    segment::write_index_files(
        dir,
        base,
        seg.offset_index.to_bytes(),
        seg.time_index.to_bytes(),
    )
    .await?;
    Ok((seg.offset_index, seg.time_index))
}

/// The last entry of a segment's time index: Some(None) if the index is empty, None if the
/// file is missing or malformed (the caller then loads, or rebuilds, the whole index).
async fn read_largest_timestamp(
    dir: &Path,
    base: i64,
    next: i64,
) -> Result<Option<Option<(i64, i64)>>, LogError> {
    let path = segment::file_path(dir, base, segment::TIME_INDEX_SUFFIX);
    let file = match glommio::io::OpenOptions::new()
        .read(true)
        .buffered_open(&path)
        .await
    {
        Ok(file) => file,
        Err(e) => {
            let e = std::io::Error::from(e);
            return match e.kind() {
                std::io::ErrorKind::NotFound => Ok(None),
                _ => Err(LogError::io(&path, e)),
            };
        }
    };
    let size = file.file_size().await.map_err(|e| LogError::io(&path, e))?;
    let entry = time_index::ENTRY_LEN as u64;
    let result = if size == 0 {
        Some(None)
    } else if size % entry != 0 {
        None
    } else {
        let tail = file
            .read_at(size - entry, entry as usize)
            .await
            .map_err(|e| LogError::io(&path, e))?;
        TimeIndex::parse(base, &tail, Some(next))
            .ok()
            .map(|index| index.last())
    };
    file.close().await.map_err(|e| LogError::io(&path, e))?;
    Ok(result)
}

/// Reads a whole segment, checking every batch (framing, CRC32C, contiguous offsets) and
/// rebuilding its indexes, up to the first bad batch.
async fn scan_segment(
    file: &Rc<SegmentFile>,
    base: i64,
    size: u64,
    interval: u32,
    now: i64,
) -> Result<Scan, LogError> {
    let mut segment = LogSegment::new(base, file.clone(), now);
    let mut epochs = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = 0u64;
    let mut pos = 0u64;
    let mut expected = base;
    let problem = loop {
        if pos >= size {
            break None;
        }
        let remaining = size - pos;
        if remaining < BATCH_HEADER_LEN as u64 {
            break Some((
                pos,
                format!("torn batch: {remaining} bytes left, a header needs {BATCH_HEADER_LEN}"),
            ));
        }
        ensure(
            file,
            &mut buf,
            &mut buf_pos,
            pos,
            BATCH_HEADER_LEN as u64,
            size,
        )
        .await?;
        let at = (pos - buf_pos) as usize;
        let header = match BatchHeader::parse(&buf[at..]) {
            Ok(h) => h,
            Err(e) => break Some((pos, format!("bad batch header: {e}"))),
        };
        let total = header.total_len() as u64;
        if total > remaining {
            break Some((
                pos,
                format!("torn batch: {total} bytes long, {remaining} left in the file"),
            ));
        }
        ensure(file, &mut buf, &mut buf_pos, pos, total, size).await?;
        let at = (pos - buf_pos) as usize;
        if let Err(e) = record_batch::validate(&buf[at..at + total as usize]) {
            break Some((pos, format!("invalid batch: {e}")));
        }
        if header.base_offset != expected {
            break Some((
                pos,
                format!(
                    "batch has base offset {}, expected {expected}",
                    header.base_offset
                ),
            ));
        }
        segment.on_batch_written(pos, &BatchMeta::of(&header), interval);
        epochs.push((header.partition_leader_epoch, header.base_offset));
        expected = header.last_offset() + 1;
        pos += total;
    };
    Ok(Scan {
        segment,
        epochs,
        problem,
    })
}

/// Makes `buf` (which starts at file position `buf_pos`) cover [pos, pos + len).
async fn ensure(
    file: &SegmentFile,
    buf: &mut Vec<u8>,
    buf_pos: &mut u64,
    pos: u64,
    len: u64,
    size: u64,
) -> Result<(), LogError> {
    if pos >= *buf_pos && pos + len <= *buf_pos + buf.len() as u64 {
        return Ok(());
    }
    let read_len = len.max(SCAN_CHUNK.min(size - pos));
    *buf = file.read_exact_at(pos, read_len as usize).await?;
    *buf_pos = pos;
    Ok(())
}

/// Deletes segments' files (`.log` and indexes).
async fn remove_segments(dir: &Path, bases: impl Iterator<Item = i64>) -> Result<(), LogError> {
    for base in bases {
        for suffix in segment::SUFFIXES {
            let path = segment::file_path(dir, base, suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io(&path, e)),
            }
        }
    }
    Ok(())
}
