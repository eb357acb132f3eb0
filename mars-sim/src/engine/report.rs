//! Turning a finished run into its [`Report`]: phase summaries, checks,
//! traffic figures and the engine's own performance.

use std::time::Duration;

use super::Sim;
use crate::metrics::Samples;
use crate::network::{LatencyModel, REGIONS, Side};
use crate::report::{
    CheckResult, LookupReport, OpenLookupReport, Parameters, Performance, PhaseReport, Report,
    Traffic,
};
use crate::scenario::Check;
use crate::wall::peak_rss_bytes;
use crate::workload::LookupOutcome;

fn secs(d: Duration) -> String {
    let s = d.as_secs();
    if s % 3600 == 0 && s > 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 && s > 0 {
        format!("{}m", s / 60)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

impl Sim {
    fn parameters(&self) -> Parameters {
        let sc = &self.sc;
        Parameters {
            nodes: sc.nodes,
            publishers: sc.publishers,
            victims: sc.victims,
            paths: sc.paths.clone(),
            open_lookups: sc.open_lookups,
            ttl_secs: sc.ttl_secs,
            latency: match sc.network.latency {
                LatencyModel::Fixed(d) => format!("fixed {} ms", d.as_millis()),
                LatencyModel::Regions => "regions".to_owned(),
            },
            jitter: sc.network.jitter,
            loss: sc.network.loss,
            loss_burst_ms: sc.network.loss_burst.map(|d| d.as_secs_f64() * 1e3),
            partitions: sc
                .network
                .partitions
                .iter()
                .map(|p| {
                    let side = match &p.side {
                        Side::Fraction(f) => format!("{:.0} % of nodes", f * 100.0),
                        Side::Region(r) => REGIONS
                            .get(*r)
                            .map_or_else(|| format!("region {r}"), |r| r.name.to_owned()),
                    };
                    format!(
                        "{side} cut off {} from +{} for {}",
                        if p.oneway {
                            "one way (outbound)"
                        } else {
                            "both ways"
                        },
                        secs(p.start),
                        secs(p.duration)
                    )
                })
                .collect(),
            skew_secs: sc.skew.as_secs_f64(),
            adversaries: sc
                .adversaries
                .iter()
                .map(|a| {
                    format!(
                        "{:.0} % {}{}",
                        a.fraction * 100.0,
                        a.behaviour.name(),
                        if a.grind { " (mined ids)" } else { "" }
                    )
                })
                .collect(),
            phases: sc
                .phases
                .iter()
                .map(|p| {
                    let mut d = format!(
                        "{}: {} lookups over {}",
                        p.name,
                        p.lookups,
                        secs(p.duration)
                    );
                    if let Some(c) = &p.churn {
                        d.push_str(&format!(", churn {:.0} %/h", c.rate_per_hour * 100.0));
                    }
                    if let Some(k) = p.kill_at_start {
                        d.push_str(&format!(", {:.0} % killed at start", k * 100.0));
                    }
                    d
                })
                .collect(),
            k: sc.node.k,
            alpha: sc.node.alpha,
            virtual_secs: sc.total_duration().as_secs_f64(),
        }
    }

    fn traffic(&self) -> Traffic {
        let mut rates = Samples::default();
        let mut total_msgs = 0u64;
        let mut total_mins = 0.0;
        for i in 0..self.nodes.len() as u32 {
            let up = self.up_secs(i, self.now);
            let msgs = self.nodes[i as usize].msgs;
            total_msgs += msgs;
            total_mins += up / 60.0;
            if up >= 60.0 {
                // Hundredths of a message per minute, to keep integer samples.
                rates.push((msgs as f64 / (up / 60.0) * 100.0) as u64);
            }
        }
        let c = &self.counters;
        Traffic {
            msgs_per_node_minute_mean: if total_mins > 0.0 {
                total_msgs as f64 / total_mins
            } else {
                0.0
            },
            msgs_per_node_minute_p50: rates.quantile(0.5) as f64 / 100.0,
            msgs_per_node_minute_p99: rates.quantile(0.99) as f64 / 100.0,
            msgs_per_node_minute_max: rates.max() as f64 / 100.0,
            bytes_per_msg: c.bytes as f64 / (c.requests + c.responses).max(1) as f64,
        }
    }

    /// The report, with `wall` the wall time the run took.
    pub(super) fn report(&mut self, wall: Duration) -> Report {
        // Lookups still running count as failures.
        for rec in &self.lookups {
            if rec.outcome == LookupOutcome::Pending {
                self.phases[rec.phase as usize]
                    .class(rec.class())
                    .unfinished += 1;
            }
        }
        let mut refused = 0;
        for sn in &self.nodes {
            if sn.adversary.is_some() {
                continue;
            }
            refused += sn.stores_refused_before;
            if let Some(n) = &sn.node {
                refused += n.stats().stores_refused;
            }
        }
        self.counters.stores_refused = refused;
        if let Some(cache) = &self.config.signature_cache {
            self.counters.verify_cache = cache.hits_and_misses();
        }
        if let Some(cache) = &self.config.node_id_cache {
            self.counters.node_id_cache = cache.stats();
        }
        let has_victims = self.sc.victims > 0;
        let has_open = self.sc.open_lookups > 0.0;
        let phases: Vec<PhaseReport> = self
            .phases
            .iter_mut()
            .map(|p| PhaseReport {
                name: p.name.clone(),
                live_at_start: p.live_at_start,
                killed: p.killed,
                departures: p.departures,
                lookups: LookupReport::from_metrics(&mut p.regular),
                victim_lookups: has_victims.then(|| LookupReport::from_metrics(&mut p.victim)),
                open_lookups: has_open.then(|| OpenLookupReport {
                    lookups: LookupReport::from_metrics(&mut p.open),
                    results_mean: p.open_results.mean(),
                    expected_mean: p.open_expected.mean(),
                    complete: if p.open_results.is_empty() {
                        1.0
                    } else {
                        p.open_complete as f64 / p.open_results.len() as f64
                    },
                }),
            })
            .collect();
        let checks: Vec<CheckResult> = self
            .sc
            .checks
            .iter()
            .map(|c| self.evaluate(c, &phases))
            .collect();
        let passed = checks.iter().all(|c| c.passed);
        let wall_secs = wall.as_secs_f64().max(1e-9);
        let events = self.counters.events;
        let performance = Performance {
            events,
            wall_secs,
            events_per_sec: events as f64 / wall_secs,
            speedup: self.sc.total_duration().as_secs_f64() / wall_secs,
            peak_rss_bytes: peak_rss_bytes(),
            nodes_created: self.counters.nodes_created,
            trace_records: self.trace.records(),
            stages: self.stages.clone(),
        };
        Report {
            scenario: self.sc.name.clone(),
            description: self.sc.description.clone(),
            seed: self.sc.seed,
            trace_hash: self.trace.hash().to_hex().to_string(),
            parameters: self.parameters(),
            phases,
            checks,
            passed,
            replicas: self.replicas.clone(),
            traffic: self.traffic(),
            counters: self.counters.clone(),
            performance,
        }
    }

    fn evaluate(&self, check: &Check, phases: &[PhaseReport]) -> CheckResult {
        let phase = |name: &str| phases.iter().find(|p| p.name == name);
        let (measured, passed) = match check {
            Check::MinSuccess { phase: name, min } => match phase(name) {
                Some(p) => {
                    let l = &p.lookups;
                    (
                        format!(
                            "{:.3} % of {} ({} not found, {} unfinished)",
                            l.success * 100.0,
                            l.found + l.not_found + l.unfinished,
                            l.not_found,
                            l.unfinished
                        ),
                        l.success >= *min && l.found > 0,
                    )
                }
                None => (format!("no phase '{name}'"), false),
            },
            Check::MaxMeanRounds { phase: name, max } => match phase(name) {
                Some(p) => (
                    format!("{:.3}", p.lookups.rounds_mean),
                    p.lookups.found > 0 && p.lookups.rounds_mean <= *max,
                ),
                None => (format!("no phase '{name}'"), false),
            },
            Check::MaxMeanHops { phase: name, max } => match phase(name) {
                Some(p) => (
                    format!(
                        "{:.3} (rounds to convergence {:.3})",
                        p.lookups.hops_mean, p.lookups.rounds_mean
                    ),
                    p.lookups.found > 0 && p.lookups.hops_mean <= *max,
                ),
                None => (format!("no phase '{name}'"), false),
            },
            Check::NoForgeryAccepted => {
                let c = &self.counters;
                let accepted = c.forged_accepted_in_results + c.forged_stores_accepted;
                (
                    format!(
                        "{accepted} accepted; {} rejected in lookups, {} forged STOREs refused",
                        c.rejected_in_lookups,
                        c.forged_stores_sent - c.forged_stores_accepted
                    ),
                    accepted == 0,
                )
            }
        };
        CheckResult {
            check: check.describe(),
            measured,
            passed,
        }
    }
}
