//! What a run measures: per-phase lookup outcomes, and counters of the
//! network, churn, publishing, validation and the engine itself.

use mars_proto::LookupStats;
use serde::Serialize;

/// A bag of samples with order statistics (sorted on demand).
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<u64>,
    sorted: bool,
}

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, v: u64) {
        self.values.push(v);
        self.sorted = false;
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.values.sort_unstable();
            self.sorted = true;
        }
    }

    /// The `q` quantile (0.5 = median) by nearest rank; 0 when empty.
    pub fn quantile(&mut self, q: f64) -> u64 {
        if self.values.is_empty() {
            return 0;
        }
        self.sort();
        let rank = (q * self.values.len() as f64).ceil() as usize;
        self.values[rank.clamp(1, self.values.len()) - 1]
    }

    /// The mean; 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.values.is_empty() {
            return 0.0;
        }
        self.values.iter().map(|&v| v as f64).sum::<f64>() / self.values.len() as f64
    }

    /// The largest; 0 when empty.
    pub fn max(&self) -> u64 {
        self.values.iter().copied().max().unwrap_or(0)
    }

    /// The smallest; 0 when empty.
    pub fn min(&self) -> u64 {
        self.values.iter().copied().min().unwrap_or(0)
    }
}

/// Outcomes of one class of lookups (regular or victim) in one phase.
#[derive(Debug, Clone, Default)]
pub struct LookupMetrics {
    /// Issued.
    pub issued: u64,
    /// Found what they looked for.
    pub found: u64,
    /// Finished without it.
    pub not_found: u64,
    /// The querier went down first (not counted in the success rate).
    pub aborted: u64,
    /// Still running at the end of the run (counted as failures).
    pub unfinished: u64,
    /// Found, but an older version than the latest published when issued.
    pub stale: u64,
    /// Exact (leaf key) lookups: finished, found.
    pub exact: (u64, u64),
    /// Prefix-level lookups: finished, found.
    pub prefix: (u64, u64),
    /// Rounds of successful lookups, as the node reports them: the largest
    /// hop of any peer that answered before the lookup converged.
    pub rounds: Samples,
    /// Hops to the first answer carrying the descriptor, measured on the
    /// wire (0: the querier held it).
    pub find_hops: Samples,
    /// RPCs sent per finished lookup.
    pub rpcs: Samples,
    /// Failed RPCs per finished lookup.
    pub rpc_failures: Samples,
    /// Latency of finished lookups, microseconds of virtual time.
    pub latency_us: Samples,
}

impl LookupMetrics {
    /// Counts one finished lookup: at the leaf key (`exact`) or a prefix,
    /// whether it found what it looked for, its node-side stats and its
    /// latency in microseconds of virtual time.
    pub fn record(&mut self, exact: bool, found: bool, stats: &LookupStats, latency_us: u64) {
        let class = if exact {
            &mut self.exact
        } else {
            &mut self.prefix
        };
        class.0 += 1;
        if found {
            class.1 += 1;
            self.found += 1;
            self.rounds.push(u64::from(stats.rounds));
        } else {
            self.not_found += 1;
        }
        self.rpcs.push(u64::from(stats.rpcs));
        self.rpc_failures.push(u64::from(stats.failures));
        self.latency_us.push(latency_us);
    }

    /// Found ÷ (found + not found + unfinished); 1 when nothing counted.
    pub fn success(&self) -> f64 {
        let n = self.found + self.not_found + self.unfinished;
        if n == 0 {
            1.0
        } else {
            self.found as f64 / n as f64
        }
    }
}

/// Which lookups a [`LookupMetrics`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupClass {
    /// For one regular publisher's descriptor.
    Regular,
    /// For one victim publisher's descriptor.
    Victim,
    /// For any provider at a key (no publisher filter).
    Open,
}

/// Everything measured in one phase.
#[derive(Debug, Clone, Default)]
pub struct PhaseMetrics {
    /// Phase name.
    pub name: String,
    /// Lookups for regular publishers.
    pub regular: LookupMetrics,
    /// Lookups for victim publishers.
    pub victim: LookupMetrics,
    /// Open lookups (no publisher filter): found = at least one genuine
    /// descriptor at the key.
    pub open: LookupMetrics,
    /// Genuine descriptors each finished open lookup returned.
    pub open_results: Samples,
    /// What each could have returned: `max_results`, or fewer when fewer
    /// publishers had a findable descriptor at the key when it was issued.
    pub open_expected: Samples,
    /// Finished open lookups that returned all they could.
    pub open_complete: u64,
    /// Departures by churn.
    pub departures: u64,
    /// Nodes crashed by the phase's one-shot kill.
    pub killed: u64,
    /// Live nodes when the phase started.
    pub live_at_start: u64,
}

