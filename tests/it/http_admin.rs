//! Admin HTTP tests through a real listening server: define, list and read limits with
//! usage, percent-encoded keys, unknown keys, the registry across restarts, and failures.

use crate::support::bound::bounded;
use crate::support::http::{
    concurrency, encode, lease, reserve_body, reserve_body_for, rolling, test_http, TestServer,
    HTTP_BOUND_SECS,
};
use ratelimiter::registry::Registry;
use ratelimiter::service::{RegistrySource, ServiceSettings, StartError};
use reqwest::StatusCode;
use serde_json::json;

const RPM: &str = "global:llm:openai:gpt-4o:rpm";
const INFLIGHT: &str = "global:llm:openai:gpt-4o:concurrency";

#[actix_rt::test]
async fn put_get_and_list_with_usage() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        assert_eq!(server.define(&rolling(RPM, 500, 60)).await, "active");
        assert_eq!(server.define(&concurrency(INFLIGHT, 50, 120)).await, "active");
        let id = lease();
        assert_eq!(server.reserve(&reserve_body_for(&id, &[(RPM, 3), (INFLIGHT, 1)])).await["allowed"], true);

        let (status, list) = server.get("/v1/admin/limits").await;
        assert_eq!(status, StatusCode::OK);
        let limits = list["limits"].as_array().expect("limits");
        let keys: Vec<&str> = limits.iter().map(|l| l["definition"]["key"].as_str().unwrap()).collect();
        assert_eq!(keys, vec![INFLIGHT, RPM], "sorted by key");
        assert_eq!(limits[0]["usage"], json!({"in_use": 1, "available": 49, "debt": 0}));
        assert_eq!(limits[1]["usage"], json!({"in_use": 3, "available": 497, "debt": 0}));

        let (status, one) = server.get(&format!("/v1/admin/limits/{RPM}")).await;
        assert_eq!(status, StatusCode::OK, "{one}");
        assert_eq!(
            one,
            json!({"limit": {
                "definition": {"key": RPM, "kind": "rolling", "capacity": 500, "window_seconds": 60,
                               "timeout_seconds": 0, "unit": "tokens", "description": format!("test limit {RPM}"),
                               "overage": "debt"},
                "status": "active", "pending_decrease_to": 0,
                "usage": {"in_use": 3, "available": 497, "debt": 0}}})
        );
        // Update in place: an increase is immediate and keeps usage.
        assert_eq!(server.define(&rolling(RPM, 600, 60)).await, "active");
        assert_eq!(server.usage(RPM).await, json!({"in_use": 3, "available": 597, "debt": 0}));
    })
    .await;
}

#[actix_rt::test]
async fn percent_encoded_and_plain_keys_name_the_same_limit() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        let odd = "tenant:acme corp/eu:llm:daily_tokens";
        server.define(&rolling(RPM, 5, 60)).await;
        server.define(&rolling(odd, 7, 60)).await;
        let (plain_status, plain) = server.get(&format!("/v1/admin/limits/{RPM}")).await;
        let encoded_path = "/v1/admin/limits/global%3Allm%3Aopenai%3Agpt-4o%3Arpm";
        let (encoded_status, encoded) = server.get(encoded_path).await;
        assert_eq!(
            (plain_status, encoded_status),
            (StatusCode::OK, StatusCode::OK)
        );
        assert_eq!(plain, encoded);
        assert_eq!(encoded["limit"]["definition"]["key"], RPM);
        // A key with a space and a slash only has an encoded form.
        let (status, body) = server
            .get(&format!("/v1/admin/limits/{}", encode(odd)))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["limit"]["definition"]["capacity"], 7);
    })
    .await;
}

#[actix_rt::test]
async fn unknown_key_is_404_with_the_key() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        for path in [
            "/v1/admin/limits/global:llm:nobody:rpm",
            "/v1/admin/limits/global%3Allm%3Anobody%3Arpm",
        ] {
            let (status, body) = server.get(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(body["error"], "unknown_limit_key:global:llm:nobody:rpm");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("global:llm:nobody:rpm"),
                "{body}"
            );
        }
    })
    .await;
}

