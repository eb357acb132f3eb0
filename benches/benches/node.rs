//! Request handling of a whole node, ours (`Node::handle_request`) next to
//! the reference's (`mesh-dht` 0.1.1 `DhtNode::handle_*`), on the same data
//! in the same run.
//!
//! The fixture is one node of a 10,000-peer network, built the same way on
//! both sides:
//!
//! - **Identity.** The node's key is ground (deterministically) until its
//!   id shares at least 12 leading bits with the routing key `compute`:
//!   this is the node responsible for `compute`, the one that receives its
//!   STOREs and FIND_VALUEs.
//! - **Routing table.** The node contacts 10,000 random peers. Ours is
//!   driven through its public API only: a `ping` command per peer, every
//!   PING it sends answered with a PONG through `handle_response`
//!   (including the challenge PINGs to the oldest entry of a full bucket,
//!   so the oldest stays, as in the reference). With K = 20 per bucket the
//!   table keeps about 20 × log2(10,000 / 20) ≈ 180 of them (191 here):
//!   that is what a node's view of a 10k-peer network is. The reference's
//!   table gets the same peers in the same order through
//!   `RoutingTable::add_node`, and the setup checks that both tables hold
//!   exactly the same identities.
//! - **Descriptors.** 10,000 publishers each store one capability at
//!   `compute` (one routing key, 128-byte payload, published in the last
//!   ten minutes); one more descriptor has the three hierarchical keys of
//!   `compute/inference/text-generation`, so that key holds 1 descriptor
//!   and `compute` 10,001. Ours are STOREd through `handle_request`; the
//!   reference's go through `DescriptorStore::store_descriptor`.
//! - **Requesters.** Eight table entries send every request, so no request
//!   queues a verification PING: this is the steady state (a requester
//!   outside the table costs one bounded queue push on top).
//!
//! Each side decodes the bytes a peer of its own kind sends (our compact
//! encoding for us, the reference's integer-array encoding for it), and the
//! `ours_ref_bytes` rows give our node the reference's bytes. The reference
//! path is the one a reference server runs per request stream:
//! `Frame::from_bytes`, `from_cbor` of the type's struct,
//! `verify_sender_binding`, the `DhtNode` handler (synchronous in 0.1.1: no
//! executor is involved), `to_cbor`, `Frame::response(..).to_bytes()`. Ours
//! is `handle_request` then draining `poll_request` and `poll_event`, as the
//! contract asks after every call.
//!
//! STORE: every iteration stores a descriptor the node has never seen,
//! from a pool of 1,000 pre-signed descriptors by 1,000 publishers
//! (routing keys: the three hierarchical keys of
//! `compute/inference/text-generation`; the first is `compute`, so our
//! responsibility check passes on it). When the pool runs out, a fresh
//! node with the same table and an empty store takes over, outside the
//! timing: each node holds 0 to 999 descriptors while it is measured.
//! `ours_known_publisher` is the other common STORE: a publisher the node
//! has seen republishes (sequence + 1, same slot, new payload) to a node
//! that holds the pool's first descriptors, so it replaces one and finds
//! the publisher's key in the node's `KeyCache`.
//! Next to it: one raw Ed25519
//! verify of a 32-byte message (what a descriptor signature covers: its id
//! digest), the same with the key decompression, and our
//! `Descriptor::validate` alone. Because criterion runs these one after the
//! other, a busy machine can skew their ratio; `paired_store_ratio` then
//! measures them interleaved and prints the ratios on stderr.
//!
//! Under `cargo test` (criterion's test mode, each benchmark run once) the
//! descriptor counts shrink so the debug build finishes quickly.

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{MSG_ID, RefMsg, ref_decode, ref_encode};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use mars_proto::node::{InboundRequest, Node, Outcome, PeerInfo, Response};
use mars_proto::wire::{
    FindNode, FindValue, FindValueResult, Frame, Message, MsgId, NodeAddr, Pong, Store,
};
use mars_proto::{Config, Descriptor, DescriptorBuilder, Hash, HashAlgorithm, Identity, Keypair};
use mars_proto::{Timestamp, schema};
use mesh_core::frame as rf;
use mesh_core::message as rm;
use mesh_dht::{DhtConfig, DhtNode, verify_sender_binding};
use rand::{RngCore, SeedableRng, rngs::StdRng};

/// Peers the node contacts to fill its table.
const PEERS: usize = 10_000;
/// Requesters (table entries) that send the measured requests.
const REQUESTERS: usize = 8;
/// Distinct request frames cycled through per benchmark.
const FRAMES: usize = 64;

