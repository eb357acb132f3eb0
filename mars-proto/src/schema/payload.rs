//! What the typed payloads (capability, revocation, key rotation) share: a
//! strict, bounded reader from payload bytes (CBOR, or JSON for capabilities)
//! into a small value tree, typed field extraction whose errors name the
//! field and the rule, and the CBOR writers for the values they carry.
//!
//! A payload is opaque to the DHT (WIRE.md, "Descriptor"), so anything may be
//! in it: every length is checked before it is allocated, nesting is
//! bounded, and nothing here panics on input.

use serde_json::{Map, Number, Value};

use crate::descriptor_limits::MAX_PAYLOAD_LEN;
use crate::hash::{Hash, HashAlgorithm, HashError};
use crate::identity::{Identity, Signature};
use crate::wire::{
    CborError, CborItem as Item, CborKeySet as KeySet, CborMapKey as MapKey, CborReader as Reader,
    CborWriter as Writer,
};

/// Deepest nesting of arrays and maps accepted inside a payload: deep
/// enough for any JSON schema an agent puts in `params`, shallow enough that
/// hostile nesting cannot exhaust the stack.
pub const MAX_PAYLOAD_DEPTH: usize = 32;

/// Most elements reserved ahead for one array or map. A declared count is
/// only checked against the bytes left, so nested containers that each
/// declare the whole rest of the payload could otherwise reserve tens of
/// megabytes before the lie is found; past this, vectors grow as elements
/// actually arrive, keeping memory proportional to the input.
const PREALLOC_MAX: usize = 256;

/// Why payload bytes do not decode. Every field-level variant names the
/// field (a dotted path such as `constraints.geo.center`) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Larger than any descriptor payload can be (65,536 bytes).
    #[error("payload is {len} bytes, over the {max}-byte limit of a descriptor payload")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Starts with `{` but is not valid JSON.
    #[error("payload starts with '{{' but is not valid JSON: {message}")]
    Json {
        /// The JSON parser's message (with line and column).
        message: String,
    },
    /// Malformed or forbidden CBOR (indefinite lengths, tag 55799, a
    /// duplicate map key, a length past the end, invalid UTF-8, …).
    #[error("payload CBOR at byte {offset}: {source}")]
    Cbor {
        /// Offset of the item in the payload.
        offset: usize,
        /// The CBOR-level defect.
        source: CborError,
    },
    /// Bytes after the one CBOR item a payload holds.
    #[error("{extra} trailing bytes after the payload's CBOR item")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// Arrays and maps nested deeper than [`MAX_PAYLOAD_DEPTH`].
    #[error("payload nests deeper than {max} levels")]
    TooDeep {
        /// [`MAX_PAYLOAD_DEPTH`].
        max: usize,
    },
    /// A required field is absent.
    #[error("{field}: required field is missing")]
    MissingField {
        /// Which.
        field: &'static str,
    },
    /// A field holds a different kind of value than the schema gives it.
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        /// Which.
        field: &'static str,
        /// What the schema says.
        expected: &'static str,
        /// What was there.
        found: &'static str,
    },
    /// A number outside the range its field allows.
    #[error("{field}: {value} is outside {min}..={max}")]
    OutOfRange {
        /// Which.
        field: &'static str,
        /// The value found.
        value: i128,
        /// Smallest allowed.
        min: i128,
        /// Largest allowed.
        max: i128,
    },
    /// A fixed-size byte field (key, signature) of the wrong size.
    #[error("{field}: expected {expected} bytes, found {found}")]
    WrongLength {
        /// Which.
        field: &'static str,
        /// Size required.
        expected: usize,
        /// Size found.
        found: usize,
    },
    /// A text field longer than its bound.
    #[error("{field}: {len} bytes, longer than the {max} allowed")]
    TooLong {
        /// Which.
        field: &'static str,
        /// Length found.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A value that must be kept as JSON (`params`, `metadata`, pricing
    /// `details`) holds a CBOR value JSON cannot express.
    #[error("{field}: a {what} has no JSON equivalent")]
    NotJson {
        /// Which.
        field: &'static str,
        /// The CBOR value found.
        what: &'static str,
    },
    /// A map whose keys must be text has another key.
    #[error("{field}: map keys must be text strings")]
    NonTextKey {
        /// Which.
        field: &'static str,
    },
    /// An identity whose algorithm is not Ed25519 (0x02 and 0x06 are
    /// reserved; nothing else is registered).
    #[error("{field}: identity algorithm 0x{algorithm:02x} is not supported (only Ed25519, 0x01)")]
    UnsupportedIdentity {
        /// Which.
        field: &'static str,
        /// The algorithm found.
        algorithm: u64,
    },
    /// A hash whose digest does not fit its algorithm.
    #[error("{field}: {source}")]
    BadDigest {
        /// Which.
        field: &'static str,
        /// What is wrong.
        source: HashError,
    },
    /// A text value that breaks its field's format rule.
    #[error("{field}: {value:?} is not {rule}")]
    Invalid {
        /// Which.
        field: &'static str,
        /// The value found (cut to 64 characters).
        value: String,
        /// The rule, e.g. "a time of day as HH:MM".
        rule: &'static str,
    },
}

