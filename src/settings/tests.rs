//! Precedence of the settings layers and every validation rule.

use super::*;
use rstest::rstest;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn yaml(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    file
}

#[test]
fn defaults_match_the_spec() {
    let s = ServerSettings::load(None, env(&[]), &Overrides::default()).unwrap();
    assert_eq!(s.listen, "127.0.0.1:8080");
    assert_eq!(s.backend, BackendKind::Memory);
    assert_eq!(s.registry, PathBuf::from("data/limits.json"));
    assert_eq!(s.limits, None);
    assert_eq!(s.max_batch_items, 256);
    assert_eq!(s.decrease_interval_ms, 250);
    assert_eq!(s.retry, RetryPolicy::default());
    assert_eq!(s.tigerbeetle, TigerBeetleSettings::default());
    assert_eq!(s.tigerbeetle.batch_max_events, 8189);
    assert_eq!(s.tigerbeetle.request_timeout_ms, 2000);
}

#[test]
fn file_then_env_then_flags() {
    let file = yaml(
        "listen: 127.0.0.1:9001\nregistry: from-file.json\nmax_batch_items: 10\n\
         decrease_interval_ms: 40\nretry:\n  rolling:\n    base_ms: 7\n    max_ms: 70\n    factor: 3.0\n    jitter_ms: 1\n\
         tigerbeetle:\n  addresses: \"3001\"\n  cluster: 5\n",
    );
    let vars = env(&[
        ("RATELIMITERD_REGISTRY", "from-env.json"),
        ("RATELIMITERD_MAX_BATCH_ITEMS", "20"),
        ("RATELIMITERD_RETRY__ROLLING__BASE_MS", "8"),
        (
            "RATELIMITERD_TIGERBEETLE__CLUSTER",
            "340282366920938463463374607431768211455",
        ),
        ("UNRELATED", "ignored"),
    ]);
    let flags = Overrides {
        max_batch_items: Some(30),
        retry_rolling_factor: Some(2.5),
        tb_addresses: Some("10.0.0.1:3000,10.0.0.2:3000".into()),
        ..Overrides::default()
    };
    let s = ServerSettings::load(Some(file.path()), vars, &flags).unwrap();
    assert_eq!(s.listen, "127.0.0.1:9001", "file wins over default");
    assert_eq!(
        s.registry,
        PathBuf::from("from-env.json"),
        "env wins over file"
    );
    assert_eq!(s.max_batch_items, 30, "flag wins over env");
    assert_eq!(s.decrease_interval_ms, 40);
    assert_eq!(s.retry.rolling.base_ms, 8);
    assert_eq!(s.retry.rolling.max_ms, 70);
    assert_eq!(s.retry.rolling.factor, 2.5);
    assert_eq!(
        s.retry.concurrency,
        RetryPolicy::default().concurrency,
        "untouched section keeps defaults"
    );
    assert_eq!(s.tigerbeetle.cluster, u128::MAX);
    assert_eq!(s.tigerbeetle.addresses, "10.0.0.1:3000,10.0.0.2:3000");
    assert_eq!(s.service().max_batch_items, 30);
}

