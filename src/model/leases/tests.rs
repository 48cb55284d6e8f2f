use super::*;

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

fn hold(key: &str, kind: LimitKind) -> Hold {
    Hold {
        key: key.into(),
        amount: 1,
        kind,
        hold_ms: MINUTE,
        place: None,
        home: None,
    }
}

/// A lease begun and allowed at `now_ms` with one hold of `hold_ms`.
fn allowed(table: &mut LeaseTable, now_ms: i64, kind: LimitKind, hold_ms: i64) -> LeaseId {
    let lease = LeaseId::new();
    assert_eq!(table.begin(lease, now_ms), Ok(Begun::New));
    table.allow(lease, now_ms, vec![hold("k", kind)], hold_ms);
    lease
}

#[test]
fn allowed_lease_completes_once() {
    let mut table = LeaseTable::default();
    let lease = LeaseId::new();
    assert_eq!(table.begin(lease, 0), Ok(Begun::New));
    assert_eq!(
        table.begin(lease, 0),
        Ok(Begun::Known(LeaseOutcome::Pending))
    );
    assert_eq!(table.get(lease, 0), Some(LeaseOutcome::Pending));
    table.allow(lease, 0, vec![hold("a", LimitKind::Rolling)], MINUTE);
    assert_eq!(
        table.start_complete(lease, 1),
        Some((0, Holds::from(vec![hold("a", LimitKind::Rolling)])))
    );
    assert!(table.start_complete(lease, 2).is_none());
    assert_eq!(
        table.get(lease, 3),
        Some(LeaseOutcome::Allowed {
            reserved_at_ms: 0,
            completed: true
        })
    );
    assert_eq!((table.in_flight(), table.len()), (0, 1));
    assert_eq!(
        table.begin(lease, 4),
        Ok(Begun::Known(LeaseOutcome::Allowed {
            reserved_at_ms: 0,
            completed: true
        })),
        "a completed id stays known"
    );
    assert_eq!(
        table.get(lease, MINUTE),
        None,
        "forgotten once its hold passed"
    );
}

#[test]
fn denied_lease_is_remembered_for_the_longest_hold() {
    let mut table = LeaseTable::default();
    let lease = LeaseId::new();
    assert_eq!(table.begin(lease, 0), Ok(Begun::New));
    table.deny(lease, 0, 123, MINUTE);
    assert_eq!(
        table.get(lease, MINUTE - 1),
        Some(LeaseOutcome::Denied {
            retry_after_ms: 123
        })
    );
    assert_eq!(table.in_flight(), 0, "a denial frees its slot in flight");
    assert!(table.start_complete(lease, MINUTE - 1).is_none());
    assert_eq!(table.get(lease, MINUTE), None);
    assert!(table.is_empty());
}

#[test]
fn abandon_forgets_only_pending() {
    let mut table = LeaseTable::default();
    let (a, b, c) = (LeaseId::new(), LeaseId::new(), LeaseId::new());
    assert_eq!(table.begin(a, 0), Ok(Begun::New));
    table.abandon(a);
    assert!(table.get(a, 0).is_none());
    table.deny(b, 0, 1, 1000);
    table.abandon(b);
    assert!(table.get(b, 0).is_some());
    assert_eq!(table.begin(c, 0), Ok(Begun::New));
    table.allow(c, 0, vec![], 1000);
    table.abandon(c);
    assert!(table.get(c, 0).is_some());
}

#[test]
#[should_panic(expected = "was allowed and cannot be denied")]
fn an_allowed_lease_cannot_turn_denied() {
    let mut table = LeaseTable::default();
    let lease = LeaseId::new();
    assert_eq!(table.begin(lease, 0), Ok(Begun::New));
    table.allow(lease, 0, vec![hold("a", LimitKind::Rolling)], 60_000);
    table.deny(lease, 1, 5, 60_000);
}

#[test]
#[should_panic(expected = "was denied and cannot be allowed")]
fn a_denied_lease_cannot_turn_allowed() {
    let mut table = LeaseTable::default();
    let lease = LeaseId::new();
    assert_eq!(table.begin(lease, 0), Ok(Begun::New));
    table.deny(lease, 0, 5, 60_000);
    table.allow(lease, 1, vec![hold("a", LimitKind::Rolling)], 60_000);
}

#[test]
fn settled_leases_have_their_own_bound_and_the_soonest_due_go_first() {
    let mut table = LeaseTable::new(2);
    let leases: Vec<_> = (0..3).map(|_| LeaseId::new()).collect();
    table.deny(leases[0], 0, 1, 100);
    table.deny(leases[1], 0, 1, 50);
    table.deny(leases[2], 0, 1, 200);
    assert_eq!(table.len(), 2);
    assert_eq!(table.settled_dropped(), 1);
    assert!(table.get(leases[1], 0).is_none());
    assert!(table.get(leases[0], 0).is_some());
    // Settled leases never take a slot in flight.
    allowed(&mut table, 0, LimitKind::Concurrency, MINUTE);
    allowed(&mut table, 0, LimitKind::Concurrency, MINUTE);
    assert_eq!((table.in_flight(), table.len()), (2, 4));
    // Expired settled leases are purged, not counted as dropped.
    table.deny(LeaseId::new(), 300, 1, 100);
    assert_eq!(table.settled_dropped(), 1);
}

