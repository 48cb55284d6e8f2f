//! The rules every server setting is checked against, and [`InvalidSetting`], the typed
//! answer naming the field at fault.

use std::net::{IpAddr, ToSocketAddrs};

use thiserror::Error;

use crate::model::InvalidRetry;

/// A setting that breaks a rule; every message starts with the field's dotted name.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum InvalidSetting {
    /// A number outside its accepted range.
    #[error("{field}: must be between {min} and {max} (got {value})")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// A path or list that must not be empty.
    #[error("{field}: must not be empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// Not of the form `host:port` with a numeric port.
    #[error("{field}: {value:?} is not an address like 127.0.0.1:8080")]
    NotAnAddress {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// A host name that resolves to no address.
    #[error("{field}: {value:?} resolves to no address")]
    NoAddress {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// A host name that cannot be resolved.
    #[error("{field}: cannot resolve {value:?} ({reason})")]
    Unresolvable {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
        /// The resolver's answer.
        reason: String,
    },
    /// A host name where only a literal IP works (the TigerBeetle client resolves no names).
    #[error(
        "{field}: {value:?}: use a literal IP such as 127.0.0.1; the TigerBeetle client does not resolve names"
    )]
    NotAnIp {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// A retry-after policy value breaks a rule.
    #[error(transparent)]
    Retry(#[from] InvalidRetry),
}

/// `min <= value <= max`.
pub(crate) fn check_range(
    field: &'static str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), InvalidSetting> {
    if value < min || value > max {
        return Err(InvalidSetting::OutOfRange {
            field,
            value,
            min,
            max,
        });
    }
    Ok(())
}

/// `host:port` with a numeric port; the host is not resolved. Answers the host.
pub(crate) fn check_host_port<'a>(
    field: &'static str,
    value: &'a str,
) -> Result<&'a str, InvalidSetting> {
    let bad = || InvalidSetting::NotAnAddress {
        field,
        value: value.to_string(),
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(host)
}

/// `ip:port` (IPv6 in brackets), or a bare port.
pub(crate) fn check_ip_port(field: &'static str, value: &str) -> Result<(), InvalidSetting> {
    if value.parse::<u16>().is_ok() {
        return Ok(());
    }
    let host = check_host_port(field, value)?;
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    if ip.parse::<IpAddr>().is_err() {
        return Err(InvalidSetting::NotAnIp {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// An address to bind: an IP socket address, or `host:port` whose host resolves.
pub(crate) fn check_address(field: &'static str, value: &str) -> Result<(), InvalidSetting> {
    if value.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    check_host_port(field, value)?;
    match value.to_socket_addrs() {
        Ok(addrs) if addrs.len() > 0 => Ok(()),
        Ok(_) => Err(InvalidSetting::NoAddress {
            field,
            value: value.to_string(),
        }),
        Err(e) => Err(InvalidSetting::Unresolvable {
            field,
            value: value.to_string(),
            reason: e.to_string(),
        }),
    }
}
