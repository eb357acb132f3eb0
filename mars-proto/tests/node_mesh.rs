//! Many nodes over a tiny in-test message pump with virtual time: no
//! sockets, no simulator — the node driven exactly as the module
//! documentation says.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use mars_proto::node::{
    Event, Node, OutboundRequest, Outcome, PeerInfo, QueryId, QueryResult, RequestId, Response,
    TransportError,
};
use mars_proto::wire::{Filters, Frame, Message, MsgId, NodeAddr, Ping};
use mars_proto::{Config, DescriptorBuilder, Hash, Identity, Keypair, Timestamp, schema};

const START: Timestamp = Timestamp::from_secs(1_700_000_000);
const LATENCY: Duration = Duration::from_millis(10);

enum Delivery {
    Request {
        from: usize,
        req: OutboundRequest,
    },
    Response {
        to: usize,
        id: RequestId,
        result: Result<(Identity, Vec<u8>), TransportError>,
    },
}

struct Net {
    nodes: Vec<Node>,
    addrs: Vec<NodeAddr>,
    alive: Vec<bool>,
    by_addr: BTreeMap<NodeAddr, usize>,
    now: Timestamp,
    queue: BinaryHeap<Reverse<(Timestamp, u64, usize)>>,
    deliveries: BTreeMap<usize, Delivery>,
    seq: u64,
    events: Vec<Vec<Event>>,
}

fn addr(i: usize) -> NodeAddr {
    NodeAddr::quic(format!("127.0.{}.{}:4433", i / 250, i % 250 + 1))
}

fn key(i: usize) -> Keypair {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    s[31] = 0xAA;
    Keypair::from_secret_bytes(&s)
}

impl Net {
    fn new(n: usize, config: impl Fn(usize) -> Config) -> Net {
        let mut net = Net {
            nodes: Vec::new(),
            addrs: Vec::new(),
            alive: Vec::new(),
            by_addr: BTreeMap::new(),
            now: START,
            queue: BinaryHeap::new(),
            deliveries: BTreeMap::new(),
            seq: 0,
            events: Vec::new(),
        };
        for i in 0..n {
            net.add(config(i));
        }
        net
    }

    fn add(&mut self, config: Config) -> usize {
        let i = self.nodes.len();
        self.nodes
            .push(Node::new(config, key(i), addr(i), self.now, i as u64));
        self.addrs.push(addr(i));
        self.alive.push(true);
        self.by_addr.insert(addr(i), i);
        self.events.push(Vec::new());
        i
    }

    fn schedule(&mut self, at: Timestamp, d: Delivery) {
        self.seq += 1;
        let slot = self.seq as usize;
        self.deliveries.insert(slot, d);
        self.queue.push(Reverse((at, self.seq, slot)));
    }

    /// Collects what every node wants to send, and its events.
    fn drain(&mut self) {
        for i in 0..self.nodes.len() {
            while let Some(req) = self.nodes[i].poll_request() {
                let at = self.now.saturating_add(LATENCY);
                self.schedule(at, Delivery::Request { from: i, req });
            }
            while let Some(e) = self.nodes[i].poll_event() {
                self.events[i].push(e);
            }
        }
    }

    fn deliver(&mut self, d: Delivery) {
        match d {
            Delivery::Request { from, req } => {
                let Some(&to) = self.by_addr.get(&req.to) else {
                    let err =
                        TransportError::Unreachable(format!("nothing at {}", req.to.address()));
                    let at = self.now.saturating_add(LATENCY);
                    self.schedule(
                        at,
                        Delivery::Response {
                            to: from,
                            id: req.id,
                            result: Err(err),
                        },
                    );
                    return;
                };
                if !self.alive[to] || !self.alive[from] {
                    return; // silence: the requester times out
                }
                let peer_identity = self.nodes[to].identity();
                if let Some(expected) = req.expect {
                    if expected != peer_identity {
                        let err = TransportError::IdentityMismatch {
                            expected,
                            found: peer_identity,
                        };
                        let at = self.now.saturating_add(LATENCY);
                        self.schedule(
                            at,
                            Delivery::Response {
                                to: from,
                                id: req.id,
                                result: Err(err),
                            },
                        );
                        return;
                    }
                }
                let info = PeerInfo {
                    identity: self.nodes[from].identity(),
                    addr: self.addrs[from].clone(),
                };
                let result = match self.nodes[to].handle_request(self.now, &info, &req.frame) {
                    Outcome::Respond(frame) => Ok((peer_identity, frame)),
                    Outcome::Refuse(r) => Err(TransportError::Reset(r.code().code())),
                };
                let at = self.now.saturating_add(LATENCY);
                self.schedule(
                    at,
                    Delivery::Response {
                        to: from,
                        id: req.id,
                        result,
                    },
                );
            }
            Delivery::Response { to, id, result } => {
                if !self.alive[to] {
                    return;
                }
                let now = self.now;
                match &result {
                    Ok((peer, frame)) => {
                        self.nodes[to].handle_response(now, id, Ok(Response { peer: *peer, frame }))
                    }
                    Err(e) => self.nodes[to].handle_response(now, id, Err(e.clone())),
                }
            }
        }
    }