#[test]
fn a_denial_storm_never_forgets_a_lease_in_flight() {
    let mut table = LeaseTable::new(3);
    let inflight = allowed(&mut table, 0, LimitKind::Concurrency, MINUTE);
    let daily = allowed(&mut table, 0, LimitKind::Rolling, DAY);
    let storm: Vec<_> = (0..100).map(|_| LeaseId::new()).collect();
    for (i, lease) in storm.iter().enumerate() {
        let now = i as i64;
        assert_eq!(
            table.begin(*lease, now),
            Ok(Begun::New),
            "denial {i} is decided"
        );
        table.deny(*lease, now, 7, DAY);
    }
    assert_eq!(table.settled_dropped(), 97);
    // The oldest denials went first; the newest are still denied.
    assert_eq!(table.get(storm[0], 100), None);
    for lease in &storm[97..] {
        assert_eq!(
            table.get(*lease, 100),
            Some(LeaseOutcome::Denied { retry_after_ms: 7 })
        );
    }
    assert_eq!(
        table.start_complete(inflight, 100),
        Some((0, Holds::from(vec![hold("k", LimitKind::Concurrency)]))),
        "the concurrency hold is still there to release"
    );
    assert!(table.start_complete(daily, 100).is_some());
    assert_eq!(table.refused(), 0);
}

#[test]
fn a_table_full_of_leases_in_flight_refuses_until_one_completes_or_expires() {
    let mut table = LeaseTable::new(2);
    let first = allowed(&mut table, 0, LimitKind::Concurrency, MINUTE);
    let pending = LeaseId::new();
    assert_eq!(
        table.begin(pending, 0),
        Ok(Begun::New),
        "pending counts as in flight"
    );
    let refused = LeaseId::new();
    let full = LeaseTableFull { capacity: 2 };
    assert_eq!(table.begin(refused, 1), Err(full));
    assert_eq!(table.get(refused, 1), None, "a refusal records nothing");
    assert_eq!(
        table.begin(first, 1),
        Ok(Begun::Known(LeaseOutcome::Allowed {
            reserved_at_ms: 0,
            completed: false
        })),
        "known leases are not refused"
    );
    assert!(table.start_complete(first, 2).is_some());
    assert_eq!(
        table.begin(refused, 2),
        Ok(Begun::New),
        "a complete frees a slot"
    );
    table.allow(refused, 2, vec![hold("k", LimitKind::Concurrency)], MINUTE);
    assert_eq!(table.begin(LeaseId::new(), 3), Err(full));
    assert_eq!(table.refused(), 2);
    // The pending entry is forgotten after its own bound, the allowed one after its hold.
    assert_eq!(table.begin(LeaseId::new(), MINUTE + 1), Err(full));
    assert_eq!(table.begin(LeaseId::new(), MINUTE + 2), Ok(Begun::New));
    assert_eq!(
        table.begin(LeaseId::new(), PENDING_FORGET_MS),
        Ok(Begun::New)
    );
    let message = full.to_string();
    for needle in [
        "--lease-capacity",
        "lease_capacity",
        "RATELIMITERD_LEASE_CAPACITY",
    ] {
        assert!(message.contains(needle), "{message}");
    }
}

#[test]
fn a_lease_put_back_after_a_failed_complete_can_complete_again() {
    let mut table = LeaseTable::new(1);
    let lease = allowed(&mut table, 0, LimitKind::Rolling, MINUTE);
    let (reserved_at, holds) = table.start_complete(lease, 1).unwrap();
    assert_eq!(table.in_flight(), 0);
    table.allow(lease, reserved_at, holds.clone(), MINUTE);
    assert_eq!((table.in_flight(), table.len()), (1, 1));
    assert_eq!(table.start_complete(lease, 2), Some((reserved_at, holds)));
}

#[test]
fn export_and_import_carry_every_settled_and_allowed_lease_but_not_pending_ones() {
    let mut table = LeaseTable::new(10);
    let open = allowed(&mut table, 0, LimitKind::Concurrency, MINUTE);
    let done = allowed(&mut table, 0, LimitKind::Rolling, MINUTE);
    table.start_complete(done, 1).unwrap();
    let refused = LeaseId::new();
    table.begin(refused, 1).unwrap();
    table.deny(refused, 1, 250, DAY);
    let deciding = LeaseId::new();
    table.begin(deciding, 2).unwrap();
    let records = table.export(2);
    assert_eq!(records.len(), 3, "{records:?}");
    let json = serde_json::to_string(&records).unwrap();
    let records: Vec<LeaseRecord> = serde_json::from_str(&json).unwrap();

    let mut restored = LeaseTable::new(10);
    assert_eq!(restored.import(records.clone(), 3), 3);
    assert_eq!(
        restored.import(records.clone(), 3),
        0,
        "known leases are kept"
    );
    assert_eq!(restored.get(deciding, 3), None);
    assert_eq!(
        restored.get(refused, 3),
        Some(LeaseOutcome::Denied {
            retry_after_ms: 250
        })
    );
    assert_eq!(
        restored.start_complete(open, 3),
        Some((0, Holds::from(vec![hold("k", LimitKind::Concurrency)])))
    );
    assert!(restored.start_complete(done, 3).is_none(), "completed once");
    // Due entries are dropped at import: past a minute only the denial is left.
    let mut later = LeaseTable::new(10);
    assert_eq!(later.import(records, MINUTE), 1);
    assert!(later.get(refused, MINUTE).is_some());
}

