//! The STORE rules, implemented once for every storage engine.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::rate_limit::RateLimiter;
use super::rotation::{RotationCheck, RotationClaim, Rotations};
use super::tombstones::Tombstones;
use super::{DescriptorStore, KeyScan, MemoryStore, StoreConfig, stored_size};
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
/// 10. the publisher's rate limit — taken last, so refused or idempotent
///     STOREs cost the publisher nothing.
///
/// Only then does anything change: a refused offer leaves the store as it
/// was, except that a detected rotation fork is remembered.
#[derive(Debug, Clone)]
pub struct Storage<S = MemoryStore> {
    store: S,
    config: StoreConfig,
    rate: RateLimiter,
    rotations: Rotations,
    tombstones: Tombstones,
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
    /// engine already holds.
    pub fn new(store: S, config: StoreConfig) -> Self {
        Storage {
            rate: RateLimiter::new(config.stores_per_minute, config.max_tracked_publishers),
            rotations: Rotations::new(config.max_tracked_rotations, config.max_compromised),
            tombstones: Tombstones::default(),
            store,
            config,
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The engine, for reads (writes must go through the rules).
    pub fn store(&self) -> &S {
        &self.store
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
        if !self.rate.try_take(&d.publisher, now) {
            return Err(StoreRefusal::RateLimited {
                publisher: d.publisher,
                per_minute: self.rate.per_minute(),
            });
        }

        // Every rule passed: apply.
        for e in &evicted {
            self.remove_entry(&e.id);
        }
        if let Some(t) = &revoked {
            self.remove_entry(&t.id);
        }
        let descriptor = d;
        let old = self.store.put(Arc::clone(&descriptor));
        if let Some(o) = &old {
            self.tombstones.forget(&o.id);
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
    /// expired at `now`, soonest first, and returns them. If more remain,
    /// [`next_expiry`](Self::next_expiry) is still at or before `now` (see
    /// [`sweep_pending`](Self::sweep_pending)): call again.
    pub fn sweep(&mut self, now: Timestamp) -> Vec<Arc<ValidDescriptor>> {
        let due = self.store.expiring_by(now, self.config.sweep_batch.max(1));
        due.iter()
            .filter_map(|d| self.remove_entry(&d.id))
            .collect()
    }

    /// Whether expired descriptors are waiting for a [`sweep`](Self::sweep).
    pub fn sweep_pending(&self, now: Timestamp) -> bool {
        self.next_expiry().is_some_and(|t| t <= now)
    }

    /// When the next held descriptor expires: a deadline for the node's
    /// `poll_timeout`, after which [`sweep`](Self::sweep) has work.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.store.soonest_expiring().map(|d| d.expires_at())
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
    /// local publisher's decision), keeping rule state consistent.
    pub fn remove(&mut self, id: &Hash) -> Option<Arc<ValidDescriptor>> {
        self.remove_entry(id)
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
        let mut seen = std::collections::BTreeSet::new();
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

    /// Removes one entry from the engine and the rule state.
    fn remove_entry(&mut self, id: &Hash) -> Option<Arc<ValidDescriptor>> {
        let d = self.store.remove(id)?;
        self.tombstones.forget(&d.id);
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DescriptorBuilder, Keypair, schema};

    const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

    fn cap(secret: u8, topic: &str, seq: u64) -> ValidDescriptor {
        DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), NOW)
            .topic(topic)
            .sequence(seq)
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
        ];
        for r in longest {
            assert!(r.to_string().len() <= crate::wire::MAX_REASON_LEN, "{r}");
        }
    }
}
