//! The full-stack engine: every simulated node is a [`mars_proto::quic::Host`]
//! — the real node inside a quinn-proto endpoint, with mutual TLS, streams,
//! loss recovery and congestion control — exchanging real QUIC datagrams over
//! the [`network`](crate::network) model on a virtual clock.
//!
//! The bare-node engine ([`Sim`](crate::Sim)) takes every connection as open
//! and a lost message as a timeout; here a handshake costs its round trips,
//! and a lost datagram is retransmitted by QUIC, so what is measured is what
//! a small real mesh would see. Hosts are Sans-IO, so the engine is the same
//! shape as the other: one event queue of datagram deliveries, host timers
//! and workload actions, ordered by (time, sequence number).
//!
//! Determinism: every choice of the sim (keys, host seeds, placement, delay,
//! loss, workload) comes from the run's seed. TLS draws its key material
//! from the operating system, as it must in production, so ciphertexts
//! differ from run to run; their sizes and the timing do not. The trace hash
//! is therefore over each delivered datagram's time, endpoints and length —
//! not its bytes — plus every query's outcome.

mod report;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mars_proto::node::{Event, QueryId, QueryResult};
use mars_proto::quic::{Host, HostConfig, HostEvent, TimeAnchor, TlsSetupError};
use mars_proto::wire::{Filters, NodeAddr};
use mars_proto::{DescriptorBuilder, Hash, Identity, Keypair, Timestamp, schema};

use crate::metrics::Samples;
use crate::network::{Network, NetworkConfig, Transit};
use crate::queue::EventQueue;
use crate::rng::SimRng;
use crate::trace::{RecordKind, Trace};
use crate::wall::Stopwatch;

pub use report::{FullStackReport, Stop};

/// The UDP port every host listens on.
pub const PORT: u16 = 4433;
/// Most hosts in one run: each is a full QUIC endpoint with TLS, so a run
/// is meant for small meshes (the bare-node engine is for large ones).
pub const MAX_NODES: usize = 2_000;
/// Most lookups in one run.
pub const MAX_LOOKUPS: usize = 1_000_000;
/// Most virtual time a run may be given.
pub const MAX_VIRTUAL: Duration = Duration::from_secs(24 * 3600);
/// Bootstrap attempts per host before it gives up.
const BOOTSTRAP_ATTEMPTS: u32 = 3;
/// Results asked for per lookup.
const MAX_RESULTS: u16 = 20;

/// Parameters of a full-stack run.
#[derive(Debug, Clone)]
pub struct FullStackConfig {
    /// Hosts; host 0 is the seed the others bootstrap from.
    pub nodes: usize,
    /// Seed of every random choice the sim makes.
    pub seed: u64,
    /// Hosts that publish one descriptor each (`compute/sim/svc{i}`).
    pub publishers: usize,
    /// Discover lookups, issued once publishing is over.
    pub lookups: usize,
    /// Latency, jitter and loss (partitions are not used here).
    pub network: NetworkConfig,
    /// Bootstraps start spread uniformly over this long.
    pub join_over: Duration,
    /// Wait after the last bootstrap (and after the last publish) before
    /// the next stage starts, so background refreshes calm down.
    pub settle: Duration,
    /// Publishes start spread over this long.
    pub publish_over: Duration,
    /// Lookups start spread over this long.
    pub lookup_over: Duration,
    /// The run stops at this much virtual time, finished or not.
    pub max_virtual: Duration,
    /// The run stops after this many events, finished or not: a bound on
    /// work whatever the hosts do.
    pub max_events: u64,
    /// The node settings of every host (the transport's are the defaults).
    pub node: mars_proto::Config,
}

impl Default for FullStackConfig {
    fn default() -> Self {
        FullStackConfig {
            nodes: 30,
            seed: 1,
            publishers: 10,
            lookups: 100,
            network: NetworkConfig::default(),
            join_over: Duration::from_secs(3),
            settle: Duration::from_secs(2),
            publish_over: Duration::from_secs(1),
            lookup_over: Duration::from_secs(5),
            max_virtual: Duration::from_secs(600),
            max_events: 20_000_000,
            node: mars_proto::Config::testing(),
        }
    }
}

