//! The operations routes of the real `ratelimiterd` binary: `GET /readyz` 200 on the memory
//! backend and on a running TigerBeetle, 503 `not_ready` naming the backend once TigerBeetle
//! is gone, 200 again after it comes back without a restart (`/healthz` stays 200
//! throughout); `GET /openapi.json` is the committed document.

use std::time::Duration;

use serde_json::Value;

use crate::support::bound::bounded;
use crate::support::daemon::Daemon;

async fn get(daemon: &Daemon, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(daemon.url(path))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// Polls `/readyz` until it answers `status` (at most `within`); returns the body.
#[cfg(feature = "tigerbeetle")]
async fn readyz_becomes(daemon: &Daemon, status: u16, within: Duration) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (got, body) = get(daemon, "/readyz").await;
        if got == status {
            return body;
        }
        assert!(
            started.elapsed() < within,
            "/readyz still {got} {body} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ready_on_the_memory_backend_once_listening() {
    bounded(30, async {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::start_local(dir.path(), &[]);
        let (status, body) = get(&daemon, "/readyz").await;
        assert_eq!((status, body), (200, serde_json::json!({"ready": true})));
    })
    .await;
}

#[tokio::test]
async fn the_binary_serves_the_committed_openapi_document() {
    bounded(30, async {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::start_local(dir.path(), &[]);
        let (status, served) = get(&daemon, "/openapi.json").await;
        assert_eq!(status, 200);
        let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let committed: Value =
            serde_json::from_str(&std::fs::read_to_string(committed).unwrap()).unwrap();
        assert_eq!(served, committed);
        assert_eq!(served["openapi"], "3.1.0");
    })
    .await;
}

#[cfg(feature = "tigerbeetle")]
#[tokio::test]
async fn not_ready_while_tigerbeetle_is_gone_and_ready_again_without_a_restart() {
    use crate::support::tigerbeetle::TbServer;
    use std::sync::Arc;

    bounded(90, async {
        let server = Arc::new(TbServer::start());
        let dir = tempfile::tempdir().unwrap();
        let address = server.address();
        let daemon = Daemon::start_local(
            dir.path(),
            &[
                "--backend",
                "tigerbeetle",
                "--tb-addresses",
                &address,
                "--tb-cluster",
                "0",
                "--backend-probe-timeout-ms",
                "500",
            ],
        );
        readyz_becomes(&daemon, 200, Duration::from_secs(10)).await;

        let killed = Arc::clone(&server);
        tokio::task::spawn_blocking(move || killed.kill())
            .await
            .unwrap();
        let body = readyz_becomes(&daemon, 503, Duration::from_secs(10)).await;
        assert_eq!(body["error"], "not_ready", "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("backend tigerbeetle"), "{message}");
        assert_eq!(get(&daemon, "/healthz").await.0, 200, "liveness stays up");

        let restarted = Arc::clone(&server);
        tokio::task::spawn_blocking(move || restarted.restart())
            .await
            .unwrap();
        readyz_becomes(&daemon, 200, Duration::from_secs(30)).await;
    })
    .await;
}
