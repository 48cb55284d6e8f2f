use std::time::Duration;

use super::*;
use crate::model::lease_ids::MAX_LEASE_PARTS;
use crate::model::{Actual, CompleteCommand, ManualClock, Requirement, ReserveCommand};

/// A reserve of one unit on each of `keys`, for a new lease.
fn one_each(keys: &[&str]) -> ReserveCommand {
    ReserveCommand {
        lease: LeaseId::new(),
        job_id: None,
        requirements: keys.iter().map(|key| Requirement::new(*key, 1)).collect(),
    }
}

#[actix_rt::test]
async fn a_reserve_dropped_mid_way_gives_back_what_it_took_and_can_be_retried() {
    let arbiter = Arbiter::new();
    let policy = RetryPolicy::default();
    let shards = vec![ShardHandle::start(policy, Some(&arbiter.handle()))];
    let coordinator = ReserveCoordinator::new(ManualClock::new(0), policy, 10, shards);
    coordinator
        .define(LimitDefinition::concurrency("k", 1, 600))
        .await
        .unwrap();
    // The shard's keys are busy: nothing is decided while the reserve is polled.
    coordinator.shards[0].lock_keys_for(&arbiter.handle(), Duration::from_millis(200));
    let command = one_each(&["k"]);
    {
        let mut reserve = Box::pin(coordinator.reserve(command.clone()));
        assert!(futures::poll!(reserve.as_mut()).is_pending());
    }
    // Queued behind the take and its rollback.
    assert_eq!(coordinator.usage("k").await.unwrap().in_use, 0);
    assert!(matches!(
        coordinator.reserve(command).await,
        Ok(ReserveOutcome::Allowed { .. })
    ));
    arbiter.stop();
}

#[actix_rt::test]
async fn a_reserve_dropped_mid_way_gives_back_both_what_was_taken_at_once_and_what_was_queued() {
    let (idle, busy) = (Arbiter::new(), Arbiter::new());
    let policy = RetryPolicy::default();
    let shards = vec![
        ShardHandle::start(policy, Some(&idle.handle())),
        ShardHandle::start(policy, Some(&busy.handle())),
    ];
    let coordinator = ReserveCoordinator::new(ManualClock::new(0), policy, 10, shards);
    // One key on each shard.
    let key_on = |shard: usize| {
        (0..)
            .map(|i| format!("k{i}"))
            .find(|k| shard_of(k, 2) == shard)
            .unwrap()
    };
    let (taken_at_once, queued) = (key_on(0), key_on(1));
    for key in [&taken_at_once, &queued] {
        coordinator
            .define(LimitDefinition::concurrency(key.as_str(), 1, 600))
            .await
            .unwrap();
    }
    coordinator.shards[1].lock_keys_for(&busy.handle(), Duration::from_millis(200));
    let command = one_each(&[&taken_at_once, &queued]);
    let checks = async {
        {
            let mut reserve = Box::pin(coordinator.reserve(command.clone()));
            assert!(futures::poll!(reserve.as_mut()).is_pending());
            assert_eq!(coordinator.usage(&taken_at_once).await.unwrap().in_use, 1);
        }
        // The idle shard's part is released by place; the queued part by its shard,
        // which finds nobody to answer.
        assert_eq!(coordinator.usage(&taken_at_once).await.unwrap().in_use, 0);
        assert_eq!(coordinator.usage(&queued).await.unwrap().in_use, 0);
        assert!(matches!(
            coordinator.reserve(command).await,
            Ok(ReserveOutcome::Allowed { .. })
        ));
    };
    tokio::time::timeout(Duration::from_secs(10), checks)
        .await
        .expect("done within 10 s");
    idle.stop();
    busy.stop();
}

#[test]
fn a_small_lease_book_is_one_part_and_a_large_one_a_power_of_two_up_to_sixteen() {
    assert_eq!(book_parts(3), 1, "a small bound stays exact");
    assert_eq!(book_parts(LEASES_PER_BOOK_PART * 2 - 1), 1);
    assert_eq!(book_parts(LEASES_PER_BOOK_PART * 2), 2);
    assert_eq!(book_parts(LEASES_PER_BOOK_PART * 7), 4);
    assert_eq!(book_parts(1_000_000), 8);
    assert_eq!(book_parts(usize::MAX), MAX_LEASE_PARTS);
}

/// A coordinator with one shard on a new arbiter, keys `k` (concurrency) defined.
pub(super) async fn with_key(max_leases: usize, arbiter: &Arbiter) -> ReserveCoordinator {
    let policy = RetryPolicy::default();
    let shards = vec![ShardHandle::start(policy, Some(&arbiter.handle()))];
    let coordinator = ReserveCoordinator::new(ManualClock::new(0), policy, max_leases, shards);
    coordinator
        .define(LimitDefinition::concurrency("k", 1_000_000, 600))
        .await
        .unwrap();
    coordinator
}

