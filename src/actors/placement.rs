//! Where the memory backend keeps a key: its group ([`key_group`]) and the shard that group
//! hashes to ([`shard_of`]).
//!
//! Keys are placed by group, not one by one: the keys a request names are mostly one
//! model's (rpm, tpm, concurrency) and one tenant's, so a request takes each group's keys
//! on one shard in one step, and callers on different models or tenants work on different
//! shards (and locks) at once.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// The group of `key`: its name up to its last `:` (`global:llm:openai:gpt-4o` for
/// `global:llm:openai:gpt-4o:tpm`), or the whole name if it has none.
pub fn key_group(key: &str) -> &str {
    key.rsplit_once(':').map_or(key, |(group, _)| group)
}

/// The shard (of `shards`) that owns `key`: a fixed hash of the key's [group](key_group).
pub fn shard_of(key: &str, shards: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    key_group(key).hash(&mut hasher);
    (hasher.finish() % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_the_name_up_to_its_last_colon() {
        assert_eq!(
            key_group("global:llm:openai:gpt-4o:tpm"),
            "global:llm:openai:gpt-4o"
        );
        assert_eq!(key_group("tenant:acme:llm:daily_tokens"), "tenant:acme:llm");
        assert_eq!(key_group("plain"), "plain");
        assert_eq!(key_group("trailing:"), "trailing");
        assert_eq!(key_group(":leading"), "");
        assert_eq!(key_group(""), "");
    }

    #[test]
    fn a_key_goes_to_its_groups_shard_and_one_shard_takes_everything() {
        for shards in [1usize, 2, 16, 4096] {
            let shard = shard_of("global:llm:openai:gpt-4o:rpm", shards);
            assert!(shard < shards);
            assert_eq!(shard_of("global:llm:openai:gpt-4o:tpm", shards), shard);
        }
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0, "0 shards is taken as 1");
    }
}
