//! A durable [`DescriptorStore`] on LMDB (through heed): a restarted hub
//! keeps what it held, and its peers.
//!
//! # Layout
//! One LMDB environment (a directory) with one database per index — id →
//! record, routing key → entries newest first (also per publisher and per
//! schema), replacement key → id, expiry → id, per-key counts — plus
//! `meta` (layout version, descriptor count, byte total) and `peers`.
//! Keys are fixed-width big-endian bytes, so LMDB's byte order is the index
//! order and a FIND_VALUE walks only as far as its answer, as in memory
//! (see `codec.rs` for the table). Every write — an accepted STORE with its
//! evictions, a sweep — is one LMDB write transaction that also updates
//! the count and byte total, so indexes and totals can never disagree,
//! whatever happens to the process.
//!
//! # Durability
//! A write returns `Ok` only after its transaction committed. Committed
//! data is in the operating system's page cache at once, so it survives
//! the process being killed — SIGKILL, a panic, an OOM kill — even before
//! any sync. What a power loss or kernel crash may take is set by
//! [`CommitSync`]: by default commits do not sync (`MDB_NOSYNC`) and
//! [`flush`](DescriptorStore::flush) syncs; the host calls it before any
//! packet that may carry a STORE_ACK leaves, so one sync covers every write
//! made since (group commit) and nothing acknowledged to a peer is lost.
//!
//! # Failures
//! - The map (the operator's size limit) full: the write fails with
//!   [`StoreError::Full`], its transaction is aborted and nothing changed.
//!   LMDB needs free pages to delete too (it copies every page it
//!   changes, and reuses a freed page only two transactions later), so
//!   writes that add data are refused while less than a reserve (1/32 of
//!   the map, at least 512 pages) would be left, and once the data file
//!   nears the map's end a removal takes out only as many descriptors as
//!   a quarter of the free pages covers (a larger batch fails with `Full`,
//!   and [`Storage::sweep`](crate::store::Storage::sweep) halves its batch
//!   until it fits). Each removal thus leaves room for the next, sweeps
//!   always make progress, and the store recovers as descriptors expire.
//! - A read that fails (a damaged record: its checksum, its id or its
//!   decoding) is answered as absent, counted in
//!   [`read_errors`](LmdbStore::read_errors) and kept as
//!   [`last_read_error`](LmdbStore::last_read_error) for the daemon's log
//!   and health report. The next write that touches a damaged record, or
//!   [`repair`](LmdbStore::repair), removes every damaged record and its
//!   index entries.
//!
//! Decoded descriptors are kept in a bounded memo
//! ([`LmdbOptions::cache_entries`]) so hot answers are shared `Arc`s, not
//! decoded on every query; writes keep it coherent.

mod cache;
mod check;
mod codec;
mod env;
mod peers;

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use heed::types::Bytes;
use heed::{Database, RoTxn, RwTxn};

pub use check::RepairReport;
pub use env::CommitSync;
pub use peers::{MAX_SAVED_PEERS, PeerBook};

use self::cache::DecodedCache;
use self::env::{LmdbEnv, heed_error};
use super::{DescriptorStore, KeyScan, StoreError, stored_size};
use crate::descriptor::ValidDescriptor;
use crate::descriptor::limits::MAX_TOPIC_LEN;
use crate::hash::Hash;
use crate::identity::Identity;
use crate::time::Timestamp;
use crate::wire::{Filters, NodeAddr};

/// The on-disk layout this build writes and reads. Bump it with any
/// change to keys, values or databases; [`LmdbStore::open`] refuses other
/// versions instead of misreading them.
pub const LAYOUT_VERSION: u32 = 1;

/// Map sizes are rounded up to a multiple of this: LMDB needs a multiple
/// of the OS page size, and 64 KiB is one for every page size in use.
const MAP_ALIGN: u64 = 64 * 1024;

/// The smallest map accepted (anything smaller is rounded up to it): room
/// for the reserve and a few descriptors.
pub const MIN_MAP_SIZE: u64 = 4 * 1024 * 1024;

/// Pages one write may dirty beyond its removals: a record's path in each
/// database (3 per routing key, up to 8 keys), counts, totals, the
/// database catalogue and the free list.
const PAGES_PER_WRITE: u64 = 64;

/// Pages one descriptor's removal may dirty (its paths in every index).
const PAGES_PER_REMOVAL: u64 = 48;

