//! Data-plane handlers: `POST /v1/reserve`, `POST /v1/complete` and their batch forms.
//! Each parses JSON, lets the service validate and act, and writes the answer back.

use actix_web::web::{self, Json};
use log::debug;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::body::Object;
use super::error::ApiError;
use crate::model::{
    BatchResponse, CompleteRequest, CompleteResponse, ErrorCode, ReserveRequest, ReserveResponse,
};
use crate::service::LimiterService;

/// A batch envelope whose items stay raw JSON, so that one malformed item gets its own
/// `invalid_request` result instead of failing the whole batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// The items, in order.
    pub requests: Vec<serde_json::Value>,
}

/// `POST /v1/reserve`.
pub async fn reserve(
    service: web::Data<LimiterService>,
    body: Json<Object<ReserveRequest>>,
) -> Result<Json<ReserveResponse>, ApiError> {
    Ok(Json(service.reserve(&body.into_inner().0).await?))
}

/// `POST /v1/complete`.
pub async fn complete(
    service: web::Data<LimiterService>,
    body: Json<Object<CompleteRequest>>,
) -> Result<Json<CompleteResponse>, ApiError> {
    Ok(Json(service.complete(&body.into_inner().0).await?))
}

/// `POST /v1/reserve/batch`.
pub async fn reserve_batch(
    service: web::Data<LimiterService>,
    body: Json<Object<RawBatch>>,
) -> Result<Json<BatchResponse<ReserveResponse>>, ApiError> {
    let items = check_size(
        body.into_inner().into_inner().requests,
        service.settings().max_batch_items,
    )?;
    let (valid, slots) = parse_items::<ReserveRequest>(items, "reserve");
    let answers = service.reserve_batch(&valid).await;
    let results = merge(
        slots,
        answers,
        || ReserveResponse::error(ErrorCode::InvalidRequest, 0),
        || ReserveResponse::error(ErrorCode::BackendError, 0),
    );
    Ok(Json(BatchResponse { results }))
}

/// `POST /v1/complete/batch`.
pub async fn complete_batch(
    service: web::Data<LimiterService>,
    body: Json<Object<RawBatch>>,
) -> Result<Json<BatchResponse<CompleteResponse>>, ApiError> {
    let items = check_size(
        body.into_inner().into_inner().requests,
        service.settings().max_batch_items,
    )?;
    let (valid, slots) = parse_items::<CompleteRequest>(items, "complete");
    let answers = service.complete_batch(&valid).await;
    let results = merge(
        slots,
        answers,
        || CompleteResponse::error(ErrorCode::InvalidRequest),
        || CompleteResponse::error(ErrorCode::BackendError),
    );
    Ok(Json(BatchResponse { results }))
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
    items: Vec<serde_json::Value>,
    what: &str,
) -> (Vec<T>, Vec<Option<String>>) {
    let mut valid = Vec::with_capacity(items.len());
    let mut slots = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match serde_json::from_value::<Object<T>>(item) {
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
            serde_json::json!({"lease_id": "x", "actuals": []}),
            serde_json::json!({"lease": "x"}),
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
