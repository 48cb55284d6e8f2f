//! The microbatch actor against a real server (started by [`crate::tigerbeetle::testing`]):
//! items are never split, batches never exceed the limit (checked with the batch recorder), a
//! partial batch leaves within the flush interval and a full one at once, failures reach the
//! right item, a server that refuses a batch as too large lowers the limit, and a dead
//! address fails within the timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::join_all;
use tigerbeetle_unofficial::error::CreateTransferErrorKind as Kind;
use tigerbeetle_unofficial::{Account, Transfer};

use super::{
    BatchRecorder, CreateAccounts, GetStats, LookupAccounts, MicrobatchActor, Submit,
    FIRST_CALL_ALLOWANCE,
};
use crate::backend::{BackendError, Fault};
use crate::settings::TigerBeetleSettings;
use crate::tigerbeetle::testing as tb;
use crate::tigerbeetle::transfers::{link, Failures};

/// Runs an async test body, failing the test if it takes longer than `secs` seconds.
pub(super) async fn bounded<F: Future>(secs: u64, body: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), body)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within its {secs} s bound"))
}

pub(super) fn config(batch_max_events: usize, flush_interval_us: u64) -> TigerBeetleSettings {
    TigerBeetleSettings {
        batch_max_events,
        flush_interval_us,
        ..tb::config(tb::shared())
    }
}

pub(super) fn start(config: TigerBeetleSettings) -> (Addr<MicrobatchActor>, BatchRecorder) {
    let recorder = BatchRecorder::new();
    (
        MicrobatchActor::new(config, Some(recorder.clone())).start(),
        recorder,
    )
}

/// Two fresh unconstrained accounts: (debit, credit).
pub(super) async fn accounts(actor: &Addr<MicrobatchActor>) -> (u128, u128) {
    let (a, b) = (tigerbeetle_unofficial::id(), tigerbeetle_unofficial::id());
    let failures = actor
        .send(CreateAccounts(vec![
            Account::new(a, 1, 1),
            Account::new(b, 1, 1),
        ]))
        .await
        .unwrap()
        .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    (a, b)
}

/// A linked chain of `n` posted transfers of 1 from `a` to `b`.
pub(super) fn chain(n: usize, a: u128, b: u128) -> Vec<Transfer> {
    chain_from(&vec![a; n], b)
}

/// A linked chain of posted transfers of 1, one from each account of `from` to `to`.
pub(super) fn chain_from(from: &[u128], to: u128) -> Vec<Transfer> {
    let mut chain: Vec<Transfer> = from
        .iter()
        .map(|&debit| {
            Transfer::new(tigerbeetle_unofficial::id())
                .with_debit_account_id(debit)
                .with_credit_account_id(to)
                .with_amount(1)
                .with_ledger(1)
                .with_code(1)
        })
        .collect();
    link(&mut chain);
    chain
}

pub(super) async fn credits(actor: &Addr<MicrobatchActor>, id: u128) -> u128 {
    let found = actor.send(LookupAccounts(vec![id])).await.unwrap().unwrap();
    found[0].credits_posted()
}

pub(super) fn applied(answer: &Result<Failures, BackendError>) -> bool {
    matches!(answer, Ok(failures) if failures.is_empty())
}

#[actix_rt::test]
async fn items_are_never_split_and_batches_never_exceed_the_limit() {
    bounded(60, async {
        let (actor, recorder) = start(config(40, 2_000));
        let (a, b) = accounts(&actor).await;
        // 200 chains of 1..=25 events, sent all at once.
        let sizes: Vec<usize> = (0..200u64).map(|i| (i * 7919 % 25 + 1) as usize).collect();
        let total: usize = sizes.iter().sum();
        let sends = sizes
            .iter()
            .map(|&n| actor.send(Submit(vec![chain(n, a, b)])));
        for answer in join_all(sends).await {
            let answer = answer.unwrap();
            assert_eq!(answer.len(), 1);
            assert!(applied(&answer[0]), "every chain applied whole");
        }
        let records = recorder.records();
        assert!(records.iter().all(|r| r.events <= 40), "{records:?}");
        assert_eq!(records.iter().map(|r| r.items).sum::<usize>(), 200);
        assert_eq!(records.iter().map(|r| r.events).sum::<usize>(), total);
        assert!(
            records.iter().any(|r| r.items > 1),
            "items were batched together"
        );
        assert_eq!(credits(&actor, b).await, total as u128);
        let stats = actor.send(GetStats).await.unwrap();
        assert_eq!(stats.events, total as u64);
        assert!(stats.largest <= 40);
    })
    .await;
}

