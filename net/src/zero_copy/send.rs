//! Writing an encoded Fetch response to a client: encoded bytes with ordinary writes, record
//! ranges of local segment files with `splice_to_socket`, except small ones.
//!
//! A splice costs two io_uring ops and a pipe round trip, tens of microseconds whatever the
//! size, while copying a small range that sits in the page cache costs one `pread` of a few
//! microseconds. So ranges under [`SPLICE_MIN_BYTES`] that are cached are copied into one
//! buffer together with the encoded bytes around them, and a response made only of such
//! pieces leaves in a single write (a consumer that keeps up gets small fetches: this is its
//! whole path). Large ranges, and small ones not in the page cache, are spliced.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use futures_lite::{AsyncWrite, AsyncWriteExt};
use spate_shard::Records;

use super::fetch_response::{FetchSegment, RecordsLen};
use super::splice::splice_to_socket;

/// Record ranges shorter than this are copied through user space (when in the page cache)
/// instead of spliced; so are encoded or in-memory pieces shorter than this, into the same
/// buffer. See docs/benchmarks.md ("Fetch: copy small ranges, splice large ones") for the
/// measurements behind the value.
pub const SPLICE_MIN_BYTES: usize = 64 * 1024;

impl RecordsLen for Records {
    fn records_len(&self) -> usize {
        self.len()
    }
}

/// Writes `segments` (from `encode_fetch_response`) in order to `stream`, whose socket is
/// `socket_fd`: file ranges (`Records::File`, `Records::Shared`) go file -> socket by splice
/// (or are copied when small and cached, see the module doc), everything else through
/// `stream`. `stream` is flushed before each splice, so a buffering writer is fine.
///
/// Pass the socket's fd separately so that wrappers work: for a
/// `futures_lite::io::BufReader<glommio::net::TcpStream>`, `stream.get_ref().as_raw_fd()`.
/// On error the client has received part of a frame: close the connection.
pub async fn write_fetch_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    socket_fd: RawFd,
    segments: Vec<FetchSegment<Records>>,
) -> io::Result<()> {
    // Small pieces gathered for one write.
    let mut gathered = Vec::new();
    for segment in segments {
        match segment {
            FetchSegment::Bytes(bytes) | FetchSegment::Records(Records::Bytes(bytes)) => {
                if bytes.len() < SPLICE_MIN_BYTES {
                    gathered.extend_from_slice(&bytes);
                } else {
                    write_gathered(stream, &mut gathered).await?;
                    stream.write_all(&bytes).await?;
                }
            }
            FetchSegment::Records(Records::File(slice)) => {
                let range = (slice.file.raw_fd(), slice.position, slice.len);
                send_range(stream, socket_fd, &mut gathered, range).await?
            }
            FetchSegment::Records(Records::Shared(slice)) => {
                let range = (slice.fd.as_raw_fd(), slice.position, slice.len);
                send_range(stream, socket_fd, &mut gathered, range).await?
            }
        }
    }
    write_gathered(stream, &mut gathered).await?;
    stream.flush().await
}

/// Sends `len` bytes of file `fd` at `position`: copied into `gathered` when small and cached,
/// else spliced after what was gathered so far.
async fn send_range<S: AsyncWrite + Unpin>(
    stream: &mut S,
    socket_fd: RawFd,
    gathered: &mut Vec<u8>,
    (fd, position, len): (RawFd, u64, usize),
) -> io::Result<()> {
    let copied = if len < SPLICE_MIN_BYTES {
        copy_cached(fd, position, len, gathered)?
    } else {
        0
    };
    if copied < len {
        write_gathered(stream, gathered).await?;
        stream.flush().await?;
        let at = position + copied as u64;
        splice_to_socket(socket_fd, fd, at, len - copied).await?;
    }
    Ok(())
}

async fn write_gathered<S: AsyncWrite + Unpin>(
    stream: &mut S,
    gathered: &mut Vec<u8>,
) -> io::Result<()> {
    if !gathered.is_empty() {
        stream.write_all(gathered).await?;
        gathered.clear();
    }
    Ok(())
}

