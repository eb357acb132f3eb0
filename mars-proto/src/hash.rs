//! Self-describing hashes: an algorithm byte plus the digest.

use std::fmt;

/// Longest digest we carry. Every algorithm in the registry (BLAKE3,
/// SHA-256) has 32-byte digests; an unknown algorithm's digest is carried
/// (not computed) up to the same bound. Keeping hashes at 34 bytes inline
/// makes them `Copy` and keeps messages, stores and simulations small.
pub const MAX_DIGEST_LEN: usize = 32;

/// A hash algorithm from the MARS algorithm registry (WIRE.md, "Primitives").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashAlgorithm {
    /// 0x03, the canonical algorithm: every id, key and schema hash uses it.
    Blake3,
    /// 0x04, accepted for interop.
    Sha256,
    /// Any other registry value: carried and compared, never computed.
    Other(u8),
}

impl HashAlgorithm {
    /// The registry byte.
    pub const fn code(self) -> u8 {
        match self {
            HashAlgorithm::Blake3 => 0x03,
            HashAlgorithm::Sha256 => 0x04,
            HashAlgorithm::Other(c) => c,
        }
    }

    /// The algorithm for a registry byte.
    pub const fn from_code(code: u8) -> Self {
        match code {
            0x03 => HashAlgorithm::Blake3,
            0x04 => HashAlgorithm::Sha256,
            c => HashAlgorithm::Other(c),
        }
    }

    /// The digest length this algorithm always produces, if it is known.
    pub const fn digest_len(self) -> Option<usize> {
        match self {
            HashAlgorithm::Blake3 | HashAlgorithm::Sha256 => Some(32),
            HashAlgorithm::Other(_) => None,
        }
    }
}

/// A hash value: algorithm plus digest (WIRE.md, "Primitives").
///
/// Stored inline (no heap) so that hashes are `Copy` and cheap to compare;
/// the invariant is that a known algorithm always carries a digest of its
/// length and that bytes past `len` are zero.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash {
    algorithm: u8,
    len: u8,
    bytes: [u8; MAX_DIGEST_LEN],
}

/// Why raw parts do not form a [`Hash`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// A known algorithm with a digest of the wrong length.
    #[error("a {algorithm:?} digest is {expected} bytes, found {found}")]
    WrongLength {
        /// The algorithm named.
        algorithm: HashAlgorithm,
        /// Its digest length.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// A digest longer than any we carry.
    #[error("digest of {found} bytes is longer than the {max}-byte limit")]
    TooLong {
        /// The length given.
        found: usize,
        /// [`MAX_DIGEST_LEN`].
        max: usize,
    },
}

impl Hash {
    /// BLAKE3 of `data`: the protocol's canonical hash.
    pub fn blake3(data: &[u8]) -> Self {
        Self::from_blake3_digest(*blake3::hash(data).as_bytes())
    }

    /// SHA-256 of `data`.
    pub fn sha256(data: &[u8]) -> Self {
        use sha2::Digest as _;
        let d: [u8; 32] = sha2::Sha256::digest(data).into();
        Self::from_fixed(HashAlgorithm::Sha256, d)
    }

    /// A BLAKE3 hash from its 32-byte digest.
    pub const fn from_blake3_digest(digest: [u8; 32]) -> Self {
        Self::from_fixed(HashAlgorithm::Blake3, digest)
    }

    const fn from_fixed(algorithm: HashAlgorithm, digest: [u8; 32]) -> Self {
        let mut bytes = [0u8; MAX_DIGEST_LEN];
        let mut i = 0;
        while i < 32 {
            bytes[i] = digest[i];
            i += 1;
        }
        Hash {
            algorithm: algorithm.code(),
            len: 32,
            bytes,
        }
    }

    /// A hash from its parts, checking the digest length.
    pub fn new(algorithm: HashAlgorithm, digest: &[u8]) -> Result<Self, HashError> {
        // `Other(3)` is BLAKE3 by another name: hold it to BLAKE3's rules.
        let algorithm = HashAlgorithm::from_code(algorithm.code());
        if let Some(expected) = algorithm.digest_len() {
            if digest.len() != expected {
                return Err(HashError::WrongLength {
                    algorithm,
                    expected,
                    found: digest.len(),
                });
            }
        }
        if digest.len() > MAX_DIGEST_LEN {
            return Err(HashError::TooLong {
                found: digest.len(),
                max: MAX_DIGEST_LEN,
            });
        }
        let mut bytes = [0u8; MAX_DIGEST_LEN];
        bytes[..digest.len()].copy_from_slice(digest);
        Ok(Hash {
            algorithm: algorithm.code(),
            len: digest.len() as u8,
            bytes,
        })
    }

    /// The algorithm.
    pub const fn algorithm(&self) -> HashAlgorithm {
        HashAlgorithm::from_code(self.algorithm)
    }

    /// The digest bytes.
    pub fn digest(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The digest as 32 bytes, when it is 32 bytes long (BLAKE3, SHA-256).
    pub fn digest32(&self) -> Option<[u8; 32]> {
        self.digest().try_into().ok()
    }

    /// Lower-case hex of the digest.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(self.len as usize * 2);
        for b in self.digest() {
            use fmt::Write as _;
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({:?}, {})", self.algorithm(), self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02x}:{}", self.algorithm, self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_algorithms_demand_their_length() {
        assert!(Hash::new(HashAlgorithm::Blake3, &[0; 31]).is_err());
        assert!(Hash::new(HashAlgorithm::Sha256, &[0; 33]).is_err());
        assert!(Hash::new(HashAlgorithm::Other(9), &[0; 32]).is_ok());
        assert!(Hash::new(HashAlgorithm::Other(9), &[0; 5]).is_ok());
        assert!(Hash::new(HashAlgorithm::Other(9), &[0; 33]).is_err());
        assert!(Hash::new(HashAlgorithm::Other(3), &[0; 5]).is_err());
        assert_eq!(
            Hash::new(HashAlgorithm::Other(3), &[7; 32]).unwrap(),
            Hash::from_blake3_digest([7; 32])
        );
    }

    #[test]
    fn sha256_is_computed() {
        let h = Hash::sha256(b"abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.algorithm(), HashAlgorithm::Sha256);
    }

    #[test]
    fn equality_ignores_nothing_but_padding() {
        let a = Hash::new(HashAlgorithm::Other(7), &[1, 2]).unwrap();
        let b = Hash::new(HashAlgorithm::Other(7), &[1, 2]).unwrap();
        let c = Hash::new(HashAlgorithm::Other(8), &[1, 2]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
