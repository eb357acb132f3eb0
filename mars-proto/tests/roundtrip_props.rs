//! Round-trip and robustness properties of our own codec.
//!
//! - every message: encode → decode gives the same frame, and decoding then
//!   re-encoding is byte-stable; the same through the body and descriptor
//!   entry points, and with every byte field rewritten as the reference's
//!   integer arrays;
//! - DIDs: `Identity::from_did(id.did()) == id`; arbitrary strings never
//!   panic `from_did`, and whatever it accepts is the canonical DID;
//! - hostile input never panics `Frame::decode`: random bytes, random bodies
//!   behind a valid header, byte-level and structure-level mutations of valid
//!   frames; whatever decodes re-encodes to something that decodes equal, and
//!   mutations with a known meaning (tags, byte arrays, unknown keys,
//!   duplicate keys, indefinite lengths, tag 55799) get the answer the spec
//!   requires;
//! - truncating a valid frame anywhere is an error, never a panic.

use mars_proto::wire::{
    DecodeError, DecodeLimits, Filters, FindNode, FindNodeResult, FindValue, FindValueResult,
    Frame, FrameHeader, HEADER_LEN, MAX_BODY_LEN, Message, MessageType, MsgId, NodeAddr, NodeInfo,
    Ping, Pong, Store, StoreAck, descriptor_from_cbor,
};
use mars_proto::{
    Descriptor, DescriptorBuilder, DidError, Hash, HashAlgorithm, Identity, Keypair, Signature,
    Timestamp,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        // Never write regression files into the source tree.
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

// ───────────────────────── strategies for our values ─────────────────────────

/// Any 32 bytes: the codec carries keys, it does not check curve points.
fn identity() -> BoxedStrategy<Identity> {
    any::<[u8; 32]>()
        .prop_map(Identity::from_ed25519_bytes)
        .boxed()
}

fn hash() -> BoxedStrategy<Hash> {
    prop_oneof![
        3 => any::<[u8; 32]>().prop_map(Hash::from_blake3_digest),
        1 => vec(any::<u8>(), 0..64).prop_map(|d| Hash::sha256(&d)),
        1 => any::<[u8; 32]>().prop_map(|d| Hash::new(HashAlgorithm::Sha256, &d).unwrap()),
        1 => (
            any::<u8>().prop_filter("a known algorithm", |a| *a != 0x03 && *a != 0x04),
            vec(any::<u8>(), 0..=32),
        )
            .prop_map(|(a, d)| Hash::new(HashAlgorithm::from_code(a), &d).unwrap()),
        // Whatever `Hash::new` accepts, under any code, must round-trip
        // (often 32 bytes, so the known codes are accepted too).
        1 => (any::<u8>(), vec(any::<u8>(), 0..=64), any::<bool>()).prop_filter_map(
            "refused by Hash::new",
            |(a, mut d, thirty_two)| {
                if thirty_two {
                    d.resize(32, 0);
                }
                Hash::new(HashAlgorithm::Other(a), &d).ok()
            }
        ),
    ]
    .boxed()
}

/// Within the decoder's bounds (16 and 262 bytes).
fn node_addr() -> BoxedStrategy<NodeAddr> {
    let protocol = prop_oneof![3 => Just("quic".to_owned()), 1 => "[a-z]{0,16}", 1 => "\\PC{0,4}"];
    let address = prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| format!("{}:{port}", std::net::Ipv4Addr::from(ip))),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| format!("[{}]:{port}", std::net::Ipv6Addr::from(ip))),
        "\\PC{0,65}",
        "[a-z]{262}",
    ];
    (protocol, address)
        .prop_map(|(protocol, address)| NodeAddr::new(&protocol, &address))
        .boxed()
}

fn node_info() -> BoxedStrategy<NodeInfo> {
    (identity(), node_addr(), any::<u64>())
        .prop_map(|(identity, addr, t)| NodeInfo {
            identity,
            addr,
            last_seen: Timestamp::from_micros(t),
        })
        .boxed()
}

fn nodes() -> BoxedStrategy<Vec<NodeInfo>> {
    vec(node_info(), 0..=20).boxed()
}

fn signature() -> BoxedStrategy<Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>())
        .prop_map(|(a, b)| {
            let mut s = [0u8; 64];
            s[..32].copy_from_slice(&a);
            s[32..].copy_from_slice(&b);
            Signature::from_bytes(s)
        })
        .boxed()
}

