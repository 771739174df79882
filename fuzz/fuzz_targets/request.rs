//! Feeds arbitrary request frames (what follows the 4-byte size) through the decoding the
//! broker does before any handler runs: the API key and version gate of `SUPPORTED_APIS`,
//! the request header, then the body with kafka-protocol's decoders. Anything a client sends
//! must decode or fail with an error; a panic or an abort (such as a huge array length
//! sizing an allocation) is a crash here. The broker's allocator is installed, as in `spate`.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;
use spate_net::handlers::supported_versions;
use spate_net::lazy_alloc::LazyHugeAlloc;

#[global_allocator]
static ALLOCATOR: LazyHugeAlloc = LazyHugeAlloc;

fuzz_target!(|data: &[u8]| {
    let Some(prefix) = data.get(..4) else {
        return;
    };
    let raw_key = i16::from_be_bytes([prefix[0], prefix[1]]);
    let version = i16::from_be_bytes([prefix[2], prefix[3]]);
    let Ok(api) = ApiKey::try_from(raw_key) else {
        return;
    };
    let Some((min, max)) = supported_versions(api) else {
        return;
    };
    if version < min || version > max {
        return;
    }
    let mut frame = Bytes::copy_from_slice(data);
    if RequestHeader::decode(&mut frame, api.request_header_version(version)).is_ok() {
        let _ = RequestKind::decode(api, &mut frame, version);
    }
});
