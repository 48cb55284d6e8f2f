use std::collections::HashMap as ModelMap;

use proptest::prelude::*;

use super::*;

/// A lease id made at `ms` (Unix ms), with `n` as its random part.
fn id_at(ms: u64, n: u128) -> LeaseId {
    LeaseId::from_parts(ms, n)
}

const NOW: i64 = 1_800_000_000_000;

#[test]
fn leases_near_the_clock_go_to_the_part_of_their_time_and_others_are_strays() {
    let mut map = LeaseMap::default();
    let now = NOW as u64;
    let here = id_at(now, 1);
    let same_part = id_at(now - now % PART_MS, 2);
    let next_part = id_at(now - now % PART_MS + PART_MS, 3);
    let far = id_at(now - NEAR_MS - 1, 4);
    for (i, lease) in [here, same_part, next_part, far].into_iter().enumerate() {
        assert_eq!(map.insert(lease, i, NOW), None);
    }
    assert_eq!(map.len(), 4);
    assert_eq!(map.parts.len(), 2);
    assert_eq!(map.strays.len(), 1);
    assert_eq!(map.get(&far), Some(&3));
    // Replacing keeps each lease where it is, even when the clock has moved.
    assert_eq!(map.insert(here, 10, NOW + 2 * NEAR_MS as i64), Some(0));
    assert_eq!(map.insert(far, 13, NOW - NEAR_MS as i64), Some(3));
    assert_eq!((map.len(), map.parts.len(), map.strays.len()), (4, 2, 1));
    assert_eq!(map.remove(&next_part), Some(2));
    assert_eq!(map.parts.len(), 1, "a part left empty goes");
    assert_eq!(map.remove(&next_part), None);
    assert_eq!(map.len(), 3);
}

#[test]
fn a_part_mostly_forgotten_gives_back_its_room() {
    let mut map = LeaseMap::default();
    let now = NOW as u64 - NOW as u64 % PART_MS;
    let leases: Vec<LeaseId> = (0..10_000).map(|n| id_at(now, n)).collect();
    for &lease in &leases {
        map.insert(lease, (), NOW);
    }
    let full = map.parts[&part_of(&leases[0])].capacity();
    for lease in &leases[..9_990] {
        assert_eq!(map.remove(lease), Some(()));
    }
    let part = &map.parts[&part_of(&leases[0])];
    assert_eq!(part.len(), 10);
    assert!(part.capacity() < full / 16, "{} of {full}", part.capacity());
    for lease in &leases[9_990..] {
        assert_eq!(map.get(lease), Some(&()));
    }
    // A thousand parts, all forgotten again: the map of parts gives back its room too.
    let spread: Vec<LeaseId> = (0..1_000).map(|i| id_at(now + i * PART_MS, 1)).collect();
    for &lease in &spread {
        map.insert(lease, (), NOW);
    }
    let many = map.parts.capacity();
    for lease in &spread {
        map.remove(lease);
    }
    assert!(
        map.parts.capacity() < many / 16,
        "{} of {many}",
        map.parts.capacity()
    );
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Step {
    Insert(usize, u32),
    Remove(usize),
    Change(usize),
    /// Removes the lease if its value is even.
    RemoveIfEven(usize),
    /// Moves the clock by this many ms.
    Tick(i64),
}

/// Ids at times around the clock's start: in one part, across a part boundary, an hour away
/// (near, then far as the clock moves) and far in the past and future.
fn pool() -> Vec<LeaseId> {
    let now = NOW as u64;
    let offsets: [i64; 8] = [0, 1, 255, 256, -1, 3_600_000, -3_600_001, 90_000_000];
    (0..16)
        .map(|i| {
            let ms = now.saturating_add_signed(offsets[i % offsets.len()]);
            id_at(ms, i as u128)
        })
        .collect()
}

proptest! {
    #[test]
    fn answers_like_a_plain_map(steps in proptest::collection::vec(
        proptest::prop_oneof![
            (0usize..16, proptest::num::u32::ANY).prop_map(|(i, v)| Step::Insert(i, v)),
            (0usize..16).prop_map(Step::Remove),
            (0usize..16).prop_map(Step::RemoveIfEven),
            (0usize..16).prop_map(Step::Change),
            (-2_000_000i64..2_000_000).prop_map(Step::Tick),
        ],
        1..120,
    )) {
        let pool = pool();
        let mut map = LeaseMap::default();
        let mut model: ModelMap<LeaseId, u32> = ModelMap::new();
        let mut now = NOW;
        for step in steps {
            match step {
                Step::Insert(i, v) => {
                    prop_assert_eq!(map.insert(pool[i], v, now), model.insert(pool[i], v));
                }
                Step::Remove(i) => prop_assert_eq!(map.remove(&pool[i]), model.remove(&pool[i])),
                Step::RemoveIfEven(i) => {
                    let expected = match model.get(&pool[i]) {
                        Some(v) if v % 2 == 0 => model.remove(&pool[i]),
                        _ => None,
                    };
                    prop_assert_eq!(map.remove_if(&pool[i], |v| v % 2 == 0), expected);
                }
                Step::Change(i) => {
                    if let Some(v) = map.get_mut(&pool[i]) {
                        *v = v.wrapping_add(1);
                    }
                    if let Some(v) = model.get_mut(&pool[i]) {
                        *v = v.wrapping_add(1);
                    }
                }
                Step::Tick(ms) => now += ms,
            }
            prop_assert_eq!(map.len(), model.len());
            for lease in &pool {
                prop_assert_eq!(map.get(lease), model.get(lease));
            }
            let mut listed: Vec<(LeaseId, u32)> = map.iter().map(|(l, v)| (*l, *v)).collect();
            listed.sort();
            let mut expected: Vec<(LeaseId, u32)> = model.iter().map(|(l, v)| (*l, *v)).collect();
            expected.sort();
            prop_assert_eq!(listed, expected);
            prop_assert!(map.parts.values().all(|p| !p.is_empty()));
        }
    }
}
