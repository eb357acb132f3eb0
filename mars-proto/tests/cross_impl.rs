//! Cross-implementation properties against the reference implementation,
//! `mesh-core` 0.1.1 (WIRE.md: "we emit what it accepts and accept what it
//! emits").
//!
//! Every property draws *inputs* (secrets, strings, digests, numbers) and
//! builds the value twice, once with each implementation, so identities,
//! hashes, descriptor ids and signatures are computed independently. Then:
//!
//! - the two values agree field by field (reference values are converted to
//!   ours with the strict converters in [`from_ref`]);
//! - ours → reference: our frame is parsed by `mesh_core::Frame::from_bytes`
//!   and its body by `mesh_core::message::from_cbor`, giving the reference's
//!   own value back (and the reference re-serializes it to the same bytes as
//!   the value it built itself);
//! - reference → ours: the reference's body (byte fields as integer arrays),
//!   framed by `mesh_core::Frame::to_bytes`, decodes with [`Frame::decode`]
//!   to exactly our value;
//! - descriptors made by either side validate with the other's rules, and
//!   the two validators reach the same verdict on arbitrary (also invalid,
//!   tampered, expired, future) descriptors.
//!
//! Signing is slow in debug builds, so case counts are modest.

use mars_proto::wire::{
    Filters, FindNode, FindNodeResult, FindValue, FindValueResult, Frame, Message, MsgId, NodeAddr,
    NodeInfo, Ping, Pong, Store, StoreAck,
};
use mars_proto::{
    Descriptor, DescriptorBuilder, Hash, HashAlgorithm, Identity, Keypair, Signature, Timestamp,
    ValidDescriptor, ValidationError, schema, validate_batch,
};
use mesh_core as mc;
use mesh_core::frame::{
    FRAME_MAGIC, MSG_FIND_NODE, MSG_FIND_NODE_RESULT, MSG_FIND_VALUE, MSG_FIND_VALUE_RESULT,
    MSG_PING, MSG_PONG, MSG_STORE, MSG_STORE_ACK, PROTOCOL_VERSION,
};
use mesh_core::message::{from_cbor, to_cbor};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The msg_id of every frame built here (as in the shared vectors).
const MSG_ID: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

const SEC: u64 = 1_000_000;
const MAX_SKEW: u64 = 120 * SEC;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        // Never write regression files into the source tree.
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

// ───────────────────────── inputs shared by both sides ─────────────────────────

/// An identity: from a secret (each side derives the public key itself) or
/// raw key bytes (not necessarily a curve point; the codecs must not care).
#[derive(Debug, Clone)]
enum IdIn {
    Secret([u8; 32]),
    RawKey([u8; 32]),
}

impl IdIn {
    fn ours(&self) -> Identity {
        match self {
            IdIn::Secret(s) => Keypair::from_secret_bytes(s).identity(),
            IdIn::RawKey(k) => Identity::from_ed25519_bytes(*k),
        }
    }
    fn reference(&self) -> mc::Identity {
        match self {
            IdIn::Secret(s) => mc::Keypair::from_bytes(s).identity(),
            IdIn::RawKey(k) => mc::Identity::new(mc::identity::ALG_ED25519, k.to_vec()),
        }
    }
}

/// A hash: computed by each side, or given as a digest.
#[derive(Debug, Clone)]
enum HashIn {
    Blake3Of(Vec<u8>),
    Blake3Digest([u8; 32]),
    /// The reference has no SHA-256; it gets our digest.
    Sha256Of(Vec<u8>),
    Sha256Digest([u8; 32]),
    /// An algorithm neither side knows (not 0x03/0x04), digest ≤ 32 bytes.
    Unknown(u8, Vec<u8>),
}

impl HashIn {
    fn ours(&self) -> Hash {
        match self {
            HashIn::Blake3Of(d) => Hash::blake3(d),
            HashIn::Blake3Digest(d) => Hash::from_blake3_digest(*d),
            HashIn::Sha256Of(d) => Hash::sha256(d),
            HashIn::Sha256Digest(d) => Hash::new(HashAlgorithm::Sha256, d).unwrap(),
            HashIn::Unknown(a, d) => Hash::new(HashAlgorithm::from_code(*a), d).unwrap(),
        }
    }
    fn reference(&self) -> mc::Hash {
        match self {
            HashIn::Blake3Of(d) => mc::Hash::blake3(d),
            HashIn::Blake3Digest(d) => mc::Hash::new(mc::hash::ALG_BLAKE3, d.to_vec()),
            HashIn::Sha256Of(d) => {
                mc::Hash::new(mc::hash::ALG_SHA256, Hash::sha256(d).digest().to_vec())
            }
            HashIn::Sha256Digest(d) => mc::Hash::new(mc::hash::ALG_SHA256, d.to_vec()),
            HashIn::Unknown(a, d) => mc::Hash::new(*a, d.clone()),
        }
    }
}

#[derive(Debug, Clone)]
struct AddrIn {
    protocol: String,
    address: String,
}

