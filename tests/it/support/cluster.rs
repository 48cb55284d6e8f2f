//! Several real `ratelimiterd` instances on one three-replica TigerBeetle cluster: the
//! cluster, one instance per directory (its own registry file), HTTP helpers that return
//! whatever the instance answered (so a test can check errors and time answers), and a lock
//! that runs the cluster tests one at a time (three replicas need ~4.5 GiB of RAM).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use super::daemon::Daemon;
use super::http::{complete_body, encode, lease, reserve_body_for};
use super::tigerbeetle::TbCluster;

/// Bound on one TigerBeetle call made by an instance (`tigerbeetle.request_timeout_ms`).
pub const REQUEST_TIMEOUT_MS: u64 = 1_000;

/// How long a test may wait for the cluster tests before it to finish.
const LOCK_BOUND: Duration = Duration::from_secs(900);

/// Holds the right to start a cluster; dropped when the test ends (also by a panic).
pub type ClusterTurn = tokio::sync::MutexGuard<'static, ()>;

/// Waits (at most 15 min) until no other cluster test runs.
pub async fn one_cluster_at_a_time() -> ClusterTurn {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    tokio::time::timeout(LOCK_BOUND, LOCK.lock())
        .await
        .unwrap_or_else(|_| panic!("another cluster test held the cluster for {LOCK_BOUND:?}"))
}

/// One instance's answer to a reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// `allowed: true`.
    Allowed,
    /// `allowed: false` with no error: not enough capacity now.
    Denied,
    /// `allowed: false` with this `error`.
    Error(String),
    /// No JSON 200 answer: the HTTP status or transport error.
    Failed(String),
}

/// The cluster and its instances.
pub struct Instances {
    /// The cluster (shared with blocking tasks that kill and restart replicas).
    pub cluster: Arc<TbCluster>,
    /// The running instances (`None` only while they are being replaced).
    daemons: Vec<Option<Daemon>>,
    dirs: Vec<TempDir>,
    client: reqwest::Client,
}

impl Instances {
    /// Starts a cluster and `count` instances on it.
    pub async fn start(count: usize) -> Instances {
        let cluster = tokio::task::spawn_blocking(TbCluster::start)
            .await
            .expect("the cluster starts");
        let mut instances = Instances {
            cluster: Arc::new(cluster),
            daemons: (0..count).map(|_| None).collect(),
            dirs: Vec::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client"),
        };
        instances.start_fresh_instances().await;
        instances
    }

    /// Kills every instance, then starts each again in a new, empty directory: no registry,
    /// no local state.
    pub async fn start_fresh_instances(&mut self) {
        for mut daemon in self.daemons.iter_mut().filter_map(Option::take) {
            daemon.kill();
        }
        for index in 0..self.daemons.len() {
            let dir = tempfile::tempdir().expect("a directory");
            let (addresses, cluster) = (self.cluster.addresses(), self.cluster.cluster());
            let path = dir.path().to_path_buf();
            let daemon =
                tokio::task::spawn_blocking(move || start_instance(&path, &addresses, cluster))
                    .await
                    .expect("the instance starts");
            self.daemons[index] = Some(daemon);
            self.dirs.push(dir);
        }
    }

    /// Instance `index`.
    pub fn instance(&self, index: usize) -> &Daemon {
        self.daemons[index].as_ref().expect("the instance runs")
    }

    /// Kills replica `index` (off the async runtime).
    pub async fn kill_replica(&self, index: usize) {
        let cluster = Arc::clone(&self.cluster);
        tokio::task::spawn_blocking(move || cluster.kill(index))
            .await
            .expect("the replica is killed");
    }

    /// Restarts the given replicas at once (off the async runtime).
    pub async fn restart_replicas(&self, replicas: &[usize]) {
        let restarts: Vec<_> = replicas
            .iter()
            .map(|&index| {
                let cluster = Arc::clone(&self.cluster);
                tokio::task::spawn_blocking(move || cluster.restart(index))
            })
            .collect();
        for restart in restarts {
            restart.await.expect("the replica restarts");
        }
    }

    /// Reserves `requirements` for `lease_id` on instance `index`.
    pub async fn reserve(
        &self,
        index: usize,
        lease_id: &str,
        requirements: &[(&str, u64)],
    ) -> Reserved {
        let body = reserve_body_for(lease_id, requirements);
        let url = self.instance(index).url("/v1/reserve");
        match self.client.post(url).json(&body).send().await {
            Err(e) => Reserved::Failed(e.to_string()),
            Ok(response) if !response.status().is_success() => {
                Reserved::Failed(response.status().to_string())
            }
            Ok(response) => match response.json::<Value>().await {
                Err(e) => Reserved::Failed(e.to_string()),
                Ok(answer) if answer["allowed"] == true => Reserved::Allowed,
                Ok(answer) => match answer["error"].as_str() {
                    Some("") => Reserved::Denied,
                    Some(error) => Reserved::Error(error.to_string()),
                    None => Reserved::Failed(answer.to_string()),
                },
            },
        }
    }