/// Sizes that depend on the mode: the full fixture for `cargo bench`, a
/// small one for criterion's test mode under `cargo test`.
struct Sizes {
    /// Descriptors at `compute`.
    popular: usize,
    /// STORE pool, and the most a measured node holds.
    store_pool: usize,
    /// Rounds of the interleaved STORE vs verify measurement.
    paired_rounds: usize,
}

fn sizes() -> Sizes {
    if std::env::args().any(|a| a == "--bench") {
        Sizes {
            popular: 10_000,
            store_pool: 1_000,
            paired_rounds: 1_500,
        }
    } else {
        Sizes {
            popular: 200,
            store_pool: 50,
            paired_rounds: 2,
        }
    }
}

/// The wall clock, read once: the reference validates descriptors and
/// stamps table entries with `SystemTime::now()` itself, so the
/// descriptors must be fresh by the real clock and our node's `now` is the
/// same instant.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> u64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros();
    u64::try_from(micros).expect("clock before 2554")
}

/// Benchmark timing, the one place this file reads a monotonic clock.
#[allow(clippy::disallowed_methods)]
fn start_timer() -> Instant {
    Instant::now()
}

/// One peer of the simulated network, as both sides see it.
#[derive(Clone)]
struct NetPeer {
    identity: Identity,
    addr: NodeAddr,
    ref_info: rm::NodeInfo,
}

fn ref_identity(id: &Identity) -> mesh_core::Identity {
    mesh_core::Identity {
        algorithm: id.algorithm(),
        public_key: id.public_key().to_vec(),
    }
}

fn ref_addr(a: &NodeAddr) -> rm::NodeAddr {
    rm::NodeAddr::quic(a.address())
}

fn random_secret(rng: &mut StdRng) -> [u8; 32] {
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    s
}

/// Leading bits `id` shares with `key`.
fn shared_prefix(id: &mars_proto::NodeId, key: &Hash) -> u32 {
    let target = mars_proto::NodeId::from_key(key).expect("a 32-byte key");
    id.distance(&target).leading_zeros()
}

/// Everything both sides are built from.
struct Fixture {
    now: Timestamp,
    wall: u64,
    node_secret: [u8; 32],
    node_addr: NodeAddr,
    peers: Vec<NetPeer>,
    by_addr: BTreeMap<String, usize>,
    /// Indices (into `peers`) of the entries our table kept, in table order.
    members: Vec<usize>,
    requesters: Vec<NetPeer>,
}