impl AddrIn {
    fn ours(&self) -> NodeAddr {
        NodeAddr::new(&self.protocol, &self.address)
    }
    fn reference(&self) -> mc::NodeAddr {
        mc::NodeAddr {
            protocol: self.protocol.clone(),
            address: self.address.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct NodeIn {
    identity: IdIn,
    addr: AddrIn,
    last_seen: u64,
}

impl NodeIn {
    fn ours(&self) -> NodeInfo {
        NodeInfo {
            identity: self.identity.ours(),
            addr: self.addr.ours(),
            last_seen: Timestamp::from_micros(self.last_seen),
        }
    }
    fn reference(&self) -> mc::NodeInfo {
        mc::NodeInfo {
            identity: self.identity.reference(),
            addr: self.addr.reference(),
            last_seen: self.last_seen,
        }
    }
}

#[derive(Debug, Clone)]
struct FiltersIn {
    schema_hash: Option<HashIn>,
    min_timestamp: Option<u64>,
    publisher: Option<IdIn>,
}

impl FiltersIn {
    fn ours(&self) -> Filters {
        Filters {
            schema_hash: self.schema_hash.as_ref().map(HashIn::ours),
            min_timestamp: self.min_timestamp.map(Timestamp::from_micros),
            publisher: self.publisher.as_ref().map(IdIn::ours),
        }
    }
    fn reference(&self) -> mc::FilterSet {
        mc::FilterSet {
            schema_hash: self.schema_hash.as_ref().map(HashIn::reference),
            min_timestamp: self.min_timestamp,
            publisher: self.publisher.as_ref().map(IdIn::reference),
        }
    }
}

/// A descriptor that is valid at `now`, signed by `secret`.
#[derive(Debug, Clone)]
struct DescIn {
    secret: [u8; 32],
    schema_hash: HashIn,
    topic: String,
    payload: Vec<u8>,
    timestamp: u64,
    sequence: u64,
    ttl: u32,
    routing_keys: Vec<HashIn>,
    now: u64,
}

impl DescIn {
    fn ours(&self) -> Descriptor {
        DescriptorBuilder::new(
            self.schema_hash.ours(),
            Timestamp::from_micros(self.timestamp),
        )
        .topic(self.topic.clone())
        .payload(self.payload.clone())
        .sequence(self.sequence)
        .ttl(self.ttl)
        .routing_keys(self.routing_keys.iter().map(HashIn::ours).collect())
        .sign(&Keypair::from_secret_bytes(&self.secret))
        .expect("DescriptorBuilder refused inputs within every limit")
    }
    fn reference(&self) -> mc::Descriptor {
        mc::Descriptor::create(
            &mc::Keypair::from_bytes(&self.secret),
            self.schema_hash.reference(),
            self.topic.clone(),
            self.payload.clone(),
            self.timestamp,
            self.sequence,
            self.ttl,
            self.routing_keys.iter().map(HashIn::reference).collect(),
        )
        .expect("mesh_core::Descriptor::create failed")
    }
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.now)
    }
}

// ───────────────────────── strategies ─────────────────────────

fn id_in() -> BoxedStrategy<IdIn> {
    prop_oneof![
        4 => any::<[u8; 32]>().prop_map(IdIn::Secret),
        1 => any::<[u8; 32]>().prop_map(IdIn::RawKey),
    ]
    .boxed()
}

fn hash_in() -> BoxedStrategy<HashIn> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..64).prop_map(HashIn::Blake3Of),
        2 => any::<[u8; 32]>().prop_map(HashIn::Blake3Digest),
        1 => vec(any::<u8>(), 0..64).prop_map(HashIn::Sha256Of),
        1 => any::<[u8; 32]>().prop_map(HashIn::Sha256Digest),
        1 => (
            any::<u8>().prop_filter("a known algorithm", |a| *a != 0x03 && *a != 0x04),
            vec(any::<u8>(), 0..=32),
        )
            .prop_map(|(a, d)| HashIn::Unknown(a, d)),
    ]
    .boxed()
}

/// Cuts `s` to at most `max` bytes, on a char boundary.
fn truncate_bytes(mut s: String, max: usize) -> String {
    while s.len() > max {
        s.pop();
    }
    s
}

/// Within our decoder's bound (16 bytes).
fn protocol() -> BoxedStrategy<String> {
    prop_oneof![
        3 => Just("quic".to_owned()),
        1 => "[a-z0-9+.-]{0,16}",
        1 => "\\PC{0,4}",
    ]
    .boxed()
}

/// Within our decoder's bound (262 bytes).
fn address() -> BoxedStrategy<String> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| format!("{}:{port}", std::net::Ipv4Addr::from(ip))),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| format!("[{}]:{port}", std::net::Ipv6Addr::from(ip))),
        "[a-z0-9.-]{1,60}:[0-9]{1,5}",
        "\\PC{0,64}",
    ]
    .boxed()
}

fn addr_in() -> BoxedStrategy<AddrIn> {
    (protocol(), address())
        .prop_map(|(protocol, address)| AddrIn { protocol, address })
        .boxed()
}

fn node_in() -> BoxedStrategy<NodeIn> {
    (id_in(), addr_in(), any::<u64>())
        .prop_map(|(identity, addr, last_seen)| NodeIn {
            identity,
            addr,
            last_seen,
        })
        .boxed()
}

/// Up to K = 20 nodes.
fn nodes_in() -> BoxedStrategy<Vec<NodeIn>> {
    vec(node_in(), 0..=20).boxed()
}

