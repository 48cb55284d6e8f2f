//! The real `ratelimiterd` binary with a small `--lease-capacity`, on each backend: a storm
//! of denials on a daily key never pushes a concurrency hold out of the lease table (its
//! `complete` still frees the slot), and a table full of leases in flight refuses further
//! reserves with `backend_error`, takes nothing, and says once which setting to raise.

use serde_json::{json, Value};

use crate::support::bound::bounded;
use crate::support::daemon::Daemon;
use crate::support::limits::unique_key;

/// The keys of one test (unique: TigerBeetle tests share one server).
struct Keys {
    daily: String,
    inflight: String,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            daily: unique_key("tenant", "llm:daily_tokens"),
            inflight: unique_key("global", "llm:openai:gpt-4o:concurrency"),
        }
    }
}

/// Where the binary keeps capacity.
#[derive(Debug, Clone, Copy)]
enum On {
    Memory,
    #[cfg(feature = "tigerbeetle")]
    TigerBeetle,
}

/// The binary on `backend` with its registry in `dir` and `--lease-capacity capacity`.
#[cfg_attr(not(feature = "tigerbeetle"), allow(unused_mut, clippy::useless_vec))]
fn daemon(dir: &std::path::Path, capacity: usize, backend: On) -> Daemon {
    let registry = dir.join("limits.json");
    let capacity = capacity.to_string();
    let mut args = vec![
        "--registry".to_string(),
        registry.to_str().unwrap().to_string(),
        "--lease-capacity".to_string(),
        capacity,
    ];
    match backend {
        On::Memory => {}
        #[cfg(feature = "tigerbeetle")]
        On::TigerBeetle => {
            let server = crate::support::tigerbeetle::shared();
            args.extend(
                [
                    "--backend",
                    "tigerbeetle",
                    "--tb-cluster",
                    "0",
                    "--tb-addresses",
                ]
                .map(String::from),
            );
            args.push(server.address());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start_local(dir, &args)
}

fn lease() -> String {
    ulid::Ulid::new().to_string()
}

fn daily(keys: &Keys) -> Value {
    json!({"key": keys.daily, "kind": "rolling", "capacity": 10, "window_seconds": 86400})
}

fn inflight(keys: &Keys, capacity: u64) -> Value {
    json!({"key": keys.inflight, "kind": "concurrency", "capacity": capacity,
        "timeout_seconds": 600})
}

fn denied(answer: &Value) -> bool {
    answer["allowed"] == false
        && answer["error"] == ""
        && answer["retry_after_ms"].as_u64() > Some(0)
}

#[tokio::test]
async fn a_denial_storm_on_a_daily_key_keeps_a_concurrency_hold_completable() {
    denial_storm(On::Memory).await;
}

#[cfg(feature = "tigerbeetle")]
#[tokio::test]
async fn a_denial_storm_keeps_a_concurrency_hold_completable_on_tigerbeetle() {
    denial_storm(On::TigerBeetle).await;
}

/// The denial-storm scenario on `backend`.
async fn denial_storm(backend: On) {
    bounded(30, async {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon(dir.path(), 3, backend);
        let keys = Keys::new();
        let (daily_key, inflight_key) = (keys.daily.as_str(), keys.inflight.as_str());
        daemon.define(daily(&keys)).await;
        daemon.define(inflight(&keys, 1)).await;
        let hold = lease();
        assert_eq!(
            daemon.reserve(&hold, inflight_key, 1).await["allowed"],
            true
        );
        assert_eq!(
            daemon.reserve(&lease(), daily_key, 10).await["allowed"],
            true
        );
        let storm: Vec<String> = (0..20).map(|_| lease()).collect();
        for id in &storm {
            let answer = daemon.reserve(id, daily_key, 1).await;
            assert!(denied(&answer), "{answer}");
        }
        daemon.complete(&hold, &[]).await;
        assert_eq!(
            daemon.in_use(inflight_key).await,
            0,
            "complete freed the slot"
        );
        let next = daemon.reserve(&lease(), inflight_key, 1).await;
        assert_eq!(next["allowed"], true, "{next}");
        let retried = daemon.reserve(storm.last().unwrap(), daily_key, 1).await;
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
    full_table(On::Memory).await;
}

#[cfg(feature = "tigerbeetle")]
#[tokio::test]
async fn a_full_table_refuses_with_backend_error_and_one_warning_on_tigerbeetle() {
    full_table(On::TigerBeetle).await;
}

/// The full-table scenario on `backend`.
async fn full_table(backend: On) {
    bounded(30, async {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon(dir.path(), 3, backend);
        let keys = Keys::new();
        let inflight_key = keys.inflight.as_str();
        daemon.define(inflight(&keys, 10)).await;
        let live: Vec<String> = (0..3).map(|_| lease()).collect();
        for id in &live {
            assert_eq!(daemon.reserve(id, inflight_key, 1).await["allowed"], true);
        }
        let refused = json!({"allowed": false, "retry_after_ms": 0,
            "reserved_at_unix_ms": 0, "error": "backend_error"});
        let late = lease();
        for _ in 0..3 {
            assert_eq!(daemon.reserve(&late, inflight_key, 1).await, refused);
            assert_eq!(daemon.reserve(&lease(), inflight_key, 1).await, refused);
        }
        assert_eq!(
            daemon.in_use(inflight_key).await,
            3,
            "a refusal takes nothing"
        );
        let replay = daemon.reserve(&live[0], inflight_key, 1).await;
        assert_eq!(
            replay["allowed"], true,
            "a known lease still replays: {replay}"
        );
        // An admin change logs a line after the refusals: every warning is in by then.
        daemon.define(inflight(&keys, 11)).await;
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
            daemon.reserve(&late, inflight_key, 1).await["allowed"],
            true,
            "a complete frees a slot; the refused id was not remembered"
        );
        assert_eq!(daemon.in_use(inflight_key).await, 3);
    })
    .await;
}