impl PhaseMetrics {
    /// The outcomes of one class of lookups.
    pub fn class(&mut self, class: LookupClass) -> &mut LookupMetrics {
        match class {
            LookupClass::Regular => &mut self.regular,
            LookupClass::Victim => &mut self.victim,
            LookupClass::Open => &mut self.open,
        }
    }
}

/// One count of replicas.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaSample {
    /// Seconds since the first phase started (negative: before it).
    pub t_secs: i64,
    /// Descriptors counted (published, unexpired, publisher up).
    pub descriptors: u64,
    /// Mean live nodes holding a descriptor (any version of its slot).
    pub mean: f64,
    /// Fewest.
    pub min: u64,
    /// 5th percentile.
    pub p5: u64,
    /// Median.
    pub p50: u64,
    /// Mean routing keys per counted descriptor (replicas aim at K per key).
    pub keys_per_descriptor: f64,
}

/// Counters over the whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Requests sent by nodes.
    pub requests: u64,
    /// Requests by type: PING, STORE, FIND_NODE, FIND_VALUE.
    pub requests_by_type: [u64; 4],
    /// Responses sent (frames or errors).
    pub responses: u64,
    /// Request and response bytes sent.
    pub bytes: u64,
    /// Messages lost to the loss rate.
    pub lost: u64,
    /// Messages cut by a partition.
    pub cut: u64,
    /// Requests to a crashed node (no answer).
    pub to_crashed: u64,
    /// Requests to an address with nothing behind it, or a left node.
    pub unreachable: u64,
    /// Requests answered by someone other than the expected identity.
    pub identity_mismatches: u64,
    /// Requests refused by the target (stream reset).
    pub refused: u64,
    /// Nodes created (initial joins and newcomers).
    pub nodes_created: u64,
    /// Crashes (churn and kills).
    pub crashes: u64,
    /// Graceful leaves.
    pub leaves: u64,
    /// Restarts keeping state.
    pub restarts_keeping_state: u64,
    /// Restarts keeping their descriptor store only.
    pub restarts_keeping_store: u64,
    /// Descriptors those restarted nodes held when they came back (what
    /// `Storage::resume` kept of their stores).
    pub descriptors_kept_over_restarts: u64,
    /// Restarts from empty.
    pub restarts_fresh: u64,
    /// Newcomers replacing departed nodes.
    pub newcomers: u64,
    /// Bootstraps that finished with a table.
    pub bootstraps_ok: u64,
    /// Bootstraps that found no one (retried).
    pub bootstraps_failed: u64,
    /// Publishes by the workload (first publishes and republishes after a fresh restart).
    pub publishes: u64,
    /// Republishes done by nodes themselves at TTL/2.
    pub republishes: u64,
    /// Mean replicas acknowledged per routing key by workload publishes.
    pub publish_acked_per_key: f64,
    /// STOREs answered `stored: false`, summed over nodes (adversaries' own refusals excluded).
    pub stores_refused: u64,
    /// Descriptors that failed validation in lookup answers (`rejected`).
    pub rejected_in_lookups: u64,
    /// "Invalid descriptor" misbehaviour events raised by nodes.
    pub invalid_descriptor_events: u64,
    /// Forged descriptors adversaries put in answers.
    pub forged_served: u64,
    /// Stale descriptors adversaries put in answers.
    pub stale_served: u64,
    /// Node lists adversaries replaced.
    pub lists_rewritten: u64,
    /// Forged STOREs sent by adversaries.
    pub forged_stores_sent: u64,
    /// Forged STOREs an honest node accepted (must be 0).
    pub forged_stores_accepted: u64,
    /// Forged descriptors that reached a lookup's result (must be 0).
    pub forged_accepted_in_results: u64,
    /// Lookups that could not be issued (no findable publisher or querier).
    pub lookups_skipped: u64,
    /// Events processed.
    pub events: u64,
    /// Timer events found stale (superseded) and skipped.
    pub stale_timers: u64,
    /// Timers a node asked for in the past right after being woken,
    /// deferred by 1 ms (a busy node).
    pub busy_timers: u64,
    /// Signature-cache hits and misses (when the cache is in use).
    pub verify_cache: (u64, u64),
    /// Node-id memo hits and misses.
    pub node_id_cache: (u64, u64),
}
