//! The one error type of the harness: every failure carries a sentence saying what went wrong.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The broker answered something we cannot use (bad frame, unsupported version, error code).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The workload file or the command line asks for something invalid.
    #[error("workload: {0}")]
    Workload(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Attaches a context sentence to an `io::Error`.
pub fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

pub fn protocol(msg: impl std::fmt::Display) -> Error {
    Error::Protocol(msg.to_string())
}
