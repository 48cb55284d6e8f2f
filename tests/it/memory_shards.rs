//! The memory backend's shape: keys spread over several arbiters by a stable hash of their
//! group (the name up to the last `:`). (The conformance, model-based and stress suites run
//! with keys on several arbiters; a reserve dropped mid-way is tested next to the
//! coordinator.)

use ratelimiter::actors::MemoryBackend;

#[test]
fn keys_spread_over_every_arbiter() {
    let keys: Vec<String> = (0..64).map(|i| format!("tenant:{i}:tpm")).collect();
    for arbiters in [2usize, 4] {
        let mut used = vec![0usize; arbiters];
        for key in &keys {
            let shard = MemoryBackend::shard_of(key, arbiters);
            assert_eq!(shard, MemoryBackend::shard_of(key, arbiters), "stable");
            used[shard] += 1;
        }
        assert!(used.iter().all(|&n| n > 0), "{arbiters} arbiters: {used:?}");
    }
}

#[test]
fn the_keys_of_one_group_share_a_shard() {
    // One model's keys, and one tenant's, each land together, for any shard count.
    for shards in [2usize, 3, 4, 16] {
        for group in ["global:llm:openai:gpt-4o", "tenant:acme:llm"] {
            let keys =
                ["rpm", "tpm", "concurrency", "daily_tokens"].map(|n| format!("{group}:{n}"));
            let first = MemoryBackend::shard_of(&keys[0], shards);
            for key in &keys {
                assert_eq!(MemoryBackend::shard_of(key, shards), first, "{key}");
            }
            // An empty last segment leaves the same group.
            assert_eq!(MemoryBackend::shard_of(&format!("{group}:"), shards), first);
        }
    }
}

#[test]
fn groups_spread_over_the_shards_and_a_name_without_colon_is_its_own_group() {
    let models: Vec<String> = (0..64)
        .map(|i| format!("global:llm:p:model{i}:tpm"))
        .collect();
    let used: std::collections::HashSet<usize> = (models.iter())
        .map(|key| MemoryBackend::shard_of(key, 4))
        .collect();
    assert_eq!(used.len(), 4, "64 models over 4 shards use every shard");
    // Plain names are groups of their own: they spread too.
    let plain: std::collections::HashSet<usize> = (0..64)
        .map(|i| MemoryBackend::shard_of(&format!("key{i}"), 4))
        .collect();
    assert_eq!(plain.len(), 4);
}
