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
/// It is 32 bytes (two `String`s were 48); cloning never allocates.
#[derive(Clone)]
pub struct NodeAddr(Repr);

/// QUIC addresses up to this many bytes are stored inline: every IPv4
/// `a.b.c.d:port` (at most 21) and IPv6 ones such as
/// `[2001:db8:85a3::8a2e]:4433`; anything else is shared.
const QUIC_INLINE: usize = 30;

/// The representation is canonical (inline exactly when the protocol is
/// "quic" and the address fits, unused inline bytes zero), and equality,
/// order and hashing are those of the (protocol, address) strings.
#[derive(Clone)]
enum Repr {
    /// Protocol "quic", the address inline (the tag, the length and the
    /// bytes make 32).
    Quic { len: u8, buf: [u8; QUIC_INLINE] },
    /// Any other protocol or a long address: protocol and address
    /// concatenated, split after `protocol_len` bytes.
    Shared { protocol_len: usize, text: Arc<str> },
}

impl NodeAddr {
    /// An address with any `protocol`; the protocol in use is "quic"
    /// ([`NodeAddr::quic`]).
    pub fn new(protocol: &str, address: &str) -> Self {
        let b = address.as_bytes();
        if protocol == "quic" {
            let mut buf = [0u8; QUIC_INLINE];
            if let (Some(dst), Ok(len)) = (buf.get_mut(..b.len()), u8::try_from(b.len())) {
                dst.copy_from_slice(b);
                return NodeAddr(Repr::Quic { len, buf });
            }
        }
        let mut text = String::with_capacity(protocol.len() + address.len());
        text.push_str(protocol);
        text.push_str(address);
        NodeAddr(Repr::Shared {
            protocol_len: protocol.len(),
            text: Arc::from(text),
        })
    }

    /// A QUIC address: `host:port`, IPv6 hosts in brackets.
    pub fn quic(address: impl AsRef<str>) -> Self {
        NodeAddr::new("quic", address.as_ref())
    }

    /// The transport protocol; "quic" is the only one in use.
    pub fn protocol(&self) -> &str {
        match &self.0 {
            Repr::Quic { .. } => "quic",
            Repr::Shared { protocol_len, text } => text.get(..*protocol_len).unwrap_or_default(),
        }
    }

    /// `host:port`, IPv6 hosts in brackets.
    pub fn address(&self) -> &str {
        match &self.0 {
            // Always valid: the bytes were copied from a `str` whole.
            Repr::Quic { .. } => std::str::from_utf8(self.address_bytes()).unwrap_or_default(),
            Repr::Shared { protocol_len, text } => text.get(*protocol_len..).unwrap_or_default(),
        }
    }

    /// Whether the protocol is "quic".
    pub fn is_quic(&self) -> bool {
        self.protocol_bytes() == b"quic"
    }

    /// The protocol's UTF-8 bytes, for the encoder (no validation needed).
    pub(crate) fn protocol_bytes(&self) -> &[u8] {
        self.protocol().as_bytes()
    }

    /// The address's UTF-8 bytes, for the encoder (no validation needed).
    pub(crate) fn address_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Quic { len, buf } => buf.get(..usize::from(*len)).unwrap_or_default(),
            Repr::Shared { .. } => self.address().as_bytes(),
        }
    }

    fn parts(&self) -> (&[u8], &[u8]) {
        (self.protocol_bytes(), self.address_bytes())
    }
}

impl PartialEq for NodeAddr {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for NodeAddr {}

impl PartialOrd for NodeAddr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// By protocol, then address, as strings (the order of the two fields).
impl Ord for NodeAddr {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl Hash for NodeAddr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (p, a) = self.parts();
        p.hash(state);
        a.hash(state);
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
        assert_eq!(std::mem::size_of::<NodeAddr>(), 32);
    }

    #[test]
    fn inline_exactly_when_quic_and_short() {
        let fits = "[2001:db8:85a3::8a2e:37]:4433";
        assert!(fits.len() <= QUIC_INLINE);
        assert!(matches!(NodeAddr::quic(fits).0, Repr::Quic { .. }));
        let long = format!("{fits}00");
        assert!(matches!(NodeAddr::quic(&long).0, Repr::Shared { .. }));
        assert!(matches!(NodeAddr::new("tcp", "a:1").0, Repr::Shared { .. }));
        // Where the split falls matters: ("ab", "c") is not ("a", "bc").
        assert_ne!(NodeAddr::new("ab", "c"), NodeAddr::new("a", "bc"));
        assert!(NodeAddr::new("a", "bc") < NodeAddr::new("ab", "c"));
    }
}
