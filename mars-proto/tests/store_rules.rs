//! The STORE rules of `mars_proto::store::Storage`, one test per rule, the
//! O(max_results) promise of FIND_VALUE on a popular key, and a property:
//! after any sequence of offers, sweeps and removals the engine's indexes
//! and the rules' state agree.
//!
//! Every scenario runs on every storage engine: the in-memory one
//! (`memory::…`) and, with feature `lmdb`, the durable one (`lmdb::…`), so
//! the rules are shown to hold whatever engine is underneath.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mars_proto::schema::{KeyRotation, Revocation, RevocationReason};
use mars_proto::store::{
    DescriptorStore, KeyScan, MemoryStore, Storage, StoreConfig, StoreError, StoreRefusal, Stored,
    stored_size,
};
use mars_proto::wire::Filters;
use mars_proto::{
    Descriptor, DescriptorBuilder, Hash, Keypair, Timestamp, ValidDescriptor, schema,
    validate_batch,
};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

fn key(n: u16) -> Keypair {
    let mut secret = [0x5a; 32];
    secret[..2].copy_from_slice(&n.to_be_bytes());
    Keypair::from_secret_bytes(&secret)
}

fn rk(path: &str) -> Hash {
    schema::routing_key(path)
}

/// Everything but the rule under test out of the way.
fn roomy() -> StoreConfig {
    StoreConfig {
        stores_per_minute: u32::MAX,
        ..StoreConfig::default()
    }
}

/// A storage engine the scenarios run on: a fresh, empty one, and its own
/// index check.
trait Engine: DescriptorStore + Sized {
    fn fresh() -> Self;
    fn check(&self) -> Result<(), String>;
}

impl Engine for MemoryStore {
    fn fresh() -> Self {
        MemoryStore::new()
    }
    fn check(&self) -> Result<(), String> {
        self.check_invariants()
    }
}

#[cfg(feature = "lmdb")]
mod lmdb_engine {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use mars_proto::store::{DescriptorStore, KeyScan, LmdbOptions, LmdbStore, StoreError};
    use mars_proto::wire::Filters;
    use mars_proto::{Hash, Identity, Timestamp, ValidDescriptor};

    /// An `LmdbStore` in a directory of its own under the system temp
    /// directory, removed when it is dropped.
    #[derive(Debug)]
    pub struct TempLmdb {
        store: Option<LmdbStore>,
        dir: PathBuf,
    }

    impl TempLmdb {
        fn store(&self) -> &LmdbStore {
            self.store.as_ref().expect("open until dropped")
        }
        fn store_mut(&mut self) -> &mut LmdbStore {
            self.store.as_mut().expect("open until dropped")
        }
    }

    impl super::Engine for TempLmdb {
        fn fresh() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "mars-store-rules-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let store = LmdbStore::open(
                &dir,
                LmdbOptions {
                    map_size: 256 << 20,
                    ..LmdbOptions::default()
                },
            )
            .expect("open a store in a fresh temp dir");
            TempLmdb {
                store: Some(store),
                dir,
            }
        }
        fn check(&self) -> Result<(), String> {
            self.store().check_invariants()?;
            match self.store().read_errors() {
                0 => Ok(()),
                n => Err(format!("{n} read errors")),
            }
        }
    }

    impl Drop for TempLmdb {
        fn drop(&mut self) {
            drop(self.store.take());
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl DescriptorStore for TempLmdb {
        fn put(
            &mut self,
            d: Arc<ValidDescriptor>,
            remove: &[Hash],
        ) -> Result<Option<Arc<ValidDescriptor>>, StoreError> {
            self.store_mut().put(d, remove)
        }
        fn remove(&mut self, ids: &[Hash]) -> Result<Vec<Arc<ValidDescriptor>>, StoreError> {
            self.store_mut().remove(ids)
        }
        fn get(&self, id: &Hash) -> Option<Arc<ValidDescriptor>> {
            self.store().get(id)
        }
        fn by_replacement_key(
            &self,
            publisher: &Identity,
            schema_hash: &Hash,
            topic: &str,
        ) -> Option<Arc<ValidDescriptor>> {
            self.store()
                .by_replacement_key(publisher, schema_hash, topic)
        }
        fn scan_key(&self, key: &Hash, f: &Filters, now: Timestamp, limit: usize) -> KeyScan {
            self.store().scan_key(key, f, now, limit)
        }
        fn count_at(&self, key: &Hash) -> usize {
            self.store().count_at(key)
        }
        fn soonest_expiring(&self) -> Option<Arc<ValidDescriptor>> {
            self.store().soonest_expiring()
        }
        fn expiring_by(&self, deadline: Timestamp, limit: usize) -> Vec<Arc<ValidDescriptor>> {
            self.store().expiring_by(deadline, limit)
        }
        fn len(&self) -> usize {
            self.store().len()
        }
        fn total_bytes(&self) -> u64 {
            self.store().total_bytes()
        }
    }
}

/// Declares each scenario once per engine: `memory::name` and, with
/// feature `lmdb`, `lmdb::name`.
macro_rules! on_every_engine {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[test]
            fn $name() {
                super::$name::<mars_proto::store::MemoryStore>()
            })*
        }
        #[cfg(feature = "lmdb")]
        mod lmdb {
            $(#[test]
            fn $name() {
                super::$name::<super::lmdb_engine::TempLmdb>()
            })*
        }
    };
}

