//! `SnapshotKeeper`: owns the timer that saves the memory backend's live state (reservations,
//! holds, debt, remembered leases) to its [`SnapshotFile`], and the start-up step that loads
//! it back. A periodic save is skipped when nothing changed since the last one and while the
//! previous save still runs; the final save at a graceful stop always runs.
//!
//! What a crash (SIGKILL, power loss) loses: what changed since the last periodic save, at
//! most one interval — reserves made then are not counted after the restart. With the
//! periodic save off, everything since the start.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use log::{error, info, warn};

use super::MemoryBackend;
use crate::backend::BackendError;
use crate::model::throttle::LogThrottle;
use crate::model::SharedClock;
use crate::snapshot::{LoadedSnapshot, SnapshotError, SnapshotFile};

/// How often a failing periodic save is logged at most.
const FAILURE_LOG_INTERVAL_MS: i64 = 60_000;

/// Saves a snapshot now, whatever changed; answers whether a file was written (an older
/// state is never written over a newer one).
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, SnapshotError>")]
pub struct SaveNow;

/// The snapshot loop of a memory backend.
pub struct SnapshotKeeper {
    backend: Arc<MemoryBackend>,
    file: SnapshotFile,
    /// Time between periodic saves; zero saves only on [`SaveNow`].
    interval: Duration,
    clock: SharedClock,
    /// Generation of the state last saved.
    saved_generation: Option<u64>,
    tick_running: bool,
    failures: LogThrottle,
}

impl std::fmt::Debug for SnapshotKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotKeeper")
            .field("file", &self.file)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl SnapshotKeeper {
    /// A keeper saving `backend`'s state to `file` every `interval` (zero: only on demand).
    pub fn new(
        backend: Arc<MemoryBackend>,
        file: SnapshotFile,
        interval: Duration,
        clock: SharedClock,
    ) -> Self {
        SnapshotKeeper {
            backend,
            file,
            interval,
            clock,
            saved_generation: None,
            tick_running: false,
            failures: LogThrottle::new(FAILURE_LOG_INTERVAL_MS),
        }
    }
}

/// Takes a snapshot (unless the state is still at `unless_generation`) and writes it off the
/// actor threads. Answers the generation written, if any.
async fn save(
    backend: Arc<MemoryBackend>,
    file: SnapshotFile,
    unless_generation: Option<u64>,
) -> Result<Option<u64>, SnapshotError> {
    let Some((generation, snapshot)) = backend.snapshot(unless_generation).await? else {
        return Ok(None);
    };
    let path = file.path().to_path_buf();
    let written = tokio::task::spawn_blocking(move || file.save(generation, &snapshot))
        .await
        .map_err(|e| SnapshotError::Write {
            path,
            source: std::io::Error::other(e),
        })??;
    Ok(written.then_some(generation))
}

impl Actor for SnapshotKeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.interval.is_zero() {
            return;
        }
        ctx.run_interval(self.interval, |act, ctx| {
            if act.tick_running {
                return;
            }
            act.tick_running = true;
            let work = save(
                Arc::clone(&act.backend),
                act.file.clone(),
                act.saved_generation,
            );
            ctx.spawn(fut::wrap_future(work).map(|result, act: &mut Self, _| {
                act.tick_running = false;
                match result {
                    Ok(Some(generation)) => act.saved_generation = Some(generation),
                    Ok(None) => {}
                    Err(e) => {
                        if let Some(held_back) = act.failures.due(act.clock.now_ms()) {
                            warn!(
                                "{e} (periodic save; {held_back} more failure(s) since the \
                                     last report); a crash now loses the reservations made \
                                     since the last good save"
                            );
                        }
                    }
                }
            }));
        });
    }
}

impl Handler<SaveNow> for SnapshotKeeper {
    type Result = ResponseActFuture<Self, Result<bool, SnapshotError>>;

    fn handle(&mut self, _: SaveNow, _: &mut Context<Self>) -> Self::Result {
        let work = save(Arc::clone(&self.backend), self.file.clone(), None);
        Box::pin(fut::wrap_future(work).map(|result, act: &mut Self, _| {
            let generation = result?;
            if generation.is_some() {
                act.saved_generation = generation;
            }
            Ok(generation.is_some())
        }))
    }
}

/// Loads `file` into `backend` at start (after the definitions, before serving). A usable
/// snapshot gives back its live state; an unusable one blocks every key for one hold after
/// the file was written (never a grant that could exceed a limit); every case is logged.
pub async fn restore_snapshot(
    backend: &MemoryBackend,
    file: &SnapshotFile,
    clock: &SharedClock,
) -> Result<(), BackendError> {
    let path = file.path().display();
    match file.load() {
        LoadedSnapshot::Missing => info!("reservation snapshot {path}: none; starting empty"),
        LoadedSnapshot::Usable(snapshot) => {
            let taken_at_ms = snapshot.taken_at_ms;
            let summary = backend.restore(snapshot).await?;
            info!(
                "reservation snapshot {path} (taken {} ms ago): {} live reservation(s) on {} \
                 key(s) and {} lease(s) restored",
                clock.now_ms().saturating_sub(taken_at_ms),
                summary.reservations,
                summary.keys,
                summary.leases
            );
            if !summary.unknown_keys.is_empty() {
                warn!(
                    "reservation snapshot {path}: dropped the state of {} key(s) no longer \
                     defined: {}",
                    summary.unknown_keys.len(),
                    summary.unknown_keys.join(", ")
                );
            }
        }
        LoadedSnapshot::Unusable {
            reason,
            written_at_ms,
        } => {
            let since_ms = written_at_ms.unwrap_or_else(|| clock.now_ms());
            let blocked = backend.block_all_until(since_ms).await?;
            error!(
                "reservation snapshot {path} {reason}; what was reserved before this start is \
                 unknown, so {blocked} key(s) count their whole capacity as in use for one \
                 window (or timeout) after the file was written; the file is replaced by the \
                 next save (move it away to inspect it)"
            );
        }
    }
    Ok(())
}
