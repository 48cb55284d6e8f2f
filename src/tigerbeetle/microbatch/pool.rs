//! The batcher's client sessions: the current client of [`super::session`] (session 0, which
//! also carries every unbatched call) and up to `tigerbeetle.sessions − 1` extra ones.
//!
//! A TigerBeetle session has one request in flight. Under load the batcher forms the next
//! batch while one is out; once two requests' worth of work waits with fewer than two
//! sessions free (or a whole batch with none free), it opens one more session, registers it
//! with a cheap lookup (a new session's first call takes ~0.6 s, which no batch should wait
//! for) and then sends on it.
//! Sessions stay open once opened; an idle batcher uses session 0 only.
//!
//! Ordering. With one session, requests leave in the order they were formed, and a request a
//! timed-out call left inside the client is sent before anything newer. Several sessions give
//! that up for requests in flight at the same time, which is safe because:
//! - A caller gets its answer only once TigerBeetle applied its request, so anything it does
//!   after the answer (the complete of a reserve, the retry of a change) is ordered after it
//!   on whatever session it travels.
//! - Requests in flight together come from callers that did not wait for one another, so
//!   either order is one the single session could have produced.
//! - What a timeout leaves behind may still arrive late; the deterministic transfer ids make
//!   that harmless (a retry answers `exists`, a void that overtook its reserve leaves the
//!   reservation to expire: an over-count, never an under-count). To keep the single-session
//!   reasoning for outages, extra sessions are used only while session 0 answers, and a
//!   timeout on any session closes every extra one: while the cluster is away, the batcher
//!   runs on session 0 alone, as before.

use std::sync::Arc;

use actix::prelude::*;
use log::info;
use tigerbeetle_unofficial::Client;

use super::session::{drop_client, FIRST_CALL_ALLOWANCE, PROBE_ACCOUNT_ID};
use super::MicrobatchActor;
use crate::backend::BackendError;

/// An open extra session.
struct Extra {
    /// 1, 2, ... in the order sessions were opened (0 is the current client).
    id: usize,
    client: Arc<Client>,
}

/// The extra sessions and which of them are free.
#[derive(Default)]
pub(super) struct Pool {
    idle: Vec<Extra>,
    busy: usize,
    opening: bool,
    opened: usize,
    /// Bumped when every extra session is closed; sessions of an older generation are
    /// dropped as soon as their request returns.
    generation: u64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.idle.len())
            .field("busy", &self.busy)
            .field("opening", &self.opening)
            .finish()
    }
}

/// The session a batch goes out on.
pub(super) struct Lane {
    /// 0 for the current client, else the extra session's id.
    pub(super) session: usize,
    pub(super) client: Arc<Client>,
    generation: u64,
}

impl MicrobatchActor {
    /// A free session, if any: session 0 first (created if there is none, which may fail),
    /// then an idle extra one while session 0 answers. The lane is marked busy.
    pub(super) fn take_lane(&mut self) -> Option<Result<Lane, BackendError>> {
        if !self.primary_busy {
            return Some(self.client().map(|client| {
                self.primary_busy = true;
                Lane {
                    session: 0,
                    client,
                    generation: self.pool.generation,
                }
            }));
        }
        if !self.healthy() {
            return None;
        }
        let extra = self.pool.idle.pop()?;
        self.pool.busy += 1;
        Some(Ok(Lane {
            session: extra.id,
            client: extra.client,
            generation: self.pool.generation,
        }))
    }

    /// A lane's request returned; `keep` if its session is still good for more.
    pub(super) fn return_lane(&mut self, lane: Lane, keep: bool) {
        if lane.session == 0 {
            self.primary_busy = false;
            self.release(lane.client);
            return;
        }
        self.pool.busy = self.pool.busy.saturating_sub(1);
        if keep && lane.generation == self.pool.generation {
            self.pool.idle.push(Extra {
                id: lane.session,
                client: lane.client,
            });
        } else {
            drop_client(lane.client);
        }
    }

    /// Sessions open now (session 0 counts once it exists).
    pub(super) fn sessions_open(&self) -> usize {
        usize::from(self.has_client()) + self.pool.idle.len() + self.pool.busy
    }

    /// Closes every extra session (idle ones now, busy ones when their request returns).
    pub(super) fn close_extra_sessions(&mut self) {
        self.pool.generation += 1;
        for extra in self.pool.idle.drain(..) {
            drop_client(extra.client);
        }
    }

    /// Sessions a batch could leave on now without opening one.
    pub(super) fn free_lanes(&self) -> usize {
        let extra = if self.healthy() {
            self.pool.idle.len()
        } else {
            0
        };
        usize::from(!self.primary_busy) + extra
    }

    /// Opens one more session when fewer than two are free, none is being opened, the limit
    /// allows and session 0 answers; it takes batches once it has registered.
    pub(super) fn open_session(&mut self, ctx: &mut Context<Self>) {
        let room = self.sessions_open() < self.config.sessions;
        if self.pool.opening || !room || !self.healthy() || self.free_lanes() >= 2 {
            return;
        }
        let Ok(client) = self.new_client() else {
            return;
        };
        self.pool.opening = true;
        let generation = self.pool.generation;
        let bound = self.config.request_timeout() + FIRST_CALL_ALLOWANCE;
        let register = async move {
            let answer =
                tokio::time::timeout(bound, client.lookup_accounts(vec![PROBE_ACCOUNT_ID])).await;
            (matches!(answer, Ok(Ok(_))), client)
        };
        ctx.spawn(fut::wrap_future(register).map(
            move |(answered, client), act: &mut Self, ctx| {
                act.pool.opening = false;
                if !answered || generation != act.pool.generation {
                    return drop_client(client);
                }
                act.pool.opened += 1;
                let id = act.pool.opened;
                act.pool.idle.push(Extra { id, client });
                let open = act.sessions_open();
                act.stats.sessions = act.stats.sessions.max(open);
                info!(
                    "TigerBeetle at {}: opened client session {open} of at most {} (full \
                     batches were waiting)",
                    act.config.addresses, act.config.sessions
                );
                act.flush(ctx);
            },
        ));
    }
}
