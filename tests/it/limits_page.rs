//! The live limits page at `GET /`, in a real headless Chromium against the real
//! `ratelimiterd` binary on `limits/example.json`: it names every key of the file, a reserve
//! made while the page is open moves that key's bar without a reload, a decreasing key shows
//! its target, a phone-width screen has no horizontal overflow and keys stay text, and a
//! notice shows while the service cannot be reached and clears by itself. Plus the plain
//! HTTP answers of `/` and of unknown paths.

use std::path::{Path, PathBuf};
use std::time::Duration;

use headless_chrome::Tab;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::bound::{bounded, within};
use crate::support::browser::{self, eval, wait_for};
use crate::support::daemon::{BlockingApi, Daemon};
use crate::support::http::{TestServer, HTTP_BOUND_SECS};

/// Upper bound of one browser test (a browser start, a binary start, a few seconds of polling).
const PAGE_BOUND_SECS: u64 = 90;

/// The page refreshes every second; a change must show within this.
const SHOWS_WITHIN: Duration = Duration::from_secs(3);

/// How long the first render may take (the browser has just loaded the page).
const FIRST_RENDER: Duration = Duration::from_secs(10);

fn example_limits() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("limits/example.json")
}

/// The definitions of `limits/example.json`, in file order.
fn example_definitions() -> Vec<Value> {
    let text = std::fs::read_to_string(example_limits()).expect("limits/example.json readable");
    let entries: Vec<Value> = serde_json::from_str(&text).expect("limits/example.json is JSON");
    let definitions: Vec<Value> = entries
        .into_iter()
        .map(|e| e["definition"].clone())
        .collect();
    assert!(
        !definitions.is_empty(),
        "limits/example.json defines no limit"
    );
    definitions
}

fn key_of(definition: &Value) -> String {
    definition["key"].as_str().expect("a key").to_string()
}

fn capacity_of(definition: &Value) -> u64 {
    definition["capacity"].as_u64().expect("a capacity")
}

/// `7500` as the page writes it (`7,500`).
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `ratelimiterd` on the example limits with its registry in `dir`, on `listen`.
fn start_daemon(dir: &Path, listen: &str) -> Daemon {
    let registry = dir.join("limits.json");
    let limits = example_limits();
    Daemon::start(
        dir,
        &[
            "--listen".as_ref(),
            listen.as_ref(),
            "--registry".as_ref(),
            registry.as_os_str(),
            "--limits".as_ref(),
            limits.as_os_str(),
            "--workers".as_ref(),
            "1".as_ref(),
        ],
    )
}

/// JavaScript for the row of `key` (keys are passed as JSON strings, never spliced raw).
fn row(key: &str) -> String {
    format!(
        "[...document.querySelectorAll('#limits [data-key]')].find(r => r.dataset.key === {})",
        json!(key)
    )
}

/// The share of `key`'s bar that is filled, as drawn (0.0 to 1.0).
fn drawn_share(key: &str) -> String {
    format!(
        "(r => r.querySelector('.fill').getBoundingClientRect().width / \
         r.querySelector('.bar').getBoundingClientRect().width)({})",
        row(key)
    )
}

/// Waits until the page shows `count` rows; returns their keys in page order.
fn wait_for_rows(tab: &Tab, count: usize) -> Vec<String> {
    let expr = format!(
        "document.querySelectorAll('#limits [data-key]').length === {count} && \
         [...document.querySelectorAll('#limits [data-key]')].map(r => r.dataset.key)"
    );
    let (keys, _) = wait_for(tab, &format!("{count} rows"), &expr, FIRST_RENDER);
    serde_json::from_value(keys).expect("a list of keys")
}

