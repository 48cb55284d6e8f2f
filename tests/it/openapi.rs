//! The OpenAPI document against the code: the generated document is the committed
//! `docs/openapi.json` and is what `GET /openapi.json` serves; every documented operation is
//! served and every other method on a documented path answers 405; real answers of a
//! running server validate against the document's schemas.
//!
//! After a change to a route or a wire type, regenerate the committed file with
//! `UPDATE_OPENAPI=1 cargo test --test it openapi::` and commit it.

use crate::support::bound::bounded;
use crate::support::http::{
    complete_body, concurrency, encode, lease, reserve_body, reserve_body_for, rolling, TestServer,
    HTTP_BOUND_SECS,
};
use crate::support::openapi::{committed_text, OpenApiDoc, COMMITTED};
use ratelimiter::http::HttpSettings;
use ratelimiter::service::{RegistrySource, ServiceSettings};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The limit key `{key}` stands for in the admin paths.
const KEY: &str = "openapi:llm:model:rpm";

fn first_difference(a: &str, b: &str) -> String {
    let line = a
        .lines()
        .zip(b.lines())
        .position(|(x, y)| x != y)
        .unwrap_or_else(|| a.lines().count().min(b.lines().count()));
    format!(
        "line {}: committed {:?}, generated {:?}",
        line + 1,
        a.lines().nth(line).unwrap_or("<end>"),
        b.lines().nth(line).unwrap_or("<end>")
    )
}

#[test]
fn committed_document_is_the_generated_one() {
    let generated = ratelimiter::http::openapi::document_json().expect("document serialises");
    if std::env::var("UPDATE_OPENAPI").as_deref() == Ok("1") {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "UPDATE_OPENAPI=1 rewrites {COMMITTED}; CI must check the committed file instead"
        );
        std::fs::write(COMMITTED, &generated).expect("docs/openapi.json written");
    }
    let committed = committed_text();
    assert!(
        committed == generated,
        "{COMMITTED} is not the document the code generates ({}). Regenerate it with \
         `UPDATE_OPENAPI=1 cargo test --test it openapi::` and commit it.",
        first_difference(&committed, &generated)
    );
}

/// Sends `method path` (a JSON `body` for PUT and POST) and returns status, content type
/// and body text.
async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, String, String) {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let mut request = server.client.request(method.clone(), server.url(path));
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ascii content type").to_string())
        .unwrap_or_default();
    let text = response.text().await.expect("body readable");
    (status, content_type, text)
}

fn error_code(text: &str) -> Option<String> {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
}

#[actix_rt::test]
async fn every_documented_operation_is_served_and_other_methods_answer_405() {
    bounded(HTTP_BOUND_SECS, async {
        let doc = OpenApiDoc::parse(&committed_text());
        let server = TestServer::start().await;
        server.define(&rolling(KEY, 10, 60)).await;
        let error_body = OpenApiDoc::schema_ref("ErrorBody");
        let operations = doc.operations();
        assert!(operations.len() >= 11, "{operations:?}");
        for (template, documented) in operations {
            let path = template.replace("{key}", &encode(KEY));
            for method in crate::support::openapi::METHODS {
                let body = matches!(method, "put" | "post").then(|| json!({}));
                let (status, content_type, text) =
                    send(&server, method, &path, body.as_ref()).await;
                let what = format!("{} {path}", method.to_uppercase());
                if documented.contains(&method) {
                    assert!(
                        status != StatusCode::METHOD_NOT_ALLOWED
                            && error_code(&text).as_deref() != Some("not_found"),
                        "{what} is documented but not served: {status} {text}"
                    );
                    doc.check(method, &template, status.as_u16(), &content_type, &text);
                } else {
                    assert_eq!(
                        status,
                        StatusCode::METHOD_NOT_ALLOWED,
                        "{what} is not documented, so it must answer 405: {text}"
                    );
                    if method != "head" {
                        let value: Value = serde_json::from_str(&text).expect("JSON 405");
                        assert_eq!(value["error"], "method_not_allowed", "{what}: {text}");
                        doc.validate(&error_body, &value)
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                    }
                }
            }
        }
    })
    .await;
}

/// A running server whose every answer is checked against the document.
struct Checked {
    server: TestServer,
    doc: OpenApiDoc,
}