fn filters_in() -> BoxedStrategy<FiltersIn> {
    (
        proptest::option::of(hash_in()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(id_in()),
    )
        .prop_map(|(schema_hash, min_timestamp, publisher)| FiltersIn {
            schema_hash,
            min_timestamp,
            publisher,
        })
        .boxed()
}

/// A topic of at most 255 bytes.
fn topic() -> BoxedStrategy<String> {
    prop_oneof![
        2 => "[ -~]{0,64}",
        1 => "[a-z]{255}",
        2 => "\\PC{0,255}".prop_map(|s| truncate_bytes(s, 255)),
    ]
    .boxed()
}

/// A validation time: realistic, or anywhere up to 2^62 µs.
fn now_micros() -> BoxedStrategy<u64> {
    prop_oneof![
        1_600_000_000 * SEC..=2_000_000_000 * SEC,
        (1u64 << 28)..=(1u64 << 62),
    ]
    .boxed()
}

/// A descriptor valid at `now`: its timestamp anywhere from just after
/// `now - ttl` (not yet expired) to `now + 120 s` (the skew limit), edges
/// included.
fn desc_at(now: u64) -> BoxedStrategy<DescIn> {
    (
        any::<[u8; 32]>(),
        hash_in(),
        topic(),
        vec(any::<u8>(), 0..=2048),
        any::<u64>(),
        prop_oneof![1 => Just(60u32), 1 => Just(86_400u32), 6 => 60u32..=86_400],
        vec(hash_in(), 1..=8),
    )
        .prop_flat_map(
            move |(secret, schema_hash, topic, payload, sequence, ttl, keys)| {
                let lo = now.saturating_sub(ttl as u64 * SEC - 1);
                let hi = now + MAX_SKEW;
                prop_oneof![1 => Just(lo), 1 => Just(hi), 4 => lo..=hi].prop_map(move |timestamp| {
                    DescIn {
                        secret,
                        schema_hash: schema_hash.clone(),
                        topic: topic.clone(),
                        payload: payload.clone(),
                        timestamp,
                        sequence,
                        ttl,
                        routing_keys: keys.clone(),
                        now,
                    }
                })
            },
        )
        .boxed()
}

fn desc_in() -> BoxedStrategy<DescIn> {
    now_micros().prop_flat_map(desc_at).boxed()
}

// ───────────────────────── reference → ours converters ─────────────────────────

/// Strict conversions of reference values into ours: anything our types
/// cannot hold (a non-Ed25519 identity, a key or signature of the wrong
/// length, a malformed digest) is a test failure.
mod from_ref {
    use super::*;

    pub fn identity(i: &mc::Identity) -> Identity {
        assert_eq!(
            i.algorithm,
            Identity::ED25519,
            "reference identity algorithm"
        );
        let key: [u8; 32] = i
            .public_key
            .as_slice()
            .try_into()
            .expect("32-byte public key");
        Identity::from_ed25519_bytes(key)
    }

    pub fn hash(h: &mc::Hash) -> Hash {
        Hash::new(HashAlgorithm::from_code(h.algorithm), &h.digest)
            .unwrap_or_else(|e| panic!("reference hash {h} does not fit ours: {e}"))
    }

    pub fn addr(a: &mc::NodeAddr) -> NodeAddr {
        NodeAddr::new(&a.protocol, &a.address)
    }

    pub fn node(n: &mc::NodeInfo) -> NodeInfo {
        NodeInfo {
            identity: identity(&n.identity),
            addr: addr(&n.addr),
            last_seen: Timestamp::from_micros(n.last_seen),
        }
    }

    pub fn nodes(ns: &[mc::NodeInfo]) -> Vec<NodeInfo> {
        ns.iter().map(node).collect()
    }

    pub fn filters(f: &mc::FilterSet) -> Filters {
        Filters {
            schema_hash: f.schema_hash.as_ref().map(hash),
            min_timestamp: f.min_timestamp.map(Timestamp::from_micros),
            publisher: f.publisher.as_ref().map(identity),
        }
    }

    pub fn descriptor(d: &mc::Descriptor) -> Descriptor {
        let sig: [u8; 64] = d
            .signature
            .as_slice()
            .try_into()
            .expect("64-byte signature");
        Descriptor {
            schema_hash: hash(&d.schema_hash),
            topic: d.topic.clone(),
            payload: d.payload.clone(),
            publisher: identity(&d.publisher),
            timestamp: Timestamp::from_micros(d.timestamp),
            sequence: d.sequence,
            ttl: d.ttl,
            routing_keys: d.routing_keys.iter().map(hash).collect(),
            id: hash(&d.id),
            signature: Signature::from_bytes(sig),
        }
    }

    pub fn ping(p: &mc::Ping) -> Ping {
        Ping {
            sender: identity(&p.sender),
            sender_addr: addr(&p.sender_addr),
        }
    }

    pub fn pong(p: &mc::Pong) -> Pong {
        Pong {
            sender: identity(&p.sender),
            sender_addr: addr(&p.sender_addr),
            observed_addr: addr(&p.observed_addr),
        }
    }

    pub fn store(s: &mc::Store) -> Store {
        Store {
            sender: identity(&s.sender),
            sender_addr: addr(&s.sender_addr),
            descriptor: descriptor(&s.descriptor).into(),
        }
    }

    pub fn store_ack(a: &mc::StoreAck) -> StoreAck {
        StoreAck {
            stored: a.stored,
            reason: a.reason.clone(),
        }
    }

    pub fn find_node(f: &mc::FindNode) -> FindNode {
        FindNode {
            sender: identity(&f.sender),
            sender_addr: addr(&f.sender_addr),
            target: hash(&f.target),
        }
    }

    pub fn find_node_result(r: &mc::FindNodeResult) -> FindNodeResult {
        FindNodeResult {
            nodes: nodes(&r.nodes),
        }
    }

    pub fn find_value(f: &mc::FindValue) -> FindValue {
        FindValue {
            sender: identity(&f.sender),
            sender_addr: addr(&f.sender_addr),
            key: hash(&f.key),
            max_results: f.max_results,
            filters: f.filters.as_ref().map(|x| Box::new(filters(x))),
        }
    }

    pub fn find_value_result(r: &mc::FindValueResult) -> FindValueResult {
        match (&r.descriptors, &r.nodes) {
            (Some(ds), None) => FindValueResult::Descriptors(ds.iter().map(descriptor).collect()),
            (None, Some(ns)) => FindValueResult::Nodes(nodes(ns)),
            (d, n) => panic!(
                "reference FIND_VALUE_RESULT with descriptors {} and nodes {}",
                d.is_some(),
                n.is_some()
            ),
        }
    }
}

// ───────────────────────── framing helpers ─────────────────────────

/// The body of `bytes` as the reference's frame parser sees it, after
/// checking its header fields.
fn reference_frame_body(bytes: &[u8], msg_type: u8) -> Result<Vec<u8>, TestCaseError> {
    let f = mc::Frame::from_bytes(bytes).map_err(|e| {
        TestCaseError::fail(format!(
            "mesh_core::Frame::from_bytes refused our frame: {e}"
        ))
    })?;
    prop_assert_eq!(f.magic, FRAME_MAGIC);
    prop_assert_eq!(f.version, PROTOCOL_VERSION);
    prop_assert_eq!(f.msg_type, msg_type);
    prop_assert_eq!(f.msg_id, MSG_ID);
    prop_assert_eq!(f.body.len() + 24, bytes.len());
    Ok(f.body)
}

/// A whole frame as the reference writes it.
fn reference_frame(msg_type: u8, body: Vec<u8>) -> Vec<u8> {
    mc::Frame {
        magic: FRAME_MAGIC,
        version: PROTOCOL_VERSION,
        msg_type,
        msg_id: MSG_ID,
        body,
    }
    .to_bytes()
}

/// Both directions for one message. `$ours` is our value, `$reference` the
/// reference's value built from the same inputs, `$variant` the `Message`
/// variant, `$ty` the reference's type, `$byte` its type constant and
/// `$conv` the converter. Evaluates to the value the reference decoded from
/// our frame.
macro_rules! both_ways {
    ($ours:expr, $reference:expr, $variant:ident, $ty:ty, $byte:expr, $conv:path) => {{
        let ours = $ours;
        let reference: &$ty = &$reference;
        let message = Message::$variant(ours.clone());
        prop_assert_eq!(message.message_type().byte(), $byte);

        // Same inputs, same values (ids and signatures included).
        prop_assert_eq!(
            &$conv(reference),
            &ours,
            "the two implementations built different values"
        );

        // Ours → reference.
        let bytes = Frame::new(MsgId(MSG_ID), message.clone()).encode();
        let body = reference_frame_body(&bytes, $byte)?;
        let got: $ty = from_cbor(&body).map_err(|e| {
            TestCaseError::fail(format!(
                "mesh_core refused our {} body: {e}\nframe: {}",
                stringify!($variant),
                hex::encode(&bytes)
            ))
        })?;
        prop_assert_eq!(
            &$conv(&got),
            &ours,
            "reference decoded our frame to another value"
        );
        prop_assert_eq!(
            to_cbor(&got).unwrap(),
            to_cbor(reference).unwrap(),
            "reference's decoding of our frame differs from the value it built"
        );

        // Reference → ours.
        let ref_bytes = reference_frame($byte, to_cbor(reference).unwrap());
        prop_assert_eq!(
            Frame::decode(&ref_bytes),
            Ok(Frame::new(MsgId(MSG_ID), message)),
            "our decoding of the reference frame {}",
            hex::encode(&ref_bytes)
        );
        got
    }};
}

// ───────────────────────── the eight messages ─────────────────────────

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn ping_both_ways(sender in id_in(), addr in addr_in()) {
        let ours = Ping { sender: sender.ours(), sender_addr: addr.ours() };
        let reference = mc::Ping { sender: sender.reference(), sender_addr: addr.reference() };
        both_ways!(ours, reference, Ping, mc::Ping, MSG_PING, from_ref::ping);
    }

    #[test]
    fn pong_both_ways(sender in id_in(), addr in addr_in(), observed in addr_in()) {
        let ours = Pong {
            sender: sender.ours(),
            sender_addr: addr.ours(),
            observed_addr: observed.ours(),
        };
        let reference = mc::Pong {
            sender: sender.reference(),
            sender_addr: addr.reference(),
            observed_addr: observed.reference(),
        };
        both_ways!(ours, reference, Pong, mc::Pong, MSG_PONG, from_ref::pong);
    }

    #[test]
    fn store_both_ways(sender in id_in(), addr in addr_in(), desc in desc_in()) {
        let ours = Store { sender: sender.ours(), sender_addr: addr.ours(), descriptor: desc.ours().into() };
        let reference = mc::Store {
            sender: sender.reference(),
            sender_addr: addr.reference(),
            descriptor: desc.reference(),
        };
        let got = both_ways!(ours, reference, Store, mc::Store, MSG_STORE, from_ref::store);

        // Our descriptor, as the reference read it off our frame, passes its rules.
        let ref_verdict = got.descriptor.validate(desc.now);
        prop_assert!(ref_verdict.is_ok(), "reference refused our descriptor: {:?}", ref_verdict);

        // The reference's descriptor, as we read it off its frame, passes ours.
        let frame = Frame::decode(&reference_frame(MSG_STORE, to_cbor(&reference).unwrap())).unwrap();
        let Message::Store(decoded) = frame.message else { unreachable!() };
        let single = decoded.descriptor.check(desc.now());
        prop_assert!(single.is_ok(), "we refused the reference's descriptor: {:?}", single);
        let batch = validate_batch(vec![(*decoded.descriptor).clone()], desc.now());
        prop_assert_eq!(batch, vec![single]);
    }

    #[test]
    fn store_ack_both_ways(stored in any::<bool>(), reason in proptest::option::of("\\PC{0,200}")) {
        let ours = StoreAck { stored, reason: reason.clone() };
        let reference = mc::StoreAck { stored, reason };
        both_ways!(ours, reference, StoreAck, mc::StoreAck, MSG_STORE_ACK, from_ref::store_ack);
    }

    #[test]
    fn find_node_both_ways(sender in id_in(), addr in addr_in(), target in hash_in()) {
        let ours = FindNode { sender: sender.ours(), sender_addr: addr.ours(), target: target.ours() };
        let reference = mc::FindNode {
            sender: sender.reference(),
            sender_addr: addr.reference(),
            target: target.reference(),
        };
        both_ways!(ours, reference, FindNode, mc::FindNode, MSG_FIND_NODE, from_ref::find_node);
    }

    #[test]
    fn find_node_result_both_ways(nodes in nodes_in()) {
        let ours = FindNodeResult { nodes: nodes.iter().map(NodeIn::ours).collect() };
        let reference = mc::FindNodeResult { nodes: nodes.iter().map(NodeIn::reference).collect() };
        both_ways!(
            ours,
            reference,
            FindNodeResult,
            mc::FindNodeResult,
            MSG_FIND_NODE_RESULT,
            from_ref::find_node_result
        );
    }

    #[test]
    fn find_value_both_ways(
        sender in id_in(),
        addr in addr_in(),
        key in hash_in(),
        max_results in any::<u16>(),
        filters in proptest::option::of(filters_in()),
    ) {
        let ours = FindValue {
            sender: sender.ours(),
            sender_addr: addr.ours(),
            key: key.ours(),
            max_results,
            filters: filters.as_ref().map(|f| Box::new(f.ours())),
        };
        let reference = mc::FindValue {
            sender: sender.reference(),
            sender_addr: addr.reference(),
            key: key.reference(),
            max_results,
            filters: filters.as_ref().map(FiltersIn::reference),
        };
        both_ways!(ours, reference, FindValue, mc::FindValue, MSG_FIND_VALUE, from_ref::find_value);
    }

    #[test]
    fn find_value_result_nodes_both_ways(nodes in nodes_in()) {
        let ours = FindValueResult::Nodes(nodes.iter().map(NodeIn::ours).collect());
        let reference = mc::FindValueResult {
            descriptors: None,
            nodes: Some(nodes.iter().map(NodeIn::reference).collect()),
        };
        let got = both_ways!(
            ours,
            reference,
            FindValueResult,
            mc::FindValueResult,
            MSG_FIND_VALUE_RESULT,
            from_ref::find_value_result
        );
        prop_assert!(got.descriptors.is_none());
    }
}

