//! FindCoordinator: which broker coordinates a group (or transactional id): the leader of
//! its `__consumer_offsets` partition, created on the first lookup; within that broker the
//! group's requests are routed to the shard that owns that partition.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::Context;

/// The first version that takes a batch of keys.
const BATCHED_VERSION: i16 = 4;
/// Key types: 0 group, 1 transaction (2 share, unsupported).
const MAX_KEY_TYPE: i8 = 1;

/// A coordinator's node id, host and port, or the error to answer.
type Found = Result<(i32, String, i32), ResponseError>;

pub fn handle(ctx: &Context, request: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let bad_type = request.key_type > MAX_KEY_TYPE || request.key_type < 0;
    let find = |key: &str| -> Found {
        if bad_type {
            return Err(ResponseError::InvalidRequest);
        }
        let table = ctx.shard.topics();
        let node = ctx.shard.find_coordinator(key)?;
        let broker = table
            .broker(node)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        Ok((broker.node_id, broker.host.clone(), i32::from(broker.port)))
    };
    if ctx.version() >= BATCHED_VERSION {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let found = find(key.as_str());
                let c = Coordinator::default().with_key(key);
                match found {
                    Ok((node, host, port)) => c
                        .with_node_id(BrokerId(node))
                        .with_host(StrBytes::from_string(host))
                        .with_port(port),
                    Err(e) => c
                        .with_error_code(e.code())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match find(request.key.as_str()) {
        Ok((node, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node))
            .with_host(StrBytes::from_string(host))
            .with_port(port),
        Err(e) => FindCoordinatorResponse::default()
            .with_error_code(e.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    }
}
