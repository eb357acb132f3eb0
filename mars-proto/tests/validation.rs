//! The eight validation rules, each with its own error and numbers, in the
//! spec's order; batch verification finds exactly the bad ones.

use std::time::Duration;

use mars_proto::{
    Descriptor, DescriptorBuilder, Hash, Keypair, Signature, Timestamp, ValidationError, schema,
    validate_batch,
};

const T0: Timestamp = Timestamp::from_secs(1_700_000_000);

fn key() -> Keypair {
    Keypair::from_secret_bytes(&[5; 32])
}

fn builder() -> DescriptorBuilder {
    DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), T0)
        .topic("t")
        .payload(vec![1, 2, 3])
        .routing_keys(schema::hierarchical_keys("compute/x"))
}

fn good() -> Descriptor {
    builder().sign(&key()).unwrap()
}

/// Changes a field and re-signs, so only the rule under test can fail.
fn resigned(f: impl FnOnce(&mut Descriptor)) -> Descriptor {
    let mut d = good();
    f(&mut d);
    d.id = d.compute_id();
    d.signature = key().sign(d.id.digest());
    d
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_good_descriptor_validates_and_knows_its_expiry() {
    let v = good().validate(T0).unwrap();
    assert_eq!(v.expires_at(), T0.saturating_add(secs(3600)));
    assert!(!v.is_expired(T0));
    assert!(v.is_expired(T0.saturating_add(secs(3600))));
}

#[test]
fn rule1_id_must_recompute() {
    let mut d = good();
    d.payload.push(0);
    let err = d.clone().validate(T0).unwrap_err();
    assert_eq!(
        err,
        ValidationError::IdMismatch {
            declared: Box::new(good().id),
            computed: Box::new(d.compute_id())
        }
    );
    assert!(err.to_string().contains(&good().id.to_hex()));
}

#[test]
fn rule2_signature_must_verify() {
    let mut d = good();
    d.signature = Signature::from_bytes([9; 64]);
    assert!(matches!(
        d.validate(T0),
        Err(ValidationError::BadSignature { .. })
    ));
    // Signed by someone else.
    let mut d = good();
    d.signature = Keypair::from_secret_bytes(&[6; 32]).sign(d.id.digest());
    assert!(matches!(
        d.validate(T0),
        Err(ValidationError::BadSignature { .. })
    ));
}

#[test]
fn rule3_expiry_counts_from_the_earlier_of_timestamp_and_now() {
    let d = resigned(|d| d.ttl = 60);
    let at = T0.saturating_add(secs(60));
    assert_eq!(
        d.clone().validate(at).unwrap_err(),
        ValidationError::Expired {
            expired_at: at,
            now: at
        }
    );
    assert!(d.clone().validate(T0.saturating_add(secs(59))).is_ok());
    // A future timestamp earns no bonus lifetime: expiry = now + ttl.
    let future = resigned(|d| {
        d.ttl = 60;
        d.timestamp = T0.saturating_add(secs(100));
    });
    assert_eq!(
        future.check(T0).unwrap().expires_at(),
        T0.saturating_add(secs(60))
    );
    let msg = d.validate(at).unwrap_err().to_string();
    assert!(msg.contains("1700000060"), "{msg}");
}

#[test]
fn rule4_timestamp_at_most_120s_ahead() {
    let d = resigned(|d| d.timestamp = T0.saturating_add(secs(121)));
    let err = d.validate(T0).unwrap_err();
    assert!(matches!(
        err,
        ValidationError::TimestampInFuture {
            max_skew_secs: 120,
            ..
        }
    ));
    assert!(err.to_string().contains("120 s"), "{err}");
    let edge = resigned(|d| d.timestamp = T0.saturating_add(secs(120)));
    assert!(edge.validate(T0).is_ok());
}

#[test]
fn rule5_ttl_range() {
    for (ttl, ok) in [(59, false), (60, true), (86_400, true), (86_401, false)] {
        let d = resigned(|d| d.ttl = ttl);
        match d.validate(T0) {
            Ok(_) => assert!(ok, "ttl {ttl}"),
            Err(e) => {
                assert!(!ok, "ttl {ttl}");
                assert_eq!(
                    e,
                    ValidationError::TtlOutOfRange {
                        ttl,
                        min: 60,
                        max: 86_400
                    }
                );
                assert_eq!(
                    e.to_string(),
                    format!("ttl {ttl} s is outside 60..=86400 s")
                );
            }
        }
    }
}

#[test]
fn rule6_routing_key_count() {
    let none = resigned(|d| d.routing_keys.clear());
    assert_eq!(
        none.validate(T0).unwrap_err(),
        ValidationError::RoutingKeyCount {
            count: 0,
            min: 1,
            max: 8
        }
    );
    let nine = resigned(|d| d.routing_keys = vec![Hash::blake3(b"k"); 9]);
    assert_eq!(
        nine.validate(T0).unwrap_err(),
        ValidationError::RoutingKeyCount {
            count: 9,
            min: 1,
            max: 8
        }
    );
    assert!(
        resigned(|d| d.routing_keys = vec![Hash::blake3(b"k"); 8])
            .validate(T0)
            .is_ok()
    );
}

#[test]
fn rule7_payload_size() {
    assert!(
        resigned(|d| d.payload = vec![0; 65_536])
            .validate(T0)
            .is_ok()
    );
    let big = resigned(|d| d.payload = vec![0; 65_537]);
    assert_eq!(
        big.validate(T0).unwrap_err(),
        ValidationError::PayloadTooLarge {
            len: 65_537,
            max: 65_536
        }
    );
}

#[test]
fn rule8_topic_size() {
    assert!(resigned(|d| d.topic = "x".repeat(255)).validate(T0).is_ok());
    let long = resigned(|d| d.topic = "x".repeat(256));
    assert_eq!(
        long.validate(T0).unwrap_err(),
        ValidationError::TopicTooLong { len: 256, max: 255 }
    );
}

#[test]
fn the_first_failing_rule_is_reported() {
    // Bad id and bad everything else: the id is reported.
    let mut d = resigned(|d| {
        d.ttl = 1;
        d.topic = "x".repeat(300);
    });
    d.sequence += 1;
    assert!(matches!(
        d.validate(T0),
        Err(ValidationError::IdMismatch { .. })
    ));
    // Expired and bad ttl: expiry comes first.
    let d = resigned(|d| d.ttl = 1);
    assert!(matches!(
        d.validate(T0.saturating_add(secs(5))),
        Err(ValidationError::Expired { .. })
    ));
}

#[test]
fn the_builder_refuses_what_validation_would() {
    assert!(matches!(
        builder().ttl(10).sign(&key()),
        Err(ValidationError::TtlOutOfRange { ttl: 10, .. })
    ));
    assert!(matches!(
        builder().routing_keys(vec![]).sign(&key()),
        Err(ValidationError::RoutingKeyCount { count: 0, .. })
    ));
}

/// `n` valid descriptors, each from its own publisher, that also pass as a
/// batch.
fn valid_from_distinct_publishers(n: u64) -> Vec<Descriptor> {
    let ds: Vec<Descriptor> = (0..n)
        .map(|i| {
            builder()
                .sequence(i)
                .sign(&Keypair::from_secret_bytes(&[i as u8 + 1; 32]))
                .unwrap()
        })
        .collect();
    for r in validate_batch(ds.clone(), T0) {
        r.unwrap();
    }
    ds
}

/// More descriptors than one batch equation takes: they are verified in
/// chunks, and a forgery sends only its own chunk to one-by-one checks —
/// the verdicts are those of single validation either way.
#[test]
fn large_batches_are_verified_in_chunks_with_the_same_verdicts() {
    let mut ds = valid_from_distinct_publishers(70);
    // One forgery in the first chunk, one in the last.
    ds[5].signature = Signature::from_bytes([1; 64]);
    ds[69].signature = ds[68].signature;
    let singles: Vec<_> = ds.iter().map(|d| d.check(T0)).collect();
    let batch = validate_batch(ds, T0);
    assert_eq!(batch, singles);
    let bad: Vec<usize> = (0..70).filter(|&i| batch[i].is_err()).collect();
    assert_eq!(bad, vec![5, 69]);
}

#[test]
fn batch_agrees_with_single_validation() {
    let mut ds = valid_from_distinct_publishers(20);
    // Break some in different ways: the fallback finds exactly those.
    ds[3].signature = Signature::from_bytes([1; 64]);
    ds[7].payload.push(9);
    ds[11] = resigned(|d| d.ttl = 5);
    ds[15].signature = ds[14].signature;
    let singles: Vec<_> = ds.iter().map(|d| d.check(T0)).collect();
    let batch = validate_batch(ds, T0);
    assert_eq!(batch, singles);
    let bad: Vec<usize> = batch
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(bad, vec![3, 7, 11, 15]);
    assert!(validate_batch(vec![], T0).is_empty());
}