impl PayloadError {
    pub(crate) fn invalid(field: &'static str, value: &str, rule: &'static str) -> Self {
        PayloadError::Invalid {
            field,
            value: value.chars().take(64).collect(),
            rule,
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, PayloadError>;

// ---------------------------------------------------------------------------
// The value tree

/// One decoded payload value: every CBOR data model value a payload may
/// carry, so that unknown keys can hold anything and still be ignored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Any {
    Null,
    Undefined,
    Simple(u8),
    Bool(bool),
    Uint(u64),
    /// The integer `-1 - n`.
    Nint(u64),
    Float(f64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Any>),
    /// Entries in input order; `None` for a key that is not a text string.
    Map(Vec<(Option<String>, Any)>),
}

impl Any {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Any::Null => "null",
            Any::Undefined => "undefined",
            Any::Simple(_) => "simple value",
            Any::Bool(_) => "boolean",
            Any::Uint(_) => "unsigned integer",
            Any::Nint(_) => "negative integer",
            Any::Float(_) => "float",
            Any::Bytes(_) => "byte string",
            Any::Text(_) => "text string",
            Any::Array(_) => "array",
            Any::Map(_) => "map",
        }
    }
}

fn check_size(bytes: &[u8]) -> Result<()> {
    if bytes.len() > MAX_PAYLOAD_LEN {
        return Err(PayloadError::TooLarge {
            len: bytes.len(),
            max: MAX_PAYLOAD_LEN,
        });
    }
    Ok(())
}

/// Parses one strict CBOR item filling the whole payload.
pub(crate) fn parse_cbor(bytes: &[u8]) -> Result<Any> {
    check_size(bytes)?;
    let mut r = Reader::new(bytes);
    let v = cbor_value(bytes, &mut r, 0)?;
    if r.remaining() > 0 {
        return Err(PayloadError::TrailingBytes {
            extra: r.remaining(),
        });
    }
    Ok(v)
}

