//! The report of a run: a human-readable table and a JSON document.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::metrics::{Counters, LookupMetrics, ReplicaSample};

/// What a run was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    /// Initial nodes.
    pub nodes: usize,
    /// Publishers (victims not included).
    pub publishers: usize,
    /// Victim publishers.
    pub victims: usize,
    /// Capability paths given to the publishers (empty: the built-in
    /// generator's).
    pub paths: Vec<String>,
    /// Share of the lookups that are open (no publisher filter).
    pub open_lookups: f64,
    /// Descriptor TTL, seconds.
    pub ttl_secs: u32,
    /// Latency model.
    pub latency: String,
    /// Jitter (mean extra delay as a fraction of the base delay).
    pub jitter: f64,
    /// Message loss rate.
    pub loss: f64,
    /// Mean length of a loss burst on one node's uplink, milliseconds
    /// (`None`: independent losses).
    pub loss_burst_ms: Option<f64>,
    /// Partitions, described.
    pub partitions: Vec<String>,
    /// Clock skew bound, seconds.
    pub skew_secs: f64,
    /// Adversaries, described.
    pub adversaries: Vec<String>,
    /// Phases, described.
    pub phases: Vec<String>,
    /// K.
    pub k: usize,
    /// α.
    pub alpha: usize,
    /// Virtual time simulated, seconds.
    pub virtual_secs: f64,
}

/// Lookup outcomes of one class in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct LookupReport {
    /// Issued.
    pub issued: u64,
    /// Found.
    pub found: u64,
    /// Finished without the descriptor.
    pub not_found: u64,
    /// Querier went down first (excluded from the rate).
    pub aborted: u64,
    /// Still running at the end (counted as failures).
    pub unfinished: u64,
    /// found ÷ (found + not found + unfinished).
    pub success: f64,
    /// Found an older version than the latest published.
    pub stale: u64,
    /// Success of exact (leaf key) lookups.
    pub exact_success: f64,
    /// Success of prefix-level lookups.
    pub prefix_success: f64,
    /// Mean rounds of successful lookups.
    pub rounds_mean: f64,
    /// Median rounds.
    pub rounds_p50: u64,
    /// 95th percentile rounds.
    pub rounds_p95: u64,
    /// Most rounds.
    pub rounds_max: u64,
    /// Mean hops to the first answer with the descriptor.
    pub hops_mean: f64,
    /// 95th percentile hops.
    pub hops_p95: u64,
    /// Mean RPCs per lookup.
    pub rpcs_mean: f64,
    /// 95th percentile RPCs.
    pub rpcs_p95: u64,
    /// Mean failed RPCs per lookup.
    pub rpc_failures_mean: f64,
    /// Latency percentiles, milliseconds of virtual time.
    pub latency_ms_p50: f64,
    /// 95th percentile.
    pub latency_ms_p95: f64,
    /// 99th percentile.
    pub latency_ms_p99: f64,
    /// Slowest.
    pub latency_ms_max: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

impl LookupReport {
    /// Summarises `m`.
    pub fn from_metrics(m: &mut LookupMetrics) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        LookupReport {
            issued: m.issued,
            found: m.found,
            not_found: m.not_found,
            aborted: m.aborted,
            unfinished: m.unfinished,
            success: m.success(),
            stale: m.stale,
            exact_success: ratio(m.exact.1, m.exact.0),
            prefix_success: ratio(m.prefix.1, m.prefix.0),
            rounds_mean: m.rounds.mean(),
            rounds_p50: m.rounds.quantile(0.5),
            rounds_p95: m.rounds.quantile(0.95),
            rounds_max: m.rounds.max(),
            hops_mean: m.find_hops.mean(),
            hops_p95: m.find_hops.quantile(0.95),
            rpcs_mean: m.rpcs.mean(),
            rpcs_p95: m.rpcs.quantile(0.95),
            rpc_failures_mean: m.rpc_failures.mean(),
            latency_ms_p50: ms(m.latency_us.quantile(0.5)),
            latency_ms_p95: ms(m.latency_us.quantile(0.95)),
            latency_ms_p99: ms(m.latency_us.quantile(0.99)),
            latency_ms_max: ms(m.latency_us.max()),
        }
    }
}