proptest! {
    // Up to 5 descriptors, each signed by both sides: fewer cases.
    #![proptest_config(config(32))]

    #[test]
    fn find_value_result_descriptors_both_ways(
        descs in now_micros().prop_flat_map(|now| vec(desc_at(now), 0..=5)),
    ) {
        let ours = FindValueResult::Descriptors(descs.iter().map(DescIn::ours).collect());
        let reference = mc::FindValueResult {
            descriptors: Some(descs.iter().map(DescIn::reference).collect()),
            nodes: None,
        };
        let got = both_ways!(
            ours,
            reference,
            FindValueResult,
            mc::FindValueResult,
            MSG_FIND_VALUE_RESULT,
            from_ref::find_value_result
        );
        prop_assert!(got.nodes.is_none());

        // All of them share one `now` (desc_at), so the batch applies.
        let Some(now) = descs.first().map(DescIn::now) else { return Ok(()) };
        for d in got.descriptors.as_deref().unwrap_or_default() {
            let v = d.validate(now.as_micros());
            prop_assert!(v.is_ok(), "reference refused our descriptor: {:?}", v);
        }
        let frame = Frame::decode(&reference_frame(MSG_FIND_VALUE_RESULT, to_cbor(&reference).unwrap()))
            .unwrap();
        let Message::FindValueResult(FindValueResult::Descriptors(decoded)) = frame.message else {
            unreachable!()
        };
        let singles: Vec<_> = decoded.iter().map(|d| d.check(now)).collect();
        for s in &singles {
            prop_assert!(s.is_ok(), "we refused a reference descriptor: {:?}", s);
        }
        prop_assert_eq!(validate_batch(decoded, now), singles);
    }
}

