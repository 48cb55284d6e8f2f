//! Limit definitions, their persisted state and their live usage (SPEC §2).

use serde::{Deserialize, Serialize};

use super::errors::InvalidRequest;

/// How a limit counts: capacity per time window, or calls in flight.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Capacity per window (RPM, TPM, daily tokens); a reservation holds until its window ends.
    Rolling,
    /// Calls in flight; a hold ends on `complete` or after `timeout_seconds`.
    Concurrency,
}

/// What happens to usage above what was reserved.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overage {
    /// Overage that does not fit is dropped (not recorded).
    Deny,
    /// Overage that does not fit is recorded as debt for reporting.
    #[default]
    Debt,
}

/// One limit as an operator defines it.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitDefinition {
    /// The limit key, e.g. `global:llm:openai:gpt-4o:tpm`: not blank, at most 512 bytes, no
    /// control characters.
    #[cfg_attr(
        feature = "server",
        schema(min_length = 1, example = "global:llm:openai:gpt-4o:tpm")
    )]
    pub key: String,
    /// Rolling window or concurrency.
    pub kind: LimitKind,
    /// Units per window, or calls in flight; always > 0.
    #[cfg_attr(feature = "server", schema(minimum = 1, example = 30000))]
    pub capacity: u64,
    /// Window length for rolling limits (1 s to one year); 0 or absent for concurrency.
    #[serde(default)]
    pub window_seconds: u64,
    /// Hold timeout for concurrency limits (1 s to one year); 0 or absent for rolling.
    #[serde(default)]
    pub timeout_seconds: u64,
    /// Free text naming the unit (`requests`, `tokens`).
    #[serde(default)]
    pub unit: String,
    /// Free text for operators.
    #[serde(default)]
    pub description: String,
    /// What happens to usage above the reservation.
    #[serde(default)]
    pub overage: Overage,
}

/// Longest key accepted; keys are stored, logged and hashed, so they are bounded.
pub const MAX_KEY_BYTES: usize = 512;
/// Longest window or timeout accepted: one year, which keeps every millisecond sum far from overflow.
pub const MAX_DURATION_SECONDS: u64 = 366 * 24 * 3600;

impl LimitDefinition {
    /// A rolling limit of `capacity` per `window_seconds`, with debt overage and no unit or
    /// description (set the fields for more).
    pub fn rolling(key: impl Into<String>, capacity: u64, window_seconds: u64) -> Self {
        LimitDefinition {
            key: key.into(),
            kind: LimitKind::Rolling,
            capacity,
            window_seconds,
            timeout_seconds: 0,
            unit: String::new(),
            description: String::new(),
            overage: Overage::Debt,
        }
    }

    /// A concurrency limit of `capacity` calls in flight, each held at most
    /// `timeout_seconds`.
    pub fn concurrency(key: impl Into<String>, capacity: u64, timeout_seconds: u64) -> Self {
        LimitDefinition {
            kind: LimitKind::Concurrency,
            window_seconds: 0,
            timeout_seconds,
            ..LimitDefinition::rolling(key, capacity, 0)
        }
    }

    /// A limit of either kind, `seconds` being its window (rolling) or timeout (concurrency).
    pub fn of_kind(key: impl Into<String>, kind: LimitKind, capacity: u64, seconds: u64) -> Self {
        match kind {
            LimitKind::Rolling => LimitDefinition::rolling(key, capacity, seconds),
            LimitKind::Concurrency => LimitDefinition::concurrency(key, capacity, seconds),
        }
    }

