//! The QUIC host: a [`Node`] composed with a `quinn_proto::Endpoint` into one
//! Sans-IO state machine — datagrams in, datagrams out (DESIGN.md, "QUIC
//! host"; WIRE.md, "Transport").
//!
//! # Contract
//!
//! Like the [`Node`] and quinn-proto underneath it, a `Host` performs no IO
//! and reads no clock. The driver owns one UDP socket and one timer:
//!
//! 1. For every datagram received, call [`handle_datagram`](Host::handle_datagram).
//!    Several may go in before the drain below: the requests they complete
//!    are answered together at the next `poll_*` call, their STOREs'
//!    signatures verified as one batch ([`Node::handle_requests`]).
//! 2. After *any* call, drain [`poll_transmit`](Host::poll_transmit) until
//!    `None` and send each datagram; then drain [`poll_event`](Host::poll_event).
//! 3. Arm the timer at [`poll_timeout`](Host::poll_timeout); when it fires,
//!    call [`handle_timeout`](Host::handle_timeout) (an early or extra call
//!    is harmless). Then drain again.
//! 4. Node commands (bootstrap, publish, discover, ping, revoke …) go
//!    through [`command`](Host::command), whose closure receives the node
//!    and the current [`Timestamp`]; results come back as
//!    `HostEvent::Node(Event::QueryDone { .. })`.
//!
//! Time is a monotonic [`Instant`] (what quinn-proto needs), never going
//! backwards between calls. The node's wall-clock [`Timestamp`]s are derived
//! from it through the [`TimeAnchor`] given at construction: one place where
//! the driver reads both clocks once.
//!
//! What the host does for the node: mutual TLS with a self-signed
//! certificate made from the node's Ed25519 key ([`tls`]); the peer's
//! identity from its certificate's parsed SPKI; ALPN `mesh/0`; one request
//! per bidirectional stream (write, finish; read until finish, never more
//! than the header's declared frame, which is capped at 1 MiB); an
//! `expect`ed identity checked against the certificate before a request is
//! sent (a mismatch is reported as [`TransportError::IdentityMismatch`]);
//! refused requests reset with the [`RefusalCode`](crate::node::RefusalCode)
//! as the QUIC application error code, the connection staying open; one
//! outbound connection per peer address, reused for every request and closed after
//! [`HostConfig::idle_close`] without requests. Our requests go only over
//! connections we dialled: the reference implementation never accepts
//! streams on a connection it opened, so a request sent back over a peer's
//! inbound connection would go unanswered.
//!
//! Abuse limits, for a host on the public mesh (all in [`HostConfig`], on
//! by default, counted in [`HostStats`]): connections per source IP beside
//! the total; streams per connection (a QUIC transport parameter); request
//! rates per source IP and per identity, checked when a request frame is
//! complete and before the node sees it, a request over either rate being
//! refused like the node's own refusals (reset with code 0x05, a
//! [`HostEvent::Refused`]); and, while many inbound handshakes are in
//! progress, a QUIC Retry for every connection attempt from an address not
//! yet validated, so spoofed source addresses cannot make the host allocate
//! connection state. Per-IP limits count an IPv6 peer by its /64.
//!
//! Randomness: the endpoint's own generator is seeded with the host's seed,
//! but quinn-proto draws connection ids from its thread-local generator
//! (OS-seeded), and TLS draws its own randomness from the operating system
//! (through ring), as it must, and so does quinn for its stateless-reset and
//! Retry-token keys: a secret that could be recomputed from the seed would
//! let anyone forge Retry tokens. quinn's only wall-clock reads (stamping and
//! checking those tokens) go through a clock driven by the host's `now`.

mod admission;
mod config;
mod conn;
mod frame_buf;
mod peer_ip;
mod rate_limit;
pub mod tls;
mod token_clock;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use quinn_proto::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn_proto::{
    ClientConfig, ConnectionHandle, DatagramEvent, Endpoint, EndpointConfig, ServerConfig, StreamId,
};

pub use config::{HostConfig, RateLimit};
pub use tls::{CertificateError, TlsSetupError};

