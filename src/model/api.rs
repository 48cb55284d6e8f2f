//! Wire types of the data-plane API (SPEC §3) and their validation into commands.
//!
//! The wire types keep `lease_id` as a string so that a malformed id becomes a clear
//! `invalid_request` message instead of a generic parse failure; `validate` turns a request
//! into a command whose lease id is a parsed ULID.

use serde::{Deserialize, Serialize};

use super::command::{CompleteCommand, ReserveCommand};
use super::errors::{ErrorCode, InvalidRequest};
use super::LeaseId;

/// A limit key as a request names it: borrowed for the program's life (a key written in the
/// program: nothing is allocated per request) or owned (read from a body or a file).
pub type RequestKey = std::borrow::Cow<'static, str>;

/// Most requirements one reserve may carry.
pub const MAX_REQUIREMENTS: usize = 32;
/// Most actuals one complete may carry (one per key at most, like requirements).
pub const MAX_ACTUALS: usize = 32;
/// Longest accepted `job_id`.
pub const MAX_JOB_ID_BYTES: usize = 128;

/// One key and how much of it a call needs.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// The limit key.
    #[cfg_attr(
        feature = "server",
        schema(value_type = String, min_length = 1, example = "global:llm:openai:gpt-4o:tpm")
    )]
    pub key: RequestKey,
    /// Units needed; at least 1.
    #[cfg_attr(feature = "server", schema(minimum = 1, example = 2000))]
    pub amount: u64,
}

impl Requirement {
    /// A requirement of `amount` on `key`.
    pub fn new(key: impl Into<String>, amount: u64) -> Self {
        Requirement {
            key: RequestKey::Owned(key.into()),
            amount,
        }
    }

    /// A requirement of `amount` on a key the program holds for its whole life (a constant,
    /// or a key read once and kept): the key is borrowed, so none is copied per request.
    pub fn static_key(key: &'static str, amount: u64) -> Self {
        Requirement {
            key: RequestKey::Borrowed(key),
            amount,
        }
    }
}

/// `POST /v1/reserve` body.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    /// ULID, unique per attempt.
    #[cfg_attr(feature = "server", schema(example = "01ARZ3NDEKTSV4RRFFQ69G5FAV"))]
    pub lease_id: String,
    /// Optional id of the logical job, for logs; at most 128 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "server", schema(example = "job-42"))]
    pub job_id: Option<String>,
    /// 1..=32 requirements, each key at most once.
    #[cfg_attr(feature = "server", schema(min_items = 1, max_items = 32))]
    pub requirements: Vec<Requirement>,
}

/// `POST /v1/reserve` answer.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveResponse {
    /// Whether every requirement was taken.
    pub allowed: bool,
    /// When denied for capacity (or decreasing): how long to wait before retrying.
    pub retry_after_ms: u64,
    /// When allowed: the Unix time in ms of the reservation.
    pub reserved_at_unix_ms: i64,
    /// Empty, or one of the machine-readable error strings: `invalid_request` (a batch item),
    /// `unknown_limit_key:<key>`, `limit_decreasing:<key>`, `exceeds_capacity:<key>`,
    /// `backend_error`.
    pub error: String,
}

impl ReserveResponse {
    /// An allowed answer.
    pub fn allowed(reserved_at_unix_ms: i64) -> Self {
        ReserveResponse {
            allowed: true,
            retry_after_ms: 0,
            reserved_at_unix_ms,
            error: String::new(),
        }
    }

    /// A denial for capacity with a retry-after hint.
    pub fn denied(retry_after_ms: u64) -> Self {
        ReserveResponse {
            allowed: false,
            retry_after_ms,
            reserved_at_unix_ms: 0,
            error: String::new(),
        }
    }

    /// A denial carrying an error code.
    pub fn error(code: ErrorCode, retry_after_ms: u64) -> Self {
        ReserveResponse {
            allowed: false,
            retry_after_ms,
            reserved_at_unix_ms: 0,
            error: code.as_wire(),
        }
    }

