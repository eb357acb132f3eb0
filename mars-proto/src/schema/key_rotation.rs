//! The `core/key-rotation` payload: moves an identity to a new key, with
//! proof from both keys (PROTOCOL.md §7.1).
//!
//! ```text
//! key-rotation = {
//!   old_identity:  Identity,  ; old public key
//!   new_identity:  Identity,  ; new public key
//!   rotation_seq:  uint,      ; strictly increasing per old identity, from 1
//!   effective:     uint,      ; when the rotation takes effect (µs)
//!   old_signature: bstr,      ; signature of new_identity by the old key
//!   new_signature: bstr       ; signature of old_identity by the new key
//! }
//! ```
//!
//! The descriptor carrying it must be signed by the OLD key, and both
//! cross-signatures must verify ([`KeyRotation::verify`]). Nodes keep the
//! highest `rotation_seq` accepted per old identity, refuse anything not
//! above it, and treat two rotations with the same `rotation_seq` but
//! different new identities as a fork: the identity is compromised.
//!
//! **The signed bytes.** The spec says "signature of new_identity" without
//! spelling out the bytes, and the reference implementation does not
//! implement rotation. We sign what §1.4 says every signature covers, the
//! canonical CBOR of the value, with an Identity in the canonical form of
//! Appendix C.2 (the form a descriptor's `publisher` takes in its id):
//! `[uint algorithm, bstr public_key]`, i.e. the 36 bytes
//! `82 01 58 20 ‖ public key` ([`cross_signed_bytes`]). These can never be
//! mistaken for a descriptor signature, which covers a 32-byte digest.
//! The cross-signatures bind only the two keys, not `rotation_seq` or
//! `effective`; those are covered by the old key's signature of the
//! descriptor.
//!
//! Identities are written as message bodies carry them, `{algorithm,
//! public_key}`; reading also accepts `[algorithm, public_key]` and, from
//! the earlier draft where they were `bstr`, a bare 32-byte Ed25519 key.

use super::CORE_KEY_ROTATION;
use super::payload::{self, Fields, PayloadError, w};
use crate::descriptor::{Descriptor, DescriptorBuilder, ValidationError};
use crate::hash::Hash;
use crate::identity::{Identity, Keypair, Signature};
use crate::time::Timestamp;

/// Length of [`cross_signed_bytes`]: a 2-element array head, the algorithm,
/// a byte-string head with a one-byte length, and the 32-byte key.
pub const CROSS_SIGNED_LEN: usize = 36;

/// The bytes one key signs to vouch for the other: the canonical CBOR of
/// `identity`, `[1, h'<public key>']` (see the module docs for why).
pub fn cross_signed_bytes(identity: &Identity) -> [u8; CROSS_SIGNED_LEN] {
    let mut b = [0u8; CROSS_SIGNED_LEN];
    b[0] = 0x82; // array(2)
    b[1] = identity.algorithm(); // uint algorithm (0x01 < 24: one byte)
    b[2] = 0x58; // bstr, one-byte length
    b[3] = 32;
    b[4..].copy_from_slice(identity.public_key());
    b
}

/// A decoded or to-be-published `core/key-rotation` payload.
///
/// ```
/// use mars_proto::schema::KeyRotation;
/// use mars_proto::{Keypair, Timestamp};
///
/// let old = Keypair::from_secret_bytes(&[1; 32]);
/// let new = Keypair::from_secret_bytes(&[2; 32]);
/// let now = Timestamp::from_secs(1_700_000_000);
/// let rotation = KeyRotation::new(&old, &new, 1, now);
/// assert!(rotation.verify().is_ok());
/// let descriptor = rotation.sign(&old, now).unwrap();
/// assert_eq!(KeyRotation::from_descriptor(&descriptor).unwrap(), rotation);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRotation {
    /// The identity being retired.
    pub old_identity: Identity,
    /// The identity taking over.
    pub new_identity: Identity,
    /// Strictly increasing per old identity, starting at 1.
    pub rotation_seq: u64,
    /// When the rotation takes effect.
    pub effective: Timestamp,
    /// The old key's signature of [`cross_signed_bytes`]`(new_identity)`.
    pub old_signature: Signature,
    /// The new key's signature of [`cross_signed_bytes`]`(old_identity)`.
    pub new_signature: Signature,
}

