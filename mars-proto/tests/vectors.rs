//! The shared wire vectors (../shared/vectors), produced by running the
//! reference implementation. Each test does what vectors/README.md asks.

use mars_proto::wire::{
    DecodeError, DecodeLimits, FindValueResult, Frame, Message, MessageType, MsgId, NodeAddr,
};
use mars_proto::{Descriptor, DescriptorBuilder, Hash, Identity, Keypair, Timestamp, schema};
use serde_json::Value;

fn vectors_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}

fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "wire vector file {} is missing ({e}); the tests need ../shared/vectors beside the workspace",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn arr32(v: &Value) -> [u8; 32] {
    hex(v).try_into().expect("32 bytes")
}

fn key(n: u8) -> Keypair {
    Keypair::from_secret_bytes(&[n; 32])
}

const MSG_ID: MsgId = MsgId([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);

#[test]
fn every_vector_file_is_exercised() {
    let mut names: Vec<String> = std::fs::read_dir(vectors_dir())
        .unwrap_or_else(|e| panic!("{}: {e}", vectors_dir().display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    // payloads.json is checked by tests/payload_vectors.rs.
    assert_eq!(
        names,
        [
            "descriptors.json",
            "frames.json",
            "frames_compact.json",
            "hashes.json",
            "invalid_frames.json",
            "payloads.json"
        ],
        "a vector file was added or removed: give it a test"
    );
}

fn rebuild(v: &Value) -> Descriptor {
    let secret = arr32(&v["secret_key"]);
    let kp = Keypair::from_secret_bytes(&secret);
    let routing_keys = v["routing_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| Hash::from_blake3_digest(arr32(k)))
        .collect();
    DescriptorBuilder::new(
        Hash::from_blake3_digest(arr32(&v["schema_hash"])),
        Timestamp::from_micros(v["timestamp"].as_u64().unwrap()),
    )
    .topic(v["topic"].as_str().unwrap())
    .payload(hex(&v["payload"]))
    .sequence(v["sequence"].as_u64().unwrap())
    .ttl(v["ttl"].as_u64().unwrap() as u32)
    .routing_keys(routing_keys)
    .sign(&kp)
    .unwrap()
}

fn vector_descriptors() -> Vec<Descriptor> {
    load("descriptors.json")
        .as_array()
        .unwrap()
        .iter()
        .map(rebuild)
        .collect()
}

#[test]
fn descriptors_rebuild_byte_identical() {
    let vs = load("descriptors.json");
    for (i, v) in vs.as_array().unwrap().iter().enumerate() {
        let d = rebuild(v);
        if let Some(c) = v.get("canonical_cbor") {
            assert_eq!(
                hex::encode(d.canonical_cbor()),
                c.as_str().unwrap(),
                "vector {i}"
            );
        }
        assert_eq!(d.id.to_hex(), v["id"].as_str().unwrap(), "id of vector {i}");
        assert_eq!(
            hex::encode(d.signature.as_bytes()),
            v["signature"].as_str().unwrap(),
            "signature of vector {i}"
        );
        assert_eq!(d.publisher.public_key(), &arr32(&v["public_key"]));
        assert_eq!(d.publisher.did(), v["did"].as_str().unwrap());
        assert_eq!(
            Identity::from_did(v["did"].as_str().unwrap()).unwrap(),
            d.publisher
        );
        assert_eq!(
            d.publisher.node_id().to_string(),
            v["node_id"].as_str().unwrap()
        );
        let now = d
            .timestamp
            .saturating_add(std::time::Duration::from_secs(1));
        let valid = d.clone().validate(now).expect("vector validates");
        assert_eq!(*valid, d);
    }
}

#[test]
fn hashes_compute() {
    let v = load("hashes.json");
    for s in v["schema_hashes"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let expect = s["blake3"].as_str().unwrap();
        assert_eq!(schema::schema_hash(name).to_hex(), expect, "{name}");
        assert_eq!(
            Hash::blake3(s["input"].as_str().unwrap().as_bytes()).to_hex(),
            expect
        );
        let known = schema::WELL_KNOWN
            .iter()
            .find(|w| w.name() == name)
            .unwrap_or_else(|| panic!("{name} is not among our well-known schemas"));
        assert_eq!(known.hash().to_hex(), expect);
    }
    assert_eq!(
        v["schema_hashes"].as_array().unwrap().len(),
        schema::WELL_KNOWN.len()
    );
    for r in v["routing_keys"].as_array().unwrap() {
        let t = r["type"].as_str().unwrap();
        assert_eq!(
            schema::routing_key(t).to_hex(),
            r["blake3"].as_str().unwrap(),
            "{t}"
        );
    }
    let hier: Vec<String> = schema::hierarchical_keys("compute/inference/text-generation")
        .iter()
        .map(Hash::to_hex)
        .collect();
    let expect: Vec<&str> = v["hierarchical_compute/inference/text-generation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(hier, expect);
}

/// The message each named vector must decode to, built from the README's
/// description and descriptors.json.
fn expected(name: &str) -> Message {
    use mars_proto::wire::*;
    let k1 = key(1).identity();
    let k2 = key(2).identity();
    let here = NodeAddr::quic("127.0.0.1:4433");
    let ds = vector_descriptors();
    let nodes = vec![
        NodeInfo {
            identity: k1,
            addr: here.clone(),
            last_seen: Timestamp::from_micros(1_700_000_000_000_000),
        },
        NodeInfo {
            identity: k2,
            addr: NodeAddr::quic("[::1]:5000"),
            last_seen: Timestamp::ZERO,
        },
    ];
    let compute = schema::routing_key("compute");
    match name {
        "ping" => Message::Ping(Ping {
            sender: k1,
            sender_addr: here,
        }),
        "pong" => Message::Pong(Pong {
            sender: k1,
            sender_addr: here,
            observed_addr: NodeAddr::quic("203.0.113.1:12345"),
        }),
        "store" => Message::Store(Store {
            sender: k1,
            sender_addr: here,
            descriptor: ds[0].clone().into(),
        }),
        "store_ack_stored" => Message::StoreAck(StoreAck {
            stored: true,
            reason: None,
        }),
        "store_ack_refused" => Message::StoreAck(StoreAck {
            stored: false,
            reason: Some("capacity exceeded".into()),
        }),
        "find_node" => Message::FindNode(FindNode {
            sender: k1,
            sender_addr: here,
            target: Hash::blake3(b"target key"),
        }),
        "find_node_result" => Message::FindNodeResult(FindNodeResult { nodes }),
        "find_value" => Message::FindValue(FindValue {
            sender: k1,
            sender_addr: here,
            key: compute,
            max_results: 20,
            filters: None,
        }),
        "find_value_filtered" => Message::FindValue(FindValue {
            sender: k1,
            sender_addr: here,
            key: compute,
            max_results: 5,
            filters: Some(Box::new(Filters {
                schema_hash: Some(schema::CORE_CAPABILITY.hash()),
                min_timestamp: Some(Timestamp::from_micros(1_600_000_000_000_000)),
                publisher: Some(k2),
            })),
        }),
        "find_value_result_descriptors" => {
            Message::FindValueResult(FindValueResult::Descriptors(ds))
        }
        "find_value_result_nodes" => Message::FindValueResult(FindValueResult::Nodes(nodes)),
        other => panic!("vector {other} has no expectation: add one"),
    }
}

fn check_frames(file: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for v in load(file).as_array().unwrap() {
        let name = v["name"].as_str().unwrap().to_owned();
        let bytes = hex(&v["hex"]);
        let frame = Frame::decode(&bytes).unwrap_or_else(|e| panic!("{file} {name}: {e}"));
        assert_eq!(frame.msg_id, MSG_ID, "{file} {name}");
        assert_eq!(
            frame.message.message_type().byte() as u64,
            v["msg_type"].as_u64().unwrap(),
            "{file} {name}"
        );
        assert_eq!(frame.message, expected(&name), "{file} {name}");
        if let Message::Store(s) = &frame.message {
            let now = s
                .descriptor
                .timestamp
                .saturating_add(std::time::Duration::from_secs(1));
            s.descriptor.check(now).unwrap();
        }
        if let Message::FindValueResult(FindValueResult::Descriptors(ds)) = &frame.message {
            let now = ds[0]
                .timestamp
                .saturating_add(std::time::Duration::from_secs(1));
            for r in mars_proto::validate_batch(ds.clone(), now) {
                r.unwrap();
            }
        }
        out.push((name, bytes));
    }
    out
}

#[test]
fn reference_frames_decode() {
    let frames = check_frames("frames.json");
    assert_eq!(frames.len(), 11);
}

#[test]
fn compact_frames_decode_and_match_our_encoding_byte_for_byte() {
    for (name, bytes) in check_frames("frames_compact.json") {
        let ours = Frame::new(MSG_ID, expected(&name)).encode();
        assert_eq!(hex::encode(&ours), hex::encode(&bytes), "{name}");
    }
}

#[test]
fn compact_store_is_smaller_than_the_reference() {
    let find = |file: &str| {
        load(file)
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "store")
            .map(|v| hex(&v["hex"]).len())
            .unwrap()
    };
    assert_eq!(find("frames.json"), 24 + 742);
    assert_eq!(find("frames_compact.json"), 24 + 532);
}

#[test]
fn invalid_frames_are_refused_with_typed_errors() {
    for v in load("invalid_frames.json").as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let bytes = hex(&v["hex"]);
        let err = Frame::decode(&bytes).expect_err(name);
        let ok = match name {
            "bad_magic" => matches!(err, DecodeError::BadMagic { found: 0x4d49 }),
            "bad_version" => matches!(err, DecodeError::UnsupportedVersion { found: 2 }),
            "short_header" => matches!(err, DecodeError::ShortHeader { len: 23 }),
            "truncated_body" => matches!(
                err,
                DecodeError::TruncatedBody {
                    declared: 142,
                    present: 141
                }
            ),
            "trailing_bytes" => matches!(err, DecodeError::TrailingBytes { extra: 1 }),
            "huge_body_len" => matches!(
                err,
                DecodeError::BodyTooLarge {
                    declared: 0xffff_ffff,
                    ..
                }
            ),
            "unknown_msg_type" => matches!(err, DecodeError::UnknownMessageType { found: 5 }),
            "indefinite_map" => matches!(
                err,
                DecodeError::Cbor {
                    source: mars_proto::wire::CborError::IndefiniteLength,
                    ..
                }
            ),
            "duplicate_key" => {
                matches!(err, DecodeError::DuplicateField { field } if field.name == "sender")
            }
            "self_describe_tag" => matches!(
                err,
                DecodeError::Cbor {
                    source: mars_proto::wire::CborError::SelfDescribeTag,
                    ..
                }
            ),
            "find_value_result_both" => matches!(err, DecodeError::BothDescriptorsAndNodes),
            "find_value_result_neither" => matches!(err, DecodeError::NeitherDescriptorsNorNodes),
            other => panic!("invalid vector {other} has no expectation: add one"),
        };
        assert!(ok, "{name}: refused, but for the wrong reason: {err}");
        // The message a person reads is not empty.
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn find_value_result_descriptor_count_is_bounded_by_the_request() {
    let v = load("frames_compact.json");
    let bytes = v
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "find_value_result_descriptors")
        .map(|v| hex(&v["hex"]))
        .unwrap();
    let limits = DecodeLimits {
        max_descriptors: 1,
        ..DecodeLimits::default()
    };
    let err = Frame::decode_response(&bytes, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooManyItems {
                count: 2,
                max: 1,
                ..
            }
        ),
        "{err}"
    );
    // A response where a request is expected is refused by direction.
    assert!(matches!(
        Frame::decode_request(&bytes, &DecodeLimits::default()),
        Err(DecodeError::WrongDirection { found: 0x84, .. })
    ));
    assert_eq!(
        MessageType::FindValue.response(),
        MessageType::FindValueResult
    );
    let _ = NodeAddr::quic("x:1");
}

#[test]
fn borrowed_descriptor_results_encode_like_messages() {
    let ds = vector_descriptors();
    let mut out = Vec::new();
    mars_proto::wire::encode_descriptors_result(MSG_ID, ds.iter(), &mut out);
    let expect = Frame::new(
        MSG_ID,
        Message::FindValueResult(FindValueResult::Descriptors(ds)),
    )
    .encode();
    assert_eq!(out, expect);
}

#[test]
fn borrowed_node_results_encode_like_messages() {
    let Message::FindNodeResult(r) = expected("find_node_result") else {
        panic!("find_node_result is a FIND_NODE_RESULT");
    };
    let refs = || r.nodes.iter().map(|n| (&n.identity, &n.addr, n.last_seen));
    let mut out = Vec::new();
    mars_proto::wire::encode_find_node_result(MSG_ID, refs(), &mut out);
    let expect = Frame::new(MSG_ID, Message::FindNodeResult(r.clone())).encode();
    assert_eq!(out, expect);
    out.clear();
    mars_proto::wire::encode_find_value_nodes(MSG_ID, refs(), &mut out);
    let expect = Frame::new(
        MSG_ID,
        Message::FindValueResult(FindValueResult::Nodes(r.nodes.clone())),
    )
    .encode();
    assert_eq!(out, expect);
}
