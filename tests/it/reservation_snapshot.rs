//! The real `ratelimiterd` on the memory backend keeps its live reservations across a restart:
//! saved beside the registry at SIGTERM/SIGINT (and every `--snapshot-interval-ms`), loaded at
//! start. A restart never grants a window twice, a lease reserved before it completes after
//! it, a denied id stays denied; a crash loses at most one interval; an unusable snapshot
//! blocks instead of granting; expired entries are dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::bound::bounded;
use crate::support::daemon::Daemon;

const RPM: &str = "global:llm:openai:gpt-4o:rpm";
const INFLIGHT: &str = "global:llm:openai:gpt-4o:concurrency";

fn lease() -> String {
    ulid::Ulid::new().to_string()
}

fn registry(dir: &Path) -> PathBuf {
    dir.join("state/limits.json")
}

fn snapshot_file(dir: &Path) -> PathBuf {
    dir.join("state/limits.reservations.json")
}

/// The daemon on `dir`'s registry, with `extra` flags.
fn daemon(dir: &Path, extra: &[&str]) -> Daemon {
    let registry = registry(dir);
    let mut args = vec!["--registry", registry.to_str().unwrap()];
    args.extend_from_slice(extra);
    Daemon::start_local(dir, &args)
}

async fn define_limits(daemon: &Daemon) {
    daemon
        .define(json!({"key": RPM, "kind": "rolling", "capacity": 2, "window_seconds": 60}))
        .await;
    daemon
        .define(
            json!({"key": INFLIGHT, "kind": "concurrency", "capacity": 1,
                       "timeout_seconds": 600}),
        )
        .await;
}

fn denied(answer: &Value) -> bool {
    answer["allowed"] == false
        && answer["error"] == ""
        && answer["retry_after_ms"].as_u64() > Some(0)
}

/// Stops with `signal`; expects a clean exit that saved the reservations.
fn stop_gracefully(daemon: Daemon, signal: &str) {
    let (status, log) = daemon.stop(signal);
    assert!(status.success(), "{status:?}: {log}");
    assert!(log.contains("live reservations saved"), "{log}");
}

#[tokio::test]
async fn a_graceful_restart_never_grants_a_window_twice_and_keeps_every_lease() {
    for signal in ["TERM", "INT"] {
        bounded(30, async {
            let dir = tempfile::tempdir().unwrap();
            // Periodic saves off: only the save at the stop can carry the state over.
            let first = daemon(dir.path(), &["--snapshot-interval-ms", "0"]);
            define_limits(&first).await;
            let (a, b, refused) = (lease(), lease(), lease());
            assert_eq!(first.reserve(&a, RPM, 1).await["allowed"], true);
            assert_eq!(first.reserve(&b, RPM, 1).await["allowed"], true);
            assert!(denied(&first.reserve(&refused, RPM, 1).await));
            let hold = lease();
            assert_eq!(first.reserve(&hold, INFLIGHT, 1).await["allowed"], true);
            let reserved_at = first.reserve(&a, RPM, 1).await["reserved_at_unix_ms"].clone();
            stop_gracefully(first, signal);
            assert!(snapshot_file(dir.path()).exists());

            let second = daemon(dir.path(), &["--snapshot-interval-ms", "0"]);
            let log = second.log();
            assert!(
                log.contains("3 live reservation(s) on 2 key(s) and 4 lease(s) restored"),
                "{log}"
            );
            assert_eq!(second.in_use(RPM).await, 2, "the window is still taken");
            assert!(
                denied(&second.reserve(&lease(), RPM, 1).await),
                "no second window"
            );
            assert!(
                denied(&second.reserve(&lease(), INFLIGHT, 1).await),
                "the hold is still held"
            );
            let replay = second.reserve(&a, RPM, 1).await;
            assert_eq!(
                (
                    replay["allowed"].clone(),
                    replay["reserved_at_unix_ms"].clone()
                ),
                (json!(true), reserved_at),
                "a replayed reserve gets the same answer"
            );
            assert!(
                denied(&second.reserve(&refused, RPM, 1).await),
                "a denied id stays denied"
            );
            // Leases reserved before the restart complete after it.
            second.complete(&hold, &[]).await;
            assert_eq!(second.in_use(INFLIGHT).await, 0, "complete freed the slot");
            assert_eq!(second.reserve(&lease(), INFLIGHT, 1).await["allowed"], true);
            second.complete(&a, &[(RPM, 0)]).await;
            assert_eq!(second.in_use(RPM).await, 1, "reconciled to the actual");
            assert_eq!(second.reserve(&lease(), RPM, 1).await["allowed"], true);
            stop_gracefully(second, signal);
        })
        .await;
    }
}

