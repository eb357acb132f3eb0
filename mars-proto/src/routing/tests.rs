//! Unit tests of the routing table: admission, challenges, failures,
//! ordering, refresh.

use super::*;

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(1_700_000_000 + secs)
}

fn identity(n: u32) -> Identity {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_be_bytes());
    Identity::from_ed25519_bytes(b)
}

fn peer_of(identity: Identity, port: u16) -> Peer {
    Peer::new(
        identity,
        NodeAddr::quic(format!("203.0.113.1:{port}")),
        t(0),
    )
}

/// The local id of every test table.
fn local() -> NodeId {
    identity(0).node_id()
}

/// `count` distinct peers whose bucket relative to [`local`] is `bucket`.
fn peers_in(bucket: usize, count: usize) -> Vec<Peer> {
    (1u32..)
        .map(identity)
        .filter(|i| local().bucket_index(&i.node_id()) == Some(bucket))
        .take(count)
        .enumerate()
        .map(|(n, i)| peer_of(i, 1000 + n as u16))
        .collect()
}

fn ids(peers: &[Peer]) -> Vec<NodeId> {
    peers.iter().map(|p| p.id).collect()
}

/// A table with k = 2 whose bucket 255 is full of `a`, `b`; `c`, `d` are
/// more peers of bucket 255.
fn full_bucket() -> (RoutingTable, [Peer; 4]) {
    let mut table = RoutingTable::new(local(), 2);
    let ps = peers_in(255, 4);
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| ps[i].clone());
    assert_eq!(table.on_contact(a.clone(), t(1)), ContactOutcome::Added);
    assert_eq!(table.on_contact(b.clone(), t(2)), ContactOutcome::Added);
    (table, [a, b, c, d])
}

#[test]
fn never_holds_self() {
    let mut table = RoutingTable::new(local(), K);
    let me = peer_of(identity(0), 1);
    assert_eq!(table.on_contact(me, t(1)), ContactOutcome::IsLocal);
    assert!(table.is_empty());
    assert_eq!(table.on_failure(&local()), FailureOutcome::Unknown);
    assert_eq!(
        table.on_challenge_result(&local(), false, t(2)),
        ChallengeOutcome::NotChallenged
    );
    assert!(table.remove(&local()).is_none());
    table.check_invariants().unwrap();
}

#[test]
fn least_recently_seen_first_and_refresh_on_contact() {
    let mut table = RoutingTable::new(local(), 3);
    let ps = peers_in(255, 3);
    for (i, p) in ps.iter().enumerate() {
        assert_eq!(
            table.on_contact(p.clone(), t(i as u64)),
            ContactOutcome::Added
        );
    }
    assert_eq!(ids(table.bucket(255)), ids(&ps));

    let mut moved = ps[0].clone();
    moved.addr = NodeAddr::quic("198.51.100.9:7");
    assert_eq!(table.on_contact(moved, t(10)), ContactOutcome::Updated);
    assert_eq!(ids(table.bucket(255)), vec![ps[1].id, ps[2].id, ps[0].id]);
    let got = table.get(&ps[0].id).unwrap();
    assert_eq!(got.addr, NodeAddr::quic("198.51.100.9:7"));
    assert_eq!(got.last_seen, t(10));
    assert_eq!(table.len(), 3);
    assert_eq!(table.iter().count(), 3);
    table.check_invariants().unwrap();
}

#[test]
fn full_bucket_challenges_oldest_once() {
    let (mut table, [a, _b, c, d]) = full_bucket();
    match table.on_contact(c.clone(), t(3)) {
        ContactOutcome::Challenge { oldest, displaced } => {
            assert_eq!(oldest.id, a.id);
            assert_eq!(displaced, None);
        }
        other => panic!("expected a challenge, got {other:?}"),
    }
    assert_eq!(table.challenged(255), Some(&a.id));
    assert_eq!(table.pending(255).map(|p| p.id), Some(c.id));
    assert!(!table.contains(&c.id));

    // A second newcomer replaces the candidate; no second challenge.
    match table.on_contact(d.clone(), t(4)) {
        ContactOutcome::Pending { displaced } => assert_eq!(displaced.map(|p| p.id), Some(c.id)),
        other => panic!("expected pending, got {other:?}"),
    }
    assert_eq!(table.pending(255).map(|p| p.id), Some(d.id));
    // The same candidate again: refreshed, nothing displaced.
    assert_eq!(
        table.on_contact(d.clone(), t(5)),
        ContactOutcome::Pending { displaced: None }
    );
    assert_eq!(table.pending(255).map(|p| p.last_seen), Some(t(5)));
    table.check_invariants().unwrap();
}

