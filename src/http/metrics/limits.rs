//! The `ratelimiter_limit_*` gauges, built at scrape time from every limit's state and live
//! usage (the data of `GET /v1/admin/limits`), one series per key. The families are written
//! directly (no per-key gauge objects to create and hash), so a scrape of a thousand limits
//! stays cheap.

use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::model::{LimitInfo, LimitStatus};

/// The five gauge families, each with one series per limit, in the order of `limits`; none
/// without limits (the text format has no empty families).
pub(super) fn families(limits: &[LimitInfo]) -> Vec<MetricFamily> {
    if limits.is_empty() {
        return Vec::new();
    }
    vec![
        family(
            "ratelimiter_limit_capacity",
            "Capacity in force (while decreasing, the capacity still enforced)",
            limits,
            |info| info.state.definition.capacity,
        ),
        family(
            "ratelimiter_limit_in_use",
            "Capacity held by live reservations or holds",
            limits,
            |info| info.usage.in_use,
        ),
        family(
            "ratelimiter_limit_available",
            "Capacity in force minus in_use",
            limits,
            |info| info.usage.available,
        ),
        family(
            "ratelimiter_limit_debt",
            "Overage recorded as debt (accounting only)",
            limits,
            |info| info.usage.debt,
        ),
        family(
            "ratelimiter_limit_decreasing",
            "1 while a capacity decrease waits for usage to drop, else 0",
            limits,
            |info| u64::from(info.state.status == LimitStatus::Decreasing),
        ),
    ]
}

/// One gauge family with a `key`-labelled series per limit (values above 2^53 lose
/// precision, as every Prometheus value is a float).
fn family(
    name: &str,
    help: &str,
    limits: &[LimitInfo],
    value: impl Fn(&LimitInfo) -> u64,
) -> MetricFamily {
    let metrics = limits
        .iter()
        .map(|info| {
            let mut key = LabelPair::default();
            key.set_name("key".into());
            key.set_value(info.state.definition.key.clone());
            let mut gauge = Gauge::default();
            gauge.set_value(value(info) as f64);
            let mut metric = Metric::from_label(vec![key]);
            metric.set_gauge(gauge);
            metric
        })
        .collect();
    let mut family = MetricFamily::default();
    family.set_name(name.into());
    family.set_help(help.into());
    family.set_field_type(MetricType::GAUGE);
    family.set_metric(metrics);
    family
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LimitDefinition, LimitState, Usage};

    #[test]
    fn one_series_per_key_and_gauge() {
        let info = |key: &str, in_use: u64| LimitInfo {
            state: LimitState::active(LimitDefinition::rolling(key, 10, 60)),
            usage: Usage {
                in_use,
                available: 10 - in_use,
                debt: 0,
            },
        };
        let families = families(&[info("a", 3), info("b", 0)]);
        assert_eq!(families.len(), 5);
        let in_use = families
            .iter()
            .find(|f| f.name() == "ratelimiter_limit_in_use")
            .unwrap();
        let values: Vec<(String, f64)> = in_use
            .get_metric()
            .iter()
            .map(|m| {
                (
                    m.get_label()[0].value().to_string(),
                    m.get_gauge().get_value(),
                )
            })
            .collect();
        assert_eq!(values, vec![("a".into(), 3.0), ("b".into(), 0.0)]);
        assert!(super::families(&[]).is_empty());
    }
}
