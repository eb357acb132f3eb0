//! An optional memo of signature checks, shared by the nodes of one process.
//!
//! Ed25519 verification is the dominant cost of validating a descriptor
//! (~100 µs, against ~1 µs for recomputing its id). A process that runs
//! many nodes — the simulator, a test, a hub hosting several identities —
//! sees the same descriptor many times: every replica of a STORE, every
//! holder's copy in a lookup answer. [`SignatureCache`] remembers which
//! `(publisher, id, signature)` triples have verified, so each distinct
//! descriptor is verified once per process.
//!
//! It cannot make an invalid descriptor valid: the id is always recomputed
//! from the fields (rule 1) and every time-dependent rule is always checked;
//! only the signature check of an *identical* (key, message, signature)
//! triple is skipped, and Ed25519 verification is a pure function of those
//! three. Only triples verified one by one by [`Identity::verify`] are
//! remembered (never the batch equation's verdict), so a cached answer is
//! exactly the answer [`Descriptor::validate`](super::Descriptor::validate)
//! would compute. Nodes use it when [`Config::signature_cache`] is set;
//! by default there is none.
//!
//! [`Identity::verify`]: crate::Identity::verify
//! [`Config::signature_cache`]: crate::Config::signature_cache

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::Descriptor;
use crate::key_cache::{KeyCache, verify_with};

/// What is remembered of one verified descriptor: its publisher's key and
/// signature bytes (the id is the map key).
type Verified = ([u8; 32], [u8; 64]);

#[derive(Default)]
struct Inner {
    verified: BTreeMap<[u8; 32], Verified>,
    /// Insertion order, for evicting the oldest when full.
    order: VecDeque<[u8; 32]>,
    capacity: usize,
    hits: u64,
    misses: u64,
}

/// A bounded, thread-safe memo of verified descriptor signatures, keyed by
/// descriptor id. Cloning shares the same memo.
#[derive(Clone)]
pub struct SignatureCache {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for SignatureCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.lock();
        f.debug_struct("SignatureCache")
            .field("len", &g.verified.len())
            .field("capacity", &g.capacity)
            .field("hits", &g.hits)
            .field("misses", &g.misses)
            .finish()
    }
}