/// Pages kept free at least, whatever the map size: three times what the
/// largest single removal dirties, so that one removal after another
/// always finds pages while each waits for the last one's to be reusable.
const MIN_RESERVE_PAGES: u64 = 512;

const META_VERSION: &[u8] = b"version";
const META_COUNT: &[u8] = b"count";
const META_BYTES: &[u8] = b"bytes";

type Db = Database<Bytes, Bytes>;

/// How to open an [`LmdbStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmdbOptions {
    /// The most bytes the data file may grow to (LMDB's map size), rounded
    /// up to 64 KiB. Only address space until used. Set it well above
    /// [`StoreConfig::max_bytes`](crate::store::StoreConfig::max_bytes)
    /// (which counts an estimate of memory, not disk): each descriptor's
    /// record and ~3 index entries per routing key take about 1.5× its
    /// charged size on disk. Default 2 GiB.
    pub map_size: u64,
    /// Decoded descriptors kept in memory (each an `Arc` shared with
    /// answers), least recently used out first; 0 disables the memo.
    /// Default 65,536.
    pub cache_entries: usize,
    /// When commits reach stable storage. Default [`CommitSync::OnFlush`].
    pub commit_sync: CommitSync,
}

impl LmdbOptions {
    /// Default [`map_size`](Self::map_size): 2 GiB.
    pub const DEFAULT_MAP_SIZE: u64 = 2 * 1024 * 1024 * 1024;
    /// Default [`cache_entries`](Self::cache_entries).
    pub const DEFAULT_CACHE_ENTRIES: usize = 65_536;
}

impl Default for LmdbOptions {
    fn default() -> Self {
        LmdbOptions {
            map_size: Self::DEFAULT_MAP_SIZE,
            cache_entries: Self::DEFAULT_CACHE_ENTRIES,
            commit_sync: CommitSync::default(),
        }
    }
}

/// The databases of one environment (handles are plain integers).
#[derive(Clone, Copy)]
struct Dbs {
    descriptors: Db,
    by_key: Db,
    by_key_publisher: Db,
    by_key_schema: Db,
    by_slot: Db,
    by_expiry: Db,
    key_counts: Db,
    meta: Db,
    peers: Db,
}

impl Dbs {
    /// The index databases whose keys end in a descriptor id.
    fn id_indexes(&self) -> [(Db, &'static str); 4] {
        [
            (self.by_key, "by_key"),
            (self.by_key_publisher, "by_key_publisher"),
            (self.by_key_schema, "by_key_schema"),
            (self.by_expiry, "by_expiry"),
        ]
    }

    /// Every database, for space accounting.
    fn all(&self) -> [Db; 9] {
        [
            self.descriptors,
            self.by_key,
            self.by_key_publisher,
            self.by_key_schema,
            self.by_slot,
            self.by_expiry,
            self.key_counts,
            self.meta,
            self.peers,
        ]
    }
}

/// Descriptor count and byte total, as kept in `meta`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    len: u64,
    bytes: u64,
}

/// Failed reads, shared by the store and its [`PeerBook`]s.
#[derive(Debug, Default)]
struct ReadErrorLog {
    count: AtomicU64,
    last: Mutex<Option<StoreError>>,
}

