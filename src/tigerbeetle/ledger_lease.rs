//! A lease read off the ledger, for a `complete` on an instance that did not reserve it
//! (several instances on one cluster, or a lease this instance has forgotten).
//!
//! Every transfer a lease makes carries the lease id (its ULID as a u128) in
//! `user_data_128`: the reserve's pendings, the voids, the re-reservations and the debt (see
//! the crate-internal `transfers` module). One `query_transfers` filtered by it finds them
//! all. From the reserve pendings ([`reserved`]) comes what the lease holds on each key: the
//! key (its limit account, mapped back over the keys this instance knows), the amount, and
//! when the pending expires (its TigerBeetle timestamp plus its timeout, whole seconds), so
//! the window in force at reserve time is used, whatever the key's definition says now. The
//! other transfers tell the completer which steps were done already.
//!
//! The expiry compares the cluster's timestamps with this instance's clock: they agree to
//! far under a second when both follow NTP, well within the slack TigerBeetle's whole-second
//! timeouts give anyway.

use std::time::UNIX_EPOCH;

use tigerbeetle_unofficial::{transfer, QueryFilter, Transfer};

use super::backend::TigerBeetleBackend;
use super::book::Book;
use super::complete::Reserved;
use super::ids::id_for_label;
use super::microbatch::stopped;
use super::microbatch::QueryTransfers;
use super::transfers::reserve_label;
use crate::backend::{BackendError, Fault};
use crate::model::{LeaseId, MAX_REQUIREMENTS};

/// The most transfers one lease makes: per key a reserve, a void, a re-reservation and a
/// debt at most.
const MOST_TRANSFERS_PER_LEASE: usize = 4 * MAX_REQUIREMENTS;

impl TigerBeetleBackend {
    /// Every transfer of `lease` on the ledger, oldest first.
    pub(super) async fn lease_transfers(
        &self,
        lease: LeaseId,
    ) -> Result<Vec<Transfer>, BackendError> {
        let limit = u32::try_from(MOST_TRANSFERS_PER_LEASE).unwrap_or(u32::MAX);
        let filter = QueryFilter::new(limit).with_user_data_128(u128::from(lease));
        self.batcher
            .send(QueryTransfers(filter))
            .await
            .map_err(stopped)?
    }
}

/// What `lease` holds on each key, from its transfers on the ledger (`found`): one entry per
/// reserve pending, nothing for a lease the ledger does not know. A pending on a limit
/// account of no key known to `book` is an error naming the account, and nothing is done.
pub fn reserved(
    lease: LeaseId,
    found: &[Transfer],
    book: &Book,
) -> Result<Vec<Reserved>, BackendError> {
    let mut reserved = Vec::new();
    for t in found {
        if !t.flags().contains(transfer::Flags::PENDING) {
            continue;
        }
        let Some(key) = book.key_of_limit_account(t.debit_account_id()) else {
            return Err(Fault::LeaseOnUnknownAccount {
                lease,
                account: format!("{:#034x}", t.debit_account_id()),
            }
            .into());
        };
        if t.id() != id_for_label(&reserve_label(lease, key)) {
            continue; // a re-reservation: done by an earlier complete
        }
        let Some(definition) = book.definition(key) else {
            continue;
        };
        let reserved_at_ms = t
            .timestamp()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        reserved.push(Reserved {
            key: key.to_string(),
            amount: u64::try_from(t.amount()).unwrap_or(u64::MAX),
            kind: definition.kind,
            expires_at_ms: reserved_at_ms.saturating_add(i64::from(t.timeout()) * 1000),
        });
    }
    Ok(reserved)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{LimitDefinition, LimitKind, RetryPolicy};
    use crate::tigerbeetle::transfers::{self, Take};

    fn stamped(mut t: Transfer, at_ms: u64) -> Transfer {
        t.as_raw_mut().timestamp = Duration::from_millis(at_ms).as_nanos() as u64;
        t
    }

    fn book() -> Book {
        let mut book = Book::new(16, RetryPolicy::default());
        book.define(LimitDefinition::rolling("r", 10, 60));
        book.define(LimitDefinition::concurrency("c", 2, 30));
        book
    }

    #[test]
    fn the_reserve_pendings_say_what_a_lease_holds_and_until_when() {
        let lease = LeaseId::new();
        let takes = [("r", 7, 61), ("c", 1, 30)].map(|(key, amount, timeout_seconds)| Take {
            key: key.into(),
            amount,
            timeout_seconds,
        });
        let mut found: Vec<Transfer> = transfers::reserve_chain(lease, &takes)
            .into_iter()
            .map(|t| stamped(t, 1_000_000))
            .collect();
        // What an earlier complete left: a shrink of r (void + re-reserve), the void of c.
        found.extend(transfers::shrink_chain(lease, "r", 3, 30_000));
        found.push(transfers::void(lease, "c"));
        let held = reserved(lease, &found, &book()).unwrap();
        assert_eq!(
            held,
            [
                Reserved {
                    key: "r".into(),
                    amount: 7,
                    kind: LimitKind::Rolling,
                    expires_at_ms: 1_061_000,
                },
                Reserved {
                    key: "c".into(),
                    amount: 1,
                    kind: LimitKind::Concurrency,
                    expires_at_ms: 1_030_000,
                }
            ]
        );
        assert!(reserved(lease, &[], &book()).unwrap().is_empty());
    }

    #[test]
    fn a_pending_on_a_key_unknown_here_is_an_error_naming_the_account() {
        let lease = LeaseId::new();
        let take = Take {
            key: "elsewhere".into(),
            amount: 1,
            timeout_seconds: 5,
        };
        let found = transfers::reserve_chain(lease, &[take]);
        let error = reserved(lease, &found, &book()).unwrap_err().to_string();
        let account = format!(
            "{:#034x}",
            crate::tigerbeetle::accounts::limit_id("elsewhere")
        );
        assert!(error.contains(&account), "{error}");
        assert!(error.contains(&lease.to_string()), "{error}");
        assert!(error.contains("no key defined on this instance"), "{error}");
    }
}
