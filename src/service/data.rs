//! The data plane of the [`LimiterService`]: reserve and complete, one at a time or in
//! batches, from wire requests or from commands whose lease id is already parsed.

use futures::future::join_all;
use log::warn;

use super::LimiterService;
use crate::backend::{Backend, BackendError, Fault, ReserveOutcome};
use crate::model::command::check_key_text;
use crate::model::{
    CompleteCommand, CompleteRequest, CompleteResponse, ErrorCode, InvalidRequest, LeaseTableFull,
    LimitStatus, ReserveCommand, ReserveRequest, ReserveResponse,
};

impl LimiterService {
    /// Checks key status in the order of SPEC §4 and §9: any key decreasing first, then any
    /// unknown, then any requirement larger than its key's capacity in force (it can never
    /// fit, so it is refused at once with no hint and nothing taken).
    ///
    /// A key not found defined has its text checked here (a defined key's text is known
    /// valid): `Err` for one that breaks the rules, which changes nothing.
    fn status_denial(
        &self,
        request: &ReserveCommand,
    ) -> Result<Option<ReserveResponse>, InvalidRequest> {
        // One lookup per requirement, noting the first key of each kind of denial; the
        // kinds are then answered in their order.
        let (mut decreasing, mut unknown, mut too_large) = (None, None, None);
        {
            let states = self.read_states();
            for (index, r) in request.requirements.iter().enumerate() {
                match states.get(r.key.as_ref()) {
                    None => {
                        check_key_text("requirements", index, &r.key)?;
                        unknown = unknown.or(Some(r));
                    }
                    Some(s) if s.status == LimitStatus::Decreasing => {
                        decreasing = decreasing.or(Some(r));
                    }
                    Some(s) if r.amount > s.definition.capacity => {
                        too_large = too_large.or(Some(r));
                    }
                    Some(_) => {}
                }
            }
        }
        if let Some(r) = decreasing {
            return Ok(Some(ReserveResponse::error(
                ErrorCode::LimitDecreasing(r.key.to_string()),
                self.settings.retry.decreasing_ms,
            )));
        }
        if let Some(r) = unknown {
            return Ok(Some(ReserveResponse::error(
                ErrorCode::UnknownLimitKey(r.key.to_string()),
                0,
            )));
        }
        Ok(too_large
            .map(|r| ReserveResponse::error(ErrorCode::ExceedsCapacity(r.key.to_string()), 0)))
    }

    /// Reserves; `Err` only for a request that breaks a rule of the API.
    pub async fn reserve(
        &self,
        request: impl Into<ReserveRequest>,
    ) -> Result<ReserveResponse, InvalidRequest> {
        self.reserve_checked(request.into().validate()?).await
    }

    /// Reserves as [`LimiterService::reserve`] does, for a program that holds its lease id
    /// as a [`crate::model::LeaseId`]: the command is checked by the same rules, and no text
    /// form of the id is made and parsed.
    pub async fn reserve_command(
        &self,
        command: ReserveCommand,
    ) -> Result<ReserveResponse, InvalidRequest> {
        // The text of the keys found defined is known valid: only the others' is checked,
        // with the keys' status.
        command.check_but_key_text()?;
        self.reserve_checked(command).await
    }

    /// Reserves a command checked but for the text of its keys not defined.
    async fn reserve_checked(
        &self,
        command: ReserveCommand,
    ) -> Result<ReserveResponse, InvalidRequest> {
        if let Some(denial) = self.status_denial(&command)? {
            return Ok(denial);
        }
        let lease = command.lease;
        Ok(match self.backend.start_reserve(command).finish().await {
            Ok(ReserveOutcome::Allowed { reserved_at_ms }) => {
                ReserveResponse::allowed(reserved_at_ms)
            }
            Ok(ReserveOutcome::Denied { retry_after_ms }) => {
                ReserveResponse::denied(retry_after_ms)
            }
            Err(BackendError::LeaseTableFull(full)) => {
                self.log_lease_table_full(&full);
                ReserveResponse::error(ErrorCode::BackendError, 0)
            }
            Err(e) => {
                log_backend_error("reserve", lease, &e);
                ReserveResponse::error(ErrorCode::BackendError, 0)
            }
        })
    }

    /// Logs a refusal by a full lease table, at most once a minute.
    fn log_lease_table_full(&self, full: &LeaseTableFull) {
        if let Some(held_back) = self.log_due(&self.full_log) {
            warn!(
                "reserve refused with backend_error, nothing taken: {full} ({held_back} more \
                 refusal(s) since the last warning; this warning repeats at most once a minute)"
            );
        }
    }

    /// Completes; `Err` only for a request that breaks a rule of the API.
    pub async fn complete(
        &self,
        request: impl Into<CompleteRequest>,
    ) -> Result<CompleteResponse, InvalidRequest> {
        Ok(self.complete_checked(request.into().validate()?).await)
    }

    /// Completes as [`LimiterService::complete`] does, for a program that holds its lease
    /// id as a [`crate::model::LeaseId`] (see [`LimiterService::reserve_command`]).
    pub async fn complete_command(
        &self,
        command: CompleteCommand,
    ) -> Result<CompleteResponse, InvalidRequest> {
        command.check()?;
        Ok(self.complete_checked(command).await)
    }

    async fn complete_checked(&self, command: CompleteCommand) -> CompleteResponse {
        let lease = command.lease;
        let again = self.shared.is_some().then(|| command.clone());
        let mut result = self.backend.start_complete(command).finish().await;
        if let (Some(command), Err(BackendError::Failed(Fault::LeaseOnUnknownAccount { .. }))) =
            (again, &result)
        {
            // Reserved on another instance under a key defined there since the last control
            // tick: learn the definitions now, then complete (the refusal changed nothing).
            self.follow_shared().await;
            result = self.backend.complete(command).await;
        }
        match result {
            Ok(()) => CompleteResponse::ok(),
            Err(e) => {
                log_backend_error("complete", lease, &e);
                CompleteResponse::error(ErrorCode::BackendError)
            }
        }
    }

    /// Reserves every item; an invalid item gets its own `invalid_request` answer. Items are
    /// handed to the backend in array order.
    pub async fn reserve_batch<R: Into<ReserveRequest>>(
        &self,
        requests: impl IntoIterator<Item = R>,
    ) -> Vec<ReserveResponse> {
        join_all(requests.into_iter().map(|r| async move {
            self.reserve(r)
                .await
                .unwrap_or_else(|_| ReserveResponse::error(ErrorCode::InvalidRequest, 0))
        }))
        .await
    }

    /// Completes every item; an invalid item gets its own `invalid_request` answer.
    pub async fn complete_batch<R: Into<CompleteRequest>>(
        &self,
        requests: impl IntoIterator<Item = R>,
    ) -> Vec<CompleteResponse> {
        join_all(requests.into_iter().map(|r| async move {
            self.complete(r)
                .await
                .unwrap_or_else(|_| CompleteResponse::error(ErrorCode::InvalidRequest))
        }))
        .await
    }
}

/// One line per failed call, except while the backend is known to be down: those answers
/// are counted and logged at most once a second by the [`OutageGuard`].
fn log_backend_error(what: &str, lease: crate::model::LeaseId, error: &BackendError) {
    if !matches!(error, BackendError::Down(_)) {
        warn!("{what} {lease}: {error}");
    }
}