/// Why a full-stack run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FullStackError {
    /// Fewer than two hosts, or more than [`MAX_NODES`].
    #[error("--nodes must be 2..={MAX_NODES} (got {0})")]
    Nodes(usize),
    /// More publishers than hosts.
    #[error("--publishers must be at most --nodes ({nodes}), got {publishers}")]
    Publishers {
        /// Asked for.
        publishers: usize,
        /// Hosts.
        nodes: usize,
    },
    /// Lookups without anything to look up, or too many.
    #[error(
        "--lookups must be 0..={MAX_LOOKUPS}, and need at least one publisher (got {lookups} lookups, {publishers} publishers)"
    )]
    Lookups {
        /// Asked for.
        lookups: usize,
        /// Publishers.
        publishers: usize,
    },
    /// A duration beyond [`MAX_VIRTUAL`].
    #[error("{0} is longer than the 24 h a run may last")]
    TooLong(&'static str),
    /// A host's TLS configuration could not be built.
    #[error("host {host}: {source}")]
    Tls {
        /// Which host.
        host: usize,
        /// Why.
        source: TlsSetupError,
    },
}

impl FullStackConfig {
    /// Checks the bounds, so a run never starts on what it cannot do.
    pub fn validate(&self) -> Result<(), FullStackError> {
        if !(2..=MAX_NODES).contains(&self.nodes) {
            return Err(FullStackError::Nodes(self.nodes));
        }
        if self.publishers > self.nodes {
            return Err(FullStackError::Publishers {
                publishers: self.publishers,
                nodes: self.nodes,
            });
        }
        if self.lookups > MAX_LOOKUPS || (self.lookups > 0 && self.publishers == 0) {
            return Err(FullStackError::Lookups {
                lookups: self.lookups,
                publishers: self.publishers,
            });
        }
        for (name, d) in [
            ("join-over", self.join_over),
            ("settle", self.settle),
            ("publish-over", self.publish_over),
            ("lookup-over", self.lookup_over),
            ("max-virtual", self.max_virtual),
        ] {
            if d > MAX_VIRTUAL {
                return Err(FullStackError::TooLong(name));
            }
        }
        Ok(())
    }
}

/// The address of host `i`: `10.a.b.c:4433` with `a.b.c` = i + 1, as the
/// bare-node engine's [`addr_of`](crate::addr_of).
pub fn host_addr(i: u32) -> SocketAddr {
    let n = i.wrapping_add(1);
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)),
        PORT,
    )
}

/// The host at `addr`, if `addr` is one of [`host_addr`]'s.
pub fn host_index(addr: SocketAddr) -> Option<u32> {
    let IpAddr::V4(ip) = addr.ip() else {
        return None;
    };
    let [a, b, c, d] = ip.octets();
    if a != 10 || addr.port() != PORT {
        return None;
    }
    (u32::from(b) << 16 | u32::from(c) << 8 | u32::from(d)).checked_sub(1)
}

/// What the queue holds.
#[derive(Debug)]
enum Ev {
    /// A datagram arrives at `to`.
    Deliver { from: u32, to: u32, data: Vec<u8> },
    /// Host `host`'s timer, valid while its generation is still `gen`.
    Timer { host: u32, generation: u64 },
    /// Host `host` (re)starts its bootstrap.
    Bootstrap { host: u32, attempt: u32 },
    /// Publisher `p` publishes.
    Publish(u32),
    /// Lookup `l` is issued.
    Lookup(u32),
}

/// Which command a query id belongs to.
#[derive(Debug, Clone, Copy)]
enum Tag {
    Bootstrap { attempt: u32 },
    Publish(u32),
    Lookup(u32),
}

/// One simulated host and the engine's bookkeeping about it.
#[derive(Debug)]
struct SimHost {
    host: Host,
    /// Its key, which also signs what it publishes.
    key: Keypair,
    /// The timer armed in the queue (virtual offset), if any.
    timer: Option<Duration>,
    /// Bumped whenever the timer moves: older queue entries are stale.
    generation: u64,
}

