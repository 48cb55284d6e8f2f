//! Admission timing (SPEC §4, §9): retry-after hints and the window margin.
//!
//! - A rolling key that knows its live reservations hints exactly when the amount fits (see
//!   [`crate::model::Reservations::wait_until_fits_ms`]) plus jitter, never earlier.
//! - Where that cannot be known (concurrency keys: a release time is unknowable), a per-key
//!   deny streak drives the exponential backoff of the table, with no read of live usage.
//! - A rolling reservation is held for its window plus [`RetryPolicy::window_margin_ms`]: a
//!   provider counts a request from when it *arrives*, the limiter from when it was
//!   *reserved*, so without a margin a request admitted at the exact moment capacity frees
//!   could land inside the provider's window of an earlier one.

use rand::Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::definition::{LimitDefinition, LimitKind};

/// Backoff parameters for one kind of limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// The smallest hint.
    pub base_ms: u64,
    /// The largest hint before jitter.
    pub max_ms: u64,
    /// Growth per step of the deny streak.
    pub factor: f64,
    /// Up to this much random jitter is added, so denied clients do not retry in lockstep.
    pub jitter_ms: u64,
}

/// The whole retry-after policy; every value is configurable.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Backoff for concurrency keys (also capped by `timeout_seconds * 1000`).
    pub concurrency: Backoff,
    /// Backoff for rolling keys (base is at least a tenth of the window).
    pub rolling: Backoff,
    /// The fixed hint while a key is decreasing.
    pub decreasing_ms: u64,
    /// How much longer than its window a rolling reservation is held, in ms (see the
    /// module comment; measured in BENCHMARKS.md).
    pub window_margin_ms: u64,
}

/// Default [`RetryPolicy::window_margin_ms`].
pub const DEFAULT_WINDOW_MARGIN_MS: u64 = 50;

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            concurrency: Backoff {
                base_ms: 50,
                max_ms: 2000,
                factor: 2.0,
                jitter_ms: 25,
            },
            rolling: Backoff {
                base_ms: 100,
                max_ms: 5000,
                factor: 1.5,
                jitter_ms: 50,
            },
            decreasing_ms: 10_000,
            window_margin_ms: DEFAULT_WINDOW_MARGIN_MS,
        }
    }
}

/// A retry-after policy value that breaks a rule; the message names the field.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum InvalidRetry {
    /// `base_ms` is 0.
    #[error("{section}.base_ms: must be greater than 0")]
    ZeroBase {
        /// The backoff's section, e.g. `retry.rolling`.
        section: &'static str,
    },
    /// `max_ms` is below `base_ms`.
    #[error("{section}.max_ms: must be at least base_ms")]
    MaxBelowBase {
        /// The backoff's section.
        section: &'static str,
    },
    /// `factor` is below 1 or not finite.
    #[error("{section}.factor: must be a finite number >= 1.0")]
    Factor {
        /// The backoff's section.
        section: &'static str,
    },
    /// `decreasing_ms` is 0.
    #[error("retry.decreasing_ms: must be greater than 0")]
    ZeroDecreasing,
    /// `window_margin_ms` is above [`MAX_WINDOW_MARGIN_MS`].
    #[error(
        "retry.window_margin_ms: must be at most {MAX_WINDOW_MARGIN_MS} (one minute), got {got_ms}"
    )]
    WindowMargin {
        /// The margin asked for.
        got_ms: u64,
    },
}

impl Backoff {
    /// Checks that the parameters make sense; the error names the field under `section`.
    pub fn validate(&self, section: &'static str) -> Result<(), InvalidRetry> {
        if self.base_ms == 0 {
            return Err(InvalidRetry::ZeroBase { section });
        }
        if self.max_ms < self.base_ms {
            return Err(InvalidRetry::MaxBelowBase { section });
        }
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(InvalidRetry::Factor { section });
        }
        Ok(())
    }
}

/// Largest accepted [`RetryPolicy::window_margin_ms`].
const MAX_WINDOW_MARGIN_MS: u64 = 60_000;

impl RetryPolicy {
    /// How long one reservation on this key is held, in ms: the window plus the margin for
    /// rolling keys, the timeout for concurrency keys.
    pub fn hold_ms(&self, definition: &LimitDefinition) -> i64 {
        let hold = definition.hold_ms();
        match definition.kind {
            LimitKind::Rolling => {
                hold.saturating_add(i64::try_from(self.window_margin_ms).unwrap_or(i64::MAX))
            }
            LimitKind::Concurrency => hold,
        }
    }

