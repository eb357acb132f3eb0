//! The engine: a virtual clock, one event queue, and `mars_proto::Node`s
//! driven exactly as a real driver drives them.
//!
//! Everything that happens is an event in one [`EventQueue`]: a request
//! arriving at its target, a response (or a transport error) arriving back,
//! a node's timer, or a scenario action (a join, a crash, a lookup, a phase
//! starting). The loop pops the earliest event, sets the clock to its time,
//! and handles it; whatever the node then wants to send becomes new events
//! after the network's delay. After every call into a node the engine
//! follows the node's contract: drain `poll_request`, drain `poll_event`,
//! then ask `poll_timeout` and keep one timer event for the earliest
//! deadline.
//!
//! Requests travel as the encoded frames the node produced; the target's
//! `handle_request` answers with frame bytes, which travel back and go into
//! the requester's `handle_response`. A crashed node is silent (its peers
//! time out); a node that left gracefully makes requests fail at once.
//!
//! There are no threads and no hash maps: the order of everything is a
//! function of the seed, and the [`Trace`](crate::trace::Trace) hash proves it.

mod actions;
mod adversarial;
mod deliver;
mod hops;
mod lifecycle;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mars_proto::node::{Event, Node, OutboundRequest, PeerInfo, RequestId};
use mars_proto::wire::NodeAddr;
use mars_proto::{Config, Hash, Identity, Keypair, NodeId, Timestamp};

use crate::adversary::{AdversaryState, Behaviour};
use crate::churn::Return;
use crate::liveset::LiveSet;
use crate::metrics::{Counters, PhaseMetrics, ReplicaSample};
use crate::network::Network;
use crate::queue::EventQueue;
use crate::report::Report;
use crate::rng::SimRng;
use crate::scenario::Scenario;
use crate::trace::Trace;
use crate::wall::Stopwatch;
use crate::workload::{LookupRec, Publisher};

/// Virtual time at which every run starts (2023-11-14, an arbitrary fixed
/// date, so descriptor timestamps look real).
pub const START: Timestamp = Timestamp::from_secs(1_700_000_000);

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Running.
    Up,
    /// Crashed: silent.
    Crashed,
    /// Left gracefully: its address refuses connections.
    Left,
}

/// One simulated node: the real `Node` plus what the simulator knows of it.
#[derive(Debug)]
pub(crate) struct SimNode {
    /// The node (kept while down only when it will restart with its state).
    /// Boxed: a `Node` is about 1.9 KB, and the engine reads this struct's
    /// other fields (status, incarnation, timer) for every event, so inline
    /// nodes spread those over 2 KB per node — 200 MB at 100,000 nodes,
    /// nearly every event a cache miss before the node is even reached.
    node: Option<Box<Node>>,
    /// Boxed (224 bytes, used only to sign and to restart) for the same
    /// reason as `node`.
    keypair: Box<Keypair>,
    skew_us: i64,
    /// Incarnation: bumped when the node goes down, so responses and timers
    /// meant for an earlier incarnation are dropped.
    generation: u32,
    status: Status,
    /// The earliest timer event queued for this node.
    timer_at: Option<Timestamp>,
    /// Bootstrapped (a valid querier and seed).
    ready: bool,
    adversary: Option<(Behaviour, Box<AdversaryState>)>,
    publisher: Option<u32>,
    /// Must publish again once bootstrapped (it restarted empty).
    needs_publish: bool,
    up_since: Timestamp,
    up_us: u64,
    /// Messages sent (requests and responses).
    msgs: u64,
    /// Store refusals counted by incarnations already gone.
    stores_refused_before: u64,
}

/// What a query a node runs is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    Bootstrap,
    Publish(u32),
    Lookup(u32),
}

/// A request on its way to `to`.
#[derive(Debug)]
pub(crate) struct Req {
    from: u32,
    from_gen: u32,
    to: u32,
    id: u64,
    expect: Option<Identity>,
    frame: Vec<u8>,
    /// Sent by the simulator on an adversary's behalf (a forged STORE): the
    /// answer goes to the simulator, not to a node.
    by_sim: bool,
}

/// What came back.
#[derive(Debug)]
pub(crate) enum Body {
    Frame(Vec<u8>),
    Reset(u64),
    Unreachable,
    Mismatch { expected: Identity, found: Identity },
}

/// A response on its way back to `to`.
#[derive(Debug)]
pub(crate) struct Resp {
    to: u32,
    to_gen: u32,
    from: u32,
    id: u64,
    body: Body,
    by_sim: bool,
}

