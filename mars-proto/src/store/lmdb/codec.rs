//! The on-disk layout: fixed-width big-endian keys, so that LMDB's byte
//! order is the index order, and checksummed descriptor records.
//!
//! | database | key | value |
//! |---|---|---|
//! | `descriptors` | id | [`record`](encode_record) |
//! | `by_key` | routing key ‖ timestamp ‖ id | expires_at |
//! | `by_key_publisher` | routing key ‖ publisher ‖ timestamp ‖ id | expires_at |
//! | `by_key_schema` | routing key ‖ schema ‖ timestamp ‖ id | expires_at |
//! | `by_slot` | publisher ‖ schema ‖ topic bytes | id |
//! | `by_expiry` | expires_at ‖ id | stored_size |
//! | `key_counts` | routing key | entries at the key |
//! | `meta` | name | version / count / bytes |
//! | `peers` | position | identity ‖ address |
//!
//! A hash is 34 bytes: algorithm, digest length, digest zero-padded to 32 —
//! exactly the order `Hash`'s `Ord` uses, so an index sorts as the
//! in-memory engine's does. Timestamps and counters are u64 big-endian, an
//! identity its 32 key bytes. Index values carry what a walk needs to skip
//! an entry without reading its descriptor (its expiry) or to account for
//! a descriptor that can no longer be read (its size).

use crate::descriptor::ValidDescriptor;
use crate::hash::{Hash, HashAlgorithm, MAX_DIGEST_LEN};
use crate::identity::Identity;
use crate::store::StoreError;
use crate::time::Timestamp;
use crate::wire::{DecodeLimits, descriptor_from_cbor, descriptor_into};

/// Bytes of an encoded [`Hash`].
pub(super) const HASH_LEN: usize = 2 + MAX_DIGEST_LEN;
/// Bytes of an encoded [`Identity`].
pub(super) const IDENTITY_LEN: usize = 32;
/// Bytes of a u64.
pub(super) const U64_LEN: usize = 8;
/// `by_key` key: routing key ‖ timestamp ‖ id.
pub(super) const KEY_ENTRY_LEN: usize = HASH_LEN + U64_LEN + HASH_LEN;
/// `by_key_publisher` key.
pub(super) const KEY_PUB_ENTRY_LEN: usize = HASH_LEN + IDENTITY_LEN + U64_LEN + HASH_LEN;
/// `by_key_schema` key.
pub(super) const KEY_SCHEMA_ENTRY_LEN: usize = HASH_LEN + HASH_LEN + U64_LEN + HASH_LEN;
/// `by_expiry` key.
pub(super) const EXPIRY_ENTRY_LEN: usize = U64_LEN + HASH_LEN;
/// Record header: expires_at ‖ checksum.
const RECORD_HEADER_LEN: usize = U64_LEN + CHECKSUM_LEN;
/// Bytes of BLAKE3 kept as a record's checksum: enough to make an
/// undetected random corruption a 2⁻¹²⁸ event.
const CHECKSUM_LEN: usize = 16;

/// A hash as 34 fixed bytes.
pub(super) fn hash(h: &Hash) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    let digest = h.digest();
    out[0] = h.algorithm().code();
    // A digest is at most MAX_DIGEST_LEN (32) bytes: `Hash`'s invariant.
    out[1] = digest.len() as u8;
    out[2..2 + digest.len()].copy_from_slice(digest);
    out
}

/// The hash encoded in `b` (exactly [`HASH_LEN`] bytes), if well formed.
pub(super) fn read_hash(b: &[u8]) -> Option<Hash> {
    let b: &[u8; HASH_LEN] = b.try_into().ok()?;
    let len = usize::from(b[1]);
    let digest = b.get(2..2 + len)?;
    if b[2 + len..].iter().any(|&x| x != 0) {
        return None;
    }
    let h = Hash::new(HashAlgorithm::from_code(b[0]), digest).ok()?;
    // `Hash::new` normalises the algorithm; refuse bytes it would change.
    (h.algorithm().code() == b[0]).then_some(h)
}

