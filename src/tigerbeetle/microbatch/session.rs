//! The TigerBeetle client's lifecycle inside the actor.
//!
//! - The client is created lazily and KEPT across timeouts: it reconnects by itself, and its
//!   session survives a server restart. Its first call registers the session (about 0.6 s
//!   measured), so that call gets [`FIRST_CALL_ALLOWANCE`] on top of the request bound.
//! - While the client keeps timing out, its internal retry backs off (up to 10 s in
//!   TigerBeetle 0.16), which would delay recovery long after the cluster is back. So after
//!   a timeout the actor also tries a fresh *candidate* client with a cheap lookup; the first
//!   candidate that gets an answer replaces the failing client (which is dropped, cancelling
//!   whatever it still held). Candidates are tried one at a time, back to back, only while
//!   the current client is failing, so a healthy actor never opens extra sessions.
//! - An evicted or shut-down session is dropped and the next call starts a new client.
//! - Dropping a client joins its IO thread, so the last reference is dropped on a blocking
//!   thread, never on the actor's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{info, warn};
use tigerbeetle_unofficial::error::{SendError, SendErrorKind};
use tigerbeetle_unofficial::Client;

use super::MicrobatchActor;
use crate::backend::{BackendError, Fault, Outage};

/// Extra time for a new client's first call, which registers its session (~0.6 s measured).
pub const FIRST_CALL_ALLOWANCE: Duration = Duration::from_secs(2);

/// Age past which a probe replaces the fresh client being tried by a newer one: the
/// client's reconnect delay grows while the cluster is away, so a young client connects
/// soonest once it is back.
pub const CANDIDATE_REFRESH: Duration = Duration::from_millis(750);

/// An account id no limit uses; candidates look it up to prove the cluster answers.
pub(super) const PROBE_ACCOUNT_ID: u128 = 1;

/// The client in use and its health.
#[derive(Default)]
pub(super) struct Connection {
    client: Option<Arc<Client>>,
    /// Whether the current client has had an answer (its session is registered).
    registered: bool,
    /// Since when the current client has been timing out; `None` while it answers.
    failing_since: Option<Instant>,
    /// A fresh client being tried while the current one fails.
    candidate: Option<Arc<Client>>,
    /// When the candidate was created.
    candidate_since: Option<Instant>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("connected", &self.client.is_some())
            .field("registered", &self.registered)
            .field("failing_since", &self.failing_since)
            .field("candidate", &self.candidate.is_some())
            .finish()
    }
}

fn same(slot: &Option<Arc<Client>>, client: &Arc<Client>) -> bool {
    slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, client))
}

/// Drops a client reference; if it is the last one, on a blocking thread.
pub(super) fn drop_client(client: Arc<Client>) {
    if Arc::strong_count(&client) == 1 {
        tokio::task::spawn_blocking(move || drop(client));
    }
}

impl MicrobatchActor {
    pub(super) fn new_client(&self) -> Result<Arc<Client>, BackendError> {
        Client::new(self.config.cluster, self.config.addresses.as_str())
            .map(Arc::new)
            .map_err(|e| {
                Fault::Client {
                    addresses: self.config.addresses.clone(),
                    reason: e.to_string(),
                }
                .into()
            })
    }

    /// The current client, created if there is none.
    pub(super) fn client(&mut self) -> Result<Arc<Client>, BackendError> {
        if let Some(client) = &self.conn.client {
            return Ok(Arc::clone(client));
        }
        let client = self.new_client()?;
        self.conn = Connection {
            client: Some(Arc::clone(&client)),
            ..Connection::default()
        };
        Ok(client)
    }

    /// Whether there is a current client.
    pub(super) fn has_client(&self) -> bool {
        self.conn.client.is_some()
    }

    /// Whether the current client answers: registered and not timing out.
    pub(super) fn healthy(&self) -> bool {
        self.conn.client.is_some() && self.conn.registered && self.conn.failing_since.is_none()
    }

    /// The bound on a call by the current client.
    pub(super) fn call_timeout(&self) -> Duration {
        let bound = self.config.request_timeout();
        if self.conn.registered {
            bound
        } else {
            bound + FIRST_CALL_ALLOWANCE
        }
    }

