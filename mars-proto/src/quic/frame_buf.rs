//! Reading one frame from a stream without ever buffering more than the
//! frame its header declares (plus one byte, to notice excess).

use crate::wire::{FrameHeader, HEADER_LEN, MAX_BODY_LEN};

/// Bytes of one frame as they arrive.
#[derive(Debug, Default)]
pub(super) struct FrameBuf {
    buf: Vec<u8>,
    /// Header + declared body, once the header has been read and accepted.
    total: Option<usize>,
    /// Nothing more will be read: the stream finished, the header was
    /// refused, or more bytes came than the header declared.
    pub(super) complete: bool,
}

impl FrameBuf {
    /// How many more bytes may be taken from the stream.
    pub(super) fn want(&self) -> usize {
        if self.complete {
            return 0;
        }
        match self.total {
            // One byte past the frame, so excess is seen and refused.
            Some(t) => (t + 1).saturating_sub(self.buf.len()),
            None => HEADER_LEN - self.buf.len(),
        }
    }

    /// Appends bytes (at most [`want`](Self::want) of them). Completes the
    /// buffer when the header is refused or the frame overflows.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(self.want());
        self.buf
            .extend_from_slice(bytes.get(..take).unwrap_or(bytes));
        if self.total.is_none() && self.buf.len() >= HEADER_LEN {
            match FrameHeader::parse(&self.buf, MAX_BODY_LEN) {
                Ok(h) => {
                    let total = HEADER_LEN + h.body_len;
                    self.buf.reserve_exact(total + 1 - self.buf.len());
                    self.total = Some(total);
                }
                // The decoder will refuse these bytes with the same error.
                Err(_) => self.complete = true,
            }
        }
        if let Some(t) = self.total {
            if self.buf.len() > t {
                self.complete = true;
            }
        }
    }

    /// Bytes held.
    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Takes the bytes out.
    pub(super) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}