    /// The error code, if the answer carries one.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_wire(&self.error)
    }
}

/// What a call really used of one key.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actual {
    /// The limit key.
    #[cfg_attr(
        feature = "server",
        schema(value_type = String, min_length = 1, example = "global:llm:openai:gpt-4o:tpm")
    )]
    pub key: RequestKey,
    /// Units really used (0 allowed).
    #[cfg_attr(feature = "server", schema(example = 1200))]
    pub actual_amount: u64,
}

impl Actual {
    /// An actual of `actual_amount` on `key`.
    pub fn new(key: impl Into<String>, actual_amount: u64) -> Self {
        Actual {
            key: RequestKey::Owned(key.into()),
            actual_amount,
        }
    }

    /// An actual on a key the program holds for its whole life (see
    /// [`Requirement::static_key`]).
    pub fn static_key(key: &'static str, actual_amount: u64) -> Self {
        Actual {
            key: RequestKey::Borrowed(key),
            actual_amount,
        }
    }
}

/// `POST /v1/complete` body.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The lease id of the allowed reserve.
    #[cfg_attr(feature = "server", schema(example = "01ARZ3NDEKTSV4RRFFQ69G5FAV"))]
    pub lease_id: String,
    /// Optional id of the logical job, for logs; at most 128 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "server", schema(example = "job-42"))]
    pub job_id: Option<String>,
    /// Actual usage per key, each key at most once; may be empty or absent.
    #[serde(default)]
    #[cfg_attr(feature = "server", schema(max_items = 32))]
    pub actuals: Vec<Actual>,
}

/// `POST /v1/complete` answer.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteResponse {
    /// Whether the complete was applied (or was a harmless no-op).
    pub ok: bool,
    /// Empty, or one of the machine-readable error strings: `invalid_request` (a batch
    /// item), `backend_error`.
    pub error: String,
}

impl CompleteResponse {
    /// A successful answer.
    pub fn ok() -> Self {
        CompleteResponse {
            ok: true,
            error: String::new(),
        }
    }

    /// A failed answer carrying an error code.
    pub fn error(code: ErrorCode) -> Self {
        CompleteResponse {
            ok: false,
            error: code.as_wire(),
        }
    }
}

/// Most items `ratelimiterd` accepts in one batch unless its `max_batch_items` says otherwise;
/// a larger batch is refused whole with 400 `invalid_request`.
pub const DEFAULT_MAX_BATCH_ITEMS: usize = 256;

/// Batch envelope: `{ "requests": [...] }`.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest<T> {
    /// The items, applied in order: 1 to `max_batch_items` (default 256).
    #[cfg_attr(feature = "server", schema(min_items = 1))]
    pub requests: Vec<T>,
}

/// Batch answer: `results[i]` answers `requests[i]`.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse<T> {
    /// One result per request, in order.
    pub results: Vec<T>,
}

fn parse_lease(lease_id: &str) -> Result<LeaseId, InvalidRequest> {
    if lease_id.is_empty() {
        return Err(InvalidRequest::new("lease_id: must not be empty"));
    }
    LeaseId::from_string(lease_id)
        .map_err(|e| InvalidRequest::new(format!("lease_id: {lease_id:?} is not a ULID ({e})")))
}

impl ReserveRequest {
    /// A request for a new lease id.
    pub fn new(lease: LeaseId, requirements: Vec<Requirement>) -> Self {
        ReserveRequest {
            lease_id: lease.to_string(),
            job_id: None,
            requirements,
        }
    }

    /// Checks every rule of SPEC §3 and returns the command (which takes over the
    /// requirements: nothing is copied).
    pub fn validate(self) -> Result<ReserveCommand, InvalidRequest> {
        let command = ReserveCommand {
            lease: parse_lease(&self.lease_id)?,
            job_id: self.job_id,
            requirements: self.requirements,
        };
        command.check()?;
        Ok(command)
    }
}