on_every_engine!(
    lower_sequence_is_stale,
    equal_sequence_with_another_id_is_a_conflict,
    identical_republish_is_idempotent_and_costs_no_token,
    higher_sequence_replaces,
    expired_at_offer_time_is_refused,
    revocation_by_the_publisher_removes_its_target_and_is_stored,
    revocation_arriving_before_its_target_refuses_the_target,
    revocation_by_another_publisher_is_refused,
    malformed_revocation_is_refused,
    rotation_seq_must_increase,
    rotation_fork_marks_the_identity_compromised,
    rotation_with_a_bad_cross_signature_is_refused,
    full_store_evicts_the_soonest_expiring_first,
    byte_limit_evicts_as_many_as_needed_in_expiry_order,
    per_key_cap_keeps_one_key_from_taking_the_store,
    rate_limit_is_ten_per_minute_refilled_over_time,
    refused_stores_cost_no_token,
    sweep_removes_at_expiry_and_reports_the_next_deadline,
    expired_entry_not_yet_swept_is_replaced_by_any_sequence,
    find_applies_each_filter_and_the_limit,
    find_on_a_popular_key_costs_the_limit_not_the_key,
);

fn storage<E: Engine>(config: StoreConfig) -> Storage<E> {
    Storage::new(E::fresh(), config)
}

/// A descriptor of `schema` at `timestamp`, validated at `timestamp`.
struct D {
    schema: Hash,
    topic: String,
    seq: u64,
    ts: Timestamp,
    ttl: u32,
    keys: Vec<Hash>,
    payload: Vec<u8>,
}

impl D {
    fn cap(topic: &str, seq: u64) -> Self {
        D {
            schema: schema::CORE_CAPABILITY.hash(),
            topic: topic.to_owned(),
            seq,
            ts: at(0),
            ttl: 3_600,
            keys: vec![rk("compute")],
            payload: b"p".to_vec(),
        }
    }
    fn ts(mut self, ts: Timestamp) -> Self {
        self.ts = ts;
        self
    }
    fn ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }
    fn keys(mut self, keys: &[&str]) -> Self {
        self.keys = keys.iter().map(|k| rk(k)).collect();
        self
    }
    fn payload(mut self, payload: Vec<u8>) -> Self {
        self.payload = payload;
        self
    }
    fn schema(mut self, schema: Hash) -> Self {
        self.schema = schema;
        self
    }
    fn unsigned(&self, k: &Keypair) -> Descriptor {
        DescriptorBuilder::new(self.schema, self.ts)
            .topic(self.topic.clone())
            .sequence(self.seq)
            .ttl(self.ttl)
            .routing_keys(self.keys.clone())
            .payload(self.payload.clone())
            .sign(k)
            .unwrap()
    }
    fn by(&self, k: &Keypair) -> ValidDescriptor {
        self.unsigned(k).validate(self.ts).unwrap()
    }
}

fn refusal(r: Result<Stored, StoreRefusal>) -> StoreRefusal {
    match r {
        Err(e) => e,
        Ok(s) => panic!("expected a refusal, got {s:?}"),
    }
}

fn check<E: Engine>(s: &Storage<E>) {
    s.store().check().unwrap();
    s.check_invariants().unwrap();
}

// ---------------------------------------------------------------------------
// Replacement by (publisher, schema_hash, topic) and sequence

fn lower_sequence_is_stale<E: Engine>() {
    let mut s = storage::<E>(roomy());
    let k = key(1);
    s.offer(D::cap("t", 5).by(&k), at(0)).unwrap();
    let e = refusal(s.offer(D::cap("t", 3).ts(at(1)).by(&k), at(1)));
    assert_eq!(e, StoreRefusal::Stale { have: 5, got: 3 });
    assert_eq!(e.to_string(), "stale: sequence 3 < stored 5");
    check(&s);
}

fn equal_sequence_with_another_id_is_a_conflict<E: Engine>() {
    let mut s = storage::<E>(roomy());
    let k = key(1);
    let first = D::cap("t", 4).by(&k);
    s.offer(first.clone(), at(0)).unwrap();
    let other = D::cap("t", 4).payload(b"other".to_vec()).by(&k);
    let e = refusal(s.offer(other.clone(), at(0)));
    assert!(
        matches!(e, StoreRefusal::Conflict { sequence: 4, .. }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "conflict: sequence 4 is stored with id {}, offered with id {}",
            first.id, other.id
        )
    );
    assert_eq!(s.get(&first.id).as_deref(), Some(&first));
}

fn identical_republish_is_idempotent_and_costs_no_token<E: Engine>() {
    let mut s = storage::<E>(StoreConfig {
        stores_per_minute: 1,
        ..StoreConfig::default()
    });
    let k = key(1);
    let d = D::cap("t", 1).by(&k);
    assert!(matches!(
        s.offer(d.clone(), at(0)),
        Ok(Stored::Inserted { .. })
    ));
    for _ in 0..5 {
        assert_eq!(s.offer(d.clone(), at(0)), Ok(Stored::Unchanged));
    }
    assert_eq!(s.len(), 1);
    check(&s);
}