/// A u64 read from exactly eight bytes.
pub(super) fn read_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// The id at the end of an index key.
pub(super) fn trailing_id(key: &[u8]) -> Option<Hash> {
    read_hash(key.get(key.len().checked_sub(HASH_LEN)?..)?)
}

/// The timestamp just before the trailing id of an index key.
pub(super) fn trailing_timestamp(key: &[u8]) -> Option<Timestamp> {
    let end = key.len().checked_sub(HASH_LEN)?;
    read_u64(key.get(end.checked_sub(U64_LEN)?..end)?).map(Timestamp::from_micros)
}

/// `by_key` key.
pub(super) fn key_entry(key: &Hash, ts: Timestamp, id: &Hash) -> [u8; KEY_ENTRY_LEN] {
    let mut out = [0u8; KEY_ENTRY_LEN];
    out[..HASH_LEN].copy_from_slice(&hash(key));
    out[HASH_LEN..HASH_LEN + U64_LEN].copy_from_slice(&ts.as_micros().to_be_bytes());
    out[HASH_LEN + U64_LEN..].copy_from_slice(&hash(id));
    out
}

/// `by_key_publisher` key.
pub(super) fn key_pub_entry(
    key: &Hash,
    publisher: &Identity,
    ts: Timestamp,
    id: &Hash,
) -> [u8; KEY_PUB_ENTRY_LEN] {
    let mut out = [0u8; KEY_PUB_ENTRY_LEN];
    out[..HASH_LEN + IDENTITY_LEN].copy_from_slice(&key_pub_prefix(key, publisher));
    let at = HASH_LEN + IDENTITY_LEN;
    out[at..at + U64_LEN].copy_from_slice(&ts.as_micros().to_be_bytes());
    out[at + U64_LEN..].copy_from_slice(&hash(id));
    out
}

/// The `by_key_publisher` prefix of one (routing key, publisher).
pub(super) fn key_pub_prefix(key: &Hash, publisher: &Identity) -> [u8; HASH_LEN + IDENTITY_LEN] {
    let mut out = [0u8; HASH_LEN + IDENTITY_LEN];
    out[..HASH_LEN].copy_from_slice(&hash(key));
    out[HASH_LEN..].copy_from_slice(publisher.public_key());
    out
}

/// `by_key_schema` key.
pub(super) fn key_schema_entry(
    key: &Hash,
    schema: &Hash,
    ts: Timestamp,
    id: &Hash,
) -> [u8; KEY_SCHEMA_ENTRY_LEN] {
    let mut out = [0u8; KEY_SCHEMA_ENTRY_LEN];
    out[..2 * HASH_LEN].copy_from_slice(&key_schema_prefix(key, schema));
    let at = 2 * HASH_LEN;
    out[at..at + U64_LEN].copy_from_slice(&ts.as_micros().to_be_bytes());
    out[at + U64_LEN..].copy_from_slice(&hash(id));
    out
}

/// The `by_key_schema` prefix of one (routing key, schema).
pub(super) fn key_schema_prefix(key: &Hash, schema: &Hash) -> [u8; 2 * HASH_LEN] {
    let mut out = [0u8; 2 * HASH_LEN];
    out[..HASH_LEN].copy_from_slice(&hash(key));
    out[HASH_LEN..].copy_from_slice(&hash(schema));
    out
}

/// `by_slot` key: the replacement key. At most 32 + 34 + 255 = 321 bytes,
/// under LMDB's 511-byte key limit (the topic is ≤ 255 bytes once valid).
pub(super) fn slot_key(publisher: &Identity, schema: &Hash, topic: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(IDENTITY_LEN + HASH_LEN + topic.len());
    out.extend_from_slice(publisher.public_key());
    out.extend_from_slice(&hash(schema));
    out.extend_from_slice(topic.as_bytes());
    out
}

