//! A throwaway TigerBeetle server on 127.0.0.1 for tests and benchmarks, and read-only
//! looks at its ledger.
//!
//! [`TbServer::start`] formats a fresh data file in a new temporary directory and starts a
//! single-replica `--development` server (at most 253 events per request, ~1.5 GiB of RAM) on
//! a free loopback port. The server runs under a tiny `sh` watchdog that holds a pipe from
//! this process: when the process exits for any reason (even with a static server whose
//! `Drop` never runs), the pipe closes and the watchdog kills the server and removes its
//! directory. [`TbServer::kill`] and [`TbServer::restart`] stop and revive the same data
//! file on the same port (chaos tests). [`TbCluster`] does the same for the three replicas
//! of one cluster, any of which can be killed and restarted.
//!
//! The binary comes from `TB_BIN`, or from `scripts/provision-tigerbeetle.sh` (which builds
//! and caches it on first use). When neither gives one, or the server does not start, these
//! helpers PANIC with a message saying why: they are meant for tests, and a missing
//! TigerBeetle must fail a test, never silently skip it (CI sets `CI=true` and relies on
//! that).
//!
//! The ledger helpers ([`limit_balance`], [`limit_account`], [`debt_account`],
//! [`lease_transfer`]) read the [`shared`] server through one raw client and name accounts
//! and transfers by limit key and lease, so tests need not know the id scheme.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tigerbeetle_unofficial::{Account, Client, Transfer};

use super::accounts::{debt_id, limit_id};
use super::ids::id_for_label;
use super::transfers::{debt_label, rereserve_label, reserve_label, void_label};
use crate::model::LeaseId;
use crate::settings::TigerBeetleSettings;

/// How long a server may take to start listening.
const START_BOUND: Duration = Duration::from_secs(60);

/// How long one ledger lookup may take.
const LOOKUP_BOUND: Duration = Duration::from_secs(10);

/// TigerBeetle releases an expired pending transfer's balance on its own periodic pulse,
/// observed up to ~0.5 s after the timeout when nothing else is written; waits past an
/// expiry add this much.
pub const EXPIRY_SLACK_MS: u64 = 500;

/// The TigerBeetle server binary: `TB_BIN`, else what `scripts/provision-tigerbeetle.sh`
/// prints. Panics with the reason when there is none.
pub fn server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(find_server_binary).clone()
}

fn find_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TB_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "TB_BIN={} is not a file: point it at a TigerBeetle 0.16.78 server binary",
            path.display()
        );
        return path;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/provision-tigerbeetle.sh");
    let output = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} to find the TigerBeetle server ({e}); set TB_BIN to a \
                 TigerBeetle 0.16.78 binary",
                script.display()
            )
        });
    assert!(
        output.status.success(),
        "{} failed ({}): TigerBeetle is required here (set TB_BIN or fix provisioning)",
        script.display(),
        output.status
    );
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim().to_string());
    assert!(
        path.is_file(),
        "{} printed {:?}, which is not a file",
        script.display(),
        path
    );
    path
}

/// A free loopback port (bound, read, released). Panics if none can be bound.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|e| panic!("cannot bind a free port on 127.0.0.1: {e}"))
}

/// A new, empty directory under the system temporary directory, removed on drop.
#[derive(Debug)]
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create() -> ScratchDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut last_error = None;
        for _ in 0..16 {
            let name = format!(
                "ratelimiter-tb-{}-{}-{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            match std::fs::create_dir(&path) {
                Ok(()) => return ScratchDir(path),
                Err(e) => last_error = Some(e),
            }
        }
        panic!("cannot create a temporary directory for TigerBeetle: {last_error:?}")
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One running server process under its watchdog.
#[derive(Debug)]
struct Running {
    watchdog: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
}

impl Running {
    /// Kills the server, keeping its directory (for a restart, or for the owner to remove).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.pid.to_string())
            .status();
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"keep\n");
        }
        let _ = self.watchdog.wait();
    }
}

