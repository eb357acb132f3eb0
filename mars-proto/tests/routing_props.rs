//! Routing-table properties under arbitrary sequences of contacts,
//! challenge results, failures, removals and lookups:
//! - the structural invariants hold after every step;
//! - no peer leaves the table (or its pending slot) without an outcome that
//!   names it: a model fed only by the outcomes stays equal to the table;
//! - `closest` equals a brute-force sort of every entry by XOR distance,
//!   for arbitrary targets and n, and `closest_fresh` equals the fresh
//!   entries sorted followed by the stale ones sorted.

use std::collections::BTreeSet;
use std::time::Duration;

use mars_proto::routing::{
    BUCKETS, ChallengeOutcome, ContactOutcome, FailureOutcome, Peer, Removed, RoutingConfig,
    RoutingTable,
};
use mars_proto::wire::NodeAddr;
use mars_proto::{Identity, NodeId, Timestamp};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Peer `pool[i]` answered, `dt` seconds later, at address variant `a`.
    Contact {
        i: usize,
        dt: u64,
        a: u8,
    },
    /// Resolve the challenge in flight in `pool[i]`'s bucket (or, if none,
    /// report a result for `pool[i]` itself).
    Challenge {
        i: usize,
        alive: bool,
        dt: u64,
    },
    Failure {
        i: usize,
    },
    Remove {
        i: usize,
    },
    Touch {
        i: usize,
        dt: u64,
    },
    /// Compare `closest` against brute force for `target` and `n`.
    Closest {
        target: [u8; 32],
        n: usize,
    },
}

/// Bucket indices: mostly a few crowded ones, so buckets fill and contend,
/// plus low ones, where the distance order between buckets is subtle.
fn bucket() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => prop::sample::select(vec![255usize, 254, 253, 251, 200]),
        2 => prop::sample::select(vec![0usize, 1, 2, 3, 4, 7, 8, 9, 63, 64, 65, 127, 128]),
        1 => 0..BUCKETS,
    ]
}

fn op(pool: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..pool, 0u64..20, 0u8..3).prop_map(|(i, dt, a)| Op::Contact { i, dt, a }),
        2 => (0..pool, any::<bool>(), 0u64..40)
            .prop_map(|(i, alive, dt)| Op::Challenge { i, alive, dt }),
        2 => (0..pool).prop_map(|i| Op::Failure { i }),
        1 => (0..pool).prop_map(|i| Op::Remove { i }),
        1 => (0..pool, 0u64..100).prop_map(|(i, dt)| Op::Touch { i, dt }),
        2 => (any::<[u8; 32]>(), 0usize..40).prop_map(|(target, n)| Op::Closest { target, n }),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    local: [u8; 32],
    k: usize,
    max_failures: u32,
    /// (bucket, random bytes) of each pool id, relative to `local`.
    pool: Vec<(usize, [u8; 32])>,
    ops: Vec<Op>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<[u8; 32]>(),
        1usize..5,
        0u32..4,
        prop::collection::vec((bucket(), any::<[u8; 32]>()), 1..40),
    )
        .prop_flat_map(|(local, k, max_failures, pool)| {
            let n = pool.len();
            prop::collection::vec(op(n), 1..120).prop_map(move |ops| Case {
                local,
                k,
                max_failures,
                pool: pool.clone(),
                ops,
            })
        })
}

fn peer(id: NodeId, a: u8, now: Timestamp) -> Peer {
    Peer {
        identity: Identity::from_ed25519_bytes(*id.as_bytes()),
        id,
        addr: NodeAddr::quic(format!("203.0.113.{a}:4433")),
        last_seen: now,
    }
}

/// Every id the table holds, as entry or pending candidate.
fn held(table: &RoutingTable) -> BTreeSet<NodeId> {
    let mut ids: BTreeSet<NodeId> = table.iter().map(|p| p.id).collect();
    for b in 0..BUCKETS {
        if let Some(p) = table.pending(b) {
            ids.insert(p.id);
        }
    }
    ids
}

