//! Bounds applied while decoding, before anything is allocated.

/// The body cap from the spec: 1 MiB (WIRE.md, "Transport").
pub const MAX_BODY_LEN: usize = 1 << 20;

/// Bounds for decoding one frame. The defaults are the protocol's; a caller
/// decoding a FIND_VALUE_RESULT sets `max_descriptors` to the `max_results`
/// it asked for, so a peer cannot answer with more than was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest body accepted (default 1 MiB).
    pub max_body_len: usize,
    /// Most `NodeInfo`s in a result (default K = 20).
    pub max_nodes: usize,
    /// Most descriptors in a FIND_VALUE_RESULT (default 20, the reference
    /// server's clamp).
    pub max_descriptors: usize,
    /// Most routing keys in one descriptor (default 8).
    pub max_routing_keys: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_body_len: MAX_BODY_LEN,
            max_nodes: 20,
            max_descriptors: 20,
            max_routing_keys: 8,
        }
    }
}

/// Longest `NodeAddr.protocol` accepted ("quic" today).
pub const MAX_PROTOCOL_LEN: usize = 16;
/// Longest `NodeAddr.address`: a 253-byte DNS name plus brackets and port.
pub const MAX_ADDRESS_LEN: usize = 262;
/// Longest STORE_ACK `reason` accepted from a peer.
pub const MAX_REASON_LEN: usize = 1024;
