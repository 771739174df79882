//! FindCoordinator: which broker coordinates a group (or transactional id). A single broker
//! coordinates everything, so the answer is always this broker; within it, the group's
//! requests are routed to the shard that owns its coordinator partition.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::Context;

/// The first version that takes a batch of keys.
const BATCHED_VERSION: i16 = 4;
/// Key types: 0 group, 1 transaction (2 share, unsupported).
const MAX_KEY_TYPE: i8 = 1;

pub fn handle(ctx: &Context, request: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let config = ctx.shard.config();
    let (host, port) = config.advertised_address();
    let port = i32::from(port);
    let node = BrokerId(config.node_id);
    let error = (request.key_type > MAX_KEY_TYPE || request.key_type < 0)
        .then_some(ResponseError::InvalidRequest);
    if ctx.version() >= BATCHED_VERSION {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key);
                match error {
                    Some(e) => c
                        .with_error_code(e.code())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                    None => c
                        .with_node_id(node)
                        .with_host(StrBytes::from_string(host.clone()))
                        .with_port(port),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match error {
        Some(e) => FindCoordinatorResponse::default()
            .with_error_code(e.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1),
        None => FindCoordinatorResponse::default()
            .with_node_id(node)
            .with_host(StrBytes::from_string(host))
            .with_port(port),
    }
}
