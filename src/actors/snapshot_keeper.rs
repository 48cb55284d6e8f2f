//! `SnapshotKeeper`: owns the timer that saves the memory backend's live state (reservations,
//! holds, debt, remembered leases) to its [`SnapshotFile`], and the start-up step that loads
//! it back. A periodic save is skipped when nothing changed since the last one and while the
//! previous save still runs; the final save at a graceful stop always runs.
//!
//! Periodic saves keep to a tenth of one core: after a save that took `t`, the next one
//! starts `max(interval, 10 × t)` after it started (logged, at most once a minute, while that
//! stretches the interval), so a large state (hundreds of thousands of live leases) never
//! turns the keeper into the busiest thread of the service.
//!
//! Each save is written (serialized and flushed) on a thread of its own at a lower scheduling
//! priority (nice [`WRITER_NICE`]): when requests keep every core busy they get the CPU
//! first and the save takes longer (and so does the period above); on an idle core it runs
//! at full speed.
//!
//! What a crash (SIGKILL, power loss) loses: what changed since the last periodic save, at
//! most one interval (or the stretched period above) — reserves made then are not counted
//! after the restart. With the periodic save off, everything since the start.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use log::{error, info, warn};

use super::MemoryBackend;
use crate::backend::BackendError;
use crate::model::throttle::LogThrottle;
use crate::model::SharedClock;
use crate::snapshot::{LoadedSnapshot, SnapshotError, SnapshotFile};

/// How often a failing periodic save, or a stretched period, is logged at most.
const FAILURE_LOG_INTERVAL_MS: i64 = 60_000;

/// Periodic saves take at most one part in this many of the keeper's wall time.
const SAVE_SHARE: u32 = 10;

/// Nice value of the thread that writes a save (Linux: per thread; 0 is the default).
pub const WRITER_NICE: i32 = 10;

/// Time from the start of a save that took `took` to the start of the next periodic one.
pub fn save_period(interval: Duration, took: Duration) -> Duration {
    interval.max(took.saturating_mul(SAVE_SHARE))
}

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
    failures: LogThrottle,
    stretched: LogThrottle,
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
            failures: LogThrottle::new(FAILURE_LOG_INTERVAL_MS),
            stretched: LogThrottle::new(FAILURE_LOG_INTERVAL_MS),
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
    let write_error = |source| SnapshotError::Write {
        path: path.clone(),
        source,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("snapshot-writer".into())
        .spawn(move || {
            lower_this_threads_priority();
            let _ = tx.send(file.save(generation, &snapshot));
        })
        .map_err(write_error)?;
    let written = rx.await.map_err(|_| {
        write_error(std::io::Error::other(
            "the snapshot writer thread stopped without an answer",
        ))
    })??;
    Ok(written.then_some(generation))
}

/// The calling thread's kernel id (Linux applies a thread's priority per thread).
#[cfg(target_os = "linux")]
fn this_thread_id() -> libc::id_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::id_t }
}

/// Moves the calling thread to nice [`WRITER_NICE`]; a refusal only costs speed, so it is
/// logged at debug level.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a plain system call on the calling thread; no memory is shared.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, this_thread_id(), WRITER_NICE) };
        if rc != 0 {
            log::debug!(
                "snapshot writer: could not lower its priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

impl Actor for SnapshotKeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.interval.is_zero() {
            ctx.run_later(self.interval, |act, ctx| act.periodic_save(ctx));
        }
    }
}

impl SnapshotKeeper {
    /// Saves if anything changed, then schedules the next periodic save (one at a time).
    fn periodic_save(&mut self, ctx: &mut Context<Self>) {
        let started = std::time::Instant::now();
        let work = save(
            Arc::clone(&self.backend),
            self.file.clone(),
            self.saved_generation,
        );
        ctx.spawn(
            fut::wrap_future(work).map(move |result, act: &mut Self, ctx| {
                let took = started.elapsed();
                let period = save_period(act.interval, took);
                if period > act.interval && act.stretched.due(act.clock.now_ms()).is_some() {
                    info!(
                        "reservation snapshot: a save took {} ms, so periodic saves run every {} ms \
                         instead of every {} ms (at most a tenth of one core); a crash loses \
                         up to that long",
                        took.as_millis(),
                        period.as_millis(),
                        act.interval.as_millis()
                    );
                }
                ctx.run_later(period.saturating_sub(took), |act, ctx| {
                    act.periodic_save(ctx)
                });
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
            }),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_writer_thread_runs_at_a_lower_priority() {
        let nice = std::thread::spawn(|| {
            lower_this_threads_priority();
            // SAFETY: a plain system call on the calling thread.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, this_thread_id()) }
        })
        .join()
        .unwrap();
        assert!(nice >= WRITER_NICE, "nice {nice}");
    }

    #[test]
    fn fast_saves_keep_the_interval_and_slow_ones_stretch_it_to_ten_times_their_length() {
        let ms = Duration::from_millis;
        assert_eq!(save_period(ms(1000), ms(0)), ms(1000));
        assert_eq!(save_period(ms(1000), ms(100)), ms(1000));
        assert_eq!(save_period(ms(1000), ms(150)), ms(1500));
        assert_eq!(save_period(ms(1000), ms(2000)), ms(20_000));
        assert_eq!(save_period(ms(1000), Duration::MAX), Duration::MAX);
    }
}
