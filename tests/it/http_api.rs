//! Data-plane HTTP tests through a real listening server: reserve/complete end to end,
//! idempotency, batches, decreasing keys, health and unknown routes.

use crate::support::bound::bounded;
use crate::support::http::{
    complete_body, concurrency, lease, reserve_body, reserve_body_for, rolling, TestServer,
    HTTP_BOUND_SECS,
};
use ratelimiter::model::RetryPolicy;
use reqwest::StatusCode;
use serde_json::json;

#[actix_rt::test]
async fn healthz_names_the_backend() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        let (status, body) = server.get("/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"status": "ok", "backend": "memory"}));
    })
    .await;
}

#[actix_rt::test]
async fn reserve_then_complete_end_to_end() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        let rpm = "global:llm:openai:gpt-4o:rpm";
        let tpm = "global:llm:openai:gpt-4o:tpm";
        let inflight = "global:llm:openai:gpt-4o:concurrency";
        server.define(&rolling(rpm, 500, 60)).await;
        server.define(&rolling(tpm, 30_000, 60)).await;
        server.define(&concurrency(inflight, 1, 120)).await;

        let id = lease();
        let answer = server
            .reserve(&reserve_body_for(
                &id,
                &[(rpm, 1), (tpm, 2_000), (inflight, 1)],
            ))
            .await;
        assert_eq!(answer["allowed"], true, "{answer}");
        assert_eq!(answer["retry_after_ms"], 0);
        assert_eq!(answer["error"], "");
        assert_eq!(answer["reserved_at_unix_ms"], 1_700_000_000_000i64);
        assert_eq!(server.usage(tpm).await["in_use"], 2_000);
        assert_eq!(server.usage(inflight).await["available"], 0);

        // The concurrency slot is taken: a second call is denied with a hint.
        let denied = server.reserve(&reserve_body(&[(inflight, 1)])).await;
        assert_eq!(denied["allowed"], false);
        assert!(denied["retry_after_ms"].as_u64().unwrap() > 0, "{denied}");
        assert_eq!(denied["error"], "");

        let done = server.complete(&id, &[(rpm, 1), (tpm, 1_200)]).await;
        assert_eq!(done, json!({"ok": true, "error": ""}));
        assert_eq!(
            server.usage(tpm).await["in_use"],
            1_200,
            "slack freed at once"
        );
        assert_eq!(server.usage(inflight).await["in_use"], 0, "hold released");
        assert_eq!(
            server.reserve(&reserve_body(&[(inflight, 1)])).await["allowed"],
            true
        );
    })
    .await;
}

#[actix_rt::test]
async fn rolling_reservations_expire_with_the_window() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        server.define(&rolling("k", 2, 60)).await;
        for _ in 0..2 {
            assert_eq!(
                server.reserve(&reserve_body(&[("k", 1)])).await["allowed"],
                true
            );
        }
        assert_eq!(
            server.reserve(&reserve_body(&[("k", 1)])).await["allowed"],
            false
        );
        // The window plus the default window margin.
        server
            .clock
            .advance_ms(60_001 + RetryPolicy::default().window_margin_ms as i64);
        assert_eq!(
            server.reserve(&reserve_body(&[("k", 1)])).await["allowed"],
            true
        );
    })
    .await;
}

#[actix_rt::test]
async fn unknown_key_is_a_denial_that_takes_nothing() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        server.define(&rolling("known", 5, 60)).await;
        let answer = server
            .reserve(&reserve_body(&[("known", 1), ("missing:key", 1)]))
            .await;
        assert_eq!(answer["allowed"], false);
        assert_eq!(answer["retry_after_ms"], 0);
        assert_eq!(answer["error"], "unknown_limit_key:missing:key");
        assert_eq!(server.usage("known").await["in_use"], 0);
    })
    .await;
}

#[actix_rt::test]
async fn reserve_is_idempotent_per_lease() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        server.define(&rolling("k", 10, 60)).await;
        let id = lease();
        let body = reserve_body_for(&id, &[("k", 4)]);
        let first = server.reserve(&body).await;
        let again = server.reserve(&body).await;
        assert_eq!(first["allowed"], true);
        assert_eq!(again["allowed"], true);
        assert_eq!(server.usage("k").await["in_use"], 4, "consumed once");
        // Completing twice is harmless too.
        server.complete(&id, &[("k", 1)]).await;
        assert_eq!(server.complete(&id, &[("k", 3)]).await["ok"], true);
        assert_eq!(server.usage("k").await["in_use"], 1);
    })
    .await;
}