/// A scenario action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// The next initial node joins.
    Join,
    /// Node (re)tries its bootstrap.
    Bootstrap(u32),
    /// Publisher publishes (or retries).
    Publish(u32),
    /// A lookup of the phase is issued.
    Lookup(u16),
    /// A phase starts.
    PhaseStart(u16),
    /// A churn departure in a phase.
    ChurnTick(u16),
    /// A departed node restarts (`keep`: one of the restarting `Return`s).
    Restart { node: u32, keep: Return },
    /// A newcomer joins.
    Newcomer,
    /// Replicas are counted.
    Sample,
    /// A forging adversary sends a forged STORE.
    ForgeStore(u32),
}

/// A queued event.
#[derive(Debug)]
pub(crate) enum Ev {
    Request(Req),
    Response(Resp),
    Timer { node: u32, generation: u32 },
    Action(Action),
}

/// A delivered message, as shown to an observer (tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Virtual time of arrival.
    pub at: Timestamp,
    /// Sender.
    pub from: u32,
    /// Receiver.
    pub to: u32,
    /// A response (else a request).
    pub response: bool,
}

/// Called with progress: the share of virtual time done, and events so far.
pub type ProgressFn = Box<dyn FnMut(f64, u64)>;

/// A simulation of one scenario.
pub struct Sim {
    sc: Scenario,
    config: Config,
    now: Timestamp,
    measure_start: Timestamp,
    end: Timestamp,
    queue: EventQueue<Ev>,
    nodes: Vec<SimNode>,
    infos: Vec<PeerInfo>,
    net: Network,
    trace: Trace,
    /// Every node that is up.
    up: LiveSet,
    /// Honest nodes that are up (churn picks from these).
    honest_up: LiveSet,
    /// Honest nodes that are up and bootstrapped (queriers and seeds).
    ready: LiveSet,
    rng_keys: SimRng,
    rng_churn: SimRng,
    rng_work: SimRng,
    rng_adv: SimRng,
    rng_seeds: SimRng,
    /// The adversary spec planned for each initial node.
    planned: Vec<Option<usize>>,
    initial_joined: usize,
    publishers: Vec<Publisher>,
    /// Publisher index by identity.
    by_identity: BTreeMap<Identity, u32>,
    lookups: Vec<LookupRec>,
    queries: BTreeMap<(u32, u64), Tag>,
    phases: Vec<PhaseMetrics>,
    phase: Option<u16>,
    victim_keys: BTreeSet<Hash>,
    /// Eclipse adversaries, by node id.
    colluders: Vec<(NodeId, u32)>,
    counters: Counters,
    replicas: Vec<ReplicaSample>,
    out_reqs: Vec<OutboundRequest>,
    out_events: Vec<Event>,
    progress: Option<ProgressFn>,
    observer: Option<Box<dyn FnMut(Delivery)>>,
    /// The run's wall clock, while it runs.
    watch: Option<Stopwatch>,
    /// Wall time and events at the end of each stage (setup, phases).
    stages: Vec<crate::report::Stage>,
    /// Lookups whose hops to the value are measured, by querier.
    hop_watches: BTreeMap<u32, Vec<hops::HopWatch>>,
    /// Watched requests in flight: (querier, request) → (lookup, hop).
    hop_in_flight: BTreeMap<(u32, u64), (u32, u32)>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("scenario", &self.sc.name)
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("queued", &self.queue.len())
            .finish()
    }
}

/// The address of node `i`: `10.x.y.z:4433` with `x.y.z` = `i + 1`.
pub fn addr_of(i: u32) -> NodeAddr {
    let n = i + 1;
    NodeAddr::quic(format!(
        "10.{}.{}.{}:4433",
        (n >> 16) & 255,
        (n >> 8) & 255,
        n & 255
    ))
}

/// The node index an address names, if it is one of [`addr_of`]'s.
pub fn index_of(addr: &NodeAddr) -> Option<u32> {
    if !addr.is_quic() {
        return None;
    }
    let host = addr.address().strip_suffix(":4433")?;
    let mut parts = host.split('.');
    if parts.next()? != "10" {
        return None;
    }
    let mut n: u32 = 0;
    for _ in 0..3 {
        let b: u8 = parts.next()?.parse().ok()?;
        n = (n << 8) | u32::from(b);
    }
    if parts.next().is_some() || n == 0 {
        return None;
    }
    Some(n - 1)
}