/// A publisher: which host, what it published.
#[derive(Debug, Clone)]
struct Pub {
    host: u32,
    path: String,
    keys: Vec<Hash>,
    identity: Identity,
    /// The descriptor id, once the publish reached a replica per key.
    id: Option<Hash>,
    done: bool,
}

/// One lookup: who asks, for whom, and what became of it.
#[derive(Debug, Clone)]
struct Lookup {
    querier: u32,
    publisher: u32,
    key: Hash,
    issued: Option<Duration>,
    found: Option<bool>,
}

/// The counters of a run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub datagrams_sent: u64,
    pub datagrams_lost: u64,
    pub datagrams_delivered: u64,
    pub datagrams_undeliverable: u64,
    pub bytes_sent: u64,
    pub bytes_delivered: u64,
    pub handshakes: u64,
    pub connections_closed: u64,
    pub requests_refused: u64,
    pub bootstraps_ok: u64,
    pub bootstraps_failed: u64,
    pub bootstrap_retries: u64,
    pub publishes_ok: u64,
    pub publishes_failed: u64,
    pub lookups_issued: u64,
    pub lookups_found: u64,
    pub lookups_not_found: u64,
    pub lookups_refused: u64,
    pub events: u64,
}

/// A full-stack run: N QUIC hosts on a virtual clock. See the
/// [module documentation](self).
#[derive(Debug)]
pub struct FullStack {
    config: FullStackConfig,
    /// The one real instant: virtual time is an offset from it.
    base: Instant,
    /// The wall-clock time paired with `base`.
    unix: Timestamp,
    now: Duration,
    hosts: Vec<SimHost>,
    queue: EventQueue<Ev>,
    net: Network,
    rng: SimRng,
    queries: BTreeMap<(u32, QueryId), Tag>,
    /// When the last datagram queued on each path arrives.
    last_arrival: BTreeMap<(u32, u32), Duration>,
    pubs: Vec<Pub>,
    lookups: Vec<Lookup>,
    /// Bootstraps still running (or waiting for a retry).
    joining: usize,
    /// Publishes still running.
    publishing: usize,
    /// Lookups still running or not yet issued.
    looking: usize,
    stage: Stage,
    latency: Samples,
    counters: Counters,
    trace: Trace,
    buf: Vec<u8>,
}

/// Where the workload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Joining,
    Publishing,
    LookingUp,
    Done,
}

impl FullStack {
    /// Builds the hosts (keys, TLS certificates, placement) and schedules
    /// the bootstraps.
    pub fn new(config: FullStackConfig) -> Result<Self, FullStackError> {
        config.validate()?;
        // The one clock read of a run: virtual time starts here. Nothing
        // depends on its value, only on offsets from it.
        #[allow(clippy::disallowed_methods)]
        let base = Instant::now();
        let unix = crate::START;
        let anchor = TimeAnchor {
            instant: base,
            unix,
        };
        let seed = config.seed;
        let mut net = Network::new(config.network.clone(), seed, unix);
        let mut rng_keys = SimRng::stream(seed, "fullstack-keys");
        let mut rng_seeds = SimRng::stream(seed, "fullstack-host-seeds");
        let mut rng_place = SimRng::stream(seed, "fullstack-placement");
        let mut hosts = Vec::with_capacity(config.nodes);
        for i in 0..config.nodes {
            net.place(&mut rng_place);
            let key = Keypair::from_secret_bytes(&rng_keys.bytes32());
            let addr = host_addr(i as u32);
            let host = Host::new(
                HostConfig::with_node(config.node.clone()),
                key.clone(),
                NodeAddr::quic(addr.to_string()),
                anchor,
                rng_seeds.next_u64(),
            )
            .map_err(|source| FullStackError::Tls { host: i, source })?;
            hosts.push(SimHost {
                host,
                key,
                timer: None,
                generation: 0,
            });
        }
        let mut sim = FullStack {
            base,
            unix,
            now: Duration::ZERO,
            hosts,
            queue: EventQueue::new(),
            net,
            rng: SimRng::stream(seed, "fullstack-workload"),
            queries: BTreeMap::new(),
            last_arrival: BTreeMap::new(),
            pubs: Vec::new(),
            lookups: Vec::new(),
            joining: config.nodes - 1,
            publishing: 0,
            looking: 0,
            stage: Stage::Joining,
            latency: Samples::default(),
            counters: Counters::default(),
            trace: Trace::new(),
            buf: Vec::with_capacity(2048),
            config,
        };
        let over = micros(sim.config.join_over);
        for i in 1..sim.config.nodes {
            let at = Duration::from_micros(sim.rng.below(over));
            sim.push(
                at,
                Ev::Bootstrap {
                    host: i as u32,
                    attempt: 1,
                },
            );
        }
        if sim.joining == 0 {
            sim.start_publishing();
        }
        Ok(sim)
    }

