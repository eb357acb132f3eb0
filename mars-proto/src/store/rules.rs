//! The STORE rules, implemented once for every storage engine.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::rate_limit::RateLimiter;
use super::rotation::{RotationCheck, RotationClaim, Rotations};
use super::tombstones::Tombstones;
use super::{DescriptorStore, KeyScan, MemoryStore, StoreConfig, StoreError, stored_size};
use crate::descriptor::ValidDescriptor;
use crate::hash::Hash;
use crate::identity::Identity;
use crate::schema::{
    CORE_KEY_ROTATION, CORE_REVOCATION, KeyRotation, KeyRotationError, Revocation, RevocationError,
};
use crate::time::Timestamp;
use crate::wire::Filters;

/// Most descriptors one offer may evict to make room. A descriptor's
/// charged size is at most about 67 KiB and the smallest about 1 KiB, so a
/// few hundred evictions always suffice; the bound keeps one STORE's work
/// bounded whatever the engine holds.
pub const MAX_EVICTIONS_PER_OFFER: usize = 512;

/// How long [`Storage::sweep`] waits after its engine failed a removal
/// before it tries again, so that a failing disk does not make the node's
/// timer fire in a busy loop (the sweep deadline would otherwise stay in
/// the past).
pub const SWEEP_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Why a STORE was refused. One variant per rule; the `Display` text is the
/// `reason` a STORE_ACK carries (WIRE.md, "Refusing a request"), so it names
/// the rule and the numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreRefusal {
    /// It has expired by the time it is offered.
    #[error("expired: descriptor expired at {expired_at} (now {now})")]
    Expired {
        /// Its expiry.
        expired_at: Timestamp,
        /// The time of the offer.
        now: Timestamp,
    },
    /// Its publisher forked a key rotation, so its key is in two hands.
    #[error("compromised: publisher {publisher} forked a key rotation; its stores are refused")]
    Compromised {
        /// The publisher.
        publisher: Identity,
    },
    /// Its publisher revoked it, and the revocation is held.
    #[error("revoked: descriptor {id} was revoked by its publisher in {revocation}")]
    Revoked {
        /// The descriptor's id (boxed, like every hash here: it keeps the
        /// `Result` small).
        id: Box<Hash>,
        /// The revocation's id.
        revocation: Box<Hash>,
    },
    /// A higher sequence is held for its (publisher, schema, topic).
    #[error("stale: sequence {got} < stored {have}")]
    Stale {
        /// The sequence held.
        have: u64,
        /// The sequence offered.
        got: u64,
    },
    /// The same sequence is held for its (publisher, schema, topic) with
    /// different content.
    #[error("conflict: sequence {sequence} is stored with id {stored}, offered with id {offered}")]
    Conflict {
        /// The shared sequence.
        sequence: u64,
        /// The id held.
        stored: Box<Hash>,
        /// The id offered.
        offered: Box<Hash>,
    },
    /// A `core/revocation` whose payload does not decode.
    #[error("invalid revocation: {0}")]
    InvalidRevocation(Box<RevocationError>),
    /// A `core/revocation` of a held descriptor of another publisher.
    #[error("revocation of {target} refused: it was published by {owner}, not by {revoker}")]
    NotOwner {
        /// The id it names.
        target: Box<Hash>,
        /// The target's publisher.
        owner: Identity,
        /// The revocation's publisher.
        revoker: Identity,
    },
    /// A `core/key-rotation` that does not decode, is not signed by its old
    /// key, or whose cross-signatures do not verify.
    #[error("invalid key rotation: {0}")]
    InvalidKeyRotation(Box<KeyRotationError>),
    /// A key rotation below the rotation_seq recorded for its old identity.
    #[error("key rotation refused: rotation_seq {got} < recorded {have} for {identity}")]
    RotationRegressed {
        /// The old identity.
        identity: Identity,
        /// The recorded rotation_seq.
        have: u64,
        /// The offered rotation_seq.
        got: u64,
    },
    /// A second key rotation with the recorded rotation_seq but another new
    /// key: the old identity is now marked compromised.
    #[error(
        "key rotation fork: {identity} rotated to {first} and to {second} at rotation_seq {seq}; identity marked compromised"
    )]
    RotationFork {
        /// The old identity, now compromised.
        identity: Identity,
        /// The shared rotation_seq.
        seq: u64,
        /// The new key recorded first.
        first: Identity,
        /// The new key offered now.
        second: Identity,
    },
    /// One of its routing keys holds the per-key maximum.
    #[error("routing key full: {key} holds {count} descriptors (per-key cap {cap})")]
    KeyFull {
        /// The full routing key.
        key: Box<Hash>,
        /// Descriptors there.
        count: usize,
        /// [`StoreConfig::max_per_key`].
        cap: usize,
    },
    /// Its publisher has used up its STOREs for now.
    #[error("rate limited: publisher {publisher} exceeded {per_minute} stores/min")]
    RateLimited {
        /// The publisher.
        publisher: Identity,
        /// [`StoreConfig::stores_per_minute`].
        per_minute: u32,
    },
    /// Every rule passed but the storage engine could not write it (its
    /// disk is full or failing); nothing changed. The text is the engine
    /// error's, which is short and names no local detail.
    #[error("{0}")]
    Storage(StoreError),
    /// No room, and not enough held expires before it to make room.
    #[error(
        "store full: {len}/{max_descriptors} descriptors, {bytes}/{max_bytes} bytes, and too little expires before this descriptor ({expires_at}) to make room for its {size} bytes"
    )]
    Full {
        /// Descriptors held.
        len: usize,
        /// [`StoreConfig::max_descriptors`].
        max_descriptors: usize,
        /// Bytes held.
        bytes: u64,
        /// [`StoreConfig::max_bytes`].
        max_bytes: u64,
        /// The size it would be charged.
        size: u64,
        /// Its expiry.
        expires_at: Timestamp,
    },
}