/// Starts `tigerbeetle start --addresses=<addresses> --development <data>` under a watchdog,
/// logging to `server.log` in `dir` (which the watchdog removes when this process is gone),
/// and waits until it listens on `own`; on failure the server is stopped and the error says
/// why, with its log.
fn spawn_replica(dir: &Path, data: &Path, addresses: &str, own: &str) -> Result<Running, String> {
    let binary = server_binary();
    let log = dir.join("server.log");
    let _ = std::fs::remove_file(&log);
    // Reads one line: `keep` (a kill or restart) leaves the directory; end of input (this
    // process is gone) also removes it, so a static server's 1 GiB data file does not
    // outlive the process.
    let script = r#"tb="$1"; log="$2"; dir="$3"; shift 3
"$tb" "$@" >"$log" 2>&1 &
child=$!
echo "$child"
read -r command || command=gone
kill -KILL "$child" 2>/dev/null
wait "$child" 2>/dev/null
[ "$command" = keep ] || rm -rf "$dir"
exit 0"#;
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("tb-watchdog")
        .arg(&binary)
        .arg(&log)
        .arg(dir)
        .arg("start")
        .arg(format!("--addresses={addresses}"))
        .arg("--development")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot spawn sh for TigerBeetle: {e}"))?;
    let stdin = watchdog.stdin.take();
    let stdout = watchdog
        .stdout
        .take()
        .ok_or("the watchdog has no stdout pipe")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("watchdog did not report the server pid: {e}"))?;
    let pid: u32 = line
        .trim()
        .parse()
        .map_err(|_| format!("watchdog printed {line:?} instead of a pid"))?;
    let running = Running {
        watchdog,
        stdin,
        pid,
    };
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(&format!("listening on {own}")) {
            return Ok(running);
        }
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !alive || started.elapsed() > START_BOUND {
            running.stop();
            return Err(format!(
                "server on {} {} ; log:\n{}",
                own,
                if alive {
                    "did not listen in time"
                } else {
                    "exited"
                },
                text
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `tigerbeetle format --development` of replica `replica` of `replica_count` in `cluster`
/// into `data`; panics with the reason if it fails.
fn format_replica(cluster: u128, replica: usize, replica_count: usize, data: &Path) {
    let binary = server_binary();
    let output = Command::new(&binary)
        .arg("format")
        .arg(format!("--cluster={cluster}"))
        .arg(format!("--replica={replica}"))
        .arg(format!("--replica-count={replica_count}"))
        .arg("--development")
        .arg(data)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} format: {e}", binary.display()));
    assert!(
        output.status.success(),
        "tigerbeetle format of replica {replica} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A single-replica `--development` TigerBeetle server on a loopback port, stopped (and its
/// data removed) on drop.
#[derive(Debug)]
pub struct TbServer {
    dir: ScratchDir,
    port: u16,
    running: Mutex<Option<Running>>,
}

impl TbServer {
    /// Formats a data file and starts a server; panics with the reason if it cannot.
    pub fn start() -> TbServer {
        let dir = ScratchDir::create();
        let data = dir.path().join("0_0.tigerbeetle");
        format_replica(0, 0, 1, &data);
        let mut server = TbServer {
            dir,
            port: free_port(),
            running: Mutex::new(None),
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            match server.spawn() {
                Ok(()) => return server,
                // Most likely the port was taken between probing and binding: try another.
                Err(e) => last_error = e,
            }
            server.port = free_port();
        }
        panic!("TigerBeetle did not start: {last_error}");
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn running(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn(&self) -> Result<(), String> {
        let data = self.dir.path().join("0_0.tigerbeetle");
        let running = spawn_replica(self.dir.path(), &data, &self.address(), &self.address())?;
        *self.running() = Some(running);
        Ok(())
    }

    /// Kills the server at once (SIGKILL), keeping its data file.
    pub fn kill(&self) {
        if let Some(running) = self.running().take() {
            running.stop();
        }
    }

    /// Starts the server again on the same data file and port; panics if it cannot.
    pub fn restart(&self) {
        self.kill();
        let started = Instant::now();
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if started.elapsed() > START_BOUND => {
                    panic!("TigerBeetle did not restart: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

impl Drop for TbServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One server per process, started on first use and killed when the process exits.
pub fn shared() -> &'static TbServer {
    static SERVER: OnceLock<TbServer> = OnceLock::new();
    SERVER.get_or_init(TbServer::start)
}

/// Backend settings for `server`: a `--development` server takes at most 253 events per
/// request, so batches stay within that; one client session (tests share the server's 64).
pub fn config(server: &TbServer) -> TigerBeetleSettings {
    TigerBeetleSettings {
        addresses: server.address(),
        cluster: 0,
        request_timeout_ms: 5_000,
        batch_max_events: 253,
        flush_interval_us: 100,
        sessions: 1,
    }
}

/// One raw TigerBeetle client per process, on the shared server, for looking at the ledger
/// directly (a cluster holds at most 64 client sessions, so no more are made).
fn raw_client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        Client::new(0, shared().address())
            .unwrap_or_else(|e| panic!("cannot create a raw TigerBeetle client: {e}"))
    })
}

/// The answer of one ledger lookup (`what`), or a panic if it fails or takes too long.
async fn lookup<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<Vec<T>, E>>,
) -> Vec<T> {
    tokio::time::timeout(LOOKUP_BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within {LOOKUP_BOUND:?}"))
        .unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

/// Looks an account up on the shared server.
async fn account(id: u128) -> Option<Account> {
    let found = lookup("lookup_accounts", raw_client().lookup_accounts(vec![id])).await;
    found.into_iter().find(|a| a.id() == id)
}

/// The limit account of `key` on the shared server, if it exists.
pub async fn limit_account(key: &str) -> Option<Account> {
    account(limit_id(key)).await
}

/// The debt account of `key` on the shared server, if it exists.
pub async fn debt_account(key: &str) -> Option<Account> {
    account(debt_id(key)).await
}

/// The limit account of `key` on the shared server: (credits_posted, debits_posted,
/// debits_pending). Panics if it does not exist.
pub async fn limit_balance(key: &str) -> (u128, u128, u128) {
    let a = limit_account(key)
        .await
        .unwrap_or_else(|| panic!("no limit account for {key}"));
    (a.credits_posted(), a.debits_posted(), a.debits_pending())
}

/// The transfers a lease makes on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseTransfer {
    /// The pending reservation.
    Reserve,
    /// The void of that reservation (a release or a shrink).
    Void,
    /// The pending re-reservation after a shrink, or the overage that fit.
    Rereserve,
    /// The posted debt of an overage that did not fit.
    Debt,
}

/// The transfer `kind` of `lease` on `key` on the shared server, if it exists.
pub async fn lease_transfer(kind: LeaseTransfer, lease: LeaseId, key: &str) -> Option<Transfer> {
    let label = match kind {
        LeaseTransfer::Reserve => reserve_label(lease, key),
        LeaseTransfer::Void => void_label(lease, key),
        LeaseTransfer::Rereserve => rereserve_label(lease, key),
        LeaseTransfer::Debt => debt_label(lease, key),
    };
    let id = id_for_label(&label);
    let found = lookup("lookup_transfers", raw_client().lookup_transfers(vec![id])).await;
    found.into_iter().find(|t| t.id() == id)
}

mod cluster;
pub use cluster::{TbCluster, REPLICAS};
