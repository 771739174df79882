//! One client connection: read a frame, handle it, write the response, in order. Like
//! Kafka, a connection has one request in progress at a time, so responses keep request
//! order; clients get concurrency from several connections and from batching.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::BufReader;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use spate_shard::Shard;

use crate::frame::{read_frame, FrameError};
use crate::handlers::{dispatch, RequestError, Response};
use crate::zero_copy::write_fetch_response;

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("writing the response failed: {0}")]
    Write(std::io::Error),
    #[error("the broker is shutting down and the request did not finish in time")]
    ShutdownGraceOver,
}

/// How long a request in progress (often a response being written) may run once shutdown has
/// begun. Shutdown waits for every request in progress before closing the logs, and a client
/// that stops reading would otherwise hold a write, and so the shutdown, forever.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub async fn run(shard: Rc<Shard>, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_string(), |a| a.to_string());
    // Responses are written whole; Nagle would only delay them.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
    }
    // Kafka shows a member's host as Java prints an address: `/` and the IP.
    let client_host = stream
        .peer_addr()
        .map_or_else(|_| String::new(), |a| format!("/{}", a.ip()));
    match serve_requests(&shard, BufReader::new(stream), &client_host).await {
        Ok(()) => tracing::debug!(%peer, "connection closed by the client"),
        Err(e) => tracing::warn!(%peer, "closing connection: {e}"),
    }
}

async fn serve_requests(
    shard: &Rc<Shard>,
    mut stream: BufReader<TcpStream>,
    client_host: &str,
) -> Result<(), ConnectionError> {
    let max_size = shard.config().socket_request_max_bytes;
    while let Some(frame) = read_frame(&mut stream, max_size).await? {
        // Shutting down: close the connection rather than start a request.
        let Some(_pass) = shard.enter() else {
            return Ok(());
        };
        let request = serve_one(shard, &mut stream, frame.freeze(), client_host);
        let cut_off = async {
            shard.until_stopping().await;
            glommio::timer::sleep(SHUTDOWN_GRACE).await;
            Err(ConnectionError::ShutdownGraceOver)
        };
        // Dropping an unfinished write is safe (the zero-copy ring cancels its ops), and the
        // connection closes right after, so the client never sees half a response as whole.
        futures_lite::future::or(request, cut_off).await?;
    }
    Ok(())
}

/// Handles one request and writes its response.
async fn serve_one(
    shard: &Rc<Shard>,
    stream: &mut BufReader<TcpStream>,
    frame: bytes::Bytes,
    client_host: &str,
) -> Result<(), ConnectionError> {
    match dispatch(shard, frame, client_host).await? {
        Some(Response::Frame(bytes)) => stream
            .write_all(&bytes)
            .await
            .map_err(ConnectionError::Write)?,
        Some(Response::Fetch(segments)) => {
            let socket_fd = stream.get_ref().as_raw_fd();
            write_fetch_response(stream, socket_fd, segments)
                .await
                .map_err(ConnectionError::Write)?
        }
        None => {}
    }
    Ok(())
}
