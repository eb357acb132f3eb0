//! Every strictness rule of the receive path, one test each: what a hostile
//! or sloppy peer may send, and the typed refusal it gets.

use ciborium::Value as V;
use mars_proto::wire::{
    CborError, DecodeError, DecodeLimits, Frame, FrameHeader, Message, MessageType, MsgId,
};
use mars_proto::{Keypair, Timestamp};

fn t(s: &str) -> V {
    V::Text(s.into())
}

fn map(entries: Vec<(&str, V)>) -> V {
    V::Map(entries.into_iter().map(|(k, v)| (t(k), v)).collect())
}

fn identity_v(n: u8) -> V {
    let pk = Keypair::from_secret_bytes(&[n; 32]).identity();
    map(vec![
        ("algorithm", V::Integer(1.into())),
        ("public_key", V::Bytes(pk.public_key().to_vec())),
    ])
}

fn addr_v() -> V {
    map(vec![("protocol", t("quic")), ("address", t("127.0.0.1:1"))])
}

fn hash_v() -> V {
    map(vec![
        ("algorithm", V::Integer(3.into())),
        ("digest", V::Bytes(vec![7; 32])),
    ])
}

fn cbor(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

fn frame(t: MessageType, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x4d, 0x48, 0x01, t.byte()];
    f.extend_from_slice(&[0xaa; 16]);
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn decode(t: MessageType, body: &V) -> Result<Frame, DecodeError> {
    Frame::decode(&frame(t, &cbor(body)))
}

fn ping_v(extra: Vec<(&str, V)>) -> V {
    let mut e = vec![("sender", identity_v(1)), ("sender_addr", addr_v())];
    e.extend(extra);
    map(e)
}

fn node_v() -> V {
    map(vec![
        ("identity", identity_v(2)),
        ("addr", addr_v()),
        ("last_seen", V::Integer(5.into())),
    ])
}

#[test]
fn a_well_formed_ping_decodes() {
    assert!(decode(MessageType::Ping, &ping_v(vec![])).is_ok());
}

#[test]
fn unknown_keys_are_ignored_even_nested() {
    let body = ping_v(vec![
        (
            "future_field",
            map(vec![("deep", V::Array(vec![V::Null, V::Float(1.5)]))]),
        ),
        ("another", V::Tag(42, Box::new(V::Bytes(vec![1])))),
    ]);
    let f = decode(MessageType::Ping, &body).unwrap();
    assert!(matches!(f.message, Message::Ping(_)));
    // Non-text keys are unknown keys too.
    let mut m = match ping_v(vec![]) {
        V::Map(m) => m,
        _ => unreachable!(),
    };
    m.push((V::Integer(7.into()), V::Bool(true)));
    assert!(decode(MessageType::Ping, &V::Map(m)).is_ok());
}

#[test]
fn byte_fields_accept_integer_arrays_and_refuse_non_bytes() {
    let pk = Keypair::from_secret_bytes(&[1; 32]).identity();
    let arr: Vec<V> = pk
        .public_key()
        .iter()
        .map(|b| V::Integer((*b).into()))
        .collect();
    let id = map(vec![
        ("algorithm", V::Integer(1.into())),
        ("public_key", V::Array(arr.clone())),
    ]);
    let body = map(vec![("sender", id), ("sender_addr", addr_v())]);
    match decode(MessageType::Ping, &body).unwrap().message {
        Message::Ping(p) => assert_eq!(p.sender, pk),
        other => panic!("{other:?}"),
    }
    let mut bad = arr;
    bad[3] = V::Integer(256.into());
    let id = map(vec![
        ("algorithm", V::Integer(1.into())),
        ("public_key", V::Array(bad)),
    ]);
    let err = decode(
        MessageType::Ping,
        &map(vec![("sender", id), ("sender_addr", addr_v())]),
    )
    .unwrap_err();
    assert!(
        matches!(err, DecodeError::ByteOutOfRange { value: 256, field } if field.name == "public_key"),
        "{err}"
    );
}

#[test]
fn fixed_size_fields_check_their_size() {
    let id = map(vec![
        ("algorithm", V::Integer(1.into())),
        ("public_key", V::Bytes(vec![0; 31])),
    ]);
    let err = decode(
        MessageType::Ping,
        &map(vec![("sender", id), ("sender_addr", addr_v())]),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::WrongLength {
                expected: 32,
                found: 31,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "ping.sender.public_key: expected 32 bytes, found 31"
    );
}

#[test]
fn identity_algorithms_other_than_ed25519_are_refused() {
    let id = map(vec![
        ("algorithm", V::Integer(2.into())),
        ("public_key", V::Bytes(vec![0; 32])),
    ]);
    let err = decode(
        MessageType::Ping,
        &map(vec![("sender", id), ("sender_addr", addr_v())]),
    )
    .unwrap_err();
    assert!(
        matches!(err, DecodeError::UnsupportedIdentity { algorithm: 2, .. }),
        "{err}"
    );
}

#[test]
fn hash_digests_must_fit_their_algorithm() {
    let target = map(vec![
        ("algorithm", V::Integer(3.into())),
        ("digest", V::Bytes(vec![0; 31])),
    ]);
    let body = ping_v(vec![("target", target)]);
    let err = decode(MessageType::FindNode, &body).unwrap_err();
    assert!(matches!(err, DecodeError::BadDigest { .. }), "{err}");
    // Unknown algorithms are carried, up to 32 bytes.
    let other = map(vec![
        ("algorithm", V::Integer(0x77.into())),
        ("digest", V::Bytes(vec![1; 20])),
    ]);
    assert!(decode(MessageType::FindNode, &ping_v(vec![("target", other)])).is_ok());
    let long = map(vec![
        ("algorithm", V::Integer(0x77.into())),
        ("digest", V::Bytes(vec![1; 33])),
    ]);
    let err = decode(MessageType::FindNode, &ping_v(vec![("target", long)])).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooLong {
                len: 33,
                max: 32,
                ..
            }
        ),
        "{err}"
    );
    let alg = map(vec![
        ("algorithm", V::Integer(300.into())),
        ("digest", V::Bytes(vec![1; 32])),
    ]);
    let err = decode(MessageType::FindNode, &ping_v(vec![("target", alg)])).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::IntegerOutOfRange {
                value: 300,
                max: 255,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn missing_fields_are_named() {
    let err = decode(MessageType::Ping, &map(vec![("sender", identity_v(1))])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ping.sender_addr: required field is missing"
    );
}

#[test]
fn duplicate_keys_are_refused_at_every_level() {
    // In a known nested map.
    let addr = V::Map(vec![
        (t("protocol"), t("quic")),
        (t("protocol"), t("quic")),
        (t("address"), t("a:1")),
    ]);
    let err = decode(
        MessageType::Ping,
        &map(vec![("sender", identity_v(1)), ("sender_addr", addr)]),
    )
    .unwrap_err();
    assert!(
        matches!(err, DecodeError::DuplicateField { field } if field.name == "protocol"),
        "{err}"
    );
    // Among unknown keys.
    let err = decode(
        MessageType::Ping,
        &ping_v(vec![("x", V::Null), ("x", V::Null)]),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Cbor {
                source: CborError::DuplicateKey(_),
                ..
            }
        ),
        "{err}"
    );
    // Inside a skipped unknown value.
    let inner = V::Map(vec![(t("a"), V::Null), (t("a"), V::Null)]);
    let err = decode(MessageType::Ping, &ping_v(vec![("x", inner)])).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Cbor {
                source: CborError::DuplicateKey(_),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn indefinite_lengths_are_refused_anywhere() {
    let mut body = cbor(&ping_v(vec![]));
    // Append an unknown key whose value is an indefinite byte string.
    body[0] += 1; // one more map entry
    body.extend_from_slice(&[0x61, b'z', 0x5f, 0x41, 0x00, 0xff]);
    let err = Frame::decode(&frame(MessageType::Ping, &body)).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Cbor {
                source: CborError::IndefiniteLength,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn self_describe_tag_is_refused_inside_too() {
    let body = ping_v(vec![("x", V::Tag(55799, Box::new(V::Null)))]);
    let err = decode(MessageType::Ping, &body).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Cbor {
                source: CborError::SelfDescribeTag,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn reserved_tags_are_ignored() {
    let body = map(vec![
        ("sender", V::Tag(42, Box::new(identity_v(1)))),
        ("sender_addr", V::Tag(45, Box::new(addr_v()))),
    ]);
    assert!(decode(MessageType::Ping, &body).is_ok());
}

#[test]
fn nesting_is_bounded() {
    let mut v = V::Null;
    for _ in 0..200 {
        v = V::Array(vec![v]);
    }
    let err = decode(MessageType::Ping, &ping_v(vec![("deep", v)])).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Cbor {
                source: CborError::TooDeep,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn lying_lengths_are_refused_before_allocating() {
    // An array claiming 2^32 nodes in a 20-byte body.
    let mut body = vec![0xa1, 0x65];
    body.extend_from_slice(b"nodes");
    body.extend_from_slice(&[0x9b, 0, 0, 0, 1, 0, 0, 0, 0]);
    let err = Frame::decode(&frame(MessageType::FindNodeResult, &body)).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Cbor {
                source: CborError::LengthExceedsInput { .. },
                ..
            }
        ),
        "{err}"
    );
    // A byte string claiming 1 GiB.
    let mut body = cbor(&ping_v(vec![]));
    body[0] += 1;
    body.extend_from_slice(&[0x61, b'z', 0x5a, 0x40, 0, 0, 0]);
    let err = Frame::decode(&frame(MessageType::Ping, &body)).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Cbor {
                source: CborError::LengthExceedsInput { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn node_lists_are_bounded() {
    let nodes = V::Array((0..21).map(|_| node_v()).collect());
    let err = decode(
        MessageType::FindNodeResult,
        &map(vec![("nodes", nodes.clone())]),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooManyItems {
                count: 21,
                max: 20,
                ..
            }
        ),
        "{err}"
    );
    let wider = DecodeLimits {
        max_nodes: 21,
        ..DecodeLimits::default()
    };
    let bytes = frame(
        MessageType::FindNodeResult,
        &cbor(&map(vec![("nodes", nodes)])),
    );
    assert!(Frame::decode_with(&bytes, &wider).is_ok());
}

#[test]
fn routing_keys_are_bounded() {
    let mut d = mars_proto::DescriptorBuilder::new(
        mars_proto::schema::CORE_CAPABILITY.hash(),
        Timestamp::from_secs(1_700_000_000),
    )
    .routing_key(mars_proto::schema::routing_key("a"))
    .sign(&Keypair::from_secret_bytes(&[1; 32]))
    .unwrap();
    d.routing_keys = vec![mars_proto::schema::routing_key("a"); 9];
    let err =
        mars_proto::wire::descriptor_from_cbor(&d.to_cbor(), &DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooManyItems {
                count: 9,
                max: 8,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("routing_keys"), "{err}");
}

#[test]
fn body_cap_is_checked_from_the_header_alone() {
    let mut h = vec![0x4d, 0x48, 0x01, 0x01];
    h.extend_from_slice(&[0; 16]);
    h.extend_from_slice(&((1u32 << 20) + 1).to_be_bytes());
    let err = FrameHeader::parse(&h, mars_proto::wire::MAX_BODY_LEN).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::BodyTooLarge {
            declared: 1_048_577,
            max: 1_048_576
        }
    ));
    let mut at_cap = h.clone();
    at_cap[20..24].copy_from_slice(&(1u32 << 20).to_be_bytes());
    assert_eq!(
        FrameHeader::parse(&at_cap, 1 << 20).unwrap().body_len,
        1 << 20
    );
    let err = Message::decode_body(
        MessageType::Ping,
        &vec![0; (1 << 20) + 1],
        &DecodeLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DecodeError::BodyTooLarge { .. }));
}

#[test]
fn bytes_after_the_frame_are_refused() {
    let mut f = frame(MessageType::Ping, &cbor(&ping_v(vec![])));
    f.push(0);
    assert!(matches!(
        Frame::decode(&f),
        Err(DecodeError::BytesAfterFrame { extra: 1 })
    ));
}

#[test]
fn wrong_types_and_bad_utf8_are_named() {
    let body = map(vec![
        ("sender", identity_v(1)),
        ("sender_addr", V::Integer(3.into())),
    ]);
    let err = decode(MessageType::Ping, &body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ping.sender_addr: expected map, found unsigned integer"
    );
    let mut body = cbor(&map(vec![("stored", V::Bool(false)), ("reason", t("ab"))]));
    let n = body.len();
    body[n - 1] = 0xff; // "a\xff"
    let err = Frame::decode(&frame(MessageType::StoreAck, &body)).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Cbor {
                source: CborError::InvalidUtf8,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn text_fields_are_bounded() {
    let addr = map(vec![
        ("protocol", t("quic")),
        ("address", t(&"a".repeat(300))),
    ]);
    let err = decode(
        MessageType::Ping,
        &map(vec![("sender", identity_v(1)), ("sender_addr", addr)]),
    )
    .unwrap_err();
    assert!(
        matches!(err, DecodeError::TooLong { len: 300, .. }),
        "{err}"
    );
    let ack = map(vec![
        ("stored", V::Bool(false)),
        ("reason", t(&"r".repeat(2000))),
    ]);
    assert!(matches!(
        decode(MessageType::StoreAck, &ack),
        Err(DecodeError::TooLong {
            len: 2000,
            max: 1024,
            ..
        })
    ));
}

#[test]
fn integers_are_range_checked() {
    let body = map(vec![
        ("sender", identity_v(1)),
        ("sender_addr", addr_v()),
        ("key", hash_v()),
        ("max_results", V::Integer(70_000.into())),
    ]);
    let err = decode(MessageType::FindValue, &body).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::IntegerOutOfRange {
                value: 70_000,
                max: 65_535,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn empty_and_garbage_bodies_never_panic() {
    for t in [
        MessageType::Ping,
        MessageType::Pong,
        MessageType::Store,
        MessageType::StoreAck,
        MessageType::FindNode,
        MessageType::FindNodeResult,
        MessageType::FindValue,
        MessageType::FindValueResult,
    ] {
        for body in [&[][..], &[0xa0], &[0xff], &[0x1c], &[0xa1, 0x60], &[0x80]] {
            assert!(Frame::decode(&frame(t, body)).is_err(), "{t:?} {body:?}");
        }
    }
    let _ = MsgId::default();
}