impl ReadErrorLog {
    fn note(&self, e: StoreError) {
        self.count.fetch_add(1, Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn last(&self) -> Option<StoreError> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A [`DescriptorStore`] in an LMDB environment (see the module docs for
/// the layout, durability and failure model).
///
/// One store per directory, and one process at a time: the directory
/// belongs to it (nothing else may write its files), on a local file
/// system. Reads never fail (a damaged record reads as absent and is
/// counted); writes are atomic and fail only with a [`StoreError`].
pub struct LmdbStore {
    env: LmdbEnv,
    dbs: Dbs,
    map_size: u64,
    /// Space kept free for removals (see the module docs).
    reserve: u64,
    page_size: u64,
    /// The committed totals (also in `meta`, written in the same
    /// transactions).
    totals: Totals,
    /// Whether a commit may not have reached stable storage yet, so that
    /// [`flush`](DescriptorStore::flush) — called before every packet
    /// that may carry a STORE_ACK — costs nothing when nothing changed.
    unsynced: bool,
    commit_sync: CommitSync,
    cache: Mutex<DecodedCache>,
    errors: Arc<ReadErrorLog>,
}

impl fmt::Debug for LmdbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LmdbStore")
            .field("path", &self.env.path())
            .field("len", &self.totals.len)
            .field("bytes", &self.totals.bytes)
            .field("map_size", &self.map_size)
            .field("read_errors", &self.errors.count())
            .finish_non_exhaustive()
    }
}

impl LmdbStore {
    /// Opens the store in directory `path`, creating the directory and an
    /// empty store if needed.
    ///
    /// Fails with [`StoreError::VersionMismatch`] if the files were written
    /// with another [`LAYOUT_VERSION`] (nothing is changed then), and with
    /// an I/O or backend error if the directory cannot be used — including
    /// when this process already has it open.
    pub fn open(path: impl AsRef<Path>, options: LmdbOptions) -> Result<LmdbStore, StoreError> {
        let map_size = options.map_size.max(MIN_MAP_SIZE).div_ceil(MAP_ALIGN) * MAP_ALIGN;
        let env = env::open(path.as_ref(), map_size, options.commit_sync)?;
        let err = |op| move |e| heed_error(op, map_size, e);
        let mut wtxn = env.write_txn().map_err(err("open"))?;
        let mut create = |name: &str| {
            env.create_database::<Bytes, Bytes>(&mut wtxn, Some(name))
                .map_err(err("create a database"))
        };
        let dbs = Dbs {
            descriptors: create("descriptors")?,
            by_key: create("by_key")?,
            by_key_publisher: create("by_key_publisher")?,
            by_key_schema: create("by_key_schema")?,
            by_slot: create("by_slot")?,
            by_expiry: create("by_expiry")?,
            key_counts: create("key_counts")?,
            meta: create("meta")?,
            peers: create("peers")?,
        };
        let version = dbs
            .meta
            .get(&wtxn, META_VERSION)
            .map_err(err("read the layout version"))?
            .map(|v| {
                <[u8; 4]>::try_from(v)
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt {
                        what: "the layout version marker",
                    })
            })
            .transpose()?;
        let totals = match version {
            Some(found) if found != LAYOUT_VERSION => {
                // Dropping the transaction aborts it: nothing is written.
                return Err(StoreError::VersionMismatch {
                    found,
                    expected: LAYOUT_VERSION,
                });
            }
            Some(_) => {
                let read = |name, what| {
                    dbs.meta
                        .get(&wtxn, name)
                        .map_err(err("read the totals"))?
                        .and_then(codec::read_u64)
                        .ok_or(StoreError::Corrupt { what })
                };
                Totals {
                    len: read(META_COUNT, "the descriptor count")?,
                    bytes: read(META_BYTES, "the byte total")?,
                }
            }
            None => {
                if !dbs
                    .descriptors
                    .is_empty(&wtxn)
                    .map_err(err("read descriptors"))?
                {
                    return Err(StoreError::Corrupt {
                        what: "the layout version marker (missing beside stored descriptors)",
                    });
                }
                dbs.meta
                    .put(&mut wtxn, META_VERSION, &LAYOUT_VERSION.to_be_bytes())
                    .map_err(err("write the layout version"))?;
                let totals = Totals::default();
                write_totals(&dbs, &mut wtxn, totals, map_size)?;
                totals
            }
        };
        wtxn.commit().map_err(err("commit"))?;
        let page_size = u64::from(env.stat().page_size).max(512);
        // LMDB keeps a larger size recorded in existing files.
        let map_size = (env.info().map_size as u64).max(map_size);
        Ok(LmdbStore {
            reserve: (map_size / 32).max(MIN_RESERVE_PAGES * page_size),
            page_size,
            dbs,
            map_size,
            totals,
            unsynced: false,
            commit_sync: options.commit_sync,
            cache: Mutex::new(DecodedCache::new(options.cache_entries)),
            errors: Arc::default(),
            env,
        })
    }

    /// The environment's directory.
    pub fn path(&self) -> &Path {
        self.env.path()
    }

    /// The map size in force (the size limit of the data file).
    pub fn map_size(&self) -> u64 {
        self.map_size
    }

    /// Bytes of the map in use by the store's databases (free pages not
    /// counted), for health reports.
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let txn = self.env.read_txn().map_err(self.err("begin a read"))?;
        self.used_in(&txn)
    }

    /// Reads that failed since the store was opened (damaged records,
    /// unreadable pages), each answered as absent.
    pub fn read_errors(&self) -> u64 {
        self.errors.count()
    }

