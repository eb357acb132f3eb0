//! A node's memo of decompressed Ed25519 public keys.
//!
//! Checking a signature starts by decompressing the signer's 32-byte
//! public key into a curve point (`VerifyingKey::from_bytes`, a field
//! square root): about 15 % of one verification, paid again for every
//! descriptor a publisher signs. Most STOREs a node sees come from
//! publishers it has seen before — republishes every TTL/2, one descriptor
//! per topic, the same publishers in lookup answers — so a node keeps the
//! points it decompressed in a [`KeyCache`] and skips that step for them.
//!
//! The cache cannot change a verdict. Decompression is a pure function of
//! the key bytes, and an entry is found only by the exact 32 bytes it was
//! decompressed from, so a cached key is the very value
//! [`Identity::verify`](crate::Identity::verify) would compute; the
//! signature equation itself is evaluated in full on every call.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;

use ed25519_dalek::{Verifier as _, VerifyingKey};

use crate::identity::{Identity, Signature};
use crate::rng::Rng;

/// Seed of the victim choice. Fixed, so a node's evictions (and so its
/// work) are reproducible; it draws nothing from the node's own generator.
const VICTIM_SEED: u64 = 0x6b65_7973;

/// A bounded memo of decompressed Ed25519 public keys, keyed by their exact
/// 32 bytes. Owned by one [`Node`](crate::node::Node) (no sharing, no
/// locks); sized by [`Config::key_cache_capacity`](crate::Config::key_cache_capacity).
///
/// - **What enters.** A key enters only once a signature has verified
///   under it, so keys that do not decompress and forged signatures cannot
///   churn the cache; an attacker must sign with every key it pushes in.
/// - **Bound and eviction.** At most `capacity` keys (about 350 bytes
///   each). When full, a new key replaces one chosen pseudo-randomly from a
///   fixed-seed sequence: deterministic, O(log n), and unlike oldest-first
///   it still hits when publishers cycle through more keys than it holds
///   (a republish round larger than the cache).
/// - **Memory grows with use**: an idle node's cache holds nothing.
#[derive(Clone)]
pub struct KeyCache {
    /// Key → index into `slots`. Small entries, so inserting into a B-tree
    /// node moves little memory; `Identity` compares its bytes inline.
    keys: BTreeMap<Identity, u32>,
    /// The keys held and their points; a victim is a slot index.
    slots: Vec<(Identity, VerifyingKey)>,
    capacity: usize,
    victims: Rng,
    hits: u64,
    misses: u64,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("len", &self.keys.len())
            .field("capacity", &self.capacity)
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}

impl KeyCache {
    /// A cache of at most `capacity` keys; 0 caches nothing (every
    /// verification decompresses, as [`Identity::verify`] does).
    pub fn new(capacity: usize) -> Self {
        KeyCache {
            keys: BTreeMap::new(),
            slots: Vec::new(),
            capacity,
            victims: Rng::new(VICTIM_SEED),
            hits: 0,
            misses: 0,
        }
    }

    /// Checks `signature` over `message` under `identity`, exactly as
    /// [`Identity::verify`] does (same non-strict equation, same answer),
    /// reusing the decompressed key when `identity` verified before.
    pub fn verify(&mut self, identity: &Identity, message: &[u8], signature: &Signature) -> bool {
        let Some((key, cached)) = self.key(identity) else {
            return false;
        };
        let ok = key
            .verify(
                message,
                &ed25519_dalek::Signature::from_bytes(signature.as_bytes()),
            )
            .is_ok();
        if ok && !cached {
            self.remember(identity, key);
        }
        ok
    }

    /// The decompressed key for `identity` and whether it came from the
    /// cache (counted as a hit or a miss); `None` if the bytes are not a
    /// curve point. Nothing is inserted: see [`remember`](Self::remember).
    pub(crate) fn key(&mut self, identity: &Identity) -> Option<(VerifyingKey, bool)> {
        let slot = self.keys.get(identity);
        if let Some((_, key)) = slot.and_then(|&i| self.slots.get(i as usize)) {
            self.hits += 1;
            return Some((*key, true));
        }
        self.misses += 1;
        VerifyingKey::from_bytes(identity.public_key())
            .ok()
            .map(|k| (k, false))
    }

