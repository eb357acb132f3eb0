//! Descriptor storage: the engine trait, an in-memory engine, a durable
//! engine (feature `lmdb`), and the rules.
//!
//! Two layers, so that the protocol's rules exist exactly once:
//!
//! - [`DescriptorStore`] is the *storage engine*: indexes and nothing else.
//!   It knows no protocol rule beyond "one descriptor per replacement key",
//!   and refuses a write only when it cannot do it (a full or failing disk,
//!   a [`StoreError`]). [`MemoryStore`] implements it in memory;
//!   `LmdbStore` (feature `lmdb`) on disk, so a restarted hub keeps what
//!   it held.
//! - [`Storage`] wraps an engine with a [`StoreConfig`] and the state the
//!   rules need (rate-limit buckets, key-rotation records, revocation
//!   tombstones) and implements the STORE rules of WIRE.md ("Descriptor",
//!   "DHT constants"): sequence replacement, revocation, key rotation,
//!   capacity, per-key caps, per-publisher rate limits and expiry. Every
//!   refusal is a [`StoreRefusal`] whose text is the STORE_ACK `reason`.
//!
//! Descriptors are shared as `Arc<ValidDescriptor>`: replicas, lookup
//! results and the store hold the same allocation, payload included.
//!
//! Answering FIND_VALUE costs O(max_results), not O(descriptors at the key)
//! (DESIGN.md, "The core API"): every routing key keeps its descriptors
//! ordered newest first, also per publisher and per schema, so a query walks
//! only as far as its answer (see [`DescriptorStore::scan_key`]).

mod config;
mod error;
#[cfg(feature = "lmdb")]
mod lmdb;
mod memory;
mod rate_limit;
mod rotation;
mod rules;
mod tombstones;

use std::sync::Arc;

pub use config::StoreConfig;
pub use error::{ErrorSource, StoreError};
#[cfg(feature = "lmdb")]
pub use lmdb::{
    CommitSync, LAYOUT_VERSION, LmdbOptions, LmdbStore, MAX_SAVED_PEERS, MIN_MAP_SIZE, PeerBook,
    RepairReport,
};
pub use memory::MemoryStore;
pub use rate_limit::RateLimiter;
pub use rules::{
    MAX_EVICTIONS_PER_OFFER, Removed, SWEEP_RETRY_DELAY, Storage, StoreRefusal, Stored,
};

use crate::descriptor::{Descriptor, ValidDescriptor};
use crate::hash::Hash;
use crate::identity::Identity;
use crate::time::Timestamp;
use crate::wire::Filters;

/// Bytes charged for every stored descriptor on top of its variable parts:
/// the fixed fields (two hashes, key, signature, counters), the `Arc`, and
/// the id, expiry and replacement-key index entries.
pub const ENTRY_OVERHEAD_BYTES: u64 = 768;

/// Bytes charged per routing key: the hash itself and its three index
/// entries (all, by publisher, by schema).
pub const ROUTING_KEY_OVERHEAD_BYTES: u64 = 320;

/// What one descriptor counts against [`StoreConfig::max_bytes`].
///
/// An estimate of the memory a stored descriptor holds, not its wire size:
/// payload and topic bytes plus fixed per-entry and per-routing-key costs,
/// so that a flood of tiny descriptors is charged for its index entries.
/// Every engine must charge exactly this, so totals agree across engines.
pub fn stored_size(d: &Descriptor) -> u64 {
    ENTRY_OVERHEAD_BYTES
        + d.payload.len() as u64
        + d.topic.len() as u64
        + ROUTING_KEY_OVERHEAD_BYTES * d.routing_keys.len() as u64
}

/// The answer of [`DescriptorStore::scan_key`]: what was found, and how much
/// index was walked to find it (the cost the O(limit) promise is about).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyScan {
    /// Matching live descriptors, newest `timestamp` first, at most `limit`.
    pub descriptors: Vec<Arc<ValidDescriptor>>,
    /// Index entries examined, matching or not (expired ones included).
    pub examined: usize,
}

/// A storage engine boxed behind the trait, so a node can be built over
/// whichever engine its host chose (memory, LMDB) without a type parameter.
pub type BoxedStore = Box<dyn DescriptorStore + Send>;