fn higher_sequence_replaces<E: Engine>() {
    let mut s = storage::<E>(roomy());
    let k = key(1);
    let v1 = D::cap("t", 1).keys(&["a", "b"]).by(&k);
    let v2 = D::cap("t", 2).ts(at(10)).keys(&["b", "c"]).by(&k);
    s.offer(v1.clone(), at(0)).unwrap();
    match s.offer(v2.clone(), at(10)).unwrap() {
        Stored::Replaced {
            descriptor,
            old,
            removed,
        } => {
            assert_eq!(*descriptor, v2);
            assert_eq!(*old, v1);
            assert_eq!(removed, Default::default());
        }
        other => panic!("{other:?}"),
    }
    let none = Filters::default();
    assert!(s.find(&rk("a"), &none, 20, at(10)).is_empty());
    assert_eq!(s.find(&rk("b"), &none, 20, at(10)).len(), 1);
    assert_eq!(s.find(&rk("c"), &none, 20, at(10))[0].id, v2.id);
    // Another topic, schema or publisher is another slot.
    s.offer(D::cap("u", 0).by(&k), at(10)).unwrap();
    s.offer(D::cap("t", 0).by(&key(2)), at(10)).unwrap();
    s.offer(
        D::cap("t", 0)
            .schema(schema::INFRASTRUCTURE_HUB.hash())
            .by(&k),
        at(10),
    )
    .unwrap();
    assert_eq!(s.len(), 4);
    check(&s);
}

fn expired_at_offer_time_is_refused<E: Engine>() {
    let mut s = storage::<E>(roomy());
    let d = D::cap("t", 1).ttl(60).by(&key(1));
    let e = refusal(s.offer(d, at(60)));
    assert_eq!(
        e,
        StoreRefusal::Expired {
            expired_at: at(60),
            now: at(60)
        }
    );
}

// ---------------------------------------------------------------------------
// Revocation

fn revocation(target: &Descriptor, by: &Keypair, ts: Timestamp) -> ValidDescriptor {
    Revocation::new(target.id, RevocationReason::Withdrawn)
        .descriptor_builder(target, ts)
        .sign(by)
        .unwrap()
        .validate(ts)
        .unwrap()
}

fn revocation_by_the_publisher_removes_its_target_and_is_stored<E: Engine>() {
    let mut s = storage::<E>(roomy());
    let k = key(1);
    let target = D::cap("t", 1).keys(&["compute", "compute/x"]).by(&k);
    s.offer(target.clone(), at(0)).unwrap();
    let rev = revocation(&target, &k, at(5));
    match s.offer(rev.clone(), at(5)).unwrap() {
        Stored::Inserted {
            descriptor,
            removed,
        } => {
            assert_eq!(*descriptor, rev);
            assert_eq!(removed.revoked.as_deref(), Some(&target));
        }
        other => panic!("{other:?}"),
    }
    assert!(s.get(&target.id).is_none());
    // The revocation sits where the target was, so it propagates.
    let found = s.find(&rk("compute/x"), &Filters::default(), 20, at(5));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, rev.id);
    // The target coming back (late gossip) is refused while it is held.
    let e = refusal(s.offer(target.clone(), at(6)));
    assert_eq!(
        e,
        StoreRefusal::Revoked {
            id: Box::new(target.id),
            revocation: Box::new(rev.id)
        }
    );
    check(&s);
    // Once the revocation is gone, the slot is open again.
    assert!(s.remove(&rev.id).is_some());
    s.offer(target, at(7)).unwrap();
    check(&s);
}

fn revocation_arriving_before_its_target_refuses_the_target<E: Engine>() {
    let mut s = storage::<E>(roomy());
    let k = key(1);
    let target = D::cap("t", 1).by(&k);
    let rev = revocation(&target, &k, at(1));
    assert!(matches!(s.offer(rev, at(1)), Ok(Stored::Inserted { .. })));
    assert!(matches!(
        s.offer(target, at(2)),
        Err(StoreRefusal::Revoked { .. })
    ));
    check(&s);
}

fn revocation_by_another_publisher_is_refused<E: Engine>() {
    let mut s = storage::<E>(roomy());
    let (owner, mallory) = (key(1), key(2));
    let target = D::cap("t", 1).by(&owner);
    s.offer(target.clone(), at(0)).unwrap();
    let forged = revocation(&target, &mallory, at(1));
    let e = refusal(s.offer(forged, at(1)));
    assert_eq!(
        e,
        StoreRefusal::NotOwner {
            target: Box::new(target.id),
            owner: owner.identity(),
            revoker: mallory.identity(),
        }
    );
    assert!(e.to_string().starts_with("revocation of "));
    assert!(s.get(&target.id).is_some());
    check(&s);
}

fn malformed_revocation_is_refused<E: Engine>() {
    let mut s = storage::<E>(roomy());
    let d = D::cap("r", 1)
        .schema(schema::CORE_REVOCATION.hash())
        .payload(vec![0xff])
        .by(&key(1));
    let e = refusal(s.offer(d, at(0)));
    assert!(matches!(e, StoreRefusal::InvalidRevocation(_)), "{e}");
    assert!(e.to_string().starts_with("invalid revocation: "));
    assert!(s.is_empty());
}

// ---------------------------------------------------------------------------
// Key rotation

fn rotation(old: &Keypair, new: &Keypair, seq: u64, ts: Timestamp) -> ValidDescriptor {
    KeyRotation::new(old, new, seq, ts)
        .sign(old, ts)
        .unwrap()
        .validate(ts)
        .unwrap()
}

