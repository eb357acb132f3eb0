//! The client side: commands, the queries they start, and the requests
//! those send, correlated by id and bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::event::{KeyReplicas, Misbehaviour, QueryError, QueryId, QueryResult, RequestId};
use super::{CommandError, Event, Node, OutboundRequest, Response, TransportError};
use crate::descriptor::{ValidDescriptor, validate_batch_cached};
use crate::hash::Hash;
use crate::identity::Identity;
use crate::lookup::{Lookup, LookupStats, Next};
use crate::node_id::NodeId;
use crate::time::Timestamp;
use crate::wire::{
    DecodeLimits, Filters, FindNode, FindValue, FindValueResult, Frame, Message, MessageType,
    MsgId, NodeAddr, NodeInfo, Ping, Store,
};

/// An outbound request waiting for its response.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) purpose: Purpose,
    pub(super) to: NodeAddr,
    /// The identity the answer must come from, and its node id.
    pub(super) expect: Option<(Identity, NodeId)>,
    pub(super) msg_id: MsgId,
    pub(super) msg_type: MessageType,
    pub(super) max_descriptors: usize,
    pub(super) deadline: Timestamp,
    /// For lookup requests: when the request stops holding an α slot.
    pub(super) slow_at: Option<Timestamp>,
}

/// Why a request was sent.
#[derive(Debug, Clone)]
pub(super) enum Purpose {
    /// A lookup step of a query's slot.
    Lookup {
        query: QueryId,
        slot: usize,
        hop: u32,
    },
    /// A STORE of a publish's slot.
    Store { query: QueryId, slot: usize },
    /// The PING command.
    Ping { query: QueryId },
    /// Liveness check of a full bucket's oldest entry (its node id).
    Challenge { challenged: NodeId },
    /// A requester's claimed address, checked before it may enter the table.
    Verify { identity: Identity },
}

/// A command in progress.
#[derive(Debug)]
pub(super) struct Query {
    pub(super) kind: QueryKind,
    /// Started by the node itself (refresh, replication): no `QueryDone`.
    pub(super) internal: bool,
    pub(super) slots: Vec<Slot>,
    /// When the query completes with whatever it has.
    pub(super) deadline: Timestamp,
    /// Set when the deadline ended it.
    pub(super) timed_out: bool,
}

#[derive(Debug)]
pub(super) enum QueryKind {
    Bootstrap,
    FindNode,
    Refresh,
    Discover(Box<Discovery>),
    Publish {
        descriptor: Arc<ValidDescriptor>,
        /// Also offer it to our own store when we are among the K closest.
        store_locally: bool,
        /// Report as `Event::Republished` rather than `QueryDone`.
        republish: bool,
    },
    Ping,
}

/// The state of a discover query.
#[derive(Debug)]
pub(super) struct Discovery {
    key: Hash,
    filters: Option<Filters>,
    max_results: u16,
    /// Newest valid descriptor per (publisher, schema, topic).
    found: BTreeMap<(Identity, Hash, String), ValidDescriptor>,
    /// Ids already received, so each is validated once.
    seen: BTreeSet<Hash>,
    rejected: usize,
}

/// One lookup of a query (a publish has one per routing key).
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) target: Hash,
    pub(super) lookup: Lookup,
    pub(super) phase: Phase,
    pub(super) replicas: KeyReplicas,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Looking,
    Storing { outstanding: usize },
    Done,
}

impl Node {
    // ---------------------------------------------------------------- commands

    /// Joins the mesh: FIND_NODE(own id) through `seeds` (addresses only;
    /// their identities are learnt from their certificates) and any peers
    /// already known, then refreshes the buckets farther away.
    pub fn bootstrap(
        &mut self,
        now: Timestamp,
        seeds: Vec<NodeAddr>,
    ) -> Result<QueryId, CommandError> {
        let mut usable = Vec::new();
        for s in seeds {
            self.config.address_policy.check(&s)?;
            if s != self.local_addr {
                usable.push(s);
            }
        }
        let target = Hash::from_blake3_digest(*self.local_id.as_bytes());
        self.start_lookup_query(now, QueryKind::Bootstrap, false, vec![target], usable)
    }

