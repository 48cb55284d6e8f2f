use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::oneshot;

use super::*;
use crate::actors::key_shard::{
    ExportKeys, GetUsage, KeySlot, Put, ShardHandle, ShardTake, TakeAll,
};
use crate::model::{LeaseId, LimitDefinition, RetryPolicy};

fn take(shard: &ShardHandle, key: &KeySlot) -> oneshot::Receiver<ShardTake> {
    take_as(shard, key, LeaseId::new())
}

fn take_as(shard: &ShardHandle, key: &KeySlot, lease: LeaseId) -> oneshot::Receiver<ShardTake> {
    let (tx, rx) = oneshot::channel();
    let take = TakeAll {
        lease,
        items: vec![(*key, 1)],
        now_ms: 0,
    };
    shard.post(ShardOp::Take(take, tx));
    rx
}

/// A shard on an arbiter of its own, with the concurrency key `k` of `capacity`.
async fn shard_with_concurrency_key(capacity: u64) -> (Arbiter, ShardHandle, KeySlot) {
    let arbiter = Arbiter::new();
    let shard = ShardHandle::start(RetryPolicy::default(), Some(&arbiter.handle()));
    let slot = shard
        .addr
        .send(Put(
            Arc::from("k"),
            LimitDefinition::concurrency("k", capacity, 600),
        ))
        .await
        .unwrap();
    (arbiter, shard, slot)
}

#[actix_rt::test]
async fn items_queued_while_the_shard_is_busy_are_handled_together_in_order() {
    let (arbiter, shard, key) = shard_with_concurrency_key(2).await;
    // The shard's keys are busy while three takes queue up behind one another.
    shard.lock_keys_for(&arbiter.handle(), Duration::from_millis(200));
    let answers: Vec<_> = (0..3).map(|_| take(&shard, &key)).collect();
    let answers = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(answers))
        .await
        .expect("answered within 5 s");
    let answers: Vec<_> = answers.into_iter().map(Result::unwrap).collect();
    assert!(
        answers[..2]
            .iter()
            .all(|a| matches!(a, ShardTake::Taken(places) if places.len() == 1)),
        "{answers:?}"
    );
    assert!(
        matches!(answers[2], ShardTake::NotFit { .. }),
        "{answers:?}"
    );
    arbiter.stop();
}

#[actix_rt::test]
async fn a_caller_that_finds_the_shard_idle_applies_its_item_on_its_own_thread() {
    let (arbiter, shard, key) = shard_with_concurrency_key(1).await;
    // The shard's thread sleeps (its keys are free): the answers are there at once.
    arbiter.spawn(async { std::thread::sleep(Duration::from_millis(500)) });
    let mut first = take(&shard, &key);
    let mut second = take(&shard, &key);
    assert!(
        matches!(first.try_recv(), Ok(ShardTake::Taken(_))),
        "{first:?}"
    );
    assert!(
        matches!(second.try_recv(), Ok(ShardTake::NotFit { .. })),
        "{second:?}"
    );
    arbiter.stop();
}

#[actix_rt::test]
async fn work_runs_at_once_on_an_idle_shard_and_not_at_all_on_a_busy_one() {
    let (arbiter, shard, key) = shard_with_concurrency_key(1).await;
    let lease = LeaseId::new();
    let items = [(key, 1)];
    let taken = shard.run_now(|keys| keys.take(lease, &items, 0));
    assert!(matches!(taken, Some(ShardTake::Taken(_))), "{taken:?}");
    shard.lock_keys_for(&arbiter.handle(), Duration::from_millis(300));
    let mut ran = false;
    assert_eq!(shard.run_now(|_| ran = true), None);
    assert!(!ran, "a busy shard's keys are not touched");
    // The key's one slot is taken: a take queued behind the busy keys is denied.
    let answer = tokio::time::timeout(Duration::from_secs(5), take(&shard, &key))
        .await
        .expect("answered within 5 s");
    assert!(matches!(answer, Ok(ShardTake::NotFit { .. })), "{answer:?}");
    arbiter.stop();
}

