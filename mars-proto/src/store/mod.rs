//! Descriptor storage: the engine trait, an in-memory engine, and the rules.
//!
//! Two layers, so that the protocol's rules exist exactly once:
//!
//! - [`DescriptorStore`] is the *storage engine*: indexes and nothing else.
//!   It never refuses anything and knows no protocol rule beyond "one
//!   descriptor per replacement key". [`MemoryStore`] implements it now; a
//!   durable engine (LMDB) implements the same small trait later.
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
mod memory;
mod rate_limit;
mod rotation;
mod rules;
mod tombstones;

use std::sync::Arc;

pub use config::StoreConfig;
pub use memory::MemoryStore;
pub use rate_limit::RateLimiter;
pub use rules::{MAX_EVICTIONS_PER_OFFER, Removed, Storage, StoreRefusal, Stored};

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

/// A storage engine for descriptors: indexes only, no protocol rules.
///
/// The engine keeps at most one descriptor per replacement key
/// (publisher, schema_hash, topic) — that is an index property, not a
/// rule — and otherwise stores what it is given. Sequence checks,
/// revocation, capacity and rate limits live in [`Storage`], once, for
/// every engine.
///
/// Methods are synchronous and infallible: an engine that can fail (disk)
/// must deal with it itself, because the Sans-IO core has nowhere to wait.
pub trait DescriptorStore {
    /// Inserts `d`. If a descriptor with the same replacement key is held
    /// it is removed first and returned (whatever its sequence: the caller
    /// has already decided).
    fn put(&mut self, d: Arc<ValidDescriptor>) -> Option<Arc<ValidDescriptor>>;

    /// Removes the descriptor with this id from every index.
    fn remove(&mut self, id: &Hash) -> Option<Arc<ValidDescriptor>>;

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
