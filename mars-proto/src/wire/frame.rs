//! The 24-byte frame header and whole frames.

use super::error::DecodeError;
use super::limits::DecodeLimits;
use super::message::Message;
use super::{decode, encode};

/// "MH".
pub const MAGIC: u16 = 0x4D48;
/// The only protocol version spoken.
pub const VERSION: u8 = 0x01;
/// Header length: magic 2, version 1, type 1, msg_id 16, body_len 4.
pub const HEADER_LEN: usize = 24;

/// The eight message types; responses are requests with bit 7 set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// 0x01
    Ping = 0x01,
    /// 0x02
    Store = 0x02,
    /// 0x03
    FindNode = 0x03,
    /// 0x04
    FindValue = 0x04,
    /// 0x81
    Pong = 0x81,
    /// 0x82
    StoreAck = 0x82,
    /// 0x83
    FindNodeResult = 0x83,
    /// 0x84
    FindValueResult = 0x84,
}

impl MessageType {
    /// The type for a wire byte.
    pub fn from_byte(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0x01 => MessageType::Ping,
            0x02 => MessageType::Store,
            0x03 => MessageType::FindNode,
            0x04 => MessageType::FindValue,
            0x81 => MessageType::Pong,
            0x82 => MessageType::StoreAck,
            0x83 => MessageType::FindNodeResult,
            0x84 => MessageType::FindValueResult,
            found => return Err(DecodeError::UnknownMessageType { found }),
        })
    }

    /// The wire byte.
    pub const fn byte(self) -> u8 {
        self as u8
    }

    /// Whether this is a response (bit 7 set).
    pub const fn is_response(self) -> bool {
        (self as u8) & 0x80 != 0
    }

    /// The response type answering this request type (itself for responses).
    pub const fn response(self) -> MessageType {
        match self {
            MessageType::Ping | MessageType::Pong => MessageType::Pong,
            MessageType::Store | MessageType::StoreAck => MessageType::StoreAck,
            MessageType::FindNode | MessageType::FindNodeResult => MessageType::FindNodeResult,
            MessageType::FindValue | MessageType::FindValueResult => MessageType::FindValueResult,
        }
    }
}

/// The 16-byte correlation id; a response carries its request's.
///
/// Aligned to 8 so that moving a decoded [`Frame`] copies it in two words:
/// with alignment 1 the compiler moved it byte by byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(C, align(8))]
pub struct MsgId(pub [u8; 16]);

/// A parsed header. A stream reader parses the first 24 bytes with
/// [`FrameHeader::parse`], and only then reads (at most) `body_len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Message type.
    pub msg_type: MessageType,
    /// Correlation id.
    pub msg_id: MsgId,
    /// Declared body length, already checked against the cap.
    pub body_len: usize,
}

impl FrameHeader {
    /// Parses and checks a header: magic, version, type, and the body cap
    /// (so a hostile `body_len` is refused before any buffer is sized by it).
    #[inline]
    pub fn parse(bytes: &[u8], max_body_len: usize) -> Result<Self, DecodeError> {
        let h: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(DecodeError::ShortHeader { len: bytes.len() })?;
        let [m0, m1, version, type_byte, ref id @ .., l0, l1, l2, l3] = *h;
        let magic = u16::from_be_bytes([m0, m1]);
        if magic != MAGIC {
            return Err(DecodeError::BadMagic { found: magic });
        }
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion { found: version });
        }
        let msg_type = MessageType::from_byte(type_byte)?;
        let declared = u32::from_be_bytes([l0, l1, l2, l3]);
        let body_len = declared as usize;
        if body_len > max_body_len {
            return Err(DecodeError::BodyTooLarge {
                declared: declared as u64,
                max: max_body_len,
            });
        }
        Ok(FrameHeader {
            msg_type,
            msg_id: MsgId(*id),
            body_len,
        })
    }

    /// Fills in the header reserved at `out[start..start + 24]` once the
    /// body after it has been appended (its length is then known).
    pub(crate) fn patch(out: &mut [u8], start: usize, msg_type: MessageType, msg_id: MsgId) {
        let header = FrameHeader {
            msg_type,
            msg_id,
            body_len: out.len().saturating_sub(start + HEADER_LEN),
        };
        if let Some(h) = out
            .get_mut(start..start + HEADER_LEN)
            .and_then(|s| <&mut [u8; HEADER_LEN]>::try_from(s).ok())
        {
            header.write(h);
        }
    }

    /// Writes the 24 header bytes.
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        out[2] = VERSION;
        out[3] = self.msg_type.byte();
        out[4..20].copy_from_slice(&self.msg_id.0);
        out[20..24].copy_from_slice(&(self.body_len as u32).to_be_bytes());
    }
}

/// A whole frame: correlation id plus one message (its type is implied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Correlation id.
    pub msg_id: MsgId,
    /// The message.
    pub message: Message,
}

