//! DescribeCluster: the cluster id, the controller and the brokers of the shard's topic table
//! (fenced ones only when v2+ asks for them, flagged). Asking for the controller endpoints
//! (`endpoint_type` = 2) gets UNSUPPORTED_ENDPOINT_TYPE, as from a Kafka broker.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::Context;

/// Kafka's endpoint types.
const BROKERS: i8 = 1;
/// Kafka's "authorized operations not requested".
const OPERATIONS_OMITTED: i32 = i32::MIN;
/// The cluster operations Kafka defines (AclOperation codes CREATE 5, ALTER 7, DESCRIBE 8,
/// CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12). Spate has
/// no authorizer, so every client may do all of them.
const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

pub fn handle(ctx: &Context, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let config = ctx.shard.config();
    let table = ctx.shard.topics();
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(StrBytes::from_string(table.cluster_id().to_string()));
    if ctx.version() >= 1 && request.endpoint_type != BROKERS {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_string(format!(
                "endpoint type {} is not served: this broker describes brokers (1) only",
                request.endpoint_type
            ))))
            .with_controller_id(BrokerId(-1))
            .with_cluster_authorized_operations(OPERATIONS_OMITTED);
    }
    let brokers = table
        .brokers()
        .values()
        .filter(|b| request.include_fenced_brokers || !b.fenced)
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.clone().map(StrBytes::from_string))
                .with_is_fenced(b.fenced)
        })
        .collect();
    response
        // As a KRaft broker does: clients reach the controllers through a broker (this one).
        .with_controller_id(BrokerId(config.node_id))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(match request.include_cluster_authorized_operations {
            true => CLUSTER_OPERATIONS,
            false => OPERATIONS_OMITTED,
        })
}