#[test]
fn every_flag_reaches_its_setting() {
    let flags = Overrides {
        listen: Some("127.0.0.1:1".into()),
        backend: Some(BackendKind::Tigerbeetle),
        registry: Some("r.json".into()),
        limits: Some("l.json".into()),
        max_batch_items: Some(2),
        max_body_bytes: Some(4096),
        decrease_interval_ms: Some(3),
        lease_capacity: Some(4),
        snapshot_interval_ms: Some(15),
        memory_arbiters: Some(3),
        memory_shards: Some(17),
        workers: Some(5),
        retry_rolling_base_ms: Some(6),
        retry_rolling_max_ms: Some(60),
        retry_rolling_factor: Some(1.25),
        retry_rolling_jitter_ms: Some(7),
        retry_concurrency_base_ms: Some(8),
        retry_concurrency_max_ms: Some(80),
        retry_concurrency_factor: Some(1.75),
        retry_concurrency_jitter_ms: Some(9),
        retry_decreasing_ms: Some(11),
        retry_window_margin_ms: Some(13),
        tb_addresses: Some("3000".into()),
        tb_cluster: Some(12),
        tb_sessions: Some(6),
        backend_down: Some(BackendDownPolicy::Allow),
        backend_probe_interval_ms: Some(13),
        backend_probe_timeout_ms: Some(14),
    };
    let s = ServerSettings::load(None, env(&[]), &flags).unwrap();
    assert_eq!(s.listen, "127.0.0.1:1");
    assert_eq!(s.backend, BackendKind::Tigerbeetle);
    assert_eq!(s.registry, PathBuf::from("r.json"));
    assert_eq!(s.limits, Some(PathBuf::from("l.json")));
    assert_eq!(
        (s.max_batch_items, s.max_body_bytes, s.decrease_interval_ms),
        (2, 4096, 3)
    );
    assert_eq!((s.lease_capacity, s.workers), (4, 5));
    assert_eq!((s.snapshot_interval_ms, s.memory_arbiters), (15, 3));
    assert_eq!(s.memory_shards, 17);
    let r = s.retry;
    assert_eq!(
        (
            r.rolling.base_ms,
            r.rolling.max_ms,
            r.rolling.factor,
            r.rolling.jitter_ms
        ),
        (6, 60, 1.25, 7)
    );
    assert_eq!(
        (
            r.concurrency.base_ms,
            r.concurrency.max_ms,
            r.concurrency.factor,
            r.concurrency.jitter_ms
        ),
        (8, 80, 1.75, 9)
    );
    assert_eq!((r.decreasing_ms, r.window_margin_ms), (11, 13));
    assert_eq!(
        (s.tigerbeetle.addresses.as_str(), s.tigerbeetle.cluster),
        ("3000", 12)
    );
    assert_eq!(s.tigerbeetle.sessions, 6);
    assert_eq!(s.http().max_body_bytes, 4096);
    let outage = s.service().outage;
    assert_eq!(
        (
            outage.policy,
            outage.probe_interval_ms,
            outage.probe_timeout_ms
        ),
        (BackendDownPolicy::Allow, 13, 14)
    );
}

#[test]
fn env_selects_backend_and_limits() {
    let vars = env(&[
        ("RATELIMITERD_BACKEND", "tigerbeetle"),
        ("RATELIMITERD_LIMITS", "x.json"),
    ]);
    let s = ServerSettings::load(None, vars, &Overrides::default()).unwrap();
    assert_eq!(s.backend, BackendKind::Tigerbeetle);
    assert_eq!(s.limits, Some(PathBuf::from("x.json")));
    assert_eq!(
        s.backend_down,
        BackendDownPolicy::Deny,
        "fail closed by default"
    );
    let vars = env(&[("RATELIMITERD_BACKEND_DOWN", "allow")]);
    let s = ServerSettings::load(None, vars, &Overrides::default()).unwrap();
    assert_eq!(s.service().outage.policy, BackendDownPolicy::Allow);
}