    /// Finds the K closest nodes to `target`.
    pub fn find_node(&mut self, now: Timestamp, target: NodeId) -> Result<QueryId, CommandError> {
        let target = Hash::from_blake3_digest(*target.as_bytes());
        self.start_lookup_query(now, QueryKind::FindNode, false, vec![target], vec![])
    }

    /// Discovers valid descriptors stored at routing key `key` (see
    /// [`schema::routing_key`](crate::schema::routing_key)), at most
    /// `max_results`, filtered by `filters` (applied again locally: a
    /// responder's filtering is not trusted).
    pub fn discover(
        &mut self,
        now: Timestamp,
        key: Hash,
        filters: Option<Filters>,
        max_results: u16,
    ) -> Result<QueryId, CommandError> {
        NodeId::from_key(&key).ok_or(CommandError::BadKey(key))?;
        let mut state = Discovery {
            key,
            filters: filters.clone(),
            max_results,
            found: BTreeMap::new(),
            seen: BTreeSet::new(),
            rejected: 0,
        };
        // What we hold ourselves counts.
        let local = self.storage.find(
            &key,
            &filters.unwrap_or_default(),
            max_results as usize,
            now,
        );
        for d in local {
            state.seen.insert(d.id);
            keep_newest(&mut state.found, d.as_ref().clone());
        }
        let kind = QueryKind::Discover(Box::new(state));
        self.start_lookup_query(now, kind, false, vec![key], vec![])
    }

    /// Sends a PING to `addr` and reports who answered.
    pub fn ping(&mut self, now: Timestamp, addr: NodeAddr) -> Result<QueryId, CommandError> {
        self.config.address_policy.check(&addr)?;
        self.check_query_room()?;
        self.check_request_room()?;
        let id = self.new_query_id();
        self.queries.insert(
            id,
            Query {
                kind: QueryKind::Ping,
                internal: false,
                slots: Vec::new(),
                // Bounded by its one request's timeout instead.
                deadline: Timestamp::from_micros(u64::MAX),
                timed_out: false,
            },
        );
        let msg = Message::Ping(Ping {
            sender: self.identity,
            sender_addr: self.local_addr.clone(),
        });
        self.send(now, addr, None, msg, Purpose::Ping { query: id }, 0);
        Ok(id)
    }

    pub(super) fn check_query_room(&self) -> Result<(), CommandError> {
        if self.queries.len() >= self.config.max_queries {
            return Err(CommandError::Busy {
                what: "queries in progress",
                limit: self.config.max_queries,
            });
        }
        Ok(())
    }

    fn check_request_room(&self) -> Result<(), CommandError> {
        if self.pending.len() >= self.config.max_requests {
            return Err(CommandError::Busy {
                what: "requests in flight",
                limit: self.config.max_requests,
            });
        }
        Ok(())
    }

    fn new_query_id(&mut self) -> QueryId {
        self.next_query += 1;
        QueryId(self.next_query)
    }

    /// Starts a query with one lookup per target, seeded from the table.
    pub(super) fn start_lookup_query(
        &mut self,
        now: Timestamp,
        kind: QueryKind,
        internal: bool,
        targets: Vec<Hash>,
        seeds: Vec<NodeAddr>,
    ) -> Result<QueryId, CommandError> {
        self.check_query_room()?;
        let mut slots = Vec::with_capacity(targets.len());
        for (i, target) in targets.into_iter().enumerate() {
            let Some(pos) = NodeId::from_key(&target) else {
                return Err(CommandError::BadKey(target));
            };
            self.table.touch_bucket_for(&pos, now);
            let initial = self
                .table
                .closest_fresh(&pos, self.config.k)
                .into_iter()
                .map(|p| (p.identity, p.id, p.addr));
            let lookup = Lookup::new(
                pos,
                self.local_id,
                self.config.k,
                self.config.alpha,
                initial,
                if i == 0 { seeds.clone() } else { Vec::new() },
            );
            slots.push(Slot {
                target,
                lookup,
                phase: Phase::Looking,
                replicas: KeyReplicas {
                    key: target,
                    acked: 0,
                    refused: Vec::new(),
                    failed: 0,
                },
            });
        }
        let id = self.new_query_id();
        let deadline = now.saturating_add(self.config.query_timeout);
        self.query_deadlines.insert((deadline, id));
        self.queries.insert(
            id,
            Query {
                kind,
                internal,
                slots,
                deadline,
                timed_out: false,
            },
        );
        self.drive(now, id);
        Ok(id)
    }

