//! Control-plane handlers: define a limit, list limits, read one limit with its live usage.

use actix_web::web::{self, Json};
use serde::{Deserialize, Serialize};

use super::body::Object;
use super::error::ApiError;
use crate::model::{LimitDefinition, LimitInfo, LimitStatus};
use crate::service::LimiterService;

/// Answer of `PUT /v1/admin/limits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutLimitResponse {
    /// Always true on a 200.
    pub ok: bool,
    /// `active`, or `decreasing` when the new capacity waits for usage to drop.
    pub status: LimitStatus,
}

/// Answer of `GET /v1/admin/limits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitList {
    /// Every limit, sorted by key, with live usage.
    pub limits: Vec<LimitInfo>,
}

/// Answer of `GET /v1/admin/limits/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneLimit {
    /// The limit with live usage.
    pub limit: LimitInfo,
}

/// `PUT /v1/admin/limits`: creates or updates a limit.
pub async fn put_limit(
    service: web::Data<LimiterService>,
    body: Json<Object<LimitDefinition>>,
) -> Result<Json<PutLimitResponse>, ApiError> {
    let status = service.define(body.into_inner().into_inner()).await?;
    Ok(Json(PutLimitResponse { ok: true, status }))
}

/// `GET /v1/admin/limits`.
pub async fn list_limits(service: web::Data<LimiterService>) -> Result<Json<LimitList>, ApiError> {
    Ok(Json(LimitList {
        limits: service.list().await?,
    }))
}

/// `GET /v1/admin/limits/{key}`; the key arrives percent-decoded (`global%3Allm...` and
/// `global:llm...` name the same limit).
pub async fn get_limit(
    service: web::Data<LimiterService>,
    key: web::Path<String>,
) -> Result<Json<OneLimit>, ApiError> {
    let key = key.into_inner();
    match service.get(&key).await? {
        Some(limit) => Ok(Json(OneLimit { limit })),
        None => Err(ApiError::UnknownKey(key)),
    }
}