fn rotation_seq_must_increase<E: Engine>() {
    let mut s = storage::<E>(roomy());
    let (old, a, b) = (key(1), key(2), key(3));
    s.offer(rotation(&old, &a, 1, at(0)), at(0)).unwrap();
    assert_eq!(s.rotation_of(&old.identity()), Some((1, a.identity())));
    assert!(matches!(
        s.offer(rotation(&old, &b, 2, at(1)), at(1)),
        Ok(Stored::Replaced { .. })
    ));
    assert_eq!(s.rotation_of(&old.identity()), Some((2, b.identity())));
    let e = refusal(s.offer(rotation(&old, &a, 1, at(2)), at(2)));
    assert_eq!(
        e,
        StoreRefusal::RotationRegressed {
            identity: old.identity(),
            have: 2,
            got: 1
        }
    );
    assert!(!s.is_compromised(&old.identity()));
    check(&s);
}

fn rotation_fork_marks_the_identity_compromised<E: Engine>() {
    let mut s = storage::<E>(roomy());
    let (old, a, b) = (key(1), key(2), key(3));
    s.offer(rotation(&old, &a, 1, at(0)), at(0)).unwrap();
    let e = refusal(s.offer(rotation(&old, &b, 1, at(1)), at(1)));
    assert_eq!(
        e,
        StoreRefusal::RotationFork {
            identity: old.identity(),
            seq: 1,
            first: a.identity(),
            second: b.identity(),
        }
    );
    assert!(s.is_compromised(&old.identity()));
    let e = refusal(s.offer(D::cap("t", 1).ts(at(2)).by(&old), at(2)));
    assert_eq!(
        e,
        StoreRefusal::Compromised {
            publisher: old.identity()
        }
    );
    assert!(
        e.to_string()
            .starts_with("compromised: publisher did:mesh:z")
    );
    // The new keys are not tainted.
    s.offer(D::cap("t", 1).ts(at(2)).by(&a), at(2)).unwrap();
    check(&s);
}

fn rotation_with_a_bad_cross_signature_is_refused<E: Engine>() {
    let mut s = storage::<E>(roomy());
    let (old, new) = (key(1), key(2));
    let mut r = KeyRotation::new(&old, &new, 1, at(0));
    r.new_signature = old.sign(b"not the old identity");
    let d = r.descriptor_builder(at(0)).sign(&old).unwrap();
    let e = refusal(s.offer(d.validate(at(0)).unwrap(), at(0)));
    assert!(matches!(e, StoreRefusal::InvalidKeyRotation(_)), "{e}");
    assert!(s.rotation_of(&old.identity()).is_none());
    // Signed by the new key instead of the old one.
    let by_new = KeyRotation::new(&old, &new, 1, at(0))
        .descriptor_builder(at(0))
        .sign(&new)
        .unwrap();
    let e = refusal(s.offer(by_new.validate(at(0)).unwrap(), at(0)));
    assert!(matches!(e, StoreRefusal::InvalidKeyRotation(_)), "{e}");
}

// ---------------------------------------------------------------------------
// Capacity, per-key cap, rate limit

