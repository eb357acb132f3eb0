//! Strict CBOR decoding over a byte slice.
//!
//! Refused everywhere: indefinite lengths, reserved additional-info values,
//! the self-describe tag 55799, nesting deeper than [`MAX_DEPTH`], lengths
//! longer than the bytes that remain. Other tags (42–45 are reserved by the
//! spec) are skipped: the tagged value is read as if untagged.

use std::borrow::Cow;

/// Deepest nesting accepted, so skipping unknown values cannot exhaust the stack.
pub(crate) const MAX_DEPTH: u32 = 16;

/// A CBOR-level defect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// The input ended inside an item.
    #[error("input ends inside a CBOR item")]
    UnexpectedEnd,
    /// An indefinite-length string, array or map (forbidden by the spec).
    #[error("indefinite-length encoding is forbidden")]
    IndefiniteLength,
    /// Additional-information values 28–30 are reserved by RFC 8949.
    #[error("reserved additional-information value {0}")]
    Reserved(u8),
    /// The self-describe tag 55799 (forbidden by the spec).
    #[error("self-describe tag 55799 is forbidden")]
    SelfDescribeTag,
    /// A different kind of item than the field needs.
    #[error("expected {expected}, found {found}")]
    UnexpectedType {
        /// What the field needs.
        expected: &'static str,
        /// What was there.
        found: &'static str,
    },
    /// A declared length larger than the bytes left in the body.
    #[error("declared length {declared} exceeds the {remaining} bytes left")]
    LengthExceedsInput {
        /// Declared length (elements or bytes).
        declared: u64,
        /// Bytes left.
        remaining: usize,
    },
    /// Nested deeper than the 16 levels allowed.
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A text string that is not UTF-8.
    #[error("text string is not valid UTF-8")]
    InvalidUtf8,
    /// The same key twice in one map (inside a value we skip; duplicates of
    /// known fields are reported with the field's name).
    #[error("map key {0} appears twice")]
    DuplicateKey(String),
}

/// The kind of an item, as seen from its initial byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    Uint(u64),
    Nint(u64),
    Bytes(u64),
    Text(u64),
    Array(u64),
    Map(u64),
    Tag(u64),
    Bool(bool),
    Null,
    Undefined,
    Simple(u8),
    Float,
}

impl Item {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Item::Uint(_) => "unsigned integer",
            Item::Nint(_) => "negative integer",
            Item::Bytes(_) => "byte string",
            Item::Text(_) => "text string",
            Item::Array(_) => "array",
            Item::Map(_) => "map",
            Item::Tag(_) => "tag",
            Item::Bool(_) => "boolean",
            Item::Null => "null",
            Item::Undefined => "undefined",
            Item::Simple(_) => "simple value",
            Item::Float => "float",
        }
    }
}

/// A map key as read: text keys are borrowed as bytes (matching against the
/// ASCII field names needs no UTF-8 check; unknown ones are checked before
/// they are kept); other keys are kept as their raw encoding so duplicates
/// can still be detected.
pub(crate) enum MapKey<'a> {
    Text(&'a [u8]),
    Other(&'a [u8]),
}

impl MapKey<'_> {
    /// Checks that a text key is UTF-8 (known field names need not be checked).
    pub(crate) fn check_utf8(&self) -> Result<(), CborError> {
        match self {
            MapKey::Text(b) => std::str::from_utf8(b)
                .map(|_| ())
                .map_err(|_| CborError::InvalidUtf8),
            MapKey::Other(_) => Ok(()),
        }
    }
}

