//! spate-net: the Kafka server. Listeners, the connection loop, one handler per Kafka API and
//! the zero-copy fetch writer.
//!
//! - `server`: a shard's listener; `connection`: one client's request loop.
//! - `frame`: Kafka's size-prefixed framing, bounded by `socket.request.max.bytes`.
//! - `handlers`: one module per Kafka API, and the dispatch table.
//! - `inter_broker`: the Kafka client followers use to fetch from their leaders.
//! - `lazy_alloc`: the global allocator of every process that decodes untrusted requests.

mod connection;
pub mod frame;
pub mod handlers;
pub mod inter_broker;
pub mod lazy_alloc;
pub mod server;

pub use server::serve;
pub mod zero_copy;
