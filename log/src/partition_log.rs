//! One partition's log (Kafka's `UnifiedLog`): a map of segments by base offset, the log
//! offsets (start, end, high watermark, recovery point), the leader-epoch cache, and the
//! group-committing append path.
//!
//! Concurrency: everything runs on one executor, and every method takes `&self`. State sits
//! in a `RefCell` that is never borrowed across an `.await`. Appends stage their bytes (with
//! offsets already assigned, so the log order is the staging order) and wait; one writer
//! task writes everything staged so far in one `write_at` (and one fsync if the flush policy
//! says so), marks all those appends done, and goes again while more is staged. Operations
//! that rewrite segments (truncation, retention, close) take the same one-permit lock as
//! the writer. Readers only ever see bytes whose write has completed.
//!
//! Cancellation: `append`, `read` and the lookups may be dropped at any await (the write
//! goes on in the writer task). `truncate_to`, `delete_before`, `enforce_retention`,
//! `flush`, `close` and `delete` must be run to completion, as Kafka's are.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Poll, Waker};

use bytes::BytesMut;
use glommio::sync::Semaphore;
use spate_core::record_batch::{self, BatchError};

use crate::checkpoint::{self, CleanShutdown};
use crate::clock::Clock;
use crate::config::LogConfig;
use crate::error::LogError;
use crate::leader_epoch::{self, LeaderEpochCache};
use crate::producer_state::{self, Checked, ProducerBatch, ProducerState};
use crate::recovery;
use crate::segment::{self, BatchMeta, HeaderReader, LogSegment, SegmentFile};

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Largest batch max timestamp of the appended batches.
    pub max_timestamp: i64,
    pub log_start_offset: i64,
    /// The batch was a producer's retry of one already in the log: nothing was written,
    /// and the offsets are those it got the first time.
    pub duplicate: bool,
}

/// Counters of a log's disk work since it was opened (metrics; group commit shows as far
/// fewer writes than appends).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// `write` calls of staged appends.
    pub writes: u64,
    /// fdatasync calls of `.log` files.
    pub log_syncs: u64,
}

/// One idempotent producer of a partition, as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    /// Max timestamp of its last batch.
    pub last_timestamp: i64,
}

/// A byte range of one segment file holding whole batches, for a zero-copy send.
#[derive(Clone)]
pub struct ReadSlice {
    pub file: Rc<SegmentFile>,
    pub position: u64,
    /// 0 = nothing to return.
    pub len: usize,
}

impl ReadSlice {
    /// The same range for another thread (`SegmentFile::shared_fd`).
    pub fn share(&self) -> Result<SharedSlice, LogError> {
        Ok(SharedSlice {
            fd: self.file.shared_fd()?,
            position: self.position,
            len: self.len,
        })
    }
}

/// A [`ReadSlice`] that can cross threads: the segment's descriptor, duplicated.
#[derive(Debug, Clone)]
pub struct SharedSlice {
    pub fd: Arc<OwnedFd>,
    pub position: u64,
    pub len: usize,
}

impl std::fmt::Debug for ReadSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSlice")
            .field("file", &self.file.path())
            .field("position", &self.position)
            .field("len", &self.len)
            .finish()
    }
}

/// One partition's log. `!Send`: it lives on one glommio executor.
pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    pub(crate) clock: Rc<dyn Clock>,
    /// For background tasks (the flush that follows a segment roll).
    pub(crate) me: Weak<PartitionLog>,
    /// The single writer's permit: held to write staged appends, and by operations that
    /// rewrite segments (truncation, retention, close), so they never race a write.
    pub(crate) write_lock: Semaphore,
    stats: Cell<LogStats>,
    /// Whether the writer task (see `ensure_writer`) is running.
    writer_running: Cell<bool>,
    /// Serializes checkpoint file writes.
    checkpoint_lock: Semaphore,
    /// Held by the background flush after a roll; close and delete take it (and then close
    /// it) so no background work touches the directory once they return.
    background_lock: Semaphore,
    /// Kafka's `producer.id.expiration.ms` (a broker setting).
    producer_id_expiration_ms: Cell<i64>,
    pub(crate) state: RefCell<State>,
}

/// The small state files beside the segments.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Checkpoint {
    RecoveryPoint,
    HighWatermark,
    LogStart,
    LeaderEpochs,
}

impl Checkpoint {
    pub(crate) const ALL: [Checkpoint; 4] = [
        Checkpoint::RecoveryPoint,
        Checkpoint::HighWatermark,
        Checkpoint::LogStart,
        Checkpoint::LeaderEpochs,
    ];
}

/// Where a staged append learns how its write went: set once by the writer, awaited by
/// the appender.
#[derive(Clone, Default)]
struct Outcome(Rc<RefCell<OutcomeState>>);

#[derive(Default)]
struct OutcomeState {
    result: Option<Result<(), WriteFailure>>,
    waker: Option<Waker>,
}

