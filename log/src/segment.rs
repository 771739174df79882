//! One segment of a partition log (Kafka's `LogSegment`): the `.log` file of whole batches
//! starting at `base_offset`, and its in-memory sparse offset and time indexes.
//!
//! File names are Kafka's: the base offset as 20 zero-padded digits, then `.log`, `.index`
//! or `.timeindex`. A segment's indexes are written to disk when it stops being the active
//! segment and on close; after a crash they are rebuilt for the segments that recovery scans.

use std::cell::{Cell, OnceCell};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use glommio::io::{BufferedFile, OpenOptions};
use spate_core::record_batch::{BatchHeader, BATCH_HEADER_LEN};

use crate::config::LogConfig;
use crate::error::LogError;
use crate::inline_write;
use crate::offset_index::OffsetIndex;
use crate::time_index::TimeIndex;

pub const LOG_SUFFIX: &str = "log";
pub const INDEX_SUFFIX: &str = "index";
pub const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Every file of a segment.
pub const SUFFIXES: [&str; 3] = [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX];

/// Kafka's segment file name: `00000000000000001234.log`.
pub fn file_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// The base offset in a segment file name, if `name` is one with `suffix`.
pub fn parse_file_name(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// A segment file's blocks are allocated ahead of its writes by as much as it holds, but no
/// more than this (`SegmentFile::reserve`).
const RESERVE_AHEAD_MAX: u64 = 64 << 20;
/// Reservations end on a multiple of this, so small writes do not each allocate.
const RESERVE_STEP: u64 = 4 << 10;

/// The `.log` file of a segment. Shared (`Rc`) with fetch responses in flight, so a segment
/// deleted by retention stays readable until the last response using it is sent.
pub struct SegmentFile {
    file: BufferedFile,
    path: PathBuf,
    /// The file's blocks are allocated up to here (`reserve`); 0 when not known.
    reserved: Cell<u64>,
    /// A duplicate of the file's descriptor that other threads may hold (`shared_fd`).
    shared: OnceCell<Arc<OwnedFd>>,
}

impl SegmentFile {
    /// Opens (creating if missing) a segment file for reading and appending.
    pub(crate) async fn open(path: PathBuf, truncate: bool) -> Result<SegmentFile, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(truncate)
            .buffered_open(&path)
            .await
            .map_err(|e| LogError::io(&path, e))?;
        Ok(SegmentFile {
            file,
            path,
            reserved: Cell::new(0),
            shared: OnceCell::new(),
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's descriptor for another thread (the file itself stays on this one): a
    /// duplicate made on first use and kept with the file, so a fetch served by another shard
    /// reads the file directly and a segment deleted meanwhile stays readable until it is done.
    pub fn shared_fd(&self) -> Result<Arc<OwnedFd>, LogError> {
        if let Some(fd) = self.shared.get() {
            return Ok(fd.clone());
        }
        // SAFETY: the descriptor is `self.file`'s, open for as long as `self` lives, which
        // outlasts this call; `try_clone_to_owned` only duplicates it.
        let fd = unsafe { BorrowedFd::borrow_raw(self.file.as_raw_fd()) }
            .try_clone_to_owned()
            .map_err(|e| LogError::io(&self.path, e))?;
        Ok(self.shared.get_or_init(|| Arc::new(fd)).clone())
    }

    /// Reads `len` bytes at `position`, fewer only if the file ends first.
    pub async fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>, LogError> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let at = position + out.len() as u64;
            let got = self
                .file
                .read_at(at, len - out.len())
                .await
                .map_err(|e| LogError::io(&self.path, e))?;
            if got.is_empty() {
                break;
            }
            out.extend_from_slice(&got);
        }
        Ok(out)
    }

    /// Reads exactly `len` bytes; a short file is corruption (the caller only asks for bytes
    /// it knows were written).
    pub(crate) async fn read_exact_at(
        &self,
        position: u64,
        len: usize,
    ) -> Result<Vec<u8>, LogError> {
        let buf = self.read_at(position, len).await?;
        if buf.len() < len {
            return Err(LogError::corrupt(
                &self.path,
                position + buf.len() as u64,
                format!("file ends {} bytes early", len - buf.len()),
            ));
        }
        Ok(buf)
    }

    /// Writes all of `buf` at `position`, from this thread when it can (`inline_write`),
    /// else through io_uring. A short write (the disk filled up mid-way) is reported as an
    /// error; the caller cuts the file back.
    pub(crate) async fn write_all_at(&self, buf: Vec<u8>, position: u64) -> Result<(), LogError> {
        let len = buf.len();
        let written = match inline_write::write_at(self.file.as_raw_fd(), &buf, position) {
            Some(result) => result.map_err(|e| LogError::io(&self.path, e))?,
            None => self
                .file
                .write_at(buf, position)
                .await
                .map_err(|e| LogError::io(&self.path, e))?,
        };
        if written != len {
            return Err(LogError::io(
                &self.path,
                std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write: {written} of {len} bytes (disk full?)"),
                ),
            ));
        }
        Ok(())
    }

    /// Allocates the file's blocks up to `end` and beyond (as many again as it holds, at most
    /// `RESERVE_AHEAD_MAX`, never past `limit`) without changing its size, unless done already.
    ///
    /// Otherwise ext4 allocates the blocks at writeback, holding the file's block map lock
    /// while it reads allocation bitmaps from disk, and an inline write arriving meanwhile
    /// stalls the whole shard for tens of ms (docs/benchmarks.md, finding 8). Best effort: on
    /// a filesystem without `fallocate` or a full disk the writes go on without.
    pub(crate) async fn reserve(&self, end: u64, limit: u64) {
        if end <= self.reserved.get() {
            return;
        }
        let ahead = end.min(RESERVE_AHEAD_MAX);
        let to = (end + ahead)
            .next_multiple_of(RESERVE_STEP)
            .min(limit)
            .max(end);
        self.allocate_to(to).await
    }

    /// Reserves the first `bytes` of a new, empty segment at once (at most
    /// `RESERVE_AHEAD_MAX`, never past `limit`). A roll passes what the segment before held,
    /// so a busy partition's new segment does not grow its reservation step by step, each
    /// step an `fallocate` its appends wait for.
    pub(crate) async fn reserve_start(&self, bytes: u64, limit: u64) {
        let to = bytes
            .min(RESERVE_AHEAD_MAX)
            .next_multiple_of(RESERVE_STEP)
            .min(limit);
        if to > self.reserved.get() {
            self.allocate_to(to).await
        }
    }

    async fn allocate_to(&self, to: u64) {
        if let Err(e) = self.file.pre_allocate(to, true).await {
            tracing::debug!(path = %self.path.display(), "preallocation failed: {e}");
        }
        self.reserved.set(to);
    }

    pub(crate) async fn sync(&self) -> Result<(), LogError> {
        self.file
            .fdatasync()
            .await
            .map_err(|e| LogError::io(&self.path, e))
    }

    /// Cuts the file to `size`, which also frees the blocks reserved past it.
    pub(crate) async fn truncate(&self, size: u64) -> Result<(), LogError> {
        self.file
            .truncate(size)
            .await
            .map_err(|e| LogError::io(&self.path, e))?;
        self.reserved.set(self.reserved.get().min(size));
        Ok(())
    }

    pub(crate) async fn close(self) -> Result<(), LogError> {
        self.file
            .close()
            .await
            .map_err(|e| LogError::io(&self.path, e))
    }

    pub(crate) async fn size(&self) -> Result<u64, LogError> {
        self.file
            .file_size()
            .await
            .map_err(|e| LogError::io(&self.path, e))
    }
}

