//! Validation: the eight rules, and the type that proves they passed.

use std::ops::Deref;
use std::time::Duration;

use super::{Descriptor, SignatureCache, limits};
use crate::hash::Hash;
use crate::identity::Identity;
use crate::key_cache::{KeyCache, verify_with};
use crate::time::Timestamp;

/// Why a descriptor is not valid. Variants follow the spec's order; the
/// first failing rule is the one reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Rule 1: the id does not match the fields.
    #[error("descriptor id {declared} does not match its fields (they hash to {computed})")]
    IdMismatch {
        /// The id it carries (boxed: hashes are 66 bytes inline, and the
        /// error path should not make every `Result` large).
        declared: Box<Hash>,
        /// The id its fields hash to.
        computed: Box<Hash>,
    },
    /// Rule 2: the signature does not verify under the publisher's key.
    #[error("signature does not verify under publisher {publisher}")]
    BadSignature {
        /// The claimed publisher.
        publisher: Identity,
    },
    /// Rule 3: expired (expiry = min(timestamp, now) + ttl).
    #[error("descriptor expired at {expired_at} (now {now})")]
    Expired {
        /// When it expired.
        expired_at: Timestamp,
        /// The time it was checked at.
        now: Timestamp,
    },
    /// Rule 4: timestamp too far in the future.
    #[error("timestamp {timestamp} is more than {max_skew_secs} s after now ({now})")]
    TimestampInFuture {
        /// Its timestamp.
        timestamp: Timestamp,
        /// The time it was checked at.
        now: Timestamp,
        /// The tolerated skew.
        max_skew_secs: u64,
    },
    /// Rule 5: TTL outside 60..=86,400 s.
    #[error("ttl {ttl} s is outside {min}..={max} s")]
    TtlOutOfRange {
        /// Its TTL.
        ttl: u32,
        /// Minimum.
        min: u32,
        /// Maximum.
        max: u32,
    },
    /// Rule 6: not 1..=8 routing keys.
    #[error("{count} routing keys; a descriptor needs {min}..={max}")]
    RoutingKeyCount {
        /// How many it has.
        count: usize,
        /// Minimum.
        min: usize,
        /// Maximum.
        max: usize,
    },
    /// Rule 7: payload over 65,536 bytes.
    #[error("payload is {len} bytes, over the {max}-byte limit")]
    PayloadTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Rule 8: topic over 255 bytes.
    #[error("topic is {len} bytes, over the {max}-byte limit")]
    TopicTooLong {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// A descriptor that passed every rule at some time `now`. It can only be
/// made by validation, so anything holding one — a store, a lookup result —
/// holds checked data. Read it through `Deref<Target = Descriptor>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidDescriptor {
    inner: Descriptor,
    expires_at: Timestamp,
}

impl ValidDescriptor {
    /// When it stops being valid: min(timestamp, validation time) + ttl.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }

    /// The descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.inner
    }

    /// Gives the descriptor back (it is no longer known to be valid).
    pub fn into_inner(self) -> Descriptor {
        self.inner
    }

    /// Rebuilds a descriptor that this process validated and then wrote to
    /// its own durable store, from the bytes read back and the expiry
    /// computed at validation (which depends on the validation time, so it
    /// is stored beside the bytes).
    ///
    /// The signature is not verified again — it did verify before the
    /// write, and checking ~100 µs per read would defeat the store — but
    /// the id is recomputed from the fields and the static rules are
    /// checked, so bytes that changed on disk are refused instead of
    /// served as valid.
    #[cfg(feature = "lmdb")]
    pub(crate) fn from_verified_storage(
        d: Descriptor,
        expires_at: Timestamp,
    ) -> Result<ValidDescriptor, ValidationError> {
        check_id(&d)?;
        check_static_rules(&d)?;
        Ok(ValidDescriptor {
            inner: d,
            expires_at,
        })
    }
}

impl Deref for ValidDescriptor {
    type Target = Descriptor;
    fn deref(&self) -> &Descriptor {
        &self.inner
    }
}

impl Descriptor {
    /// Checks all eight rules at `now`, in the spec's order.
    pub fn validate(self, now: Timestamp) -> Result<ValidDescriptor, ValidationError> {
        self.validate_with(now, None)
    }

    /// [`validate`](Descriptor::validate), answering the signature check
    /// from `cache` when this exact (publisher, id, signature) verified
    /// before in this process. The result is the same as without the cache.
    pub fn validate_with(
        self,
        now: Timestamp,
        cache: Option<&SignatureCache>,
    ) -> Result<ValidDescriptor, ValidationError> {
        self.validate_cached(now, cache, None)
    }

    /// [`validate_with`](Descriptor::validate_with), also taking the
    /// publisher's decompressed key from `keys` (a node's [`KeyCache`])
    /// when it has verified before, and keeping it there once the
    /// signature verifies. The result is the same as without the caches.
    pub fn validate_cached(
        self,
        now: Timestamp,
        signatures: Option<&SignatureCache>,
        keys: Option<&mut KeyCache>,
    ) -> Result<ValidDescriptor, ValidationError> {
        check_id(&self)?;
        if !signature_ok(&self, signatures, keys) {
            return Err(ValidationError::BadSignature {
                publisher: self.publisher,
            });
        }
        finish(self, now)
    }