    /// Runs until every lookup is answered (or a bound is reached) and
    /// reports.
    pub fn run(mut self) -> FullStackReport {
        let wall = Stopwatch::start();
        let end = self.config.max_virtual;
        let stop = loop {
            if self.stage == Stage::Done {
                break Stop::Finished;
            }
            if self.counters.events >= self.config.max_events {
                break Stop::EventLimit;
            }
            let Some((at, ev)) = self.queue.pop() else {
                break Stop::Quiet;
            };
            let at = at.duration_since(self.unix);
            if at > end {
                break Stop::TimeLimit;
            }
            self.now = self.now.max(at);
            self.counters.events += 1;
            self.handle(ev);
        };
        report::build(self, stop, wall.elapsed())
    }

    fn push(&mut self, at: Duration, ev: Ev) {
        self.queue.push(self.unix.saturating_add(at), ev);
    }

    fn instant(&self, at: Duration) -> Instant {
        self.base.checked_add(at).unwrap_or(self.base)
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.instant(self.now);
        match ev {
            Ev::Deliver { from, to, data } => {
                let Some(h) = self.hosts.get_mut(to as usize) else {
                    return;
                };
                self.counters.datagrams_delivered += 1;
                self.counters.bytes_delivered += data.len() as u64;
                self.trace.record(
                    micros(self.now),
                    RecordKind::Datagram,
                    from,
                    to,
                    data.len() as u64,
                    &[],
                );
                h.host.handle_datagram(now, host_addr(from), &data);
                self.drain(to);
            }
            Ev::Timer { host, generation } => {
                let Some(h) = self.hosts.get_mut(host as usize) else {
                    return;
                };
                if h.generation != generation {
                    return; // the timer moved since
                }
                h.timer = None;
                h.host.handle_timeout(now);
                self.drain(host);
            }
            Ev::Bootstrap { host, attempt } => self.bootstrap(host, attempt),
            Ev::Publish(p) => self.publish(p),
            Ev::Lookup(l) => self.lookup(l),
        }
    }

    /// After any call into host `i`: sends what it has to send, takes its
    /// events, and re-arms its timer (the `Host` contract).
    fn drain(&mut self, i: u32) {
        let now = self.now;
        let mut buf = std::mem::take(&mut self.buf);
        let mut events = Vec::new();
        let timeout = {
            let Some(h) = self.hosts.get_mut(i as usize) else {
                return;
            };
            let mut out = Vec::new();
            while let Some(t) = h.host.poll_transmit(&mut buf) {
                let data = buf.get(..t.size).unwrap_or(&buf);
                match t.segment_size {
                    Some(s) if s > 0 => {
                        out.extend(data.chunks(s).map(|c| (t.destination, c.to_vec())))
                    }
                    _ => out.push((t.destination, data.to_vec())),
                }
            }
            while let Some(e) = h.host.poll_event() {
                events.push(e);
            }
            let timeout = h.host.poll_timeout();
            for (to, data) in out {
                self.send(i, to, data);
            }
            timeout
        };
        self.buf = buf;
        for e in events {
            self.host_event(i, e);
        }
        let at = timeout.map(|t| {
            let d = t.saturating_duration_since(self.base);
            // Rounded up: the queue counts microseconds, and a timer woken
            // before its instant would do nothing and ask again.
            let us = u64::try_from(d.as_nanos().div_ceil(1_000)).unwrap_or(u64::MAX);
            Duration::from_micros(us).max(now)
        });
        let Some(h) = self.hosts.get_mut(i as usize) else {
            return;
        };
        if h.timer != at {
            h.generation += 1;
            h.timer = at;
            let generation = h.generation;
            if let Some(at) = at {
                self.push(
                    at,
                    Ev::Timer {
                        host: i,
                        generation,
                    },
                );
            }
        }
    }

