//! Positions in the 256-bit Kademlia key space.

use std::fmt;

use crate::hash::{Hash, HashAlgorithm};

/// A 256-bit position in the DHT key space: a node's id is BLAKE3 of its
/// public key; a key's position is its 32-byte digest (WIRE.md, "Primitives").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId([u8; 32]);

impl NodeId {
    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        NodeId(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key-space position of a routing key or lookup target. Only 32-byte
    /// digests (BLAKE3, SHA-256) name a position; others have none.
    pub fn from_key(key: &Hash) -> Option<Self> {
        match key.algorithm() {
            HashAlgorithm::Blake3 | HashAlgorithm::Sha256 => key.digest32().map(NodeId),
            HashAlgorithm::Other(_) => None,
        }
    }

    /// XOR distance to `other`, itself a 256-bit big-endian number.
    pub fn distance(&self, other: &NodeId) -> NodeId {
        let mut d = [0u8; 32];
        for (i, out) in d.iter_mut().enumerate() {
            *out = self.0[i] ^ other.0[i];
        }
        NodeId(d)
    }

    /// Number of leading zero bits (256 for the zero id).
    pub fn leading_zeros(&self) -> u32 {
        let mut n = 0;
        for b in self.0 {
            if b == 0 {
                n += 8;
            } else {
                return n + b.leading_zeros();
            }
        }
        n
    }

    /// The k-bucket index of `other` as seen from `self`: 255 minus the
    /// length of the common prefix, so the farthest half of the space is
    /// bucket 255 and the nearest single id is bucket 0. `None` for self.
    pub fn bucket_index(&self, other: &NodeId) -> Option<usize> {
        let lz = self.distance(other).leading_zeros();
        if lz >= 256 {
            None
        } else {
            Some(255 - lz as usize)
        }
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_index_by_common_prefix() {
        let a = NodeId::from_bytes([0; 32]);
        let mut b = [0u8; 32];
        b[0] = 0x80;
        assert_eq!(a.bucket_index(&NodeId::from_bytes(b)), Some(255));
        let mut c = [0u8; 32];
        c[31] = 1;
        assert_eq!(a.bucket_index(&NodeId::from_bytes(c)), Some(0));
        assert_eq!(a.bucket_index(&a), None);
    }

    #[test]
    fn distance_is_symmetric_xor() {
        let a = NodeId::from_bytes([0xf0; 32]);
        let b = NodeId::from_bytes([0x0f; 32]);
        assert_eq!(a.distance(&b), NodeId::from_bytes([0xff; 32]));
        assert_eq!(a.distance(&b), b.distance(&a));
        assert_eq!(a.distance(&a).leading_zeros(), 256);
    }
}