/// One phase's results.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// Name.
    pub name: String,
    /// Live nodes at its start.
    pub live_at_start: u64,
    /// Crashed by its one-shot kill.
    pub killed: u64,
    /// Churn departures during it.
    pub departures: u64,
    /// Lookups of regular publishers.
    pub lookups: LookupReport,
    /// Lookups of victim publishers (when the scenario has victims).
    pub victim_lookups: Option<LookupReport>,
    /// Open lookups, for any provider at a key (when the scenario has them).
    pub open_lookups: Option<OpenLookupReport>,
}

/// Open lookups of one phase: discovers with no publisher filter, as an
/// agent looking for any provider of a capability makes them. Success is
/// at least one genuine descriptor at the key; completeness compares what
/// came back with what could have (`max_results`, or every publisher
/// findable at the key if fewer).
#[derive(Debug, Clone, Serialize)]
pub struct OpenLookupReport {
    /// Outcomes, latencies and RPCs, as for the other lookups (no hops:
    /// no one descriptor is looked for).
    pub lookups: LookupReport,
    /// Mean genuine descriptors returned by a finished open lookup.
    pub results_mean: f64,
    /// Mean of what each could have returned.
    pub expected_mean: f64,
    /// Share of finished open lookups that returned all they could.
    pub complete: f64,
}

/// One assertion and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// What was asserted.
    pub check: String,
    /// The value measured.
    pub measured: String,
    /// Whether it held.
    pub passed: bool,
}

/// Message rates per node.
#[derive(Debug, Clone, Serialize)]
pub struct Traffic {
    /// Mean messages (requests + responses) sent per node per minute of uptime.
    pub msgs_per_node_minute_mean: f64,
    /// Median over nodes.
    pub msgs_per_node_minute_p50: f64,
    /// 99th percentile over nodes.
    pub msgs_per_node_minute_p99: f64,
    /// Busiest node.
    pub msgs_per_node_minute_max: f64,
    /// Mean bytes per message.
    pub bytes_per_msg: f64,
}

/// Wall time and events of one stage of a run (setup: joins and
/// publishes; then each phase).
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    /// "setup" or the phase's name.
    pub name: String,
    /// Wall seconds spent in it.
    pub wall_secs: f64,
    /// Events processed in it.
    pub events: u64,
    /// Wall seconds from the start of the run to its end.
    pub wall_until_secs: f64,
    /// Events from the start of the run to its end.
    pub events_until: u64,
}

/// How fast the simulator ran.
#[derive(Debug, Clone, Serialize)]
pub struct Performance {
    /// Events processed.
    pub events: u64,
    /// Wall time, seconds.
    pub wall_secs: f64,
    /// Events per wall second.
    pub events_per_sec: f64,
    /// Virtual seconds per wall second.
    pub speedup: f64,
    /// Peak resident memory of the process, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Nodes created.
    pub nodes_created: u64,
    /// Trace records hashed.
    pub trace_records: u64,
    /// Per stage.
    pub stages: Vec<Stage>,
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// What it shows.
    pub description: String,
    /// The seed.
    pub seed: u64,
    /// BLAKE3 of the ordered delivered events, hex.
    pub trace_hash: String,
    /// The parameters.
    pub parameters: Parameters,
    /// Per phase.
    pub phases: Vec<PhaseReport>,
    /// Assertions.
    pub checks: Vec<CheckResult>,
    /// Whether every assertion held.
    pub passed: bool,
    /// Replicas over time.
    pub replicas: Vec<ReplicaSample>,
    /// Message rates.
    pub traffic: Traffic,
    /// Counters.
    pub counters: Counters,
    /// Speed and memory.
    pub performance: Performance,
}