/// Why a key rotation is not acceptable. Each cross-signature failure is its
/// own variant, so a log says which key did not vouch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRotationError {
    /// The bytes break an encoding or field rule (the error names which).
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The descriptor is of another schema.
    #[error("descriptor schema {found} is not core/key-rotation")]
    WrongSchema {
        /// The descriptor's schema hash.
        found: Hash,
    },
    /// Rotating a key to itself proves nothing and would loop.
    #[error("old_identity and new_identity are the same ({identity})")]
    SameIdentity {
        /// The identity named twice.
        identity: Identity,
    },
    /// `rotation_seq` starts at 1, so that "none seen yet" (0) is below
    /// every real rotation.
    #[error("rotation_seq is 0; it starts at 1")]
    ZeroRotationSeq,
    /// `old_signature` is not the old key's signature of the new identity.
    #[error(
        "old_signature: the old key {old_identity} did not sign the new identity {new_identity}"
    )]
    OldSignatureInvalid {
        /// The old identity.
        old_identity: Identity,
        /// The new identity.
        new_identity: Identity,
    },
    /// `new_signature` is not the new key's signature of the old identity.
    #[error(
        "new_signature: the new key {new_identity} did not sign the old identity {old_identity}"
    )]
    NewSignatureInvalid {
        /// The old identity.
        old_identity: Identity,
        /// The new identity.
        new_identity: Identity,
    },
    /// Neither cross-signature verifies.
    #[error(
        "old_signature and new_signature: neither key signed the other ({old_identity} → {new_identity})"
    )]
    BothSignaturesInvalid {
        /// The old identity.
        old_identity: Identity,
        /// The new identity.
        new_identity: Identity,
    },
    /// The descriptor must be signed by the OLD key (§7.1).
    #[error("the rotation descriptor is signed by {publisher}, not by the old key {old_identity}")]
    PublisherNotOldIdentity {
        /// Who signed (or would sign) the descriptor.
        publisher: Identity,
        /// The old identity of the rotation.
        old_identity: Identity,
    },
    /// The rotation descriptor breaks a static rule.
    #[error("key-rotation descriptor: {0}")]
    Descriptor(#[from] ValidationError),
}

impl KeyRotation {
    /// A rotation from `old` to `new`, cross-signed by both.
    pub fn new(old: &Keypair, new: &Keypair, rotation_seq: u64, effective: Timestamp) -> Self {
        let old_identity = old.identity();
        let new_identity = new.identity();
        KeyRotation {
            old_identity,
            new_identity,
            rotation_seq,
            effective,
            old_signature: old.sign(&cross_signed_bytes(&new_identity)),
            new_signature: new.sign(&cross_signed_bytes(&old_identity)),
        }
    }

    /// Checks the payload's own rules: two distinct identities, a
    /// `rotation_seq` of at least 1, and both cross-signatures. (Whether
    /// `rotation_seq` is above the last one accepted is the node's call.)
    pub fn verify(&self) -> Result<(), KeyRotationError> {
        let (old_identity, new_identity) = (self.old_identity, self.new_identity);
        if old_identity == new_identity {
            return Err(KeyRotationError::SameIdentity {
                identity: old_identity,
            });
        }
        if self.rotation_seq == 0 {
            return Err(KeyRotationError::ZeroRotationSeq);
        }
        let old_ok = old_identity.verify(&cross_signed_bytes(&new_identity), &self.old_signature);
        let new_ok = new_identity.verify(&cross_signed_bytes(&old_identity), &self.new_signature);
        match (old_ok, new_ok) {
            (true, true) => Ok(()),
            (false, true) => Err(KeyRotationError::OldSignatureInvalid {
                old_identity,
                new_identity,
            }),
            (true, false) => Err(KeyRotationError::NewSignatureInvalid {
                old_identity,
                new_identity,
            }),
            (false, false) => Err(KeyRotationError::BothSignaturesInvalid {
                old_identity,
                new_identity,
            }),
        }
    }

