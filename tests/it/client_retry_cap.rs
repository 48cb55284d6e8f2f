//! The scheduler's retries after unknown outcomes (`backend_error`, transport errors) keep
//! the same lease id and stop at `max_retry_wait_ms`, whatever `max_transport_retries` says.

use std::time::{Duration, Instant};

use crate::support::bound::bounded;
use crate::support::scheduler::{config, spec, step, FakeLimiter};
use ratelimiter::client::{LimiterError, SchedulerConfig, SchedulerError, SchedulerHandle};
use ratelimiter::model::{ErrorCode, ReserveResponse};

fn capped(max_retry_wait_ms: u64) -> SchedulerConfig {
    SchedulerConfig {
        max_transport_retries: 1_000,
        backoff_base_ms: 20,
        backoff_max_ms: 40,
        max_retry_wait_ms,
        ..config(1)
    }
}

#[actix_rt::test]
async fn a_backend_that_stays_down_fails_the_job_at_the_wait_cap_with_one_lease_id() {
    bounded(5, async {
        let limiter =
            FakeLimiter::new(|_, _| Ok(ReserveResponse::error(ErrorCode::BackendError, 0)));
        let scheduler = SchedulerHandle::start(limiter.clone(), capped(150));
        let started = Instant::now();
        let result = scheduler.run(spec("p"), step(0, 1, ())).await;
        let elapsed = started.elapsed();
        let Err(error) = result else {
            panic!("the job ran although the limiter never admitted it")
        };
        assert!(error.is_unreachable(), "{error}");
        match &error {
            SchedulerError::RetryWaitExhausted {
                attempts,
                waited_ms,
                last,
            } => {
                assert!(*attempts >= 4, "only {attempts} attempt(s)");
                assert!(*waited_ms >= 150, "gave up after {waited_ms} ms");
                assert!(matches!(last, LimiterError::Transport(m) if m.contains("backend_error")));
            }
            other => panic!("expected the wait cap, got {other:?}"),
        }
        assert!(
            error.to_string().contains("limiter unreachable for"),
            "{error}"
        );
        // The cap bounds the wait: the last backoff is cut to end at it.
        assert!(elapsed < Duration::from_millis(600), "took {elapsed:?}");
        let reserves = limiter.reserves();
        assert!(reserves.iter().all(|r| r.lease_id == reserves[0].lease_id));
    })
    .await;
}

#[actix_rt::test]
async fn a_backend_back_within_the_cap_admits_the_job_under_the_same_lease_id() {
    bounded(5, async {
        let limiter = FakeLimiter::new(|_, before| match before {
            0 => Err(LimiterError::Transport("connection refused".into())),
            1 | 2 => Ok(ReserveResponse::error(ErrorCode::BackendError, 0)),
            _ => Ok(ReserveResponse::allowed(1)),
        });
        let scheduler = SchedulerHandle::start(limiter.clone(), capped(5_000));
        assert_eq!(scheduler.run(spec("p"), step(0, 3, "ok")).await, Ok("ok"));
        let reserves = limiter.reserves();
        assert_eq!(reserves.len(), 4);
        assert!(reserves.iter().all(|r| r.lease_id == reserves[0].lease_id));
    })
    .await;
}
