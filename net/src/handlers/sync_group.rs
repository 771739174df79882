//! SyncGroup: the leader hands in the assignment; every member gets its part.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_shard::group_coordinator::{GroupAnswer, GroupCall};

use super::Context;

pub async fn handle(ctx: &Context, request: SyncGroupRequest) -> SyncGroupResponse {
    let call = GroupCall::Sync {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|i| i.to_string()),
        generation: request.generation_id,
        protocol_type: request.protocol_type.map(|p| p.to_string()),
        protocol_name: request.protocol_name.map(|p| p.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    match ctx.shard.group_call(&request.group_id, call).await {
        GroupAnswer::Sync(Ok(result)) => SyncGroupResponse::default()
            .with_protocol_type(result.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(result.protocol_name.map(StrBytes::from_string))
            .with_assignment(result.assignment),
        GroupAnswer::Sync(Err(e)) | GroupAnswer::Error(e) => {
            SyncGroupResponse::default().with_error_code(e.code())
        }
        _ => SyncGroupResponse::default().with_error_code(ResponseError::UnknownServerError.code()),
    }
}