    /// Keeps `key`, the decompression of `identity`, once a signature has
    /// verified under it. Evicts one key when full.
    pub(crate) fn remember(&mut self, identity: &Identity, key: VerifyingKey) {
        let id = *identity;
        debug_assert_eq!(
            key.as_bytes(),
            id.public_key(),
            "a key is cached under its own bytes"
        );
        if self.capacity == 0 {
            return;
        }
        let len = self.slots.len();
        if len < self.capacity {
            // Slot indexes are u32: a capacity past 4 billion keys (over a
            // terabyte) stops growing there.
            let Ok(index) = u32::try_from(len) else {
                return;
            };
            if let Entry::Vacant(v) = self.keys.entry(id) {
                v.insert(index);
                self.slots.push((id, key));
            }
            return;
        }
        if self.keys.contains_key(&id) {
            return;
        }
        let victim = (self.victims.next_u64() % len as u64) as usize;
        if let Some(slot) = self.slots.get_mut(victim) {
            self.keys.remove(&slot.0);
            *slot = (id, key);
            // `victim` < `len`, a slot count that fitted in u32.
            self.keys.insert(id, victim as u32);
        }
    }

    /// Keys held (never more than [`capacity`](Self::capacity)).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Most keys held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the key of `identity` is held.
    pub fn contains(&self, identity: &Identity) -> bool {
        self.keys.contains_key(identity)
    }

    /// Key look-ups answered from the cache, and look-ups that had to
    /// decompress.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Checks that the slots and the map hold the same keys, within the
    /// bound, each under its own bytes. For tests.
    #[cfg(test)]
    fn check_invariants(&self) -> Result<(), String> {
        if self.keys.len() > self.capacity || self.slots.len() != self.keys.len() {
            return Err(format!(
                "{} keys in {} slots, capacity {}",
                self.keys.len(),
                self.slots.len(),
                self.capacity
            ));
        }
        for (i, (id, key)) in self.slots.iter().enumerate() {
            if self.keys.get(id) != Some(&(i as u32)) {
                return Err(format!("slot {i} ({id}) not mapped to itself"));
            }
            if key.as_bytes() != id.public_key() {
                return Err(format!("slot {i} holds another key than {id}"));
            }
        }
        Ok(())
    }
}