/// Any descriptor the decoder can carry (≤ 8 routing keys): most with
/// arbitrary, unsigned fields; some properly signed.
fn descriptor() -> BoxedStrategy<Descriptor> {
    let fields = (
        (hash(), "\\PC{0,80}", vec(any::<u8>(), 0..=2048), identity()),
        (any::<u64>(), any::<u64>(), any::<u32>(), vec(hash(), 0..=8)),
        (hash(), signature()),
    );
    let arbitrary = fields.prop_map(
        |(
            (schema_hash, topic, payload, publisher),
            (t, sequence, ttl, routing_keys),
            (id, signature),
        )| Descriptor {
            schema_hash,
            topic,
            payload,
            publisher,
            timestamp: Timestamp::from_micros(t),
            sequence,
            ttl,
            routing_keys,
            id,
            signature,
        },
    );
    let signed = (
        any::<[u8; 32]>(),
        hash(),
        "\\PC{0,60}",
        vec(any::<u8>(), 0..=512),
        (any::<u64>(), any::<u64>(), 60u32..=86_400),
        vec(hash(), 1..=8),
    )
        .prop_map(|(secret, schema, topic, payload, (t, seq, ttl), keys)| {
            DescriptorBuilder::new(schema, Timestamp::from_micros(t))
                .topic(topic)
                .payload(payload)
                .sequence(seq)
                .ttl(ttl)
                .routing_keys(keys)
                .sign(&Keypair::from_secret_bytes(&secret))
                .unwrap()
        });
    prop_oneof![3 => arbitrary, 1 => signed].boxed()
}

fn filters() -> BoxedStrategy<Filters> {
    (
        proptest::option::of(hash()),
        proptest::option::of(any::<u64>().prop_map(Timestamp::from_micros)),
        proptest::option::of(identity()),
    )
        .prop_map(|(schema_hash, min_timestamp, publisher)| Filters {
            schema_hash,
            min_timestamp,
            publisher,
        })
        .boxed()
}

/// Every message type, each within the decoder's default limits.
fn message() -> BoxedStrategy<Message> {
    prop_oneof![
        (identity(), node_addr()).prop_map(|(sender, sender_addr)| Message::Ping(Ping {
            sender,
            sender_addr
        })),
        (identity(), node_addr(), node_addr()).prop_map(|(sender, sender_addr, observed_addr)| {
            Message::Pong(Pong {
                sender,
                sender_addr,
                observed_addr,
            })
        }),
        (identity(), node_addr(), descriptor()).prop_map(|(sender, sender_addr, descriptor)| {
            Message::Store(Store {
                sender,
                sender_addr,
                descriptor: descriptor.into(),
            })
        }),
        // ≤ 1024 bytes of reason.
        (any::<bool>(), proptest::option::of("\\PC{0,256}"))
            .prop_map(|(stored, reason)| Message::StoreAck(StoreAck { stored, reason })),
        (identity(), node_addr(), hash()).prop_map(|(sender, sender_addr, target)| {
            Message::FindNode(FindNode {
                sender,
                sender_addr,
                target,
            })
        }),
        nodes().prop_map(|nodes| Message::FindNodeResult(FindNodeResult { nodes })),
        (
            identity(),
            node_addr(),
            hash(),
            any::<u16>(),
            proptest::option::of(filters())
        )
            .prop_map(|(sender, sender_addr, key, max_results, filters)| {
                Message::FindValue(FindValue {
                    sender,
                    sender_addr,
                    key,
                    max_results,
                    filters: filters.map(Box::new),
                })
            }),
        vec(descriptor(), 0..=6)
            .prop_map(|d| Message::FindValueResult(FindValueResult::Descriptors(d))),
        nodes().prop_map(|n| Message::FindValueResult(FindValueResult::Nodes(n))),
    ]
    .boxed()
}

fn frame() -> BoxedStrategy<Frame> {
    (any::<[u8; 16]>(), message())
        .prop_map(|(id, m)| Frame::new(MsgId(id), m))
        .boxed()
}

static ALL_TYPES: [MessageType; 8] = [
    MessageType::Ping,
    MessageType::Store,
    MessageType::FindNode,
    MessageType::FindValue,
    MessageType::Pong,
    MessageType::StoreAck,
    MessageType::FindNodeResult,
    MessageType::FindValueResult,
];

fn header(t: u8, id: [u8; 16], body_len: u32) -> Vec<u8> {
    let mut h = vec![0x4D, 0x48, 0x01, t];
    h.extend_from_slice(&id);
    h.extend_from_slice(&body_len.to_be_bytes());
    h
}

/// `bytes` with its header's body_len rewritten to what follows it.
fn with_fixed_len(mut bytes: Vec<u8>) -> Vec<u8> {
    let len = (bytes.len() - HEADER_LEN) as u32;
    bytes[20..24].copy_from_slice(&len.to_be_bytes());
    bytes
}

/// The body of one of our frames, re-framed after `f` rewrote it.
fn rebody(bytes: &[u8], body: &V) -> Vec<u8> {
    let mut out = bytes[..HEADER_LEN].to_vec();
    body.write(&mut out);
    with_fixed_len(out)
}

