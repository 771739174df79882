//! One client connection: read a frame, handle it, write the response, in order. Like
//! Kafka, a connection has one request in progress at a time, so responses keep request
//! order; clients get concurrency from several connections and from batching.

use std::os::fd::AsRawFd;
use std::rc::Rc;

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
}

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
        match dispatch(shard, frame.freeze(), client_host).await? {
            Some(Response::Frame(bytes)) => stream
                .write_all(&bytes)
                .await
                .map_err(ConnectionError::Write)?,
            Some(Response::Fetch(segments)) => {
                let socket_fd = stream.get_ref().as_raw_fd();
                write_fetch_response(&mut stream, socket_fd, segments)
                    .await
                    .map_err(ConnectionError::Write)?
            }
            None => {}
        }
    }
    Ok(())
}
