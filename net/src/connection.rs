//! One client connection: requests are handled one at a time, in order, and their responses
//! written in the same order. As in Kafka, a request starts only once the previous one is
//! handled. Unlike Kafka, a Produce counts as handled once its records are appended on this
//! shard and handed to the shards that own the rest (which take them in order): the other
//! shards' outcomes and any acks=all wait for the in-sync replicas overlap the next requests
//! (up to [`QUEUED_RESPONSES`] responses wait to be written), so the requests a producer
//! keeps in flight are appended and replicated together rather than one after another. Any
//! other request waits for the Produce responses before it, as in Kafka.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::BufReader;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::Pass;
use kafka_protocol::messages::ApiKey;
use spate_shard::{OpenConnection, Shard};

use crate::frame::{read_frame, FrameError};
use crate::handlers::{dispatch, Dispatched, RequestError, Response};
use crate::zero_copy::write_fetch_response;

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("writing the response failed: {0}")]
    Write(std::io::Error),
    #[error("the broker is shutting down and the connection's grace period is over")]
    ShutdownGraceOver,
}

/// How long a connection stays open once shutdown has begun, for its requests in progress
/// (often a response being written). Shutdown waits for every request in progress before
/// closing the logs, and a client that stops reading would otherwise hold a write, and so
/// the shutdown, forever.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Responses a connection holds before it stops reading requests: more than the five
/// requests Kafka producers keep in flight by default.
const QUEUED_RESPONSES: usize = 16;

/// Serves one connection; `_open` counts it on this shard until it closes.
pub async fn run(shard: Rc<Shard>, stream: TcpStream, _open: OpenConnection) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_string(), |a| a.to_string());
    tracing::debug!(shard = shard.id(), %peer, "serving a connection");
    // Responses are written whole; Nagle would only delay them.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
    }
    // Kafka shows a member's host as Java prints an address: `/` and the IP.
    let client_host = stream
        .peer_addr()
        .map_or_else(|_| String::new(), |a| format!("/{}", a.ip()));
    match serve_requests(&shard, stream, &client_host).await {
        Ok(()) => tracing::debug!(%peer, "connection closed by the client"),
        Err(e) => tracing::warn!(%peer, "closing connection: {e}"),
    }
}

async fn serve_requests(
    shard: &Rc<Shard>,
    stream: TcpStream,
    client_host: &str,
) -> Result<(), ConnectionError> {
    let socket_fd = stream.as_raw_fd();
    let (reader, mut writer) = futures_lite::io::split(stream);
    let (queue, queued) = local_channel::new_bounded(QUEUED_RESPONSES);
    let read_failed = RefCell::new(None);
    // The reader stops at the client's end, at a bad request or at shutdown, and drops the
    // queue; the writer then writes what is queued and ends. A failed write ends both.
    let read = async {
        if let Err(e) = read_requests(shard, BufReader::new(reader), client_host, queue).await {
            *read_failed.borrow_mut() = Some(e);
        }
        std::future::pending().await
    };
    let write = write_responses(&mut writer, socket_fd, queued);
    let cut_off = async {
        shard.until_stopping().await;
        glommio::timer::sleep(SHUTDOWN_GRACE).await;
        Err(ConnectionError::ShutdownGraceOver)
    };
    // Dropping an unfinished write is safe (the zero-copy ring cancels its ops), and the
    // connection closes right after, so the client never sees half a response as whole.
    futures_lite::future::or(futures_lite::future::or(write, read), cut_off).await?;
    match read_failed.into_inner() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A handled request, queued for its response to be written: the request's pass, the
/// response, and for a response that comes later a sender that is dropped once it is written.
type Queued = (Pass, Dispatched, Option<LocalSender<()>>);

/// Reads and handles requests one at a time, queueing their responses in order.
async fn read_requests<R: AsyncRead + Unpin>(
    shard: &Rc<Shard>,
    mut reader: BufReader<R>,
    client_host: &str,
    queue: LocalSender<Queued>,
) -> Result<(), ConnectionError> {
    let max_size = shard.config().socket_request_max_bytes;
    // Closed (its sender dropped) once the response of the last Produce answered later is
    // written.
    let mut last_produce: Option<LocalReceiver<()>> = None;
    while let Some(frame) = read_frame(&mut reader, max_size).await? {
        // Shutting down: close the connection rather than start a request.
        let Some(pass) = shard.enter() else {
            return Ok(());
        };
        // Any other request waits for the Produces before it, as in Kafka: a Fetch or
        // ListOffsets right after a Produce on the same connection sees its records. (Those
        // responses come in order, so waiting for the last one waits for them all.)
        let produce = i16::from_be_bytes([frame[0], frame[1]]) == ApiKey::Produce as i16;
        if !produce {
            if let Some(answered) = last_produce.take() {
                answered.recv().await;
            }
        }
        let dispatched = dispatch(shard, frame.freeze(), client_host).await?;
        let answered = match dispatched {
            Dispatched::Later(_) => {
                let (answered, done) = local_channel::new_bounded(1);
                last_produce = Some(done);
                Some(answered)
            }
            Dispatched::Now(_) => None,
        };
        if queue.send((pass, dispatched, answered)).await.is_err() {
            return Ok(()); // the writer failed
        }
    }
    Ok(())
}

/// Writes the queued responses in order, each once it is ready. A request's pass is held
/// until its response is written (shutdown waits for it), and so is its `answered` sender.
async fn write_responses<W: AsyncWrite + Unpin>(
    writer: &mut W,
    socket_fd: RawFd,
    queued: LocalReceiver<Queued>,
) -> Result<(), ConnectionError> {
    while let Some((_pass, dispatched, _answered)) = queued.recv().await {
        let response = match dispatched {
            Dispatched::Now(response) => response,
            Dispatched::Later(response) => response.await?,
        };
        match response {
            Some(Response::Frame(bytes)) => writer
                .write_all(&bytes)
                .await
                .map_err(ConnectionError::Write)?,
            Some(Response::Fetch(segments)) => write_fetch_response(writer, socket_fd, segments)
                .await
                .map_err(ConnectionError::Write)?,
            None => {}
        }
    }
    Ok(())
}
