//! [`ClusterDefinitions`]: the limit definitions kept in the TigerBeetle cluster itself, so
//! every instance sharing the cluster shares them (see [`crate::definitions`]).
//!
//! TigerBeetle stores accounts and transfers only, and an account can never change, which
//! is exactly what a versioned record needs. One version of one key is a linked chain of
//! accounts on their own ledger ([`DEFINITION_LEDGER`], never used for capacity):
//!
//! - *chunks* (code [`CHUNK_CODE`]): the state as compact JSON, 28 bytes per account in
//!   `user_data_128` / `user_data_64` / `user_data_32`; id = label
//!   `def:chunk:<head id>:<index>`;
//! - the *head* (code [`HEAD_CODE`], last in the chain): `user_data_128` = the key's tag
//!   (label `def:key:<key>`), `user_data_64` = the version, `user_data_32` = the JSON's length;
//!   id = label `def:head:<key>:<version>`.
//!
//! A linked chain is created whole or not at all, so a head is never without its chunks.
//! Two instances writing the same version of a key compute the same ids: the cluster takes
//! the first and refuses the second (`exists` or `exists_with_different_*`); the loser reads
//! the winner's record back and either finds its own content (success) or reports a
//! conflict. Heads are found with `query_accounts`: the newest version of a key by its tag
//! (reversed, limit 1), every change after a point in time by timestamp.

use std::collections::HashMap;

use actix::prelude::*;
use async_trait::async_trait;
use tigerbeetle_unofficial::core::query_filter;
use tigerbeetle_unofficial::{account, Account, QueryFilter};

use super::ids::id_for_label;
use super::microbatch::{
    lookup_accounts_paged, stopped, CreateAccounts, LookupAccounts, MicrobatchActor, QueryAccounts,
    LOOKUP_PAGE,
};
use crate::backend::{BackendError, Fault};
use crate::definitions::{Changes, Cursor, DefinitionStore, StoreError, Versioned};
use crate::model::LimitState;

/// The ledger of definition records (capacity lives on ledger 1).
pub const DEFINITION_LEDGER: u32 = 2;
/// The code of a version's head account.
pub const HEAD_CODE: u16 = 2;
/// The code of a version's chunk accounts.
pub const CHUNK_CODE: u16 = 3;
/// Bytes of JSON carried by one chunk account.
const CHUNK_BYTES: usize = 28;
/// Most chunks of one version: the chain (chunks + head) fits one request even on a
/// `--development` server (253 accounts of 128 bytes).
const MAX_CHUNKS: usize = 200;
/// Most heads returned by one query (the lookup page: a `--development` server answers at
/// most 253 accounts per request).
const PAGE: usize = LOOKUP_PAGE;

/// The definitions of one TigerBeetle cluster.
#[derive(Debug)]
pub struct ClusterDefinitions {
    batcher: Addr<MicrobatchActor>,
    description: String,
}

/// The tag shared by every version of `key` (the head's `user_data_128`).
pub fn key_tag(key: &str) -> u128 {
    id_for_label(&format!("def:key:{key}"))
}

/// The head id of `version` of `key`.
pub fn head_id(key: &str, version: u64) -> u128 {
    id_for_label(&format!("def:head:{key}:{version}"))
}

fn chunk_id(head: u128, index: usize) -> u128 {
    id_for_label(&format!("def:chunk:{head:032x}:{index}"))
}

/// The accounts of one version, chunks first, the head last; all but the head linked.
pub fn encode(version: u64, state: &LimitState) -> Result<Vec<Account>, StoreError> {
    let key = &state.definition.key;
    let json = serde_json::to_vec(state).map_err(|e| StoreError::TooLarge {
        key: key.clone(),
        reason: format!("cannot be encoded: {e}"),
    })?;
    let chunks = json.len().div_ceil(CHUNK_BYTES);
    if chunks > MAX_CHUNKS {
        return Err(StoreError::TooLarge {
            key: key.clone(),
            reason: format!(
                "the definition is {} bytes as JSON; the shared registry takes at most {} \
                 (shorten description or unit)",
                json.len(),
                MAX_CHUNKS * CHUNK_BYTES
            ),
        });
    }
    let head = head_id(key, version);
    let mut accounts: Vec<Account> = json
        .chunks(CHUNK_BYTES)
        .enumerate()
        .map(|(index, bytes)| {
            let mut padded = [0u8; CHUNK_BYTES];
            padded[..bytes.len()].copy_from_slice(bytes);
            let (d128, rest) = padded.split_at(16);
            let (d64, d32) = rest.split_at(8);
            Account::new(chunk_id(head, index), DEFINITION_LEDGER, CHUNK_CODE)
                .with_user_data_128(u128::from_le_bytes(d128.try_into().unwrap_or_default()))
                .with_user_data_64(u64::from_le_bytes(d64.try_into().unwrap_or_default()))
                .with_user_data_32(u32::from_le_bytes(d32.try_into().unwrap_or_default()))
                .with_flags(account::Flags::LINKED)
        })
        .collect();
    let length = u32::try_from(json.len()).unwrap_or(u32::MAX);
    accounts.push(
        Account::new(head, DEFINITION_LEDGER, HEAD_CODE)
            .with_user_data_128(key_tag(key))
            .with_user_data_64(version)
            .with_user_data_32(length),
    );
    Ok(accounts)
}

