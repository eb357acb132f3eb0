//! Host settings: the node's configuration plus the transport's bounds.

use std::sync::Arc;
use std::time::Duration;

use quinn_proto::{IdleTimeout, TransportConfig, VarInt};

use crate::config::Config;
use crate::wire::{HEADER_LEN, MAX_BODY_LEN};

/// How a [`Host`](super::Host) behaves.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The node's configuration.
    pub node: Config,
    /// Most QUIC connections at once (inbound and outbound). Beyond it,
    /// new inbound connections are refused and dials fail as unreachable.
    pub max_connections: usize,
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
    /// Concurrent bidirectional streams the peer may open (WIRE.md: 100).
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