    /// Checks every rule of SPEC §2; the error names the field.
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        validate_key(&self.key)?;
        if self.capacity == 0 {
            return Err(InvalidRequest::new(format!(
                "capacity: must be greater than 0 (key {})",
                self.key
            )));
        }
        match self.kind {
            LimitKind::Rolling => {
                if self.window_seconds == 0 {
                    return Err(InvalidRequest::new(format!(
                        "window_seconds: must be greater than 0 for a rolling limit (key {})",
                        self.key
                    )));
                }
                if self.timeout_seconds != 0 {
                    return Err(InvalidRequest::new(format!(
                        "timeout_seconds: must be 0 or absent for a rolling limit (key {})",
                        self.key
                    )));
                }
            }
            LimitKind::Concurrency => {
                if self.timeout_seconds == 0 {
                    return Err(InvalidRequest::new(format!(
                        "timeout_seconds: must be greater than 0 for a concurrency limit (key {})",
                        self.key
                    )));
                }
                if self.window_seconds != 0 {
                    return Err(InvalidRequest::new(format!(
                        "window_seconds: must be 0 or absent for a concurrency limit (key {})",
                        self.key
                    )));
                }
            }
        }
        let duration = self.window_seconds.max(self.timeout_seconds);
        if duration > MAX_DURATION_SECONDS {
            return Err(InvalidRequest::new(format!(
                "{}: must be at most {MAX_DURATION_SECONDS} (key {})",
                self.duration_field(),
                self.key
            )));
        }
        Ok(())
    }

    /// How long one reservation on this key lives, in milliseconds: the window for rolling
    /// limits, the timeout for concurrency limits.
    pub fn hold_ms(&self) -> i64 {
        let seconds = match self.kind {
            LimitKind::Rolling => self.window_seconds,
            LimitKind::Concurrency => self.timeout_seconds,
        };
        i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    fn duration_field(&self) -> &'static str {
        match self.kind {
            LimitKind::Rolling => "window_seconds",
            LimitKind::Concurrency => "timeout_seconds",
        }
    }
}

/// Checks a limit key: non-empty, bounded, no control characters.
pub fn validate_key(key: &str) -> Result<(), InvalidRequest> {
    if key.len() > MAX_KEY_BYTES {
        return Err(InvalidRequest::new(format!(
            "key: must be at most {MAX_KEY_BYTES} bytes (got {})",
            key.len()
        )));
    }
    // Every key is checked on every request. The common key, printable ASCII only, is
    // recognised eight bytes at a time; any other is checked byte by byte, and only one
    // with non-ASCII text is decoded again.
    if is_printable_ascii(key.as_bytes()) && key.bytes().any(|b| b != b' ') {
        return Ok(());
    }
    let (mut ascii_control, mut non_ascii, mut visible) = (false, false, false);
    for b in key.bytes() {
        ascii_control |= b.is_ascii_control();
        non_ascii |= !b.is_ascii();
        visible |= !b.is_ascii_whitespace();
    }
    if non_ascii {
        visible = !key.trim().is_empty();
    }
    if !visible {
        return Err(InvalidRequest::new("key: must not be empty"));
    }
    if ascii_control || (non_ascii && key.chars().any(char::is_control)) {
        return Err(InvalidRequest::new(format!(
            "key: must not contain control characters ({key:?})"
        )));
    }
    Ok(())
}

/// Whether every byte is printable ASCII (space to `~`), eight bytes at a time: a word has
/// a byte below space if subtracting 0x20 from every byte borrows into a byte's top bit
/// that was clear, and one above `~` (or not ASCII) if adding 1 to every byte sets a top bit.
/// The last bytes are checked as the last whole word (overlapping the one before), so only
/// a key shorter than a word is checked byte by byte.
fn is_printable_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const TOPS: u64 = u64::from_ne_bytes([0x80; 8]);
    let outside = |word: &[u8; 8]| {
        let word = u64::from_ne_bytes(*word);
        let below_space = word.wrapping_sub(ONES * 0x20) & !word;
        let above_tilde = word.wrapping_add(ONES) | word;
        (below_space | above_tilde) & TOPS != 0
    };
    let Some(last) = bytes.last_chunk::<8>() else {
        return bytes.iter().all(|&b| b.wrapping_sub(b' ') <= b'~' - b' ');
    };
    let mut rest = bytes;
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        if outside(word) {
            return false;
        }
        rest = tail;
    }
    !outside(last)
}

/// Whether a key takes reservations or waits for a capacity decrease to apply.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitStatus {
    /// Reserves are served.
    #[default]
    Active,
    /// A decrease is pending; reserves on the key are denied until it applies.
    Decreasing,
}

/// A definition plus its control-plane status; the registry file is an array of these.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitState {
    /// The definition; while decreasing, `capacity` is still the capacity in force.
    pub definition: LimitDefinition,
    /// Active or decreasing.
    #[serde(default)]
    pub status: LimitStatus,
    /// The capacity a pending decrease goes to; 0 unless decreasing.
    #[serde(default)]
    pub pending_decrease_to: u64,
}

impl LimitState {
    /// A new active state for a definition.
    pub fn active(definition: LimitDefinition) -> Self {
        LimitState {
            definition,
            status: LimitStatus::Active,
            pending_decrease_to: 0,
        }
    }

