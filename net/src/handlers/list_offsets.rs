//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3) or the first offset at or
//! after a timestamp. Only the leader answers (NOT_LEADER_OR_FOLLOWER elsewhere); a
//! `current_leader_epoch` older than the leader's is FENCED_LEADER_EPOCH, newer
//! UNKNOWN_LEADER_EPOCH. Latest is the high watermark for consumers, and the log end for a
//! follower (`replica_id` >= 0), as in Kafka.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::Context;

/// The first version whose answers carry the leader epoch.
const LEADER_EPOCH_VERSION: i16 = 4;

pub async fn handle(ctx: &Context, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let for_replica = request.replica_id.0 >= 0;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let response = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            let response = match ctx
                .shard
                .list_offset(
                    &name,
                    p.partition_index,
                    p.timestamp,
                    p.current_leader_epoch,
                    for_replica,
                )
                .await
            {
                Ok(Some(listed)) if ctx.version() >= LEADER_EPOCH_VERSION => response
                    .with_timestamp(listed.timestamp)
                    .with_offset(listed.offset)
                    .with_leader_epoch(listed.leader_epoch),
                Ok(Some(listed)) => response
                    .with_timestamp(listed.timestamp)
                    .with_offset(listed.offset),
                Ok(None) => response,
                Err(e) => response.with_error_code(e.code()),
            };
            partitions.push(response);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}