#[actix_rt::test]
async fn a_take_nobody_waits_for_any_more_is_given_back_by_the_shard() {
    let (arbiter, shard, key) = shard_with_concurrency_key(1).await;
    shard.lock_keys_for(&arbiter.handle(), Duration::from_millis(200));
    // Queued behind the busy keys, then its caller stops waiting.
    drop(take(&shard, &key));
    let answer = tokio::time::timeout(Duration::from_secs(5), take(&shard, &key))
        .await
        .expect("answered within 5 s");
    assert!(matches!(answer, Ok(ShardTake::Taken(_))), "{answer:?}");
    arbiter.stop();
}

#[actix_rt::test]
async fn callers_on_several_threads_get_every_item_applied_once_and_in_their_order() {
    const THREADS: usize = 4;
    const OPS: usize = 5_000;
    let capacity = (THREADS * OPS) as u64;
    let (arbiter, shard, key) = shard_with_concurrency_key(capacity).await;
    let callers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let shard = shard.clone();
            std::thread::spawn(move || {
                let mut queued = Vec::new();
                for op in 0..OPS {
                    // The lease names the caller and the item's rank.
                    let lease = LeaseId::from((thread as u128) << 64 | op as u128);
                    // Half the items try the keys at once, half go through the queue.
                    if (op + thread) % 2 == 0 {
                        let items = [(key, 1)];
                        match shard.run_now(|keys| keys.take(lease, &items, 0)) {
                            Some(ShardTake::Taken(_)) => continue,
                            Some(other) => panic!("not taken at once: {other:?}"),
                            None => {}
                        }
                    }
                    queued.push(take_as(&shard, &key, lease));
                }
                queued
            })
        })
        .collect();
    // Meanwhile the actor takes the keys now and then, so drains are handed over.
    for _ in 0..5 {
        shard.lock_keys_for(&arbiter.handle(), Duration::from_millis(2));
    }
    let mut queued = Vec::new();
    for caller in callers {
        queued.extend(caller.join().expect("caller thread"));
    }
    let answers = tokio::time::timeout(Duration::from_secs(20), join_all(queued))
        .await
        .expect("every queued item answered within 20 s");
    for answer in answers {
        assert!(matches!(answer, Ok(ShardTake::Taken(_))), "{answer:?}");
    }
    // Each item took one unit, once: the key is exactly full.
    let usage = shard
        .addr
        .send(GetUsage {
            key: Arc::from("k"),
            now_ms: 0,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(usage.in_use, capacity);
    // The key's reservations in the order they were applied: each caller's in its order.
    let exported = shard.addr.send(ExportKeys { now_ms: 0 }).await.unwrap();
    let mut last_rank = [None; THREADS];
    for reservation in &exported[0].reservations {
        let id = u128::from(reservation.lease);
        let (thread, rank) = ((id >> 64) as usize, id as u64);
        assert!(
            last_rank[thread] < Some(rank),
            "caller {thread}'s item {rank} applied after {:?}",
            last_rank[thread]
        );
        last_rank[thread] = Some(rank);
    }
    let one_more = tokio::time::timeout(Duration::from_secs(5), take(&shard, &key))
        .await
        .expect("answered within 5 s");
    assert!(
        matches!(one_more, Ok(ShardTake::NotFit { .. })),
        "{one_more:?}"
    );
    arbiter.stop();
}

#[actix_rt::test]
async fn a_stopped_shard_closes_its_inbox_and_callers_read_it_as_stopped() {
    let arbiter = Arbiter::new();
    let shard = ShardHandle::start(RetryPolicy::default(), Some(&arbiter.handle()));
    let key: KeySlot = 0;
    arbiter.stop();
    arbiter.join().unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), take(&shard, &key))
        .await
        .expect("answered within 5 s");
    assert!(answer.is_err(), "the answer channel is dropped: {answer:?}");
}
