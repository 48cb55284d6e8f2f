//! The real `ratelimiterd` binary: start on the example limits, serve, stop on SIGTERM;
//! `--help`; and start-up errors that exit non-zero with one clear line.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BOUND: Duration = Duration::from_secs(30);

fn example_limits() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("limits/example.json")
}

/// The binary with a clean environment for its settings (no inherited RATELIMITERD_*).
fn ratelimiterd(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ratelimiterd"));
    cmd.current_dir(dir)
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("RATELIMITERD_")) {
        cmd.env_remove(name);
    }
    cmd
}

/// Runs to completion; returns the status and stderr.
async fn run(mut cmd: Command) -> (ExitStatus, String, String) {
    let out = cmd.output().await.expect("binary runs");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Reads stderr lines until one contains `needle`; returns every line read.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    needle: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(line) = lines.next_line().await.expect("stderr readable") {
        let found = line.contains(needle);
        seen.push(line);
        if found {
            return seen;
        }
    }
    panic!("stderr ended before {needle:?}: {seen:#?}");
}

fn send_signal(child: &Child, signal: &str) {
    let pid = child.id().expect("running child has a pid");
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test]
async fn serves_the_example_limits_and_stops_on_sigterm() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let registry = dir.path().join("state/limits.json");
        let mut cmd = ratelimiterd(dir.path());
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--registry")
            .arg(&registry);
        cmd.arg("--limits")
            .arg(example_limits())
            .arg("--workers")
            .arg("1")
            .args(["--memory-shards", "3", "--memory-arbiters", "2"]);
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("binary starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = read_until(&mut lines, "listening on http://").await;
        let text = log.join("\n");
        assert!(
            text.contains("limits file") && text.contains("10 limit(s)"),
            "{text}"
        );
        assert!(
            text.contains("keys spread by group over 3 shard(s) on 2 arbiter(s)"),
            "{text}"
        );
        assert!(text.contains(&registry.display().to_string()), "{text}");
        let addr = log
            .last()
            .unwrap()
            .rsplit("http://")
            .next()
            .unwrap()
            .trim()
            .to_string();

        let client = reqwest::Client::new();
        let health: serde_json::Value = client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["status"], "ok");
        let list: serde_json::Value = client
            .get(format!("http://{addr}/v1/admin/limits"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["limits"].as_array().unwrap().len(), 10);
        let reserve = serde_json::json!({"lease_id": ulid::Ulid::new().to_string(),
            "requirements": [{"key": "global:llm:openai:gpt-4o:rpm", "amount": 1},
                             {"key": "tenant:acme:llm:daily_tokens", "amount": 2048}]});
        let answer: serde_json::Value = client
            .post(format!("http://{addr}/v1/reserve"))
            .json(&reserve)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["allowed"], true, "{answer}");
        assert!(registry.exists(), "the seeded registry was saved");
        let example_before = std::fs::read_to_string(example_limits()).unwrap();

        send_signal(&child, "TERM");
        let rest = read_until(&mut lines, "ratelimiterd stopped")
            .await
            .join("\n");
        assert!(
            rest.contains("SIGTERM received; finishing requests in flight"),
            "{rest}"
        );
        assert!(child.wait().await.unwrap().success());
        assert_eq!(
            std::fs::read_to_string(example_limits()).unwrap(),
            example_before,
            "limits file never written"
        );
    })
    .await
    .expect("exceeded its time bound");
}

#[tokio::test]
async fn stops_cleanly_on_sigint() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = ratelimiterd(dir.path());
        cmd.args(["--listen", "127.0.0.1:0", "--workers", "1"]);
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("binary starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        read_until(&mut lines, "listening on http://").await;
        send_signal(&child, "INT");
        let rest = read_until(&mut lines, "ratelimiterd stopped")
            .await
            .join("\n");
        assert!(
            rest.contains("SIGINT received; finishing requests in flight"),
            "{rest}"
        );
        assert!(child.wait().await.unwrap().success());
        assert!(
            !dir.path().join("data/limits.json").exists(),
            "no limits, nothing saved"
        );
    })
    .await
    .expect("exceeded its time bound");
}

