//! A real `ratelimiterd` process on 127.0.0.1: started with any flags, its stderr collected,
//! driven over HTTP, stopped with a signal. Killed when dropped.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `ratelimiterd` whose stderr lines are collected.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

impl Daemon {
    /// Starts the binary in `dir` with `--listen 127.0.0.1:0 --workers 1` and `args` (no
    /// inherited RATELIMITERD_* variables) and waits until it listens.
    pub async fn start(dir: &Path, args: &[&str]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ratelimiterd"));
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("RATELIMITERD_")) {
            cmd.env_remove(name);
        }
        cmd.current_dir(dir)
            .env("RUST_LOG", "info")
            .args(["--listen", "127.0.0.1:0", "--workers", "1"])
            .args(args)
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
        let Ok(addr) = rx.await else {
            let status = child.wait().await;
            panic!(
                "ratelimiterd exited before listening ({status:?}): {:#?}",
                log.lock().unwrap()
            );
        };
        Daemon {
            child,
            base: format!("http://{addr}"),
            log,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        }
    }

    /// Sends `request`, expects a 2xx JSON answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Value {
        let response = request.send().await.expect("request answered");
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.expect("JSON answer")
    }

    /// PUTs a definition; expects it accepted.
    pub async fn define(&self, definition: Value) {
        let url = format!("{}/v1/admin/limits", self.base);
        let answer = self.send(self.client.put(url).json(&definition)).await;
        assert_eq!(answer["ok"], true, "{answer}");
    }

    /// Reserves `amount` of one key for `lease`.
    pub async fn reserve(&self, lease: &str, key: &str, amount: u64) -> Value {
        let body = json!({"lease_id": lease, "requirements": [{"key": key, "amount": amount}]});
        let url = format!("{}/v1/reserve", self.base);
        self.send(self.client.post(url).json(&body)).await
    }

    /// Completes `lease` with the given actuals; expects `ok`.
    pub async fn complete(&self, lease: &str, actuals: &[(&str, u64)]) {
        let url = format!("{}/v1/complete", self.base);
        let actuals: Vec<Value> = actuals
            .iter()
            .map(|(key, amount)| json!({"key": key, "actual_amount": amount}))
            .collect();
        let body = json!({"lease_id": lease, "actuals": actuals});
        let answer = self.send(self.client.post(url).json(&body)).await;
        assert_eq!(answer, json!({"ok": true, "error": ""}));
    }

    /// The key's `in_use` from the admin API.
    pub async fn in_use(&self, key: &str) -> u64 {
        let url = format!("{}/v1/admin/limits/{key}", self.base);
        let answer = self.send(self.client.get(url)).await;
        answer["limit"]["usage"]["in_use"].as_u64().unwrap()
    }

    /// Every stderr line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a collected stderr line contains `needle`; returns every line so far.
    pub async fn log_until(&self, needle: &str) -> Vec<String> {
        loop {
            let lines = self.log();
            if lines.iter().any(|l| l.contains(needle)) {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`, ...) and waits for the process to exit;
    /// returns its exit status and every stderr line.
    pub async fn stop(mut self, signal: &str) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().expect("running child has a pid");
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let status = self.child.wait().await.expect("the process exits");
        // The reader task drains what was written before the exit.
        tokio::time::sleep(Duration::from_millis(50)).await;
        (status, self.log())
    }
}