/// The chunk ids a head points to.
fn chunk_ids(head: &Account) -> Vec<u128> {
    let length = head.user_data_32() as usize;
    (0..length.div_ceil(CHUNK_BYTES))
        .map(|index| chunk_id(head.id(), index))
        .collect()
}

/// The state a head and its chunks (looked up by id) hold.
pub fn decode(head: &Account, chunks: &HashMap<u128, Account>) -> Result<Versioned, StoreError> {
    let record = format!(
        "{:032x} version {}",
        head.user_data_128(),
        head.user_data_64()
    );
    let unreadable = |reason: String| StoreError::Unreadable {
        record: record.clone(),
        reason,
    };
    let length = head.user_data_32() as usize;
    let mut json = Vec::with_capacity(length + CHUNK_BYTES);
    for id in chunk_ids(head) {
        let chunk = chunks
            .get(&id)
            .ok_or_else(|| unreadable("a chunk account is missing".into()))?;
        json.extend_from_slice(&chunk.user_data_128().to_le_bytes());
        json.extend_from_slice(&chunk.user_data_64().to_le_bytes());
        json.extend_from_slice(&chunk.user_data_32().to_le_bytes());
    }
    json.truncate(length);
    let state: LimitState =
        serde_json::from_slice(&json).map_err(|e| unreadable(format!("not a limit state: {e}")))?;
    state
        .validate()
        .map_err(|e| unreadable(format!("invalid limit state: {e}")))?;
    if key_tag(&state.definition.key) != head.user_data_128()
        || head_id(&state.definition.key, head.user_data_64()) != head.id()
    {
        return Err(unreadable("the record does not belong to its key".into()));
    }
    Ok(Versioned {
        version: head.user_data_64(),
        state,
    })
}

impl ClusterDefinitions {
    /// The definitions of the cluster the batcher talks to (`description` names it in logs).
    pub fn new(batcher: Addr<MicrobatchActor>, description: String) -> Self {
        ClusterDefinitions {
            batcher,
            description,
        }
    }

    async fn query(&self, filter: QueryFilter) -> Result<Vec<Account>, StoreError> {
        Ok(self
            .batcher
            .send(QueryAccounts(filter))
            .await
            .map_err(stopped)??)
    }

    /// Every chunk of `heads`, by id.
    async fn chunks_of(&self, heads: &[Account]) -> Result<HashMap<u128, Account>, StoreError> {
        let ids: Vec<u128> = heads.iter().flat_map(chunk_ids).collect();
        Ok(lookup_accounts_paged(&self.batcher, &ids)
            .await?
            .into_iter()
            .map(|a| (a.id(), a))
            .collect())
    }

    /// The version stored under `version` of `key`, if any.
    async fn read_version(&self, key: &str, version: u64) -> Result<Option<Versioned>, StoreError> {
        let heads = self
            .batcher
            .send(LookupAccounts(vec![head_id(key, version)]))
            .await
            .map_err(stopped)??;
        let Some(head) = heads.into_iter().next() else {
            return Ok(None);
        };
        let chunks = self.chunks_of(std::slice::from_ref(&head)).await?;
        decode(&head, &chunks).map(Some)
    }
}

fn heads_filter() -> QueryFilter {
    QueryFilter::new(PAGE as u32)
        .with_ledger(DEFINITION_LEDGER)
        .with_code(HEAD_CODE)
}

#[async_trait]
impl DefinitionStore for ClusterDefinitions {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn changes_since(&self, cursor: Cursor) -> Result<Changes, StoreError> {
        let mut newest: HashMap<u128, Account> = HashMap::new();
        let mut at = cursor.0;
        loop {
            let mut filter = heads_filter();
            filter.as_raw_mut().timestamp_min = at.saturating_add(1);
            let page = self.query(filter).await?;
            let full = page.len() >= PAGE;
            for head in page {
                at = at.max(head.as_raw().timestamp);
                let tag = head.user_data_128();
                if newest
                    .get(&tag)
                    .map_or(true, |known| known.user_data_64() < head.user_data_64())
                {
                    newest.insert(tag, head);
                }
            }
            if !full {
                break;
            }
        }
        let heads: Vec<Account> = newest.into_values().collect();
        let chunks = self.chunks_of(&heads).await?;
        let mut changes = Changes {
            cursor: Cursor(at),
            ..Changes::default()
        };
        for head in &heads {
            match decode(head, &chunks) {
                Ok(versioned) => changes.states.push(versioned),
                Err(e) => changes.unreadable.push(e),
            }
        }
        changes
            .states
            .sort_by(|a, b| a.state.definition.key.cmp(&b.state.definition.key));
        Ok(changes)
    }

