//! `TigerBeetleBackend`: the [`Backend`] whose capacity lives in a TigerBeetle cluster.
//!
//! - `define` creates the key's accounts (idempotent: `exists` is fine) and funds the
//!   difference between the capacity wanted and the capacity TigerBeetle holds, with a
//!   history-stamped label (see the crate-internal `transfers` module) so restarts and several instances
//!   never fund twice.
//! - `reserve` sends one linked chain of pending transfers through the microbatcher:
//!   TigerBeetle takes all or nothing and refuses what does not fit (`exceeds_credits`).
//! - `complete` is in the crate-internal `complete` module.
//! - `usage` and `try_decrease` read the limit account's balances.
//!
//! In memory (the crate-internal `book`) only hints and lease metadata are kept. A
//! denied rolling reserve is hinted exactly when this process's own reservations explain
//! the denial, with the §4 table otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;
use async_trait::async_trait;
use futures::future::join_all;
use log::warn;
use tigerbeetle_unofficial::error::{CreateAccountErrorKind, CreateTransferErrorKind as Kind};
use tigerbeetle_unofficial::{Account, Transfer};

use super::accounts::{
    debt_account, debt_id, limit_account, limit_id, operator_account, operator_id, LimitBalance,
};
use super::book::Book;
use super::definitions::ClusterDefinitions;
use super::metrics::TigerBeetleMetrics;
use super::microbatch::{
    lookup_accounts_paged, stopped, BatchRecorder, BatchStats, CreateAccounts, GetStats,
    LookupAccounts, MicrobatchActor, Outbox, RefreshCandidate,
};
use super::transfers::{self, reserve_chain, verdict, Failures, Verdict};
use crate::backend::{Backend, BackendError, Fault, Outage, ReserveOutcome};
use crate::definitions::DefinitionStore;
use crate::model::leases::{Begun, LeaseOutcome, DEFAULT_MAX_LEASES};
use crate::model::{
    CompleteCommand, LimitState, LimitStatus, Overage, ReserveCommand, RetryPolicy, SharedClock,
    Usage,
};
use crate::settings::TigerBeetleSettings;

/// The TigerBeetle backend's handle.
#[derive(Debug)]
pub struct TigerBeetleBackend {
    pub(super) batcher: Addr<MicrobatchActor>,
    /// Single chains (reserves) submitted in one pass go to the batcher in one message.
    pub(super) outbox: Outbox,
    pub(super) clock: SharedClock,
    pub(super) book: Mutex<Book>,
    pub(super) metrics: TigerBeetleMetrics,
    /// The limit definitions kept in the cluster.
    pub(super) definitions: Arc<ClusterDefinitions>,
}

impl TigerBeetleBackend {
    /// Starts the microbatcher on the current actix arbiter (call inside a running System)
    /// and checks the cluster answers by creating the operator account. `config` is the
    /// server settings' `tigerbeetle` section.
    pub async fn connect(
        config: TigerBeetleSettings,
        clock: SharedClock,
        policy: RetryPolicy,
    ) -> Result<Arc<TigerBeetleBackend>, BackendError> {
        Self::open(config, clock, policy, None, DEFAULT_MAX_LEASES).await
    }

    /// Like [`TigerBeetleBackend::connect`], remembering at most `max_leases` leases in
    /// flight (and as many settled ones; see [`crate::model::leases`]).
    pub async fn connect_with_lease_capacity(
        config: TigerBeetleSettings,
        clock: SharedClock,
        policy: RetryPolicy,
        max_leases: usize,
    ) -> Result<Arc<TigerBeetleBackend>, BackendError> {
        Self::open(config, clock, policy, None, max_leases).await
    }

    /// Like [`TigerBeetleBackend::connect`], recording every batch size in `recorder`.
    pub async fn connect_with_recorder(
        config: TigerBeetleSettings,
        clock: SharedClock,
        policy: RetryPolicy,
        recorder: Option<BatchRecorder>,
    ) -> Result<Arc<TigerBeetleBackend>, BackendError> {
        Self::open(config, clock, policy, recorder, DEFAULT_MAX_LEASES).await
    }

    async fn open(
        config: TigerBeetleSettings,
        clock: SharedClock,
        policy: RetryPolicy,
        recorder: Option<BatchRecorder>,
        max_leases: usize,
    ) -> Result<Arc<TigerBeetleBackend>, BackendError> {
        config.validate().map_err(Fault::Settings)?;
        let addresses = config.addresses.clone();
        let cluster = config.cluster;
        let metrics = TigerBeetleMetrics::new().map_err(|e| Fault::Api {
            operation: "metrics",
            reason: e.to_string(),
        })?;
        let batcher = MicrobatchActor::new(config, recorder)
            .with_metrics(metrics.clone())
            .start();
        let definitions = Arc::new(ClusterDefinitions::new(
            batcher.clone(),
            format!("the TigerBeetle cluster {cluster} at {addresses}"),
        ));
        let backend = Arc::new(TigerBeetleBackend {
            definitions,
            outbox: Outbox::new(batcher.clone()),
            batcher,
            clock,
            book: Mutex::new(Book::new(max_leases, policy)),
            metrics,
        });
        backend
            .create_accounts(vec![operator_account()], &["acct:operator".into()])
            .await
            .map_err(|e| match e {
                BackendError::Unavailable(outage) => Outage::NotConnected {
                    addresses,
                    cluster,
                    source: Box::new(outage),
                }
                .into(),
                other => other,
            })?;
        Ok(backend)
    }

