//! Command-line overrides of [`super::ServerSettings`]: the top settings layer. The same
//! struct is flattened into the `ratelimiterd` command line, so every flag documented there
//! is exactly one setting here.

use std::path::PathBuf;

use config::ValueKind;

use super::BackendKind;
use crate::outage::BackendDownPolicy;

/// Settings given on the command line; `None` leaves the lower layers in force.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct Overrides {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Backend holding capacity [default: memory]
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Registry file, rewritten atomically on every admin change [default: data/limits.json]
    #[arg(long, value_name = "PATH")]
    pub registry: Option<PathBuf>,
    /// Limits file seeding keys missing from the registry (only ever read)
    #[arg(long, value_name = "FILE")]
    pub limits: Option<PathBuf>,
    /// Most items in one batch request [default: 256]
    #[arg(long, value_name = "N")]
    pub max_batch_items: Option<u64>,
    /// Largest accepted request body in bytes [default: 1048576]
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Control tick: pending decreases retried, (TigerBeetle) shared definitions followed [default: 250]
    #[arg(long, value_name = "MS")]
    pub decrease_interval_ms: Option<u64>,
    /// Most leases in flight (reserved, not completed); past it reserves get backend_error.
    /// Denied and completed leases have a bound of their own of the same size [default: 1000000]
    #[arg(long, value_name = "N")]
    pub lease_capacity: Option<u64>,
    /// Memory backend: arbiters (threads) the key shards run on; 0 runs them on the main
    /// thread [default: 1]
    #[arg(long, value_name = "N")]
    pub memory_arbiters: Option<u64>,
    /// Memory backend: key shards (one lock each) the keys are spread over by their group,
    /// the name up to its last ':' [default: 16]
    #[arg(long, value_name = "N")]
    pub memory_shards: Option<u64>,
    /// Memory backend: save live reservations beside the registry this often, and at stop
    /// (0: only at stop); a crash loses at most this much, or 10× the time of a save when a
    /// save takes longer than a tenth of it [default: 1000]
    #[arg(long, value_name = "MS")]
    pub snapshot_interval_ms: Option<u64>,
    /// HTTP worker threads [default: one per CPU core]
    #[arg(long, value_name = "N")]
    pub workers: Option<u64>,
    /// Retry-after base for rolling keys [default: 100]
    #[arg(long, value_name = "MS")]
    pub retry_rolling_base_ms: Option<u64>,
    /// Retry-after cap for rolling keys [default: 5000]
    #[arg(long, value_name = "MS")]
    pub retry_rolling_max_ms: Option<u64>,
    /// Retry-after growth per denial for rolling keys [default: 1.5]
    #[arg(long, value_name = "X")]
    pub retry_rolling_factor: Option<f64>,
    /// Retry-after jitter for rolling keys [default: 50]
    #[arg(long, value_name = "MS")]
    pub retry_rolling_jitter_ms: Option<u64>,
    /// Retry-after base for concurrency keys [default: 50]
    #[arg(long, value_name = "MS")]
    pub retry_concurrency_base_ms: Option<u64>,
    /// Retry-after cap for concurrency keys [default: 2000]
    #[arg(long, value_name = "MS")]
    pub retry_concurrency_max_ms: Option<u64>,
    /// Retry-after growth per denial for concurrency keys [default: 2.0]
    #[arg(long, value_name = "X")]
    pub retry_concurrency_factor: Option<f64>,
    /// Retry-after jitter for concurrency keys [default: 25]
    #[arg(long, value_name = "MS")]
    pub retry_concurrency_jitter_ms: Option<u64>,
    /// Retry-after while a key is decreasing [default: 10000]
    #[arg(long, value_name = "MS")]
    pub retry_decreasing_ms: Option<u64>,
    /// How much longer than its window a rolling reservation is held, so a provider that
    /// counts from arrival never sees a request inside an earlier one's window [default: 50]
    #[arg(long, value_name = "MS")]
    pub retry_window_margin_ms: Option<u64>,
    /// TigerBeetle replica addresses, comma-separated [default: 127.0.0.1:3000]
    #[arg(long, value_name = "ADDRS")]
    pub tb_addresses: Option<String>,
    /// TigerBeetle cluster id [default: 0]
    #[arg(long, value_name = "ID")]
    pub tb_cluster: Option<u128>,
    /// Most TigerBeetle client sessions; more open only while full batches wait [default: 4]
    #[arg(long, value_name = "N")]
    pub tb_sessions: Option<u64>,
    /// While the backend is down: deny answers backend_error at once; allow answers allowed
    /// WITHOUT accounting (limits are not enforced) [default: deny]
    #[arg(long, value_enum)]
    pub backend_down: Option<BackendDownPolicy>,
    /// Time between probes of a backend that is down [default: 250]
    #[arg(long, value_name = "MS")]
    pub backend_probe_interval_ms: Option<u64>,
    /// Bound on one probe of a backend that is down [default: 500]
    #[arg(long, value_name = "MS")]
    pub backend_probe_timeout_ms: Option<u64>,
}

