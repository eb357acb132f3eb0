//! The durable engine, `mars_proto::store::LmdbStore` (feature `lmdb`):
//! it answers exactly as the in-memory engine does (a differential
//! property over random operation sequences, reopening the files on the
//! way), keeps everything across a restart — even a SIGKILL before any
//! flush — refuses files of another layout, fails cleanly when its map is
//! full, reads damaged records as absent and counts them, and keeps the
//! peer set. The STORE rules themselves run on it in `store_rules.rs`.
#![cfg(feature = "lmdb")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mars_proto::schema::{KeyRotation, Revocation, RevocationReason};
use mars_proto::store::{
    DescriptorStore, LAYOUT_VERSION, LmdbOptions, LmdbStore, MemoryStore, Storage, StoreConfig,
    StoreError, StoreRefusal, Stored,
};
use mars_proto::wire::{Filters, NodeAddr};
use mars_proto::{DescriptorBuilder, Hash, Identity, Keypair, Timestamp, ValidDescriptor, schema};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

fn key(n: u16) -> Keypair {
    let mut secret = [0x3c; 32];
    secret[..2].copy_from_slice(&n.to_be_bytes());
    Keypair::from_secret_bytes(&secret)
}

fn rk(path: &str) -> Hash {
    schema::routing_key(path)
}

/// A directory under the system temp directory, unique to this process
/// and call, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mars-store-lmdb-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn options(map_size: u64) -> LmdbOptions {
    LmdbOptions {
        map_size,
        ..LmdbOptions::default()
    }
}

fn open(dir: &TempDir) -> LmdbStore {
    LmdbStore::open(dir.path(), options(64 << 20)).unwrap()
}

fn roomy() -> StoreConfig {
    StoreConfig {
        stores_per_minute: u32::MAX,
        ..StoreConfig::default()
    }
}

/// A capability by `k` under `keys`, published and validated at `ts`.
fn cap(
    k: &Keypair,
    topic: &str,
    seq: u64,
    ts: Timestamp,
    ttl: u32,
    keys: &[&str],
) -> ValidDescriptor {
    DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), ts)
        .topic(topic)
        .sequence(seq)
        .ttl(ttl)
        .routing_keys(keys.iter().map(|p| rk(p)).collect())
        .payload(format!("payload of {topic} v{seq}").into_bytes())
        .sign(k)
        .unwrap()
        .validate(ts)
        .unwrap()
}

fn ids(ds: &[Arc<ValidDescriptor>]) -> Vec<Hash> {
    ds.iter().map(|d| d.id).collect()
}

// ---------------------------------------------------------------------------
// The differential property: LmdbStore answers as MemoryStore does.

const PATHS: [&str; 3] = ["k1", "k2", "k3"];

/// 48 descriptors over 3 publishers × 2 schemas × 2 topics, so slots
/// collide (replacement), with varied timestamps (ties included), TTLs,
/// payload sizes and routing keys (duplicates included). Signed once.
fn pool() -> &'static [Arc<ValidDescriptor>] {
    static POOL: OnceLock<Vec<Arc<ValidDescriptor>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let schemas = [
            schema::CORE_CAPABILITY.hash(),
            schema::INFRASTRUCTURE_HUB.hash(),
        ];
        (0..48u64)
            .map(|i| {
                let ts = at((i * 7) % 40);
                let mut keys: Vec<Hash> = (0..3)
                    .filter(|b| (i % 7 + 1) & (1 << b) != 0)
                    .map(|b| rk(PATHS[b as usize]))
                    .collect();
                if i % 5 == 0 {
                    keys.push(keys[0]);
                }
                DescriptorBuilder::new(schemas[(i / 3 % 2) as usize], ts)
                    .topic(["a", "b"][(i / 6 % 2) as usize])
                    .sequence(i / 12)
                    .ttl(60 + (i as u32 % 4) * 30)
                    .routing_keys(keys)
                    .payload(vec![i as u8; (i as usize * 37) % 700])
                    .sign(&key((i % 3) as u16))
                    .unwrap()
                    .validate(ts)
                    .map(Arc::new)
                    .unwrap()
            })
            .collect()
    })
}