impl Outcome {
    fn set(&self, result: Result<(), WriteFailure>) {
        let waker = {
            let mut state = self.0.borrow_mut();
            state.result = Some(result);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    async fn wait(&self) -> Result<(), WriteFailure> {
        std::future::poll_fn(|cx| {
            let mut state = self.0.borrow_mut();
            match state.result.take() {
                Some(result) => Poll::Ready(result),
                None => {
                    state.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

#[derive(Debug, Clone)]
pub(crate) struct WriteFailure {
    path: PathBuf,
    kind: std::io::ErrorKind,
    message: String,
}

impl WriteFailure {
    fn of(err: &LogError, dir: &Path) -> WriteFailure {
        match err {
            LogError::Io { path, source } => WriteFailure {
                path: path.clone(),
                kind: source.kind(),
                message: source.to_string(),
            },
            other => WriteFailure {
                path: dir.to_path_buf(),
                kind: std::io::ErrorKind::Other,
                message: other.to_string(),
            },
        }
    }

    fn to_error(&self) -> LogError {
        LogError::io(
            &self.path,
            std::io::Error::new(self.kind, self.message.clone()),
        )
    }
}

/// An append whose offsets are assigned but whose bytes are not yet written.
struct Staged {
    bytes: BytesMut,
    batches: Vec<BatchMeta>,
    outcome: Outcome,
}

impl Staged {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

pub(crate) struct State {
    pub config: LogConfig,
    pub segments: BTreeMap<i64, LogSegment>,
    pub log_start: i64,
    /// Offset after the last written (readable) batch.
    pub log_end: i64,
    /// Next offset to assign; ahead of `log_end` while appends are staged.
    pub next_offset: i64,
    pub high_watermark: i64,
    pub recovery_point: i64,
    pub epochs: LeaderEpochCache,
    /// Idempotent producers' sequences, including staged batches.
    pub producers: ProducerState,
    /// Log end of the newest producer snapshot file (-1: none written by this instance).
    pub producer_snapshot: i64,
    pub size_bytes: u64,
    staged: Vec<Staged>,
    /// Bumped whenever offsets are rewritten (truncation), so a flush started before it
    /// does not move the recovery point over data that is no longer what it synced.
    pub generation: u64,
    pub last_flush_ms: i64,
    /// Set when the log must not be used: closed, deleted, or a failed write left it in a
    /// state only a reopen (recovery) can repair.
    pub unusable: Option<String>,
}

impl State {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: LogConfig,
        segments: BTreeMap<i64, LogSegment>,
        log_start: i64,
        log_end: i64,
        high_watermark: i64,
        recovery_point: i64,
        epochs: LeaderEpochCache,
        now_ms: i64,
    ) -> State {
        let size_bytes = segments.values().map(|s| s.size).sum();
        State {
            config,
            segments,
            log_start,
            log_end,
            next_offset: log_end,
            high_watermark,
            recovery_point,
            epochs,
            producers: ProducerState::default(),
            producer_snapshot: -1,
            size_bytes,
            staged: Vec::new(),
            generation: 0,
            last_flush_ms: now_ms,
            unusable: None,
        }
    }

    pub(crate) fn active(&self) -> &LogSegment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has a segment")
    }

    pub(crate) fn active_mut(&mut self) -> &mut LogSegment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has a segment")
    }

    /// Base offset of the segment that holds `offset` (the first segment if none does).
    pub(crate) fn floor_segment(&self, offset: i64) -> i64 {
        self.segments
            .range(..=offset)
            .next_back()
            .or_else(|| self.segments.iter().next())
            .map(|(&base, _)| base)
            .expect("a log always has a segment")
    }

    /// Queues batches whose offsets are set for the writer; offsets are taken now.
    fn stage(&mut self, bytes: BytesMut, batches: Vec<BatchMeta>, outcome: Outcome) -> AppendInfo {
        let info = AppendInfo {
            base_offset: batches[0].base_offset,
            last_offset: batches[batches.len() - 1].last_offset,
            max_timestamp: batches.iter().map(|b| b.max_timestamp).max().unwrap_or(-1),
            log_start_offset: self.log_start,
            duplicate: false,
        };
        self.next_offset = info.last_offset + 1;
        self.staged.push(Staged {
            bytes,
            batches,
            outcome,
        });
        info
    }

    fn check_usable(&self, dir: &Path) -> Result<(), LogError> {
        match &self.unusable {
            Some(reason) => Err(LogError::Unusable {
                dir: dir.to_path_buf(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl PartitionLog {
    pub(crate) fn from_state(dir: PathBuf, clock: Rc<dyn Clock>, state: State) -> Rc<PartitionLog> {
        Rc::new_cyclic(|me| PartitionLog {
            dir,
            clock,
            me: me.clone(),
            write_lock: Semaphore::new(1),
            writer_running: Cell::new(false),
            stats: Cell::new(LogStats::default()),
            checkpoint_lock: Semaphore::new(1),
            background_lock: Semaphore::new(1),
            producer_id_expiration_ms: Cell::new(producer_state::DEFAULT_PRODUCER_ID_EXPIRATION_MS),
            state: RefCell::new(state),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn check_usable(&self) -> Result<(), LogError> {
        self.state.borrow().check_usable(&self.dir)
    }

    /// Waits for the writer's permit.
    pub(crate) async fn lock(&self) -> Result<glommio::sync::Permit<'_>, LogError> {
        self.write_lock
            .acquire_permit(1)
            .await
            .map_err(|e| LogError::Unusable {
                dir: self.dir.clone(),
                reason: e.to_string(),
            })
    }

    /// Validates every batch, assigns offsets and appends (see the crate docs for the
    /// group commit). A bad batch rejects the whole call before anything is staged.
    ///
    /// Batches of idempotent producers are checked against the producer state (see
    /// `producer_state`): a retry of one of a producer's last five batches appends nothing
    /// and returns that batch's offsets with `duplicate` set.
    pub async fn append(
        &self,
        batches: BytesMut,
        leader_epoch: i32,
    ) -> Result<AppendInfo, LogError> {
        let headers = validate_all(&batches)?;
        let outcome = Outcome::default();
        let staged = {
            let mut st = self.state.borrow_mut();
            st.check_usable(&self.dir)?;
            let base_offset = st.next_offset;
            let producer_batches = producer_batches(&headers, base_offset)?;
            let checked = match producer_batches.is_empty() {
                true => Checked::Append(Vec::new()),
                false => st.producers.check(&producer_batches)?,
            };
            match checked {
                Checked::Duplicate(original) => Err(AppendInfo {
                    base_offset: original.first_offset,
                    last_offset: original.last_offset,
                    max_timestamp: original.timestamp,
                    log_start_offset: st.log_start,
                    duplicate: true,
                }),
                Checked::Append(entries) => {
                    st.producers.apply(entries);
                    Ok(stage_at(
                        &mut st,
                        base_offset,
                        batches,
                        headers,
                        leader_epoch,
                        &outcome,
                    ))
                }
            }
        };
        match staged {
            Ok(info) => self.write_and_wait(info, outcome).await,
            Err(duplicate) => self.await_written(duplicate).await,
        }
    }

    /// A follower's append: the batches keep the offsets and leader epochs the leader gave
    /// them. They must continue the log exactly (first offset = log end, each batch right
    /// after the previous); otherwise `OffsetOutOfRange`, and the follower must truncate or
    /// refetch. The leader-epoch cache learns the epochs the batches carry.
    pub async fn append_as_follower(&self, batches: BytesMut) -> Result<AppendInfo, LogError> {
        let headers = validate_all(&batches)?;
        let outcome = Outcome::default();
        let info = {
            let mut st = self.state.borrow_mut();
            st.check_usable(&self.dir)?;
            let mut next = st.next_offset;
            let mut metas = Vec::with_capacity(headers.len());
            for (_, header) in &headers {
                if header.base_offset != next {
                    return Err(LogError::OffsetOutOfRange {
                        offset: header.base_offset,
                        log_start: st.log_start,
                        log_end: next,
                    });
                }
                metas.push(BatchMeta::of(header));
                next = header.last_offset() + 1;
            }
            for (_, header) in &headers {
                if let Some(b) = ProducerBatch::of(header, header.base_offset) {
                    st.producers.replay(&b);
                }
            }
            st.stage(batches, metas, outcome.clone())
        };
        self.write_and_wait(info, outcome).await
    }

    /// Answers a duplicate once its original is written: the original may still be staged,
    /// and its write may yet fail (which forgets it in the producer state).
    async fn await_written(&self, info: AppendInfo) -> Result<AppendInfo, LogError> {
        loop {
            self.check_usable()?;
            if self.log_end_offset() > info.last_offset {
                return Ok(info);
            }
            if self.state.borrow().next_offset <= info.last_offset {
                return Err(LogError::Unusable {
                    dir: self.dir.clone(),
                    reason: "the write of the original batch failed; retry".into(),
                });
            }
            self.ensure_writer();
            // The writer holds the lock while it writes; once we hold it, a round is done.
            drop(self.lock().await?);
        }
    }

    /// Waits for the writer task to write a staged append (starting it if needed).
    ///
    /// The write itself always runs in the writer task, never in the appender's future: a
    /// caller that gives up (drops the future, e.g. on a timeout) cannot leave a write half
    /// done or other appenders waiting. The append is then still written, just not awaited.
    async fn write_and_wait(
        &self,
        info: AppendInfo,
        outcome: Outcome,
    ) -> Result<AppendInfo, LogError> {
        self.ensure_writer();
        match outcome.wait().await {
            Ok(()) => Ok(AppendInfo {
                log_start_offset: self.log_start_offset(),
                ..info
            }),
            Err(failure) => Err(failure.to_error()),
        }
    }

    /// Starts the writer task unless it is running. It writes whatever is staged again and
    /// again until nothing is: appends staged while a write (or fsync) is in flight all go
    /// out together in the next one. That is the group commit, and it does not depend on
    /// how fairly tasks are woken.
    fn ensure_writer(&self) {
        if self.writer_running.replace(true) {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            self.writer_running.set(false);
            return;
        };
        glommio::spawn_local(async move {
            loop {
                me.write_round().await;
                if me.state.borrow().staged.is_empty() {
                    break;
                }
            }
            me.writer_running.set(false);
        })
        .detach();
    }

    /// Takes the write lock and writes everything staged.
    async fn write_round(&self) {
        match self.lock().await {
            Ok(_permit) => {
                // Let the tasks ready to run stage their appends first: a write from this
                // thread (`inline_write`) does not yield, so without this each append that
                // woke the writer would go out alone. (Holding the lock meanwhile keeps a
                // duplicate's wait for "a round is done" true.)
                glommio::executor().yield_now().await;
                self.write_staged().await
            }
            Err(e) => {
                let f = WriteFailure::of(&e, &self.dir);
                let staged = std::mem::take(&mut self.state.borrow_mut().staged);
                for item in staged {
                    item.outcome.set(Err(f.clone()));
                }
            }
        }
    }

    /// Writes everything staged. Caller holds the write lock. Each staged append's outcome
    /// is set before this returns.
    pub(crate) async fn write_staged(&self) {
        let staged = std::mem::take(&mut self.state.borrow_mut().staged);
        if staged.is_empty() {
            return;
        }
        let mut written: Vec<Outcome> = Vec::with_capacity(staged.len());
        let mut run: Vec<Staged> = Vec::new();
        let mut failure: Option<LogError> = None;
        for item in staged {
            if failure.is_some() {
                run.push(item);
                continue;
            }
            if self.needs_roll(&run, &item) {
                let done = std::mem::take(&mut run);
                if let Err(e) = self.write_run(done, &mut written, &mut run).await {
                    failure = Some(e);
                } else if let Err(e) = self.roll(item.batches[0].base_offset).await {
                    failure = Some(e);
                }
            }
            run.push(item);
        }
        if failure.is_none() {
            let done = std::mem::take(&mut run);
            if let Err(e) = self.write_run(done, &mut written, &mut run).await {
                failure = Some(e);
            }
        }
        if failure.is_none() && self.flush_due() {
            let end = self.log_end_offset();
            if let Err(e) = self.flush_to(end).await {
                // The bytes are written but not durable as the policy demands, and the
                // page cache may have dropped them: only a reopen can tell what survived.
                self.state.borrow_mut().unusable = Some(format!("fsync failed: {e}"));
                let f = WriteFailure::of(&e, &self.dir);
                for outcome in written.drain(..) {
                    outcome.set(Err(f.clone()));
                }
            }
        }
        for outcome in written {
            outcome.set(Ok(()));
        }
        if let Some(e) = failure {
            // Everything not written fails, including appends staged meanwhile (their
            // offsets follow the failed ones); offsets restart at the log end.
            let late = {
                let mut st = self.state.borrow_mut();
                st.next_offset = st.log_end;
                let end = st.log_end;
                st.producers.truncate_from(end);
                std::mem::take(&mut st.staged)
            };
            let f = WriteFailure::of(&e, &self.dir);
            for item in run.into_iter().chain(late) {
                item.outcome.set(Err(f.clone()));
            }
        }
    }

    fn needs_roll(&self, run: &[Staged], item: &Staged) -> bool {
        let st = self.state.borrow();
        let unwritten: u64 = run.iter().map(Staged::len).sum();
        let first_ts = run.first().map(|s| s.batches[0].max_timestamp);
        let max_ts = item
            .batches
            .iter()
            .map(|b| b.max_timestamp)
            .max()
            .unwrap_or(-1);
        let last = item.batches.last().map(|b| b.last_offset).unwrap_or(0);
        st.active().should_roll(
            &st.config,
            unwritten,
            first_ts,
            item.len(),
            max_ts,
            last,
            self.clock.now_ms(),
        )
    }

    /// Writes `run` to the active segment in one write. On failure the items go back into
    /// `unwritten` and the file is cut back to where it was.
    async fn write_run(
        &self,
        run: Vec<Staged>,
        written: &mut Vec<Outcome>,
        unwritten: &mut Vec<Staged>,
    ) -> Result<(), LogError> {
        if run.is_empty() {
            return Ok(());
        }
        let (file, position, segment_bytes) = {
            let st = self.state.borrow();
            let active = st.active();
            (active.file.clone(), active.size, st.config.segment_bytes)
        };
        let mut run = run;
        let total: u64 = run.iter().map(Staged::len).sum();
        file.reserve(position + total, segment_bytes).await;
        let mut at = position;
        for buf in write_chunks(&mut run) {
            let len = buf.len() as u64;
            self.stats.set(LogStats {
                writes: self.stats.get().writes + 1,
                ..self.stats.get()
            });
            if let Err(e) = file.write_all_at(buf, at).await {
                if let Err(cut) = file.truncate(position).await {
                    self.state.borrow_mut().unusable = Some(format!(
                        "write failed ({e}) and cutting it back failed ({cut})"
                    ));
                }
                unwritten.extend(run);
                return Err(e);
            }
            at += len;
        }
        let now = self.clock.now_ms();
        let mut st = self.state.borrow_mut();
        let interval = st.config.index_interval_bytes;
        let mut pos = position;
        let mut end = st.log_end;
        let mut epoch_changes = Vec::new();
        {
            let active = st.active_mut();
            for item in &run {
                for batch in &item.batches {
                    active.on_batch_written(pos, batch, interval);
                    pos += batch.len;
                    end = batch.last_offset + 1;
                    epoch_changes.push((batch.leader_epoch, batch.base_offset));
                }
            }
            active.last_modified_ms = now;
        }
        for (epoch, start) in epoch_changes {
            st.epochs.assign(epoch, start);
        }
        st.size_bytes += total;
        st.log_end = end;
        written.extend(run.into_iter().map(|s| s.outcome));
        Ok(())
    }

    /// Starts a new active segment at `base_offset`. The old one's indexes go to disk (and
    /// leave memory), and a
    /// background task fsyncs it and moves the recovery point past it, as Kafka does after
    /// a roll, so a crash never rescans more than the active segment even with flush=never.
    pub(crate) async fn roll(&self, base_offset: i64) -> Result<(), LogError> {
        let (old_base, old_file, old_size, offset_index, time_index) = {
            let mut st = self.state.borrow_mut();
            let active = st.active_mut();
            active.seal_time_index();
            (
                active.base_offset,
                active.file.clone(),
                active.size,
                active.offset_index.to_bytes(),
                active.time_index.to_bytes(),
            )
        };
        // Frees the blocks reserved past the old segment's end (`SegmentFile::reserve`).
        old_file.truncate(old_size).await?;
        segment::write_index_files(&self.dir, old_base, offset_index, time_index).await?;
        let path = segment::file_path(&self.dir, base_offset, segment::LOG_SUFFIX);
        let file = Rc::new(SegmentFile::open(path, true).await?);
        let segment_bytes = self.state.borrow().config.segment_bytes;
        file.reserve_start(old_size, segment_bytes).await;
        let generation = {
            let mut st = self.state.borrow_mut();
            let segment = LogSegment::new(base_offset, file, self.clock.now_ms());
            st.segments.insert(base_offset, segment);
            // Its index files are written: drop the copy in memory until a read needs it,
            // so memory holds the indexes of the active segment and of segments being read.
            if let Some(old) = st.segments.get_mut(&old_base) {
                old.unload_indexes();
            }
            st.generation
        };
        let me = self.me.clone();
        glommio::spawn_local(async move {
            if let Some(log) = me.upgrade() {
                let Ok(_permit) = log.background_lock.acquire_permit(1).await else {
                    return; // closed or deleted meanwhile
                };
                if log.check_usable().is_err() {
                    return;
                }
                let flushed = log.flush_to_if(base_offset, Some(generation)).await;
                let checkpointed = match flushed {
                    Ok(()) => log.write_checkpoints(&[Checkpoint::RecoveryPoint]).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = checkpointed {
                    tracing::warn!(dir = %log.dir.display(), "flush after roll failed: {e}");
                }
            }
        })
        .detach();
        Ok(())
    }

    fn flush_due(&self) -> bool {
        let st = self.state.borrow();
        let unflushed = st.log_end - st.recovery_point;
        if unflushed <= 0 {
            return false;
        }
        let by_count = st
            .config
            .flush_messages
            .is_some_and(|n| unflushed as u64 >= n);
        let by_time = st
            .config
            .flush_ms
            .is_some_and(|ms| self.clock.now_ms() - st.last_flush_ms >= ms as i64);
        by_count || by_time
    }

    pub(crate) async fn flush_to(&self, up_to: i64) -> Result<(), LogError> {
        self.flush_to_if(up_to, None).await
    }

    /// Fsyncs the segments holding offsets in [recovery point, up_to) and moves the recovery
    /// point to `up_to`, unless offsets were rewritten since `generation`.
    async fn flush_to_if(&self, up_to: i64, generation: Option<u64>) -> Result<(), LogError> {
        let (files, generation) = {
            let st = self.state.borrow();
            if up_to <= st.recovery_point {
                return Ok(());
            }
            let from = st.floor_segment(st.recovery_point);
            let active_base = st.active().base_offset;
            let files: Vec<(Rc<SegmentFile>, Option<i64>)> = st
                .segments
                .range(from..up_to)
                .map(|(&base, s)| (s.file.clone(), (base != active_base).then_some(base)))
                .collect();
            (files, generation.unwrap_or(st.generation))
        };
        for (file, sealed_base) in files {
            self.stats.set(LogStats {
                log_syncs: self.stats.get().log_syncs + 1,
                ..self.stats.get()
            });
            file.sync().await?;
            if let Some(base) = sealed_base {
                self.sync_index_files(base).await?;
            }
        }
        let now = self.clock.now_ms();
        let mut st = self.state.borrow_mut();
        if st.generation == generation {
            st.recovery_point = st.recovery_point.max(up_to.min(st.log_end));
            st.last_flush_ms = now;
        }
        Ok(())
    }

    async fn sync_index_files(&self, base: i64) -> Result<(), LogError> {
        for suffix in [segment::INDEX_SUFFIX, segment::TIME_INDEX_SUFFIX] {
            let path = segment::file_path(&self.dir, base, suffix);
            // A segment deleted meanwhile has nothing left to sync.
            if !path.exists() {
                continue;
            }
            let file = SegmentFile::open(path, false).await?;
            file.sync().await?;
        }
        Ok(())
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.borrow().log_start
    }

    pub fn log_end_offset(&self) -> i64 {
        self.state.borrow().log_end
    }

    pub fn high_watermark(&self) -> i64 {
        self.state.borrow().high_watermark
    }

    /// Clamped to [log start, log end].
    pub fn set_high_watermark(&self, hw: i64) {
        let mut st = self.state.borrow_mut();
        st.high_watermark = hw.clamp(st.log_start, st.log_end);
    }

    pub fn recovery_point(&self) -> i64 {
        self.state.borrow().recovery_point
    }

    pub fn config(&self) -> LogConfig {
        self.state.borrow().config.clone()
    }

    pub fn set_config(&self, config: LogConfig) {
        self.state.borrow_mut().config = config;
    }

    /// Kafka's `producer.id.expiration.ms`: producers silent this long are forgotten at
    /// the next `enforce_retention`.
    pub fn set_producer_id_expiration_ms(&self, ms: i64) {
        self.producer_id_expiration_ms.set(ms);
    }

    pub(crate) fn producer_id_expiration_ms(&self) -> i64 {
        self.producer_id_expiration_ms.get()
    }

    /// The idempotent producers this partition knows (DescribeProducers), by producer id.
    pub fn producers(&self) -> Vec<ProducerInfo> {
        let st = self.state.borrow();
        let mut out: Vec<ProducerInfo> = st
            .producers
            .iter()
            .filter_map(|(producer_id, e)| {
                let last = e
                    .batches
                    .iter()
                    .rev()
                    .find(|b| b.last_offset < st.log_end)?;
                Some(ProducerInfo {
                    producer_id,
                    epoch: e.epoch,
                    last_sequence: last.last_seq,
                    last_timestamp: last.timestamp,
                })
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// The largest producer id in the producer state (-1 if none): the broker hands out
    /// new ids above it.
    pub fn max_producer_id(&self) -> i64 {
        self.state.borrow().producers.max_producer_id()
    }

    /// Bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.state.borrow().size_bytes
    }

    /// Write and fsync counts since open.
    pub fn stats(&self) -> LogStats {
        self.stats.get()
    }

    /// Number of segments (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// Largest batch max timestamp in the log, and the last offset of that batch;
    /// (-1, -1) when there is none.
    pub fn max_timestamp(&self) -> (i64, i64) {
        let st = self.state.borrow();
        st.segments
            .values()
            .filter(|s| s.max_timestamp >= 0)
            .map(|s| (s.max_timestamp, s.offset_of_max_timestamp))
            .fold(
                (-1, -1),
                |best, cur| if cur.0 > best.0 { cur } else { best },
            )
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.state.borrow().epochs.latest_epoch()
    }

    /// OffsetForLeaderEpoch (Kafka's `endOffsetFor`): the largest epoch <= `epoch` in the
    /// cache and the offset where the next higher epoch starts (the log end for the latest
    /// epoch). None stands for Kafka's (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let st = self.state.borrow();
        st.epochs.end_offset_for(epoch, st.log_end)
    }

    /// Whole batches from the one holding `offset`, stopping before the first batch whose
    /// last offset is >= `max_offset`, within `max_bytes` (the first batch always, if
    /// `min_one_batch`). Reads from one segment only, like Kafka.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<ReadSlice, LogError> {
        let (log_start, log_end) = {
            let st = self.state.borrow();
            (st.log_start, st.log_end)
        };
        if offset < log_start || offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            });
        }
        let mut key = self.state.borrow().floor_segment(offset);
        loop {
            self.ensure_indexes(key).await?;
            let (file, size, next_offset, hint, chunk) = {
                let st = self.state.borrow();
                let Some(seg) = st.segments.get(&key) else {
                    return Ok(self.empty_slice());
                };
                (
                    seg.file.clone(),
                    seg.size,
                    seg.next_offset,
                    seg.offset_index.lookup(offset).1 as u64,
                    st.config.index_interval_bytes as usize + record_batch::BATCH_HEADER_LEN,
                )
            };
            if offset >= log_end || offset >= max_offset {
                return Ok(ReadSlice {
                    file,
                    position: size,
                    len: 0,
                });
            }
            let mut reader = HeaderReader::new(&file, size, chunk);
            let Some((position, first)) = reader.find_offset(hint, offset).await? else {
                // Nothing at or past `offset` here: the data is in the next segment.
                let next = self
                    .state
                    .borrow()
                    .segments
                    .range(key + 1..)
                    .next()
                    .map(|(&b, _)| b);
                match next {
                    Some(next) => {
                        key = next;
                        continue;
                    }
                    None => return Ok(self.empty_slice()),
                }
            };
            let empty = ReadSlice {
                file: file.clone(),
                position,
                len: 0,
            };
            if first.last_offset() >= max_offset {
                return Ok(empty);
            }
            let first_len = first.total_len() as u64;
            if first_len > max_bytes as u64 {
                return Ok(match min_one_batch {
                    true => ReadSlice {
                        len: first_len as usize,
                        ..empty
                    },
                    false => empty,
                });
            }
            // Where batches stop being below max_offset.
            let offset_limit = if max_offset >= next_offset {
                size
            } else {
                let hint = self.index_hint(key, max_offset).max(position);
                match reader.find_offset(hint, max_offset).await? {
                    Some((pos, _)) => pos,
                    None => size,
                }
            };
            let byte_limit = position.saturating_add(max_bytes as u64);
            let end = if byte_limit >= offset_limit {
                offset_limit
            } else {
                let from = self.index_floor_position(key, byte_limit).max(position);
                reader.boundary_at_or_before(from, byte_limit).await?
            };
            return Ok(ReadSlice {
                len: (end - position) as usize,
                ..empty
            });
        }
    }

    /// Loads the indexes of the segment at `base` if they are not in memory yet.
    pub(crate) async fn ensure_indexes(&self, base: i64) -> Result<(), LogError> {
        let (file, size, next, interval) = {
            let st = self.state.borrow();
            match st.segments.get(&base) {
                Some(seg) if !seg.indexes_loaded => (
                    seg.file.clone(),
                    seg.size,
                    seg.next_offset,
                    st.config.index_interval_bytes,
                ),
                _ => return Ok(()),
            }
        };
        let now = self.clock.now_ms();
        let (offset_index, time_index) =
            recovery::load_indexes(&self.dir, &file, base, size, next, interval, now).await?;
        let mut st = self.state.borrow_mut();
        if let Some(seg) = st.segments.get_mut(&base) {
            if !seg.indexes_loaded {
                seg.set_indexes(offset_index, time_index);
            }
        }
        Ok(())
    }

    fn empty_slice(&self) -> ReadSlice {
        let st = self.state.borrow();
        let active = st.active();
        ReadSlice {
            file: active.file.clone(),
            position: active.size,
            len: 0,
        }
    }

    fn index_hint(&self, key: i64, offset: i64) -> u64 {
        let st = self.state.borrow();
        st.segments
            .get(&key)
            .map_or(0, |s| s.offset_index.lookup(offset).1 as u64)
    }

    fn index_floor_position(&self, key: i64, position: u64) -> u64 {
        let st = self.state.borrow();
        st.segments
            .get(&key)
            .map_or(0, |s| s.offset_index.floor_position(position) as u64)
    }

    /// ListOffsets by time: the first offset whose record timestamp is >= `ts`, with that
    /// timestamp. Segments are found by their largest timestamp (as Kafka does), then the
    /// time index narrows the scan within the segment.
    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let candidates: Vec<i64> = {
            let st = self.state.borrow();
            st.segments
                .values()
                .filter(|s| s.max_timestamp >= ts && s.next_offset > st.log_start)
                .map(|s| s.base_offset)
                .collect()
        };
        for base in candidates {
            self.ensure_indexes(base).await?;
            let (file, size, hint, chunk, log_start) = {
                let st = self.state.borrow();
                let Some(seg) = st.segments.get(&base) else {
                    continue;
                };
                let from = seg.time_index.lookup_before(ts).max(st.log_start);
                (
                    seg.file.clone(),
                    seg.size,
                    seg.offset_index.lookup(from).1 as u64,
                    st.config.index_interval_bytes as usize + record_batch::BATCH_HEADER_LEN,
                    st.log_start,
                )
            };
            let mut reader = HeaderReader::new(&file, size, chunk);
            let mut from = hint;
            while let Some((pos, header)) = reader.find_timestamp(from, ts).await? {
                if header.last_offset() >= log_start {
                    let batch = file.read_exact_at(pos, header.total_len()).await?;
                    if let Some(found) = first_record_at_or_after(&batch, &header, ts, log_start) {
                        return Ok(Some(found));
                    }
                }
                from = pos + header.total_len() as u64;
            }
        }
        Ok(None)
    }

    /// Fsyncs everything written, moves the recovery point to the log end and checkpoints it
    /// with the high watermark. The broker calls this periodically (Kafka's
    /// `log.flush.offset.checkpoint.interval.ms`); the flush policy's own fsyncs do not
    /// rewrite checkpoints, so a crash may rescan a little more than needed, never less.
    pub async fn flush(&self) -> Result<(), LogError> {
        self.check_usable()?;
        let end = self.log_end_offset();
        self.flush_to(end).await?;
        self.write_checkpoints(&[Checkpoint::RecoveryPoint, Checkpoint::HighWatermark])
            .await?;
        self.write_producer_snapshot(end).await
    }

    /// Writes the given checkpoint files from the current state, one writer at a time
    /// (they share `.tmp` names).
    pub(crate) async fn write_checkpoints(&self, which: &[Checkpoint]) -> Result<(), LogError> {
        let _permit = self.checkpoint_permit().await?;
        for which in which {
            let (name, bytes) = {
                let st = self.state.borrow();
                match which {
                    Checkpoint::RecoveryPoint => (
                        checkpoint::RECOVERY_POINT_FILE,
                        checkpoint::offset_text(st.recovery_point),
                    ),
                    Checkpoint::HighWatermark => (
                        checkpoint::HIGH_WATERMARK_FILE,
                        checkpoint::offset_text(st.high_watermark),
                    ),
                    Checkpoint::LogStart => (
                        checkpoint::LOG_START_FILE,
                        checkpoint::offset_text(st.log_start),
                    ),
                    Checkpoint::LeaderEpochs => (
                        leader_epoch::FILE_NAME,
                        st.epochs.to_checkpoint().into_bytes(),
                    ),
                }
            };
            checkpoint::write_atomic(&self.dir.join(name), bytes).await?;
        }
        Ok(())
    }

    /// The permit of whoever writes checkpoint files (they share `.tmp` names).
    pub(crate) async fn checkpoint_permit(&self) -> Result<glommio::sync::Permit<'_>, LogError> {
        self.checkpoint_lock
            .acquire_permit(1)
            .await
            .map_err(|e| LogError::Unusable {
                dir: self.dir.clone(),
                reason: e.to_string(),
            })
    }

    /// Fails every staged append (their offsets no longer follow the log, which was
    /// rewritten under them) and restarts offsets at the log end.
    pub(crate) fn fail_staged(&self, reason: &str) {
        let staged = {
            let mut st = self.state.borrow_mut();
            st.next_offset = st.log_end;
            std::mem::take(&mut st.staged)
        };
        let failure = WriteFailure::of(
            &LogError::Unusable {
                dir: self.dir.clone(),
                reason: reason.to_string(),
            },
            &self.dir,
        );
        for item in staged {
            item.outcome.set(Err(failure.clone()));
        }
    }

    /// Flushes, writes the active segment's indexes and the checkpoints, then the
    /// clean-shutdown marker, so the next open reads no log data.
    pub async fn close(&self) -> Result<(), LogError> {
        let _permit = self.lock().await?;
        let _background = self.stop_background().await;
        self.write_staged().await;
        self.check_usable()?;
        let end = self.log_end_offset();
        self.flush_to(end).await?;
        let (base, size, offset_index, time_index) = {
            let mut st = self.state.borrow_mut();
            let active = st.active_mut();
            active.seal_time_index();
            (
                active.base_offset,
                active.size,
                active.offset_index.to_bytes(),
                active.time_index.to_bytes(),
            )
        };
        segment::write_index_files(&self.dir, base, offset_index, time_index).await?;
        self.sync_index_files(base).await?;
        self.write_checkpoints(&Checkpoint::ALL).await?;
        self.write_producer_snapshot(end).await?;
        let marker = CleanShutdown {
            log_end: end,
            active_base: base,
            active_size: size,
        };
        checkpoint::write_atomic(
            &self.dir.join(checkpoint::CLEAN_SHUTDOWN_FILE),
            marker.to_text(),
        )
        .await?;
        self.state.borrow_mut().unusable = Some("closed".into());
        self.write_lock.close();
        Ok(())
    }

    /// Waits for the running background flush, if any, and keeps later ones from starting.
    async fn stop_background(&self) -> Option<glommio::sync::Permit<'_>> {
        let permit = self.background_lock.acquire_permit(1).await.ok();
        self.background_lock.close();
        permit
    }

    /// Removes the partition's directory and everything in it.
    pub async fn delete(&self) -> Result<(), LogError> {
        let _permit = self.lock().await?;
        let _background = self.stop_background().await;
        self.write_staged().await;
        {
            let mut st = self.state.borrow_mut();
            st.unusable = Some("deleted".into());
        }
        self.write_lock.close();
        // Unlinking is metadata work; the segments' open handles keep in-flight reads valid.
        std::fs::remove_dir_all(&self.dir).map_err(|e| LogError::io(&self.dir, e))
    }
}

/// Patches offsets from `base_offset` on and the leader epoch into a client's batches and
/// stages them.
fn stage_at(
    st: &mut State,
    base_offset: i64,
    mut batches: BytesMut,
    headers: Vec<(usize, record_batch::BatchHeader)>,
    leader_epoch: i32,
    outcome: &Outcome,
) -> AppendInfo {
    let mut next = base_offset;
    let mut metas = Vec::with_capacity(headers.len());
    for (pos, mut header) in headers {
        let bytes = &mut batches[pos..];
        record_batch::set_base_offset(bytes, next);
        record_batch::set_partition_leader_epoch(bytes, leader_epoch);
        header.base_offset = next;
        header.partition_leader_epoch = leader_epoch;
        metas.push(BatchMeta::of(&header));
        next = header.last_offset() + 1;
    }
    st.stage(batches, metas, outcome.clone())
}

/// The producer fields of a client's batches, at the offsets they would get from
/// `base_offset` on. Transactional and control batches are refused: Spate serves no
/// transactions.
fn producer_batches(
    headers: &[(usize, record_batch::BatchHeader)],
    base_offset: i64,
) -> Result<Vec<ProducerBatch>, LogError> {
    let mut out = Vec::new();
    let mut next = base_offset;
    for (_, header) in headers {
        if header.is_control() || header.is_transactional() {
            return Err(LogError::Transactional {
                producer_id: header.producer_id,
                what: if header.is_control() {
                    "control"
                } else {
                    "transactional"
                },
            });
        }
        out.extend(ProducerBatch::of(header, next));
        next += header.last_offset_delta as i64 + 1;
    }
    Ok(out)
}

/// Checks every batch of an append (framing, CRC, count); any bad one rejects them all.
fn validate_all(batches: &[u8]) -> Result<Vec<(usize, record_batch::BatchHeader)>, LogError> {
    let mut headers = Vec::new();
    for item in record_batch::split(batches) {
        let (pos, _, bytes) = item?;
        headers.push((pos, record_batch::validate(bytes)?));
    }
    if headers.is_empty() {
        return Err(LogError::Batch(BatchError::Truncated {
            needed: record_batch::BATCH_HEADER_LEN,
            found: 0,
        }));
    }
    Ok(headers)
}

/// Appends at least this large are written from their own buffer; smaller ones are copied
/// together into one, so a burst of small appends costs one write, while large ones are
/// not copied again (a copy of a large buffer costs more than the extra write).
const COALESCE_BELOW: usize = 256 * 1024;

/// The buffers to write for a run of staged appends, in order. Takes the appends' bytes.
fn write_chunks(run: &mut [Staged]) -> Vec<Vec<u8>> {
    if let [only] = run {
        return vec![Vec::from(std::mem::take(&mut only.bytes))];
    }
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut small: Vec<u8> = Vec::new();
    for item in run.iter_mut() {
        let bytes = std::mem::take(&mut item.bytes);
        if bytes.len() >= COALESCE_BELOW {
            if !small.is_empty() {
                chunks.push(std::mem::take(&mut small));
            }
            chunks.push(Vec::from(bytes));
        } else {
            small.extend_from_slice(&bytes);
        }
    }
    if !small.is_empty() {
        chunks.push(small);
    }
    chunks
}

/// The first record of an uncompressed batch with a timestamp >= `ts` and an offset >=
/// `min_offset` (the log start): (offset, timestamp). Compressed batches are not decoded
/// (the broker never decompresses): their first offset and max timestamp stand for them, so
/// a consumer may get a few earlier records.
fn first_record_at_or_after(
    batch: &[u8],
    header: &record_batch::BatchHeader,
    ts: i64,
    min_offset: i64,
) -> Option<(i64, i64)> {
    const COMPRESSION_MASK: i16 = 0x07;
    const LOG_APPEND_TIME: i16 = 0x08;
    if header.max_timestamp < ts {
        return None;
    }
    if header.attributes & (COMPRESSION_MASK | LOG_APPEND_TIME) != 0 {
        return Some((header.base_offset.max(min_offset), header.max_timestamp));
    }
    let mut pos = record_batch::BATCH_HEADER_LEN;
    for _ in 0..header.record_count {
        let len = read_varint(batch, &mut pos)?;
        let record_end = pos.checked_add(usize::try_from(len).ok()?)?;
        pos += 1; // record attributes
        let timestamp_delta = read_varint(batch, &mut pos)?;
        let offset_delta = read_varint(batch, &mut pos)?;
        let timestamp = header.base_timestamp + timestamp_delta;
        let offset = header.base_offset + offset_delta;
        if timestamp >= ts && offset >= min_offset {
            return Some((offset, timestamp));
        }
        pos = record_end;
    }
    // Record timestamps disagree with the header's max: fall back to the batch.
    Some((header.base_offset.max(min_offset), header.max_timestamp))
}

/// Zig-zag varint (Kafka's record fields).
fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_first_record_by_timestamp_inside_a_batch() {
        let batch = record_batch::build_batch(1_000, &["a", "b", "c"]);
        let header = record_batch::validate(&batch).unwrap();
        // build_batch gives every record the base timestamp.
        assert_eq!(
            first_record_at_or_after(&batch, &header, 1_000, 0),
            Some((0, 1_000))
        );
        assert_eq!(first_record_at_or_after(&batch, &header, 1_001, 0), None);
        assert_eq!(
            first_record_at_or_after(&batch, &header, 5, 0),
            Some((0, 1_000))
        );
        assert_eq!(
            first_record_at_or_after(&batch, &header, 5, 2),
            Some((2, 1_000))
        );
    }
}
