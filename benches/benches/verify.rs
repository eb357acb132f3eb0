//! Signature verification of 20 descriptors: one `validate_batch` call vs
//! 20 single `Descriptor::validate` calls (and the reference's 20 single
//! validations). Criterion reports the time for all 20 and, through the
//! element throughput, the rate per signature. The same at 64 descriptors
//! shows how the batch gain grows with the batch.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{DescriptorSpec, NOW};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mars_proto::{Descriptor, Timestamp, validate_batch};

fn verify(c: &mut Criterion) {
    verify_n(c, 20);
    verify_n(c, 64);
}

fn verify_n(c: &mut Criterion, n: usize) {
    let now = Timestamp::from_micros(NOW);
    // `n` publishers, each with a 256-byte random payload.
    let specs: Vec<DescriptorSpec> = (1..=n as u8)
        .map(|k| DescriptorSpec::random_payload(k, 256, u64::from(k)))
        .collect();
    let ours: Vec<Descriptor> = specs.iter().map(DescriptorSpec::ours).collect();
    let theirs: Vec<mesh_core::Descriptor> = specs.iter().map(DescriptorSpec::reference).collect();
    assert!(validate_batch(ours.clone(), now).iter().all(Result::is_ok));
    assert!(ours.iter().all(|d| d.check(now).is_ok()));
    assert!(theirs.iter().all(|d| d.validate(NOW).is_ok()));

    let mut g = c.benchmark_group(format!("verify{n}"));
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("ours/validate_batch", |b| {
        b.iter_batched(
            || ours.clone(),
            |ds| validate_batch(ds, black_box(now)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function(format!("ours/validate_single_x{n}"), |b| {
        b.iter_batched(
            || ours.clone(),
            |ds| {
                let mut out = Vec::with_capacity(n);
                for d in ds {
                    out.push(d.validate(black_box(now)));
                }
                out
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function(format!("mesh-core/validate_single_x{n}"), |b| {
        b.iter(|| {
            black_box(&theirs)
                .iter()
                .map(|d| d.validate(black_box(NOW)))
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = verify
}
criterion_main!(benches);