/// Decodes `bytes`; if that succeeds, checks that the frame re-encodes to
/// bytes that decode to it again and re-encode identically.
fn decode_is_stable(bytes: &[u8]) -> Result<Option<Frame>, TestCaseError> {
    match Frame::decode(bytes) {
        Err(_) => Ok(None),
        Ok(f) => {
            let again = f.encode();
            let g = Frame::decode(&again);
            prop_assert_eq!(
                g.as_ref(),
                Ok(&f),
                "re-encoding of a decoded frame does not decode equal"
            );
            prop_assert_eq!(g.unwrap().encode(), again);
            Ok(Some(f))
        }
    }
}

// ───────────────────────── a small generic CBOR model ─────────────────────────

/// Any CBOR item (for rewriting and fuzzing bodies).
#[derive(Debug, Clone, PartialEq)]
enum V {
    U(u64),
    N(u64),
    B(Vec<u8>),
    T(String),
    A(Vec<V>),
    M(Vec<(V, V)>),
    Tag(u64, Box<V>),
    /// Major type 7 with this simple value (20/21 false/true, 22 null, …).
    Simple(u8),
    F64(u64),
    /// The inner array, map, byte or text string in indefinite-length form.
    Indef(Box<V>),
}

fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

impl V {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            V::U(n) => head(out, 0, *n),
            V::N(n) => head(out, 1, *n),
            V::B(b) => {
                head(out, 2, b.len() as u64);
                out.extend_from_slice(b);
            }
            V::T(s) => {
                head(out, 3, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            V::A(items) => {
                head(out, 4, items.len() as u64);
                items.iter().for_each(|i| i.write(out));
            }
            V::M(entries) => {
                head(out, 5, entries.len() as u64);
                for (k, v) in entries {
                    k.write(out);
                    v.write(out);
                }
            }
            V::Tag(t, inner) => {
                head(out, 6, *t);
                inner.write(out);
            }
            V::Simple(s) if *s < 24 => out.push(0xe0 | s),
            V::Simple(s) => out.extend_from_slice(&[0xf8, *s]),
            V::F64(bits) => {
                out.push(0xfb);
                out.extend_from_slice(&bits.to_be_bytes());
            }
            V::Indef(inner) => match &**inner {
                V::A(items) => {
                    out.push(0x9f);
                    items.iter().for_each(|i| i.write(out));
                    out.push(0xff);
                }
                V::M(entries) => {
                    out.push(0xbf);
                    for (k, v) in entries {
                        k.write(out);
                        v.write(out);
                    }
                    out.push(0xff);
                }
                V::B(_) => {
                    out.push(0x5f);
                    inner.write(out);
                    out.push(0xff);
                }
                V::T(_) => {
                    out.push(0x7f);
                    inner.write(out);
                    out.push(0xff);
                }
                other => other.write(out),
            },
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    /// Parses one well-formed, definite item (our encoder's output).
    fn parse(buf: &[u8], pos: &mut usize) -> V {
        let ib = buf[*pos];
        *pos += 1;
        let (major, info) = (ib >> 5, ib & 0x1f);
        let mut arg = || -> u64 {
            let n = match info {
                0..=23 => return info as u64,
                24 => 1,
                25 => 2,
                26 => 4,
                27 => 8,
                _ => panic!("not a definite head: {ib:#04x}"),
            };
            let mut a = [0u8; 8];
            a[8 - n..].copy_from_slice(&buf[*pos..*pos + n]);
            *pos += n;
            u64::from_be_bytes(a)
        };
        if major == 7 {
            return match info {
                0..=23 => V::Simple(info),
                24 => V::Simple(arg() as u8),
                27 => V::F64(arg()),
                _ => panic!("unexpected major-7 item {ib:#04x}"),
            };
        }
        let n = arg();
        match major {
            0 => V::U(n),
            1 => V::N(n),
            2 | 3 => {
                let s = buf[*pos..*pos + n as usize].to_vec();
                *pos += n as usize;
                if major == 2 {
                    V::B(s)
                } else {
                    V::T(String::from_utf8(s).unwrap())
                }
            }
            4 => V::A((0..n).map(|_| V::parse(buf, pos)).collect()),
            5 => V::M(
                (0..n)
                    .map(|_| {
                        let k = V::parse(buf, pos);
                        (k, V::parse(buf, pos))
                    })
                    .collect(),
            ),
            _ => V::Tag(n, Box::new(V::parse(buf, pos))),
        }
    }

    fn from_bytes(buf: &[u8]) -> V {
        let mut pos = 0;
        let v = V::parse(buf, &mut pos);
        assert_eq!(pos, buf.len(), "trailing bytes");
        v
    }

    /// Every byte string as an array of unsigned integers (how the
    /// reference writes byte fields).
    fn arrayified(&self) -> V {
        match self {
            V::B(b) => V::A(b.iter().map(|&x| V::U(x as u64)).collect()),
            V::A(items) => V::A(items.iter().map(V::arrayified).collect()),
            V::M(entries) => V::M(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.arrayified()))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Number of nodes (items, map keys included) in pre-order.
    fn count(&self) -> usize {
        1 + match self {
            V::A(items) => items.iter().map(V::count).sum(),
            V::M(entries) => entries.iter().map(|(k, v)| k.count() + v.count()).sum(),
            V::Tag(_, inner) | V::Indef(inner) => inner.count(),
            _ => 0,
        }
    }

    /// The `n`-th node in pre-order.
    fn node_mut(&mut self, n: &mut usize) -> Option<&mut V> {
        if *n == 0 {
            return Some(self);
        }
        *n -= 1;
        match self {
            V::A(items) => items.iter_mut().find_map(|i| i.node_mut(n)),
            V::M(entries) => entries
                .iter_mut()
                .find_map(|(k, v)| k.node_mut(n).or_else(|| v.node_mut(n))),
            V::Tag(_, inner) | V::Indef(inner) => inner.node_mut(n),
            _ => None,
        }
    }

    /// Whether some map in this item has the same key twice, as our
    /// decoder compares keys (text keys by content, tags on them ignored;
    /// other keys by their encoding).
    fn has_duplicate_keys(&self) -> bool {
        match self {
            V::A(items) => items.iter().any(V::has_duplicate_keys),
            V::M(entries) => {
                let mut keys: Vec<(bool, Vec<u8>)> = entries
                    .iter()
                    .map(|(k, _)| {
                        let mut bare = k;
                        while let V::Tag(_, inner) = bare {
                            bare = inner;
                        }
                        match bare {
                            V::T(s) => (true, s.as_bytes().to_vec()),
                            _ => (false, k.to_bytes()),
                        }
                    })
                    .collect();
                keys.sort();
                keys.windows(2).any(|w| w[0] == w[1])
                    || entries
                        .iter()
                        .any(|(k, v)| k.has_duplicate_keys() || v.has_duplicate_keys())
            }
            V::Tag(_, inner) | V::Indef(inner) => inner.has_duplicate_keys(),
            _ => false,
        }
    }

    /// Nesting depth (a scalar is 0).
    fn depth(&self) -> usize {
        match self {
            V::A(items) => 1 + items.iter().map(V::depth).max().unwrap_or(0),
            V::M(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.depth().max(v.depth()))
                    .max()
                    .unwrap_or(0)
            }
            V::Tag(_, inner) | V::Indef(inner) => inner.depth(),
            _ => 0,
        }
    }
}

/// Every field name the messages use, so random maps hit real fields.
static FIELD_NAMES: [&str; 29] = [
    "sender",
    "sender_addr",
    "observed_addr",
    "descriptor",
    "stored",
    "reason",
    "target",
    "nodes",
    "key",
    "max_results",
    "filters",
    "descriptors",
    "protocol",
    "address",
    "identity",
    "addr",
    "last_seen",
    "algorithm",
    "public_key",
    "digest",
    "schema_hash",
    "topic",
    "payload",
    "publisher",
    "timestamp",
    "sequence",
    "ttl",
    "routing_keys",
    "min_timestamp",
];

fn field_name() -> BoxedStrategy<V> {
    prop_oneof![
        9 => proptest::sample::select(&FIELD_NAMES[..]).prop_map(|s| V::T(s.to_owned())),
        1 => prop_oneof![Just("id"), Just("signature")].prop_map(|s| V::T(s.to_owned())),
    ]
    .boxed()
}

/// Random CBOR items, without indefinite lengths or tag 55799.
fn any_v() -> BoxedStrategy<V> {
    let leaf = prop_oneof![
        3 => (0u64..=300).prop_map(V::U),
        1 => any::<u64>().prop_map(V::U),
        1 => any::<u64>().prop_map(V::N),
        2 => vec(any::<u8>(), 0..40).prop_map(V::B),
        1 => vec(any::<u8>(), 32..=32).prop_map(V::B),
        1 => vec(any::<u8>(), 64..=64).prop_map(V::B),
        2 => "\\PC{0,12}".prop_map(V::T),
        3 => field_name(),
        1 => prop_oneof![Just(20u8), Just(21), Just(22), Just(23), 0u8..20, 32u8..=255]
            .prop_map(V::Simple),
        1 => any::<u64>().prop_map(V::F64),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            2 => vec(inner.clone(), 0..8).prop_map(V::A),
            1 => vec((0u64..=255).prop_map(V::U), 0..70).prop_map(V::A),
            1 => vec((inner.clone(), inner.clone()), 0..5).prop_map(V::M),
            3 => vec((field_name(), inner.clone()), 0..6).prop_map(V::M),
            1 => ((0u64..=100_000).prop_filter("self-describe", |t| *t != 55_799), inner)
                .prop_map(|(t, v)| V::Tag(t, Box::new(v))),
        ]
    })
    .boxed()
}