    /// [`validate_cached`](Descriptor::validate_cached) for a descriptor
    /// whose rules 1 and 2 were settled by [`precheck_signatures`] (on this
    /// very descriptor): only the rest is checked then.
    pub(crate) fn validate_prechecked(
        self,
        now: Timestamp,
        check: SignatureCheck,
        signatures: Option<&SignatureCache>,
        keys: Option<&mut KeyCache>,
    ) -> Result<ValidDescriptor, ValidationError> {
        match check {
            SignatureCheck::Verified => finish(self, now),
            SignatureCheck::Bad => Err(ValidationError::BadSignature {
                publisher: self.publisher,
            }),
            SignatureCheck::Unchecked => self.validate_cached(now, signatures, keys),
        }
    }

    /// [`validate`](Descriptor::validate) without consuming (clones on success).
    pub fn check(&self, now: Timestamp) -> Result<ValidDescriptor, ValidationError> {
        self.clone().validate(now)
    }
}

/// Rule 2 for one descriptor whose id is right, through whichever caches
/// are given.
fn signature_ok(
    d: &Descriptor,
    signatures: Option<&SignatureCache>,
    keys: Option<&mut KeyCache>,
) -> bool {
    match signatures {
        Some(c) => c.verify(d, keys),
        None => verify_with(keys, &d.publisher, d.id.digest(), &d.signature),
    }
}

fn check_id(d: &Descriptor) -> Result<(), ValidationError> {
    let computed = d.compute_id();
    if computed != d.id {
        return Err(ValidationError::IdMismatch {
            declared: Box::new(d.id),
            computed: Box::new(computed),
        });
    }
    Ok(())
}

/// Rules 3–8, then the proof type.
fn finish(d: Descriptor, now: Timestamp) -> Result<ValidDescriptor, ValidationError> {
    let expires_at = d
        .timestamp
        .min(now)
        .saturating_add(Duration::from_secs(d.ttl as u64));
    if expires_at <= now {
        return Err(ValidationError::Expired {
            expired_at: expires_at,
            now,
        });
    }
    let skew = Duration::from_secs(limits::MAX_CLOCK_SKEW_SECS);
    if d.timestamp > now.saturating_add(skew) {
        return Err(ValidationError::TimestampInFuture {
            timestamp: d.timestamp,
            now,
            max_skew_secs: limits::MAX_CLOCK_SKEW_SECS,
        });
    }
    check_static_rules(&d)?;
    Ok(ValidDescriptor {
        inner: d,
        expires_at,
    })
}

/// Rules 5–8: the ones that do not depend on time or keys.
pub(super) fn check_static_rules(d: &Descriptor) -> Result<(), ValidationError> {
    if !(limits::MIN_TTL_SECS..=limits::MAX_TTL_SECS).contains(&d.ttl) {
        return Err(ValidationError::TtlOutOfRange {
            ttl: d.ttl,
            min: limits::MIN_TTL_SECS,
            max: limits::MAX_TTL_SECS,
        });
    }
    let count = d.routing_keys.len();
    if !(limits::MIN_ROUTING_KEYS..=limits::MAX_ROUTING_KEYS).contains(&count) {
        return Err(ValidationError::RoutingKeyCount {
            count,
            min: limits::MIN_ROUTING_KEYS,
            max: limits::MAX_ROUTING_KEYS,
        });
    }
    if d.payload.len() > limits::MAX_PAYLOAD_LEN {
        return Err(ValidationError::PayloadTooLarge {
            len: d.payload.len(),
            max: limits::MAX_PAYLOAD_LEN,
        });
    }
    if d.topic.len() > limits::MAX_TOPIC_LEN {
        return Err(ValidationError::TopicTooLong {
            len: d.topic.len(),
            max: limits::MAX_TOPIC_LEN,
        });
    }
    Ok(())
}

/// Validates many descriptors at once, verifying their signatures in
/// Ed25519 batches of up to 32 (about half the cost per signature of
/// one-by-one checks). If a batch fails, each of its signatures is checked
/// alone to find the bad ones,
/// so the result for each descriptor is the same as
/// [`Descriptor::validate`] would give — except that the batch equation may
/// accept a signature that a publisher deliberately crafted with small-order
/// components, which only that publisher can make for its own key.
pub fn validate_batch(
    descriptors: Vec<Descriptor>,
    now: Timestamp,
) -> Vec<Result<ValidDescriptor, ValidationError>> {
    validate_batch_with(descriptors, now, None)
}

/// [`validate_batch`], skipping the signatures `cache` has seen verify
/// (see [`SignatureCache`]); the rest go into the batch as usual.
pub fn validate_batch_with(
    descriptors: Vec<Descriptor>,
    now: Timestamp,
    cache: Option<&SignatureCache>,
) -> Vec<Result<ValidDescriptor, ValidationError>> {
    validate_batch_cached(descriptors, now, cache, None)
}

