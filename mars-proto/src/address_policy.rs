//! Which advertised addresses a node is willing to dial or hand out.
//!
//! Peers tell us addresses (`sender_addr`, FIND_NODE results); dialing them
//! blindly lets anyone aim our node at a private network, at itself, or at
//! addresses no one can reach, and handing them out spreads the damage
//! (WIRE.md, "How the live network behaves": short-lived clients advertise
//! undialable addresses such as port 0 on purpose). A node checks every
//! address with an [`AddressPolicy`] before it dials it or stores it.
//!
//! Only literal `ip:port` / `[ipv6]:port` addresses with protocol `"quic"`
//! pass: a node must not resolve names (a DNS lookup is IO the core does not
//! do, and a name lets a peer redirect us at will). An IPv4-mapped IPv6
//! address (`[::ffff:a.b.c.d]:p`) is judged, and returned, as the IPv4
//! address inside, so it cannot smuggle a private IPv4 past the policy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

use crate::wire::NodeAddr;

/// Which address ranges a node accepts on top of the always-valid public
/// unicast ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Private-use ranges: 10/8, 172.16/12, 192.168/16, CGN 100.64/10,
    /// ULA fc00::/7.
    allow_private: bool,
    /// 127/8 and ::1.
    allow_loopback: bool,
    /// 169.254/16 and fe80::/10.
    allow_link_local: bool,
}

impl AddressPolicy {
    /// For a node on the public mesh: public unicast addresses only, since
    /// a private or loopback address advertised there is either a mistake
    /// or an attempt to aim us at someone's internal network.
    pub const fn public() -> Self {
        AddressPolicy {
            allow_private: false,
            allow_loopback: false,
            allow_link_local: false,
        }
    }

    /// For tests, the simulator and private deployments: everything except
    /// the addresses nothing can dial (unspecified, multicast, broadcast,
    /// port 0, interface-scoped).
    pub const fn permissive() -> Self {
        AddressPolicy {
            allow_private: true,
            allow_loopback: true,
            allow_link_local: true,
        }
    }

    /// This policy with private-use ranges (RFC 1918, CGN, ULA) allowed or
    /// not, for a mesh inside one organisation's network.
    pub const fn allow_private(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    /// This policy with loopback allowed or not, for several nodes on one
    /// host.
    pub const fn allow_loopback(mut self, allow: bool) -> Self {
        self.allow_loopback = allow;
        self
    }

    /// This policy with link-local addresses allowed or not.
    pub const fn allow_link_local(mut self, allow: bool) -> Self {
        self.allow_link_local = allow;
        self
    }

    /// The socket address to dial for `addr`, or why it must not be
    /// dialed.
    pub fn check(&self, addr: &NodeAddr) -> Result<SocketAddr, AddressRefusal> {
        if !addr.is_quic() {
            return Err(AddressRefusal::UnsupportedProtocol {
                protocol: addr.protocol().to_owned(),
                address: addr.address().to_owned(),
            });
        }
        // Nodes check every address they are told of (K per FIND_NODE
        // answer); plain IPv4 ones, nearly all of them, skip the general
        // parser.
        if let Some(sock) = parse_ipv4_socket(addr.address_bytes()) {
            if sock.port() != 0 {
                if let Some(ok) = self.admits(&sock) {
                    return Ok(ok);
                }
            }
        }
        let address = addr.address();
        let sock = match address.parse::<SocketAddr>() {
            Ok(sock) => sock,
            Err(_) => return Err(classify_unparsed(address)),
        };
        let sock = match sock {
            SocketAddr::V6(v6) if v6.scope_id() != 0 => {
                return Err(AddressRefusal::Scoped {
                    address: address.to_owned(),
                });
            }
            // An IPv4-mapped IPv6 address is the IPv4 address inside.
            SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
                None => sock,
            },
            SocketAddr::V4(_) => sock,
        };
        if sock.port() == 0 {
            return Err(AddressRefusal::PortZero {
                address: address.to_owned(),
            });
        }
        let range = match sock.ip() {
            IpAddr::V4(ip) => classify_v4(ip),
            IpAddr::V6(ip) => classify_v6(ip),
        };
        let address = address.to_owned();
        Err(match range {
            Range::Public => return Ok(sock),
            Range::Loopback if self.allow_loopback => return Ok(sock),
            Range::Private | Range::Shared | Range::UniqueLocal if self.allow_private => {
                return Ok(sock);
            }
            Range::LinkLocal if self.allow_link_local => return Ok(sock),
            Range::Unspecified => AddressRefusal::Unspecified { address },
            Range::Multicast => AddressRefusal::Multicast { address },
            Range::Broadcast => AddressRefusal::Broadcast { address },
            Range::Loopback => AddressRefusal::Loopback { address },
            Range::Private => AddressRefusal::Private { address },
            Range::Shared => AddressRefusal::SharedAddressSpace { address },
            Range::UniqueLocal => AddressRefusal::UniqueLocal { address },
            Range::LinkLocal => AddressRefusal::LinkLocal { address },
        })
    }
}