/// Appends to `out` what of `len` bytes of `fd` at `position` the page cache holds, without
/// waiting for the disk (`RWF_NOWAIT`), and returns how many bytes that was: `len`, or fewer
/// when some of the range is not cached (the caller sends the rest another way).
fn copy_cached(fd: RawFd, position: u64, len: usize, out: &mut Vec<u8>) -> io::Result<usize> {
    let start = out.len();
    out.reserve(len);
    let mut copied = 0;
    while copied < len {
        let iov = libc::iovec {
            // SAFETY: `reserve` made room for `len` bytes past `start`; the kernel writes at
            // most `len - copied` bytes there, and only those it reports are kept below.
            iov_base: unsafe { out.as_mut_ptr().add(start + copied) }.cast(),
            iov_len: len - copied,
        };
        let offset = libc::off_t::try_from(position + copied as u64)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        // SAFETY: `iov` points into `out`'s spare capacity (above) and the call touches no
        // other memory; `fd` is kept open by the caller's `Rc<SegmentFile>`.
        let got = unsafe { libc::preadv2(fd, &iov, 1, offset, libc::RWF_NOWAIT) };
        match got {
            0 => break, // end of file: the splice of the rest reports it
            n if n > 0 => copied += n as usize,
            _ => {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EOPNOTSUPP) => break,
                    Some(libc::EINTR) => continue,
                    _ => return Err(error),
                }
            }
        }
    }
    // SAFETY: the kernel initialised `copied` bytes past `start` (counted above).
    unsafe { out.set_len(start + copied) };
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::rc::Rc;

    use bytes::{Bytes, BytesMut};
    use glommio::net::TcpListener;
    use glommio::{LocalExecutorBuilder, Placement};
    use kafka_protocol::messages::{FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, HeaderVersion, StrBytes};
    use spate_core::record_batch::build_batch;
    use spate_log::{LogConfig, PartitionLog, ReadSlice, SystemClock};

    use super::*;
    use crate::zero_copy::{
        encode_fetch_response, AbortedTransactions, FetchPartitionParts, FetchResponseParts,
        FetchTopicParts,
    };

    fn partition(index: i32, records: Records) -> FetchPartitionParts<Records> {
        FetchPartitionParts {
            partition_index: index,
            error_code: 0,
            high_watermark: 3,
            last_stable_offset: 3,
            log_start_offset: 0,
            aborted_transactions: AbortedTransactions::Null,
            preferred_read_replica: -1,
            records,
        }
    }

    /// A range at or above `SPLICE_MIN_BYTES` (spliced) and one below it (copied) arrive
    /// intact and in order within one response, read through the log's own file or through
    /// the descriptor shared with other shards.
    #[test]
    fn large_ranges_are_spliced_and_small_ones_copied_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (decoded, big, small) = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(512 << 10)
            .make()
            .unwrap()
            .run(async move {
                let log =
                    PartitionLog::open(dir.path(), LogConfig::default(), Rc::new(SystemClock))
                        .await
                        .unwrap();
                let large_value = "x".repeat(SPLICE_MIN_BYTES + 1_000);
                log.append(BytesMut::from(&build_batch(1, &[&large_value])[..]), 0)
                    .await
                    .unwrap();
                let after_big = log.log_end_offset();
                log.append(BytesMut::from(&build_batch(2, &["small"])[..]), 0)
                    .await
                    .unwrap();
                let end = log.log_end_offset();
                let whole = log.read(0, 1 << 20, end, true).await.unwrap();
                let small = log.read(after_big, 1 << 20, end, true).await.unwrap();
                let big = ReadSlice {
                    len: whole.len - small.len,
                    ..whole.clone()
                };
                assert!(big.len >= SPLICE_MIN_BYTES && small.len < SPLICE_MIN_BYTES);
                let big_bytes = big.file.read_at(big.position, big.len).await.unwrap();
                let small_bytes = small.file.read_at(small.position, small.len).await.unwrap();

                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let client = std::thread::spawn(move || {
                    let mut socket = std::net::TcpStream::connect(addr).unwrap();
                    let mut size = [0u8; 4];
                    socket.read_exact(&mut size).unwrap();
                    let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
                    socket.read_exact(&mut frame).unwrap();
                    let mut frame = Bytes::from(frame);
                    ResponseHeader::decode(&mut frame, FetchResponse::header_version(12)).unwrap();
                    FetchResponse::decode(&mut frame, 12).unwrap()
                });
                let mut stream = listener.accept().await.unwrap();
                let fd = stream.as_raw_fd();
                let parts = FetchResponseParts {
                    throttle_time_ms: 0,
                    error_code: 0,
                    session_id: 0,
                    topics: vec![FetchTopicParts {
                        name: StrBytes::from_static_str("logs"),
                        topic_id: [9; 16],
                        partitions: vec![
                            partition(0, Records::Shared(small.share().unwrap())),
                            partition(1, Records::Shared(big.share().unwrap())),
                            partition(2, Records::File(small)),
                            partition(3, Records::File(big)),
                            partition(4, Records::Bytes(Bytes::from_static(b"in memory"))),
                        ],
                    }],
                };
                let segments = encode_fetch_response(12, 7, parts).unwrap();
                write_fetch_response(&mut stream, fd, segments)
                    .await
                    .unwrap();
                (client.join().unwrap(), big_bytes, small_bytes)
            });
        let partitions = &decoded.responses[0].partitions;
        for shared_or_not in [0, 2] {
            let (small_at, big_at) = (shared_or_not, shared_or_not + 1);
            assert_eq!(partitions[small_at].records.as_deref(), Some(&small[..]));
            assert_eq!(partitions[big_at].records.as_deref(), Some(&big[..]));
        }
        assert_eq!(partitions[4].records.as_deref(), Some(&b"in memory"[..]));
    }

    /// A log's batches sent by splice and in-memory records arrive as kafka-protocol decodes
    /// them, frame after frame on one connection.
    #[test]
    fn a_client_decodes_what_was_spliced() {
        let versions = [4i16, 12, 16];
        let dir = tempfile::tempdir().unwrap();
        let (decoded, on_disk) = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(512 << 10)
            .make()
            .unwrap()
            .run(async move {
                let log =
                    PartitionLog::open(dir.path(), LogConfig::default(), Rc::new(SystemClock))
                        .await
                        .unwrap();
                for values in [&["a", "bb"][..], &["ccc"][..]] {
                    let batch = build_batch(1_000, values);
                    log.append(BytesMut::from(&batch[..]), 0).await.unwrap();
                }
                let end = log.log_end_offset();
                let slice = log.read(0, 1 << 20, end, true).await.unwrap();
                let on_disk =
                    Bytes::from(slice.file.read_at(slice.position, slice.len).await.unwrap());

                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let client = std::thread::spawn(move || {
                    let mut socket = std::net::TcpStream::connect(addr).unwrap();
                    versions.map(|version| {
                        let mut size = [0u8; 4];
                        socket.read_exact(&mut size).unwrap();
                        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
                        socket.read_exact(&mut frame).unwrap();
                        let mut frame = Bytes::from(frame);
                        let header_version = FetchResponse::header_version(version);
                        let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
                        assert_eq!(header.correlation_id, i32::from(version));
                        FetchResponse::decode(&mut frame, version).unwrap()
                    })
                });
                let mut stream = listener.accept().await.unwrap();
                let fd = stream.as_raw_fd();
                for version in versions {
                    let empty = log.read(end, 1 << 20, end, true).await.unwrap();
                    let parts = FetchResponseParts {
                        throttle_time_ms: 0,
                        error_code: 0,
                        session_id: 0,
                        topics: vec![FetchTopicParts {
                            name: StrBytes::from_static_str("logs"),
                            topic_id: [9; 16],
                            partitions: vec![
                                partition(0, Records::File(slice.clone())),
                                partition(1, Records::Bytes(Bytes::from_static(b"in memory"))),
                                partition(2, Records::File(empty)),
                            ],
                        }],
                    };
                    let segments =
                        encode_fetch_response(version, i32::from(version), parts).unwrap();
                    write_fetch_response(&mut stream, fd, segments)
                        .await
                        .unwrap();
                }
                (client.join().unwrap(), on_disk)
            });
        assert!(!on_disk.is_empty());
        for response in decoded {
            let partitions = &response.responses[0].partitions;
            assert_eq!(partitions.len(), 3);
            assert_eq!(partitions[0].records.as_ref(), Some(&on_disk));
            assert_eq!(partitions[1].records.as_deref(), Some(&b"in memory"[..]));
            assert_eq!(partitions[2].records.as_deref(), Some(&b""[..]));
            assert_eq!(partitions[2].high_watermark, 3);
        }
    }
}