    /// Batch statistics of the microbatcher.
    pub async fn batch_stats(&self) -> Result<BatchStats, BackendError> {
        self.batcher.send(GetStats).await.map_err(stopped)
    }

    pub(super) fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends chains through the microbatcher (with whatever else is submitted in the same
    /// pass, see [`Outbox`]); one answer per chain, in order.
    pub(super) async fn submit(
        &self,
        chains: Vec<Vec<Transfer>>,
    ) -> Vec<Result<Failures, BackendError>> {
        join_all(chains.into_iter().map(|chain| self.outbox.submit(chain))).await
    }

    async fn submit_one(&self, chain: Vec<Transfer>) -> Result<Failures, BackendError> {
        self.outbox.submit(chain).await
    }

    async fn create_accounts(
        &self,
        accounts: Vec<Account>,
        labels: &[String],
    ) -> Result<(), BackendError> {
        let failures = self
            .batcher
            .send(CreateAccounts(accounts))
            .await
            .map_err(stopped)??;
        for (index, kind) in failures {
            if !matches!(kind, CreateAccountErrorKind::Exists) {
                let label = labels.get(index).map(String::as_str).unwrap_or("?");
                return Err(Fault::AccountRefused {
                    label: label.to_string(),
                    code: format!("{kind:?}"),
                }
                .into());
            }
        }
        Ok(())
    }

    /// The limit account's balance and, if it exists, the debt account.
    async fn balances(&self, key: &str) -> Result<(LimitBalance, Option<Account>), BackendError> {
        let (limit, debt) = (limit_id(key), debt_id(key));
        let accounts = self
            .batcher
            .send(LookupAccounts(vec![limit, debt]))
            .await
            .map_err(stopped)??;
        let balance = accounts
            .iter()
            .find(|a| a.id() == limit)
            .map(LimitBalance::of)
            .ok_or_else(|| Fault::NoLimitAccount {
                key: key.to_string(),
            })?;
        Ok((balance, accounts.into_iter().find(|a| a.id() == debt)))
    }

    /// Applies a capacity change of one transfer chain; `false` if it did not fit.
    async fn apply_change(&self, key: &str, chain: Vec<Transfer>) -> Result<bool, BackendError> {
        let failures = self.submit_one(chain).await?;
        match verdict(&failures) {
            Verdict::Applied | Verdict::AlreadyApplied => Ok(true),
            Verdict::Failed {
                kind: Kind::ExceedsCredits,
                ..
            } => Ok(false),
            Verdict::Failed { kind, .. } => Err(Fault::CapacityChangeRefused {
                key: key.to_string(),
                code: format!("{kind:?}"),
            }
            .into()),
        }
    }

    /// Funds `key` up to `state`'s capacity, or leaves it while a decrease is pending and
    /// TigerBeetle already holds something between the target and the capacity in force
    /// (e.g. the decrease was applied but the registry save did not happen).
    async fn fund_to(&self, state: &LimitState, balance: LimitBalance) -> Result<(), BackendError> {
        let key = &state.definition.key;
        let wanted = u128::from(state.definition.capacity);
        let held = balance.capacity();
        let decreasing = state.status == LimitStatus::Decreasing;
        if decreasing && held >= u128::from(state.pending_decrease_to) && held <= wanted {
            return Ok(());
        }
        if held < wanted {
            if !self
                .apply_change(key, vec![transfers::fund(key, &balance, wanted)])
                .await?
            {
                return Err(Fault::FundRefused { key: key.clone() }.into());
            }
        } else if held > wanted {
            // Only when registries disagree (several instances, or an edited file): give the
            // excess back now if it is free, so the ledger never allows more than defined.
            let chain = transfers::decrease_chain(key, &balance, wanted);
            if !self.apply_change(key, chain).await? {
                warn!(
                    "limit {key}: TigerBeetle holds capacity {held} above the defined {wanted} \
                     and it is in use; lower it with a decrease once it frees"
                );
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for TigerBeetleBackend {
    fn name(&self) -> &'static str {
        "tigerbeetle"
    }

    async fn define(&self, state: &LimitState) -> Result<(), BackendError> {
        let key = &state.definition.key;
        let mut accounts = vec![operator_account(), limit_account(key)];
        let mut labels = vec!["acct:operator".to_string(), format!("acct:limit:{key}")];
        if state.definition.overage == Overage::Debt {
            accounts.push(debt_account(key));
            labels.push(format!("acct:debt:{key}"));
        }
        self.create_accounts(accounts, &labels).await?;
        let (balance, _) = self.balances(key).await?;
        self.fund_to(state, balance).await?;
        self.book().define(state.definition.clone());
        Ok(())
    }

    async fn reserve(&self, command: ReserveCommand) -> Result<ReserveOutcome, BackendError> {
        let now_ms = self.clock.now_ms();
        let lease = command.lease;
        let (plan, owner) = {
            let mut book = self.book();
            match book.leases.get(lease, now_ms) {
                Some(LeaseOutcome::Allowed { reserved_at_ms, .. }) => {
                    return Ok(ReserveOutcome::Allowed { reserved_at_ms })
                }
                Some(LeaseOutcome::Denied { retry_after_ms }) => {
                    return Ok(ReserveOutcome::Denied { retry_after_ms })
                }
                // A repeat of a reserve still in flight goes to TigerBeetle too: the same
                // transfer ids make it answer `exists` or `id_already_failed`.
                Some(LeaseOutcome::Pending) | None => {}
            }
            let plan = book.plan(&command.requirements)?;
            // Only the first attempt owns the pending entry; a repeat in flight must not
            // forget it on failure, since the first attempt still settles it.
            let owner = book.leases.begin(lease, now_ms)? == Begun::New;
            (plan, owner)
        };
        let result = self.submit_one(reserve_chain(lease, &plan.takes)).await;
        let mut book = self.book();
        let failures = match result {
            Ok(failures) => failures,
            Err(e) => {
                if owner {
                    book.leases.abandon(lease);
                }
                return Err(e);
            }
        };
        match verdict(&failures) {
            Verdict::Applied => {
                book.on_allow(lease, &plan.takes, now_ms);
                book.leases
                    .allow(lease, now_ms, plan.holds, plan.longest_hold_ms);
                Ok(ReserveOutcome::Allowed {
                    reserved_at_ms: now_ms,
                })
            }
            Verdict::AlreadyApplied => {
                // Reserved before (a retry after an unknown outcome, or on another
                // instance): only the ledger knows when, so the lease table does not guess;
                // a complete here reads the lease off the ledger.
                book.on_allow(lease, &plan.takes, now_ms);
                if owner {
                    book.leases.abandon(lease);
                }
                Ok(ReserveOutcome::Allowed {
                    reserved_at_ms: now_ms,
                })
            }
            Verdict::Failed { index, kind } => {
                let (key, amount) = plan
                    .takes
                    .get(index)
                    .map(|t| (t.key.as_str(), t.amount))
                    .unwrap_or_default();
                let retry_after_ms = match kind {
                    Kind::ExceedsCredits => book.on_deny(key, amount, now_ms),
                    Kind::IdAlreadyFailed => book.hint(key, amount, now_ms),
                    _ => {
                        if owner {
                            book.leases.abandon(lease);
                        }
                        return Err(Fault::ReserveRefused {
                            key: key.to_string(),
                            lease,
                            code: format!("{kind:?}"),
                        }
                        .into());
                    }
                };
                book.leases
                    .deny(lease, now_ms, retry_after_ms, plan.longest_hold_ms);
                Ok(ReserveOutcome::Denied { retry_after_ms })
            }
        }
    }

    async fn complete(&self, command: CompleteCommand) -> Result<(), BackendError> {
        self.complete_lease(command).await
    }

    async fn usage(&self, key: &str) -> Result<Usage, BackendError> {
        let (balance, debt) = self.balances(key).await?;
        Ok(balance.usage(debt.as_ref()))
    }

    async fn try_decrease(&self, key: &str, to: u64) -> Result<bool, BackendError> {
        let (balance, _) = self.balances(key).await?;
        let to = u128::from(to);
        let held = balance.capacity();
        if held <= to {
            return Ok(true);
        }
        if balance.available() < held - to {
            return Ok(false);
        }
        self.apply_change(key, transfers::decrease_chain(key, &balance, to))
            .await
    }

    /// Looks up the operator account: one round trip on the batcher's current client. While
    /// that client fails, a fresh client is also kept young, so whichever reconnects first
    /// after the cluster is back answers.
    async fn probe(&self) -> Result<(), BackendError> {
        self.batcher.do_send(RefreshCandidate);
        self.batcher
            .send(LookupAccounts(vec![operator_id()]))
            .await
            .map_err(stopped)??;
        Ok(())
    }

    fn metrics(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        self.metrics.collectors()
    }

    fn shared_definitions(&self) -> Option<Arc<dyn DefinitionStore>> {
        Some(Arc::clone(&self.definitions) as Arc<dyn DefinitionStore>)
    }

    /// One lookup per page of limit accounts.
    async fn held_capacities(&self, keys: &[String]) -> Result<Option<Vec<u64>>, BackendError> {
        let ids: Vec<u128> = keys.iter().map(|k| limit_id(k)).collect();
        let held: HashMap<u128, u128> = lookup_accounts_paged(&self.batcher, &ids)
            .await?
            .iter()
            .map(|a| (a.id(), LimitBalance::of(a).capacity()))
            .collect();
        Ok(Some(
            ids.iter()
                .map(|id| {
                    held.get(id)
                        .map_or(0, |c| u64::try_from(*c).unwrap_or(u64::MAX))
                })
                .collect(),
        ))
    }
}
