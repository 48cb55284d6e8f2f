//! Step definitions of `spec/features/rate_limiter.feature`. Every data-plane step goes
//! through the HTTP API; time bounds are checked on the measured duration of each call.

use std::time::{Duration, Instant};

use cucumber::{given, then, when};
use reqwest::Method;
use serde_json::{json, Value};

use crate::world::LimiterWorld;

fn within(elapsed: Duration, bound_ms: u64, what: &str) {
    assert!(
        elapsed <= Duration::from_millis(bound_ms),
        "{what} took {elapsed:?}, more than {bound_ms} ms"
    );
}

fn reserve_body(lease: &str, requirements: &[(String, u64)]) -> Value {
    let requirements: Vec<Value> = requirements
        .iter()
        .map(|(key, amount)| json!({"key": key, "amount": amount}))
        .collect();
    json!({"lease_id": lease, "requirements": requirements})
}

async fn define(world: &mut LimiterWorld, definition: Value) {
    let (status, body, _) = world
        .call(Method::PUT, "/v1/admin/limits", Some(&definition))
        .await;
    assert_eq!(status, 200, "PUT {definition}: {body}");
}

#[given(expr = "a rolling limit {string} with capacity {int} and a {int} second window")]
async fn rolling_limit(world: &mut LimiterWorld, name: String, capacity: u64, window: u64) {
    let key = world.key(&name);
    define(
        world,
        json!({"key": key, "kind": "rolling", "capacity": capacity, "window_seconds": window}),
    )
    .await;
}

#[given(
    expr = "a rolling limit {string} with capacity {int} and a {int} second window and overage {string}"
)]
async fn rolling_limit_with_overage(
    world: &mut LimiterWorld,
    name: String,
    capacity: u64,
    window: u64,
    overage: String,
) {
    let key = world.key(&name);
    let definition = json!({"key": key, "kind": "rolling", "capacity": capacity, "window_seconds": window, "overage": overage});
    define(world, definition).await;
}

#[given(expr = "a concurrency limit {string} with capacity {int} and a {int} second timeout")]
async fn concurrency_limit(world: &mut LimiterWorld, name: String, capacity: u64, timeout: u64) {
    let key = world.key(&name);
    define(world, json!({"key": key, "kind": "concurrency", "capacity": capacity, "timeout_seconds": timeout})).await;
}

#[given(expr = "the lease table holds {int} leases")]
async fn lease_table_holds(world: &mut LimiterWorld, capacity: usize) {
    world.restart_with_lease_capacity(capacity).await;
}

#[given(expr = "the decrease applier runs every {int} ms")]
async fn applier_runs(world: &mut LimiterWorld, interval_ms: u64) {
    world.start_applier(Duration::from_millis(interval_ms));
}

#[given(expr = "I reserve {int} of {string} as lease {string}")]
async fn reserved_as_lease(world: &mut LimiterWorld, amount: u64, name: String, lease: String) {
    reserve_as_lease(world, amount, name, lease).await;
    assert_eq!(
        world.last().body["allowed"],
        true,
        "setup reserve: {}",
        world.last().body
    );
}

#[when(expr = "I reserve {int} of {string} as lease {string}")]
async fn reserve_as_lease(world: &mut LimiterWorld, amount: u64, name: String, lease: String) {
    let lease = world.lease(&lease);
    let body = reserve_body(&lease, &[(world.key(&name), amount)]);
    world.post_and_record("/v1/reserve", &body).await;
}

#[when(expr = "I reserve {int} of {string}")]
async fn reserve_one(world: &mut LimiterWorld, amount: u64, name: String) {
    let body = reserve_body(
        &ulid::Ulid::new().to_string(),
        &[(world.key(&name), amount)],
    );
    world.post_and_record("/v1/reserve", &body).await;
}

#[when(expr = "{int} reserves of {int} of {string} are denied")]
async fn reserves_denied(world: &mut LimiterWorld, count: usize, amount: u64, name: String) {
    for _ in 0..count {
        reserve_one(world, amount, name.clone()).await;
        let last = world.last();
        assert_eq!(
            (&last.body["allowed"], &last.body["error"]),
            (&json!(false), &json!("")),
            "{}",
            last.body
        );
    }
}