use crate::identity::{Identity, Keypair};
use crate::node::{
    Event, InboundRequest, Node, Outcome, PeerInfo, Refusal, Response, TransportError,
};
use crate::time::Timestamp;
use crate::wire::NodeAddr;
use admission::{Admission, Admit};
use conn::{Action, Conn, OutReq};
use token_clock::TokenClock;

/// Pairs a monotonic instant with the wall-clock time at that instant:
/// node time = `unix` + (now − `instant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeAnchor {
    /// A monotonic instant.
    pub instant: Instant,
    /// Microseconds since the Unix epoch at `instant`.
    pub unix: Timestamp,
}

/// Names a [`Host::send_raw`] request; its answer is [`HostEvent::Response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RawRequestId(pub u64);

/// Who is waiting for an outbound request's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Node(crate::node::RequestId),
    Raw(RawRequestId),
}

/// A datagram to send: its bytes are in the buffer given to
/// [`Host::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// How many bytes of the buffer.
    pub size: usize,
    /// With [`HostConfig::max_segments`] above 1: the buffer holds several
    /// datagrams of this size (the last may be shorter), for a socket with
    /// segmentation offload. `None`: one datagram.
    pub segment_size: Option<usize>,
}

/// A response to a raw request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// The responder's identity, from its certificate.
    pub peer: Identity,
    /// The whole response frame, as received (not decoded).
    pub frame: Vec<u8>,
}

/// What the host tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// Something the node said (query results, peers, stored descriptors).
    Node(Event),
    /// The answer to a [`Host::send_raw`] request.
    Response {
        /// The request.
        id: RawRequestId,
        /// The response frame, or why there is none.
        result: Result<RawResponse, TransportError>,
    },
    /// An inbound request was refused and its stream reset.
    Refused {
        /// Where it came from.
        addr: SocketAddr,
        /// Who sent it (TLS identity).
        peer: Identity,
        /// Why; `refusal.code()` is the reset code.
        refusal: Refusal,
    },
    /// A connection completed its handshake.
    Connected {
        /// The peer's address.
        addr: SocketAddr,
        /// Its identity, from its certificate.
        peer: Identity,
        /// Whether the peer dialled us.
        inbound: bool,
    },
    /// The storage engine could not make its writes durable (a disk
    /// error): what was acknowledged since the last flush may be lost in a
    /// power failure (not in a process crash). The operator must look.
    StorageFailed {
        /// What the engine said.
        error: crate::store::StoreError,
    },
    /// A connection closed or failed (handshake failures included).
    ConnectionClosed {
        /// The peer's address.
        addr: SocketAddr,
        /// Its identity, if the handshake got that far.
        peer: Option<Identity>,
        /// Why.
        reason: String,
    },
}

/// Counters, for metrics and tests. Every field only grows.
///
/// Requests the node itself refused (malformed, too large, sender
/// mismatch …) are also counted by reason in the node's
/// [`NodeStats`](crate::node::NodeStats); the rate-limit refusals below
/// never reach the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Datagrams handed to `handle_datagram`.
    pub datagrams_in: u64,
    /// Datagrams returned by `poll_transmit`.
    pub datagrams_out: u64,
    /// Inbound connections accepted (their handshake started).
    pub accepted: u64,
    /// Inbound connections refused, for any reason: the sum of
    /// `refused_connections_over_total_limit`,
    /// `refused_connections_over_ip_limit` and `failed_accepts`.
    pub refused_connections: u64,
    /// Inbound connections refused because the host held
    /// [`HostConfig::max_connections`] connections.
    pub refused_connections_over_total_limit: u64,
    /// Inbound connections refused because their source IP (IPv6: /64)
    /// held [`HostConfig::max_connections_per_ip`] connections.
    pub refused_connections_over_ip_limit: u64,
    /// Inbound connection attempts accepted by the limits whose handshake
    /// then could not start (a stale or undecryptable Initial, connection
    /// ids exhausted …).
    pub failed_accepts: u64,
    /// QUIC Retry packets sent: connection attempts asked to prove their
    /// source address because [`HostConfig::handshakes_before_retry`]
    /// handshakes were in progress.
    pub retries_sent: u64,
    /// Outbound connections started.
    pub dialled: u64,
    /// Inbound requests answered.
    pub requests_answered: u64,
    /// Batches of admitted requests handed to the node together (see
    /// [`Node::handle_requests`]): the requests the node answered or
    /// refused, divided by this, is the mean batch size.
    pub request_batches: u64,
    /// Inbound requests refused with a stream reset, for any reason (the
    /// node's refusals and the two rate limits below).
    pub requests_refused: u64,
    /// Inbound requests refused (code 0x05) because their source IP
    /// (IPv6: /64) was over [`HostConfig::requests_per_ip`].
    pub requests_rate_limited_by_ip: u64,
    /// Inbound requests refused (code 0x05) because their sender's identity
    /// was over [`HostConfig::requests_per_identity`].
    pub requests_rate_limited_by_identity: u64,
    /// Request-rate buckets still below full forgotten to make room for a
    /// new source IP or identity ([`HostConfig::max_tracked_ips`],
    /// [`HostConfig::max_tracked_identities`]). Steady growth means the
    /// tables are too small for the traffic, or a flood of sources.
    pub rate_buckets_evicted: u64,
    /// Informational events dropped because the queue was full.
    pub events_dropped: u64,
    /// Times the storage engine failed to make its writes durable.
    pub storage_flush_failures: u64,
}

