//! Control-plane handlers: define a limit, list limits, read one limit with its live usage.

use actix_web::web::{self, Json};
use serde::{Deserialize, Serialize};

use super::body::Object;
use super::error::{ApiError, ErrorBody};
use crate::model::{LimitDefinition, LimitInfo, LimitStatus};
use crate::service::LimiterService;

/// Answer of `PUT /v1/admin/limits`.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutLimitResponse {
    /// Always true on a 200.
    pub ok: bool,
    /// `active`, or `decreasing` when the new capacity waits for usage to drop.
    pub status: LimitStatus,
}

/// Answer of `GET /v1/admin/limits`.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitList {
    /// Every limit, sorted by key, with live usage.
    pub limits: Vec<LimitInfo>,
}

/// Answer of `GET /v1/admin/limits/{key}`.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneLimit {
    /// The limit with live usage.
    pub limit: LimitInfo,
}

/// `PUT /v1/admin/limits`: creates or updates a limit.
#[utoipa::path(
    put,
    path = "/v1/admin/limits",
    tag = "admin",
    summary = "Create or update a limit",
    description = "Validates the definition, saves the registry, then applies it to the backend; a failure changes nothing. An increase applies at once; a decrease leaves the key `decreasing` (its reserves denied) until usage fits the new capacity. The `kind` of an existing key cannot change.",
    request_body = LimitDefinition,
    responses(
        (status = 200, description = "Defined; `status` tells whether a decrease is pending.", body = PutLimitResponse),
        (status = 400, description = "Not a valid definition (the message names the field), or a change of `kind`: `invalid_request`.", body = ErrorBody),
        (status = 413, description = "The body exceeds `max_body_bytes` (default 1 MiB): `payload_too_large`.", body = ErrorBody),
        (status = 500, description = "The registry file could not be saved; nothing changed: `registry_error`.", body = ErrorBody),
        (status = 503, description = "The backend failed or is down; nothing changed: `backend_error`.", body = ErrorBody),
    )
)]
pub async fn put_limit(
    service: web::Data<LimiterService>,
    body: Json<Object<LimitDefinition>>,
) -> Result<Json<PutLimitResponse>, ApiError> {
    let status = service.define(body.into_inner().into_inner()).await?;
    Ok(Json(PutLimitResponse { ok: true, status }))
}

/// `GET /v1/admin/limits`.
#[utoipa::path(
    get,
    path = "/v1/admin/limits",
    tag = "admin",
    summary = "Every limit with its live usage",
    responses(
        (status = 200, description = "Every limit, sorted by key.", body = LimitList),
        (status = 503, description = "The backend failed or is down: `backend_error`.", body = ErrorBody),
    )
)]
pub async fn list_limits(service: web::Data<LimiterService>) -> Result<Json<LimitList>, ApiError> {
    Ok(Json(LimitList {
        limits: service.list().await?,
    }))
}

/// `GET /v1/admin/limits/{key}`; the key arrives percent-decoded (`global%3Allm...` and
/// `global:llm...` name the same limit).
#[utoipa::path(
    get,
    path = "/v1/admin/limits/{key}",
    tag = "admin",
    summary = "One limit with its live usage",
    params(("key" = String, Path, description = "The limit key; percent-encoded or not (`global%3Allm%3Aopenai%3Agpt-4o%3Atpm` and `global:llm:openai:gpt-4o:tpm` name the same limit).", example = "global:llm:openai:gpt-4o:tpm")),
    responses(
        (status = 200, description = "The limit.", body = OneLimit),
        (status = 404, description = "No limit has this key: `unknown_limit_key:<key>`.", body = ErrorBody),
        (status = 503, description = "The backend failed or is down: `backend_error`.", body = ErrorBody),
    )
)]
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
