//! The scheduler's waits after a denial: exactly the limiter's hint, unless a call of the
//! same queue completed while the denied reserve was in flight (the hint predates the
//! capacity that completion freed), in which case the job retries at once.

mod scheduler_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ratelimiter::client::{Limiter, LimiterError, SchedulerHandle};
use ratelimiter::model::{CompleteRequest, CompleteResponse, ReserveRequest, ReserveResponse};
use scheduler_support::{bounded, config, spec, step};

/// Allows every reserve except the second, which answers a denial with `hint_ms` only after
/// `delay_ms` (a slow answer, computed before whatever happens meanwhile).
struct SlowDenial {
    reserves: AtomicUsize,
    delay_ms: u64,
    hint_ms: u64,
}

#[async_trait]
impl Limiter for SlowDenial {
    async fn reserve(&self, _request: ReserveRequest) -> Result<ReserveResponse, LimiterError> {
        if self.reserves.fetch_add(1, Ordering::SeqCst) == 1 {
            tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
            return Ok(ReserveResponse::denied(self.hint_ms));
        }
        Ok(ReserveResponse::allowed(1))
    }

    async fn complete(&self, _request: CompleteRequest) -> Result<CompleteResponse, LimiterError> {
        Ok(CompleteResponse::ok())
    }

    async fn batch_reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResponse>, LimiterError> {
        let mut out = Vec::new();
        for request in requests {
            out.push(self.reserve(request).await?);
        }
        Ok(out)
    }

    async fn batch_complete(
        &self,
        requests: Vec<CompleteRequest>,
    ) -> Result<Vec<CompleteResponse>, LimiterError> {
        Ok(requests.iter().map(|_| CompleteResponse::ok()).collect())
    }
}

#[actix_rt::test]
async fn a_denial_answered_after_a_completion_of_its_queue_retries_at_once() {
    bounded(5, async {
        // The first call runs 20 ms; the second job's reserve is denied with a 3 s hint, but
        // the answer arrives 150 ms later, after the first call completed.
        let limiter = Arc::new(SlowDenial {
            reserves: AtomicUsize::new(0),
            delay_ms: 150,
            hint_ms: 3_000,
        });
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
        assert_eq!(limiter.reserves.load(Ordering::SeqCst), 3);
    })
    .await;
}

#[actix_rt::test]
async fn with_no_completion_meanwhile_a_denied_job_waits_the_hint() {
    bounded(5, async {
        let limiter = Arc::new(SlowDenial {
            reserves: AtomicUsize::new(1),
            delay_ms: 0,
            hint_ms: 300,
        });
        let scheduler = SchedulerHandle::start(limiter.clone(), config(1));
        let start = Instant::now();
        let only = scheduler.run(spec("openai"), step(1, 1, "only")).await;
        assert_eq!(only, Ok("only"));
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(limiter.reserves.load(Ordering::SeqCst), 3);
    })
    .await;
}
