//! [`Outbox`]: items posted one by one during one pass of the caller's executor (the 32
//! reserves of one `POST /v1/reserve/batch`, many callers' reserves at once) reach an actor in one [`Delivery`] message instead
//! of one message (and one wake-up of the actor's thread) each.
//!
//! The first poster finding the outbox empty leads ([`Outbox::post`] returns a [`Lead`]):
//! it yields once, so that every other future ready in the same pass adds its item, then
//! sends them all. Items keep the order they were posted in. A leader dropped before it is
//! done (its caller gave up) still sends what it collected, so no other poster is stranded.
//! Each item carries its own answer channel; the outbox only carries items.

use std::sync::{Mutex, MutexGuard};

use actix::prelude::*;

/// Everything posted to an [`Outbox`] since its last send, in posting order.
#[derive(Debug)]
pub struct Delivery<T>(pub Vec<T>);

impl<T: 'static> Message for Delivery<T> {
    type Result = ();
}

/// Items waiting for the next [`Delivery`] to `A`.
#[derive(Debug)]
pub struct Outbox<A: Actor, T> {
    target: Addr<A>,
    waiting: Mutex<Waiting<T>>,
}

/// What the outbox holds between a leader's arrival and its send.
#[derive(Debug)]
struct Waiting<T> {
    items: Vec<T>,
    /// Whether a leader will send `items`.
    led: bool,
}

impl<A, T> Outbox<A, T>
where
    A: Actor + Handler<Delivery<T>>,
    A::Context: dev::ToEnvelope<A, Delivery<T>>,
    T: Send + 'static,
{
    /// An empty outbox in front of `target`.
    pub fn new(target: Addr<A>) -> Self {
        Outbox {
            target,
            waiting: Mutex::new(Waiting {
                items: Vec::new(),
                led: false,
            }),
        }
    }

    /// Adds `item` to the next delivery, at once (no waiting). `Some` when this caller leads
    /// that delivery: it must await [`Lead::send`] (or drop the lead, which sends at once).
    #[must_use = "the leader sends the delivery: await `Lead::send` or drop it"]
    pub fn post(&self, item: T) -> Option<Lead<'_, A, T>> {
        let lead = {
            let mut waiting = self.waiting();
            waiting.items.push(item);
            !std::mem::replace(&mut waiting.led, true)
        };
        // Made only when leading: a `Lead` sends when dropped.
        lead.then(|| Lead(self))
    }

    /// Adds `item` and sends at once unless a leader is about to (for callers that cannot
    /// wait, such as a rollback run from `Drop`). Order with earlier posts is kept.
    pub fn post_now(&self, item: T) {
        if let Some(lead) = self.post(item) {
            drop(lead);
        }
    }

    /// Sends everything waiting in one message. A stopped actor drops the items, and with
    /// them their answer channels, which their posters read as the actor having stopped.
    fn send(&self) {
        let items = {
            let mut waiting = self.waiting();
            waiting.led = false;
            std::mem::take(&mut waiting.items)
        };
        if !items.is_empty() {
            self.target.do_send(Delivery(items));
        }
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting<T>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The duty to send an [`Outbox`]'s next delivery: after one yield ([`Lead::send`]), or at
/// once when dropped.
#[derive(Debug)]
pub struct Lead<'a, A, T>(&'a Outbox<A, T>)
where
    A: Actor + Handler<Delivery<T>>,
    A::Context: dev::ToEnvelope<A, Delivery<T>>,
    T: Send + 'static;

impl<A, T> Lead<'_, A, T>
where
    A: Actor + Handler<Delivery<T>>,
    A::Context: dev::ToEnvelope<A, Delivery<T>>,
    T: Send + 'static,
{
    /// Lets every other future ready in this pass post, then sends the delivery.
    pub async fn send(self) {
        YieldOnce(false).await;
    }
}

impl<A, T> Drop for Lead<'_, A, T>
where
    A: Actor + Handler<Delivery<T>>,
    A::Context: dev::ToEnvelope<A, Delivery<T>>,
    T: Send + 'static,
{
    fn drop(&mut self) {
        self.0.send();
    }
}

/// Pending once, waking itself at once: every other future ready in the same pass of the
/// caller's executor (or of a `join_all`) runs before the leader goes on.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Records each delivery it gets.
    #[derive(Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u32>>>>);

    impl Actor for Recorder {
        type Context = Context<Self>;
    }

    impl Handler<Delivery<u32>> for Recorder {
        type Result = ();

        fn handle(&mut self, Delivery(items): Delivery<u32>, _: &mut Context<Self>) {
            self.0.lock().unwrap().push(items);
        }
    }

    async fn post(outbox: &Outbox<Recorder, u32>, item: u32) {
        if let Some(lead) = outbox.post(item) {
            lead.send().await;
        }
    }

    #[actix_rt::test]
    async fn posts_of_one_pass_arrive_in_one_delivery_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let outbox = Outbox::new(Recorder(Arc::clone(&seen)).start());
        futures::future::join_all((0..5).map(|i| post(&outbox, i))).await;
        post(&outbox, 9).await;
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while seen.lock().unwrap().len() < 2 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("both deliveries within 5 s");
        assert_eq!(*seen.lock().unwrap(), vec![vec![0, 1, 2, 3, 4], vec![9]]);
    }

    #[actix_rt::test]
    async fn a_dropped_leader_still_sends_and_post_now_keeps_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let outbox = Outbox::new(Recorder(Arc::clone(&seen)).start());
        let lead = outbox.post(1).expect("the first poster leads");
        assert!(outbox.post(2).is_none(), "a second poster follows");
        // Appended behind the leader's items, sent with them.
        outbox.post_now(3);
        drop(lead);
        // Nobody leads now: sent at once, alone.
        outbox.post_now(4);
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while seen.lock().unwrap().len() < 2 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("both deliveries within 5 s");
        assert_eq!(*seen.lock().unwrap(), vec![vec![1, 2, 3], vec![4]]);
    }
}