fn sorted_by_distance<'a>(peers: impl Iterator<Item = &'a Peer>, target: &NodeId) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = peers.map(|p| p.id).collect();
    ids.sort_by_key(|id| id.distance(target));
    ids
}

fn check_closest(table: &RoutingTable, target: &NodeId, n: usize) -> Result<(), TestCaseError> {
    let mut want = sorted_by_distance(table.iter(), target);
    let all: Vec<NodeId> = table.closest_iter(target).map(|p| p.id).collect();
    prop_assert_eq!(&all, &want);
    want.truncate(n);
    let got: Vec<NodeId> = table.closest(target, n).iter().map(|p| p.id).collect();
    prop_assert_eq!(&got, &want);

    let stale = |p: &&Peer| table.failures(&p.id).is_some_and(|f| f > 0);
    let mut want_fresh = sorted_by_distance(table.iter().filter(|p| !stale(p)), target);
    want_fresh.extend(sorted_by_distance(table.iter().filter(stale), target));
    want_fresh.truncate(n);
    let got_fresh: Vec<NodeId> = table
        .closest_fresh(target, n)
        .iter()
        .map(|p| p.id)
        .collect();
    prop_assert_eq!(got_fresh, want_fresh);
    Ok(())
}

fn run(case: Case) -> Result<(), TestCaseError> {
    let local = NodeId::from_bytes(case.local);
    let mut table = RoutingTable::with_config(
        local,
        RoutingConfig {
            k: case.k,
            max_failures: case.max_failures,
            challenge_timeout: Duration::from_secs(30),
        },
    );
    let pool: Vec<NodeId> = case
        .pool
        .iter()
        .map(|&(b, random)| table.random_id_in_bucket(b, random))
        .collect();
    for (id, &(b, _)) in pool.iter().zip(&case.pool) {
        prop_assert_eq!(local.bucket_index(id), Some(b));
    }
    // The model: what the outcomes say the table holds.
    let mut model: BTreeSet<NodeId> = BTreeSet::new();
    let mut now = Timestamp::from_secs(1_700_000_000);
    let mut buf = Vec::new();

    for op in case.ops {
        match op {
            Op::Contact { i, dt, a } => {
                now = now.saturating_add(Duration::from_secs(dt));
                let id = pool[i];
                match table.on_contact(peer(id, a, now), now) {
                    ContactOutcome::Added => {
                        prop_assert!(model.insert(id), "added a held id");
                    }
                    ContactOutcome::Updated => {
                        prop_assert!(model.contains(&id));
                        prop_assert_eq!(
                            table.bucket(table_bucket(&local, &id)).last().map(|p| p.id),
                            Some(id)
                        );
                        prop_assert_eq!(table.failures(&id), Some(0));
                    }
                    ContactOutcome::Pending { displaced }
                    | ContactOutcome::Challenge { displaced, .. } => {
                        model.insert(id);
                        if let Some(d) = displaced {
                            prop_assert!(d.id != id);
                            prop_assert!(model.remove(&d.id));
                        }
                        let b = table_bucket(&local, &id);
                        prop_assert_eq!(table.pending(b).map(|p| p.id), Some(id));
                        prop_assert_eq!(table.bucket(b).len(), table.k());
                    }
                    ContactOutcome::IsLocal => prop_assert_eq!(id, local),
                }
                prop_assert!(
                    table.contains(&id) || table.pending(table_bucket(&local, &id)).is_some()
                );
            }
            Op::Challenge { i, alive, dt } => {
                now = now.saturating_add(Duration::from_secs(dt));
                let b = table_bucket(&local, &pool[i]);
                let challenged = table.challenged(b).copied();
                let id = challenged.unwrap_or(pool[i]);
                let outcome = table.on_challenge_result(&id, alive, now);
                match (&outcome, challenged) {
                    (ChallengeOutcome::NotChallenged, None) => {}
                    (ChallengeOutcome::Kept { dropped }, Some(_)) => {
                        prop_assert!(alive);
                        if let Some(d) = dropped {
                            prop_assert!(model.remove(&d.id));
                        }
                        prop_assert_eq!(table.bucket(b).last().map(|p| p.id), Some(id));
                    }
                    (ChallengeOutcome::Replaced { evicted, added }, Some(_)) => {
                        prop_assert!(!alive);
                        prop_assert_eq!(evicted.id, id);
                        prop_assert!(model.remove(&id));
                        if let Some(a) = added {
                            prop_assert!(table.contains(&a.id));
                        }
                    }
                    _ => prop_assert!(false, "{:?} with challenge {:?}", outcome, challenged),
                }
                prop_assert!(table.challenged(b).is_none());
                prop_assert!(table.pending(b).is_none());
            }
            Op::Failure { i } => {
                let id = pool[i];
                match table.on_failure(&id) {
                    FailureOutcome::Unknown => prop_assert!(!model.contains(&id)),
                    FailureOutcome::Stale { failures } => {
                        prop_assert!(failures > 0 && failures < case.max_failures);
                        prop_assert_eq!(table.failures(&id), Some(failures));
                    }
                    FailureOutcome::Replaced { removed, added } => {
                        prop_assert_eq!(removed.id, id);
                        prop_assert!(model.remove(&id));
                        prop_assert!(table.contains(&added.id));
                    }
                    FailureOutcome::Removed { removed } => {
                        prop_assert_eq!(removed.id, id);
                        prop_assert!(model.remove(&id));
                    }
                    FailureOutcome::PendingDropped { dropped } => {
                        prop_assert_eq!(dropped.id, id);
                        prop_assert!(model.remove(&id));
                    }
                }
                prop_assert!(!table.contains(&id) || table.failures(&id) > Some(0));
            }
            Op::Remove { i } => {
                let id = pool[i];
                match table.remove(&id) {
                    Some(Removed { peer, promoted }) => {
                        prop_assert_eq!(peer.id, id);
                        prop_assert!(model.remove(&id));
                        if let Some(p) = promoted {
                            prop_assert!(table.contains(&p.id));
                        }
                    }
                    None => prop_assert!(!model.contains(&id)),
                }
                prop_assert!(!held(&table).contains(&id));
            }
            Op::Touch { i, dt } => {
                now = now.saturating_add(Duration::from_secs(dt));
                table.touch_bucket_for(&pool[i], now);
                let stale = table.stale_buckets(now, Duration::from_secs(50));
                prop_assert!(!stale.contains(&table_bucket(&local, &pool[i])));
            }
            Op::Closest { target, n } => {
                let target = NodeId::from_bytes(target);
                check_closest(&table, &target, n)?;
                // A pool id as target exercises exact hits and near buckets.
                let near = pool[n % pool.len()];
                check_closest(&table, &near, n)?;
                check_closest(&table, &local, n)?;
                table.closest_into(&near, n, &mut buf);
                prop_assert_eq!(&buf, &table.closest(&near, n));
            }
        }
        if let Err(e) = table.check_invariants() {
            prop_assert!(false, "invariant broken: {}", e);
        }
        prop_assert_eq!(&held(&table), &model);
        // Time only moves forward here, so every bucket is ordered
        // least-recently-seen first.
        for b in 0..BUCKETS {
            let seen: Vec<Timestamp> = table.bucket(b).iter().map(|p| p.last_seen).collect();
            prop_assert!(
                seen.windows(2).all(|w| w[0] <= w[1]),
                "bucket {} out of order",
                b
            );
        }
        prop_assert_eq!(table.len(), table.iter().count());
        prop_assert!(!table.contains(&local));
    }
    Ok(())
}

fn table_bucket(local: &NodeId, id: &NodeId) -> usize {
    local.bucket_index(id).unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invariants_outcomes_and_closest(case in case()) {
        run(case)?;
    }
}
