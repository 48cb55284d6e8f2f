//! [`TigerBeetleSettings`]: how the TigerBeetle backend reaches its cluster and batches work
//! for it. The one type for it: the server settings' `tigerbeetle` section and what
//! [`crate::tigerbeetle::TigerBeetleBackend::connect`] takes (that backend needs the
//! `tigerbeetle` cargo feature; the settings are always parsed so a build without it can say
//! so).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::rules::{check_ip_port, check_range, InvalidSetting};

/// Most events one TigerBeetle request can hold against a production server; a
/// `--development` server takes fewer, and the backend lowers its limit by itself if refused.
pub const TIGERBEETLE_MAX_BATCH_EVENTS: usize = 8189;

/// Connection and microbatching settings of the TigerBeetle backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TigerBeetleSettings {
    /// Replica addresses, comma-separated: literal IPs with ports (`127.0.0.1:3000`) or bare
    /// ports (`3000`); the TigerBeetle client does not resolve names such as `localhost`.
    pub addresses: String,
    /// The cluster id the replicas were formatted with.
    #[serde(
        deserialize_with = "u128_from_number_or_string",
        serialize_with = "u128_as_string"
    )]
    pub cluster: u128,
    /// Bound on every TigerBeetle call; past it the call fails with `backend_error`.
    pub request_timeout_ms: u64,
    /// Most events in one `create_transfers` request (at most
    /// [`TIGERBEETLE_MAX_BATCH_EVENTS`]).
    pub batch_max_events: usize,
    /// How long the microbatcher waits for more work before sending a partial batch.
    pub flush_interval_us: u64,
    /// Most client sessions the microbatcher keeps (at most [`TIGERBEETLE_MAX_SESSIONS`]):
    /// one is always used; another opens only when a full batch waits while every open
    /// session has a request in flight. Each session counts against the cluster's limit of
    /// 64 clients, shared by every instance.
    pub sessions: usize,
}

/// Most client sessions one backend may keep: well under the 64 clients a TigerBeetle
/// cluster serves, so several instances can share one.
pub const TIGERBEETLE_MAX_SESSIONS: usize = 16;

impl Default for TigerBeetleSettings {
    fn default() -> Self {
        TigerBeetleSettings {
            addresses: "127.0.0.1:3000".into(),
            cluster: 0,
            request_timeout_ms: 2000,
            batch_max_events: TIGERBEETLE_MAX_BATCH_EVENTS,
            flush_interval_us: 100,
            sessions: 4,
        }
    }
}

impl TigerBeetleSettings {
    /// Checks every rule; the error names `tigerbeetle.<field>`.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let field = "tigerbeetle.addresses";
        if self.addresses.trim().is_empty() {
            return Err(InvalidSetting::Empty { field });
        }
        for address in self.addresses.split(',').map(str::trim) {
            check_ip_port(field, address)?;
        }
        check_range(
            "tigerbeetle.request_timeout_ms",
            self.request_timeout_ms,
            1,
            600_000,
        )?;
        check_range(
            "tigerbeetle.batch_max_events",
            self.batch_max_events as u64,
            1,
            TIGERBEETLE_MAX_BATCH_EVENTS as u64,
        )?;
        check_range(
            "tigerbeetle.flush_interval_us",
            self.flush_interval_us,
            0,
            1_000_000,
        )?;
        check_range(
            "tigerbeetle.sessions",
            self.sessions as u64,
            1,
            TIGERBEETLE_MAX_SESSIONS as u64,
        )
    }

    /// The request bound as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The flush interval as a duration.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_micros(self.flush_interval_us)
    }
}

/// Writes a u128 as a string: the config layers carry at most 64-bit integers.
fn u128_as_string<S: serde::Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// Reads a u128 written as a number or, when too large for the YAML/env layers, a string.
fn u128_from_number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = u128;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an unsigned 128-bit integer")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u128, E> {
            Ok(u128::from(v))
        }
        fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<u128, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u128, E> {
            u128::try_from(v).map_err(|_| E::custom(format!("must not be negative (got {v})")))
        }
        fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<u128, E> {
            u128::try_from(v).map_err(|_| E::custom(format!("must not be negative (got {v})")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u128, E> {
            v.trim()
                .parse()
                .map_err(|_| E::custom(format!("{v:?} is not an unsigned 128-bit integer")))
        }
    }
    d.deserialize_any(Visitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        TigerBeetleSettings::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        let bad = |c: TigerBeetleSettings| c.validate().unwrap_err().to_string();
        let base = TigerBeetleSettings::default();
        assert!(bad(TigerBeetleSettings {
            addresses: " ".into(),
            ..base.clone()
        })
        .starts_with("tigerbeetle.addresses:"));
        let named = bad(TigerBeetleSettings {
            addresses: "localhost:3000".into(),
            ..base.clone()
        });
        assert!(named.starts_with("tigerbeetle.addresses:"), "{named}");
        assert!(named.contains("127.0.0.1"), "{named}");
        assert!(bad(TigerBeetleSettings {
            request_timeout_ms: 0,
            ..base.clone()
        })
        .starts_with("tigerbeetle.request_timeout_ms:"));
        assert!(bad(TigerBeetleSettings {
            batch_max_events: TIGERBEETLE_MAX_BATCH_EVENTS + 1,
            ..base.clone()
        })
        .starts_with("tigerbeetle.batch_max_events:"));
        for sessions in [0, TIGERBEETLE_MAX_SESSIONS + 1] {
            let named = bad(TigerBeetleSettings {
                sessions,
                ..base.clone()
            });
            assert!(named.starts_with("tigerbeetle.sessions:"), "{named}");
            assert!(
                named.contains(&TIGERBEETLE_MAX_SESSIONS.to_string()),
                "{named}"
            );
        }
        TigerBeetleSettings {
            addresses: "3000, 127.0.0.1:3001,[::1]:3002".into(),
            ..base
        }
        .validate()
        .unwrap();
    }
}
