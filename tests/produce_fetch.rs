//! Produce and fetch through the real binary: round trip, long poll, acks=0, offsets.

mod common;

use common::{batch, batches_in, fetch_request, produce_request, Broker};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::ListOffsetsRequest;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;

#[test]
fn produce_then_fetch_returns_the_batches_with_offsets() {
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    client.create_topic("round-trip", 1);
    assert_eq!(
        client.produce("round-trip", 0, batch(&["a", "b", "c"])),
        (0, 0)
    );
    assert_eq!(client.produce("round-trip", 0, batch(&["d"])), (0, 3));

    let p = client.fetch("round-trip", 0, 0, 0);
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 4);
    assert_eq!(p.log_start_offset, 0);
    assert_eq!(
        batches_in(p.records.as_ref().unwrap()),
        vec![(0, 3), (3, 1)]
    );

    let p = client.fetch("round-trip", 0, 3, 0);
    assert_eq!(batches_in(p.records.as_ref().unwrap()), vec![(3, 1)]);

    let p = client.fetch("round-trip", 0, 4, 0);
    assert_eq!(p.error_code, 0);
    assert!(p.records.unwrap().is_empty());

    let p = client.fetch("round-trip", 0, 99, 0);
    assert_eq!(p.error_code, ResponseError::OffsetOutOfRange.code());
}

#[test]
fn a_long_poll_fetch_is_woken_by_the_produce_that_satisfies_it() {
    let broker = Broker::start(1, &[]);
    let mut consumer = broker.client();
    consumer.create_topic("waiting", 1);
    // Wait longer than the client's read timeout: only the append can answer in time.
    let wait_ms = 2 * common::PATIENCE.as_millis() as i32;
    let (correlation_id, frame) = consumer.frame(&fetch_request("waiting", 0, 0, wait_ms), 12);
    consumer.send_raw(&frame);
    // Give the fetch a head start so it is parked when the append lands (if the produce
    // still wins the race the test passes without exercising the wake-up, never falsely fails).
    std::thread::sleep(std::time::Duration::from_millis(200));

    let mut producer = broker.client();
    assert_eq!(producer.produce("waiting", 0, batch(&["wake up"])), (0, 0));

    let mut response = consumer.read_frame().expect("fetch answered");
    let header = kafka_protocol::messages::ResponseHeader::decode(&mut response, 1).unwrap();
    assert_eq!(header.correlation_id, correlation_id);
    let fetch = kafka_protocol::messages::FetchResponse::decode(&mut response, 12).unwrap();
    let p = &fetch.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 1);
    assert_eq!(batches_in(p.records.as_ref().unwrap()), vec![(0, 1)]);
}

#[test]
fn acks_zero_gets_no_response_and_the_next_request_is_answered() {
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    client.create_topic("fire-and-forget", 1);
    let (_, frame) = client.frame(&produce_request("fire-and-forget", 0, batch(&["x"]), 0), 9);
    client.send_raw(&frame);
    // `send` checks the correlation id: a stray produce response would fail it.
    let p = client.fetch("fire-and-forget", 0, 0, 1_000);
    assert_eq!(batches_in(p.records.as_ref().unwrap()), vec![(0, 1)]);
}

#[test]
fn list_offsets_finds_earliest_latest_and_by_time() {
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    client.create_topic("offsets", 1);
    client.produce("offsets", 0, batch(&["a", "b"]));
    client.produce("offsets", 0, batch(&["c"]));
    let list = |client: &mut common::Client, timestamp: i64| {
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(common::topic_name("offsets"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(timestamp)])]);
        let response = client.send(&request, 7);
        let p = response.topics[0].partitions[0].clone();
        assert_eq!(p.error_code, 0);
        p.offset
    };
    assert_eq!(list(&mut client, -2), 0);
    assert_eq!(list(&mut client, -1), 3);
    assert_eq!(list(&mut client, -4), 0, "earliest local is the log start");
    assert!(
        (0..3).contains(&list(&mut client, -3)),
        "max timestamp names a record"
    );
    // build_batch stamps every record of a batch with its base timestamp.
    assert_eq!(list(&mut client, common::BATCH_TIMESTAMP), 0);
    assert_eq!(list(&mut client, i64::MAX), -1);
}

#[test]
fn fetch_limits_hold_but_the_first_batch_always_comes_whole() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    client.create_topic("limits", 2);
    for p in 0..2 {
        for _ in 0..3 {
            client.produce("limits", p, batch(&["0123456789"; 4]));
        }
    }
    let fetch = |client: &mut common::Client, max_bytes: i32, partition_max_bytes: i32| {
        let partitions = (0..2)
            .map(|p| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(partition_max_bytes)
            })
            .collect();
        let request = fetch_request("limits", 0, 0, 0)
            .with_max_bytes(max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic(common::topic_name("limits"))
                .with_partitions(partitions)]);
        let response = client.send(&request, 12);
        response.responses[0]
            .partitions
            .iter()
            .map(|p| batches_in(p.records.as_ref().unwrap()).len())
            .collect::<Vec<_>>()
    };
    // Everything fits.
    assert_eq!(fetch(&mut client, 1 << 20, 1 << 20), vec![3, 3]);
    // One byte per partition: each partition's first batch would overflow. Only the very
    // first batch of the response comes anyway; later partitions get nothing.
    assert_eq!(fetch(&mut client, 1 << 20, 1), vec![1, 0]);
    // One byte for the whole response: the first batch only.
    assert_eq!(fetch(&mut client, 1, 1 << 20), vec![1, 0]);
}

#[test]
fn fetch_v13_names_topics_by_id() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::MetadataRequest;
    let broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic("by-id", 1);
    client.produce("by-id", 0, batch(&["x", "y"]));
    let metadata = client.send(
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(common::topic_name("by-id")))
        ])),
        12,
    );
    let id = metadata.topics[0].topic_id;
    let fetch_by = |client: &mut common::Client, id| {
        let request = fetch_request("", 0, 0, 0).with_topics(vec![FetchTopic::default()
            .with_topic_id(id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
        client.send(&request, 15).responses.remove(0)
    };
    let topic = fetch_by(&mut client, id);
    assert_eq!(topic.topic_id, id);
    assert_eq!(
        batches_in(topic.partitions[0].records.as_ref().unwrap()),
        vec![(0, 2)]
    );
    let unknown = fetch_by(&mut client, uuid::Uuid::from_u128(id.as_u128() ^ 1));
    assert_eq!(
        unknown.partitions[0].error_code,
        ResponseError::UnknownTopicId.code()
    );
}

#[test]
fn a_failed_acks_zero_produce_closes_the_connection() {
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    let (_, frame) = client.frame(&produce_request("nowhere", 0, batch(&["x"]), 0), 9);
    client.send_raw(&frame);
    // No response can carry the error, so the connection goes, as with Kafka.
    assert!(client.is_closed());
    broker.client().create_topic("somewhere", 1);
}
