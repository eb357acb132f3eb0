//! The node: one Sans-IO state machine that is a whole MARS DHT participant.
//!
//! # Contract
//!
//! A `Node` never performs IO and never reads a clock. The driver (tokio,
//! smol, a simulator, a test) owns sockets and time and does four things:
//!
//! 1. **Inbound requests.** For each request stream, call
//!    [`handle_request`](Node::handle_request) with the TLS-authenticated
//!    peer and the frame; write the [`Outcome`]'s response frame, or reset
//!    the stream with its refusal code. Requests read together (a burst of
//!    datagrams) may go in one [`handle_requests`](Node::handle_requests)
//!    call instead: same answers, STORE signatures verified as a batch.
//! 2. **Outbound requests.** After *any* call into the node, drain
//!    [`poll_request`](Node::poll_request) until it returns `None`: open a
//!    stream to `to` (checking the peer's certificate is `expect`, when set),
//!    write `frame`, and later report the response frame — or the failure —
//!    with [`handle_response`](Node::handle_response), passing the request's
//!    id. A response that never comes needs no report: the node times the
//!    request out itself after `request_timeout`.
//! 3. **Events.** Then drain [`poll_event`](Node::poll_event): query results
//!    ([`Event::QueryDone`]) and notices.
//! 4. **Time.** Ask [`poll_timeout`](Node::poll_timeout) for the next
//!    deadline and call [`handle_timeout`](Node::handle_timeout) when it
//!    passes (an early or extra call is harmless). Then drain again.
//!
//! `now` must never go backwards between calls. Every queue is bounded: a
//! command beyond a bound returns [`CommandError::Busy`] instead of growing
//! one. Randomness (message ids, refresh targets) comes from the seed given
//! to [`Node::new`], so a run is reproducible.
//!
//! # Example: two nodes, driven by hand
//!
//! ```
//! use mars_proto::node::{Event, Node, Outcome, PeerInfo, QueryResult, Response};
//! use mars_proto::wire::NodeAddr;
//! use mars_proto::{Config, DescriptorBuilder, Keypair, Timestamp, schema};
//!
//! let now = Timestamp::from_secs(1_700_000_000);
//! let (ka, kb) = (Keypair::from_secret_bytes(&[1; 32]), Keypair::from_secret_bytes(&[2; 32]));
//! let (addr_a, addr_b) = (NodeAddr::quic("127.0.0.1:1000"), NodeAddr::quic("127.0.0.1:2000"));
//! let mut a = Node::new(Config::testing(), ka.clone(), addr_a.clone(), now, 1);
//! let mut b = Node::new(Config::testing(), kb.clone(), addr_b.clone(), now, 2);
//!
//! // Deliver every request a node wants to send to the other one, until quiet.
//! fn pump(from: &mut Node, from_addr: &NodeAddr, to: &mut Node, now: Timestamp) -> bool {
//!     let mut any = false;
//!     while let Some(req) = from.poll_request() {
//!         any = true;
//!         let peer = PeerInfo { identity: from.identity(), addr: from_addr.clone() };
//!         match to.handle_request(now, &peer, &req.frame) {
//!             Outcome::Respond(frame) => {
//!                 let resp = Response { peer: to.identity(), frame: &frame };
//!                 from.handle_response(now, req.id, Ok(resp));
//!             }
//!             Outcome::Refuse(r) => panic!("refused: {r}"),
//!         }
//!     }
//!     any
//! }
//!
//! // A bootstraps from B's address; B checks A with a PING before trusting it.
//! let q = a.bootstrap(now, vec![addr_b.clone()]).unwrap();
//! while pump(&mut a, &addr_a, &mut b, now) | pump(&mut b, &addr_b, &mut a, now) {}
//! let done = std::iter::from_fn(|| a.poll_event())
//!     .find_map(|e| match e { Event::QueryDone { id, result, .. } if id == q => Some(result), _ => None });
//! assert_eq!(done, Some(QueryResult::Bootstrap { table_size: 1 }));
//!
//! // A publishes; the descriptor lands at B (and at A itself: 2 < K nodes).
//! let d = DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), now)
//!     .routing_keys(schema::hierarchical_keys("compute/demo"))
//!     .sign(&ka).unwrap();
//! a.publish(now, d).unwrap();
//! while pump(&mut a, &addr_a, &mut b, now) | pump(&mut b, &addr_b, &mut a, now) {}
//!
//! // B finds it.
//! let q = b.discover(now, schema::routing_key("compute"), None, 20).unwrap();
//! while pump(&mut b, &addr_b, &mut a, now) | pump(&mut a, &addr_a, &mut b, now) {}
//! let found = std::iter::from_fn(|| b.poll_event()).find_map(|e| match e {
//!     Event::QueryDone { id, result: QueryResult::Discover { descriptors, .. }, .. } if id == q => Some(descriptors),
//!     _ => None,
//! });
//! assert_eq!(found.map(|d| d.len()), Some(1));
//! ```

