//! Model-based test: random sequences of reserve / complete / advance-time / define /
//! apply-decreases over a few keys, run against the real actors (through the service) and
//! against a simple single-threaded reference model of SPEC §4. Outcomes must be equal, and
//! invariant 1 (in use ≤ capacity) must hold after every step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::limits::spread_over_arbiters;
use proptest::prelude::*;
use ratelimiter::actors::MemoryBackend;
use ratelimiter::model::{
    Actual, CompleteRequest, LeaseId, LimitDefinition, LimitKind, LimitState, LimitStatus,
    ManualClock, Overage, Requirement, ReserveRequest, RetryPolicy,
};
use ratelimiter::service::LimiterService;

const KEYS: [&str; 4] = ["rolling:a", "rolling:b", "conc:c", "undefined:d"];

fn definition(index: usize, capacity: u64) -> LimitDefinition {
    let (kind, window_seconds, timeout_seconds, overage) = match index {
        0 => (LimitKind::Rolling, 10, 0, Overage::Debt),
        1 => (LimitKind::Rolling, 4, 0, Overage::Deny),
        _ => (LimitKind::Concurrency, 0, 5, Overage::Debt),
    };
    LimitDefinition {
        key: KEYS[index].into(),
        kind,
        capacity,
        window_seconds,
        timeout_seconds,
        unit: String::new(),
        description: String::new(),
        overage,
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Reserve with a new lease (None) or a lease used before (Some(index)).
    Reserve(Option<usize>, Vec<(usize, u64)>),
    Complete(usize, Vec<(usize, u64)>),
    Advance(i64),
    Define(usize, u64),
    ApplyDecreases,
}

fn requirement_set() -> impl Strategy<Value = Vec<(usize, u64)>> {
    proptest::sample::subsequence(vec![0usize, 1, 2, 3], 1..=3)
        .prop_flat_map(|keys| {
            let n = keys.len();
            (Just(keys), proptest::collection::vec(0u64..8, n))
        })
        .prop_map(|(keys, amounts)| keys.into_iter().zip(amounts).collect())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (proptest::option::of(0usize..16), requirement_set()).prop_map(|(l, r)| Op::Reserve(l, r)),
        3 => (0usize..16, requirement_set()).prop_map(|(l, a)| Op::Complete(l, a)),
        2 => (0i64..3_000).prop_map(Op::Advance),
        1 => (0usize..3, 1u64..12).prop_map(|(k, c)| Op::Define(k, c)),
        1 => Just(Op::ApplyDecreases),
    ]
}

/// How long a reservation lives: the window plus the default margin (rolling), the timeout
/// (concurrency).
fn hold_ms(definition: &LimitDefinition) -> i64 {
    let margin = match definition.kind {
        LimitKind::Rolling => RetryPolicy::default().window_margin_ms as i64,
        LimitKind::Concurrency => 0,
    };
    definition.hold_ms() + margin
}

#[derive(Debug, Clone)]
struct RefReservation {
    lease: LeaseId,
    amount: u64,
    expires: i64,
}

#[derive(Debug)]
struct RefKey {
    state: LimitState,
    reservations: Vec<RefReservation>,
    debt: u64,
}

impl RefKey {
    fn expire(&mut self, now: i64) {
        self.reservations.retain(|r| r.expires > now);
    }
    fn in_use(&self) -> u64 {
        self.reservations.iter().map(|r| r.amount).sum()
    }
    fn capacity(&self) -> u64 {
        self.state.definition.capacity
    }
    fn take_out(&mut self, lease: LeaseId) -> Option<RefReservation> {
        let i = self.reservations.iter().position(|r| r.lease == lease)?;
        Some(self.reservations.remove(i))
    }
}

#[derive(Debug, Clone)]
enum RefLease {
    Allowed {
        holds: Vec<(String, u64)>,
        completed: bool,
    },
    Denied,
}

