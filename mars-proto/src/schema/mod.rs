//! Schemas and routing keys (WIRE.md, "Primitives").
//!
//! A schema is named by `BLAKE3("mesh:schema:" ‖ name)`; a capability type
//! path is stored under `BLAKE3("mesh:route:" ‖ path)` for the path and for
//! every prefix of it, so `compute` finds what `compute/inference/…` offers.

use std::sync::OnceLock;

use crate::hash::Hash;

pub mod capability;
pub mod key_rotation;
mod payload;
pub mod revocation;

pub use capability::{Capability, CapabilityError, Endpoint, TypePath, TypePathError};
pub use key_rotation::{KeyRotation, KeyRotationError};
pub use payload::{MAX_PAYLOAD_DEPTH, PayloadError};
pub use revocation::{Revocation, RevocationError, RevocationReason};

/// A schema the protocol names, with its hash computed once.
#[derive(Debug)]
pub struct WellKnownSchema {
    name: &'static str,
    hash: OnceLock<Hash>,
}

impl WellKnownSchema {
    const fn new(name: &'static str) -> Self {
        WellKnownSchema {
            name,
            hash: OnceLock::new(),
        }
    }

    /// The schema's name, e.g. `core/capability`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// `BLAKE3("mesh:schema:" ‖ name)`.
    pub fn hash(&self) -> Hash {
        *self.hash.get_or_init(|| schema_hash(self.name))
    }
}

/// `core/schema`: descriptors that describe schemas.
pub static CORE_SCHEMA: WellKnownSchema = WellKnownSchema::new("core/schema");
/// `core/capability`: "I can do X, reach me at Y".
pub static CORE_CAPABILITY: WellKnownSchema = WellKnownSchema::new("core/capability");
/// `core/discovery-query`.
pub static CORE_DISCOVERY_QUERY: WellKnownSchema = WellKnownSchema::new("core/discovery-query");
/// `core/resolve`.
pub static CORE_RESOLVE: WellKnownSchema = WellKnownSchema::new("core/resolve");
/// `core/revocation`: withdraws an earlier descriptor of the same publisher.
pub static CORE_REVOCATION: WellKnownSchema = WellKnownSchema::new("core/revocation");
/// `core/key-rotation`: moves an identity to a new key.
pub static CORE_KEY_ROTATION: WellKnownSchema = WellKnownSchema::new("core/key-rotation");
/// `infrastructure/hub`: a hub announcing itself.
pub static INFRASTRUCTURE_HUB: WellKnownSchema = WellKnownSchema::new("infrastructure/hub");
/// `infrastructure/relay`: a relay announcing itself.
pub static INFRASTRUCTURE_RELAY: WellKnownSchema = WellKnownSchema::new("infrastructure/relay");

/// The six core schemas of the spec's Appendix B, then the two
/// infrastructure schemas.
pub static WELL_KNOWN: [&WellKnownSchema; 8] = [
    &CORE_SCHEMA,
    &CORE_CAPABILITY,
    &CORE_DISCOVERY_QUERY,
    &CORE_RESOLVE,
    &CORE_REVOCATION,
    &CORE_KEY_ROTATION,
    &INFRASTRUCTURE_HUB,
    &INFRASTRUCTURE_RELAY,
];

/// `BLAKE3("mesh:schema:" ‖ name)`.
pub fn schema_hash(name: &str) -> Hash {
    prefixed(b"mesh:schema:", name)
}

/// `BLAKE3("mesh:route:" ‖ type_path)`: where descriptors of that type live.
pub fn routing_key(type_path: &str) -> Hash {
    prefixed(b"mesh:route:", type_path)
}

/// The routing key of every prefix of `type_path`, shortest first:
/// `a/b/c` gives the keys of `a`, `a/b` and `a/b/c`.
pub fn hierarchical_keys(type_path: &str) -> Vec<Hash> {
    let mut keys: Vec<Hash> = type_path
        .match_indices('/')
        .map(|(i, _)| routing_key(&type_path[..i]))
        .collect();
    keys.push(routing_key(type_path));
    keys
}

fn prefixed(prefix: &[u8], s: &str) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(prefix);
    h.update(s.as_bytes());
    Hash::from_blake3_digest(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchical_keys_are_prefixes() {
        let keys = hierarchical_keys("a/b/c");
        assert_eq!(
            keys,
            vec![routing_key("a"), routing_key("a/b"), routing_key("a/b/c")]
        );
        assert_eq!(hierarchical_keys("solo"), vec![routing_key("solo")]);
    }

    #[test]
    fn well_known_hashes_are_distinct() {
        for (i, a) in WELL_KNOWN.iter().enumerate() {
            for b in &WELL_KNOWN[i + 1..] {
                assert_ne!(a.hash(), b.hash());
            }
        }
    }
}