// ───────────────────────── identities, hashes, keys ─────────────────────────

proptest! {
    #![proptest_config(config(64))]

    /// DID, node id and signatures agree for arbitrary keys.
    #[test]
    fn identity_did_node_id_and_signature_agree(secret in any::<[u8; 32]>(), msg in vec(any::<u8>(), 0..128)) {
        let ours = Keypair::from_secret_bytes(&secret);
        let reference = mc::Keypair::from_bytes(&secret);
        prop_assert_eq!(ours.identity(), from_ref::identity(&reference.identity()));
        prop_assert_eq!(ours.identity().did(), reference.identity().did());
        prop_assert_eq!(Identity::from_did(&reference.identity().did()), Ok(ours.identity()));
        prop_assert_eq!(
            ours.identity().node_id().as_bytes().to_vec(),
            reference.identity().node_id().digest
        );
        let sig = ours.sign(&msg);
        prop_assert_eq!(sig.as_bytes().to_vec(), reference.sign(&msg));
        prop_assert!(reference.identity().verify(&msg, sig.as_bytes()).is_ok());
        prop_assert!(ours.identity().verify(&msg, &Signature::from_bytes(*sig.as_bytes())));
    }

    /// Schema hashes, routing keys and hierarchical keys agree, for any name
    /// and any path (empty segments, leading and trailing slashes included).
    #[test]
    fn schema_and_routing_keys_agree(
        name in "\\PC{0,40}",
        path in vec(prop_oneof![3 => "[a-z-]{1,12}", 1 => Just(String::new()), 1 => "\\PC{0,6}"], 1..6)
            .prop_map(|segs| segs.join("/")),
    ) {
        prop_assert_eq!(schema::schema_hash(&name), from_ref::hash(&mc::hash::schema_hash(&name)));
        prop_assert_eq!(schema::routing_key(&path), from_ref::hash(&mc::routing_key(&path)));
        let ours = schema::hierarchical_keys(&path);
        let reference: Vec<Hash> = mc::hierarchical_routing_keys(&path).iter().map(from_ref::hash).collect();
        prop_assert_eq!(ours, reference, "hierarchical keys of {:?}", path);
    }
}

#[test]
fn well_known_schemas_agree() {
    let pairs = [
        (&schema::CORE_SCHEMA, &*mc::SCHEMA_HASH_CORE_SCHEMA),
        (&schema::CORE_CAPABILITY, &*mc::SCHEMA_HASH_CORE_CAPABILITY),
        (
            &schema::CORE_DISCOVERY_QUERY,
            &*mc::SCHEMA_HASH_CORE_DISCOVERY_QUERY,
        ),
        (&schema::CORE_RESOLVE, &*mc::SCHEMA_HASH_CORE_RESOLVE),
        (&schema::CORE_REVOCATION, &*mc::SCHEMA_HASH_CORE_REVOCATION),
        (
            &schema::CORE_KEY_ROTATION,
            &*mc::SCHEMA_HASH_CORE_KEY_ROTATION,
        ),
    ];
    assert_eq!(pairs.len(), mc::schema::WELL_KNOWN_SCHEMAS.len());
    for ((ours, reference), name) in pairs.into_iter().zip(mc::schema::WELL_KNOWN_SCHEMAS) {
        assert_eq!(ours.name(), *name);
        assert_eq!(ours.hash(), from_ref::hash(reference));
    }
}

// ───────────────────────── descriptor ids and validation ─────────────────────────

/// A change applied to a freshly created descriptor.
#[derive(Debug, Clone)]
enum Tamper {
    None,
    /// XOR one signature byte (index mod 64) with a non-zero mask.
    Signature(usize, u8),
    /// XOR one id digest byte (index mod 32).
    IdDigest(usize, u8),
    /// Bump the sequence without recomputing the id.
    Sequence,
    /// Bump the sequence and recompute the id, keeping the old signature.
    SequenceNewId,
    /// Claim another publisher (id recomputed, signature kept).
    Publisher(IdIn),
}

/// Descriptor inputs with no limit applied (ttl, key count, payload and
/// topic sizes on both sides of every bound), a tamper, and a `now` placed
/// around the expiry and skew boundaries.
#[derive(Debug, Clone)]
struct LooseIn {
    secret: [u8; 32],
    schema_hash: HashIn,
    topic: String,
    payload: Vec<u8>,
    timestamp: u64,
    sequence: u64,
    ttl: u32,
    routing_keys: Vec<HashIn>,
    tamper: Tamper,
    now: u64,
}