#[actix_rt::test]
async fn reserve_batch_answers_in_order_with_per_item_errors() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        server.define(&rolling("k", 2, 60)).await;
        let batch = json!({"requests": [
            reserve_body(&[("k", 1)]),
            {"requirements": [{"key": "k", "amount": 1}]},
            reserve_body(&[("k", 1)]),
            reserve_body(&[("k", 1)]),
            reserve_body(&[("k", 0)]),
            {"lease_id": "not-a-ulid", "requirements": [{"key": "k", "amount": 1}]},
            reserve_body(&[("nope", 1)]),
        ]});
        let (status, body) = server.post("/v1/reserve/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let results = body["results"].as_array().expect("results");
        assert_eq!(results.len(), 7);
        assert_eq!(results[0]["allowed"], true);
        assert_eq!(results[1]["error"], "invalid_request");
        assert_eq!(results[2]["allowed"], true);
        assert_eq!(results[3]["allowed"], false);
        assert_eq!(results[3]["error"], "");
        assert!(results[3]["retry_after_ms"].as_u64().unwrap() > 0);
        assert_eq!(results[4]["error"], "invalid_request");
        assert_eq!(results[5]["error"], "invalid_request");
        assert_eq!(results[6]["error"], "unknown_limit_key:nope");
        for i in [1, 4, 5] {
            assert_eq!(results[i]["allowed"], false);
        }
        assert_eq!(server.usage("k").await["in_use"], 2);
    })
    .await;
}

#[actix_rt::test]
async fn complete_batch_answers_in_order_with_per_item_errors() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        server.define(&concurrency("c", 2, 30)).await;
        let (a, b) = (lease(), lease());
        for id in [&a, &b] {
            assert_eq!(
                server.reserve(&reserve_body_for(id, &[("c", 1)])).await["allowed"],
                true
            );
        }
        let batch = json!({"requests": [
            complete_body(&a, &[]),
            {"lease_id": b, "actuals": [], "extra": 1},
            complete_body("bad", &[]),
            complete_body(&lease(), &[("c", 1)]),
        ]});
        let (status, body) = server.post("/v1/complete/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["results"],
            json!([
                {"ok": true, "error": ""},
                {"ok": false, "error": "invalid_request"},
                {"ok": false, "error": "invalid_request"},
                {"ok": true, "error": ""},
            ])
        );
        assert_eq!(
            server.usage("c").await["in_use"],
            1,
            "only lease a was released"
        );
    })
    .await;
}

#[actix_rt::test]
async fn decrease_denies_until_applied_then_serves_again() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        let key = "global:llm:anthropic:claude-sonnet-4:tpm";
        server.define(&rolling(key, 100, 60)).await;
        let holder = lease();
        assert_eq!(
            server
                .reserve(&reserve_body_for(&holder, &[(key, 80)]))
                .await["allowed"],
            true
        );

        assert_eq!(server.define(&rolling(key, 60, 60)).await, "decreasing");
        let limit = server.limit(key).await;
        assert_eq!(limit["status"], "decreasing");
        assert_eq!(limit["pending_decrease_to"], 60);
        assert_eq!(
            limit["definition"]["capacity"], 100,
            "old capacity stays in force"
        );

        let denied = server.reserve(&reserve_body(&[(key, 1)])).await;
        assert_eq!(denied["allowed"], false);
        assert_eq!(denied["error"], format!("limit_decreasing:{key}"));
        assert_eq!(denied["retry_after_ms"], 10_000);

        assert_eq!(
            server.service.apply_pending_decreases().await,
            0,
            "only 20 available, 40 needed"
        );
        server.complete(&holder, &[(key, 30)]).await;
        assert_eq!(server.service.apply_pending_decreases().await, 1);
        let limit = server.limit(key).await;
        assert_eq!(limit["status"], "active");
        assert_eq!(limit["pending_decrease_to"], 0);
        assert_eq!(limit["definition"]["capacity"], 60);
        assert_eq!(
            limit["usage"],
            json!({"in_use": 30, "available": 30, "debt": 0})
        );
        assert_eq!(
            server.reserve(&reserve_body(&[(key, 30)])).await["allowed"],
            true
        );
        assert_eq!(
            server.reserve(&reserve_body(&[(key, 1)])).await["error"],
            ""
        );
    })
    .await;
}

#[actix_rt::test]
async fn overage_becomes_debt_in_usage() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        server.define(&rolling("t", 100, 60)).await;
        let id = lease();
        assert_eq!(
            server.reserve(&reserve_body_for(&id, &[("t", 100)])).await["allowed"],
            true
        );
        server.complete(&id, &[("t", 150)]).await;
        assert_eq!(
            server.usage("t").await,
            json!({"in_use": 100, "available": 0, "debt": 50})
        );
    })
    .await;
}

#[actix_rt::test]
async fn unknown_routes_and_methods_answer_json() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        let (status, body) = server.get("/v2/nothing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "not_found");
        assert!(body["message"].as_str().unwrap().contains("/v2/nothing"));
        let (status, body) = server.get("/v1/reserve").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"], "method_not_allowed");
    })
    .await;
}
