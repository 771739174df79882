//! One module per Kafka API, named for it. `dispatch` decodes a request, runs its handler
//! and encodes the response; `SUPPORTED_APIS` is the table ApiVersions advertises.

use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::{FutureExt, LocalBoxFuture};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use spate_shard::{Records, Shard};

use crate::zero_copy::FetchSegment;

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod elect_leaders;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod partition_queries;
pub mod produce;
pub mod sync_group;

/// The APIs Spate serves, with the version ranges Kafka 4.0 serves for them.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
];

pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// What a handler sees of its request besides the body.
pub struct Context {
    pub shard: Rc<Shard>,
    pub header: RequestHeader,
    /// The request's client id and the client's address (`/IP`); only JoinGroup keeps
    /// them (DescribeGroups shows them).
    pub client_id: String,
    pub client_host: String,
}

impl Context {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }
}

/// Why a request got no response and its connection must close.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("{api:?} v{version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("cannot decode {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("an acks=0 produce failed on {partitions} partition(s); closing, as Kafka does")]
    UnacknowledgedProduceFailed { partitions: usize },
    #[error("cannot encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },
}

/// A response ready to write.
pub enum Response {
    /// A whole encoded frame.
    Frame(Bytes),
    /// A Fetch response: encoded bytes interleaved with record ranges to send zero-copy.
    Fetch(Vec<FetchSegment<Records>>),
}