fn cbor_value<'a>(buf: &'a [u8], r: &mut Reader<'a>, depth: usize) -> Result<Any> {
    if depth > MAX_PAYLOAD_DEPTH {
        return Err(PayloadError::TooDeep {
            max: MAX_PAYLOAD_DEPTH,
        });
    }
    let offset = buf.len() - r.remaining();
    let err = |source| PayloadError::Cbor { offset, source };
    Ok(match r.item().map_err(err)? {
        Item::Uint(v) => Any::Uint(v),
        Item::Nint(v) => Any::Nint(v),
        Item::Bool(b) => Any::Bool(b),
        Item::Null => Any::Null,
        Item::Undefined => Any::Undefined,
        Item::Simple(s) => Any::Simple(s),
        Item::Float => Any::Float(float_at(buf, offset).ok_or(err(CborError::UnexpectedEnd))?),
        Item::Bytes(len) => Any::Bytes(r.string_body(len).map_err(err)?.to_vec()),
        Item::Text(len) => {
            let b = r.string_body(len).map_err(err)?;
            let s = std::str::from_utf8(b).map_err(|_| err(CborError::InvalidUtf8))?;
            Any::Text(s.to_owned())
        }
        Item::Array(len) => {
            // Every element takes at least one byte: a longer count is a lie.
            let n = r.check_count(len, 1).map_err(err)?;
            let mut items = Vec::with_capacity(n.min(PREALLOC_MAX));
            for _ in 0..n {
                items.push(cbor_value(buf, r, depth + 1)?);
            }
            Any::Array(items)
        }
        Item::Map(len) => {
            let n = r.check_count(len, 2).map_err(err)?;
            let mut keys = KeySet::default();
            let mut entries = Vec::with_capacity(n.min(PREALLOC_MAX));
            for _ in 0..n {
                let key_offset = buf.len() - r.remaining();
                let key = r.map_key(0).map_err(|source| PayloadError::Cbor {
                    offset: key_offset,
                    source,
                })?;
                let name = match &key {
                    MapKey::Text(s) => Some(
                        std::str::from_utf8(s)
                            .map_err(|_| PayloadError::Cbor {
                                offset: key_offset,
                                source: crate::wire::CborError::InvalidUtf8,
                            })?
                            .to_owned(),
                    ),
                    MapKey::Other(_) => None,
                };
                keys.push(key);
                entries.push((name, cbor_value(buf, r, depth + 1)?));
            }
            keys.check().map_err(err)?;
            Any::Map(entries)
        }
        // `Reader::item` skips tags and returns what they tag.
        Item::Tag(_) => {
            return Err(err(CborError::UnexpectedType {
                expected: "a value",
                found: "tag",
            }));
        }
    })
}

/// The value of the float item at `p` (after any tags, which the reader has
/// already checked), read from the raw bytes since the reader only skips it.
fn float_at(buf: &[u8], mut p: usize) -> Option<f64> {
    loop {
        let b = *buf.get(p)?;
        if b >> 5 == 6 {
            p += 1 + match b & 0x1f {
                0..=23 => 0,
                24 => 1,
                25 => 2,
                26 => 4,
                27 => 8,
                _ => return None,
            };
            continue;
        }
        let body = buf.get(p + 1..)?;
        return match b {
            0xf9 => Some(f16_to_f64(u16::from_be_bytes(
                body.get(..2)?.try_into().ok()?,
            ))),
            0xfa => Some(f32::from_be_bytes(body.get(..4)?.try_into().ok()?) as f64),
            0xfb => Some(f64::from_be_bytes(body.get(..8)?.try_into().ok()?)),
            _ => None,
        };
    }
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as f64;
    sign * match exp {
        0 => mant * 2f64.powi(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1024.0 + mant) * 2f64.powi(e - 25),
    }
}

/// Parses a JSON payload (the reference gateway's encoding).
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Any> {
    check_size(bytes)?;
    let v: Value = serde_json::from_slice(bytes).map_err(|e| PayloadError::Json {
        message: e.to_string(),
    })?;
    json_to_any(v, 0)
}

fn json_to_any(v: Value, depth: usize) -> Result<Any> {
    if depth > MAX_PAYLOAD_DEPTH {
        return Err(PayloadError::TooDeep {
            max: MAX_PAYLOAD_DEPTH,
        });
    }
    Ok(match v {
        Value::Null => Any::Null,
        Value::Bool(b) => Any::Bool(b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Any::Uint(u)
            } else if let Some(i) = n.as_i64() {
                // Not a u64, so negative: -1 - i is in 0..=i64::MAX.
                Any::Nint((-(i + 1)) as u64)
            } else {
                match n.as_f64() {
                    Some(f) => Any::Float(f),
                    None => Any::Undefined,
                }
            }
        }
        Value::String(s) => Any::Text(s),
        Value::Array(a) => Any::Array(
            a.into_iter()
                .map(|v| json_to_any(v, depth + 1))
                .collect::<Result<_>>()?,
        ),
        Value::Object(m) => Any::Map(
            m.into_iter()
                .map(|(k, v)| Ok((Some(k), json_to_any(v, depth + 1)?)))
                .collect::<Result<_>>()?,
        ),
    })
}