    /// The last error counted by [`read_errors`](Self::read_errors).
    pub fn last_read_error(&self) -> Option<StoreError> {
        self.errors.last()
    }

    /// (hits, misses) of the decoded-descriptor memo since opening.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache().stats()
    }

    /// Descriptors in the decoded-descriptor memo.
    pub fn cache_len(&self) -> usize {
        self.cache().len()
    }

    /// A handle on the saved peer set that shares this store's environment,
    /// for a daemon whose node owns the store (inside a box).
    pub fn peer_book(&self) -> PeerBook {
        PeerBook::new(
            self.env.clone(),
            self.dbs.peers,
            Arc::clone(&self.errors),
            self.map_size,
        )
    }

    /// Replaces the saved peer set (see [`PeerBook::save_peers`]).
    pub fn save_peers(&self, peers: &[(Identity, NodeAddr)]) -> Result<(), StoreError> {
        self.peer_book().save_peers(peers)
    }

    /// The saved peer set (see [`PeerBook::load_peers`]).
    pub fn load_peers(&self) -> Vec<(Identity, NodeAddr)> {
        self.peer_book().load_peers()
    }

    /// Removes every damaged record and its index entries, drops index
    /// entries that point at no record, restores missing entries of the
    /// records that read back, and recomputes the per-key counts and the
    /// totals — one transaction, O(n). A write that meets a damaged record
    /// does this by itself; call it when [`read_errors`](Self::read_errors)
    /// grows.
    pub fn repair(&mut self) -> Result<RepairReport, StoreError> {
        let mut totals = self.totals;
        let mut wtxn = self.begin_write()?;
        let report = self.repair_in(&mut wtxn, &mut totals)?;
        self.commit(wtxn, totals, &[], None)?;
        self.committed(totals);
        Ok(report)
    }

    fn cache(&self) -> MutexGuard<'_, DecodedCache> {
        // The memo holds only committed, decoded descriptors; a panic while
        // it was locked cannot leave a wrong one in it.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, op: &'static str) -> impl Fn(heed::Error) -> StoreError + use<> {
        let map_size = self.map_size;
        move |e| heed_error(op, map_size, e)
    }

    fn begin_write(&self) -> Result<RwTxn<'_>, StoreError> {
        self.env.write_txn().map_err(self.err("begin a write"))
    }

    fn read_txn(&self) -> Option<RoTxn<'_, heed::WithoutTls>> {
        match self.env.read_txn() {
            Ok(t) => Some(t),
            Err(e) => {
                self.errors.note(self.err("begin a read")(e));
                None
            }
        }
    }

    /// The descriptor `id` as `txn` sees it: from the memo, or decoded
    /// (then remembered). Damaged records read as absent, counted.
    fn load(&self, txn: &RoTxn, id: &Hash) -> Option<Arc<ValidDescriptor>> {
        let cached = self.cache().get(id);
        if cached.is_some() {
            return cached;
        }
        let raw = match self.dbs.descriptors.get(txn, &codec::hash(id)) {
            Ok(raw) => raw?,
            Err(e) => {
                self.errors.note(self.err("read a descriptor")(e));
                return None;
            }
        };
        match codec::decode_record(id, raw) {
            Ok(d) => {
                let d = Arc::new(d);
                self.cache().insert(Arc::clone(&d));
                Some(d)
            }
            Err(e) => {
                self.errors.note(e);
                None
            }
        }
    }

    /// Bytes used by the databases as `txn` sees them.
    fn used_in(&self, txn: &RoTxn) -> Result<u64, StoreError> {
        let main = self.env.stat();
        let mut pages = (main.branch_pages + main.leaf_pages + main.overflow_pages) as u64;
        for db in self.dbs.all() {
            let s = db.stat(txn).map_err(self.err("read database statistics"))?;
            pages += (s.branch_pages + s.leaf_pages + s.overflow_pages) as u64;
        }
        // Two meta pages, and the free list's own pages (not reported):
        // count a few.
        Ok((pages + 8) * self.page_size)
    }

    /// Refuses a write that adds `incoming` record bytes and removes
    /// `removals` descriptors unless the map keeps its reserve afterwards,
    /// so that removals always find free pages. LMDB copies every page it
    /// changes, deletions included, and reuses a freed page only two
    /// transactions later.
    fn ensure_room(&self, txn: &RoTxn, incoming: usize, removals: usize) -> Result<(), StoreError> {
        let pages = PAGES_PER_WRITE + PAGES_PER_REMOVAL * removals as u64;
        let need = self
            .reserve
            .saturating_add(2 * incoming as u64)
            .saturating_add(pages * self.page_size);
        if !self.short_of(txn, need)? {
            return Ok(());
        }
        Err(StoreError::Full {
            map_size: self.map_size,
        })
    }

    /// Most descriptors one removal may take out. Unbounded while the data
    /// file is far from the map's end; near it, as many as a quarter of
    /// the free pages covers, at least one. LMDB copies every page it
    /// changes and reuses a freed page only two commits later: a removal
    /// that used up the free pages would leave the next one — and every
    /// later write — nothing to commit with. Capped, each removal leaves
    /// room for the next, and what it frees serves the one after; the cap
    /// grows as removals free space.
    fn removal_cap(&self, txn: &RoTxn) -> Result<usize, StoreError> {
        let high_water = (self.env.info().last_page_number as u64 + 1) * self.page_size;
        if high_water.saturating_add(2 * self.reserve) <= self.map_size {
            return Ok(usize::MAX);
        }
        let free_pages = self.map_size.saturating_sub(self.used_in(txn)?) / self.page_size;
        let cap = free_pages / 4 / PAGES_PER_REMOVAL;
        Ok(usize::try_from(cap).unwrap_or(usize::MAX).max(1))
    }

    /// Whether less than `need` bytes of the map are free as `txn` sees it:
    /// O(1) while the file's high-water mark is far from the map's end,
    /// a few database statistics otherwise.
    fn short_of(&self, txn: &RoTxn, need: u64) -> Result<bool, StoreError> {
        let high_water = (self.env.info().last_page_number as u64 + 1) * self.page_size;
        if high_water.saturating_add(need) <= self.map_size {
            return Ok(false);
        }
        Ok(self.used_in(txn)?.saturating_add(need) > self.map_size)
    }

    /// Removes descriptor `id` and its index entries inside `wtxn`.
    /// `Ok(None)` if it is not held — or if its record is damaged, in
    /// which case every damaged record is removed ([`repair_in`]).
    fn delete_in(
        &self,
        wtxn: &mut RwTxn,
        id: &Hash,
        totals: &mut Totals,
    ) -> Result<Option<Arc<ValidDescriptor>>, StoreError> {
        let idb = codec::hash(id);
        let Some(raw) = self
            .dbs
            .descriptors
            .get(wtxn, &idb)
            .map_err(self.err("read a descriptor"))?
        else {
            return Ok(None);
        };
        let cached = self.cache().get(id);
        let d = match cached {
            Some(d) => d,
            None => match codec::decode_record(id, raw) {
                Ok(d) => Arc::new(d),
                Err(e) => {
                    self.errors.note(e);
                    self.repair_in(wtxn, totals)?;
                    return Ok(None);
                }
            },
        };
        let err = self.err("remove a descriptor");
        self.dbs.descriptors.delete(wtxn, &idb).map_err(&err)?;
        for (i, key) in d.routing_keys.iter().enumerate() {
            if d.routing_keys[..i].contains(key) {
                continue;
            }
            let dbs = &self.dbs;
            dbs.by_key
                .delete(wtxn, &codec::key_entry(key, d.timestamp, id))
                .map_err(&err)?;
            dbs.by_key_publisher
                .delete(
                    wtxn,
                    &codec::key_pub_entry(key, &d.publisher, d.timestamp, id),
                )
                .map_err(&err)?;
            dbs.by_key_schema
                .delete(
                    wtxn,
                    &codec::key_schema_entry(key, &d.schema_hash, d.timestamp, id),
                )
                .map_err(&err)?;
            self.add_to_count(wtxn, key, -1)?;
        }
        let slot = codec::slot_key(&d.publisher, &d.schema_hash, &d.topic);
        let holder = self.dbs.by_slot.get(wtxn, &slot).map_err(&err)?;
        if holder == Some(&idb[..]) {
            self.dbs.by_slot.delete(wtxn, &slot).map_err(&err)?;
        }
        self.dbs
            .by_expiry
            .delete(wtxn, &codec::expiry_entry(d.expires_at(), id))
            .map_err(&err)?;
        totals.len = totals.len.saturating_sub(1);
        totals.bytes = totals.bytes.saturating_sub(stored_size(&d));
        Ok(Some(d))
    }

    /// Writes `d` (encoded as `record`) and its index entries inside
    /// `wtxn`; its slot and id are free.
    fn insert_in(
        &self,
        wtxn: &mut RwTxn,
        d: &ValidDescriptor,
        record: &[u8],
        slot: &[u8],
        totals: &mut Totals,
    ) -> Result<(), StoreError> {
        let err = self.err("write a descriptor");
        let idb = codec::hash(&d.id);
        let dbs = &self.dbs;
        dbs.descriptors.put(wtxn, &idb, record).map_err(&err)?;
        let expires = d.expires_at().as_micros().to_be_bytes();
        for (i, key) in d.routing_keys.iter().enumerate() {
            if d.routing_keys[..i].contains(key) {
                continue;
            }
            dbs.by_key
                .put(wtxn, &codec::key_entry(key, d.timestamp, &d.id), &expires)
                .map_err(&err)?;
            dbs.by_key_publisher
                .put(
                    wtxn,
                    &codec::key_pub_entry(key, &d.publisher, d.timestamp, &d.id),
                    &expires,
                )
                .map_err(&err)?;
            dbs.by_key_schema
                .put(
                    wtxn,
                    &codec::key_schema_entry(key, &d.schema_hash, d.timestamp, &d.id),
                    &expires,
                )
                .map_err(&err)?;
            self.add_to_count(wtxn, key, 1)?;
        }
        dbs.by_slot.put(wtxn, slot, &idb).map_err(&err)?;
        let size = stored_size(d);
        dbs.by_expiry
            .put(
                wtxn,
                &codec::expiry_entry(d.expires_at(), &d.id),
                &size.to_be_bytes(),
            )
            .map_err(&err)?;
        totals.len += 1;
        totals.bytes += size;
        Ok(())
    }

    /// Adds `delta` (±1) to the entry count of routing key `key`, dropping
    /// the count at zero.
    fn add_to_count(&self, wtxn: &mut RwTxn, key: &Hash, delta: i8) -> Result<(), StoreError> {
        let err = self.err("update a key count");
        let k = codec::hash(key);
        let have = match self.dbs.key_counts.get(wtxn, &k).map_err(&err)? {
            None => 0,
            Some(raw) => codec::read_u64(raw).unwrap_or_else(|| {
                self.errors.note(StoreError::Corrupt {
                    what: "a routing-key count",
                });
                0
            }),
        };
        let n = if delta < 0 {
            have.saturating_sub(1)
        } else {
            have + 1
        };
        if n == 0 {
            self.dbs.key_counts.delete(wtxn, &k).map_err(&err)?;
        } else {
            self.dbs
                .key_counts
                .put(wtxn, &k, &n.to_be_bytes())
                .map_err(&err)?;
        }
        Ok(())
    }

    /// Takes the totals of a transaction just committed as the store's.
    fn committed(&mut self, totals: Totals) {
        self.totals = totals;
        self.unsynced = self.commit_sync != CommitSync::EachCommit;
    }

    /// Commits `wtxn` with `totals`, then makes the memo follow (`gone`
    /// out, `added` in); the caller then takes `totals` as its own.
    fn commit(
        &self,
        mut wtxn: RwTxn<'_>,
        totals: Totals,
        gone: &[Arc<ValidDescriptor>],
        added: Option<&Arc<ValidDescriptor>>,
    ) -> Result<(), StoreError> {
        write_totals(&self.dbs, &mut wtxn, totals, self.map_size)?;
        wtxn.commit().map_err(self.err("commit"))?;
        let mut cache = self.cache();
        for d in gone {
            cache.remove(&d.id);
        }
        if let Some(d) = added {
            cache.insert(Arc::clone(d));
        }
        Ok(())
    }
}