/// What the log needs to know about one appended batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchMeta {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub len: u64,
    pub leader_epoch: i32,
}

impl BatchMeta {
    pub fn of(header: &BatchHeader) -> BatchMeta {
        BatchMeta {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
            len: header.total_len() as u64,
            leader_epoch: header.partition_leader_epoch,
        }
    }
}

/// A segment's in-memory state. Lives in the partition's state map; the file handle is
/// shared, everything else is plain data (updated only once bytes are written).
pub(crate) struct LogSegment {
    pub base_offset: i64,
    pub file: std::rc::Rc<SegmentFile>,
    /// Bytes written and readable.
    pub size: u64,
    /// The offset after the last batch (the base offset when empty).
    pub next_offset: i64,
    /// Empty until loaded (`indexes_loaded`): sealed segments of a reopened log load them
    /// on first use.
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    pub indexes_loaded: bool,
    bytes_since_index_entry: u64,
    /// Largest batch max timestamp so far, and the last offset of that batch (-1 if none).
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
    /// Max timestamp of the segment's first batch: what `roll_ms` is measured from.
    rolling_timestamp: Option<i64>,
    created_ms: i64,
    /// Clock time of the last append (or of loading): time retention's fallback when the
    /// batches carry no timestamps.
    pub last_modified_ms: i64,
}

