//! DeleteGroups: removes empty groups and their committed offsets (a tombstone in the
//! offsets log). A group with members answers NON_EMPTY_GROUP.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::ResponseError;
use spate_shard::group_coordinator::{GroupAnswer, GroupCall};

use super::Context;

pub async fn handle(ctx: &Context, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let error = match ctx.shard.group_call(&group_id, GroupCall::Delete).await {
            GroupAnswer::Delete(Ok(())) => None,
            GroupAnswer::Delete(Err(e)) | GroupAnswer::Error(e) => Some(e),
            _ => Some(ResponseError::UnknownServerError),
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(error.map_or(0, |e| e.code())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