/// [`KeyCache::verify`] when a cache is given, else [`Identity::verify`].
pub(crate) fn verify_with(
    keys: Option<&mut KeyCache>,
    identity: &Identity,
    message: &[u8],
    signature: &Signature,
) -> bool {
    match keys {
        Some(cache) => cache.verify(identity, message, signature),
        None => identity.verify(message, signature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    fn key(n: u16) -> Keypair {
        let mut s = [0x42; 32];
        s[..2].copy_from_slice(&n.to_be_bytes());
        Keypair::from_secret_bytes(&s)
    }

    #[test]
    fn miss_then_hit_with_the_same_verdicts() {
        let mut cache = KeyCache::new(8);
        let k = key(1);
        let sig = k.sign(b"msg");
        assert!(cache.verify(&k.identity(), b"msg", &sig));
        assert_eq!(cache.hits_and_misses(), (0, 1));
        assert!(cache.contains(&k.identity()));
        // Hit: the equation is still evaluated, so a wrong message or a
        // wrong signature still fails.
        assert!(cache.verify(&k.identity(), b"msg", &sig));
        assert!(!cache.verify(&k.identity(), b"msh", &sig));
        assert!(!cache.verify(&k.identity(), b"msg", &k.sign(b"other")));
        assert_eq!(cache.hits_and_misses(), (3, 1));
        assert_eq!(cache.len(), 1);
        cache.check_invariants().unwrap();
    }

    #[test]
    fn only_keys_that_verified_enter() {
        let mut cache = KeyCache::new(8);
        let k = key(2);
        // A forged signature: refused and not remembered.
        assert!(!cache.verify(&k.identity(), b"msg", &Signature::from_bytes([7; 64])));
        assert!(cache.is_empty());
        // Bytes that are not a curve point: refused, nothing cached.
        let mut not_a_point = None;
        for y in 2u8..=255 {
            let mut b = [0u8; 32];
            b[0] = y;
            if VerifyingKey::from_bytes(&b).is_err() {
                not_a_point = Some(Identity::from_ed25519_bytes(b));
                break;
            }
        }
        let bad = not_a_point.expect("some small y is off the curve");
        assert!(!cache.verify(&bad, b"msg", &k.sign(b"msg")));
        assert!(cache.is_empty());
        assert_eq!(cache.hits_and_misses(), (0, 2));
    }

    #[test]
    fn a_cached_key_never_answers_for_another() {
        let mut cache = KeyCache::new(8);
        let a = key(3);
        let sig_a = a.sign(b"msg");
        assert!(cache.verify(&a.identity(), b"msg", &sig_a));
        // Every single-bit change of A's bytes is another key: a miss, and
        // A's signature does not verify under it.
        let bytes = *a.identity().public_key();
        for bit in 0..256 {
            let mut other = bytes;
            other[bit / 8] ^= 1 << (bit % 8);
            let other = Identity::from_ed25519_bytes(other);
            assert!(!cache.contains(&other));
            assert!(!cache.verify(&other, b"msg", &sig_a), "bit {bit}");
            assert_eq!(
                cache.verify(&other, b"msg", &sig_a),
                other.verify(b"msg", &sig_a)
            );
        }
        assert_eq!(cache.len(), 1);
        // Another publisher's signature never verifies under A's cached key.
        let b = key(4);
        assert!(!cache.verify(&a.identity(), b"msg", &b.sign(b"msg")));
        // And B's own key is its own entry.
        assert!(cache.verify(&b.identity(), b"msg", &b.sign(b"msg")));
        assert_eq!(cache.len(), 2);
        cache.check_invariants().unwrap();
    }

    #[test]
    fn bounded_with_reproducible_evictions() {
        let run = || {
            let mut cache = KeyCache::new(4);
            for n in 0..50 {
                let k = key(100 + n);
                assert!(cache.verify(&k.identity(), b"m", &k.sign(b"m")));
                assert!(cache.len() <= 4);
                cache.check_invariants().unwrap();
            }
            assert_eq!(cache.len(), 4);
            // The last key always stays: it replaced a victim.
            assert!(cache.contains(&key(149).identity()));
            cache.keys.keys().copied().collect::<Vec<_>>()
        };
        assert_eq!(run(), run(), "same inputs, same survivors");
        // Capacity 0 caches nothing and still verifies.
        let mut none = KeyCache::new(0);
        let k = key(7);
        assert!(none.verify(&k.identity(), b"m", &k.sign(b"m")));
        assert!(none.verify(&k.identity(), b"m", &k.sign(b"m")));
        assert!(none.is_empty());
        assert_eq!(none.hits_and_misses(), (0, 2));
    }

    #[test]
    fn agrees_with_identity_verify() {
        let mut cache = KeyCache::new(2);
        let keys: Vec<Keypair> = (0..5).map(|n| key(200 + n)).collect();
        for (i, signer) in keys.iter().enumerate() {
            let sig = signer.sign(b"payload");
            for claimed in &keys {
                for msg in [&b"payload"[..], b"payloae"] {
                    let want = claimed.identity().verify(msg, &sig);
                    assert_eq!(cache.verify(&claimed.identity(), msg, &sig), want, "{i}");
                    assert_eq!(
                        verify_with(Some(&mut cache), &claimed.identity(), msg, &sig),
                        want
                    );
                    assert_eq!(verify_with(None, &claimed.identity(), msg, &sig), want);
                }
            }
        }
        cache.check_invariants().unwrap();
    }
}