    /// Reserves with a fresh lease id; returns it with the answer.
    pub async fn reserve_new(
        &self,
        index: usize,
        requirements: &[(&str, u64)],
    ) -> (String, Reserved) {
        let lease_id = lease();
        let answer = self.reserve(index, &lease_id, requirements).await;
        (lease_id, answer)
    }

    /// Completes `lease_id` on instance `index`; returns `(ok, error)`, or the transport
    /// failure as the error.
    pub async fn complete(
        &self,
        index: usize,
        lease_id: &str,
        actuals: &[(&str, u64)],
    ) -> (bool, String) {
        let url = self.instance(index).url("/v1/complete");
        let body = complete_body(lease_id, actuals);
        match self.client.post(url).json(&body).send().await {
            Err(e) => (false, e.to_string()),
            Ok(response) => match response.json::<Value>().await {
                Err(e) => (false, e.to_string()),
                Ok(answer) => (
                    answer["ok"] == true,
                    answer["error"]
                        .as_str()
                        .unwrap_or("not a complete answer")
                        .to_string(),
                ),
            },
        }
    }

    /// Completes until `ok` (a complete is idempotent; `backend_error` leaves it open).
    pub async fn complete_until_ok(&self, index: usize, lease_id: &str, actuals: &[(&str, u64)]) {
        loop {
            let (ok, error) = self.complete(index, lease_id, actuals).await;
            if ok {
                return;
            }
            assert_eq!(error, "backend_error", "complete of {lease_id}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// PUTs `definition` on instance `index`; returns the HTTP status and the body.
    pub async fn put(&self, index: usize, definition: &Value) -> (u16, Value) {
        let url = self.instance(index).url("/v1/admin/limits");
        let response = self
            .client
            .put(url)
            .json(definition)
            .send()
            .await
            .expect("PUT answered");
        (
            response.status().as_u16(),
            response.json().await.expect("JSON"),
        )
    }

    /// PUTs `definition` on instance `index`, expects it accepted; returns its status.
    pub async fn define(&self, index: usize, definition: &Value) -> String {
        let (status, body) = self.put(index, definition).await;
        assert_eq!(status, 200, "PUT on instance {index}: {body}");
        body["status"].as_str().expect("a status").to_string()
    }

    /// `GET /v1/admin/limits/{key}` on instance `index`: the HTTP status and the body.
    pub async fn get(&self, index: usize, key: &str) -> (u16, Value) {
        let url = self
            .instance(index)
            .url(&format!("/v1/admin/limits/{}", encode(key)));
        let response = self.client.get(url).send().await.expect("GET answered");
        (
            response.status().as_u16(),
            response.json().await.expect("JSON"),
        )
    }

    /// The `limit` object instance `index` gives for `key` (expects it known).
    pub async fn limit(&self, index: usize, key: &str) -> Value {
        let (status, body) = self.get(index, key).await;
        assert_eq!(status, 200, "GET {key} on instance {index}: {body}");
        body["limit"].clone()
    }

    /// The keys instance `index` lists.
    pub async fn listed(&self, index: usize) -> Vec<Value> {
        let url = self.instance(index).url("/v1/admin/limits");
        let response = self.client.get(url).send().await.expect("GET answered");
        let body: Value = response.json().await.expect("JSON");
        body["limits"].as_array().expect("a list").clone()
    }
}

/// Starts one instance in `dir` with `--backend tigerbeetle` on every replica.
fn start_instance(dir: &Path, addresses: &str, cluster: u128) -> Daemon {
    let config = dir.join("ratelimiterd.yaml");
    // A `--development` cluster takes at most 253 events per request.
    let yaml = format!(
        "tigerbeetle:\n  request_timeout_ms: {REQUEST_TIMEOUT_MS}\n  batch_max_events: 253\n"
    );
    std::fs::write(&config, yaml).expect("config written");
    let cluster = cluster.to_string();
    let config = config.display().to_string();
    Daemon::start_local(
        dir,
        &[
            "--config",
            &config,
            "--backend",
            "tigerbeetle",
            "--tb-addresses",
            addresses,
            "--tb-cluster",
            &cluster,
            "--backend-probe-interval-ms",
            "100",
            "--decrease-interval-ms",
            "100",
        ],
    )
}

/// A rolling definition as JSON.
pub fn rolling(key: &str, capacity: u64, window_seconds: u64) -> Value {
    json!({"key": key, "kind": "rolling", "capacity": capacity, "window_seconds": window_seconds})
}

/// A concurrency definition (denying overage) as JSON.
pub fn concurrency(key: &str, capacity: u64, timeout_seconds: u64) -> Value {
    json!({"key": key, "kind": "concurrency", "capacity": capacity,
           "timeout_seconds": timeout_seconds, "overage": "deny"})
}

/// Polls `check` every 50 ms until it returns `Some`, failing after `bound`; returns the
/// value and how long it took.
pub async fn eventually<T, F, Fut>(what: &str, bound: Duration, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return (value, started.elapsed());
        }
        assert!(started.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