/// Most endpoint-level datagrams (stateless resets, version negotiation,
/// refusals) waiting to be sent; beyond it they are dropped, as UDP would.
const MAX_ENDPOINT_RESPONSES: usize = 256;

/// A MARS node on QUIC, Sans-IO. See the [module documentation](self).
#[derive(Debug)]
pub struct Host {
    config: HostConfig,
    endpoint: Endpoint,
    server: Arc<ServerConfig>,
    client: ClientConfig,
    conns: BTreeMap<ConnectionHandle, Conn>,
    by_addr: BTreeMap<SocketAddr, ConnectionHandle>,
    /// Connections that may have datagrams to send.
    dirty: BTreeSet<ConnectionHandle>,
    /// Each connection's next deadline (QUIC timers, idle close), so a
    /// wake-up costs O(log n), not a scan of every connection.
    timers: BTreeSet<(Instant, ConnectionHandle)>,
    node: Node,
    anchor: TimeAnchor,
    now: Instant,
    responses: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<HostEvent>,
    next_raw: u64,
    /// Raw requests waiting for an answer, by deadline.
    raw_deadlines: BTreeSet<(Instant, RawRequestId)>,
    raw_pending: BTreeMap<RawRequestId, Instant>,
    stats: HostStats,
    scratch: Vec<u8>,
    /// Connection and request limits per source IP and identity.
    admission: Admission,
    /// The wall clock quinn stamps Retry tokens with, driven by `now`.
    clock: TokenClock,
    /// Admitted requests read since the last poll, answered together so
    /// the node can verify their STOREs' signatures as one batch.
    unanswered: Vec<Unanswered>,
}

/// Most requests answered in one batch: a full batch is answered at once,
/// a partial one at the next `poll_*` call (before any datagram leaves, so
/// batching adds no latency).
const MAX_REQUEST_BATCH: usize = 64;

/// A request admitted by the limits, waiting for its batch.
#[derive(Debug)]
struct Unanswered {
    ch: ConnectionHandle,
    stream: StreamId,
    peer: PeerInfo,
    frame: Vec<u8>,
}

impl Host {
    /// A host for `keypair`, advertising `advertised` to peers, with the
    /// clocks paired by `anchor`, drawing its randomness from `seed`,
    /// storing descriptors in memory.
    pub fn new(
        config: HostConfig,
        keypair: Keypair,
        advertised: NodeAddr,
        anchor: TimeAnchor,
        seed: u64,
    ) -> Result<Self, TlsSetupError> {
        Self::with_store(
            config,
            keypair,
            advertised,
            anchor,
            seed,
            Box::new(crate::store::MemoryStore::new()),
        )
    }

