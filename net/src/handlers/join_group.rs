//! JoinGroup: a member joins (or rejoins) a group; the answer comes when the rebalance
//! completes (see `spate_shard::group_coordinator`).

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_shard::group_coordinator::{GroupAnswer, GroupCall, JoinArgs};

use super::Context;

/// JoinGroup v4+: a new member must first get its id (KIP-394).
const KNOWN_MEMBER_ID_VERSION: i16 = 4;
/// The first version that can tell a static leader to keep the current assignment.
const SKIP_ASSIGNMENT_VERSION: i16 = 9;
/// Before v1 the request has no rebalance timeout; Kafka uses the session timeout.
const REBALANCE_TIMEOUT_VERSION: i16 = 1;

pub async fn handle(ctx: &Context, request: JoinGroupRequest) -> JoinGroupResponse {
    let rebalance_timeout_ms = if ctx.version() >= REBALANCE_TIMEOUT_VERSION {
        request.rebalance_timeout_ms
    } else {
        request.session_timeout_ms
    };
    let args = JoinArgs {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|i| i.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host.clone(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: ctx.version() >= KNOWN_MEMBER_ID_VERSION,
    };
    let member_id = args.member_id.clone();
    let result = match ctx
        .shard
        .group_call(&request.group_id, GroupCall::Join(args))
        .await
    {
        GroupAnswer::Join(result) => result,
        GroupAnswer::Error(e) => {
            return JoinGroupResponse::default()
                .with_error_code(e.code())
                .with_generation_id(-1)
                .with_member_id(StrBytes::from_string(member_id))
        }
        _ => {
            return JoinGroupResponse::default()
                .with_error_code(ResponseError::UnknownServerError.code())
                .with_generation_id(-1)
        }
    };
    let response = JoinGroupResponse::default()
        .with_member_id(StrBytes::from_string(result.member_id))
        .with_generation_id(result.generation);
    if let Some(e) = result.error {
        return response.with_error_code(e.code());
    }
    response
        .with_protocol_type(result.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(result.protocol_name.map(StrBytes::from_string))
        .with_leader(StrBytes::from_string(result.leader))
        .with_skip_assignment(result.skip_assignment && ctx.version() >= SKIP_ASSIGNMENT_VERSION)
        .with_members(
            result
                .members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}
