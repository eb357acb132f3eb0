//! Host settings: the node's configuration plus the transport's bounds.

use std::sync::Arc;
use std::time::Duration;

use quinn_proto::{IdleTimeout, TransportConfig, VarInt};

pub use super::rate_limit::RateLimit;
use crate::config::Config;
use crate::wire::{HEADER_LEN, MAX_BODY_LEN};

/// How a [`Host`](super::Host) behaves.
///
/// The defaults are those of a hub on the public mesh: every limit on what
/// one peer may cost is on. Per-IP limits count an IPv4 address, or an IPv6
/// /64 (one host usually owns a whole /64, and could otherwise take a fresh
/// address per connection); an IPv4-mapped IPv6 address counts as its IPv4
/// address.
///
/// What one peer may hold at once, with the defaults: 32 connections per IP
/// ([`max_connections_per_ip`](Self::max_connections_per_ip)) × 100 streams
/// per connection ([`max_streams`](Self::max_streams)) = 3,200 requests in
/// flight from one IP; and at most
/// [`connection_buffer`](Self::connection_buffer) bytes of partial frames
/// per connection.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The node's configuration.
    pub node: Config,
    /// Most QUIC connections at once (inbound and outbound). Beyond it,
    /// new inbound connections are refused and dials fail as unreachable.
    pub max_connections: usize,
    /// Most inbound connections from one source IP (IPv6: one /64) at once;
    /// beyond it that IP's new connections are refused (QUIC
    /// CONNECTION_REFUSED), and counted. Default 32: a machine running a few
    /// agents and CLI calls, or a small NAT, fits; one address cannot take
    /// the host's [`max_connections`](Self::max_connections).
    pub max_connections_per_ip: usize,
    /// Inbound requests per source IP (IPv6: per /64), checked when a
    /// request frame is complete, before the node sees it. Over the rate, the
    /// request's stream is reset with code 0x05 (rate limited). `None`: no
    /// limit. Default 200/s, bursts of 400: twice the per-identity rate, so
    /// a few identities behind one address (a NAT, a host running several
    /// agents) are not throttled by each other at ordinary rates.
    pub requests_per_ip: Option<RateLimit>,
    /// Inbound requests per peer identity (the certificate's key), checked
    /// like [`requests_per_ip`](Self::requests_per_ip). `None`: no limit.
    /// Default 100/s, bursts of 200: far above what a client or a peer's
    /// lookups send (a lookup keeps α = 3 requests in flight), with room for
    /// a peer hub replicating a batch of STOREs.
    pub requests_per_identity: Option<RateLimit>,
    /// Most source IPs whose request rate is tracked at once. Only buckets
    /// below full are kept (a full bucket is the same as none), so this
    /// bounds the IPs sending *at the same time*; when it is reached, the
    /// fullest bucket is forgotten (see `rate_limit.rs` for why the fullest
    /// and not the least recently used). Default 16,384 (about 2 MB).
    pub max_tracked_ips: usize,
    /// Most identities whose request rate is tracked at once; as
    /// [`max_tracked_ips`](Self::max_tracked_ips). Default 16,384.
    pub max_tracked_identities: usize,
    /// Inbound handshakes in progress at which address validation starts:
    /// from then on, a new connection attempt from an address not yet
    /// validated is answered with a QUIC Retry, and only a client that comes
    /// back with the Retry's token (proving it receives at its source
    /// address) is given connection state. A flood of Initials from spoofed
    /// addresses then costs one stateless packet each, and can no longer
    /// fill [`max_connections`](Self::max_connections) with handshakes that
    /// will never complete. A client pays one round trip more. 0: always
    /// Retry; `usize::MAX`: never. Default 64 (a handshake takes about one
    /// round trip, so about 600 new connections/s on 100 ms paths before
    /// anyone is asked to Retry).
    pub handshakes_before_retry: usize,
    /// A connection with no request in flight for this long is closed (QUIC
    /// keep-alives would otherwise hold it open forever).
    pub idle_close: Duration,
    /// Most bytes of partly received frames held per connection. A peer
    /// that sends more is not read further until some of its frames
    /// complete (flow control then stalls it, and only it).
    pub connection_buffer: usize,
    /// Most informational host events (connections, refusals) waiting in
    /// `poll_event`; beyond it they are dropped and counted.
    pub max_events: usize,
    /// QUIC max idle timeout (WIRE.md: 30 s).
    pub max_idle_timeout: Duration,
    /// QUIC keep-alive interval (WIRE.md: 10 s).
    pub keep_alive: Duration,
    /// Concurrent bidirectional streams the peer may open on one connection
    /// (WIRE.md: 100): the QUIC transport parameter, so quinn enforces it
    /// per connection — the peer gets no credit for more, and a peer that
    /// opens more anyway is closed with STREAM_LIMIT_ERROR. One peer's total
    /// is this × its connections, at most
    /// [`max_connections_per_ip`](Self::max_connections_per_ip) from one IP.
    pub max_streams: u32,
    /// Most datagrams [`poll_transmit`](super::Host::poll_transmit) may put
    /// in one buffer for segmentation offload (GSO). 1 (the default) means
    /// one datagram per transmit; a driver whose socket does GSO sets its
    /// limit here.
    pub max_segments: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            node: Config::default(),
            max_connections: 4096,
            max_connections_per_ip: 32,
            requests_per_ip: Some(RateLimit {
                per_second: 200,
                burst: 400,
            }),
            requests_per_identity: Some(RateLimit {
                per_second: 100,
                burst: 200,
            }),
            max_tracked_ips: 16_384,
            max_tracked_identities: 16_384,
            handshakes_before_retry: 64,
            idle_close: Duration::from_secs(60),
            connection_buffer: 8 << 20,
            max_events: 4096,
            max_idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(10),
            max_streams: 100,
            max_segments: 1,
        }
    }
}

impl HostConfig {
    /// A host around `node`, with the transport defaults.
    pub fn with_node(node: Config) -> Self {
        HostConfig {
            node,
            ..HostConfig::default()
        }
    }

    /// The QUIC transport settings of WIRE.md, "Transport".
    pub(super) fn transport(&self) -> Arc<TransportConfig> {
        let mut t = TransportConfig::default();
        let idle_ms = u32::try_from(self.max_idle_timeout.as_millis()).unwrap_or(u32::MAX);
        t.max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(idle_ms))));
        t.keep_alive_interval(Some(self.keep_alive));
        t.max_concurrent_bidi_streams(VarInt::from_u32(self.max_streams));
        t.max_concurrent_uni_streams(VarInt::from_u32(0));
        // One stream carries one frame: its window is the largest frame
        // (the "1 MB per stream" of the reference settings).
        let frame = u32::try_from(HEADER_LEN + MAX_BODY_LEN).unwrap_or(u32::MAX);
        t.stream_receive_window(VarInt::from_u32(frame));
        t.receive_window(VarInt::from_u32(
            u32::try_from(self.connection_buffer)
                .unwrap_or(u32::MAX)
                .max(frame),
        ));
        t.initial_rtt(Duration::from_millis(100));
        Arc::new(t)
    }
}