    /// [`new`](Host::new) with another storage engine (the hub's LMDB).
    /// The host flushes it before every datagram it hands out, so a
    /// STORE_ACK never leaves before its descriptor is durable.
    pub fn with_store(
        config: HostConfig,
        keypair: Keypair,
        advertised: NodeAddr,
        anchor: TimeAnchor,
        seed: u64,
        store: crate::store::BoxedStore,
    ) -> Result<Self, TlsSetupError> {
        let (cert, key) = tls::self_signed_certificate(&keypair)?;
        let transport = config.transport();
        let server_tls = tls::server_config(cert.clone(), key.clone_key())?;
        let client_tls = tls::client_config(cert, key)?;
        let server_tls = QuicServerConfig::try_from(server_tls)
            .map_err(|e| TlsSetupError::Config(e.to_string()))?;
        let client_tls = QuicClientConfig::try_from(client_tls)
            .map_err(|e| TlsSetupError::Config(e.to_string()))?;
        let mut server = ServerConfig::with_crypto(Arc::new(server_tls));
        server.transport_config(Arc::clone(&transport));
        let clock = TokenClock::new(anchor.unix);
        server.time_source(Arc::new(clock.clone()));
        let server = Arc::new(server);
        let mut client = ClientConfig::new(Arc::new(client_tls));
        client.transport_config(transport);
        let mut rng_seed = [0u8; 32];
        let mut rng = crate::rng::Rng::new(seed ^ 0x5155_4943); // "QUIC"
        rng.fill(&mut rng_seed);
        let endpoint = Endpoint::new(
            Arc::new(EndpointConfig::default()),
            Some(Arc::clone(&server)),
            false,
            Some(rng_seed),
        );
        let node = Node::with_store(
            config.node.clone(),
            keypair,
            advertised,
            anchor.unix,
            seed,
            store,
        );
        let admission = Admission::new(&config);
        Ok(Host {
            config,
            endpoint,
            server,
            client,
            conns: BTreeMap::new(),
            by_addr: BTreeMap::new(),
            dirty: BTreeSet::new(),
            timers: BTreeSet::new(),
            node,
            anchor,
            now: anchor.instant,
            responses: VecDeque::new(),
            events: VecDeque::new(),
            next_raw: 0,
            raw_deadlines: BTreeSet::new(),
            raw_pending: BTreeMap::new(),
            stats: HostStats::default(),
            scratch: Vec::new(),
            admission,
            clock,
            unanswered: Vec::new(),
        })
    }

    /// This host's identity.
    pub fn identity(&self) -> Identity {
        self.node.identity()
    }

    /// The node (read-only); commands go through [`command`](Host::command).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Counters.
    pub fn stats(&self) -> &HostStats {
        &self.stats
    }

    /// Open connections (including ones still handshaking or closing).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Makes what the node's store committed durable (see
    /// [`Node::flush_storage`]); [`poll_transmit`](Host::poll_transmit)
    /// already does so before every datagram, a driver calls this once
    /// more when it stops.
    pub fn flush_storage(&mut self) -> Result<(), crate::store::StoreError> {
        self.node.flush_storage()
    }

    /// Stops accepting connections (the first step of a graceful
    /// shutdown): new handshakes get no answer beyond a stateless reset,
    /// while open connections keep being served.
    pub fn stop_accepting(&mut self) {
        self.endpoint.set_server_config(None);
    }

    /// Streams whose data the peer has not yet acknowledged, over every
    /// connection: while draining, 0 means every answer was delivered.
    pub fn responses_in_flight(&mut self) -> usize {
        self.conns
            .values_mut()
            .map(|c| c.quic.streams().send_streams())
            .sum()
    }

    /// Inbound connections still in their handshake (what
    /// [`HostConfig::handshakes_before_retry`] is compared with).
    pub fn handshakes_in_progress(&self) -> usize {
        self.admission.handshakes()
    }

    /// How many source IPs and identities have their request rate tracked
    /// now (bounded by [`HostConfig::max_tracked_ips`] and
    /// [`HostConfig::max_tracked_identities`]).
    pub fn rate_limited_sources(&self) -> (usize, usize) {
        self.admission.tracked()
    }

    /// The node's wall-clock time at `now`.
    pub fn timestamp(&self, now: Instant) -> Timestamp {
        self.anchor
            .unix
            .saturating_add(now.saturating_duration_since(self.anchor.instant))
    }