    async fn latest(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let filter = heads_filter()
            .with_user_data_128(key_tag(key))
            .with_limit(1)
            .with_flags(query_filter::Flags::REVERSED);
        let heads = self.query(filter).await?;
        let Some(head) = heads.into_iter().next() else {
            return Ok(None);
        };
        let chunks = self.chunks_of(std::slice::from_ref(&head)).await?;
        decode(&head, &chunks).map(Some)
    }

    async fn write(&self, version: u64, state: &LimitState) -> Result<(), StoreError> {
        let key = &state.definition.key;
        let accounts = encode(version, state)?;
        let failures = self
            .batcher
            .send(CreateAccounts(accounts))
            .await
            .map_err(stopped)??;
        if failures.is_empty() {
            return Ok(());
        }
        // Someone wrote this version first (or this is a retry of our own write): the
        // record in the cluster decides.
        match self.read_version(key, version).await? {
            Some(stored) if stored.state == *state => Ok(()),
            Some(_) => Err(StoreError::Conflict {
                key: key.clone(),
                version,
            }),
            None => {
                let (index, kind) = failures[0];
                Err(BackendError::from(Fault::AccountRefused {
                    label: format!("definition {key} version {version}, account {index}"),
                    code: format!("{kind:?}"),
                })
                .into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LimitDefinition;

    fn round_trip(state: &LimitState, version: u64) -> Versioned {
        let accounts = encode(version, state).unwrap();
        let (head, chunks) = accounts.split_last().unwrap();
        let chunks = chunks.iter().map(|a| (a.id(), *a)).collect();
        decode(head, &chunks).unwrap()
    }

    #[test]
    fn a_state_survives_the_round_trip_through_accounts() {
        let mut definition = LimitDefinition::rolling("tenant:a:b:1:tpm", 30_000, 60);
        definition.description = "ünïcode and \"quotes\"".into();
        definition.unit = "tokens".into();
        let state = LimitState::active(definition);
        let back = round_trip(&state, 7);
        assert_eq!(back.version, 7);
        assert_eq!(back.state, state);
    }

    #[test]
    fn every_account_but_the_head_is_linked_and_ids_follow_the_labels() {
        let state = LimitState::active(LimitDefinition::concurrency("k", 3, 30));
        let accounts = encode(2, &state).unwrap();
        let (head, chunks) = accounts.split_last().unwrap();
        assert!(!chunks.is_empty());
        assert!(chunks
            .iter()
            .all(|a| a.flags().contains(account::Flags::LINKED) && a.code() == CHUNK_CODE));
        assert!(!head.flags().contains(account::Flags::LINKED));
        assert_eq!(head.id(), head_id("k", 2));
        assert_eq!(head.user_data_128(), key_tag("k"));
        assert_eq!((head.ledger(), head.code()), (DEFINITION_LEDGER, HEAD_CODE));
        assert_ne!(head_id("k", 2), head_id("k", 3));
    }

    #[test]
    fn a_missing_chunk_or_a_foreign_record_is_unreadable() {
        let state = LimitState::active(LimitDefinition::rolling("k", 5, 60));
        let accounts = encode(1, &state).unwrap();
        let (head, chunks) = accounts.split_last().unwrap();
        let mut some: HashMap<u128, Account> = chunks.iter().map(|a| (a.id(), *a)).collect();
        let first = chunks[0].id();
        some.remove(&first);
        assert!(matches!(
            decode(head, &some),
            Err(StoreError::Unreadable { .. })
        ));
        let all = chunks.iter().map(|a| (a.id(), *a)).collect();
        let foreign = head.with_user_data_128(key_tag("other"));
        assert!(matches!(
            decode(&foreign, &all),
            Err(StoreError::Unreadable { .. })
        ));
    }

    #[test]
    fn a_state_too_large_for_one_chain_is_refused_by_name() {
        let mut definition = LimitDefinition::rolling("k", 5, 60);
        definition.description = "x".repeat(MAX_CHUNKS * CHUNK_BYTES);
        let error = encode(1, &LimitState::active(definition)).unwrap_err();
        assert!(error.to_string().contains("shorten description"), "{error}");
    }
}
