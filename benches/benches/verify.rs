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
//! It does the same with ed25519-dalek alone (`verify_batch` vs `verify`
//! on the same signatures), the ceiling `validate_batch` can reach.
//!
//! The single verify's speed depends on where the process's stack lands
//! (measured here: 29 µs in most processes, 33–43 µs in some, for the
//! same binary and input), so a ratio is only meaningful within one run,
//! and a run whose single verify is slow overstates the batch gain:
//! compare the µs per signature between runs before the ratios.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{DescriptorSpec, NOW};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
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
/// descriptors once as a batch and once one by one (in alternating order),
/// then does the same with ed25519-dalek alone on the same signatures
/// (`verify_batch` against `verify`, each decompressing the keys from
/// their 32 bytes as a validation must). The second pair is the ceiling
/// for the first: `validate_batch` wraps that very `verify_batch`.
fn paired_ratio(n: usize, rounds: usize) {
    let now = Timestamp::from_micros(NOW);
    let ours = descriptors(n);
    let messages: Vec<&[u8]> = ours.iter().map(|d| d.id.digest()).collect();
    let signatures: Vec<Signature> = ours
        .iter()
        .map(|d| Signature::from_bytes(d.signature.as_bytes()))
        .collect();
    let keys: Vec<[u8; 32]> = ours.iter().map(|d| *d.publisher.public_key()).collect();
    let key = |bytes: &[u8; 32]| VerifyingKey::from_bytes(black_box(bytes)).expect("a curve point");
    let mut ours_us = Samples::default();
    let mut dalek_us = Samples::default();
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
        let dalek_batch = || {
            let t = start_timer();
            let ks: Vec<VerifyingKey> = keys.iter().map(key).collect();
            let ok = ed25519_dalek::verify_batch(black_box(&messages), &signatures, &ks).is_ok();
            let e = t.elapsed();
            assert!(ok);
            e
        };
        let dalek_single = || {
            let t = start_timer();
            let ok = keys
                .iter()
                .zip(&messages)
                .zip(&signatures)
                .all(|((k, m), s)| key(k).verify(black_box(m), s).is_ok());
            let e = t.elapsed();
            assert!(ok);
            e
        };
        if round % 2 == 0 {
            ours_us.push(n, batch(), single());
            dalek_us.push(n, dalek_batch(), dalek_single());
        } else {
            let s = dalek_single();
            dalek_us.push(n, dalek_batch(), s);
            let s = single();
            ours_us.push(n, batch(), s);
        }
    }
    for (what, samples) in [
        ("validate_batch vs validate", ours_us),
        ("ed25519-dalek alone", dalek_us),
    ] {
        let (b, s, (q1, m, q3)) = samples.medians();
        eprintln!(
            "paired verify, N = {n}, {rounds} rounds, {what}: batch {b:.1} µs/signature, single {s:.1} µs/signature; \
             speed-up per round: median {m:.3} [q1 {q1:.3}, q3 {q3:.3}]"
        );
    }
}

/// Per-round timings of a batch and its one-by-one counterpart.
#[derive(Default)]
struct Samples {
    speedups: Vec<f64>,
    batch_us: Vec<f64>,
    single_us: Vec<f64>,
}

impl Samples {
    fn push(&mut self, n: usize, batch: Duration, single: Duration) {
        self.speedups
            .push(single.as_secs_f64() / batch.as_secs_f64());
        self.batch_us.push(batch.as_secs_f64() * 1e6 / n as f64);
        self.single_us.push(single.as_secs_f64() * 1e6 / n as f64);
    }

    /// Median µs per signature of the batch and of the singles, and the
    /// quartiles of the per-round speed-up.
    fn medians(self) -> (f64, f64, (f64, f64, f64)) {
        let quartiles = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            (at(0.25), at(0.5), at(0.75))
        };
        let (_, b, _) = quartiles(self.batch_us);
        let (_, s, _) = quartiles(self.single_us);
        (b, s, quartiles(self.speedups))
    }
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