/// [`validate_batch_with`], also taking publishers' decompressed keys from
/// `keys` (a node's [`KeyCache`]) and keeping those whose signatures
/// verified. The results are the same as without the caches.
pub fn validate_batch_cached(
    descriptors: Vec<Descriptor>,
    now: Timestamp,
    signatures: Option<&SignatureCache>,
    keys: Option<&mut KeyCache>,
) -> Vec<Result<ValidDescriptor, ValidationError>> {
    let checks = {
        let refs: Vec<&Descriptor> = descriptors.iter().collect();
        precheck_signatures(&refs, signatures, keys)
    };
    // Only a wrong id is left unchecked by the precheck: its full
    // validation stops at rule 1, before any signature work.
    descriptors
        .into_iter()
        .zip(checks)
        .map(|(d, check)| d.validate_prechecked(now, check, signatures, None))
        .collect()
}

/// Rules 1 and 2 (id, signature) as settled ahead of validation, for
/// [`Descriptor::validate_prechecked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureCheck {
    /// The id matches the fields and the signature verifies.
    Verified,
    /// The id matches, the signature does not verify.
    Bad,
    /// Not settled (a wrong id, or never looked at): validate in full.
    Unchecked,
}

/// Most signatures in one Ed25519 batch equation. Past about 50, the
/// equation's lookup tables (1.3 KB per point, two points per signature)
/// outgrow glibc's 128 KiB mmap threshold, and where other allocations
/// come in between (as in a node) each call maps and faults in fresh
/// pages: measured here, a batch of 64 cost 18.5–20.4 µs per signature
/// against 15.2–17.5 µs for batches of 32 or 48, with about 80 page faults
/// per call (`batch_sizes` example, docs/benchmarks.md).
/// Smaller batches also confine a forged signature's fallback to
/// one-by-one checks to its own chunk.
const MAX_VERIFY_BATCH: usize = 32;

/// Rules 1 and 2 for many descriptors at once: every id is recomputed, and
/// the signatures of those whose id is right go into Ed25519 batches of up
/// to [`MAX_VERIFY_BATCH`] (about half the cost per signature of
/// one-by-one checks). If a batch fails, each of its signatures is checked
/// alone to find the bad ones, so the verdicts are those of one-by-one
/// checks — except that the batch equation may accept a signature that a
/// publisher deliberately crafted with small-order components, which only
/// that publisher can make for its own key.
pub(crate) fn precheck_signatures(
    descriptors: &[&Descriptor],
    signatures: Option<&SignatureCache>,
    mut keys: Option<&mut KeyCache>,
) -> Vec<SignatureCheck> {
    let mut checks = vec![SignatureCheck::Unchecked; descriptors.len()];
    // Index and key of each descriptor going into a batch.
    let mut batch: Vec<(usize, ed25519_dalek::VerifyingKey)> =
        Vec::with_capacity(descriptors.len());
    for (i, d) in descriptors.iter().enumerate() {
        if check_id(d).is_err() {
            continue;
        }
        let cached = signatures.is_some_and(|c| d.id.digest32().is_some_and(|id| c.known(&id, d)));
        if cached {
            checks[i] = SignatureCheck::Verified;
            continue;
        }
        let key = match keys.as_deref_mut() {
            Some(k) => k.key(&d.publisher).map(|(key, _)| key),
            None => ed25519_dalek::VerifyingKey::from_bytes(d.publisher.public_key()).ok(),
        };
        match key {
            Some(key) => batch.push((i, key)),
            // Not a curve point: no signature can verify under it.
            None => checks[i] = SignatureCheck::Bad,
        }
    }
    let mut messages: Vec<&[u8]> = Vec::with_capacity(MAX_VERIFY_BATCH);
    let mut signatures_in = Vec::with_capacity(MAX_VERIFY_BATCH);
    let mut batch_keys = Vec::with_capacity(MAX_VERIFY_BATCH);
    for chunk in batch.chunks(MAX_VERIFY_BATCH) {
        messages.clear();
        signatures_in.clear();
        batch_keys.clear();
        for &(i, key) in chunk {
            let d = descriptors[i];
            messages.push(d.id.digest());
            signatures_in.push(ed25519_dalek::Signature::from_bytes(d.signature.as_bytes()));
            batch_keys.push(key);
        }
        let batch_ok = ed25519_dalek::verify_batch(&messages, &signatures_in, &batch_keys).is_ok();
        for &(i, key) in chunk {
            let d = descriptors[i];
            let ok = if batch_ok {
                if let Some(k) = keys.as_deref_mut() {
                    k.remember(&d.publisher, key);
                }
                true
            } else {
                signature_ok(d, signatures, keys.as_deref_mut())
            };
            checks[i] = if ok {
                SignatureCheck::Verified
            } else {
                SignatureCheck::Bad
            };
        }
    }
    checks
}
