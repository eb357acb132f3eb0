//! Who signs: Ed25519 identities, key pairs and signatures.

use std::fmt;

use ed25519_dalek::{Signer as _, Verifier as _};

use crate::node_id::NodeId;

/// An identity on the mesh: an Ed25519 public key (algorithm 0x01).
///
/// The registry reserves 0x02 and 0x06 and names no other signature
/// algorithm, so this type holds exactly the 32 key bytes; the codec refuses
/// any other algorithm byte with a typed error instead of carrying an
/// identity nothing could verify.
///
/// Ordered by the key bytes, as a derived `Ord` would (compared inline,
/// eight bytes at a time: identities key the store's and the rate
/// limiter's indexes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity([u8; 32]);

impl PartialOrd for Identity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Identity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        crate::hash::cmp_bytes32(&self.0, &other.0)
    }
}

impl Identity {
    /// The registry byte of Ed25519.
    pub const ED25519: u8 = 0x01;

    /// An identity from its 32-byte Ed25519 public key.
    pub const fn from_ed25519_bytes(public_key: [u8; 32]) -> Self {
        Identity(public_key)
    }

    /// The algorithm byte (always Ed25519).
    pub const fn algorithm(&self) -> u8 {
        Self::ED25519
    }

    /// The raw public key bytes.
    pub const fn public_key(&self) -> &[u8; 32] {
        &self.0
    }

    /// The DHT node id: BLAKE3 of the raw public key.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_bytes(*blake3::hash(&self.0).as_bytes())
    }

    /// Checks `signature` over `message`, with the same (non-strict)
    /// verification equation as the reference implementation so both accept
    /// the same descriptors.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        match ed25519_dalek::VerifyingKey::from_bytes(&self.0) {
            Ok(key) => key
                .verify(message, &ed25519_dalek::Signature::from_bytes(&signature.0))
                .is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.did())
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.did())
    }
}

/// A 64-byte Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Wraps the 64 raw bytes.
    pub const fn from_bytes(bytes: [u8; 64]) -> Self {
        Signature(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// An Ed25519 signing key. Debug output never shows the secret.
#[derive(Clone)]
pub struct Keypair {
    signing: ed25519_dalek::SigningKey,
}

impl Keypair {
    /// The key pair for a 32-byte secret (the seed, as RFC 8032 names it).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Keypair {
            signing: ed25519_dalek::SigningKey::from_bytes(secret),
        }
    }

    /// The 32-byte secret, to store the key.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public identity.
    pub fn identity(&self) -> Identity {
        Identity(self.signing.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.identity().did())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let k = Keypair::from_secret_bytes(&[3; 32]);
        let sig = k.sign(b"msg");
        assert!(k.identity().verify(b"msg", &sig));
        assert!(!k.identity().verify(b"msh", &sig));
        let other = Keypair::from_secret_bytes(&[4; 32]).identity();
        assert!(!other.verify(b"msg", &sig));
    }

    #[test]
    fn debug_hides_secret() {
        let k = Keypair::from_secret_bytes(&[0xAB; 32]);
        assert!(!format!("{k:?}").contains("abab"));
    }
}