impl Fixture {
    /// The fixture and our node that contacted all 10,000 peers.
    fn new() -> (Self, Node) {
        let wall = wall_clock();
        let now = Timestamp::from_micros(wall);
        let mut rng = StdRng::seed_from_u64(0x6d61_7273);
        // The node responsible for `compute`.
        let compute = schema::routing_key("compute");
        let node_secret = loop {
            let s = random_secret(&mut rng);
            let id = Keypair::from_secret_bytes(&s).identity().node_id();
            if shared_prefix(&id, &compute) >= 12 {
                break s;
            }
        };
        let peers: Vec<NetPeer> = (0..PEERS)
            .map(|i| {
                let identity = Keypair::from_secret_bytes(&random_secret(&mut rng)).identity();
                let addr = NodeAddr::quic(format!(
                    "45.{}.{}.{}:4433",
                    (i >> 16) & 0xff,
                    (i >> 8) & 0xff,
                    i & 0xff
                ));
                let ref_info = rm::NodeInfo {
                    identity: ref_identity(&identity),
                    addr: ref_addr(&addr),
                    last_seen: wall,
                };
                NetPeer {
                    identity,
                    addr,
                    ref_info,
                }
            })
            .collect();
        let by_addr = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.addr.address().to_owned(), i))
            .collect();
        let mut f = Fixture {
            now,
            wall,
            node_secret,
            node_addr: NodeAddr::quic("45.255.0.1:4433"),
            peers,
            by_addr,
            members: Vec::new(),
            requesters: Vec::new(),
        };
        let all: Vec<usize> = (0..PEERS).collect();
        let node = f.our_node(&all);
        f.members = node
            .routing_table()
            .iter()
            .map(|p| f.by_addr[p.addr.address()])
            .collect();
        // Requesters spread over the table.
        let step = (f.members.len() / REQUESTERS).max(1);
        f.requesters = f
            .members
            .iter()
            .step_by(step)
            .take(REQUESTERS)
            .map(|&i| f.peers[i].clone())
            .collect();
        (f, node)
    }

    /// Our node, having contacted `contacts` (indices into `peers`) in order.
    fn our_node(&self, contacts: &[usize]) -> Node {
        let key = Keypair::from_secret_bytes(&self.node_secret);
        let mut node = Node::new(Config::default(), key, self.node_addr.clone(), self.now, 7);
        for &i in contacts {
            node.ping(self.now, self.peers[i].addr.clone())
                .expect("room for a ping");
            self.answer_pings(&mut node);
        }
        assert_eq!(node.stats().requests_failed, 0, "every ping answered");
        node
    }

    /// Answers every PING the node wants to send with its peer's PONG.
    fn answer_pings(&self, node: &mut Node) {
        while let Some(req) = node.poll_request() {
            let frame = Frame::decode(&req.frame).expect("our request decodes");
            assert!(matches!(frame.message, Message::Ping(_)), "only pings");
            let peer = &self.peers[self.by_addr[req.to.address()]];
            let pong = Frame::new(
                frame.msg_id,
                Message::Pong(Pong {
                    sender: peer.identity,
                    sender_addr: peer.addr.clone(),
                    observed_addr: node.local_addr().clone(),
                }),
            )
            .encode();
            let resp = Response {
                peer: peer.identity,
                frame: &pong,
            };
            node.handle_response(self.now, req.id, Ok(resp));
        }
        while node.poll_event().is_some() {}
    }

    /// The reference node with the same key, having been told of every
    /// peer in the same order.
    fn ref_node(&self, contacts: &[usize]) -> DhtNode {
        let key = mesh_core::Keypair::from_bytes(&self.node_secret);
        let mut node = DhtNode::new(key, ref_addr(&self.node_addr), DhtConfig::default());
        for &i in contacts {
            let _ = node.routing_table.add_node(self.peers[i].ref_info.clone());
        }
        node
    }

    fn peer_info(&self, r: usize) -> PeerInfo {
        let p = &self.requesters[r % self.requesters.len()];
        PeerInfo {
            identity: p.identity,
            addr: p.addr.clone(),
        }
    }

    fn ref_peer(&self, r: usize) -> Option<mesh_core::Identity> {
        Some(ref_identity(
            &self.requesters[r % self.requesters.len()].identity,
        ))
    }

    /// A request from requester `r`, in both encodings.
    fn request(&self, r: usize, make: impl FnOnce(Identity, NodeAddr) -> Message) -> Req {
        let p = &self.requesters[r % self.requesters.len()];
        let ours = Frame::new(MsgId(MSG_ID), make(p.identity, p.addr.clone())).encode();
        let (_, msg) = ref_decode(&ours).expect("the reference reads our request");
        let msg_type = ours[3];
        Req {
            requester: r % self.requesters.len(),
            theirs: ref_encode(msg_type, &msg),
            ours,
        }
    }
}

/// One request frame as each side's peers send it.
struct Req {
    requester: usize,
    ours: Vec<u8>,
    theirs: Vec<u8>,
}

/// Signs a capability descriptor with `routing_keys` by a new publisher,
/// with a 128-byte random payload and a one-hour TTL.
fn descriptor(
    rng: &mut StdRng,
    wall: u64,
    topic: String,
    routing_keys: Vec<Hash>,
) -> (Descriptor, Keypair) {
    let publisher = Keypair::from_secret_bytes(&random_secret(rng));
    let mut payload = vec![0u8; 128];
    rng.fill_bytes(&mut payload);
    // Published at some point in the last ten minutes, as real ones are.
    let age = 1_000_000 + rng.next_u64() % 600_000_000;
    let d = DescriptorBuilder::new(
        schema::CORE_CAPABILITY.hash(),
        Timestamp::from_micros(wall - age),
    )
    .topic(topic)
    .payload(payload)
    .ttl(3600)
    .routing_keys(routing_keys)
    .sign(&publisher)
    .expect("descriptor inputs are valid");
    (d, publisher)
}

/// `d` republished by its publisher: same slot (schema, topic), next
/// sequence, one second later, a new 128-byte payload — what a publisher
/// sends every TTL/2, and what the node holding `d` then replaces it with.
fn republished(rng: &mut StdRng, d: &Descriptor, publisher: &Keypair) -> Descriptor {
    let mut payload = vec![0u8; 128];
    rng.fill_bytes(&mut payload);
    DescriptorBuilder::new(
        d.schema_hash,
        d.timestamp.saturating_add(Duration::from_secs(1)),
    )
    .topic(d.topic.clone())
    .payload(payload)
    .sequence(d.sequence + 1)
    .ttl(d.ttl)
    .routing_keys(d.routing_keys.clone())
    .sign(publisher)
    .expect("descriptor inputs are valid")
}

fn store_request(f: &Fixture, r: usize, d: Descriptor) -> Req {
    f.request(r, |sender, sender_addr| {
        Message::Store(Store {
            sender,
            sender_addr,
            descriptor: d.into(),
        })
    })
}

