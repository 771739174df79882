//! Writing an encoded Fetch response to a client: encoded bytes with ordinary writes, record
//! ranges of local segment files with `splice_to_socket`.

use std::io;
use std::os::fd::RawFd;

use futures_lite::{AsyncWrite, AsyncWriteExt};
use spate_shard::Records;

use super::fetch_response::{FetchSegment, RecordsLen};
use super::splice::splice_to_socket;

impl RecordsLen for Records {
    fn records_len(&self) -> usize {
        self.len()
    }
}

/// Writes `segments` (from `encode_fetch_response`) in order to `stream`, whose socket is
/// `socket_fd`: `Records::File` ranges go file -> socket by splice, everything else through
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
    for segment in segments {
        match segment {
            FetchSegment::Bytes(bytes) | FetchSegment::Records(Records::Bytes(bytes)) => {
                stream.write_all(&bytes).await?
            }
            FetchSegment::Records(Records::File(slice)) => {
                stream.flush().await?;
                splice_to_socket(socket_fd, slice.file.raw_fd(), slice.position, slice.len).await?;
            }
        }
    }
    stream.flush().await
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
    use spate_log::{LogConfig, PartitionLog, SystemClock};

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