#[tokio::test]
async fn help_lists_every_flag() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = ratelimiterd(dir.path());
        cmd.arg("--help");
        let (status, stdout, _) = run(cmd).await;
        assert!(status.success());
        for flag in [
            "--config",
            "--listen",
            "--backend",
            "--registry",
            "--limits",
            "--max-batch-items",
            "--max-body-bytes",
            "--decrease-interval-ms",
            "--snapshot-interval-ms",
            "--memory-arbiters",
            "--memory-shards",
            "--retry-rolling-base-ms",
            "--retry-concurrency-factor",
            "--retry-decreasing-ms",
            "--tb-addresses",
            "--tb-cluster",
            "--tb-sessions",
            "RATELIMITERD_",
        ] {
            assert!(
                stdout.contains(flag),
                "--help should mention {flag}:\n{stdout}"
            );
        }
    })
    .await
    .expect("exceeded its time bound");
}

async fn fails(dir: &Path, args: &[&str], code: i32, mentions: &str) {
    let mut cmd = ratelimiterd(dir);
    cmd.args(args);
    let (status, _, stderr) = run(cmd).await;
    assert_eq!(status.code(), Some(code), "{args:?}: {stderr}");
    assert!(
        stderr.contains(mentions),
        "{args:?}: stderr should mention {mentions:?}:\n{stderr}"
    );
}

#[tokio::test]
async fn start_up_errors_exit_non_zero_with_a_clear_line() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let bad_config = d.join("bad.yaml");
        std::fs::write(&bad_config, "max_batch_items: 0\n").unwrap();
        let typo_config = d.join("typo.yaml");
        std::fs::write(&typo_config, "lisen: 127.0.0.1:1\n").unwrap();
        let corrupt = d.join("corrupt.json");
        std::fs::write(&corrupt, "[{oops").unwrap();
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy_addr = busy.local_addr().unwrap().to_string();
        let registry = d.join("r.json");
        let registry = registry.to_str().unwrap();

        fails(d, &["--bogus"], 2, "--bogus").await;
        fails(d, &["--max-batch-items", "many"], 2, "--max-batch-items").await;
        fails(d, &["--backend", "redis"], 2, "redis").await;
        fails(
            d,
            &["--memory-shards", "0"],
            2,
            "memory_shards: must be between 1",
        )
        .await;
        fails(
            d,
            &["--config", bad_config.to_str().unwrap()],
            2,
            "max_batch_items: must be between 1",
        )
        .await;
        fails(d, &["--config", typo_config.to_str().unwrap()], 2, "lisen").await;
        fails(
            d,
            &["--config", "missing.yaml"],
            2,
            "config file missing.yaml",
        )
        .await;
        fails(d, &["--listen", "nowhere"], 2, "listen: \"nowhere\"").await;
        fails(
            d,
            &[
                "--registry",
                registry,
                "--limits",
                corrupt.to_str().unwrap(),
            ],
            2,
            "corrupt.json",
        )
        .await;
        #[cfg(not(feature = "tigerbeetle"))]
        fails(
            d,
            &["--registry", registry, "--backend", "tigerbeetle"],
            2,
            "--features tigerbeetle",
        )
        .await;
        // With the TigerBeetle client built in, an unreachable cluster is a runtime failure.
        #[cfg(feature = "tigerbeetle")]
        fails(
            d,
            &[
                "--registry",
                registry,
                "--backend",
                "tigerbeetle",
                "--tb-addresses",
                &busy_addr,
            ],
            1,
            "cannot connect to TigerBeetle",
        )
        .await;
        fails(
            d,
            &["--registry", registry, "--listen", &busy_addr],
            1,
            &format!("cannot listen on {busy_addr}"),
        )
        .await;
        fails(
            d,
            &[
                "--registry",
                corrupt.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ],
            1,
            "corrupt.json is not a valid limits file",
        )
        .await;
        assert_eq!(
            std::fs::read_to_string(&corrupt).unwrap(),
            "[{oops",
            "a corrupt registry is never overwritten"
        );
    })
    .await
    .expect("exceeded its time bound");
}

#[tokio::test]
async fn environment_variables_are_read() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = ratelimiterd(dir.path());
        cmd.env("RATELIMITERD_RETRY__ROLLING__FACTOR", "0.5");
        let (status, _, stderr) = run(cmd).await;
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("retry.rolling.factor: must be"), "{stderr}");

        let mut cmd = ratelimiterd(dir.path());
        cmd.env("RATELIMITERD_MEMORY_SHARDS", "5000");
        let (status, _, stderr) = run(cmd).await;
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("memory_shards: must be between 1"),
            "{stderr}"
        );
    })
    .await
    .expect("exceeded its time bound");
}
