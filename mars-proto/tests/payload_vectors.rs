//! The `core/capability` payload vectors (../shared/vectors/payloads.json):
//! payload bytes exactly as the live network's publishers write them — JSON
//! from the reference gateway (and so every SDK), CBOR from the reference
//! Rust client. Every one must decode to its `expect` fields.

use mars_proto::schema::capability::{Capability, PayloadEncoding};
use mars_proto::schema::{CORE_CAPABILITY, hierarchical_keys};
use mars_proto::{Keypair, Timestamp};
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/payloads.json"
);

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| {
        panic!(
            "payload vector file {VECTORS} is missing ({e}); the tests need ../shared/vectors beside the workspace"
        )
    });
    let doc: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{VECTORS}: not JSON: {e}"));
    let payloads = doc["payloads"]
        .as_array()
        .unwrap_or_else(|| panic!("{VECTORS}: no \"payloads\" array"))
        .clone();
    assert!(!payloads.is_empty(), "{VECTORS}: no payloads");
    payloads
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v["hex"].as_str().expect("hex string")).expect("valid hex")
}

#[test]
fn every_payload_decodes_to_its_expected_fields() {
    for (i, v) in vectors().iter().enumerate() {
        let source = v["source"].as_str().unwrap_or("?");
        let expect = &v["expect"];
        let cap = Capability::decode(&bytes(v))
            .unwrap_or_else(|e| panic!("payload {i} ({source}) does not decode: {e}"));
        assert_eq!(
            cap.type_path().as_str(),
            expect["type"].as_str().expect("expect.type"),
            "payload {i} ({source}): type"
        );
        assert_eq!(
            cap.endpoint().address(),
            expect["endpoint"].as_str().expect("expect.endpoint"),
            "payload {i} ({source}): endpoint"
        );
        let want_params = match &expect["params"] {
            Value::Null => None,
            p => Some(p),
        };
        assert_eq!(cap.params(), want_params, "payload {i} ({source}): params");
        // None of the live publishers writes the spec's other fields.
        assert_eq!(cap.version(), None, "payload {i} ({source}): version");
        assert!(cap.constraints().is_none() && cap.metadata().is_none());
    }
}

#[test]
fn both_encodings_are_present_and_detected() {
    let encodings: Vec<PayloadEncoding> = vectors()
        .iter()
        .map(|v| PayloadEncoding::detect(&bytes(v)))
        .collect();
    assert!(encodings.contains(&PayloadEncoding::Json));
    assert!(encodings.contains(&PayloadEncoding::Cbor));
}

#[test]
fn we_reencode_what_the_reference_client_wrote_byte_for_byte() {
    // Our CBOR for the same fields is the reference client's CBOR exactly,
    // and a JSON payload re-encodes to CBOR that decodes to the same value.
    for (i, v) in vectors().iter().enumerate() {
        let original = bytes(v);
        let cap = Capability::decode(&original).expect("decodes");
        let ours = cap.to_cbor();
        if PayloadEncoding::detect(&original) == PayloadEncoding::Cbor {
            assert_eq!(
                hex::encode(&ours),
                hex::encode(&original),
                "payload {i}: re-encoding differs"
            );
        }
        assert_eq!(Capability::decode(&ours).expect("ours decodes"), cap);
    }
}

#[test]
fn decoded_payloads_republish_as_valid_descriptors() {
    let key = Keypair::from_secret_bytes(&[1; 32]);
    let now = Timestamp::from_secs(1_700_000_000);
    for v in vectors() {
        let cap = Capability::decode(&bytes(&v)).expect("decodes");
        let d = cap
            .sign(&key, now, 1)
            .expect("signs")
            .validate(now)
            .expect("valid");
        assert_eq!(d.schema_hash, CORE_CAPABILITY.hash());
        assert_eq!(d.topic, cap.type_path().as_str());
        assert_eq!(d.routing_keys, hierarchical_keys(cap.type_path().as_str()));
        assert_eq!(Capability::from_descriptor(&d).expect("reads back"), cap);
    }
}
