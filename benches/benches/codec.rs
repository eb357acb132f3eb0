//! Frame encode/decode, ours vs the reference (`mesh-core` 0.1.1), one
//! criterion group per message: `ping/ours/encode`, `ping/mesh-core/encode`…
//!
//! Each decoder is measured on both encodings that can reach it: the
//! reference's bytes (byte fields as CBOR integer arrays, what a reference
//! peer sends) and ours (byte strings, what we send). Also descriptor
//! validation, ours vs the reference.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{Case, DescriptorSpec, NOW, ref_decode, ref_encode};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mars_proto::Timestamp;
use mars_proto::wire::Frame;

fn sizes(cases: &[Case]) {
    eprintln!("\nframe sizes (header + body), bytes:");
    eprintln!(
        "{:<20} {:>8} {:>10} {:>7}",
        "message", "ours", "mesh-core", "ours %"
    );
    for case in cases {
        let (ours, theirs) = (case.our_bytes().len(), case.ref_bytes().len());
        eprintln!(
            "{:<20} {:>8} {:>10} {:>6.1}%",
            case.name,
            ours,
            theirs,
            100.0 * ours as f64 / theirs as f64
        );
    }
    eprintln!();
}

fn codec(c: &mut Criterion) {
    let mut cases = common::cases();
    cases.push(common::store_1k_case());
    for case in &cases {
        case.check();
    }
    sizes(&cases);

    for case in &cases {
        let ours_bytes = case.our_bytes();
        let ref_bytes = case.ref_bytes();
        let mut g = c.benchmark_group(case.name);

        g.bench_function("ours/encode", |b| b.iter(|| black_box(&case.ours).encode()));
        let mut buf = Vec::with_capacity(2 * ours_bytes.len());
        g.bench_function("ours/encode_into", |b| {
            b.iter(|| {
                buf.clear();
                black_box(&case.ours).encode_into(&mut buf);
                black_box(buf.len())
            })
        });
        g.bench_function("ours/decode", |b| {
            b.iter(|| Frame::decode(black_box(&ours_bytes)).unwrap())
        });
        g.bench_function("ours/decode_ref_bytes", |b| {
            b.iter(|| Frame::decode(black_box(&ref_bytes)).unwrap())
        });
        g.bench_function("mesh-core/encode", |b| {
            b.iter(|| ref_encode(case.msg_type, black_box(&case.reference)))
        });
        g.bench_function("mesh-core/decode", |b| {
            b.iter(|| ref_decode(black_box(&ref_bytes)).unwrap())
        });
        g.bench_function("mesh-core/decode_compact", |b| {
            b.iter(|| ref_decode(black_box(&ours_bytes)).unwrap())
        });
        g.finish();
    }
}

fn validate(c: &mut Criterion) {
    let now = Timestamp::from_micros(NOW);
    for (name, spec) in [
        ("validate", DescriptorSpec::c3()),
        (
            "validate_1k",
            DescriptorSpec::random_payload(1, 1024, 0x4d48),
        ),
    ] {
        let ours = spec.ours();
        let theirs = spec.reference();
        ours.check(now).expect("ours validates");
        theirs.validate(NOW).expect("REF validates");

        let mut g = c.benchmark_group(name);
        // `validate` consumes the descriptor; the clone is made outside the
        // timed part.
        g.bench_function("ours", |b| {
            b.iter_batched(
                || ours.clone(),
                |d| d.validate(black_box(now)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("mesh-core", |b| {
            b.iter(|| black_box(&theirs).validate(black_box(NOW)).unwrap())
        });
        g.finish();
    }
}

fn config() -> Criterion {
    // Two noisy cores: short runs, enough samples for a stable median.
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = codec, validate
}
criterion_main!(benches);
