//! Pure pieces of the load test: a bounded-memory latency histogram with percentiles, and
//! the `--duration` parser.

use std::time::Duration;

use thiserror::Error;

/// Values below this are counted exactly, one bucket each.
const LINEAR: u64 = 64;
/// Sub-buckets per power of two above [`LINEAR`]: about 3 % relative precision.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for every u64.
const BUCKETS: usize = LINEAR as usize + (64 - 6) * SUB as usize;

/// Latencies in microseconds, in log-linear buckets: fixed memory however long the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            max: 0,
        }
    }
}

fn bucket_of(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // >= 6
    let sub = (value >> (exponent - SUB_BITS)) & (SUB - 1);
    LINEAR as usize + (exponent as usize - 6) * SUB as usize + sub as usize
}

/// The largest value that falls in `bucket`.
fn bucket_top(bucket: usize) -> u64 {
    if bucket < LINEAR as usize {
        return bucket as u64;
    }
    let offset = bucket - LINEAR as usize;
    let exponent = (offset / SUB as usize) as u32 + 6;
    let sub = (offset % SUB as usize) as u64;
    let width = 1u64 << (exponent - SUB_BITS);
    ((SUB + sub) << (exponent - SUB_BITS)).saturating_add(width - 1)
}

impl Histogram {
    /// Counts one latency.
    pub fn record(&mut self, latency: Duration) {
        self.record_micros(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Counts one value in microseconds.
    pub fn record_micros(&mut self, micros: u64) {
        self.counts[bucket_of(micros)] += 1;
        self.count += 1;
        self.max = self.max.max(micros);
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value counted, in microseconds.
    pub fn max_micros(&self) -> u64 {
        self.max
    }

    /// The `p`-th percentile (0 < p ≤ 100) in microseconds: the smallest bucket top with at
    /// least p % of the values at or below it (exact below 64 µs, within ~3 % above), never
    /// more than the maximum. 0 when empty.
    pub fn percentile_micros(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * self.count as f64)
            .ceil()
            .max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_top(bucket).min(self.max);
            }
        }
        self.max
    }
}

/// A `--duration` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("--duration: {0}")]
pub struct DurationError(String);

impl DurationError {
    /// What is wrong, without the flag name.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

/// The longest load test: an unattended run must still end.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Parses `500ms`, `2s`, `1.5s`, `5m` or `1h` into a duration between 1 ms and one hour.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| DurationError(format!("{text:?} needs a unit: ms, s, m or h")))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError(format!("{text:?} does not start with a number")))?;
    let millis_per_unit = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        other => {
            return Err(DurationError(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m or h)"
            )))
        }
    };
    let millis = value * millis_per_unit;
    if !(1.0..=MAX_DURATION.as_millis() as f64).contains(&millis) {
        return Err(DurationError(format!(
            "{text:?} must be between 1ms and {}h",
            MAX_DURATION.as_secs() / 3600
        )));
    }
    Ok(Duration::from_millis(millis.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn small_values_have_exact_percentiles() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record_micros(v);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.percentile_micros(50.0), 50);
        assert_eq!(h.percentile_micros(95.0), 95);
        assert_eq!(h.percentile_micros(99.0), 99);
        assert_eq!(h.percentile_micros(100.0), 100);
        assert_eq!(h.max_micros(), 100);
    }

    #[rstest]
    #[case(1_000)]
    #[case(123_456)]
    #[case(7_000_000)]
    #[case(u64::MAX / 3)]
    fn large_values_are_within_a_few_percent(#[case] value: u64) {
        let mut h = Histogram::default();
        h.record_micros(value);
        h.record_micros(value / 2);
        let p50 = h.percentile_micros(50.0) as f64;
        let expected = (value / 2) as f64;
        assert!(
            p50 >= expected && p50 <= expected * 1.04,
            "{p50} vs {expected}"
        );
        assert_eq!(h.percentile_micros(99.0), value, "capped at the maximum");
    }

    #[test]
    fn buckets_are_ordered_and_cover_their_values() {
        let mut previous = 0;
        for v in (0..100_000u64).step_by(7).chain([u64::MAX - 1, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= previous && b < BUCKETS);
            assert!(bucket_top(b) >= v);
            previous = b;
        }
    }

    #[test]
    fn merge_adds_counts_and_empty_is_zero() {
        let mut a = Histogram::default();
        assert_eq!(a.percentile_micros(99.0), 0);
        let mut b = Histogram::default();
        a.record(Duration::from_micros(10));
        b.record(Duration::from_micros(30));
        b.record(Duration::from_micros(20));
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.percentile_micros(50.0), 20);
        assert_eq!(a.max_micros(), 30);
    }

    #[rstest]
    #[case("500ms", 500)]
    #[case("2s", 2_000)]
    #[case("1.5s", 1_500)]
    #[case(" 5m ", 300_000)]
    #[case("1h", 3_600_000)]
    fn durations_parse(#[case] text: &str, #[case] millis: u64) {
        assert_eq!(parse_duration(text), Ok(Duration::from_millis(millis)));
    }

    #[rstest]
    #[case::no_unit("10")]
    #[case::bad_unit("10d")]
    #[case::no_number("s")]
    #[case::zero("0s")]
    #[case::too_long("2h")]
    #[case::empty("")]
    fn bad_durations_name_the_flag(#[case] text: &str) {
        let err = parse_duration(text).unwrap_err();
        assert!(err.to_string().starts_with("--duration: "), "{err}");
    }
}