impl CompleteRequest {
    /// A complete for `lease` with the given actuals.
    pub fn new(lease: LeaseId, actuals: Vec<Actual>) -> Self {
        CompleteRequest {
            lease_id: lease.to_string(),
            job_id: None,
            actuals,
        }
    }

    /// Checks every rule of SPEC §3 and returns the command (which takes over the actuals).
    pub fn validate(self) -> Result<CompleteCommand, InvalidRequest> {
        let command = CompleteCommand {
            lease: parse_lease(&self.lease_id)?,
            job_id: self.job_id,
            actuals: self.actuals,
        };
        command.check()?;
        Ok(command)
    }
}

/// A copy, so callers that keep their request can hand it over by reference.
impl From<&ReserveRequest> for ReserveRequest {
    fn from(request: &ReserveRequest) -> Self {
        request.clone()
    }
}

/// A copy, so callers that keep their request can hand it over by reference.
impl From<&CompleteRequest> for CompleteRequest {
    fn from(request: &CompleteRequest) -> Self {
        request.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const LEASE: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";

    fn reserve(lease: &str, requirements: Vec<Requirement>) -> ReserveRequest {
        ReserveRequest {
            lease_id: lease.into(),
            job_id: None,
            requirements,
        }
    }

    #[rstest]
    #[case::empty_lease(reserve("", vec![Requirement::new("k", 1)]), "lease_id")]
    #[case::bad_lease(reserve("nope", vec![Requirement::new("k", 1)]), "lease_id")]
    #[case::no_requirements(reserve(LEASE, vec![]), "requirements")]
    #[case::too_many(reserve(LEASE, (0..33).map(|i| Requirement::new(format!("k{i}"), 1)).collect()), "requirements")]
    #[case::zero_amount(reserve(LEASE, vec![Requirement::new("k", 0)]), "requirements[0].amount")]
    #[case::empty_key(reserve(LEASE, vec![Requirement::new("", 1)]), "requirements[0].key")]
    #[case::duplicate_key(reserve(LEASE, vec![Requirement::new("k", 1), Requirement::new("k", 2)]), "requirements[1].key")]
    fn invalid_reserves_name_the_field(#[case] req: ReserveRequest, #[case] field: &str) {
        let err = req.validate().unwrap_err();
        assert!(err.0.starts_with(field), "{err} should start with {field}");
    }

    #[test]
    fn valid_reserve_parses_lease() {
        let cmd = reserve(LEASE, vec![Requirement::new("k", u64::MAX)])
            .validate()
            .unwrap();
        assert_eq!(cmd.lease.to_string(), LEASE);
    }

    #[test]
    fn complete_allows_empty_actuals_and_rejects_duplicates() {
        let ok: CompleteRequest =
            serde_json::from_str(&format!(r#"{{"lease_id":"{LEASE}"}}"#)).unwrap();
        ok.validate().unwrap();
        let dup = CompleteRequest::new(
            LEASE.parse().unwrap(),
            vec![Actual::new("k", 1), Actual::new("k", 1)],
        );
        assert!(dup.validate().unwrap_err().0.starts_with("actuals[1].key"));
    }

    #[test]
    fn negative_amount_is_a_parse_error() {
        let json =
            format!(r#"{{"lease_id":"{LEASE}","requirements":[{{"key":"k","amount":-1}}]}}"#);
        assert!(serde_json::from_str::<ReserveRequest>(&json).is_err());
    }

    #[test]
    fn error_codes_round_trip() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::BackendError,
            ErrorCode::UnknownLimitKey("a:b".into()),
            ErrorCode::LimitDecreasing("c:d".into()),
            ErrorCode::ExceedsCapacity("e:f".into()),
        ] {
            assert_eq!(ErrorCode::from_wire(&code.as_wire()), Some(code));
        }
        assert_eq!(
            ReserveResponse::error(ErrorCode::UnknownLimitKey("x:y".into()), 0).error,
            "unknown_limit_key:x:y"
        );
    }
}