impl Checked {
    async fn start() -> Checked {
        Checked {
            server: TestServer::start().await,
            doc: OpenApiDoc::parse(&committed_text()),
        }
    }

    /// `method template` with `{key}` standing for [`KEY`].
    async fn call(
        &self,
        method: &str,
        template: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        self.call_with_key(method, template, KEY, body).await
    }

    /// `method template` with `{key}` standing for `key`; returns the status and the body
    /// (JSON, or the text as a string) after checking both against the document.
    async fn call_with_key(
        &self,
        method: &str,
        template: &str,
        key: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let path = template.replace("{key}", &encode(key));
        let (status, content_type, text) = send(&self.server, method, &path, body).await;
        self.doc
            .check(method, template, status.as_u16(), &content_type, &text);
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn put(&self, definition: Value) -> (StatusCode, Value) {
        self.call("put", "/v1/admin/limits", Some(&definition))
            .await
    }

    async fn reserve(&self, body: Value) -> (StatusCode, Value) {
        self.call("post", "/v1/reserve", Some(&body)).await
    }
}

#[actix_rt::test]
async fn real_answers_validate_against_the_document() {
    bounded(HTTP_BOUND_SECS, async {
        let api = Checked::start().await;
        let (status, answer) = api
            .put(serde_json::to_value(rolling(KEY, 2, 60)).unwrap())
            .await;
        assert_eq!(
            (status, &answer["status"]),
            (StatusCode::OK, &json!("active"))
        );
        let inflight = "openapi:llm:model:concurrency";
        api.put(serde_json::to_value(concurrency(inflight, 1, 30)).unwrap())
            .await;
        let (status, answer) = api
            .put(json!({"key": "x", "kind": "rolling", "capacity": 0, "window_seconds": 60}))
            .await;
        assert_eq!(
            (status, &answer["error"]),
            (StatusCode::BAD_REQUEST, &json!("invalid_request"))
        );

        let id = lease();
        let (_, allowed) = api
            .reserve(reserve_body_for(&id, &[(KEY, 1), (inflight, 1)]))
            .await;
        assert_eq!(allowed["allowed"], true, "{allowed}");
        let (_, denied) = api.reserve(reserve_body(&[(inflight, 1)])).await;
        assert_eq!(denied["allowed"], false, "{denied}");
        assert!(denied["retry_after_ms"].as_u64() > Some(0), "{denied}");
        let (_, unknown) = api.reserve(reserve_body(&[("openapi:nope", 1)])).await;
        assert_eq!(unknown["error"], "unknown_limit_key:openapi:nope");
        let (_, too_big) = api.reserve(reserve_body(&[(KEY, 3)])).await;
        assert_eq!(too_big["error"], format!("exceeds_capacity:{KEY}"));
        let (status, invalid) = api.reserve(json!({"lease_id": "nope"})).await;
        assert_eq!(
            (status, &invalid["error"]),
            (StatusCode::BAD_REQUEST, &json!("invalid_request"))
        );
        let (status, done) = api
            .call(
                "post",
                "/v1/complete",
                Some(&complete_body(&id, &[(KEY, 1)])),
            )
            .await;
        assert_eq!(
            (status, done),
            (StatusCode::OK, json!({"ok": true, "error": ""}))
        );

        let batch = json!({"requests": [reserve_body(&[(KEY, 1)]), {"lease_id": 5}]});
        let (_, results) = api.call("post", "/v1/reserve/batch", Some(&batch)).await;
        assert_eq!(results["results"][0]["allowed"], true, "{results}");
        assert_eq!(
            results["results"][1]["error"], "invalid_request",
            "{results}"
        );
        let batch = json!({"requests": [complete_body(&id, &[]), {"lease": "x"}]});
        let (_, results) = api.call("post", "/v1/complete/batch", Some(&batch)).await;
        assert_eq!(results["results"][0]["ok"], true, "{results}");
        assert_eq!(
            results["results"][1]["error"], "invalid_request",
            "{results}"
        );
        let (status, _) = api
            .call("post", "/v1/complete/batch", Some(&json!({"requests": []})))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let (_, list) = api.call("get", "/v1/admin/limits", None).await;
        assert_eq!(list["limits"].as_array().map(Vec::len), Some(2), "{list}");
        let (_, one) = api.call("get", "/v1/admin/limits/{key}", None).await;
        assert_eq!(one["limit"]["usage"]["in_use"], 2, "{one}");
        let (status, missing) = api
            .call_with_key("get", "/v1/admin/limits/{key}", "openapi:missing", None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(missing["error"], "unknown_limit_key:openapi:missing");

        let (_, health) = api.call("get", "/healthz", None).await;
        assert_eq!(health["status"], "ok");
        let (status, ready) = api.call("get", "/readyz", None).await;
        assert_eq!((status, ready), (StatusCode::OK, json!({"ready": true})));
        let (_, document) = api.call("get", "/openapi.json", None).await;
        assert_eq!(&document, api.doc.value());
    })
    .await;
}

#[actix_rt::test]
async fn transport_errors_validate_against_the_document() {
    bounded(HTTP_BOUND_SECS, async {
        let doc = OpenApiDoc::parse(&committed_text());
        let small = HttpSettings {
            max_body_bytes: 64,
            workers: 1,
        };
        let server = TestServer::start_with(
            RegistrySource::InMemory,
            Vec::new(),
            ServiceSettings::default(),
            small,
        )
        .await
        .expect("server starts");
        let large = reserve_body(&[(&"k".repeat(100), 1)]);
        let (status, content_type, text) = send(&server, "post", "/v1/reserve", Some(&large)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
        doc.check("post", "/v1/reserve", 413, &content_type, &text);

        let response = server
            .client
            .post(server.url("/v1/complete"))
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .expect("POST");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        doc.check("post", "/v1/complete", 400, &content_type, &text);

        let (status, _, text) = send(&server, "get", "/v2/nothing", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let body: Value = serde_json::from_str(&text).expect("JSON 404");
        assert_eq!(body["error"], "not_found");
        doc.validate(&OpenApiDoc::schema_ref("ErrorBody"), &body)
            .unwrap_or_else(|e| panic!("the 404 of an unknown path: {e}"));
    })
    .await;
}

#[actix_rt::test]
async fn served_document_is_the_committed_file_and_openapi_3_1() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        let (status, content_type, text) = send(&server, "get", "/openapi.json", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        assert!(
            text == committed_text(),
            "GET /openapi.json differs from {COMMITTED} ({})",
            first_difference(&committed_text(), &text)
        );
        let doc: Value = serde_json::from_str(&text).expect("JSON");
        let version = doc["openapi"].as_str().expect("openapi field");
        assert!(version.starts_with("3.1."), "openapi: {version}");
    })
    .await;
}

/// The checks above bite: an answer with a field the document does not know, or without one
/// it requires, or of the wrong type, is refused.
#[test]
fn validation_refuses_answers_that_differ_from_the_document() {
    let doc = OpenApiDoc::parse(&committed_text());
    let reserve = OpenApiDoc::schema_ref("ReserveResponse");
    let good = json!({"allowed": true, "retry_after_ms": 0, "reserved_at_unix_ms": 1, "error": ""});
    doc.validate(&reserve, &good).unwrap();
    let mut extra = good.clone();
    extra["priority"] = json!(1);
    assert!(doc
        .validate(&reserve, &extra)
        .unwrap_err()
        .contains("priority"));
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("allowed");
    assert!(doc
        .validate(&reserve, &missing)
        .unwrap_err()
        .contains("allowed"));
    let wrong =
        json!({"allowed": "yes", "retry_after_ms": 0, "reserved_at_unix_ms": 1, "error": ""});
    assert!(doc.validate(&reserve, &wrong).is_err());

    let list = OpenApiDoc::schema_ref("LimitList");
    let limit = json!({
        "definition": {"key": "k", "kind": "rolling", "capacity": 1, "window_seconds": 60,
                       "timeout_seconds": 0, "unit": "", "description": "", "overage": "debt"},
        "status": "active", "pending_decrease_to": 0,
        "usage": {"in_use": 0, "available": 1, "debt": 0}
    });
    doc.validate(&list, &json!({"limits": [limit.clone()]}))
        .unwrap();
    let mut nested = limit.clone();
    nested["usage"]["reserved"] = json!(0);
    assert!(doc.validate(&list, &json!({"limits": [nested]})).is_err());
    let mut flattened = limit;
    flattened["owner"] = json!("x");
    assert!(doc
        .validate(&list, &json!({"limits": [flattened]}))
        .is_err());
}
