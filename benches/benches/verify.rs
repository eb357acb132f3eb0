//! Signature verification of 20 descriptors: one `validate_batch` call vs
//! 20 single `Descriptor::validate` calls (and the reference's 20 single
//! validations). Criterion reports the time for all 20 and, through the
//! element throughput, the rate per signature. The same at 64 descriptors
//! shows how the batch gain grows with the batch.
//!
//! Criterion measures the batch and the singles seconds apart, so on a
//! busy machine their ratio moves with the load. After criterion,
//! `paired_ratio` measures them interleaved (a batch, then the same
//! descriptors one by one, round after round) and prints on stderr the
//! median of the per-round speed-ups, which load slows alike on both sides.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{DescriptorSpec, NOW};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mars_proto::{Descriptor, Timestamp, validate_batch};

fn verify(c: &mut Criterion) {
    verify_n(c, 20);
    verify_n(c, 64);
    for n in [20, 64] {
        paired_ratio(n, if cfg!(debug_assertions) { 2 } else { 300 });
    }
}

/// Benchmark timing, the one place this file reads a monotonic clock.
#[allow(clippy::disallowed_methods)]
fn start_timer() -> std::time::Instant {
    std::time::Instant::now()
}

/// `n` descriptors from distinct publishers, each with a 256-byte random
/// payload, all valid at `now`.
fn descriptors(n: usize) -> Vec<Descriptor> {
    (1..=n as u8)
        .map(|k| DescriptorSpec::random_payload(k, 256, u64::from(k)).ours())
        .collect()
}

/// Batch vs one-by-one, interleaved: each round validates the same `n`
/// descriptors once as a batch and once one by one (in alternating order).
fn paired_ratio(n: usize, rounds: usize) {
    let now = Timestamp::from_micros(NOW);
    let ours = descriptors(n);
    let mut speedups = Vec::with_capacity(rounds);
    let (mut batch_us, mut single_us) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let batch = || {
            let ds = ours.clone();
            let t = start_timer();
            let r = validate_batch(ds, black_box(now));
            let e = t.elapsed();
            assert!(r.iter().all(Result::is_ok));
            e
        };
        let single = || {
            let ds = ours.clone();
            let t = start_timer();
            let ok = ds.into_iter().all(|d| d.validate(black_box(now)).is_ok());
            let e = t.elapsed();
            assert!(ok);
            e
        };
        let (b, s) = if round % 2 == 0 {
            let b = batch();
            (b, single())
        } else {
            let s = single();
            (batch(), s)
        };
        speedups.push(s.as_secs_f64() / b.as_secs_f64());
        batch_us.push(b.as_secs_f64() * 1e6 / n as f64);
        single_us.push(s.as_secs_f64() * 1e6 / n as f64);
    }
    let quartiles = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (at(0.25), at(0.5), at(0.75))
    };
    let (q1, m, q3) = quartiles(speedups);
    let (_, b, _) = quartiles(batch_us);
    let (_, s, _) = quartiles(single_us);
    eprintln!(
        "paired verify, N = {n}, {rounds} rounds: batch {b:.1} µs/signature, single {s:.1} µs/signature; \
         speed-up per round: median {m:.3} [q1 {q1:.3}, q3 {q3:.3}]"
    );
}

fn verify_n(c: &mut Criterion, n: usize) {
    let now = Timestamp::from_micros(NOW);
    // `n` publishers, each with a 256-byte random payload.
    let specs: Vec<DescriptorSpec> = (1..=n as u8)
        .map(|k| DescriptorSpec::random_payload(k, 256, u64::from(k)))
        .collect();
    let ours = descriptors(n);
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