#[test]
fn names_every_key_and_a_reserve_moves_its_bar_without_a_reload() {
    within(PAGE_BOUND_SECS, || {
        let dir = tempfile::tempdir().unwrap();
        let daemon = start_daemon(dir.path(), "127.0.0.1:0");
        let api = BlockingApi::new(&daemon);
        let definitions = example_definitions();
        let browser = browser::launch(1280, 1000);
        let tab = browser::open(&browser, &daemon.url("/"));

        // Every key of the file, once, with its capacity, as visible text.
        let mut shown = wait_for_rows(&tab, definitions.len());
        let mut expected: Vec<String> = definitions.iter().map(key_of).collect();
        shown.sort();
        expected.sort();
        assert_eq!(
            shown, expected,
            "the page names every key of limits/example.json"
        );
        let text = eval(&tab, "document.getElementById('limits').innerText");
        for definition in &definitions {
            let key = key_of(definition);
            assert!(
                text.as_str().unwrap().contains(&key),
                "{key} is not visible text"
            );
            let capacity = eval(&tab, &format!("{}.dataset.capacity", row(&key)));
            assert_eq!(
                capacity,
                json!(capacity_of(definition).to_string()),
                "{key}"
            );
        }

        // A reserve made now moves that key's bar, in the same document (no reload).
        eval(&tab, "window.sameDocument = true");
        let first = &definitions[0];
        let key = key_of(first);
        let amount = (capacity_of(first) / 2).max(1);
        assert_eq!(
            eval(&tab, &format!("{}.dataset.inUse", row(&key))),
            json!("0")
        );
        assert_eq!(eval(&tab, &drawn_share(&key)), json!(0));
        api.reserve(&key, amount);
        let share = amount as f64 / capacity_of(first) as f64;
        let (_, took) = wait_for(
            &tab,
            &format!("{key}'s bar at {share:.3} after the reserve"),
            &format!(
                "{}.dataset.inUse === '{amount}' && Math.abs({} - {share}) < 0.01",
                row(&key),
                drawn_share(&key)
            ),
            SHOWS_WITHIN,
        );
        assert_eq!(
            eval(&tab, "window.sameDocument"),
            json!(true),
            "the page reloaded"
        );
        let row_text = eval(&tab, &format!("{}.innerText", row(&key)));
        let in_use = format!(
            "in use {} / {}",
            grouped(amount),
            grouped(capacity_of(first))
        );
        assert!(
            row_text.as_str().unwrap().contains(&in_use),
            "{row_text} lacks {in_use:?}; took {took:?}"
        );

        // A decrease below what is in use waits: the row says so and marks the target.
        let target = (amount / 2).max(1);
        let mut lower = first.clone();
        lower["capacity"] = json!(target);
        assert_eq!(api.define(&lower), "decreasing");
        let expected_status = format!("decreasing → {}", grouped(target));
        let (status, _) = wait_for(
            &tab,
            "the decreasing status",
            &format!(
                "(r => r.dataset.status === 'decreasing' && r.dataset.target === '{target}' && \
                 !r.querySelector('.target').hidden && r.querySelector('.status').textContent)({})",
                row(&key)
            ),
            SHOWS_WITHIN,
        );
        assert_eq!(status, json!(expected_status));

        // Every other key gets a different share; each bar draws exactly its in-use share.
        let others = &definitions[1..];
        for (i, definition) in others.iter().enumerate() {
            let amount = capacity_of(definition) * (i as u64 + 1) / (others.len() as u64 + 1);
            api.reserve(&key_of(definition), amount.max(1));
        }
        let all_drawn = "[...document.querySelectorAll('#limits [data-key]')].every(r => \
             Math.abs(r.querySelector('.fill').getBoundingClientRect().width / \
             r.querySelector('.bar').getBoundingClientRect().width - \
             Math.min(1, r.dataset.inUse / r.dataset.capacity)) < 0.01)";
        for definition in others {
            let key = key_of(definition);
            let in_use = api.limit(&key)["usage"]["in_use"].as_u64().unwrap();
            wait_for(
                &tab,
                &format!("{key} at {in_use}"),
                &format!("{}.dataset.inUse === '{in_use}' && {all_drawn}", row(&key)),
                SHOWS_WITHIN,
            );
        }

        // Usage above a reservation that does not fit shows as debt.
        let debt_key = others
            .iter()
            .find(|d| d["overage"] == "debt" && d["kind"] == "rolling")
            .map(key_of)
            .expect("a rolling limit with debt overage in limits/example.json");
        let capacity = api.limit(&debt_key)["definition"]["capacity"]
            .as_u64()
            .unwrap();
        let lease_id = api.reserve(&debt_key, 1);
        api.complete(&lease_id, &debt_key, capacity * 2);
        let debt = api.limit(&debt_key)["usage"]["debt"].as_u64().unwrap();
        assert!(debt > 0, "completing twice the capacity leaves debt");
        wait_for(
            &tab,
            &format!("{debt_key}'s debt {debt}"),
            &format!("{}.dataset.debt === '{debt}'", row(&debt_key)),
            SHOWS_WITHIN,
        );

        let png = browser::screenshot(&tab, "limits-page.png");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        assert_eq!(
            eval(&tab, "window.sameDocument"),
            json!(true),
            "the page reloaded"
        );
        assert!(
            eval(&tab, "document.getElementById('notice').hidden") == json!(true),
            "no notice while the service answers; log:\n{}",
            daemon.log()
        );
    });
}

