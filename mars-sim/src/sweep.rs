//! Seed sweeps: one scenario under many seeds, several runs at once.
//!
//! A deterministic simulator finds the rare failure by running many seeds
//! and then replays the seed that failed (VOPR's workflow). A sweep runs
//! each seed as its own [`Sim`](crate::Sim) on a pool of threads. Runs
//! share no state (every `Sim` builds its own nodes, caches and
//! generators), so a run's result does not depend on the threads: each
//! seed gives the trace hash that `mars-sim run --seed S` prints, and that
//! command replays it alone.
//!
//! ```
//! use mars_sim::{Scenario, Sim, sweep};
//!
//! let base = Scenario::tiny(10);
//! let outcomes = sweep::sweep(&[1, 2, 3], 2, |seed| {
//!     Sim::new(Scenario { seed, ..base.clone() }).run()
//! }, |_| {});
//! assert_eq!(outcomes.len(), 3);
//! assert!(outcomes.iter().all(|o| o.passed()));
//! ```

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;

use crate::report::Report;
use crate::wall::Stopwatch;

/// Most seeds one sweep takes, so a typo (`1-1000000000`) is refused
/// instead of planning a billion runs.
pub const MAX_SEEDS: usize = 100_000;

/// How one seed's run ended.
#[derive(Debug)]
pub enum SeedResult {
    /// The run finished; its report says whether its checks held.
    Finished(Box<Report>),
    /// The run panicked: a bug in the node or the simulator, which the
    /// seed reproduces.
    Panicked {
        /// The panic's message, when it carried one.
        message: String,
    },
}

/// One seed of a sweep.
#[derive(Debug)]
pub struct SeedOutcome {
    /// The seed.
    pub seed: u64,
    /// How its run ended.
    pub result: SeedResult,
    /// Wall time of the run (its own thread's, not the sweep's).
    pub wall: Duration,
}

impl SeedOutcome {
    /// Whether the run finished and every check held.
    pub fn passed(&self) -> bool {
        matches!(&self.result, SeedResult::Finished(r) if r.passed)
    }
}

/// Runs `run(seed)` for every seed on `jobs` threads (at least one, at
/// most one per seed), calling `on_done` on this thread as each run ends,
/// and returns the outcomes in the order of `seeds`. A run that panics is
/// caught and reported as [`SeedResult::Panicked`]; the others go on.
pub fn sweep<R, D>(seeds: &[u64], jobs: usize, run: R, mut on_done: D) -> Vec<SeedOutcome>
where
    R: Fn(u64) -> Report + Sync,
    D: FnMut(&SeedOutcome),
{
    let jobs = jobs.clamp(1, seeds.len().max(1));
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<SeedOutcome>> = seeds.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, SeedOutcome)>();
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, run) = (&next, &run);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { break };
                    let started = Stopwatch::start();
                    let result = match catch_unwind(AssertUnwindSafe(|| run(seed))) {
                        Ok(report) => SeedResult::Finished(Box::new(report)),
                        Err(payload) => SeedResult::Panicked {
                            message: panic_message(payload.as_ref()),
                        },
                    };
                    let outcome = SeedOutcome {
                        seed,
                        result,
                        wall: started.elapsed(),
                    };
                    if tx.send((i, outcome)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, outcome) in rx {
            on_done(&outcome);
            if let Some(slot) = slots.get_mut(i) {
                *slot = Some(outcome);
            }
        }
    });
    slots.into_iter().flatten().collect()
}

/// One line for a finished seed: its verdict, trace hash, each phase's
/// lookup success, the checks that failed and its wall time.
pub fn seed_line(outcome: &SeedOutcome) -> String {
    let mut line = format!("seed {:>6}  ", outcome.seed);
    match &outcome.result {
        SeedResult::Finished(r) => {
            let verdict = if r.passed { "PASS" } else { "FAIL" };
            let trace = r.trace_hash.get(..16).unwrap_or(&r.trace_hash);
            let _ = write!(line, "{verdict}  trace {trace}…");
            for p in &r.phases {
                let success = p.lookups.success * 100.0;
                let _ = write!(line, "  {} {:.2} %", p.name, success);
                if let Some(v) = &p.victim_lookups {
                    let _ = write!(line, " (victims {:.2} %)", v.success * 100.0);
                }
                if let Some(o) = &p.open_lookups {
                    let (found, complete) = (o.lookups.success * 100.0, o.complete * 100.0);
                    let _ = write!(line, " (open {found:.2} %, complete {complete:.2} %)");
                }
            }
            for c in r.checks.iter().filter(|c| !c.passed) {
                let _ = write!(line, "  failed: {} (measured {})", c.check, c.measured);
            }
        }
        SeedResult::Panicked { message } => {
            let _ = write!(line, "PANIC  {message}");
        }
    }
    let _ = write!(line, "  ({:.1} s)", outcome.wall.as_secs_f64());
    line
}