    /// The payload in CBOR (keys in bytewise order).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(300);
        let mut wr = w(&mut out);
        wr.map(6);
        wr.key("effective");
        wr.uint(self.effective.as_micros());
        wr.key("new_identity");
        payload::write_identity(&mut out, &self.new_identity);
        let mut wr = w(&mut out);
        wr.key("new_signature");
        wr.bytes(self.new_signature.as_bytes());
        wr.key("old_identity");
        payload::write_identity(&mut out, &self.old_identity);
        let mut wr = w(&mut out);
        wr.key("old_signature");
        wr.bytes(self.old_signature.as_bytes());
        wr.key("rotation_seq");
        wr.uint(self.rotation_seq);
        out
    }

    /// Decodes a CBOR payload (strict, bounded; unknown keys ignored). Does
    /// not check the signatures: call [`KeyRotation::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, KeyRotationError> {
        let tree = payload::parse_cbor(bytes)?;
        let f = Fields::of(&tree, "payload")?;
        Ok(KeyRotation {
            old_identity: payload::identity(
                f.req("old_identity", "old_identity")?,
                "old_identity",
            )?,
            new_identity: payload::identity(
                f.req("new_identity", "new_identity")?,
                "new_identity",
            )?,
            rotation_seq: payload::uint(f.req("rotation_seq", "rotation_seq")?, "rotation_seq")?,
            effective: Timestamp::from_micros(payload::uint(
                f.req("effective", "effective")?,
                "effective",
            )?),
            old_signature: payload::signature(
                f.req("old_signature", "old_signature")?,
                "old_signature",
            )?,
            new_signature: payload::signature(
                f.req("new_signature", "new_signature")?,
                "new_signature",
            )?,
        })
    }

    /// Decodes and checks the payload of a `core/key-rotation` descriptor:
    /// the schema, that the OLD key published it, and [`KeyRotation::verify`].
    /// (The descriptor's own id and signature are checked by validating it.)
    pub fn from_descriptor(descriptor: &Descriptor) -> Result<Self, KeyRotationError> {
        if descriptor.schema_hash != CORE_KEY_ROTATION.hash() {
            return Err(KeyRotationError::WrongSchema {
                found: descriptor.schema_hash,
            });
        }
        let r = Self::decode(&descriptor.payload)?;
        if descriptor.publisher != r.old_identity {
            return Err(KeyRotationError::PublisherNotOldIdentity {
                publisher: descriptor.publisher,
                old_identity: r.old_identity,
            });
        }
        r.verify()?;
        Ok(r)
    }

    /// Where a rotation is stored: at the node id of each of its two
    /// identities, so that whoever knows either key finds the link. (The
    /// spec names no routing key for rotations; this is ours.)
    pub fn routing_keys(&self) -> Vec<Hash> {
        [self.old_identity, self.new_identity]
            .iter()
            .map(|id| Hash::from_blake3_digest(*id.node_id().as_bytes()))
            .collect()
    }

    /// A descriptor builder for this rotation at `timestamp`: schema
    /// `core/key-rotation`, the empty topic (§2: one active rotation per
    /// publisher), sequence = `rotation_seq`, [`KeyRotation::routing_keys`].
    pub fn descriptor_builder(&self, timestamp: Timestamp) -> DescriptorBuilder {
        DescriptorBuilder::new(CORE_KEY_ROTATION.hash(), timestamp)
            .topic("")
            .payload(self.to_cbor())
            .sequence(self.rotation_seq)
            .routing_keys(self.routing_keys())
    }

    /// The rotation descriptor, signed by the old key; refused if `old` is
    /// not the old identity or the rotation does not [`verify`](Self::verify).
    pub fn sign(
        &self,
        old: &Keypair,
        timestamp: Timestamp,
    ) -> Result<Descriptor, KeyRotationError> {
        if old.identity() != self.old_identity {
            return Err(KeyRotationError::PublisherNotOldIdentity {
                publisher: old.identity(),
                old_identity: self.old_identity,
            });
        }
        self.verify()?;
        Ok(self.descriptor_builder(timestamp).sign(old)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CORE_CAPABILITY;
    use proptest::prelude::*;

    fn key(n: u8) -> Keypair {
        Keypair::from_secret_bytes(&[n; 32])
    }

    const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

    #[test]
    fn cross_signed_bytes_are_the_canonical_identity() {
        let id = key(1).identity();
        let mut canonical = Vec::new();
        let mut wr = w(&mut canonical);
        wr.array(2);
        wr.uint(1);
        wr.bytes(id.public_key());
        assert_eq!(cross_signed_bytes(&id).as_slice(), canonical.as_slice());
        // The same bytes a descriptor's id hashes for its publisher.
        let d = crate::DescriptorBuilder::new(CORE_CAPABILITY.hash(), NOW)
            .routing_key(Hash::blake3(b"k"))
            .sign(&key(1))
            .unwrap();
        let c = d.canonical_cbor();
        assert!(
            c.windows(CROSS_SIGNED_LEN)
                .any(|win| win == cross_signed_bytes(&id))
        );
    }

    #[test]
    fn constructed_rotation_verifies_and_round_trips() {
        let r = KeyRotation::new(&key(1), &key(2), 1, NOW);
        r.verify().unwrap();
        assert_eq!(KeyRotation::decode(&r.to_cbor()).unwrap(), r);
        // Cross-signatures are over the other identity's canonical bytes.
        assert!(
            r.old_identity
                .verify(&cross_signed_bytes(&r.new_identity), &r.old_signature)
        );
        assert!(
            r.new_identity
                .verify(&cross_signed_bytes(&r.old_identity), &r.new_signature)
        );
    }

    #[test]
    fn each_cross_signature_failure_is_named() {
        let (k1, k2, k3) = (key(1), key(2), key(3));
        let good = KeyRotation::new(&k1, &k2, 5, NOW);
        let (old_identity, new_identity) = (k1.identity(), k2.identity());

        // Old key did not sign the new identity (signed someone else).
        let mut r = good.clone();
        r.old_signature = k1.sign(&cross_signed_bytes(&k3.identity()));
        assert_eq!(
            r.verify(),
            Err(KeyRotationError::OldSignatureInvalid {
                old_identity,
                new_identity
            })
        );
        // A third key signed in the old key's place.
        r.old_signature = k3.sign(&cross_signed_bytes(&new_identity));
        assert_eq!(
            r.verify(),
            Err(KeyRotationError::OldSignatureInvalid {
                old_identity,
                new_identity
            })
        );

        // New key did not sign the old identity.
        let mut r = good.clone();
        r.new_signature = k2.sign(b"something else");
        assert_eq!(
            r.verify(),
            Err(KeyRotationError::NewSignatureInvalid {
                old_identity,
                new_identity
            })
        );
        // The signatures swapped: each is by the wrong key.
        let mut r = good.clone();
        std::mem::swap(&mut r.old_signature, &mut r.new_signature);
        assert_eq!(
            r.verify(),
            Err(KeyRotationError::BothSignaturesInvalid {
                old_identity,
                new_identity
            })
        );

        // Replacing the new identity breaks both (neither signed the impostor).
        let mut r = good.clone();
        r.new_identity = k3.identity();
        assert_eq!(
            r.verify(),
            Err(KeyRotationError::BothSignaturesInvalid {
                old_identity,
                new_identity: k3.identity()
            })
        );

        let mut r = good.clone();
        r.rotation_seq = 0;
        assert_eq!(r.verify(), Err(KeyRotationError::ZeroRotationSeq));
        let same = KeyRotation::new(&k1, &k1, 1, NOW);
        assert_eq!(
            same.verify(),
            Err(KeyRotationError::SameIdentity {
                identity: old_identity
            })
        );
    }

    #[test]
    fn descriptor_is_signed_by_the_old_key() {
        let (k1, k2) = (key(1), key(2));
        let r = KeyRotation::new(&k1, &k2, 3, NOW);
        let d = r.sign(&k1, NOW).unwrap();
        let valid = d.clone().validate(NOW).unwrap();
        assert_eq!(valid.schema_hash, CORE_KEY_ROTATION.hash());
        assert_eq!(valid.publisher, k1.identity());
        assert_eq!(valid.topic, "");
        assert_eq!(valid.sequence, 3);
        assert_eq!(
            valid.routing_keys,
            [
                Hash::from_blake3_digest(*k1.identity().node_id().as_bytes()),
                Hash::from_blake3_digest(*k2.identity().node_id().as_bytes()),
            ]
        );
        assert_eq!(KeyRotation::from_descriptor(&valid).unwrap(), r);

        // Signing with the new key (or any other) is refused …
        assert_eq!(
            r.sign(&k2, NOW),
            Err(KeyRotationError::PublisherNotOldIdentity {
                publisher: k2.identity(),
                old_identity: k1.identity()
            })
        );
        // … and so is reading a rotation someone else published.
        let by_new = r.descriptor_builder(NOW).sign(&k2).unwrap();
        assert_eq!(
            KeyRotation::from_descriptor(&by_new),
            Err(KeyRotationError::PublisherNotOldIdentity {
                publisher: k2.identity(),
                old_identity: k1.identity()
            })
        );
        // A rotation whose cross-signature is broken is refused on both sides.
        let mut broken = r.clone();
        broken.new_signature = Signature::from_bytes([0; 64]);
        assert!(matches!(
            broken.sign(&k1, NOW),
            Err(KeyRotationError::NewSignatureInvalid { .. })
        ));
        let forged = broken.descriptor_builder(NOW).sign(&k1).unwrap();
        assert!(matches!(
            KeyRotation::from_descriptor(&forged),
            Err(KeyRotationError::NewSignatureInvalid { .. })
        ));
        // Wrong schema.
        let mut other = d;
        other.schema_hash = CORE_CAPABILITY.hash();
        assert_eq!(
            KeyRotation::from_descriptor(&other),
            Err(KeyRotationError::WrongSchema {
                found: CORE_CAPABILITY.hash()
            })
        );
    }

    fn with_field(r: &KeyRotation, name: &str, value: &mut dyn FnMut(&mut Vec<u8>)) -> Vec<u8> {
        // The payload with `name` replaced (or, for an unknown name, added).
        let mut out = Vec::new();
        let fields = [
            "effective",
            "new_identity",
            "new_signature",
            "old_identity",
            "old_signature",
            "rotation_seq",
        ];
        let extra = !fields.contains(&name);
        w(&mut out).map(6 + extra as usize);
        for f in fields {
            w(&mut out).text(f);
            if f == name {
                value(&mut out);
                continue;
            }
            match f {
                "effective" => w(&mut out).uint(r.effective.as_micros()),
                "new_identity" => payload::write_identity(&mut out, &r.new_identity),
                "new_signature" => w(&mut out).bytes(r.new_signature.as_bytes()),
                "old_identity" => payload::write_identity(&mut out, &r.old_identity),
                "old_signature" => w(&mut out).bytes(r.old_signature.as_bytes()),
                _ => w(&mut out).uint(r.rotation_seq),
            }
        }
        if extra {
            w(&mut out).text(name);
            value(&mut out);
        }
        out
    }

    fn perr(b: &[u8]) -> PayloadError {
        match KeyRotation::decode(b) {
            Err(KeyRotationError::Payload(p)) => p,
            other => panic!("expected a payload error, got {other:?}"),
        }
    }

    #[test]
    fn payload_errors_name_the_field() {
        let r = KeyRotation::new(&key(1), &key(2), 1, NOW);
        // Unknown keys are ignored; the canonical and bare identity forms read.
        let ok = with_field(&r, "zz_future", &mut |b| w(b).text("x"));
        assert_eq!(KeyRotation::decode(&ok).unwrap(), r);
        let arr = with_field(&r, "old_identity", &mut |b| {
            b.extend_from_slice(&cross_signed_bytes(&r.old_identity));
        });
        assert_eq!(KeyRotation::decode(&arr).unwrap(), r);
        let bare = with_field(&r, "new_identity", &mut |b| {
            w(b).bytes(r.new_identity.public_key())
        });
        assert_eq!(KeyRotation::decode(&bare).unwrap(), r);
        // A signature as the reference's integer array.
        let ints = with_field(&r, "new_signature", &mut |b| {
            w(b).array(64);
            for x in r.new_signature.as_bytes() {
                w(b).uint(*x as u64);
            }
        });
        assert_eq!(KeyRotation::decode(&ints).unwrap(), r);

        assert_eq!(
            perr(&with_field(&r, "old_signature", &mut |b| w(b).bytes(&[0; 63]))),
            PayloadError::WrongLength {
                field: "old_signature",
                expected: 64,
                found: 63
            }
        );
        assert_eq!(
            perr(&with_field(&r, "new_signature", &mut |b| {
                w(b).array(1);
                w(b).uint(256);
            })),
            PayloadError::OutOfRange {
                field: "new_signature",
                value: 256,
                min: 0,
                max: 255
            }
        );
        assert!(matches!(
            perr(&with_field(&r, "rotation_seq", &mut |b| w(b).text("1"))),
            PayloadError::WrongType {
                field: "rotation_seq",
                ..
            }
        ));
        assert!(matches!(
            perr(&with_field(&r, "effective", &mut |b| b.push(0x20))),
            PayloadError::WrongType {
                field: "effective",
                ..
            }
        ));
        assert_eq!(
            perr(&with_field(&r, "old_identity", &mut |b| {
                w(b).array(2);
                w(b).uint(2);
                w(b).bytes(&[0; 32]);
            })),
            PayloadError::UnsupportedIdentity {
                field: "old_identity",
                algorithm: 2
            }
        );
        assert_eq!(
            perr(&with_field(&r, "new_identity", &mut |b| w(b).bytes(&[0; 31]))),
            PayloadError::WrongLength {
                field: "new_identity",
                expected: 32,
                found: 31
            }
        );
        assert_eq!(
            perr(&with_field(&r, "new_signature", &mut |b| b.push(0xf6))),
            PayloadError::MissingField {
                field: "new_signature"
            }
        );
    }

    proptest! {
        // Ed25519 is slow in unoptimised test builds: fewer cases, each
        // with fresh keys and four signature operations.
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn round_trip(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), seq in any::<u64>(), t in any::<u64>()) {
            let r = KeyRotation::new(&Keypair::from_secret_bytes(&a), &Keypair::from_secret_bytes(&b), seq, Timestamp::from_micros(t));
            let decoded = KeyRotation::decode(&r.to_cbor()).unwrap();
            prop_assert_eq!(&decoded, &r);
            if a != b && seq > 0 {
                prop_assert!(decoded.verify().is_ok());
            }
        }

        #[test]
        fn any_flipped_signature_bit_is_caught(bit in 0usize..512, which_old in any::<bool>()) {
            let mut r = KeyRotation::new(&key(1), &key(2), 1, NOW);
            let sig = if which_old { &mut r.old_signature } else { &mut r.new_signature };
            let mut bytes = *sig.as_bytes();
            bytes[bit / 8] ^= 1 << (bit % 8);
            *sig = Signature::from_bytes(bytes);
            let err = r.verify().unwrap_err();
            if which_old {
                prop_assert!(matches!(err, KeyRotationError::OldSignatureInvalid { .. }), "{err:?}");
            } else {
                prop_assert!(matches!(err, KeyRotationError::NewSignatureInvalid { .. }), "{err:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = KeyRotation::decode(&bytes);
        }
    }
}
