//! Pipes for splice, kept in a small per-shard pool.
//!
//! splice(2) moves pages between two fds only when one of them is a pipe, so a file -> socket
//! transfer goes file -> pipe -> socket: the pipe holds page references, never copies. Creating
//! and resizing a pipe costs three syscalls, so each shard keeps a few idle ones around.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bytes a pipe is asked to hold (F_SETPIPE_SZ). 1 MiB is the default `fs.pipe-max-size`, so an
/// unprivileged broker gets it; a larger pipe means fewer splice round trips per transfer. When
/// the kernel refuses, the pipe keeps its default size (64 KiB) and transfers still work.
pub(super) const PIPE_CAPACITY: usize = 1 << 20;

/// Idle pipes a shard keeps. Each holds two fds and, once used, up to PIPE_CAPACITY of page
/// references only while a transfer runs; an idle pipe is empty.
const PIPE_POOL_SIZE: usize = 8;

thread_local! {
    // Per thread = per shard: a glommio executor runs on one thread. Pipes are plain fds, not
    // tied to an executor, so they can outlive one.
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// Both ends of one pipe, closed on drop.
#[derive(Debug)]
pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid, writable array of two c_ints, as pipe2 requires.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ / F_GETPIPE_SZ take an int argument and touch no memory of ours.
        let capacity = unsafe {
            let set = libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_CAPACITY as libc::c_int,
            );
            if set > 0 {
                set
            } else {
                libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
            }
        };
        if capacity <= 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Pipe {
            read,
            write,
            capacity: capacity as usize,
        })
    }

    pub(super) fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    pub(super) fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// Bytes to splice into the empty pipe at once. A pipe holds `capacity / page size` page
    /// references, and a range that does not start on a page boundary spans one page more
    /// than its length suggests; asking one page less than the capacity avoids a short splice
    /// on every round.
    pub(super) fn fill_limit(&self) -> usize {
        // SAFETY: sysconf takes no pointers.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
        if self.capacity > page {
            self.capacity - page
        } else {
            self.capacity
        }
    }
}

/// An idle pipe from this shard's pool, or a new one.
pub(super) fn take() -> io::Result<Pipe> {
    match POOL.with(|pool| pool.borrow_mut().pop()) {
        Some(pipe) => Ok(pipe),
        None => Pipe::new(),
    }
}

/// Returns a pipe to the pool. The caller guarantees it is empty and no io_uring op still uses
/// it; a pipe in any other state must be dropped instead, so no stale bytes reach the next
/// transfer.
pub(super) fn give_back(pipe: Pipe) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < PIPE_POOL_SIZE {
            pool.push(pipe);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_returned_pipes() {
        let pipe = take().unwrap();
        assert!(pipe.fill_limit() > 0);
        let fd = pipe.read_fd();
        give_back(pipe);
        assert_eq!(take().unwrap().read_fd(), fd);
    }
}