#[derive(Debug, Clone)]
enum Op {
    /// Puts pool entry `n`, listing pool entries `remove` for removal.
    Put { n: usize, remove: Vec<usize> },
    /// Removes pool entries.
    Remove { ns: Vec<usize> },
    /// Drops the LMDB store and opens its files again.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..48usize, prop::collection::vec(0..48usize, 0..3))
            .prop_map(|(n, remove)| Op::Put { n, remove }),
        2 => prop::collection::vec(0..48usize, 0..4).prop_map(|ns| Op::Remove { ns }),
        1 => Just(Op::Reopen),
    ]
}

/// Every read of the trait, on both engines, must agree.
fn same_reads(lmdb: &LmdbStore, mem: &MemoryStore) -> Result<(), TestCaseError> {
    prop_assert_eq!(lmdb.len(), mem.len());
    prop_assert_eq!(lmdb.total_bytes(), mem.total_bytes());
    prop_assert_eq!(
        lmdb.soonest_expiring().map(|d| d.id),
        mem.soonest_expiring().map(|d| d.id)
    );
    for secs in [0, 70, 100, 150, 1_000] {
        for limit in [1, 2, usize::MAX] {
            prop_assert_eq!(
                ids(&lmdb.expiring_by(at(secs), limit)),
                ids(&mem.expiring_by(at(secs), limit))
            );
        }
    }
    let publishers: Vec<Identity> = (0..3).map(|i| key(i).identity()).collect();
    let mut filters = vec![Filters::default()];
    for p in &publishers {
        filters.push(Filters {
            publisher: Some(*p),
            ..Filters::default()
        });
    }
    for s in [
        schema::CORE_CAPABILITY.hash(),
        schema::INFRASTRUCTURE_HUB.hash(),
    ] {
        filters.push(Filters {
            schema_hash: Some(s),
            ..Filters::default()
        });
        filters.push(Filters {
            schema_hash: Some(s),
            publisher: Some(publishers[1]),
            min_timestamp: Some(at(10)),
        });
    }
    filters.push(Filters {
        min_timestamp: Some(at(21)),
        ..Filters::default()
    });
    for path in PATHS.iter().chain(&["nowhere"]) {
        let k = rk(path);
        prop_assert_eq!(lmdb.count_at(&k), mem.count_at(&k));
        for f in &filters {
            for (now, limit) in [(at(0), 100), (at(90), 3), (at(130), 1), (at(0), 0)] {
                let (a, b) = (
                    lmdb.scan_key(&k, f, now, limit),
                    mem.scan_key(&k, f, now, limit),
                );
                prop_assert_eq!(ids(&a.descriptors), ids(&b.descriptors), "{} {:?}", path, f);
                prop_assert_eq!(a.examined, b.examined, "{} {:?}", path, f);
            }
        }
    }
    for d in pool() {
        prop_assert_eq!(lmdb.get(&d.id), mem.get(&d.id));
        prop_assert_eq!(
            lmdb.by_replacement_key(&d.publisher, &d.schema_hash, &d.topic)
                .map(|d| d.id),
            mem.by_replacement_key(&d.publisher, &d.schema_hash, &d.topic)
                .map(|d| d.id)
        );
    }
    let check = lmdb.check_invariants();
    prop_assert!(check.is_ok(), "{:?}", check);
    prop_assert_eq!(lmdb.read_errors(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn lmdb_answers_exactly_as_memory_does(ops in prop::collection::vec(op(), 1..30)) {
        let dir = TempDir::new("diff");
        let mut lmdb = Some(open(&dir));
        let mut mem = MemoryStore::new();
        let pool = pool();
        for op in ops {
            let l = lmdb.as_mut().unwrap();
            match op {
                Op::Put { n, remove } => {
                    let remove: Vec<Hash> = remove.iter().map(|&i| pool[i].id).collect();
                    let a = l.put(Arc::clone(&pool[n]), &remove).unwrap();
                    let b = mem.put(Arc::clone(&pool[n]), &remove).unwrap();
                    prop_assert_eq!(a, b);
                }
                Op::Remove { ns } => {
                    let remove: Vec<Hash> = ns.iter().map(|&i| pool[i].id).collect();
                    prop_assert_eq!(l.remove(&remove).unwrap(), mem.remove(&remove).unwrap());
                }
                Op::Reopen => {
                    drop(lmdb.take());
                    lmdb = Some(open(&dir));
                }
            }
            same_reads(lmdb.as_ref().unwrap(), &mem)?;
            prop_assert!(mem.check_invariants().is_ok());
        }
    }
}

// ---------------------------------------------------------------------------
// Restarts

#[test]
fn a_reopened_store_holds_everything_and_resume_keeps_the_rules() {
    let dir = TempDir::new("reopen");
    let (owner, old, new) = (key(1), key(2), key(3));
    let target = cap(&owner, "t", 1, at(0), 3_600, &["compute", "compute/x"]);
    let other = cap(&key(4), "t", 1, at(1), 3_600, &["compute"]);
    let revocation = Revocation::new(target.id, RevocationReason::Withdrawn)
        .descriptor_builder(&target, at(5))
        .sign(&owner)
        .unwrap()
        .validate(at(5))
        .unwrap();
    let rotation = KeyRotation::new(&old, &new, 3, at(6))
        .sign(&old, at(6))
        .unwrap()
        .validate(at(6))
        .unwrap();
    let before = {
        let mut s = Storage::new(open(&dir), roomy());
        s.offer(target.clone(), at(0)).unwrap();
        s.offer(other.clone(), at(1)).unwrap();
        s.offer(revocation.clone(), at(5)).unwrap();
        s.offer(rotation.clone(), at(6)).unwrap();
        assert!(s.get(&target.id).is_none(), "the revocation removed it");
        s.check_invariants().unwrap();
        let all = ids(&s.store().expiring_by(at(100_000), usize::MAX));
        (all, s.len(), s.total_bytes())
        // Dropped without a flush: committed is committed.
    };

    let store = open(&dir);
    store.check_invariants().unwrap();
    assert_eq!(
        (
            ids(&store.expiring_by(at(100_000), usize::MAX)),
            store.len(),
            store.total_bytes()
        ),
        before
    );
    assert_eq!(store.get(&other.id).as_deref(), Some(&other));
    assert_eq!(
        store
            .scan_key(&rk("compute/x"), &Filters::default(), at(7), 20)
            .descriptors[0]
            .id,
        revocation.id
    );

    let mut s = Storage::resume(store, roomy());
    s.check_invariants().unwrap();
    s.store().check_invariants().unwrap();
    // The revoked descriptor stays refused after the restart…
    assert!(matches!(
        s.offer(target.clone(), at(8)),
        Err(StoreRefusal::Revoked { .. })
    ));
    // …and rotation_seq keeps increasing.
    assert_eq!(s.rotation_of(&old.identity()), Some((3, new.identity())));
    let older = KeyRotation::new(&old, &key(5), 2, at(9))
        .sign(&old, at(9))
        .unwrap()
        .validate(at(9))
        .unwrap();
    assert!(matches!(
        s.offer(older, at(9)),
        Err(StoreRefusal::RotationRegressed {
            have: 3,
            got: 2,
            ..
        })
    ));
    // Over an empty engine, resume is new.
    let fresh = Storage::resume(MemoryStore::new(), roomy());
    fresh.check_invariants().unwrap();
}

#[test]
fn resume_under_tighter_limits_evicts_the_soonest_expiring() {
    let dir = TempDir::new("tighter");
    let ds: Vec<ValidDescriptor> = (0..6)
        .map(|i| {
            cap(
                &key(10 + i),
                "t",
                1,
                at(0),
                600 + 60 * u32::from(i),
                &["compute"],
            )
        })
        .collect();
    {
        let mut s = Storage::new(open(&dir), roomy());
        for d in &ds {
            s.offer(d.clone(), at(0)).unwrap();
        }
    }
    let s = Storage::resume(
        open(&dir),
        StoreConfig {
            max_descriptors: 4,
            max_per_key: 3,
            ..roomy()
        },
    );
    s.check_invariants().unwrap();
    s.store().check_invariants().unwrap();
    assert_eq!(s.len(), 3, "the per-key cap is the tighter limit here");
    let kept = ids(&s.store().expiring_by(at(100_000), usize::MAX));
    assert_eq!(kept, ds[3..].iter().map(|d| d.id).collect::<Vec<_>>());
}

/// The child half of [`a_commit_survives_sigkill_before_any_flush`]: run
/// by the parent as a separate process; a no-op in a normal test run.
#[test]
fn sigkill_child() {
    let Some(dir) = std::env::var_os("MARS_LMDB_SIGKILL_DIR") else {
        return;
    };
    let mut s = Storage::new(LmdbStore::open(&dir, options(64 << 20)).unwrap(), roomy());
    for i in 0..20u16 {
        s.offer(
            cap(&key(100 + i), "t", 1, at(0), 3_600, &["compute"]),
            at(0),
        )
        .unwrap();
    }
    // Committed, never flushed: now wait to be killed.
    println!("MARS-CHILD-READY");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_commit_survives_sigkill_before_any_flush() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = TempDir::new("sigkill");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MARS_LMDB_SIGKILL_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("MARS-CHILD-READY"));
    child.kill().unwrap(); // SIGKILL on Unix: no destructor, no sync.
    child.wait().unwrap();
    assert!(ready, "the child did not get to write");
    let store = open(&dir);
    store.check_invariants().unwrap();
    assert_eq!(store.len(), 20);
    assert_eq!(store.count_at(&rk("compute")), 20);
}

// ---------------------------------------------------------------------------
// Layout version, full map, damage, peers

/// Opens the store's environment with heed directly, as another program
/// (or a disk) could change it.
fn raw_env(dir: &TempDir) -> heed::Env {
    #[allow(unsafe_code)]
    // SAFETY: the store is closed; nothing else has the files open.
    unsafe {
        heed::EnvOpenOptions::new()
            .map_size(64 << 20)
            .max_dbs(16)
            .open(dir.path())
            .unwrap()
    }
}

#[test]
fn another_layout_version_is_refused_and_left_untouched() {
    let dir = TempDir::new("version");
    drop(open(&dir));
    let bump = |version: u32| {
        let env = raw_env(&dir);
        let mut wtxn = env.write_txn().unwrap();
        let meta: heed::Database<heed::types::Bytes, heed::types::Bytes> =
            env.open_database(&wtxn, Some("meta")).unwrap().unwrap();
        meta.put(&mut wtxn, b"version", &version.to_be_bytes())
            .unwrap();
        wtxn.commit().unwrap();
    };
    bump(LAYOUT_VERSION + 1);
    let e = LmdbStore::open(dir.path(), options(64 << 20)).unwrap_err();
    assert_eq!(
        e,
        StoreError::VersionMismatch {
            found: LAYOUT_VERSION + 1,
            expected: LAYOUT_VERSION
        }
    );
    assert!(e.to_string().contains("layout version"), "{e}");
    // A second attempt sees the same: the refused open wrote nothing.
    assert!(matches!(
        LmdbStore::open(dir.path(), options(64 << 20)),
        Err(StoreError::VersionMismatch { .. })
    ));
    bump(LAYOUT_VERSION);
    open(&dir).check_invariants().unwrap();
}

#[test]
fn a_full_map_refuses_writes_cleanly_and_recovers_as_entries_expire() {
    let dir = TempDir::new("full");
    let map_size = 8 << 20;
    let mut s = Storage::new(
        LmdbStore::open(dir.path(), options(map_size)).unwrap(),
        roomy(),
    );
    assert_eq!(s.store().map_size(), map_size);
    let big = |i: u16, ts: Timestamp| {
        DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), ts)
            .topic(format!("big-{i}"))
            .ttl(600)
            .routing_keys(vec![rk("compute"), rk("compute/x")])
            .payload(vec![i as u8; 60_000])
            .sign(&key(1_000 + i))
            .unwrap()
            .validate(ts)
            .unwrap()
    };
    let mut stored = Vec::new();
    let refusal = loop {
        let i = stored.len() as u16;
        assert!(i < 200, "an 8 MiB map cannot hold 200 × 60 KB");
        let d = big(i, at(0));
        match s.offer(d.clone(), at(0)) {
            Ok(_) => stored.push(d),
            Err(e) => break e,
        }
    };
    assert!(stored.len() >= 4, "only {} fit", stored.len());
    assert_eq!(
        refusal,
        StoreRefusal::Storage(StoreError::Full { map_size })
    );
    assert_eq!(
        refusal.to_string(),
        format!("storage full: map of {map_size} bytes is full")
    );
    // Nothing half-applied; reads still answer.
    s.check_invariants().unwrap();
    s.store().check_invariants().unwrap();
    assert_eq!(s.len(), stored.len());
    assert_eq!(
        s.find(&rk("compute/x"), &Filters::default(), 100, at(1))
            .len(),
        stored.len()
    );
    assert_eq!(s.get(&stored[0].id).as_deref(), Some(&stored[0]));
    // The publisher of the refused STORE was charged nothing.
    let refused_publisher = key(1_000 + stored.len() as u16).identity();
    assert_eq!(
        s.rate_limiter().tokens(&refused_publisher, at(0)),
        u64::from(u32::MAX)
    );
    // Removals still work on a full map, and so do sweeps — in small
    // batches, so that each leaves free pages for the next.
    let all: Vec<Hash> = stored.iter().map(|d| d.id).collect();
    assert!(matches!(s.try_remove(&all), Err(StoreError::Full { .. })));
    assert_eq!(s.len(), stored.len());
    assert!(s.remove(&stored[0].id).is_some());
    assert_eq!(s.failed_writes(), 0);
    let mut swept = 0;
    while s.sweep_pending(at(600)) {
        swept += s.sweep(at(600)).len();
    }
    assert_eq!(swept, stored.len() - 1);
    assert_eq!(s.failed_writes(), 0);
    assert!(s.is_empty());
    s.check_invariants().unwrap();
    s.store().check_invariants().unwrap();
    // The freed space is used again.
    s.offer(big(500, at(600)), at(600)).unwrap();
    s.store().check_invariants().unwrap();
}

