//! What the scheduler does with a reserve answer: a pure function from the limiter's answer
//! to one of a few decisions, so every branch of SPEC §3's error strings is tested here.

use super::SchedulerError;
use crate::client::limiter::LimiterError;
use crate::model::{ErrorCode, Requirement, ReserveResponse};

/// The next step for a job after a reserve call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Every requirement was taken: run the job.
    Run,
    /// Denied (capacity or a decreasing key): new lease id, wait exactly this long.
    Wait {
        /// The limiter's hint, at least 1 ms.
        retry_after_ms: u64,
    },
    /// A requirement is larger than its key's capacity: fail at once, never retry.
    ExceedsCapacity {
        /// The key.
        key: String,
        /// What the job asked of it.
        amount: u64,
    },
    /// The key is not defined: leave it out from now on and retry at once with a new lease id.
    DropKey(String),
    /// The outcome is unknown: retry the same lease id after a backoff.
    Unknown(LimiterError),
    /// The job cannot succeed.
    Fail(SchedulerError),
}

/// Decides what to do with the answer to a reserve of `requirements`.
pub(crate) fn decide(
    answer: Result<ReserveResponse, LimiterError>,
    requirements: &[Requirement],
) -> Decision {
    let response = match answer {
        Ok(response) => response,
        Err(LimiterError::Rejected(message)) => {
            return Decision::Fail(SchedulerError::Rejected(message))
        }
        Err(error) => return Decision::Unknown(error),
    };
    if response.allowed {
        return Decision::Run;
    }
    // A denial always waits at least 1 ms, so a missing hint cannot make a busy loop.
    let retry_after_ms = response.retry_after_ms.max(1);
    if response.error.is_empty() {
        return Decision::Wait { retry_after_ms };
    }
    match response.error_code() {
        Some(ErrorCode::LimitDecreasing(_)) => Decision::Wait { retry_after_ms },
        Some(ErrorCode::UnknownLimitKey(key)) => {
            if requirements.iter().any(|r| r.key == key) {
                Decision::DropKey(key)
            } else {
                Decision::Fail(SchedulerError::Protocol(format!(
                    "unknown_limit_key:{key} names a key this reserve did not ask for"
                )))
            }
        }
        Some(ErrorCode::ExceedsCapacity(key)) => match requirements.iter().find(|r| r.key == key) {
            Some(r) => Decision::ExceedsCapacity {
                key,
                amount: r.amount,
            },
            None => Decision::Fail(SchedulerError::Protocol(format!(
                "exceeds_capacity:{key} names a key this reserve did not ask for"
            ))),
        },
        Some(ErrorCode::BackendError) => Decision::Unknown(LimiterError::Transport(
            "the limiter answered backend_error".into(),
        )),
        Some(ErrorCode::InvalidRequest) => {
            Decision::Fail(SchedulerError::Rejected("invalid_request".into()))
        }
        None => Decision::Unknown(LimiterError::Protocol(format!(
            "unrecognized error {:?} in a reserve answer",
            response.error
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn reqs() -> Vec<Requirement> {
        vec![Requirement::new("a:rpm", 1), Requirement::new("a:tpm", 10)]
    }

    fn with_error(error: &str, retry_after_ms: u64) -> ReserveResponse {
        ReserveResponse {
            allowed: false,
            retry_after_ms,
            reserved_at_unix_ms: 0,
            error: error.into(),
        }
    }

    #[rstest]
    #[case::allowed(Ok(ReserveResponse::allowed(1)), Decision::Run)]
    #[case::denied(Ok(ReserveResponse::denied(250)), Decision::Wait { retry_after_ms: 250 })]
    #[case::denied_without_hint(Ok(ReserveResponse::denied(0)), Decision::Wait { retry_after_ms: 1 })]
    #[case::decreasing(Ok(with_error("limit_decreasing:a:tpm", 10_000)), Decision::Wait { retry_after_ms: 10_000 })]
    #[case::unknown_key(Ok(with_error("unknown_limit_key:a:tpm", 0)), Decision::DropKey("a:tpm".into()))]
    #[case::unknown_foreign_key(
        Ok(with_error("unknown_limit_key:b:tpm", 0)),
        Decision::Fail(SchedulerError::Protocol("unknown_limit_key:b:tpm names a key this reserve did not ask for".into()))
    )]
    #[case::exceeds_capacity(Ok(with_error("exceeds_capacity:a:tpm", 0)), Decision::ExceedsCapacity { key: "a:tpm".into(), amount: 10 })]
    #[case::exceeds_foreign_key(
        Ok(with_error("exceeds_capacity:b:tpm", 0)),
        Decision::Fail(SchedulerError::Protocol("exceeds_capacity:b:tpm names a key this reserve did not ask for".into()))
    )]
    #[case::timeout(
        Err(LimiterError::Timeout(5)),
        Decision::Unknown(LimiterError::Timeout(5))
    )]
    #[case::transport(Err(LimiterError::Transport("refused".into())), Decision::Unknown(LimiterError::Transport("refused".into())))]
    #[case::protocol(Err(LimiterError::Protocol("HTTP 502".into())), Decision::Unknown(LimiterError::Protocol("HTTP 502".into())))]
    #[case::rejected(Err(LimiterError::Rejected("lease_id: bad".into())), Decision::Fail(SchedulerError::Rejected("lease_id: bad".into())))]
    #[case::invalid_item(Ok(with_error("invalid_request", 0)), Decision::Fail(SchedulerError::Rejected("invalid_request".into())))]
    fn answers_map_to_decisions(
        #[case] answer: Result<ReserveResponse, LimiterError>,
        #[case] expected: Decision,
    ) {
        assert_eq!(decide(answer, &reqs()), expected);
    }

    #[test]
    fn backend_error_and_unrecognized_errors_are_unknown_outcomes() {
        assert!(matches!(
            decide(Ok(with_error("backend_error", 0)), &reqs()),
            Decision::Unknown(LimiterError::Transport(_))
        ));
        assert!(matches!(
            decide(Ok(with_error("something_new", 0)), &reqs()),
            Decision::Unknown(LimiterError::Protocol(_))
        ));
    }
}
