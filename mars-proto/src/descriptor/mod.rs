//! Descriptors: the signed, content-addressed records the mesh stores
//! (WIRE.md, "Descriptor").

mod builder;
mod cache;
mod canonical;
pub mod limits;
mod validate;

pub use builder::DescriptorBuilder;
pub use cache::SignatureCache;
pub(crate) use validate::{SignatureCheck, precheck_signatures};
pub use validate::{
    ValidDescriptor, ValidationError, validate_batch, validate_batch_cached, validate_batch_with,
};

use crate::hash::Hash;
use crate::identity::{Identity, Signature};
use crate::time::Timestamp;

/// A descriptor as it travels: *not* known to be valid.
///
/// Anything decoded from the network arrives as a `Descriptor`; the only way
/// to a [`ValidDescriptor`] — the type stores and results hold — is
/// [`Descriptor::validate`] (or [`validate_batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Hash of the schema the payload follows.
    pub schema_hash: Hash,
    /// Publisher-chosen slot (UTF-8, ≤ 255 bytes once valid).
    pub topic: String,
    /// Opaque payload (≤ 65,536 bytes once valid).
    pub payload: Vec<u8>,
    /// Who signed it.
    pub publisher: Identity,
    /// When it was published.
    pub timestamp: Timestamp,
    /// Per (publisher, schema, topic) ordering; higher replaces lower.
    pub sequence: u64,
    /// Lifetime in seconds (60..=86,400 once valid).
    pub ttl: u32,
    /// Where in the DHT it is stored (1..=8 once valid).
    pub routing_keys: Vec<Hash>,
    /// BLAKE3 of the canonical CBOR of the eight fields above.
    pub id: Hash,
    /// Ed25519 signature of `id`'s 32 digest bytes.
    pub signature: Signature,
}

impl Descriptor {
    /// The canonical CBOR of the eight signed fields, exactly as hashed for
    /// the id (WIRE.md: a definite map, keys in RFC 8949 §4.2.1 order).
    pub fn canonical_cbor(&self) -> Vec<u8> {
        canonical::encode(self)
    }

    /// Recomputes the id from the eight signed fields.
    pub fn compute_id(&self) -> Hash {
        Hash::blake3(&self.canonical_cbor())
    }

    /// The replacement key: a newer sequence under the same
    /// (publisher, schema, topic) replaces the older descriptor.
    pub fn replacement_key(&self) -> (Identity, Hash, &str) {
        (self.publisher, self.schema_hash, &self.topic)
    }

    /// The descriptor in its wire form (a CBOR map, byte fields as byte strings).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.payload.len());
        crate::wire::descriptor_into(self, &mut out);
        out
    }
}