impl AddressPolicy {
    /// `Some(sock)` when `sock` (port not 0, not scoped, not a mapped
    /// IPv6) is in a range this policy admits; `None` to let the full
    /// check decide.
    fn admits(&self, sock: &SocketAddr) -> Option<SocketAddr> {
        let range = match sock.ip() {
            IpAddr::V4(ip) => classify_v4(ip),
            IpAddr::V6(ip) => classify_v6(ip),
        };
        let ok = match range {
            Range::Public => true,
            Range::Loopback => self.allow_loopback,
            Range::Private | Range::Shared | Range::UniqueLocal => self.allow_private,
            Range::LinkLocal => self.allow_link_local,
            _ => false,
        };
        ok.then_some(*sock)
    }
}

/// `a.b.c.d:port` exactly as `SocketAddr`'s parser reads it (octets of one
/// to three digits without a leading zero, at most 255; a port of any
/// number of digits up to 65535), or `None` for anything else, which the
/// general parser then reads or refuses. Proved equal to the general
/// parser on random and edge-case input in the tests.
fn parse_ipv4_socket(b: &[u8]) -> Option<SocketAddr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u32 = 0;
        while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
            v = v * 10 + u32::from(d - b'0');
            i += 1;
            if i - start > 3 {
                return None;
            }
        }
        let digits = i - start;
        if digits == 0 || v > 255 || (digits > 1 && b.get(start) == Some(&b'0')) {
            return None;
        }
        *octet = v as u8;
    }
    if b.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    let start = i;
    let mut port: u32 = 0;
    while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
        port = port * 10 + u32::from(d - b'0');
        if port > u32::from(u16::MAX) {
            return None;
        }
        i += 1;
    }
    if i == start || i != b.len() {
        return None;
    }
    Some(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(octets)),
        port as u16,
    ))
}

impl Default for AddressPolicy {
    /// The safe choice: [`AddressPolicy::public`].
    fn default() -> Self {
        Self::public()
    }
}

/// Why an advertised address was refused. Each names the address (quoted,
/// as received) and what to advertise instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressRefusal {
    /// The protocol is not `"quic"`, the only transport MARS defines.
    #[error("address {address:?} has protocol {protocol:?}; only \"quic\" is supported")]
    UnsupportedProtocol {
        /// The protocol received.
        protocol: String,
        /// The address received.
        address: String,
    },
    /// A host name: nodes never resolve names.
    #[error(
        "address {address:?} is a DNS name; nodes do not resolve names, advertise an IP literal such as 203.0.113.7:4433"
    )]
    DnsName {
        /// The address received.
        address: String,
    },
    /// An IP literal with no port.
    #[error("address {address:?} has no port; expected ip:port or [ipv6]:port")]
    MissingPort {
        /// The address received.
        address: String,
    },
    /// Neither an IP literal with a port nor a host name.
    #[error("address {address:?} is not ip:port or [ipv6]:port")]
    Malformed {
        /// The address received.
        address: String,
    },
    /// Port 0 cannot be dialed (short-lived clients advertise it on purpose).
    #[error("address {address:?} has port 0, which cannot be dialed")]
    PortZero {
        /// The address received.
        address: String,
    },
    /// 0.0.0.0/8 or `::`: a wildcard, not a destination.
    #[error("address {address:?} is unspecified (0.0.0.0/8 or ::), not a destination")]
    Unspecified {
        /// The address received.
        address: String,
    },
    /// 224/4 or ff00::/8: a group, not a node.
    #[error("address {address:?} is multicast, not a node")]
    Multicast {
        /// The address received.
        address: String,
    },
    /// 255.255.255.255: every host on a link.
    #[error("address {address:?} is the broadcast address, not a node")]
    Broadcast {
        /// The address received.
        address: String,
    },
    /// An IPv6 address with an interface scope (`%n`), which only means
    /// something on the host that wrote it.
    #[error("address {address:?} carries an interface scope, meaningless to anyone else")]
    Scoped {
        /// The address received.
        address: String,
    },
    /// 127/8 or ::1: would make us dial ourselves.
    #[error("address {address:?} is loopback; this policy refuses it")]
    Loopback {
        /// The address received.
        address: String,
    },
    /// RFC 1918 private ranges: 10/8, 172.16/12, 192.168/16.
    #[error("address {address:?} is in a private range (RFC 1918); this policy refuses it")]
    Private {
        /// The address received.
        address: String,
    },
    /// 100.64/10, carrier-grade NAT shared space (RFC 6598).
    #[error("address {address:?} is in the CGN shared range 100.64/10; this policy refuses it")]
    SharedAddressSpace {
        /// The address received.
        address: String,
    },
    /// fc00::/7, IPv6 unique local addresses (RFC 4193).
    #[error(
        "address {address:?} is an IPv6 unique local address (fc00::/7); this policy refuses it"
    )]
    UniqueLocal {
        /// The address received.
        address: String,
    },
    /// 169.254/16 or fe80::/10: valid on one link only.
    #[error("address {address:?} is link-local; this policy refuses it")]
    LinkLocal {
        /// The address received.
        address: String,
    },
}