impl LooseIn {
    /// Built by the reference (which applies no limit when creating).
    fn reference(&self) -> mc::Descriptor {
        let mut d = mc::Descriptor::create(
            &mc::Keypair::from_bytes(&self.secret),
            self.schema_hash.reference(),
            self.topic.clone(),
            self.payload.clone(),
            self.timestamp,
            self.sequence,
            self.ttl,
            self.routing_keys.iter().map(HashIn::reference).collect(),
        )
        .unwrap();
        let recompute = |d: &mc::Descriptor| {
            mc::Descriptor::compute_id(
                &d.schema_hash,
                &d.topic,
                &d.payload,
                &d.publisher,
                d.timestamp,
                d.sequence,
                d.ttl,
                &d.routing_keys,
            )
            .unwrap()
        };
        match &self.tamper {
            Tamper::None => {}
            Tamper::Signature(i, m) => d.signature[i % 64] ^= m,
            Tamper::IdDigest(i, m) => d.id.digest[i % 32] ^= m,
            Tamper::Sequence => d.sequence = d.sequence.wrapping_add(1),
            Tamper::SequenceNewId => {
                d.sequence = d.sequence.wrapping_add(1);
                d.id = recompute(&d);
            }
            Tamper::Publisher(p) => {
                d.publisher = p.reference();
                d.id = recompute(&d);
            }
        }
        d
    }
}

fn loose_in() -> BoxedStrategy<LooseIn> {
    let ttl = prop_oneof![
        1 => 0u32..60,
        1 => Just(59u32),
        1 => Just(60u32),
        4 => 60u32..=86_400,
        1 => Just(86_400u32),
        1 => Just(86_401u32),
        1 => 86_401u32..=u32::MAX,
    ];
    let payload = prop_oneof![
        8 => vec(any::<u8>(), 0..64),
        1 => Just(vec![0xA5; 65_536]),
        1 => Just(vec![0x5A; 65_537]),
    ];
    let topic = prop_oneof![
        4 => "[ -~]{0,32}",
        1 => "[a-z]{255}",
        1 => "[a-z]{256}",
        1 => "\\PC{60,90}",
    ];
    let tamper = prop_oneof![
        6 => Just(Tamper::None),
        1 => (any::<usize>(), 1u8..).prop_map(|(i, m)| Tamper::Signature(i, m)),
        1 => (any::<usize>(), 1u8..).prop_map(|(i, m)| Tamper::IdDigest(i, m)),
        1 => Just(Tamper::Sequence),
        1 => Just(Tamper::SequenceNewId),
        1 => id_in().prop_map(Tamper::Publisher),
    ];
    (
        (any::<[u8; 32]>(), hash_in(), topic, payload),
        (0u64..=(1u64 << 62), any::<u64>(), ttl),
        vec(hash_in(), 0..=10),
        tamper,
    )
        .prop_flat_map(
            |(
                (secret, schema_hash, topic, payload),
                (timestamp, sequence, ttl),
                routing_keys,
                tamper,
            )| {
                let life = ttl as u64 * SEC;
                let now = prop_oneof![
                    2 => 0u64..=(1u64 << 62),
                    2 => Just(timestamp + life.saturating_sub(1)),
                    2 => Just(timestamp + life),
                    1 => Just(timestamp + life + 1),
                    2 => Just(timestamp.saturating_sub(MAX_SKEW)),
                    2 => Just(timestamp.saturating_sub(MAX_SKEW + 1)),
                    4 => timestamp.saturating_sub(MAX_SKEW)..=timestamp + life,
                ];
                now.prop_map(move |now| LooseIn {
                    secret,
                    schema_hash: schema_hash.clone(),
                    topic: topic.clone(),
                    payload: payload.clone(),
                    timestamp,
                    sequence,
                    ttl,
                    routing_keys: routing_keys.clone(),
                    tamper: tamper.clone(),
                    now,
                })
            },
        )
        .boxed()
}

/// A validator's answer, reduced to what both can say.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Valid,
    IdMismatch,
    BadSignature,
    Expired,
    TimestampInFuture,
    Ttl,
    RoutingKeys,
    PayloadTooLarge,
    TopicTooLong,
    Other(String),
}

fn our_verdict(r: &Result<ValidDescriptor, ValidationError>) -> Verdict {
    match r {
        Ok(_) => Verdict::Valid,
        Err(ValidationError::IdMismatch { .. }) => Verdict::IdMismatch,
        Err(ValidationError::BadSignature { .. }) => Verdict::BadSignature,
        Err(ValidationError::Expired { .. }) => Verdict::Expired,
        Err(ValidationError::TimestampInFuture { .. }) => Verdict::TimestampInFuture,
        Err(ValidationError::TtlOutOfRange { .. }) => Verdict::Ttl,
        Err(ValidationError::RoutingKeyCount { .. }) => Verdict::RoutingKeys,
        Err(ValidationError::PayloadTooLarge { .. }) => Verdict::PayloadTooLarge,
        Err(ValidationError::TopicTooLong { .. }) => Verdict::TopicTooLong,
    }
}

