//! ed25519-dalek's `verify_batch` per signature at several batch sizes,
//! the sizes alternating round after round (as other allocations come and
//! go in a node), keys already decompressed. Used to pick
//! `MAX_VERIFY_BATCH` in mars-proto; see docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release -p mars-benches --example batch_sizes -- 8 16 20 32 48 64
//! ```

use std::hint::black_box;
use std::time::Instant;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

/// Benchmark timing, the one place this program reads a monotonic clock.
#[allow(clippy::disallowed_methods)]
fn start_timer() -> Instant {
    Instant::now()
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("batch sizes are numbers"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![8, 16, 20, 32, 48, 64]
    } else {
        sizes
    };
    let max = sizes.iter().copied().max().unwrap_or(1);
    let items: Vec<(VerifyingKey, [u8; 32], Signature)> = (0..max as u64)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i + 7).to_le_bytes());
            let sk = SigningKey::from_bytes(&seed);
            let mut msg = [0u8; 32];
            msg[..8].copy_from_slice(&(i * 31 + 1).to_le_bytes());
            let sig = sk.sign(&msg);
            (sk.verifying_key(), msg, sig)
        })
        .collect();
    let mut per_sig: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    for _ in 0..60 {
        for (k, &n) in sizes.iter().enumerate() {
            let keys: Vec<VerifyingKey> = items[..n].iter().map(|i| i.0).collect();
            let msgs: Vec<&[u8]> = items[..n].iter().map(|i| &i.1[..]).collect();
            let sigs: Vec<Signature> = items[..n].iter().map(|i| i.2).collect();
            let reps = (256 / n).max(1);
            let t = start_timer();
            for _ in 0..reps {
                let ok = ed25519_dalek::verify_batch(black_box(&msgs), &sigs, &keys).is_ok();
                assert!(ok);
            }
            per_sig[k].push(t.elapsed().as_secs_f64() * 1e6 / (reps * n) as f64);
        }
    }
    for (k, &n) in sizes.iter().enumerate() {
        let v = &mut per_sig[k];
        v.sort_by(f64::total_cmp);
        println!(
            "N = {n:3}: {:.2} µs per signature (median of 60 rounds)",
            v[v.len() / 2]
        );
    }
}