/// What an accepted descriptor took out of the store besides the entry it
/// replaced, so the caller can tell whoever cares (events, replication).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// The target of an accepted `core/revocation`, if it was held.
    pub revoked: Option<Arc<ValidDescriptor>>,
    /// Descriptors evicted to make room, soonest-expiring first.
    pub evicted: Vec<Arc<ValidDescriptor>>,
}

/// An accepted STORE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Nothing was held for its (publisher, schema, topic).
    Inserted {
        /// The descriptor as now held (share this `Arc`, do not copy it).
        descriptor: Arc<ValidDescriptor>,
        /// What else left the store.
        removed: Removed,
    },
    /// It replaced a lower sequence (or an expired entry not yet swept).
    Replaced {
        /// The descriptor as now held.
        descriptor: Arc<ValidDescriptor>,
        /// The descriptor it replaced.
        old: Arc<ValidDescriptor>,
        /// What else left the store.
        removed: Removed,
    },
    /// The same descriptor was already held: an idempotent republish.
    Unchanged,
}

impl Stored {
    /// The newly held descriptor, unless nothing changed.
    pub fn descriptor(&self) -> Option<&Arc<ValidDescriptor>> {
        match self {
            Stored::Inserted { descriptor, .. } | Stored::Replaced { descriptor, .. } => {
                Some(descriptor)
            }
            Stored::Unchanged => None,
        }
    }
}

/// A storage engine plus the STORE rules and the state they need.
///
/// Rules, in the order [`offer`](Storage::offer) applies them (the first
/// that fails is the refusal):
/// 1. not expired at `now`;
/// 2. the publisher is not compromised;
/// 3. not revoked by a held revocation of the same publisher;
/// 4. (identical descriptor already held → [`Stored::Unchanged`]);
/// 5. a `core/key-rotation` decodes, is signed by its old key, carries two
///    valid cross-signatures and a rotation_seq not below the recorded
///    one; the same rotation_seq with another new key is a fork and marks
///    the old identity compromised — checked before the sequence rule, so
///    fork evidence is never dismissed as a mere conflict;
/// 6. replacement by (publisher, schema_hash, topic): a lower sequence is
///    stale, an equal one with another id a conflict, a higher one replaces;
/// 7. a `core/revocation` decodes; if its target is held, the target's
///    publisher must be the revoker (then the target is removed); either
///    way the revocation is stored, so it propagates and refuses the target
///    if it comes back;
/// 8. each routing key stays within [`StoreConfig::max_per_key`];
/// 9. room in [`StoreConfig::max_descriptors`] and
///    [`StoreConfig::max_bytes`], evicting soonest-expiring entries that
///    expire strictly before the newcomer (else refused);
/// 10. the publisher's rate limit — checked last, and its token taken only
///     once the engine has written the descriptor, so refused, idempotent
///     or unwritable STOREs cost the publisher nothing.
///
/// Only then does anything change, in one engine write
/// ([`DescriptorStore::put`] with the evicted and revoked ids): a refused
/// offer — including one the engine could not write,
/// [`StoreRefusal::Storage`] — leaves the store and the rule state as they
/// were, except that a detected rotation fork is remembered.
#[derive(Debug, Clone)]
pub struct Storage<S = MemoryStore> {
    store: S,
    config: StoreConfig,
    rate: RateLimiter,
    rotations: Rotations,
    tombstones: Tombstones,
    /// Engine writes that failed where no caller could be told (sweeps,
    /// [`remove`](Storage::remove)), and the last such error.
    failed_writes: u64,
    last_write_error: Option<StoreError>,
    /// After a failed sweep: no new attempt before this time.
    sweep_retry_at: Option<Timestamp>,
    /// The engine's soonest expiry as last read (`None`: not read since
    /// the last write). A node asks for it at every `poll_timeout`, and a
    /// durable engine answers from disk; only writes change it.
    soonest_expiry: Cell<Option<Option<Timestamp>>>,
}