impl Overrides {
    /// Every flag that was given, as `(settings key, value)`.
    pub(crate) fn values(&self) -> Vec<(&'static str, ValueKind)> {
        let mut out: Vec<(&'static str, ValueKind)> = Vec::new();
        let mut num = |key: &'static str, v: Option<u64>| {
            if let Some(v) = v {
                out.push((key, ValueKind::U64(v)));
            }
        };
        num("max_batch_items", self.max_batch_items);
        num("max_body_bytes", self.max_body_bytes);
        num("decrease_interval_ms", self.decrease_interval_ms);
        num("lease_capacity", self.lease_capacity);
        num("snapshot_interval_ms", self.snapshot_interval_ms);
        num("memory_arbiters", self.memory_arbiters);
        num("memory_shards", self.memory_shards);
        num("workers", self.workers);
        num("backend_probe_interval_ms", self.backend_probe_interval_ms);
        num("backend_probe_timeout_ms", self.backend_probe_timeout_ms);
        num("retry.rolling.base_ms", self.retry_rolling_base_ms);
        num("retry.rolling.max_ms", self.retry_rolling_max_ms);
        num("retry.rolling.jitter_ms", self.retry_rolling_jitter_ms);
        num("retry.concurrency.base_ms", self.retry_concurrency_base_ms);
        num("retry.concurrency.max_ms", self.retry_concurrency_max_ms);
        num(
            "retry.concurrency.jitter_ms",
            self.retry_concurrency_jitter_ms,
        );
        num("retry.decreasing_ms", self.retry_decreasing_ms);
        num("retry.window_margin_ms", self.retry_window_margin_ms);
        let floats = [
            ("retry.rolling.factor", self.retry_rolling_factor),
            ("retry.concurrency.factor", self.retry_concurrency_factor),
        ];
        for (key, v) in floats {
            if let Some(v) = v {
                out.push((key, ValueKind::Float(v)));
            }
        }
        let paths = [("registry", &self.registry), ("limits", &self.limits)];
        for (key, v) in paths {
            if let Some(v) = v {
                out.push((key, ValueKind::String(v.to_string_lossy().into_owned())));
            }
        }
        if let Some(v) = &self.listen {
            out.push(("listen", ValueKind::String(v.clone())));
        }
        if let Some(v) = self.backend {
            out.push(("backend", ValueKind::String(v.as_str().into())));
        }
        if let Some(v) = self.backend_down {
            out.push(("backend_down", ValueKind::String(v.as_str().into())));
        }
        if let Some(v) = &self.tb_addresses {
            out.push(("tigerbeetle.addresses", ValueKind::String(v.clone())));
        }
        if let Some(v) = self.tb_cluster {
            // As a string: the config layers carry at most 64-bit integers from YAML/env.
            out.push(("tigerbeetle.cluster", ValueKind::String(v.to_string())));
        }
        if let Some(v) = self.tb_sessions {
            out.push(("tigerbeetle.sessions", ValueKind::U64(v)));
        }
        out
    }
}
