//! The unit per-IP limits count in: one IPv4 address, or one IPv6 /64.
//!
//! An IPv6 host is usually given a whole /64 (SLAAC, privacy addresses, a
//! home or cloud subnet), so it can draw a fresh source address for every
//! connection; limits kept per IPv6 address would be no limits at all. The
//! /64 is the smallest prefix a single host can be assumed not to share.
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket
//! reports for IPv4 peers) count as the IPv4 address they carry: masked to
//! /64, they would put every IPv4 peer in one bucket.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// A source address as per-IP limits see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct PeerIp(IpAddr);

impl PeerIp {
    /// The bucket `ip` belongs to.
    pub(super) fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => PeerIp(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                PeerIp(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }

    /// The bucket's address: the IPv4 address, or the /64's network address.
    pub(super) fn addr(self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for PeerIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_is_bucketed_by_its_64_and_mapped_ipv4_by_its_address() {
        assert_eq!(
            PeerIp::of(ip("2001:db8:1:2:aaaa::1")),
            PeerIp::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            PeerIp::of(ip("2001:db8:1:2::1")),
            PeerIp::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            PeerIp::of(ip("2001:db8:1:2:aaaa::1")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            PeerIp::of(ip("::ffff:192.0.2.7")),
            PeerIp::of(ip("192.0.2.7"))
        );
        assert_ne!(
            PeerIp::of(ip("::ffff:192.0.2.7")),
            PeerIp::of(ip("::ffff:192.0.2.8"))
        );
        assert_ne!(PeerIp::of(ip("192.0.2.7")), PeerIp::of(ip("192.0.2.8")));
        assert_eq!(PeerIp::of(ip("192.0.2.7")).to_string(), "192.0.2.7");
    }
}
