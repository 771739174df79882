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