fn full_store_evicts_the_soonest_expiring_first<E: Engine>() {
    let mut s = storage::<E>(StoreConfig {
        max_descriptors: 3,
        ..roomy()
    });
    let short = D::cap("a", 1).ttl(600).by(&key(1));
    let mid = D::cap("b", 1).ttl(1_200).by(&key(2));
    let long = D::cap("c", 1).ttl(2_400).by(&key(3));
    for d in [&long, &short, &mid] {
        s.offer(d.clone(), at(0)).unwrap();
    }
    let newcomer = D::cap("d", 1).ttl(1_800).by(&key(4));
    match s.offer(newcomer.clone(), at(0)).unwrap() {
        Stored::Inserted { removed, .. } => {
            assert_eq!(removed.evicted, vec![Arc::new(short.clone())]);
        }
        other => panic!("{other:?}"),
    }
    assert!(s.get(&short.id).is_none());
    // A newcomer expiring before everything held is refused instead.
    let brief = D::cap("e", 1).ttl(60).by(&key(5));
    let e = refusal(s.offer(brief, at(0)));
    assert!(
        matches!(
            e,
            StoreRefusal::Full {
                len: 3,
                max_descriptors: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().starts_with("store full: 3/3 descriptors"));
    // Equal expiry is not "sooner": no churn between equals.
    let tie = D::cap("f", 1).ttl(1_200).by(&key(6));
    assert!(matches!(
        s.offer(tie, at(0)),
        Err(StoreRefusal::Full { .. })
    ));
    check(&s);
}

fn byte_limit_evicts_as_many_as_needed_in_expiry_order<E: Engine>() {
    let small: Vec<ValidDescriptor> = (0..4)
        .map(|i| {
            D::cap(&format!("s{i}"), 1)
                .ttl(600 + 60 * i)
                .by(&key(10 + i as u16))
        })
        .collect();
    let per = stored_size(&small[0]);
    let big = D::cap("big", 1).payload(vec![7; 2_000]).by(&key(1));
    let mut s = storage::<E>(StoreConfig {
        max_bytes: per * 4 + 100,
        ..roomy()
    });
    for d in &small {
        s.offer(d.clone(), at(0)).unwrap();
    }
    assert_eq!(s.total_bytes(), per * 4);
    let needed = stored_size(&big);
    let evictions = (needed - 100).div_ceil(per) as usize;
    match s.offer(big.clone(), at(0)).unwrap() {
        Stored::Inserted { removed, .. } => {
            let ids: Vec<Hash> = removed.evicted.iter().map(|d| d.id).collect();
            let expected: Vec<Hash> = small[..evictions].iter().map(|d| d.id).collect();
            assert_eq!(ids, expected);
        }
        other => panic!("{other:?}"),
    }
    assert!(s.total_bytes() <= per * 4 + 100);
    check(&s);
}

fn per_key_cap_keeps_one_key_from_taking_the_store<E: Engine>() {
    let mut s = storage::<E>(StoreConfig {
        max_per_key: 2,
        ..roomy()
    });
    s.offer(D::cap("a", 1).keys(&["hot"]).by(&key(1)), at(0))
        .unwrap();
    s.offer(D::cap("a", 1).keys(&["hot", "x"]).by(&key(2)), at(0))
        .unwrap();
    let e = refusal(s.offer(D::cap("a", 1).keys(&["cold", "hot"]).by(&key(3)), at(0)));
    assert_eq!(
        e,
        StoreRefusal::KeyFull {
            key: Box::new(rk("hot")),
            count: 2,
            cap: 2
        }
    );
    assert!(e.to_string().contains("per-key cap 2"));
    // A replacement at a full key takes no new room.
    s.offer(D::cap("a", 2).keys(&["hot"]).by(&key(1)), at(0))
        .unwrap();
    // Other keys are unaffected.
    s.offer(D::cap("a", 1).keys(&["cold"]).by(&key(3)), at(0))
        .unwrap();
    assert_eq!(s.store().count_at(&rk("hot")), 2);
    check(&s);
}

fn rate_limit_is_ten_per_minute_refilled_over_time<E: Engine>() {
    let mut s = storage::<E>(StoreConfig::default());
    let k = key(1);
    for i in 0..10 {
        s.offer(D::cap(&format!("t{i}"), 1).by(&k), at(0)).unwrap();
    }
    let e = refusal(s.offer(D::cap("t10", 1).by(&k), at(0)));
    assert_eq!(
        e.to_string(),
        format!(
            "rate limited: publisher {} exceeded 10 stores/min",
            k.identity().did()
        )
    );
    // Another publisher has its own bucket.
    s.offer(D::cap("t", 1).by(&key(2)), at(0)).unwrap();
    // One token back every 6 s.
    assert!(s.offer(D::cap("t10", 1).by(&k), at(5)).is_err());
    s.offer(D::cap("t10", 1).by(&k), at(6)).unwrap();
    assert!(s.offer(D::cap("t11", 1).by(&k), at(6)).is_err());
    for i in 11..21 {
        s.offer(D::cap(&format!("t{i}"), 1).by(&k), at(66)).unwrap();
    }
    assert!(s.offer(D::cap("t21", 1).by(&k), at(66)).is_err());
    check(&s);
}

fn refused_stores_cost_no_token<E: Engine>() {
    let mut s = storage::<E>(StoreConfig {
        stores_per_minute: 2,
        ..StoreConfig::default()
    });
    let k = key(1);
    s.offer(D::cap("t", 5).by(&k), at(0)).unwrap();
    for _ in 0..5 {
        assert!(matches!(
            s.offer(D::cap("t", 1).by(&k), at(0)),
            Err(StoreRefusal::Stale { .. })
        ));
    }
    s.offer(D::cap("u", 1).by(&k), at(0)).unwrap();
}

// ---------------------------------------------------------------------------
// Expiry

fn sweep_removes_at_expiry_and_reports_the_next_deadline<E: Engine>() {
    let mut s = storage::<E>(StoreConfig {
        sweep_batch: 2,
        ..roomy()
    });
    let early: Vec<ValidDescriptor> = (0..3)
        .map(|i| D::cap(&format!("e{i}"), 1).ttl(60).by(&key(i)))
        .collect();
    let late = D::cap("late", 1).ttl(120).by(&key(9));
    for d in early.iter().chain([&late]) {
        s.offer(d.clone(), at(0)).unwrap();
    }
    assert_eq!(s.next_expiry(), Some(at(60)));
    assert!(s.sweep(at(59)).is_empty());
    assert!(!s.sweep_pending(at(59)));
    // Expired but not yet swept: find skips it.
    assert_eq!(
        s.find(&rk("compute"), &Filters::default(), 20, at(60))
            .len(),
        1
    );
    let first = s.sweep(at(60));
    assert_eq!(first.len(), 2, "bounded by sweep_batch");
    assert!(s.sweep_pending(at(60)));
    let second = s.sweep(at(60));
    assert_eq!(second.len(), 1);
    assert!(!s.sweep_pending(at(60)));
    let mut swept: Vec<Hash> = first.iter().chain(&second).map(|d| d.id).collect();
    swept.sort();
    let mut expected: Vec<Hash> = early.iter().map(|d| d.id).collect();
    expected.sort();
    assert_eq!(swept, expected);
    assert_eq!(s.next_expiry(), Some(at(120)));
    assert_eq!(s.sweep(at(120)).len(), 1);
    assert_eq!(s.next_expiry(), None);
    check(&s);
}

fn expired_entry_not_yet_swept_is_replaced_by_any_sequence<E: Engine>() {
    let mut s = storage::<E>(roomy());
    let k = key(1);
    s.offer(D::cap("t", 9).ttl(60).by(&k), at(0)).unwrap();
    let fresh = D::cap("t", 1).ts(at(61)).by(&k);
    assert!(matches!(
        s.offer(fresh, at(61)),
        Ok(Stored::Replaced { .. })
    ));
    check(&s);
}

// ---------------------------------------------------------------------------
// FIND_VALUE

fn find_applies_each_filter_and_the_limit<E: Engine>() {
    let mut s = storage::<E>(roomy());
    let (a, b) = (key(1), key(2));
    let hub = schema::INFRASTRUCTURE_HUB.hash();
    let a_cap = D::cap("t", 1).ts(at(0)).by(&a);
    let a_hub = D::cap("t", 1).schema(hub).ts(at(10)).by(&a);
    let b_cap = D::cap("t", 1).ts(at(20)).by(&b);
    let b_hub = D::cap("t", 1).schema(hub).ts(at(30)).by(&b);
    for d in [&a_cap, &a_hub, &b_cap, &b_hub] {
        s.offer(d.clone(), at(30)).unwrap();
    }
    let ids = |f: &Filters, max: usize| -> Vec<Hash> {
        s.find(&rk("compute"), f, max, at(30))
            .iter()
            .map(|d| d.id)
            .collect()
    };
    let none = Filters::default();
    assert_eq!(ids(&none, 20), [b_hub.id, b_cap.id, a_hub.id, a_cap.id]);
    assert_eq!(ids(&none, 2), [b_hub.id, b_cap.id]);
    assert!(ids(&none, 0).is_empty());
    let by_schema = Filters {
        schema_hash: Some(hub),
        ..none.clone()
    };
    assert_eq!(ids(&by_schema, 20), [b_hub.id, a_hub.id]);
    let by_publisher = Filters {
        publisher: Some(a.identity()),
        ..none.clone()
    };
    assert_eq!(ids(&by_publisher, 20), [a_hub.id, a_cap.id]);
    let since = Filters {
        min_timestamp: Some(at(10)),
        ..none.clone()
    };
    assert_eq!(ids(&since, 20), [b_hub.id, b_cap.id, a_hub.id]);
    let all_three = Filters {
        schema_hash: Some(schema::CORE_CAPABILITY.hash()),
        publisher: Some(b.identity()),
        min_timestamp: Some(at(20)),
    };
    assert_eq!(ids(&all_three, 20), [b_cap.id]);
    assert!(s.find(&rk("elsewhere"), &none, 20, at(30)).is_empty());
}

/// Signs and validates many descriptors on every core: Ed25519 in a debug
/// build costs about a millisecond per signature, and this is 10,000 of them.
fn sign_and_validate_many(
    n: usize,
    make: impl Fn(usize) -> Descriptor + Sync,
) -> Vec<ValidDescriptor> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .clamp(1, 8);
    let per = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let make = &make;
                scope.spawn(move || {
                    let range = (t * per).min(n)..((t + 1) * per).min(n);
                    let signed: Vec<Descriptor> = range.map(make).collect();
                    validate_batch(signed, at(3_000))
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .map(|v| v.unwrap())
            .collect()
    })
}

/// 10,000 descriptors at one key: a query for 20 examines 20 index
/// entries, not 10,000 — with or without filters.
fn find_on_a_popular_key_costs_the_limit_not_the_key<E: Engine>() {
    const N: usize = 10_000;
    let k = key(1);
    let loner = key(2);
    let descriptors = sign_and_validate_many(N, |i| {
        D::cap(&format!("provider-{i}"), 1)
            .ts(at(i as u64 % 3_000))
            .keys(&["compute", "compute/inference"])
            .unsigned(&k)
    });
    let mut s = storage::<E>(roomy());
    for d in descriptors {
        s.offer(d, at(3_000)).unwrap();
    }
    let lone = D::cap("x", 1).ts(at(5)).keys(&["compute"]).by(&loner);
    s.offer(lone.clone(), at(3_000)).unwrap();
    let now = at(3_000);
    let key = rk("compute");
    assert_eq!(s.store().count_at(&key), N + 1);

    let scan = s.scan(&key, &Filters::default(), 20, now);
    assert_eq!(scan.descriptors.len(), 20);
    assert_eq!(scan.examined, 20);

    let by_publisher = Filters {
        publisher: Some(loner.identity()),
        ..Filters::default()
    };
    let scan = s.scan(&key, &by_publisher, 20, now);
    assert_eq!(scan.descriptors.len(), 1);
    assert_eq!(scan.descriptors[0].id, lone.id);
    assert_eq!(scan.examined, 1);

    let by_schema = Filters {
        schema_hash: Some(schema::INFRASTRUCTURE_HUB.hash()),
        ..Filters::default()
    };
    assert_eq!(s.scan(&key, &by_schema, 20, now).examined, 0);

    // The newest 3 seconds of timestamps: the walk ends at the boundary.
    let since = Filters {
        min_timestamp: Some(at(2_997)),
        ..Filters::default()
    };
    let scan = s.scan(&key, &since, 100, now);
    assert!(scan.descriptors.iter().all(|d| d.timestamp >= at(2_997)));
    assert_eq!(scan.examined, scan.descriptors.len());
    assert!(scan.examined < 20);
    check(&s);
}

// ---------------------------------------------------------------------------
// An engine that fails: writes are all or nothing, and the rules follow

/// A `MemoryStore` whose writes fail on demand, as a full or broken disk
/// would make a durable engine's.
#[derive(Debug, Default)]
struct Flaky {
    inner: MemoryStore,
    fail: Arc<AtomicBool>,
}

impl Flaky {
    /// A storage over a flaky engine, and the switch that breaks it.
    fn storage(config: StoreConfig) -> (Storage<Flaky>, Arc<AtomicBool>) {
        let fail = Arc::new(AtomicBool::new(false));
        let engine = Flaky {
            inner: MemoryStore::new(),
            fail: Arc::clone(&fail),
        };
        (Storage::new(engine, config), fail)
    }

    fn error() -> StoreError {
        StoreError::Io {
            op: "write",
            source: Arc::new(std::io::Error::other("disk on fire")),
        }
    }
}

impl DescriptorStore for Flaky {
    fn put(
        &mut self,
        d: Arc<ValidDescriptor>,
        remove: &[Hash],
    ) -> Result<Option<Arc<ValidDescriptor>>, StoreError> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(Self::error());
        }
        self.inner.put(d, remove)
    }
    fn remove(&mut self, ids: &[Hash]) -> Result<Vec<Arc<ValidDescriptor>>, StoreError> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(Self::error());
        }
        self.inner.remove(ids)
    }
    fn get(&self, id: &Hash) -> Option<Arc<ValidDescriptor>> {
        self.inner.get(id)
    }
    fn by_replacement_key(
        &self,
        publisher: &mars_proto::Identity,
        schema_hash: &Hash,
        topic: &str,
    ) -> Option<Arc<ValidDescriptor>> {
        self.inner.by_replacement_key(publisher, schema_hash, topic)
    }
    fn scan_key(&self, key: &Hash, f: &Filters, now: Timestamp, limit: usize) -> KeyScan {
        self.inner.scan_key(key, f, now, limit)
    }
    fn count_at(&self, key: &Hash) -> usize {
        self.inner.count_at(key)
    }
    fn soonest_expiring(&self) -> Option<Arc<ValidDescriptor>> {
        self.inner.soonest_expiring()
    }
    fn expiring_by(&self, deadline: Timestamp, limit: usize) -> Vec<Arc<ValidDescriptor>> {
        self.inner.expiring_by(deadline, limit)
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn total_bytes(&self) -> u64 {
        self.inner.total_bytes()
    }
}

