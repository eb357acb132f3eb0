//! The same messages built in both implementations, from the same keys and
//! values (those of the reference test vectors in `shared/vectors/`), plus
//! the helpers both benches and the size test share.
#![allow(dead_code)]

use mars_proto::wire::{
    Filters, FindNode, FindNodeResult, FindValue, FindValueResult, Frame, Message, MsgId, NodeAddr,
    NodeInfo, Ping, Pong, Store, StoreAck,
};
use mars_proto::{Descriptor, DescriptorBuilder, Hash, Keypair, Timestamp, schema};
use mesh_core::frame as rf;
use mesh_core::message as rm;
use rand::{RngCore, SeedableRng, rngs::StdRng};

/// The msg_id every vector uses: 00 01 … 0f.
pub const MSG_ID: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
/// 2023-11-14T22:13:20Z, the vectors' timestamp.
pub const TS: u64 = 1_700_000_000_000_000;
/// One second after [`TS`]: when descriptors are validated.
pub const NOW: u64 = TS + 1_000_000;

/// Our key `n` (32 repeated bytes `n`).
pub fn our_key(n: u8) -> Keypair {
    Keypair::from_secret_bytes(&[n; 32])
}

/// The reference's key `n`.
pub fn ref_key(n: u8) -> mesh_core::Keypair {
    mesh_core::Keypair::from_bytes(&[n; 32])
}

fn ref_hash(h: &Hash) -> mesh_core::Hash {
    mesh_core::Hash::new(h.algorithm().code(), h.digest().to_vec())
}

/// Inputs of one descriptor, built and signed by either side.
#[derive(Clone)]
pub struct DescriptorSpec {
    pub key: u8,
    pub topic: String,
    pub payload: Vec<u8>,
    pub sequence: u64,
    pub ttl: u32,
    pub type_path: &'static str,
    /// All prefixes of `type_path` (true) or the full path alone (false).
    pub hierarchical: bool,
}

impl DescriptorSpec {
    /// The spec's Appendix C.3 descriptor (`descriptors.json`, first).
    pub fn c3() -> Self {
        DescriptorSpec {
            key: 1,
            topic: "test-topic".into(),
            payload: b"test payload".to_vec(),
            sequence: 1,
            ttl: 3600,
            type_path: "compute/inference/text-generation",
            hierarchical: false,
        }
    }

    /// The second vector descriptor: key 2, empty topic, two routing keys.
    pub fn second() -> Self {
        DescriptorSpec {
            key: 2,
            topic: String::new(),
            payload: vec![0x00, 0x01, 0x17, 0x18, 0xff],
            sequence: 7,
            ttl: 60,
            type_path: "compute/inference",
            hierarchical: true,
        }
    }

    /// A descriptor with `len` random payload bytes (fixed seed).
    pub fn random_payload(key: u8, len: usize, seed: u64) -> Self {
        let mut payload = vec![0u8; len];
        StdRng::seed_from_u64(seed).fill_bytes(&mut payload);
        DescriptorSpec {
            key,
            topic: format!("agent-{key}"),
            payload,
            sequence: 1,
            ttl: 3600,
            type_path: "compute/inference/text-generation",
            hierarchical: true,
        }
    }

    fn keys(&self) -> Vec<Hash> {
        if self.hierarchical {
            schema::hierarchical_keys(self.type_path)
        } else {
            vec![schema::routing_key(self.type_path)]
        }
    }

    pub fn ours(&self) -> Descriptor {
        DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), Timestamp::from_micros(TS))
            .topic(self.topic.clone())
            .payload(self.payload.clone())
            .sequence(self.sequence)
            .ttl(self.ttl)
            .routing_keys(self.keys())
            .sign(&our_key(self.key))
            .expect("descriptor inputs are valid")
    }

    pub fn reference(&self) -> mesh_core::Descriptor {
        mesh_core::Descriptor::create(
            &ref_key(self.key),
            mesh_core::hash::schema_hash("core/capability"),
            self.topic.clone(),
            self.payload.clone(),
            TS,
            self.sequence,
            self.ttl,
            self.keys().iter().map(ref_hash).collect(),
        )
        .expect("descriptor inputs are valid")
    }
}

/// One reference message, typed.
#[derive(Clone, Debug)]
pub enum RefMsg {
    Ping(rm::Ping),
    Pong(rm::Pong),
    Store(rm::Store),
    StoreAck(rm::StoreAck),
    FindNode(rm::FindNode),
    FindNodeResult(rm::FindNodeResult),
    FindValue(rm::FindValue),
    FindValueResult(rm::FindValueResult),
}