/// Writes the totals into `meta` (in the same transaction as the data they
/// count, so they cannot disagree after a crash).
fn write_totals(
    dbs: &Dbs,
    wtxn: &mut RwTxn,
    totals: Totals,
    map_size: u64,
) -> Result<(), StoreError> {
    let err = |e| heed_error("write the totals", map_size, e);
    dbs.meta
        .put(wtxn, META_COUNT, &totals.len.to_be_bytes())
        .map_err(err)?;
    dbs.meta
        .put(wtxn, META_BYTES, &totals.bytes.to_be_bytes())
        .map_err(err)?;
    Ok(())
}

impl DescriptorStore for LmdbStore {
    fn put(
        &mut self,
        d: Arc<ValidDescriptor>,
        remove: &[Hash],
    ) -> Result<Option<Arc<ValidDescriptor>>, StoreError> {
        let record = codec::encode_record(&d);
        let mut totals = self.totals;
        let mut gone = Vec::new();
        let mut wtxn = self.begin_write()?;
        self.ensure_room(&wtxn, record.len(), remove.len())?;
        for id in remove {
            if let Some(g) = self.delete_in(&mut wtxn, id, &mut totals)? {
                gone.push(g);
            }
        }
        let slot = codec::slot_key(&d.publisher, &d.schema_hash, &d.topic);
        let holder = self
            .dbs
            .by_slot
            .get(&wtxn, &slot)
            .map_err(self.err("read a replacement key"))?
            .map(|raw| {
                codec::read_hash(raw).ok_or(StoreError::Corrupt {
                    what: "a replacement-key entry",
                })
            });
        let old = match holder {
            None => None,
            Some(Ok(id)) => self.delete_in(&mut wtxn, &id, &mut totals)?,
            // Unreadable: the entry is overwritten below; `repair` drops
            // whatever it pointed at.
            Some(Err(e)) => {
                self.errors.note(e);
                None
            }
        };
        // The same id held under another slot cannot happen (the id covers
        // the slot's fields), but a record must never be indexed twice.
        if let Some(same) = self.delete_in(&mut wtxn, &d.id, &mut totals)? {
            gone.push(same);
        }
        self.insert_in(&mut wtxn, &d, &record, &slot, &mut totals)?;
        if let Some(o) = &old {
            gone.push(Arc::clone(o));
        }
        self.commit(wtxn, totals, &gone, Some(&d))?;
        self.committed(totals);
        Ok(old)
    }

