//! Hosts paired in memory: datagrams passed by hand, virtual time that jumps
//! to the next wake-up (after quinn-proto's `tests/util.rs`). No sockets.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn_proto::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use super::*;
use crate::node::{QueryResult, RefusalCode};
use crate::wire::{Frame, FrameHeader, HEADER_LEN, Message, MessageType, MsgId, Ping};
use crate::{Config, DescriptorBuilder, schema};

const LATENCY: Duration = Duration::from_millis(5);

/// Anything that speaks datagrams on the virtual network.
trait Peer {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]);
    fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit>;
    fn poll_timeout(&mut self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
}

impl Peer for Host {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        Host::handle_datagram(self, now, from, data)
    }
    fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        Host::poll_transmit(self, buf)
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        Host::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Host::handle_timeout(self, now)
    }
}

/// A bare quinn-proto endpoint with one connection and custom TLS, to play
/// peers with bad certificates.
struct RawPeer {
    endpoint: Endpoint,
    conn: Option<(ConnectionHandle, quinn_proto::Connection)>,
    server: Option<Arc<ServerConfig>>,
    now: Instant,
    connected: bool,
    lost: Option<String>,
    /// The CONNECTION_CLOSE of a refused handshake.
    refusal: Option<(SocketAddr, Vec<u8>)>,
}

impl RawPeer {
    fn new(server: Option<Arc<ServerConfig>>, now: Instant) -> Self {
        RawPeer {
            endpoint: Endpoint::new(
                Arc::new(EndpointConfig::default()),
                server.clone(),
                false,
                Some([7; 32]),
            ),
            conn: None,
            server,
            now,
            connected: false,
            lost: None,
            refusal: None,
        }
    }

    fn connect(&mut self, client: ClientConfig, to: SocketAddr) {
        let (ch, c) = self
            .endpoint
            .connect(self.now, client, to, tls::SERVER_NAME)
            .unwrap();
        self.conn = Some((ch, c));
    }

    fn drive(&mut self) {
        let Some((ch, c)) = self.conn.as_mut() else {
            return;
        };
        while let Some(ev) = c.poll_endpoint_events() {
            if let Some(cev) = self.endpoint.handle_event(*ch, ev) {
                c.handle_event(cev);
            }
        }
        while let Some(ev) = c.poll() {
            match ev {
                quinn_proto::Event::Connected => self.connected = true,
                quinn_proto::Event::ConnectionLost { reason } => {
                    self.lost = Some(reason.to_string())
                }
                _ => {}
            }
        }
    }
}

impl Peer for RawPeer {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.now = now;
        let mut buf = Vec::new();
        match self
            .endpoint
            .handle(now, from, None, None, bytes::BytesMut::from(data), &mut buf)
        {
            Some(DatagramEvent::ConnectionEvent(_, ev)) => {
                if let Some((_, c)) = self.conn.as_mut() {
                    c.handle_event(ev);
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                match self
                    .endpoint
                    .accept(incoming, now, &mut buf, self.server.clone())
                {
                    Ok((ch, c)) => self.conn = Some((ch, c)),
                    Err(e) => {
                        self.lost = Some(e.cause.to_string());
                        if let Some(t) = e.response {
                            self.refusal = Some((t.destination, buf[..t.size].to_vec()));
                        }
                    }
                }
            }
            _ => {}
        }
        self.drive();
    }
    fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        if let Some((destination, data)) = self.refusal.take() {
            buf.clear();
            buf.extend_from_slice(&data);
            return Some(Transmit {
                destination,
                size: data.len(),
                segment_size: None,
            });
        }
        let now = self.now;
        let (_, c) = self.conn.as_mut()?;
        buf.clear();
        let t = c.poll_transmit(now, 1, buf)?;
        Some(Transmit {
            destination: t.destination,
            size: t.size,
            segment_size: None,
        })
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.conn.as_mut().and_then(|(_, c)| c.poll_timeout())
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Some((_, c)) = self.conn.as_mut() {
            c.handle_timeout(now);
        }
        self.drive();
    }
}

struct Net {
    now: Instant,
    peers: Vec<(SocketAddr, Box<dyn PeerAny>)>,
    /// (delivery time, from, to, bytes)
    wire: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    events: Vec<Vec<HostEvent>>,
}

/// `Peer` plus downcasting, so tests can reach the hosts.
trait PeerAny: Peer {
    fn as_host(&mut self) -> Option<&mut Host>;
    fn as_raw(&mut self) -> Option<&mut RawPeer>;
}
impl PeerAny for Host {
    fn as_host(&mut self) -> Option<&mut Host> {
        Some(self)
    }
    fn as_raw(&mut self) -> Option<&mut RawPeer> {
        None
    }
}
impl PeerAny for RawPeer {
    fn as_host(&mut self) -> Option<&mut Host> {
        None
    }
    fn as_raw(&mut self) -> Option<&mut RawPeer> {
        Some(self)
    }
}

fn start() -> Instant {
    // The one clock read of these tests: virtual time starts here.
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn anchor(now: Instant) -> TimeAnchor {
    TimeAnchor {
        instant: now,
        unix: Timestamp::from_secs(1_700_000_000),
    }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4000 + i as u16))
}

impl Net {
    fn new() -> Self {
        Net {
            now: start(),
            peers: Vec::new(),
            wire: VecDeque::new(),
            events: Vec::new(),
        }
    }

    fn add_host(&mut self, config: HostConfig) -> usize {
        let a = addr(self.peers.len());
        self.add_host_at(config, a)
    }