/// The reference's encoder: `to_cbor` then `Frame::to_bytes`.
pub fn ref_encode(msg_type: u8, msg: &RefMsg) -> Vec<u8> {
    let body = match msg {
        RefMsg::Ping(m) => rm::to_cbor(m),
        RefMsg::Pong(m) => rm::to_cbor(m),
        RefMsg::Store(m) => rm::to_cbor(m),
        RefMsg::StoreAck(m) => rm::to_cbor(m),
        RefMsg::FindNode(m) => rm::to_cbor(m),
        RefMsg::FindNodeResult(m) => rm::to_cbor(m),
        RefMsg::FindValue(m) => rm::to_cbor(m),
        RefMsg::FindValueResult(m) => rm::to_cbor(m),
    }
    .expect("reference encodes");
    rf::Frame {
        magic: rf::FRAME_MAGIC,
        version: rf::PROTOCOL_VERSION,
        msg_type,
        msg_id: MSG_ID,
        body,
    }
    .to_bytes()
}

/// The reference's decoder: `Frame::from_bytes`, then `from_cbor` into the
/// struct its type byte names (what a reference node does on receive).
pub fn ref_decode(bytes: &[u8]) -> Result<([u8; 16], RefMsg), mesh_core::MeshError> {
    let frame = rf::Frame::from_bytes(bytes)?;
    let body = &frame.body[..];
    let msg = match frame.msg_type {
        rf::MSG_PING => RefMsg::Ping(rm::from_cbor(body)?),
        rf::MSG_PONG => RefMsg::Pong(rm::from_cbor(body)?),
        rf::MSG_STORE => RefMsg::Store(rm::from_cbor(body)?),
        rf::MSG_STORE_ACK => RefMsg::StoreAck(rm::from_cbor(body)?),
        rf::MSG_FIND_NODE => RefMsg::FindNode(rm::from_cbor(body)?),
        rf::MSG_FIND_NODE_RESULT => RefMsg::FindNodeResult(rm::from_cbor(body)?),
        rf::MSG_FIND_VALUE => RefMsg::FindValue(rm::from_cbor(body)?),
        rf::MSG_FIND_VALUE_RESULT => RefMsg::FindValueResult(rm::from_cbor(body)?),
        t => {
            return Err(mesh_core::MeshError::FrameBody(format!(
                "unknown type {t:#04x}"
            )));
        }
    };
    Ok((frame.msg_id, msg))
}

/// One message in both implementations.
pub struct Case {
    /// Group name in the report (`ping`, `store`, …).
    pub name: &'static str,
    pub ours: Frame,
    pub msg_type: u8,
    pub reference: RefMsg,
}

impl Case {
    /// Our compact frame bytes (byte fields as byte strings).
    pub fn our_bytes(&self) -> Vec<u8> {
        self.ours.encode()
    }

    /// The reference's frame bytes (byte fields as integer arrays).
    pub fn ref_bytes(&self) -> Vec<u8> {
        ref_encode(self.msg_type, &self.reference)
    }

    /// Panics unless both sides agree on both encodings: each side's bytes
    /// decode with the other side to the same message.
    pub fn check(&self) {
        let ours = self.our_bytes();
        let theirs = self.ref_bytes();
        assert_eq!(
            Frame::decode(&theirs)
                .unwrap_or_else(|e| panic!("{}: ours on REF bytes: {e}", self.name)),
            self.ours,
            "{}: REF bytes decode to another message",
            self.name
        );
        assert_eq!(
            Frame::decode(&ours).unwrap(),
            self.ours,
            "{}: own round trip",
            self.name
        );
        // REF decodes our bytes, and what it got re-encodes to its own bytes.
        let (id, msg) =
            ref_decode(&ours).unwrap_or_else(|e| panic!("{}: REF on our bytes: {e}", self.name));
        assert_eq!(id, MSG_ID);
        assert_eq!(
            ref_encode(self.msg_type, &msg),
            theirs,
            "{}: REF reads our bytes differently",
            self.name
        );
        // Descriptors in it validate with both.
        let now = Timestamp::from_micros(NOW);
        let descs: Vec<&Descriptor> = match &self.ours.message {
            Message::Store(s) => vec![&s.descriptor],
            Message::FindValueResult(FindValueResult::Descriptors(d)) => d.iter().collect(),
            _ => vec![],
        };
        for d in descs {
            d.check(now).expect("our descriptor validates");
        }
        match &msg {
            RefMsg::Store(s) => s.descriptor.validate(NOW).expect("REF validates"),
            RefMsg::FindValueResult(r) => {
                for d in r.descriptors.iter().flatten() {
                    d.validate(NOW).expect("REF validates");
                }
            }
            _ => {}
        }
    }
}

fn addr(a: &str) -> (NodeAddr, rm::NodeAddr) {
    (NodeAddr::quic(a), rm::NodeAddr::quic(a))
}

fn node(key: u8, address: &str, last_seen: u64) -> (NodeInfo, rm::NodeInfo) {
    let (a, ra) = addr(address);
    (
        NodeInfo {
            identity: our_key(key).identity(),
            addr: a,
            last_seen: Timestamp::from_micros(last_seen),
        },
        rm::NodeInfo {
            identity: ref_key(key).identity(),
            addr: ra,
            last_seen,
        },
    )
}

