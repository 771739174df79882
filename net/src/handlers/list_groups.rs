//! ListGroups: every group of every shard, filtered by state (v4+) and type (v5+).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;

/// The first version reporting group states.
const STATE_VERSION: i16 = 4;
/// The first version reporting group types.
const TYPE_VERSION: i16 = 5;
/// Spate serves the classic group protocol only.
const GROUP_TYPE: &str = "classic";

pub async fn handle(ctx: &Context, request: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    if !types.is_empty() && !types.iter().any(|t| t == GROUP_TYPE) {
        return ListGroupsResponse::default();
    }
    let mut groups: Vec<_> = ctx
        .shard
        .list_groups()
        .await
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_lowercase()))
        .collect();
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    let listed = groups
        .into_iter()
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            let listed = if ctx.version() >= STATE_VERSION {
                listed.with_group_state(StrBytes::from_static_str(g.state))
            } else {
                listed
            };
            if ctx.version() >= TYPE_VERSION {
                listed.with_group_type(StrBytes::from_static_str(GROUP_TYPE))
            } else {
                listed
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}