/// Many small descriptors with eight routing keys each: removals dirty
/// many index pages, the case where a full map could lock up (LMDB needs
/// free pages to delete, and reuses freed ones only two commits later).
#[test]
fn sweeps_always_empty_a_map_filled_with_index_heavy_descriptors() {
    let dir = TempDir::new("index-heavy");
    let map_size = 8 << 20;
    let mut s = Storage::new(
        LmdbStore::open(dir.path(), options(map_size)).unwrap(),
        roomy(),
    );
    let k = key(7);
    let mut topic = 0u32;
    for round in 0..2u64 {
        let ts = at(round * 1_000);
        let mut stored = 0usize;
        let refusal = loop {
            topic += 1;
            let keys: Vec<Hash> = (0..8)
                .map(|i| rk(&format!("k{i}/{}", topic % 50)))
                .collect();
            let d = DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), ts)
                .topic(format!("t{topic}"))
                .ttl(60)
                .routing_keys(keys)
                .payload(vec![1; 100])
                .sign(&k)
                .unwrap()
                .validate(ts)
                .unwrap();
            match s.offer(d, ts) {
                Ok(_) => stored += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(
            refusal,
            StoreRefusal::Storage(StoreError::Full { .. })
        ));
        assert!(stored > 500, "round {round}: only {stored} fit");
        let later = ts.saturating_add(Duration::from_secs(60));
        let mut swept = 0;
        while s.sweep_pending(later) {
            swept += s.sweep(later).len();
        }
        assert_eq!(swept, stored, "round {round}");
        assert_eq!(s.failed_writes(), 0, "{:?}", s.last_write_error());
        assert!(s.is_empty());
        s.store().check_invariants().unwrap();
    }
}