    /// Hands one datagram to the network: lost, or queued for delivery.
    fn send(&mut self, from: u32, to: SocketAddr, data: Vec<u8>) {
        self.counters.datagrams_sent += 1;
        self.counters.bytes_sent += data.len() as u64;
        let Some(to) = host_index(to).filter(|&t| (t as usize) < self.hosts.len()) else {
            self.counters.datagrams_undeliverable += 1;
            return;
        };
        let at = self.net.start().saturating_add(self.now);
        match self.net.transit(from, to, data.len(), at) {
            Transit::Lost => self.counters.datagrams_lost += 1,
            Transit::Arrives(d) => {
                // A path is FIFO: jitter delays a datagram and the ones
                // behind it, but does not let them overtake it (independent
                // jitter would shuffle every burst, and QUIC would take the
                // reordering for loss).
                let last = self.last_arrival.entry((from, to)).or_default();
                let at = self.now.saturating_add(d).max(*last);
                *last = at;
                self.push(at, Ev::Deliver { from, to, data });
            }
        }
    }

    fn host_event(&mut self, i: u32, e: HostEvent) {
        match e {
            HostEvent::Node(Event::QueryDone { id, result, .. }) => {
                if let Some(tag) = self.queries.remove(&(i, id)) {
                    self.query_done(i, tag, result);
                }
            }
            HostEvent::Connected { inbound: false, .. } => self.counters.handshakes += 1,
            HostEvent::ConnectionClosed { .. } => self.counters.connections_closed += 1,
            HostEvent::Refused { .. } => self.counters.requests_refused += 1,
            _ => {}
        }
    }

    // ------------------------------------------------------------ workload

    fn bootstrap(&mut self, i: u32, attempt: u32) {
        let now = self.instant(self.now);
        let seed = NodeAddr::quic(host_addr(0).to_string());
        let Some(h) = self.hosts.get_mut(i as usize) else {
            return;
        };
        match h.host.command(now, |n, ts| n.bootstrap(ts, vec![seed])) {
            Ok(q) => {
                self.queries.insert((i, q), Tag::Bootstrap { attempt });
            }
            Err(e) => {
                tracing::debug!(host = i, "bootstrap refused: {e}");
                self.bootstrap_over(i, attempt, false);
            }
        }
        self.drain(i);
    }

    /// A bootstrap ended: retried after a second, or counted.
    fn bootstrap_over(&mut self, i: u32, attempt: u32, ok: bool) {
        if !ok && attempt < BOOTSTRAP_ATTEMPTS {
            self.counters.bootstrap_retries += 1;
            let at = self.now + Duration::from_secs(1);
            self.push(
                at,
                Ev::Bootstrap {
                    host: i,
                    attempt: attempt + 1,
                },
            );
            return;
        }
        if ok {
            self.counters.bootstraps_ok += 1;
        } else {
            self.counters.bootstraps_failed += 1;
        }
        self.outcome(i, i, OUTCOME_BOOTSTRAP, ok);
        self.joining = self.joining.saturating_sub(1);
        if self.joining == 0 && self.stage == Stage::Joining {
            self.start_publishing();
        }
    }

