//! OffsetCommit: store a group's consumed positions. Acknowledged once appended to the
//! coordinator partition's log. Generation -1 with no member id is a commit from a client
//! that does not use group management (or an admin altering offsets of an empty group).

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;
use spate_shard::group_coordinator::{CommitOffset, GroupAnswer, GroupCall};

use super::Context;

/// The first version whose partitions carry the leader epoch.
const LEADER_EPOCH_VERSION: i16 = 6;

pub async fn handle(ctx: &Context, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let topics = ctx.shard.topics();
    // Partitions of unknown topics are answered here; the rest go to the coordinator.
    let mut offsets = Vec::new();
    let mut known = Vec::new();
    for topic in &request.topics {
        let info = topics.get(&topic.name);
        for p in &topic.partitions {
            let exists = info.is_some_and(|t| (0..t.partitions).contains(&p.partition_index));
            known.push(exists);
            if exists {
                offsets.push(CommitOffset {
                    topic: topic.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if ctx.version() >= LEADER_EPOCH_VERSION {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            }
        }
    }
    let count = offsets.len();
    let call = GroupCall::Commit {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|i| i.to_string()),
        generation: request.generation_id_or_member_epoch,
        offsets,
    };
    let results = if count == 0 {
        Vec::new()
    } else {
        match ctx.shard.group_call(&request.group_id, call).await {
            GroupAnswer::Commit(results) => results,
            GroupAnswer::Error(e) => vec![Err(e); count],
            _ => vec![Err(ResponseError::UnknownServerError); count],
        }
    };
    let mut results = results.into_iter();
    let mut known = known.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = if known.next().unwrap_or(false) {
                        results
                            .next()
                            .unwrap_or(Err(ResponseError::UnknownServerError))
                    } else {
                        Err(ResponseError::UnknownTopicOrPartition)
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(result.err().map_or(0, |e| e.code()))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
