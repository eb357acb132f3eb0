//! The numeric rules of descriptor validation (WIRE.md, "Descriptor").

/// Largest payload, in bytes.
pub const MAX_PAYLOAD_LEN: usize = 65_536;
/// Longest topic, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;
/// Fewest routing keys.
pub const MIN_ROUTING_KEYS: usize = 1;
/// Most routing keys.
pub const MAX_ROUTING_KEYS: usize = 8;
/// Shortest TTL, in seconds.
pub const MIN_TTL_SECS: u32 = 60;
/// Longest TTL, in seconds (24 h).
pub const MAX_TTL_SECS: u32 = 86_400;
/// Default TTL, in seconds (1 h).
pub const DEFAULT_TTL_SECS: u32 = 3_600;
/// How far in the future a timestamp may be, in seconds (clock skew).
pub const MAX_CLOCK_SKEW_SECS: u64 = 120;