/// Converts a decoded value to JSON, for the schema's free-form fields.
pub(crate) fn to_json(v: &Any, field: &'static str) -> Result<Value> {
    let not_json = |what| PayloadError::NotJson { field, what };
    Ok(match v {
        Any::Null => Value::Null,
        Any::Bool(b) => Value::Bool(*b),
        Any::Uint(u) => Value::from(*u),
        Any::Nint(n) => match i64::try_from(*n) {
            Ok(n) => Value::from(-1 - n),
            Err(_) => return Err(not_json("negative integer below -2^63")),
        },
        Any::Float(f) => match Number::from_f64(*f) {
            Some(n) => Value::Number(n),
            None => return Err(not_json("non-finite float")),
        },
        Any::Text(s) => Value::String(s.clone()),
        Any::Bytes(_) => return Err(not_json("byte string")),
        Any::Undefined => return Err(not_json("undefined")),
        Any::Simple(_) => return Err(not_json("simple value")),
        Any::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| to_json(v, field))
                .collect::<Result<_>>()?,
        ),
        Any::Map(entries) => Value::Object(json_object(entries, field)?),
    })
}

fn json_object(
    entries: &[(Option<String>, Any)],
    field: &'static str,
) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for (k, v) in entries {
        let k = k.as_ref().ok_or(PayloadError::NonTextKey { field })?;
        m.insert(k.clone(), to_json(v, field)?);
    }
    Ok(m)
}

/// A free-form `{ * tstr => any }` field as a JSON object.
pub(crate) fn json_map(v: &Any, field: &'static str) -> Result<Map<String, Value>> {
    match v {
        Any::Map(entries) => json_object(entries, field),
        other => Err(wrong(field, "map", other)),
    }
}

// ---------------------------------------------------------------------------
// Typed extraction

pub(crate) fn wrong(field: &'static str, expected: &'static str, found: &Any) -> PayloadError {
    PayloadError::WrongType {
        field,
        expected,
        found: found.kind(),
    }
}

/// A map's entries, looked up by field name; other keys are ignored.
pub(crate) struct Fields<'a> {
    entries: &'a [(Option<String>, Any)],
}

impl<'a> Fields<'a> {
    pub(crate) fn of(v: &'a Any, field: &'static str) -> Result<Self> {
        match v {
            Any::Map(entries) => Ok(Fields { entries }),
            other => Err(wrong(field, "map", other)),
        }
    }

    /// The value under `name`; an explicit null counts as absent, as serde
    /// (the reference's codec) reads an `Option`.
    pub(crate) fn get(&self, name: &str) -> Option<&'a Any> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_deref() == Some(name))
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, Any::Null))
    }

    pub(crate) fn req(&self, name: &str, field: &'static str) -> Result<&'a Any> {
        self.get(name).ok_or(PayloadError::MissingField { field })
    }
}

pub(crate) fn text<'a>(v: &'a Any, field: &'static str, max: usize) -> Result<&'a str> {
    match v {
        Any::Text(s) if s.len() > max => Err(PayloadError::TooLong {
            field,
            len: s.len(),
            max,
        }),
        Any::Text(s) => Ok(s),
        other => Err(wrong(field, "text string", other)),
    }
}

pub(crate) fn uint(v: &Any, field: &'static str) -> Result<u64> {
    match v {
        Any::Uint(u) => Ok(*u),
        other => Err(wrong(field, "unsigned integer", other)),
    }
}

pub(crate) fn int(v: &Any, field: &'static str) -> Result<i128> {
    match v {
        Any::Uint(u) => Ok(*u as i128),
        Any::Nint(n) => Ok(-1 - *n as i128),
        other => Err(wrong(field, "integer", other)),
    }
}

pub(crate) fn boolean(v: &Any, field: &'static str) -> Result<bool> {
    match v {
        Any::Bool(b) => Ok(*b),
        other => Err(wrong(field, "boolean", other)),
    }
}