#[test]
fn challenge_alive_keeps_oldest_and_drops_candidate() {
    let (mut table, [a, b, c, _]) = full_bucket();
    table.on_contact(c.clone(), t(3));
    match table.on_challenge_result(&a.id, true, t(9)) {
        ChallengeOutcome::Kept { dropped } => assert_eq!(dropped.map(|p| p.id), Some(c.id)),
        other => panic!("expected kept, got {other:?}"),
    }
    assert_eq!(ids(table.bucket(255)), vec![b.id, a.id]);
    assert_eq!(table.get(&a.id).unwrap().last_seen, t(9));
    assert!(table.pending(255).is_none());
    assert!(table.challenged(255).is_none());
    // The result again is a no-op.
    assert_eq!(
        table.on_challenge_result(&a.id, false, t(10)),
        ChallengeOutcome::NotChallenged
    );
    assert!(table.contains(&a.id));
    table.check_invariants().unwrap();
}

#[test]
fn challenge_dead_evicts_oldest_and_adds_candidate() {
    let (mut table, [a, b, c, _]) = full_bucket();
    table.on_contact(c.clone(), t(3));
    match table.on_challenge_result(&a.id, false, t(9)) {
        ChallengeOutcome::Replaced { evicted, added } => {
            assert_eq!(evicted.id, a.id);
            assert_eq!(added.map(|p| p.id), Some(c.id));
        }
        other => panic!("expected replaced, got {other:?}"),
    }
    assert_eq!(ids(table.bucket(255)), vec![b.id, c.id]);
    assert_eq!(table.len(), 2);
    table.check_invariants().unwrap();
}

#[test]
fn challenge_result_for_unchallenged_ids_is_a_no_op() {
    let (mut table, [a, b, c, d]) = full_bucket();
    for id in [a.id, b.id, c.id, d.id] {
        assert_eq!(
            table.on_challenge_result(&id, false, t(5)),
            ChallengeOutcome::NotChallenged
        );
    }
    table.on_contact(c.clone(), t(6));
    // b is in the bucket but is not the one challenged.
    assert_eq!(
        table.on_challenge_result(&b.id, false, t(7)),
        ChallengeOutcome::NotChallenged
    );
    assert_eq!(ids(table.bucket(255)), vec![a.id, b.id]);
    table.check_invariants().unwrap();
}

#[test]
fn expired_challenge_is_reissued() {
    let (mut table, [a, _, c, d]) = full_bucket();
    table.on_contact(c.clone(), t(3));
    let later = t(3).saturating_add(table.config().challenge_timeout);
    match table.on_contact(d.clone(), later) {
        ContactOutcome::Challenge { oldest, displaced } => {
            assert_eq!(oldest.id, a.id);
            assert_eq!(displaced.map(|p| p.id), Some(c.id));
        }
        other => panic!("expected a new challenge, got {other:?}"),
    }
    table.check_invariants().unwrap();
}

#[test]
fn failure_without_candidate_marks_stale_then_removes() {
    let (mut table, [a, b, ..]) = full_bucket();
    let max = table.config().max_failures;
    for n in 1..max {
        assert_eq!(
            table.on_failure(&a.id),
            FailureOutcome::Stale { failures: n }
        );
    }
    assert_eq!(table.failures(&a.id), Some(max - 1));
    // A successful contact resets the count.
    assert_eq!(table.on_contact(a.clone(), t(5)), ContactOutcome::Updated);
    assert_eq!(table.failures(&a.id), Some(0));
    for n in 1..max {
        assert_eq!(
            table.on_failure(&a.id),
            FailureOutcome::Stale { failures: n }
        );
    }
    match table.on_failure(&a.id) {
        FailureOutcome::Removed { removed } => assert_eq!(removed.id, a.id),
        other => panic!("expected removal, got {other:?}"),
    }
    assert_eq!(ids(table.bucket(255)), vec![b.id]);
    assert_eq!(table.on_failure(&a.id), FailureOutcome::Unknown);
    table.check_invariants().unwrap();
}

