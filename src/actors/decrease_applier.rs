//! `DecreaseApplier`: owns the timer that retries pending capacity decreases (SPEC §4). On
//! every tick it asks its [`PendingDecreases`] (the limiter service) to apply what it can; a
//! tick is skipped while the previous one is still running, so slow backends never pile up
//! work. The actor knows only that trait, so the actor layer does not depend on the service.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;

/// Whatever holds pending capacity decreases and can try to apply them.
#[async_trait]
pub trait PendingDecreases: Send + Sync + 'static {
    /// Applies every pending decrease that fits now; answers how many were applied.
    async fn apply_pending_decreases(&self) -> usize;
}

/// Applies pending decreases now; answers how many were applied.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct ApplyNow;

/// The decrease-apply loop.
pub struct DecreaseApplier {
    target: Arc<dyn PendingDecreases>,
    interval: Duration,
    tick_running: bool,
}

impl std::fmt::Debug for DecreaseApplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecreaseApplier")
            .field("interval", &self.interval)
            .field("tick_running", &self.tick_running)
            .finish_non_exhaustive()
    }
}

impl DecreaseApplier {
    /// A loop over `target` (the limiter service) ticking every `interval`.
    pub fn new(target: Arc<impl PendingDecreases>, interval: Duration) -> Self {
        DecreaseApplier {
            target,
            interval,
            tick_running: false,
        }
    }
}

impl Actor for DecreaseApplier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval, |act, ctx| {
            if act.tick_running {
                return;
            }
            act.tick_running = true;
            let target = Arc::clone(&act.target);
            ctx.spawn(
                fut::wrap_future(async move { target.apply_pending_decreases().await })
                    .map(|_, act: &mut Self, _| act.tick_running = false),
            );
        });
    }
}

impl Handler<ApplyNow> for DecreaseApplier {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: ApplyNow, _: &mut Context<Self>) -> Self::Result {
        let target = Arc::clone(&self.target);
        Box::pin(async move { target.apply_pending_decreases().await })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts the calls; answers the call number.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl PendingDecreases for Counting {
        async fn apply_pending_decreases(&self) -> usize {
            self.0.fetch_add(1, Ordering::SeqCst) + 1
        }
    }

    #[actix_rt::test]
    async fn apply_now_drives_any_pending_decreases_owner() {
        let target = Arc::new(Counting::default());
        let applier = DecreaseApplier::new(target.clone(), Duration::from_secs(3600)).start();
        let answer = tokio::time::timeout(Duration::from_secs(10), applier.send(ApplyNow))
            .await
            .expect("answers within 10 s")
            .expect("the applier runs");
        assert_eq!(answer, 1);
        assert_eq!(target.0.load(Ordering::SeqCst), 1);
    }
}