    /// Runs until `until` (virtual time) or until `done` holds.
    fn run(&mut self, until: Timestamp, mut done: impl FnMut(&Net) -> bool) {
        loop {
            self.drain();
            if done(self) {
                return;
            }
            let next_delivery = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let next_timer = (0..self.nodes.len())
                .filter(|&i| self.alive[i])
                .filter_map(|i| self.nodes[i].poll_timeout().map(|(t, _)| (t, i)))
                .min();
            let next = match (next_delivery, next_timer) {
                (Some(d), Some((t, _))) => d.min(t),
                (Some(d), None) => d,
                (None, Some((t, _))) => t,
                (None, None) => return,
            };
            if next > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            if next_delivery == Some(next) {
                let Reverse((_, _, slot)) = self.queue.pop().unwrap();
                let d = self.deliveries.remove(&slot).unwrap();
                self.deliver(d);
            } else if let Some((_, i)) = next_timer {
                let now = self.now;
                self.nodes[i].handle_timeout(now);
            }
        }
    }

    fn result(&self, node: usize, q: QueryId) -> Option<&QueryResult> {
        self.events[node].iter().find_map(|e| match e {
            Event::QueryDone { id, result, .. } if *id == q => Some(result),
            _ => None,
        })
    }

    fn stats(&self, node: usize, q: QueryId) -> Option<mars_proto::LookupStats> {
        self.events[node].iter().find_map(|e| match e {
            Event::QueryDone { id, stats, .. } if *id == q => Some(*stats),
            _ => None,
        })
    }

    /// Runs until node's query is done (at most `limit` of virtual time).
    fn wait(&mut self, node: usize, q: QueryId, limit: Duration) -> QueryResult {
        let until = self.now.saturating_add(limit);
        self.run(until, |n| n.result(node, q).is_some());
        self.result(node, q)
            .cloned()
            .unwrap_or_else(|| panic!("query {q:?} of node {node} did not finish in {limit:?}"))
    }

    fn bootstrap_all(&mut self) {
        for i in 1..self.nodes.len() {
            self.bootstrap_from_first(i);
        }
        // Let refreshes and requester checks settle.
        let until = self.now.saturating_add(Duration::from_secs(30));
        self.run(until, |_| false);
    }

    /// Node `i` bootstraps from node 0 and must succeed.
    fn bootstrap_from_first(&mut self, i: usize) {
        let now = self.now;
        let seed = vec![self.addrs[0].clone()];
        let q = self.nodes[i].bootstrap(now, seed).unwrap();
        let r = self.wait(i, q, Duration::from_secs(60));
        assert!(
            matches!(r, QueryResult::Bootstrap { .. }),
            "node {i}: {r:?}"
        );
    }