/// The reference: SPEC §4 written as plainly as possible, single-threaded.
#[derive(Debug, Default)]
struct Reference {
    now: i64,
    keys: HashMap<String, RefKey>,
    leases: HashMap<LeaseId, (RefLease, i64)>,
}

impl Reference {
    fn forget(&mut self) {
        let now = self.now;
        self.leases.retain(|_, (_, forget_at)| *forget_at > now);
        for key in self.keys.values_mut() {
            key.expire(now);
        }
    }

    fn reserve(&mut self, lease: LeaseId, reqs: &[(String, u64)]) -> (bool, String) {
        self.forget();
        if let Some(r) = reqs.iter().find(|(k, _)| {
            self.keys
                .get(k)
                .is_some_and(|s| s.state.status == LimitStatus::Decreasing)
        }) {
            return (false, format!("limit_decreasing:{}", r.0));
        }
        if let Some(r) = reqs.iter().find(|(k, _)| !self.keys.contains_key(k)) {
            return (false, format!("unknown_limit_key:{}", r.0));
        }
        if let Some(r) = reqs.iter().find(|(k, a)| *a > self.keys[k].capacity()) {
            return (false, format!("exceeds_capacity:{}", r.0));
        }
        if let Some((outcome, _)) = self.leases.get(&lease) {
            return (matches!(outcome, RefLease::Allowed { .. }), String::new());
        }
        let longest = reqs
            .iter()
            .map(|(k, _)| hold_ms(&self.keys[k].state.definition))
            .max()
            .unwrap_or(0);
        let fits = reqs.iter().all(|(k, a)| {
            let key = &self.keys[k];
            key.in_use()
                .checked_add(*a)
                .is_some_and(|t| t <= key.capacity())
        });
        if !fits {
            self.leases
                .insert(lease, (RefLease::Denied, self.now + longest));
            return (false, String::new());
        }
        for (k, a) in reqs {
            let now = self.now;
            let key = self.keys.get_mut(k).unwrap();
            let mut expires = now + hold_ms(&key.state.definition);
            let mut amount = *a;
            if let Some(old) = key.take_out(lease) {
                expires = expires.max(old.expires);
                amount += old.amount;
            }
            key.reservations.push(RefReservation {
                lease,
                amount,
                expires,
            });
        }
        let holds = reqs.to_vec();
        self.leases.insert(
            lease,
            (
                RefLease::Allowed {
                    holds,
                    completed: false,
                },
                self.now + longest,
            ),
        );
        (true, String::new())
    }

    fn complete(&mut self, lease: LeaseId, actuals: &[(String, u64)]) {
        self.forget();
        let Some((RefLease::Allowed { holds, completed }, _)) = self.leases.get_mut(&lease) else {
            return;
        };
        if *completed {
            return;
        }
        *completed = true;
        let holds = holds.clone();
        let now = self.now;
        for (k, _) in holds {
            let key = self.keys.get_mut(&k).unwrap();
            if key.state.definition.kind == LimitKind::Concurrency {
                key.take_out(lease);
                continue;
            }
            let Some(actual) = actuals.iter().find(|(ak, _)| *ak == k).map(|(_, a)| *a) else {
                continue;
            };
            let Some(res) = key.take_out(lease) else {
                continue;
            };
            if actual <= res.amount {
                if actual > 0 {
                    key.reservations.push(RefReservation {
                        amount: actual,
                        ..res
                    });
                }
            } else if key.in_use() + actual <= key.capacity() {
                key.reservations.push(RefReservation {
                    amount: actual,
                    expires: res.expires.max(now + 1000),
                    ..res
                });
            } else {
                if key.state.definition.overage == Overage::Debt {
                    key.debt += actual - res.amount;
                }
                key.reservations.push(res);
            }
        }
    }

    fn define(&mut self, def: LimitDefinition) -> LimitStatus {
        let next = match self.keys.get(&def.key) {
            Some(existing) => existing.state.updated_with(def).unwrap(),
            None => LimitState::active(def),
        };
        let status = next.status;
        let entry = self
            .keys
            .entry(next.definition.key.clone())
            .or_insert(RefKey {
                state: next.clone(),
                reservations: Vec::new(),
                debt: 0,
            });
        entry.state = next;
        status
    }

