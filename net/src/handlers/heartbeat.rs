//! Heartbeat: a member says it is alive; the answer tells it when to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use kafka_protocol::ResponseError;
use spate_shard::group_coordinator::{GroupAnswer, GroupCall};

use super::Context;

pub async fn handle(ctx: &Context, request: HeartbeatRequest) -> HeartbeatResponse {
    let call = GroupCall::Heartbeat {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|i| i.to_string()),
        generation: request.generation_id,
    };
    let error = match ctx.shard.group_call(&request.group_id, call).await {
        GroupAnswer::Heartbeat(Ok(())) => return HeartbeatResponse::default(),
        GroupAnswer::Heartbeat(Err(e)) | GroupAnswer::Error(e) => e,
        _ => ResponseError::UnknownServerError,
    };
    HeartbeatResponse::default().with_error_code(error.code())
}