#[tokio::test]
async fn a_crash_loses_at_most_one_snapshot_interval() {
    bounded(30, async {
        let dir = tempfile::tempdir().unwrap();
        let first = daemon(dir.path(), &["--snapshot-interval-ms", "100"]);
        define_limits(&first).await;
        assert_eq!(first.reserve(&lease(), RPM, 2).await["allowed"], true);
        // Two intervals: the periodic save has run since the reserve.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (status, _) = first.stop("KILL");
        assert!(!status.success());

        let second = daemon(dir.path(), &["--snapshot-interval-ms", "100"]);
        assert_eq!(second.in_use(RPM).await, 2);
        assert!(denied(&second.reserve(&lease(), RPM, 1).await));
    })
    .await;
}

#[tokio::test]
async fn an_unusable_snapshot_blocks_every_key_for_a_window_instead_of_granting() {
    bounded(30, async {
        let dir = tempfile::tempdir().unwrap();
        let first = daemon(dir.path(), &["--snapshot-interval-ms", "0"]);
        define_limits(&first).await;
        stop_gracefully(first, "TERM");
        std::fs::write(snapshot_file(dir.path()), "{\"version\": 1, \"keys\": [tor").unwrap();

        let second = daemon(dir.path(), &["--snapshot-interval-ms", "0"]);
        let log = second.log();
        assert!(
            log.contains("ERROR")
                && log.contains("limits.reservations.json is not a valid snapshot")
                && log.contains("2 key(s) count their whole capacity as in use"),
            "{log}"
        );
        assert!(denied(&second.reserve(&lease(), RPM, 1).await));
        assert!(denied(&second.reserve(&lease(), INFLIGHT, 1).await));
        assert_eq!(second.in_use(RPM).await, 2);
        assert_eq!(second.list().await.len(), 2, "registry intact");
    })
    .await;
}

#[tokio::test]
async fn expired_entries_of_an_old_snapshot_are_dropped_and_live_ones_kept() {
    bounded(30, async {
        let dir = tempfile::tempdir().unwrap();
        let first = daemon(dir.path(), &["--snapshot-interval-ms", "0"]);
        define_limits(&first).await;
        stop_gracefully(first, "TERM");
        let now_ms = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let (live, expired) = (lease(), lease());
        let snapshot = json!({
            "version": 1,
            "taken_at_ms": now_ms - 120_000,
            "keys": [
                {"key": RPM, "debt": 0, "reservations": [
                    {"lease": live, "amount": 1, "expires_at_ms": now_ms + 30_000},
                    {"lease": expired, "amount": 1, "expires_at_ms": now_ms - 60_000}]},
                {"key": "gone:key", "debt": 0, "reservations": [
                    {"lease": lease(), "amount": 1, "expires_at_ms": now_ms + 30_000}]}
            ],
            "leases": [
                {"state": "allowed", "lease": live, "reserved_at_ms": now_ms - 30_000,
                 "forget_at_ms": now_ms + 30_000,
                 "holds": [{"key": RPM, "amount": 1, "kind": "rolling"}]},
                {"state": "allowed", "lease": expired, "reserved_at_ms": now_ms - 120_000,
                 "forget_at_ms": now_ms - 60_000,
                 "holds": [{"key": RPM, "amount": 1, "kind": "rolling"}]}
            ]
        });
        std::fs::write(snapshot_file(dir.path()), snapshot.to_string()).unwrap();

        let second = daemon(dir.path(), &["--snapshot-interval-ms", "0"]);
        let log = second.log();
        assert!(
            log.contains("1 live reservation(s) on 1 key(s) and 1 lease(s) restored"),
            "{log}"
        );
        assert!(log.contains("no longer defined: gone:key"), "{log}");
        assert_eq!(second.in_use(RPM).await, 1);
        assert_eq!(second.reserve(&lease(), RPM, 1).await["allowed"], true);
        assert!(denied(&second.reserve(&lease(), RPM, 1).await));
    })
    .await;
}
