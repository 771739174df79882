//! The controller's wire protocol, on the controller listener: each frame is a `u32`
//! big-endian length then a JSON body; the length is checked against a bound before the body
//! is read. Connections are persistent and carry one request at a time.

use std::collections::BTreeMap;
use std::io;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use super::commands::{Command, CommandOutcome};
use super::image::ClusterImage;
use super::raft_types::{NodeId, TypeConfig};

/// A request to a controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    // Between voters.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    // From brokers, answered by the active controller only.
    Register {
        node_id: i32,
        host: String,
        port: u16,
        rack: Option<String>,
        incarnation: Uuid,
    },
    Heartbeat {
        node_id: i32,
        epoch: u64,
        image_version: u64,
    },
    /// A long poll: answered as soon as the image is past `image_version`, or after
    /// `max_wait_ms` with no image. Brokers keep one open so metadata reaches them at once
    /// rather than at the next heartbeat.
    WatchImage {
        image_version: u64,
        max_wait_ms: u64,
    },
    Write(Write),
}

/// A metadata change asked by a broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Write {
    /// Proposed as it is.
    Command(Command),
    /// The active controller places the replicas (over the unfenced brokers) and proposes a
    /// [`Command::CreateTopic`].
    CreateTopic {
        name: String,
        partitions: u32,
        replication_factor: u16,
        config: BTreeMap<String, String>,
    },
    /// Grow `topic` to `total` partitions, placed by the active controller.
    CreatePartitions { topic: String, total: u32 },
}

/// A controller's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Registered {
        epoch: u64,
    },
    /// `image` is the full image when it is newer than the broker's.
    Heartbeat {
        fenced: bool,
        image: Option<Box<ClusterImage>>,
    },
    /// The heartbeat names a registration the controller does not have (an older epoch, or
    /// none): register again.
    UnknownRegistration,
    Image(Option<Box<ClusterImage>>),
    Written(CommandOutcome),
    /// Ask another controller: the active one if known.
    NotController {
        leader: Option<i32>,
    },
    /// The controller could not do it (shutting down, storage failure): retry elsewhere.
    Failed {
        message: String,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    #[error(
        "frame of {size} bytes is larger than the limit of {limit} (socket.request.max.bytes)"
    )]
    TooLarge { size: u32, limit: usize },
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::other(format!("frame of {} bytes is too large", body.len())))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await
}

/// Reads one frame; `None` if the peer closed the connection between frames.
pub async fn read_frame<T: DeserializeOwned>(
    stream: &mut TcpStream,
    limit: usize,
) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = u32::from_be_bytes(len);
    if size as usize > limit {
        return Err(FrameError::TooLarge { size, limit });
    }
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body).await?;
    Ok(Some(serde_json::from_slice(&body)?))
}

/// One client connection to a controller.
pub struct Connection {
    stream: TcpStream,
    limit: usize,
}

impl Connection {
    pub async fn connect(addr: &str, limit: usize) -> io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, limit })
    }

    /// Sends a request and reads its answer.
    pub async fn call(&mut self, request: &Request) -> io::Result<Response> {
        write_frame(&mut self.stream, request).await?;
        match read_frame(&mut self.stream, self.limit).await {
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the controller closed the connection",
            )),
            Err(FrameError::Io(e)) => Err(e),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }
}