#[test]
fn missing_config_file_names_the_file() {
    let err = ServerSettings::load(
        Some(Path::new("/nonexistent/rl.yaml")),
        env(&[]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(matches!(err, SettingsError::File { .. }));
    assert!(
        err.to_string()
            .starts_with("config file /nonexistent/rl.yaml:"),
        "{err}"
    );
}

#[rstest]
#[case::unknown_key("lisen: 1.2.3.4:5\n", "lisen")]
#[case::bad_type("max_batch_items: many\n", "max_batch_items")]
#[case::bad_backend("backend: redis\n", "redis")]
#[case::bad_down_policy("backend_down: maybe\n", "maybe")]
#[case::bad_yaml("listen: [\n", "")]
#[case::negative_cluster("tigerbeetle:\n  cluster: -1\n", "negative")]
fn unparsable_files_are_rejected(#[case] text: &str, #[case] mentions: &str) {
    let file = yaml(text);
    let err = ServerSettings::load(Some(file.path()), env(&[]), &Overrides::default()).unwrap_err();
    assert!(matches!(err, SettingsError::Parse(_)), "{err:?}");
    assert!(
        err.to_string().contains(mentions),
        "{err} should mention {mentions}"
    );
}

#[test]
fn unknown_env_key_is_rejected() {
    let err = ServerSettings::load(
        None,
        env(&[("RATELIMITERD_LISEN", "x")]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("lisen"), "{err}");
}

#[rstest]
#[case::listen_garbage("listen: nowhere\n", "listen: ")]
#[case::listen_port("listen: 127.0.0.1:99999\n", "listen: ")]
#[case::registry_empty("registry: \"\"\n", "registry: ")]
#[case::batch_zero("max_batch_items: 0\n", "max_batch_items: ")]
#[case::batch_huge("max_batch_items: 1000000\n", "max_batch_items: ")]
#[case::body_tiny("max_body_bytes: 10\n", "max_body_bytes: ")]
#[case::interval_zero("decrease_interval_ms: 0\n", "decrease_interval_ms: ")]
#[case::factor("retry:\n  rolling:\n    factor: 0.5\n", "retry.rolling.factor: ")]
#[case::conc_max(
    "retry:\n  concurrency:\n    base_ms: 10\n    max_ms: 5\n",
    "retry.concurrency.max_ms: "
)]
#[case::decreasing("retry:\n  decreasing_ms: 0\n", "retry.decreasing_ms: ")]
#[case::margin("retry:\n  window_margin_ms: 60001\n", "retry.window_margin_ms: ")]
#[case::leases("lease_capacity: 0\n", "lease_capacity: ")]
#[case::memory_arbiters("memory_arbiters: 1025\n", "memory_arbiters: ")]
#[case::memory_shards("memory_shards: 0\n", "memory_shards: ")]
#[case::memory_shards_high("memory_shards: 4097\n", "memory_shards: ")]
#[case::snapshot_interval("snapshot_interval_ms: 3600001\n", "snapshot_interval_ms: ")]
#[case::workers("workers: 0\n", "workers: ")]
#[case::probe_interval("backend_probe_interval_ms: 0\n", "backend_probe_interval_ms: ")]
#[case::probe_timeout("backend_probe_timeout_ms: 100000\n", "backend_probe_timeout_ms: ")]
#[case::tb_addresses("tigerbeetle:\n  addresses: \" \"\n", "tigerbeetle.addresses: ")]
#[case::tb_address_form(
    "tigerbeetle:\n  addresses: \"3000,host\"\n",
    "tigerbeetle.addresses: "
)]
#[case::tb_timeout(
    "tigerbeetle:\n  request_timeout_ms: 0\n",
    "tigerbeetle.request_timeout_ms: "
)]
#[case::tb_batch(
    "tigerbeetle:\n  batch_max_events: 8190\n",
    "tigerbeetle.batch_max_events: "
)]
#[case::tb_sessions("tigerbeetle:\n  sessions: 0\n", "tigerbeetle.sessions: ")]
#[case::tb_flush(
    "tigerbeetle:\n  flush_interval_us: 2000000\n",
    "tigerbeetle.flush_interval_us: "
)]
fn invalid_values_name_the_field(#[case] text: &str, #[case] field: &str) {
    let file = yaml(text);
    let err = ServerSettings::load(Some(file.path()), env(&[]), &Overrides::default()).unwrap_err();
    assert!(matches!(err, SettingsError::Invalid(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("configuration: {field}")),
        "{err} should name {field}"
    );
}

#[test]
fn flags_are_validated_too() {
    let flags = Overrides {
        listen: Some("bad".into()),
        ..Overrides::default()
    };
    let err = ServerSettings::load(None, env(&[]), &flags).unwrap_err();
    assert!(err.to_string().contains("listen: \"bad\""), "{err}");
}

#[test]
fn invalid_values_carry_the_field_and_the_bounds() {
    let file = yaml("workers: 0\n");
    let err = ServerSettings::load(Some(file.path()), env(&[]), &Overrides::default()).unwrap_err();
    assert_eq!(
        err,
        SettingsError::Invalid(InvalidSetting::OutOfRange {
            field: "workers",
            value: 0,
            min: 1,
            max: 1024
        })
    );
    let file = yaml("retry:\n  decreasing_ms: 0\n");
    let err = ServerSettings::load(Some(file.path()), env(&[]), &Overrides::default()).unwrap_err();
    assert_eq!(
        err,
        SettingsError::Invalid(InvalidSetting::Retry(
            crate::model::InvalidRetry::ZeroDecreasing
        ))
    );
    let file = yaml("tigerbeetle:\n  addresses: \"localhost:3000\"\n");
    let err = ServerSettings::load(Some(file.path()), env(&[]), &Overrides::default()).unwrap_err();
    assert!(
        matches!(
            &err,
            SettingsError::Invalid(InvalidSetting::NotAnIp {
                field: "tigerbeetle.addresses",
                ..
            })
        ),
        "{err}"
    );
}