    /// A host at `a` (another IP than the default 127.0.0.1, say).
    fn add_host_at(&mut self, config: HostConfig, a: SocketAddr) -> usize {
        let i = self.peers.len();
        let key = Keypair::from_secret_bytes(&[i as u8 + 1; 32]);
        let host = Host::new(
            config,
            key,
            NodeAddr::quic(a.to_string()),
            anchor(self.now),
            i as u64,
        )
        .unwrap();
        self.peers.push((a, Box::new(host)));
        self.events.push(Vec::new());
        i
    }

    fn add_raw(&mut self, raw: RawPeer) -> usize {
        let i = self.peers.len();
        self.peers.push((addr(i), Box::new(raw)));
        self.events.push(Vec::new());
        i
    }

    /// Peer `i`'s address (or where it would be).
    fn addr_of(&self, i: usize) -> SocketAddr {
        self.peers.get(i).map_or(addr(i), |p| p.0)
    }

    /// Moves virtual time on by `d` without delivering anything.
    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn host(&mut self, i: usize) -> &mut Host {
        self.peers[i].1.as_host().unwrap()
    }

    fn raw(&mut self, i: usize) -> &mut RawPeer {
        self.peers[i].1.as_raw().unwrap()
    }

    /// Collects output, then delivers what is due or jumps to the next
    /// wake-up. Returns false when nothing will ever happen again.
    fn step(&mut self) -> bool {
        let mut buf = Vec::new();
        for (i, (a, p)) in self.peers.iter_mut().enumerate() {
            while let Some(t) = p.poll_transmit(&mut buf) {
                self.wire.push_back((
                    self.now + LATENCY,
                    *a,
                    t.destination,
                    buf[..t.size].to_vec(),
                ));
            }
            if let Some(h) = p.as_host() {
                while let Some(e) = h.poll_event() {
                    self.events[i].push(e);
                }
            }
        }
        let next_wire = self.wire.iter().map(|w| w.0).min();
        let next_timer = self
            .peers
            .iter_mut()
            .filter_map(|(_, p)| p.poll_timeout())
            .min();
        let Some(next) = [next_wire, next_timer].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        let due: Vec<_> = {
            let (due, later): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.0 <= now);
            self.wire = later.into();
            due
        };
        for (_, from, to, data) in due {
            if let Some((_, p)) = self.peers.iter_mut().find(|(a, _)| *a == to) {
                p.handle_datagram(now, from, &data);
            }
        }
        for (_, p) in self.peers.iter_mut() {
            if p.poll_timeout().is_some_and(|t| t <= now) {
                p.handle_timeout(now);
            }
        }
        true
    }

    /// Steps until `done` holds, within `limit` of virtual time.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) {
        let end = self.now + limit;
        while !done(self) {
            assert!(self.now < end, "condition not reached within {limit:?}");
            if !self.step() {
                assert!(done(self), "network went quiet before the condition held");
                return;
            }
        }
    }

    /// Runs for `d` of virtual time.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            if !self.step() {
                break;
            }
        }
    }

    fn query_done(&mut self, i: usize, q: crate::node::QueryId) -> Option<QueryResult> {
        self.events[i].iter().find_map(|e| match e {
            HostEvent::Node(Event::QueryDone { id, result, .. }) if *id == q => {
                Some(result.clone())
            }
            _ => None,
        })
    }

    fn wait_query(&mut self, i: usize, q: crate::node::QueryId) -> QueryResult {
        self.run_until(Duration::from_secs(60), |n| n.query_done(i, q).is_some());
        self.query_done(i, q).unwrap()
    }

    fn raw_done(
        &mut self,
        i: usize,
        r: RawRequestId,
    ) -> Option<Result<RawResponse, TransportError>> {
        self.events[i].iter().find_map(|e| match e {
            HostEvent::Response { id, result } if *id == r => Some(result.clone()),
            _ => None,
        })
    }

    fn wait_raw(&mut self, i: usize, r: RawRequestId) -> Result<RawResponse, TransportError> {
        self.run_until(Duration::from_secs(60), |n| n.raw_done(i, r).is_some());
        self.raw_done(i, r).unwrap()
    }

    fn send_raw(&mut self, from: usize, to: usize, frame: Vec<u8>) -> RawRequestId {
        let now = self.now;
        let to = self.addr_of(to);
        self.host(from).send_raw(now, to, None, frame)
    }

    /// A PING from `from` to `to`, as a raw request. It advertises port 0,
    /// as our short-lived clients do, so the receiver does not PING back to
    /// verify the sender (nor the sender the receiver in turn): the requests
    /// the receiver counts are exactly the ones sent here.
    fn send_ping(&mut self, from: usize, to: usize) -> RawRequestId {
        let (id, at) = (self.host(from).identity(), self.addr_of(from));
        self.send_raw(from, to, ping_frame(id, SocketAddr::new(at.ip(), 0)))
    }

    /// Sends `n` PINGs from `from` to `to` at once; returns how many were
    /// answered and the reset codes of the others.
    fn pings(&mut self, from: usize, to: usize, n: usize) -> (usize, Vec<u64>) {
        let ids: Vec<_> = (0..n).map(|_| self.send_ping(from, to)).collect();
        let mut answered = 0;
        let mut resets = Vec::new();
        for id in ids {
            match self.wait_raw(from, id) {
                Ok(r) => {
                    assert_eq!(
                        Frame::decode(&r.frame).unwrap().message.message_type(),
                        MessageType::Pong
                    );
                    answered += 1;
                }
                Err(TransportError::Reset(code)) => resets.push(code),
                Err(e) => panic!("ping {from} -> {to}: {e:?}"),
            }
        }
        (answered, resets)
    }

    /// Refusal events host `i` reported.
    fn refusals(&self, i: usize) -> Vec<Refusal> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                HostEvent::Refused { refusal, .. } => Some(refusal.clone()),
                _ => None,
            })
            .collect()
    }
}

