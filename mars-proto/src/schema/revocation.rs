//! The `core/revocation` payload: withdraws an earlier descriptor of the same
//! publisher before its TTL runs out (PROTOCOL.md §5.5).
//!
//! ```text
//! revocation = {
//!   target_id:   Hash,   ; descriptor ID being revoked
//!   reason:      tstr,   ; "expired" | "superseded" | "compromised" | "withdrawn"
//!   ? successor: Hash    ; if superseded, the new descriptor ID
//! }
//! ```
//!
//! It is stored at the same routing keys as its target, must be signed by
//! the target's publisher, and a node that receives a valid one removes the
//! target ([`Revocation::check_removal`] says whether one does).
//!
//! Hashes are written as message bodies carry them, `{algorithm, digest}`
//! with the digest as a byte string; reading also accepts the canonical
//! `[algorithm, digest]` array, a digest as an array of integers (the
//! reference's serde form) and, from the earlier draft where `target_id` was
//! a `bstr`, a bare 32-byte BLAKE3 digest. The reference implementation does
//! not process revocations at all (it stores them as opaque descriptors).

use std::fmt;

use super::CORE_REVOCATION;
use super::payload::{self, Fields, PayloadError, w};
use crate::descriptor::{Descriptor, DescriptorBuilder, ValidDescriptor, ValidationError};
use crate::hash::Hash;
use crate::identity::{Identity, Keypair};
use crate::time::Timestamp;

/// Longest `reason`, in bytes: the spec's reasons are single words; a
/// longer one is noise, not a reason.
pub const MAX_REASON_LEN: usize = 255;

/// Why a descriptor is revoked. The spec names four; others are kept as
/// text so a newer publisher's reason is not lost.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// `expired`: no longer offered.
    Expired,
    /// `superseded`: replaced by the descriptor named in `successor`.
    Superseded,
    /// `compromised`: its key leaked (publish a key rotation too, §7.2).
    Compromised,
    /// `withdrawn`: taken back by the publisher.
    Withdrawn,
    /// Any other reason text (build it with [`RevocationReason::parse`], so
    /// that the four names above always map to their variants). Decoding
    /// requires 1 to [`MAX_REASON_LEN`] bytes.
    Other(String),
}

impl RevocationReason {
    /// The wire text.
    pub fn as_str(&self) -> &str {
        match self {
            RevocationReason::Expired => "expired",
            RevocationReason::Superseded => "superseded",
            RevocationReason::Compromised => "compromised",
            RevocationReason::Withdrawn => "withdrawn",
            RevocationReason::Other(s) => s,
        }
    }

    /// The reason for a wire text: one of the four names, or `Other`.
    pub fn parse(s: &str) -> Self {
        match s {
            "expired" => RevocationReason::Expired,
            "superseded" => RevocationReason::Superseded,
            "compromised" => RevocationReason::Compromised,
            "withdrawn" => RevocationReason::Withdrawn,
            other => RevocationReason::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded or to-be-published `core/revocation` payload.
///
/// ```
/// use mars_proto::schema::{Capability, Endpoint, Revocation, RevocationReason, TypePath};
/// use mars_proto::{Keypair, Timestamp};
///
/// let key = Keypair::from_secret_bytes(&[1; 32]);
/// let t0 = Timestamp::from_secs(1_700_000_000);
/// let cap = Capability::new(TypePath::new("compute/x").unwrap(), Endpoint::text("https://a"));
/// let target = cap.sign(&key, t0, 1).unwrap();
///
/// let t1 = Timestamp::from_secs(1_700_000_100);
/// let revocation = Revocation::new(target.id, RevocationReason::Withdrawn)
///     .sign(&target, &key, t1, 0)
///     .unwrap()
///     .validate(t1)
///     .unwrap();
/// assert_eq!(revocation.routing_keys, target.routing_keys);
/// assert!(Revocation::check_removal(&revocation, &target).is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The id of the descriptor revoked.
    pub target_id: Hash,
    /// Why.
    pub reason: RevocationReason,
    /// When superseded: the id of the descriptor that replaces it.
    pub successor: Option<Hash>,
}

/// Why a payload or descriptor is not a usable revocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// The bytes break an encoding or field rule (the error names which).
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The descriptor is of another schema.
    #[error("descriptor schema {found} is not core/revocation")]
    WrongSchema {
        /// The descriptor's schema hash.
        found: Hash,
    },
    /// Only the publisher of a descriptor may revoke it (§5.5).
    #[error(
        "revocation signed by {revoker}, but only the target's publisher {publisher} may revoke it"
    )]
    NotPublisher {
        /// Who published the target.
        publisher: Identity,
        /// Who signed (or would sign) the revocation.
        revoker: Identity,
    },
    /// The revocation names another descriptor than the one given.
    #[error("revocation names target {named}, not {target}")]
    TargetMismatch {
        /// The `target_id` in the payload (boxed, as are all hashes in
        /// errors: 66 bytes inline would make every `Result` large).
        named: Box<Hash>,
        /// The id of the descriptor it was checked against.
        target: Box<Hash>,
    },
    /// The revocation descriptor itself breaks a static rule (it takes the
    /// target's TTL and routing keys, so an invalid target gives one).
    #[error("revocation descriptor: {0}")]
    Descriptor(#[from] ValidationError),
}