/// What the table must remember of a lease, as a plain list: its outcome and when it is
/// forgotten (pending leases after `PENDING_FORGET_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    Pending,
    Allowed,
    Completed,
    Denied,
}

/// One step of the model-based test: an operation on lease number `lease` (of a few), at a
/// time `advance_ms` after the previous step, with `hold_ms` where it needs one.
#[derive(Debug, Clone)]
struct Step {
    op: u8,
    lease: usize,
    advance_ms: i64,
    hold_ms: i64,
}

fn steps() -> impl proptest::strategy::Strategy<Value = Vec<Step>> {
    use proptest::prelude::*;
    proptest::collection::vec(
        (0u8..6, 0usize..6, 0i64..30_000, 1i64..90_000).prop_map(
            |(op, lease, advance_ms, hold_ms)| Step {
                op,
                lease,
                advance_ms,
                hold_ms,
            },
        ),
        1..120,
    )
}

proptest::proptest! {
    /// With room for everything, the table answers like a list of leases with their outcome
    /// and forget time, whatever the order of begins, decisions, completes and expiries.
    #[test]
    fn remembers_like_a_plain_list(steps in steps()) {
        let ids: Vec<LeaseId> = (0..6).map(|_| LeaseId::new()).collect();
        let mut table = LeaseTable::new(1_000);
        let mut model: Vec<Option<(Kept, i64, i64)>> = vec![None; 6];
        let mut now = 0i64;
        for step in steps {
            now += step.advance_ms;
            for kept in model.iter_mut() {
                if kept.is_some_and(|(_, _, forget)| forget <= now) {
                    *kept = None;
                }
            }
            let (lease, slot) = (ids[step.lease], step.lease);
            match step.op {
                0 => {
                    let begun = table.begin(lease, now).unwrap();
                    match model[slot] {
                        None => {
                            proptest::prop_assert_eq!(begun, Begun::New);
                            model[slot] = Some((Kept::Pending, now, now + PENDING_FORGET_MS));
                        }
                        Some(_) => proptest::prop_assert!(matches!(begun, Begun::Known(_))),
                    }
                }
                1 if matches!(model[slot], Some((Kept::Pending, _, _))) => {
                    table.allow(lease, now, vec![hold("k", LimitKind::Rolling)], step.hold_ms);
                    model[slot] = Some((Kept::Allowed, now, now + step.hold_ms));
                }
                2 if matches!(model[slot], Some((Kept::Pending, _, _))) => {
                    table.deny(lease, now, 7, step.hold_ms);
                    model[slot] = Some((Kept::Denied, now, now + step.hold_ms));
                }
                3 => {
                    table.abandon(lease);
                    if matches!(model[slot], Some((Kept::Pending, _, _))) {
                        model[slot] = None;
                    }
                }
                4 => {
                    let completed = table.start_complete(lease, now);
                    match model[slot] {
                        Some((Kept::Allowed, at, forget)) => {
                            proptest::prop_assert_eq!(completed.map(|(at, _)| at), Some(at));
                            model[slot] = Some((Kept::Completed, at, forget));
                        }
                        _ => proptest::prop_assert!(completed.is_none()),
                    }
                }
                _ => {}
            }
            for (slot, lease) in ids.iter().enumerate() {
                let expected = model[slot].map(|(kept, at, _)| match kept {
                    Kept::Pending => LeaseOutcome::Pending,
                    Kept::Allowed => LeaseOutcome::Allowed { reserved_at_ms: at, completed: false },
                    Kept::Completed => LeaseOutcome::Allowed { reserved_at_ms: at, completed: true },
                    Kept::Denied => LeaseOutcome::Denied { retry_after_ms: 7 },
                });
                proptest::prop_assert_eq!(table.get(*lease, now), expected, "lease {}", slot);
            }
            let in_flight = model
                .iter()
                .filter(|kept| matches!(kept, Some((Kept::Pending | Kept::Allowed, _, _))))
                .count();
            proptest::prop_assert_eq!(table.in_flight(), in_flight);
            proptest::prop_assert_eq!(table.len(), model.iter().flatten().count());
        }
    }
}

#[test]
fn a_key_home_keeps_its_shard_and_slot_and_a_hold_stays_small() {
    let home = KeyHome::new(300, 70_000).expect("fits");
    assert_eq!((home.shard(), home.slot()), (300, 70_000));
    assert_eq!(KeyHome::new(1 << 16, 0), None);
    #[cfg(target_pointer_width = "64")]
    assert_eq!(std::mem::size_of::<Hold>(), 64, "a hold is one cache line");
}