/// The class of an IP address, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    Public,
    Unspecified,
    Multicast,
    Broadcast,
    Loopback,
    Private,
    Shared,
    UniqueLocal,
    LinkLocal,
}

fn classify_v4(ip: Ipv4Addr) -> Range {
    let [a, b, ..] = ip.octets();
    if a == 0 {
        Range::Unspecified
    } else if ip.is_broadcast() {
        Range::Broadcast
    } else if ip.is_multicast() {
        Range::Multicast
    } else if ip.is_loopback() {
        Range::Loopback
    } else if ip.is_private() {
        Range::Private
    } else if a == 100 && (b & 0xc0) == 64 {
        Range::Shared
    } else if ip.is_link_local() {
        Range::LinkLocal
    } else {
        Range::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> Range {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Range::Unspecified
    } else if ip.is_multicast() {
        Range::Multicast
    } else if ip.is_loopback() {
        Range::Loopback
    } else if (first & 0xfe00) == 0xfc00 {
        Range::UniqueLocal
    } else if (first & 0xffc0) == 0xfe80 {
        Range::LinkLocal
    } else {
        Range::Public
    }
}

/// Why a string that is not a socket address literal was refused: a host
/// name with a port gets its own reason, since that is the likely mistake.
fn classify_unparsed(address: &str) -> AddressRefusal {
    let address_owned = address.to_owned();
    if address.parse::<IpAddr>().is_ok()
        || address
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .is_some_and(|s| s.parse::<Ipv6Addr>().is_ok())
    {
        return AddressRefusal::MissingPort {
            address: address_owned,
        };
    }
    if let Some((host, port)) = address.rsplit_once(':') {
        let port_ok = !port.is_empty()
            && port.bytes().all(|c| c.is_ascii_digit())
            && port.parse::<u16>().is_ok();
        if port_ok && is_host_name(host) {
            return AddressRefusal::DnsName {
                address: address_owned,
            };
        }
    } else if is_host_name(address) {
        return AddressRefusal::DnsName {
            address: address_owned,
        };
    }
    AddressRefusal::Malformed {
        address: address_owned,
    }
}

/// An RFC 1123 host name whose last label is not all digits (so a bad IPv4
/// literal such as `01.2.3.4` is malformed, not a name).
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    };
    host.split('.').all(label_ok)
        && host
            .rsplit('.')
            .next()
            .is_some_and(|tld| !tld.bytes().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv4 fast path accepts only what `SocketAddr`'s parser accepts,
    /// with the same value, and takes every plain `a.b.c.d:port`.
    #[test]
    fn ipv4_fast_path_agrees_with_the_standard_parser() {
        let check = |s: &str| {
            if let Some(fast) = parse_ipv4_socket(s.as_bytes()) {
                assert_eq!(s.parse::<SocketAddr>().ok(), Some(fast), "{s:?}");
            }
        };
        // Every string up to 6 characters over the relevant alphabet.
        let alphabet = b"0129.:";
        let mut buf = Vec::new();
        fn all(buf: &mut Vec<u8>, alphabet: &[u8], left: usize, check: &dyn Fn(&str)) {
            check(std::str::from_utf8(buf).unwrap());
            if left == 0 {
                return;
            }
            for &c in alphabet {
                buf.push(c);
                all(buf, alphabet, left - 1, check);
                buf.pop();
            }
        }
        all(&mut buf, alphabet, 6, &check);
        // Edge cases, and random ones from a fixed generator.
        for s in [
            "1.2.3.4:5",
            "255.255.255.255:65535",
            "256.1.1.1:1",
            "1.2.3.4:65536",
            "01.2.3.4:1",
            "0.0.0.0:0",
            "1.2.3.4:00004433",
            "1.2.3:4",
            "1.2.3.4.5:6",
            "1.2.3.4:",
            ":1",
            "1.2.3.4:1 ",
            " 1.2.3.4:1",
            "1.2.3.4:+1",
            "1.2.3.4",
            "1000.2.3.4:1",
            "1.2.3.04:1",
            "10.0.39.17:4433",
            "[::1]:1",
            "1.2.3.4:-1",
        ] {
            check(s);
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            let mut s = String::new();
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(b"0123456789..::1a "[(x % 17) as usize] as char);
            }
            check(&s);
            x = x.wrapping_add(1);
        }
        for (o, p) in [
            ([10, 0, 39, 17], 4433),
            ([1, 2, 3, 4], 1),
            ([255; 4], 65535),
        ] {
            let s = format!("{}:{p}", Ipv4Addr::from(o));
            assert!(parse_ipv4_socket(s.as_bytes()).is_some(), "{s}");
        }
    }

    fn public(a: &str) -> Result<SocketAddr, AddressRefusal> {
        AddressPolicy::public().check(&NodeAddr::quic(a))
    }

    fn permissive(a: &str) -> Result<SocketAddr, AddressRefusal> {
        AddressPolicy::permissive().check(&NodeAddr::quic(a))
    }

    fn sock(a: &str) -> Result<SocketAddr, AddressRefusal> {
        Ok(a.parse().unwrap())
    }

    fn kind(r: Result<SocketAddr, AddressRefusal>) -> String {
        match r {
            Ok(s) => format!("ok {s}"),
            Err(e) => format!("{e:?}").split(' ').next().unwrap_or("").to_owned(),
        }
    }

    #[test]
    fn public_unicast_passes_both_policies() {
        for a in ["203.0.113.7:4433", "8.8.8.8:1", "[2001:4860::8888]:443"] {
            assert_eq!(public(a), sock(a));
            assert_eq!(permissive(a), sock(a));
        }
        // Edges just outside the refused ranges.
        for a in [
            "1.0.0.0:1",
            "9.255.255.255:1",
            "11.0.0.0:1",
            "172.15.255.255:1",
            "172.32.0.0:1",
            "192.167.255.255:1",
            "192.169.0.0:1",
            "100.63.255.255:1",
            "100.128.0.0:1",
            "169.253.255.255:1",
            "169.255.0.0:1",
            "126.255.255.255:1",
            "128.0.0.0:1",
            "223.255.255.255:1",
            "[fbff:ffff::1]:1",
            "[fe00::1]:1",
            "[fec0::1]:1",
            "[::2]:1",
        ] {
            assert!(public(a).is_ok(), "{a}: {:?}", public(a));
        }
    }

    #[test]
    fn each_private_range_refused_by_public_allowed_by_permissive() {
        let cases = [
            ("10.0.0.1:5", "Private"),
            ("10.255.255.255:5", "Private"),
            ("172.16.0.1:5", "Private"),
            ("172.31.255.255:5", "Private"),
            ("192.168.1.1:5", "Private"),
            ("100.64.0.1:5", "SharedAddressSpace"),
            ("100.127.255.255:5", "SharedAddressSpace"),
            ("127.0.0.1:5", "Loopback"),
            ("127.255.0.9:5", "Loopback"),
            ("[::1]:5", "Loopback"),
            ("169.254.1.1:5", "LinkLocal"),
            ("[fe80::1]:5", "LinkLocal"),
            ("[febf::1]:5", "LinkLocal"),
            ("[fc00::1]:5", "UniqueLocal"),
            ("[fdff::1]:5", "UniqueLocal"),
        ];
        for (a, want) in cases {
            assert_eq!(kind(public(a)), want, "{a}");
            assert_eq!(permissive(a), sock(a), "{a}");
        }
    }

    #[test]
    fn always_refused_even_by_permissive() {
        let cases = [
            ("0.0.0.0:5", "Unspecified"),
            ("0.1.2.3:5", "Unspecified"),
            ("[::]:5", "Unspecified"),
            ("224.0.0.1:5", "Multicast"),
            ("239.255.255.255:5", "Multicast"),
            ("[ff02::1]:5", "Multicast"),
            ("255.255.255.255:5", "Broadcast"),
            ("203.0.113.7:0", "PortZero"),
            ("[2001:db8::1]:0", "PortZero"),
            ("[fe80::1%3]:5", "Scoped"),
        ];
        for (a, want) in cases {
            assert_eq!(kind(public(a)), want, "{a}");
            assert_eq!(kind(permissive(a)), want, "{a}");
        }
    }

    #[test]
    fn ipv4_mapped_is_judged_as_ipv4() {
        assert_eq!(kind(public("[::ffff:10.0.0.1]:5")), "Private");
        assert_eq!(kind(public("[::ffff:127.0.0.1]:5")), "Loopback");
        assert_eq!(kind(permissive("[::ffff:0.0.0.0]:5")), "Unspecified");
        assert_eq!(public("[::ffff:203.0.113.7]:5"), sock("203.0.113.7:5"));
        assert_eq!(permissive("[::ffff:10.0.0.1]:5"), sock("10.0.0.1:5"));
    }

    #[test]
    fn names_and_garbage_refused_with_their_own_reasons() {
        for a in [
            "hub.example.com:4433",
            "localhost:4433",
            "a-b.c:1",
            "example.org",
        ] {
            assert_eq!(kind(permissive(a)), "DnsName", "{a}");
        }
        for a in ["203.0.113.7", "[2001:db8::1]", "::1"] {
            assert_eq!(kind(permissive(a)), "MissingPort", "{a}");
        }
        for a in [
            "",
            ":",
            "1.2.3.4:",
            "1.2.3.4:65536",
            "1.2.3.4:+80",
            "01.2.3.4:80",
            "1.2.3.4.5:80",
            "[::1:80",
            "host name:80",
            "-bad.example:80",
            "[fe80::1%eth0]:80",
            " 1.2.3.4:80",
            "1.2.3.4:80\n",
            "exa_mple.com:80",
        ] {
            assert_eq!(kind(permissive(a)), "Malformed", "{a:?}");
        }
    }

    #[test]
    fn only_quic() {
        let addr = NodeAddr::new("tcp", "203.0.113.7:4433");
        let err = AddressPolicy::permissive().check(&addr).unwrap_err();
        assert_eq!(
            err,
            AddressRefusal::UnsupportedProtocol {
                protocol: "tcp".to_owned(),
                address: "203.0.113.7:4433".to_owned()
            }
        );
        let upper = NodeAddr::new("QUIC", addr.address());
        assert!(AddressPolicy::permissive().check(&upper).is_err());
    }

    #[test]
    fn messages_name_the_address() {
        let e = public("10.1.2.3:9").unwrap_err();
        assert!(e.to_string().contains("\"10.1.2.3:9\""), "{e}");
        let e = public("hub.example.com:1").unwrap_err();
        assert!(e.to_string().contains("hub.example.com:1"), "{e}");
    }

    #[test]
    fn builder_flags_are_independent() {
        let p = AddressPolicy::public().allow_loopback(true);
        assert!(p.check(&NodeAddr::quic("127.0.0.1:9")).is_ok());
        assert!(p.check(&NodeAddr::quic("10.0.0.1:9")).is_err());
        assert!(p.check(&NodeAddr::quic("169.254.0.1:9")).is_err());
        let p = AddressPolicy::public().allow_private(true);
        assert!(p.check(&NodeAddr::quic("10.0.0.1:9")).is_ok());
        assert!(p.check(&NodeAddr::quic("100.64.0.1:9")).is_ok());
        assert!(p.check(&NodeAddr::quic("[fd00::1]:9")).is_ok());
        assert!(p.check(&NodeAddr::quic("127.0.0.1:9")).is_err());
        let p = AddressPolicy::public().allow_link_local(true);
        assert!(p.check(&NodeAddr::quic("[fe80::1]:9")).is_ok());
        assert!(p.check(&NodeAddr::quic("[::1]:9")).is_err());
        assert_eq!(AddressPolicy::default(), AddressPolicy::public());
        assert_eq!(
            AddressPolicy::public()
                .allow_private(true)
                .allow_loopback(true)
                .allow_link_local(true),
            AddressPolicy::permissive()
        );
    }
}