/// A cursor over one CBOR body.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The current position, to [`reset`](Self::reset) to after a fast
    /// path that did not match.
    pub(crate) fn mark(&self) -> usize {
        self.pos
    }

    /// Goes back to a position from [`mark`](Self::mark).
    pub(crate) fn reset(&mut self, mark: usize) {
        self.pos = mark.min(self.buf.len());
    }

    /// Consumes `prefix` if the input goes on with exactly these bytes.
    #[inline]
    pub(crate) fn eat(&mut self, prefix: &[u8]) -> bool {
        match self.buf.get(self.pos..) {
            Some(rest) if rest.starts_with(prefix) => {
                self.pos += prefix.len();
                true
            }
            _ => false,
        }
    }

    /// The next `N` raw bytes, if there are that many.
    #[inline]
    pub(crate) fn eat_array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(N)?)?;
        let a = <[u8; N]>::try_from(s).ok()?;
        self.pos += N;
        Some(a)
    }

    /// A text string with a one- or two-byte head (under 256 bytes) of at
    /// most `max` bytes, valid UTF-8; `None` (and nothing consumed) for
    /// anything else, which the general path then reads or refuses.
    #[inline]
    pub(crate) fn eat_short_text(&mut self, max: usize) -> Option<&'a str> {
        let start = self.pos;
        let (len, head) = match *self.buf.get(start)? {
            b @ 0x60..=0x77 => (usize::from(b & 0x1f), 1),
            0x78 => (usize::from(*self.buf.get(start + 1)?), 2),
            _ => return None,
        };
        if len > max {
            return None;
        }
        let body = self.buf.get(start + head..start + head + len)?;
        let s = std::str::from_utf8(body).ok()?;
        self.pos = start + head + len;
        Some(s)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        if self.remaining() < n {
            return Err(CborError::UnexpectedEnd);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self.buf.get(self.pos).ok_or(CborError::UnexpectedEnd)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn argument(&mut self, info: u8) -> Result<u64, CborError> {
        Ok(match info {
            0..=23 => info as u64,
            24 => self.byte()? as u64,
            25 => u16::from_be_bytes([self.byte()?, self.byte()?]) as u64,
            26 => {
                let s = self.take(4)?;
                u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as u64
            }
            27 => {
                let s = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                u64::from_be_bytes(a)
            }
            31 => return Err(CborError::IndefiniteLength),
            r => return Err(CborError::Reserved(r)),
        })
    }

    /// The element count of a map whose head is one byte (fewer than 24
    /// entries, untagged), consumed; `None` and nothing consumed otherwise.
    #[inline]
    pub(crate) fn eat_small_map(&mut self) -> Option<u64> {
        let b = *self.buf.get(self.pos)?;
        if !(0xa0..=0xb7).contains(&b) {
            return None;
        }
        self.pos += 1;
        Some(u64::from(b & 0x1f))
    }

    /// Reads the head of the next item, skipping tags (refusing 55799).
    #[inline]
    pub(crate) fn item(&mut self) -> Result<Item, CborError> {
        loop {
            let it = self.raw_item()?;
            match it {
                Item::Tag(55799) => return Err(CborError::SelfDescribeTag),
                Item::Tag(_) => continue,
                other => return Ok(other),
            }
        }
    }

    #[inline]
    fn raw_item(&mut self) -> Result<Item, CborError> {
        let ib = self.byte()?;
        let major = ib >> 5;
        let info = ib & 0x1f;
        if major == 7 {
            return Ok(match info {
                20 => Item::Bool(false),
                21 => Item::Bool(true),
                22 => Item::Null,
                23 => Item::Undefined,
                0..=19 => Item::Simple(info),
                24 => Item::Simple(self.byte()?),
                25 => {
                    self.take(2)?;
                    Item::Float
                }
                26 => {
                    self.take(4)?;
                    Item::Float
                }
                27 => {
                    self.take(8)?;
                    Item::Float
                }
                31 => return Err(CborError::IndefiniteLength),
                r => return Err(CborError::Reserved(r)),
            });
        }
        let arg = self.argument(info)?;
        Ok(match major {
            0 => Item::Uint(arg),
            1 => Item::Nint(arg),
            2 => Item::Bytes(arg),
            3 => Item::Text(arg),
            4 => Item::Array(arg),
            5 => Item::Map(arg),
            _ => Item::Tag(arg),
        })
    }

    /// Checks a declared element count against the input left: every element
    /// takes at least `min_bytes_each` bytes, so a larger count is a lie and
    /// is refused before anything is allocated for it.
    #[inline]
    pub(crate) fn check_count(
        &self,
        declared: u64,
        min_bytes_each: usize,
    ) -> Result<usize, CborError> {
        let remaining = self.remaining();
        match usize::try_from(declared) {
            Ok(n) if n.saturating_mul(min_bytes_each) <= remaining => Ok(n),
            _ => Err(CborError::LengthExceedsInput {
                declared,
                remaining,
            }),
        }
    }

    /// The content of a byte or text string whose head was just read.
    #[inline]
    pub(crate) fn string_body(&mut self, len: u64) -> Result<&'a [u8], CborError> {
        let n = self.check_count(len, 1)?;
        self.take(n)
    }

    pub(crate) fn expect_uint(&mut self) -> Result<u64, CborError> {
        match self.item()? {
            Item::Uint(v) => Ok(v),
            other => Err(unexpected("unsigned integer", other)),
        }
    }

    #[inline]
    pub(crate) fn expect_bool(&mut self) -> Result<bool, CborError> {
        if let Some(&b @ (0xf4 | 0xf5)) = self.buf.get(self.pos) {
            self.pos += 1;
            return Ok(b == 0xf5);
        }
        match self.item()? {
            Item::Bool(v) => Ok(v),
            other => Err(unexpected("boolean", other)),
        }
    }

    pub(crate) fn expect_text(&mut self) -> Result<&'a str, CborError> {
        match self.item()? {
            Item::Text(len) => {
                let b = self.string_body(len)?;
                std::str::from_utf8(b).map_err(|_| CborError::InvalidUtf8)
            }
            other => Err(unexpected("text string", other)),
        }
    }

    /// A byte field in either encoding the network uses: a byte string, or
    /// (as the reference writes them) an array of unsigned integers ≤ 255.
    /// Borrowed when it is a byte string; `max` bounds both forms.
    pub(crate) fn byte_field(&mut self, max: usize) -> Result<ByteField<'a>, CborError> {
        match self.item()? {
            Item::Bytes(len) => {
                let n = self.check_count(len, 1)?;
                if n > max {
                    return Ok(ByteField::TooLong(n));
                }
                Ok(ByteField::Bytes(Cow::Borrowed(self.take(n)?)))
            }
            Item::Array(len) => {
                let n = self.check_count(len, 1)?;
                if n > max {
                    return Ok(ByteField::TooLong(n));
                }
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(match self.array_byte()? {
                        Ok(b) => b,
                        Err(big) => return Ok(ByteField::ElementOutOfRange(big)),
                    });
                }
                Ok(ByteField::Bytes(Cow::Owned(v)))
            }
            other => Err(unexpected("byte string or array of bytes", other)),
        }
    }

    /// Like [`Reader::byte_field`] for a fixed-size field, without allocating.
    pub(crate) fn fixed_bytes<const N: usize>(&mut self) -> Result<FixedField<N>, CborError> {
        match self.item()? {
            Item::Bytes(len) => {
                let n = self.check_count(len, 1)?;
                if n != N {
                    return Ok(FixedField::WrongLength(n));
                }
                let mut a = [0u8; N];
                a.copy_from_slice(self.take(n)?);
                Ok(FixedField::Ok(a))
            }
            Item::Array(len) => {
                let n = self.check_count(len, 1)?;
                if n != N {
                    return Ok(FixedField::WrongLength(n));
                }
                let mut a = [0u8; N];
                for slot in a.iter_mut() {
                    *slot = match self.array_byte()? {
                        Ok(b) => b,
                        Err(big) => return Ok(FixedField::ElementOutOfRange(big)),
                    };
                }
                Ok(FixedField::Ok(a))
            }
            other => Err(unexpected("byte string or array of bytes", other)),
        }
    }

    /// One element of a byte field written as an array of integers: `Ok(byte)`,
    /// or `Err(value)` for an integer over 255. The two encodings the
    /// reference uses (0x00–0x17 inline, 0x18 + byte) take a fast path.
    #[inline]
    fn array_byte(&mut self) -> Result<Result<u8, u64>, CborError> {
        match self.buf.get(self.pos..self.pos + 2) {
            Some(&[b, _]) if b <= 0x17 => {
                self.pos += 1;
                return Ok(Ok(b));
            }
            Some(&[0x18, v]) => {
                self.pos += 2;
                return Ok(Ok(v));
            }
            _ => {}
        }
        match self.item()? {
            Item::Uint(b) if b <= 255 => Ok(Ok(b as u8)),
            Item::Uint(b) => Ok(Err(b)),
            other => Err(unexpected("unsigned integer (a byte)", other)),
        }
    }

    /// Reads a map key (text keys borrowed unchecked — see [`MapKey`] —,
    /// others kept raw for duplicate checks).
    #[inline]
    pub(crate) fn map_key(&mut self, depth: u32) -> Result<MapKey<'a>, CborError> {
        // Every field name is an untagged text string under 24 bytes: its
        // head is one byte. Anything else takes the general path.
        if let Some(&b @ 0x60..=0x77) = self.buf.get(self.pos) {
            let start = self.pos + 1;
            if let Some(key) = self.buf.get(start..start + usize::from(b & 0x1f)) {
                self.pos = start + key.len();
                return Ok(MapKey::Text(key));
            }
        }
        self.map_key_general(depth)
    }

    #[inline(never)]
    fn map_key_general(&mut self, depth: u32) -> Result<MapKey<'a>, CborError> {
        let start = self.pos;
        match self.item()? {
            Item::Text(len) => Ok(MapKey::Text(self.string_body(len)?)),
            other => {
                self.skip_body(other, depth + 1)?;
                Ok(MapKey::Other(&self.buf[start..self.pos]))
            }
        }
    }

    /// Skips one whole item (an unknown map value), enforcing every strictness
    /// rule inside it too.
    pub(crate) fn skip(&mut self, depth: u32) -> Result<(), CborError> {
        let it = self.item()?;
        self.skip_body(it, depth)
    }

    fn skip_body(&mut self, it: Item, depth: u32) -> Result<(), CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        match it {
            Item::Bytes(len) => {
                self.string_body(len)?;
            }
            Item::Text(len) => {
                let b = self.string_body(len)?;
                std::str::from_utf8(b).map_err(|_| CborError::InvalidUtf8)?;
            }
            Item::Array(len) => {
                let n = self.check_count(len, 1)?;
                for _ in 0..n {
                    self.skip(depth + 1)?;
                }
            }
            Item::Map(len) => {
                let n = self.check_count(len, 2)?;
                let mut keys = KeySet::default();
                for _ in 0..n {
                    let key = self.map_key(depth + 1)?;
                    key.check_utf8()?;
                    keys.push(key);
                    self.skip(depth + 1)?;
                }
                keys.check()?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Map keys collected to detect duplicates in O(n log n): a hostile map with
/// hundreds of thousands of keys must not cost a quadratic scan. Text keys
/// compare by content (two encodings of one string are one key).
#[derive(Default)]
pub(crate) struct KeySet<'a> {
    keys: Vec<(bool, &'a [u8])>,
}

impl<'a> KeySet<'a> {
    pub(crate) fn push(&mut self, key: MapKey<'a>) {
        self.keys.push(match key {
            MapKey::Text(s) => (true, s),
            MapKey::Other(raw) => (false, raw),
        });
    }

    /// Refuses the map if any key was pushed twice.
    #[inline]
    pub(crate) fn check(self) -> Result<(), CborError> {
        if self.keys.len() < 2 {
            return Ok(());
        }
        self.check_sorted()
    }

    #[inline(never)]
    fn check_sorted(mut self) -> Result<(), CborError> {
        self.keys.sort_unstable();
        for w in self.keys.windows(2) {
            if w[0] == w[1] {
                let shown = if w[0].0 {
                    format!("{:?}", String::from_utf8_lossy(w[0].1))
                } else {
                    format!("(non-text key {})", hex_prefix(w[0].1))
                };
                return Err(CborError::DuplicateKey(shown));
            }
        }
        Ok(())
    }
}

fn hex_prefix(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for x in b.iter().take(16) {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// A variable-length byte field as read.
pub(crate) enum ByteField<'a> {
    Bytes(Cow<'a, [u8]>),
    TooLong(usize),
    ElementOutOfRange(u64),
}

/// A fixed-length byte field as read.
pub(crate) enum FixedField<const N: usize> {
    Ok([u8; N]),
    WrongLength(usize),
    ElementOutOfRange(u64),
}

pub(crate) fn unexpected(expected: &'static str, found: Item) -> CborError {
    CborError::UnexpectedType {
        expected,
        found: found.name(),
    }
}
