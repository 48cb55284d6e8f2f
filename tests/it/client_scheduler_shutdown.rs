//! Scheduler shutdown against a fake limiter: drain before the deadline, cancel after it.

use std::time::{Duration, Instant};

use crate::support::bound::bounded;
use crate::support::scheduler::{config, spec, step, FakeLimiter};
use ratelimiter::client::{tpm_key, JobStage, SchedulerError, SchedulerHandle};

#[actix_rt::test]
async fn shutdown_drains_jobs_that_finish_before_the_deadline() {
    bounded(5, async {
        let limiter = FakeLimiter::allow_all();
        let scheduler = SchedulerHandle::start(limiter.clone(), config(2));
        let jobs: Vec<_> = (0..3)
            .map(|i| {
                let scheduler = scheduler.clone();
                actix_rt::spawn(async move { scheduler.run(spec("p"), step(30, 1, i)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let report = scheduler.shutdown(Duration::from_secs(2)).await;
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.drained.len(), 3);
        for (i, job) in jobs.into_iter().enumerate() {
            assert_eq!(job.await.unwrap(), Ok(i));
        }
        assert_eq!(limiter.completes().len(), 3);
        assert_eq!(
            scheduler.run(spec("p"), step(0, 1, ())).await,
            Err(SchedulerError::ShutDown)
        );
        assert_eq!(scheduler.shutdown(Duration::from_secs(1)).await, report);
    })
    .await;
}

#[actix_rt::test]
async fn shutdown_cancels_what_the_deadline_does_not_allow() {
    bounded(5, async {
        let limiter = FakeLimiter::allow_all();
        let scheduler = SchedulerHandle::start(limiter.clone(), config(1));
        let slow = {
            let scheduler = scheduler.clone();
            actix_rt::spawn(async move { scheduler.run(spec("p"), step(10_000, 1, ())).await })
        };
        let queued = {
            let scheduler = scheduler.clone();
            actix_rt::spawn(async move { scheduler.run(spec("q"), step(0, 1, ())).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let start = Instant::now();
        let report = scheduler.shutdown(Duration::from_millis(50)).await;
        assert!(start.elapsed() < Duration::from_millis(500));
        let stages: Vec<(&str, JobStage)> = report
            .cancelled
            .iter()
            .map(|(job, stage)| (job.provider.as_str(), *stage))
            .collect();
        assert_eq!(stages, [("p", JobStage::Running), ("q", JobStage::Queued)]);
        assert!(report.drained.is_empty());
        assert_eq!(slow.await.unwrap(), Err(SchedulerError::Cancelled));
        assert_eq!(queued.await.unwrap(), Err(SchedulerError::Cancelled));
        // The aborted job's lease is completed keeping its whole reservation.
        let deadline = Instant::now() + Duration::from_secs(1);
        while limiter.completes().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let completes = limiter.completes();
        assert_eq!(completes.len(), 1);
        let tpm = completes[0]
            .actuals
            .iter()
            .find(|a| a.key == tpm_key("p", "m"))
            .unwrap();
        assert_eq!(tpm.actual_amount, 15);
    })
    .await;
}