pub(crate) fn array<'a>(v: &'a Any, field: &'static str) -> Result<&'a [Any]> {
    match v {
        Any::Array(items) => Ok(items),
        other => Err(wrong(field, "array", other)),
    }
}

/// A byte field as the network writes them: a byte string, or (as the
/// reference writes every byte field) an array of integers 0..=255.
pub(crate) fn bytes(v: &Any, field: &'static str) -> Result<Vec<u8>> {
    match v {
        Any::Bytes(b) => Ok(b.clone()),
        Any::Array(items) => items
            .iter()
            .map(|i| match i {
                Any::Uint(b) if *b <= 255 => Ok(*b as u8),
                Any::Uint(b) => Err(PayloadError::OutOfRange {
                    field,
                    value: *b as i128,
                    min: 0,
                    max: 255,
                }),
                other => Err(wrong(field, "byte (unsigned integer)", other)),
            })
            .collect(),
        other => Err(wrong(field, "byte string", other)),
    }
}

fn fixed<const N: usize>(v: &Any, field: &'static str) -> Result<[u8; N]> {
    let b = bytes(v, field)?;
    let found = b.len();
    b.try_into().map_err(|_| PayloadError::WrongLength {
        field,
        expected: N,
        found,
    })
}

pub(crate) fn signature(v: &Any, field: &'static str) -> Result<Signature> {
    Ok(Signature::from_bytes(fixed::<64>(v, field)?))
}

/// An algorithm-tagged value in any of the forms in use: the message-body
/// map `{algorithm, <bytes_key>}`, the canonical array `[algorithm, bytes]`,
/// or (older drafts of the spec) bare bytes, whose algorithm is `default_alg`.
fn tagged(
    v: &Any,
    field: &'static str,
    bytes_key: &str,
    default_alg: u8,
) -> Result<(u64, Vec<u8>)> {
    const EXPECTED: &str = "map {algorithm, bytes}, array [algorithm, bytes] or byte string";
    match v {
        Any::Map(_) => {
            let f = Fields::of(v, field)?;
            let alg = uint(f.req("algorithm", field)?, field)?;
            let b = bytes(f.req(bytes_key, field)?, field)?;
            Ok((alg, b))
        }
        Any::Array(items) => match items.as_slice() {
            [alg, b] => Ok((uint(alg, field)?, bytes(b, field)?)),
            _ => Err(wrong(field, EXPECTED, v)),
        },
        Any::Bytes(b) => Ok((default_alg as u64, b.clone())),
        other => Err(wrong(field, EXPECTED, other)),
    }
}

pub(crate) fn hash(v: &Any, field: &'static str) -> Result<Hash> {
    let (alg, digest) = tagged(v, field, "digest", HashAlgorithm::Blake3.code())?;
    let alg = u8::try_from(alg).map_err(|_| PayloadError::OutOfRange {
        field,
        value: alg as i128,
        min: 0,
        max: 255,
    })?;
    Hash::new(HashAlgorithm::from_code(alg), &digest)
        .map_err(|source| PayloadError::BadDigest { field, source })
}

pub(crate) fn identity(v: &Any, field: &'static str) -> Result<Identity> {
    let (alg, key) = tagged(v, field, "public_key", Identity::ED25519)?;
    if alg != Identity::ED25519 as u64 {
        return Err(PayloadError::UnsupportedIdentity {
            field,
            algorithm: alg,
        });
    }
    let found = key.len();
    let key: [u8; 32] = key.try_into().map_err(|_| PayloadError::WrongLength {
        field,
        expected: 32,
        found,
    })?;
    Ok(Identity::from_ed25519_bytes(key))
}

// ---------------------------------------------------------------------------
// Writing

/// A fresh writer over `out` (the writer only borrows the buffer, so raw
/// bytes can be pushed between calls).
pub(crate) fn w(out: &mut Vec<u8>) -> Writer<'_> {
    Writer::new(out)
}