/// The reference server's per-request path.
fn ref_handle(node: &mut DhtNode, peer: &Option<mesh_core::Identity>, bytes: &[u8]) -> Vec<u8> {
    let frame = rf::Frame::from_bytes(bytes).expect("reference frame");
    let body = &frame.body[..];
    let (ty, out) = match frame.msg_type {
        rf::MSG_FIND_NODE => {
            let req: rm::FindNode = rm::from_cbor(body).expect("FIND_NODE");
            verify_sender_binding(&req.sender, peer).expect("sender binding");
            let res = node.handle_find_node(&req);
            (rf::MSG_FIND_NODE_RESULT, rm::to_cbor(&res))
        }
        rf::MSG_FIND_VALUE => {
            let req: rm::FindValue = rm::from_cbor(body).expect("FIND_VALUE");
            verify_sender_binding(&req.sender, peer).expect("sender binding");
            let res = node.handle_find_value(&req);
            (rf::MSG_FIND_VALUE_RESULT, rm::to_cbor(&res))
        }
        rf::MSG_STORE => {
            let req: rm::Store = rm::from_cbor(body).expect("STORE");
            verify_sender_binding(&req.sender, peer).expect("sender binding");
            let res = node.handle_store(&req);
            (rf::MSG_STORE_ACK, rm::to_cbor(&res))
        }
        t => panic!("unexpected request type {t:#04x}"),
    };
    rf::Frame::response(&frame, ty, out.expect("reference encodes")).to_bytes()
}

/// Our node's per-request path: handle, then drain as the contract asks.
fn our_handle(node: &mut Node, now: Timestamp, peer: &PeerInfo, bytes: &[u8]) -> Vec<u8> {
    let out = match node.handle_request(now, peer, bytes) {
        Outcome::Respond(frame) => frame,
        Outcome::Refuse(r) => panic!("refused: {r}"),
    };
    // Requesters are table entries and the node is no publish proxy, so
    // nothing may be queued to send: no verification PING, no replication.
    assert!(node.poll_request().is_none(), "a request queued a request");
    while node.poll_event().is_some() {}
    out
}

fn response(bytes: &[u8]) -> Message {
    Frame::decode(bytes).expect("response decodes").message
}

fn ref_response(bytes: &[u8]) -> RefMsg {
    ref_decode(bytes).expect("reference response decodes").1
}

/// A node of each kind, filled, plus the requests both answer.
struct Loaded {
    ours: Node,
    theirs: DhtNode,
    ours_peers: Vec<PeerInfo>,
    ref_peers: Vec<Option<mesh_core::Identity>>,
}

impl Loaded {
    fn new(f: &Fixture, mut ours: Node, sizes: &Sizes) -> Self {
        let all: Vec<usize> = (0..PEERS).collect();
        let mut theirs = f.ref_node(&all);
        // Same table on both sides.
        let mine: std::collections::BTreeSet<Vec<u8>> = ours
            .routing_table()
            .iter()
            .map(|p| p.identity.public_key().to_vec())
            .collect();
        let refs: std::collections::BTreeSet<Vec<u8>> = (0..256)
            .flat_map(|b| theirs.routing_table.bucket(b).entries.iter())
            .map(|n| n.identity.public_key.clone())
            .collect();
        assert_eq!(mine, refs, "both tables hold the same peers");
        assert_eq!(mine.len(), f.members.len());

        let ours_peers: Vec<PeerInfo> = (0..REQUESTERS).map(|r| f.peer_info(r)).collect();
        let ref_peers: Vec<_> = (0..REQUESTERS).map(|r| f.ref_peer(r)).collect();

        // The popular key, then the one-descriptor key.
        let mut rng = StdRng::seed_from_u64(0x706f_7075);
        let compute = schema::routing_key("compute");
        let mut descs: Vec<Descriptor> = (0..sizes.popular)
            .map(|i| descriptor(&mut rng, f.wall, format!("agent-{i}"), vec![compute]).0)
            .collect();
        descs.push(
            descriptor(
                &mut rng,
                f.wall,
                "llm".to_owned(),
                schema::hierarchical_keys("compute/inference/text-generation"),
            )
            .0,
        );
        for (i, d) in descs.into_iter().enumerate() {
            let r = i % REQUESTERS;
            let req = store_request(f, r, d);
            let ack = our_handle(&mut ours, f.now, &ours_peers[r], &req.ours);
            assert!(
                matches!(response(&ack), Message::StoreAck(a) if a.stored),
                "our node stores descriptor {i}"
            );
            let RefMsg::Store(s) = ref_decode(&req.theirs).expect("REF STORE").1 else {
                unreachable!()
            };
            theirs
                .store
                .store_descriptor(s.descriptor)
                .expect("the reference stores it");
        }
        assert_eq!(ours.storage().len(), sizes.popular + 1);
        // Answering from the popular key walks max_results entries, not all.
        let scan = ours
            .storage()
            .scan(&compute, &mars_proto::wire::Filters::default(), 20, f.now);
        assert_eq!(scan.descriptors.len(), 20);
        assert!(scan.examined <= 21, "examined {}", scan.examined);
        Loaded {
            ours,
            theirs,
            ours_peers,
            ref_peers,
        }
    }
}