impl Default for Storage<MemoryStore> {
    /// Default limits over a fresh in-memory engine.
    fn default() -> Self {
        Self::new(MemoryStore::new(), StoreConfig::default())
    }
}

impl<S: DescriptorStore> Storage<S> {
    /// Rules over `store`, which should be empty: rule state (tombstones,
    /// rotation records) is built from what is offered, not from what an
    /// engine already holds. For an engine that already holds descriptors
    /// (a durable one, reopened), use [`resume`](Self::resume).
    pub fn new(store: S, config: StoreConfig) -> Self {
        Storage {
            rate: RateLimiter::new(config.stores_per_minute, config.max_tracked_publishers),
            rotations: Rotations::new(config.max_tracked_rotations, config.max_compromised),
            tombstones: Tombstones::default(),
            store,
            config,
            failed_writes: 0,
            last_write_error: None,
            sweep_retry_at: None,
            soonest_expiry: Cell::new(None),
        }
    }

    /// Rules over an engine that already holds descriptors — a restarted
    /// hub's durable store — with the rule state rebuilt from what it holds:
    /// every held `core/revocation` becomes a tombstone again (so a revoked
    /// descriptor stays refused after a restart) and every held
    /// `core/key-rotation` a rotation record (so rotation_seq keeps
    /// increasing). O(n) over what is held, once; on an empty engine it is
    /// [`new`](Self::new).
    ///
    /// If `config` is tighter than what the engine holds (an operator
    /// lowered a limit), the soonest-expiring descriptors are removed until
    /// every limit holds, as offers would have evicted them. Not restored:
    /// rate-limit buckets (every publisher starts with a full bucket) and
    /// identities marked compromised by a rotation fork (the fork itself
    /// was refused, so it is not held; offered again, it is detected
    /// again).
    ///
    /// Never fails: if the engine cannot write those removals, the error is
    /// counted in [`failed_writes`](Self::failed_writes) and the rules work
    /// over what it holds.
    pub fn resume(store: S, config: StoreConfig) -> Self {
        let mut s = Self::new(store, config);
        if s.store.is_empty() {
            return s;
        }
        let all = s
            .store
            .expiring_by(Timestamp::from_micros(u64::MAX), usize::MAX);
        // Over the limits, or a revocation that cannot act as a tombstone
        // (offers refuse those; only a foreign writer could have put one).
        let mut leaving = s.plan_resume_evictions(&all);
        for d in &all {
            if d.schema_hash == CORE_REVOCATION.hash() && Revocation::from_descriptor(d).is_err() {
                leaving.insert(d.id);
            }
        }
        let gone = s.resume_remove(&leaving);
        let mut claims = Vec::new();
        for d in all.iter().filter(|d| !gone.contains(&d.id)) {
            if d.schema_hash == CORE_REVOCATION.hash() {
                if let Ok(r) = Revocation::from_descriptor(d) {
                    s.tombstones.add(d.id, r.target_id, d.publisher);
                }
            } else if d.schema_hash == CORE_KEY_ROTATION.hash() {
                if let Ok(r) = KeyRotation::from_descriptor(d) {
                    let claim = RotationClaim {
                        old: r.old_identity,
                        new: r.new_identity,
                        seq: r.rotation_seq,
                    };
                    claims.push((claim.seq, d.timestamp, d.id, claim));
                }
            }
        }
        // A held target of a held revocation cannot come from offers (the
        // revocation removes it in the same write); drop any that is there.
        let revoked: BTreeSet<Hash> = s
            .tombstones
            .iter()
            .filter(|(_, (target, publisher))| {
                s.store
                    .get(target)
                    .is_some_and(|t| t.publisher == *publisher)
            })
            .map(|(_, (target, _))| *target)
            .collect();
        s.resume_remove(&revoked);
        // Replay rotations in rotation_seq order, as offers would have
        // arrived, so the latest one is the record.
        claims.sort_by_key(|a| (a.0, a.1, a.2));
        for (_, at, _, claim) in &claims {
            match s.rotations.check(claim) {
                RotationCheck::Fresh | RotationCheck::Repeat => s.rotations.record(claim, *at),
                RotationCheck::Regressed { .. } => {}
                RotationCheck::Fork { .. } => s.rotations.mark_compromised(claim.old, *at),
            }
        }
        s
    }

    /// Removes `ids` for [`resume`](Self::resume), forgetting their
    /// tombstones; returns the ids removed (none if the engine failed,
    /// which is counted).
    fn resume_remove(&mut self, ids: &BTreeSet<Hash>) -> BTreeSet<Hash> {
        if ids.is_empty() {
            return Default::default();
        }
        let ids: Vec<Hash> = ids.iter().copied().collect();
        match self.try_remove(&ids) {
            Ok(removed) => removed.iter().map(|d| d.id).collect(),
            Err(e) => {
                self.note_write_error(e);
                Default::default()
            }
        }
    }

