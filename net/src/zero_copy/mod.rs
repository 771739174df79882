//! The zero-copy fetch path: record batches go from a segment file to the client's socket
//! without passing through user space.
//!
//! A Fetch response is written as a list of segments: the response's own bytes (frame size,
//! header, per-partition fields), encoded by hand by [`encode_fetch_response`], interleaved with
//! the record bytes of each partition, which [`splice_to_socket`] moves straight from the page
//! cache to the socket. [`write_fetch_response`] writes such a list to a client.

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
