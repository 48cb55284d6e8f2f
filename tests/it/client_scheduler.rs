//! The scheduler against a scripted fake limiter: no head-of-line blocking, lease id rules,
//! exactly-once complete, fairness, undefined keys, failures.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::bound::bounded;
use crate::support::scheduler::{config, spec, step, FakeLimiter};
use futures::future::join_all;
use futures::FutureExt;
use ratelimiter::client::{
    concurrency_key, tpm_key, JobOutput, LimiterError, SchedulerError, SchedulerHandle,
};
use ratelimiter::model::{ErrorCode, ReserveResponse};

#[actix_rt::test]
async fn a_denied_provider_does_not_delay_an_allowed_one() {
    bounded(5, async {
        let limiter = FakeLimiter::new(|request, _| {
            if request.requirements[0].key.contains(":openai:") {
                Ok(ReserveResponse::denied(20))
            } else {
                Ok(ReserveResponse::allowed(1))
            }
        });
        let scheduler = SchedulerHandle::start(limiter.clone(), config(1));
        let denied = {
            let scheduler = scheduler.clone();
            actix_rt::spawn(async move { scheduler.run(spec("openai"), step(1, 1, ())).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let start = Instant::now();
        let allowed: Vec<_> = (0..5)
            .map(|i| scheduler.run(spec("anthropic"), step(5, 3, i)))
            .collect();
        let results = join_all(allowed).await;
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "took {:?}",
            start.elapsed()
        );
        assert_eq!(results, (0..5).map(Ok).collect::<Vec<_>>());
        assert!(
            !denied.is_finished(),
            "the denied job must still be waiting"
        );

        // Retries after a denial use new lease ids.
        tokio::time::sleep(Duration::from_millis(60)).await;
        let openai = limiter.reserves_for("openai");
        assert!(openai.len() >= 3, "only {} openai reserve(s)", openai.len());
        let mut leases: Vec<&str> = openai.iter().map(|r| r.lease_id.as_str()).collect();
        leases.sort();
        leases.dedup();
        assert_eq!(
            leases.len(),
            openai.len(),
            "a lease id was reused after a denial"
        );

        let report = scheduler.shutdown(Duration::from_millis(10)).await;
        assert_eq!(report.cancelled.len(), 1);
        assert_eq!(report.cancelled[0].0.provider, "openai");
        assert_eq!(denied.await.unwrap(), Err(SchedulerError::Cancelled));
    })
    .await;
}

#[actix_rt::test]
async fn unknown_outcomes_retry_the_same_lease_and_denials_take_a_new_one() {
    bounded(5, async {
        // Calls 0 and 1 time out, call 2 is denied, call 3 fails in transport, call 4 is allowed.
        let limiter = FakeLimiter::new(|_, index| match index {
            0 | 1 => Err(LimiterError::Timeout(10)),
            2 => Ok(ReserveResponse::denied(5)),
            3 => Err(LimiterError::Transport("connection reset".into())),
            _ => Ok(ReserveResponse::allowed(1)),
        });
        let scheduler = SchedulerHandle::start(limiter.clone(), config(1));
        assert_eq!(scheduler.run(spec("p"), step(0, 7, "ok")).await, Ok("ok"));
        let leases: Vec<String> = limiter.reserves().into_iter().map(|r| r.lease_id).collect();
        assert_eq!(leases.len(), 5);
        assert_eq!(leases[0], leases[1]);
        assert_eq!(leases[1], leases[2]);
        assert_ne!(leases[2], leases[3]);
        assert_eq!(leases[3], leases[4]);
        let completes = limiter.completes();
        assert_eq!(completes.len(), 1);
        assert_eq!(completes[0].lease_id, leases[4]);
    })
    .await;
}

#[actix_rt::test]
async fn transport_retries_are_bounded() {
    bounded(5, async {
        let limiter = FakeLimiter::new(|_, _| Err(LimiterError::Transport("refused".into())));
        let scheduler = SchedulerHandle::start(limiter.clone(), config(1));
        let result = scheduler.run(spec("p"), step(0, 1, ())).await;
        assert_eq!(
            result,
            Err(SchedulerError::RetriesExhausted {
                attempts: 4,
                last: LimiterError::Transport("refused".into())
            })
        );
        let reserves = limiter.reserves();
        assert_eq!(reserves.len(), 4);
        assert!(reserves.iter().all(|r| r.lease_id == reserves[0].lease_id));
        // The lease that may exist is released with zero usage (the job never ran).
        let deadline = Instant::now() + Duration::from_secs(1);
        while limiter.completes().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let completes = limiter.completes();
        assert_eq!(completes.len(), 1);
        assert!(completes[0].actuals.iter().all(|a| a.actual_amount == 0));
    })
    .await;
}

#[actix_rt::test]
async fn complete_is_called_once_per_allowed_job_with_the_reported_tokens() {
    bounded(5, async {
        let limiter = FakeLimiter::allow_all();
        let scheduler = SchedulerHandle::start(limiter.clone(), config(3));
        let jobs: Vec<_> = (0..10u64)
            .map(|i| scheduler.run(spec("p"), step(1, 100 + i, i)))
            .collect();
        let results = join_all(jobs).await;
        assert_eq!(results, (0..10u64).map(Ok).collect::<Vec<_>>());
        let reserves = limiter.reserves();
        let completes = limiter.completes();
        assert_eq!(reserves.len(), 10);
        assert_eq!(completes.len(), 10);
        let mut reserved: Vec<&str> = reserves.iter().map(|r| r.lease_id.as_str()).collect();
        let mut completed: Vec<&str> = completes.iter().map(|c| c.lease_id.as_str()).collect();
        reserved.sort();
        completed.sort();
        assert_eq!(
            reserved, completed,
            "each allowed lease is completed exactly once"
        );
        let mut tokens: Vec<u64> = completes
            .iter()
            .map(|c| {
                c.actuals
                    .iter()
                    .find(|a| a.key == tpm_key("p", "m"))
                    .expect("tpm actual")
                    .actual_amount
            })
            .collect();
        tokens.sort();
        assert_eq!(tokens, (100..110).collect::<Vec<_>>());
    })
    .await;
}

#[actix_rt::test]
async fn queues_are_served_round_robin() {
    bounded(5, async {
        let limiter = FakeLimiter::allow_all();
        let scheduler = SchedulerHandle::start(limiter.clone(), config(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut jobs = Vec::new();
        for provider in ["a", "b", "c"] {
            for _ in 0..5 {
                let order = order.clone();
                jobs.push(scheduler.run(spec(provider), move || {
                    async move {
                        order.lock().unwrap().push(provider);
                        JobOutput {
                            value: (),
                            actual_tokens: 1,
                        }
                    }
                    .boxed()
                }));
            }
        }
        join_all(jobs).await;
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 15);
        // Every prefix of 3k completions holds each queue exactly k times (FIFO would run
        // all five `a` jobs first).
        for k in 1..=5 {
            for provider in ["a", "b", "c"] {
                let seen = order[..3 * k].iter().filter(|p| **p == provider).count();
                assert_eq!(seen, k, "{order:?}");
            }
        }
    })
    .await;
}

#[actix_rt::test]
async fn an_undefined_key_is_dropped_from_later_reserves() {
    bounded(5, async {
        let undefined = concurrency_key("p", "m");
        let limiter = {
            let undefined = undefined.clone();
            FakeLimiter::new(move |request, _| {
                if request.requirements.iter().any(|r| r.key == undefined) {
                    Ok(ReserveResponse::error(
                        ErrorCode::UnknownLimitKey(undefined.clone()),
                        0,
                    ))
                } else {
                    Ok(ReserveResponse::allowed(1))
                }
            })
        };
        let scheduler = SchedulerHandle::start(limiter.clone(), config(1));
        assert_eq!(scheduler.run(spec("p"), step(0, 4, 1)).await, Ok(1));
        assert_eq!(scheduler.run(spec("p"), step(0, 4, 2)).await, Ok(2));
        let reserves = limiter.reserves();
        assert_eq!(
            reserves.len(),
            3,
            "one retry for the first job, none for the second"
        );
        assert_ne!(reserves[0].lease_id, reserves[1].lease_id);
        assert_eq!(reserves[0].requirements.len(), 3);
        for later in &reserves[1..] {
            assert!(later.requirements.iter().all(|r| r.key != undefined));
        }
        assert!(limiter
            .completes()
            .iter()
            .all(|c| c.actuals.iter().all(|a| a.key != undefined)));
    })
    .await;
}

#[actix_rt::test]
async fn a_panicking_job_fails_alone_and_keeps_its_reservation() {
    bounded(5, async {
        let limiter = FakeLimiter::allow_all();
        let scheduler = SchedulerHandle::start(limiter.clone(), config(1));
        let result: Result<(), _> = scheduler
            .run(spec("p"), || {
                async { panic!("provider client bug") }.boxed()
            })
            .await;
        assert_eq!(result, Err(SchedulerError::JobPanicked));
        assert_eq!(scheduler.run(spec("p"), step(0, 2, 9)).await, Ok(9));
        let completes = limiter.completes();
        assert_eq!(completes.len(), 2);
        let tpm = completes[0]
            .actuals
            .iter()
            .find(|a| a.key == tpm_key("p", "m"))
            .unwrap();
        assert_eq!(tpm.actual_amount, 15);
    })
    .await;
}

#[actix_rt::test]
async fn a_rejected_request_fails_the_job_without_retry() {
    bounded(5, async {
        let limiter =
            FakeLimiter::new(|_, _| Err(LimiterError::Rejected("requirements: bad".into())));
        let scheduler = SchedulerHandle::start(limiter.clone(), config(1));
        assert_eq!(
            scheduler.run(spec("p"), step(0, 1, ())).await,
            Err(SchedulerError::Rejected("requirements: bad".into()))
        );
        assert_eq!(limiter.reserves().len(), 1);
        assert!(limiter.completes().is_empty());
    })
    .await;
}

#[actix_rt::test]
async fn a_completed_call_wakes_its_waiting_queue_at_once() {
    bounded(5, async {
        // Concurrency 1 as the limiter sees it: the second reserve is denied with a long
        // hint while the first call runs; every reserve after that is allowed.
        let limiter = FakeLimiter::new(|_, index| match index {
            1 => Ok(ReserveResponse::denied(3_000)),
            _ => Ok(ReserveResponse::allowed(1)),
        });
        let scheduler = SchedulerHandle::start(limiter.clone(), config(2));
        let start = Instant::now();
        let first = scheduler.run(spec("openai"), step(50, 1, "first"));
        let second = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            scheduler.run(spec("openai"), step(1, 1, "second")).await
        };
        let (first, second) = futures::join!(first, second);
        assert_eq!((first, second), (Ok("first"), Ok("second")));
        // The first call's complete freed the slot: the second ran without sleeping out the
        // 3 s hint.
        assert!(
            start.elapsed() < Duration::from_millis(1_000),
            "took {:?}",
            start.elapsed()
        );
        assert_eq!(limiter.reserves().len(), 3);
    })
    .await;
}
