//! The real `ratelimiterd` binary as a child process on loopback, for tests that need the
//! whole program (a browser, a restart): started with the given flags in a directory, its
//! address read from its log, its log kept for failure messages, stopped with a signal or
//! killed on drop; with async helpers for its HTTP API, and a blocking client for synchronous
//! tests (a browser).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::http::{complete_body, encode, reserve_body, reserve_body_for};

/// How long the binary may take to log that it listens.
const START_BOUND: Duration = Duration::from_secs(30);

/// A running `ratelimiterd`.
pub struct Daemon {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

impl Daemon {
    /// Starts `ratelimiterd` in `dir` with `args` (which should include `--listen`), with no
    /// inherited `RATELIMITERD_*` settings; panics with its log if it does not listen within
    /// 30 s.
    pub fn start<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ratelimiterd"));
        cmd.current_dir(dir)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("RATELIMITERD_")) {
            cmd.env_remove(name);
        }
        let mut child = cmd.spawn().expect("ratelimiterd starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = Arc::clone(&log);
        // Reads the whole log (so the pipe never fills) and reports the listening address.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, addr)) = line.split_once("listening on http://") {
                    let _ = tx.send(addr.trim().to_string());
                }
                lines.lock().unwrap().push(line);
            }
        });
        match rx.recv_timeout(START_BOUND) {
            Ok(addr) => Daemon {
                child,
                addr: addr.parse().expect("a socket address in the log"),
                log,
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("a client"),
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ratelimiterd did not listen within {START_BOUND:?}; its log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Starts it in `dir` on a free loopback port with one worker and `args`.
    pub fn start_local(dir: &Path, args: &[&str]) -> Daemon {
        let mut all = vec!["--listen", "127.0.0.1:0", "--workers", "1"];
        all.extend_from_slice(args);
        Daemon::start(dir, &all)
    }

    /// Waits (polling, under the caller's time bound) until a log line contains `needle`;
    /// returns the whole log so far.
    pub async fn log_until(&self, needle: &str) -> String {
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`, ...), waits for the exit; returns the exit
    /// status and the whole log.
    pub fn stop(mut self, signal: &str) -> (ExitStatus, String) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let status = self.child.wait().expect("the process exits");
        // The reader thread drains what was written before the exit.
        std::thread::sleep(Duration::from_millis(50));
        (status, self.log())
    }

    /// Sends `request`, expects a 2xx JSON answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Value {
        let response = request.send().await.expect("request answered");
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.expect("JSON answer")
    }

    /// PUTs a definition; expects it accepted.
    pub async fn define(&self, definition: Value) {
        let request = self.client.put(self.url("/v1/admin/limits"));
        let answer = self.send(request.json(&definition)).await;
        assert_eq!(answer["ok"], true, "{answer}");
    }

    /// Reserves `amount` of one key for `lease`; returns the answer.
    pub async fn reserve(&self, lease: &str, key: &str, amount: u64) -> Value {
        let body = reserve_body_for(lease, &[(key, amount)]);
        let request = self.client.post(self.url("/v1/reserve"));
        self.send(request.json(&body)).await
    }

    /// Completes `lease` with the given actuals; expects `ok`.
    pub async fn complete(&self, lease: &str, actuals: &[(&str, u64)]) {
        let body = complete_body(lease, actuals);
        let request = self.client.post(self.url("/v1/complete"));
        let answer = self.send(request.json(&body)).await;
        assert_eq!(answer, json!({"ok": true, "error": ""}));
    }

    /// The key's `in_use` from the admin API.
    pub async fn in_use(&self, key: &str) -> u64 {
        let url = self.url(&format!("/v1/admin/limits/{}", encode(key)));
        let answer = self.send(self.client.get(url)).await;
        answer["limit"]["usage"]["in_use"].as_u64().expect("in_use")
    }

    /// Every limit the admin API lists.
    pub async fn list(&self) -> Vec<Value> {
        let answer = self
            .send(self.client.get(self.url("/v1/admin/limits")))
            .await;
        answer["limits"].as_array().expect("a list").clone()
    }

    /// Kills it at once (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The HTTP API of a running [`Daemon`], called from synchronous code (a browser test).
pub struct BlockingApi {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl BlockingApi {
    /// A client for `daemon`.
    pub fn new(daemon: &Daemon) -> BlockingApi {
        BlockingApi {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("a client"),
            base: daemon.url(""),
        }
    }

    fn send(&self, request: reqwest::RequestBuilder) -> Value {
        self.runtime.block_on(async {
            let response = request.send().await.expect("the API answers");
            let status = response.status();
            let body: Value = response.json().await.expect("a JSON answer");
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        })
    }

    /// Reserves `amount` of `key` and expects it allowed; returns the lease id.
    pub fn reserve(&self, key: &str, amount: u64) -> String {
        let body = reserve_body(&[(key, amount)]);
        let answer = self.send(
            self.client
                .post(format!("{}/v1/reserve", self.base))
                .json(&body),
        );
        assert_eq!(
            answer["allowed"], true,
            "reserve {amount} of {key}: {answer}"
        );
        body["lease_id"].as_str().expect("a lease id").to_string()
    }

    /// Completes `lease_id` with `actual` of `key` and expects it ok.
    pub fn complete(&self, lease_id: &str, key: &str, actual: u64) {
        let body = complete_body(lease_id, &[(key, actual)]);
        let answer = self.send(
            self.client
                .post(format!("{}/v1/complete", self.base))
                .json(&body),
        );
        assert_eq!(answer["ok"], true, "{answer}");
    }

    /// PUTs a definition; returns its status (`active` or `decreasing`).
    pub fn define(&self, definition: &Value) -> String {
        let answer = self.send(
            self.client
                .put(format!("{}/v1/admin/limits", self.base))
                .json(definition),
        );
        answer["status"].as_str().expect("a status").to_string()
    }

    /// The `limit` object the admin API gives for `key`.
    pub fn limit(&self, key: &str) -> Value {
        let url = format!("{}/v1/admin/limits/{}", self.base, encode(key));
        self.send(self.client.get(url))["limit"].clone()
    }
}