impl Engine for Flaky {
    fn fresh() -> Self {
        Flaky::default()
    }
    fn check(&self) -> Result<(), String> {
        self.inner.check_invariants()
    }
}

/// Storage's view of the engine, to compare before and after.
fn snapshot<E: Engine>(s: &Storage<E>) -> Vec<Hash> {
    s.store()
        .expiring_by(Timestamp::from_micros(u64::MAX), usize::MAX)
        .iter()
        .map(|d| d.id)
        .collect()
}

#[test]
fn an_offer_the_engine_cannot_write_changes_nothing() {
    let (mut s, fail) = Flaky::storage(StoreConfig {
        max_descriptors: 1,
        stores_per_minute: 2,
        ..StoreConfig::default()
    });
    let (owner, newcomer) = (key(1), key(2));
    let soon = D::cap("t", 1).ttl(60).by(&owner);
    s.offer(soon.clone(), at(0)).unwrap();
    let rev = revocation(&soon, &owner, at(1));
    let held = snapshot(&s);
    let tokens = s.rate_limiter().tokens(&newcomer.identity(), at(1));

    fail.store(true, Ordering::Relaxed);
    // Would evict `soon` (it expires first): the eviction must not happen.
    let e = refusal(s.offer(D::cap("u", 1).by(&newcomer), at(1)));
    assert_eq!(e, StoreRefusal::Storage(Flaky::error()));
    assert_eq!(e.to_string(), "storage i/o error during write");
    // Would remove its target and leave a tombstone: neither happens.
    assert!(matches!(
        s.offer(rev.clone(), at(1)),
        Err(StoreRefusal::Storage(_))
    ));
    assert_eq!(snapshot(&s), held);
    assert_eq!(s.rate_limiter().tokens(&newcomer.identity(), at(1)), tokens);
    check(&s);

    fail.store(false, Ordering::Relaxed);
    s.offer(D::cap("u", 1).by(&newcomer), at(1)).unwrap();
    assert!(s.get(&soon.id).is_none(), "evicted now");
    check(&s);
}