// ───────────────────────── round trips ─────────────────────────

proptest! {
    #![proptest_config(config(256))]

    /// encode → decode is the identity, and decode → encode gives the same
    /// bytes; likewise through `encode_body`/`decode_body` and, for
    /// descriptors, `to_cbor`/`descriptor_from_cbor`.
    #[test]
    fn every_message_round_trips(f in frame()) {
        let bytes = f.encode();
        prop_assert_eq!(Frame::decode(&bytes), Ok(f.clone()));
        prop_assert_eq!(Frame::decode(&bytes).unwrap().encode(), bytes.clone());

        let h = FrameHeader::parse(&bytes, MAX_BODY_LEN).unwrap();
        prop_assert_eq!(h.msg_type, f.message.message_type());
        prop_assert_eq!(h.msg_id, f.msg_id);
        prop_assert_eq!(h.body_len, bytes.len() - HEADER_LEN);

        let mut body = Vec::new();
        f.message.encode_body(&mut body);
        prop_assert_eq!(&body[..], &bytes[HEADER_LEN..]);
        prop_assert_eq!(
            Message::decode_body(h.msg_type, &body, &DecodeLimits::default()),
            Ok(f.message.clone())
        );

        // Direction checks: a server takes requests only, a client responses only.
        let limits = DecodeLimits::default();
        let (req, resp) = (Frame::decode_request(&bytes, &limits), Frame::decode_response(&bytes, &limits));
        if h.msg_type.is_response() {
            prop_assert!(matches!(req, Err(DecodeError::WrongDirection { .. })), "{:?}", req);
            prop_assert_eq!(resp, Ok(f.clone()));
        } else {
            prop_assert_eq!(req, Ok(f.clone()));
            prop_assert!(matches!(resp, Err(DecodeError::WrongDirection { .. })), "{:?}", resp);
        }

        let descriptors: Vec<&Descriptor> = match &f.message {
            Message::Store(s) => vec![&s.descriptor],
            Message::FindValueResult(FindValueResult::Descriptors(ds)) => ds.iter().collect(),
            _ => vec![],
        };
        for d in descriptors {
            prop_assert_eq!(descriptor_from_cbor(&d.to_cbor(), &limits), Ok(d.clone()));
        }
    }

    /// The reference writes every byte field as an array of integers; such
    /// a body decodes to the same frame, and re-encodes to our (byte
    /// string) bytes.
    #[test]
    fn reference_style_byte_arrays_decode_equal(f in frame()) {
        let bytes = f.encode();
        let body = V::from_bytes(&bytes[HEADER_LEN..]);
        prop_assert_eq!(body.to_bytes(), &bytes[HEADER_LEN..], "test CBOR model is not faithful");
        let arrays = rebody(&bytes, &body.arrayified());
        let decoded = Frame::decode(&arrays);
        prop_assert_eq!(decoded.as_ref(), Ok(&f));
        prop_assert_eq!(decoded.unwrap().encode(), bytes);
    }

    /// Cutting a valid frame short anywhere is an error, never a panic —
    /// whether the header still declares the full body, or is rewritten to
    /// declare exactly the bytes that remain.
    #[test]
    fn truncation_is_an_error(f in frame(), cuts in vec(any::<Index>(), 16)) {
        let bytes = f.encode();
        for cut in 0..bytes.len() {
            let r = Frame::decode(&bytes[..cut]);
            if cut < HEADER_LEN {
                prop_assert_eq!(r, Err(DecodeError::ShortHeader { len: cut }));
            } else {
                prop_assert_eq!(
                    r,
                    Err(DecodeError::TruncatedBody { declared: bytes.len() - HEADER_LEN, present: cut - HEADER_LEN })
                );
            }
        }
        // A body is one definite map: no proper prefix of it is an item.
        let body_len = bytes.len() - HEADER_LEN;
        let mut points: Vec<usize> = cuts.iter().map(|i| HEADER_LEN + i.index(body_len)).collect();
        points.extend([HEADER_LEN, HEADER_LEN + 1, bytes.len() - 1]);
        for cut in points {
            let short = with_fixed_len(bytes[..cut].to_vec());
            let r = Frame::decode(&short);
            prop_assert!(r.is_err(), "a {}-byte prefix of the body decoded: {:?}", cut - HEADER_LEN, r);
        }
    }

    /// One byte more after the frame, or after the body's CBOR item, is refused.
    #[test]
    fn trailing_bytes_are_refused(f in frame(), extra in vec(any::<u8>(), 1..4)) {
        let bytes = f.encode();
        let mut longer = bytes.clone();
        longer.extend_from_slice(&extra);
        prop_assert_eq!(Frame::decode(&longer), Err(DecodeError::BytesAfterFrame { extra: extra.len() }));
        let r = Frame::decode(&with_fixed_len(longer));
        prop_assert!(r.is_err(), "trailing bytes after the body accepted: {:?}", r);
    }
}

