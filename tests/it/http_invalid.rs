//! Every malformed payload gets HTTP 400 with `{"error":"invalid_request","message":...}`
//! naming what is wrong, and changes nothing; oversized bodies get 413.

use crate::support::bound::bounded;
use crate::support::http::{lease, reserve_body, rolling, test_http, TestServer, HTTP_BOUND_SECS};
use ratelimiter::http::HttpSettings;
use ratelimiter::service::{RegistrySource, ServiceSettings};
use reqwest::StatusCode;
use rstest::rstest;
use serde_json::{json, Value};

const KEY: &str = "global:llm:openai:gpt-4o:tpm";

async fn server_with_key() -> TestServer {
    let server = TestServer::start().await;
    server.define(&rolling(KEY, 1_000, 60)).await;
    server
}

fn requirements(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"key": format!("{KEY}{i}"), "amount": 1}))
            .collect(),
    )
}

fn assert_invalid(status: StatusCode, body: &Value, mentions: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains(mentions),
        "message {message:?} should mention {mentions:?}"
    );
}

#[rstest]
#[case::missing_lease_id(json!({"requirements": [{"key": KEY, "amount": 1}]}), "missing field `lease_id`")]
#[case::bad_ulid(json!({"lease_id": "lease-1", "requirements": [{"key": KEY, "amount": 1}]}), "lease_id: \"lease-1\" is not a ULID")]
#[case::empty_lease(json!({"lease_id": "", "requirements": [{"key": KEY, "amount": 1}]}), "lease_id: must not be empty")]
#[case::no_requirements(json!({"lease_id": lease(), "requirements": []}), "requirements: must hold 1 to 32 items (got 0)")]
#[case::missing_requirements(json!({"lease_id": lease()}), "missing field `requirements`")]
#[case::too_many_requirements(json!({"lease_id": lease(), "requirements": requirements(33)}), "(got 33)")]
#[case::zero_amount(reserve_body(&[(KEY, 0)]), "requirements[0].amount: must be at least 1")]
#[case::negative_amount(json!({"lease_id": lease(), "requirements": [{"key": KEY, "amount": -5}]}), "invalid value: integer `-5`")]
#[case::string_amount(json!({"lease_id": lease(), "requirements": [{"key": KEY, "amount": "5"}]}), "invalid type: string")]
#[case::duplicate_key(reserve_body(&[(KEY, 1), (KEY, 2)]), "requirements[1].key")]
#[case::empty_key(reserve_body(&[("", 1)]), "requirements[0].key: must not be empty")]
#[case::unknown_field(json!({"lease_id": lease(), "requirements": [{"key": KEY, "amount": 1}], "priority": 1}), "unknown field `priority`")]
#[case::unknown_item_field(json!({"lease_id": lease(), "requirements": [{"key": KEY, "amount": 1, "unit": "x"}]}), "unknown field `unit`")]
#[case::not_an_object(json!([1, 2]), "invalid type: sequence, expected a JSON object")]
#[actix_rt::test]
async fn invalid_reserve_is_rejected_and_changes_nothing(
    #[case] body: Value,
    #[case] mentions: &str,
) {
    bounded(HTTP_BOUND_SECS, async {
        let server = server_with_key().await;
        let (status, answer) = server.post("/v1/reserve", &body).await;
        assert_invalid(status, &answer, mentions);
        assert_eq!(server.usage(KEY).await["in_use"], 0, "nothing was reserved");
    })
    .await;
}

