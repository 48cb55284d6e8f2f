//! Data-plane handlers: `POST /v1/reserve`, `POST /v1/complete` and their batch forms.
//! Each parses JSON, lets the service validate and act, and writes the answer back.

use actix_web::web::{self, Json};
use log::debug;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::body::Object;
use super::error::{ApiError, ErrorBody};
use super::metrics::{outcome, ApiMetrics};
use crate::model::{
    BatchRequest, BatchResponse, CompleteRequest, CompleteResponse, ErrorCode, ReserveRequest,
    ReserveResponse,
};
use crate::service::LimiterService;

/// A batch envelope whose items stay raw JSON, so that one malformed item gets its own
/// `invalid_request` result instead of failing the whole batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// The items, in order.
    pub requests: Vec<Box<RawValue>>,
}

/// A JSON body as extracted: a failed extraction (already turned into an [`ApiError`]
/// answer by the app's `JsonConfig`) is kept, so that it is counted as `invalid`.
type Body<T> = Result<Json<Object<T>>, actix_web::Error>;

/// `POST /v1/reserve`.
#[utoipa::path(
    post,
    path = "/v1/reserve",
    tag = "data",
    summary = "Reserve every requirement of one call, all or nothing",
    description = "Takes every requirement or none. A denial is a 200 with `allowed: false`: for capacity with `retry_after_ms` > 0; with `error` `limit_decreasing:<key>` (and a long hint), `unknown_limit_key:<key>` or `exceeds_capacity:<key>` (hint 0, never retry); `backend_error` when the backend fails. Repeating an allowed lease id is allowed again without consuming more; a denied lease id stays denied.",
    request_body = ReserveRequest,
    responses(
        (status = 200, description = "Allowed or denied; see `allowed` and `error`.", body = ReserveResponse),
        (status = 400, description = "The body is not JSON, not `application/json`, misses a field, has an unknown one, or breaks a rule: `invalid_request` with a message naming the field.", body = ErrorBody),
        (status = 413, description = "The body exceeds `max_body_bytes` (default 1 MiB): `payload_too_large`.", body = ErrorBody),
    )
)]
pub async fn reserve(
    service: web::Data<LimiterService>,
    metrics: web::Data<ApiMetrics>,
    body: Body<ReserveRequest>,
) -> Result<Json<ReserveResponse>, actix_web::Error> {
    let answer: Result<ReserveResponse, actix_web::Error> = match body {
        Ok(body) => service
            .reserve(body.into_inner().0)
            .await
            .map_err(|e| ApiError::from(e).into()),
        Err(e) => Err(e),
    };
    metrics.count_reserve(
        answer
            .as_ref()
            .map_or(outcome::Reserve::Invalid, outcome::Reserve::of),
    );
    Ok(Json(answer?))
}

/// `POST /v1/complete`.
#[utoipa::path(
    post,
    path = "/v1/complete",
    tag = "data",
    summary = "Report what a call really used and release its holds",
    description = "Releases the concurrency holds of the lease and reconciles rolling reservations with the actual amounts (less frees capacity, more reserves the difference or records debt). Completing twice, or an unknown lease, is `ok` with no effect; `backend_error` when the backend fails.",
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "Applied (or a harmless no-op); see `ok` and `error`.", body = CompleteResponse),
        (status = 400, description = "The body is not JSON, not `application/json`, misses a field, has an unknown one, or breaks a rule: `invalid_request` with a message naming the field.", body = ErrorBody),
        (status = 413, description = "The body exceeds `max_body_bytes` (default 1 MiB): `payload_too_large`.", body = ErrorBody),
    )
)]
pub async fn complete(
    service: web::Data<LimiterService>,
    metrics: web::Data<ApiMetrics>,
    body: Body<CompleteRequest>,
) -> Result<Json<CompleteResponse>, actix_web::Error> {
    let answer: Result<CompleteResponse, actix_web::Error> = match body {
        Ok(body) => service
            .complete(body.into_inner().0)
            .await
            .map_err(|e| ApiError::from(e).into()),
        Err(e) => Err(e),
    };
    metrics.count_complete(
        answer
            .as_ref()
            .map_or(outcome::Complete::Invalid, outcome::Complete::of),
    );
    Ok(Json(answer?))
}

/// `POST /v1/reserve/batch`. Each item is counted; a batch refused as a whole (unreadable,
/// empty or too large) counts as one `invalid` reserve.
#[utoipa::path(
    post,
    path = "/v1/reserve/batch",
    tag = "data",
    summary = "Several independent reserves in one request",
    description = "Each item is a reserve of its own (no atomicity across items), applied in array order; `results[i]` answers `requests[i]`, and an invalid item gets `error: invalid_request` in its own result.",
    request_body = BatchRequest<ReserveRequest>,
    responses(
        (status = 200, description = "One result per request, in order.", body = BatchResponse<ReserveResponse>),
        (status = 400, description = "A malformed envelope (not JSON, not an object, unknown field, no `requests`) or 0 or more than `max_batch_items` items: `invalid_request`. A malformed item is answered in its own result instead.", body = ErrorBody),
        (status = 413, description = "The body exceeds `max_body_bytes` (default 1 MiB): `payload_too_large`.", body = ErrorBody),
    )
)]
pub async fn reserve_batch(
    service: web::Data<LimiterService>,
    metrics: web::Data<ApiMetrics>,
    body: Body<RawBatch>,
) -> Result<Json<BatchResponse<ReserveResponse>>, actix_web::Error> {
    let items = match batch_items(body, service.settings().max_batch_items) {
        Ok(items) => items,
        Err(e) => {
            metrics.count_reserve(outcome::Reserve::Invalid);
            return Err(e);
        }
    };
    let (valid, slots) = parse_items::<ReserveRequest>(items, "reserve");
    let answers = service.reserve_batch(valid).await;
    let results = merge(
        slots,
        answers,
        || ReserveResponse::error(ErrorCode::InvalidRequest, 0),
        || ReserveResponse::error(ErrorCode::BackendError, 0),
    );
    for result in &results {
        metrics.count_reserve(outcome::Reserve::of(result));
    }
    Ok(Json(BatchResponse { results }))
}

