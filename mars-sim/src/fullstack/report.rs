//! What a full-stack run reports: lookup outcomes and latency, the
//! datagrams on the wire, the hosts' transport counters, and the trace
//! hash that identifies the run.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::FullStack;
use crate::network::LatencyModel;

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stop {
    /// Every lookup was answered.
    Finished,
    /// Nothing was left to happen (no host had a timer or a datagram
    /// in flight) before the workload finished.
    Quiet,
    /// [`max_virtual`](super::FullStackConfig::max_virtual) was reached.
    TimeLimit,
    /// [`max_events`](super::FullStackConfig::max_events) was reached.
    EventLimit,
}

/// The outcome of a full-stack run. Everything but `wall_secs` is a
/// function of the configuration and the build.
#[derive(Debug, Clone, Serialize)]
pub struct FullStackReport {
    /// Hosts.
    pub nodes: usize,
    /// The run's seed.
    pub seed: u64,
    /// Publishers asked for.
    pub publishers: usize,
    /// Lookups asked for.
    pub lookups: usize,
    /// Latency model.
    pub latency: String,
    /// Jitter, as a share of the base delay.
    pub jitter: f64,
    /// Datagram loss probability.
    pub loss: f64,
    /// Mean length of a loss burst on one host's uplink, milliseconds
    /// (`None`: independent losses).
    pub loss_burst_ms: Option<f64>,
    /// Why the run ended.
    pub stop: Stop,
    /// Bootstraps that ended with a non-empty routing table.
    pub bootstraps_ok: u64,
    /// Hosts that gave up bootstrapping.
    pub bootstraps_failed: u64,
    /// Bootstraps tried again after a failure.
    pub bootstrap_retries: u64,
    /// Publishes acknowledged at every routing key and held by at least
    /// one host other than the publisher.
    pub publishes_ok: u64,
    /// Publishes that were not.
    pub publishes_failed: u64,
    /// Lookups issued.
    pub lookups_issued: u64,
    /// Lookups that found the published descriptor (by id).
    pub lookups_found: u64,
    /// Lookups that finished without it (or were refused).
    pub lookups_not_found: u64,
    /// Lookups still running when the run ended (failures).
    pub lookups_unfinished: u64,
    /// Found / asked for (1 when none were asked for).
    pub success: f64,
    /// Lookup latency of the successful lookups, virtual milliseconds.
    pub latency_ms_p50: f64,
    /// 95th percentile.
    pub latency_ms_p95: f64,
    /// 99th percentile.
    pub latency_ms_p99: f64,
    /// Largest.
    pub latency_ms_max: f64,
    /// Datagrams the hosts sent.
    pub datagrams_sent: u64,
    /// Of those, lost by the network model.
    pub datagrams_lost: u64,
    /// Delivered to a host.
    pub datagrams_delivered: u64,
    /// Sent to an address no host has.
    pub datagrams_undeliverable: u64,
    /// Bytes sent (UDP payloads).
    pub bytes_sent: u64,
    /// Outbound connections whose handshake completed.
    pub handshakes: u64,
    /// Outbound connections started.
    pub dialled: u64,
    /// Inbound connections accepted.
    pub accepted: u64,
    /// Connections closed or failed (counted at both ends).
    pub connections_closed: u64,
    /// Inbound connections refused by the hosts' limits.
    pub refused_connections: u64,
    /// Datagrams that looked like a new connection's Initial but could not
    /// be decrypted (by all signs late client Initials for a connection id
    /// the server does not route). The one count that may differ between runs of
    /// one seed: whether such a packet is dropped at once or fails its
    /// decryption depends on header-protection bits, which come from key
    /// material and connection ids drawn from the OS. No datagram is sent
    /// either way, so the trace is not affected.
    pub failed_accepts: u64,
    /// QUIC Retries sent.
    pub retries_sent: u64,
    /// Requests answered by the hosts.
    pub requests_answered: u64,
    /// Requests refused (stream reset) by the hosts.
    pub requests_refused: u64,
    /// Virtual time the run covered, seconds.
    pub virtual_secs: f64,
    /// Events handled.
    pub events: u64,
    /// Records in the trace.
    pub trace_records: u64,
    /// BLAKE3 of the trace (delivered datagrams and lookup outcomes), hex.
    pub trace_hash: String,
    /// Wall time of the run, seconds (not part of the result).
    pub wall_secs: f64,
}

