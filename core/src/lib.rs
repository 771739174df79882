//! spate-core: the vocabulary every Spate crate shares.
//!
//! It owns the Kafka v2 record-batch view (zero-copy parse, CRC32C check, offset and epoch
//! patching) and the Kafka error codes. It depends on no other Spate crate.

pub mod config;
pub mod record_batch;
pub mod topic_config;
