//! The batcher with several client sessions, against a real server: under load batches go
//! out on more than one session, every item is answered exactly once, a limited account
//! admits exactly its capacity, and a client that cannot be built answers everything queued
//! at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::join_all;
use tigerbeetle_unofficial::error::CreateTransferErrorKind as Kind;
use tigerbeetle_unofficial::{account, Account, Transfer};

use super::server_tests::{accounts, applied, bounded, chain, chain_from, config, credits, start};
use super::{BatchRecorder, CreateAccounts, GetStats, LookupAccounts, MicrobatchActor, Submit};
use crate::backend::{BackendError, Fault};
use crate::settings::TigerBeetleSettings;

/// Callers submitting at once: enough outstanding events (2 per caller) that whole batches
/// wait while one is in flight.
const CALLERS: usize = 512;

fn with_sessions(sessions: usize) -> TigerBeetleSettings {
    TigerBeetleSettings {
        sessions,
        ..config(253, 100)
    }
}

/// Longest a load keeps going past its rounds while waiting for a second session (a new
/// session registers in ~0.6 s; a fast machine finishes the rounds sooner than that).
const LOAD_PATIENCE: Duration = Duration::from_secs(20);

/// Whether batches went out on more than one session so far.
fn several_sessions_used(recorder: &BatchRecorder) -> bool {
    let used: BTreeSet<usize> = recorder.records().iter().map(|r| r.session).collect();
    used.len() > 1
}

/// `callers` loops of at least `rounds` submits each, all at once, that go on (for at most
/// [`LOAD_PATIENCE`]) until `done` holds; answers every loop's answers.
async fn load<F, D>(
    actor: &Addr<MicrobatchActor>,
    callers: usize,
    rounds: usize,
    done: D,
    item: F,
) -> Vec<Result<super::Failures, BackendError>>
where
    F: Fn() -> Vec<Transfer> + Clone,
    D: Fn() -> bool + Clone,
{
    let give_up = Instant::now() + LOAD_PATIENCE;
    let loops = (0..callers).map(|_| {
        let (actor, item, done) = (actor.clone(), item.clone(), done.clone());
        async move {
            let mut answers = Vec::with_capacity(rounds);
            while answers.len() < rounds || (!done() && Instant::now() < give_up) {
                let mut answer = actor.send(Submit(vec![item()])).await.unwrap();
                assert_eq!(answer.len(), 1, "one answer per item");
                answers.push(answer.remove(0));
            }
            answers
        }
    });
    join_all(loops).await.into_iter().flatten().collect()
}

#[actix_rt::test]
async fn under_load_batches_use_several_sessions_and_every_item_is_answered_once() {
    bounded(120, async {
        let (actor, recorder) = start(with_sessions(4));
        let (a, b) = accounts(&actor).await;
        let used_several = || several_sessions_used(&recorder);
        let answers = load(&actor, CALLERS, 40, used_several, || chain(2, a, b)).await;
        assert!(answers.len() >= CALLERS * 40);
        assert!(answers.iter().all(applied), "every item applied");
        // Applied exactly once: the ledger holds every event, no more.
        let total = (answers.len() * 2) as u128;
        assert_eq!(credits(&actor, b).await, total);
        let records = recorder.records();
        assert_eq!(
            records.iter().map(|r| r.items).sum::<usize>(),
            answers.len(),
            "every item sent once"
        );
        assert!(records.iter().all(|r| r.events <= 253), "limit kept");
        let used: BTreeSet<usize> = records.iter().map(|r| r.session).collect();
        assert!(used.len() > 1, "batches on one session only: {used:?}");
        let stats = actor.send(GetStats).await.unwrap();
        assert!(
            (2..=4).contains(&stats.sessions),
            "sessions open: {}",
            stats.sessions
        );
        assert!(used.iter().all(|&s| s < 4), "{used:?}");
    })
    .await;
}

#[actix_rt::test]
async fn a_limited_account_admits_exactly_its_capacity_over_several_sessions() {
    bounded(120, async {
        let (actor, recorder) = start(with_sessions(4));
        let (free, sink) = accounts(&actor).await;
        let limited = tigerbeetle_unofficial::id();
        let limited_account =
            Account::new(limited, 1, 1).with_flags(account::Flags::DEBITS_MUST_NOT_EXCEED_CREDITS);
        let failures = actor
            .send(CreateAccounts(vec![limited_account]))
            .await
            .unwrap()
            .unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        let capacity: usize = 12_000;
        let fund = Transfer::new(tigerbeetle_unofficial::id())
            .with_debit_account_id(sink)
            .with_credit_account_id(limited)
            .with_amount(capacity as u128)
            .with_ledger(1)
            .with_code(1);
        let answer = actor.send(Submit(vec![vec![fund]])).await.unwrap();
        assert!(applied(&answer[0]));
        // Like a reserve of two keys: one unlimited, then the limited one, linked.
        let item = move || chain_from(&[free, limited], sink);
        // At least 16 384 attempts for 12 000 slots.
        let used_several = || several_sessions_used(&recorder);
        let answers = load(&actor, CALLERS, 32, used_several, item).await;
        let mut admitted = 0;
        for answer in &answers {
            match answer.as_ref().unwrap().as_slice() {
                [] => admitted += 1,
                [(0, Kind::LinkedEventFailed), (1, Kind::ExceedsCredits)] => {}
                other => panic!("unexpected failures {other:?}"),
            }
        }
        assert_eq!(admitted, capacity, "exactly the capacity admitted");
        let found = actor
            .send(LookupAccounts(vec![limited]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found[0].debits_posted(), capacity as u128);
        let used: BTreeSet<usize> = recorder.records().iter().map(|r| r.session).collect();
        assert!(used.len() > 1, "batches on one session only: {used:?}");
    })
    .await;
}

#[actix_rt::test]
async fn one_session_is_used_when_the_limit_is_one() {
    bounded(120, async {
        let (actor, recorder) = start(with_sessions(1));
        let (a, b) = accounts(&actor).await;
        let answers = load(&actor, CALLERS, 10, || true, || chain(2, a, b)).await;
        assert!(answers.iter().all(applied));
        assert!(recorder.records().iter().all(|r| r.session == 0));
        assert_eq!(actor.send(GetStats).await.unwrap().sessions, 1);
    })
    .await;
}

#[actix_rt::test]
async fn a_client_that_cannot_be_built_answers_everything_queued_at_once() {
    bounded(30, async {
        let config = TigerBeetleSettings {
            // Not an address: the client library refuses it when the client is built.
            addresses: "no-such-address".into(),
            sessions: 4,
            ..config(2, 1_000_000)
        };
        let (actor, recorder) = start(config);
        let started = Instant::now();
        // Three items of one event under a limit of two: a full batch leaves at once, the
        // third item stays queued behind it.
        let answers = actor
            .send(Submit(vec![chain(1, 1, 2), chain(1, 1, 2), chain(1, 1, 2)]))
            .await
            .unwrap();
        assert_eq!(answers.len(), 3);
        for answer in &answers {
            assert!(
                matches!(answer, Err(BackendError::Failed(Fault::Client { .. }))),
                "{answer:?}"
            );
        }
        // Well within the 1 s flush interval: nothing waited for more work to arrive.
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        assert!(recorder.records().is_empty(), "nothing was sent");
    })
    .await;
}
