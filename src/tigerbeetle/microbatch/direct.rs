//! The calls the actor makes at once, without batching: account lookups and creation
//! (rare, and needed right away), plus its statistics. They share the client and its bounds.

use std::sync::Arc;

use actix::prelude::*;
use tigerbeetle_unofficial::error::{CreateAccountErrorKind, CreateAccountsError};
use tigerbeetle_unofficial::Account;

use super::{CreateAccounts, GetStats, LookupAccounts, MicrobatchActor};
use crate::backend::BackendError;

impl Handler<LookupAccounts> for MicrobatchActor {
    type Result = ResponseActFuture<Self, Result<Vec<Account>, BackendError>>;

    fn handle(
        &mut self,
        LookupAccounts(ids): LookupAccounts,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let client = match self.client() {
            Ok(client) => client,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let timeout = self.call_timeout();
        let sender = Arc::clone(&client);
        let request = async move {
            let result = tokio::time::timeout(timeout, sender.lookup_accounts(ids)).await;
            (result, sender)
        };
        Box::pin(
            fut::wrap_future(request).map(move |(result, sender), act: &mut Self, ctx| {
                drop(sender);
                let answer = match result {
                    Ok(Ok(accounts)) => {
                        act.answered(&client);
                        Ok(accounts)
                    }
                    Ok(Err(error)) => Err(act.send_error(&client, error, "lookup_accounts")),
                    Err(_) => {
                        act.stats.timeouts += 1;
                        act.timed_out(&client, ctx);
                        Err(act.timeout_error("lookup_accounts", timeout))
                    }
                };
                act.release(client);
                answer
            }),
        )
    }
}

impl Handler<CreateAccounts> for MicrobatchActor {
    type Result =
        ResponseActFuture<Self, Result<Vec<(usize, CreateAccountErrorKind)>, BackendError>>;

    fn handle(
        &mut self,
        CreateAccounts(accounts): CreateAccounts,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let client = match self.client() {
            Ok(client) => client,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let timeout = self.call_timeout();
        let sender = Arc::clone(&client);
        let request = async move {
            let result = tokio::time::timeout(timeout, sender.create_accounts(accounts)).await;
            (result, sender)
        };
        Box::pin(
            fut::wrap_future(request).map(move |(result, sender), act: &mut Self, ctx| {
                drop(sender);
                let answer = match result {
                    Ok(Ok(())) => {
                        act.answered(&client);
                        Ok(Vec::new())
                    }
                    Ok(Err(CreateAccountsError::Api(errors))) => {
                        act.answered(&client);
                        Ok(errors
                            .as_slice()
                            .iter()
                            .map(|e| (e.index() as usize, e.kind()))
                            .collect())
                    }
                    Ok(Err(CreateAccountsError::Send(error))) => {
                        Err(act.send_error(&client, error, "create_accounts"))
                    }
                    Ok(Err(other)) => Err(BackendError::Failed(format!(
                        "TigerBeetle create_accounts: {other}"
                    ))),
                    Err(_) => {
                        act.stats.timeouts += 1;
                        act.timed_out(&client, ctx);
                        Err(act.timeout_error("create_accounts", timeout))
                    }
                };
                act.release(client);
                answer
            }),
        )
    }
}

impl Handler<GetStats> for MicrobatchActor {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats)
    }
}
