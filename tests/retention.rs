//! Retention runs on its own schedule (`log.retention.check.interval.ms`): old segments go
//! and the log start offset moves, with no client request to trigger it.

mod common;

use std::time::{Duration, Instant};

use common::{batch_at, write_profile, Broker, BATCH_TIMESTAMP};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::protocol::StrBytes;

#[test]
fn expired_segments_are_deleted_by_the_retention_schedule() {
    let profile_dir = tempfile::tempdir().unwrap();
    let profile = write_profile(profile_dir.path(), "log.retention.check.interval.ms: 50\n");
    let broker = Broker::start(1, &["--config", profile.to_str().unwrap()]);
    let mut client = broker.client();
    let config = |k: &str, v: &str| {
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_string(k.into()))
            .with_value(Some(StrBytes::from_string(v.into())))
    };
    // Each batch is a second younger than the next, so with segment.ms 1 every append rolls
    // (Kafka rolls by record time); all are stamped in 2023, long expired.
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(common::topic_name("expiring"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![
            config("segment.ms", "1"),
            config("retention.ms", "1000"),
        ])]);
    assert_eq!(client.send(&request, 7).topics[0].error_code, 0);
    for i in 0..3 {
        let records = batch_at(BATCH_TIMESTAMP + i * 1_000, &["old"]);
        assert_eq!(client.produce("expiring", 0, records), (0, i));
    }

    let deadline = Instant::now() + common::PATIENCE;
    loop {
        let p = client.fetch("expiring", 0, 2, 0);
        assert_eq!(p.error_code, 0);
        if p.log_start_offset > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention never ran:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Reading below the new start is out of range, as in Kafka.
    let p = client.fetch("expiring", 0, 0, 0);
    assert_eq!(
        p.error_code,
        kafka_protocol::ResponseError::OffsetOutOfRange.code()
    );
}