/// What handling a request gave.
pub enum Dispatched {
    /// The response (`None`: the request wants none, Produce with acks=0).
    Now(Option<Response>),
    /// A Produce response that waits for appends on other shards or for replication
    /// (acks=all), its appends handed off: the connection may handle its next request
    /// meanwhile.
    Later(LocalBoxFuture<'static, Result<Option<Response>, RequestError>>),
}

/// Handles one request frame (header and body). `Err`: close the connection.
pub async fn dispatch(
    shard: &Rc<Shard>,
    mut frame: Bytes,
    client_host: &str,
) -> Result<Dispatched, RequestError> {
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(raw_key).map_err(|_| RequestError::UnknownApi(raw_key))?;
    let Some((min, max)) = supported_versions(api) else {
        return Err(RequestError::UnknownApi(raw_key));
    };
    if version < min || version > max {
        if api == ApiKey::ApiVersions {
            // Kafka answers an ApiVersions it cannot parse with a v0 response holding
            // UNSUPPORTED_VERSION and its version table, so the client can retry lower.
            return encode(correlation_id, 0, &api_versions::unsupported())
                .map(|frame| Dispatched::Now(Some(Response::Frame(frame))));
        }
        return Err(RequestError::UnsupportedVersion { api, version });
    }
    // Produce carves its records out of the whole frame (see `produce::carve`).
    let whole = frame.clone();
    let mut header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| RequestError::Malformed {
            what: "request header",
            reason: e.to_string(),
        })?;
    // The client id is a slice of the frame; it would keep the frame shared.
    let (client_id, client_host) = match header.client_id.take() {
        Some(id) if api == ApiKey::JoinGroup => (id.to_string(), client_host.to_string()),
        _ => (String::new(), String::new()),
    };
    let ctx = Context {
        shard: shard.clone(),
        header,
        client_id,
        client_host,
    };
    let now = match api {
        ApiKey::ApiVersions => respond(
            &ctx,
            api_versions::handle(&ctx, decode(&mut frame, version)?),
        ),
        ApiKey::Metadata => respond(
            &ctx,
            metadata::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::Produce => {
            let request = decode(&mut frame, version)?;
            drop(frame);
            match produce::handle(&ctx, request, whole).await? {
                Some(produced) if !produced.is_ready() => {
                    return Ok(Dispatched::Later(
                        async move {
                            let response = produced.response(&ctx.shard).await;
                            respond(&ctx, response)
                        }
                        .boxed_local(),
                    ))
                }
                Some(produced) => respond(&ctx, produced.response(&ctx.shard).await),
                None => Ok(None),
            }
        }
        ApiKey::Fetch => fetch::handle(&ctx, decode(&mut frame, version)?)
            .await
            .map(|segments| Some(Response::Fetch(segments))),
        ApiKey::ListOffsets => respond(
            &ctx,
            list_offsets::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::CreateTopics => respond(
            &ctx,
            create_topics::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::DeleteTopics => respond(
            &ctx,
            delete_topics::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::OffsetForLeaderEpoch => respond(
            &ctx,
            offset_for_leader_epoch::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::DeleteRecords => respond(
            &ctx,
            delete_records::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::AlterConfigs => respond(
            &ctx,
            alter_configs::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::IncrementalAlterConfigs => respond(
            &ctx,
            incremental_alter_configs::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::DescribeLogDirs => respond(
            &ctx,
            describe_log_dirs::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::CreatePartitions => respond(
            &ctx,
            create_partitions::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::ElectLeaders => respond(
            &ctx,
            elect_leaders::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::DescribeProducers => respond(
            &ctx,
            describe_producers::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::DescribeCluster => respond(
            &ctx,
            describe_cluster::handle(&ctx, decode(&mut frame, version)?),
        ),
        ApiKey::InitProducerId => respond(
            &ctx,
            init_producer_id::handle(&ctx, decode(&mut frame, version)?),
        ),
        ApiKey::DescribeConfigs => respond(
            &ctx,
            describe_configs::handle(&ctx, decode(&mut frame, version)?),
        ),
        ApiKey::FindCoordinator => respond(
            &ctx,
            find_coordinator::handle(&ctx, decode(&mut frame, version)?),
        ),
        ApiKey::JoinGroup => respond(
            &ctx,
            join_group::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::SyncGroup => respond(
            &ctx,
            sync_group::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::Heartbeat => respond(
            &ctx,
            heartbeat::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::LeaveGroup => respond(
            &ctx,
            leave_group::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::OffsetCommit => respond(
            &ctx,
            offset_commit::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::OffsetFetch => respond(
            &ctx,
            offset_fetch::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::ListGroups => respond(
            &ctx,
            list_groups::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::DescribeGroups => respond(
            &ctx,
            describe_groups::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::DeleteGroups => respond(
            &ctx,
            delete_groups::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        ApiKey::OffsetDelete => respond(
            &ctx,
            offset_delete::handle(&ctx, decode(&mut frame, version)?).await,
        ),
        _ => Err(RequestError::UnknownApi(raw_key)),
    };
    now.map(Dispatched::Now)
}

fn decode<T: Decodable>(frame: &mut Bytes, version: i16) -> Result<T, RequestError> {
    T::decode(frame, version).map_err(|e| RequestError::Malformed {
        what: short_type_name::<T>(),
        reason: e.to_string(),
    })
}

fn respond<R: Encodable + HeaderVersion>(
    ctx: &Context,
    response: R,
) -> Result<Option<Response>, RequestError> {
    encode(ctx.header.correlation_id, ctx.version(), &response)
        .map(|frame| Some(Response::Frame(frame)))
}

/// Encodes a whole response frame: size, response header, body.
pub fn encode<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    response: &R,
) -> Result<Bytes, RequestError> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = R::header_version(version);
    let encode_error = |e: &dyn std::fmt::Display| RequestError::Encode {
        what: short_type_name::<R>(),
        reason: format!("v{version}: {e}"),
    };
    let size = header
        .compute_size(header_version)
        .map_err(|e| encode_error(&e))?
        + response
            .compute_size(version)
            .map_err(|e| encode_error(&e))?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| encode_error(&e))?;
    response
        .encode(&mut buf, version)
        .map_err(|e| encode_error(&e))?;
    Ok(buf.freeze())
}

fn short_type_name<T>() -> &'static str {
    std::any::type_name::<T>()
        .rsplit("::")
        .next()
        .unwrap_or("message")
}