/// Flips one byte inside the stored record of `id`, as a disk could.
fn damage_record(dir: &TempDir, id: &Hash) {
    let env = raw_env(dir);
    let mut wtxn = env.write_txn().unwrap();
    let records: heed::Database<heed::types::Bytes, heed::types::Bytes> = env
        .open_database(&wtxn, Some("descriptors"))
        .unwrap()
        .unwrap();
    let mut k = vec![id.algorithm().code(), id.digest().len() as u8];
    k.extend_from_slice(id.digest());
    k.resize(34, 0);
    let mut v = records.get(&wtxn, &k).unwrap().unwrap().to_vec();
    let at = v.len() - 5;
    v[at] ^= 0x40;
    records.put(&mut wtxn, &k, &v).unwrap();
    wtxn.commit().unwrap();
}

#[test]
fn a_damaged_record_reads_as_absent_is_counted_and_repaired() {
    let dir = TempDir::new("damage");
    let ds: Vec<ValidDescriptor> = (0..4)
        .map(|i| cap(&key(20 + i), "t", 1, at(i.into()), 3_600, &["compute"]))
        .collect();
    {
        let mut s = open(&dir);
        for d in &ds {
            s.put(Arc::new(d.clone()), &[]).unwrap();
        }
    }
    damage_record(&dir, &ds[1].id);

    let mut store = open(&dir);
    assert_eq!(store.read_errors(), 0);
    assert_eq!(store.get(&ds[1].id), None);
    assert_eq!(store.read_errors(), 1);
    assert!(matches!(
        store.last_read_error(),
        Some(StoreError::Corrupt { .. })
    ));
    // A scan skips it (and counts it again), the others are served.
    let scan = store.scan_key(&rk("compute"), &Filters::default(), at(10), 20);
    assert_eq!(
        ids(&scan.descriptors),
        [ds[3].id, ds[2].id, ds[0].id],
        "newest first, the damaged one left out"
    );
    assert_eq!(store.read_errors(), 2);
    assert_eq!(store.get(&ds[0].id).as_deref(), Some(&ds[0]));
    assert!(store.check_invariants().is_err());

    let report = store.repair().unwrap();
    assert_eq!(report.damaged_records, 1);
    assert!(report.orphan_entries >= 4, "{report:?}");
    store.check_invariants().unwrap();
    assert_eq!(store.len(), 3);
    assert_eq!(store.count_at(&rk("compute")), 3);
    assert_eq!(store.repair().unwrap(), Default::default());

    // A write that meets a damaged record repairs on its way.
    drop(store);
    damage_record(&dir, &ds[2].id);
    let mut store = open(&dir);
    let replacement = cap(&key(22), "t", 2, at(5), 3_600, &["compute"]);
    assert_eq!(store.put(Arc::new(replacement.clone()), &[]).unwrap(), None);
    store.check_invariants().unwrap();
    assert_eq!(store.len(), 3);
    assert_eq!(store.get(&replacement.id).as_deref(), Some(&replacement));
}

