//! openraft's network between voters: each RPC is a [`Request`] frame on a persistent TCP
//! connection to the target's controller listener (its `BasicNode::addr`), reconnected after
//! any failure.

// The error types are openraft's, fixed by its `RaftNetwork` trait.
#![allow(clippy::result_large_err)]

use std::io;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};

use super::raft_types::{NodeId, TypeConfig};
use super::rpc::{Connection, Request, Response};

/// Creates a [`PeerClient`] per target voter.
pub struct PeerNetwork {
    /// Frame size bound for answers.
    pub max_frame_bytes: usize,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            max_frame_bytes: self.max_frame_bytes,
            connection: None,
        }
    }
}

/// The connection to one other voter.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    max_frame_bytes: usize,
    connection: Option<Connection>,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn call<E: std::error::Error>(
        &mut self,
        request: Request,
        ttl: Duration,
    ) -> Result<Response, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        let connection = match self.connection.take() {
            Some(c) => c,
            None => {
                let connect = Connection::connect(&self.addr, self.max_frame_bytes);
                match tokio::time::timeout(ttl, connect).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return Err(RPCError::Unreachable(Unreachable::new(&e))),
                    Err(_) => {
                        let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                        return Err(RPCError::Unreachable(Unreachable::new(&e)));
                    }
                }
            }
        };
        let mut connection = connection;
        match tokio::time::timeout(ttl, connection.call(&request)).await {
            Ok(Ok(response)) => {
                self.connection = Some(connection);
                Ok(response)
            }
            // The connection may hold half an exchange: drop it.
            Ok(Err(e)) => Err(RPCError::Network(NetworkError::new(&e))),
            Err(_) => {
                let e = io::Error::new(io::ErrorKind::TimedOut, "no answer in time");
                Err(RPCError::Network(NetworkError::new(&e)))
            }
        }
    }

    fn unexpected<T, E: std::error::Error>(
        &self,
        response: Response,
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            format!("voter {} answered {response:?}", self.target),
        );
        Err(RPCError::Network(NetworkError::new(&e)))
    }

    fn remote<T, E: std::error::Error>(
        &self,
        result: Result<T, RaftError<NodeId, E>>,
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self
            .call(Request::AppendEntries(rpc), option.hard_ttl())
            .await?
        {
            Response::AppendEntries(r) => self.remote(r),
            other => self.unexpected(other),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self
            .call(Request::InstallSnapshot(rpc), option.hard_ttl())
            .await?
        {
            Response::InstallSnapshot(r) => self.remote(r),
            other => self.unexpected(other),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(Request::Vote(rpc), option.hard_ttl()).await? {
            Response::Vote(r) => self.remote(r),
            other => self.unexpected(other),
        }
    }
}
