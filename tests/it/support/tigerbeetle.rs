//! A TigerBeetle server started by the tests themselves: a fresh data file in a temporary
//! directory, `--development` mode (at most 253 events per request, ~1.5 GiB of RAM), a free
//! loopback port, and a guaranteed stop.
//!
//! The server runs under a tiny `sh` watchdog that holds our stdin pipe: when the test
//! process exits for any reason (even a static server whose `Drop` never runs), the pipe
//! closes and the watchdog kills the server and removes its directory. [`TbServer::kill`] and [`TbServer::restart`]
//! let chaos tests stop and revive the same data file on the same port.
//!
//! The binary comes from `TB_BIN`, or from `scripts/provision-tigerbeetle.sh` (which builds
//! and caches it on first use). If neither works the test FAILS with a clear message: a
//! missing TigerBeetle must never turn into a silently skipped test (CI sets `CI=true` and
//! relies on that).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
const START_BOUND: Duration = Duration::from_secs(60);

/// The TigerBeetle server binary, or a panic explaining how to get one.
pub fn server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
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
                "{} failed ({}): TigerBeetle is required by this test (set TB_BIN or fix provisioning)",
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
        })
        .clone()
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// One running server process under its watchdog.
struct Running {
    watchdog: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
}

impl Running {
    /// Kills the server, keeping its directory (for a restart, or for `TempDir` to remove).
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

/// A single-replica `--development` TigerBeetle server on a loopback port.
pub struct TbServer {
    dir: tempfile::TempDir,
    port: u16,
    running: Mutex<Option<Running>>,
}

impl TbServer {
    /// Formats a data file and starts a server; panics (fails the test) if it cannot.
    pub fn start() -> TbServer {
        let binary = server_binary();
        let dir = tempfile::Builder::new()
            .prefix("ratelimiter-tb-")
            .tempdir()
            .expect("temporary directory for TigerBeetle");
        let data = dir.path().join("0_0.tigerbeetle");
        let format = Command::new(&binary)
            .args([
                "format",
                "--cluster=0",
                "--replica=0",
                "--replica-count=1",
                "--development",
            ])
            .arg(&data)
            .output()
            .expect("run tigerbeetle format");
        assert!(
            format.status.success(),
            "tigerbeetle format failed: {}",
            String::from_utf8_lossy(&format.stderr)
        );
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

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn spawn(&self) -> Result<(), String> {
        let binary = server_binary();
        let data = self.dir.path().join("0_0.tigerbeetle");
        let log = self.log_path();
        let _ = std::fs::remove_file(&log);
        // Reads one line: `keep` (a kill or restart by the test) leaves the directory;
        // end of input (the test process is gone) also removes it, so a static server's
        // 1 GiB data file does not outlive the test binary.
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
            .arg(self.dir.path())
            .arg("start")
            .arg(format!("--addresses={}", self.address()))
            .arg("--development")
            .arg(&data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot spawn sh for TigerBeetle: {e}"))?;
        let stdin = watchdog.stdin.take();
        let mut line = String::new();
        BufReader::new(watchdog.stdout.take().expect("watchdog stdout"))
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
            if text.contains("listening on") {
                *self.running.lock().unwrap() = Some(running);
                return Ok(());
            }
            let alive = Command::new("kill")
                .args(["-0", &pid.to_string()])
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !alive || started.elapsed() > START_BOUND {
                running.stop();
                return Err(format!(
                    "server on {} {} ; log:\n{}",
                    self.address(),
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

    /// Kills the server at once (SIGKILL), keeping its data file.
    pub fn kill(&self) {
        if let Some(running) = self.running.lock().unwrap().take() {
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

/// One server per test binary, started on first use and killed when the process exits.
pub fn shared() -> &'static TbServer {
    static SERVER: OnceLock<TbServer> = OnceLock::new();
    SERVER.get_or_init(TbServer::start)
}

/// Backend settings for a test server: a `--development` server takes at most 253 events
/// per request, so batches stay within that.
pub fn config(server: &TbServer) -> ratelimiter::tigerbeetle::TigerBeetleSettings {
    ratelimiter::tigerbeetle::TigerBeetleSettings {
        addresses: server.address(),
        cluster: 0,
        request_timeout_ms: 5_000,
        batch_max_events: 253,
        flush_interval_us: 100,
    }
}

/// TigerBeetle releases an expired pending transfer's balance on its own periodic pulse,
/// observed up to ~0.5 s after the timeout when nothing else is written; waits past an
/// expiry add this much.
pub const EXPIRY_SLACK_MS: u64 = 500;

/// One raw TigerBeetle client per test binary, on the shared server, for looking at the
/// ledger directly (a cluster holds at most 64 client sessions, so tests do not make more).
fn raw_client() -> &'static tigerbeetle_unofficial::Client {
    static CLIENT: OnceLock<tigerbeetle_unofficial::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        tigerbeetle_unofficial::Client::new(0, shared().address()).expect("raw TigerBeetle client")
    })
}

/// Looks an account up on the shared server.
pub async fn account(id: u128) -> Option<tigerbeetle_unofficial::Account> {
    tokio::time::timeout(
        Duration::from_secs(10),
        raw_client().lookup_accounts(vec![id]),
    )
    .await
    .expect("lookup_accounts answered in time")
    .expect("lookup_accounts succeeded")
    .into_iter()
    .find(|a| a.id() == id)
}

/// Looks a transfer up on the shared server.
pub async fn transfer(id: u128) -> Option<tigerbeetle_unofficial::Transfer> {
    tokio::time::timeout(
        Duration::from_secs(10),
        raw_client().lookup_transfers(vec![id]),
    )
    .await
    .expect("lookup_transfers answered in time")
    .expect("lookup_transfers succeeded")
    .into_iter()
    .find(|t| t.id() == id)
}

/// The limit account of `key` on the shared server: (credits_posted, debits_posted,
/// debits_pending).
pub async fn limit_balance(key: &str) -> (u128, u128, u128) {
    let a = account(ratelimiter::tigerbeetle::accounts::limit_id(key))
        .await
        .unwrap_or_else(|| panic!("no limit account for {key}"));
    (a.credits_posted(), a.debits_posted(), a.debits_pending())
}