#[test]
fn a_sweep_the_engine_cannot_write_backs_off_and_is_counted() {
    let (mut s, fail) = Flaky::storage(roomy());
    let d = D::cap("t", 1).ttl(60).by(&key(1));
    s.offer(d.clone(), at(0)).unwrap();
    fail.store(true, Ordering::Relaxed);
    assert!(s.sweep(at(60)).is_empty());
    assert_eq!(s.failed_writes(), 1);
    assert_eq!(
        s.last_write_error(),
        Some(&Flaky::error()),
        "kept for the log"
    );
    // No busy loop: the deadline moves to the retry time…
    let retry = at(60).saturating_add(mars_proto::store::SWEEP_RETRY_DELAY);
    assert_eq!(s.next_expiry(), Some(retry));
    assert!(!s.sweep_pending(at(60)));
    assert!(s.sweep(at(60)).is_empty());
    assert_eq!(s.failed_writes(), 1, "no attempt before the retry time");
    // …and a removal outside the rules fails the same way.
    assert_eq!(s.remove(&d.id), None);
    assert_eq!(s.failed_writes(), 2);
    assert!(s.try_remove(&[d.id]).is_err());
    fail.store(false, Ordering::Relaxed);
    assert!(s.sweep_pending(retry));
    assert_eq!(s.sweep(retry).len(), 1);
    assert_eq!(s.next_expiry(), None);
    check(&s);
}

// ---------------------------------------------------------------------------
// The property: indexes stay consistent