    // ---------------------------------------------------------------- sending

    /// Queues a request; returns its id.
    pub(super) fn send(
        &mut self,
        now: Timestamp,
        to: NodeAddr,
        expect: Option<(Identity, NodeId)>,
        message: Message,
        purpose: Purpose,
        max_descriptors: usize,
    ) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        let msg_id = self.new_msg_id();
        let msg_type = message.message_type();
        let frame = Frame::new(msg_id, message).encode();
        let deadline = now.saturating_add(self.config.request_timeout);
        let slow_at = match (&purpose, expect) {
            (Purpose::Lookup { .. }, Some(_)) => {
                let t = now.saturating_add(self.config.lookup_slow_after);
                self.slow.insert((t, id));
                Some(t)
            }
            _ => None,
        };
        self.pending.insert(
            id,
            Pending {
                purpose,
                to: to.clone(),
                expect,
                msg_id,
                msg_type,
                max_descriptors,
                deadline,
                slow_at,
            },
        );
        self.deadlines.insert((deadline, id));
        self.outbox.push_back(OutboundRequest {
            id,
            to,
            expect: expect.map(|(identity, _)| identity),
            frame,
        });
        self.stats.requests_sent += 1;
        id
    }

    /// Advances every lookup of a query as far as the α and request bounds
    /// allow; completes the query when all its slots are done.
    pub(super) fn drive(&mut self, now: Timestamp, qid: QueryId) {
        let Some(mut q) = self.queries.remove(&qid) else {
            return;
        };
        for slot_index in 0..q.slots.len() {
            if q.slots[slot_index].phase != Phase::Looking {
                continue;
            }
            loop {
                if self.pending.len() >= self.config.max_requests {
                    break;
                }
                let slot = &mut q.slots[slot_index];
                match slot.lookup.next() {
                    Next::Query {
                        identity,
                        addr,
                        hop,
                    } => {
                        let (message, max_descriptors) = self.lookup_message(&q.kind, slot.target);
                        self.send(
                            now,
                            addr,
                            identity,
                            message,
                            Purpose::Lookup {
                                query: qid,
                                slot: slot_index,
                                hop,
                            },
                            max_descriptors,
                        );
                    }
                    Next::Wait => break,
                    Next::Done => {
                        self.on_lookup_done(now, qid, &mut q, slot_index);
                        break;
                    }
                }
            }
        }
        if q.slots.iter().all(|s| s.phase == Phase::Done) && !matches!(q.kind, QueryKind::Ping) {
            self.complete(now, qid, q);
        } else {
            self.queries.insert(qid, q);
        }
    }

    fn lookup_message(&self, kind: &QueryKind, target: Hash) -> (Message, usize) {
        match kind {
            QueryKind::Discover(d) => (
                Message::FindValue(FindValue {
                    sender: self.identity,
                    sender_addr: self.local_addr.clone(),
                    key: d.key,
                    max_results: d.max_results,
                    filters: d.filters.clone().map(Box::new),
                }),
                d.max_results as usize,
            ),
            _ => (
                Message::FindNode(FindNode {
                    sender: self.identity,
                    sender_addr: self.local_addr.clone(),
                    target,
                }),
                0,
            ),
        }
    }

    /// A slot's lookup converged: a publish now stores at the K closest.
    fn on_lookup_done(&mut self, now: Timestamp, qid: QueryId, q: &mut Query, i: usize) {
        let QueryKind::Publish {
            descriptor,
            store_locally,
            ..
        } = &q.kind
        else {
            q.slots[i].phase = Phase::Done;
            return;
        };
        let descriptor = Arc::clone(descriptor);
        let store_locally = *store_locally;
        let slot = &mut q.slots[i];
        let target = *slot.lookup.target();
        let mine = self.local_id.distance(&target);
        let closest: Vec<((Identity, NodeId), NodeAddr)> = slot
            .lookup
            .closest_succeeded()
            .map(|(id, c)| ((c.identity, id), c.addr.clone()))
            .collect();
        // Are we ourselves among the K closest of all nodes that answered?
        let closer = closest
            .iter()
            .filter(|((_, id), _)| id.distance(&target) < mine)
            .count();
        let mut targets = closest;
        if closer < self.config.k {
            targets.truncate(self.config.k - 1);
            if store_locally {
                match self.storage.offer(descriptor.as_ref().clone(), now) {
                    Ok(_) => slot.replicas.acked += 1,
                    Err(e) => slot.replicas.refused.push((self.identity, e.to_string())),
                }
            }
        }
        let mut outstanding = 0;
        for (peer, addr) in targets {
            let msg = Message::Store(Store {
                sender: self.identity,
                sender_addr: self.local_addr.clone(),
                descriptor: Box::new(descriptor.descriptor().clone()),
            });
            self.send(
                now,
                addr,
                Some(peer),
                msg,
                Purpose::Store {
                    query: qid,
                    slot: i,
                },
                0,
            );
            outstanding += 1;
        }
        let slot = &mut q.slots[i];
        slot.phase = if outstanding == 0 {
            Phase::Done
        } else {
            Phase::Storing { outstanding }
        };
    }

    /// Queries past `query_timeout` complete with what they have.
    pub(super) fn expire_queries(&mut self, now: Timestamp) {
        while let Some(&(t, qid)) = self.query_deadlines.first() {
            if t > now {
                break;
            }
            self.query_deadlines.pop_first();
            let Some(mut q) = self.queries.remove(&qid) else {
                continue;
            };
            for s in &mut q.slots {
                if let Phase::Storing { outstanding } = s.phase {
                    s.replicas.failed += outstanding;
                }
                s.phase = Phase::Done;
            }
            q.timed_out = true;
            self.complete(now, qid, q);
        }
    }

    /// Turns a finished query into its event.
    fn complete(&mut self, now: Timestamp, qid: QueryId, q: Query) {
        self.query_deadlines.remove(&(q.deadline, qid));
        let mut stats = LookupStats {
            timed_out: q.timed_out,
            ..LookupStats::default()
        };
        for s in &q.slots {
            let l = s.lookup.stats();
            stats.rpcs += l.rpcs;
            stats.failures += l.failures;
            stats.responders += l.responders;
            stats.rounds = stats.rounds.max(l.rounds);
        }
        let result = match q.kind {
            QueryKind::Bootstrap => {
                self.refresh_after_bootstrap(now);
                QueryResult::Bootstrap {
                    table_size: self.table.len(),
                }
            }
            QueryKind::FindNode | QueryKind::Refresh => QueryResult::FindNode {
                peers: q
                    .slots
                    .first()
                    .map(|s| {
                        s.lookup
                            .closest_succeeded()
                            .map(|(_, c)| NodeInfo {
                                identity: c.identity,
                                addr: c.addr.clone(),
                                last_seen: now,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            QueryKind::Discover(d) => {
                let mut descriptors: Vec<ValidDescriptor> = d.found.into_values().collect();
                // Newest first; ties by id, so results are deterministic.
                descriptors.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then(a.id.cmp(&b.id)));
                descriptors.truncate(d.max_results as usize);
                QueryResult::Discover {
                    descriptors,
                    rejected: d.rejected,
                }
            }
            QueryKind::Publish {
                descriptor,
                republish,
                ..
            } => {
                let keys: Vec<KeyReplicas> = q.slots.into_iter().map(|s| s.replicas).collect();
                if republish {
                    self.push_event(Event::Republished {
                        id: descriptor.id,
                        keys,
                    });
                    return;
                }
                QueryResult::Publish {
                    id: descriptor.id,
                    keys,
                }
            }
            QueryKind::Ping => return,
        };
        if q.internal {
            return;
        }
        let result = match result {
            QueryResult::FindNode { peers } if peers.is_empty() => {
                QueryResult::Failed(QueryError::NoPeers)
            }
            QueryResult::Bootstrap { table_size: 0 } => QueryResult::Failed(QueryError::NoPeers),
            r => r,
        };
        self.push_event(Event::QueryDone {
            id: qid,
            result,
            stats,
        });
    }

    // -------------------------------------------------------------- responses

    /// Reports the outcome of an [`OutboundRequest`]. Unknown or
    /// already-timed-out ids are ignored.
    pub fn handle_response(
        &mut self,
        now: Timestamp,
        id: RequestId,
        result: Result<Response<'_>, TransportError>,
    ) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        self.deadlines.remove(&(p.deadline, id));
        if let Some(t) = p.slow_at {
            self.slow.remove(&(t, id));
        }
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.on_request_failed(now, p, e.to_string());
                return;
            }
        };
        if let Some((expected, _)) = p.expect {
            if expected != resp.peer {
                let reason = TransportError::IdentityMismatch {
                    expected,
                    found: resp.peer,
                }
                .to_string();
                self.on_request_failed(now, p, reason);
                return;
            }
        }
        let limits = DecodeLimits {
            max_nodes: self.config.k,
            max_descriptors: p.max_descriptors.max(1),
            ..DecodeLimits::default()
        };
        let message = match Frame::decode_response(resp.frame, &limits) {
            Ok(f) if f.msg_id == p.msg_id && f.message.message_type() == p.msg_type.response() => {
                f.message
            }
            Ok(_) => {
                self.misbehaved(
                    resp.peer,
                    Misbehaviour::UnmatchedResponse {
                        expected: p.msg_type.response(),
                    },
                );
                self.on_request_failed(now, p, "unmatched response".to_owned());
                return;
            }
            Err(e) => {
                let reason = e.to_string();
                self.misbehaved(resp.peer, Misbehaviour::MalformedResponse(e));
                self.on_request_failed(now, p, reason);
                return;
            }
        };
        // It answered at this address: it may enter the table.
        let responder_id = match p.expect {
            Some((_, id)) => id,
            None => self.id_of(&resp.peer),
        };
        self.on_contact(now, resp.peer, responder_id, p.to.clone());
        match p.purpose {
            Purpose::Lookup { query, slot, hop } => {
                let responder = (resp.peer, responder_id);
                self.on_lookup_response(now, query, slot, hop, responder, &p.to, message);
                self.drive(now, query);
            }
            Purpose::Store { query, slot } => {
                if let Some(q) = self.queries.get_mut(&query) {
                    if let Some(s) = q.slots.get_mut(slot) {
                        match message {
                            Message::StoreAck(a) if a.stored => s.replicas.acked += 1,
                            Message::StoreAck(a) => s.replicas.refused.push((
                                resp.peer,
                                a.reason.unwrap_or_else(|| "refused".to_owned()),
                            )),
                            _ => s.replicas.failed += 1,
                        }
                        store_done(s);
                    }
                }
                self.drive(now, query);
            }
            Purpose::Ping { query } => {
                if self.queries.remove(&query).is_some() {
                    let observed_addr = match message {
                        Message::Pong(p) => p.observed_addr,
                        _ => NodeAddr::quic(""),
                    };
                    self.push_event(Event::QueryDone {
                        id: query,
                        result: QueryResult::Ping {
                            identity: resp.peer,
                            observed_addr,
                        },
                        stats: LookupStats {
                            rpcs: 1,
                            failures: 0,
                            rounds: 1,
                            responders: 1,
                            timed_out: false,
                        },
                    });
                }
            }
            Purpose::Challenge { challenged } => {
                self.challenge_result(now, &challenged, true);
            }
            Purpose::Verify { .. } => {}
        }
        self.after_request_finished(now);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_lookup_response(
        &mut self,
        now: Timestamp,
        qid: QueryId,
        slot: usize,
        hop: u32,
        (responder, responder_id): (Identity, NodeId),
        addr: &NodeAddr,
        message: Message,
    ) {
        let Some(mut q) = self.queries.remove(&qid) else {
            return;
        };
        let this = &*self;
        let usable = |nodes: Vec<NodeInfo>| {
            nodes
                .into_iter()
                .filter(|n| {
                    n.identity != this.identity && this.config.address_policy.check(&n.addr).is_ok()
                })
                .map(|n| (n.identity, n.addr))
        };
        let id_of = |i: &Identity| this.id_of(i);
        let mut misbehaviour = None;
        if let Some(s) = q.slots.get_mut(slot) {
            match message {
                Message::FindNodeResult(r) => {
                    s.lookup
                        .on_success(responder, responder_id, addr, hop, usable(r.nodes), id_of);
                }
                Message::FindValueResult(FindValueResult::Nodes(nodes)) => {
                    s.lookup
                        .on_success(responder, responder_id, addr, hop, usable(nodes), id_of);
                }
                Message::FindValueResult(FindValueResult::Descriptors(ds)) => {
                    s.lookup
                        .on_success(responder, responder_id, addr, hop, Vec::new(), id_of);
                    if let QueryKind::Discover(st) = &mut q.kind {
                        // An id counts as seen only once a descriptor with it
                        // validated: a responder's copy with a genuine id and
                        // altered fields must not hide the genuine one.
                        let fresh: Vec<_> = ds
                            .into_iter()
                            .filter(|d| !st.seen.contains(&d.id))
                            .collect();
                        for r in validate_batch_cached(
                            fresh,
                            now,
                            self.config.signature_cache.as_ref(),
                            Some(&mut self.key_cache),
                        ) {
                            match r {
                                Ok(v) => {
                                    st.seen.insert(v.id);
                                    if v.routing_keys.contains(&st.key)
                                        && matches_filters(&v, st.filters.as_ref())
                                    {
                                        keep_newest(&mut st.found, v);
                                    }
                                }
                                Err(e) => {
                                    st.rejected += 1;
                                    misbehaviour = Some(Misbehaviour::InvalidDescriptor(e));
                                }
                            }
                        }
                    }
                }
                _ => s.lookup.on_failure(Some(&responder_id)),
            }
        }
        self.queries.insert(qid, q);
        if let Some(m) = misbehaviour {
            self.misbehaved(responder, m);
        }
    }

    /// A request failed (transport error, timeout, bad response).
    pub(super) fn on_request_failed(&mut self, now: Timestamp, p: Pending, reason: String) {
        self.stats.requests_failed += 1;
        if let Some((_, id)) = p.expect {
            use crate::routing::FailureOutcome;
            match self.table.on_failure(&id) {
                FailureOutcome::Replaced { removed, added } => {
                    self.push_event(Event::PeerEvicted(removed));
                    self.push_event(Event::PeerAdded(added));
                }
                FailureOutcome::Removed { removed } => self.push_event(Event::PeerEvicted(removed)),
                _ => {}
            }
        }
        match p.purpose {
            Purpose::Lookup { query, slot, .. } => {
                if let Some(s) = self
                    .queries
                    .get_mut(&query)
                    .and_then(|q| q.slots.get_mut(slot))
                {
                    s.lookup.on_failure(p.expect.as_ref().map(|(_, id)| id));
                }
                self.drive(now, query);
            }
            Purpose::Store { query, slot } => {
                if let Some(s) = self
                    .queries
                    .get_mut(&query)
                    .and_then(|q| q.slots.get_mut(slot))
                {
                    s.replicas.failed += 1;
                    store_done(s);
                }
                self.drive(now, query);
            }
            Purpose::Ping { query } => {
                if self.queries.remove(&query).is_some() {
                    self.push_event(Event::QueryDone {
                        id: query,
                        result: QueryResult::Failed(QueryError::Unreachable { addr: p.to, reason }),
                        stats: LookupStats {
                            rpcs: 1,
                            failures: 1,
                            rounds: 0,
                            responders: 0,
                            timed_out: false,
                        },
                    });
                }
            }
            Purpose::Challenge { challenged } => self.challenge_result(now, &challenged, false),
            Purpose::Verify { identity } => {
                self.verifying.remove(&identity);
            }
        }
        self.after_request_finished(now);
    }

    /// Lookup requests unanswered for `lookup_slow_after` free their α slot.
    pub(super) fn handle_slow_requests(&mut self, now: Timestamp) {
        while let Some(&(t, id)) = self.slow.first() {
            if t > now {
                break;
            }
            self.slow.pop_first();
            let Some(p) = self.pending.get(&id) else {
                continue;
            };
            if let (Purpose::Lookup { query, slot, .. }, Some((_, peer))) = (&p.purpose, p.expect) {
                let (query, slot) = (*query, *slot);
                if let Some(s) = self
                    .queries
                    .get_mut(&query)
                    .and_then(|q| q.slots.get_mut(slot))
                {
                    s.lookup.on_slow(&peer);
                }
                self.drive(now, query);
            }
        }
    }

    /// A request slot freed: queries stalled on the request bound may go on.
    fn after_request_finished(&mut self, now: Timestamp) {
        if self.pending.len() + 1 >= self.config.max_requests {
            let ids: Vec<QueryId> = self.queries.keys().copied().collect();
            for id in ids {
                self.drive(now, id);
            }
        }
        self.pump_verification(now);
        self.pump_replication(now);
    }

    fn misbehaved(&mut self, peer: Identity, reason: Misbehaviour) {
        self.push_event(Event::PeerMisbehaved { peer, reason });
    }

    // ----------------------------------------------- table upkeep via requests

    pub(super) fn send_challenge(&mut self, now: Timestamp, oldest: crate::routing::Peer) {
        if self.pending.len() >= self.config.max_requests {
            // No room to ask: keep the old entry (the newcomer stays pending).
            self.challenge_result(now, &oldest.id, true);
            return;
        }
        let msg = Message::Ping(Ping {
            sender: self.identity,
            sender_addr: self.local_addr.clone(),
        });
        self.send(
            now,
            oldest.addr,
            Some((oldest.identity, oldest.id)),
            msg,
            Purpose::Challenge {
                challenged: oldest.id,
            },
            0,
        );
    }

    fn challenge_result(&mut self, now: Timestamp, challenged: &NodeId, alive: bool) {
        use crate::routing::ChallengeOutcome;
        if let ChallengeOutcome::Replaced { evicted, added } =
            self.table.on_challenge_result(challenged, alive, now)
        {
            self.push_event(Event::PeerEvicted(evicted));
            if let Some(a) = added {
                self.push_event(Event::PeerAdded(a));
            }
        }
    }

    /// Queues a PING to a requester's claimed address (bounded, rate limited).
    pub(super) fn queue_verification(
        &mut self,
        now: Timestamp,
        identity: Identity,
        addr: NodeAddr,
    ) {
        let id = self.id_of(&identity);
        if identity == self.identity
            || self.table.contains(&id)
            || self.bucket_full_for(&id)
            || self.verifying.contains(&identity)
            || self.config.address_policy.check(&addr).is_err()
        {
            return;
        }
        if self.verify_queue.len() >= self.config.verify_queue {
            self.stats.verify_dropped += 1;
            return;
        }
        self.verifying.insert(identity);
        self.verify_queue.push_back((identity, id, addr));
        self.pump_verification(now);
    }

    /// Whether the bucket `id` falls in is full. A requester there is not
    /// verified: it could only get in by a challenge of the bucket's oldest
    /// entry, and that PING, reaching a node that does not know us, would
    /// make it verify and challenge in turn — a chain of PINGs across the
    /// mesh for every inbound request (measured in mars-sim: 2 PINGs per
    /// FIND_NODE at 1,000 nodes, 6.6 at 3,000). Full buckets take
    /// newcomers from our own lookups' answers instead.
    fn bucket_full_for(&self, id: &crate::node_id::NodeId) -> bool {
        self.local_id
            .bucket_index(id)
            .is_some_and(|b| self.table.bucket(b).len() >= self.table.k())
    }

    pub(super) fn pump_verification(&mut self, now: Timestamp) {
        let step = std::time::Duration::from_micros(
            1_000_000 / u64::from(self.config.verify_per_sec.max(1)),
        );
        while now >= self.verify_next && self.pending.len() < self.config.max_requests {
            let Some((identity, id, addr)) = self.verify_queue.pop_front() else {
                break;
            };
            if self.table.contains(&id) {
                self.verifying.remove(&identity);
                continue;
            }
            let msg = Message::Ping(Ping {
                sender: self.identity,
                sender_addr: self.local_addr.clone(),
            });
            self.send(
                now,
                addr,
                Some((identity, id)),
                msg,
                Purpose::Verify { identity },
                0,
            );
            self.verify_next = self
                .verify_next
                .max(now.saturating_sub(step))
                .saturating_add(step);
        }
    }

    /// Buckets idle for `refresh_interval` get a lookup of a random id in them.
    pub(super) fn refresh_stale_buckets(&mut self, now: Timestamp) {
        for b in self.table.stale_buckets(now, self.config.refresh_interval) {
            let target = self.table.random_id_in_bucket(b, self.rng.bytes32());
            let t = Hash::from_blake3_digest(*target.as_bytes());
            if self
                .start_lookup_query(now, QueryKind::Refresh, true, vec![t], vec![])
                .is_err()
            {
                break;
            }
        }
    }

    /// After bootstrap: refresh every bucket farther than the closest
    /// populated one, so the table learns the whole space, not just our
    /// neighbourhood (at most `Config::bootstrap_refreshes` lookups, 16 by
    /// default).
    fn refresh_after_bootstrap(&mut self, now: Timestamp) {
        let nearest = self
            .table
            .iter()
            .filter_map(|p| self.local_id.bucket_index(&p.id))
            .min();
        let Some(nearest) = nearest else { return };
        for b in (nearest + 1..256)
            .rev()
            .take(self.config.bootstrap_refreshes)
        {
            let target = self.table.random_id_in_bucket(b, self.rng.bytes32());
            let t = Hash::from_blake3_digest(*target.as_bytes());
            if self
                .start_lookup_query(now, QueryKind::Refresh, true, vec![t], vec![])
                .is_err()
            {
                break;
            }
        }
    }
}

fn store_done(s: &mut Slot) {
    if let Phase::Storing { outstanding } = s.phase {
        s.phase = if outstanding <= 1 {
            Phase::Done
        } else {
            Phase::Storing {
                outstanding: outstanding - 1,
            }
        };
    }
}

/// Keeps the highest sequence per (publisher, schema, topic).
fn keep_newest(
    found: &mut BTreeMap<(Identity, Hash, String), ValidDescriptor>,
    d: ValidDescriptor,
) {
    let k = (d.publisher, d.schema_hash, d.topic.clone());
    match found.get(&k) {
        Some(have) if have.sequence >= d.sequence => {}
        _ => {
            found.insert(k, d);
        }
    }
}

/// Applies FIND_VALUE filters ourselves: a responder's filtering is not trusted.
pub(crate) fn matches_filters(d: &ValidDescriptor, f: Option<&Filters>) -> bool {
    let Some(f) = f else { return true };
    f.schema_hash.is_none_or(|h| d.schema_hash == h)
        && f.min_timestamp.is_none_or(|t| d.timestamp >= t)
        && f.publisher.is_none_or(|p| d.publisher == p)
}
