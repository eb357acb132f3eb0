//! Self-describing hashes: an algorithm byte plus the digest.

use std::cmp::Ordering;
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
///
/// Ordered by (algorithm, length, digest bytes), as a derived `Ord` would;
/// the digest is compared eight bytes at a time.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hash {
    algorithm: u8,
    len: u8,
    bytes: [u8; MAX_DIGEST_LEN],
}

impl PartialOrd for Hash {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Hash {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.algorithm, self.len)
            .cmp(&(other.algorithm, other.len))
            .then_with(|| cmp_bytes32(&self.bytes, &other.bytes))
    }
}

/// Lexicographic order of two 32-byte strings, the order `[u8; 32]`'s own
/// `Ord` gives, computed as four big-endian `u64` comparisons inline
/// instead of a call to `memcmp`. Hashes and identities are the keys of
/// every store and table index, so this is on every B-tree step.
pub(crate) fn cmp_bytes32(a: &[u8; 32], b: &[u8; 32]) -> Ordering {
    let word = |s: &[u8; 32], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[i * 8..i * 8 + 8]);
        u64::from_be_bytes(w)
    };
    for i in 0..4 {
        match word(a, i).cmp(&word(b, i)) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
    }
    Ordering::Equal
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
    fn order_is_the_derived_order() {
        // Pairs that differ in one byte at every position, both ways, plus
        // equal ones and differing algorithms and lengths.
        let mut digests = vec![[0u8; 32], [0xff; 32]];
        for i in 0..32 {
            for v in [1u8, 0x7f, 0x80, 0xfe] {
                let mut d = [0x55u8; 32];
                d[i] = v;
                digests.push(d);
            }
        }
        for a in &digests {
            for b in &digests {
                assert_eq!(cmp_bytes32(a, b), a.cmp(b), "{a:?} {b:?}");
                let (ha, hb) = (Hash::from_blake3_digest(*a), Hash::from_blake3_digest(*b));
                assert_eq!(ha.cmp(&hb), a.cmp(b));
                assert_eq!(ha.partial_cmp(&hb), Some(a.cmp(b)));
                assert_eq!(ha == hb, a == b);
            }
        }
        let blake = Hash::from_blake3_digest([0xff; 32]);
        let sha = Hash::new(HashAlgorithm::Sha256, &[0; 32]).unwrap();
        assert!(blake < sha, "the algorithm byte orders first");
        let short = Hash::new(HashAlgorithm::Other(9), &[0xff; 4]).unwrap();
        let long = Hash::new(HashAlgorithm::Other(9), &[0; 5]).unwrap();
        assert!(short < long, "then the length");
    }

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