#[derive(Debug, Clone)]
enum Op {
    /// A capability: publisher, topic, sequence, ttl index, routing keys
    /// (bit set over four paths), payload length, timestamp lag.
    Offer {
        who: usize,
        topic: u8,
        seq: u64,
        ttl: usize,
        keys: u8,
        len: usize,
        lag: u64,
    },
    /// A revocation by `who` of the `n`-th descriptor held (by id order).
    Revoke { who: usize, n: usize },
    /// A key rotation of `who` to `to` at rotation_seq `seq`.
    Rotate { who: usize, to: usize, seq: u64 },
    /// Removes the `n`-th descriptor held.
    Remove { n: usize },
    /// Time passes, then a sweep.
    Sweep { secs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize, 0..3u8, 0..4u64, 0..3usize, 1..16u8, 0..3_000usize, 0..30u64).prop_map(
            |(who, topic, seq, ttl, keys, len, lag)| Op::Offer { who, topic, seq, ttl, keys, len, lag }
        ),
        1 => (0..4usize, 0..8usize).prop_map(|(who, n)| Op::Revoke { who, n }),
        1 => (0..4usize, 0..6usize, 1..4u64).prop_map(|(who, to, seq)| Op::Rotate { who, to, seq }),
        1 => (0..8usize).prop_map(|n| Op::Remove { n }),
        2 => (0..200u64).prop_map(|secs| Op::Sweep { secs }),
    ]
}

const PATHS: [&str; 4] = ["a", "a/b", "a/b/c", "z"];
const TTLS: [u32; 3] = [60, 120, 600];

fn nth_held<E: Engine>(s: &Storage<E>, n: usize) -> Option<Arc<ValidDescriptor>> {
    let all = s
        .store()
        .expiring_by(Timestamp::from_micros(u64::MAX), usize::MAX);
    if all.is_empty() {
        None
    } else {
        all.get(n % all.len()).cloned()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn indexes_stay_consistent(ops in prop::collection::vec(op(), 1..40)) {
        indexes_stay_consistent_on::<MemoryStore>(ops)?;
    }
}

#[cfg(feature = "lmdb")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn indexes_stay_consistent_on_lmdb(ops in prop::collection::vec(op(), 1..40)) {
        indexes_stay_consistent_on::<lmdb_engine::TempLmdb>(ops)?;
    }
}

/// The property, on engine `E`.
fn indexes_stay_consistent_on<E: Engine>(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let keys: Vec<Keypair> = (0..6).map(|i| key(100 + i)).collect();
    let mut s = storage::<E>(StoreConfig {
        max_descriptors: 8,
        max_bytes: 12_000,
        max_per_key: 5,
        stores_per_minute: 6,
        max_tracked_publishers: 2,
        max_tracked_rotations: 2,
        max_compromised: 1,
        sweep_batch: 3,
    });
    let mut now = at(100);
    for op in ops {
        match op {
            Op::Offer {
                who,
                topic,
                seq,
                ttl,
                keys: bits,
                len,
                lag,
            } => {
                let paths: Vec<&str> = (0..4)
                    .filter(|b| bits & (1 << b) != 0)
                    .map(|b| PATHS[b])
                    .collect();
                let d = D::cap(&format!("t{topic}"), seq)
                    .ts(now.saturating_sub(Duration::from_secs(lag)))
                    .ttl(TTLS[ttl])
                    .keys(&paths)
                    .payload(vec![1; len])
                    .unsigned(&keys[who]);
                if let Ok(v) = d.validate(now) {
                    let before = s.len();
                    match s.offer(v.clone(), now) {
                        Ok(Stored::Unchanged) => prop_assert_eq!(s.len(), before),
                        Ok(stored) => {
                            let held = s.get(&v.id);
                            prop_assert_eq!(held.as_deref(), Some(&v));
                            prop_assert_eq!(stored.descriptor().map(|d| d.id), Some(v.id));
                        }
                        Err(_) => prop_assert_eq!(s.len(), before),
                    }
                }
            }
            Op::Revoke { who, n } => {
                if let Some(target) = nth_held(&s, n) {
                    let rev = Revocation::new(target.id, RevocationReason::Withdrawn)
                        .descriptor_builder(&target, now)
                        .sign(&keys[who])
                        .unwrap();
                    if let Ok(v) = rev.validate(now) {
                        let owner = target.publisher == keys[who].identity();
                        if let Ok(Stored::Inserted { .. } | Stored::Replaced { .. }) =
                            s.offer(v, now)
                        {
                            prop_assert_eq!(s.get(&target.id).is_some(), !owner);
                        }
                    }
                }
            }
            Op::Rotate { who, to, seq } => {
                if who != to {
                    let r = rotation(&keys[who], &keys[to], seq, now);
                    let _ = s.offer(r, now);
                }
            }
            Op::Remove { n } => {
                if let Some(d) = nth_held(&s, n) {
                    prop_assert!(s.remove(&d.id).is_some());
                    prop_assert!(s.get(&d.id).is_none());
                }
            }
            Op::Sweep { secs } => {
                now = now.saturating_add(Duration::from_secs(secs));
                while s.sweep_pending(now) {
                    for d in s.sweep(now) {
                        prop_assert!(d.is_expired(now));
                    }
                }
                prop_assert!(s.next_expiry().is_none_or(|t| t > now));
            }
        }
        let check_engine = s.store().check();
        prop_assert!(check_engine.is_ok(), "{:?}", check_engine);
        let check_rules = s.check_invariants();
        prop_assert!(check_rules.is_ok(), "{:?}", check_rules);
        prop_assert!(s.store().len() <= 8 && s.store().total_bytes() <= 12_000);
    }
    Ok(())
}