/// `{algorithm, digest}`, as message bodies carry a hash (digest as a byte
/// string, which the reference reads as well as its integer arrays).
pub(crate) fn write_hash(out: &mut Vec<u8>, h: &Hash) {
    let mut w = w(out);
    w.map(2);
    w.key("algorithm");
    w.uint(h.algorithm().code() as u64);
    w.key("digest");
    w.bytes(h.digest());
}

/// `{algorithm, public_key}`, as message bodies carry an identity.
pub(crate) fn write_identity(out: &mut Vec<u8>, id: &Identity) {
    let mut w = w(out);
    w.map(2);
    w.key("algorithm");
    w.uint(id.algorithm() as u64);
    w.key("public_key");
    w.bytes(id.public_key());
}

/// A JSON value as CBOR: integers as integers, other numbers as 64-bit
/// floats, object keys in bytewise order (whatever order the map keeps).
pub(crate) fn write_json(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0xf6),
        Value::Bool(b) => w(out).bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                w(out).uint(u);
            } else if let Some(i) = n.as_i64() {
                write_nint(out, (-(i + 1)) as u64);
            } else {
                out.push(0xfb);
                out.extend_from_slice(&n.as_f64().unwrap_or(f64::NAN).to_be_bytes());
            }
        }
        Value::String(s) => w(out).text(s),
        Value::Array(items) => {
            w(out).array(items.len());
            for i in items {
                write_json(out, i);
            }
        }
        Value::Object(m) => write_json_map(out, m),
    }
}

/// A JSON object as a CBOR map with its keys in bytewise order.
pub(crate) fn write_json_map(out: &mut Vec<u8>, m: &Map<String, Value>) {
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    w(out).map(entries.len());
    for (k, v) in entries {
        w(out).text(k);
        write_json(out, v);
    }
}

/// The negative integer `-1 - n`: a major-type-1 head with argument `n`.
pub(crate) fn write_nint(out: &mut Vec<u8>, n: u64) {
    let start = out.len();
    w(out).uint(n);
    if let Some(b) = out.get_mut(start) {
        *b |= 0x20;
    }
}

