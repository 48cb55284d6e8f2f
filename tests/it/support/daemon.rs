//! The real `ratelimiterd` binary as a child process on loopback, for tests that need the
//! whole program (a browser, a restart): started with the given flags in a directory, its
//! address read from its log, its log kept for failure messages, killed on drop; and a
//! blocking client for its HTTP API.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::http::{complete_body, encode, reserve_body};

/// How long the binary may take to log that it listens.
const START_BOUND: Duration = Duration::from_secs(30);

/// A running `ratelimiterd`.
pub struct Daemon {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
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