#[rstest]
#[case::not_json("application/json", "this is not json", "not valid JSON")]
#[case::truncated("application/json", "{", "not valid JSON")]
#[case::bad_syntax("application/json", "{,}", "not valid JSON")]
#[case::empty("application/json", "", "not valid JSON")]
#[case::wrong_content_type("text/plain", "{}", "Content-Type: expected application/json")]
#[actix_rt::test]
async fn unreadable_bodies_are_rejected(
    #[case] content_type: &str,
    #[case] body: &'static str,
    #[case] mentions: &str,
) {
    bounded(HTTP_BOUND_SECS, async {
        let server = server_with_key().await;
        for path in [
            "/v1/reserve",
            "/v1/complete",
            "/v1/reserve/batch",
            "/v1/complete/batch",
        ] {
            let (status, answer) = server.post_raw(path, content_type, body).await;
            assert_invalid(status, &answer, mentions);
        }
        let response = server
            .client
            .put(server.url("/v1/admin/limits"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_invalid(status, &response.json().await.unwrap(), mentions);
        assert_eq!(server.usage(KEY).await["in_use"], 0);
    })
    .await;
}

#[rstest]
#[case::missing_lease_id(json!({"actuals": []}), "missing field `lease_id`")]
#[case::bad_ulid(json!({"lease_id": "x", "actuals": []}), "lease_id: \"x\" is not a ULID")]
#[case::duplicate_key(json!({"lease_id": lease(), "actuals": [{"key": KEY, "actual_amount": 1}, {"key": KEY, "actual_amount": 1}]}), "actuals[1].key")]
#[case::wrong_field_name(json!({"lease_id": lease(), "actuals": [{"key": KEY, "amount": 1}]}), "unknown field `amount`")]
#[case::unknown_field(json!({"lease_id": lease(), "actual": []}), "unknown field `actual`")]
#[actix_rt::test]
async fn invalid_complete_is_rejected(#[case] body: Value, #[case] mentions: &str) {
    bounded(HTTP_BOUND_SECS, async {
        let server = server_with_key().await;
        let (status, answer) = server.post("/v1/complete", &body).await;
        assert_invalid(status, &answer, mentions);
    })
    .await;
}

#[rstest]
#[case::not_an_envelope(json!([reserve_body(&[(KEY, 1)])]), "invalid type: sequence, expected a JSON object")]
#[case::missing_requests(json!({}), "missing field `requests`")]
#[case::requests_not_array(json!({"requests": {}}), "invalid type: map")]
#[case::unknown_envelope_field(json!({"requests": [reserve_body(&[(KEY, 1)])], "atomic": true}), "unknown field `atomic`")]
#[case::empty(json!({"requests": []}), "requests: must hold 1 to 256 items (got 0)")]
#[case::too_many(json!({"requests": vec![reserve_body(&[(KEY, 1)]); 257]}), "max_batch_items is 256")]
#[actix_rt::test]
async fn malformed_batch_envelopes_are_rejected(#[case] body: Value, #[case] mentions: &str) {
    bounded(HTTP_BOUND_SECS, async {
        let server = server_with_key().await;
        for path in ["/v1/reserve/batch", "/v1/complete/batch"] {
            let (status, answer) = server.post(path, &body).await;
            assert_invalid(status, &answer, mentions);
        }
        assert_eq!(
            server.usage(KEY).await["in_use"],
            0,
            "no item of a rejected batch ran"
        );
    })
    .await;
}

#[actix_rt::test]
async fn batch_limit_follows_the_setting() {
    bounded(HTTP_BOUND_SECS, async {
        let settings = ServiceSettings {
            max_batch_items: 2,
            ..ServiceSettings::default()
        };
        let server =
            TestServer::start_with(RegistrySource::InMemory, Vec::new(), settings, test_http())
                .await
                .unwrap();
        server.define(&rolling(KEY, 10, 60)).await;
        let three = json!({"requests": vec![reserve_body(&[(KEY, 1)]); 3]});
        let (status, answer) = server.post("/v1/reserve/batch", &three).await;
        assert_invalid(status, &answer, "max_batch_items is 2");
        let two = json!({"requests": vec![reserve_body(&[(KEY, 1)]); 2]});
        assert_eq!(
            server.post("/v1/reserve/batch", &two).await.0,
            StatusCode::OK
        );
    })
    .await;
}

#[rstest]
#[case::zero_capacity(json!({"key": "k", "kind": "rolling", "capacity": 0, "window_seconds": 60}), "capacity: must be greater than 0")]
#[case::rolling_without_window(json!({"key": "k", "kind": "rolling", "capacity": 5}), "window_seconds: must be greater than 0")]
#[case::concurrency_without_timeout(json!({"key": "k", "kind": "concurrency", "capacity": 5}), "timeout_seconds: must be greater than 0")]
#[case::empty_key(json!({"key": "", "kind": "rolling", "capacity": 5, "window_seconds": 60}), "key: must not be empty")]
#[case::unknown_kind(json!({"key": "k", "kind": "leaky_bucket", "capacity": 5}), "unknown variant `leaky_bucket`")]
#[case::unknown_field(json!({"key": "k", "kind": "rolling", "capacity": 5, "window_seconds": 60, "burst": 2}), "unknown field `burst`")]
#[case::missing_kind(json!({"key": "k", "capacity": 5}), "missing field `kind`")]
#[case::bad_overage(json!({"key": "k", "kind": "rolling", "capacity": 5, "window_seconds": 60, "overage": "ignore"}), "unknown variant `ignore`")]
#[actix_rt::test]
async fn bad_admin_definitions_are_rejected(#[case] body: Value, #[case] mentions: &str) {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        let (status, answer) = server.put_json(&body).await;
        assert_invalid(status, &answer, mentions);
        let (_, list) = server.get("/v1/admin/limits").await;
        assert_eq!(list, json!({"limits": []}), "nothing was defined");
    })
    .await;
}

#[actix_rt::test]
async fn kind_change_is_rejected_and_keeps_the_old_definition() {
    bounded(HTTP_BOUND_SECS, async {
        let server = server_with_key().await;
        let concurrency =
            json!({"key": KEY, "kind": "concurrency", "capacity": 5, "timeout_seconds": 30});
        let (status, answer) = server.put_json(&concurrency).await;
        assert_invalid(status, &answer, "kind: cannot change the kind");
        let limit = server.limit(KEY).await;
        assert_eq!(limit["definition"]["kind"], "rolling");
        assert_eq!(limit["definition"]["capacity"], 1_000);
    })
    .await;
}

#[actix_rt::test]
async fn huge_body_gets_413_with_json() {
    bounded(HTTP_BOUND_SECS, async {
        let server = server_with_key().await;
        // A syntactically valid reserve whose job_id alone is 2 MiB: over the 1 MiB default.
        let body = json!({"lease_id": lease(), "job_id": "x".repeat(2 * 1024 * 1024), "requirements": [{"key": KEY, "amount": 1}]});
        let (status, answer) = server.post("/v1/reserve", &body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        assert_eq!(answer["error"], "payload_too_large");
        assert!(answer["message"].as_str().unwrap().contains("1048576 bytes"), "{answer}");
        assert_eq!(server.usage(KEY).await["in_use"], 0);
    })
    .await;
}

#[actix_rt::test]
async fn body_limit_follows_the_setting() {
    bounded(HTTP_BOUND_SECS, async {
        let http = HttpSettings {
            max_body_bytes: 2048,
            workers: 1,
        };
        let server = TestServer::start_with(
            RegistrySource::InMemory,
            Vec::new(),
            ServiceSettings::default(),
            http,
        )
        .await
        .unwrap();
        server.define(&rolling(KEY, 10, 60)).await;
        let batch = json!({"requests": vec![reserve_body(&[(KEY, 1)]); 40]});
        let (status, answer) = server.post("/v1/reserve/batch", &batch).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("2048 bytes"),
            "{answer}"
        );
        assert_eq!(server.usage(KEY).await["in_use"], 0);
    })
    .await;
}
