//! Three `ratelimiterd` instances (the real binary) on one three-replica TigerBeetle cluster.
//!
//! - Caps hold exactly: callers spread over the instances reserve concurrently while the
//!   primary replica is killed; a rolling key that is never completed admits exactly its
//!   capacity, a concurrency key never has more leases live than its capacity, and every
//!   instance reports the same usage afterwards.
//! - Faults stay bounded: with a backup replica down every answer is still allowed within one
//!   request timeout; with the whole cluster down every answer is `backend_error` within about
//!   one request timeout; once the replicas are back every instance allows again by itself.
//! - The instances act as one: a limit defined (or decreased) on one is in force on the others
//!   within 2 s; a lease completed on another instance than the one that reserved it frees its
//!   slot and its rolling slack at once; instances restarted with empty local state lose no
//!   limit and no usage.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::answers::{slowest, Answers, Callers, Seen};
use crate::support::bound::bounded;
use crate::support::cluster::{
    concurrency, eventually, one_cluster_at_a_time, rolling, Instances, Reserved,
    REQUEST_TIMEOUT_MS,
};
use crate::support::http::lease;
use crate::support::limits::unique_key;

/// Instances on the cluster.
const INSTANCES: usize = 3;
/// Callers per key, spread round-robin over the instances.
const CALLERS: usize = 12;
/// One request timeout of an instance.
const TIMEOUT: Duration = Duration::from_millis(REQUEST_TIMEOUT_MS);
/// No answer may take longer, whatever fails: the TigerBeetle request in flight, then the
/// caller's own, plus scheduling on a busy 2-core machine.
const NO_HANG: Duration = Duration::from_millis(2 * REQUEST_TIMEOUT_MS + 1_000);
/// "About one request timeout": the bound on answers while a replica or the cluster is down.
const ONE_TIMEOUT: Duration = Duration::from_millis(REQUEST_TIMEOUT_MS + 700);
/// A definition made on one instance is in force on every other one within this.
const SHARED_WITHIN: Duration = Duration::from_secs(2);