// ───────────────────────── DIDs ─────────────────────────

const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn did_round_trips(key in any::<[u8; 32]>()) {
        let id = Identity::from_ed25519_bytes(key);
        let did = id.did();
        prop_assert!(did.starts_with("did:mesh:z"));
        prop_assert!(did.len() <= 64);
        prop_assert_eq!(Identity::from_did(&did), Ok(id));
        prop_assert_eq!(did.parse::<Identity>(), Ok(id));
    }

    #[test]
    fn did_from_keypair_round_trips(secret in any::<[u8; 32]>()) {
        let id = Keypair::from_secret_bytes(&secret).identity();
        prop_assert_eq!(Identity::from_did(&id.did()), Ok(id));
    }

    /// Arbitrary strings never panic; whatever is accepted is the DID of
    /// what it decodes to (so one identity has exactly one DID).
    #[test]
    fn from_did_never_panics(
        s in prop_oneof![
            "\\PC{0,80}",
            ".{0,80}",
            "did:mesh:\\PC{0,60}",
            "did:mesh:z[1-9A-HJ-NP-Za-km-z]{0,60}",
            "did:mesh:z1{0,60}",
            "did:mesh:z1{0,3}[1-9A-HJ-NP-Za-km-z]{40,50}",
        ]
    ) {
        if let Ok(id) = Identity::from_did(&s) {
            prop_assert_eq!(id.did(), s);
        }
    }

    /// A base58 payload of any length and algorithm byte gets the right answer.
    #[test]
    fn from_did_checks_length_and_algorithm(
        raw in prop_oneof![
            1 => vec(any::<u8>(), 0..48),
            // 33 bytes: an algorithm byte (often 0x01, often another small
            // registry value) and a key.
            2 => (prop_oneof![Just(0x01u8), 0u8..8, any::<u8>()], any::<[u8; 32]>())
                .prop_map(|(alg, key)| [&[alg][..], &key[..]].concat()),
        ],
        edit in any::<Index>(),
        c in any::<Index>(),
    ) {
        let did = format!("did:mesh:z{}", bs58_encode(&raw));
        let r = Identity::from_did(&did);
        if raw.len() == 33 && raw[0] == 0x01 {
            let mut key = [0u8; 32];
            key.copy_from_slice(&raw[1..]);
            prop_assert_eq!(r, Ok(Identity::from_ed25519_bytes(key)));
        } else if raw.len() == 33 {
            prop_assert_eq!(r, Err(DidError::Algorithm(raw[0])));
        } else {
            prop_assert!(r.is_err(), "{} decoded to {:?}", did, r);
        }
        // One character replaced by any base58 digit: never a panic.
        let mut chars: Vec<char> = did.chars().collect();
        let i = edit.index(chars.len());
        chars[i] = BASE58.as_bytes()[c.index(BASE58.len())] as char;
        let edited: String = chars.into_iter().collect();
        if let Ok(id) = Identity::from_did(&edited) {
            prop_assert_eq!(id.did(), edited);
        }
    }
}

