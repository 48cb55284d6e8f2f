//! The `outcome` label of `ratelimiter_reserve_total` and `ratelimiter_complete_total`: what
//! the API answered to one reserve or complete (one batch item counts as one).

use crate::model::{CompleteResponse, ReserveResponse};

/// What a reserve (or one item of a batch) was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// Every requirement was taken.
    Allowed,
    /// A requirement did not fit; the answer carries a retry hint.
    Denied,
    /// A key is decreasing its capacity (`limit_decreasing:<key>`).
    Decreasing,
    /// A key is not defined (`unknown_limit_key:<key>`).
    UnknownKey,
    /// A requirement is larger than its key's capacity (`exceeds_capacity:<key>`).
    ExceedsCapacity,
    /// The backend failed or is down (`backend_error`).
    Error,
    /// The request broke a rule of the API (`invalid_request`, or a 400 answer).
    Invalid,
}

impl Reserve {
    /// Every outcome, in the order of their counters.
    pub const ALL: [Reserve; 7] = [
        Reserve::Allowed,
        Reserve::Denied,
        Reserve::Decreasing,
        Reserve::UnknownKey,
        Reserve::ExceedsCapacity,
        Reserve::Error,
        Reserve::Invalid,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Reserve::Allowed => "allowed",
            Reserve::Denied => "denied",
            Reserve::Decreasing => "decreasing",
            Reserve::UnknownKey => "unknown_key",
            Reserve::ExceedsCapacity => "exceeds_capacity",
            Reserve::Error => "error",
            Reserve::Invalid => "invalid",
        }
    }

    /// The outcome of an answer, read from its wire error code (no allocation).
    pub fn of(response: &ReserveResponse) -> Reserve {
        let error = response.error.as_str();
        if response.allowed {
            Reserve::Allowed
        } else if error.is_empty() {
            Reserve::Denied
        } else if error.starts_with("limit_decreasing:") {
            Reserve::Decreasing
        } else if error.starts_with("unknown_limit_key:") {
            Reserve::UnknownKey
        } else if error.starts_with("exceeds_capacity:") {
            Reserve::ExceedsCapacity
        } else if error == "invalid_request" {
            Reserve::Invalid
        } else {
            Reserve::Error
        }
    }
}

/// What a complete (or one item of a batch) was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Complete {
    /// Applied, or a harmless no-op (unknown, denied or already completed lease).
    Ok,
    /// The backend failed or is down (`backend_error`).
    Error,
    /// The request broke a rule of the API (`invalid_request`, or a 400 answer).
    Invalid,
}

impl Complete {
    /// Every outcome, in the order of their counters.
    pub const ALL: [Complete; 3] = [Complete::Ok, Complete::Error, Complete::Invalid];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Complete::Ok => "ok",
            Complete::Error => "error",
            Complete::Invalid => "invalid",
        }
    }

    /// The outcome of an answer.
    pub fn of(response: &CompleteResponse) -> Complete {
        if response.ok {
            Complete::Ok
        } else if response.error == "invalid_request" {
            Complete::Invalid
        } else {
            Complete::Error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorCode;

    #[test]
    fn reserve_outcomes_follow_the_wire_codes() {
        let error = |code: ErrorCode| ReserveResponse::error(code, 0);
        let cases = [
            (ReserveResponse::allowed(1), Reserve::Allowed),
            (ReserveResponse::denied(10), Reserve::Denied),
            (
                error(ErrorCode::LimitDecreasing("k".into())),
                Reserve::Decreasing,
            ),
            (
                error(ErrorCode::UnknownLimitKey("k".into())),
                Reserve::UnknownKey,
            ),
            (
                error(ErrorCode::ExceedsCapacity("k".into())),
                Reserve::ExceedsCapacity,
            ),
            (error(ErrorCode::BackendError), Reserve::Error),
            (error(ErrorCode::InvalidRequest), Reserve::Invalid),
        ];
        for (response, outcome) in cases {
            assert_eq!(Reserve::of(&response), outcome, "{response:?}");
        }
        let labels: std::collections::HashSet<_> = Reserve::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(labels.len(), Reserve::ALL.len());
        // The counters are indexed by discriminant.
        for (index, outcome) in Reserve::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, index);
        }
        for (index, outcome) in Complete::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, index);
        }
    }

    #[test]
    fn complete_outcomes_follow_the_wire_codes() {
        assert_eq!(Complete::of(&CompleteResponse::ok()), Complete::Ok);
        assert_eq!(
            Complete::of(&CompleteResponse::error(ErrorCode::BackendError)),
            Complete::Error
        );
        assert_eq!(
            Complete::of(&CompleteResponse::error(ErrorCode::InvalidRequest)),
            Complete::Invalid
        );
    }
}
