//! Settings of the `ratelimiterd` server, merged from three layers (later wins): an optional
//! YAML file (`--config FILE`), environment variables prefixed `RATELIMITERD_` (nested keys
//! joined with `__`, e.g. `RATELIMITERD_RETRY__ROLLING__BASE_MS`), and command-line flags.
//! [`ServerSettings::validate`] names the field at fault in every message.

use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::http::{HttpSettings, DEFAULT_MAX_BODY_BYTES};
use crate::model::leases::DEFAULT_MAX_LEASES;
use crate::model::RetryPolicy;
use crate::outage::{
    BackendDownPolicy, OutageSettings, DEFAULT_PROBE_INTERVAL_MS, DEFAULT_PROBE_TIMEOUT_MS,
};
use crate::service::ServiceSettings;

mod overrides;
mod rules;
#[cfg(test)]
mod tests;
mod tigerbeetle;

pub use overrides::Overrides;
pub use rules::InvalidSetting;
use rules::{check_address, check_range};
pub use tigerbeetle::{
    TigerBeetleSettings, TIGERBEETLE_MAX_BATCH_EVENTS, TIGERBEETLE_MAX_SESSIONS,
};

/// Prefix of the environment variables read by [`ServerSettings::load`].
pub const ENV_PREFIX: &str = "RATELIMITERD";
/// Largest accepted `max_batch_items`.
pub const MAX_BATCH_ITEMS_LIMIT: usize = 10_000;

/// Which backend holds capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// In-process actors; one machine, no external service.
    #[default]
    Memory,
    /// A TigerBeetle cluster (requires the `tigerbeetle` cargo feature).
    Tigerbeetle,
}

impl BackendKind {
    /// The name used in config files, flags and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::Tigerbeetle => "tigerbeetle",
        }
    }
}

/// Default time between periodic reservation snapshots of the memory backend.
pub const DEFAULT_SNAPSHOT_INTERVAL_MS: u64 = 1000;

/// Every setting of `ratelimiterd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// The backend holding capacity.
    pub backend: BackendKind,
    /// The registry file (definitions and their status), rewritten atomically on changes.
    pub registry: PathBuf,
    /// A limits file whose keys are defined at start if the registry lacks them; only read.
    pub limits: Option<PathBuf>,
    /// Most items in one batch request.
    pub max_batch_items: usize,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// The control tick: how often pending capacity decreases are retried and (TigerBeetle)
    /// definitions changed on other instances are followed.
    pub decrease_interval_ms: u64,
    /// Retry-after hints.
    pub retry: RetryPolicy,
    /// Most leases in flight (reserved, not completed, holds not expired) in either backend's
    /// lease table, and separately most settled leases (denied ids, completed leases).
    pub lease_capacity: usize,
    /// Memory backend: arbiters (threads) its key shards run on; 0 runs them on the main
    /// thread.
    pub memory_arbiters: usize,
    /// Memory backend: key shards (one lock and one actor each) the keys are spread over by a
    /// hash of their group (the name up to the last `:`).
    pub memory_shards: usize,
    /// Memory backend: time between periodic saves of the live reservations beside the
    /// registry (saved also at a graceful stop); 0 saves only at stop. Bounds what a crash
    /// loses.
    pub snapshot_interval_ms: u64,
    /// HTTP worker threads.
    pub workers: usize,
    /// TigerBeetle connection (used with `backend: tigerbeetle`).
    pub tigerbeetle: TigerBeetleSettings,
    /// What a reserve gets while the backend is known to be down: `deny` (`backend_error`
    /// at once) or `allow` (allowed without accounting: limits are not enforced).
    pub backend_down: BackendDownPolicy,
    /// Time between probes of a backend that is down.
    pub backend_probe_interval_ms: u64,
    /// Bound on one probe of a backend that is down.
    pub backend_probe_timeout_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8080".into(),
            backend: BackendKind::Memory,
            registry: PathBuf::from("data/limits.json"),
            limits: None,
            max_batch_items: crate::model::DEFAULT_MAX_BATCH_ITEMS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            decrease_interval_ms: 250,
            retry: RetryPolicy::default(),
            lease_capacity: DEFAULT_MAX_LEASES,
            snapshot_interval_ms: DEFAULT_SNAPSHOT_INTERVAL_MS,
            memory_arbiters: crate::actors::default_arbiters(),
            memory_shards: crate::actors::default_shards(),
            workers: crate::http::server::default_workers(),
            tigerbeetle: TigerBeetleSettings::default(),
            backend_down: BackendDownPolicy::Deny,
            backend_probe_interval_ms: DEFAULT_PROBE_INTERVAL_MS,
            backend_probe_timeout_ms: DEFAULT_PROBE_TIMEOUT_MS,
        }
    }
}