#[test]
fn at_phone_width_nothing_overflows_and_keys_stay_text() {
    within(PAGE_BOUND_SECS, || {
        let dir = tempfile::tempdir().unwrap();
        let daemon = start_daemon(dir.path(), "127.0.0.1:0");
        let api = BlockingApi::new(&daemon);
        // A long key with nowhere to break, and a key that looks like markup.
        let long_key = format!("tenant:{}:llm:daily_tokens", "x".repeat(160));
        let markup_key = "tenant:<img src=x onerror=\"window.injected=1\">:<b>bold</b>&amp;";
        for key in [long_key.as_str(), markup_key] {
            let definition = json!({"key": key, "kind": "rolling", "capacity": 1000,
                "window_seconds": 60, "unit": "tokens", "description": "<i>not markup</i>"});
            assert_eq!(api.define(&definition), "active");
        }
        api.reserve(markup_key, 250);
        let count = example_definitions().len() + 2;

        let browser = browser::launch(1280, 1000);
        let tab = browser::open(&browser, &daemon.url("/"));
        browser::phone_viewport(&tab, 390, 844);
        wait_for_rows(&tab, count);
        wait_for(
            &tab,
            "the markup key's usage",
            &format!("{}.dataset.inUse === '250'", row(markup_key)),
            SHOWS_WITHIN,
        );

        // The page lays out at the phone's width (viewport meta) and nothing sticks out.
        let layout = eval(
            &tab,
            "({inner: window.innerWidth, client: document.documentElement.clientWidth, \
              scroll: document.documentElement.scrollWidth, \
              widest: Math.max(...[...document.querySelectorAll('body *')] \
                 .map(e => e.getBoundingClientRect().right))})",
        );
        let inner = layout["inner"].as_f64().unwrap();
        assert!(inner <= 390.0, "laid out wider than the phone: {layout}");
        assert!(
            layout["scroll"].as_f64().unwrap() <= layout["client"].as_f64().unwrap(),
            "horizontal overflow at phone width: {layout}"
        );
        assert!(
            layout["widest"].as_f64().unwrap() <= inner,
            "an element sticks out: {layout}"
        );

        // Keys and descriptions are text: shown as typed, never parsed as markup.
        let key_text = eval(
            &tab,
            &format!("{}.querySelector('.key').textContent", row(markup_key)),
        );
        assert_eq!(key_text, json!(markup_key));
        let description = eval(
            &tab,
            &format!(
                "{}.querySelector('.description').textContent",
                row(markup_key)
            ),
        );
        assert_eq!(description, json!("<i>not markup</i>"));
        assert_eq!(
            eval(
                &tab,
                "document.querySelectorAll('#limits img, #limits i').length"
            ),
            json!(0)
        );
        assert_eq!(eval(&tab, "window.injected === undefined"), json!(true));

        let png = browser::screenshot(&tab, "limits-page-phone.png");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    });
}

#[test]
fn a_notice_shows_while_the_service_is_unreachable_and_clears_by_itself() {
    within(PAGE_BOUND_SECS, || {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = start_daemon(dir.path(), "127.0.0.1:0");
        let addr = daemon.addr;
        let count = example_definitions().len();
        let browser = browser::launch(1024, 800);
        let tab = browser::open(&browser, &daemon.url("/"));
        wait_for_rows(&tab, count);
        eval(&tab, "window.sameDocument = true");
        assert_eq!(
            eval(&tab, "document.getElementById('notice').hidden"),
            json!(true)
        );

        daemon.kill();
        let (notice, _) = wait_for(
            &tab,
            "the unreachable notice",
            "(n => !n.hidden && n.dataset.state === 'down' && n.textContent)\
             (document.getElementById('notice'))",
            SHOWS_WITHIN,
        );
        let notice = notice.as_str().unwrap().to_string();
        assert!(notice.contains("Cannot reach ratelimiterd"), "{notice}");
        // The last values stay on screen, marked stale.
        assert_eq!(
            eval(
                &tab,
                "document.querySelectorAll('#limits [data-key]').length"
            ),
            json!(count)
        );
        assert_eq!(
            eval(
                &tab,
                "document.getElementById('main').classList.contains('stale')"
            ),
            json!(true)
        );

        // Back on the same address: the page recovers without a reload.
        let daemon = start_daemon(dir.path(), &addr.to_string());
        wait_for(
            &tab,
            "the notice to clear",
            "(n => n.hidden && n.dataset.state === 'ok')(document.getElementById('notice')) && \
             !document.getElementById('main').classList.contains('stale')",
            SHOWS_WITHIN,
        );
        assert_eq!(
            eval(&tab, "window.sameDocument"),
            json!(true),
            "the page reloaded"
        );
        drop(daemon);
    });
}

#[actix_rt::test]
async fn root_serves_the_page_and_unknown_paths_stay_json_404() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        let response = server.client.get(server.url("/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(header("content-type"), "text/html; charset=utf-8");
        assert_eq!(header("cache-control"), "no-cache");
        let policy = header("content-security-policy");
        assert!(
            policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"),
            "{policy}"
        );
        let html = response.text().await.unwrap();
        assert!(html.starts_with("<!doctype html>"), "{html:.80}");
        assert!(html.contains(r#"<meta name="viewport" content="width=device-width"#));
        assert!(
            html.contains("v1/admin/limits"),
            "the page reads the admin API"
        );
        // Self-contained: nothing to load from anywhere else.
        for outside in ["http://", "https://", "src=", "<link rel=\"stylesheet\""] {
            assert!(!html.contains(outside), "the page refers to {outside}");
        }

        for path in ["/index.html", "/v1", "/nope/"] {
            let (status, body) = server.get(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            assert_eq!(body["error"], "not_found", "{path}: {body}");
        }
        let (status, body) = server.post("/", &json!({})).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
        assert_eq!(body["error"], "method_not_allowed");
    })
    .await;
}
