//! Connection and microbatching settings of the TigerBeetle backend.

use thiserror::Error;

/// Most events one TigerBeetle request can hold against a production server (8189), and
/// the smaller limit of a `--development` server (253, a 32 KiB request).
pub const PRODUCTION_MAX_EVENTS: usize = 8189;
/// Most events per request accepted by a server started with `--development`.
pub const DEVELOPMENT_MAX_EVENTS: usize = 253;

/// How to reach the cluster and how to batch work for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TigerBeetleConfig {
    /// Replica addresses, comma-separated literal IPs with ports (`127.0.0.1:3000`), or
    /// bare ports; `localhost` is not accepted by the TigerBeetle client.
    pub addresses: String,
    /// The cluster id the replicas were formatted with.
    pub cluster: u128,
    /// Bound on every TigerBeetle call; past it the call fails with `backend_error`.
    pub request_timeout_ms: u64,
    /// Most events in one `create_transfers` request (at most 8189; a `--development`
    /// server takes at most 253, and the batcher lowers its limit by itself if refused).
    pub batch_max_events: usize,
    /// How long the batcher waits for more work before sending a partial batch.
    pub flush_interval_us: u64,
}

impl Default for TigerBeetleConfig {
    fn default() -> Self {
        TigerBeetleConfig {
            addresses: "127.0.0.1:3000".into(),
            cluster: 0,
            request_timeout_ms: 2000,
            batch_max_events: PRODUCTION_MAX_EVENTS,
            flush_interval_us: 100,
        }
    }
}

impl From<&crate::settings::TigerBeetleSettings> for TigerBeetleConfig {
    /// The `tigerbeetle` section of the server settings.
    fn from(settings: &crate::settings::TigerBeetleSettings) -> Self {
        TigerBeetleConfig {
            addresses: settings.addresses.clone(),
            cluster: settings.cluster,
            request_timeout_ms: settings.request_timeout_ms,
            batch_max_events: usize::try_from(settings.batch_max_events).unwrap_or(usize::MAX),
            flush_interval_us: settings.flush_interval_us,
        }
    }
}

/// A setting that cannot work; the message names the field.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("tigerbeetle.{field}: {message}")]
pub struct ConfigError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl TigerBeetleConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, message: String| Err(ConfigError { field, message });
        if self.addresses.trim().is_empty() {
            return fail("addresses", "must list at least one address".into());
        }
        if self.addresses.contains("localhost") {
            return fail(
                "addresses",
                format!(
                    "{:?}: use a literal IP such as 127.0.0.1; the TigerBeetle client does not resolve names",
                    self.addresses
                ),
            );
        }
        if self.request_timeout_ms == 0 {
            return fail("request_timeout_ms", "must be greater than 0".into());
        }
        if self.batch_max_events == 0 || self.batch_max_events > PRODUCTION_MAX_EVENTS {
            return fail(
                "batch_max_events",
                format!(
                    "must be between 1 and {PRODUCTION_MAX_EVENTS} (got {})",
                    self.batch_max_events
                ),
            );
        }
        Ok(())
    }

    /// The request bound as a duration.
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.request_timeout_ms)
    }

    /// The flush interval as a duration.
    pub fn flush_interval(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.flush_interval_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_server_settings() {
        TigerBeetleConfig::default().validate().unwrap();
        let from_settings =
            TigerBeetleConfig::from(&crate::settings::TigerBeetleSettings::default());
        assert_eq!(from_settings, TigerBeetleConfig::default());
    }

    #[test]
    fn errors_name_the_field() {
        let bad = |c: TigerBeetleConfig| c.validate().unwrap_err().to_string();
        let base = TigerBeetleConfig::default();
        assert!(bad(TigerBeetleConfig {
            addresses: " ".into(),
            ..base.clone()
        })
        .starts_with("tigerbeetle.addresses:"));
        assert!(bad(TigerBeetleConfig {
            addresses: "localhost:3000".into(),
            ..base.clone()
        })
        .contains("127.0.0.1"));
        assert!(bad(TigerBeetleConfig {
            request_timeout_ms: 0,
            ..base.clone()
        })
        .starts_with("tigerbeetle.request_timeout_ms:"));
        assert!(bad(TigerBeetleConfig {
            batch_max_events: 8190,
            ..base
        })
        .starts_with("tigerbeetle.batch_max_events:"));
    }
}
