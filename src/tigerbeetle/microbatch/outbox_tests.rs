//! The [`Outbox`] against a real server: chains submitted one by one in one pass reach the
//! server in one request and each submitter gets its own answer; a leader dropped while it
//! yields still sends what its followers added.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::future::join_all;
use futures::FutureExt;

use super::server_tests::{accounts, applied, bounded, chain, config, credits, start};
use super::Outbox;
use crate::backend::{BackendError, Fault};

#[actix_rt::test]
async fn chains_submitted_in_one_pass_leave_together_and_each_gets_its_own_answer() {
    bounded(60, async {
        // A flush interval long enough for every chain of the pass to be queued together.
        let (actor, recorder) = start(config(253, 200_000));
        let (a, b) = accounts(&actor).await;
        let outbox = Outbox::new(actor.clone());
        let mut chains: Vec<_> = (0..31).map(|_| chain(2, a, b)).collect();
        // One chain left open: refused on its own, the others unaffected.
        let mut open = chain(2, a, b);
        let linked = open[0].flags();
        open[1].set_flags(linked);
        chains.insert(7, open);
        let answers = join_all(chains.into_iter().map(|c| outbox.submit(c))).await;
        assert_eq!(answers.len(), 32);
        for (i, answer) in answers.iter().enumerate() {
            if i == 7 {
                assert!(matches!(
                    answer,
                    Err(BackendError::Failed(Fault::OpenChain))
                ));
            } else {
                assert!(applied(answer), "chain {i}: {answer:?}");
            }
        }
        assert_eq!(credits(&actor, b).await, 62);
        let records = recorder.records();
        assert_eq!(records.len(), 1, "one request for 31 chains: {records:?}");
        assert_eq!((records[0].items, records[0].events), (31, 62));
    })
    .await;
}

#[actix_rt::test]
async fn a_leader_dropped_while_yielding_still_sends_its_followers_chains() {
    bounded(60, async {
        let (actor, _) = start(config(253, 2_000));
        let (a, b) = accounts(&actor).await;
        let outbox = Outbox::new(actor.clone());
        let mut leader = Box::pin(outbox.submit(chain(1, a, b)));
        assert!(
            (&mut leader).now_or_never().is_none(),
            "the leader yields first"
        );
        let mut follower = Box::pin(outbox.submit(chain(3, a, b)));
        assert!((&mut follower).now_or_never().is_none());
        drop(leader);
        assert!(applied(&follower.await));
        assert_eq!(
            credits(&actor, b).await,
            4,
            "the leader's own chain was sent too"
        );
    })
    .await;
}