/// Benchmarks `reqs` on both nodes: `ours`, `ours_ref_bytes` (our node on
/// the reference's encoding) and `mesh-dht`.
fn bench_requests(c: &mut Criterion, f: &Fixture, l: &mut Loaded, name: &str, reqs: &[Req]) {
    let now = f.now;
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("ours", |b| {
        b.iter(|| {
            let r = &reqs[i % reqs.len()];
            i += 1;
            our_handle(
                &mut l.ours,
                black_box(now),
                &l.ours_peers[r.requester],
                black_box(&r.ours),
            )
        })
    });
    g.bench_function("ours_ref_bytes", |b| {
        b.iter(|| {
            let r = &reqs[i % reqs.len()];
            i += 1;
            our_handle(
                &mut l.ours,
                black_box(now),
                &l.ours_peers[r.requester],
                black_box(&r.theirs),
            )
        })
    });
    g.bench_function("mesh-dht", |b| {
        b.iter(|| {
            let r = &reqs[i % reqs.len()];
            i += 1;
            ref_handle(
                &mut l.theirs,
                &l.ref_peers[r.requester],
                black_box(&r.theirs),
            )
        })
    });
    g.finish();
    assert_eq!(l.ours.stats().verify_dropped, 0, "no verification queued");
}

fn node_benches(c: &mut Criterion) {
    let sizes = sizes();
    let setup = start_timer();
    let (f, node) = Fixture::new();
    let mut l = Loaded::new(&f, node, &sizes);
    eprintln!(
        "fixture: {PEERS} peers contacted, {} kept in the table; {} descriptors at `compute`; built in {:.1?}",
        f.members.len(),
        sizes.popular + 1,
        setup.elapsed()
    );

    let mut rng = StdRng::seed_from_u64(0x7461_7267);
    let random_key = |rng: &mut StdRng| {
        let mut d = [0u8; 32];
        rng.fill_bytes(&mut d);
        Hash::new(HashAlgorithm::Blake3, &d).expect("a 32-byte digest")
    };

    // FIND_NODE for random targets.
    let reqs: Vec<Req> = (0..FRAMES)
        .map(|r| {
            let target = random_key(&mut rng);
            f.request(r, |sender, sender_addr| {
                Message::FindNode(FindNode {
                    sender,
                    sender_addr,
                    target,
                })
            })
        })
        .collect();
    for r in &reqs {
        let Message::FindNodeResult(ours) = response(&our_handle(
            &mut l.ours,
            f.now,
            &l.ours_peers[r.requester],
            &r.ours,
        )) else {
            panic!("FIND_NODE_RESULT")
        };
        let RefMsg::FindNodeResult(theirs) = ref_response(&ref_handle(
            &mut l.theirs,
            &l.ref_peers[r.requester],
            &r.theirs,
        )) else {
            panic!("REF FIND_NODE_RESULT")
        };
        let ids: Vec<_> = ours
            .nodes
            .iter()
            .map(|n| ref_identity(&n.identity))
            .collect();
        let ref_ids: Vec<_> = theirs.nodes.iter().map(|n| n.identity.clone()).collect();
        assert_eq!(ids.len(), 20);
        assert_eq!(
            ids, ref_ids,
            "both answer the same 20 nodes in the same order"
        );
    }
    bench_requests(c, &f, &mut l, "node_find_node", &reqs);

    // FIND_VALUE: hit at a key holding 1 and 10,000+1, then a miss.
    let find_value = |rng: &mut StdRng, key: Option<Hash>| -> Vec<Req> {
        (0..FRAMES)
            .map(|r| {
                let key = key.unwrap_or_else(|| random_key(rng));
                f.request(r, |sender, sender_addr| {
                    Message::FindValue(FindValue {
                        sender,
                        sender_addr,
                        key,
                        max_results: 20,
                        filters: None,
                    })
                })
            })
            .collect()
    };
    let cases = [
        (
            "node_find_value_hit_1",
            Some(schema::routing_key("compute/inference/text-generation")),
            Some(1),
        ),
        (
            "node_find_value_hit_10k",
            Some(schema::routing_key("compute")),
            Some(20),
        ),
        ("node_find_value_miss", None, None),
    ];
    for (name, key, want) in cases {
        let reqs = find_value(&mut rng, key);
        let r = &reqs[0];
        let ours = response(&our_handle(
            &mut l.ours,
            f.now,
            &l.ours_peers[r.requester],
            &r.ours,
        ));
        let theirs = ref_response(&ref_handle(
            &mut l.theirs,
            &l.ref_peers[r.requester],
            &r.theirs,
        ));
        match (ours, theirs, want) {
            (
                Message::FindValueResult(FindValueResult::Descriptors(d)),
                RefMsg::FindValueResult(t),
                Some(n),
            ) => {
                assert_eq!(d.len(), n, "{name}: ours");
                assert_eq!(t.descriptors.map(|d| d.len()), Some(n), "{name}: REF");
            }
            (
                Message::FindValueResult(FindValueResult::Nodes(n)),
                RefMsg::FindValueResult(t),
                None,
            ) => {
                assert_eq!(n.len(), 20, "{name}: ours");
                assert_eq!(t.nodes.map(|n| n.len()), Some(20), "{name}: REF");
            }
            _ => panic!("{name}: unexpected answers"),
        }
        bench_requests(c, &f, &mut l, name, &reqs);
    }

    store_benches(c, &f, &sizes);
}

