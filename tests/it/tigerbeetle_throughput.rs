//! Many concurrent callers through the service and the microbatcher (up to four client
//! sessions; the microbatcher's own tests prove several are used under sustained load): every
//! reserve is answered, nothing is over-granted, batches grow with the load (several reserves per
//! TigerBeetle request) and never exceed the limit. Prints the throughput it measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::tigerbeetle as tb;
use futures::future::join_all;
use ratelimiter::model::{
    LeaseId, LimitDefinition, Requirement, ReserveRequest, RetryPolicy, SystemClock,
};
use ratelimiter::service::LimiterService;
use ratelimiter::tigerbeetle::{BatchRecorder, TigerBeetleBackend};

const CALLERS: usize = 256;
const RESERVES_PER_CALLER: usize = 40;

#[actix_rt::test]
async fn concurrent_reserves_are_batched_and_never_over_granted() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let recorder = BatchRecorder::new();
        // Several client sessions: batches in flight at once must not over-grant either.
        let config = ratelimiter::tigerbeetle::TigerBeetleSettings {
            sessions: 4,
            ..tb::config(tb::shared())
        };
        let backend = TigerBeetleBackend::connect_with_recorder(
            config,
            Arc::new(SystemClock),
            RetryPolicy::default(),
            Some(recorder.clone()),
        )
        .await
        .expect("TigerBeetle backend connects");
        let service = LimiterService::in_memory(backend.clone())
        .await
        .expect("service starts");
        // Two keys per reserve (a linked chain of two); the second runs out part-way.
        let total = CALLERS * RESERVES_PER_CALLER;
        let capacity = (total * 3 / 4) as u64;
        let (tpm, rpm) = (
            format!("load:{}:tpm", LeaseId::new()),
            format!("load:{}:rpm", LeaseId::new()),
        );
        for (key, capacity) in [(&tpm, u64::MAX / 2), (&rpm, capacity)] {
            service
                .define(LimitDefinition::rolling(key.clone(), capacity, 60))
                .await
                .unwrap();
        }
        let started = Instant::now();
        let callers = (0..CALLERS).map(|_| {
            let (service, tpm, rpm) = (service.clone(), tpm.clone(), rpm.clone());
            async move {
                let mut allowed = 0;
                for _ in 0..RESERVES_PER_CALLER {
                    let request = ReserveRequest::new(
                        LeaseId::new(),
                        vec![Requirement::new(&tpm, 100), Requirement::new(&rpm, 1)],
                    );
                    let answer = service.reserve(&request).await.unwrap();
                    assert_eq!(answer.error, "", "no backend errors under load");
                    allowed += usize::from(answer.allowed);
                }
                allowed
            }
        });
        let allowed: usize = join_all(callers).await.into_iter().sum();
        let elapsed = started.elapsed();
        assert_eq!(allowed as u64, capacity, "exactly the capacity was granted");
        let usage = service.get(&tpm).await.unwrap().unwrap().usage;
        assert_eq!(usage.in_use, capacity * 100, "denied chains took nothing");

        let records = recorder.records();
        let reserves: usize = records.iter().map(|r| r.items).sum();
        assert!(reserves >= total, "every reserve went through the batcher");
        assert!(records.iter().all(|r| r.events <= 253));
        let per_batch = reserves as f64 / records.len() as f64;
        assert!(per_batch > 4.0, "reserves per request under load: {per_batch:.1}");
        let sessions: std::collections::BTreeSet<usize> =
            records.iter().map(|r| r.session).collect();
        eprintln!(
            "{total} reserves (2 keys each) from {CALLERS} callers in {elapsed:?}: {:.0} reserves/s, \
             {} requests, {per_batch:.1} reserves per request, largest {} events, {} sessions",
            total as f64 / elapsed.as_secs_f64(),
            records.len(),
            records.iter().map(|r| r.events).max().unwrap_or(0),
            sessions.len(),
        );
    })
    .await
    .expect("test finished within 120 s");
}
