//! The machine-readable error strings of the API (SPEC §3) and the validation error type.

use thiserror::Error;

/// The `error` strings a reserve/complete answer can carry, in their exact wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// The payload (or one batch item) broke a rule of the API.
    InvalidRequest,
    /// A requirement named a key that is not defined.
    UnknownLimitKey(String),
    /// A requirement named a key whose capacity is being decreased.
    LimitDecreasing(String),
    /// A requirement asked for more than the key's capacity in force: it can never fit, so
    /// the client must not retry it.
    ExceedsCapacity(String),
    /// The storage backend failed or could not be reached.
    BackendError,
}

impl ErrorCode {
    /// The exact wire form, e.g. `unknown_limit_key:global:llm:openai:gpt-4o:rpm`.
    pub fn as_wire(&self) -> String {
        match self {
            ErrorCode::InvalidRequest => "invalid_request".to_string(),
            ErrorCode::UnknownLimitKey(key) => format!("unknown_limit_key:{key}"),
            ErrorCode::LimitDecreasing(key) => format!("limit_decreasing:{key}"),
            ErrorCode::ExceedsCapacity(key) => format!("exceeds_capacity:{key}"),
            ErrorCode::BackendError => "backend_error".to_string(),
        }
    }

    /// Parses a wire error string back; `None` for the empty string or an unknown code.
    pub fn from_wire(wire: &str) -> Option<ErrorCode> {
        if let Some(key) = wire.strip_prefix("unknown_limit_key:") {
            return Some(ErrorCode::UnknownLimitKey(key.to_string()));
        }
        if let Some(key) = wire.strip_prefix("limit_decreasing:") {
            return Some(ErrorCode::LimitDecreasing(key.to_string()));
        }
        if let Some(key) = wire.strip_prefix("exceeds_capacity:") {
            return Some(ErrorCode::ExceedsCapacity(key.to_string()));
        }
        match wire {
            "invalid_request" => Some(ErrorCode::InvalidRequest),
            "backend_error" => Some(ErrorCode::BackendError),
            _ => None,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_wire())
    }
}

/// A request or definition that breaks a rule; the message names the field and the problem.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct InvalidRequest(pub String);

impl InvalidRequest {
    /// Builds the error from anything printable.
    pub fn new(message: impl Into<String>) -> Self {
        InvalidRequest(message.into())
    }
}