    /// Random jitter in `0..=jitter_ms` for a key's kind.
    pub fn random_jitter_ms(&self, kind: LimitKind) -> u64 {
        match self.jitter_ms(kind) {
            0 => 0,
            cap => rand::rng().random_range(0..=cap),
        }
    }

    /// The hint of a denied key that knows when the amount fits: `wait_ms` plus jitter,
    /// never earlier than `wait_ms`.
    pub fn exact_hint_ms(&self, kind: LimitKind, wait_ms: u64) -> u64 {
        wait_ms.max(1).saturating_add(self.random_jitter_ms(kind))
    }

    /// The table hint of a concurrency key, never past the earliest hold's timeout
    /// (`earliest_release_ms` from now, when a hold is live): by then a slot is free for sure.
    pub fn concurrency_hint_ms(
        &self,
        definition: &LimitDefinition,
        streak: u32,
        earliest_release_ms: Option<u64>,
    ) -> u64 {
        let hint = self.hint_ms(definition, streak);
        match earliest_release_ms {
            Some(release) => hint.min(release.max(1)),
            None => hint,
        }
    }

    /// Checks every section.
    pub fn validate(&self) -> Result<(), InvalidRetry> {
        self.concurrency.validate("retry.concurrency")?;
        self.rolling.validate("retry.rolling")?;
        if self.decreasing_ms == 0 {
            return Err(InvalidRetry::ZeroDecreasing);
        }
        if self.window_margin_ms > MAX_WINDOW_MARGIN_MS {
            return Err(InvalidRetry::WindowMargin {
                got_ms: self.window_margin_ms,
            });
        }
        Ok(())
    }

    /// The hint without jitter for a key with the given deny streak.
    pub fn base_hint_ms(&self, definition: &LimitDefinition, streak: u32) -> u64 {
        let (base, cap, factor) = match definition.kind {
            LimitKind::Concurrency => {
                let b = self.concurrency;
                let timeout_cap = definition.timeout_seconds.saturating_mul(1000);
                (b.base_ms, b.max_ms.min(timeout_cap.max(1)), b.factor)
            }
            LimitKind::Rolling => {
                let b = self.rolling;
                let window_tenth = definition.window_seconds.saturating_mul(100);
                (b.base_ms.max(window_tenth), b.max_ms, b.factor)
            }
        };
        // factor^streak grows fast; the exponent is bounded so the float stays finite.
        let grown = base as f64 * factor.powi(streak.min(64) as i32);
        let grown = if grown.is_finite() && grown < u64::MAX as f64 {
            grown as u64
        } else {
            u64::MAX
        };
        // clamp(grown, base, cap); when base exceeds cap (a long window), the cap wins so a
        // client never waits longer than the configured maximum.
        grown.max(base).min(cap)
    }

    /// The jitter range for a key's kind.
    pub fn jitter_ms(&self, kind: LimitKind) -> u64 {
        match kind {
            LimitKind::Concurrency => self.concurrency.jitter_ms,
            LimitKind::Rolling => self.rolling.jitter_ms,
        }
    }

    /// The table hint with random jitter in `0..=jitter_ms` added (the fallback where the
    /// time capacity frees cannot be known).
    pub fn hint_ms(&self, definition: &LimitDefinition, streak: u32) -> u64 {
        self.base_hint_ms(definition, streak)
            .saturating_add(self.random_jitter_ms(definition.kind))
    }
}

/// A key's deny streak: grows by one on each denial, halves on each allow, never persisted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DenyStreak(u32);

impl DenyStreak {
    /// The current streak length.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Records a denial.
    pub fn on_deny(&mut self) {
        self.0 = self.0.saturating_add(1).min(64);
    }