    /// `used` got an answer from the cluster.
    pub(super) fn answered(&mut self, used: &Arc<Client>) {
        if same(&self.conn.client, used) {
            self.conn.registered = true;
            self.conn.failing_since = None;
        }
    }

    /// A call by `used` timed out: remember since when, and try a fresh client alongside.
    pub(super) fn timed_out(&mut self, used: &Arc<Client>, ctx: &mut Context<Self>) {
        if same(&self.conn.client, used) {
            self.conn.failing_since.get_or_insert_with(Instant::now);
            self.try_candidate(ctx);
        }
    }

    /// Lets go of a reference a finished call held.
    pub(super) fn release(&mut self, client: Arc<Client>) {
        drop_client(client);
    }

    fn try_candidate(&mut self, ctx: &mut Context<Self>) {
        if self.conn.candidate.is_some() || self.conn.failing_since.is_none() {
            return;
        }
        let Ok(candidate) = self.new_client() else {
            return;
        };
        self.conn.candidate = Some(Arc::clone(&candidate));
        self.conn.candidate_since = Some(Instant::now());
        let bound = self.config.request_timeout() + FIRST_CALL_ALLOWANCE;
        let probe = async move {
            let answer =
                tokio::time::timeout(bound, candidate.lookup_accounts(vec![PROBE_ACCOUNT_ID]))
                    .await;
            (matches!(answer, Ok(Ok(_))), candidate)
        };
        ctx.spawn(
            fut::wrap_future(probe).map(|(answered, candidate), act: &mut Self, ctx| {
                if !same(&act.conn.candidate, &candidate) {
                    return drop_client(candidate);
                }
                act.conn.candidate = None;
                match (answered, act.conn.failing_since) {
                    (true, Some(since)) => {
                        info!(
                            "TigerBeetle at {} answers again: replaced the client that failed for {:?}",
                            act.config.addresses,
                            since.elapsed()
                        );
                        let old = act.conn.client.replace(candidate);
                        act.conn.registered = true;
                        act.conn.failing_since = None;
                        if let Some(old) = old {
                            drop_client(old);
                        }
                    }
                    // The current client recovered meanwhile: keep it.
                    (true, None) => drop_client(candidate),
                    (false, _) => {
                        drop_client(candidate);
                        act.try_candidate(ctx);
                    }
                }
            }),
        );
    }

    /// While the current client fails, replaces a candidate older than [`CANDIDATE_REFRESH`]
    /// with a new one; the old one's attempt ends unheeded (it is dropped when it does).
    pub(super) fn refresh_candidate(&mut self, ctx: &mut Context<Self>) {
        let stale = self
            .conn
            .candidate_since
            .map_or(true, |since| since.elapsed() >= CANDIDATE_REFRESH);
        if self.conn.failing_since.is_some() && stale {
            if let Some(old) = self.conn.candidate.take() {
                drop_client(old);
            }
            self.try_candidate(ctx);
        }
    }

    /// Drops `used` if it is still the current client, so the next call starts a new one.
    fn discard_client(&mut self, used: &Arc<Client>) {
        if same(&self.conn.client, used) {
            let old = std::mem::take(&mut self.conn);
            if let Some(client) = old.client {
                drop_client(client);
            }
            if let Some(candidate) = old.candidate {
                drop_client(candidate);
            }
        }
    }

    pub(super) fn timeout_error(&self, what: &'static str, bound: Duration) -> BackendError {
        Outage::TimedOut {
            addresses: self.config.addresses.clone(),
            operation: what,
            timeout_ms: u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
        }
        .into()
    }

    /// A send failure; an evicted or shut-down session is replaced on the next call.
    pub(super) fn send_error(
        &mut self,
        client: &Arc<Client>,
        error: SendError,
        what: &'static str,
    ) -> BackendError {
        if matches!(
            error.kind(),
            SendErrorKind::ClientEvicted | SendErrorKind::ClientShutdown
        ) {
            warn!("TigerBeetle {what}: {error}; a new client will be started");
            self.discard_client(client);
        }
        Outage::SendFailed {
            operation: what,
            reason: error.to_string(),
        }
        .into()
    }
}