fn testing() -> HostConfig {
    HostConfig::with_node(Config::testing())
}

fn ping_frame(sender: Identity, sender_addr: SocketAddr) -> Vec<u8> {
    Frame::new(
        MsgId([3; 16]),
        Message::Ping(Ping {
            sender,
            sender_addr: NodeAddr::quic(sender_addr.to_string()),
        }),
    )
    .encode()
}

fn reset_code(r: Result<RawResponse, TransportError>) -> u64 {
    match r {
        Err(TransportError::Reset(code)) => code,
        other => panic!("expected a stream reset, got {other:?}"),
    }
}

#[test]
fn handshake_authenticates_both_identities_and_ping_answers() {
    let mut net = Net::new();
    let a = net.add_host(testing());
    let b = net.add_host(testing());
    let (ida, idb) = (net.host(a).identity(), net.host(b).identity());
    let now = net.now;
    let q = net
        .host(a)
        .command(now, |n, ts| n.ping(ts, NodeAddr::quic(addr(b).to_string())))
        .unwrap();
    match net.wait_query(a, q) {
        QueryResult::Ping {
            identity,
            observed_addr,
        } => {
            assert_eq!(identity, idb);
            assert_eq!(observed_addr, NodeAddr::quic(addr(a).to_string()));
        }
        other => panic!("{other:?}"),
    }
    let connected = |evs: &[HostEvent]| {
        evs.iter()
            .find_map(|e| match e {
                HostEvent::Connected { peer, inbound, .. } => Some((*peer, *inbound)),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(connected(&net.events[a]), (idb, false));
    assert_eq!(connected(&net.events[b]), (ida, true));
}

#[test]
fn every_request_type_over_quic_bootstrap_publish_discover() {
    let mut net = Net::new();
    let hub = net.add_host(HostConfig::with_node(Config {
        publish_proxy: true,
        ..Config::testing()
    }));
    let a = net.add_host(testing());
    let c = net.add_host(testing());
    let seed = NodeAddr::quic(addr(hub).to_string());
    let now = net.now;
    // FIND_NODE (and the PINGs that verify requesters).
    let qa = net
        .host(a)
        .command(now, |n, ts| n.bootstrap(ts, vec![seed.clone()]))
        .unwrap();
    let qc = net
        .host(c)
        .command(now, |n, ts| n.bootstrap(ts, vec![seed.clone()]))
        .unwrap();
    assert!(
        matches!(net.wait_query(a, qa), QueryResult::Bootstrap { table_size } if table_size >= 1)
    );
    assert!(
        matches!(net.wait_query(c, qc), QueryResult::Bootstrap { table_size } if table_size >= 1)
    );
    // STORE.
    let key = Keypair::from_secret_bytes(&[2; 32]);
    let now = net.now;
    let ts = net.host(a).timestamp(now);
    let d = DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), ts)
        .topic("quic-test")
        .routing_keys(schema::hierarchical_keys("compute/quic"))
        .sign(&key)
        .unwrap();
    let qp = net.host(a).command(now, |n, ts| n.publish(ts, d)).unwrap();
    match net.wait_query(a, qp) {
        QueryResult::Publish { keys, .. } => {
            assert_eq!(keys.len(), 2);
            assert!(keys.iter().all(|k| k.acked >= 2), "{keys:?}");
        }
        other => panic!("{other:?}"),
    }
    // FIND_VALUE from the third host.
    let now = net.now;
    let qd = net
        .host(c)
        .command(now, |n, ts| {
            n.discover(ts, schema::routing_key("compute/quic"), None, 20)
        })
        .unwrap();
    match net.wait_query(c, qd) {
        QueryResult::Discover { descriptors, .. } => {
            assert_eq!(descriptors.len(), 1);
            assert_eq!(descriptors[0].topic, "quic-test");
        }
        other => panic!("{other:?}"),
    }
    let now = net.now;
    let qp = net
        .host(c)
        .command(now, |n, ts| n.ping(ts, seed.clone()))
        .unwrap();
    assert!(matches!(net.wait_query(c, qp), QueryResult::Ping { .. }));
    // Served over QUIC: every request type reached the hub's node.
    let served = net.host(hub).node().stats().requests;
    assert!(
        served.iter().all(|&n| n > 0),
        "requests by type: {served:?}"
    );
}

#[test]
fn outbound_connections_are_reused_per_peer() {
    let mut net = Net::new();
    let a = net.add_host(testing());
    let b = net.add_host(testing());
    for _ in 0..5 {
        let now = net.now;
        let q = net
            .host(a)
            .command(now, |n, ts| n.ping(ts, NodeAddr::quic(addr(b).to_string())))
            .unwrap();
        assert!(matches!(net.wait_query(a, q), QueryResult::Ping { .. }));
    }
    assert_eq!(net.host(a).stats().dialled, 1);
    assert_eq!(net.host(b).stats().accepted, 1);
    // B's requests to A go over a connection B dials itself: a reference
    // peer would not accept streams on the connection it opened to us.
    let now = net.now;
    let q = net
        .host(b)
        .command(now, |n, ts| n.ping(ts, NodeAddr::quic(addr(a).to_string())))
        .unwrap();
    assert!(matches!(net.wait_query(b, q), QueryResult::Ping { .. }));
    assert_eq!(net.host(b).stats().dialled, 1);
    assert_eq!(net.host(a).connections(), 2);
}

#[test]
fn idle_connections_are_closed() {
    let mut net = Net::new();
    let a = net.add_host(testing());
    let b = net.add_host(testing());
    let now = net.now;
    let q = net
        .host(a)
        .command(now, |n, ts| n.ping(ts, NodeAddr::quic(addr(b).to_string())))
        .unwrap();
    net.wait_query(a, q);
    assert!(net.host(a).connections() >= 1);
    net.run_until(Duration::from_secs(120), |n| {
        n.host(a).connections() == 0 && n.host(b).connections() == 0
    });
}

#[test]
fn expected_identity_mismatch_is_reported_not_trusted() {
    let mut net = Net::new();
    let a = net.add_host(testing());
    let b = net.add_host(testing());
    let ida = net.host(a).identity();
    let idb = net.host(b).identity();
    let wrong = Keypair::from_secret_bytes(&[99; 32]).identity();
    let now = net.now;
    let r = net
        .host(a)
        .send_raw(now, addr(b), Some(wrong), ping_frame(ida, addr(a)));
    assert_eq!(
        net.wait_raw(a, r),
        Err(TransportError::IdentityMismatch {
            expected: wrong,
            found: idb
        })
    );
    // Nothing was sent to B.
    assert_eq!(net.host(b).node().stats().requests, [0; 4]);
    // The right expectation goes through on the same connection.
    let now = net.now;
    let r = net
        .host(a)
        .send_raw(now, addr(b), Some(idb), ping_frame(ida, addr(a)));
    let resp = net.wait_raw(a, r).unwrap();
    assert_eq!(resp.peer, idb);
    assert_eq!(
        Frame::decode(&resp.frame).unwrap().message.message_type(),
        MessageType::Pong
    );
}

#[test]
fn hostile_streams_are_reset_with_their_code_and_the_connection_survives() {
    let mut net = Net::new();
    let a = net.add_host(testing());
    let b = net.add_host(testing());
    let ida = net.host(a).identity();
    let good = ping_frame(ida, addr(a));

    // Oversized: the header declares a 2 MiB body; refused from the header.
    let mut big = vec![0u8; HEADER_LEN];
    let mut h = [0u8; HEADER_LEN];
    FrameHeader {
        msg_type: MessageType::Store,
        msg_id: MsgId([1; 16]),
        body_len: 2 << 20,
    }
    .write(&mut h);
    big.copy_from_slice(&h);
    big.extend(std::iter::repeat_n(0xA5, 64 * 1024));
    let r = net.send_raw(a, b, big);
    assert_eq!(reset_code(net.wait_raw(a, r)), RefusalCode::TooLarge.code());

    // Malformed body under a valid header.
    let mut garbage = good.clone();
    let n = garbage.len();
    for x in &mut garbage[HEADER_LEN..n] {
        *x = 0xff;
    }
    let r = net.send_raw(a, b, garbage);
    assert_eq!(
        reset_code(net.wait_raw(a, r)),
        RefusalCode::Malformed.code()
    );

    // Truncated: the stream finishes before the declared body.
    let r = net.send_raw(a, b, good[..good.len() - 3].to_vec());
    assert_eq!(
        reset_code(net.wait_raw(a, r)),
        RefusalCode::Malformed.code()
    );

    // Bytes after the frame.
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 10]);
    let r = net.send_raw(a, b, longer);
    assert_eq!(
        reset_code(net.wait_raw(a, r)),
        RefusalCode::Malformed.code()
    );

    // Bad magic.
    let mut magic = good.clone();
    magic[0] = 0;
    let r = net.send_raw(a, b, magic);
    assert_eq!(
        reset_code(net.wait_raw(a, r)),
        RefusalCode::Malformed.code()
    );

    // A response type sent as a request.
    let mut pong = good.clone();
    pong[3] = MessageType::Pong.byte();
    let r = net.send_raw(a, b, pong);
    assert_eq!(
        reset_code(net.wait_raw(a, r)),
        RefusalCode::NotARequest.code()
    );

    // An empty stream.
    let r = net.send_raw(a, b, Vec::new());
    assert_eq!(
        reset_code(net.wait_raw(a, r)),
        RefusalCode::Malformed.code()
    );

    // The same connection still serves a good request.
    let r = net.send_raw(a, b, good);
    let resp = net.wait_raw(a, r).unwrap();
    assert_eq!(
        Frame::decode(&resp.frame).unwrap().message.message_type(),
        MessageType::Pong
    );
    assert_eq!(net.host(a).stats().dialled, 1);
    assert_eq!(net.host(b).stats().accepted, 1);
    assert_eq!(net.host(b).stats().requests_refused, 7);
    let refused = net.events[b]
        .iter()
        .filter(|e| matches!(e, HostEvent::Refused { .. }))
        .count();
    assert_eq!(refused, 7);
}