#[when(expr = "I reserve {int} of {string} and {int} of {string}")]
async fn reserve_two(
    world: &mut LimiterWorld,
    first: u64,
    first_name: String,
    second: u64,
    second_name: String,
) {
    let requirements = [
        (world.key(&first_name), first),
        (world.key(&second_name), second),
    ];
    let body = reserve_body(&ulid::Ulid::new().to_string(), &requirements);
    world.post_and_record("/v1/reserve", &body).await;
}

#[when(expr = "lease {string} completes with nothing")]
async fn complete_empty(world: &mut LimiterWorld, lease: String) {
    let body = json!({"lease_id": world.lease(&lease), "actuals": []});
    world.post_and_record("/v1/complete", &body).await;
}

#[when(expr = "lease {string} completes with {int} of {string}")]
async fn complete_with(world: &mut LimiterWorld, lease: String, actual: u64, name: String) {
    let body = json!({"lease_id": world.lease(&lease), "actuals": [{"key": world.key(&name), "actual_amount": actual}]});
    world.post_and_record("/v1/complete", &body).await;
}

#[when(expr = "I send a batch of {int} reserves of {int} of {string}")]
async fn send_batch(world: &mut LimiterWorld, count: usize, amount: u64, name: String) {
    let key = world.key(&name);
    let requests: Vec<Value> = (0..count)
        .map(|_| reserve_body(&ulid::Ulid::new().to_string(), &[(key.clone(), amount)]))
        .collect();
    world
        .post_and_record("/v1/reserve/batch", &json!({"requests": requests}))
        .await;
}

#[when(expr = "I change the capacity of {string} to {int}")]
async fn change_capacity(world: &mut LimiterWorld, name: String, capacity: u64) {
    let mut definition = world.limit(&name).await["definition"].clone();
    definition["capacity"] = json!(capacity);
    let (status, body, elapsed) = world
        .call(Method::PUT, "/v1/admin/limits", Some(&definition))
        .await;
    assert_eq!(status, 200, "PUT {definition}: {body}");
    world.last = Some(crate::world::Answer { body, elapsed });
}

#[then(expr = "the reserve is allowed within {int} ms")]
async fn reserve_allowed(world: &mut LimiterWorld, bound_ms: u64) {
    let last = world.last();
    assert_eq!(last.body["allowed"], true, "{}", last.body);
    assert_eq!(last.body["error"], "");
    assert!(
        last.body["reserved_at_unix_ms"].as_i64().unwrap_or(0) > 0,
        "{}",
        last.body
    );
    within(last.elapsed, bound_ms, "the reserve");
}

#[then(expr = "the reserve is denied with a retry-after hint within {int} ms")]
async fn reserve_denied(world: &mut LimiterWorld, bound_ms: u64) {
    let last = world.last();
    assert_eq!(last.body["allowed"], false, "{}", last.body);
    assert_eq!(
        last.body["error"], "",
        "a capacity denial carries no error: {}",
        last.body
    );
    assert!(
        last.body["retry_after_ms"].as_u64().unwrap_or(0) > 0,
        "{}",
        last.body
    );
    within(last.elapsed, bound_ms, "the reserve");
}

#[then(expr = "the reserve fails with {string} within {int} ms")]
async fn reserve_fails(world: &mut LimiterWorld, code: String, bound_ms: u64) {
    let last = world.last();
    assert_eq!(
        last.body,
        json!({"allowed": false, "retry_after_ms": 0, "reserved_at_unix_ms": 0, "error": code})
    );
    within(last.elapsed, bound_ms, "the reserve");
}

#[then(expr = "the reserve is denied with {string} for {string} within {int} ms")]
async fn reserve_denied_with(world: &mut LimiterWorld, code: String, name: String, bound_ms: u64) {
    let expected = format!("{code}:{}", world.key(&name));
    let last = world.last();
    assert_eq!(last.body["allowed"], false, "{}", last.body);
    assert_eq!(last.body["error"], expected.as_str());
    assert!(
        last.body["retry_after_ms"].as_u64().unwrap_or(0) > 0,
        "{}",
        last.body
    );
    within(last.elapsed, bound_ms, "the reserve");
}

#[then(
    expr = "the reserve is refused with {string} for {string} and no retry-after within {int} ms"
)]
async fn reserve_refused_with(world: &mut LimiterWorld, code: String, name: String, bound_ms: u64) {
    let expected = format!("{code}:{}", world.key(&name));
    let last = world.last();
    assert_eq!(last.body["allowed"], false, "{}", last.body);
    assert_eq!(last.body["error"], expected.as_str());
    assert_eq!(last.body["retry_after_ms"], 0, "{}", last.body);
    within(last.elapsed, bound_ms, "the reserve");
}