mod client;
mod event;
mod publish;
mod refusal;
mod server;
mod timer_set;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

pub use event::{Event, KeyReplicas, Misbehaviour, QueryError, QueryId, QueryResult, RequestId};
pub use refusal::{Outcome, Refusal, RefusalCode};
pub use server::InboundRequest;

use crate::config::Config;
use crate::descriptor::ValidDescriptor;
use crate::identity::{Identity, Keypair};
use crate::key_cache::KeyCache;
use crate::node_id::NodeId;
use crate::rng::Rng;
use crate::routing::{Peer, RoutingTable};
use crate::store::{BoxedStore, MemoryStore, Storage, StoreError};
use crate::time::Timestamp;
use crate::wire::{MsgId, NodeAddr};

use client::{Pending, Query};
use publish::OwnPublication;
use timer_set::TimerSet;

/// The authenticated peer of an inbound request: the identity read from its
/// TLS certificate and the address its packets came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Identity from the peer's certificate.
    pub identity: Identity,
    /// The address the driver saw (reported back in PONG's `observed_addr`).
    pub addr: NodeAddr,
}

/// A request the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    /// Hand this back with the response.
    pub id: RequestId,
    /// Where to send it.
    pub to: NodeAddr,
    /// The identity the peer's certificate must carry; `None` for a seed
    /// known only by address. A mismatch is reported as
    /// [`TransportError::IdentityMismatch`], never trusted.
    pub expect: Option<Identity>,
    /// The whole request frame.
    pub frame: Vec<u8>,
}

/// A response as the driver received it.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// The responder's identity, from its certificate.
    pub peer: Identity,
    /// The whole response frame.
    pub frame: &'a [u8],
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The address could not be reached (no route, refused, handshake failed).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer's certificate carries a different identity than expected.
    #[error("certificate identity {found} is not the expected {expected}")]
    IdentityMismatch {
        /// Who we meant to reach.
        expected: Identity,
        /// Who answered.
        found: Identity,
    },
    /// The peer reset the stream (it refused the request).
    #[error("stream reset by peer with code {0}")]
    Reset(u64),
    /// The connection closed before the response was complete.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The driver gave up waiting.
    #[error("timed out")]
    TimedOut,
}

/// A command the node could not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A bound was reached (queries or requests in flight); retry later.
    #[error("busy: {what} at its limit of {limit}")]
    Busy {
        /// Which bound.
        what: &'static str,
        /// Its value.
        limit: usize,
    },
    /// The descriptor is not valid now.
    #[error("invalid descriptor: {0}")]
    Invalid(#[from] crate::descriptor::ValidationError),
    /// A key that names no position in the key space (not a 32-byte digest).
    #[error("key {0} is not a 32-byte digest and names no DHT position")]
    BadKey(crate::hash::Hash),
    /// The address is refused by the address policy.
    #[error("address refused: {0}")]
    Address(#[from] crate::address_policy::AddressRefusal),
    /// The revocation could not be built.
    #[error("revocation: {0}")]
    Revocation(#[from] crate::schema::RevocationError),
    /// Revoke/unpublish of a descriptor this node does not publish.
    #[error("descriptor {0} is not one of this node's publications")]
    NotPublished(crate::hash::Hash),
}

/// Entries a drained queue keeps room for.
const DRAINED_KEEP: usize = 4;

/// Gives back the room a burst left in a queue the driver just drained
/// (one bootstrap queues ~20 requests of ~120 bytes, and a `VecDeque`
/// never shrinks on its own: measured in mars-sim, 3.8 KB held by every
/// idle node). Ordinary traffic stays within the kept room and never
/// reallocates.
fn shrink_drained<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() > DRAINED_KEEP {
        queue.shrink_to(DRAINED_KEEP);
    }
}

/// Why the node wants to be woken, reported with [`Node::poll_timeout`] to
/// make busy loops easy to debug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerReason {
    /// An outbound request times out.
    RequestTimeout,
    /// A lookup request has been unanswered long enough to free its α slot.
    SlowRequest,
    /// A query reaches `query_timeout` and completes with partial results.
    QueryDeadline,
    /// A stored descriptor expires.
    StoreExpiry,
    /// One of our own descriptors is due for republishing.
    Republish,
    /// The routing table's buckets are checked for staleness.
    BucketRefresh,
    /// The next requester may be checked with a PING.
    VerifyRequester,
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Requests handled, by type (PING, STORE, FIND_NODE, FIND_VALUE).
    pub requests: [u64; 4],
    /// Requests refused, by [`RefusalCode`] (index = code − 1).
    pub refused: [u64; 6],
    /// STOREs answered with `stored: false`.
    pub stores_refused: u64,
    /// Requesters dropped because the verification queue was full.
    pub verify_dropped: u64,
    /// Proxied descriptors dropped because the replication queue was full.
    pub replication_dropped: u64,
    /// Informational events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Requests sent.
    pub requests_sent: u64,
    /// Requests that failed or timed out.
    pub requests_failed: u64,
}

