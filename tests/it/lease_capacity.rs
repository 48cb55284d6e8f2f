//! The real `ratelimiterd` binary with a small `--lease-capacity`: a storm of denials on a
//! daily key never pushes a concurrency hold out of the lease table (its `complete` still
//! frees the slot), and a table full of leases in flight refuses further reserves with
//! `backend_error`, takes nothing, and says once which setting to raise.

use serde_json::{json, Value};

use crate::support::bound::bounded;
use crate::support::daemon::Daemon;

const DAILY: &str = "tenant:acme:llm:daily_tokens";
const INFLIGHT: &str = "global:llm:openai:gpt-4o:concurrency";

/// The binary with its registry in `dir` and `--lease-capacity capacity`.
fn daemon(dir: &std::path::Path, capacity: usize) -> Daemon {
    let registry = dir.join("limits.json");
    let capacity = capacity.to_string();
    let args = [
        "--registry",
        registry.to_str().unwrap(),
        "--lease-capacity",
        &capacity,
    ];
    Daemon::start_local(dir, &args)
}

fn lease() -> String {
    ulid::Ulid::new().to_string()
}

fn daily() -> Value {
    json!({"key": DAILY, "kind": "rolling", "capacity": 10, "window_seconds": 86400})
}

fn inflight(capacity: u64) -> Value {
    json!({"key": INFLIGHT, "kind": "concurrency", "capacity": capacity, "timeout_seconds": 600})
}

fn denied(answer: &Value) -> bool {
    answer["allowed"] == false
        && answer["error"] == ""
        && answer["retry_after_ms"].as_u64() > Some(0)
}

#[tokio::test]
async fn a_denial_storm_on_a_daily_key_keeps_a_concurrency_hold_completable() {
    bounded(30, async {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon(dir.path(), 3);
        daemon.define(daily()).await;
        daemon.define(inflight(1)).await;
        let hold = lease();
        assert_eq!(daemon.reserve(&hold, INFLIGHT, 1).await["allowed"], true);
        assert_eq!(daemon.reserve(&lease(), DAILY, 10).await["allowed"], true);
        let storm: Vec<String> = (0..20).map(|_| lease()).collect();
        for id in &storm {
            let answer = daemon.reserve(id, DAILY, 1).await;
            assert!(denied(&answer), "{answer}");
        }
        daemon.complete(&hold, &[]).await;
        assert_eq!(daemon.in_use(INFLIGHT).await, 0, "complete freed the slot");
        let next = daemon.reserve(&lease(), INFLIGHT, 1).await;
        assert_eq!(next["allowed"], true, "{next}");
        let retried = daemon.reserve(storm.last().unwrap(), DAILY, 1).await;
        assert!(
            denied(&retried),
            "the newest denied id stays denied: {retried}"
        );
        let log = daemon.log();
        assert!(!log.contains("lease table is full"), "{log}");
    })
    .await;
}

#[tokio::test]
async fn a_full_table_of_live_leases_refuses_with_backend_error_and_one_warning() {
    bounded(30, async {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon(dir.path(), 3);
        daemon.define(inflight(10)).await;
        let live: Vec<String> = (0..3).map(|_| lease()).collect();
        for id in &live {
            assert_eq!(daemon.reserve(id, INFLIGHT, 1).await["allowed"], true);
        }
        let refused = json!({"allowed": false, "retry_after_ms": 0,
            "reserved_at_unix_ms": 0, "error": "backend_error"});
        let late = lease();
        for _ in 0..3 {
            assert_eq!(daemon.reserve(&late, INFLIGHT, 1).await, refused);
            assert_eq!(daemon.reserve(&lease(), INFLIGHT, 1).await, refused);
        }
        assert_eq!(daemon.in_use(INFLIGHT).await, 3, "a refusal takes nothing");
        let replay = daemon.reserve(&live[0], INFLIGHT, 1).await;
        assert_eq!(
            replay["allowed"], true,
            "a known lease still replays: {replay}"
        );
        // An admin change logs a line after the refusals: every warning is in by then.
        daemon.define(inflight(11)).await;
        let lines = daemon.log_until("capacity 11").await;
        let warnings: Vec<&str> = lines
            .lines()
            .filter(|l| l.contains("lease table is full"))
            .collect();
        assert_eq!(warnings.len(), 1, "{lines}");
        for needle in [
            "WARN",
            "backend_error",
            "3 leases are in flight",
            "--lease-capacity",
            "lease_capacity",
            "RATELIMITERD_LEASE_CAPACITY",
        ] {
            assert!(warnings[0].contains(needle), "{needle}: {}", warnings[0]);
        }
        daemon.complete(&live[0], &[]).await;
        assert_eq!(
            daemon.reserve(&late, INFLIGHT, 1).await["allowed"],
            true,
            "a complete frees a slot; the refused id was not remembered"
        );
        assert_eq!(daemon.in_use(INFLIGHT).await, 3);
    })
    .await;
}
