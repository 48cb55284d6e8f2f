//! Error mapping of the HTTP layer: every failure becomes a status code and a JSON body
//! `{"error": "<code>", "message": "<what is wrong>"}`, including the ones actix-web raises
//! itself (unreadable JSON, wrong content type, oversized body, unknown route).

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::backend::BackendError;
use crate::definitions::StoreError;
use crate::model::{ErrorCode, InvalidRequest};
use crate::service::AdminError;

/// The JSON body of every non-200 answer.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code: `invalid_request`, `unknown_limit_key:<key>`, `backend_error`,
    /// `registry_error`, `payload_too_large`, `not_found`, `method_not_allowed`, `not_ready`.
    #[schema(example = "invalid_request")]
    pub error: String,
    /// Human-readable explanation naming the field or resource at fault.
    #[schema(example = "requirements[0].amount: must be at least 1")]
    pub message: String,
}

/// Why a request could not be answered with a 200.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApiError {
    /// The payload is not JSON, has the wrong shape, or breaks a rule (400).
    #[error("{0}")]
    Invalid(String),
    /// The body is larger than the configured limit (413).
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The admin API was asked about a key that is not defined (404).
    #[error("limit {0:?} is not defined")]
    UnknownKey(String),
    /// The registry file could not be saved; nothing changed (500).
    #[error("{0}")]
    Registry(String),
    /// The backend failed or could not be reached (503).
    #[error("{0}")]
    Backend(String),
    /// No route matches the path (404).
    #[error("no route for {method} {path}")]
    NotFound {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The route exists but not for this method (405).
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
}

impl ApiError {
    /// The machine-readable code of the body.
    pub fn code(&self) -> String {
        match self {
            ApiError::Invalid(_) => ErrorCode::InvalidRequest.as_wire(),
            ApiError::PayloadTooLarge { .. } => "payload_too_large".into(),
            ApiError::UnknownKey(key) => ErrorCode::UnknownLimitKey(key.clone()).as_wire(),
            ApiError::Registry(_) => "registry_error".into(),
            ApiError::Backend(_) => ErrorCode::BackendError.as_wire(),
            ApiError::NotFound { .. } => "not_found".into(),
            ApiError::MethodNotAllowed { .. } => "method_not_allowed".into(),
        }
    }

    /// The body sent to the client.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code(),
            message: self.to_string(),
        }
    }

    /// A 404 for the route of `req`.
    pub fn not_found(req: &HttpRequest) -> Self {
        ApiError::NotFound {
            method: req.method().to_string(),
            path: req.path().to_string(),
        }
    }

    /// A 405 for the route of `req`.
    pub fn method_not_allowed(req: &HttpRequest) -> Self {
        ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            path: req.path().to_string(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnknownKey(_) | ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Registry(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self.body())
    }
}

impl From<InvalidRequest> for ApiError {
    fn from(e: InvalidRequest) -> Self {
        ApiError::Invalid(e.0)
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        ApiError::Backend(e.to_string())
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(e) => e.into(),
            AdminError::Registry(e) => ApiError::Registry(e.to_string()),
            AdminError::Backend(e) => e.into(),
            AdminError::Shared(StoreError::Backend(e)) => e.into(),
            AdminError::Shared(e @ StoreError::TooLarge { .. }) => ApiError::Invalid(e.to_string()),
            AdminError::Shared(e) => ApiError::Registry(e.to_string()),
        }
    }
}

/// Turns a JSON body that actix-web could not extract into an [`ApiError`] whose message
/// carries serde's explanation (field, line, column).
pub fn json_error(err: &JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge { limit: *limit },
        JsonPayloadError::ContentType => {
            ApiError::Invalid("Content-Type: expected application/json".into())
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::Invalid(format!("body: {e}")),
        JsonPayloadError::Deserialize(e) => {
            ApiError::Invalid(format!("body: not valid JSON ({e})"))
        }
        JsonPayloadError::Payload(e) => ApiError::Invalid(format!("body: cannot be read ({e})")),
        other => ApiError::Invalid(format!("body: {other}")),
    }
}

/// The `JsonConfig` error handler: every extraction failure answers with a JSON body.
pub fn json_error_handler(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    json_error(&err).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_follow_the_spec() {
        let unknown = ApiError::UnknownKey("a:b".into());
        assert_eq!(unknown.code(), "unknown_limit_key:a:b");
        assert_eq!(unknown.status_code(), StatusCode::NOT_FOUND);
        assert_eq!(
            ApiError::Invalid("x".into()).body().error,
            "invalid_request"
        );
        assert_eq!(
            ApiError::Backend("down".into()).status_code(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(ApiError::Registry("disk".into()).code(), "registry_error");
        let too_large = json_error(&JsonPayloadError::Overflow { limit: 10 });
        assert_eq!(too_large.status_code(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(too_large.to_string().contains("10 bytes"));
    }

    #[test]
    fn serde_messages_reach_the_client() {
        let missing = serde_json::from_str::<crate::model::ReserveRequest>("{}").unwrap_err();
        let message = json_error(&JsonPayloadError::Deserialize(missing)).to_string();
        assert!(message.contains("missing field `lease_id`"), "{message}");
        let syntax = serde_json::from_str::<crate::model::ReserveRequest>("{nope").unwrap_err();
        let message = json_error(&JsonPayloadError::Deserialize(syntax)).to_string();
        assert!(message.starts_with("body: not valid JSON"), "{message}");
    }
}
