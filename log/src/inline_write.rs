//! Appends written with pwrite(2) on the shard's own thread instead of through io_uring.
//!
//! ext4 has no non-blocking buffered write, so io_uring hands every buffered write to an
//! io-wq kernel worker: a thread hop per write, and the worker copies into the page cache
//! bytes that sit in another CPU's cache. Written inline, the copy reads them where the shard
//! just received them (docs/benchmarks.md, finding 5: about 30% less broker CPU per message).
//!
//! An inline write blocks the shard while it runs. That is a few microseconds while the
//! kernel takes the write into the page cache, but it can be much longer when the kernel
//! throttles a writer for too many dirty pages. So a write that took longer than
//! [`SLOW_WRITE`] and slept in the kernel sends this thread's writes back through io_uring,
//! where such a wait blocks a kernel worker rather than every partition of the shard, for
//! [`BACKOFF`]. A write that was only slow because another thread had the CPU meanwhile
//! (preemption in the kernel's copy loop) does not: a worker would wait for the CPU too.

use std::cell::Cell;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Larger writes go through io_uring: their copy dwarfs the hand-off.
pub(crate) const INLINE_MAX_BYTES: usize = 1 << 20;
/// An inline write slower than this, that slept, means the kernel made the writer wait.
const SLOW_WRITE: Duration = Duration::from_millis(2);
/// How long writes go through io_uring after a slow one.
const BACKOFF: Duration = Duration::from_secs(1);

/// When to write inline: one per thread, i.e. per shard.
#[derive(Debug, Default)]
struct Policy {
    paused_until: Cell<Option<Instant>>,
}

impl Policy {
    fn allows(&self, len: usize, now: Instant) -> bool {
        len <= INLINE_MAX_BYTES && self.paused_until.get().is_none_or(|until| now >= until)
    }

    /// Notes how long an inline write that ended at `now` took, and (asked only when it
    /// was slow) whether the kernel put the thread to sleep during it.
    fn record(&self, took: Duration, slept: impl FnOnce() -> bool, now: Instant) {
        if took > SLOW_WRITE && slept() {
            tracing::debug!(
                ?took,
                "slow inline write: writing through io_uring for a while"
            );
            self.paused_until.set(Some(now + BACKOFF));
        }
    }
}

thread_local! {
    static POLICY: Policy = Policy::default();
}

/// Writes all of `buf` at `position` of `fd` now, or returns `None` when the write should go
/// through io_uring instead. `Some(Ok(n))` with `n < buf.len()`: the file takes no more
/// (disk full).
pub(crate) fn write_at(fd: RawFd, buf: &[u8], position: u64) -> Option<io::Result<usize>> {
    POLICY.with(|policy| {
        let start = Instant::now();
        if !policy.allows(buf.len(), start) {
            return None;
        }
        let sleeps = voluntary_switches();
        let result = pwrite_all(fd, buf, position);
        let end = Instant::now();
        let slept = || sleeps.is_none() || voluntary_switches() != sleeps;
        policy.record(end - start, slept, end);
        Some(result)
    })
}

/// How many times this thread has gone to sleep in the kernel (`ru_nvcsw`); a preemption is
/// not counted. `None` if it cannot be told.
fn voluntary_switches() -> Option<libc::c_long> {
    let mut usage = MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes a `rusage` through the pointer, which points to one.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    // SAFETY: on success getrusage filled it in (and it was zeroed before anyway).
    (rc == 0).then(|| unsafe { usage.assume_init() }.ru_nvcsw)
}

fn pwrite_all(fd: RawFd, buf: &[u8], position: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &buf[done..];
        let at = libc::off_t::try_from(position + done as u64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `rest` is a live, readable slice of `rest.len()` bytes for the duration of
        // the call; pwrite only reads it. `fd` is the caller's open file.
        let n = unsafe { libc::pwrite(fd, rest.as_ptr().cast(), rest.len(), at) };
        match n {
            0 => break,
            n if n > 0 => done += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn writes_every_byte_at_the_position() {
        let file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            write_at(file.as_raw_fd(), &data, 4096).unwrap().unwrap(),
            data.len()
        );
        let mut back = vec![0u8; data.len()];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut back, 4096).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn a_bad_descriptor_is_an_error_not_a_panic() {
        assert!(write_at(-1, b"x", 0).unwrap().is_err());
    }

    #[test]
    fn large_writes_and_writes_after_a_slow_one_that_slept_go_through_io_uring() {
        let policy = Policy::default();
        let t0 = Instant::now();
        assert!(policy.allows(INLINE_MAX_BYTES, t0));
        assert!(!policy.allows(INLINE_MAX_BYTES + 1, t0));
        policy.record(SLOW_WRITE / 2, || true, t0);
        assert!(policy.allows(100, t0), "a fast write changes nothing");
        policy.record(SLOW_WRITE * 2, || false, t0);
        assert!(
            policy.allows(100, t0),
            "a slow write that never slept was preempted"
        );
        policy.record(SLOW_WRITE * 2, || true, t0);
        assert!(!policy.allows(100, t0 + BACKOFF / 2));
        assert!(policy.allows(100, t0 + BACKOFF));
    }

    #[test]
    fn sleeping_counts_as_a_voluntary_switch() {
        let before = voluntary_switches().unwrap();
        std::thread::sleep(Duration::from_millis(1));
        assert!(voluntary_switches().unwrap() > before);
    }
}