fn frame(message: Message) -> Frame {
    Frame::new(MsgId(MSG_ID), message)
}

/// A STORE of `spec`'s descriptor from key 1.
pub fn store_case(name: &'static str, spec: &DescriptorSpec) -> Case {
    let (a, ra) = addr("127.0.0.1:4433");
    Case {
        name,
        ours: frame(Message::Store(Store {
            sender: our_key(1).identity(),
            sender_addr: a,
            descriptor: spec.ours().into(),
        })),
        msg_type: rf::MSG_STORE,
        reference: RefMsg::Store(rm::Store {
            sender: ref_key(1).identity(),
            sender_addr: ra,
            descriptor: spec.reference(),
        }),
    }
}

/// The eight messages, shaped like the vectors in `frames.json`.
pub fn cases() -> Vec<Case> {
    let me = our_key(1).identity();
    let ref_me = ref_key(1).identity();
    let (a, ra) = addr("127.0.0.1:4433");
    let (obs, robs) = addr("203.0.113.1:12345");
    let target = Hash::blake3(b"target key");
    let (n1, rn1) = node(1, "127.0.0.1:4433", TS);
    let (n2, rn2) = node(2, "[::1]:5000", 0);
    let key = schema::routing_key("compute");
    let schema_h = schema::CORE_CAPABILITY.hash();
    let descs = [DescriptorSpec::c3(), DescriptorSpec::second()];

    vec![
        Case {
            name: "ping",
            ours: frame(Message::Ping(Ping {
                sender: me,
                sender_addr: a.clone(),
            })),
            msg_type: rf::MSG_PING,
            reference: RefMsg::Ping(rm::Ping {
                sender: ref_me.clone(),
                sender_addr: ra.clone(),
            }),
        },
        Case {
            name: "pong",
            ours: frame(Message::Pong(Pong {
                sender: me,
                sender_addr: a.clone(),
                observed_addr: obs,
            })),
            msg_type: rf::MSG_PONG,
            reference: RefMsg::Pong(rm::Pong {
                sender: ref_me.clone(),
                sender_addr: ra.clone(),
                observed_addr: robs,
            }),
        },
        store_case("store", &DescriptorSpec::c3()),
        Case {
            name: "store_ack",
            ours: frame(Message::StoreAck(StoreAck {
                stored: true,
                reason: None,
            })),
            msg_type: rf::MSG_STORE_ACK,
            reference: RefMsg::StoreAck(rm::StoreAck {
                stored: true,
                reason: None,
            }),
        },
        Case {
            name: "find_node",
            ours: frame(Message::FindNode(FindNode {
                sender: me,
                sender_addr: a.clone(),
                target,
            })),
            msg_type: rf::MSG_FIND_NODE,
            reference: RefMsg::FindNode(rm::FindNode {
                sender: ref_me.clone(),
                sender_addr: ra.clone(),
                target: ref_hash(&target),
            }),
        },
        Case {
            name: "find_node_result",
            ours: frame(Message::FindNodeResult(FindNodeResult {
                nodes: vec![n1, n2],
            })),
            msg_type: rf::MSG_FIND_NODE_RESULT,
            reference: RefMsg::FindNodeResult(rm::FindNodeResult {
                nodes: vec![rn1, rn2],
            }),
        },
        Case {
            name: "find_value",
            ours: frame(Message::FindValue(FindValue {
                sender: me,
                sender_addr: a,
                key,
                max_results: 5,
                filters: Some(Box::new(Filters {
                    schema_hash: Some(schema_h),
                    min_timestamp: Some(Timestamp::from_micros(1_600_000_000_000_000)),
                    publisher: Some(our_key(2).identity()),
                })),
            })),
            msg_type: rf::MSG_FIND_VALUE,
            reference: RefMsg::FindValue(rm::FindValue {
                sender: ref_me,
                sender_addr: ra,
                key: ref_hash(&key),
                max_results: 5,
                filters: Some(rm::FilterSet {
                    schema_hash: Some(ref_hash(&schema_h)),
                    min_timestamp: Some(1_600_000_000_000_000),
                    publisher: Some(ref_key(2).identity()),
                }),
            }),
        },
        Case {
            name: "find_value_result",
            ours: frame(Message::FindValueResult(FindValueResult::Descriptors(
                descs.iter().map(DescriptorSpec::ours).collect(),
            ))),
            msg_type: rf::MSG_FIND_VALUE_RESULT,
            reference: RefMsg::FindValueResult(rm::FindValueResult {
                descriptors: Some(descs.iter().map(DescriptorSpec::reference).collect()),
                nodes: None,
            }),
        },
    ]
}

/// The STORE of a descriptor with a 1 KiB random payload.
pub fn store_1k_case() -> Case {
    store_case("store_1k", &DescriptorSpec::random_payload(1, 1024, 0x4d48))
}