/// A node that has stored every request of `reqs` (outside any timing):
/// it has seen each of their publishers once.
fn warm_node(f: &Fixture, reqs: &[Req], peers: &[PeerInfo]) -> Node {
    let mut node = f.our_node(&f.members);
    for r in reqs {
        our_handle(&mut node, f.now, &peers[r.requester], &r.ours);
    }
    assert_eq!(node.storage().len(), reqs.len(), "every STORE stored");
    node
}

/// STORE of a never-seen descriptor, and of a known publisher's
/// republication, vs one raw signature verification.
fn store_benches(c: &mut Criterion, f: &Fixture, sizes: &Sizes) {
    let mut rng = StdRng::seed_from_u64(0x7374_6f72);
    let keys = schema::hierarchical_keys("compute/inference/text-generation");
    let pool: Vec<(Descriptor, Keypair)> = (0..sizes.store_pool)
        .map(|i| descriptor(&mut rng, f.wall, format!("agent-{i}"), keys.clone()))
        .collect();
    let reqs: Vec<Req> = pool
        .iter()
        .enumerate()
        .map(|(i, (d, _))| store_request(f, i, d.clone()))
        .collect();
    // Each pool descriptor republished (sequence + 1, same slot), from the
    // same requester: what a node that holds the pool receives next.
    let again: Vec<Req> = pool
        .iter()
        .enumerate()
        .map(|(i, (d, k))| store_request(f, i, republished(&mut rng, d, k)))
        .collect();
    eprintln!(
        "STORE frame: {} bytes ours, {} bytes reference",
        reqs[0].ours.len(),
        reqs[0].theirs.len()
    );
    let ours_peers: Vec<PeerInfo> = (0..REQUESTERS).map(|r| f.peer_info(r)).collect();
    let ref_peers: Vec<_> = (0..REQUESTERS).map(|r| f.ref_peer(r)).collect();
    let now = f.now;

    // Every pool descriptor is accepted by a fresh node of each kind.
    {
        let mut ours = f.our_node(&f.members);
        let mut theirs = f.ref_node(&f.members);
        for r in &reqs {
            let p = r.requester;
            let ack = response(&our_handle(&mut ours, now, &ours_peers[p], &r.ours));
            assert!(
                matches!(ack, Message::StoreAck(a) if a.stored),
                "ours stores"
            );
            let ack = ref_response(&ref_handle(&mut theirs, &ref_peers[p], &r.theirs));
            assert!(matches!(ack, RefMsg::StoreAck(a) if a.stored), "REF stores");
        }
        // Then every republication replaces its original.
        for r in &again {
            let p = r.requester;
            let ack = response(&our_handle(&mut ours, now, &ours_peers[p], &r.ours));
            assert!(
                matches!(ack, Message::StoreAck(a) if a.stored),
                "ours replaces"
            );
        }
        assert_eq!(ours.storage().len(), reqs.len(), "one per slot");
        let (hits, _) = ours.key_cache().hits_and_misses();
        assert!(
            hits >= again.len() as u64,
            "known publishers' keys come from the node's cache ({hits} hits)"
        );
    }

    let mut g = c.benchmark_group("node_store");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ours", |b| {
        let mut node = f.our_node(&f.members);
        let mut next = 0;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                if next == reqs.len() {
                    node = f.our_node(&f.members);
                    next = 0;
                }
                let n = left.min((reqs.len() - next) as u64);
                let t = start_timer();
                for _ in 0..n {
                    let r = &reqs[next];
                    next += 1;
                    black_box(our_handle(
                        &mut node,
                        black_box(now),
                        &ours_peers[r.requester],
                        black_box(&r.ours),
                    ));
                }
                total += t.elapsed();
                left -= n;
                assert_eq!(node.storage().len(), next, "every STORE stored");
            }
            total
        })
    });
    // A publisher the node has seen: the republication of a held
    // descriptor, which replaces it (sequence + 1 in the same slot).
    g.bench_function("ours_known_publisher", |b| {
        let mut node = warm_node(f, &reqs, &ours_peers);
        let mut next = 0;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                if next == again.len() {
                    node = warm_node(f, &reqs, &ours_peers);
                    next = 0;
                }
                let n = left.min((again.len() - next) as u64);
                let t = start_timer();
                for _ in 0..n {
                    let r = &again[next];
                    next += 1;
                    black_box(our_handle(
                        &mut node,
                        black_box(now),
                        &ours_peers[r.requester],
                        black_box(&r.ours),
                    ));
                }
                total += t.elapsed();
                left -= n;
                assert_eq!(node.storage().len(), reqs.len(), "every STORE replaced");
                assert_eq!(node.stats().stores_refused, 0, "every STORE replaced");
            }
            total
        })
    });
    g.bench_function("mesh-dht", |b| {
        let mut node = f.ref_node(&f.members);
        let mut next = 0;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                if next == reqs.len() {
                    node = f.ref_node(&f.members);
                    next = 0;
                }
                let n = left.min((reqs.len() - next) as u64);
                let t = start_timer();
                for _ in 0..n {
                    let r = &reqs[next];
                    next += 1;
                    black_box(ref_handle(
                        &mut node,
                        &ref_peers[r.requester],
                        black_box(&r.theirs),
                    ));
                }
                total += t.elapsed();
                left -= n;
                // It counts one entry per routing key.
                assert_eq!(
                    node.store.descriptor_count(),
                    next * keys.len(),
                    "every STORE stored"
                );
            }
            total
        })
    });

    // The physical limit: one Ed25519 verification of a 32-byte message.
    let sk = SigningKey::from_bytes(&[9; 32]);
    let msg = [0x5a_u8; 32];
    let sig = sk.sign(&msg);
    let vk = sk.verifying_key();
    let vk_bytes = vk.to_bytes();
    g.bench_function("ed25519_verify_32B", |b| {
        b.iter(|| black_box(&vk).verify(black_box(&msg), black_box(&sig)))
    });
    g.bench_function("ed25519_key_decompress_and_verify_32B", |b| {
        b.iter(|| {
            VerifyingKey::from_bytes(black_box(&vk_bytes))
                .expect("valid key")
                .verify(black_box(&msg), black_box(&sig))
        })
    });
    let (d, _) = &pool[0];
    g.bench_function("ours_descriptor_validate", |b| {
        b.iter(|| black_box(d).clone().validate(black_box(now)))
    });
    g.finish();

    paired_store_ratio(f, sizes, &reqs, &again, &pool, (&vk, &vk_bytes, &msg, &sig));
}

