//! InitProducerId: gives an idempotent producer its id (Kafka clients enable idempotence by
//! default). Each partition's log checks the producer's sequences and answers a retried batch
//! with its original offsets (spate-log's producer state). Transactions are not served: a
//! transactional id is refused at once rather than left to time out.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::Context;

/// "No producer id yet" in the request (v3+ sends the current id to bump its epoch).
const NO_PRODUCER_ID: i64 = -1;

pub fn handle(ctx: &Context, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if request.transactional_id.is_some() {
        return response
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(ProducerId(NO_PRODUCER_ID))
            .with_producer_epoch(-1);
    }
    if request.producer_id.0 != NO_PRODUCER_ID && request.producer_epoch < i16::MAX - 1 {
        // An existing producer bumping its epoch (after a fatal error on its side).
        return response
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    response
        .with_producer_id(ProducerId(ctx.shard.next_producer_id()))
        .with_producer_epoch(0)
}