    fn apply_decreases(&mut self) -> usize {
        self.forget();
        let mut applied = 0;
        for key in self.keys.values_mut() {
            if key.state.status == LimitStatus::Decreasing
                && key.in_use() <= key.state.pending_decrease_to
            {
                key.state = key.state.decrease_applied();
                applied += 1;
            }
        }
        applied
    }
}

async fn run(ops: Vec<Op>) {
    let clock = ManualClock::new(0);
    let backend = MemoryBackend::start_with(
        clock.clone(),
        RetryPolicy::default(),
        spread_over_arbiters(&(0..3).map(|i| definition(i, 1).key).collect::<Vec<_>>()),
    );
    let service: Arc<LimiterService> = LimiterService::in_memory(backend).await.unwrap();
    let mut reference = Reference::default();
    for (i, capacity) in [(0usize, 10u64), (1, 6), (2, 2)] {
        service.define(definition(i, capacity)).await.unwrap();
        reference.define(definition(i, capacity));
    }
    let mut leases: Vec<LeaseId> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Reserve(reuse, reqs) => {
                let lease = match reuse {
                    Some(i) if i < leases.len() => leases[i],
                    _ => {
                        leases.push(LeaseId::new());
                        *leases.last().unwrap()
                    }
                };
                let reqs: Vec<(String, u64)> = reqs
                    .into_iter()
                    .map(|(k, a)| (KEYS[k].to_string(), a.max(1)))
                    .collect();
                let request = ReserveRequest::new(
                    lease,
                    reqs.iter().map(|(k, a)| Requirement::new(k, *a)).collect(),
                );
                let got = service.reserve(&request).await.unwrap();
                let want = reference.reserve(lease, &reqs);
                assert_eq!(
                    (got.allowed, got.error.clone()),
                    want,
                    "step {step}: reserve {reqs:?}"
                );
            }
            Op::Complete(i, actuals) => {
                let Some(&lease) = leases.get(i) else {
                    continue;
                };
                let actuals: Vec<(String, u64)> = actuals
                    .into_iter()
                    .map(|(k, a)| (KEYS[k].to_string(), a))
                    .collect();
                let request = CompleteRequest::new(
                    lease,
                    actuals.iter().map(|(k, a)| Actual::new(k, *a)).collect(),
                );
                assert!(service.complete(&request).await.unwrap().ok);
                reference.complete(lease, &actuals);
            }
            Op::Advance(ms) => {
                clock.advance_ms(ms);
                reference.now += ms;
            }
            Op::Define(k, capacity) => {
                let got = service.define(definition(k, capacity)).await.unwrap();
                assert_eq!(
                    got,
                    reference.define(definition(k, capacity)),
                    "step {step}: define"
                );
            }
            Op::ApplyDecreases => {
                let got = service.apply_pending_decreases().await;
                assert_eq!(
                    got,
                    reference.apply_decreases(),
                    "step {step}: apply decreases"
                );
            }
        }
        reference.forget();
        for info in service.list().await.unwrap() {
            let key = &reference.keys[&info.state.definition.key];
            assert_eq!(info.state, key.state, "step {step}: state");
            assert_eq!(
                info.usage.in_use,
                key.in_use(),
                "step {step}: in_use of {}",
                info.state.definition.key
            );
            assert_eq!(info.usage.debt, key.debt, "step {step}: debt");
            assert!(
                info.usage.in_use <= info.state.definition.capacity,
                "step {step}: invariant 1"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn actors_match_the_reference_model(ops in proptest::collection::vec(op(), 1..80)) {
        actix_rt::System::new().block_on(async move {
            tokio::time::timeout(Duration::from_secs(10), run(ops))
                .await
                .expect("a case finishes within 10 s");
        });
    }
}
