//! OffsetFetch: a group's committed offsets (all of them when no topics are named). v8+
//! asks for several groups at once. A partition with no committed offset answers -1.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_shard::group_coordinator::{Committed, GroupAnswer, GroupCall, TopicPartitions};

use super::Context;

/// The first version that asks for several groups.
const MULTI_GROUP_VERSION: i16 = 8;
/// The first version with a top-level error code.
const TOP_ERROR_VERSION: i16 = 2;
/// The first version with leader epochs.
const LEADER_EPOCH_VERSION: i16 = 5;

/// One topic's partitions and their committed positions.
type TopicOffsets = (String, Vec<(i32, Option<Committed>)>);

type Fetched = Result<Vec<(String, i32, Option<Committed>)>, ResponseError>;

pub async fn handle(ctx: &Context, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let epochs = ctx.version() >= LEADER_EPOCH_VERSION;
    if ctx.version() >= MULTI_GROUP_VERSION {
        let mut groups = Vec::with_capacity(request.groups.len());
        for group in request.groups {
            let topics = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let fetched = fetch(ctx, &group.group_id, topics).await;
            let response = OffsetFetchResponseGroup::default().with_group_id(group.group_id);
            groups.push(match fetched {
                Ok(offsets) => response.with_topics(
                    by_topic(offsets)
                        .into_iter()
                        .map(|(topic, partitions)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(StrBytes::from_string(topic)))
                                .with_partitions(
                                    partitions
                                        .into_iter()
                                        .map(|(p, c)| {
                                            let (offset, epoch, metadata) = position(c);
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(offset)
                                                .with_committed_leader_epoch(epoch)
                                                .with_metadata(metadata)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
                Err(e) => response.with_error_code(e.code()),
            });
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    match fetch(ctx, &request.group_id, topics).await {
        Ok(offsets) => OffsetFetchResponse::default().with_topics(
            by_topic(offsets)
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(p, c)| {
                                    let (offset, epoch, metadata) = position(c);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(if epochs {
                                            epoch
                                        } else {
                                            -1
                                        })
                                        .with_metadata(metadata)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        // Before v2 the error can only be given per partition, and there are none.
        Err(e) if ctx.version() >= TOP_ERROR_VERSION => {
            OffsetFetchResponse::default().with_error_code(e.code())
        }
        Err(_) => OffsetFetchResponse::default(),
    }
}

async fn fetch(ctx: &Context, group: &GroupId, topics: Option<TopicPartitions>) -> Fetched {
    match ctx
        .shard
        .group_call(group, GroupCall::FetchOffsets(topics))
        .await
    {
        GroupAnswer::Offsets(offsets) => Ok(offsets),
        GroupAnswer::Error(e) => Err(e),
        _ => Err(ResponseError::UnknownServerError),
    }
}

/// Groups consecutive partitions of the same topic.
fn by_topic(offsets: Vec<(String, i32, Option<Committed>)>) -> Vec<TopicOffsets> {
    let mut out: Vec<TopicOffsets> = Vec::new();
    for (topic, partition, committed) in offsets {
        match out.last_mut() {
            Some((t, partitions)) if *t == topic => partitions.push((partition, committed)),
            _ => out.push((topic, vec![(partition, committed)])),
        }
    }
    out
}

/// (offset, leader epoch, metadata) as the response carries them; -1 and "" when none.
fn position(committed: Option<Committed>) -> (i64, i32, Option<StrBytes>) {
    match committed {
        Some(c) => (
            c.offset,
            c.leader_epoch,
            Some(StrBytes::from_string(c.metadata.unwrap_or_default())),
        ),
        None => (-1, -1, Some(StrBytes::from_static_str(""))),
    }
}
