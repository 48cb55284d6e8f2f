//! The real `ratelimiterd` binary with a small `--lease-capacity`: a storm of denials on a
//! daily key never pushes a concurrency hold out of the lease table (its `complete` still
//! frees the slot), and a table full of leases in flight refuses further reserves with
//! `backend_error`, takes nothing, and says once which setting to raise.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::bound::bounded;

const DAILY: &str = "tenant:acme:llm:daily_tokens";
const INFLIGHT: &str = "global:llm:openai:gpt-4o:concurrency";

/// A running `ratelimiterd` on 127.0.0.1 whose stderr lines are collected.
struct Daemon {
    _child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

impl Daemon {
    /// Starts the binary with `--lease-capacity capacity` and waits until it listens.
    async fn start(dir: &Path, capacity: usize) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ratelimiterd"));
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("RATELIMITERD_")) {
            cmd.env_remove(name);
        }
        cmd.current_dir(dir)
            .env("RUST_LOG", "info")
            .args(["--listen", "127.0.0.1:0", "--workers", "1"])
            .arg("--registry")
            .arg(dir.join("limits.json"))
            .args(["--lease-capacity", &capacity.to_string()])
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("binary starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let collected = Arc::clone(&log);
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_string());
                    }
                }
                collected.lock().unwrap().push(line);
            }
        });
        let addr = rx.await.expect("the server logs its address");
        Daemon {
            _child: child,
            base: format!("http://{addr}"),
            log,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Value {
        let response = request.send().await.expect("request answered");
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.expect("JSON answer")
    }

    async fn define(&self, definition: Value) {
        let url = format!("{}/v1/admin/limits", self.base);
        let answer = self.send(self.client.put(url).json(&definition)).await;
        assert_eq!(answer["ok"], true, "{answer}");
    }

    async fn reserve(&self, lease: &str, key: &str, amount: u64) -> Value {
        let body = json!({"lease_id": lease, "requirements": [{"key": key, "amount": amount}]});
        let url = format!("{}/v1/reserve", self.base);
        self.send(self.client.post(url).json(&body)).await
    }

    async fn complete(&self, lease: &str) {
        let url = format!("{}/v1/complete", self.base);
        let body = json!({"lease_id": lease, "actuals": []});
        let answer = self.send(self.client.post(url).json(&body)).await;
        assert_eq!(answer, json!({"ok": true, "error": ""}));
    }

    async fn in_use(&self, key: &str) -> u64 {
        let url = format!("{}/v1/admin/limits/{key}", self.base);
        let answer = self.send(self.client.get(url)).await;
        answer["limit"]["usage"]["in_use"].as_u64().unwrap()
    }

    /// Waits until a collected stderr line contains `needle`; returns every line so far.
    async fn log_until(&self, needle: &str) -> Vec<String> {
        loop {
            let lines = self.log.lock().unwrap().clone();
            if lines.iter().any(|l| l.contains(needle)) {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
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
        let daemon = Daemon::start(dir.path(), 3).await;
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
        daemon.complete(&hold).await;
        assert_eq!(daemon.in_use(INFLIGHT).await, 0, "complete freed the slot");
        let next = daemon.reserve(&lease(), INFLIGHT, 1).await;
        assert_eq!(next["allowed"], true, "{next}");
        let retried = daemon.reserve(storm.last().unwrap(), DAILY, 1).await;
        assert!(
            denied(&retried),
            "the newest denied id stays denied: {retried}"
        );
        let log = daemon.log.lock().unwrap().join("\n");
        assert!(!log.contains("lease table is full"), "{log}");
    })
    .await;
}

#[tokio::test]
async fn a_full_table_of_live_leases_refuses_with_backend_error_and_one_warning() {
    bounded(30, async {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::start(dir.path(), 3).await;
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
        let warnings: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("lease table is full"))
            .collect();
        assert_eq!(warnings.len(), 1, "{lines:#?}");
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
        daemon.complete(&live[0]).await;
        assert_eq!(
            daemon.reserve(&late, INFLIGHT, 1).await["allowed"],
            true,
            "a complete frees a slot; the refused id was not remembered"
        );
        assert_eq!(daemon.in_use(INFLIGHT).await, 3);
    })
    .await;
}