impl SignatureCache {
    /// A memo of at most `capacity` verified signatures (the oldest is
    /// forgotten first). About 200 bytes per entry.
    pub fn new(capacity: usize) -> Self {
        SignatureCache {
            inner: Arc::new(Mutex::new(Inner {
                capacity,
                ..Inner::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the memo inconsistent in a way
        // that matters: every entry was verified when inserted.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Verifies `d`'s signature over its id, answering from the memo when
    /// this exact triple verified before. The caller has already checked
    /// that the id matches the fields.
    ///
    /// On a miss the signature is checked through `keys` when given (see
    /// [`KeyCache`]).
    pub(crate) fn verify(&self, d: &Descriptor, keys: Option<&mut KeyCache>) -> bool {
        let Some(id) = d.id.digest32() else {
            return verify_with(keys, &d.publisher, d.id.digest(), &d.signature);
        };
        if self.known(&id, d) {
            return true;
        }
        let ok = verify_with(keys, &d.publisher, d.id.digest(), &d.signature);
        if ok {
            self.remember(id, d);
        }
        ok
    }

    /// Whether this exact triple verified before (counted as a hit or miss).
    pub(crate) fn known(&self, id: &[u8; 32], d: &Descriptor) -> bool {
        let mut g = self.lock();
        let hit = g.verified.get(id).is_some_and(|(key, sig)| {
            key == d.publisher.public_key() && sig == d.signature.as_bytes()
        });
        if hit {
            g.hits += 1;
        } else {
            g.misses += 1;
        }
        hit
    }

    fn remember(&self, id: [u8; 32], d: &Descriptor) {
        let mut g = self.lock();
        if g.capacity == 0 {
            return;
        }
        let entry = (*d.publisher.public_key(), *d.signature.as_bytes());
        if g.verified.insert(id, entry).is_none() {
            g.order.push_back(id);
            while g.order.len() > g.capacity {
                if let Some(old) = g.order.pop_front() {
                    g.verified.remove(&old);
                }
            }
        }
    }

    /// Signatures remembered.
    pub fn len(&self) -> usize {
        self.lock().verified.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Look-ups answered from the memo, and look-ups that had to verify.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        let g = self.lock();
        (g.hits, g.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Keypair, Signature};
    use crate::time::Timestamp;
    use crate::{DescriptorBuilder, schema};

    fn signed(seed: u8) -> Descriptor {
        DescriptorBuilder::new(
            schema::CORE_CAPABILITY.hash(),
            Timestamp::from_secs(1_700_000_000),
        )
        .payload(vec![seed])
        .routing_keys(schema::hierarchical_keys("compute/x"))
        .sign(&Keypair::from_secret_bytes(&[seed; 32]))
        .unwrap()
    }

    #[test]
    fn a_verified_triple_is_answered_from_the_memo() {
        let cache = SignatureCache::new(16);
        let d = signed(1);
        assert!(cache.verify(&d, None));
        assert!(cache.verify(&d, None));
        assert_eq!(cache.hits_and_misses(), (1, 1));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn only_the_identical_triple_hits() {
        let cache = SignatureCache::new(16);
        let d = signed(1);
        assert!(cache.verify(&d, None));
        // Same id, another signature: verified afresh, and refused.
        let mut bad_sig = d.clone();
        bad_sig.signature = Signature::from_bytes([7; 64]);
        assert!(!cache.verify(&bad_sig, None));
        // Same id and signature, another claimed publisher: refused.
        let mut other_key = d.clone();
        other_key.publisher = Keypair::from_secret_bytes(&[2; 32]).identity();
        assert!(!cache.verify(&other_key, None));
        // Failures are never remembered.
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.hits_and_misses(), (0, 3));
    }

    #[test]
    fn bounded_oldest_forgotten_first() {
        let cache = SignatureCache::new(2);
        let (a, b, c) = (signed(1), signed(2), signed(3));
        for d in [&a, &b, &c] {
            assert!(cache.verify(d, None));
        }
        assert_eq!(cache.len(), 2);
        let a_id = a.id.digest32().unwrap();
        let c_id = c.id.digest32().unwrap();
        assert!(!cache.known(&a_id, &a));
        assert!(cache.known(&c_id, &c));
        assert!(SignatureCache::new(0).verify(&a, None));
    }

    #[test]
    fn validation_with_a_cache_matches_validation_without() {
        let cache = SignatureCache::new(16);
        let now = Timestamp::from_secs(1_700_000_000);
        let d = signed(4);
        assert_eq!(
            d.clone().validate_with(now, Some(&cache)),
            d.clone().validate(now)
        );
        // Tampered payload: the id no longer matches, cached or not.
        let mut tampered = d.clone();
        tampered.payload = b"evil".to_vec();
        assert_eq!(
            tampered.clone().validate_with(now, Some(&cache)),
            tampered.clone().validate(now)
        );
        // Expired later: time rules are checked on every call.
        let later = now.saturating_add(std::time::Duration::from_secs(7200));
        assert!(d.clone().validate_with(later, Some(&cache)).is_err());
        // The batch form agrees too, and is answered from the memo.
        let batch =
            crate::descriptor::validate_batch_with(vec![d.clone(), tampered], now, Some(&cache));
        assert!(batch[0].is_ok() && batch[1].is_err());
        assert!(cache.hits_and_misses().0 >= 2);
    }
    #[test]
    fn validation_with_a_key_cache_matches_validation_without() {
        let now = Timestamp::from_secs(1_700_000_000);
        let mut keys = KeyCache::new(16);
        let good = signed(5);
        let mut bad_sig = signed(6);
        bad_sig.signature = Signature::from_bytes([7; 64]);
        let mut tampered = signed(7);
        tampered.payload = b"evil".to_vec();
        // Publisher 5's key, claimed by a descriptor publisher 8 signed.
        let mut impostor = signed(8);
        impostor.publisher = good.publisher;
        impostor.id = impostor.compute_id();
        impostor.signature = Keypair::from_secret_bytes(&[8; 32]).sign(impostor.id.digest());
        let all = [good.clone(), bad_sig, tampered, impostor];
        for round in 0..2 {
            for d in &all {
                assert_eq!(
                    d.clone().validate_cached(now, None, Some(&mut keys)),
                    d.clone().validate(now),
                    "round {round}"
                );
            }
        }
        // Only the key that verified was kept, and it answered round two.
        assert_eq!(keys.len(), 1);
        assert!(keys.contains(&good.publisher));
        assert!(keys.hits_and_misses().0 >= 2);
        // Batches agree too, failing (one by one) or passing as a whole,
        // with and without a signature memo.
        let sigs = SignatureCache::new(16);
        for memo in [None, Some(&sigs)] {
            let cached =
                crate::descriptor::validate_batch_cached(all.to_vec(), now, memo, Some(&mut keys));
            assert_eq!(cached, crate::descriptor::validate_batch(all.to_vec(), now));
            let goods = vec![signed(9), signed(10), good.clone()];
            let cached =
                crate::descriptor::validate_batch_cached(goods.clone(), now, memo, Some(&mut keys));
            assert!(cached.iter().all(Result::is_ok));
            assert_eq!(cached, crate::descriptor::validate_batch(goods, now));
        }
        assert_eq!(keys.len(), 3, "a passing batch keeps its keys");
    }
}