/// A MARS DHT node. See the [module documentation](self) for the contract.
#[derive(Debug)]
pub struct Node {
    config: Config,
    keypair: Keypair,
    identity: Identity,
    local_id: NodeId,
    local_addr: NodeAddr,
    rng: Rng,
    table: RoutingTable,
    storage: Storage<BoxedStore>,
    /// Publisher keys already decompressed, for every signature check the
    /// node makes (STOREs, lookup answers, its own publications).
    key_cache: KeyCache,
    queries: BTreeMap<QueryId, Query>,
    pending: BTreeMap<RequestId, Pending>,
    deadlines: TimerSet<RequestId>,
    /// When lookup requests stop holding an α slot.
    slow: TimerSet<RequestId>,
    /// When queries complete with whatever they have.
    query_deadlines: TimerSet<QueryId>,
    outbox: VecDeque<OutboundRequest>,
    events: VecDeque<Event>,
    /// Requesters waiting for a PING at their claimed address.
    verify_queue: VecDeque<(Identity, NodeId, NodeAddr)>,
    /// Identities queued or being verified, so each is checked once.
    verifying: BTreeSet<Identity>,
    verify_next: Timestamp,
    /// Proxied descriptors waiting to be replicated.
    replication: VecDeque<Arc<ValidDescriptor>>,
    own: BTreeMap<(crate::hash::Hash, String), OwnPublication>,
    next_refresh_check: Timestamp,
    next_query: u64,
    next_request: u64,
    stats: NodeStats,
}

impl Node {
    /// A node with `keypair`, reachable at `local_addr`, starting at `now`,
    /// drawing all its randomness from `seed`, storing descriptors in
    /// memory.
    pub fn new(
        config: Config,
        keypair: Keypair,
        local_addr: NodeAddr,
        now: Timestamp,
        seed: u64,
    ) -> Self {
        Self::with_store(
            config,
            keypair,
            local_addr,
            now,
            seed,
            Box::new(MemoryStore::default()),
        )
    }

    /// [`new`](Node::new) with another storage engine (a durable one, say).
    /// An engine that already holds descriptors (a restart) is resumed:
    /// revocations and key rotations it holds keep being enforced.
    pub fn with_store(
        config: Config,
        keypair: Keypair,
        local_addr: NodeAddr,
        now: Timestamp,
        seed: u64,
        store: BoxedStore,
    ) -> Self {
        let identity = keypair.identity();
        let local_id = identity.node_id();
        let table = RoutingTable::new(local_id, config.k);
        let storage = Storage::resume(store, config.store.clone());
        let next_refresh_check = now.saturating_add(config.refresh_interval);
        Node {
            keypair,
            identity,
            local_id,
            local_addr,
            rng: Rng::new(seed),
            table,
            storage,
            key_cache: KeyCache::new(config.key_cache_capacity),
            queries: BTreeMap::new(),
            pending: BTreeMap::new(),
            deadlines: TimerSet::new(),
            slow: TimerSet::new(),
            query_deadlines: TimerSet::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            verify_queue: VecDeque::new(),
            verifying: BTreeSet::new(),
            verify_next: now,
            replication: VecDeque::new(),
            own: BTreeMap::new(),
            next_refresh_check,
            next_query: 0,
            next_request: 0,
            stats: NodeStats::default(),
            config,
        }
    }

    /// This node's identity.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// This node's position in the key space.
    pub fn node_id(&self) -> NodeId {
        self.local_id
    }

