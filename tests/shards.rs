//! Placement across shards: every partition is owned by one shard, partitions land on every
//! shard, and a client connected to any shard reaches every partition.

mod common;

use std::collections::BTreeMap;

use common::{batch, batches_in, fetch_request, Broker};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, DescribeConfigsRequest, FetchRequest, FetchResponse, ProduceRequest,
    ResponseHeader,
};
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

/// One Produce request with a batch of `value` for each of `partitions` of `topic`.
fn produce_to(topic: &str, partitions: &[i32], value: &str, acks: i16) -> ProduceRequest {
    let partitions = partitions
        .iter()
        .map(|&p| {
            PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(batch(&[value])))
        })
        .collect();
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(common::topic_name(topic))
            .with_partition_data(partitions)])
}

#[test]
fn produces_sent_without_waiting_land_in_order_on_both_shards() {
    const REQUESTS: i64 = 200;
    let broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic("pipelined", PARTITIONS);
    // Every request names every partition, so some of each go to the other shard; all are
    // sent before any answer is read.
    for acks in [1, -1] {
        let first = if acks == 1 { 0 } else { REQUESTS };
        let ids: Vec<i32> = (0..REQUESTS)
            .map(|i| {
                let all: Vec<i32> = (0..PARTITIONS).collect();
                let request = produce_to("pipelined", &all, &format!("r{i}"), acks);
                let (id, frame) = client.frame(&request, 9);
                client.send_raw(&frame);
                id
            })
            .collect();
        for (i, id) in ids.into_iter().enumerate() {
            let response = client.receive::<ProduceRequest>(id, 9);
            let got: Vec<(i32, i16, i64)> = response.responses[0]
                .partition_responses
                .iter()
                .map(|p| (p.index, p.error_code, p.base_offset))
                .collect();
            let expected: Vec<(i32, i16, i64)> =
                (0..PARTITIONS).map(|p| (p, 0, first + i as i64)).collect();
            assert_eq!(got, expected, "acks={acks}, request {i}");
        }
    }
}

#[test]
fn a_fetch_sent_right_after_a_produce_sees_its_records() {
    const ROUNDS: i64 = 20;
    let broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic("read-your-write", PARTITIONS);
    // Each shard's partitions in turn: for one of the two, all are on the other shard than
    // the connection's, whichever that is.
    let owners = owners(&broker.log(), "read-your-write");
    let by_shard: Vec<Vec<i32>> = (0..2)
        .map(|s| {
            owners
                .iter()
                .filter(|(_, o)| **o == s)
                .map(|(p, _)| *p)
                .collect()
        })
        .collect();
    for round in 0..ROUNDS {
        for partitions in &by_shard {
            // The Produce and a Fetch of the same partitions go out together; Kafka handles
            // a connection's requests one after another, so the Fetch sees the records.
            let produce = produce_to("read-your-write", partitions, "w", 1);
            let (produce_id, frame) = client.frame(&produce, 9);
            client.send_raw(&frame);
            let mut fetch = fetch_request("read-your-write", 0, round, 0);
            fetch.topics[0].partitions = partitions
                .iter()
                .map(|&p| {
                    FetchPartition::default()
                        .with_partition(p)
                        .with_fetch_offset(round)
                        .with_partition_max_bytes(1 << 20)
                })
                .collect();
            let (fetch_id, frame) = client.frame(&fetch, 12);
            client.send_raw(&frame);
            let response = client.receive::<ProduceRequest>(produce_id, 9);
            assert!(response.responses[0]
                .partition_responses
                .iter()
                .all(|p| p.error_code == 0 && p.base_offset == round));
            let response = client.receive::<FetchRequest>(fetch_id, 12);
            assert_eq!(response.responses[0].partitions.len(), partitions.len());
            for data in &response.responses[0].partitions {
                let p = data.partition_index;
                assert_eq!(
                    data.high_watermark,
                    round + 1,
                    "round {round}, partition {p}"
                );
                assert_eq!(batches_in(data.records.as_ref().unwrap()), vec![(round, 1)]);
            }
        }
    }
}

#[test]
fn connections_are_spread_evenly_over_the_shards() {
    const CONNECTIONS: usize = 8;
    let broker = Broker::start_logging(2, &[], "info,spate_net::connection=debug");
    // One after another, each answered before the next opens: by then it is counted on the
    // shard that serves it. The kernel alone would split them 4:4 about one time in four.
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let mut client = broker.client();
            client.send(&ApiVersionsRequest::default(), 3);
            client
        })
        .collect();
    let log = broker.log();
    let mut served = [0; 2];
    for client in &clients {
        let peer = format!(" peer={}", client.stream.local_addr().unwrap());
        let line = log
            .lines()
            .find(|l| l.contains("serving a connection") && l.ends_with(&peer))
            .unwrap_or_else(|| panic!("no line for{peer}:\n{log}"));
        served[usize::from(line.contains(" shard=1 "))] += 1;
    }
    assert_eq!(served, [CONNECTIONS / 2; 2], "{log}");
}