#[actix_rt::test]
async fn leases_in_every_part_of_the_book_are_snapshotted_and_taken_back_in_whatever_its_parts() {
    let arbiter = Arbiter::new();
    let checks = async {
        let split = with_key(LEASES_PER_BOOK_PART * 4, &arbiter).await;
        assert_eq!(split.books.len(), 4);
        let commands: Vec<_> = (0..64).map(|_| one_each(&["k"])).collect();
        for command in &commands {
            let outcome = split.reserve(command.clone()).await.unwrap();
            assert!(matches!(outcome, ReserveOutcome::Allowed { .. }));
        }
        let parts_used = commands
            .iter()
            .map(|c| split.book_part(c.lease))
            .collect::<std::collections::HashSet<_>>();
        assert_eq!(parts_used.len(), 4, "64 random ids reach every part");
        let (_, snapshot) = split.snapshot(None).await.unwrap().unwrap();
        assert_eq!(snapshot.leases.len(), 64);

        let whole = with_key(10_000, &arbiter).await;
        assert_eq!(whole.books.len(), 1);
        assert_eq!(whole.restore(snapshot).await.unwrap().leases, 64);
        assert_eq!(whole.usage("k").await.unwrap().in_use, 64);
        for command in &commands {
            // A repeat is answered from the table: nothing is taken again.
            let outcome = whole.reserve(command.clone()).await.unwrap();
            assert!(matches!(outcome, ReserveOutcome::Allowed { .. }));
        }
        assert_eq!(whole.usage("k").await.unwrap().in_use, 64);
    };
    tokio::time::timeout(Duration::from_secs(10), checks)
        .await
        .expect("done within 10 s");
    arbiter.stop();
}

#[actix_rt::test]
async fn a_snapshot_is_skipped_until_something_changes_and_a_split_table_holds_its_whole_capacity()
{
    let arbiter = Arbiter::new();
    let checks = async {
        let coordinator = with_key(1, &arbiter).await;
        let (generation, _) = coordinator.snapshot(None).await.unwrap().unwrap();
        assert!(coordinator
            .snapshot(Some(generation))
            .await
            .unwrap()
            .is_none());
        coordinator.reserve(one_each(&["k"])).await.unwrap();
        let (next, snapshot) = coordinator
            .snapshot(Some(generation))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(next, generation);
        assert_eq!(snapshot.leases.len(), 1);
        assert!(coordinator.snapshot(Some(next)).await.unwrap().is_none());
        match coordinator.reserve(one_each(&["k"])).await {
            Err(BackendError::LeaseTableFull(full)) => assert_eq!(full.capacity, 1),
            other => panic!("expected a full table, got {other:?}"),
        }

        // A split book takes exactly its whole capacity, though its parts fill unevenly;
        // the refusal names the whole capacity.
        let total = LEASES_PER_BOOK_PART * 2;
        let split = with_key(total, &arbiter).await;
        assert_eq!(split.books.len(), 2);
        for i in 0..total {
            let outcome = split.reserve(one_each(&["k"])).await;
            assert!(outcome.is_ok(), "lease {i}: {outcome:?}");
        }
        match split.reserve(one_each(&["k"])).await {
            Err(BackendError::LeaseTableFull(full)) => assert_eq!(full.capacity, total),
            other => panic!("expected a full table, got {other:?}"),
        }
    };
    tokio::time::timeout(Duration::from_secs(30), checks)
        .await
        .expect("done within 30 s");
    arbiter.stop();
}

#[actix_rt::test]
async fn actuals_apply_to_their_keys_in_any_order() {
    let arbiter = Arbiter::new();
    let checks = async {
        let coordinator = with_key(10, &arbiter).await;
        for key in ["a", "b"] {
            let definition = LimitDefinition::rolling(key, 1_000, 60);
            coordinator.define(definition).await.unwrap();
        }
        let lease = LeaseId::new();
        let requirements = vec![Requirement::new("a", 100), Requirement::new("b", 200)];
        let command = ReserveCommand {
            lease,
            job_id: None,
            requirements,
        };
        coordinator.reserve(command).await.unwrap();
        let actuals = vec![Actual::new("b", 20), Actual::new("a", 10)];
        let complete = CompleteCommand {
            lease,
            job_id: None,
            actuals,
        };
        coordinator.complete(complete).await.unwrap();
        assert_eq!(coordinator.usage("a").await.unwrap().in_use, 10);
        assert_eq!(coordinator.usage("b").await.unwrap().in_use, 20);
    };
    tokio::time::timeout(Duration::from_secs(10), checks)
        .await
        .expect("done within 10 s");
    arbiter.stop();
}