#[test]
fn spoofed_sender_is_refused_with_code_3() {
    let mut net = Net::new();
    let a = net.add_host(testing());
    let b = net.add_host(testing());
    let ida = net.host(a).identity();
    let victim = Keypair::from_secret_bytes(&[42; 32]).identity();
    let r = net.send_raw(a, b, ping_frame(victim, addr(a)));
    assert_eq!(
        reset_code(net.wait_raw(a, r)),
        RefusalCode::SenderMismatch.code()
    );
    net.run_for(Duration::from_millis(50));
    assert!(net.events[b].iter().any(|e| matches!(
        e,
        HostEvent::Refused { peer, refusal: Refusal::SenderMismatch { claimed, .. }, .. }
            if *peer == ida && *claimed == victim
    )));
    assert!(net.events[b].iter().any(|e| matches!(
        e,
        HostEvent::Node(Event::PeerMisbehaved { peer, .. }) if *peer == ida
    )));
}

fn ecdsa_cert() -> (
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["mesh.local".to_owned()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        kp.serialize_der(),
    ));
    (cert.der().clone(), key)
}

#[test]
fn a_client_with_a_non_ed25519_certificate_is_refused() {
    let mut net = Net::new();
    let b = net.add_host(testing());
    let (cert, key) = ecdsa_cert();
    let tls = tls::client_config(cert, key).unwrap();
    let client = ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let now = net.now;
    let mut raw = RawPeer::new(None, now);
    raw.connect(client, addr(b));
    let r = net.add_raw(raw);
    net.run_until(Duration::from_secs(40), |n| n.raw(r).lost.is_some());
    assert!(!net.raw(r).connected || net.raw(r).lost.is_some());
    assert!(
        !net.events[b]
            .iter()
            .any(|e| matches!(e, HostEvent::Connected { .. }))
    );
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let mut net = Net::new();
    let b = net.add_host(testing());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(tls::MeshVerifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![tls::ALPN.to_vec()];
    let client = ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let now = net.now;
    let mut raw = RawPeer::new(None, now);
    raw.connect(client, addr(b));
    let r = net.add_raw(raw);
    net.run_until(Duration::from_secs(40), |n| n.raw(r).lost.is_some());
    assert!(
        !net.events[b]
            .iter()
            .any(|e| matches!(e, HostEvent::Connected { .. }))
    );
}

#[test]
fn a_server_with_a_non_ed25519_certificate_is_unreachable() {
    let mut net = Net::new();
    let a = net.add_host(testing());
    let (cert, key) = ecdsa_cert();
    let tls = tls::server_config(cert, key).unwrap();
    let server = Arc::new(ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(tls).unwrap(),
    )));
    let now = net.now;
    let s = net.add_raw(RawPeer::new(Some(server), now));
    let ida = net.host(a).identity();
    let r = net.send_raw(a, s, ping_frame(ida, addr(a)));
    match net.wait_raw(a, r) {
        Err(TransportError::Unreachable(reason)) => {
            // It cannot even sign for us: we accept Ed25519 signatures only.
            assert!(reason.contains("handshake failed"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unanswered_dial_fails_the_node_request_in_bounded_time() {
    let mut net = Net::new();
    let a = net.add_host(testing());
    let now = net.now;
    // Nobody listens at 127.0.0.1:5999.
    let q = net
        .host(a)
        .command(now, |n, ts| n.ping(ts, NodeAddr::quic("127.0.0.1:5999")))
        .unwrap();
    match net.wait_query(a, q) {
        QueryResult::Failed(crate::node::QueryError::Unreachable { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn identity_is_read_from_the_parsed_spki() {
    let key = Keypair::from_secret_bytes(&[5; 32]);
    let (cert, _) = tls::self_signed_certificate(&key).unwrap();
    assert_eq!(
        tls::identity_from_certificate(cert.as_ref()).unwrap(),
        key.identity()
    );
    let (ecdsa, _) = ecdsa_cert();
    assert!(matches!(
        tls::identity_from_certificate(ecdsa.as_ref()),
        Err(CertificateError::NotEd25519 { .. })
    ));
    assert!(matches!(
        tls::identity_from_certificate(b"not a certificate"),
        Err(CertificateError::Unparsable(_))
    ));
}

#[test]
fn garbage_datagrams_do_not_disturb_a_host() {
    let mut net = Net::new();
    let a = net.add_host(testing());
    let b = net.add_host(testing());
    let now = net.now;
    let mut x: u64 = 1;
    for len in [0usize, 1, 20, 1200, 1500, 65_000] {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        net.host(b).handle_datagram(now, addr(7), &data);
        // A long-header-looking datagram too.
        let mut initial = data.clone();
        if let Some(first) = initial.first_mut() {
            *first = 0xc0;
        }
        net.host(b).handle_datagram(now, addr(7), &initial);
    }
    let q = net
        .host(a)
        .command(now, |n, ts| n.ping(ts, NodeAddr::quic(addr(b).to_string())))
        .unwrap();
    assert!(matches!(net.wait_query(a, q), QueryResult::Ping { .. }));
}

#[test]
fn a_small_connection_buffer_delays_reads_but_every_request_is_answered() {
    let mut net = Net::new();
    let a = net.add_host(testing());
    // Room for less than one STORE frame at a time.
    let b = net.add_host(HostConfig {
        connection_buffer: 300,
        ..testing()
    });
    let ida = net.host(a).identity();
    let now = net.now;
    let ts = net.host(a).timestamp(now);
    let mut ids = Vec::new();
    for i in 0..20u8 {
        let frame = store_frame((ida, addr(a)), 100 + i, ts, vec![i; 400]);
        assert!(frame.len() > 300);
        ids.push(net.send_raw(a, b, frame));
    }
    expect_stored(&mut net, a, ids);
}

/// A STORE sent by `sender`, of a descriptor signed by the key with secret
/// `[key; 32]`, topic `t<key>`, carrying `payload`.
fn store_frame(
    (sender, from): (Identity, SocketAddr),
    key: u8,
    ts: Timestamp,
    payload: Vec<u8>,
) -> Vec<u8> {
    let d = DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), ts)
        .topic(format!("t{key}"))
        .payload(payload)
        .routing_keys(schema::hierarchical_keys("compute/stores"))
        .sign(&Keypair::from_secret_bytes(&[key; 32]))
        .unwrap();
    Frame::new(
        MsgId([key; 16]),
        Message::Store(crate::wire::Store {
            sender,
            sender_addr: NodeAddr::quic(from.to_string()),
            descriptor: d.into(),
        }),
    )
    .encode()
}

/// Waits for each raw request and checks it was answered `stored: true`.
fn expect_stored(net: &mut Net, from: usize, ids: Vec<RawRequestId>) {
    for id in ids {
        let resp = net.wait_raw(from, id).unwrap();
        match Frame::decode(&resp.frame).unwrap().message {
            Message::StoreAck(ack) => assert!(ack.stored, "{ack:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn concurrent_stores_are_answered_in_batches() {
    let mut net = Net::new();
    let a = net.add_host(testing());
    let b = net.add_host(testing());
    let ida = net.host(a).identity();
    let now = net.now;
    let ts = net.host(a).timestamp(now);
    let ids: Vec<_> = (0..24u8)
        .map(|i| {
            let frame = store_frame((ida, addr(a)), 60 + i, ts, Vec::new());
            net.send_raw(a, b, frame)
        })
        .collect();
    expect_stored(&mut net, a, ids);
    let stats = net.host(b).stats();
    // (Plus the PING with which `a` checks `b` back.)
    assert!(stats.requests_answered >= 24, "{stats:?}");
    assert!(
        stats.request_batches < stats.requests_answered,
        "requests read together are answered together: {stats:?}"
    );
    // Every publisher's key was decompressed once, by the batches.
    assert_eq!(net.host(b).node().key_cache().hits_and_misses(), (0, 24));
}

#[test]
fn a_raw_request_to_nobody_times_out() {
    let mut net = Net::new();
    let a = net.add_host(testing());
    let ida = net.host(a).identity();
    let r = net.send_raw(a, 9, ping_frame(ida, addr(a)));
    let started = net.now;
    assert_eq!(net.wait_raw(a, r), Err(TransportError::TimedOut));
    let took = net.now - started;
    assert!(took >= Config::testing().request_timeout, "{took:?}");
    // (The virtual clock may have jumped once more before we look.)
    assert!(took < Duration::from_secs(15), "{took:?}");
}

// ------------------------------------------------------------ abuse limits

/// No limits but the one under test.
fn unlimited() -> HostConfig {
    HostConfig {
        requests_per_ip: None,
        requests_per_identity: None,
        ..testing()
    }
}

fn ip_addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], port))
}

const RATE_LIMITED: u64 = RefusalCode::RateLimited.code();

#[test]
fn a_client_over_its_identity_rate_is_reset_with_code_5_and_another_is_not() {
    let mut net = Net::new();
    let hub = net.add_host(HostConfig {
        requests_per_identity: Some(RateLimit {
            per_second: 1,
            burst: 3,
        }),
        ..unlimited()
    });
    let a = net.add_host(testing());
    let c = net.add_host(testing());
    let ida = net.host(a).identity();
    // Five at once against a burst of three.
    let (answered, resets) = net.pings(a, hub, 5);
    assert_eq!(answered, 3);
    assert_eq!(resets, vec![RATE_LIMITED; 2]);
    // Another identity (from the same IP) has its own bucket.
    let (answered, resets) = net.pings(c, hub, 3);
    assert_eq!((answered, resets.len()), (3, 0));
    // The connection survived: A is still refused on it, not disconnected.
    let (answered, resets) = net.pings(a, hub, 1);
    assert_eq!((answered, resets), (0, vec![RATE_LIMITED]));
    assert_eq!(net.host(a).stats().dialled, 1);
    net.run_for(Duration::from_millis(50));
    let stats = net.host(hub).stats().clone();
    assert_eq!(stats.requests_rate_limited_by_identity, 3);
    assert_eq!(stats.requests_rate_limited_by_ip, 0);
    assert_eq!(stats.requests_refused, 3);
    assert_eq!(stats.requests_answered, 6);
    // The node never saw the refused ones.
    assert_eq!(net.host(hub).node().stats().requests[0], 6);
    assert_eq!(net.refusals(hub), vec![Refusal::RateLimitedByIdentity; 3]);
    assert!(net.events[hub].iter().all(|e| match e {
        HostEvent::Refused { peer, .. } => *peer == ida,
        _ => true,
    }));
}

#[test]
fn two_identities_behind_one_ip_share_its_rate() {
    let mut net = Net::new();
    let hub = net.add_host_at(
        HostConfig {
            requests_per_ip: Some(RateLimit {
                per_second: 1,
                burst: 4,
            }),
            ..unlimited()
        },
        ip_addr(1, 4000),
    );
    let a = net.add_host_at(testing(), ip_addr(2, 4001));
    let c = net.add_host_at(testing(), ip_addr(2, 4002));
    let d = net.add_host_at(testing(), ip_addr(3, 4003));
    assert_eq!(net.pings(a, hub, 3), (3, vec![]));
    // C is another identity, but at A's IP: one request left between them.
    let (answered, resets) = net.pings(c, hub, 3);
    assert_eq!((answered, resets), (1, vec![RATE_LIMITED; 2]));
    // Another IP is unaffected.
    assert_eq!(net.pings(d, hub, 4), (4, vec![]));
    net.run_for(Duration::from_millis(50));
    let stats = net.host(hub).stats().clone();
    assert_eq!(stats.requests_rate_limited_by_ip, 2);
    assert_eq!(stats.requests_rate_limited_by_identity, 0);
    let by_ip = Refusal::RateLimitedByIp {
        ip: "127.0.0.2".parse().unwrap(),
        prefix_len: 32,
    };
    assert_eq!(net.refusals(hub), vec![by_ip.clone(); 2]);
    assert_eq!(
        by_ip.to_string(),
        "rate limited: requests from 127.0.0.2/32 over their rate"
    );
}

#[test]
fn rate_buckets_refill_as_time_passes() {
    let mut net = Net::new();
    let hub = net.add_host(HostConfig {
        requests_per_identity: Some(RateLimit {
            per_second: 1,
            burst: 2,
        }),
        ..unlimited()
    });
    let a = net.add_host(testing());
    assert_eq!(net.pings(a, hub, 3), (2, vec![RATE_LIMITED]));
    // One second later: one request's worth back, not more.
    net.advance(Duration::from_secs(1));
    assert_eq!(net.pings(a, hub, 2), (1, vec![RATE_LIMITED]));
    // A quiet spell refills the whole burst, and no more than it.
    net.advance(Duration::from_secs(5));
    assert_eq!(net.pings(a, hub, 3), (2, vec![RATE_LIMITED]));
    assert_eq!(net.host(hub).stats().requests_rate_limited_by_identity, 3);
}

#[test]
fn connections_per_ip_are_limited_and_released() {
    let mut net = Net::new();
    let hub = net.add_host_at(
        HostConfig {
            max_connections_per_ip: 2,
            ..unlimited()
        },
        ip_addr(1, 4000),
    );
    let a = net.add_host_at(testing(), ip_addr(2, 4001));
    let c = net.add_host_at(testing(), ip_addr(2, 4002));
    let d = net.add_host_at(testing(), ip_addr(2, 4003));
    let e = net.add_host_at(testing(), ip_addr(3, 4004));
    assert_eq!(net.pings(a, hub, 1), (1, vec![]));
    assert_eq!(net.pings(c, hub, 1), (1, vec![]));
    // A third connection from 127.0.0.2 is refused.
    let r = net.send_ping(d, hub);
    match net.wait_raw(d, r) {
        Err(TransportError::Unreachable(reason)) => {
            assert!(reason.contains("refused"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Another IP is not.
    assert_eq!(net.pings(e, hub, 1), (1, vec![]));
    let stats = net.host(hub).stats().clone();
    assert_eq!(stats.refused_connections_over_ip_limit, 1);
    assert_eq!(stats.refused_connections_over_total_limit, 0);
    assert_eq!(stats.refused_connections, 1);
    assert_eq!(stats.accepted, 3);
    // When A goes away, its slot is free again.
    let now = net.now;
    net.host(a).close(now);
    net.run_until(Duration::from_secs(10), |n| n.host(a).connections() == 0);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.pings(d, hub, 1), (1, vec![]));
    assert_eq!(net.host(hub).stats().refused_connections_over_ip_limit, 1);
}

#[test]
fn streams_are_limited_per_connection() {
    let mut net = Net::new();
    let hub = net.add_host(HostConfig {
        max_streams: 2,
        ..unlimited()
    });
    let a = net.add_host(testing());
    let ids: Vec<_> = (0..10).map(|_| net.send_ping(a, hub)).collect();
    let mut most = 0;
    net.run_until(Duration::from_secs(30), |n| {
        for c in n.host(a).conns.values() {
            most = most.max(c.streams_in_flight().0);
        }
        ids.iter().all(|&id| n.raw_done(a, id).is_some())
    });
    // All ten went over one connection, never more than two at a time.
    assert_eq!(most, 2);
    for id in ids {
        assert!(net.raw_done(a, id).unwrap().is_ok());
    }
    assert_eq!(net.host(a).stats().dialled, 1);
}

#[test]
fn request_rate_tables_stay_bounded_under_many_source_ips() {
    let mut net = Net::new();
    let hub = net.add_host_at(
        HostConfig {
            requests_per_ip: Some(RateLimit {
                per_second: 1,
                burst: 5,
            }),
            requests_per_identity: Some(RateLimit {
                per_second: 1,
                burst: 5,
            }),
            max_tracked_ips: 4,
            max_tracked_identities: 4,
            ..testing()
        },
        ip_addr(1, 4000),
    );
    let started = net.now;
    // A heavy user empties its IP's bucket.
    let heavy = net.add_host_at(testing(), ip_addr(2, 4001));
    assert_eq!(net.pings(heavy, hub, 6), (5, vec![RATE_LIMITED]));
    // Then twelve other IPs send one request each: every one is answered,
    // and the tables never hold more than four buckets.
    for i in 0..12u8 {
        let p = net.add_host_at(testing(), ip_addr(10 + i, 5000 + u16::from(i)));
        assert_eq!(net.pings(p, hub, 1), (1, vec![]));
        let (ips, ids) = net.host(hub).rate_limited_sources();
        assert!(ips <= 4 && ids <= 4, "{ips} IPs, {ids} identities tracked");
    }
    // The nearly full buckets of the one-off senders were forgotten, not
    // the heavy user's empty one: it is still refused.
    assert_eq!(net.pings(heavy, hub, 1), (0, vec![RATE_LIMITED]));
    let stats = net.host(hub).stats().clone();
    // 13 IPs and 13 identities through tables of 4, all within a second
    // (so no bucket refilled and left on its own): 9 evictions each.
    assert!(net.now - started < Duration::from_secs(1));
    assert_eq!(stats.rate_buckets_evicted, 2 * (13 - 4));
    assert_eq!(stats.requests_rate_limited_by_ip, 2);
}

#[test]
fn a_client_connects_through_a_retry() {
    let mut net = Net::new();
    let hub = net.add_host(HostConfig {
        handshakes_before_retry: 0,
        ..testing()
    });
    let a = net.add_host(testing());
    assert_eq!(net.pings(a, hub, 2), (2, vec![]));
    let stats = net.host(hub).stats().clone();
    assert_eq!(stats.retries_sent, 1);
    assert_eq!(stats.accepted, 1);
    assert_eq!(net.host(a).stats().dialled, 1);
}

/// The first datagram (the Initial) of `n` connection attempts to `to`.
fn initials(n: usize, to: SocketAddr, now: Instant) -> Vec<Vec<u8>> {
    let key = Keypair::from_secret_bytes(&[77; 32]);
    let (cert, secret) = tls::self_signed_certificate(&key).unwrap();
    let tls = tls::client_config(cert, secret).unwrap();
    let client = ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let mut endpoint = Endpoint::new(
        Arc::new(EndpointConfig::default()),
        None,
        false,
        Some([8; 32]),
    );
    (0..n)
        .map(|_| {
            let (_, mut c) = endpoint
                .connect(now, client.clone(), to, tls::SERVER_NAME)
                .unwrap();
            let mut buf = Vec::new();
            let t = c.poll_transmit(now, 1, &mut buf).unwrap();
            buf.truncate(t.size);
            buf
        })
        .collect()
}

#[test]
fn under_a_flood_of_spoofed_initials_only_retries_are_sent() {
    let mut net = Net::new();
    let hub = net.add_host(HostConfig {
        handshakes_before_retry: 3,
        ..testing()
    });
    let a = net.add_host(testing());
    let now = net.now;
    let to = net.addr_of(hub);
    // 200 connection attempts from 200 addresses that will never answer.
    for (i, d) in initials(200, to, now).iter().enumerate() {
        let from = SocketAddr::from(([10, 0, (i / 200) as u8, (i % 200) as u8], 1234));
        net.host(hub).handle_datagram(now, from, d);
    }
    // Three got connection state; the others a Retry and nothing else.
    assert_eq!(net.host(hub).connections(), 3);
    assert_eq!(net.host(hub).handshakes_in_progress(), 3);
    let stats = net.host(hub).stats().clone();
    assert_eq!((stats.accepted, stats.retries_sent), (3, 197));
    // A real client still gets in, through a Retry.
    assert_eq!(net.pings(a, hub, 1), (1, vec![]));
    assert_eq!(net.host(hub).stats().retries_sent, 198);
    assert_eq!(net.host(hub).stats().accepted, 4);
    // The spoofed handshakes time out; then nobody is asked to Retry.
    net.run_until(Duration::from_secs(60), |n| {
        n.host(hub).handshakes_in_progress() == 0
    });
    let c = net.add_host(testing());
    assert_eq!(net.pings(c, hub, 1), (1, vec![]));
    assert_eq!(net.host(hub).stats().retries_sent, 198);
}

#[test]
fn ipv6_peers_are_counted_by_their_64() {
    let mut net = Net::new();
    let v6 = |s: &str| s.parse::<SocketAddr>().unwrap();
    let hub = net.add_host_at(
        HostConfig {
            max_connections_per_ip: 1,
            ..unlimited()
        },
        v6("[2001:db8:0:9::1]:4000"),
    );
    let a = net.add_host_at(testing(), v6("[2001:db8:0:1::a]:4001"));
    let b = net.add_host_at(testing(), v6("[2001:db8:0:1:ffff::b]:4002"));
    let c = net.add_host_at(testing(), v6("[2001:db8:0:2::a]:4003"));
    assert_eq!(net.pings(a, hub, 1), (1, vec![]));
    // Another address in the same /64: the same peer as far as limits go.
    let r = net.send_ping(b, hub);
    assert!(matches!(
        net.wait_raw(b, r),
        Err(TransportError::Unreachable(_))
    ));
    // The next /64 is someone else.
    assert_eq!(net.pings(c, hub, 1), (1, vec![]));
    assert_eq!(net.host(hub).stats().refused_connections_over_ip_limit, 1);
}

#[test]
fn the_total_connection_limit_is_counted_apart() {
    let mut net = Net::new();
    let hub = net.add_host(HostConfig {
        max_connections: 1,
        ..unlimited()
    });
    let a = net.add_host(testing());
    let c = net.add_host(testing());
    assert_eq!(net.pings(a, hub, 1), (1, vec![]));
    let r = net.send_ping(c, hub);
    assert!(matches!(
        net.wait_raw(c, r),
        Err(TransportError::Unreachable(_))
    ));
    let stats = net.host(hub).stats().clone();
    assert_eq!(stats.refused_connections_over_total_limit, 1);
    assert_eq!(stats.refused_connections_over_ip_limit, 0);
    assert_eq!(stats.refused_connections, 1);
}