/// STORE vs one verify, measured interleaved: rounds of 10 STOREs from
/// new publishers, 10 republications from known publishers (on a node
/// that holds their first descriptors), 10 raw verifies, 10 key
/// decompressions + verifies, 10 `validate`s, and the two kinds of STORE
/// again as one batch of 10 each (`Node::handle_requests`, what the QUIC
/// host does with the requests of a burst), one after the other, so a busy
/// machine slows all seven alike. A round is short (about 3 ms), so
/// when another process takes the core it spoils a few rounds of one kind
/// and the medians stay clean. Prints on stderr each kind's median and
/// quartiles per operation, the ratios of the medians, and the medians of
/// the per-round ratios.
fn paired_store_ratio(
    f: &Fixture,
    sizes: &Sizes,
    reqs: &[Req],
    again: &[Req],
    pool: &[(Descriptor, Keypair)],
    (vk, vk_bytes, msg, sig): (
        &VerifyingKey,
        &[u8; 32],
        &[u8; 32],
        &ed25519_dalek::Signature,
    ),
) {
    const PER: usize = 10;
    let rounds = sizes.paired_rounds;
    let per = PER.min(reqs.len());
    let peers: Vec<PeerInfo> = (0..REQUESTERS).map(|r| f.peer_info(r)).collect();
    let mut node = f.our_node(&f.members);
    let mut next = 0;
    let mut warm = warm_node(f, reqs, &peers);
    let mut next_again = 0;
    // The same two kinds handed in as one batch (`handle_requests`).
    let mut batch_node = f.our_node(&f.members);
    let mut batch_next = 0;
    let mut batch_warm = warm_node(f, reqs, &peers);
    let mut batch_next_again = 0;
    let store_batch = |node: &mut Node, batch: &[Req]| {
        let t = start_timer();
        let requests: Vec<InboundRequest<'_>> = batch
            .iter()
            .map(|r| InboundRequest {
                peer: &peers[r.requester],
                frame: &r.ours,
            })
            .collect();
        let outcomes = node.handle_requests(black_box(f.now), black_box(&requests));
        assert!(node.poll_request().is_none(), "a request queued a request");
        while node.poll_event().is_some() {}
        black_box(outcomes);
        t.elapsed().as_secs_f64()
    };
    let store = |node: &mut Node, batch: &[Req]| {
        let t = start_timer();
        for r in batch {
            black_box(our_handle(
                node,
                black_box(f.now),
                &peers[r.requester],
                black_box(&r.ours),
            ));
        }
        t.elapsed().as_secs_f64()
    };
    // Per round, seconds per operation: STORE (new publisher), STORE
    // (known publisher), verify, decompress + verify, validate, and the
    // two STOREs again as batches.
    let mut rows: Vec<[f64; 7]> = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        if next + per > reqs.len() {
            node = f.our_node(&f.members);
            next = 0;
        }
        if next_again + per > again.len() {
            assert_eq!(warm.stats().stores_refused, 0, "every STORE replaced");
            warm = warm_node(f, reqs, &peers);
            next_again = 0;
        }
        if batch_next + per > reqs.len() {
            batch_node = f.our_node(&f.members);
            batch_next = 0;
        }
        if batch_next_again + per > again.len() {
            assert_eq!(batch_warm.stats().stores_refused, 0, "every STORE replaced");
            batch_warm = warm_node(f, reqs, &peers);
            batch_next_again = 0;
        }
        let mut row = [0.0; 7];
        row[0] = store(&mut node, &reqs[next..next + per]);
        next += per;
        row[1] = store(&mut warm, &again[next_again..next_again + per]);
        next_again += per;
        let t = start_timer();
        for _ in 0..per {
            let _ = black_box(black_box(vk).verify(black_box(msg), black_box(sig)));
        }
        row[2] = t.elapsed().as_secs_f64();
        let t = start_timer();
        for _ in 0..per {
            let ok = VerifyingKey::from_bytes(black_box(vk_bytes))
                .is_ok_and(|k| k.verify(black_box(msg), black_box(sig)).is_ok());
            black_box(ok);
        }
        row[3] = t.elapsed().as_secs_f64();
        let t = start_timer();
        for (d, _) in pool.iter().cycle().take(per) {
            let _ = black_box(black_box(d).clone().validate(black_box(f.now)));
        }
        row[4] = t.elapsed().as_secs_f64();
        row[5] = store_batch(&mut batch_node, &reqs[batch_next..batch_next + per]);
        batch_next += per;
        row[6] = store_batch(
            &mut batch_warm,
            &again[batch_next_again..batch_next_again + per],
        );
        batch_next_again += per;
        rows.push(row.map(|x| x / per as f64));
    }
    assert_eq!(node.storage().len(), next, "every STORE stored");
    assert_eq!(warm.stats().stores_refused, 0, "every STORE replaced");
    assert_eq!(batch_node.storage().len(), batch_next, "every STORE stored");
    assert_eq!(batch_warm.stats().stores_refused, 0, "every STORE replaced");
    let quartiles = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (at(0.25), at(0.5), at(0.75))
    };
    let stats: Vec<(f64, f64, f64)> = (0..7)
        .map(|i| quartiles(rows.iter().map(|r| r[i] * 1e6).collect()))
        .collect();
    eprintln!("paired STORE vs verify, {rounds} rounds of {per} (µs per op: median [q1 q3]):");
    let names = [
        "STORE, new publisher",
        "STORE, known publisher",
        "ed25519 verify",
        "key decompress + verify",
        "Descriptor::validate",
        "STORE, new, in a batch",
        "STORE, known, in a batch",
    ];
    for (name, (q1, m, q3)) in names.iter().zip(&stats) {
        eprintln!("  {name:<24} {m:7.2} [{q1:.2} {q3:.2}]");
    }
    eprintln!("  ratio of medians; median of per-round ratios [q1 q3]:");
    for s in [0, 1, 5, 6] {
        for i in 2..5 {
            let (q1, m, q3) = quartiles(rows.iter().map(|r| r[s] / r[i]).collect());
            eprintln!(
                "  {} / {:<24} {:.3}; {m:.3} [{q1:.3} {q3:.3}]",
                names[s],
                names[i],
                stats[s].1 / stats[i].1
            );
        }
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = node_benches
}
criterion_main!(benches);
