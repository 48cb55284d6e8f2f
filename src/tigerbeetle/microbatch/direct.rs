//! The calls the actor makes at once, without batching: lookups, queries and account
//! creation (rare, and needed right away), plus its statistics. They share the client and its bounds
//! through [`MicrobatchActor::direct_call`].

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tigerbeetle_unofficial::error::{CreateAccountErrorKind, CreateAccountsError};
use tigerbeetle_unofficial::{Account, Client, Transfer};

use super::{
    CreateAccounts, GetStats, LookupAccounts, LookupTransfers, MicrobatchActor, QueryAccounts,
    QueryTransfers, RefreshCandidate,
};
use crate::backend::{BackendError, Fault};

impl MicrobatchActor {
    /// Runs one unbatched call (`what`, for messages) on the current client within the call
    /// bound. `interpret` turns the client's answer into the reply; a call that does not
    /// answer in time is counted, starts a fresh-client attempt and becomes `Unavailable`.
    /// Every call's duration goes to the metrics.
    fn direct_call<T, E, R, Fut>(
        &mut self,
        what: &'static str,
        call: impl FnOnce(Arc<Client>) -> Fut + 'static,
        interpret: impl FnOnce(&mut Self, &Arc<Client>, Result<T, E>) -> Result<R, BackendError>
            + 'static,
    ) -> ResponseActFuture<Self, Result<R, BackendError>>
    where
        Fut: Future<Output = Result<T, E>> + 'static,
        T: 'static,
        E: 'static,
        R: 'static,
    {
        let client = match self.client() {
            Ok(client) => client,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let timeout = self.call_timeout();
        let started = Instant::now();
        let request = tokio::time::timeout(timeout, call(Arc::clone(&client)));
        Box::pin(
            fut::wrap_future(request).map(move |result, act: &mut Self, ctx| {
                act.observe_call(what, started.elapsed());
                let answer = match result {
                    Ok(answer) => interpret(act, &client, answer),
                    Err(_) => {
                        act.stats.timeouts += 1;
                        act.timed_out(&client, ctx);
                        Err(act.timeout_error(what, timeout))
                    }
                };
                act.release(client);
                answer
            }),
        )
    }
}

impl Handler<LookupAccounts> for MicrobatchActor {
    type Result = ResponseActFuture<Self, Result<Vec<Account>, BackendError>>;

    fn handle(
        &mut self,
        LookupAccounts(ids): LookupAccounts,
        _: &mut Context<Self>,
    ) -> Self::Result {
        self.direct_call(
            "lookup_accounts",
            move |client| async move { client.lookup_accounts(ids).await },
            |act, client, answer| match answer {
                Ok(accounts) => {
                    act.answered(client);
                    Ok(accounts)
                }
                Err(error) => Err(act.send_error(client, error, "lookup_accounts")),
            },
        )
    }
}

/// A read answered by the client: `Ok` marks the client healthy, a send error is mapped
/// (and may replace the client).
macro_rules! read_handler {
    ($message:ident, $item:ty, $what:literal, |$client:ident, $arg:ident| $call:expr) => {
        impl Handler<$message> for MicrobatchActor {
            type Result = ResponseActFuture<Self, Result<Vec<$item>, BackendError>>;

            fn handle(&mut self, $message($arg): $message, _: &mut Context<Self>) -> Self::Result {
                self.direct_call(
                    $what,
                    move |$client| async move { $call },
                    |act, client, answer| match answer {
                        Ok(items) => {
                            act.answered(client);
                            Ok(items)
                        }
                        Err(error) => Err(act.send_error(client, error, $what)),
                    },
                )
            }
        }
    };
}

read_handler!(
    LookupTransfers,
    Transfer,
    "lookup_transfers",
    |client, ids| client.lookup_transfers(ids).await
);
read_handler!(
    QueryAccounts,
    Account,
    "query_accounts",
    |client, filter| client.query_accounts(Box::new(filter)).await
);
read_handler!(
    QueryTransfers,
    Transfer,
    "query_transfers",
    |client, filter| client.query_transfers(Box::new(filter)).await
);

impl Handler<CreateAccounts> for MicrobatchActor {
    type Result =
        ResponseActFuture<Self, Result<Vec<(usize, CreateAccountErrorKind)>, BackendError>>;

    fn handle(
        &mut self,
        CreateAccounts(accounts): CreateAccounts,
        _: &mut Context<Self>,
    ) -> Self::Result {
        self.direct_call(
            "create_accounts",
            move |client| async move { client.create_accounts(accounts).await },
            |act, client, answer| match answer {
                Ok(()) => {
                    act.answered(client);
                    Ok(Vec::new())
                }
                Err(CreateAccountsError::Api(errors)) => {
                    act.answered(client);
                    Ok(errors
                        .as_slice()
                        .iter()
                        .map(|e| (e.index() as usize, e.kind()))
                        .collect())
                }
                Err(CreateAccountsError::Send(error)) => {
                    Err(act.send_error(client, error, "create_accounts"))
                }
                Err(other) => Err(Fault::Api {
                    operation: "create_accounts",
                    reason: other.to_string(),
                }
                .into()),
            },
        )
    }
}

impl Handler<RefreshCandidate> for MicrobatchActor {
    type Result = ();

    fn handle(&mut self, _: RefreshCandidate, ctx: &mut Context<Self>) {
        self.refresh_candidate(ctx);
    }
}

impl Handler<GetStats> for MicrobatchActor {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats)
    }
}