    fn remove(&mut self, ids: &[Hash]) -> Result<Vec<Arc<ValidDescriptor>>, StoreError> {
        let mut out = Vec::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut totals = self.totals;
        let mut wtxn = self.begin_write()?;
        if ids.len() > self.removal_cap(&wtxn)? {
            return Err(StoreError::Full {
                map_size: self.map_size,
            });
        }
        for id in ids {
            if let Some(d) = self.delete_in(&mut wtxn, id, &mut totals)? {
                out.push(d);
            }
        }
        if totals == self.totals {
            // Nothing was held: nothing to commit.
            return Ok(out);
        }
        self.commit(wtxn, totals, &out, None)?;
        self.committed(totals);
        Ok(out)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if !self.unsynced {
            return Ok(());
        }
        self.env
            .force_sync()
            .map_err(|e| heed_error("sync", self.map_size, e))?;
        self.unsynced = false;
        Ok(())
    }

    fn read_errors(&self) -> u64 {
        self.errors.count()
    }

    fn get(&self, id: &Hash) -> Option<Arc<ValidDescriptor>> {
        let cached = self.cache().get(id);
        if cached.is_some() {
            return cached;
        }
        let txn = self.read_txn()?;
        self.load(&txn, id)
    }

    fn by_replacement_key(
        &self,
        publisher: &Identity,
        schema_hash: &Hash,
        topic: &str,
    ) -> Option<Arc<ValidDescriptor>> {
        if topic.len() > MAX_TOPIC_LEN {
            return None;
        }
        let txn = self.read_txn()?;
        let slot = codec::slot_key(publisher, schema_hash, topic);
        let raw = match self.dbs.by_slot.get(&txn, &slot) {
            Ok(raw) => raw?,
            Err(e) => {
                self.errors.note(self.err("read a replacement key")(e));
                return None;
            }
        };
        let Some(id) = codec::read_hash(raw) else {
            self.errors.note(StoreError::Corrupt {
                what: "a replacement-key entry",
            });
            return None;
        };
        self.load(&txn, &id)
    }