impl LogSegment {
    pub fn new(base_offset: i64, file: std::rc::Rc<SegmentFile>, now_ms: i64) -> LogSegment {
        LogSegment {
            base_offset,
            file,
            size: 0,
            next_offset: base_offset,
            offset_index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            indexes_loaded: true,
            bytes_since_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            rolling_timestamp: None,
            created_ms: now_ms,
            last_modified_ms: now_ms,
        }
    }

    /// A segment loaded from disk with trusted indexes, without reading its batches.
    pub fn loaded(
        base_offset: i64,
        file: std::rc::Rc<SegmentFile>,
        size: u64,
        next_offset: i64,
        offset_index: OffsetIndex,
        time_index: TimeIndex,
        now_ms: i64,
    ) -> LogSegment {
        let (max_timestamp, offset_of_max_timestamp) = time_index.last().unwrap_or((-1, -1));
        LogSegment {
            size,
            next_offset,
            offset_index,
            time_index,
            max_timestamp,
            offset_of_max_timestamp,
            ..LogSegment::new(base_offset, file, now_ms)
        }
    }

    /// A sealed segment loaded from disk whose indexes are not read yet; `largest` is its
    /// time index's last entry (largest timestamp, and its offset).
    pub fn unloaded(
        base_offset: i64,
        file: std::rc::Rc<SegmentFile>,
        size: u64,
        next_offset: i64,
        largest: Option<(i64, i64)>,
        now_ms: i64,
    ) -> LogSegment {
        let (max_timestamp, offset_of_max_timestamp) = largest.unwrap_or((-1, -1));
        LogSegment {
            size,
            next_offset,
            max_timestamp,
            offset_of_max_timestamp,
            indexes_loaded: false,
            ..LogSegment::new(base_offset, file, now_ms)
        }
    }

    /// Installs indexes loaded (or rebuilt) on first use.
    pub fn set_indexes(&mut self, offset_index: OffsetIndex, time_index: TimeIndex) {
        if let Some((ts, offset)) = time_index.last() {
            if ts > self.max_timestamp {
                (self.max_timestamp, self.offset_of_max_timestamp) = (ts, offset);
            }
        }
        self.offset_index = offset_index;
        self.time_index = time_index;
        self.indexes_loaded = true;
    }

    /// Drops the in-memory indexes of a sealed segment whose index files are written; they
    /// load again on first use.
    pub fn unload_indexes(&mut self) {
        self.offset_index = OffsetIndex::new(self.base_offset);
        self.time_index = TimeIndex::new(self.base_offset);
        self.indexes_loaded = false;
    }

