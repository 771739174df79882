//! Idempotent produce through the real binary: a raw client re-sends a batch with the same
//! producer id, epoch and sequence and gets the original offset back while the log end stays
//! put; gaps and fenced epochs get Kafka's errors; the state outlives restarts and crashes.

mod common;

use bytes::{Bytes, BytesMut};
use common::{batches_in, Broker, Client};
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;

/// One v2 batch of `count` records from producer `id` at `epoch`, from sequence `seq`.
fn producer_batch(id: i64, epoch: i16, seq: i32, count: i32, transactional: bool) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i,
            timestamp: common::BATCH_TIMESTAMP,
            key: None,
            value: Some(Bytes::from(format!("{id}/{epoch}/{}", seq + i))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

fn init_producer_id(client: &mut Client) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_transaction_timeout_ms(60_000);
    let response = client.send(&request, 4);
    assert_eq!(response.error_code, 0);
    (response.producer_id.0, response.producer_epoch)
}

fn log_end(client: &mut Client, topic: &str) -> i64 {
    client.fetch(topic, 0, 0, 0).high_watermark
}

#[test]
fn a_resent_batch_gets_its_original_offset_and_is_not_appended_again() {
    let broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic("idem", 1);
    let (id, epoch) = init_producer_id(&mut client);
    assert_eq!(client.produce("idem", 0, common::batch(&["plain"])), (0, 0));
    assert_eq!(
        client.produce("idem", 0, producer_batch(id, epoch, 0, 3, false)),
        (0, 1)
    );
    assert_eq!(
        client.produce("idem", 0, producer_batch(id, epoch, 3, 2, false)),
        (0, 4)
    );
    assert_eq!(log_end(&mut client, "idem"), 6);
    // The answer to the first attempt was "lost": the client sends it again, twice.
    for _ in 0..2 {
        assert_eq!(
            client.produce("idem", 0, producer_batch(id, epoch, 0, 3, false)),
            (0, 1)
        );
        assert_eq!(
            client.produce("idem", 0, producer_batch(id, epoch, 3, 2, false)),
            (0, 4)
        );
    }
    assert_eq!(log_end(&mut client, "idem"), 6);
    let fetched = client.fetch("idem", 0, 0, 0);
    assert_eq!(
        batches_in(fetched.records.as_ref().unwrap()),
        vec![(0, 1), (1, 3), (4, 2)]
    );
    // A lost batch (a gap), and an epoch older than the producer's, are refused.
    let (code, _) = client.produce("idem", 0, producer_batch(id, epoch, 9, 1, false));
    assert_eq!(code, ResponseError::OutOfOrderSequenceNumber.code());
    let (code, _) = client.produce("idem", 0, producer_batch(id, epoch + 1, 0, 1, false));
    assert_eq!(code, 0);
    let (code, _) = client.produce("idem", 0, producer_batch(id, epoch, 5, 1, false));
    assert_eq!(code, ResponseError::InvalidProducerEpoch.code());
    assert_eq!(log_end(&mut client, "idem"), 7);
}

#[test]
fn transactional_batches_are_refused() {
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    client.create_topic("txn", 1);
    let (id, epoch) = init_producer_id(&mut client);
    let (code, _) = client.produce("txn", 0, producer_batch(id, epoch, 0, 1, true));
    assert_eq!(code, ResponseError::InvalidTxnState.code());
    assert_eq!(log_end(&mut client, "txn"), 0);
}

#[test]
fn duplicates_are_recognized_after_a_clean_restart_and_after_a_crash() {
    let mut broker = Broker::start(1, &[]);
    let mut client = broker.client();
    client.create_topic("lasting", 1);
    let (id, epoch) = init_producer_id(&mut client);
    for i in 0..6 {
        let sent = producer_batch(id, epoch, i * 2, 2, false);
        assert_eq!(client.produce("lasting", 0, sent), (0, i as i64 * 2));
    }
    drop(client);
    broker.terminate();
    broker.launch();
    let mut client = broker.client();
    // Each of the last five batches is still known, with its offsets.
    for i in 1..6 {
        let sent = producer_batch(id, epoch, i * 2, 2, false);
        assert_eq!(client.produce("lasting", 0, sent), (0, i as i64 * 2));
    }
    assert_eq!(
        client.produce("lasting", 0, producer_batch(id, epoch, 12, 1, false)),
        (0, 12)
    );
    drop(client);
    broker.stop(libc::SIGKILL);
    broker.launch();
    let mut client = broker.client();
    assert_eq!(log_end(&mut client, "lasting"), 13);
    assert_eq!(
        client.produce("lasting", 0, producer_batch(id, epoch, 12, 1, false)),
        (0, 12)
    );
    assert_eq!(
        client.produce("lasting", 0, producer_batch(id, epoch, 10, 2, false)),
        (0, 10)
    );
    assert_eq!(log_end(&mut client, "lasting"), 13);
    // A new producer id after the restarts does not collide with the old one.
    let (new_id, _) = init_producer_id(&mut client);
    assert_ne!(new_id, id);
}
