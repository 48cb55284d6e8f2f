//! Validated commands: a reserve or a complete with its lease id parsed, checked by every
//! rule of SPEC §3.
//!
//! The wire types become commands by `validate` ([`ReserveRequest::validate`]). A program
//! that holds its lease ids as [`LeaseId`]s builds commands directly and hands them to
//! [`LimiterService::reserve_command`], which checks them by the same rules: no text form of
//! the id is made and parsed again.
//!
//! [`ReserveRequest::validate`]: super::ReserveRequest::validate
//! [`LimiterService::reserve_command`]: crate::service::LimiterService::reserve_command

use super::api::{MAX_ACTUALS, MAX_JOB_ID_BYTES};
use super::definition::validate_key;
use super::errors::InvalidRequest;
use super::{Actual, LeaseId, Requirement, MAX_REQUIREMENTS};

/// A reserve with its lease id parsed: checked when made by [`ReserveRequest::validate`],
/// and again when given to the service as it is (by the rules of [`ReserveCommand::check`];
/// the service checks the text of a key it does not find defined, a defined key's being
/// known valid).
///
/// [`ReserveRequest::validate`]: super::ReserveRequest::validate
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveCommand {
    /// The parsed lease id.
    pub lease: LeaseId,
    /// Optional job id, for logs.
    pub job_id: Option<String>,
    /// 1..=32 requirements with distinct keys and amounts ≥ 1.
    pub requirements: Vec<Requirement>,
}

/// A complete with its lease id parsed, checked like a [`ReserveCommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteCommand {
    /// The parsed lease id.
    pub lease: LeaseId,
    /// Optional job id, for logs.
    pub job_id: Option<String>,
    /// Actuals with distinct keys.
    pub actuals: Vec<Actual>,
}

impl ReserveCommand {
    /// A reserve of `requirements` for `lease`, with no job id; checked when it is used.
    pub fn new(lease: LeaseId, requirements: Vec<Requirement>) -> Self {
        ReserveCommand {
            lease,
            job_id: None,
            requirements,
        }
    }

    /// Checks every rule of SPEC §3 that does not concern the lease id's text: the job id's
    /// length, 1..=32 requirements with distinct valid keys, amounts of at least 1.
    pub fn check(&self) -> Result<(), InvalidRequest> {
        self.check_with(KeyText::Checked)
    }

    /// [`ReserveCommand::check`] but for the text of each key, which the caller checks
    /// itself for the keys it does not find defined (a defined key's text is known valid).
    pub(crate) fn check_but_key_text(&self) -> Result<(), InvalidRequest> {
        self.check_with(KeyText::LeftToCaller)
    }

    fn check_with(&self, key_text: KeyText) -> Result<(), InvalidRequest> {
        check_job_id(&self.job_id)?;
        let count = self.requirements.len();
        if count == 0 || count > MAX_REQUIREMENTS {
            return Err(InvalidRequest::new(format!(
                "requirements: must hold 1 to {MAX_REQUIREMENTS} items (got {count})"
            )));
        }
        check_keys("requirements", &self.requirements, |r| &r.key, key_text)?;
        if let Some(index) = self.requirements.iter().position(|r| r.amount == 0) {
            return Err(InvalidRequest::new(format!(
                "requirements[{index}].amount: must be at least 1"
            )));
        }
        Ok(())
    }
}

impl CompleteCommand {
    /// A complete of `lease` with `actuals`, with no job id; checked when it is used.
    pub fn new(lease: LeaseId, actuals: Vec<Actual>) -> Self {
        CompleteCommand {
            lease,
            job_id: None,
            actuals,
        }
    }

    /// Checks every rule of SPEC §3 that does not concern the lease id's text: the job id's
    /// length, at most 32 actuals with distinct valid keys.
    pub fn check(&self) -> Result<(), InvalidRequest> {
        check_job_id(&self.job_id)?;
        if self.actuals.len() > MAX_ACTUALS {
            return Err(InvalidRequest::new(format!(
                "actuals: must hold at most {MAX_ACTUALS} items (got {})",
                self.actuals.len()
            )));
        }
        check_keys("actuals", &self.actuals, |a| &a.key, KeyText::Checked)
    }
}

fn check_job_id(job_id: &Option<String>) -> Result<(), InvalidRequest> {
    match job_id {
        Some(id) if id.len() > MAX_JOB_ID_BYTES => Err(InvalidRequest::new(format!(
            "job_id: must be at most {MAX_JOB_ID_BYTES} bytes"
        ))),
        _ => Ok(()),
    }
}

/// The text of the key of item `index` of `field` (SPEC §3: bounded, no control characters).
pub(crate) fn check_key_text(field: &str, index: usize, key: &str) -> Result<(), InvalidRequest> {
    validate_key(key).map_err(|e| InvalidRequest::new(format!("{field}[{index}].{e}")))
}

/// Whether [`check_keys`] checks each key's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyText {
    Checked,
    /// The caller checks it (for the keys it does not find defined).
    LeftToCaller,
}

/// Every key of `items` named once, and valid unless its text is left to the caller (at
/// most a few dozen items: compared pairwise, nothing allocated).
fn check_keys<T>(
    field: &str,
    items: &[T],
    key_of: impl Fn(&T) -> &str,
    key_text: KeyText,
) -> Result<(), InvalidRequest> {
    for (index, item) in items.iter().enumerate() {
        let key = key_of(item);
        if key_text == KeyText::Checked {
            check_key_text(field, index, key)?;
        }
        if items[..index].iter().any(|earlier| key_of(earlier) == key) {
            return Err(InvalidRequest::new(format!(
                "{field}[{index}].key: {key:?} appears more than once"
            )));
        }
    }
    Ok(())
}