impl Sim {
    /// A simulation of `scenario`, ready to [`run`](Sim::run).
    pub fn new(scenario: Scenario) -> Self {
        let seed = scenario.seed;
        let measure_start = START.saturating_add(scenario.measure_start());
        let end = START.saturating_add(scenario.total_duration());
        let net = Network::new(scenario.network.clone(), seed, measure_start);
        let victim_keys = (0..scenario.victims)
            .filter_map(|v| {
                mars_proto::schema::hierarchical_keys(&crate::workload::victim_path(v)).pop()
            })
            .collect();
        let phases = scenario
            .phases
            .iter()
            .map(|p| PhaseMetrics {
                name: p.name.clone(),
                ..PhaseMetrics::default()
            })
            .collect();
        let mut config = scenario.node_config();
        if scenario.node.signature_cache {
            config.signature_cache = Some(mars_proto::SignatureCache::new(1 << 18));
        }
        // Node ids are a pure function of identities: one memo for all the
        // nodes changes no result and saves most of their BLAKE3 work.
        if scenario.node.node_id_cache {
            config.node_id_cache = Some(mars_proto::NodeIdCache::new(4 * scenario.nodes));
        }
        let mut sim = Sim {
            config,
            now: START,
            measure_start,
            end,
            queue: EventQueue::new(),
            nodes: Vec::new(),
            infos: Vec::new(),
            net,
            trace: Trace::new(),
            up: LiveSet::new(),
            honest_up: LiveSet::new(),
            ready: LiveSet::new(),
            rng_keys: SimRng::stream(seed, "keys"),
            rng_churn: SimRng::stream(seed, "churn"),
            rng_work: SimRng::stream(seed, "workload"),
            rng_adv: SimRng::stream(seed, "adversary"),
            rng_seeds: SimRng::stream(seed, "node-seeds"),
            planned: Vec::new(),
            initial_joined: 0,
            publishers: Vec::new(),
            by_identity: BTreeMap::new(),
            lookups: Vec::new(),
            queries: BTreeMap::new(),
            phases,
            phase: None,
            victim_keys,
            colluders: Vec::new(),
            counters: Counters::default(),
            replicas: Vec::new(),
            out_reqs: Vec::new(),
            out_events: Vec::new(),
            progress: None,
            observer: None,
            watch: None,
            stages: Vec::new(),
            hop_watches: BTreeMap::new(),
            hop_in_flight: BTreeMap::new(),
            sc: scenario,
        };
        sim.plan();
        sim
    }

    /// Reports progress to `f` every 2^16 events.
    pub fn on_progress(&mut self, f: ProgressFn) {
        self.progress = Some(f);
    }

    /// Shows every delivered message to `f` (for tests; costs a call per
    /// delivery).
    pub fn observe(&mut self, f: Box<dyn FnMut(Delivery)>) {
        self.observer = Some(f);
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.sc
    }

    /// The current virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// When the first phase starts.
    pub fn measure_start(&self) -> Timestamp {
        self.measure_start
    }

    /// The network model.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Nodes created so far.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Node `i`'s state machine, while it exists.
    pub fn node(&self, i: u32) -> Option<&Node> {
        self.nodes.get(i as usize).and_then(|n| n.node.as_deref())
    }

    /// Node `i`'s status.
    pub fn status(&self, i: u32) -> Option<Status> {
        self.nodes.get(i as usize).map(|n| n.status)
    }

    /// The trace hash so far.
    pub fn trace_hash(&self) -> blake3::Hash {
        self.trace.hash()
    }

    /// Runs the scenario to its end and reports.
    pub fn run(&mut self) -> Report {
        let watch = Stopwatch::start();
        self.watch = Some(watch);
        let total = self.end.duration_since(START).as_secs_f64().max(1e-9);
        while let Some((t, ev)) = self.queue.pop_until(self.end) {
            self.now = t;
            self.counters.events += 1;
            match ev {
                Ev::Request(r) => self.deliver_request(r),
                Ev::Response(r) => self.deliver_response(r),
                Ev::Timer { node, generation } => self.fire_timer(node, generation),
                Ev::Action(a) => self.act(a),
            }
            if self.counters.events & 0xFFFF == 0 {
                if let Some(p) = self.progress.as_mut() {
                    let done = self.now.duration_since(START).as_secs_f64() / total;
                    p(done, self.counters.events);
                }
            }
        }
        self.now = self.end;
        let last = self.phase.map_or("setup".to_owned(), |k| {
            self.sc.phases[k as usize].name.clone()
        });
        self.end_stage(last);
        self.report(watch.elapsed())
    }

    /// Notes the wall time and events spent on the stage that just ended.
    fn end_stage(&mut self, name: String) {
        let Some(w) = self.watch else { return };
        let wall = w.elapsed().as_secs_f64();
        let (w0, e0) = self
            .stages
            .last()
            .map_or((0.0, 0), |s| (s.wall_until_secs, s.events_until));
        self.stages.push(crate::report::Stage {
            name,
            wall_secs: wall - w0,
            events: self.counters.events - e0,
            wall_until_secs: wall,
            events_until: self.counters.events,
        });
    }

    // ------------------------------------------------------------ node driving

    /// Node `i`'s clock.
    fn local_now(&self, i: u32) -> Timestamp {
        let skew = self.nodes[i as usize].skew_us;
        shift(self.now, skew)
    }