    /// Records an allow.
    pub fn on_allow(&mut self) {
        self.0 /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::definition::Overage;
    use rstest::rstest;

    fn def(kind: LimitKind, window_seconds: u64, timeout_seconds: u64) -> LimitDefinition {
        LimitDefinition {
            key: "k".into(),
            kind,
            capacity: 1,
            window_seconds,
            timeout_seconds,
            unit: String::new(),
            description: String::new(),
            overage: Overage::Debt,
        }
    }

    #[rstest]
    #[case::rolling_short_window(def(LimitKind::Rolling, 1, 0), 0, 100)]
    #[case::rolling_window_tenth(def(LimitKind::Rolling, 60, 0), 0, 5000)]
    #[case::rolling_grows(def(LimitKind::Rolling, 1, 0), 2, 225)]
    #[case::rolling_capped(def(LimitKind::Rolling, 1, 0), 30, 5000)]
    #[case::rolling_long_window_capped(def(LimitKind::Rolling, 86_400, 0), 0, 5000)]
    #[case::concurrency_base(def(LimitKind::Concurrency, 0, 30), 0, 50)]
    #[case::concurrency_grows(def(LimitKind::Concurrency, 0, 30), 3, 400)]
    #[case::concurrency_capped(def(LimitKind::Concurrency, 0, 30), 20, 2000)]
    #[case::concurrency_timeout_cap(def(LimitKind::Concurrency, 0, 1), 20, 1000)]
    #[case::huge_streak(def(LimitKind::Concurrency, 0, 30), u32::MAX, 2000)]
    fn base_hint_follows_the_table(
        #[case] definition: LimitDefinition,
        #[case] streak: u32,
        #[case] expected: u64,
    ) {
        let policy = RetryPolicy::default();
        assert_eq!(policy.base_hint_ms(&definition, streak), expected);
    }

    #[test]
    fn jitter_stays_in_range() {
        let policy = RetryPolicy::default();
        let d = def(LimitKind::Concurrency, 0, 30);
        for _ in 0..200 {
            let hint = policy.hint_ms(&d, 0);
            assert!((50..=75).contains(&hint), "{hint}");
        }
    }

    #[test]
    fn exact_hints_add_jitter_and_are_never_early() {
        let policy = RetryPolicy::default();
        for _ in 0..200 {
            let hint = policy.exact_hint_ms(LimitKind::Rolling, 1234);
            assert!((1234..=1284).contains(&hint), "{hint}");
        }
        assert!(policy.exact_hint_ms(LimitKind::Rolling, 0) >= 1);
    }

    #[test]
    fn concurrency_hints_stop_at_the_earliest_timeout() {
        let policy = RetryPolicy::default();
        let d = def(LimitKind::Concurrency, 0, 30);
        assert_eq!(policy.concurrency_hint_ms(&d, 20, Some(300)), 300);
        let hint = policy.concurrency_hint_ms(&d, 0, Some(10_000));
        assert!((50..=75).contains(&hint), "{hint}");
        assert_eq!(policy.concurrency_hint_ms(&d, 20, Some(0)), 1);
    }

    #[test]
    fn rolling_holds_last_window_plus_margin() {
        let policy = RetryPolicy {
            window_margin_ms: 40,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.hold_ms(&def(LimitKind::Rolling, 10, 0)), 10_040);
        assert_eq!(policy.hold_ms(&def(LimitKind::Concurrency, 0, 30)), 30_000);
        let mut too_long = policy;
        too_long.window_margin_ms = 60_001;
        assert_eq!(
            too_long.validate(),
            Err(InvalidRetry::WindowMargin { got_ms: 60_001 })
        );
    }

    #[test]
    fn streak_grows_and_decays() {
        let mut streak = DenyStreak::default();
        for _ in 0..5 {
            streak.on_deny();
        }
        assert_eq!(streak.get(), 5);
        streak.on_allow();
        assert_eq!(streak.get(), 2);
        for _ in 0..100 {
            streak.on_deny();
        }
        assert_eq!(streak.get(), 64);
    }

    #[test]
    fn policy_validation_names_the_field() {
        let mut policy = RetryPolicy::default();
        policy.validate().unwrap();
        policy.rolling.factor = 0.5;
        assert_eq!(
            policy.validate().unwrap_err().to_string(),
            "retry.rolling.factor: must be a finite number >= 1.0"
        );
        let mut policy = RetryPolicy::default();
        policy.concurrency.max_ms = 1;
        assert_eq!(
            policy.validate().unwrap_err(),
            InvalidRetry::MaxBelowBase {
                section: "retry.concurrency"
            }
        );
        assert!(policy
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("retry.concurrency.max_ms"));
    }
}