impl Frame {
    /// A frame.
    pub fn new(msg_id: MsgId, message: Message) -> Self {
        Frame { msg_id, message }
    }

    /// Encodes header and body into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.message.size_hint());
        self.encode_into(&mut out);
        out
    }

    /// Appends header and body to `out` (byte fields as byte strings).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; HEADER_LEN]);
        encode::message_body(&self.message, out);
        FrameHeader::patch(out, start, self.message.message_type(), self.msg_id);
    }

    /// Decodes one whole frame with the default limits.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with(bytes, &DecodeLimits::default())
    }

    /// Decodes one whole frame: `bytes` must be exactly header + body.
    #[inline]
    pub fn decode_with(bytes: &[u8], limits: &DecodeLimits) -> Result<Self, DecodeError> {
        let header = FrameHeader::parse(bytes, limits.max_body_len)?;
        let rest = &bytes[HEADER_LEN..];
        if rest.len() < header.body_len {
            return Err(DecodeError::TruncatedBody {
                declared: header.body_len,
                present: rest.len(),
            });
        }
        if rest.len() > header.body_len {
            return Err(DecodeError::BytesAfterFrame {
                extra: rest.len() - header.body_len,
            });
        }
        decode::frame_body(header.msg_id, header.msg_type, rest, limits)
    }

    /// Decodes a frame that must be a request (a server's input).
    pub fn decode_request(bytes: &[u8], limits: &DecodeLimits) -> Result<Self, DecodeError> {
        Self::check_direction(bytes, false)?;
        Self::decode_with(bytes, limits)
    }

    /// Decodes a frame that must be a response (a client's input).
    pub fn decode_response(bytes: &[u8], limits: &DecodeLimits) -> Result<Self, DecodeError> {
        Self::check_direction(bytes, true)?;
        Self::decode_with(bytes, limits)
    }

    #[inline]
    fn check_direction(bytes: &[u8], want_response: bool) -> Result<(), DecodeError> {
        let kind = |r: bool| if r { "response" } else { "request" };
        if let Some(&b) = bytes.get(3) {
            if let Ok(t) = MessageType::from_byte(b) {
                if t.is_response() != want_response {
                    return Err(DecodeError::WrongDirection {
                        found: b,
                        found_kind: kind(t.is_response()),
                        expected_kind: kind(want_response),
                    });
                }
            }
        }
        Ok(())
    }
}

impl Message {
    /// The type byte this message travels under.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Ping(_) => MessageType::Ping,
            Message::Pong(_) => MessageType::Pong,
            Message::Store(_) => MessageType::Store,
            Message::StoreAck(_) => MessageType::StoreAck,
            Message::FindNode(_) => MessageType::FindNode,
            Message::FindNodeResult(_) => MessageType::FindNodeResult,
            Message::FindValue(_) => MessageType::FindValue,
            Message::FindValueResult(_) => MessageType::FindValueResult,
        }
    }

    /// A capacity that holds the encoded body in one allocation (an
    /// estimate: large fields exactly, fixed overhead generously).
    pub fn size_hint(&self) -> usize {
        let descriptor = encode::descriptor_size_hint;
        fn addr(a: &super::message::NodeAddr) -> usize {
            40 + a.protocol_bytes().len() + a.address_bytes().len()
        }
        fn nodes(ns: &[super::message::NodeInfo]) -> usize {
            ns.iter()
                .map(|n| encode::node_size_hint(&n.addr))
                .sum::<usize>()
                + 16
        }
        use super::message::FindValueResult;
        match self {
            Message::Ping(m) => 80 + addr(&m.sender_addr),
            Message::Pong(m) => 100 + addr(&m.sender_addr) + addr(&m.observed_addr),
            Message::Store(m) => 100 + addr(&m.sender_addr) + descriptor(&m.descriptor),
            Message::StoreAck(m) => 24 + m.reason.as_ref().map_or(0, |r| r.len() + 16),
            Message::FindNode(m) => 140 + addr(&m.sender_addr),
            Message::FindNodeResult(m) => nodes(&m.nodes),
            Message::FindValue(m) => 260 + addr(&m.sender_addr),
            Message::FindValueResult(FindValueResult::Nodes(ns)) => nodes(ns),
            Message::FindValueResult(FindValueResult::Descriptors(ds)) => {
                ds.iter().map(descriptor).sum::<usize>() + 24
            }
        }
    }

    /// Appends the CBOR body alone.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        encode::message_body(self, out)
    }

    /// Decodes a CBOR body of the given type.
    pub fn decode_body(
        msg_type: MessageType,
        body: &[u8],
        limits: &DecodeLimits,
    ) -> Result<Self, DecodeError> {
        if body.len() > limits.max_body_len {
            return Err(DecodeError::BodyTooLarge {
                declared: body.len() as u64,
                max: limits.max_body_len,
            });
        }
        decode::frame_body(MsgId::default(), msg_type, body, limits).map(|f| f.message)
    }
}