    fn publish(&mut self, node: usize, path: &str, topic: &str, ttl: u32) -> (Hash, QueryResult) {
        let d = DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), self.now)
            .topic(topic)
            .payload(format!("endpoint of {node}").into_bytes())
            .ttl(ttl)
            .sequence(1)
            .routing_keys(schema::hierarchical_keys(path))
            .sign(&key(node))
            .unwrap();
        let id = d.id;
        let now = self.now;
        let q = self.nodes[node].publish(now, d).unwrap();
        (id, self.wait(node, q, Duration::from_secs(60)))
    }

    fn discover(&mut self, node: usize, key: Hash, filters: Option<Filters>) -> Vec<Hash> {
        let now = self.now;
        let q = self.nodes[node].discover(now, key, filters, 100).unwrap();
        match self.wait(node, q, Duration::from_secs(60)) {
            QueryResult::Discover { descriptors, .. } => descriptors.iter().map(|d| d.id).collect(),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn fifty_nodes_find_everything_published_anywhere() {
    let n = 50;
    let mut net = Net::new(n, |_| Config::testing());
    net.bootstrap_all();
    for i in 0..n {
        let t = net.nodes[i].routing_table().len();
        assert!(t >= 10, "node {i} knows only {t} peers");
    }
    let mut published = Vec::new();
    for i in (0..n).step_by(5) {
        let path = format!("compute/svc{i}/x");
        let (id, r) = net.publish(i, &path, "t", 3600);
        match r {
            QueryResult::Publish { keys, .. } => {
                assert_eq!(keys.len(), 3);
                for k in keys {
                    assert!(k.acked >= 15, "node {i}: {k:?}");
                }
            }
            other => panic!("{other:?}"),
        }
        published.push((id, path));
    }
    for q in 0..n {
        for (id, path) in &published {
            let found = net.discover(q, schema::routing_key(path), None);
            assert_eq!(found, vec![*id], "node {q} looking for {path}");
        }
    }
    // The shared prefix key holds all of them.
    let all = net.discover(7, schema::routing_key("compute"), None);
    assert_eq!(all.len(), published.len());
}

#[test]
fn dead_candidates_cost_one_timeout_not_one_each() {
    let mut net = Net::new(40, |_| Config::testing());
    net.bootstrap_all();
    for i in 20..40 {
        net.alive[i] = false;
    }
    let start = net.now;
    let target = mars_proto::NodeId::from_bytes([0x42; 32]);
    let q = net.nodes[1].find_node(start, target).unwrap();
    let r = net.wait(1, q, Duration::from_secs(120));
    let took = net.now.duration_since(start);
    let stats = net.stats(1, q).unwrap();
    assert!(
        matches!(r, QueryResult::FindNode { ref peers } if !peers.is_empty()),
        "{r:?}"
    );
    assert!(
        stats.failures > 3,
        "the test should hit several dead peers: {stats:?}"
    );
    // A dead peer frees its α slot after `lookup_slow_after` (1 s), so dead
    // peers overlap: the lookup costs about one 5 s timeout (the last dead
    // peer among the closest) plus a second per wave of α dead peers — not
    // one timeout per dead peer.
    let timeout = Duration::from_secs(5);
    assert!(
        took <= timeout * 2,
        "took {took:?} with {} failures",
        stats.failures
    );
    assert!(
        took * 3 < timeout * stats.failures,
        "took {took:?} with {} failures",
        stats.failures
    );
}

#[test]
fn a_requester_that_never_answers_never_enters_a_table() {
    let mut net = Net::new(5, |_| Config::testing());
    net.bootstrap_all();
    // A client whose advertised address has nothing behind it.
    let client = key(999);
    let ping = Frame::new(
        MsgId([7; 16]),
        Message::Ping(Ping {
            sender: client.identity(),
            sender_addr: NodeAddr::quic("127.9.9.9:9"),
        }),
    )
    .encode();
    let info = PeerInfo {
        identity: client.identity(),
        addr: NodeAddr::quic("127.9.9.9:50000"),
    };
    let now = net.now;
    assert!(matches!(
        net.nodes[0].handle_request(now, &info, &ping),
        Outcome::Respond(_)
    ));
    let until = net.now.saturating_add(Duration::from_secs(30));
    net.run(until, |_| false);
    assert!(
        !net.nodes[0]
            .routing_table()
            .contains(&client.identity().node_id())
    );
    let now = net.now;
    let q = net.nodes[3]
        .find_node(now, client.identity().node_id())
        .unwrap();
    match net.wait(3, q, Duration::from_secs(30)) {
        QueryResult::FindNode { peers } => {
            assert!(peers.iter().all(|p| p.identity != client.identity()))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_responsive_requester_is_added_after_its_ping() {
    let mut net = Net::new(3, |_| Config::testing());
    // Node 2 asks node 0 something without bootstrapping: node 0 checks it.
    let now = net.now;
    let q = net.nodes[2].ping(now, net.addrs[0].clone()).unwrap();
    net.wait(2, q, Duration::from_secs(5));
    let until = net.now.saturating_add(Duration::from_secs(5));
    net.run(until, |_| false);
    assert!(
        net.nodes[0]
            .routing_table()
            .contains(&net.nodes[2].node_id())
    );
}

#[test]
fn spoofed_senders_are_refused() {
    let mut net = Net::new(2, |_| Config::testing());
    let liar = key(5);
    let ping = Frame::new(
        MsgId([1; 16]),
        Message::Ping(Ping {
            sender: key(6).identity(),
            sender_addr: NodeAddr::quic("127.0.0.9:1"),
        }),
    )
    .encode();
    let info = PeerInfo {
        identity: liar.identity(),
        addr: NodeAddr::quic("127.0.0.9:1"),
    };
    let now = net.now;
    match net.nodes[0].handle_request(now, &info, &ping) {
        Outcome::Refuse(r) => assert_eq!(r.code().code(), 0x03, "{r}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(net.nodes[0].stats().refused[2], 1);
}

#[test]
fn a_publish_proxy_replicates_a_single_store_to_the_k_closest() {
    let n = 40;
    let mut net = Net::new(n, |i| {
        if i == 0 {
            Config {
                publish_proxy: true,
                ..Config::testing()
            }
        } else {
            Config::testing()
        }
    });
    net.bootstrap_all();
    // A reference-style client: one STORE to the hub, no lookup.
    let client = key(777);
    let d = DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), net.now)
        .routing_keys(schema::hierarchical_keys("data/search"))
        .sign(&client)
        .unwrap();
    let store = Frame::new(
        MsgId([3; 16]),
        Message::Store(mars_proto::wire::Store {
            sender: client.identity(),
            sender_addr: NodeAddr::quic("0.0.0.0:0"),
            descriptor: d.clone().into(),
        }),
    )
    .encode();
    let info = PeerInfo {
        identity: client.identity(),
        addr: NodeAddr::quic("127.8.8.8:40000"),
    };
    let now = net.now;
    let Outcome::Respond(ack) = net.nodes[0].handle_request(now, &info, &store) else {
        panic!()
    };
    match Frame::decode(&ack).unwrap().message {
        Message::StoreAck(a) => assert!(a.stored, "{a:?}"),
        other => panic!("{other:?}"),
    }
    let until = net.now.saturating_add(Duration::from_secs(30));
    net.run(until, |_| false);
    for key_path in ["data", "data/search"] {
        let rk = schema::routing_key(key_path);
        let target = mars_proto::NodeId::from_key(&rk).unwrap();
        let mut by_distance: Vec<usize> = (0..n).collect();
        by_distance.sort_by_key(|&i| net.nodes[i].node_id().distance(&target));
        let holders = by_distance[..20]
            .iter()
            .filter(|&&i| net.nodes[i].storage().get(&d.id).is_some())
            .count();
        assert!(
            holders >= 18,
            "{key_path}: only {holders} of the 20 closest hold it"
        );
    }
    // And any node discovers it.
    assert_eq!(
        net.discover(33, schema::routing_key("data"), None),
        vec![d.id]
    );
}

#[test]
fn discover_applies_filters() {
    let mut net = Net::new(12, |_| Config::testing());
    net.bootstrap_all();
    let (a, _) = net.publish(3, "compute/f", "one", 3600);
    let (b, _) = net.publish(4, "compute/f", "two", 3600);
    let k = schema::routing_key("compute/f");
    let mut both = net.discover(9, k, None);
    both.sort();
    let mut expect = vec![a, b];
    expect.sort();
    assert_eq!(both, expect);
    let by_4 = Filters {
        publisher: Some(key(4).identity()),
        ..Filters::default()
    };
    assert_eq!(net.discover(9, k, Some(by_4)), vec![b]);
    let other_schema = Filters {
        schema_hash: Some(schema::CORE_REVOCATION.hash()),
        ..Filters::default()
    };
    assert!(net.discover(9, k, Some(other_schema)).is_empty());
    let future = Filters {
        min_timestamp: Some(net.now.saturating_add(Duration::from_secs(60))),
        ..Filters::default()
    };
    assert!(net.discover(9, k, Some(future)).is_empty());
}

#[test]
fn republishing_keeps_a_descriptor_alive_past_its_ttl() {
    let mut net = Net::new(10, |_| Config::testing());
    net.bootstrap_all();
    let (first, _) = net.publish(2, "compute/live", "t", 120);
    let k = schema::routing_key("compute/live");
    assert_eq!(net.discover(6, k, None), vec![first]);
    // Five TTLs later it is still there (a newer sequence each time).
    let until = net.now.saturating_add(Duration::from_secs(600));
    net.run(until, |_| false);
    let now_found = net.discover(6, k, None);
    assert_eq!(now_found.len(), 1);
    assert_ne!(now_found[0], first, "a republished descriptor has a new id");
    assert!(
        net.events[2]
            .iter()
            .any(|e| matches!(e, Event::Republished { .. }))
    );
    // Unpublished, it expires.
    net.nodes[2].unpublish(&now_found[0]).unwrap();
    let until = net.now.saturating_add(Duration::from_secs(300));
    net.run(until, |_| false);
    assert!(net.discover(6, k, None).is_empty());
}

#[test]
fn revocation_removes_a_descriptor_everywhere() {
    let mut net = Net::new(15, |_| Config::testing());
    net.bootstrap_all();
    let (id, _) = net.publish(5, "compute/gone", "t", 3600);
    let k = schema::routing_key("compute/gone");
    assert_eq!(net.discover(9, k, None), vec![id]);
    let now = net.now;
    let q = net.nodes[5].revoke(now, &id).unwrap();
    net.wait(5, q, Duration::from_secs(60));
    for i in 0..15 {
        assert!(
            net.nodes[i].storage().get(&id).is_none(),
            "node {i} still holds it"
        );
    }
    let left: Vec<Hash> = net.discover(9, k, None);
    assert!(!left.contains(&id));
}

/// A node restarted around its storage engine (`into_store`, then
/// `with_store`: what a process with a durable store does) comes back with
/// an empty routing table but every descriptor it held, rejoins, and the
/// mesh finds its descriptors through it.
#[test]
fn a_node_restarted_around_its_store_serves_what_it_held() {
    let mut net = Net::new(15, |_| Config::testing());
    net.bootstrap_all();
    let (id, _) = net.publish(5, "compute/durable", "t", 3600);
    let holders: Vec<usize> = (0..15)
        .filter(|&i| i != 5 && net.nodes[i].storage().get(&id).is_some())
        .collect();
    assert!(holders.len() >= 5, "replicas at {holders:?}");
    // Every holder but node 0 (the seed) restarts with its store only.
    let now = net.now;
    for &i in holders.iter().filter(|&&i| i != 0) {
        let old = std::mem::replace(
            &mut net.nodes[i],
            Node::new(Config::testing(), key(i), addr(i), now, 1_000 + i as u64),
        );
        let held = old.storage().len();
        let store = old.into_store();
        let restarted = Node::with_store(
            Config::testing(),
            key(i),
            addr(i),
            now,
            2_000 + i as u64,
            store,
        );
        assert_eq!(restarted.storage().len(), held, "node {i} kept its store");
        assert!(restarted.storage().get(&id).is_some());
        assert_eq!(restarted.routing_table().len(), 0, "node {i} kept no table");
        restarted.storage().check_invariants().unwrap();
        net.nodes[i] = restarted;
    }
    // The publisher and every other node forget nothing; the restarted ones
    // rejoin through the seed.
    for &i in holders.iter().filter(|&&i| i != 0) {
        net.bootstrap_from_first(i);
    }
    // Only the restarted holders have it now: the publisher and the seed
    // go away.
    net.alive[5] = false;
    net.alive[0] = false;
    let k = schema::routing_key("compute/durable");
    for q in (1..15).filter(|q| *q != 5) {
        assert_eq!(net.discover(q, k, None), vec![id], "node {q}");
    }
}

/// A full bucket pings its oldest entry when a newcomer answers us: an
/// oldest entry that answers is kept (the newcomer dropped); one that does
/// not is evicted and the newcomer takes its place.
#[test]
fn a_full_bucket_challenges_its_oldest_entry() {
    let k = 2;
    let mut net = Net::new(16, |_| Config {
        k,
        ..Config::testing()
    });
    net.bootstrap_all();
    let me = net.nodes[0].node_id();
    let bucket_of = |net: &Net, i: usize| me.bucket_index(&net.nodes[i].node_id());
    // The fullest bucket of node 0, and a node in that range it does not hold.
    let (bucket, outsider) = (0..256)
        .filter(|&b| net.nodes[0].routing_table().bucket(b).len() == k)
        .find_map(|b| {
            (1..net.nodes.len())
                .find(|&i| {
                    bucket_of(&net, i) == Some(b)
                        && !net.nodes[0]
                            .routing_table()
                            .contains(&net.nodes[i].node_id())
                })
                .map(|i| (b, i))
        })
        .expect("a full bucket with a node left out");
    let oldest = net.nodes[0].routing_table().bucket(bucket)[0].clone();

    // The oldest entry is alive: it stays, the newcomer does not get in.
    let now = net.now;
    let q = net.nodes[0].ping(now, net.addrs[outsider].clone()).unwrap();
    net.wait(0, q, Duration::from_secs(10));
    let until = net.now.saturating_add(Duration::from_secs(10));
    net.run(until, |_| false);
    let table = net.nodes[0].routing_table();
    assert!(table.contains(&oldest.id), "a live oldest entry is kept");
    assert!(!table.contains(&net.nodes[outsider].node_id()));

    // Having answered, it moved to the tail. The entry now oldest dies:
    // the next newcomer contact evicts it.
    let bucket_now = net.nodes[0].routing_table().bucket(bucket);
    assert_eq!(
        bucket_now[k - 1].id,
        oldest.id,
        "a kept entry moves to the tail"
    );
    let oldest = bucket_now[0].clone();
    let oldest_index = net.by_addr[&oldest.addr];
    net.alive[oldest_index] = false;
    let now = net.now;
    let q = net.nodes[0].ping(now, net.addrs[outsider].clone()).unwrap();
    net.wait(0, q, Duration::from_secs(10));
    let until = net.now.saturating_add(Duration::from_secs(10));
    net.run(until, |_| false);
    let table = net.nodes[0].routing_table();
    assert!(
        !table.contains(&oldest.id),
        "a dead oldest entry is evicted"
    );
    // The newest pending candidate (the outsider, or a peer that answered
    // us after it while the challenge ran) took the freed place.
    let evicted_at = net.events[0]
        .iter()
        .position(|e| matches!(e, Event::PeerEvicted(p) if p.id == oldest.id))
        .expect("an eviction event");
    let replacement = net.events[0][evicted_at + 1..]
        .iter()
        .find_map(|e| match e {
            Event::PeerAdded(p) if me.bucket_index(&p.id) == Some(bucket) => Some(p.id),
            _ => None,
        })
        .expect("a newcomer added to the bucket");
    assert!(table.contains(&replacement));
    assert_eq!(table.bucket(bucket).len(), k);
    table.check_invariants().unwrap();
}

/// A STORE of a descriptor with too many routing keys is a well-formed
/// request for an invalid descriptor: it is answered with a STORE_ACK that
/// names the rule, not with a stream reset.
#[test]
fn a_store_over_the_routing_key_bound_gets_a_reasoned_ack() {
    let mut net = Net::new(1, |_| Config::testing());
    let client = key(50);
    let mut d = DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), net.now)
        .routing_keys(schema::hierarchical_keys("a"))
        .sign(&client)
        .unwrap();
    d.routing_keys = (0..9)
        .map(|i| schema::routing_key(&format!("k{i}")))
        .collect();
    let frame = Frame::new(
        MsgId([4; 16]),
        Message::Store(mars_proto::wire::Store {
            sender: client.identity(),
            sender_addr: NodeAddr::quic("127.0.0.50:1"),
            descriptor: d.into(),
        }),
    )
    .encode();
    let info = PeerInfo {
        identity: client.identity(),
        addr: NodeAddr::quic("127.0.0.50:1"),
    };
    let now = net.now;
    let Outcome::Respond(ack) = net.nodes[0].handle_request(now, &info, &frame) else {
        panic!("expected a STORE_ACK")
    };
    let f = Frame::decode(&ack).unwrap();
    assert_eq!(f.msg_id, MsgId([4; 16]));
    match f.message {
        Message::StoreAck(a) => {
            assert!(!a.stored);
            let reason = a.reason.unwrap();
            assert!(
                reason.contains("routing_keys") && reason.contains("9"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A query that outlives `query_timeout` completes with the partial results
/// it has, flagged as timed out.
#[test]
fn a_query_past_its_deadline_reports_partial_results() {
    let config = || Config {
        query_timeout: Duration::from_secs(2),
        lookup_slow_after: Duration::from_secs(5),
        ..Config::testing()
    };
    let mut net = Net::new(10, |_| config());
    net.bootstrap_all();
    let (id, _) = net.publish(3, "compute/partial", "t", 3600);
    // Everyone but the querier and the publisher goes silent.
    for i in 0..10 {
        if i != 0 && i != 3 {
            net.alive[i] = false;
        }
    }
    let start = net.now;
    let q = net.nodes[0]
        .discover(start, schema::routing_key("compute/partial"), None, 20)
        .unwrap();
    let r = net.wait(0, q, Duration::from_secs(30));
    let stats = net.stats(0, q).unwrap();
    assert!(stats.timed_out, "{stats:?}");
    assert!(net.now.duration_since(start) <= Duration::from_secs(3));
    match r {
        QueryResult::Discover { descriptors, .. } => {
            assert_eq!(
                descriptors.iter().map(|d| d.id).collect::<Vec<_>>(),
                vec![id]
            )
        }
        other => panic!("{other:?}"),
    }
}
