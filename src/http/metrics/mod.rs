//! Prometheus metrics of the HTTP API, per server instance (several servers in one process
//! keep separate counts): `GET /metrics` in the text exposition format.
//!
//! - Hot path: reserve and complete outcomes are atomic increments of counters resolved
//!   once at start ([`ApiMetrics::count_reserve`]); the request timer observes one histogram
//!   per request, labelled by route pattern (never the raw path).
//! - Scrape time: the `ratelimiter_limit_*` gauges are computed from the service's states and
//!   live usage (what `GET /v1/admin/limits` shows), and the backend adds its own families
//!   (TigerBeetle batch sizes and request durations). None of it runs on the reserve path;
//!   the usage reads share the backend with it (their cost is in BENCHMARKS.md).
//!
//! - [`outcome`]: the `outcome` label values.
//! - `limits`: the scrape-time limit gauges.
//! - `routes`: the `GET /metrics` handler and the request timer middleware.

use std::time::Duration;

use log::warn;
use prometheus::core::Collector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use thiserror::Error;

use crate::service::LimiterService;

mod limits;
pub mod outcome;
mod routes;

pub(crate) use routes::metrics;
pub use routes::time_request;

/// Upper bounds (seconds) of the request duration buckets: 100 µs to 10 s.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The `route` label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// A metric could not be created or the scrape could not be encoded.
#[derive(Debug, Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// The API's counters and histograms, and the scrape that renders them with the limits'
/// gauges and the backend's own metrics.
#[derive(Debug)]
pub struct ApiMetrics {
    reserve_total: IntCounterVec,
    complete_total: IntCounterVec,
    reserves: Vec<IntCounter>,
    completes: Vec<IntCounter>,
    request_duration: HistogramVec,
}

impl ApiMetrics {
    /// Fresh metrics, every count zero.
    pub fn new() -> Result<ApiMetrics, MetricsError> {
        let reserve_total = IntCounterVec::new(
            Opts::new(
                "ratelimiter_reserve_total",
                "Reserves answered, by outcome (each item of a batch counts once)",
            ),
            &["outcome"],
        )?;
        let complete_total = IntCounterVec::new(
            Opts::new(
                "ratelimiter_complete_total",
                "Completes answered, by outcome (each item of a batch counts once)",
            ),
            &["outcome"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "ratelimiter_request_duration_seconds",
                "Time to answer an HTTP request, by route pattern",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route"],
        )?;
        Ok(ApiMetrics {
            reserves: outcome::Reserve::ALL
                .iter()
                .map(|o| reserve_total.with_label_values(&[o.label()]))
                .collect(),
            completes: outcome::Complete::ALL
                .iter()
                .map(|o| complete_total.with_label_values(&[o.label()]))
                .collect(),
            reserve_total,
            complete_total,
            request_duration,
        })
    }

    /// Counts one reserve answer.
    pub fn count_reserve(&self, outcome: outcome::Reserve) {
        if let Some(counter) = self.reserves.get(outcome as usize) {
            counter.inc();
        }
    }

    /// Counts one complete answer.
    pub fn count_complete(&self, outcome: outcome::Complete) {
        if let Some(counter) = self.completes.get(outcome as usize) {
            counter.inc();
        }
    }

    /// Observes the time one request took; `route` is its pattern (`None`: no route matched).
    pub fn observe_request(&self, route: Option<&str>, elapsed: Duration) {
        self.request_duration
            .with_label_values(&[route.unwrap_or(UNMATCHED_ROUTE)])
            .observe(elapsed.as_secs_f64());
    }

    /// Every metric in the Prometheus text format: the API's counters and histograms, the
    /// limits' gauges (left out, with a warning, when the backend cannot report usage), the
    /// backend's own metrics and whether it is up. The collectors are gathered by a registry
    /// of this scrape's own (which refuses duplicates); every family is sorted by name.
    pub async fn render(&self, service: &LimiterService) -> Result<String, MetricsError> {
        let registry = Registry::new();
        registry.register(Box::new(self.reserve_total.clone()))?;
        registry.register(Box::new(self.complete_total.clone()))?;
        registry.register(Box::new(self.request_duration.clone()))?;
        for collector in service.backend_metrics() {
            registry.register(collector)?;
        }
        registry.register(backend_up(service)?)?;
        let mut families = registry.gather();
        match service.list().await {
            Ok(limits) => families.extend(limits::families(&limits)),
            Err(e) => warn!("metrics: limit usage left out of this scrape: {e}"),
        }
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = String::new();
        TextEncoder::new().encode_utf8(&families, &mut text)?;
        Ok(text)
    }
}

/// `ratelimiter_backend_up`: 1 while the backend answers, 0 while it is known to be down.
fn backend_up(service: &LimiterService) -> Result<Box<dyn Collector>, MetricsError> {
    let up = IntGauge::new(
        "ratelimiter_backend_up",
        "1 while the backend answers, 0 while it is known to be down (see /readyz)",
    )?;
    up.set(i64::from(service.readiness().is_ok()));
    Ok(Box::new(up))
}