/// What a sweep reports as JSON (`mars-sim sweep --json FILE`): the
/// verdict, the seeds that failed or panicked, and every finished run's
/// full report. (Each report's peak RSS is the whole process's.)
#[derive(Debug, Serialize)]
pub struct SweepReport<'a> {
    /// The scenario's name.
    pub scenario: &'a str,
    /// Seeds run.
    pub seeds: Vec<u64>,
    /// Runs at once.
    pub jobs: usize,
    /// Whether every seed finished and passed its checks.
    pub passed: bool,
    /// Seeds whose run finished with a failed check.
    pub failed_seeds: Vec<u64>,
    /// Seeds whose run panicked, with the message.
    pub panicked: Vec<(u64, &'a str)>,
    /// Events over all runs.
    pub events: u64,
    /// Wall time of the whole sweep, seconds.
    pub wall_secs: f64,
    /// The finished runs' reports, in seed order.
    pub runs: Vec<&'a Report>,
}

impl<'a> SweepReport<'a> {
    /// The report of a sweep of `scenario` that ran `jobs` at once and
    /// took `wall`.
    pub fn new(
        scenario: &'a str,
        outcomes: &'a [SeedOutcome],
        jobs: usize,
        wall: Duration,
    ) -> Self {
        let runs: Vec<&Report> = outcomes
            .iter()
            .filter_map(|o| match &o.result {
                SeedResult::Finished(r) => Some(r.as_ref()),
                SeedResult::Panicked { .. } => None,
            })
            .collect();
        SweepReport {
            scenario,
            seeds: outcomes.iter().map(|o| o.seed).collect(),
            jobs,
            passed: outcomes.iter().all(SeedOutcome::passed),
            failed_seeds: runs.iter().filter(|r| !r.passed).map(|r| r.seed).collect(),
            panicked: outcomes
                .iter()
                .filter_map(|o| match &o.result {
                    SeedResult::Panicked { message } => Some((o.seed, message.as_str())),
                    SeedResult::Finished(_) => None,
                })
                .collect(),
            events: runs.iter().map(|r| r.performance.events).sum(),
            wall_secs: wall.as_secs_f64(),
            runs,
        }
    }

    /// Writes the report as pretty JSON to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), crate::Error> {
        crate::report::write_json(self, path)
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// Parses a seed set: seeds and inclusive ranges, comma-separated
/// (`7`, `1-20`, `1-10,42,100-102`). Returns them ascending, each once.
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let mut seeds = BTreeSet::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("'{s}': an empty seed (write e.g. 1-20 or 1,5,9)"));
        }
        let number = |x: &str| {
            x.trim()
                .parse::<u64>()
                .map_err(|_| format!("'{x}' is not a seed (a whole number)"))
        };
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let v = number(part)?;
                (v, v)
            }
        };
        if hi < lo {
            return Err(format!("'{part}': the range ends before it starts"));
        }
        if hi - lo >= MAX_SEEDS as u64 {
            return Err(format!("'{s}': more than {MAX_SEEDS} seeds"));
        }
        seeds.extend(lo..=hi);
        if seeds.len() > MAX_SEEDS {
            return Err(format!("'{s}': more than {MAX_SEEDS} seeds"));
        }
    }
    Ok(seeds.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_sets_parse_to_sorted_unique_seeds() {
        assert_eq!(parse_seeds("7"), Ok(vec![7]));
        assert_eq!(parse_seeds("1-3"), Ok(vec![1, 2, 3]));
        assert_eq!(parse_seeds("5, 1-3,2,9-9"), Ok(vec![1, 2, 3, 5, 9]));
        assert!(parse_seeds("").is_err());
        assert!(parse_seeds("1,,2").is_err());
        assert!(parse_seeds("3-1").is_err());
        assert!(parse_seeds("a").is_err());
        assert!(parse_seeds("-1").is_err());
        assert!(parse_seeds("1-100000").is_ok());
        assert!(parse_seeds("1-100001").unwrap_err().contains("more than"));
        assert!(parse_seeds("0-18446744073709551615").is_err());
        assert!(parse_seeds("1-50000,60001-110000").is_ok());
        assert!(parse_seeds("1-50000,60001-110001").is_err());
        // Overlaps count once.
        assert_eq!(parse_seeds("1-60000,1-60000").map(|v| v.len()), Ok(60_000));
    }
}