    /// The ids [`resume`](Self::resume) must remove so that the limits in
    /// force hold: soonest-expiring first, while the store is over
    /// `max_descriptors` or `max_bytes` or the entry sits at a routing key
    /// over `max_per_key`. `all` is in expiry order.
    fn plan_resume_evictions(&self, all: &[Arc<ValidDescriptor>]) -> BTreeSet<Hash> {
        let c = &self.config;
        let mut len = self.store.len();
        let mut bytes = self.store.total_bytes();
        let mut per_key: BTreeMap<Hash, usize> = Default::default();
        for d in all {
            for key in &d.routing_keys {
                per_key
                    .entry(*key)
                    .or_insert_with(|| self.store.count_at(key));
            }
        }
        let mut out = BTreeSet::new();
        for d in all {
            let key_over = d
                .routing_keys
                .iter()
                .any(|k| per_key.get(k).is_some_and(|n| *n > c.max_per_key));
            if len <= c.max_descriptors && bytes <= c.max_bytes && !key_over {
                continue;
            }
            out.insert(d.id);
            len = len.saturating_sub(1);
            bytes = bytes.saturating_sub(stored_size(d));
            for (i, key) in d.routing_keys.iter().enumerate() {
                if !d.routing_keys[..i].contains(key) {
                    if let Some(n) = per_key.get_mut(key) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
        }
        out
    }

    /// The limits in force.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The engine, for reads (writes must go through the rules).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The engine itself, leaving the rules: for a restart, where
    /// [`resume`](Self::resume) rebuilds the rule state from what it holds.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Applies the STORE rules to `d` at `now` (see [`Storage`] for the
    /// order) and stores it if they pass.
    pub fn offer(&mut self, d: ValidDescriptor, now: Timestamp) -> Result<Stored, StoreRefusal> {
        self.offer_shared(Arc::new(d), now)
    }

    /// [`offer`](Self::offer) for a descriptor already shared (the local
    /// publisher's own, a replica): stored without copying its payload.
    pub fn offer_shared(
        &mut self,
        d: Arc<ValidDescriptor>,
        now: Timestamp,
    ) -> Result<Stored, StoreRefusal> {
        if d.is_expired(now) {
            return Err(StoreRefusal::Expired {
                expired_at: d.expires_at(),
                now,
            });
        }
        if self.rotations.is_compromised(&d.publisher) {
            return Err(StoreRefusal::Compromised {
                publisher: d.publisher,
            });
        }
        if let Some(revocation) = self.tombstones.revoked(&d.id, &d.publisher) {
            return Err(StoreRefusal::Revoked {
                id: Box::new(d.id),
                revocation: Box::new(revocation),
            });
        }
        // Whatever is in the slot leaves when `d` goes in; an expired entry
        // not yet swept is replaced whatever its sequence.
        let replaced = self
            .store
            .by_replacement_key(&d.publisher, &d.schema_hash, &d.topic);
        let held = replaced.as_ref().filter(|h| !h.is_expired(now));
        if held.as_ref().is_some_and(|h| h.id == d.id) {
            return Ok(Stored::Unchanged);
        }
        let rotation = if d.schema_hash == CORE_KEY_ROTATION.hash() {
            Some(self.check_rotation(&d, now)?)
        } else {
            None
        };
        if let Some(h) = held {
            match d.sequence.cmp(&h.sequence) {
                Ordering::Less => {
                    return Err(StoreRefusal::Stale {
                        have: h.sequence,
                        got: d.sequence,
                    });
                }
                Ordering::Equal => {
                    return Err(StoreRefusal::Conflict {
                        sequence: d.sequence,
                        stored: Box::new(h.id),
                        offered: Box::new(d.id),
                    });
                }
                Ordering::Greater => {}
            }
        }
        let (revocation_target, revoked) = self.check_revocation(&d, replaced.as_ref())?;
        let leaving: Vec<&Arc<ValidDescriptor>> = replaced.iter().chain(revoked.iter()).collect();
        self.check_key_caps(&d, &leaving)?;
        let evicted = self.plan_room(&d, &leaving)?;
        // Checked here, taken only once the write is done: a STORE the
        // engine could not write costs the publisher nothing.
        if !self.rate.allows(&d.publisher, now) {
            return Err(StoreRefusal::RateLimited {
                publisher: d.publisher,
                per_minute: self.rate.per_minute(),
            });
        }

        // Every rule passed: apply, as one engine write.
        let listed: Vec<Hash>;
        let remove: &[Hash] = if evicted.is_empty() && revoked.is_none() {
            &[]
        } else {
            listed = evicted.iter().chain(revoked.iter()).map(|e| e.id).collect();
            &listed
        };
        let descriptor = d;
        self.soonest_expiry.set(None);
        let old = self
            .store
            .put(Arc::clone(&descriptor), remove)
            .map_err(StoreRefusal::Storage)?;
        let taken = self.rate.try_take(&descriptor.publisher, now);
        debug_assert!(taken, "the rate limit was checked above");
        for gone in evicted.iter().chain(revoked.iter()).chain(old.iter()) {
            self.tombstones.forget(&gone.id);
        }
        if let Some(target) = revocation_target {
            self.tombstones
                .add(descriptor.id, target, descriptor.publisher);
        }
        if let Some(claim) = rotation {
            self.rotations.record(&claim, now);
        }
        let removed = Removed { revoked, evicted };
        Ok(match old {
            Some(old) => Stored::Replaced {
                descriptor,
                old,
                removed,
            },
            None => Stored::Inserted {
                descriptor,
                removed,
            },
        })
    }

    /// Removes up to [`StoreConfig::sweep_batch`] descriptors that have
    /// expired at `now`, soonest first (one engine write), and returns them.
    /// If more remain, [`next_expiry`](Self::next_expiry) is still at or
    /// before `now` (see [`sweep_pending`](Self::sweep_pending)): call again.
    ///
    /// If the engine cannot write the removal, nothing is removed, the
    /// error is counted ([`failed_writes`](Self::failed_writes)) and the
    /// next attempt waits [`SWEEP_RETRY_DELAY`] (so does `next_expiry`). A
    /// full engine is asked for half the batch, then half of that, down to
    /// one descriptor: what it removes frees the space the next sweep needs.
    pub fn sweep(&mut self, now: Timestamp) -> Vec<Arc<ValidDescriptor>> {
        if self.sweep_retry_at.is_some_and(|t| now < t) {
            return Vec::new();
        }
        let due = self.store.expiring_by(now, self.config.sweep_batch.max(1));
        if due.is_empty() {
            self.sweep_retry_at = None;
            return due;
        }
        let ids: Vec<Hash> = due.iter().map(|d| d.id).collect();
        // A full engine may lack the free pages a large removal needs
        // (LMDB copies every page it changes): halve until one fits.
        let mut n = ids.len();
        self.soonest_expiry.set(None);
        let result = loop {
            match self.store.remove(&ids[..n]) {
                Err(e) if e.is_full() && n > 1 => n /= 2,
                other => break other,
            }
        };
        match result {
            Ok(removed) => {
                self.sweep_retry_at = None;
                for d in &removed {
                    self.tombstones.forget(&d.id);
                }
                removed
            }
            Err(e) => {
                self.note_write_error(e);
                self.sweep_retry_at = Some(now.saturating_add(SWEEP_RETRY_DELAY));
                Vec::new()
            }
        }
    }

    /// Whether expired descriptors are waiting for a [`sweep`](Self::sweep).
    pub fn sweep_pending(&self, now: Timestamp) -> bool {
        self.next_expiry().is_some_and(|t| t <= now)
    }

    /// When the next held descriptor expires: a deadline for the node's
    /// `poll_timeout`, after which [`sweep`](Self::sweep) has work (never
    /// before the retry time of a failed sweep).
    pub fn next_expiry(&self) -> Option<Timestamp> {
        let soonest = match self.soonest_expiry.get() {
            Some(memo) => memo,
            None => {
                let read = self.store.soonest_expiring().map(|d| d.expires_at());
                self.soonest_expiry.set(Some(read));
                read
            }
        }?;
        Some(match self.sweep_retry_at {
            Some(retry) => soonest.max(retry),
            None => soonest,
        })
    }

    /// Makes every write acknowledged so far durable (see
    /// [`DescriptorStore::flush`]); a host calls it before a STORE_ACK
    /// leaves.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.store.flush()
    }

    /// Engine writes that failed where no caller could be told: sweeps and
    /// [`remove`](Self::remove) (offers return theirs as
    /// [`StoreRefusal::Storage`]). For logs and health checks.
    pub fn failed_writes(&self) -> u64 {
        self.failed_writes
    }

    /// The last error counted by [`failed_writes`](Self::failed_writes).
    pub fn last_write_error(&self) -> Option<&StoreError> {
        self.last_write_error.as_ref()
    }

    /// Up to `max` live descriptors at routing key `key` matching
    /// `filters`, newest first, in O(max) (see
    /// [`DescriptorStore::scan_key`]).
    pub fn find(
        &self,
        key: &Hash,
        filters: &Filters,
        max: usize,
        now: Timestamp,
    ) -> Vec<Arc<ValidDescriptor>> {
        self.scan(key, filters, max, now).descriptors
    }

    /// [`find`](Self::find), also reporting how many index entries it
    /// examined (for metrics and for tests of the O(max) promise).
    pub fn scan(&self, key: &Hash, filters: &Filters, max: usize, now: Timestamp) -> KeyScan {
        self.store.scan_key(key, filters, now, max)
    }

    /// The held descriptor with this id.
    pub fn get(&self, id: &Hash) -> Option<Arc<ValidDescriptor>> {
        self.store.get(id)
    }

    /// Removes a descriptor outside the STORE rules (an operator's or the
    /// local publisher's decision), keeping rule state consistent. `None`
    /// if it was not held — or if the engine failed, which is counted in
    /// [`failed_writes`](Self::failed_writes); use
    /// [`try_remove`](Self::try_remove) to see the error.
    pub fn remove(&mut self, id: &Hash) -> Option<Arc<ValidDescriptor>> {
        match self.try_remove(std::slice::from_ref(id)) {
            Ok(mut removed) => removed.pop(),
            Err(e) => {
                self.note_write_error(e);
                None
            }
        }
    }

    /// Removes these descriptors outside the STORE rules, in one engine
    /// write (all or nothing), and returns those that were held.
    pub fn try_remove(&mut self, ids: &[Hash]) -> Result<Vec<Arc<ValidDescriptor>>, StoreError> {
        self.soonest_expiry.set(None);
        let removed = self.store.remove(ids)?;
        for d in &removed {
            self.tombstones.forget(&d.id);
        }
        Ok(removed)
    }

    /// Descriptors held.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Bytes held, as charged by [`stored_size`](super::stored_size).
    pub fn total_bytes(&self) -> u64 {
        self.store.total_bytes()
    }

    /// Whether `identity` forked a key rotation (its STOREs are refused).
    pub fn is_compromised(&self, identity: &Identity) -> bool {
        self.rotations.is_compromised(identity)
    }

    /// The latest accepted rotation of `old`: (rotation_seq, new identity).
    pub fn rotation_of(&self, old: &Identity) -> Option<(u64, Identity)> {
        self.rotations.latest(old)
    }

    /// The rate limiter, to read a publisher's remaining tokens.
    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.rate
    }

