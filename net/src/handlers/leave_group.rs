//! LeaveGroup: members leave at once instead of waiting for their session to time out.
//! v3+ names a batch of members (by member id or, for static members, instance id).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::ResponseError;
use spate_shard::group_coordinator::{GroupAnswer, GroupCall};

use super::Context;

/// The first version with a batch of members.
const BATCHED_VERSION: i16 = 3;

pub async fn handle(ctx: &Context, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let batched = ctx.version() >= BATCHED_VERSION;
    let leaving: Vec<_> = if batched {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let count = leaving.len();
    let results = match ctx
        .shard
        .group_call(&request.group_id, GroupCall::Leave(leaving))
        .await
    {
        GroupAnswer::Leave(results) => results,
        GroupAnswer::Error(e) => return LeaveGroupResponse::default().with_error_code(e.code()),
        _ => vec![Err(ResponseError::UnknownServerError); count],
    };
    if !batched {
        let error = results.into_iter().next().and_then(Result::err);
        return LeaveGroupResponse::default().with_error_code(error.map_or(0, |e| e.code()));
    }
    let members = request
        .members
        .into_iter()
        .zip(results)
        .map(|(m, r)| {
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(r.err().map_or(0, |e| e.code()))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}