    fn instant_of(&self, t: Timestamp) -> Instant {
        self.anchor.instant + t.duration_since(self.anchor.unix)
    }

    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
            self.clock.set(self.timestamp(now));
        }
    }

    /// Runs a node command at `now`: `f` gets the node and the current
    /// timestamp. The requests it causes go out through `poll_transmit`.
    pub fn command<R>(&mut self, now: Instant, f: impl FnOnce(&mut Node, Timestamp) -> R) -> R {
        self.advance(now);
        let ts = self.timestamp(self.now);
        let r = f(&mut self.node, ts);
        self.pump_node();
        r
    }

    /// Sends `frame` as one request to `to` (checking its certificate is
    /// `expect`, when given), bypassing the node; the response frame comes
    /// back undecoded as [`HostEvent::Response`] — or
    /// [`TransportError::TimedOut`] after the node's `request_timeout`.
    /// For tools, load generators and tests.
    pub fn send_raw(
        &mut self,
        now: Instant,
        to: SocketAddr,
        expect: Option<Identity>,
        frame: Vec<u8>,
    ) -> RawRequestId {
        self.advance(now);
        self.next_raw += 1;
        let id = RawRequestId(self.next_raw);
        let deadline = self.now + self.config.node.request_timeout;
        self.raw_deadlines.insert((deadline, id));
        self.raw_pending.insert(id, deadline);
        self.dispatch(Origin::Raw(id), to, expect, frame);
        self.pump_node();
        id
    }

    /// Feeds one received UDP datagram.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.advance(now);
        self.stats.datagrams_in += 1;
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let event = self.endpoint.handle(
            self.now,
            from,
            None,
            None,
            bytes::BytesMut::from(data),
            &mut buf,
        );
        match event {
            None => {}
            Some(DatagramEvent::ConnectionEvent(ch, ev)) => {
                if let Some(c) = self.conns.get_mut(&ch) {
                    c.quic.handle_event(ev);
                    self.process(ch);
                }
            }
            Some(DatagramEvent::Response(t)) => self.queue_response(t, &buf),
            Some(DatagramEvent::NewConnection(incoming)) => {
                self.incoming(incoming, &mut buf);
            }
        }
        self.scratch = buf;
        self.pump_node();
    }

    /// A connection attempt: accepted, asked to Retry, or refused
    /// ([`Admission::connection`] decides).
    fn incoming(&mut self, incoming: quinn_proto::Incoming, buf: &mut Vec<u8>) {
        let remote = incoming.remote_address();
        let validated = incoming.remote_address_validated();
        buf.clear();
        match self
            .admission
            .connection(remote, validated, self.conns.len())
        {
            Admit::Retry => match self.endpoint.retry(incoming, buf) {
                Ok(t) => {
                    self.stats.retries_sent += 1;
                    self.queue_response(t, buf);
                }
                // Not validated implies a Retry is allowed; should quinn
                // ever disagree, send nothing rather than allocate.
                Err(e) => self.endpoint.ignore(e.into_incoming()),
            },
            refusal @ (Admit::RefuseTotal | Admit::RefusePerIp) => {
                self.stats.refused_connections += 1;
                if refusal == Admit::RefuseTotal {
                    self.stats.refused_connections_over_total_limit += 1;
                } else {
                    self.stats.refused_connections_over_ip_limit += 1;
                }
                let t = self.endpoint.refuse(incoming, buf);
                self.queue_response(t, buf);
            }
            Admit::Accept => {
                match self
                    .endpoint
                    .accept(incoming, self.now, buf, Some(Arc::clone(&self.server)))
                {
                    Ok((ch, quic)) => {
                        self.stats.accepted += 1;
                        self.admission.accepted(ch, remote);
                        // Not reused for our own requests: a reference
                        // peer never accepts streams on connections it
                        // dialled, so they would go unanswered.
                        let c = Conn::new(quic, self.now);
                        self.conns.insert(ch, c);
                        self.process(ch);
                    }
                    Err(e) => {
                        self.stats.refused_connections += 1;
                        self.stats.failed_accepts += 1;
                        if let Some(t) = e.response {
                            self.queue_response(t, buf);
                        }
                    }
                }
            }
        }
    }

    fn queue_response(&mut self, t: quinn_proto::Transmit, buf: &[u8]) {
        if self.responses.len() < MAX_ENDPOINT_RESPONSES {
            let data = buf.get(..t.size).unwrap_or(buf).to_vec();
            self.responses.push_back((t.destination, data));
        }
    }

    /// The next datagram to send: its bytes are written to `buf` (cleared
    /// first). Drain until `None` after every call.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.answer_unanswered();
        self.pump_node();
        // Group commit: whatever the node stored since the last datagram
        // becomes durable before any acknowledgement of it can leave.
        if let Err(error) = self.node.flush_storage() {
            self.stats.storage_flush_failures += 1;
            self.push_event(HostEvent::StorageFailed { error });
        }
        if let Some((destination, data)) = self.responses.pop_front() {
            buf.clear();
            buf.extend_from_slice(&data);
            self.stats.datagrams_out += 1;
            return Some(Transmit {
                destination,
                size: data.len(),
                segment_size: None,
            });
        }
        while let Some(&ch) = self.dirty.first() {
            if let Some(c) = self.conns.get_mut(&ch) {
                buf.clear();
                let max = self.config.max_segments.max(1);
                if let Some(t) = c.quic.poll_transmit(self.now, max, buf) {
                    self.stats.datagrams_out += match t.segment_size {
                        Some(s) if s > 0 => t.size.div_ceil(s) as u64,
                        _ => 1,
                    };
                    // Sending arms loss-detection and idle timers.
                    self.refresh_timer(ch);
                    return Some(Transmit {
                        destination: t.destination,
                        size: t.size,
                        segment_size: t.segment_size,
                    });
                }
            }
            self.dirty.remove(&ch);
            // Sending may have produced events (and more to send).
            self.process_with(ch, false);
        }
        None
    }

    /// When [`handle_timeout`](Host::handle_timeout) is next needed.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.answer_unanswered();
        self.pump_node();
        if !self.dirty.is_empty() {
            // Answers (or anything else) waiting to be sent: drive again now.
            return Some(self.now);
        }
        let mut best = self.node.poll_timeout().map(|(t, _)| self.instant_of(t));
        if let Some(&(t, _)) = self.raw_deadlines.first() {
            if best.is_none_or(|b| t < b) {
                best = Some(t);
            }
        }
        if let Some(&(t, _)) = self.timers.first() {
            if best.is_none_or(|b| t < b) {
                best = Some(t);
            }
        }
        best
    }

    /// A connection's next deadline: its QUIC timers, or its idle close.
    fn refresh_timer(&mut self, ch: ConnectionHandle) {
        let Some(c) = self.conns.get_mut(&ch) else {
            return;
        };
        let mut t = c.quic.poll_timeout();
        if c.is_idle() && !c.closing {
            let idle = c.last_active + self.config.idle_close;
            t = Some(t.map_or(idle, |q| q.min(idle)));
        }
        if c.timer != t {
            if let Some(old) = c.timer {
                self.timers.remove(&(old, ch));
            }
            if let Some(new) = t {
                self.timers.insert((new, ch));
            }
            c.timer = t;
        }
    }

    /// Advances time: QUIC timers, idle connections, the node's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let now = self.now;
        while let Some(&(t, ch)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            let Some(c) = self.conns.get_mut(&ch) else {
                continue;
            };
            c.timer = None;
            if c.quic.poll_timeout().is_some_and(|q| q <= now) {
                c.quic.handle_timeout(now);
            }
            let idle = !c.closing && c.is_idle() && c.last_active + self.config.idle_close <= now;
            if idle {
                self.close_connection(ch, b"idle");
            } else {
                self.process(ch);
            }
        }
        while let Some(&(t, id)) = self.raw_deadlines.first() {
            if t > now {
                break;
            }
            self.raw_deadlines.pop_first();
            if self.raw_pending.remove(&id).is_some() {
                self.events.push_back(HostEvent::Response {
                    id,
                    result: Err(TransportError::TimedOut),
                });
            }
        }
        let ts = self.timestamp(now);
        if self.node.poll_timeout().is_some_and(|(t, _)| t <= ts) {
            self.node.handle_timeout(ts);
        }
        self.pump_node();
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<HostEvent> {
        self.answer_unanswered();
        self.pump_node();
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        self.node.poll_event().map(HostEvent::Node)
    }

    /// Closes every connection (for shutdown); keep driving until
    /// [`connections`](Host::connections) is 0 or a short grace period ends.
    pub fn close(&mut self, now: Instant) {
        self.advance(now);
        let all: Vec<ConnectionHandle> = self.conns.keys().copied().collect();
        for ch in all {
            self.close_connection(ch, b"shutdown");
        }
    }

    fn close_connection(&mut self, ch: ConnectionHandle, reason: &'static [u8]) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&ch) else {
            return;
        };
        if !c.closing {
            c.quic.close(
                now,
                quinn_proto::VarInt::from_u32(0),
                bytes::Bytes::from_static(reason),
            );
            let mut actions = Vec::new();
            c.on_lost(
                format!("closed locally: {}", String::from_utf8_lossy(reason)),
                &mut actions,
            );
            if self.by_addr.get(&c.remote) == Some(&ch) {
                self.by_addr.remove(&c.remote);
            }
            self.apply(ch, actions);
        }
        self.dirty.insert(ch);
        self.process(ch);
    }

    // ------------------------------------------------------------ internals

    /// Moves the node's outbound requests onto connections.
    fn pump_node(&mut self) {
        while let Some(req) = self.node.poll_request() {
            match req.to.address().parse::<SocketAddr>() {
                Ok(to) => self.dispatch(Origin::Node(req.id), to, req.expect, req.frame),
                Err(_) => {
                    let e = TransportError::Unreachable(format!(
                        "{} is not an ip:port address",
                        req.to.address()
                    ));
                    self.deliver(Origin::Node(req.id), Err(e));
                }
            }
        }
    }

    /// Queues a request on the connection to `to`, dialling it if needed.
    fn dispatch(
        &mut self,
        origin: Origin,
        to: SocketAddr,
        expect: Option<Identity>,
        frame: Vec<u8>,
    ) {
        let req = OutReq {
            origin,
            expect,
            frame,
        };
        if let Some(&ch) = self.by_addr.get(&to) {
            if let Some(c) = self.conns.get_mut(&ch) {
                if !c.closing {
                    c.waiting.push_back(req);
                    let mut actions = Vec::new();
                    c.open_streams(self.now, &mut actions);
                    self.apply(ch, actions);
                    self.dirty.insert(ch);
                    self.refresh_timer(ch);
                    return;
                }
            }
        }
        if self.conns.len() >= self.config.max_connections {
            let e = TransportError::Unreachable(format!(
                "{to}: connection limit of {} reached",
                self.config.max_connections
            ));
            self.deliver(origin, Err(e));
            return;
        }
        match self
            .endpoint
            .connect(self.now, self.client.clone(), to, tls::SERVER_NAME)
        {
            Ok((ch, quic)) => {
                self.stats.dialled += 1;
                let mut c = Conn::new(quic, self.now);
                c.waiting.push_back(req);
                self.conns.insert(ch, c);
                self.by_addr.insert(to, ch);
                self.dirty.insert(ch);
                self.process(ch);
            }
            Err(e) => self.deliver(
                origin,
                Err(TransportError::Unreachable(format!("{to}: {e}"))),
            ),
        }
    }

    /// Drains a connection's events and carries out what they ask; the
    /// connection may then have datagrams to send (acknowledgements at
    /// least).
    fn process(&mut self, ch: ConnectionHandle) {
        self.process_with(ch, true);
    }

    fn process_with(&mut self, ch: ConnectionHandle, touched: bool) {
        let Some(c) = self.conns.get_mut(&ch) else {
            return;
        };
        let mut actions = Vec::new();
        let (progress, drained) = c.drive(
            &mut self.endpoint,
            ch,
            self.now,
            self.config.connection_buffer,
            &mut actions,
        );
        if drained {
            self.admission.removed(ch);
            if let Some(mut c) = self.conns.remove(&ch) {
                if let Some(t) = c.timer {
                    self.timers.remove(&(t, ch));
                }
                c.on_lost("connection drained".to_owned(), &mut actions);
                if self.by_addr.get(&c.remote) == Some(&ch) {
                    self.by_addr.remove(&c.remote);
                }
            }
            self.dirty.remove(&ch);
        } else if touched || progress || !actions.is_empty() {
            self.dirty.insert(ch);
        }
        if let Some(c) = self.conns.get(&ch) {
            if c.closing && self.by_addr.get(&c.remote) == Some(&ch) {
                self.by_addr.remove(&c.remote);
            }
            if (c.established || c.closing) && self.admission.is_handshaking(ch) {
                self.admission.handshake_over(ch);
            }
        }
        self.apply(ch, actions);
        self.refresh_timer(ch);
    }

    fn apply(&mut self, ch: ConnectionHandle, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Done { origin, result } => self.deliver(origin, result),
                Action::Event(e) => self.push_event(e),
                Action::Request { stream, frame } => self.answer(ch, stream, frame),
            }
        }
    }

    /// Admits an inbound request (the rate limits) and queues it for the
    /// node's next batch; a refused one is reset here.
    fn answer(&mut self, ch: ConnectionHandle, stream: StreamId, frame: Vec<u8>) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&ch) else {
            return;
        };
        let Some(identity) = c.peer else {
            c.refuse(stream, 0, now);
            return;
        };
        let addr = c.remote;
        // The current path's address: after a (validated) migration, the
        // peer's requests count against where they now come from.
        let source = c.quic.remote_address().ip();
        if let Err(refusal) = self.admission.request(source, identity, now) {
            self.stats.requests_refused += 1;
            match refusal {
                Refusal::RateLimitedByIp { .. } => self.stats.requests_rate_limited_by_ip += 1,
                _ => self.stats.requests_rate_limited_by_identity += 1,
            }
            self.stats.rate_buckets_evicted = self.admission.evicted();
            c.refuse(stream, refusal.code().code(), now);
            self.push_event(HostEvent::Refused {
                addr,
                peer: identity,
                refusal,
            });
            self.dirty.insert(ch);
            self.refresh_timer(ch);
            return;
        }
        self.stats.rate_buckets_evicted = self.admission.evicted();
        let peer = PeerInfo {
            identity,
            addr: NodeAddr::quic(addr.to_string()),
        };
        self.unanswered.push(Unanswered {
            ch,
            stream,
            peer,
            frame,
        });
        if self.unanswered.len() >= MAX_REQUEST_BATCH {
            self.answer_unanswered();
        }
    }

    /// Hands the admitted requests to the node as one batch and writes its
    /// answers (a connection closed meanwhile has nobody left to answer).
    fn answer_unanswered(&mut self) {
        if self.unanswered.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.unanswered);
        self.stats.request_batches += 1;
        let ts = self.timestamp(self.now);
        let outcomes = {
            let requests: Vec<InboundRequest<'_>> = batch
                .iter()
                .map(|u| InboundRequest {
                    peer: &u.peer,
                    frame: &u.frame,
                })
                .collect();
            self.node.handle_requests(ts, &requests)
        };
        let now = self.now;
        for (u, outcome) in batch.into_iter().zip(outcomes) {
            let Some(c) = self.conns.get_mut(&u.ch) else {
                continue;
            };
            let addr = c.remote;
            match outcome {
                Outcome::Respond(response) => {
                    self.stats.requests_answered += 1;
                    c.respond(u.stream, response, now);
                }
                Outcome::Refuse(refusal) => {
                    self.stats.requests_refused += 1;
                    c.refuse(u.stream, refusal.code().code(), now);
                    self.push_event(HostEvent::Refused {
                        addr,
                        peer: u.peer.identity,
                        refusal,
                    });
                }
            }
            self.dirty.insert(u.ch);
            self.refresh_timer(u.ch);
        }
    }

    fn deliver(&mut self, origin: Origin, result: Result<(Identity, Vec<u8>), TransportError>) {
        match origin {
            Origin::Node(id) => {
                let ts = self.timestamp(self.now);
                match &result {
                    Ok((peer, frame)) => {
                        self.node
                            .handle_response(ts, id, Ok(Response { peer: *peer, frame }))
                    }
                    Err(e) => self.node.handle_response(ts, id, Err(e.clone())),
                }
            }
            Origin::Raw(id) => {
                // Answered once: a late answer after the timeout is dropped.
                if let Some(deadline) = self.raw_pending.remove(&id) {
                    self.raw_deadlines.remove(&(deadline, id));
                    self.events.push_back(HostEvent::Response {
                        id,
                        result: result.map(|(peer, frame)| RawResponse { peer, frame }),
                    });
                }
            }
        }
    }

    fn push_event(&mut self, e: HostEvent) {
        if self.events.len() >= self.config.max_events {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(e);
    }
}
