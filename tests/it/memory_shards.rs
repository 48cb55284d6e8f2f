//! The memory backend's shape: keys spread over several arbiters by a stable hash. (The
//! conformance, model-based and stress suites run with keys on several arbiters; a reserve
//! dropped mid-way is tested next to the coordinator.)

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