    /// After any call into node `i`: drain requests, then events, then keep
    /// one timer for its earliest deadline. `woken` when the call was
    /// `handle_timeout`.
    fn after_call(&mut self, i: u32, woken: bool) {
        let mut reqs = std::mem::take(&mut self.out_reqs);
        let mut evs = std::mem::take(&mut self.out_events);
        if let Some(node) = self.nodes[i as usize].node.as_mut() {
            while let Some(r) = node.poll_request() {
                reqs.push(r);
            }
            while let Some(e) = node.poll_event() {
                evs.push(e);
            }
        }
        for r in reqs.drain(..) {
            self.send_request(i, r);
        }
        for e in evs.drain(..) {
            self.on_node_event(i, e);
        }
        self.out_reqs = reqs;
        self.out_events = evs;
        self.schedule_timer(i, woken);
    }

    fn schedule_timer(&mut self, i: u32, woken: bool) {
        let now = self.now;
        let sn = &mut self.nodes[i as usize];
        if sn.status != Status::Up {
            return;
        }
        let Some((t, _)) = sn.node.as_ref().and_then(|n| n.poll_timeout()) else {
            return;
        };
        let mut at = shift(t, -sn.skew_us);
        if at <= now {
            if woken {
                // It asked to be woken in the past right after a wake-up:
                // it is waiting on something else (a full request table).
                at = now.saturating_add(Duration::from_millis(1));
                self.counters.busy_timers += 1;
            } else {
                at = now;
            }
        }
        if sn.timer_at.is_none_or(|cur| at < cur) {
            sn.timer_at = Some(at);
            let generation = sn.generation;
            self.queue.push(
                at,
                Ev::Timer {
                    node: i,
                    generation,
                },
            );
        }
    }

    fn fire_timer(&mut self, i: u32, generation: u32) {
        let now = self.now;
        let local = self.local_now(i);
        let sn = &mut self.nodes[i as usize];
        if sn.generation != generation || sn.status != Status::Up || sn.timer_at != Some(now) {
            self.counters.stale_timers += 1;
            self.counters.events -= 1;
            return;
        }
        sn.timer_at = None;
        let Some(node) = sn.node.as_mut() else {
            return;
        };
        match node.poll_timeout() {
            Some((t, _)) if t <= local => {
                self.trace.record(
                    now.as_micros(),
                    crate::trace::RecordKind::Timer,
                    i,
                    i,
                    0,
                    &[],
                );
                node.handle_timeout(local);
                self.after_call(i, true);
            }
            _ => self.schedule_timer(i, false),
        }
    }

    /// What node `i` reported.
    fn on_node_event(&mut self, i: u32, e: Event) {
        use mars_proto::node::Misbehaviour;
        match e {
            Event::QueryDone { id, result, stats } => {
                if let Some(tag) = self.queries.remove(&(i, id.0)) {
                    self.query_done(i, tag, result, stats);
                }
            }
            Event::Republished { .. } => {
                if let Some(p) = self.nodes[i as usize].publisher {
                    let ttl = Duration::from_secs(u64::from(self.sc.ttl_secs));
                    let pb = &mut self.publishers[p as usize];
                    pb.seq += 1;
                    pb.expires_at = self.now.saturating_add(ttl);
                    self.counters.republishes += 1;
                }
            }
            Event::PeerMisbehaved { reason, .. } => {
                tracing::debug!(node = i, %reason, "peer misbehaved");
                if matches!(reason, Misbehaviour::InvalidDescriptor(_)) {
                    self.counters.invalid_descriptor_events += 1;
                }
            }
            _ => {}
        }
    }

    /// Registers a query node `i` started.
    fn track(&mut self, i: u32, q: mars_proto::node::QueryId, tag: Tag) {
        self.queries.insert((i, q.0), tag);
    }
}

/// `t` shifted by `us` microseconds (saturating).
fn shift(t: Timestamp, us: i64) -> Timestamp {
    if us >= 0 {
        Timestamp::from_micros(t.as_micros().saturating_add(us as u64))
    } else {
        Timestamp::from_micros(t.as_micros().saturating_sub(us.unsigned_abs()))
    }
}

/// A request id as the trace records it.
fn rid(id: RequestId) -> u64 {
    id.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for i in [0u32, 1, 254, 255, 256, 65_535, 65_536, 99_999, 1 << 23] {
            assert_eq!(index_of(&addr_of(i)), Some(i), "{i}");
        }
        assert_eq!(index_of(&NodeAddr::quic("10.0.0.0:4433")), None);
        assert_eq!(index_of(&NodeAddr::quic("11.0.0.1:4433")), None);
        assert_eq!(index_of(&NodeAddr::quic("10.0.0.1:4434")), None);
        assert_eq!(index_of(&NodeAddr::quic("10.0.0.1.5:4433")), None);
        assert_eq!(index_of(&NodeAddr::quic("10.0.300.1:4433")), None);
    }
}
