//! How a request is refused: a STORE_ACK for STOREs, a stream reset with a
//! documented application error code for everything else (WIRE.md,
//! "Refusing a request").

use crate::wire::DecodeError;

/// QUIC application error codes used to reset a refused request's stream.
/// The numbers are part of our public contract: peers and operators see them.
///
/// | code | meaning |
/// |---|---|
/// | 0x01 | malformed request (does not decode) |
/// | 0x02 | body over the 1 MiB cap |
/// | 0x03 | `sender` is not the connection's TLS identity |
/// | 0x04 | not a request (a response type, or an unknown type) |
/// | 0x05 | rate limited (the QUIC host's per-IP or per-identity request rate) |
/// | 0x06 | busy (a bound was reached) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u64)]
pub enum RefusalCode {
    /// 0x01
    Malformed = 0x01,
    /// 0x02
    TooLarge = 0x02,
    /// 0x03
    SenderMismatch = 0x03,
    /// 0x04
    NotARequest = 0x04,
    /// 0x05
    RateLimited = 0x05,
    /// 0x06
    Busy = 0x06,
}

impl RefusalCode {
    /// The QUIC application error code.
    pub const fn code(self) -> u64 {
        self as u64
    }
}

/// Why a request got no response frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The frame did not decode.
    #[error("malformed request: {0}")]
    Malformed(DecodeError),
    /// The request's `sender` is not who the connection authenticated.
    #[error("sender {claimed} is not the authenticated peer {authenticated}")]
    SenderMismatch {
        /// What the request said.
        claimed: crate::Identity,
        /// What TLS said.
        authenticated: crate::Identity,
    },
    /// A response type (or unknown type) arrived as a request.
    #[error("message type 0x{0:02x} is not a request")]
    NotARequest(u8),
    /// The requester exceeded its request rate (a limit of the node's own).
    #[error("rate limited")]
    RateLimited,
    /// The requests from the sender's source address exceeded their rate
    /// (the QUIC host's per-IP limit, counted per IPv4 address or per IPv6
    /// /64).
    #[error("rate limited: requests from {ip}/{prefix_len} over their rate")]
    RateLimitedByIp {
        /// The address counted: the IPv4 address, or the /64's network address.
        ip: std::net::IpAddr,
        /// 32 for IPv4, 64 for IPv6.
        prefix_len: u8,
    },
    /// The requests from the sender's identity exceeded their rate (the
    /// QUIC host's per-identity limit).
    #[error("rate limited: requests from this identity over their rate")]
    RateLimitedByIdentity,
}

impl Refusal {
    /// The stream-reset code for this refusal.
    pub fn code(&self) -> RefusalCode {
        match self {
            Refusal::Malformed(DecodeError::BodyTooLarge { .. }) => RefusalCode::TooLarge,
            Refusal::Malformed(DecodeError::WrongDirection { .. })
            | Refusal::Malformed(DecodeError::UnknownMessageType { .. })
            | Refusal::NotARequest(_) => RefusalCode::NotARequest,
            Refusal::Malformed(_) => RefusalCode::Malformed,
            Refusal::SenderMismatch { .. } => RefusalCode::SenderMismatch,
            Refusal::RateLimited
            | Refusal::RateLimitedByIp { .. }
            | Refusal::RateLimitedByIdentity => RefusalCode::RateLimited,
        }
    }
}

/// What to do with an inbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Write this response frame and finish the stream.
    Respond(Vec<u8>),
    /// Reset the stream with `refusal.code()`; log the reason.
    Refuse(Refusal),
}
