//! The per-shard io_uring that runs splice ops.
//!
//! glommio 0.9 has no splice API and its rings are private, so each shard owns one more ring,
//! made lazily on first use. The executor must never block on it, so completions reach glommio
//! through an eventfd: the ring signals the eventfd whenever it posts a completion, and a
//! "reaper" task reads that eventfd through glommio's own ring (a read on an eventfd completes
//! when its counter is non-zero), then hands each completion to the task waiting for it. The
//! reaper only runs while ops are in flight, so an idle shard has nothing pending on it.
//!
//! IORING_OP_SPLICE always runs in io_uring's worker threads (io-wq), never inline, so a splice
//! that has to wait (a page-cache miss) parks a kernel worker, not the shard.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use glommio::io::BufferedFile;
use glommio::sync::{Semaphore, StaticPermit};
use io_uring::{opcode, squeue, IoUring};

use super::pipe::Pipe;

/// Submission queue entries of a shard's splice ring. The completion queue gets twice as many
/// (the kernel default), and ops in flight are capped at RING_ENTRIES, so it never overflows.
pub(super) const RING_ENTRIES: u32 = 256;

/// io_uring ops one transfer may have in flight at once: file -> pipe linked to pipe -> socket.
pub(super) const OPS_PER_TRANSFER: u64 = 2;

/// Back-off when reading the eventfd through glommio fails (it should not): the reaper then
/// polls the completion queue on this period instead, so no waiter hangs.
const REAPER_FALLBACK_PERIOD: Duration = Duration::from_micros(200);

/// user_data of the cancel requests this module submits; op ids count up from 0 and never
/// reach it.
const CANCEL_USER_DATA: u64 = u64::MAX;

thread_local! {
    // One ring per executor. A thread may run several executors one after another (tests do);
    // the eventfd reads belong to the executor that made the ring, hence the executor id.
    static RING: RefCell<Option<Rc<Ring>>> = const { RefCell::new(None) };
}

/// This shard's splice ring, made on first use.
pub(super) fn current() -> io::Result<Rc<Ring>> {
    let executor_id = glommio::executor().id();
    RING.with(|slot| {
        let mut slot = slot.borrow_mut();
        if let Some(ring) = slot.as_ref().filter(|r| r.executor_id == executor_id) {
            return Ok(ring.clone());
        }
        let ring = Rc::new(Ring::new(executor_id)?);
        *slot = Some(ring.clone());
        Ok(ring)
    })
}

/// What one submitted op has produced so far.
struct Slot {
    result: Option<i32>,
    waker: Option<Waker>,
    /// Holds the pipe open until the kernel is done with it, even if the waiter has gone.
    _keep_alive: Rc<Pipe>,
    /// The waiter is gone; drop the slot as soon as the completion arrives.
    abandoned: bool,
}

pub(super) struct Ring {
    executor_id: usize,
    uring: RefCell<IoUring>,
    /// The eventfd registered with `uring`, read through glommio. ManuallyDrop: this module
    /// closes the fd itself, because glommio can only close it while its executor still lives.
    notifier: ManuallyDrop<BufferedFile>,
    slots: RefCell<HashMap<u64, Slot>>,
    next_id: Cell<u64>,
    reaper_running: Cell<bool>,
    permits: Rc<Semaphore>,
}

impl Ring {
    fn new(executor_id: usize) -> io::Result<Ring> {
        let uring = IoUring::new(RING_ENTRIES)?;
        // SAFETY: eventfd takes no pointers; the result is checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: eventfd just returned this fd and nobody else owns it.
        let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
        uring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        // SAFETY: glommio gets an open fd that stays open as long as the BufferedFile: Ring's
        // Drop closes it after the last use, and ManuallyDrop keeps glommio from closing it too.
        let notifier = unsafe { BufferedFile::from_raw_fd(eventfd.into_raw_fd()) };
        Ok(Ring {
            executor_id,
            uring: RefCell::new(uring),
            notifier: ManuallyDrop::new(notifier),
            slots: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            reaper_running: Cell::new(false),
            permits: Rc::new(Semaphore::new(u64::from(RING_ENTRIES) / OPS_PER_TRANSFER)),
        })
    }