fn reference_verdict(r: &mc::Result<()>) -> Verdict {
    match r {
        Ok(()) => Verdict::Valid,
        Err(mc::MeshError::IdMismatch { .. }) => Verdict::IdMismatch,
        Err(mc::MeshError::InvalidSignature) => Verdict::BadSignature,
        Err(mc::MeshError::Expired) => Verdict::Expired,
        Err(mc::MeshError::TimestampFuture { .. }) => Verdict::TimestampInFuture,
        Err(mc::MeshError::InvalidTtl { .. }) => Verdict::Ttl,
        Err(mc::MeshError::InvalidRoutingKeys { .. }) => Verdict::RoutingKeys,
        Err(mc::MeshError::PayloadTooLarge { .. }) => Verdict::PayloadTooLarge,
        Err(mc::MeshError::TopicTooLong { .. }) => Verdict::TopicTooLong,
        Err(other) => Verdict::Other(other.to_string()),
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// With no limit applied, our canonical CBOR hashes to the reference's
    /// id and our key signs it to the reference's signature.
    #[test]
    fn descriptor_id_and_signature_match_reference_create(
        input in loose_in(),
        timestamp in prop_oneof![Just(None), proptest::option::of(any::<u64>())],
    ) {
        // Ids cover the whole u64 range of timestamps (validation aside).
        let timestamp = timestamp.unwrap_or(input.timestamp);
        let input = LooseIn { tamper: Tamper::None, timestamp, ..input };
        let reference = input.reference();
        let ours = from_ref::descriptor(&reference);
        prop_assert_eq!(ours.compute_id(), from_ref::hash(&reference.id));
        let key = Keypair::from_secret_bytes(&input.secret);
        prop_assert_eq!(key.sign(ours.id.digest()).as_bytes().to_vec(), reference.signature.clone());
        // Where the builder accepts the inputs, it makes the same descriptor.
        let built = DescriptorBuilder::new(ours.schema_hash, ours.timestamp)
            .topic(ours.topic.clone())
            .payload(ours.payload.clone())
            .sequence(ours.sequence)
            .ttl(ours.ttl)
            .routing_keys(ours.routing_keys.clone())
            .sign(&key);
        match built {
            Ok(b) => prop_assert_eq!(b, ours),
            // It refuses exactly what fails a static rule.
            Err(e) => prop_assert!(
                matches!(
                    our_verdict(&Err(e.clone())),
                    Verdict::Ttl | Verdict::RoutingKeys | Verdict::PayloadTooLarge | Verdict::TopicTooLong
                ),
                "builder refused with {:?}", e
            ),
        }
    }

    /// Both validators reach the same verdict, for valid, tampered, expired,
    /// future and out-of-bounds descriptors alike; and the batch validator
    /// agrees with the single one.
    #[test]
    fn validators_agree(inputs in vec(loose_in(), 1..=4), batch_now in 0u64..=(1u64 << 62)) {
        let mut batch = Vec::new();
        for input in &inputs {
            let reference = input.reference();
            let ours = from_ref::descriptor(&reference);
            let theirs = reference_verdict(&reference.validate(input.now));
            let now = Timestamp::from_micros(input.now);
            let mine = ours.check(now);
            prop_assert_eq!(our_verdict(&mine), theirs, "descriptor {:?} at {}", ours, now);
            if let Ok(v) = &mine {
                let expected = ours.timestamp.min(now).as_micros() + ours.ttl as u64 * SEC;
                prop_assert_eq!(v.expires_at().as_micros(), expected);
            }
            batch.push((ours, reference));
        }
        // One `now` for the batch: that of the first input, or an arbitrary one.
        for now in [inputs[0].now, batch_now] {
            let singles: Vec<_> = batch.iter().map(|(d, _)| d.check(Timestamp::from_micros(now))).collect();
            let batched = validate_batch(
                batch.iter().map(|(d, _)| d.clone()).collect(),
                Timestamp::from_micros(now),
            );
            prop_assert_eq!(&batched, &singles);
            for ((_, r), s) in batch.iter().zip(&singles) {
                prop_assert_eq!(our_verdict(s), reference_verdict(&r.validate(now)));
            }
        }
    }
}

// ───────────────────────── fixed edge cases ─────────────────────────

/// Empty lists and empty strings, which random inputs rarely hit together.
#[test]
fn empty_values_both_ways() -> Result<(), TestCaseError> {
    let id = IdIn::Secret([1; 32]);
    let addr = AddrIn {
        protocol: String::new(),
        address: String::new(),
    };
    let ours = Ping {
        sender: id.ours(),
        sender_addr: addr.ours(),
    };
    let reference = mc::Ping {
        sender: id.reference(),
        sender_addr: addr.reference(),
    };
    both_ways!(ours, reference, Ping, mc::Ping, MSG_PING, from_ref::ping);

    let ours = FindNodeResult { nodes: vec![] };
    let reference = mc::FindNodeResult { nodes: vec![] };
    both_ways!(
        ours,
        reference,
        FindNodeResult,
        mc::FindNodeResult,
        MSG_FIND_NODE_RESULT,
        from_ref::find_node_result
    );

    let ours = FindValueResult::Descriptors(vec![]);
    let reference = mc::FindValueResult {
        descriptors: Some(vec![]),
        nodes: None,
    };
    both_ways!(
        ours,
        reference,
        FindValueResult,
        mc::FindValueResult,
        MSG_FIND_VALUE_RESULT,
        from_ref::find_value_result
    );

    // Filters present but empty: `{}` on the wire, `Some(default)` for us.
    let ours = FindValue {
        sender: id.ours(),
        sender_addr: NodeAddr::quic("127.0.0.1:4433"),
        key: Hash::blake3(b"k"),
        max_results: 0,
        filters: Some(Box::default()),
    };
    let reference = mc::FindValue {
        sender: id.reference(),
        sender_addr: mc::NodeAddr::quic("127.0.0.1:4433"),
        key: mc::Hash::blake3(b"k"),
        max_results: 0,
        filters: Some(mc::FilterSet::default()),
    };
    both_ways!(
        ours,
        reference,
        FindValue,
        mc::FindValue,
        MSG_FIND_VALUE,
        from_ref::find_value
    );

    // A descriptor with every field at its largest: 255-byte topic, 64 KiB
    // payload, 8 routing keys, the longest TTL, the largest sequence.
    let desc = DescIn {
        secret: [2; 32],
        schema_hash: HashIn::Blake3Of(b"mesh:schema:core/capability".to_vec()),
        topic: "é".repeat(127) + "x",
        payload: (0..65_536u32).map(|i| i as u8).collect(),
        timestamp: 1_700_000_000 * SEC,
        sequence: u64::MAX,
        ttl: 86_400,
        routing_keys: (0..8u8).map(|i| HashIn::Blake3Of(vec![i])).collect(),
        now: 1_700_000_000 * SEC,
    };
    assert_eq!(desc.topic.len(), 255);
    let ours = Store {
        sender: id.ours(),
        sender_addr: NodeAddr::quic("[::1]:1"),
        descriptor: desc.ours().into(),
    };
    let reference = mc::Store {
        sender: id.reference(),
        sender_addr: mc::NodeAddr::quic("[::1]:1"),
        descriptor: desc.reference(),
    };
    let got = both_ways!(
        ours,
        reference,
        Store,
        mc::Store,
        MSG_STORE,
        from_ref::store
    );
    got.descriptor.validate(desc.now).unwrap();
    Ok(())
}

/// What the reference would send but our decoder refuses by design: values
/// beyond our decode limits (WIRE.md bounds, K = 20, 8 routing keys, 64-byte
/// digests) and non-Ed25519 identities. Each is a typed error, never a panic.
/// These are deliberate differences, pinned here so a change is noticed.
#[test]
fn reference_values_beyond_our_limits_are_refused_cleanly() {
    use mars_proto::wire::DecodeError as E;
    let id = IdIn::Secret([1; 32]).reference();
    let addr = mc::NodeAddr::quic("127.0.0.1:4433");
    let decode = |t: u8, body: Vec<u8>| Frame::decode(&reference_frame(t, body));
    let ping = |sender: mc::Identity, sender_addr: mc::NodeAddr| {
        to_cbor(&mc::Ping {
            sender,
            sender_addr,
        })
        .unwrap()
    };
    let find_node = |target: mc::Hash| {
        to_cbor(&mc::FindNode {
            sender: IdIn::Secret([1; 32]).reference(),
            sender_addr: mc::NodeAddr::quic("127.0.0.1:4433"),
            target,
        })
        .unwrap()
    };

    // STORE_ACK reason over 1024 bytes.
    let r = decode(
        MSG_STORE_ACK,
        to_cbor(&mc::StoreAck {
            stored: false,
            reason: Some("r".repeat(1025)),
        })
        .unwrap(),
    );
    assert!(
        matches!(
            r,
            Err(E::TooLong {
                len: 1025,
                max: 1024,
                ..
            })
        ),
        "{r:?}"
    );
    // NodeAddr protocol over 16 bytes, address over 262 bytes.
    let long_protocol = mc::NodeAddr {
        protocol: "q".repeat(17),
        address: "a:1".into(),
    };
    let r = decode(MSG_PING, ping(id.clone(), long_protocol));
    assert!(
        matches!(
            r,
            Err(E::TooLong {
                len: 17,
                max: 16,
                ..
            })
        ),
        "{r:?}"
    );
    let long_address = mc::NodeAddr {
        protocol: "quic".into(),
        address: "a".repeat(263),
    };
    let r = decode(MSG_PING, ping(id.clone(), long_address));
    assert!(
        matches!(
            r,
            Err(E::TooLong {
                len: 263,
                max: 262,
                ..
            })
        ),
        "{r:?}"
    );
    // A non-Ed25519 identity (0x02 is reserved).
    let r = decode(
        MSG_PING,
        ping(mc::Identity::new(0x02, vec![9; 32]), addr.clone()),
    );
    assert!(
        matches!(r, Err(E::UnsupportedIdentity { algorithm: 2, .. })),
        "{r:?}"
    );
    // An Ed25519 key of the wrong length.
    let r = decode(
        MSG_PING,
        ping(mc::Identity::new(0x01, vec![9; 31]), addr.clone()),
    );
    assert!(
        matches!(
            r,
            Err(E::WrongLength {
                expected: 32,
                found: 31,
                ..
            })
        ),
        "{r:?}"
    );
    // A BLAKE3 digest of the wrong length; an unknown algorithm's 33-byte digest.
    let r = decode(MSG_FIND_NODE, find_node(mc::Hash::new(0x03, vec![0; 31])));
    assert!(matches!(r, Err(E::BadDigest { .. })), "{r:?}");
    let r = decode(MSG_FIND_NODE, find_node(mc::Hash::new(0x09, vec![0; 33])));
    assert!(
        matches!(
            r,
            Err(E::TooLong {
                len: 33,
                max: 32,
                ..
            })
        ),
        "{r:?}"
    );
    // 21 nodes (K = 20).
    let node = NodeIn {
        identity: IdIn::RawKey([3; 32]),
        addr: AddrIn {
            protocol: "quic".into(),
            address: "10.0.0.1:1".into(),
        },
        last_seen: 1,
    }
    .reference();
    let r = decode(
        MSG_FIND_NODE_RESULT,
        to_cbor(&mc::FindNodeResult {
            nodes: vec![node; 21],
        })
        .unwrap(),
    );
    assert!(
        matches!(
            r,
            Err(E::TooManyItems {
                count: 21,
                max: 20,
                ..
            })
        ),
        "{r:?}"
    );
    // A descriptor with 9 routing keys is refused while decoding, before
    // validation could name the rule (the reference decodes it and its
    // validation refuses it).
    let desc = mc::Descriptor::create(
        &mc::Keypair::from_bytes(&[2; 32]),
        mc::Hash::blake3(b"s"),
        "t".into(),
        vec![],
        1_700_000_000 * SEC,
        0,
        3600,
        (0..9u8).map(|i| mc::Hash::blake3(&[i])).collect(),
    )
    .unwrap();
    assert!(desc.validate(1_700_000_000 * SEC).is_err());
    let r = decode(
        MSG_STORE,
        to_cbor(&mc::Store {
            sender: id.clone(),
            sender_addr: addr.clone(),
            descriptor: desc,
        })
        .unwrap(),
    );
    assert!(
        matches!(
            r,
            Err(E::TooManyItems {
                count: 9,
                max: 8,
                ..
            })
        ),
        "{r:?}"
    );
    // 21 descriptors in a FIND_VALUE_RESULT (the reference server clamps to 20).
    let desc = DescIn {
        secret: [2; 32],
        schema_hash: HashIn::Blake3Of(b"s".to_vec()),
        topic: String::new(),
        payload: vec![],
        timestamp: 1_700_000_000 * SEC,
        sequence: 0,
        ttl: 3600,
        routing_keys: vec![HashIn::Blake3Of(b"k".to_vec())],
        now: 1_700_000_000 * SEC,
    }
    .reference();
    let r = decode(
        MSG_FIND_VALUE_RESULT,
        to_cbor(&mc::FindValueResult {
            descriptors: Some(vec![desc; 21]),
            nodes: None,
        })
        .unwrap(),
    );
    assert!(
        matches!(
            r,
            Err(E::TooManyItems {
                count: 21,
                max: 20,
                ..
            })
        ),
        "{r:?}"
    );
}
