//! Admission control for the public side of a host: which connection
//! attempts are accepted, sent a QUIC Retry or refused, and which complete
//! requests go on to the node or are refused as rate limited.
//!
//! Everything here is bounded: connection counts by the connections that
//! exist, rate tables by [`HostConfig::max_tracked_ips`] and
//! [`HostConfig::max_tracked_identities`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use quinn_proto::ConnectionHandle;

use super::config::HostConfig;
use super::peer_ip::PeerIp;
use super::rate_limit::RateLimiter;
use crate::identity::Identity;
use crate::node::Refusal;

/// What to do with a new inbound connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Start the handshake.
    Accept,
    /// Answer with a Retry: the client must prove it receives at its address.
    Retry,
    /// Refuse: the host holds `max_connections` connections.
    RefuseTotal,
    /// Refuse: this source IP holds `max_connections_per_ip` connections.
    RefusePerIp,
}

/// Connection counts and request rates, per source and per identity.
#[derive(Debug)]
pub(super) struct Admission {
    max_connections: usize,
    max_connections_per_ip: usize,
    handshakes_before_retry: usize,
    /// Inbound connections per source IP (IPv6: per /64).
    per_ip: BTreeMap<PeerIp, usize>,
    /// Each inbound connection's source, to release its count.
    inbound: BTreeMap<ConnectionHandle, PeerIp>,
    /// Inbound connections still in their handshake.
    handshaking: BTreeSet<ConnectionHandle>,
    requests_per_ip: Option<RateLimiter<PeerIp>>,
    requests_per_identity: Option<RateLimiter<Identity>>,
}

impl Admission {
    pub(super) fn new(config: &HostConfig) -> Self {
        Admission {
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
            handshakes_before_retry: config.handshakes_before_retry,
            per_ip: BTreeMap::new(),
            inbound: BTreeMap::new(),
            handshaking: BTreeSet::new(),
            requests_per_ip: config
                .requests_per_ip
                .map(|l| RateLimiter::new(l, config.max_tracked_ips)),
            requests_per_identity: config
                .requests_per_identity
                .map(|l| RateLimiter::new(l, config.max_tracked_identities)),
        }
    }

    /// Decides on a connection attempt from `remote` while the host holds
    /// `connections`. `validated`: the client has proved its address (it
    /// came back with our Retry token).
    ///
    /// The Retry comes first: it is stateless, so a flood of Initials from
    /// spoofed addresses gets nothing else, and allocates nothing.
    pub(super) fn connection(
        &self,
        remote: SocketAddr,
        validated: bool,
        connections: usize,
    ) -> Admit {
        if !validated && self.handshaking.len() >= self.handshakes_before_retry {
            return Admit::Retry;
        }
        if connections >= self.max_connections {
            return Admit::RefuseTotal;
        }
        let ip = PeerIp::of(remote.ip());
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_connections_per_ip {
            return Admit::RefusePerIp;
        }
        Admit::Accept
    }

    /// An inbound connection from `remote` was accepted: it counts against
    /// its IP and as a handshake in progress.
    pub(super) fn accepted(&mut self, ch: ConnectionHandle, remote: SocketAddr) {
        let ip = PeerIp::of(remote.ip());
        *self.per_ip.entry(ip).or_insert(0) += 1;
        self.inbound.insert(ch, ip);
        self.handshaking.insert(ch);
    }

    /// The connection's handshake is over (completed or failed).
    pub(super) fn handshake_over(&mut self, ch: ConnectionHandle) {
        self.handshaking.remove(&ch);
    }

    /// Whether `ch` is an inbound connection still handshaking.
    pub(super) fn is_handshaking(&self, ch: ConnectionHandle) -> bool {
        self.handshaking.contains(&ch)
    }

    /// The connection is gone: release what it held.
    pub(super) fn removed(&mut self, ch: ConnectionHandle) {
        self.handshaking.remove(&ch);
        if let Some(ip) = self.inbound.remove(&ch) {
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }

    /// Inbound handshakes in progress.
    pub(super) fn handshakes(&self) -> usize {
        self.handshaking.len()
    }

    /// Whether a complete request from `identity` at `remote` may reach the
    /// node at `now`. Both buckets must allow it, and only an admitted
    /// request is charged: a peer over its rate still gets `per_second`
    /// requests through, whatever it sends.
    pub(super) fn request(
        &mut self,
        remote: IpAddr,
        identity: Identity,
        now: Instant,
    ) -> Result<(), Refusal> {
        let ip = PeerIp::of(remote);
        if let Some(l) = self.requests_per_ip.as_mut() {
            if !l.allows(ip, now) {
                return Err(Refusal::RateLimitedByIp {
                    ip: ip.addr(),
                    prefix_len: if ip.addr().is_ipv4() { 32 } else { 64 },
                });
            }
        }
        if let Some(l) = self.requests_per_identity.as_mut() {
            if !l.allows(identity, now) {
                return Err(Refusal::RateLimitedByIdentity);
            }
            l.spend(identity, now);
        }
        if let Some(l) = self.requests_per_ip.as_mut() {
            l.spend(ip, now);
        }
        Ok(())
    }

    /// Source IPs and identities whose request rate is tracked now.
    pub(super) fn tracked(&self) -> (usize, usize) {
        (
            self.requests_per_ip.as_ref().map_or(0, |l| l.len()),
            self.requests_per_identity.as_ref().map_or(0, |l| l.len()),
        )
    }

    /// Rate buckets still in debt evicted to make room for new keys.
    pub(super) fn evicted(&self) -> u64 {
        self.requests_per_ip.as_ref().map_or(0, |l| l.evicted())
            + self
                .requests_per_identity
                .as_ref()
                .map_or(0, |l| l.evicted())
    }
}