/// An integer of either sign.
pub(crate) fn write_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        w(out).uint(v as u64);
    } else {
        write_nint(out, (-(v + 1)) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_of_every_width_decode() {
        // 1.5 as half, single and double; a tagged double.
        for hex in [
            "f93e00",
            "fa3fc00000",
            "fb3ff8000000000000",
            "c1fb3ff8000000000000",
        ] {
            let b = hex::decode(hex).unwrap();
            assert_eq!(parse_cbor(&b).unwrap(), Any::Float(1.5), "{hex}");
        }
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(f16_to_f64(0x7c00), f64::INFINITY);
        assert!(f16_to_f64(0x7e00).is_nan());
        assert_eq!(f16_to_f64(0xc000), -2.0);
    }

    #[test]
    fn json_values_round_trip_through_cbor() {
        let v: Value = serde_json::json!({
            "z": [1, -1, -9223372036854775808i64, 18446744073709551615u64, 0.25, null, true],
            "a": {"nested": "text"},
        });
        let mut out = Vec::new();
        write_json(&mut out, &v);
        let any = parse_cbor(&out).unwrap();
        assert_eq!(to_json(&any, "x").unwrap(), v);
        // Keys come out in bytewise order.
        assert_eq!(out[1..3], [0x61, b'a']);
    }

    #[test]
    fn strictness_and_bounds() {
        // Trailing byte.
        assert_eq!(
            parse_cbor(&[0x01, 0x00]),
            Err(PayloadError::TrailingBytes { extra: 1 })
        );
        // Indefinite-length map.
        assert!(matches!(
            parse_cbor(&[0xbf, 0xff]),
            Err(PayloadError::Cbor {
                source: CborError::IndefiniteLength,
                ..
            })
        ));
        // Duplicate key.
        assert!(matches!(
            parse_cbor(&[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02]),
            Err(PayloadError::Cbor {
                source: CborError::DuplicateKey(_),
                ..
            })
        ));
        // A count larger than the input is refused before allocation.
        assert!(matches!(
            parse_cbor(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(PayloadError::Cbor {
                source: CborError::LengthExceedsInput { .. },
                ..
            })
        ));
        // Nested containers that each declare the rest of the input: refused
        // without reserving memory for the declared counts.
        let mut lies = Vec::new();
        for _ in 0..30 {
            lies.extend_from_slice(&[0x9a, 0x00, 0x00, 0xe0, 0x00]);
        }
        lies.resize(60_000, 0xf6);
        assert!(matches!(
            parse_cbor(&lies),
            Err(PayloadError::Cbor {
                source: CborError::UnexpectedEnd,
                ..
            })
        ));
        // Nesting.
        let deep = vec![0x81; MAX_PAYLOAD_DEPTH + 2];
        assert_eq!(
            parse_cbor(&deep),
            Err(PayloadError::TooDeep {
                max: MAX_PAYLOAD_DEPTH
            })
        );
        let deep_json = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(
            parse_json(deep_json.as_bytes()),
            Err(PayloadError::TooDeep {
                max: MAX_PAYLOAD_DEPTH
            })
        );
        // Size.
        let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
        assert!(matches!(
            parse_cbor(&big),
            Err(PayloadError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_json(b"{\"a\":"),
            Err(PayloadError::Json { .. })
        ));
    }

    #[test]
    fn non_json_values_are_named() {
        for (hex, what) in [
            ("41ff", "byte string"),
            ("f7", "undefined"),
            ("f0", "simple value"),
            ("3bffffffffffffffff", "negative integer below -2^63"),
            ("f97c00", "non-finite float"),
        ] {
            let any = parse_cbor(&hex::decode(hex).unwrap()).unwrap();
            assert_eq!(
                to_json(&any, "params"),
                Err(PayloadError::NotJson {
                    field: "params",
                    what
                })
            );
        }
        let any = parse_cbor(&[0xa1, 0x01, 0x02]).unwrap();
        assert_eq!(
            to_json(&any, "metadata"),
            Err(PayloadError::NonTextKey { field: "metadata" })
        );
    }

    #[test]
    fn hashes_and_identities_in_every_form() {
        let h = Hash::blake3(b"x");
        let mut map = Vec::new();
        write_hash(&mut map, &h);
        let mut arr = vec![0x82, 0x03, 0x58, 0x20];
        arr.extend_from_slice(h.digest());
        let mut bare = vec![0x58, 0x20];
        bare.extend_from_slice(h.digest());
        let mut ints = vec![0xa2];
        ints.extend_from_slice(&[0x69]);
        ints.extend_from_slice(b"algorithm");
        ints.push(0x03);
        ints.push(0x66);
        ints.extend_from_slice(b"digest");
        ints.extend_from_slice(&[0x98, 0x20]);
        for b in h.digest() {
            w(&mut ints).uint(*b as u64);
        }
        for form in [map, arr, bare, ints] {
            assert_eq!(hash(&parse_cbor(&form).unwrap(), "h").unwrap(), h);
        }
        let bad = parse_cbor(&[0x82, 0x03, 0x41, 0x00]).unwrap();
        assert!(matches!(
            hash(&bad, "h"),
            Err(PayloadError::BadDigest { field: "h", .. })
        ));

        let id = crate::Keypair::from_secret_bytes(&[5; 32]).identity();
        let mut m = Vec::new();
        write_identity(&mut m, &id);
        assert_eq!(identity(&parse_cbor(&m).unwrap(), "i").unwrap(), id);
        let mut other = vec![0x82, 0x02, 0x58, 0x20];
        other.extend_from_slice(id.public_key());
        assert_eq!(
            identity(&parse_cbor(&other).unwrap(), "i"),
            Err(PayloadError::UnsupportedIdentity {
                field: "i",
                algorithm: 2
            })
        );
        assert_eq!(
            identity(&parse_cbor(&[0x41, 0x00]).unwrap(), "i"),
            Err(PayloadError::WrongLength {
                field: "i",
                expected: 32,
                found: 1
            })
        );
    }
}
