//! The batcher over a recording fake limiter: flush by time and by size, order, kinds kept
//! apart, caller isolation, and failed batch calls.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::bound::bounded;
use async_trait::async_trait;
use futures::future::join_all;
use ratelimiter::client::{BatchConfig, BatchStats, BatchingLimiter, Limiter, LimiterError};
use ratelimiter::model::{
    CompleteRequest, CompleteResponse, LeaseId, Requirement, ReserveRequest, ReserveResponse,
};
use rstest::rstest;

/// One call the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    /// A batch reserve with the `amount` of each item.
    Reserves(Vec<u64>),
    /// A batch complete with the lease id of each item.
    Completes(Vec<String>),
    /// A single-item call: the batcher must never make one.
    Single,
}

/// Answers reserves with `retry_after_ms = amount` and completes with `error = lease id`,
/// so each caller can check that it got the answer to its own request.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
    fail_with: Option<LimiterError>,
    drop_last_result: bool,
}

impl Recorder {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Limiter for Recorder {
    async fn reserve(&self, _: ReserveRequest) -> Result<ReserveResponse, LimiterError> {
        self.calls.lock().unwrap().push(Call::Single);
        Err(LimiterError::Protocol("single reserve".into()))
    }

    async fn complete(&self, _: CompleteRequest) -> Result<CompleteResponse, LimiterError> {
        self.calls.lock().unwrap().push(Call::Single);
        Err(LimiterError::Protocol("single complete".into()))
    }

    async fn batch_reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResponse>, LimiterError> {
        let amounts: Vec<u64> = requests.iter().map(|r| r.requirements[0].amount).collect();
        self.calls
            .lock()
            .unwrap()
            .push(Call::Reserves(amounts.clone()));
        if let Some(error) = &self.fail_with {
            return Err(error.clone());
        }
        let mut results: Vec<ReserveResponse> =
            amounts.into_iter().map(ReserveResponse::denied).collect();
        if self.drop_last_result {
            results.pop();
        }
        Ok(results)
    }

    async fn batch_complete(
        &self,
        requests: Vec<CompleteRequest>,
    ) -> Result<Vec<CompleteResponse>, LimiterError> {
        let leases: Vec<String> = requests.iter().map(|r| r.lease_id.clone()).collect();
        self.calls
            .lock()
            .unwrap()
            .push(Call::Completes(leases.clone()));
        if let Some(error) = &self.fail_with {
            return Err(error.clone());
        }
        Ok(leases
            .into_iter()
            .map(|lease| CompleteResponse {
                ok: true,
                error: lease,
            })
            .collect())
    }
}

fn reserve(amount: u64) -> ReserveRequest {
    ReserveRequest::new(LeaseId::new(), vec![Requirement::new("k", amount)])
}

fn complete() -> CompleteRequest {
    CompleteRequest::new(LeaseId::new(), vec![])
}

fn batcher(inner: Arc<Recorder>, size: usize, flush_ms: u64) -> BatchingLimiter {
    BatchingLimiter::start(inner, BatchConfig { size, flush_ms }).unwrap()
}

#[actix_rt::test]
async fn a_lone_call_is_flushed_after_the_interval() {
    bounded(5, async {
        let inner = Arc::new(Recorder::default());
        let limiter = batcher(inner.clone(), 100, 20);
        let start = Instant::now();
        let answer = limiter.reserve(reserve(3)).await.unwrap();
        let elapsed = start.elapsed();
        assert_eq!(answer.retry_after_ms, 3);
        assert!(
            elapsed >= Duration::from_millis(15),
            "flushed too early: {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_millis(150),
            "flushed too late: {elapsed:?}"
        );
        assert_eq!(inner.calls(), [Call::Reserves(vec![3])]);
    })
    .await;
}

#[actix_rt::test]
async fn a_full_buffer_is_flushed_at_once() {
    bounded(5, async {
        let inner = Arc::new(Recorder::default());
        let limiter = batcher(inner.clone(), 4, 60_000);
        let start = Instant::now();
        let answers = join_all((1..=4).map(|i| limiter.reserve(reserve(i)))).await;
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(inner.calls(), [Call::Reserves(vec![1, 2, 3, 4])]);
    })
    .await;
}

#[actix_rt::test]
async fn every_caller_gets_its_own_answer_in_order() {
    bounded(5, async {
        let inner = Arc::new(Recorder::default());
        let limiter = batcher(inner.clone(), 8, 5);
        let answers = join_all((0..50).map(|i| limiter.reserve(reserve(i)))).await;
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.unwrap().retry_after_ms, i as u64);
        }
        let sent: Vec<u64> = inner
            .calls()
            .into_iter()
            .flat_map(|call| match call {
                Call::Reserves(amounts) => {
                    assert!(amounts.len() <= 8);
                    amounts
                }
                other => panic!("unexpected call {other:?}"),
            })
            .collect();
        assert_eq!(sent, (0..50).collect::<Vec<_>>());
        assert_eq!(
            limiter.stats(),
            BatchStats {
                reserve_batches: 7,
                reserve_items: 50,
                complete_batches: 0,
                complete_items: 0,
            }
        );
    })
    .await;
}