/// Assembles the report of a finished run.
pub(super) fn build(mut sim: FullStack, stop: Stop, wall: Duration) -> FullStackReport {
    let c = &sim.counters;
    let mut sum = mars_proto::quic::HostStats::default();
    for h in &sim.hosts {
        let s = h.host.stats();
        sum.dialled += s.dialled;
        sum.accepted += s.accepted;
        sum.refused_connections_over_total_limit += s.refused_connections_over_total_limit;
        sum.refused_connections_over_ip_limit += s.refused_connections_over_ip_limit;
        sum.failed_accepts += s.failed_accepts;
        sum.retries_sent += s.retries_sent;
        sum.requests_answered += s.requests_answered;
        sum.requests_refused += s.requests_refused;
    }
    let asked = sim.config.lookups as u64;
    let unfinished = sim.lookups.iter().filter(|l| l.found.is_none()).count() as u64;
    let ms = |us: u64| us as f64 / 1000.0;
    let net = sim.config.network.clone();
    FullStackReport {
        nodes: sim.config.nodes,
        seed: sim.config.seed,
        publishers: sim.config.publishers,
        lookups: sim.config.lookups,
        latency: match net.latency {
            LatencyModel::Fixed(d) => format!("fixed {} ms", d.as_millis()),
            LatencyModel::Regions => "regions".to_owned(),
        },
        jitter: net.jitter,
        loss: net.loss,
        loss_burst_ms: net.loss_burst.map(|d| d.as_secs_f64() * 1e3),
        stop,
        bootstraps_ok: c.bootstraps_ok,
        bootstraps_failed: c.bootstraps_failed,
        bootstrap_retries: c.bootstrap_retries,
        publishes_ok: c.publishes_ok,
        publishes_failed: c.publishes_failed,
        lookups_issued: c.lookups_issued,
        lookups_found: c.lookups_found,
        lookups_not_found: c.lookups_not_found,
        lookups_unfinished: unfinished,
        success: if asked == 0 {
            1.0
        } else {
            c.lookups_found as f64 / asked as f64
        },
        latency_ms_p50: ms(sim.latency.quantile(0.5)),
        latency_ms_p95: ms(sim.latency.quantile(0.95)),
        latency_ms_p99: ms(sim.latency.quantile(0.99)),
        latency_ms_max: ms(sim.latency.max()),
        datagrams_sent: c.datagrams_sent,
        datagrams_lost: c.datagrams_lost,
        datagrams_delivered: c.datagrams_delivered,
        datagrams_undeliverable: c.datagrams_undeliverable,
        bytes_sent: c.bytes_sent,
        handshakes: c.handshakes,
        dialled: sum.dialled,
        accepted: sum.accepted,
        connections_closed: c.connections_closed,
        refused_connections: sum.refused_connections_over_total_limit
            + sum.refused_connections_over_ip_limit,
        failed_accepts: sum.failed_accepts,
        retries_sent: sum.retries_sent,
        requests_answered: sum.requests_answered,
        requests_refused: sum.requests_refused,
        virtual_secs: sim.now.as_secs_f64(),
        events: c.events,
        trace_records: sim.trace.records(),
        trace_hash: sim.trace.hash().to_hex().to_string(),
        wall_secs: wall.as_secs_f64(),
    }
}

impl FullStackReport {
    /// The human-readable summary `mars-sim quic` prints.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "mars-sim quic — {} QUIC hosts, seed {}, {} publishers, latency {}, jitter {:.0} %, loss {:.2} %{}",
            self.nodes,
            self.seed,
            self.publishers,
            self.latency,
            self.jitter * 100.0,
            self.loss * 100.0,
            match self.loss_burst_ms {
                Some(ms) if self.loss > 0.0 => format!(" in bursts of {ms:.0} ms"),
                _ => String::new(),
            }
        );
        let _ = writeln!(s);
        let rows: [(&str, String); 13] = [
            (
                "bootstraps",
                format!(
                    "{} ok, {} failed, {} retried",
                    self.bootstraps_ok, self.bootstraps_failed, self.bootstrap_retries
                ),
            ),
            (
                "publishes",
                format!("{} ok, {} failed", self.publishes_ok, self.publishes_failed),
            ),
            (
                "lookups",
                format!(
                    "{} asked, {} found, {} not found, {} unfinished",
                    self.lookups,
                    self.lookups_found,
                    self.lookups_not_found,
                    self.lookups_unfinished
                ),
            ),
            ("success", format!("{:.2} %", self.success * 100.0)),
            (
                "latency ms",
                format!(
                    "p50 {:.0}  p95 {:.0}  p99 {:.0}  max {:.0}",
                    self.latency_ms_p50,
                    self.latency_ms_p95,
                    self.latency_ms_p99,
                    self.latency_ms_max
                ),
            ),
            (
                "datagrams",
                format!(
                    "{} sent, {} lost, {} delivered, {} undeliverable",
                    self.datagrams_sent,
                    self.datagrams_lost,
                    self.datagrams_delivered,
                    self.datagrams_undeliverable
                ),
            ),
            (
                "bytes sent",
                format!(
                    "{} ({:.1} MB)",
                    self.bytes_sent,
                    self.bytes_sent as f64 / 1e6
                ),
            ),
            (
                "connections",
                format!(
                    "{} dialled, {} handshakes done, {} accepted, {} closed, {} refused, {} retries, {} bad Initials",
                    self.dialled,
                    self.handshakes,
                    self.accepted,
                    self.connections_closed,
                    self.refused_connections,
                    self.retries_sent,
                    self.failed_accepts
                ),
            ),
            (
                "requests",
                format!(
                    "{} answered, {} refused",
                    self.requests_answered, self.requests_refused
                ),
            ),
            (
                "virtual time",
                format!(
                    "{:.1} s, {} events ({:?})",
                    self.virtual_secs, self.events, self.stop
                ),
            ),
            ("trace hash", self.trace_hash.clone()),
            ("seed", self.seed.to_string()),
            ("wall time", format!("{:.2} s", self.wall_secs)),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "{k:<14} {v}");
        }
        s
    }

    /// Writes the report as pretty JSON to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), crate::Error> {
        crate::report::write_json(self, path)
    }
}