#[test]
fn failure_with_candidate_replaces_at_once() {
    let (mut table, [a, b, c, _]) = full_bucket();
    table.on_contact(c.clone(), t(3));
    // b is not the challenged entry; its failure still lets c in.
    match table.on_failure(&b.id) {
        FailureOutcome::Replaced { removed, added } => {
            assert_eq!(removed.id, b.id);
            assert_eq!(added.id, c.id);
        }
        other => panic!("expected replacement, got {other:?}"),
    }
    assert_eq!(ids(table.bucket(255)), vec![a.id, c.id]);
    assert!(table.pending(255).is_none());
    assert!(table.challenged(255).is_none());
    assert_eq!(
        table.on_challenge_result(&a.id, true, t(4)),
        ChallengeOutcome::NotChallenged
    );
    table.check_invariants().unwrap();
}

#[test]
fn failure_of_challenged_entry_with_candidate() {
    let (mut table, [a, b, c, _]) = full_bucket();
    table.on_contact(c.clone(), t(3));
    assert!(matches!(
        table.on_failure(&a.id),
        FailureOutcome::Replaced { .. }
    ));
    assert_eq!(ids(table.bucket(255)), vec![b.id, c.id]);
    assert_eq!(
        table.on_challenge_result(&a.id, false, t(4)),
        ChallengeOutcome::NotChallenged
    );
    table.check_invariants().unwrap();
}

#[test]
fn failure_of_candidate_drops_it() {
    let (mut table, [a, b, c, _]) = full_bucket();
    table.on_contact(c.clone(), t(3));
    match table.on_failure(&c.id) {
        FailureOutcome::PendingDropped { dropped } => assert_eq!(dropped.id, c.id),
        other => panic!("expected the candidate dropped, got {other:?}"),
    }
    table.check_invariants().unwrap();
    // The challenge still resolves; a dead oldest now leaves room.
    let stored_a = table.get(&a.id).unwrap().clone();
    assert_eq!(
        table.on_challenge_result(&a.id, false, t(4)),
        ChallengeOutcome::Replaced {
            evicted: stored_a,
            added: None
        }
    );
    assert_eq!(ids(table.bucket(255)), vec![b.id]);
    table.check_invariants().unwrap();
}

#[test]
fn remove_promotes_the_candidate() {
    let (mut table, [a, b, c, _]) = full_bucket();
    table.on_contact(c.clone(), t(3));
    let removed = table.remove(&b.id).unwrap();
    assert_eq!(removed.peer.id, b.id);
    assert_eq!(removed.promoted.map(|p| p.id), Some(c.id));
    assert_eq!(ids(table.bucket(255)), vec![a.id, c.id]);
    table.check_invariants().unwrap();
    assert!(table.remove(&b.id).is_none());
    let removed = table.remove(&a.id).unwrap();
    assert_eq!((removed.peer.id, removed.promoted), (a.id, None));
    assert_eq!(table.len(), 1);
    table.check_invariants().unwrap();
}

#[test]
fn remove_of_candidate_leaves_entries() {
    let (mut table, [a, b, c, _]) = full_bucket();
    table.on_contact(c.clone(), t(3));
    let removed = table.remove(&c.id).unwrap();
    assert_eq!((removed.peer.id, removed.promoted), (c.id, None));
    assert_eq!(ids(table.bucket(255)), vec![a.id, b.id]);
    table.check_invariants().unwrap();
}

#[test]
fn closest_fresh_lists_stale_peers_last() {
    let mut table = RoutingTable::new(local(), K);
    let mut ps = peers_in(255, 3);
    ps.extend(peers_in(254, 3));
    for p in &ps {
        table.on_contact(p.clone(), t(1));
    }
    let target = ps[0].id;
    let all = table.closest(&target, 10);
    assert_eq!(all.len(), 6);
    assert_eq!(all[0].id, target);
    table.on_failure(&target);
    let fresh = table.closest_fresh(&target, 10);
    assert_eq!(fresh.len(), 6);
    assert_eq!(fresh[5].id, target);
    assert_eq!(ids(&fresh[..5]), ids(&all[1..]));
    assert_eq!(ids(&table.closest_fresh(&target, 5)), ids(&all[1..]));
}