/// Why settings could not be loaded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SettingsError {
    /// The config file is missing or unreadable.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A layer could not be parsed or has a value of the wrong type or an unknown key.
    #[error("configuration: {0}")]
    Parse(String),
    /// A value breaks a rule; the message starts with the field's name.
    #[error("configuration: {0}")]
    Invalid(#[from] InvalidSetting),
}

impl ServerSettings {
    /// Loads the settings from the process environment; see [`ServerSettings::load`].
    pub fn load_from_env(
        config_file: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Self, SettingsError> {
        Self::load(config_file, std::env::vars(), overrides)
    }

    /// Merges defaults, the YAML `config_file`, the `RATELIMITERD_*` variables of `env`
    /// and the command-line `overrides` (later wins), then validates the result.
    pub fn load(
        config_file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, SettingsError> {
        // Defaults are the bottom layer, so a file or variable may set one field of a
        // nested section (e.g. only `retry.rolling.factor`) and keep the others.
        let defaults = Config::try_from(&ServerSettings::default())
            .map_err(|e| SettingsError::Parse(format!("defaults: {e}")))?;
        let mut builder = Config::builder().add_source(defaults);
        if let Some(path) = config_file {
            if let Err(e) = std::fs::metadata(path) {
                return Err(SettingsError::File {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                });
            }
            builder = builder.add_source(File::from(path).format(FileFormat::Yaml).required(true));
        }
        let prefix = format!("{ENV_PREFIX}_");
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(&prefix))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .source(Some(env)),
        );
        for (key, value) in overrides.values() {
            builder = builder.set_override(key, value).map_err(|e| {
                SettingsError::Parse(format!("--{}: {e}", key.replace(['.', '_'], "-")))
            })?;
        }
        let merged = builder
            .build()
            .map_err(|e| SettingsError::Parse(e.to_string()))?;
        let settings: ServerSettings = merged
            .try_deserialize()
            .map_err(|e| SettingsError::Parse(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every rule; the message starts with the field's name (`listen: ...`).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        check_address("listen", &self.listen)?;
        if self.registry.as_os_str().is_empty() {
            return Err(InvalidSetting::Empty { field: "registry" });
        }
        if self
            .limits
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(InvalidSetting::Empty { field: "limits" });
        }
        check_range(
            "max_batch_items",
            self.max_batch_items as u64,
            1,
            MAX_BATCH_ITEMS_LIMIT as u64,
        )?;
        check_range(
            "max_body_bytes",
            self.max_body_bytes as u64,
            1024,
            256 * 1024 * 1024,
        )?;
        check_range(
            "decrease_interval_ms",
            self.decrease_interval_ms,
            1,
            3_600_000,
        )?;
        self.retry.validate()?;
        check_range("lease_capacity", self.lease_capacity as u64, 1, 100_000_000)?;
        check_range("memory_arbiters", self.memory_arbiters as u64, 0, 1024)?;
        check_range("memory_shards", self.memory_shards as u64, 1, 4096)?;
        check_range(
            "snapshot_interval_ms",
            self.snapshot_interval_ms,
            0,
            3_600_000,
        )?;
        check_range("workers", self.workers as u64, 1, 1024)?;
        check_range(
            "backend_probe_interval_ms",
            self.backend_probe_interval_ms,
            1,
            60_000,
        )?;
        check_range(
            "backend_probe_timeout_ms",
            self.backend_probe_timeout_ms,
            1,
            60_000,
        )?;
        self.tigerbeetle.validate()
    }

    /// The service tunables these settings imply.
    pub fn service(&self) -> ServiceSettings {
        ServiceSettings {
            retry: self.retry,
            max_batch_items: self.max_batch_items,
            outage: OutageSettings {
                policy: self.backend_down,
                probe_interval_ms: self.backend_probe_interval_ms,
                probe_timeout_ms: self.backend_probe_timeout_ms,
            },
        }
    }

    /// The HTTP tunables these settings imply.
    pub fn http(&self) -> HttpSettings {
        HttpSettings {
            max_body_bytes: self.max_body_bytes,
            workers: self.workers,
        }
    }
}