    /// Checks the rules' own invariants against the engine: the limits
    /// hold, every tombstone belongs to a held revocation and vice versa,
    /// the rule tables are within their bounds. Engine-internal index
    /// consistency is the engine's to check (e.g.
    /// [`MemoryStore::check_invariants`]). O(n log n); for tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let c = &self.config;
        if let Some(memo) = self.soonest_expiry.get() {
            let read = self.store.soonest_expiring().map(|d| d.expires_at());
            if memo != read {
                return Err(format!(
                    "remembered soonest expiry {memo:?} but the engine's is {read:?}"
                ));
            }
        }
        if self.store.len() > c.max_descriptors || self.store.total_bytes() > c.max_bytes {
            return Err(format!(
                "{} descriptors / {} bytes exceed the limits {} / {}",
                self.store.len(),
                self.store.total_bytes(),
                c.max_descriptors,
                c.max_bytes
            ));
        }
        for (revocation, (target, publisher)) in self.tombstones.iter() {
            let held = self.store.get(revocation);
            if held.as_ref().is_none_or(|r| {
                r.publisher != *publisher || r.schema_hash != CORE_REVOCATION.hash()
            }) {
                return Err(format!("tombstone {revocation} has no held revocation"));
            }
            if self
                .store
                .get(target)
                .is_some_and(|t| t.publisher == *publisher)
            {
                return Err(format!("{target} is held although {revocation} revokes it"));
            }
        }
        // The engine's expiry index is the trait's one walk over everything.
        let all = self
            .store
            .expiring_by(Timestamp::from_micros(u64::MAX), usize::MAX);
        let mut tombstoned = 0usize;
        let mut seen = BTreeSet::new();
        for d in &all {
            seen.insert(d.id);
            for (i, key) in d.routing_keys.iter().enumerate() {
                if !d.routing_keys[..i].contains(key) && self.store.count_at(key) > c.max_per_key {
                    return Err(format!("routing key {key} over the per-key cap"));
                }
            }
            if d.schema_hash == CORE_REVOCATION.hash() {
                tombstoned += 1;
            }
        }
        if seen.len() != self.store.len() {
            return Err(format!(
                "expiry walk saw {} of {} descriptors",
                seen.len(),
                self.store.len()
            ));
        }
        if tombstoned != self.tombstones.iter().count() {
            return Err(format!(
                "{tombstoned} held revocations but {} tombstones",
                self.tombstones.iter().count()
            ));
        }
        self.tombstones.check_invariants()?;
        self.rotations.check_invariants()?;
        self.rate.check_invariants()
    }

    /// Rule 5: a key rotation's payload and its rotation_seq.
    fn check_rotation(
        &mut self,
        d: &ValidDescriptor,
        now: Timestamp,
    ) -> Result<RotationClaim, StoreRefusal> {
        let r = KeyRotation::from_descriptor(d)
            .map_err(|e| StoreRefusal::InvalidKeyRotation(Box::new(e)))?;
        let claim = RotationClaim {
            old: r.old_identity,
            new: r.new_identity,
            seq: r.rotation_seq,
        };
        match self.rotations.check(&claim) {
            RotationCheck::Fresh | RotationCheck::Repeat => Ok(claim),
            RotationCheck::Regressed { have } => Err(StoreRefusal::RotationRegressed {
                identity: claim.old,
                have,
                got: claim.seq,
            }),
            RotationCheck::Fork { first } => {
                self.rotations.mark_compromised(claim.old, now);
                Err(StoreRefusal::RotationFork {
                    identity: claim.old,
                    seq: claim.seq,
                    first,
                    second: claim.new,
                })
            }
        }
    }

    /// Rule 7: a revocation's target, and the held target it removes
    /// (unless that is the entry `d` replaces anyway).
    fn check_revocation(
        &self,
        d: &ValidDescriptor,
        replaced: Option<&Arc<ValidDescriptor>>,
    ) -> Result<(Option<Hash>, Option<Arc<ValidDescriptor>>), StoreRefusal> {
        if d.schema_hash != CORE_REVOCATION.hash() {
            return Ok((None, None));
        }
        let r = Revocation::from_descriptor(d)
            .map_err(|e| StoreRefusal::InvalidRevocation(Box::new(e)))?;
        let target = self
            .store
            .get(&r.target_id)
            .filter(|t| replaced.is_none_or(|old| old.id != t.id));
        if let Some(t) = &target {
            if t.publisher != d.publisher {
                return Err(StoreRefusal::NotOwner {
                    target: Box::new(t.id),
                    owner: t.publisher,
                    revoker: d.publisher,
                });
            }
        }
        Ok((Some(r.target_id), target))
    }

    /// Rule 8: no routing key of `d` goes over the per-key cap, counting
    /// the entries that leave as `d` goes in.
    fn check_key_caps(
        &self,
        d: &ValidDescriptor,
        leaving: &[&Arc<ValidDescriptor>],
    ) -> Result<(), StoreRefusal> {
        for (i, key) in d.routing_keys.iter().enumerate() {
            if d.routing_keys[..i].contains(key) {
                continue;
            }
            let freed = leaving
                .iter()
                .filter(|l| l.routing_keys.contains(key))
                .count();
            let count = self.store.count_at(key).saturating_sub(freed);
            if count >= self.config.max_per_key {
                return Err(StoreRefusal::KeyFull {
                    key: Box::new(*key),
                    count,
                    cap: self.config.max_per_key,
                });
            }
        }
        Ok(())
    }

    /// Rule 9: what must be evicted for `d` to fit, or the refusal.
    fn plan_room(
        &self,
        d: &ValidDescriptor,
        leaving: &[&Arc<ValidDescriptor>],
    ) -> Result<Vec<Arc<ValidDescriptor>>, StoreRefusal> {
        let (max_len, max_bytes) = (self.config.max_descriptors, self.config.max_bytes);
        let size = stored_size(d);
        let mut len = (self.store.len() + 1).saturating_sub(leaving.len());
        let mut bytes = (self.store.total_bytes() + size)
            .saturating_sub(leaving.iter().map(|l| stored_size(l)).sum::<u64>());
        let fits = |len: usize, bytes: u64| len <= max_len && bytes <= max_bytes;
        let mut evicted = Vec::new();
        if fits(len, bytes) {
            return Ok(evicted);
        }
        let sooner = d.expires_at().saturating_sub(Duration::from_micros(1));
        for c in self
            .store
            .expiring_by(sooner, MAX_EVICTIONS_PER_OFFER + leaving.len())
        {
            if leaving.iter().any(|l| l.id == c.id) {
                continue;
            }
            len = len.saturating_sub(1);
            bytes = bytes.saturating_sub(stored_size(&c));
            evicted.push(c);
            if fits(len, bytes) {
                return Ok(evicted);
            }
        }
        Err(StoreRefusal::Full {
            len: self.store.len(),
            max_descriptors: max_len,
            bytes: self.store.total_bytes(),
            max_bytes,
            size,
            expires_at: d.expires_at(),
        })
    }

    fn note_write_error(&mut self, e: StoreError) {
        self.failed_writes += 1;
        self.last_write_error = Some(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DescriptorBuilder, Keypair, schema};

    const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

    fn cap(secret: u8, topic: &str, seq: u64) -> ValidDescriptor {
        cap_lasting(secret, topic, seq, 3600)
    }

    fn cap_lasting(secret: u8, topic: &str, seq: u64, ttl: u32) -> ValidDescriptor {
        DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), NOW)
            .topic(topic)
            .sequence(seq)
            .ttl(ttl)
            .routing_key(schema::routing_key("compute"))
            .sign(&Keypair::from_secret_bytes(&[secret; 32]))
            .unwrap()
            .validate(NOW)
            .unwrap()
    }

    #[test]
    fn shared_offers_are_stored_and_found_without_copies() {
        let mut s = Storage::default();
        let d = Arc::new(cap(1, "t", 1));
        let stored = s.offer_shared(Arc::clone(&d), NOW).unwrap();
        assert!(Arc::ptr_eq(stored.descriptor().unwrap(), &d));
        let found = s.find(
            &schema::routing_key("compute"),
            &Filters::default(),
            20,
            NOW,
        );
        assert!(Arc::ptr_eq(&found[0], &d));
        assert_eq!(s.offer_shared(d, NOW), Ok(Stored::Unchanged));
        assert_eq!(Stored::Unchanged.descriptor(), None);
    }

    /// `next_expiry` is remembered between writes: every write that can
    /// change it (insert, replacement, sweep, removal) is seen.
    #[test]
    fn the_remembered_next_expiry_follows_every_write() {
        let at = |secs: u64| Timestamp::from_secs(1_700_000_000 + secs);
        let mut s = Storage::default();
        assert_eq!(s.next_expiry(), None);
        s.offer(cap_lasting(1, "a", 1, 600), NOW).unwrap();
        assert_eq!(s.next_expiry(), Some(at(600)));
        // An insert that expires sooner.
        s.offer(cap_lasting(2, "b", 1, 120), NOW).unwrap();
        assert_eq!(s.next_expiry(), Some(at(120)));
        s.check_invariants().unwrap();
        // A replacement that expires later.
        s.offer(cap_lasting(2, "b", 2, 900), NOW).unwrap();
        assert_eq!(s.next_expiry(), Some(at(600)));
        // A sweep.
        s.offer(cap_lasting(3, "c", 1, 61), NOW).unwrap();
        s.sweep(at(60));
        assert_eq!(s.next_expiry(), Some(at(61)));
        assert_eq!(s.sweep(at(62)).len(), 1);
        assert_eq!(s.next_expiry(), Some(at(600)));
        s.check_invariants().unwrap();
        // Removals.
        let first = cap_lasting(1, "a", 1, 600).id;
        assert!(s.remove(&first).is_some());
        assert_eq!(s.next_expiry(), Some(at(900)));
        let second = cap_lasting(2, "b", 2, 900).id;
        s.try_remove(&[second]).unwrap();
        assert_eq!(s.next_expiry(), None);
        s.check_invariants().unwrap();
    }

    #[test]
    fn a_refused_offer_changes_nothing() {
        let mut s = Storage::new(
            MemoryStore::new(),
            StoreConfig {
                max_per_key: 1,
                ..StoreConfig::default()
            },
        );
        s.offer(cap(1, "t", 1), NOW).unwrap();
        let before = (
            s.len(),
            s.total_bytes(),
            s.rate_limiter().tokens(&cap(2, "t", 1).publisher, NOW),
        );
        let e = s.offer(cap(2, "t", 1), NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "routing key full: {} holds 1 descriptors (per-key cap 1)",
                schema::routing_key("compute")
            )
        );
        let after = (
            s.len(),
            s.total_bytes(),
            s.rate_limiter().tokens(&cap(2, "t", 1).publisher, NOW),
        );
        assert_eq!(before, after);
        s.check_invariants().unwrap();
        s.store().check_invariants().unwrap();
    }

    #[test]
    fn refusals_stay_within_the_store_ack_reason_limit() {
        let id = Identity::from_ed25519_bytes([0xff; 32]);
        let h = Box::new(Hash::from_blake3_digest([0xff; 32]));
        let longest = [
            StoreRefusal::RotationFork {
                identity: id,
                seq: u64::MAX,
                first: id,
                second: id,
            },
            StoreRefusal::Full {
                len: usize::MAX,
                max_descriptors: usize::MAX,
                bytes: u64::MAX,
                max_bytes: u64::MAX,
                size: u64::MAX,
                expires_at: Timestamp::from_micros(u64::MAX),
            },
            StoreRefusal::Conflict {
                sequence: u64::MAX,
                stored: h.clone(),
                offered: h,
            },
            StoreRefusal::Storage(StoreError::Full { map_size: u64::MAX }),
            StoreRefusal::Storage(StoreError::Backend {
                op: "commit",
                source: Arc::new(std::io::Error::other("x".repeat(4096))),
            }),
            StoreRefusal::Storage(StoreError::VersionMismatch {
                found: u32::MAX,
                expected: u32::MAX,
            }),
        ];
        for r in longest {
            assert!(r.to_string().len() <= crate::wire::MAX_REASON_LEN, "{r}");
        }
    }
}
