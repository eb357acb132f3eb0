//! CBOR encoding: definite lengths, shortest argument forms.

pub(crate) const MAJOR_UINT: u8 = 0;
pub(crate) const MAJOR_BYTES: u8 = 2;
pub(crate) const MAJOR_TEXT: u8 = 3;
pub(crate) const MAJOR_ARRAY: u8 = 4;
pub(crate) const MAJOR_MAP: u8 = 5;

/// Appends CBOR items to a caller-owned buffer.
pub(crate) struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out }
    }

    #[inline(always)]
    fn head(&mut self, major: u8, arg: u64) {
        let m = major << 5;
        if arg < 24 {
            self.out.push(m | arg as u8);
        } else if arg <= u8::MAX as u64 {
            self.out.extend_from_slice(&[m | 24, arg as u8]);
        } else if arg <= u16::MAX as u64 {
            self.out.push(m | 25);
            self.out.extend_from_slice(&(arg as u16).to_be_bytes());
        } else if arg <= u32::MAX as u64 {
            self.out.push(m | 26);
            self.out.extend_from_slice(&(arg as u32).to_be_bytes());
        } else {
            self.out.push(m | 27);
            self.out.extend_from_slice(&arg.to_be_bytes());
        }
    }

    #[inline]
    pub(crate) fn uint(&mut self, v: u64) {
        self.head(MAJOR_UINT, v);
    }

    #[inline]
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.head(MAJOR_BYTES, b.len() as u64);
        self.out.extend_from_slice(b);
    }

    #[inline]
    pub(crate) fn text(&mut self, s: &str) {
        self.head(MAJOR_TEXT, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    /// A text string from bytes the caller knows are UTF-8.
    #[inline]
    pub(crate) fn text_utf8(&mut self, s: &[u8]) {
        self.head(MAJOR_TEXT, s.len() as u64);
        self.out.extend_from_slice(s);
    }

    #[inline]
    pub(crate) fn array(&mut self, len: usize) {
        self.head(MAJOR_ARRAY, len as u64);
    }

    #[inline]
    pub(crate) fn map(&mut self, len: usize) {
        self.head(MAJOR_MAP, len as u64);
    }

    #[inline]
    pub(crate) fn bool(&mut self, v: bool) {
        self.out.push(if v { 0xf5 } else { 0xf4 });
    }

    /// Bytes that are already CBOR (a fixed run of heads and keys).
    #[inline]
    pub(crate) fn raw(&mut self, cbor: &[u8]) {
        self.out.extend_from_slice(cbor);
    }

    /// A map key known at compile time, pre-encoded (a text string).
    #[inline]
    pub(crate) fn key(&mut self, k: &str) {
        self.text(k);
    }
}
