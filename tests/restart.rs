//! Restarts: a clean stop (SIGTERM) and a crash (SIGKILL) both keep acknowledged data, and
//! topics come back with their ids.

mod common;

use common::{batch, batches_in, write_profile, Broker};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::MetadataRequest;

fn topic_id(client: &mut common::Client, topic: &str) -> (uuid_like::Id, usize) {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(common::topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let response = client.send(&request, 12);
    let t = &response.topics[0];
    assert_eq!(t.error_code, 0);
    (uuid_like::Id(t.topic_id.as_u128()), t.partitions.len())
}

mod uuid_like {
    /// A topic id, compared across restarts.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Id(pub u128);
}

#[test]
fn sigterm_then_restart_keeps_topics_and_data() {
    let mut broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic("kept", 3);
    for p in 0..3 {
        assert_eq!(client.produce("kept", p, batch(&["one", "two"])), (0, 0));
    }
    let before = topic_id(&mut client, "kept");
    drop(client);

    broker.terminate();
    assert!(
        broker.log().contains("every partition closed"),
        "{}",
        broker.log()
    );
    broker.launch();

    let mut client = broker.client();
    assert_eq!(topic_id(&mut client, "kept"), before);
    for p in 0..3 {
        let data = client.fetch("kept", p, 0, 0);
        assert_eq!(data.high_watermark, 2);
        assert_eq!(batches_in(data.records.as_ref().unwrap()), vec![(0, 2)]);
        // Appends continue after the recovered end.
        assert_eq!(client.produce("kept", p, batch(&["three"])), (0, 2));
    }
}

#[test]
fn sigkill_keeps_what_was_acknowledged_with_a_flush_per_message() {
    let profile_dir = tempfile::tempdir().unwrap();
    let profile = write_profile(profile_dir.path(), "log.flush.interval.messages: 1\n");
    let mut broker = Broker::start(1, &["--config", profile.to_str().unwrap()]);
    let mut client = broker.client();
    client.create_topic("durable", 1);
    for i in 0..5 {
        assert_eq!(
            client.produce("durable", 0, batch(&[&format!("r{i}")])),
            (0, i)
        );
    }
    drop(client);

    let status = broker.stop(libc::SIGKILL);
    assert!(!status.success());
    broker.launch();

    let mut client = broker.client();
    let data = client.fetch("durable", 0, 0, 0);
    assert_eq!(data.high_watermark, 5);
    let expected: Vec<_> = (0..5).map(|o| (o, 1)).collect();
    assert_eq!(batches_in(data.records.as_ref().unwrap()), expected);
}

#[test]
fn sigterm_ends_long_polls_in_progress_and_exits_cleanly() {
    let mut broker = Broker::start(2, &[]);
    let mut admin = broker.client();
    admin.create_topic("parked", 4);
    // Fetches parked far longer than the test's patience, on partitions of both shards.
    let wait_ms = 4 * common::PATIENCE.as_millis() as i32;
    let mut parked: Vec<_> = (0..4)
        .map(|p| {
            let mut client = broker.client();
            let (_, frame) = client.frame(&common::fetch_request("parked", p, 0, wait_ms), 12);
            client.send_raw(&frame);
            client
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // `terminate` fails the test if the broker is still running after PATIENCE.
    broker.terminate();
    for client in &mut parked {
        // Answered or closed, but not left hanging.
        let _ = client.read_frame();
    }
}

#[test]
fn sigint_stops_cleanly_too() {
    let mut broker = Broker::start(1, &[]);
    let mut client = broker.client();
    client.create_topic("interrupted", 1);
    assert_eq!(client.produce("interrupted", 0, batch(&["x"])), (0, 0));
    drop(client);
    let status = broker.stop(libc::SIGINT);
    assert!(status.success(), "{status}:\n{}", broker.log());
    broker.launch();
    let data = broker.client().fetch("interrupted", 0, 0, 0);
    assert_eq!(batches_in(data.records.as_ref().unwrap()), vec![(0, 1)]);
}

/// After a crash every shard recovers its partitions before any shard accepts a client:
/// with SO_REUSEPORT a connection may land on any shard, and one that listened early would
/// answer UNKNOWN_TOPIC_OR_PARTITION for partitions another shard was still opening.
#[test]
fn no_shard_listens_before_every_shard_has_recovered() {
    const PARTITIONS: i32 = 64;
    let mut broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic("wide", PARTITIONS);
    for p in 0..PARTITIONS {
        assert_eq!(client.produce("wide", p, batch(&["a"])), (0, 0));
    }
    drop(client);
    broker.stop(libc::SIGKILL);

    broker.launch();
    // The first request, as soon as a connection is accepted, finds every partition.
    let mut client = broker.client();
    for p in 0..PARTITIONS {
        assert_eq!(
            client.produce("wide", p, batch(&["b"])),
            (0, 1),
            "partition {p}"
        );
    }
    let log = broker.log();
    let lines: Vec<&str> = log.lines().collect();
    let last_started = lines
        .iter()
        .rposition(|l| l.contains("shard started"))
        .expect("no shard started");
    let first_listening = lines
        .iter()
        .position(|l| l.contains("listening on") && !l.contains("spate starting"))
        .expect("no shard listened");
    assert!(
        last_started < first_listening,
        "a shard listened before every shard had started:\n{log}"
    );
}

/// A client that stops reading holds a response write forever; SIGTERM must still stop the
/// broker (after a grace period) instead of waiting for that write.
#[test]
fn sigterm_stops_even_when_a_client_stops_reading() {
    let mut broker = Broker::start(1, &[]);
    let mut client = broker.client();
    client.create_topic("big", 1);
    let value = "v".repeat(500_000);
    for _ in 0..4 {
        assert_eq!(client.produce("big", 0, batch(&[&value])).0, 0);
    }
    // Far more fetched bytes than the socket buffers hold, and never read.
    for _ in 0..64 {
        let (_, frame) = client.frame(&common::fetch_request("big", 0, 0, 0), 12);
        client.send_raw(&frame);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    broker.terminate();
    drop(client);
}