#[actix_rt::test]
async fn reserves_and_completes_never_share_a_batch_call() {
    bounded(5, async {
        let inner = Arc::new(Recorder::default());
        let limiter = batcher(inner.clone(), 100, 5);
        let completes: Vec<CompleteRequest> = (0..5).map(|_| complete()).collect();
        let reserves = join_all((0..5).map(|i| limiter.reserve(reserve(i))));
        let completed = join_all(completes.iter().cloned().map(|c| limiter.complete(c)));
        let (reserved, completed) = futures::join!(reserves, completed);
        assert!(reserved.iter().all(Result::is_ok));
        for (request, answer) in completes.iter().zip(completed) {
            assert_eq!(
                answer.unwrap().error,
                request.lease_id,
                "a caller got another's answer"
            );
        }
        let mut calls = inner.calls();
        calls.sort_by_key(|c| matches!(c, Call::Completes(_)));
        assert_eq!(
            calls,
            [
                Call::Reserves(vec![0, 1, 2, 3, 4]),
                Call::Completes(completes.iter().map(|c| c.lease_id.clone()).collect()),
            ]
        );
    })
    .await;
}

#[rstest]
#[case::timeout(LimiterError::Timeout(7))]
#[case::transport(LimiterError::Transport("connection reset".into()))]
#[actix_rt::test]
async fn a_failed_batch_fails_each_item_with_the_same_error(#[case] error: LimiterError) {
    bounded(5, async {
        let inner = Arc::new(Recorder {
            fail_with: Some(error.clone()),
            ..Recorder::default()
        });
        let limiter = batcher(inner.clone(), 3, 5);
        let answers = join_all((0..3).map(|i| limiter.reserve(reserve(i)))).await;
        assert_eq!(answers, vec![Err(error.clone()); 3]);
        assert!(error.is_unknown_outcome());
        let completes = join_all((0..2).map(|_| limiter.complete(complete()))).await;
        assert_eq!(completes, vec![Err(error.clone()); 2]);
    })
    .await;
}

#[actix_rt::test]
async fn a_wrong_result_count_is_a_protocol_error_for_every_item() {
    bounded(5, async {
        let inner = Arc::new(Recorder {
            drop_last_result: true,
            ..Recorder::default()
        });
        let limiter = batcher(inner.clone(), 2, 5);
        let answers = join_all((0..2).map(|i| limiter.reserve(reserve(i)))).await;
        for answer in answers {
            assert!(
                matches!(answer, Err(LimiterError::Protocol(_))),
                "{answer:?}"
            );
        }
    })
    .await;
}

#[actix_rt::test]
async fn batch_calls_through_the_batcher_keep_their_order() {
    bounded(5, async {
        let inner = Arc::new(Recorder::default());
        let limiter = batcher(inner.clone(), 4, 5);
        let answers = limiter
            .batch_reserve((10..20).map(reserve).collect())
            .await
            .unwrap();
        let hints: Vec<u64> = answers.iter().map(|a| a.retry_after_ms).collect();
        assert_eq!(hints, (10..20).collect::<Vec<_>>());
        assert!(inner.calls().iter().all(|c| !matches!(c, Call::Single)));
    })
    .await;
}
