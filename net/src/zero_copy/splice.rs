//! File -> socket transfer of a byte range without a user-space copy: io_uring SPLICE ops
//! through a pipe, on the shard's own ring (see `ring`).

use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;

use io_uring::{opcode, squeue, types};

use super::pipe::{self, Pipe};
use super::ring;

/// Sends exactly `len` bytes of `file_fd`, starting at byte `position`, to `socket_fd`.
///
/// The bytes go file -> pipe -> socket as page references (splice), never through user space,
/// and the shard's executor never blocks: the splices run in io_uring worker threads and their
/// completions are awaited through glommio.
///
/// Switches the socket to `O_NONBLOCK` if it is not already. glommio's `TcpStream` leaves its
/// fd blocking (it passes `MSG_DONTWAIT` to every send and recv, and polls through its ring),
/// so the flag changes nothing for glommio; for splice it means a consumer that stops reading
/// costs one pending POLLOUT poll on the ring instead of an io_uring worker thread blocked in
/// the socket for as long as the consumer stays stuck.
///
/// The caller must
/// - have written out everything it buffered for this socket before calling (a `BufWriter` or
///   any user-space buffer in front of the `TcpStream` must be flushed), since these bytes go
///   straight to the kernel socket;
/// - keep both fds open until the returned future completes or is dropped. Dropping it midway
///   cancels the in-flight splices and waits (briefly, synchronously) for the kernel to let go
///   of the fds.
///
/// On any error, or if the future is dropped midway, an unknown prefix of the range has been
/// sent: the response stream is out of step with its framing and the connection must be closed.
///
/// Errors: the kernel's error for a peer that closed (`EPIPE`, `ECONNRESET`);
/// `UnexpectedEof` when the file ends before `position + len`; `InvalidInput` when the range
/// does not fit in an `i64` offset.
pub async fn splice_to_socket(
    socket_fd: RawFd,
    file_fd: RawFd,
    position: u64,
    len: usize,
) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let end = position
        .checked_add(len as u64)
        .filter(|end| i64::try_from(*end).is_ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("file range {position}+{len} is past the largest file offset"),
            )
        })?;
    set_nonblocking(socket_fd)?;
    let ring = ring::current()?;
    let _permit = ring.admit().await?;
    let pipe = Rc::new(pipe::take()?);

    let mut read = 0usize; // moved file -> pipe
    let mut sent = 0usize; // moved pipe -> socket
    while sent < len {
        let in_pipe = read - sent;
        // Fill only an empty pipe: a fill into a pipe whose slots are taken would wait for
        // the drain linked behind it, forever.
        let fill = if in_pipe == 0 {
            (len - read).min(pipe.fill_limit())
        } else {
            0
        };
        let drain = opcode::Splice::new(
            types::Fd(pipe.read_fd()),
            -1,
            types::Fd(socket_fd),
            -1,
            (in_pipe + fill) as u32,
        )
        .build();
        let (filled, drained) = if fill > 0 {
            // Linked: the drain starts only once the fill has moved all `fill` bytes. A short
            // fill breaks the link and the drain completes with ECANCELED; the next round then
            // drains what did arrive.
            let fill_op = opcode::Splice::new(
                types::Fd(file_fd),
                (position + read as u64) as i64,
                types::Fd(pipe.write_fd()),
                -1,
                fill as u32,
            )
            .build()
            .flags(squeue::Flags::IO_LINK);
            // SAFETY: the ops name only fds: the pipe is kept open by the ring, and the
            // caller keeps the file and socket open while this future lives (documented
            // above); dropping the ops cancels them and waits for the kernel.
            let [fill_op, drain_op] = unsafe { ring.submit([fill_op, drain], &pipe) }?;
            let filled = fill_op.await;
            (Some(filled), drain_op.await)
        } else {
            // SAFETY: as above.
            let [drain_op] = unsafe { ring.submit([drain], &pipe) }?;
            (None, drain_op.await)
        };
        if let Some(filled) = filled {
            match filled {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "file ends at {} before the end {end} of the range to send",
                            position + read as u64
                        ),
                    ))
                }
                n if n > 0 => read += n as usize,
                e if -e == libc::EINTR || -e == libc::EAGAIN => {}
                e => return Err(io::Error::from_raw_os_error(-e)),
            }
        }
        match drained {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "socket accepted no bytes",
                ))
            }
            n if n > 0 => sent += n as usize,
            e if -e == libc::ECANCELED || -e == libc::EINTR => {}
            e if -e == libc::EAGAIN => wait_writable(&ring, socket_fd, &pipe).await?,
            e => return Err(io::Error::from_raw_os_error(-e)),
        }
    }
    drop(ring);
    // Every op has completed and the pipe is empty, so this is its only handle.
    if let Ok(pipe) = Rc::try_unwrap(pipe) {
        pipe::give_back(pipe);
    }
    Ok(())
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL / F_SETFL read and set the flags of an fd and touch no memory of ours.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        if flags & libc::O_NONBLOCK == 0
            && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits until a non-blocking socket can take more bytes (or has failed: the next splice then
/// returns the error).
async fn wait_writable(ring: &Rc<ring::Ring>, socket_fd: RawFd, pipe: &Rc<Pipe>) -> io::Result<()> {
    let poll = opcode::PollAdd::new(types::Fd(socket_fd), libc::POLLOUT as u32).build();
    // SAFETY: the op names only the socket fd, which the caller keeps open (see
    // splice_to_socket); dropping the op cancels it and waits for the kernel.
    let [poll_op] = unsafe { ring.submit([poll], pipe) }?;
    match poll_op.await {
        e if e < 0 && -e != libc::EINTR => Err(io::Error::from_raw_os_error(-e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::net::{TcpListener, TcpStream};
    use glommio::{LocalExecutorBuilder, Placement};

    use super::*;

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(512 << 10)
            .make()
            .expect("executor")
            .run(future)
    }

    /// A file of `len` bytes in the page cache whose every byte differs from its neighbours'
    /// pattern, so a shifted or repeated range shows up in a comparison.
    fn pattern_file(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4099) as u8).collect();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&data).unwrap();
        file.flush().unwrap();
        (file, data)
    }

    /// Accepts one connection from a std client thread that runs `client` on its end.
    async fn connect_pair<T: Send + 'static>(
        client: impl FnOnce(std::net::TcpStream) -> T + Send + 'static,
    ) -> (TcpStream, thread::JoinHandle<T>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || client(std::net::TcpStream::connect(addr).unwrap()));
        (listener.accept().await.unwrap(), handle)
    }

    fn read_all(mut socket: std::net::TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        socket.read_to_end(&mut got).unwrap();
        got
    }

    fn send_range(file_len: usize, position: usize, len: usize) {
        let (file, data) = pattern_file(file_len);
        let got = run(async move {
            let (stream, reader) = connect_pair(read_all).await;
            splice_to_socket(
                stream.as_raw_fd(),
                file.as_file().as_raw_fd(),
                position as u64,
                len,
            )
            .await
            .unwrap();
            // A plain drop leaves the close to the executor; the client needs its EOF now.
            stream.shutdown(std::net::Shutdown::Write).await.unwrap();
            reader.join().unwrap()
        });
        assert_eq!(got.len(), len);
        assert!(got == data[position..position + len], "bytes differ");
    }

    #[test]
    fn sends_a_range_from_the_middle() {
        send_range(100_000, 1_234, 70_001);
    }

    #[test]
    fn sends_a_range_ending_at_eof() {
        send_range(10_000, 9_000, 1_000);
    }

    #[test]
    fn zero_length_sends_nothing() {
        send_range(10, 10, 0);
    }

    #[test]
    fn sends_64_mib_from_an_unaligned_offset() {
        send_range(64 << 20, 4_097, (64 << 20) - 4_097);
    }

    #[test]
    fn glommio_still_reads_and_writes_a_socket_made_nonblocking() {
        let (file, data) = pattern_file(4 << 20);
        let got = run(async move {
            let (mut stream, reader) = connect_pair(|mut socket| {
                let mut got = vec![0u8; 4 << 20];
                socket.read_exact(&mut got).unwrap();
                // Give glommio's read something to wait for.
                thread::sleep(Duration::from_millis(10));
                socket.write_all(b"ping").unwrap();
                let mut pong = Vec::new();
                socket.read_to_end(&mut pong).unwrap();
                assert_eq!(pong, b"pong");
                got
            })
            .await;
            // SAFETY: F_GETFL reads the flags of an open fd and touches no memory of ours.
            let flags = || unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_GETFL) };
            assert_eq!(
                flags() & libc::O_NONBLOCK,
                0,
                "glommio's sockets start blocking"
            );
            splice_to_socket(stream.as_raw_fd(), file.as_file().as_raw_fd(), 0, 4 << 20)
                .await
                .unwrap();
            assert_ne!(flags() & libc::O_NONBLOCK, 0);
            let mut ping = [0u8; 4];
            stream.read_exact(&mut ping).await.unwrap();
            assert_eq!(&ping, b"ping");
            stream.write_all(b"pong").await.unwrap();
            // A plain drop leaves the close to the executor; the client needs its EOF now.
            stream.shutdown(std::net::Shutdown::Write).await.unwrap();
            reader.join().unwrap()
        });
        assert!(got == data, "bytes differ");
    }

    #[test]
    fn range_past_eof_is_an_error() {
        let (file, _) = pattern_file(10_000);
        let err = run(async move {
            let (stream, reader) = connect_pair(read_all).await;
            let result =
                splice_to_socket(stream.as_raw_fd(), file.as_file().as_raw_fd(), 9_000, 2_000)
                    .await;
            // A plain drop leaves the close to the executor; the client needs its EOF now.
            stream.shutdown(std::net::Shutdown::Write).await.unwrap();
            // The 1000 bytes that exist may have been sent before the end was found.
            assert!(reader.join().unwrap().len() <= 1_000);
            result.unwrap_err()
        });
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn peer_closing_midway_is_an_error() {
        let (file, _) = pattern_file(64 << 20);
        let err = run(async move {
            let (stream, reader) = connect_pair(|mut socket| {
                let mut some = [0u8; 4096];
                socket.read_exact(&mut some).unwrap();
                // Closing with unread bytes queued makes the kernel reset the connection.
            })
            .await;
            let result =
                splice_to_socket(stream.as_raw_fd(), file.as_file().as_raw_fd(), 0, 64 << 20).await;
            reader.join().unwrap();
            result.unwrap_err()
        });
        assert!(
            matches!(
                err.raw_os_error(),
                Some(libc::EPIPE) | Some(libc::ECONNRESET)
            ),
            "{err}"
        );
    }

    #[test]
    fn executor_keeps_running_tasks_during_a_transfer() {
        // The client reads nothing until a timer task on the executor has run while the
        // transfer was under way. 64 MiB cannot fit in the socket buffers, so the transfer
        // can only finish if that task ran, i.e. if the transfer never blocked the executor.
        // The client's wait is bounded so a blocked executor fails the test instead of
        // hanging it.
        let (file, data) = pattern_file(64 << 20);
        let ticked = Arc::new(AtomicBool::new(false));
        let (got, ticked_during) = run({
            let ticked = ticked.clone();
            async move {
                let transferring = Rc::new(Cell::new(false));
                let ticker = glommio::spawn_local({
                    let transferring = transferring.clone();
                    let ticked = ticked.clone();
                    async move {
                        while !ticked.load(Ordering::SeqCst) {
                            glommio::timer::sleep(Duration::from_millis(1)).await;
                            if transferring.get() {
                                ticked.store(true, Ordering::SeqCst);
                            }
                        }
                    }
                })
                .detach();
                let client_ticked = ticked.clone();
                let (stream, reader) = connect_pair(move |socket| {
                    for _ in 0..30_000 {
                        if client_ticked.load(Ordering::SeqCst) {
                            break;
                        }
                        thread::sleep(Duration::from_millis(1));
                    }
                    read_all(socket)
                })
                .await;
                transferring.set(true);
                splice_to_socket(stream.as_raw_fd(), file.as_file().as_raw_fd(), 0, 64 << 20)
                    .await
                    .unwrap();
                transferring.set(false);
                // A plain drop leaves the close to the executor; the client needs its EOF now.
                stream.shutdown(std::net::Shutdown::Write).await.unwrap();
                let got = reader.join().unwrap();
                ticker.cancel();
                (got, ticked.load(Ordering::SeqCst))
            }
        });
        assert!(
            ticked_during,
            "the timer task never ran during the transfer"
        );
        assert!(got == data, "bytes differ");
    }

    #[test]
    fn concurrent_transfers_on_one_shard() {
        let (file, data) = pattern_file(24 << 20);
        let file = Rc::new(file);
        let results = run(async move {
            let mut tasks = Vec::new();
            for i in 0..3usize {
                let file = file.clone();
                tasks.push(glommio::spawn_local(async move {
                    let (stream, reader) = connect_pair(read_all).await;
                    let position = i * (8 << 20);
                    splice_to_socket(
                        stream.as_raw_fd(),
                        file.as_file().as_raw_fd(),
                        position as u64,
                        8 << 20,
                    )
                    .await
                    .unwrap();
                    // A plain drop leaves the close to the executor; the client needs its EOF now.
                    stream.shutdown(std::net::Shutdown::Write).await.unwrap();
                    (position, reader.join().unwrap())
                }));
            }
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await);
            }
            results
        });
        for (position, got) in results {
            assert!(
                got == data[position..position + (8 << 20)],
                "bytes differ at {position}"
            );
        }
    }

    #[test]
    fn a_dropped_transfer_leaves_no_stale_bytes_behind() {
        let (file, data) = pattern_file(32 << 20);
        let got = run(async move {
            let fd = file.as_file().as_raw_fd();
            // A client that never reads: the transfer stalls with bytes in the pipe.
            let (release, released) = std::sync::mpsc::channel::<()>();
            let (stalled, stalled_client) = connect_pair(move |socket| {
                let _ = released.recv();
                drop(socket);
            })
            .await;
            let transfer = glommio::spawn_local(async move {
                splice_to_socket(stalled.as_raw_fd(), fd, 0, 32 << 20).await
            });
            glommio::timer::sleep(Duration::from_millis(20)).await;
            assert!(
                transfer.cancel().await.is_none(),
                "the transfer cannot have finished"
            );
            release.send(()).unwrap();
            stalled_client.join().unwrap();
            // The next transfer on this shard must send exactly its own bytes.
            let (stream, reader) = connect_pair(read_all).await;
            splice_to_socket(stream.as_raw_fd(), fd, 1 << 20, 1 << 20)
                .await
                .unwrap();
            // A plain drop leaves the close to the executor; the client needs its EOF now.
            stream.shutdown(std::net::Shutdown::Write).await.unwrap();
            reader.join().unwrap()
        });
        assert!(got == data[1 << 20..2 << 20], "bytes differ");
    }
}
