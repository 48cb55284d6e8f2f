use std::time::Duration;

use actix::Arbiter;

use super::super::tests::with_key;
use super::*;
use crate::model::Requirement;

#[actix_rt::test]
async fn a_denial_dropped_before_its_rollback_is_acknowledged_forgets_the_lease_even_unpolled() {
    let arbiter = Arbiter::new();
    let coordinator = with_key(10, &arbiter).await;
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
