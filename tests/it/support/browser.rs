//! Headless Chromium for the page tests. The browser is `CHROMIUM_BIN`, else the path
//! `scripts/provision-chromium.sh` installs (`/usr/bin/chromium`). A missing browser FAILS the
//! test with the way to get one, never skips it (CI sets `CI=true` and relies on that).
//!
//! Page state is read by evaluating JavaScript that returns JSON, and polled with a deadline
//! ([`wait_for`]) because the page updates itself every second.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Emulation;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;

/// Where `scripts/provision-chromium.sh` puts the browser.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// Longest a single DevTools call may take.
const CALL_BOUND: Duration = Duration::from_secs(15);

/// The browser binary; panics naming `CHROMIUM_BIN` and the provisioning script when there is
/// none.
pub fn chromium_binary() -> PathBuf {
    let (path, source) = match std::env::var_os("CHROMIUM_BIN") {
        Some(path) => (PathBuf::from(path), "CHROMIUM_BIN"),
        None => (PathBuf::from(DEFAULT_CHROMIUM), "the default path"),
    };
    assert!(
        path.is_file(),
        "no Chromium at {} ({source}; CI={}): run scripts/provision-chromium.sh (Debian's \
         chromium package) or set CHROMIUM_BIN to a Chromium or Chrome binary; the limits page \
         tests need a real browser and never skip",
        path.display(),
        std::env::var("CI").unwrap_or_default()
    );
    path
}

/// A headless browser whose window (and so each tab's viewport) is `width` x `height`.
/// Without the sandbox: CI runs as root, where Chromium's sandbox cannot start.
pub fn launch(width: u32, height: u32) -> Browser {
    let options = LaunchOptions::default_builder()
        .path(Some(chromium_binary()))
        .headless(true)
        .sandbox(false)
        .window_size(Some((width, height)))
        .idle_browser_timeout(Duration::from_secs(300))
        .args(vec![OsStr::new("--hide-scrollbars")])
        .build()
        .expect("launch options");
    Browser::new(options).unwrap_or_else(|e| panic!("Chromium does not start: {e:#}"))
}

/// A new tab showing `url`, loaded.
pub fn open(browser: &Browser, url: &str) -> Arc<Tab> {
    let tab = browser.new_tab().expect("new tab");
    tab.set_default_timeout(CALL_BOUND);
    tab.navigate_to(url)
        .and_then(|tab| tab.wait_until_navigated())
        .unwrap_or_else(|e| panic!("cannot load {url}: {e:#}"));
    tab
}

/// Emulates a phone screen of `width` x `height` CSS pixels (touch, mobile layout), as a
/// phone's browser would lay the page out.
pub fn phone_viewport(tab: &Tab, width: u32, height: u32) {
    tab.call_method(Emulation::SetDeviceMetricsOverride {
        width,
        height,
        device_scale_factor: 2.0,
        mobile: true,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .expect("emulates a phone screen");
}

/// The JSON value of the JavaScript expression `expr` evaluated in the page.
pub fn eval(tab: &Tab, expr: &str) -> Value {
    let wrapped = format!("JSON.stringify((() => {{ return ({expr}); }})())");
    let result = tab
        .evaluate(&wrapped, false)
        .unwrap_or_else(|e| panic!("evaluating {expr}: {e:#}"));
    match result.value {
        Some(Value::String(json)) => serde_json::from_str(&json).expect("JSON from the page"),
        // JSON.stringify(undefined) is undefined.
        _ => Value::Null,
    }
}

/// Polls `expr` every 50 ms until it is truthy (not null, false, 0 or ""); returns its value
/// and how long it took. Panics naming `what` and the last value after `within`.
pub fn wait_for(tab: &Tab, what: &str, expr: &str, within: Duration) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let value = eval(tab, expr);
        let truthy = match &value {
            Value::Null | Value::Bool(false) => false,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return (value, start.elapsed());
        }
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?} (last value {value})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A PNG of the visible page; written to `$RATELIMITER_PAGE_SCREENSHOTS/<name>` when that
/// variable names a directory (how the README's picture is made).
pub fn screenshot(tab: &Tab, name: &str) -> Vec<u8> {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    if let Some(dir) = std::env::var_os("RATELIMITER_PAGE_SCREENSHOTS") {
        let path = PathBuf::from(dir).join(name);
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    png
}
