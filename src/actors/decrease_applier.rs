//! `DecreaseApplier`: owns the timer that retries pending capacity decreases (SPEC §4). On
//! every tick it asks the service to apply what it can; a tick is skipped while the previous
//! one is still running, so slow backends never pile up work.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::service::LimiterService;

/// Applies pending decreases now; answers how many were applied.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct ApplyNow;

/// The decrease-apply loop.
#[derive(Debug)]
pub struct DecreaseApplier {
    service: Arc<LimiterService>,
    interval: Duration,
    tick_running: bool,
}

impl DecreaseApplier {
    /// A loop over `service` ticking every `interval`.
    pub fn new(service: Arc<LimiterService>, interval: Duration) -> Self {
        DecreaseApplier {
            service,
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
            let service = Arc::clone(&act.service);
            ctx.spawn(
                fut::wrap_future(async move { service.apply_pending_decreases().await })
                    .map(|_, act: &mut Self, _| act.tick_running = false),
            );
        });
    }
}

impl Handler<ApplyNow> for DecreaseApplier {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: ApplyNow, _: &mut Context<Self>) -> Self::Result {
        let service = Arc::clone(&self.service);
        Box::pin(async move { service.apply_pending_decreases().await })
    }
}
