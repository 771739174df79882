//! How a broker reaches the active controller: over TCP to the voters (following
//! `NotController` hints, trying the next voter after a failure, backing off while there is
//! no leader), or in process when the node is a single-node quorum of itself.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::rpc::{Connection, Request, Response};
use super::settings::VoterAddress;
use super::voter::Voter;

/// Why a request to the controller did not get an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    #[error("no active controller answered in time (last problem: {0})")]
    Unavailable(String),
    #[error("the controller answered {0}, which does not fit the request")]
    Unexpected(String),
    #[error("the cluster link has shut down")]
    ShutDown,
}

pub(crate) enum Transport {
    Remote {
        voters: Vec<VoterAddress>,
        /// Idle connections, by voter index.
        pool: Mutex<Vec<(usize, Connection)>>,
        max_frame_bytes: usize,
    },
    Local(Arc<Voter>),
}

pub(crate) struct ControllerClient {
    transport: Transport,
    /// The voter index to try first: the last one that answered or was named the leader.
    target: Mutex<usize>,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

impl ControllerClient {
    pub(crate) fn new(transport: Transport) -> ControllerClient {
        ControllerClient {
            transport,
            target: Mutex::new(0),
        }
    }

    fn voter_count(&self) -> usize {
        match &self.transport {
            Transport::Remote { voters, .. } => voters.len().max(1),
            Transport::Local(_) => 1,
        }
    }

    fn index_of(&self, node_id: i32) -> Option<usize> {
        match &self.transport {
            Transport::Remote { voters, .. } => voters.iter().position(|v| v.node_id == node_id),
            Transport::Local(_) => None,
        }
    }

    /// Sends `request` to the active controller, retrying elsewhere until `deadline`.
    pub(crate) async fn call(
        &self,
        request: &Request,
        deadline: Instant,
    ) -> Result<Response, LinkError> {
        let mut backoff = FIRST_BACKOFF;
        let mut redirects = 0;
        let mut last_problem;
        loop {
            let target = *self.target.lock().unwrap_or_else(PoisonError::into_inner);
            let next = (target + 1) % self.voter_count();
            let new_target = match self.attempt(target, request, deadline).await {
                Ok(Response::NotController { leader }) => {
                    last_problem = format!("voter {target} is not the active controller");
                    match leader.and_then(|l| self.index_of(l)) {
                        Some(i) if i != target && redirects < self.voter_count() => {
                            redirects += 1;
                            *self.target.lock().unwrap_or_else(PoisonError::into_inner) = i;
                            continue;
                        }
                        _ => next,
                    }
                }
                Ok(Response::Failed { message }) => {
                    last_problem = message;
                    next
                }
                Ok(response) => return Ok(response),
                Err(e) => {
                    last_problem = e;
                    next
                }
            };
            *self.target.lock().unwrap_or_else(PoisonError::into_inner) = new_target;
            redirects = 0;
            if Instant::now() + backoff >= deadline {
                return Err(LinkError::Unavailable(last_problem));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn attempt(
        &self,
        target: usize,
        request: &Request,
        deadline: Instant,
    ) -> Result<Response, String> {
        match &self.transport {
            Transport::Local(voter) => Ok(voter.handle(request.clone()).await),
            Transport::Remote {
                voters,
                pool,
                max_frame_bytes,
            } => {
                let voter = &voters[target];
                let pooled = {
                    let mut pool = pool.lock().unwrap_or_else(PoisonError::into_inner);
                    pool.iter()
                        .position(|(i, _)| *i == target)
                        .map(|at| pool.swap_remove(at).1)
                };
                let mut connection = match pooled {
                    Some(c) => c,
                    None => {
                        match tokio::time::timeout_at(
                            deadline,
                            Connection::connect(&voter.addr, *max_frame_bytes),
                        )
                        .await
                        {
                            Ok(Ok(c)) => c,
                            Ok(Err(e)) => {
                                return Err(format!(
                                    "controller {} at {}: {e}",
                                    voter.node_id, voter.addr
                                ))
                            }
                            Err(_) => {
                                return Err(format!(
                                    "controller {} at {}: connect timed out",
                                    voter.node_id, voter.addr
                                ))
                            }
                        }
                    }
                };
                match tokio::time::timeout_at(deadline, connection.call(request)).await {
                    Ok(Ok(response)) => {
                        pool.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((target, connection));
                        Ok(response)
                    }
                    // A failed or timed-out exchange leaves the connection unusable: drop it.
                    Ok(Err(e)) => Err(format!(
                        "controller {} at {}: {e}",
                        voter.node_id, voter.addr
                    )),
                    Err(_) => Err(format!(
                        "controller {} at {}: no answer in time",
                        voter.node_id, voter.addr
                    )),
                }
            }
        }
    }
}