#[then(expr = "the reserve is denied with a retry-after hint between {int} and {int} ms")]
async fn reserve_denied_hint_between(world: &mut LimiterWorld, low: u64, high: u64) {
    let last = world.last();
    assert_eq!(last.body["allowed"], false, "{}", last.body);
    assert_eq!(last.body["error"], "", "{}", last.body);
    let hint = last.body["retry_after_ms"].as_u64().unwrap_or(0);
    assert!((low..=high).contains(&hint), "{hint} not in {low}..={high}");
}

#[then(expr = "{string} has {int} in use and {int} available")]
async fn has_usage(world: &mut LimiterWorld, name: String, in_use: u64, available: u64) {
    let usage = world.limit(&name).await["usage"].clone();
    assert_eq!(
        (usage["in_use"].as_u64(), usage["available"].as_u64()),
        (Some(in_use), Some(available)),
        "{usage}"
    );
}

#[then(expr = "the complete succeeds within {int} ms")]
async fn complete_succeeds(world: &mut LimiterWorld, bound_ms: u64) {
    let last = world.last();
    assert_eq!(last.body, json!({"ok": true, "error": ""}));
    within(last.elapsed, bound_ms, "the complete");
}

#[then(expr = "{string} has a debt of {int}")]
async fn has_debt(world: &mut LimiterWorld, name: String, debt: u64) {
    let usage = world.limit(&name).await["usage"].clone();
    assert_eq!(usage["debt"].as_u64(), Some(debt), "{usage}");
}

#[then(expr = "the batch is answered within {int} ms")]
async fn batch_answered(world: &mut LimiterWorld, bound_ms: u64) {
    within(world.last().elapsed, bound_ms, "the batch");
}

fn batch_result(world: &LimiterWorld, position: usize) -> Value {
    let results = world.last().body["results"]
        .as_array()
        .expect("a batch answer")
        .clone();
    results
        .get(position - 1)
        .cloned()
        .unwrap_or_else(|| panic!("no result {position} in {results:?}"))
}

#[then(expr = "batch result {int} is allowed")]
async fn batch_allowed(world: &mut LimiterWorld, position: usize) {
    let result = batch_result(world, position);
    assert_eq!(result["allowed"], true, "{result}");
}

#[then(expr = "batch result {int} is denied with a retry-after hint")]
async fn batch_denied(world: &mut LimiterWorld, position: usize) {
    let result = batch_result(world, position);
    assert_eq!(result["allowed"], false, "{result}");
    assert_eq!(result["error"], "", "{result}");
    assert!(
        result["retry_after_ms"].as_u64().unwrap_or(0) > 0,
        "{result}"
    );
}

#[then(expr = "{string} is decreasing to {int} within {int} ms")]
async fn is_decreasing(world: &mut LimiterWorld, name: String, target: u64, bound_ms: u64) {
    let last = world.last().clone();
    assert_eq!(last.body, json!({"ok": true, "status": "decreasing"}));
    within(last.elapsed, bound_ms, "the capacity change");
    let limit = world.limit(&name).await;
    assert_eq!(limit["status"], "decreasing", "{limit}");
    assert_eq!(
        limit["pending_decrease_to"].as_u64(),
        Some(target),
        "{limit}"
    );
}

#[then(expr = "{string} is still decreasing after {int} ms, with {int} available")]
async fn still_decreasing(world: &mut LimiterWorld, name: String, wait_ms: u64, available: u64) {
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    let limit = world.limit(&name).await;
    assert_eq!(limit["status"], "decreasing", "{limit}");
    assert_eq!(
        limit["usage"]["available"].as_u64(),
        Some(available),
        "{limit}"
    );
}

#[then(expr = "{string} is active with capacity {int} within {int} ms")]
async fn becomes_active(world: &mut LimiterWorld, name: String, capacity: u64, bound_ms: u64) {
    let deadline = Instant::now() + Duration::from_millis(bound_ms);
    loop {
        let limit = world.limit(&name).await;
        if limit["status"] == "active" {
            assert_eq!(
                limit["definition"]["capacity"].as_u64(),
                Some(capacity),
                "{limit}"
            );
            assert_eq!(limit["pending_decrease_to"], 0, "{limit}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {limit} after {bound_ms} ms"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