/// Base58btc (Bitcoin alphabet), written out here so the test does not
/// share the library's encoder.
fn bs58_encode(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    let mut digits: Vec<u8> = Vec::new(); // little-endian base-58 digits
    for &b in &bytes[zeros..] {
        let mut carry = b as u32;
        for d in digits.iter_mut() {
            carry += (*d as u32) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let alphabet = BASE58.as_bytes();
    std::iter::repeat_n('1', zeros)
        .chain(digits.iter().rev().map(|&d| alphabet[d as usize] as char))
        .collect()
}

#[test]
fn bs58_encode_matches_known_vector() {
    // The DID of "key 1" from the shared vectors' conventions, and a
    // zero-prefixed value.
    let id = Keypair::from_secret_bytes(&[1; 32]).identity();
    let mut raw = vec![0x01];
    raw.extend_from_slice(id.public_key());
    assert_eq!(format!("did:mesh:z{}", bs58_encode(&raw)), id.did());
    assert_eq!(bs58_encode(&[0, 0, 1]), "112");
    assert_eq!(bs58_encode(&[]), "");
}

// ───────────────────────── hostile input ─────────────────────────

/// A change at one node of a valid body.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the node with a random item.
    Replace(V),
    /// Wrap the node in a tag.
    Tag(u64),
    /// Wrap the node in the self-describe tag 55799.
    SelfDescribe,
    /// A byte string as an array of integers.
    Arrayify,
    /// An array, map or string in indefinite-length form.
    Indefinite,
    /// Repeat one entry of a map (index into its entries).
    DuplicateEntry(Index),
    /// Drop one entry of a map.
    DeleteEntry(Index),
    /// Add an entry under a key no message uses.
    UnknownKey(String, V),
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        4 => any_v().prop_map(Mutation::Replace),
        2 => prop_oneof![42u64..=45, 0u64..=100_000]
            .prop_filter("self-describe", |t| *t != 55_799)
            .prop_map(Mutation::Tag),
        1 => Just(Mutation::SelfDescribe),
        2 => Just(Mutation::Arrayify),
        2 => Just(Mutation::Indefinite),
        2 => any::<Index>().prop_map(Mutation::DuplicateEntry),
        2 => any::<Index>().prop_map(Mutation::DeleteEntry),
        2 => ("x-[a-z_]{0,10}", any_v()).prop_map(|(k, v)| Mutation::UnknownKey(k, v)),
    ]
    .boxed()
}

