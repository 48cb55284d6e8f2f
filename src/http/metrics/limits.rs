//! The `ratelimiter_limit_*` gauges, built at scrape time from every limit's state and live
//! usage (the data of `GET /v1/admin/limits`), one series per key.

use prometheus::{IntGaugeVec, Opts};

use super::MetricsError;
use crate::model::{LimitInfo, LimitStatus};

/// The five gauges, with one series per limit in `limits`.
pub(super) fn gauges(limits: &[LimitInfo]) -> Result<[IntGaugeVec; 5], MetricsError> {
    let gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["key"]);
    let capacity = gauge(
        "ratelimiter_limit_capacity",
        "Capacity in force (while decreasing, the capacity still enforced)",
    )?;
    let in_use = gauge(
        "ratelimiter_limit_in_use",
        "Capacity held by live reservations or holds",
    )?;
    let available = gauge(
        "ratelimiter_limit_available",
        "Capacity in force minus in_use",
    )?;
    let debt = gauge(
        "ratelimiter_limit_debt",
        "Overage recorded as debt (accounting only)",
    )?;
    let decreasing = gauge(
        "ratelimiter_limit_decreasing",
        "1 while a capacity decrease waits for usage to drop, else 0",
    )?;
    for info in limits {
        let key = [info.state.definition.key.as_str()];
        capacity
            .with_label_values(&key)
            .set(clamped(info.state.definition.capacity));
        in_use
            .with_label_values(&key)
            .set(clamped(info.usage.in_use));
        available
            .with_label_values(&key)
            .set(clamped(info.usage.available));
        debt.with_label_values(&key).set(clamped(info.usage.debt));
        decreasing
            .with_label_values(&key)
            .set(i64::from(info.state.status == LimitStatus::Decreasing));
    }
    Ok([capacity, in_use, available, debt, decreasing])
}

/// A count as a gauge value (counts beyond `i64::MAX` are shown as `i64::MAX`).
fn clamped(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LimitDefinition, LimitState, Usage};
    use prometheus::core::Collector;

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
        let gauges = gauges(&[info("a", 3), info("b", 0)]).unwrap();
        let in_use = gauges
            .iter()
            .flat_map(Collector::collect)
            .find(|f| f.get_name() == "ratelimiter_limit_in_use")
            .unwrap();
        let mut values: Vec<(String, i64)> = in_use
            .get_metric()
            .iter()
            .map(|m| {
                (
                    m.get_label()[0].get_value().to_string(),
                    m.get_gauge().get_value() as i64,
                )
            })
            .collect();
        values.sort();
        assert_eq!(values, vec![("a".into(), 3), ("b".into(), 0)]);
        assert_eq!(clamped(u64::MAX), i64::MAX);
    }
}
