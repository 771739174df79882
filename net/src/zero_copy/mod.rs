//! The zero-copy fetch path: record batches go from a segment file to the client's socket
//! without passing through user space.
//!
//! A Fetch response is written as a list of segments: the response's own bytes (frame size,
//! header, per-partition fields), encoded by hand by [`encode_fetch_response`], interleaved with
//! the record bytes of each partition, which [`splice_to_socket`] moves straight from the page
//! cache to the socket. [`write_fetch_response`] writes such a list to a client.
//!
//! From a connection whose stream is a `futures_lite::io::BufReader<glommio::net::TcpStream>`:
//!
//! ```text
//! // parts: FetchResponseParts<spate_shard::Records>: Records::File for partitions of this
//! // shard, Records::Shared for another shard's (both spliced), Records::Bytes (written).
//! let segments = encode_fetch_response(version, correlation_id, parts)?;
//! let fd = stream.get_ref().as_raw_fd(); // glommio's TcpStream implements AsRawFd
//! if write_fetch_response(&mut stream, fd, segments).await.is_err() {
//!     // part of a frame may be on the wire: close the connection
//! }
//! ```
//!
//! Splices bypass whatever the stream buffers in user space; `write_fetch_response` flushes the
//! stream before each one, and a direct caller of `splice_to_socket` must do the same.
//! Each shard gets its own splice ring and pipe pool on first use (see `ring` and `pipe`).

mod fetch_response;
mod pipe;
mod ring;
mod send;
mod splice;

pub use fetch_response::{
    encode_fetch_response, AbortedTransactions, FetchEncodeError, FetchPartitionParts,
    FetchResponseParts, FetchSegment, FetchTopicParts, RecordsLen, FETCH_VERSIONS,
};
pub use send::write_fetch_response;
pub use splice::splice_to_socket;
