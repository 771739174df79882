//! Runs admin queries on the partitions' owner shards (see `spate_shard::partition_admin`):
//! one message per owner shard, all owners at once, answers in request order. A topic or
//! partition that does not exist is answered here with UNKNOWN_TOPIC_OR_PARTITION.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use spate_shard::partition_admin::{PartitionAnswer, PartitionQuery};

use super::Context;

pub async fn run(
    ctx: &Context,
    queries: Vec<PartitionQuery>,
) -> Vec<Result<PartitionAnswer, ResponseError>> {
    let table = ctx.shard.topics();
    let mut results: Vec<Result<PartitionAnswer, ResponseError>> =
        vec![Err(ResponseError::UnknownTopicOrPartition); queries.len()];
    let mut by_owner: BTreeMap<usize, (Vec<usize>, Vec<PartitionQuery>)> = BTreeMap::new();
    for (slot, q) in queries.into_iter().enumerate() {
        let exists = table
            .get(&q.topic)
            .is_some_and(|t| q.partition >= 0 && q.partition < t.partitions);
        if exists {
            let group = by_owner
                .entry(ctx.shard.owner_of(&q.topic, q.partition))
                .or_default();
            group.0.push(slot);
            group.1.push(q);
        }
    }
    let calls = by_owner
        .into_iter()
        .map(|(owner, (slots, queries))| async move {
            (slots, ctx.shard.query_partitions(owner, queries).await)
        });
    for (slots, answers) in join_all(calls).await {
        for (slot, answer) in slots.into_iter().zip(answers) {
            results[slot] = answer;
        }
    }
    results
}