/// `by_expiry` key.
pub(super) fn expiry_entry(expires_at: Timestamp, id: &Hash) -> [u8; EXPIRY_ENTRY_LEN] {
    let mut out = [0u8; EXPIRY_ENTRY_LEN];
    out[..U64_LEN].copy_from_slice(&expires_at.as_micros().to_be_bytes());
    out[U64_LEN..].copy_from_slice(&hash(id));
    out
}

/// A descriptor record: expires_at ‖ checksum ‖ the descriptor as the wire
/// codec encodes it (signature included). The expiry is stored because it
/// depends on when the descriptor was validated, not only on its fields;
/// the checksum (BLAKE3 of the rest) catches corruption the id cannot —
/// the id does not cover the signature or the expiry.
pub(super) fn encode_record(d: &ValidDescriptor) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + 420 + d.payload.len() + d.topic.len());
    out.extend_from_slice(&d.expires_at().as_micros().to_be_bytes());
    out.extend_from_slice(&[0u8; CHECKSUM_LEN]);
    descriptor_into(d, &mut out);
    let sum = checksum(&out[..U64_LEN], &out[RECORD_HEADER_LEN..]);
    out[U64_LEN..RECORD_HEADER_LEN].copy_from_slice(&sum);
    out
}

/// Reads a record back, refusing anything that is not exactly what
/// [`encode_record`] wrote for the descriptor `id`.
pub(super) fn decode_record(id: &Hash, b: &[u8]) -> Result<ValidDescriptor, StoreError> {
    let corrupt = |what| StoreError::Corrupt { what };
    let (header, wire) = b
        .split_at_checked(RECORD_HEADER_LEN)
        .ok_or(corrupt("descriptor record shorter than its header"))?;
    let (expiry, sum) = header.split_at(U64_LEN);
    if checksum(expiry, wire)[..] != *sum {
        return Err(corrupt("descriptor record checksum mismatch"));
    }
    let expires_at = Timestamp::from_micros(read_u64(expiry).ok_or(corrupt("record expiry"))?);
    let d = descriptor_from_cbor(wire, &DecodeLimits::default())
        .map_err(|_| corrupt("descriptor record does not decode"))?;
    let d = ValidDescriptor::from_verified_storage(d, expires_at)
        .map_err(|_| corrupt("descriptor record fails its id or static checks"))?;
    if d.id != *id {
        return Err(corrupt("descriptor record stored under another id"));
    }
    Ok(d)
}

fn checksum(expiry: &[u8], wire: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut h = blake3::Hasher::new();
    h.update(expiry);
    h.update(wire);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&h.finalize().as_bytes()[..CHECKSUM_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_encoding_sorts_like_hash() {
        let mut hashes = vec![
            Hash::from_blake3_digest([9; 32]),
            Hash::from_blake3_digest([1; 32]),
            Hash::sha256(b"x"),
            Hash::new(HashAlgorithm::Other(7), &[1, 2]).unwrap(),
            Hash::new(HashAlgorithm::Other(7), &[1]).unwrap(),
            Hash::new(HashAlgorithm::Other(7), &[]).unwrap(),
            Hash::new(HashAlgorithm::Other(1), &[0xff; 32]).unwrap(),
        ];
        let mut encoded: Vec<[u8; HASH_LEN]> = hashes.iter().map(hash).collect();
        hashes.sort();
        encoded.sort();
        let decoded: Vec<Hash> = encoded.iter().map(|b| read_hash(b).unwrap()).collect();
        assert_eq!(decoded, hashes);
    }

    #[test]
    fn malformed_hash_bytes_are_refused() {
        let mut b = hash(&Hash::from_blake3_digest([1; 32]));
        b[1] = 31;
        assert_eq!(read_hash(&b), None, "a BLAKE3 digest is 32 bytes");
        let mut b = hash(&Hash::new(HashAlgorithm::Other(7), &[1]).unwrap());
        b[20] = 1;
        assert_eq!(read_hash(&b), None, "padding must be zero");
        assert_eq!(read_hash(&b[..10]), None);
    }
}