    /// The address this node advertises.
    pub fn local_addr(&self) -> &NodeAddr {
        &self.local_addr
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The routing table (read-only).
    pub fn routing_table(&self) -> &RoutingTable {
        &self.table
    }

    /// The descriptor store (read-only).
    pub fn storage(&self) -> &Storage<BoxedStore> {
        &self.storage
    }

    /// Stops the node and hands back its storage engine, as a process that
    /// exits leaves its durable store behind: [`with_store`](Node::with_store)
    /// builds the restarted node around it. Everything else (routing table,
    /// queries, own publications, rate-limit buckets) is dropped, as it
    /// would be by a restart.
    pub fn into_store(self) -> BoxedStore {
        self.storage.into_store()
    }

    /// The node's cache of decompressed publisher keys (its hit rate, for
    /// metrics).
    pub fn key_cache(&self) -> &KeyCache {
        &self.key_cache
    }

    /// Makes what the store committed durable (a disk engine's fsync; a
    /// no-op in memory). A driver calls it before sending datagrams, so no
    /// STORE_ACK leaves before its descriptor is on disk; the QUIC host
    /// does so in [`poll_transmit`](crate::quic::Host::poll_transmit).
    pub fn flush_storage(&mut self) -> Result<(), StoreError> {
        self.storage.flush()
    }

    /// Counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Queries in progress.
    pub fn queries_in_progress(&self) -> usize {
        self.queries.len()
    }

    /// The next request to send, if any.
    pub fn poll_request(&mut self) -> Option<OutboundRequest> {
        let next = self.outbox.pop_front();
        if next.is_none() {
            shrink_drained(&mut self.outbox);
        }
        next
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let next = self.events.pop_front();
        if next.is_none() {
            shrink_drained(&mut self.events);
        }
        next
    }

    /// The earliest time the node needs [`handle_timeout`](Node::handle_timeout),
    /// and why.
    pub fn poll_timeout(&self) -> Option<(Timestamp, TimerReason)> {
        let mut best: Option<(Timestamp, TimerReason)> = None;
        let mut offer = |t: Option<Timestamp>, r: TimerReason| {
            if let Some(t) = t {
                if best.is_none_or(|(b, _)| t < b) {
                    best = Some((t, r));
                }
            }
        };
        offer(
            self.deadlines.first().map(|(t, _)| *t),
            TimerReason::RequestTimeout,
        );
        offer(self.slow.first().map(|(t, _)| *t), TimerReason::SlowRequest);
        offer(
            self.query_deadlines.first().map(|(t, _)| *t),
            TimerReason::QueryDeadline,
        );
        offer(self.storage.next_expiry(), TimerReason::StoreExpiry);
        offer(
            self.own.values().map(|o| o.republish_at).min(),
            TimerReason::Republish,
        );
        offer(Some(self.next_refresh_check), TimerReason::BucketRefresh);
        if !self.verify_queue.is_empty() {
            offer(Some(self.verify_next), TimerReason::VerifyRequester);
        }
        best
    }

    /// Advances time: times out requests, expires descriptors, republishes,
    /// refreshes stale buckets, checks queued requesters.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(&(t, id)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(p) = self.pending.remove(&id) {
                self.outbox.retain(|r| r.id != id);
                if let Some(t) = p.slow_at {
                    self.slow.remove(&(t, id));
                }
                self.on_request_failed(now, p, "timed out".to_owned());
            }
        }
        self.handle_slow_requests(now);
        self.expire_queries(now);
        let expired = self.storage.sweep(now);
        if !expired.is_empty() {
            self.push_event(Event::DescriptorsExpired {
                count: expired.len(),
            });
        }
        self.republish_due(now);
        if now >= self.next_refresh_check {
            self.next_refresh_check = now.saturating_add(self.refresh_check_period());
            self.refresh_stale_buckets(now);
        }
        self.pump_verification(now);
        self.pump_replication(now);
    }

    fn refresh_check_period(&self) -> Duration {
        // Check a few times per interval so a bucket is refreshed within
        // ~1.25 × refresh_interval of its last activity.
        (self.config.refresh_interval / 4).max(Duration::from_secs(1))
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= self.config.max_events {
            if !matches!(e, Event::QueryDone { .. }) {
                self.stats.events_dropped += 1;
                return;
            }
            // Make room by dropping the oldest informational event.
            if let Some(i) = self
                .events
                .iter()
                .position(|x| !matches!(x, Event::QueryDone { .. }))
            {
                self.events.remove(i);
                self.stats.events_dropped += 1;
            }
        }
        self.events.push_back(e);
    }

    fn new_msg_id(&mut self) -> MsgId {
        let mut id = [0u8; 16];
        self.rng.fill(&mut id);
        MsgId(id)
    }

    /// The node id of `identity`, from the shared memo when there is one.
    fn id_of(&self, identity: &Identity) -> NodeId {
        match &self.config.node_id_cache {
            Some(cache) => cache.node_id(identity),
            None => identity.node_id(),
        }
    }

    /// A peer answered us at `addr`: it may enter the routing table. `id`
    /// is its node id.
    fn on_contact(&mut self, now: Timestamp, identity: Identity, id: NodeId, addr: NodeAddr) {
        if identity == self.identity || self.config.address_policy.check(&addr).is_err() {
            return;
        }
        self.verifying.remove(&identity);
        let peer = Peer {
            identity,
            id,
            addr,
            last_seen: now,
        };
        match self.table.on_contact(peer.clone(), now) {
            crate::routing::ContactOutcome::Added => self.push_event(Event::PeerAdded(peer)),
            crate::routing::ContactOutcome::Challenge { oldest, .. } => {
                self.send_challenge(now, oldest);
            }
            _ => {}
        }
    }
}
