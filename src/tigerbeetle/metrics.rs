//! [`TigerBeetleMetrics`]: what the microbatcher sends to TigerBeetle, as Prometheus
//! histograms owned by one backend instance and gathered by each scrape of `GET /metrics`.
//!
//! - `ratelimiter_tigerbeetle_batch_events`: events (transfers) per `create_transfers`
//!   request.
//! - `ratelimiter_tigerbeetle_request_duration_seconds{operation}`: time from sending a
//!   request to its answer (or to giving up at the request bound), for `create_transfers`,
//!   `lookup_accounts` and `create_accounts`.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, HistogramVec};

use crate::http::DURATION_BUCKETS;

/// Upper bounds of the batch size buckets, in events: powers of two up to the largest
/// request TigerBeetle accepts (8189 events).
const EVENT_BUCKETS: [f64; 14] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

/// The microbatcher's histograms; clones share the counts.
#[derive(Debug, Clone)]
pub struct TigerBeetleMetrics {
    batch_events: Histogram,
    request_duration: HistogramVec,
}

impl TigerBeetleMetrics {
    /// Empty histograms.
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(TigerBeetleMetrics {
            batch_events: Histogram::with_opts(
                HistogramOpts::new(
                    "ratelimiter_tigerbeetle_batch_events",
                    "Events (transfers) per create_transfers request sent to TigerBeetle",
                )
                .buckets(EVENT_BUCKETS.to_vec()),
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "ratelimiter_tigerbeetle_request_duration_seconds",
                    "Time from sending a TigerBeetle request to its answer (or to the request \
                     bound), by client operation",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["operation"],
            )?,
        })
    }

    /// Records one `create_transfers` request of `events` events that took `elapsed`.
    pub fn observe_batch(&self, events: usize, elapsed: Duration) {
        self.batch_events.observe(events as f64);
        self.observe_call("create_transfers", elapsed);
    }

    /// Records one request of `operation` (e.g. `lookup_accounts`) that took `elapsed`.
    pub fn observe_call(&self, operation: &str, elapsed: Duration) {
        self.request_duration
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
    }

    /// The histograms, for a scrape.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.batch_events.clone()),
            Box::new(self.request_duration.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_calls_are_counted() {
        let metrics = TigerBeetleMetrics::new().unwrap();
        metrics.observe_batch(3, Duration::from_millis(2));
        metrics.observe_call("lookup_accounts", Duration::from_micros(300));
        let families: Vec<_> = metrics
            .collectors()
            .iter()
            .flat_map(|c| c.collect())
            .collect();
        let events = &families[0].get_metric()[0];
        assert_eq!(events.get_histogram().get_sample_count(), 1);
        assert_eq!(events.get_histogram().get_sample_sum(), 3.0);
        assert_eq!(families[1].get_metric().len(), 2);
    }
}
