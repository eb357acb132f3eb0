//! [`NodeAddr`]: how to reach a node, held so that copying it is cheap.
//!
//! Addresses are the most copied data in the node: every FIND_NODE answer
//! lists K of them, every lookup candidate and routing-table entry carries
//! one. As two heap `String`s each copy was two allocations and two reads
//! of cold heap memory (measured in mars-sim: ~20 % of a 10,000-node run
//! was `memcpy` of address strings in FIND_NODE answers). Here each field is
//! stored inline when short — every IPv4 `ip:port` and short IPv6 ones —
//! and in a shared `Arc<str>` otherwise, so a copy never allocates and a
//! decoded address allocates only when it is long. On the wire
//! nothing changes: the encoding is the same CBOR text strings.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// How to reach a node: `{protocol: "quic", address: "host:port"}`.
///
/// Build one with [`NodeAddr::quic`] or [`NodeAddr::new`]; read it with
/// [`protocol`](NodeAddr::protocol) and [`address`](NodeAddr::address).
/// It is 48 bytes, as two `String`s were; cloning copies them and never
/// allocates.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    protocol: Text<PROTOCOL_INLINE>,
    address: Text<ADDRESS_INLINE>,
}

/// Protocol names up to this many bytes are stored inline ("quic" is 4).
const PROTOCOL_INLINE: usize = 22;
/// Addresses up to this many bytes are stored inline: every IPv4
/// `a.b.c.d:port` (at most 21) and short IPv6 ones such as
/// `[2001:db8::1]:4433`; longer ones are shared.
const ADDRESS_INLINE: usize = 22;

impl NodeAddr {
    /// An address with any `protocol`; the protocol in use is "quic"
    /// ([`NodeAddr::quic`]).
    pub fn new(protocol: &str, address: &str) -> Self {
        NodeAddr {
            protocol: Text::new(protocol),
            address: Text::new(address),
        }
    }

    /// A QUIC address: `host:port`, IPv6 hosts in brackets.
    pub fn quic(address: impl AsRef<str>) -> Self {
        NodeAddr::new("quic", address.as_ref())
    }

    /// The transport protocol; "quic" is the only one in use.
    pub fn protocol(&self) -> &str {
        self.protocol.as_str()
    }

    /// `host:port`, IPv6 hosts in brackets.
    pub fn address(&self) -> &str {
        self.address.as_str()
    }

    /// Whether the protocol is "quic".
    pub fn is_quic(&self) -> bool {
        self.protocol.as_bytes() == b"quic"
    }

    /// The protocol's UTF-8 bytes, for the encoder (no validation needed).
    pub(crate) fn protocol_bytes(&self) -> &[u8] {
        self.protocol.as_bytes()
    }

    /// The address's UTF-8 bytes, for the encoder (no validation needed).
    pub(crate) fn address_bytes(&self) -> &[u8] {
        self.address.as_bytes()
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.protocol(), self.address())
    }
}

impl fmt::Debug for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeAddr")
            .field("protocol", &self.protocol())
            .field("address", &self.address())
            .finish()
    }
}

/// A short immutable string: inline up to `N` bytes, shared beyond.
///
/// The representation is canonical (inline exactly when it fits, unused
/// inline bytes zero), and equality, order and hashing are those of the
/// bytes, so two `Text`s of the same string are equal however they were
/// made, and order as `str`s do.
#[derive(Clone)]
enum Text<const N: usize> {
    Inline { len: u8, buf: [u8; N] },
    Shared(Arc<str>),
}

impl<const N: usize> Text<N> {
    fn new(s: &str) -> Self {
        let b = s.as_bytes();
        let mut buf = [0u8; N];
        match (buf.get_mut(..b.len()), u8::try_from(b.len())) {
            (Some(dst), Ok(len)) => {
                dst.copy_from_slice(b);
                Text::Inline { len, buf }
            }
            _ => Text::Shared(Arc::from(s)),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Text::Inline { len, buf } => buf.get(..usize::from(*len)).unwrap_or_default(),
            Text::Shared(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Always valid: the bytes were copied from a `str` whole.
            Text::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            Text::Shared(s) => s,
        }
    }
}

impl<const N: usize> PartialEq for Text<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl<const N: usize> Eq for Text<N> {}

impl<const N: usize> PartialOrd for Text<N> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<const N: usize> Ord for Text<N> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl<const N: usize> Hash for Text<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_fields_read_back_and_compare_as_strings() {
        let long = format!("[{}]:4433", "2001:db8:85a3:8d3:1319:8a2e:370:7348");
        let cases = [
            ("quic".to_owned(), "10.0.0.1:4433".to_owned()),
            ("quic".to_owned(), "255.255.255.255:65535".to_owned()),
            ("quic".to_owned(), long.clone()),
            ("q".repeat(16), "a".repeat(262)),
            (String::new(), String::new()),
        ];
        for (p, a) in &cases {
            let (p, a) = (p.as_str(), a.as_str());
            let n = NodeAddr::new(p, a);
            assert_eq!((n.protocol(), n.address()), (p, a));
            assert_eq!(n.clone(), n);
            assert_eq!(n.is_quic(), p == "quic");
        }
        let mut sorted: Vec<NodeAddr> = ["b:1", "a:2", long.as_str(), "a:1"]
            .into_iter()
            .map(NodeAddr::quic)
            .collect();
        sorted.sort();
        let got: Vec<&str> = sorted.iter().map(NodeAddr::address).collect();
        assert_eq!(got, [long.as_str(), "a:1", "a:2", "b:1"]);
        assert_ne!(NodeAddr::quic("a:1"), NodeAddr::new("tcp", "a:1"));
    }

    #[test]
    fn display_and_debug_are_unchanged() {
        let a = NodeAddr::quic("10.0.0.1:4433");
        assert_eq!(a.to_string(), "quic://10.0.0.1:4433");
        assert_eq!(
            format!("{a:?}"),
            r#"NodeAddr { protocol: "quic", address: "10.0.0.1:4433" }"#
        );
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<NodeAddr>() <= 48);
    }
}