    fn scan_key(&self, key: &Hash, filters: &Filters, now: Timestamp, limit: usize) -> KeyScan {
        let mut scan = KeyScan::default();
        if limit == 0 {
            return scan;
        }
        let Some(txn) = self.read_txn() else {
            return scan;
        };
        // The narrowest index the filters allow; the rest is checked per
        // entry, exactly as in memory.
        let (by_publisher, by_schema, by_key);
        let (db, prefix): (Db, &[u8]) = match (&filters.publisher, &filters.schema_hash) {
            (Some(p), _) => {
                by_publisher = codec::key_pub_prefix(key, p);
                (self.dbs.by_key_publisher, &by_publisher)
            }
            (None, Some(s)) => {
                by_schema = codec::key_schema_prefix(key, s);
                (self.dbs.by_key_schema, &by_schema)
            }
            (None, None) => {
                by_key = codec::hash(key);
                (self.dbs.by_key, &by_key)
            }
        };
        let entries = match db.rev_prefix_iter(&txn, prefix) {
            Ok(it) => it,
            Err(e) => {
                self.errors.note(self.err("walk a routing key")(e));
                return scan;
            }
        };
        for entry in entries {
            if scan.descriptors.len() >= limit {
                break;
            }
            let (k, v) = match entry {
                Ok(kv) => kv,
                Err(e) => {
                    self.errors.note(self.err("walk a routing key")(e));
                    break;
                }
            };
            let (Some(timestamp), Some(id), Some(expires)) = (
                codec::trailing_timestamp(k),
                codec::trailing_id(k),
                codec::read_u64(v),
            ) else {
                self.errors.note(StoreError::Corrupt {
                    what: "a routing-key index entry",
                });
                continue;
            };
            if filters.min_timestamp.is_some_and(|min| timestamp < min) {
                break;
            }
            scan.examined += 1;
            if Timestamp::from_micros(expires) <= now {
                continue;
            }
            let Some(d) = self.load(&txn, &id) else {
                continue;
            };
            if filters.schema_hash.is_some_and(|s| s != d.schema_hash) {
                continue;
            }
            scan.descriptors.push(d);
        }
        scan
    }

