use std::time::Duration;

use actix::Arbiter;

use super::*;
use crate::actors::key_shard::ShardHandle;
use crate::model::{LimitDefinition, ManualClock, Requirement, RetryPolicy};

#[actix_rt::test]
async fn a_denial_dropped_before_its_rollback_is_acknowledged_forgets_the_lease_even_unpolled() {
    let arbiter = Arbiter::new();
    let policy = RetryPolicy::default();
    let shards = vec![ShardHandle::start(policy, Some(&arbiter.handle()))];
    let coordinator = ReserveCoordinator::new(ManualClock::new(0), policy, 10, shards);
    coordinator
        .define(LimitDefinition::concurrency("k", 1, 600))
        .await
        .unwrap();
    let lease = LeaseId::new();
    // Begun, denied, its rollback not yet acknowledged: what `decide` leaves to
    // `record_after`.
    let begun = coordinator.book(lease).table.begin_if(lease, 0, |_| true);
    assert!(matches!(begun, Ok(Begun::New)));
    let draft = Draft {
        lease,
        now_ms: 0,
        holds: Holds::from([]),
        longest_hold_ms: 600_000,
    };
    let (_ack, rx) = oneshot::channel();
    let denied = Ok(ReserveOutcome::Denied { retry_after_ms: 1 });
    drop(coordinator.record_after(Acks::from_iter([rx]), denied, draft));
    // Forgotten, so the client's retry is decided anew instead of waiting for an answer
    // that never comes.
    let retry = ReserveCommand::new(lease, vec![Requirement::new("k", 1)]);
    let outcome = tokio::time::timeout(Duration::from_secs(10), coordinator.reserve(retry))
        .await
        .expect("the retry is answered within 10 s");
    assert!(matches!(outcome, Ok(ReserveOutcome::Allowed { .. })));
    arbiter.stop();
}