#[actix_rt::test]
async fn an_item_larger_than_the_limit_is_refused_and_others_go_through() {
    bounded(60, async {
        let (actor, recorder) = start(config(10, 1_000));
        let (a, b) = accounts(&actor).await;
        let answer = actor
            .send(Submit(vec![chain(11, a, b), chain(3, a, b)]))
            .await
            .unwrap();
        match &answer[0] {
            Err(BackendError::Failed(
                fault @ Fault::ItemTooLarge {
                    transfers: 11,
                    limit: 10,
                },
            )) => {
                assert!(fault.to_string().contains("cannot be split"), "{fault}")
            }
            other => panic!("an 11-event item under a limit of 10 must be refused: {other:?}"),
        }
        assert!(applied(&answer[1]));
        assert_eq!(
            credits(&actor, b).await,
            3,
            "nothing of the refused item was sent"
        );
        // An item whose chain is left open would link into its neighbour: refused too.
        let mut open = chain(2, a, b);
        let linked = open[0].flags();
        open[1].set_flags(linked);
        let answer = actor
            .send(Submit(vec![open, chain(1, a, b)]))
            .await
            .unwrap();
        assert!(
            matches!(&answer[0], Err(BackendError::Failed(m @ Fault::OpenChain)) if m.to_string().contains("close its chain"))
        );
        assert!(applied(&answer[1]));
        assert_eq!(credits(&actor, b).await, 4);
        assert!(recorder.records().iter().all(|r| r.events <= 10));
    })
    .await;
}

#[actix_rt::test]
async fn failures_are_mapped_back_to_their_items() {
    bounded(60, async {
        let (actor, recorder) = start(config(253, 50_000));
        let (a, b) = accounts(&actor).await;
        let missing = tigerbeetle_unofficial::id();
        let mut broken = chain(2, a, b);
        broken[1].set_credit_account_id(missing);
        let lone = chain(1, a, missing);
        let answer = actor
            .send(Submit(vec![chain(3, a, b), broken, chain(1, a, b), lone]))
            .await
            .unwrap();
        assert_eq!(
            recorder.records().len(),
            1,
            "one request for the four items"
        );
        assert!(applied(&answer[0]));
        let failures = answer[1].as_ref().unwrap();
        assert!(matches!(
            failures[..],
            [
                (0, Kind::LinkedEventFailed),
                (1, Kind::CreditAccountNotFound)
            ]
        ));
        assert!(applied(&answer[2]));
        let failures = answer[3].as_ref().unwrap();
        assert!(matches!(failures[..], [(0, Kind::CreditAccountNotFound)]));
        assert_eq!(credits(&actor, b).await, 4);
    })
    .await;
}

#[actix_rt::test]
async fn a_partial_batch_waits_for_the_interval_and_a_full_one_leaves_at_once() {
    bounded(60, async {
        let (actor, _) = start(config(5, 300_000));
        let (a, b) = accounts(&actor).await;
        let started = Instant::now();
        let answer = actor.send(Submit(vec![chain(2, a, b)])).await.unwrap();
        assert!(applied(&answer[0]));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300),
            "flushed early: {waited:?}"
        );
        assert!(
            waited < Duration::from_millis(800),
            "flushed late: {waited:?}"
        );

        let started = Instant::now();
        let answer = actor.send(Submit(vec![chain(5, a, b)])).await.unwrap();
        assert!(applied(&answer[0]));
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "a full batch waited"
        );

        let (quick, _) = start(config(253, 20_000));
        // A new client registers its session on its first call: not part of the measure.
        credits(&quick, b).await;
        let started = Instant::now();
        let answer = quick.send(Submit(vec![chain(1, a, b)])).await.unwrap();
        assert!(applied(&answer[0]));
        let waited = started.elapsed();
        assert!(waited < Duration::from_millis(250), "{waited:?}");
    })
    .await;
}

#[actix_rt::test]
async fn a_batch_refused_as_too_large_lowers_the_limit_and_is_resent() {
    bounded(60, async {
        // A production-sized limit against a --development server (253 events at most).
        let (actor, recorder) = start(config(8189, 5_000));
        let (a, b) = accounts(&actor).await;
        let sends = (0..600).map(|_| actor.send(Submit(vec![chain(1, a, b)])));
        for answer in join_all(sends).await {
            assert!(applied(&answer.unwrap()[0]));
        }
        let stats = actor.send(GetStats).await.unwrap();
        assert_eq!(stats.max_events, 253);
        assert!(recorder.records().iter().all(|r| r.events <= 253));
        assert_eq!(credits(&actor, b).await, 600);
    })
    .await;
}

#[actix_rt::test]
async fn calls_to_a_dead_address_fail_within_the_timeout() {
    bounded(30, async {
        let config = TigerBeetleSettings {
            addresses: format!("127.0.0.1:{}", tb::free_port()),
            request_timeout_ms: 300,
            // Extra sessions open only while the first one answers: never here.
            sessions: 4,
            ..config(253, 100)
        };
        let (actor, _) = start(config);
        for _ in 0..2 {
            let started = Instant::now();
            let answers = actor
                .send(Submit(vec![chain(1, 1, 2), chain(1, 1, 2)]))
                .await
                .unwrap();
            for answer in answers {
                assert!(
                    matches!(answer, Err(BackendError::Unavailable(_))),
                    "{answer:?}"
                );
            }
            let lookup = actor.send(LookupAccounts(vec![1])).await.unwrap();
            assert!(matches!(lookup, Err(BackendError::Unavailable(_))));
            // Never registered: every call gets the first-call allowance on top of 300 ms.
            let bound = Duration::from_millis(300) + FIRST_CALL_ALLOWANCE;
            assert!(started.elapsed() < bound * 2 + Duration::from_millis(700));
        }
        let stats = actor.send(GetStats).await.unwrap();
        assert_eq!(stats.timeouts, 4);
        assert!(stats.sessions <= 1, "sessions opened: {}", stats.sessions);
    })
    .await;
}
