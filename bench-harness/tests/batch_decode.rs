//! Batches the generator builds decode with kafka-protocol's reference decoder and pass
//! spate-core's checks, compressed or not.

use bytes::Bytes;
use kafka_protocol::records::{Compression as KCompression, RecordBatchDecoder};
use spate_bench::batch::{records, BatchBuilder};
use spate_bench::payload::{Stamp, HEADER_LEN};
use spate_bench::workload::Compression;

/// (key, value) of each record.
type Expected = Vec<(Option<Vec<u8>>, Vec<u8>)>;

fn build(compression: Compression) -> (Bytes, Expected) {
    let mut b = BatchBuilder::new(64 * 1024);
    let mut expect = Vec::new();
    for i in 0..300u64 {
        let mut stamp = [0u8; HEADER_LEN];
        Stamp {
            run: 1,
            producer: 2,
            sequence: i,
            sent_ns: 1000 + i,
        }
        .write(&mut stamp);
        let filler = vec![(i % 251) as u8; (i % 200) as usize];
        let key = (i % 3 == 0).then(|| format!("key-{i}").into_bytes());
        b.append(key.as_deref(), &[&stamp, &filler]);
        expect.push((key, [&stamp[..], &filler].concat()));
    }
    (b.finish(compression, 1_700_000_000_000).unwrap(), expect)
}

#[test]
fn decodes_with_kafka_protocol() {
    for (ours, theirs) in [
        (Compression::None, KCompression::None),
        (Compression::Gzip, KCompression::Gzip),
        (Compression::Snappy, KCompression::Snappy),
    ] {
        let (batch, expect) = build(ours);
        spate_core::record_batch::validate(&batch).unwrap();
        let mut buf = batch.clone();
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        assert_eq!(set.compression, theirs);
        assert_eq!(set.records.len(), expect.len());
        for (i, (r, (key, value))) in set.records.iter().zip(&expect).enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.timestamp, 1_700_000_000_000);
            assert_eq!(r.key.as_deref(), key.as_deref());
            assert_eq!(r.value.as_deref(), Some(&value[..]));
            let stamp = Stamp::read(value).unwrap();
            assert_eq!(stamp.sequence, i as u64);
        }
    }
}

#[test]
fn own_record_walker_agrees_with_kafka_protocol() {
    let (batch, expect) = build(Compression::None);
    let ours: Vec<_> = records(&batch).map(|r| r.unwrap()).collect();
    assert_eq!(ours.len(), expect.len());
    for (i, (r, (key, value))) in ours.iter().zip(&expect).enumerate() {
        assert_eq!(r.offset_delta, i as i64);
        assert_eq!(r.key, key.as_deref());
        assert_eq!(r.value, Some(&value[..]));
    }
}

#[test]
fn builder_respects_the_size_limit() {
    let mut b = BatchBuilder::new(4096);
    let value = [7u8; 100];
    let mut n = 0;
    while b.fits(0, value.len()) {
        b.append(None, &[&value]);
        n += 1;
    }
    let batch = b.finish(Compression::None, 0).unwrap();
    assert!(batch.len() <= 4096, "{}", batch.len());
    assert!(batch.len() > 4096 - 200, "{}", batch.len());
    let header = spate_core::record_batch::validate(&batch).unwrap();
    assert_eq!(header.record_count, n);
}