    /// Picks the publishers (distinct hosts) and schedules their publishes.
    fn start_publishing(&mut self) {
        self.stage = Stage::Publishing;
        let mut order: Vec<u32> = (0..self.hosts.len() as u32).collect();
        // A partial Fisher–Yates shuffle: the first P are the publishers.
        let p = self.config.publishers.min(order.len());
        for k in 0..p {
            let j = k + self.rng.index(order.len() - k);
            order.swap(k, j);
        }
        let start = self.now + self.config.settle;
        let over = micros(self.config.publish_over);
        for (n, &host) in order.iter().take(p).enumerate() {
            let path = format!("compute/sim/svc{n}");
            let identity = self.hosts[host as usize].host.identity();
            self.pubs.push(Pub {
                host,
                keys: schema::hierarchical_keys(&path),
                path,
                identity,
                id: None,
                done: false,
            });
            let at = start + Duration::from_micros(self.rng.below(over));
            self.push(at, Ev::Publish(n as u32));
        }
        self.publishing = p;
        if p == 0 {
            self.start_lookups();
        }
    }

    fn publish(&mut self, p: u32) {
        let now = self.instant(self.now);
        let Some(pb) = self.pubs.get(p as usize) else {
            return;
        };
        let (host, keys) = (pb.host, pb.keys.clone());
        let payload = format!(
            "{{\"endpoint\":\"quic://{}\",\"capability\":\"{}\"}}",
            host_addr(host),
            pb.path
        )
        .into_bytes();
        let topic = format!("svc-{p}");
        let Some(h) = self.hosts.get_mut(host as usize) else {
            return;
        };
        // Signed by the host's own key: its identity is the publisher the
        // lookups filter by.
        let signed = DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), h.host.timestamp(now))
            .topic(topic)
            .payload(payload)
            .routing_keys(keys)
            .sign(&h.key);
        let result = match signed {
            Ok(d) => h
                .host
                .command(now, |n, ts| n.publish(ts, d))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(q) => {
                self.queries.insert((host, q), Tag::Publish(p));
            }
            Err(e) => {
                tracing::debug!(host, "publish refused: {e}");
                self.publish_over(p, None);
            }
        }
        self.drain(host);
    }

    /// Whether a host other than `publisher` holds descriptor `id`.
    fn held_elsewhere(&self, publisher: u32, id: &Hash) -> bool {
        self.hosts
            .iter()
            .enumerate()
            .any(|(j, h)| j != publisher as usize && h.host.node().storage().get(id).is_some())
    }

    fn publish_over(&mut self, p: u32, id: Option<Hash>) {
        let Some(pb) = self.pubs.get_mut(p as usize) else {
            return;
        };
        if pb.done {
            return;
        }
        pb.done = true;
        pb.id = id;
        let host = pb.host;
        self.outcome(host, p, OUTCOME_PUBLISH, id.is_some());
        if id.is_some() {
            self.counters.publishes_ok += 1;
        } else {
            self.counters.publishes_failed += 1;
        }
        self.publishing = self.publishing.saturating_sub(1);
        if self.publishing == 0 && self.stage == Stage::Publishing {
            self.start_lookups();
        }
    }

    /// Draws every lookup (querier, publisher, level) and schedules it.
    fn start_lookups(&mut self) {
        self.stage = Stage::LookingUp;
        let published: Vec<u32> = (0..self.pubs.len() as u32)
            .filter(|&p| self.pubs[p as usize].id.is_some())
            .collect();
        let start = self.now + self.config.settle;
        let over = micros(self.config.lookup_over);
        let n = self.hosts.len();
        if published.is_empty() {
            // Nothing to look for: every lookup counts as failed.
            self.counters.lookups_not_found += self.config.lookups as u64;
            self.stage = Stage::Done;
            return;
        }
        for _ in 0..self.config.lookups {
            let l = self.lookups.len() as u32;
            let Some(&p) = published.get(self.rng.index(published.len())) else {
                continue;
            };
            let pb = &self.pubs[p as usize];
            // Another host than the publisher (n ≥ 2).
            let mut querier = self.rng.index(n - 1) as u32;
            if querier >= pb.host {
                querier += 1;
            }
            let Some(&key) = pb.keys.get(self.rng.index(pb.keys.len())) else {
                continue;
            };
            self.lookups.push(Lookup {
                querier,
                publisher: p,
                key,
                issued: None,
                found: None,
            });
            self.looking += 1;
            let at = start + Duration::from_micros(self.rng.below(over));
            self.push(at, Ev::Lookup(l));
        }
        if self.looking == 0 {
            self.stage = Stage::Done;
        }
    }

    fn lookup(&mut self, l: u32) {
        let now = self.instant(self.now);
        let Some(lk) = self.lookups.get_mut(l as usize) else {
            return;
        };
        let Some(pb) = self.pubs.get(lk.publisher as usize) else {
            return;
        };
        let filters = Filters {
            publisher: Some(pb.identity),
            ..Filters::default()
        };
        let (querier, key) = (lk.querier, lk.key);
        lk.issued = Some(self.now);
        self.counters.lookups_issued += 1;
        let Some(h) = self.hosts.get_mut(querier as usize) else {
            return;
        };
        match h
            .host
            .command(now, |n, ts| n.discover(ts, key, Some(filters), MAX_RESULTS))
        {
            Ok(q) => {
                self.queries.insert((querier, q), Tag::Lookup(l));
            }
            Err(e) => {
                tracing::debug!(host = querier, "lookup refused: {e}");
                self.counters.lookups_refused += 1;
                self.lookup_over(l, false);
            }
        }
        self.drain(querier);
    }

    fn lookup_over(&mut self, l: u32, found: bool) {
        let Some(lk) = self.lookups.get_mut(l as usize) else {
            return;
        };
        if lk.found.is_some() {
            return;
        }
        lk.found = Some(found);
        let took = self.now.saturating_sub(lk.issued.unwrap_or(self.now));
        let (querier, publisher) = (lk.querier, lk.publisher);
        if found {
            self.counters.lookups_found += 1;
            self.latency.push(micros(took));
        } else {
            self.counters.lookups_not_found += 1;
        }
        let took = micros(took) & ((1 << 60) - 1);
        self.outcome(querier, publisher, OUTCOME_LOOKUP | took, found);
        self.looking = self.looking.saturating_sub(1);
        if self.looking == 0 && self.stage == Stage::LookingUp {
            self.stage = Stage::Done;
        }
    }

    /// Writes a command's outcome to the trace: `a` and `b` name who and
    /// what, `detail` the kind (and a lookup's latency).
    fn outcome(&mut self, a: u32, b: u32, detail: u64, ok: bool) {
        let detail = detail | u64::from(ok) << 63;
        self.trace
            .record(micros(self.now), RecordKind::Action, a, b, detail, &[]);
    }

    fn query_done(&mut self, i: u32, tag: Tag, result: QueryResult) {
        match tag {
            Tag::Bootstrap { attempt } => {
                let ok = matches!(result, QueryResult::Bootstrap { table_size } if table_size > 0);
                self.bootstrap_over(i, attempt, ok);
            }
            Tag::Publish(p) => {
                // Acknowledged at every key, and held by some host other
                // than the publisher (which counts itself among the
                // replicas when it is one of the K closest: with an empty
                // table that is all it reaches).
                let id = match result {
                    QueryResult::Publish { id, keys }
                        if keys.iter().all(|k| k.acked > 0) && self.held_elsewhere(i, &id) =>
                    {
                        Some(id)
                    }
                    _ => None,
                };
                self.publish_over(p, id);
            }
            Tag::Lookup(l) => {
                let want = self
                    .lookups
                    .get(l as usize)
                    .and_then(|lk| self.pubs.get(lk.publisher as usize))
                    .and_then(|pb| pb.id);
                let found = match (&result, want) {
                    (QueryResult::Discover { descriptors, .. }, Some(id)) => {
                        descriptors.iter().any(|d| d.id == id)
                    }
                    _ => false,
                };
                self.lookup_over(l, found);
            }
        }
    }
}

/// Trace detail of a bootstrap's outcome (bits 60–62 name the command;
/// bit 63 is success; a lookup's latency in µs sits below).
const OUTCOME_BOOTSTRAP: u64 = 1 << 60;
/// Trace detail of a publish's outcome.
const OUTCOME_PUBLISH: u64 = 2 << 60;
/// Trace detail of a lookup's outcome.
const OUTCOME_LOOKUP: u64 = 3 << 60;

/// Microseconds, saturating.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
