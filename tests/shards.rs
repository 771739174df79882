//! Placement across shards: every partition is owned by one shard, partitions land on every
//! shard, and a client connected to any shard reaches every partition.

mod common;

use std::collections::BTreeMap;

use common::{batch, batches_in, fetch_request, Broker};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{DescribeConfigsRequest, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::{Decodable, StrBytes};

const PARTITIONS: i32 = 8;
const CLIENTS: usize = 6;

/// Reads the broker's "partition <topic>-<p> owned by shard <s>" start-up lines.
fn owners(log: &str, topic: &str) -> BTreeMap<i32, usize> {
    let prefix = format!("partition {topic}-");
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find(&prefix)? + prefix.len()..];
            let (partition, rest) = rest.split_once(" owned by shard ")?;
            let shard = rest.split_whitespace().next()?;
            Some((partition.parse().ok()?, shard.parse().ok()?))
        })
        .collect()
}

#[test]
fn partitions_land_on_every_shard_and_any_connection_reaches_all() {
    let broker = Broker::start(2, &[]);
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| broker.client()).collect();
    clients[0].create_topic("spread", PARTITIONS);

    let owners = owners(&broker.log(), "spread");
    assert_eq!(owners.len(), PARTITIONS as usize, "log:\n{}", broker.log());
    assert!(owners.values().any(|s| *s == 0) && owners.values().any(|s| *s == 1));

    // Every connection (the kernel spreads them over both shards) writes to every partition.
    for (c, client) in clients.iter_mut().enumerate() {
        for p in 0..PARTITIONS {
            let (error, offset) = client.produce("spread", p, batch(&[&format!("c{c}-p{p}")]));
            assert_eq!((error, offset), (0, c as i64));
        }
    }
    // And every connection reads every partition back whole.
    for client in &mut clients {
        for p in 0..PARTITIONS {
            let data = client.fetch("spread", p, 0, 0);
            assert_eq!(data.high_watermark, CLIENTS as i64);
            let expected: Vec<_> = (0..CLIENTS as i64).map(|o| (o, 1)).collect();
            assert_eq!(batches_in(data.records.as_ref().unwrap()), expected);
        }
    }

    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("spate.shards")]))]);
    let response = clients[0].send(&request, 4);
    let entry = &response.results[0].configs[0];
    assert_eq!(entry.value.as_deref(), Some("2"));
}

#[test]
fn long_polls_on_partitions_of_both_shards_wake_on_append() {
    let broker = Broker::start(2, &[]);
    let mut admin = broker.client();
    admin.create_topic("remote-wait", PARTITIONS);
    let wait_ms = 2 * common::PATIENCE.as_millis() as i32;
    // One waiting fetch per partition, each on its own connection: whatever shard a
    // connection landed on, some of these waits are on the other shard's partitions.
    let mut waiting: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let mut client = broker.client();
            let (id, frame) = client.frame(&fetch_request("remote-wait", p, 0, wait_ms), 12);
            client.send_raw(&frame);
            (client, id)
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    for p in 0..PARTITIONS {
        assert_eq!(admin.produce("remote-wait", p, batch(&["ping"])), (0, 0));
    }
    for (client, id) in &mut waiting {
        let mut frame = client.read_frame().expect("fetch answered");
        let header = ResponseHeader::decode(&mut frame, 1).unwrap();
        assert_eq!(header.correlation_id, *id);
        let response = FetchResponse::decode(&mut frame, 12).unwrap();
        let data = &response.responses[0].partitions[0];
        assert_eq!(batches_in(data.records.as_ref().unwrap()), vec![(0, 1)]);
    }
}

#[test]
fn one_produce_spanning_both_shards_answers_every_partition_in_order() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::ProduceRequest;
    let broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic("wide", PARTITIONS);
    let partitions = |indexes: &[i32]| {
        indexes
            .iter()
            .map(|&p| {
                PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(batch(&["a", "b"])))
            })
            .collect::<Vec<_>>()
    };
    // Reversed order, an out-of-range partition in the middle, then an unknown topic.
    let mut indexes: Vec<i32> = (0..PARTITIONS).rev().collect();
    indexes.insert(3, PARTITIONS);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(common::topic_name("wide"))
                .with_partition_data(partitions(&indexes)),
            TopicProduceData::default()
                .with_name(common::topic_name("missing"))
                .with_partition_data(partitions(&[0])),
        ]);
    let response = client.send(&request, 9);
    let wide = &response.responses[0].partition_responses;
    let got: Vec<(i32, i16, i64)> = wide
        .iter()
        .map(|p| (p.index, p.error_code, p.base_offset))
        .collect();
    let expected: Vec<(i32, i16, i64)> = indexes
        .iter()
        .map(|&p| {
            if p == PARTITIONS {
                (p, 3, -1)
            } else {
                (p, 0, 0)
            }
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(response.responses[1].partition_responses[0].error_code, 3);
    for p in 0..PARTITIONS {
        assert_eq!(client.fetch("wide", p, 0, 0).high_watermark, 2);
    }
}