    /// Checks the definition and that status and `pending_decrease_to` agree.
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        self.definition.validate()?;
        let key = &self.definition.key;
        match self.status {
            LimitStatus::Active if self.pending_decrease_to != 0 => Err(InvalidRequest::new(
                format!("pending_decrease_to: must be 0 while active (key {key})"),
            )),
            LimitStatus::Decreasing
                if self.pending_decrease_to == 0
                    || self.pending_decrease_to >= self.definition.capacity =>
            {
                Err(InvalidRequest::new(format!(
                    "pending_decrease_to: must be between 1 and capacity-1 while decreasing (key {key})"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The state after an operator PUTs `new` over this one (SPEC §4 "Capacity changes"):
    /// an increase or equal capacity applies at once (cancelling any pending decrease); a
    /// decrease keeps the capacity in force and records the target. Changing the kind is an error.
    pub fn updated_with(&self, new: LimitDefinition) -> Result<LimitState, InvalidRequest> {
        if new.kind != self.definition.kind {
            return Err(InvalidRequest::new(format!(
                "kind: cannot change the kind of existing key {} from {:?} to {:?}",
                new.key, self.definition.kind, new.kind
            )));
        }
        let in_force = self.definition.capacity;
        if new.capacity >= in_force {
            return Ok(LimitState::active(new));
        }
        let target = new.capacity;
        Ok(LimitState {
            definition: LimitDefinition {
                capacity: in_force,
                ..new
            },
            status: LimitStatus::Decreasing,
            pending_decrease_to: target,
        })
    }

    /// The state once the pending decrease has been applied.
    pub fn decrease_applied(&self) -> LimitState {
        let mut definition = self.definition.clone();
        if self.status == LimitStatus::Decreasing {
            definition.capacity = self.pending_decrease_to;
        }
        LimitState::active(definition)
    }
}

/// Live usage of one key.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Capacity held by live reservations or holds.
    pub in_use: u64,
    /// Capacity in force minus `in_use`.
    pub available: u64,
    /// Overage recorded as debt (accounting only).
    pub debt: u64,
}

/// A limit's state plus its live usage, as the admin API returns it.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitInfo {
    /// The persisted state.
    #[serde(flatten)]
    pub state: LimitState,
    /// Live usage.
    pub usage: Usage,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    proptest::proptest! {
        /// Word at a time, as byte by byte: printable text with, at times, one byte of any
        /// value (often one just outside the printable range) anywhere in it.
        #[test]
        fn printable_ascii_is_found_as_byte_by_byte(
            mut bytes in proptest::collection::vec(0x20u8..=0x7E, 0..40),
            other in proptest::option::of((
                proptest::num::usize::ANY,
                proptest::prop_oneof![
                    proptest::sample::select(vec![0x00u8, 0x1F, 0x20, 0x7E, 0x7F, 0x80, 0xFF]),
                    proptest::num::u8::ANY,
                ],
            )),
        ) {
            if let (Some((at, byte)), false) = (other, bytes.is_empty()) {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            let byte_by_byte = bytes.iter().all(|b| (0x20..=0x7E).contains(b));
            proptest::prop_assert_eq!(is_printable_ascii(&bytes), byte_by_byte);
        }
    }

    fn rolling(capacity: u64) -> LimitDefinition {
        LimitDefinition {
            key: "k".into(),
            kind: LimitKind::Rolling,
            capacity,
            window_seconds: 60,
            timeout_seconds: 0,
            unit: "requests".into(),
            description: String::new(),
            overage: Overage::Debt,
        }
    }

    #[rstest]
    #[case::empty_key(LimitDefinition { key: " ".into(), ..rolling(1) }, "key")]
    #[case::zero_capacity(rolling(0), "capacity")]
    #[case::no_window(LimitDefinition { window_seconds: 0, ..rolling(1) }, "window_seconds")]
    #[case::rolling_timeout(LimitDefinition { timeout_seconds: 5, ..rolling(1) }, "timeout_seconds")]
    #[case::concurrency_no_timeout(LimitDefinition { kind: LimitKind::Concurrency, window_seconds: 0, ..rolling(1) }, "timeout_seconds")]
    #[case::concurrency_window(LimitDefinition { kind: LimitKind::Concurrency, timeout_seconds: 5, ..rolling(1) }, "window_seconds")]
    #[case::huge_window(LimitDefinition { window_seconds: u64::MAX, ..rolling(1) }, "window_seconds")]
    #[case::control_char(LimitDefinition { key: "a\nb".into(), ..rolling(1) }, "key")]
    fn invalid_definitions_name_the_field(#[case] def: LimitDefinition, #[case] field: &str) {
        let err = def.validate().unwrap_err();
        assert!(err.0.starts_with(field), "{err} should name {field}");
    }

    #[test]
    fn valid_definition_passes_and_defaults_apply() {
        let json = r#"{"key":"k","kind":"rolling","capacity":5,"window_seconds":60}"#;
        let def: LimitDefinition = serde_json::from_str(json).unwrap();
        assert_eq!(def.overage, Overage::Debt);
        def.validate().unwrap();
        assert_eq!(def.hold_ms(), 60_000);
    }

    #[test]
    fn constructors_build_valid_definitions_of_each_kind() {
        let r = LimitDefinition::rolling("r", 5, 60);
        assert_eq!(
            (r.kind, r.window_seconds, r.timeout_seconds),
            (LimitKind::Rolling, 60, 0)
        );
        let c = LimitDefinition::concurrency("c", 2, 30);
        assert_eq!(
            (c.kind, c.window_seconds, c.timeout_seconds),
            (LimitKind::Concurrency, 0, 30)
        );
        assert_eq!(
            LimitDefinition::of_kind("c", LimitKind::Concurrency, 2, 30),
            c
        );
        assert_eq!(LimitDefinition::of_kind("r", LimitKind::Rolling, 5, 60), r);
        r.validate().unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let json = r#"{"key":"k","kind":"rolling","capacity":5,"window_seconds":60,"capacty":1}"#;
        assert!(serde_json::from_str::<LimitDefinition>(json).is_err());
    }

    #[test]
    fn increase_is_immediate_and_cancels_decrease() {
        let state = LimitState::active(rolling(100));
        let decreasing = state.updated_with(rolling(60)).unwrap();
        assert_eq!(decreasing.status, LimitStatus::Decreasing);
        assert_eq!(decreasing.definition.capacity, 100);
        assert_eq!(decreasing.pending_decrease_to, 60);
        decreasing.validate().unwrap();

        let replaced = decreasing.updated_with(rolling(50)).unwrap();
        assert_eq!(replaced.pending_decrease_to, 50);
        assert_eq!(replaced.definition.capacity, 100);

        let cancelled = decreasing.updated_with(rolling(100)).unwrap();
        assert_eq!(cancelled, LimitState::active(rolling(100)));

        let applied = replaced.decrease_applied();
        assert_eq!(applied, LimitState::active(rolling(50)));
    }

    #[test]
    fn kind_change_is_rejected() {
        let state = LimitState::active(rolling(100));
        let concurrency = LimitDefinition {
            kind: LimitKind::Concurrency,
            window_seconds: 0,
            timeout_seconds: 30,
            ..rolling(1)
        };
        assert!(state
            .updated_with(concurrency)
            .unwrap_err()
            .0
            .starts_with("kind"));
    }

    #[test]
    fn inconsistent_state_is_rejected() {
        let mut state = LimitState::active(rolling(100));
        state.pending_decrease_to = 5;
        assert!(state.validate().is_err());
        state.status = LimitStatus::Decreasing;
        state.validate().unwrap();
        state.pending_decrease_to = 100;
        assert!(state.validate().is_err());
    }

    #[test]
    fn limit_info_flattens_state() {
        let info = LimitInfo {
            state: LimitState::active(rolling(3)),
            usage: Usage {
                in_use: 1,
                available: 2,
                debt: 0,
            },
        };
        let value = serde_json::to_value(&info).unwrap();
        assert_eq!(value["status"], "active");
        assert_eq!(value["definition"]["capacity"], 3);
        assert_eq!(value["usage"]["available"], 2);
    }

    #[rstest]
    #[case::plain("global:llm:openai:gpt-4o:tpm", true)]
    #[case::inner_space("tenant acme", true)]
    #[case::edges_of_printable_ascii("!~", true)]
    #[case::non_ascii("clé:é", true)]
    #[case::spaces_only("   ", false)]
    #[case::non_ascii_space_only("\u{3000}", false)]
    #[case::tab("a\tb", false)]
    #[case::delete("a\u{7f}", false)]
    #[case::c1_control("a\u{85}b", false)]
    fn keys_are_checked_byte_by_byte_whatever_path_they_take(
        #[case] key: &str,
        #[case] valid: bool,
    ) {
        assert_eq!(validate_key(key).is_ok(), valid, "{key:?}");
    }
}
