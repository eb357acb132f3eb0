//! `did:mesh:` identifiers: how people and tools name an identity.

use crate::identity::Identity;

const PREFIX: &str = "did:mesh:";
/// Longest DID we try to decode: base58 of 33 bytes is at most 46 characters.
const MAX_DID_LEN: usize = 64;

/// Why a string is not a `did:mesh:` identifier we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidError {
    /// Does not start with `did:mesh:`.
    #[error("not a mesh DID: it must start with \"did:mesh:\"")]
    NotMeshDid,
    /// The multibase prefix is not `z` (base58btc).
    #[error("unsupported multibase prefix {found:?}: mesh DIDs use 'z' (base58btc)")]
    Multibase {
        /// The character found instead.
        found: Option<char>,
    },
    /// Longer than any valid DID.
    #[error("DID is {len} characters, longer than the {max} a mesh DID can have")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid base58btc.
    #[error("DID is not valid base58btc: {0}")]
    Base58(String),
    /// Decoded to the wrong number of bytes.
    #[error("DID decodes to {found} bytes; an Ed25519 DID holds 33 (algorithm byte + 32-byte key)")]
    Length {
        /// Bytes decoded.
        found: usize,
    },
    /// An algorithm other than Ed25519.
    #[error("DID names signature algorithm 0x{0:02x}; only Ed25519 (0x01) is in use")]
    Algorithm(u8),
}

impl Identity {
    /// `did:mesh:z` + base58btc(algorithm byte ‖ public key).
    pub fn did(&self) -> String {
        let mut raw = [0u8; 33];
        raw[0] = Identity::ED25519;
        raw[1..].copy_from_slice(self.public_key());
        let mut s = String::with_capacity(PREFIX.len() + 1 + 46);
        s.push_str(PREFIX);
        s.push('z');
        s.push_str(&bs58::encode(raw).into_string());
        s
    }

    /// Parses a `did:mesh:z…` string.
    pub fn from_did(did: &str) -> Result<Identity, DidError> {
        if did.len() > MAX_DID_LEN {
            return Err(DidError::TooLong {
                len: did.len(),
                max: MAX_DID_LEN,
            });
        }
        let rest = did.strip_prefix(PREFIX).ok_or(DidError::NotMeshDid)?;
        let encoded = match rest.strip_prefix('z') {
            Some(e) => e,
            None => {
                return Err(DidError::Multibase {
                    found: rest.chars().next(),
                });
            }
        };
        let mut raw = [0u8; 48];
        let n = bs58::decode(encoded)
            .onto(&mut raw[..])
            .map_err(|e| match e {
                bs58::decode::Error::BufferTooSmall => DidError::Length { found: 49 },
                other => DidError::Base58(other.to_string()),
            })?;
        if n != 33 {
            return Err(DidError::Length { found: n });
        }
        if raw[0] != Identity::ED25519 {
            return Err(DidError::Algorithm(raw[0]));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw[1..33]);
        Ok(Identity::from_ed25519_bytes(key))
    }
}

impl std::str::FromStr for Identity {
    type Err = DidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Identity::from_did(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    #[test]
    fn round_trip() {
        let id = Keypair::from_secret_bytes(&[1; 32]).identity();
        assert_eq!(Identity::from_did(&id.did()), Ok(id));
    }

    #[test]
    fn malformed_inputs_are_named() {
        assert_eq!(
            Identity::from_did("did:key:z6Mk"),
            Err(DidError::NotMeshDid)
        );
        assert!(matches!(
            Identity::from_did("did:mesh:f00"),
            Err(DidError::Multibase { found: Some('f') })
        ));
        assert!(matches!(
            Identity::from_did("did:mesh:z0OIl"),
            Err(DidError::Base58(_))
        ));
        assert!(matches!(
            Identity::from_did("did:mesh:z2"),
            Err(DidError::Length { found: 1 })
        ));
        let mut raw = vec![0x02];
        raw.extend_from_slice(&[9; 32]);
        let bad = format!("did:mesh:z{}", bs58::encode(raw).into_string());
        assert_eq!(Identity::from_did(&bad), Err(DidError::Algorithm(2)));
        let long = format!("did:mesh:z{}", "2".repeat(80));
        assert!(matches!(
            Identity::from_did(&long),
            Err(DidError::TooLong { .. })
        ));
    }
}
