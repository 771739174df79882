//! DescribeGroups: state, protocol and members (with their metadata and assignment) of
//! each group named. An unknown group is `Dead` with no members, as in Kafka (v6+:
//! GROUP_ID_NOT_FOUND).

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_shard::group_coordinator::{GroupAnswer, GroupCall};

use super::Context;

/// The first version reporting members' instance ids.
const INSTANCE_ID_VERSION: i16 = 4;
/// From v6 an unknown group is an error (KIP-1043) rather than a `Dead` group.
const NOT_FOUND_VERSION: i16 = 6;
/// `authorized_operations` when the client did not ask for them.
const OPERATIONS_OMITTED: i32 = i32::MIN;

pub async fn handle(ctx: &Context, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let described = DescribedGroup::default()
            .with_authorized_operations(OPERATIONS_OMITTED)
            .with_group_id(group_id.clone());
        let description = match ctx.shard.group_call(&group_id, GroupCall::Describe).await {
            GroupAnswer::Describe(d) => d,
            GroupAnswer::Error(e) => {
                groups.push(described.with_error_code(e.code()));
                continue;
            }
            _ => {
                groups.push(described.with_error_code(ResponseError::UnknownServerError.code()));
                continue;
            }
        };
        if ctx.version() >= NOT_FOUND_VERSION && description.state == "Dead" {
            groups.push(
                described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "group {} is not known to this broker",
                        group_id.as_str()
                    )))),
            );
            continue;
        }
        let members = description
            .members
            .into_iter()
            .map(|m| {
                let member = DescribedGroupMember::default()
                    .with_member_id(StrBytes::from_string(m.member_id))
                    .with_client_id(StrBytes::from_string(m.client_id))
                    .with_client_host(StrBytes::from_string(m.client_host))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment);
                if ctx.version() >= INSTANCE_ID_VERSION {
                    member.with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                } else {
                    member
                }
            })
            .collect();
        groups.push(
            described
                .with_group_state(StrBytes::from_static_str(description.state))
                .with_protocol_type(StrBytes::from_string(description.protocol_type))
                .with_protocol_data(StrBytes::from_string(description.protocol))
                .with_members(members),
        );
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