/// `POST /v1/complete/batch`. Each item is counted; a batch refused as a whole counts as one
/// `invalid` complete.
#[utoipa::path(
    post,
    path = "/v1/complete/batch",
    tag = "data",
    summary = "Several independent completes in one request",
    description = "Each item is a complete of its own, applied in array order; `results[i]` answers `requests[i]`, and an invalid item gets `error: invalid_request` in its own result.",
    request_body = BatchRequest<CompleteRequest>,
    responses(
        (status = 200, description = "One result per request, in order.", body = BatchResponse<CompleteResponse>),
        (status = 400, description = "A malformed envelope (not JSON, not an object, unknown field, no `requests`) or 0 or more than `max_batch_items` items: `invalid_request`. A malformed item is answered in its own result instead.", body = ErrorBody),
        (status = 413, description = "The body exceeds `max_body_bytes` (default 1 MiB): `payload_too_large`.", body = ErrorBody),
    )
)]
pub async fn complete_batch(
    service: web::Data<LimiterService>,
    metrics: web::Data<ApiMetrics>,
    body: Body<RawBatch>,
) -> Result<Json<BatchResponse<CompleteResponse>>, actix_web::Error> {
    let items = match batch_items(body, service.settings().max_batch_items) {
        Ok(items) => items,
        Err(e) => {
            metrics.count_complete(outcome::Complete::Invalid);
            return Err(e);
        }
    };
    let (valid, slots) = parse_items::<CompleteRequest>(items, "complete");
    let answers = service.complete_batch(valid).await;
    let results = merge(
        slots,
        answers,
        || CompleteResponse::error(ErrorCode::InvalidRequest),
        || CompleteResponse::error(ErrorCode::BackendError),
    );
    for result in &results {
        metrics.count_complete(outcome::Complete::of(result));
    }
    Ok(Json(BatchResponse { results }))
}

/// The items of a batch body that was read and holds 1..=`max` items.
fn batch_items(body: Body<RawBatch>, max: usize) -> Result<Vec<Box<RawValue>>, actix_web::Error> {
    Ok(check_size(body?.into_inner().into_inner().requests, max)?)
}

/// A batch must hold 1..=`max` items.
fn check_size<T>(items: Vec<T>, max: usize) -> Result<Vec<T>, ApiError> {
    if items.is_empty() || items.len() > max {
        return Err(ApiError::Invalid(format!(
            "requests: must hold 1 to {max} items (got {}); max_batch_items is {max}",
            items.len()
        )));
    }
    Ok(items)
}

/// Parses every item; returns the well-formed ones in order, and per position either
/// `None` (well-formed, answered by the service) or the parse error of that item.
fn parse_items<T: DeserializeOwned>(
    items: Vec<Box<RawValue>>,
    what: &str,
) -> (Vec<T>, Vec<Option<String>>) {
    let mut valid = Vec::with_capacity(items.len());
    let mut slots = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match serde_json::from_str::<Object<T>>(item.get()) {
            Ok(Object(request)) => {
                valid.push(request);
                slots.push(None);
            }
            Err(e) => {
                let message = format!("requests[{index}]: {e}");
                debug!("batch {what}: invalid item: {message}");
                slots.push(Some(message));
            }
        }
    }
    (valid, slots)
}

/// Puts the service's answers back at the positions of the well-formed items. `missing`
/// fills a slot the service did not answer (it always answers every item; this keeps a
/// short answer from shifting later results onto the wrong requests).
fn merge<R>(
    slots: Vec<Option<String>>,
    answers: Vec<R>,
    invalid: impl Fn() -> R,
    missing: impl Fn() -> R,
) -> Vec<R> {
    let mut answers = answers.into_iter();
    slots
        .into_iter()
        .map(|slot| match slot {
            None => answers.next().unwrap_or_else(&missing),
            Some(_) => invalid(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_positions() {
        let slots = vec![None, Some("bad".to_string()), None];
        let merged = merge(slots, vec![1, 3], || -1, || -2);
        assert_eq!(merged, vec![1, -1, 3]);
        let short = merge(vec![None, None], vec![7], || -1, || -2);
        assert_eq!(short, vec![7, -2]);
    }

    #[test]
    fn items_parse_independently() {
        let items = vec![
            serde_json::value::to_raw_value(&serde_json::json!({"lease_id": "x", "actuals": []}))
                .unwrap(),
            serde_json::value::to_raw_value(&serde_json::json!({"lease": "x"})).unwrap(),
        ];
        let (valid, slots) = parse_items::<CompleteRequest>(items, "complete");
        assert_eq!(valid.len(), 1);
        assert!(slots[0].is_none());
        assert!(slots[1]
            .as_deref()
            .is_some_and(|m| m.starts_with("requests[1]: unknown field")));
    }

    #[test]
    fn batch_size_is_bounded() {
        assert!(check_size(Vec::<u8>::new(), 2).is_err());
        assert!(check_size(vec![1, 2, 3], 2)
            .unwrap_err()
            .to_string()
            .contains("max_batch_items is 2"));
        assert_eq!(check_size(vec![1, 2], 2).unwrap(), vec![1, 2]);
    }
}