/// What the spec says a mutation must lead to.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Decodes to the original frame.
    Same,
    /// Refused.
    Error,
    /// Anything but a panic (and, if accepted, stable).
    Whatever,
}

/// Applies `m` to `node`, returning what the decoder must then do.
fn apply(node: &mut V, m: &Mutation, depth: usize) -> Expect {
    match m {
        Mutation::Replace(v) => {
            *node = v.clone();
            Expect::Whatever
        }
        Mutation::Tag(t) => {
            *node = V::Tag(*t, Box::new(node.clone()));
            // Tags 42–45 are reserved: ignored if seen. Other tags are not
            // the spec's business; we ignore them too, but only require no panic.
            if (42..=45).contains(t) {
                Expect::Same
            } else {
                Expect::Whatever
            }
        }
        Mutation::SelfDescribe => {
            *node = V::Tag(55_799, Box::new(node.clone()));
            Expect::Error
        }
        Mutation::Arrayify => {
            if let V::B(_) = node {
                *node = node.arrayified();
            }
            Expect::Same
        }
        Mutation::Indefinite => match node {
            V::A(_) | V::M(_) | V::B(_) | V::T(_) => {
                *node = V::Indef(Box::new(node.clone()));
                Expect::Error
            }
            _ => Expect::Same,
        },
        Mutation::DuplicateEntry(i) => match node {
            V::M(entries) if !entries.is_empty() => {
                let e = entries[i.index(entries.len())].clone();
                entries.push(e);
                Expect::Error
            }
            _ => Expect::Same,
        },
        Mutation::DeleteEntry(i) => match node {
            V::M(entries) if !entries.is_empty() => {
                entries.remove(i.index(entries.len()));
                Expect::Whatever
            }
            _ => Expect::Same,
        },
        Mutation::UnknownKey(k, v) => match node {
            V::M(entries) => {
                entries.push((V::T(k.clone()), v.clone()));
                // Unknown keys are skipped, but what they hold is still
                // checked: no duplicate keys, bounded nesting.
                if v.has_duplicate_keys() || depth + 1 + v.depth() > 15 {
                    Expect::Whatever
                } else {
                    Expect::Same
                }
            }
            _ => Expect::Same,
        },
    }
}

/// The nesting depth of the `n`-th node in pre-order.
fn depth_of(v: &V, n: usize) -> usize {
    fn walk(v: &V, n: &mut usize, d: usize) -> Option<usize> {
        if *n == 0 {
            return Some(d);
        }
        *n -= 1;
        match v {
            V::A(items) => items.iter().find_map(|i| walk(i, n, d + 1)),
            V::M(entries) => entries
                .iter()
                .find_map(|(k, x)| walk(k, n, d + 1).or_else(|| walk(x, n, d + 1))),
            V::Tag(_, inner) | V::Indef(inner) => walk(inner, n, d),
            _ => None,
        }
    }
    walk(v, &mut { n }, 0).unwrap()
}