    /// Waits until one more transfer may use the ring, which keeps the ops in flight within
    /// the queue sizes.
    pub(super) async fn admit(&self) -> io::Result<StaticPermit> {
        self.permits
            .acquire_static_permit(OPS_PER_TRANSFER)
            .await
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Submits `entries` (in order, so IO_LINK chains work) and returns one future per entry.
    ///
    /// # Safety
    /// Every buffer or fd the entries name must stay valid until their ops complete. The ops
    /// here only name fds; `pipe` is kept open by the ring until its ops complete, and the
    /// caller keeps the other fds open while the returned ops live (dropping an op cancels it
    /// and waits for the kernel to let go).
    pub(super) unsafe fn submit<const N: usize>(
        self: &Rc<Self>,
        entries: [squeue::Entry; N],
        pipe: &Rc<Pipe>,
    ) -> io::Result<[Op; N]> {
        let ops = entries.map(|entry| {
            let id = self.next_id.get();
            self.next_id.set(id + 1);
            (id, entry.user_data(id))
        });
        let submitted;
        {
            let mut uring = self.uring.borrow_mut();
            let mut queue = uring.submission();
            if queue.capacity() - queue.len() < N {
                // Unreachable while admission permits bound the ops in flight.
                return Err(io::Error::other("splice ring submission queue is full"));
            }
            for (_, entry) in &ops {
                // SAFETY: the caller upholds this function's contract for the entry; there is
                // room (checked above), so the push cannot fail.
                let _ = unsafe { queue.push(entry) };
            }
            drop(queue);
            let mut slots = self.slots.borrow_mut();
            for (id, _) in &ops {
                slots.insert(
                    *id,
                    Slot {
                        result: None,
                        waker: None,
                        _keep_alive: pipe.clone(),
                        abandoned: false,
                    },
                );
            }
            submitted = uring.submit();
        }
        let ops = ops.map(|(id, _)| Op::new(self.clone(), id));
        // On failure the entries may still sit in the queue and go in with a later submit;
        // dropping `ops` cancels them and waits, so none outlives this call unseen.
        submitted.map(|_| ops)
    }

    /// Hands every posted completion to its slot and wakes its waiter.
    fn dispatch(&self) {
        let mut uring = self.uring.borrow_mut();
        let mut slots = self.slots.borrow_mut();
        for cqe in uring.completion() {
            let id = cqe.user_data();
            let Some(slot) = slots.get_mut(&id) else {
                continue; // a cancel request's own completion
            };
            if slot.abandoned {
                slots.remove(&id);
                continue;
            }
            slot.result = Some(cqe.result());
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        }
    }

    fn in_flight(&self) -> bool {
        self.slots.borrow().values().any(|s| s.result.is_none())
    }

    fn ensure_reaper(self: &Rc<Self>) {
        if self.reaper_running.replace(true) {
            return;
        }
        let ring = self.clone();
        glommio::spawn_local(async move { ring.reap().await }).detach();
    }

    async fn reap(&self) {
        loop {
            self.dispatch();
            if !self.in_flight() {
                break;
            }
            // Every op still in flight will post a completion and so signal the eventfd, and
            // a signal posted since the last dispatch is still counted: no wakeup is lost.
            if self.notifier.read_at(0, 8).await.is_err() {
                glommio::timer::sleep(REAPER_FALLBACK_PERIOD).await;
            }
        }
        self.reaper_running.set(false);
    }

    /// Cancels op `id` and blocks until the kernel has finished with it, so that the fds it
    /// names may be closed as soon as this returns. A cancelled splice in a worker thread is
    /// interrupted, so this is short; it only runs when a transfer is dropped midway.
    fn cancel_and_wait(&self, id: u64) {
        let cancel = opcode::AsyncCancel::new(id)
            .build()
            .user_data(CANCEL_USER_DATA);
        let submitted = {
            let mut uring = self.uring.borrow_mut();
            // SAFETY: a cancel request names no buffer or fd.
            let pushed = unsafe { uring.submission().push(&cancel) }.is_ok();
            pushed && uring.submit().is_ok()
        };
        loop {
            self.dispatch();
            let done = self
                .slots
                .borrow()
                .get(&id)
                .is_none_or(|slot| slot.result.is_some());
            if done {
                self.slots.borrow_mut().remove(&id);
                return;
            }
            let waited = submitted && {
                let uring = self.uring.borrow();
                match uring.submitter().submit_and_wait(1) {
                    Ok(_) => true,
                    Err(e) => e.kind() == io::ErrorKind::Interrupted,
                }
            };
            if !waited {
                // Cannot wait here: leave the slot to keep the pipe open until the completion
                // arrives and the reaper drops it.
                if let Some(slot) = self.slots.borrow_mut().get_mut(&id) {
                    slot.abandoned = true;
                }
                return;
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Dropping the IoUring (after this) cancels whatever is left in it. The eventfd is
        // ours to close: see the `notifier` field.
        // SAFETY: the fd is open and the BufferedFile wrapping it is never used or dropped
        // again (ManuallyDrop), so this closes it exactly once.
        drop(unsafe { OwnedFd::from_raw_fd(self.notifier.as_raw_fd()) });
    }
}

/// One submitted op: resolves to its completion result (bytes moved, or -errno). Dropping it
/// before it resolves cancels the op and waits for the kernel to let go of it.
pub(super) struct Op {
    ring: Rc<Ring>,
    id: u64,
    finished: bool,
}

impl Op {
    fn new(ring: Rc<Ring>, id: u64) -> Op {
        Op {
            ring,
            id,
            finished: false,
        }
    }
}

impl Future for Op {
    type Output = i32;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        self.ring.dispatch();
        let result = {
            let mut slots = self.ring.slots.borrow_mut();
            let slot = slots
                .get_mut(&self.id)
                .expect("an op's slot lives until the op resolves or is dropped");
            match slot.result {
                Some(result) => {
                    slots.remove(&self.id);
                    Some(result)
                }
                None => {
                    slot.waker = Some(cx.waker().clone());
                    None
                }
            }
        };
        match result {
            Some(result) => {
                self.finished = true;
                Poll::Ready(result)
            }
            None => {
                self.ring.ensure_reaper();
                Poll::Pending
            }
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if !self.finished {
            self.ring.cancel_and_wait(self.id);
        }
    }
}