/// What the concurrency callers saw.
#[derive(Debug, Default)]
struct Slots {
    live: AtomicI64,
    most_live: AtomicI64,
    completed: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caps_hold_exactly_over_three_instances_with_the_primary_killed_mid_run() {
    let _turn = one_cluster_at_a_time().await;
    bounded(240, async {
        const ROLLING_CAPACITY: u64 = 600;
        const SLOTS: u64 = 4;
        let instances = Arc::new(Instances::start(INSTANCES).await);
        let (roll, conc) = (unique_key("cluster", "roll"), unique_key("cluster", "conc"));
        // Each instance is given the definitions, so this test needs no shared definitions.
        for index in 0..INSTANCES {
            instances
                .define(index, &rolling(&roll, ROLLING_CAPACITY, 3_600))
                .await;
            instances.define(index, &concurrency(&conc, SLOTS, 5)).await;
        }
        let (roll_log, conc_log) = (Answers::default(), Answers::default());
        let slots = Arc::new(Slots::default());
        let rolling_callers = Callers::spawn(CALLERS, {
            let (instances, log, roll) = (Arc::clone(&instances), roll_log.clone(), roll.clone());
            move |caller| {
                let (instances, log, roll) = (Arc::clone(&instances), log.clone(), roll.clone());
                async move {
                    let instance = caller % INSTANCES;
                    log.reserve_until_known(&instances, instance, &[(&roll, 1)])
                        .await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        let concurrency_callers = Callers::spawn(CALLERS, {
            let (instances, log, conc) = (Arc::clone(&instances), conc_log.clone(), conc.clone());
            let slots = Arc::clone(&slots);
            move |caller| {
                let (instances, log, conc) = (Arc::clone(&instances), log.clone(), conc.clone());
                let slots = Arc::clone(&slots);
                async move {
                    let instance = caller % INSTANCES;
                    let (lease_id, answer) = log
                        .reserve_until_known(&instances, instance, &[(&conc, 1)])
                        .await;
                    if answer != Reserved::Allowed {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        return;
                    }
                    // Counted live only between the allowed answer and the complete: a
                    // sub-interval of the ledger's hold, so never more than the ledger holds.
                    let live = slots.live.fetch_add(1, Ordering::SeqCst) + 1;
                    slots.most_live.fetch_max(live, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    slots.live.fetch_sub(1, Ordering::SeqCst);
                    instances
                        .complete_until_ok(instance, &lease_id, &[(&conc, 1)])
                        .await;
                    slots.completed.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let rolling_allowed = || roll_log.count(|s| s.answer == Reserved::Allowed) as u64;
        let third = ROLLING_CAPACITY / 3;
        eventually(
            "a third of the rolling cap used",
            Duration::from_secs(60),
            || async { (rolling_allowed() >= third).then_some(()) },
        )
        .await;
        let primary = instances.cluster.primary().expect("a primary is known");
        let completed_before = slots.completed.load(Ordering::SeqCst);
        let killed_at = Instant::now();
        instances.kill_replica(primary).await;
        let allowed_at_kill = rolling_allowed();
        // The view change elects another primary; the callers keep reserving meanwhile.
        let (_, resumed) = eventually(
            "an allowed answer after the kill",
            Duration::from_secs(30),
            || async {
                let after = |s: &Seen| s.started > killed_at && s.answer == Reserved::Allowed;
                (roll_log.count(after) + conc_log.count(after) > 0).then_some(())
            },
        )
        .await;
        eventually(
            "concurrency leases completed after the kill",
            Duration::from_secs(30),
            || async {
                (slots.completed.load(Ordering::SeqCst) > completed_before + 20).then_some(())
            },
        )
        .await;
        eventually(
            "the rolling cap used up",
            Duration::from_secs(60),
            || async { (rolling_allowed() >= ROLLING_CAPACITY).then_some(()) },
        )
        .await;
        // Attempts past the cap, to show it holds.
        tokio::time::sleep(Duration::from_secs(1)).await;
        rolling_callers.stop(Duration::from_secs(30)).await;
        concurrency_callers.stop(Duration::from_secs(30)).await;

        let seen: Vec<Seen> = roll_log.all().into_iter().chain(conc_log.all()).collect();
        let unexpected: Vec<&Seen> = seen
            .iter()
            .filter(|s| matches!(s.answer, Reserved::Failed(_) | Reserved::Error(_)))
            .filter(|s| !s.is_backend_error())
            .collect();
        assert!(
            unexpected.is_empty(),
            "unexpected answers: {:?}",
            &unexpected[..unexpected.len().min(5)]
        );
        let slowest = slowest(&seen);
        assert!(slowest < NO_HANG, "an answer took {slowest:?}");
        // Exactly the rolling capacity, whatever the failover did.
        assert_eq!(
            rolling_allowed(),
            ROLLING_CAPACITY,
            "rolling leases allowed"
        );
        let denied = roll_log.count(|s| s.answer == Reserved::Denied);
        assert!(denied >= CALLERS, "only {denied} rolling reserves denied");
        let most_live = slots.most_live.load(Ordering::SeqCst);
        assert!(
            most_live <= SLOTS as i64,
            "{most_live} concurrency leases live at once"
        );
        assert_eq!(most_live, SLOTS as i64, "the concurrency cap was reached");
        for index in 0..INSTANCES {
            let usage = &instances.limit(index, &roll).await["usage"];
            assert_eq!(
                usage["in_use"], ROLLING_CAPACITY,
                "instance {index}: {usage}"
            );
            assert_eq!(usage["available"], 0, "instance {index}: {usage}");
            let usage = &instances.limit(index, &conc).await["usage"];
            assert_eq!(usage["in_use"], 0, "instance {index}: {usage}");
            assert_eq!(usage["available"], SLOTS, "instance {index}: {usage}");
        }
        eprintln!(
            "primary (replica {primary}) killed with {allowed_at_kill} rolling leases allowed; \
             {} answers ({denied} rolling denials), {} backend_error; first allowed answer \
             {resumed:?} after the kill; slowest answer {slowest:?}; {} concurrency leases \
             completed",
            seen.len(),
            seen.iter().filter(|s| s.is_backend_error()).count(),
            slots.completed.load(Ordering::SeqCst)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_stay_bounded_with_a_replica_or_the_whole_cluster_down_and_heal_without_a_restart() {
    let _turn = one_cluster_at_a_time().await;
    bounded(240, async {
        let starting = Instant::now();
        let instances = Arc::new(Instances::start(INSTANCES).await);
        let started = starting.elapsed();
        let key = unique_key("cluster", "faults");
        for index in 0..INSTANCES {
            instances
                .define(index, &rolling(&key, 1_000_000_000, 60))
                .await;
        }
        let log = Answers::default();
        let callers = Callers::spawn(CALLERS, {
            let (instances, log, key) = (Arc::clone(&instances), log.clone(), key.clone());
            move |caller| {
                let (instances, log, key) = (Arc::clone(&instances), log.clone(), key.clone());
                async move {
                    let answer = log
                        .reserve(&instances, caller % INSTANCES, &lease(), &[(&key, 1)])
                        .await;
                    let pause = if answer == Reserved::Allowed { 5 } else { 20 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;

        // One backup down: the primary and the other backup are a quorum.
        let primary = instances.cluster.primary().expect("a primary is known");
        let backup = (primary + 1) % INSTANCES;
        instances.kill_replica(backup).await;
        let one_down = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let with_one_down = log.between(one_down, Instant::now());
        assert!(
            with_one_down.len() >= CALLERS,
            "{} answers",
            with_one_down.len()
        );
        for seen in &with_one_down {
            assert_eq!(
                seen.answer,
                Reserved::Allowed,
                "with replica {backup} down: {seen:?}"
            );
            assert!(
                seen.latency < ONE_TIMEOUT,
                "with replica {backup} down: {seen:?}"
            );
        }

        // The whole cluster down.
        let all_down = Instant::now();
        for index in 0..INSTANCES {
            instances.kill_replica(index).await;
        }
        tokio::time::sleep(TIMEOUT + Duration::from_secs(3)).await;
        let while_down = log.between(all_down, Instant::now());
        for seen in &while_down {
            assert!(
                seen.latency < ONE_TIMEOUT,
                "with the cluster down: {seen:?}"
            );
        }
        // Once each instance has had one timeout to notice, every answer is backend_error.
        let after_notice = log.between(all_down + ONE_TIMEOUT, Instant::now());
        assert!(
            after_notice.len() >= CALLERS,
            "{} answers",
            after_notice.len()
        );
        for seen in &after_notice {
            assert!(seen.is_backend_error(), "with the cluster down: {seen:?}");
        }
        for index in 0..INSTANCES {
            assert!(
                after_notice.iter().any(|s| s.instance == index),
                "instance {index} answered while the cluster was down"
            );
        }

        // Back: every instance allows again by itself.
        let restarting = Instant::now();
        instances.restart_replicas(&[0, 1, 2]).await;
        let back = Instant::now();
        let mut recovered = Duration::ZERO;
        for index in 0..INSTANCES {
            let (after, _) = eventually(
                &format!("instance {index} allows again"),
                Duration::from_secs(20),
                || async {
                    log.between(back, Instant::now())
                        .iter()
                        .filter(|s| s.instance == index && s.answer == Reserved::Allowed)
                        .map(|s| s.started + s.latency - back)
                        .min()
                },
            )
            .await;
            recovered = recovered.max(after);
        }
        let settled = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let healed = log.between(settled, Instant::now());
        assert!(
            healed.len() >= CALLERS,
            "{} answers once healed",
            healed.len()
        );
        for seen in &healed {
            assert_eq!(seen.answer, Reserved::Allowed, "once healed: {seen:?}");
        }
        callers.stop(NO_HANG * 2).await;
        let seen = log.all();
        let slowest_overall = slowest(&seen);
        assert!(
            slowest_overall < ONE_TIMEOUT,
            "an answer took {slowest_overall:?}"
        );
        assert!(
            seen.iter()
                .all(|s| !matches!(s.answer, Reserved::Failed(_))),
            "every request got a JSON answer"
        );
        eprintln!(
            "{} answers; replica {backup} down: {} answers, slowest {:?}; cluster down: {} \
             answers, slowest {:?}; every instance allowed again within {recovered:?} of the \
             replicas listening; slowest answer overall {slowest_overall:?}; cluster and \
             instances started in {started:?}, replicas restarted in {:?}",
            seen.len(),
            with_one_down.len(),
            slowest(&with_one_down),
            while_down.len(),
            slowest(&while_down),
            back - restarting,
        );
    })
    .await;
}

/// The parts of `limit` that every instance must agree on.
fn seen_as(limit: &Value) -> (Value, Value, Value) {
    (
        limit["definition"]["capacity"].clone(),
        limit["status"].clone(),
        limit["usage"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_defined_or_decreased_on_one_instance_is_in_force_on_every_instance_within_2_s() {
    let _turn = one_cluster_at_a_time().await;
    bounded(120, async {
        let instances = Instances::start(INSTANCES).await;
        let key = unique_key("cluster", "shared");
        assert_eq!(instances.define(0, &rolling(&key, 10, 600)).await, "active");
        for index in 1..INSTANCES {
            let (_, took) = eventually(
                &format!("instance {index} knows {key}"),
                SHARED_WITHIN,
                || async {
                    let (status, body) = instances.get(index, &key).await;
                    (status == 200).then_some(body)
                },
            )
            .await;
            eprintln!("instance {index} knew the new limit after {took:?}");
            let listed = instances.listed(index).await;
            assert!(
                listed
                    .iter()
                    .any(|l| l["definition"]["key"] == key.as_str()),
                "listed on {index}"
            );
            let (_, answer) = instances.reserve_new(index, &[(&key, 1)]).await;
            assert_eq!(answer, Reserved::Allowed, "reserve on instance {index}");
        }
        // Two of ten in use; an increase made on instance 1 reaches the others.
        assert_eq!(instances.define(1, &rolling(&key, 20, 600)).await, "active");
        for index in [0, 2] {
            eventually(
                &format!("instance {index} sees capacity 20"),
                SHARED_WITHIN,
                || async {
                    let limit = instances.limit(index, &key).await;
                    (limit["definition"]["capacity"] == 20).then_some(())
                },
            )
            .await;
        }
        // A decrease below what is in use, started on instance 0 while instance 2 holds 15.
        let (held, answer) = instances.reserve_new(2, &[(&key, 15)]).await;
        assert_eq!(answer, Reserved::Allowed);
        assert_eq!(
            instances.define(0, &rolling(&key, 5, 600)).await,
            "decreasing"
        );
        for index in 0..INSTANCES {
            let limit = eventually(
                &format!("instance {index} shows decreasing"),
                SHARED_WITHIN,
                || async {
                    let limit = instances.limit(index, &key).await;
                    (limit["status"] == "decreasing").then_some(limit)
                },
            )
            .await
            .0;
            assert_eq!(limit["pending_decrease_to"], 5, "instance {index}: {limit}");
            let (_, answer) = instances.reserve_new(index, &[(&key, 1)]).await;
            assert_eq!(
                answer,
                Reserved::Error(format!("limit_decreasing:{key}")),
                "instance {index}"
            );
        }
        // The holder gives its 15 back: the decrease applies once, everywhere.
        let (ok, error) = instances.complete(2, &held, &[(&key, 0)]).await;
        assert!(ok, "{error}");
        let mut views = Vec::new();
        for index in 0..INSTANCES {
            let limit = eventually(
                &format!("instance {index} shows the decrease applied"),
                SHARED_WITHIN,
                || async {
                    let limit = instances.limit(index, &key).await;
                    (limit["status"] == "active").then_some(limit)
                },
            )
            .await
            .0;
            let usage = &limit["usage"];
            assert_eq!(
                limit["definition"]["capacity"], 5,
                "instance {index}: {limit}"
            );
            assert_eq!(
                usage["in_use"].as_u64().unwrap() + usage["available"].as_u64().unwrap(),
                5,
                "instance {index}: {limit}"
            );
            views.push(seen_as(&limit));
        }
        assert!(
            views.windows(2).all(|w| w[0] == w[1]),
            "instances disagree: {views:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_completed_on_another_instance_frees_its_slot_and_its_slack_at_once() {
    let _turn = one_cluster_at_a_time().await;
    bounded(120, async {
        let instances = Instances::start(INSTANCES).await;
        let (conc, roll) = (unique_key("cluster", "conc"), unique_key("cluster", "roll"));
        // Every instance is given the definitions, so this test needs no shared definitions.
        for index in 0..INSTANCES {
            instances.define(index, &concurrency(&conc, 1, 60)).await;
            instances.define(index, &rolling(&roll, 10, 600)).await;
        }
        let (lease_id, answer) = instances.reserve_new(0, &[(&conc, 1), (&roll, 10)]).await;
        assert_eq!(answer, Reserved::Allowed);
        assert_eq!(
            instances.reserve_new(2, &[(&conc, 1)]).await.1,
            Reserved::Denied
        );
        assert_eq!(
            instances.reserve_new(2, &[(&roll, 1)]).await.1,
            Reserved::Denied
        );

        let (ok, error) = instances
            .complete(1, &lease_id, &[(&conc, 1), (&roll, 4)])
            .await;
        assert!(ok, "complete on instance 1: {error}");
        // At once: no waiting for the 60 s timeout or the 600 s window.
        let started = Instant::now();
        assert_eq!(
            instances.reserve_new(2, &[(&conc, 1)]).await.1,
            Reserved::Allowed,
            "the slot is free"
        );
        assert_eq!(
            instances.reserve_new(2, &[(&roll, 6)]).await.1,
            Reserved::Allowed,
            "the slack is free"
        );
        assert_eq!(
            instances.reserve_new(2, &[(&roll, 1)]).await.1,
            Reserved::Denied,
            "the actual 4 still holds"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // Completing again, anywhere, changes nothing.
        for index in [2, 0] {
            let (ok, error) = instances
                .complete(index, &lease_id, &[(&conc, 1), (&roll, 4)])
                .await;
            assert!(ok, "repeated complete on instance {index}: {error}");
        }
        for index in 0..INSTANCES {
            assert_eq!(
                instances.limit(index, &conc).await["usage"]["in_use"],
                1,
                "instance {index}"
            );
            assert_eq!(
                instances.limit(index, &roll).await["usage"]["in_use"],
                10,
                "instance {index}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_restarted_with_empty_local_state_lose_no_limit_and_no_usage() {
    let _turn = one_cluster_at_a_time().await;
    bounded(120, async {
        let mut instances = Instances::start(INSTANCES).await;
        let (conc, roll) = (unique_key("cluster", "conc"), unique_key("cluster", "roll"));
        instances.define(0, &concurrency(&conc, 3, 600)).await;
        instances.define(0, &rolling(&roll, 10, 600)).await;
        assert_eq!(
            instances.reserve_new(0, &[(&conc, 2), (&roll, 4)]).await.1,
            Reserved::Allowed
        );
        let before = (
            instances.limit(0, &conc).await,
            instances.limit(0, &roll).await,
        );

        // Every instance killed and started again in a new, empty directory.
        instances.start_fresh_instances().await;
        for index in 0..INSTANCES {
            let conc_limit = instances.limit(index, &conc).await;
            let roll_limit = instances.limit(index, &roll).await;
            assert_eq!(conc_limit, before.0, "instance {index}");
            assert_eq!(roll_limit, before.1, "instance {index}");
            let listed = instances.listed(index).await;
            for key in [&conc, &roll] {
                assert!(
                    listed
                        .iter()
                        .any(|l| l["definition"]["key"] == key.as_str()),
                    "{key} listed on {index}"
                );
            }
        }
        assert_eq!(
            instances.reserve_new(1, &[(&conc, 1)]).await.1,
            Reserved::Allowed
        );
        assert_eq!(
            instances.reserve_new(2, &[(&conc, 1)]).await.1,
            Reserved::Denied
        );
        assert_eq!(
            instances.reserve_new(2, &[(&roll, 6)]).await.1,
            Reserved::Allowed
        );
        assert_eq!(
            instances.reserve_new(0, &[(&roll, 1)]).await.1,
            Reserved::Denied
        );
    })
    .await;
}