fn pct(x: f64) -> String {
    if x >= 1.0 {
        "100 %".to_owned()
    } else {
        format!("{:.2} %", x * 100.0)
    }
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let p = &self.parameters;
        let _ = writeln!(
            s,
            "mars-sim — scenario {}: {}",
            self.scenario, self.description
        );
        let _ = writeln!(
            s,
            "nodes {}  publishers {}{}  K {}  α {}  TTL {} s  latency {}  jitter {:.0} %  loss {:.2} %{}  skew ±{:.0} s",
            p.nodes,
            p.publishers,
            if p.victims > 0 {
                format!(" (+{} victims)", p.victims)
            } else {
                String::new()
            },
            p.k,
            p.alpha,
            p.ttl_secs,
            p.latency,
            p.jitter * 100.0,
            p.loss * 100.0,
            match p.loss_burst_ms {
                Some(ms) if p.loss > 0.0 => format!(" in bursts of {ms:.0} ms"),
                _ => String::new(),
            },
            p.skew_secs
        );
        if !p.paths.is_empty() {
            let shown: Vec<&str> = p.paths.iter().take(6).map(String::as_str).collect();
            let more = p.paths.len().saturating_sub(shown.len());
            let _ = writeln!(
                s,
                "paths: {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(", … ({} in all)", p.paths.len())
                } else {
                    String::new()
                }
            );
        }
        for a in &p.adversaries {
            let _ = writeln!(s, "adversaries: {a}");
        }
        for a in &p.partitions {
            let _ = writeln!(s, "partition: {a}");
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<16} {:>6} {:>7} {:>9} {:>9} {:>9} {:>5} {:>6} {:>5} {:>6} {:>6} {:>8} {:>8} {:>8}",
            "phase",
            "live",
            "lookups",
            "success",
            "exact",
            "prefix",
            "hops",
            "rounds",
            "r.p95",
            "rpcs",
            "fails",
            "p50 ms",
            "p95 ms",
            "p99 ms"
        );
        for ph in &self.phases {
            let mut rows = vec![(ph.name.clone(), &ph.lookups)];
            if let Some(v) = &ph.victim_lookups {
                rows.push((format!("{} (victims)", ph.name), v));
            }
            if let Some(o) = &ph.open_lookups {
                rows.push((format!("{} (open)", ph.name), &o.lookups));
            }
            for (name, l) in rows {
                let _ = writeln!(
                    s,
                    "{:<16} {:>6} {:>7} {:>9} {:>9} {:>9} {:>5.2} {:>6.2} {:>5} {:>6.1} {:>6.2} {:>8.0} {:>8.0} {:>8.0}",
                    name,
                    ph.live_at_start,
                    l.issued,
                    pct(l.success),
                    pct(l.exact_success),
                    pct(l.prefix_success),
                    l.hops_mean,
                    l.rounds_mean,
                    l.rounds_p95,
                    l.rpcs_mean,
                    l.rpc_failures_mean,
                    l.latency_ms_p50,
                    l.latency_ms_p95,
                    l.latency_ms_p99
                );
            }
            let mut notes = Vec::new();
            if ph.killed > 0 {
                notes.push(format!("{} killed at start", ph.killed));
            }
            if ph.departures > 0 {
                notes.push(format!("{} churn departures", ph.departures));
            }
            let l = &ph.lookups;
            if l.aborted + l.unfinished + l.stale > 0 {
                notes.push(format!(
                    "{} aborted, {} unfinished, {} stale",
                    l.aborted, l.unfinished, l.stale
                ));
            }
            if let Some(o) = &ph.open_lookups {
                notes.push(format!(
                    "open lookups: {:.1} of {:.1} possible descriptors back on average, all of them in {}",
                    o.results_mean,
                    o.expected_mean,
                    pct(o.complete)
                ));
            }
            if !notes.is_empty() {
                let _ = writeln!(s, "{:<16} {}", "", notes.join("; "));
            }
        }
        let _ = writeln!(s);
        if let (Some(first), Some(last)) = (self.replicas.first(), self.replicas.last()) {
            let min = self.replicas.iter().map(|r| r.min).min().unwrap_or(0);
            let _ = writeln!(
                s,
                "replicas per descriptor ({:.1} keys each): mean {:.1} at t={} s → {:.1} at t={} s; p5 at end {}; lowest seen {}",
                last.keys_per_descriptor,
                first.mean,
                first.t_secs,
                last.mean,
                last.t_secs,
                last.p5,
                min
            );
        }
        let t = &self.traffic;
        let _ = writeln!(
            s,
            "messages per node per minute: mean {:.1}, p50 {:.1}, p99 {:.1}, max {:.1} ({:.0} B/message)",
            t.msgs_per_node_minute_mean,
            t.msgs_per_node_minute_p50,
            t.msgs_per_node_minute_p99,
            t.msgs_per_node_minute_max,
            t.bytes_per_msg
        );
        let c = &self.counters;
        let _ = writeln!(
            s,
            "requests {} (PING {}, STORE {}, FIND_NODE {}, FIND_VALUE {}); lost {}, cut {}, to crashed {}, unreachable {}",
            c.requests,
            c.requests_by_type[0],
            c.requests_by_type[1],
            c.requests_by_type[2],
            c.requests_by_type[3],
            c.lost,
            c.cut,
            c.to_crashed,
            c.unreachable
        );
        let _ = writeln!(
            s,
            "churn: {} crashes, {} leaves, {} restarts with state, {} with their store only ({} descriptors kept), {} empty, {} newcomers; publishes {} + {} republishes ({:.1} replicas/key acked)",
            c.crashes,
            c.leaves,
            c.restarts_keeping_state,
            c.restarts_keeping_store,
            c.descriptors_kept_over_restarts,
            c.restarts_fresh,
            c.newcomers,
            c.publishes,
            c.republishes,
            c.publish_acked_per_key
        );
        if c.forged_served + c.stale_served + c.lists_rewritten + c.forged_stores_sent > 0 {
            let _ = writeln!(
                s,
                "attacks: {} forged descriptors served, {} rejected by validation ({} accepted), {} forged STOREs ({} accepted), {} stale served, {} node lists rewritten",
                c.forged_served,
                c.rejected_in_lookups,
                c.forged_accepted_in_results,
                c.forged_stores_sent,
                c.forged_stores_accepted,
                c.stale_served,
                c.lists_rewritten
            );
        }
        let perf = &self.performance;
        let _ = writeln!(
            s,
            "engine: {} events in {:.1} s wall ({:.2} M events/s, {:.0}× real time), peak RSS {}",
            perf.events,
            perf.wall_secs,
            perf.events_per_sec / 1e6,
            perf.speedup,
            perf.peak_rss_bytes
                .map(|b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64))
                .unwrap_or_else(|| "n/a".to_owned())
        );
        let stages: Vec<String> = perf
            .stages
            .iter()
            .map(|st| {
                format!(
                    "{} {:.1} s / {:.1} M",
                    st.name,
                    st.wall_secs,
                    st.events as f64 / 1e6
                )
            })
            .collect();
        let _ = writeln!(s, "stages (wall / events): {}", stages.join(", "));
        let _ = writeln!(s, "seed {}  trace {}", self.seed, self.trace_hash);
        if !self.checks.is_empty() {
            let _ = writeln!(s);
            for ch in &self.checks {
                let _ = writeln!(
                    s,
                    "{} {} (measured {})",
                    if ch.passed { "PASS" } else { "FAIL" },
                    ch.check,
                    ch.measured
                );
            }
        }
        s
    }

    /// Writes the JSON report to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), crate::Error> {
        crate::report::write_json(self, path)
    }
}

/// Writes `value` as pretty JSON to `path`: what every report's
/// `--json FILE` does.
pub(crate) fn write_json(value: &impl Serialize, path: &Path) -> Result<(), crate::Error> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).map_err(|e| crate::Error::Write {
        path: path.display().to_string(),
        source: e,
    })
}
