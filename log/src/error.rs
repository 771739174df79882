//! What can go wrong in a partition log, and the Kafka error each failure maps to.

use std::io;
use std::path::{Path, PathBuf};

use kafka_protocol::ResponseError;
use spate_core::record_batch::BatchError;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A batch handed to `append` is malformed; nothing of that call was written.
    #[error("invalid record batch: {0}")]
    Batch(#[from] BatchError),
    #[error("offset {offset} is outside the log's range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// Bytes on disk that should be whole and valid are not. The file is left as it is, for
    /// an operator to inspect: Spate never silently drops data it had acknowledged as durable.
    #[error("{}: corrupt at byte {position}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A producer's batch does not follow its last one (a batch was lost in between).
    #[error(
        "producer {producer_id} (epoch {epoch}) sent sequence {sequence}, expected {expected}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        sequence: i32,
        expected: String,
    },
    /// A producer was fenced by a newer instance that bumped its epoch.
    #[error("producer {producer_id} has epoch {current} here; epoch {epoch} is fenced")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// Transactions are not served, so no client batch may be transactional or a control
    /// batch (the broker alone writes transaction markers).
    #[error(
        "producer {producer_id}: {what} batches are not accepted (transactions are not supported)"
    )]
    Transactional {
        producer_id: i64,
        what: &'static str,
    },
    /// The log was closed or deleted, or an earlier write failure left it unusable until it
    /// is reopened (which recovers it).
    #[error("the log in {} is unusable: {reason}", dir.display())]
    Unusable { dir: PathBuf, reason: String },
}

impl LogError {
    /// The error code a Kafka response carries for this failure.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            LogError::Batch(e) => e.kafka_error(),
            LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            // Kafka's answers: a transactional batch for a partition that is not in a
            // (verified) transaction; a control batch from a client is an invalid record.
            LogError::Transactional {
                what: "control", ..
            } => ResponseError::InvalidRecord,
            LogError::Transactional { .. } => ResponseError::InvalidTxnState,
            LogError::Corrupt { .. } | LogError::Io { .. } | LogError::Unusable { .. } => {
                ResponseError::KafkaStorageError
            }
        }
    }

    pub(crate) fn io(path: &Path, source: impl Into<io::Error>) -> LogError {
        LogError::Io {
            path: path.to_path_buf(),
            source: source.into(),
        }
    }

    pub(crate) fn corrupt(file: &Path, position: u64, reason: impl Into<String>) -> LogError {
        LogError::Corrupt {
            file: file.to_path_buf(),
            position,
            reason: reason.into(),
        }
    }
}