impl Revocation {
    /// Revokes `target_id` for `reason`.
    pub fn new(target_id: Hash, reason: RevocationReason) -> Self {
        Revocation {
            target_id,
            reason,
            successor: None,
        }
    }

    /// Revokes `target_id` as superseded by `successor`.
    pub fn superseded(target_id: Hash, successor: Hash) -> Self {
        Revocation {
            target_id,
            reason: RevocationReason::Superseded,
            successor: Some(successor),
        }
    }

    /// The payload in CBOR (keys in bytewise order, no successor if none).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        let mut wr = w(&mut out);
        wr.map(2 + self.successor.is_some() as usize);
        wr.key("reason");
        wr.text(self.reason.as_str());
        if let Some(s) = &self.successor {
            w(&mut out).key("successor");
            payload::write_hash(&mut out, s);
        }
        w(&mut out).key("target_id");
        payload::write_hash(&mut out, &self.target_id);
        out
    }

    /// Decodes a CBOR payload (strict, bounded; unknown keys ignored).
    pub fn decode(bytes: &[u8]) -> Result<Self, RevocationError> {
        let tree = payload::parse_cbor(bytes)?;
        let f = Fields::of(&tree, "payload")?;
        let target_id = payload::hash(f.req("target_id", "target_id")?, "target_id")?;
        let reason = payload::text(f.req("reason", "reason")?, "reason", MAX_REASON_LEN)?;
        if reason.is_empty() {
            return Err(PayloadError::invalid("reason", reason, "a non-empty reason").into());
        }
        let successor = f
            .get("successor")
            .map(|v| payload::hash(v, "successor"))
            .transpose()?;
        Ok(Revocation {
            target_id,
            reason: RevocationReason::parse(reason),
            successor,
        })
    }

    /// Decodes the payload of a `core/revocation` descriptor.
    pub fn from_descriptor(descriptor: &Descriptor) -> Result<Self, RevocationError> {
        if descriptor.schema_hash != CORE_REVOCATION.hash() {
            return Err(RevocationError::WrongSchema {
                found: descriptor.schema_hash,
            });
        }
        Self::decode(&descriptor.payload)
    }

    /// The topic a revocation of `target_id` is published under: the hex of
    /// its digest, so that each revocation has its own replacement slot.
    /// (The spec suggests the empty topic, but then a publisher's second
    /// revocation would replace its first at every storing node, and the
    /// first target could be stored again.)
    pub fn topic_for(target_id: &Hash) -> String {
        target_id.to_hex()
    }

    /// A descriptor builder for this revocation of `target` at `timestamp`:
    /// schema `core/revocation`, the target's routing keys (§5.5: stored
    /// where the target is) and TTL (so it outlives the target when
    /// published after it), and [`Revocation::topic_for`] the target. Use
    /// [`Revocation::sign`] unless you need to change these; it also checks
    /// that you may revoke the target.
    pub fn descriptor_builder(
        &self,
        target: &Descriptor,
        timestamp: Timestamp,
    ) -> DescriptorBuilder {
        DescriptorBuilder::new(CORE_REVOCATION.hash(), timestamp)
            .topic(Self::topic_for(&self.target_id))
            .payload(self.to_cbor())
            .ttl(target.ttl)
            .routing_keys(target.routing_keys.clone())
    }

    /// The signed revocation descriptor for `target`, refused unless `key`
    /// is the target's publisher and this revocation names the target.
    pub fn sign(
        &self,
        target: &Descriptor,
        key: &Keypair,
        timestamp: Timestamp,
        sequence: u64,
    ) -> Result<Descriptor, RevocationError> {
        if key.identity() != target.publisher {
            return Err(RevocationError::NotPublisher {
                publisher: target.publisher,
                revoker: key.identity(),
            });
        }
        if self.target_id != target.id {
            return Err(RevocationError::TargetMismatch {
                named: Box::new(self.target_id),
                target: Box::new(target.id),
            });
        }
        Ok(self
            .descriptor_builder(target, timestamp)
            .sequence(sequence)
            .sign(key)?)
    }

    /// Whether `revocation` (already validated: id, signature, TTL) removes
    /// `target`: it must be a `core/revocation` signed by the target's
    /// publisher naming the target's id. Returns the decoded revocation.
    pub fn check_removal(
        revocation: &ValidDescriptor,
        target: &Descriptor,
    ) -> Result<Self, RevocationError> {
        let r = Self::from_descriptor(revocation)?;
        if revocation.publisher != target.publisher {
            return Err(RevocationError::NotPublisher {
                publisher: target.publisher,
                revoker: revocation.publisher,
            });
        }
        if r.target_id != target.id {
            return Err(RevocationError::TargetMismatch {
                named: Box::new(r.target_id),
                target: Box::new(target.id),
            });
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashAlgorithm;
    use crate::schema::{CORE_CAPABILITY, Capability, Endpoint, TypePath};
    use proptest::prelude::*;

    fn key(n: u8) -> Keypair {
        Keypair::from_secret_bytes(&[n; 32])
    }

    const T0: Timestamp = Timestamp::from_secs(1_700_000_000);
    const T1: Timestamp = Timestamp::from_secs(1_700_000_060);

    fn target(k: &Keypair) -> Descriptor {
        Capability::new(
            TypePath::new("compute/inference/x").unwrap(),
            Endpoint::text("https://a"),
        )
        .sign(k, T0, 1)
        .unwrap()
    }

    #[test]
    fn reasons_round_trip() {
        let id = Hash::blake3(b"target");
        for reason in [
            RevocationReason::Expired,
            RevocationReason::Superseded,
            RevocationReason::Compromised,
            RevocationReason::Withdrawn,
            RevocationReason::Other("moved-to-mars".into()),
        ] {
            let r = Revocation::new(id, reason);
            assert_eq!(Revocation::decode(&r.to_cbor()).unwrap(), r);
        }
        let s = Revocation::superseded(id, Hash::blake3(b"next"));
        assert_eq!(Revocation::decode(&s.to_cbor()).unwrap(), s);
        assert_eq!(
            RevocationReason::parse("withdrawn"),
            RevocationReason::Withdrawn
        );
        assert_eq!(RevocationReason::Compromised.to_string(), "compromised");
    }

    #[test]
    fn encoding_is_the_documented_map() {
        let r = Revocation::new(
            Hash::from_blake3_digest([0xab; 32]),
            RevocationReason::Expired,
        );
        // {"reason": "expired", "target_id": {"algorithm": 3, "digest": h'ab…'}}
        let mut expected = hex::decode(concat!(
            "a2",
            "66",
            "726561736f6e",
            "67",
            "65787069726564",
            "69",
            "7461726765745f6964",
            "a2",
            "69",
            "616c676f726974686d",
            "03",
            "66",
            "646967657374",
            "5820",
        ))
        .unwrap();
        expected.extend_from_slice(&[0xab; 32]);
        assert_eq!(r.to_cbor(), expected);
    }

    #[test]
    fn older_and_reference_forms_decode() {
        let id = Hash::blake3(b"t");
        // {reason: "withdrawn", target_id: h'<32 bytes>'}: the earlier draft's bstr.
        let mut bare = Vec::new();
        w(&mut bare).map(2);
        w(&mut bare).text("reason");
        w(&mut bare).text("withdrawn");
        w(&mut bare).text("target_id");
        w(&mut bare).bytes(id.digest());
        assert_eq!(
            Revocation::decode(&bare).unwrap(),
            Revocation::new(id, RevocationReason::Withdrawn)
        );
        // {target_id: [3, h'..'], reason: "x", successor: {algorithm: 4, digest: [ints]},
        //  extra: [1]}: the canonical array, the reference's integer arrays, an unknown key.
        let succ = Hash::sha256(b"s");
        let mut b = Vec::new();
        let mut wr = w(&mut b);
        wr.map(4);
        wr.text("target_id");
        wr.array(2);
        wr.uint(3);
        wr.bytes(id.digest());
        wr.text("reason");
        wr.text("x");
        wr.text("successor");
        wr.map(2);
        wr.text("algorithm");
        wr.uint(4);
        wr.text("digest");
        wr.array(32);
        for x in succ.digest() {
            wr.uint(*x as u64);
        }
        wr.text("extra");
        wr.array(1);
        wr.uint(1);
        let r = Revocation::decode(&b).unwrap();
        assert_eq!(r.target_id, id);
        assert_eq!(r.reason, RevocationReason::Other("x".into()));
        assert_eq!(r.successor, Some(succ));
        assert_eq!(r.successor.unwrap().algorithm(), HashAlgorithm::Sha256);
    }

    fn perr(b: &[u8]) -> PayloadError {
        match Revocation::decode(b) {
            Err(RevocationError::Payload(p)) => p,
            other => panic!("expected a payload error, got {other:?}"),
        }
    }

    #[test]
    fn payload_errors_name_the_field() {
        let good = Revocation::new(Hash::blake3(b"t"), RevocationReason::Expired);
        // Missing target_id: {reason: "expired"}.
        let only_reason = {
            let mut b = vec![0xa1];
            w(&mut b).text("reason");
            w(&mut b).text("expired");
            b
        };
        assert_eq!(
            perr(&only_reason),
            PayloadError::MissingField { field: "target_id" }
        );
        let only_target = {
            let mut b = vec![0xa1];
            w(&mut b).text("target_id");
            payload::write_hash(&mut b, &good.target_id);
            b
        };
        assert_eq!(
            perr(&only_target),
            PayloadError::MissingField { field: "reason" }
        );
        let with_reason = |reason: &mut dyn FnMut(&mut Vec<u8>)| {
            let mut b = vec![0xa2];
            w(&mut b).text("reason");
            reason(&mut b);
            w(&mut b).text("target_id");
            payload::write_hash(&mut b, &good.target_id);
            b
        };
        assert!(matches!(
            perr(&with_reason(&mut |b| w(b).text(""))),
            PayloadError::Invalid {
                field: "reason",
                ..
            }
        ));
        assert_eq!(
            perr(&with_reason(&mut |b| w(b).text(&"r".repeat(256)))),
            PayloadError::TooLong {
                field: "reason",
                len: 256,
                max: MAX_REASON_LEN
            }
        );
        assert!(matches!(
            perr(&with_reason(&mut |b| w(b).uint(1))),
            PayloadError::WrongType {
                field: "reason",
                ..
            }
        ));
        let bad_hash = {
            let mut b = vec![0xa2];
            w(&mut b).text("reason");
            w(&mut b).text("expired");
            w(&mut b).text("target_id");
            w(&mut b).bytes(&[1, 2, 3]);
            b
        };
        assert!(matches!(
            perr(&bad_hash),
            PayloadError::BadDigest {
                field: "target_id",
                ..
            }
        ));
        let mut trailing = good.to_cbor();
        trailing.push(0);
        assert_eq!(perr(&trailing), PayloadError::TrailingBytes { extra: 1 });
        // JSON is not a revocation encoding: `{` reads as a CBOR text head.
        assert!(matches!(
            perr(b"{\"target_id\":1}"),
            PayloadError::Cbor {
                offset: 0,
                source: crate::wire::CborError::LengthExceedsInput { .. }
            }
        ));
        assert!(matches!(
            perr(&[0x80]),
            PayloadError::WrongType {
                field: "payload",
                ..
            }
        ));
    }

    #[test]
    fn signed_revocation_removes_its_target() {
        let k = key(1);
        let t = target(&k);
        let r = Revocation::new(t.id, RevocationReason::Withdrawn);
        let d = r.sign(&t, &k, T1, 0).unwrap();
        assert_eq!(d.schema_hash, CORE_REVOCATION.hash());
        assert_eq!(d.publisher, t.publisher);
        assert_eq!(d.routing_keys, t.routing_keys);
        assert_eq!(d.ttl, t.ttl);
        assert_eq!(d.topic, t.id.to_hex());
        let valid = d.validate(T1).unwrap();
        assert_eq!(Revocation::check_removal(&valid, &t).unwrap(), r);
        assert_eq!(Revocation::from_descriptor(&valid).unwrap(), r);
    }

    #[test]
    fn only_the_publisher_may_revoke_and_only_its_target() {
        let (k1, k2) = (key(1), key(2));
        let t = target(&k1);
        let other = target(&k2);
        let r = Revocation::new(t.id, RevocationReason::Compromised);
        assert_eq!(
            r.sign(&t, &k2, T1, 0),
            Err(RevocationError::NotPublisher {
                publisher: k1.identity(),
                revoker: k2.identity()
            })
        );
        assert_eq!(
            r.sign(&other, &k2, T1, 0),
            Err(RevocationError::TargetMismatch {
                named: Box::new(t.id),
                target: Box::new(other.id)
            })
        );
        // A revocation by someone else, checked against the target.
        let forged = r
            .descriptor_builder(&t, T1)
            .sign(&k2)
            .unwrap()
            .validate(T1)
            .unwrap();
        assert_eq!(
            Revocation::check_removal(&forged, &t),
            Err(RevocationError::NotPublisher {
                publisher: k1.identity(),
                revoker: k2.identity()
            })
        );
        // A genuine revocation does not remove another descriptor.
        let t_b = Capability::new(TypePath::new("b").unwrap(), Endpoint::text("e"))
            .sign(&k1, T0, 1)
            .unwrap();
        let genuine = r.sign(&t, &k1, T1, 0).unwrap().validate(T1).unwrap();
        assert_eq!(
            Revocation::check_removal(&genuine, &t_b),
            Err(RevocationError::TargetMismatch {
                named: Box::new(t.id),
                target: Box::new(t_b.id)
            })
        );
        // A capability is not a revocation.
        let cap = t.clone().validate(T1).unwrap();
        assert_eq!(
            Revocation::check_removal(&cap, &t),
            Err(RevocationError::WrongSchema {
                found: CORE_CAPABILITY.hash()
            })
        );
        // An invalid target (TTL out of range) gives an invalid revocation.
        let mut bad = t.clone();
        bad.ttl = 10;
        let r_bad = Revocation::new(bad.id, RevocationReason::Expired);
        assert!(matches!(
            r_bad.sign(&bad, &k1, T1, 0),
            Err(RevocationError::Descriptor(
                ValidationError::TtlOutOfRange { .. }
            ))
        ));
    }

    fn hash() -> impl Strategy<Value = Hash> {
        prop_oneof![
            any::<[u8; 32]>().prop_map(Hash::from_blake3_digest),
            any::<Vec<u8>>().prop_map(|b| Hash::sha256(&b)),
            (0x05u8..=0xff, prop::collection::vec(any::<u8>(), 0..=32))
                .prop_map(|(a, d)| Hash::new(HashAlgorithm::Other(a), &d).unwrap()),
        ]
    }

    fn reason() -> impl Strategy<Value = RevocationReason> {
        "[a-z -]{1,40}".prop_map(|s| RevocationReason::parse(&s))
    }

    proptest! {
        #[test]
        fn round_trip(target_id in hash(), reason in reason(), successor in prop::option::of(hash())) {
            let r = Revocation { target_id, reason, successor };
            prop_assert_eq!(Revocation::decode(&r.to_cbor()).unwrap(), r);
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Revocation::decode(&bytes);
        }
    }
}