proptest! {
    #![proptest_config(config(1024))]

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        decode_is_stable(&bytes)?;
    }

    /// Arbitrary bodies behind a well-formed header (right or wrong length).
    #[test]
    fn arbitrary_bodies_never_panic(
        t in proptest::sample::select(&ALL_TYPES[..]),
        id in any::<[u8; 16]>(),
        body in vec(any::<u8>(), 0..600),
        wrong_len in proptest::option::of(any::<u32>()),
    ) {
        let mut bytes = header(t.byte(), id, wrong_len.unwrap_or(body.len() as u32));
        bytes.extend_from_slice(&body);
        decode_is_stable(&bytes)?;
    }

    /// Random CBOR maps keyed by the protocol's own field names, under
    /// every message type.
    #[test]
    fn random_cbor_bodies_never_panic(
        t in proptest::sample::select(&ALL_TYPES[..]),
        entries in vec((field_name(), any_v()), 0..8),
    ) {
        let mut bytes = header(t.byte(), [7; 16], 0);
        V::M(entries).write(&mut bytes);
        decode_is_stable(&with_fixed_len(bytes))?;
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Byte-level damage to valid frames: flipped, inserted and deleted
    /// bytes, with the header's length kept or fixed up.
    #[test]
    fn damaged_frames_never_panic(
        f in frame(),
        edits in vec((any::<Index>(), any::<u8>(), 0u8..3), 1..6),
        fix_len in any::<bool>(),
    ) {
        let mut bytes = f.encode();
        for (at, b, kind) in &edits {
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] ^= b.max(&1),
                1 => bytes.insert(i, *b),
                _ => {
                    bytes.remove(i);
                }
            }
            if bytes.len() < HEADER_LEN {
                break;
            }
        }
        if fix_len && bytes.len() >= HEADER_LEN {
            bytes = with_fixed_len(bytes);
        }
        decode_is_stable(&bytes)?;
    }

    /// Structural damage to valid frames at a random node, with the answer
    /// the spec requires where it requires one.
    #[test]
    fn mutated_bodies_get_the_right_answer(f in frame(), at in any::<Index>(), m in mutation()) {
        let bytes = f.encode();
        let mut body = V::from_bytes(&bytes[HEADER_LEN..]);
        let n = at.index(body.count());
        let depth = depth_of(&body, n);
        let expect = apply(body.node_mut(&mut { n }).unwrap(), &m, depth);
        let mutated = rebody(&bytes, &body);
        let got = decode_is_stable(&mutated)?;
        match expect {
            Expect::Same => prop_assert_eq!(got.as_ref(), Some(&f), "{:?} at node {} changed the frame", m, n),
            Expect::Error => prop_assert!(got.is_none(), "{:?} at node {} was accepted: {:?}", m, n, got),
            Expect::Whatever => {}
        }
    }
}

// ───────────────────────── fixed cases ─────────────────────────

/// The largest values the limits allow still round-trip: 20 nodes, 20
/// descriptors, 8 routing keys, a 1024-byte reason, 16- and 262-byte
/// addresses, a 32-byte digest of an unknown algorithm.
#[test]
fn limits_round_trip() {
    let addr = NodeAddr::new(&"p".repeat(16), &"a".repeat(262));
    let node = NodeInfo {
        identity: Identity::from_ed25519_bytes([0xff; 32]),
        addr: addr.clone(),
        last_seen: Timestamp::from_micros(u64::MAX),
    };
    let odd = Hash::new(HashAlgorithm::from_code(0xff), &[0xee; 32]).unwrap();
    let d = Descriptor {
        schema_hash: odd,
        topic: String::new(),
        payload: vec![],
        publisher: Identity::from_ed25519_bytes([0; 32]),
        timestamp: Timestamp::from_micros(u64::MAX),
        sequence: u64::MAX,
        ttl: u32::MAX,
        routing_keys: vec![odd; 8],
        id: Hash::new(HashAlgorithm::from_code(0), &[]).unwrap(),
        signature: Signature::from_bytes([0xff; 64]),
    };
    let messages = [
        Message::FindNodeResult(FindNodeResult {
            nodes: vec![node.clone(); 20],
        }),
        Message::FindValueResult(FindValueResult::Nodes(vec![node; 20])),
        Message::FindValueResult(FindValueResult::Descriptors(vec![d.clone(); 20])),
        Message::StoreAck(StoreAck {
            stored: false,
            reason: Some("r".repeat(1024)),
        }),
        Message::FindValue(FindValue {
            sender: Identity::from_ed25519_bytes([1; 32]),
            sender_addr: addr,
            key: odd,
            max_results: u16::MAX,
            filters: Some(Box::new(Filters {
                schema_hash: Some(odd),
                min_timestamp: Some(Timestamp::from_micros(u64::MAX)),
                publisher: Some(Identity::from_ed25519_bytes([2; 32])),
            })),
        }),
    ];
    for m in messages {
        let f = Frame::new(MsgId([0xff; 16]), m);
        assert_eq!(Frame::decode(&f.encode()), Ok(f));
    }
}

/// Regression: `Hash::new(HashAlgorithm::Other(0x03), …)` once accepted a
/// 5-byte digest, making a "BLAKE3" hash that encoded into a frame our own
/// decoder refused (`BadDigest`). A known code under `Other` must follow its
/// algorithm's rules and round-trip as that algorithm.
#[test]
fn hash_new_holds_other_known_codes_to_their_rules() {
    for code in [0x03, 0x04] {
        assert!(Hash::new(HashAlgorithm::Other(code), &[0xab; 5]).is_err());
        let h = Hash::new(HashAlgorithm::Other(code), &[0xab; 32]).unwrap();
        assert_eq!(
            h,
            Hash::new(HashAlgorithm::from_code(code), &[0xab; 32]).unwrap()
        );
        let f = Frame::new(
            MsgId([0; 16]),
            Message::FindNode(FindNode {
                sender: Identity::from_ed25519_bytes([1; 32]),
                sender_addr: NodeAddr::quic("127.0.0.1:4433"),
                target: h,
            }),
        );
        assert_eq!(Frame::decode(&f.encode()), Ok(f));
    }
}
