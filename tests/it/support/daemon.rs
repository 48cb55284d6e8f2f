//! The real `ratelimiterd` binary as a child process on loopback, for tests that need the
//! whole program (a browser, a restart): started with the given flags in a directory, its
//! address read from its log, its log kept for failure messages, killed on drop.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
