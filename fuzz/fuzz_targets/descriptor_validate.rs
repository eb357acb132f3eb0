//! Arbitrary bytes as a descriptor in wire form, then validation.
//!
//! Checks, besides "never panics, never overflows, never hangs":
//! - `descriptor_from_cbor` Ok ⇒ `to_cbor` then decode again gives an equal
//!   descriptor;
//! - at `now` = its own timestamp + 1 s, `Descriptor::validate` and
//!   `validate_batch` give the same verdict (the same `Result`, error or
//!   valid descriptor), alone and in a batch next to a valid descriptor;
//! - a second pass re-signs the decoded fields with a fixed key (fresh id and
//!   signature), so the time and size rules (3–8) are reached too: there the
//!   verdict must not be an id or signature error, the two validators must
//!   still agree, and a valid result must respect every limit.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mars_proto::wire::{DecodeLimits, descriptor_from_cbor};
use mars_proto::{
    Descriptor, DescriptorBuilder, Keypair, Timestamp, ValidationError, descriptor_limits,
    schema, validate_batch,
};

fn key() -> &'static Keypair {
    static KEY: OnceLock<Keypair> = OnceLock::new();
    KEY.get_or_init(|| Keypair::from_secret_bytes(&[0x2a; 32]))
}

/// A descriptor that is valid at `now` (whenever `now` is not at the end of time).
fn good(timestamp: Timestamp) -> Descriptor {
    DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), timestamp)
        .topic("fuzz")
        .payload(b"ok".to_vec())
        .routing_keys(schema::hierarchical_keys("fuzz/target"))
        .sign(key())
        .expect("the reference descriptor signs")
}

/// Runs both validators on `d` and checks they agree; returns the verdict.
fn validate_both(d: &Descriptor, now: Timestamp) -> Result<(), ValidationError> {
    let single = d.clone().validate(now);
    let mut batch = validate_batch(vec![d.clone()], now);
    assert_eq!(batch.len(), 1);
    assert_eq!(single, batch.remove(0), "validate and validate_batch disagree\n{d:?}");

    // Next to a valid one: a failing batch falls back to one-by-one checks.
    let other = good(d.timestamp);
    let other_single = other.clone().validate(now);
    let pair = validate_batch(vec![d.clone(), other], now);
    assert_eq!(pair.len(), 2);
    assert_eq!(single, pair[0], "validate_batch with a neighbour disagrees\n{d:?}");
    assert_eq!(other_single, pair[1], "a bad neighbour changed a good descriptor's verdict");

    if let Ok(v) = &single {
        assert_eq!(v.descriptor(), d);
        assert!(v.expires_at() > now);
        assert!(!v.is_expired(now));
    }
    single.map(|_| ())
}

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    let Ok(d) = descriptor_from_cbor(data, &limits) else {
        return;
    };

    // Wire round trip.
    let wire = d.to_cbor();
    let again = descriptor_from_cbor(&wire, &limits).unwrap_or_else(|e| {
        panic!("re-encoded descriptor refused: {e}\n{d:?}\nencoded: {wire:02x?}")
    });
    assert_eq!(d, again, "decode → to_cbor → decode changed the descriptor");

    let now = d.timestamp.saturating_add(Duration::from_secs(1));
    let _ = validate_both(&d, now);

    // Re-signed: same fields, fresh id and signature, so rules 3–8 decide.
    let mut signed = d;
    signed.publisher = key().identity();
    signed.id = signed.compute_id();
    signed.signature = key().sign(signed.id.digest());
    match validate_both(&signed, now) {
        Err(e @ (ValidationError::IdMismatch { .. } | ValidationError::BadSignature { .. })) => {
            panic!("a freshly signed descriptor failed rule 1/2: {e}\n{signed:?}")
        }
        Err(_) => {}
        Ok(()) => {
            assert!(
                (descriptor_limits::MIN_TTL_SECS..=descriptor_limits::MAX_TTL_SECS)
                    .contains(&signed.ttl)
            );
            assert!(
                (descriptor_limits::MIN_ROUTING_KEYS..=descriptor_limits::MAX_ROUTING_KEYS)
                    .contains(&signed.routing_keys.len())
            );
            assert!(signed.payload.len() <= descriptor_limits::MAX_PAYLOAD_LEN);
            assert!(signed.topic.len() <= descriptor_limits::MAX_TOPIC_LEN);
        }
    }
});
