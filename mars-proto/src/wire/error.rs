//! Why a frame was refused: one variant per rule, naming the field.

use std::fmt;

use super::cbor::CborError;
use crate::hash::HashError;

/// Where in a message a defect was found, e.g. `store.descriptor` /
/// `payload`. Static strings: building an error never allocates for the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The enclosing structure's path (`find_node_result.nodes[]`).
    pub at: &'static str,
    /// The field within it (`addr`), empty when the structure itself is meant.
    pub name: &'static str,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            f.write_str(self.at)
        } else {
            write!(f, "{}.{}", self.at, self.name)
        }
    }
}

/// A received frame or body that is refused. Every variant names the rule;
/// the body-level ones name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer than 24 header bytes.
    #[error("frame is {len} bytes, shorter than the 24-byte header")]
    ShortHeader {
        /// Bytes present.
        len: usize,
    },
    /// Magic is not 0x4D48 ("MH").
    #[error("bad frame magic 0x{found:04x}: expected 0x4d48 (\"MH\")")]
    BadMagic {
        /// The magic found.
        found: u16,
    },
    /// A protocol version we do not speak.
    #[error("unsupported protocol version 0x{found:02x}: only 0x01 is spoken")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// Not one of the eight message types.
    #[error("unknown message type 0x{found:02x}")]
    UnknownMessageType {
        /// The type byte found.
        found: u8,
    },
    /// A response type where a request was expected, or the reverse.
    #[error("message type 0x{found:02x} is a {found_kind}, expected a {expected_kind}")]
    WrongDirection {
        /// The type byte found.
        found: u8,
        /// "request" or "response".
        found_kind: &'static str,
        /// "request" or "response".
        expected_kind: &'static str,
    },
    /// Declared body length over the cap; refused before reading or allocating.
    #[error("declared body length {declared} exceeds the {max}-byte cap")]
    BodyTooLarge {
        /// `body_len` from the header.
        declared: u64,
        /// The cap in force.
        max: usize,
    },
    /// Fewer body bytes than `body_len` declares.
    #[error("body truncated: header declares {declared} bytes, {present} present")]
    TruncatedBody {
        /// `body_len` from the header.
        declared: usize,
        /// Bytes present after the header.
        present: usize,
    },
    /// Bytes after the declared body in the same buffer.
    #[error("{extra} bytes follow the declared body")]
    BytesAfterFrame {
        /// How many.
        extra: usize,
    },
    /// The body holds more than one CBOR item (or junk after it).
    #[error("{extra} trailing bytes after the body's CBOR item")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// Malformed or forbidden CBOR.
    #[error("{field}: {source}")]
    Cbor {
        /// Where.
        field: Field,
        /// The CBOR-level defect.
        source: CborError,
    },
    /// A required field is absent.
    #[error("{field}: required field is missing")]
    MissingField {
        /// Which.
        field: Field,
    },
    /// A field appears twice in one map.
    #[error("{field}: map key appears twice")]
    DuplicateField {
        /// Which.
        field: Field,
    },
    /// A list longer than its bound.
    #[error("{field}: {count} entries, more than the {max} allowed")]
    TooManyItems {
        /// Which list.
        field: Field,
        /// Entries declared.
        count: usize,
        /// The bound in force.
        max: usize,
    },
    /// A fixed-size byte field of the wrong size.
    #[error("{field}: expected {expected} bytes, found {found}")]
    WrongLength {
        /// Which.
        field: Field,
        /// Size required.
        expected: usize,
        /// Size found.
        found: usize,
    },
    /// A byte or text field longer than its bound.
    #[error("{field}: {len} bytes, longer than the {max} allowed")]
    TooLong {
        /// Which.
        field: Field,
        /// Length found.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A byte written as an array element that is not 0..=255.
    #[error("{field}: array element {value} is not a byte (0..=255)")]
    ByteOutOfRange {
        /// Which.
        field: Field,
        /// The element.
        value: u64,
    },
    /// An integer too large for its field.
    #[error("{field}: {value} is larger than the maximum {max}")]
    IntegerOutOfRange {
        /// Which.
        field: Field,
        /// The value.
        value: u64,
        /// The field's maximum.
        max: u64,
    },
    /// An identity whose algorithm is not Ed25519.
    #[error("{field}: identity algorithm 0x{algorithm:02x} is not supported (only Ed25519, 0x01)")]
    UnsupportedIdentity {
        /// Which.
        field: Field,
        /// The algorithm found.
        algorithm: u64,
    },
    /// A digest whose length does not fit its algorithm.
    #[error("{field}: {source}")]
    BadDigest {
        /// Which.
        field: Field,
        /// What is wrong.
        source: HashError,
    },
    /// FIND_VALUE_RESULT with both `descriptors` and `nodes`.
    #[error("find_value_result: has both descriptors and nodes; exactly one is allowed")]
    BothDescriptorsAndNodes,
    /// FIND_VALUE_RESULT with neither.
    #[error("find_value_result: has neither descriptors nor nodes; exactly one is required")]
    NeitherDescriptorsNorNodes,
}