#[test]
fn peers_are_saved_and_loaded_across_restarts() {
    let dir = TempDir::new("peers");
    let peers: Vec<(Identity, NodeAddr)> = (0..50)
        .map(|i| {
            (
                key(i).identity(),
                NodeAddr::quic(format!("10.0.0.{i}:4433")),
            )
        })
        .collect();
    let store = open(&dir);
    assert!(store.load_peers().is_empty());
    store.save_peers(&peers).unwrap();
    assert_eq!(store.load_peers(), peers);
    // A shared handle works from another thread, and saving replaces.
    let book = store.peer_book();
    let fewer = peers[..3].to_vec();
    let saved = fewer.clone();
    std::thread::spawn(move || book.save_peers(&saved).unwrap())
        .join()
        .unwrap();
    assert_eq!(store.load_peers(), fewer);
    // Addresses no wire message could carry are skipped.
    let mut odd = fewer.clone();
    odd.push((key(99).identity(), NodeAddr::quic("x".repeat(1_000))));
    store.save_peers(&odd).unwrap();
    assert_eq!(store.load_peers(), fewer);
    drop(store);
    let store = open(&dir);
    assert_eq!(store.load_peers(), fewer);
    assert_eq!(store.read_errors(), 0);
    store.check_invariants().unwrap();
}

#[test]
fn the_store_is_usable_through_a_boxed_engine() {
    let dir = TempDir::new("boxed");
    let boxed: mars_proto::store::BoxedStore = Box::new(open(&dir));
    let mut s = Storage::resume(boxed, roomy());
    let d = cap(&key(1), "t", 1, at(0), 600, &["compute"]);
    assert!(matches!(
        s.offer(d.clone(), at(0)),
        Ok(Stored::Inserted { .. })
    ));
    s.flush().unwrap();
    assert_eq!(s.store().read_errors(), 0);
    assert_eq!(
        s.find(&rk("compute"), &Filters::default(), 5, at(1))[0].id,
        d.id
    );
    s.check_invariants().unwrap();
}
