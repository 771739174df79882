//! Bad input never crashes the broker nor hangs a connection: each case gets an error
//! response or a closed connection, and the broker keeps serving other clients.

mod common;

use bytes::{BufMut, BytesMut};
use common::{batch, Broker, Client};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;

/// The broker still answers a fresh client.
fn assert_serving(broker: &Broker) {
    let response = broker.client().send(&ApiVersionsRequest::default(), 0);
    assert_eq!(response.error_code, 0);
}

fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// A request header (v1) for `api_key` at `version`, with correlation id 7.
fn header(api_key: i16, version: i16) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i16(api_key);
    body.put_i16(version);
    body.put_i32(7);
    body.put_i16(-1); // null client id
    body
}

#[test]
fn malformed_frames_close_the_connection() {
    let broker = Broker::start(1, &[]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "text protocol",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("2 GiB length prefix", 0x7fff_ffffi32.to_be_bytes().to_vec()),
        ("negative length", (-1i32).to_be_bytes().to_vec()),
        ("frame shorter than a header", frame_of(&[0, 18])),
        ("garbage body", frame_of(&[0x55; 64])),
        (
            "truncated header fields",
            frame_of(&[0, 3, 0, 12, 0, 0, 0, 1, 0x7f, 0x7f]),
        ),
    ];
    for (what, bytes) in cases {
        let mut client = broker.client();
        client.send_raw(&bytes);
        assert!(client.is_closed(), "{what}: connection left open");
        assert_serving(&broker);
    }
}

#[test]
fn arrays_claiming_billions_of_elements_do_not_exhaust_memory() {
    let broker = Broker::start(1, &[]);
    // Metadata v1: the topics array says 2^31-1 entries, then the frame ends.
    let mut v1 = header(3, 1);
    v1.put_i32(i32::MAX);
    // Metadata v12 (flexible): a compact array of 2^32-2 entries (varint 0xffff_ffff).
    let mut v12 = BytesMut::new();
    v12.put_i16(3);
    v12.put_i16(12);
    v12.put_i32(7);
    v12.put_i16(-1); // null client id
    v12.put_u8(0); // no tagged fields
    v12.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    for body in [v1, v12] {
        let mut client = broker.client();
        client.send_raw(&frame_of(&body));
        assert!(client.is_closed());
        assert_serving(&broker);
    }
}

#[test]
fn a_truncated_frame_is_dropped_when_the_client_goes_away() {
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    client.send_raw(&100i32.to_be_bytes());
    client.send_raw(&[0u8; 10]);
    client.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(client.is_closed());
    assert_serving(&broker);
}

#[test]
fn unknown_api_keys_and_unsupported_versions() {
    let broker = Broker::start(1, &[]);

    // An API key Kafka does not have, and one Spate does not serve (JoinGroup).
    for key in [9_999i16, 11] {
        let mut client = broker.client();
        client.send_raw(&frame_of(&header(key, 0)));
        assert!(client.is_closed(), "api key {key}");
        assert_serving(&broker);
    }

    // Produce at a version no broker has: closed.
    let mut client = broker.client();
    client.send_raw(&frame_of(&header(0, 99)));
    assert!(client.is_closed());

    // ApiVersions at a future version: a v0 answer with UNSUPPORTED_VERSION and the table.
    let mut client = broker.client();
    let mut body = header(18, 99);
    body.put_slice(&[0; 8]);
    client.send_raw(&frame_of(&body));
    let mut frame = client.read_frame().expect("an ApiVersions answer");
    let header = ResponseHeader::decode(&mut frame, 0).unwrap();
    assert_eq!(header.correlation_id, 7);
    let response = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
    assert_eq!(
        response.error_code,
        ResponseError::UnsupportedVersion.code()
    );
    assert!(response.api_keys.iter().any(|k| k.api_key == 18));
    assert_serving(&broker);
}

#[test]
fn produce_errors_are_per_partition() {
    let broker = Broker::start(1, &[]);
    let mut client: Client = broker.client();
    client.create_topic("strict", 1);

    let mut corrupt = BytesMut::from(&batch(&["payload"])[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let (error, _) = client.produce("strict", 0, corrupt.freeze());
    assert_eq!(error, ResponseError::CorruptMessage.code());

    // Magic byte 1 (offset 16, outside the CRC): a well-formed but unacceptable batch.
    let mut old_format = BytesMut::from(&batch(&["payload"])[..]);
    old_format[16] = 1;
    let (error, _) = client.produce("strict", 0, old_format.freeze());
    assert_eq!(error, ResponseError::InvalidRecord.code());

    let (error, _) = client.produce(
        "strict",
        0,
        bytes::Bytes::from_static(b"not a batch at all"),
    );
    assert_eq!(error, ResponseError::CorruptMessage.code());

    let (error, _) = client.produce("no-such-topic", 0, batch(&["x"]));
    assert_eq!(error, ResponseError::UnknownTopicOrPartition.code());
    let (error, _) = client.produce("strict", 5, batch(&["x"]));
    assert_eq!(error, ResponseError::UnknownTopicOrPartition.code());

    let request = common::produce_request("strict", 0, batch(&["x"]), 2);
    let response = client.send(&request, 9);
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidRequiredAcks.code()
    );

    // The log is intact: the good batch after all that lands at offset 0.
    assert_eq!(client.produce("strict", 0, batch(&["good"])), (0, 0));
}

#[test]
fn a_batch_over_max_message_bytes_is_refused() {
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    let request = kafka_protocol::messages::CreateTopicsRequest::default().with_topics(vec![
        kafka_protocol::messages::create_topics_request::CreatableTopic::default()
            .with_name(common::topic_name("small"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("max.message.bytes"))
                    .with_value(Some(StrBytes::from_static_str("100"))),
            ]),
    ]);
    assert_eq!(client.send(&request, 7).topics[0].error_code, 0);
    let big = "x".repeat(200);
    let (error, _) = client.produce("small", 0, batch(&[big.as_str()]));
    assert_eq!(error, ResponseError::MessageTooLarge.code());
    assert_eq!(client.produce("small", 0, batch(&["tiny"])), (0, 0));
}