#[test]
fn closest_matches_brute_force_across_buckets() {
    let mut table = RoutingTable::new(local(), 4);
    for b in [255, 254, 253, 250, 249] {
        for p in peers_in(b, 4) {
            table.on_contact(p, t(1));
        }
    }
    table.check_invariants().unwrap();
    let all: Vec<Peer> = table.iter().cloned().collect();
    let mut buf = Vec::new();
    for seed in 0u32..64 {
        let target = identity(10_000 + seed).node_id();
        let mut want = all.clone();
        want.sort_by_key(|p| p.id.distance(&target));
        for n in [0, 1, 3, 7, 20, 100] {
            let got = table.closest(&target, n);
            assert_eq!(ids(&got), ids(&want[..n.min(want.len())]), "n = {n}");
            table.closest_into(&target, n, &mut buf);
            assert_eq!(buf, got);
        }
    }
    let mut want = all.clone();
    want.sort_by_key(|p| p.id.distance(&local()));
    assert_eq!(ids(&table.closest(&local(), 100)), ids(&want));
}

#[test]
fn random_id_lands_in_the_asked_bucket() {
    let table = RoutingTable::new(local(), K);
    for b in 0..BUCKETS {
        for random in [[0u8; 32], [0xff; 32], [0x5a; 32]] {
            let id = table.random_id_in_bucket(b, random);
            assert_eq!(local().bucket_index(&id), Some(b));
        }
    }
    assert_ne!(
        table.random_id_in_bucket(200, [1; 32]),
        table.random_id_in_bucket(200, [2; 32])
    );
    assert_eq!(
        local().bucket_index(&table.random_id_in_bucket(999, [3; 32])),
        Some(255)
    );
}

#[test]
fn stale_buckets_span_nearest_populated_to_farthest() {
    let hour = DEFAULT_REFRESH_INTERVAL;
    let mut table = RoutingTable::new(local(), K);
    assert!(table.stale_buckets(t(0), hour).is_empty());
    assert_eq!(table.next_refresh_at(hour), None);

    let start = t(10_000);
    let p = peers_in(252, 1).remove(0);
    table.on_contact(p, start);
    // Bucket 252 was just active; 253..=255 never were.
    assert_eq!(table.stale_buckets(start, hour), vec![253, 254, 255]);
    for b in 253..=255 {
        let target = table.random_id_in_bucket(b, [7; 32]);
        table.touch_bucket_for(&target, start);
    }
    assert!(table.stale_buckets(start, hour).is_empty());
    assert_eq!(
        table.next_refresh_at(hour),
        Some(start.saturating_add(hour))
    );
    let later = start.saturating_add(hour);
    assert_eq!(table.stale_buckets(later, hour), vec![252, 253, 254, 255]);
    table.touch_bucket_for(&local(), later);
    assert_eq!(table.stale_buckets(later, hour).len(), 4);
}

#[test]
fn k_is_clamped() {
    assert_eq!(RoutingTable::new(local(), 0).k(), 1);
    assert_eq!(RoutingTable::new(local(), 100_000).k(), MAX_K);
    let mut table = RoutingTable::new(local(), 0);
    let ps = peers_in(255, 2);
    assert_eq!(table.on_contact(ps[0].clone(), t(1)), ContactOutcome::Added);
    assert!(matches!(
        table.on_contact(ps[1].clone(), t(2)),
        ContactOutcome::Challenge { .. }
    ));
    table.check_invariants().unwrap();
}

#[test]
fn closest_exact_for_ids_sharing_long_prefixes() {
    // Ids that agree on far more than the 56 bits the fast sort looks at
    // take the exact fallback; the order must still be exact.
    let local = NodeId::from_bytes([0; 32]);
    let mut table = RoutingTable::new(local, 8);
    let crafted = |tail: u8, bucket_byte: u8| {
        let mut b = [0x33u8; 32];
        b[0] = bucket_byte;
        b[31] = tail;
        let id = NodeId::from_bytes(b);
        Peer {
            identity: identity(u32::from(tail)),
            id,
            addr: NodeAddr::quic("203.0.113.5:1"),
            last_seen: t(0),
        }
    };
    for tail in [9, 3, 250, 77, 128, 0, 1] {
        table.on_contact(crafted(tail, 0x80), t(1));
        table.on_contact(crafted(tail, 0x01), t(1));
    }
    table.check_invariants().unwrap();
    for target in [[0u8; 32], [0x33; 32], [0xff; 32], [0x80; 32]] {
        let target = NodeId::from_bytes(target);
        let mut want: Vec<NodeId> = table.iter().map(|p| p.id).collect();
        want.sort_by_key(|id| id.distance(&target));
        assert_eq!(ids(&table.closest(&target, 100)), want);
    }
}
