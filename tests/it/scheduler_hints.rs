//! The scheduler's waits after a denial: exactly the limiter's hint, unless a call of the
//! same queue completed while the denied reserve was in flight (the hint predates the
//! capacity that completion freed), in which case the job retries at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::bound::bounded;
use crate::support::scheduler::{config, spec, step, FakeLimiter};
use ratelimiter::client::SchedulerHandle;
use ratelimiter::model::ReserveResponse;

/// Allows every reserve except the second, which is denied with `hint_ms`; that answer
/// arrives only after `delay_ms` (computed before whatever happens meanwhile).
fn slow_denial(delay_ms: u64, hint_ms: u64) -> Arc<FakeLimiter> {
    FakeLimiter::slow(
        move |_, index| match index {
            1 => Ok(ReserveResponse::denied(hint_ms)),
            _ => Ok(ReserveResponse::allowed(1)),
        },
        move |index| if index == 1 { delay_ms } else { 0 },
    )
}

#[actix_rt::test]
async fn a_denial_answered_after_a_completion_of_its_queue_retries_at_once() {
    bounded(5, async {
        // The first call runs 20 ms; the second job's reserve is denied with a 3 s hint, but
        // the answer arrives 150 ms later, after the first call completed.
        let limiter = slow_denial(150, 3_000);
        let scheduler = SchedulerHandle::start(limiter.clone(), config(2));
        let start = Instant::now();
        let first = scheduler.run(spec("openai"), step(20, 1, "first"));
        let second = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            scheduler.run(spec("openai"), step(1, 1, "second")).await
        };
        let (first, second) = futures::join!(first, second);
        assert_eq!((first, second), (Ok("first"), Ok("second")));
        assert!(
            start.elapsed() < Duration::from_millis(1_500),
            "slept out a stale hint: {:?}",
            start.elapsed()
        );
        assert_eq!(limiter.reserves().len(), 3);
    })
    .await;
}

#[actix_rt::test]
async fn with_no_completion_meanwhile_a_denied_job_waits_the_hint() {
    bounded(5, async {
        // The first job holds its slot for 1 s; the second is denied with a 300 ms hint and
        // no call of its queue completes before that answer arrives.
        let limiter = slow_denial(0, 300);
        let scheduler = SchedulerHandle::start(limiter.clone(), config(2));
        let first = scheduler.run(spec("openai"), step(1_000, 1, "first"));
        let second = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let start = Instant::now();
            let value = scheduler.run(spec("openai"), step(1, 1, "second")).await;
            (value, start.elapsed())
        };
        let (first, (second, waited)) = futures::join!(first, second);
        assert_eq!((first, second), (Ok("first"), Ok("second")));
        assert!(
            (Duration::from_millis(300)..Duration::from_millis(1_000)).contains(&waited),
            "waited {waited:?}: the hint, not the other call's completion"
        );
        assert_eq!(limiter.reserves().len(), 3);
    })
    .await;
}