    /// Accounts for a batch written at `position` (Kafka's `LogSegment.append`): the max
    /// timestamp first, then an index entry if `index.interval.bytes` have passed.
    pub fn on_batch_written(&mut self, position: u64, batch: &BatchMeta, index_interval: u32) {
        if batch.max_timestamp > self.max_timestamp {
            self.max_timestamp = batch.max_timestamp;
            self.offset_of_max_timestamp = batch.last_offset;
        }
        if self.rolling_timestamp.is_none() {
            self.rolling_timestamp = Some(batch.max_timestamp);
        }
        if self.bytes_since_index_entry > index_interval as u64 {
            self.offset_index.append(batch.last_offset, position as u32);
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += batch.len;
        self.size = position + batch.len;
        self.next_offset = batch.last_offset + 1;
    }

    /// Kafka's `shouldRoll`: whether an append of `len` bytes must go to a new segment, given
    /// `unwritten` bytes already queued for this one (with `unwritten_first_ts` the max
    /// timestamp of the first of them).
    #[allow(clippy::too_many_arguments)]
    pub fn should_roll(
        &self,
        config: &LogConfig,
        unwritten: u64,
        unwritten_first_ts: Option<i64>,
        len: u64,
        max_timestamp: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> bool {
        let size = self.size + unwritten;
        if size == 0 {
            return false;
        }
        // Index positions are u32 and Kafka caps segments at i32::MAX bytes.
        let max_bytes = config.segment_bytes.min(i32::MAX as u64);
        let waited = match self.rolling_timestamp.or(unwritten_first_ts) {
            Some(ts) if ts >= 0 => max_timestamp - ts,
            _ => now_ms - self.created_ms,
        };
        size + len > max_bytes
            || waited > config.roll_ms
            || last_offset - self.base_offset > i32::MAX as i64
    }

    /// The segment stops being the active one: its time index gets a last entry with the
    /// segment's largest timestamp (Kafka's `onBecomeInactiveSegment`).
    pub fn seal_time_index(&mut self) {
        if self.max_timestamp >= 0 {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
    }

    /// Forgets everything at or after `position`, where a batch starting at `next_offset` was.
    pub fn truncate_in_memory(&mut self, position: u64, next_offset: i64) {
        self.size = position;
        self.next_offset = next_offset;
        self.offset_index.truncate_to_position(position);
        self.time_index.truncate_to_offset(next_offset);
        (self.max_timestamp, self.offset_of_max_timestamp) =
            self.time_index.last().unwrap_or((-1, -1));
        self.bytes_since_index_entry = 0;
        if position == 0 {
            self.rolling_timestamp = None;
        }
    }

    /// The timestamp time retention compares (Kafka's `largestTimestamp`).
    pub fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 {
            self.max_timestamp
        } else {
            self.last_modified_ms
        }
    }
}

/// Writes a segment's index files, replacing what was there. Plain `std::fs` writes in one
/// job on glommio's blocking thread rather than six io_uring operations (open, write and
/// close of each file) one after another: a roll does this while the partition's appends
/// wait.
pub(crate) async fn write_index_files(
    dir: &Path,
    base_offset: i64,
    offset_index: Vec<u8>,
    time_index: Vec<u8>,
) -> Result<(), LogError> {
    let files = [
        (file_path(dir, base_offset, INDEX_SUFFIX), offset_index),
        (file_path(dir, base_offset, TIME_INDEX_SUFFIX), time_index),
    ];
    glommio::executor()
        .spawn_blocking(move || {
            files.into_iter().try_for_each(|(path, bytes)| {
                std::fs::write(&path, bytes).map_err(|e| LogError::io(&path, e))
            })
        })
        .await
}

/// Largest read of a header scan, whatever `index.interval.bytes` says.
const MAX_HEADER_CHUNK: usize = 1 << 20;

/// Reads batch headers of a segment file forward from a batch boundary, a chunk at a time,
/// so a scan of many small batches costs one read, not one per batch.
pub(crate) struct HeaderReader<'a> {
    file: &'a SegmentFile,
    /// Bytes past this are not (yet) part of the segment.
    end: u64,
    chunk_size: usize,
    chunk: Vec<u8>,
    chunk_pos: u64,
}

impl<'a> HeaderReader<'a> {
    pub fn new(file: &'a SegmentFile, end: u64, chunk_size: usize) -> HeaderReader<'a> {
        HeaderReader {
            file,
            end,
            chunk_size: chunk_size.clamp(BATCH_HEADER_LEN, MAX_HEADER_CHUNK),
            chunk: Vec::new(),
            chunk_pos: 0,
        }
    }

    /// The header of the batch at `pos`, checked to lie wholly within the segment.
    pub async fn header_at(&mut self, pos: u64) -> Result<BatchHeader, LogError> {
        let need = BATCH_HEADER_LEN as u64;
        if pos + need > self.end {
            return Err(LogError::corrupt(
                self.file.path(),
                pos,
                format!(
                    "a batch header at {pos} runs past the segment end {}",
                    self.end
                ),
            ));
        }
        let cached =
            pos >= self.chunk_pos && pos + need <= self.chunk_pos + self.chunk.len() as u64;
        if !cached {
            let len = (self.chunk_size as u64).min(self.end - pos) as usize;
            self.chunk = self.file.read_exact_at(pos, len).await?;
            self.chunk_pos = pos;
        }
        let at = (pos - self.chunk_pos) as usize;
        let header = BatchHeader::parse(&self.chunk[at..]).map_err(|e| {
            LogError::corrupt(self.file.path(), pos, format!("bad batch header: {e}"))
        })?;
        if pos + header.total_len() as u64 > self.end {
            return Err(LogError::corrupt(
                self.file.path(),
                pos,
                format!(
                    "batch of {} bytes runs past the segment end {}",
                    header.total_len(),
                    self.end
                ),
            ));
        }
        Ok(header)
    }

    /// The first batch at or after `from` whose last offset is >= `target`, or None if the
    /// segment ends first.
    pub async fn find_offset(
        &mut self,
        from: u64,
        target: i64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let mut pos = from;
        while pos < self.end {
            let header = self.header_at(pos).await?;
            if header.last_offset() >= target {
                return Ok(Some((pos, header)));
            }
            pos += header.total_len() as u64;
        }
        Ok(None)
    }

    /// The first batch at or after `from` whose max timestamp is >= `timestamp`.
    pub async fn find_timestamp(
        &mut self,
        from: u64,
        timestamp: i64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let mut pos = from;
        while pos < self.end {
            let header = self.header_at(pos).await?;
            if header.max_timestamp >= timestamp {
                return Ok(Some((pos, header)));
            }
            pos += header.total_len() as u64;
        }
        Ok(None)
    }

    /// The last batch boundary at or below `limit`, walking from the boundary `from`.
    pub async fn boundary_at_or_before(&mut self, from: u64, limit: u64) -> Result<u64, LogError> {
        let mut pos = from;
        while pos < limit.min(self.end) {
            let header = self.header_at(pos).await?;
            let next = pos + header.total_len() as u64;
            if next > limit {
                break;
            }
            pos = next;
        }
        Ok(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_file_names() {
        let dir = Path::new("/d");
        assert_eq!(
            file_path(dir, 1234, LOG_SUFFIX),
            Path::new("/d/00000000000000001234.log")
        );
        assert_eq!(
            parse_file_name("00000000000000001234.log", LOG_SUFFIX),
            Some(1234)
        );
        assert_eq!(
            parse_file_name("00000000000000001234.index", LOG_SUFFIX),
            None
        );
        assert_eq!(parse_file_name("1234.log", LOG_SUFFIX), None);
        assert_eq!(
            parse_file_name("0000000000000000123x.log", LOG_SUFFIX),
            None
        );
    }
}