#[actix_rt::test]
async fn registry_survives_a_restart_and_resumes_a_decrease() {
    bounded(HTTP_BOUND_SECS, async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/limits.json");
        let key = "global:llm:anthropic:claude-sonnet-4:tpm";
        {
            let first = TestServer::start_with(
                RegistrySource::File(Registry::new(&path)),
                Vec::new(),
                ServiceSettings::default(),
                test_http(),
            )
            .await
            .unwrap();
            first.define(&rolling(key, 100, 60)).await;
            first.define(&concurrency(INFLIGHT, 5, 30)).await;
            assert_eq!(
                first.reserve(&reserve_body(&[(key, 80)])).await["allowed"],
                true
            );
            assert_eq!(first.define(&rolling(key, 60, 60)).await, "decreasing");
            assert!(
                !path.with_extension("json.tmp").exists(),
                "no temporary file left"
            );
        }
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(saved.as_array().unwrap().len(), 2);

        // A limits file seed never overrides what the registry holds.
        let seed = vec![ratelimiter::model::LimitState::active(rolling(key, 5, 60))];
        let second = TestServer::start_with(
            RegistrySource::File(Registry::new(&path)),
            seed,
            ServiceSettings::default(),
            test_http(),
        )
        .await
        .unwrap();
        let limit = second.limit(key).await;
        assert_eq!(limit["status"], "decreasing");
        assert_eq!(limit["pending_decrease_to"], 60);
        assert_eq!(limit["definition"]["capacity"], 100);
        assert_eq!(second.limit(INFLIGHT).await["definition"]["capacity"], 5);
        let denied = second.reserve(&reserve_body(&[(key, 1)])).await;
        assert_eq!(denied["error"], format!("limit_decreasing:{key}"));
        // Lease metadata did not survive, so the new process holds nothing: the decrease applies.
        assert_eq!(second.service.apply_pending_decreases().await, 1);
        assert_eq!(second.limit(key).await["definition"]["capacity"], 60);
        assert_eq!(
            second.reserve(&reserve_body(&[(key, 60)])).await["allowed"],
            true
        );
        let reloaded = Registry::new(&path).load().unwrap();
        let state = reloaded.iter().find(|s| s.definition.key == key).unwrap();
        assert_eq!(
            (state.definition.capacity, state.pending_decrease_to),
            (60, 0)
        );
    })
    .await;
}

#[actix_rt::test]
async fn corrupt_registry_is_a_start_error_and_is_kept() {
    bounded(HTTP_BOUND_SECS, async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.json");
        std::fs::write(&path, "[{\"definition\": {\"key\": ").unwrap();
        let result = TestServer::start_with(
            RegistrySource::File(Registry::new(&path)),
            vec![ratelimiter::model::LimitState::active(rolling(RPM, 5, 60))],
            ServiceSettings::default(),
            test_http(),
        )
        .await;
        let Err(err) = result else {
            panic!("a corrupt registry must not start")
        };
        assert!(matches!(err, StartError::Registry(_)), "{err}");
        assert!(err.to_string().contains("limits.json"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[{\"definition\": {\"key\": "
        );
    })
    .await;
}

#[actix_rt::test]
async fn registry_save_failure_is_500_and_changes_nothing() {
    bounded(HTTP_BOUND_SECS, async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/limits.json");
        let server = TestServer::start_with(
            RegistrySource::File(Registry::new(&path)),
            Vec::new(),
            ServiceSettings::default(),
            test_http(),
        )
        .await
        .unwrap();
        server.define(&rolling(RPM, 5, 60)).await;
        // Replace the registry's directory with a plain file: every later save fails.
        std::fs::remove_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub"), "not a directory").unwrap();
        let (status, body) = server
            .put_json(&serde_json::to_value(rolling(RPM, 9, 60)).unwrap())
            .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!(body["error"], "registry_error");
        assert!(
            body["message"].as_str().unwrap().contains("limits.json"),
            "{body}"
        );
        assert_eq!(
            server.limit(RPM).await["definition"]["capacity"],
            5,
            "old definition kept"
        );
        assert_eq!(
            server.reserve(&reserve_body(&[(RPM, 6)])).await["allowed"],
            false,
            "backend kept capacity 5"
        );
        let (status, _) = server
            .put_json(&serde_json::to_value(rolling("new:key", 1, 60)).unwrap())
            .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            server.get("/v1/admin/limits/new:key").await.0,
            StatusCode::NOT_FOUND
        );
    })
    .await;
}