/// A storage engine for descriptors: indexes only, no protocol rules.
///
/// The engine keeps at most one descriptor per replacement key
/// (publisher, schema_hash, topic) — that is an index property, not a
/// rule — and otherwise stores what it is given. Sequence checks,
/// revocation, capacity and rate limits live in [`Storage`], once, for
/// every engine.
///
/// Methods are synchronous: the Sans-IO core has nowhere to wait. Writes
/// are fallible and atomic — a disk engine that cannot complete one
/// (full, failing) returns a [`StoreError`] and has changed nothing, so
/// [`Storage`] never holds rule state for a half-applied write. Reads are
/// infallible: an engine whose read fails (corruption) answers as if the
/// entry were absent, counts it ([`read_errors`](Self::read_errors)) and
/// keeps the details for the operator.
///
/// `Debug` is a supertrait so that a node holding a [`BoxedStore`] can
/// still derive `Debug`.
pub trait DescriptorStore: std::fmt::Debug {
    /// Removes the descriptors listed in `remove` (ids not held are
    /// skipped), then inserts `d`. If a descriptor with `d`'s replacement
    /// key is still held it is removed too and returned (whatever its
    /// sequence: the caller has already decided).
    ///
    /// All or nothing: on `Err`, nothing was removed or inserted.
    fn put(
        &mut self,
        d: Arc<ValidDescriptor>,
        remove: &[Hash],
    ) -> Result<Option<Arc<ValidDescriptor>>, StoreError>;

    /// Removes the descriptors with these ids from every index (ids not
    /// held are skipped) and returns those that were held, in the order
    /// asked. All or nothing, like [`put`](Self::put).
    fn remove(&mut self, ids: &[Hash]) -> Result<Vec<Arc<ValidDescriptor>>, StoreError>;

    /// Makes every write that returned `Ok` durable against power loss.
    /// An engine may acknowledge writes before they reach stable storage
    /// (so that many can share one sync); its host calls this before it
    /// tells anyone (a STORE_ACK) that a write happened. In memory there
    /// is nothing to do.
    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Reads that failed (corrupt or unreadable entries, answered as
    /// absent) since the engine was opened, for logs and health checks.
    fn read_errors(&self) -> u64 {
        0
    }

    /// The descriptor with this id.
    fn get(&self, id: &Hash) -> Option<Arc<ValidDescriptor>>;

    /// The descriptor held for a replacement key, if any.
    fn by_replacement_key(
        &self,
        publisher: &Identity,
        schema_hash: &Hash,
        topic: &str,
    ) -> Option<Arc<ValidDescriptor>>;

    /// Up to `limit` descriptors at routing key `key` that match `filters`
    /// and have not expired at `now`, newest `timestamp` first (ties by id,
    /// descending), so the answer is deterministic.
    ///
    /// Must cost O(limit + entries skipped), never O(entries at the key):
    /// an engine keeps each key's entries ordered by timestamp, and also per
    /// publisher and per schema, so a `publisher` or `schema_hash` filter
    /// walks only its own entries and `min_timestamp` ends the walk.
    fn scan_key(&self, key: &Hash, filters: &Filters, now: Timestamp, limit: usize) -> KeyScan;

    /// How many descriptors are held at routing key `key` (expired ones
    /// not yet swept included).
    fn count_at(&self, key: &Hash) -> usize;

    /// The descriptor that expires first (the eviction candidate).
    fn soonest_expiring(&self) -> Option<Arc<ValidDescriptor>>;

    /// Up to `limit` descriptors expiring at or before `deadline`, soonest
    /// first (ties by id), for sweeps and eviction.
    fn expiring_by(&self, deadline: Timestamp, limit: usize) -> Vec<Arc<ValidDescriptor>>;

    /// How many descriptors are held.
    fn len(&self) -> usize;

    /// Whether nothing is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sum of [`stored_size`] over everything held.
    fn total_bytes(&self) -> u64;
}

impl<T: DescriptorStore + ?Sized> DescriptorStore for Box<T> {
    fn put(
        &mut self,
        d: Arc<ValidDescriptor>,
        remove: &[Hash],
    ) -> Result<Option<Arc<ValidDescriptor>>, StoreError> {
        (**self).put(d, remove)
    }
    fn remove(&mut self, ids: &[Hash]) -> Result<Vec<Arc<ValidDescriptor>>, StoreError> {
        (**self).remove(ids)
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        (**self).flush()
    }
    fn read_errors(&self) -> u64 {
        (**self).read_errors()
    }
    fn get(&self, id: &Hash) -> Option<Arc<ValidDescriptor>> {
        (**self).get(id)
    }
    fn by_replacement_key(
        &self,
        publisher: &Identity,
        schema_hash: &Hash,
        topic: &str,
    ) -> Option<Arc<ValidDescriptor>> {
        (**self).by_replacement_key(publisher, schema_hash, topic)
    }
    fn scan_key(&self, key: &Hash, filters: &Filters, now: Timestamp, limit: usize) -> KeyScan {
        (**self).scan_key(key, filters, now, limit)
    }
    fn count_at(&self, key: &Hash) -> usize {
        (**self).count_at(key)
    }
    fn soonest_expiring(&self) -> Option<Arc<ValidDescriptor>> {
        (**self).soonest_expiring()
    }
    fn expiring_by(&self, deadline: Timestamp, limit: usize) -> Vec<Arc<ValidDescriptor>> {
        (**self).expiring_by(deadline, limit)
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn is_empty(&self) -> bool {
        (**self).is_empty()
    }
    fn total_bytes(&self) -> u64 {
        (**self).total_bytes()
    }
}
