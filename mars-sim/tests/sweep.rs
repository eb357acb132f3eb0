//! Seed sweeps: runs on several threads give each seed the result it gives
//! alone, and failures and panics are reported by seed.

use std::time::Duration;

use mars_sim::sweep::{self, SeedResult, SweepReport};
use mars_sim::{Check, Scenario, Sim};

fn tiny(seed: u64) -> Scenario {
    Scenario {
        seed,
        ..Scenario::tiny(10)
    }
}

#[test]
fn each_seed_gives_the_trace_it_gives_alone_whatever_the_threads() {
    let seeds = [3, 1, 2, 4];
    let mut finished_order = Vec::new();
    let swept = sweep::sweep(
        &seeds,
        3,
        |seed| Sim::new(tiny(seed)).run(),
        |o| finished_order.push(o.seed),
    );
    assert_eq!(swept.len(), seeds.len());
    finished_order.sort_unstable();
    assert_eq!(finished_order, vec![1, 2, 3, 4], "on_done once per seed");
    for (outcome, &seed) in swept.iter().zip(&seeds) {
        assert_eq!(outcome.seed, seed, "outcomes come back in the order given");
        let SeedResult::Finished(report) = &outcome.result else {
            panic!("seed {seed} did not finish: {outcome:?}");
        };
        let alone = Sim::new(tiny(seed)).run();
        assert_eq!(report.seed, seed);
        assert_eq!(report.trace_hash, alone.trace_hash, "seed {seed}");
        assert_eq!(report.performance.events, alone.performance.events);
        assert!(outcome.passed());
    }
    let hashes: std::collections::BTreeSet<_> = swept
        .iter()
        .filter_map(|o| match &o.result {
            SeedResult::Finished(r) => Some(r.trace_hash.clone()),
            SeedResult::Panicked { .. } => None,
        })
        .collect();
    assert_eq!(hashes.len(), seeds.len(), "different seeds, different runs");
}

#[test]
fn failed_checks_and_panics_are_reported_by_seed_and_the_rest_go_on() {
    let base = tiny(1);
    let phase = base.phases[0].name.clone();
    // Rounds to a descriptor are at least one: this check fails every run.
    let failing = Scenario {
        checks: vec![Check::MaxMeanHops { phase, max: 0.0 }],
        ..base
    };
    let seeds = [1, 2, 3];
    let swept = sweep::sweep(
        &seeds,
        2,
        |seed| {
            if seed == 2 {
                panic!("seed two breaks");
            }
            let sc = if seed == 3 {
                failing.clone()
            } else {
                tiny(seed)
            };
            Sim::new(Scenario { seed, ..sc }).run()
        },
        |_| {},
    );
    assert!(swept[0].passed());
    match &swept[1].result {
        SeedResult::Panicked { message } => assert_eq!(message, "seed two breaks"),
        other => panic!("seed 2: {other:?}"),
    }
    assert!(!swept[1].passed());
    assert!(!swept[2].passed());
    let line = sweep::seed_line(&swept[2]);
    assert!(line.contains("FAIL") && line.contains("failed: "), "{line}");
    assert!(sweep::seed_line(&swept[1]).contains("PANIC  seed two breaks"));

    let report = SweepReport::new("tiny", &swept, 2, Duration::from_secs(1));
    assert!(!report.passed);
    assert_eq!(report.failed_seeds, vec![3]);
    assert_eq!(report.panicked, vec![(2, "seed two breaks")]);
    assert_eq!(report.runs.len(), 2);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["failed_seeds"], serde_json::json!([3]));
    assert_eq!(json["runs"][1]["seed"], serde_json::json!(3));
}