    fn count_at(&self, key: &Hash) -> usize {
        let Some(txn) = self.read_txn() else {
            return 0;
        };
        match self.dbs.key_counts.get(&txn, &codec::hash(key)) {
            Ok(None) => 0,
            Ok(Some(raw)) => match codec::read_u64(raw) {
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                None => {
                    self.errors.note(StoreError::Corrupt {
                        what: "a routing-key count",
                    });
                    0
                }
            },
            Err(e) => {
                self.errors.note(self.err("read a key count")(e));
                0
            }
        }
    }

    fn soonest_expiring(&self) -> Option<Arc<ValidDescriptor>> {
        let txn = self.read_txn()?;
        let entries = match self.dbs.by_expiry.iter(&txn) {
            Ok(it) => it,
            Err(e) => {
                self.errors.note(self.err("walk the expiry index")(e));
                return None;
            }
        };
        for entry in entries {
            let k = match entry {
                Ok((k, _)) => k,
                Err(e) => {
                    self.errors.note(self.err("walk the expiry index")(e));
                    return None;
                }
            };
            if let Some(d) = codec::trailing_id(k).and_then(|id| self.load(&txn, &id)) {
                return Some(d);
            }
        }
        None
    }

    fn expiring_by(&self, deadline: Timestamp, limit: usize) -> Vec<Arc<ValidDescriptor>> {
        let mut out = Vec::new();
        if limit == 0 {
            return out;
        }
        let Some(txn) = self.read_txn() else {
            return out;
        };
        let entries = match self.dbs.by_expiry.iter(&txn) {
            Ok(it) => it,
            Err(e) => {
                self.errors.note(self.err("walk the expiry index")(e));
                return out;
            }
        };
        let mut taken = 0usize;
        for entry in entries {
            let k = match entry {
                Ok((k, _)) => k,
                Err(e) => {
                    self.errors.note(self.err("walk the expiry index")(e));
                    break;
                }
            };
            let Some(expires) = k.get(..codec::U64_LEN).and_then(codec::read_u64) else {
                self.errors.note(StoreError::Corrupt {
                    what: "an expiry index entry",
                });
                continue;
            };
            if Timestamp::from_micros(expires) > deadline || taken >= limit {
                break;
            }
            taken += 1;
            if let Some(d) = codec::trailing_id(k).and_then(|id| self.load(&txn, &id)) {
                out.push(d);
            }
        }
        out
    }

    fn len(&self) -> usize {
        usize::try_from(self.totals.len).unwrap_or(usize::MAX)
    }

    fn total_bytes(&self) -> u64 {
        self.totals.bytes
    }
}
