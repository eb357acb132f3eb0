//! Prometheus metrics of a node, in the OpenMetrics text format.
//!
//! Two sources make one exposition:
//! - a [`Snapshot`] taken from the driver at each scrape: the node's and the
//!   transport's cumulative counters become counters with those values, its
//!   sizes become gauges (nothing is counted twice, nothing lags a scrape);
//! - the command latencies: histograms the driver fills as commands
//!   (bootstrap, discover, publish, ping …) are answered, shared with
//!   [`Metrics`] through an `Arc`.
//!
//! Every name starts with `mars_`; counters end in `_total`.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use mars_proto::node::{NodeStats, RefusalCode};
use mars_proto::quic::HostStats;

use crate::{NodeHandle, Snapshot};

/// The HTTP content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which handle command a latency belongs to (the `command` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CommandKind {
    Bootstrap,
    FindNode,
    Discover,
    Publish,
    Revoke,
    Ping,
    /// A raw request frame (`NodeHandle::request`).
    Request,
}

impl CommandKind {
    const ALL: [CommandKind; 7] = [
        CommandKind::Bootstrap,
        CommandKind::FindNode,
        CommandKind::Discover,
        CommandKind::Publish,
        CommandKind::Revoke,
        CommandKind::Ping,
        CommandKind::Request,
    ];

    fn name(self) -> &'static str {
        match self {
            CommandKind::Bootstrap => "bootstrap",
            CommandKind::FindNode => "find_node",
            CommandKind::Discover => "discover",
            CommandKind::Publish => "publish",
            CommandKind::Revoke => "revoke",
            CommandKind::Ping => "ping",
            CommandKind::Request => "request",
        }
    }
}

/// Upper bounds of the latency buckets, in seconds: 1 ms to 60 s in steps
/// of about ×2.5 (a loopback ping is a few ms; a lookup whose peers do not
/// answer runs into the query timeout, tens of seconds).
const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0,
];

/// Time from a command reaching the driver to its answer, one histogram
/// per [`CommandKind`]. Written by the driver, read by [`Metrics`].
#[derive(Debug)]
pub(crate) struct CommandLatency {
    histograms: [Histogram; CommandKind::ALL.len()],
}

/// A command being timed: what [`CommandLatency::start`] hands the driver
/// to give back to [`CommandLatency::finish`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    kind: CommandKind,
    at: Instant,
}

impl CommandLatency {
    pub(crate) fn new() -> Self {
        CommandLatency {
            histograms: std::array::from_fn(|_| Histogram::new(LATENCY_BUCKETS)),
        }
    }

    /// A `kind` command arrived at `now`.
    pub(crate) fn start(&self, kind: CommandKind, now: Instant) -> Started {
        Started { kind, at: now }
    }

    /// The command timed by `started` was answered at `now`.
    pub(crate) fn finish(&self, started: Started, now: Instant) {
        let seconds = now.saturating_duration_since(started.at).as_secs_f64();
        if let Some(h) = self.histograms.get(started.kind as usize) {
            h.observe(seconds);
        }
    }
}

/// Renders a node's metrics for Prometheus. Cheap to clone and share
/// between connections (`Arc` inside).
#[derive(Debug, Clone)]
pub struct Metrics {
    latency: Arc<CommandLatency>,
}

impl Metrics {
    /// Metrics of `node`: its command latencies, and whatever
    /// [`render`](Metrics::render) is given of its state.
    pub fn new(node: &NodeHandle) -> Self {
        Metrics {
            latency: node.latency(),
        }
    }

    /// The whole exposition (ending in `# EOF`) for `snapshot`, a fresh
    /// [`NodeHandle::snapshot`] of the same node, served as
    /// [`CONTENT_TYPE`].
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exposition {
            snapshot: snapshot.clone(),
            latency: Arc::clone(&self.latency),
        }));
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail, and our collector only fails
        // when the writer does.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// One scrape's worth of metrics.
#[derive(Debug)]
struct Exposition {
    snapshot: Snapshot,
    latency: Arc<CommandLatency>,
}

impl Collector for Exposition {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let s = &self.snapshot;
        let info = Info::new([("did", s.identity.did())]);
        info.encode(e.encode_descriptor(
            "mars_node",
            "The node's identity (its DID); always 1.",
            None,
            info.metric_type(),
        )?)?;
        let uptime = ConstGauge::new(s.uptime.as_secs_f64());
        uptime.encode(e.encode_descriptor(
            "mars_uptime",
            "Time since the node started.",
            Some(&Unit::Seconds),
            uptime.metric_type(),
        )?)?;
        encode_counters(&mut e, &s.node, &s.host)?;
        gauge(
            &mut e,
            "mars_routing_table_peers",
            "Peers in the routing table.",
            None,
            s.routing_table as u64,
        )?;
        gauge(
            &mut e,
            "mars_stored_descriptors",
            "Descriptors this node holds for the mesh (its own and other publishers').",
            None,
            s.descriptors as u64,
        )?;
        gauge(
            &mut e,
            "mars_stored",
            "Bytes of descriptors held, as the store's capacity limit counts them.",
            Some(&Unit::Bytes),
            s.stored_bytes,
        )?;
        counter(
            &mut e,
            "mars_store_read_errors",
            "Stored descriptors that could not be read back (corrupt on disk) and were treated as absent.",
            s.store_read_errors,
        )?;
        counter(
            &mut e,
            "mars_store_write_failures",
            "Writes (stores, sweeps) the storage engine failed, e.g. a full LMDB map.",
            s.store_failed_writes,
        )?;
        gauge(
            &mut e,
            "mars_connections_open",
            "QUIC connections open now, inbound and outbound (handshaking and closing included).",
            None,
            s.connections as u64,
        )?;
        gauge(
            &mut e,
            "mars_queries_in_progress",
            "Lookups, publishes and pings this node is carrying out now.",
            None,
            s.queries_in_progress as u64,
        )?;
        self.latency.encode(&mut e)
    }
}

impl CommandLatency {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let mut m = e.encode_descriptor(
            "mars_command_duration",
            "Time from a command reaching the node to its answer, by command \
             (lookups that find no answering peer end at the query timeout).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (kind, h) in CommandKind::ALL.iter().zip(&self.histograms) {
            h.encode(m.encode_family(&[("command", kind.name())])?)?;
        }
        Ok(())
    }
}

/// The node's and the transport's counters.
fn encode_counters(e: &mut DescriptorEncoder, node: &NodeStats, host: &HostStats) -> fmt::Result {
    // No `..`: a counter added to either struct must be given a metric here.
    let NodeStats {
        requests,
        refused,
        stores_refused,
        verify_dropped,
        replication_dropped,
        events_dropped: node_events_dropped,
        requests_sent,
        requests_failed,
    } = node;
    let HostStats {
        datagrams_in,
        datagrams_out,
        accepted,
        // The sum of the three reasons, exposed one by one below.
        refused_connections: _,
        refused_connections_over_total_limit,
        refused_connections_over_ip_limit,
        failed_accepts,
        retries_sent,
        dialled,
        requests_answered,
        request_batches,
        requests_refused,
        requests_rate_limited_by_ip,
        requests_rate_limited_by_identity,
        rate_buckets_evicted,
        events_dropped: host_events_dropped,
        storage_flush_failures,
    } = host;

    // Inbound requests.
    counters(
        e,
        "mars_requests",
        "Inbound requests over QUIC streams, by outcome: answered with a response, \
         or refused with a stream reset.",
        "outcome",
        &[
            (Cow::Borrowed("answered"), *requests_answered),
            (Cow::Borrowed("refused"), *requests_refused),
        ],
    )?;
    counter(
        e,
        "mars_request_batches",
        "Batches in which admitted requests were handed to the node together (the STOREs \
         of a batch are verified as one Ed25519 batch): requests handled per batch is the \
         mean batch size.",
        *request_batches,
    )?;
    let by_type: Vec<(Cow<'static, str>, u64)> = ["ping", "store", "find_node", "find_value"]
        .into_iter()
        .zip(requests)
        .map(|(t, v)| (Cow::Borrowed(t), *v))
        .collect();
    counters(
        e,
        "mars_requests_handled",
        "Inbound requests the node decoded and answered, by message type \
         (a STORE answered with stored=false counts here and in mars_stores_refused_total).",
        "type",
        &by_type,
    )?;
    // The transport's rate limits refuse before the node sees a request:
    // their refusals join the node's own under their reset code.
    let rate_limited = requests_rate_limited_by_ip + requests_rate_limited_by_identity;
    let by_reason: Vec<(Cow<'static, str>, u64)> = refused
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let code = i as u64 + 1;
            let extra = if code == RefusalCode::RateLimited.code() {
                rate_limited
            } else {
                0
            };
            (refusal_reason(code), v + extra)
        })
        .collect();
    counters(
        e,
        "mars_requests_refused",
        "Inbound requests refused with a stream reset, by reason (the reset code: \
         malformed, too_large, sender_mismatch, not_a_request, rate_limited, busy).",
        "reason",
        &by_reason,
    )?;
    counters(
        e,
        "mars_requests_rate_limited",
        "Inbound requests refused as rate_limited, by the limit they exceeded: \
         requests per source IP (IPv6: per /64) or per sender identity.",
        "limit",
        &[
            (Cow::Borrowed("ip"), *requests_rate_limited_by_ip),
            (
                Cow::Borrowed("identity"),
                *requests_rate_limited_by_identity,
            ),
        ],
    )?;
    counter(
        e,
        "mars_rate_buckets_evicted",
        "Request-rate trackers forgotten to make room for a new source IP or identity; \
         steady growth means the tracking tables are too small for the traffic, or a flood \
         of sources.",
        *rate_buckets_evicted,
    )?;
    counter(
        e,
        "mars_stores_refused",
        "STORE requests answered with stored=false (invalid or expired descriptor, \
         stale sequence, store full, compromised key).",
        *stores_refused,
    )?;

    // Outbound requests.
    counter(
        e,
        "mars_requests_sent",
        "Requests this node sent to peers (lookups, stores, pings, verifications).",
        *requests_sent,
    )?;
    counter(
        e,
        "mars_requests_failed",
        "Requests this node sent that failed or timed out (unreachable or slow peers).",
        *requests_failed,
    )?;

    // Connections and datagrams.
    counter(
        e,
        "mars_connections_accepted",
        "Inbound QUIC connections accepted (handshake started).",
        *accepted,
    )?;
    counters(
        e,
        "mars_connections_refused",
        "Inbound QUIC connections refused, by reason: total_limit (the host's connection \
         limit), ip_limit (the per-source-IP limit; IPv6: per /64), handshake_failed (a \
         stale or undecryptable first packet, an invalid Retry token).",
        "reason",
        &[
            (
                Cow::Borrowed("total_limit"),
                *refused_connections_over_total_limit,
            ),
            (
                Cow::Borrowed("ip_limit"),
                *refused_connections_over_ip_limit,
            ),
            (Cow::Borrowed("handshake_failed"), *failed_accepts),
        ],
    )?;
    counter(
        e,
        "mars_connections_dialled",
        "Outbound QUIC connections this node started.",
        *dialled,
    )?;
    counter(
        e,
        "mars_quic_retries_sent",
        "QUIC Retry packets sent: connection attempts asked to prove their source address \
         because many handshakes were in progress (a flood, possibly spoofed).",
        *retries_sent,
    )?;
    counter(
        e,
        "mars_datagrams_received",
        "UDP datagrams received.",
        *datagrams_in,
    )?;
    counter(
        e,
        "mars_datagrams_sent",
        "UDP datagrams sent.",
        *datagrams_out,
    )?;

    // Queues and storage.
    counter(
        e,
        "mars_verifications_dropped",
        "Requesters not checked with a PING because the verification queue was full \
         (many new peers at once).",
        *verify_dropped,
    )?;
    counter(
        e,
        "mars_replications_dropped",
        "Descriptors not passed on to closer nodes because the replication queue was full.",
        *replication_dropped,
    )?;
    counters(
        e,
        "mars_events_dropped",
        "Informational events dropped because their queue was full, by layer \
         (node: the DHT, host: the transport); log lines lost, not data.",
        "layer",
        &[
            (Cow::Borrowed("node"), *node_events_dropped),
            (Cow::Borrowed("host"), *host_events_dropped),
        ],
    )?;
    counter(
        e,
        "mars_storage_flush_failures",
        "Times the storage engine failed to make its writes durable (a disk error): \
         descriptors acknowledged since the last good flush may be lost in a power failure. \
         Any increase needs an operator.",
        *storage_flush_failures,
    )
}

/// The `reason` label of a refusal code (`code_N` for one this build does
/// not know).
fn refusal_reason(code: u64) -> Cow<'static, str> {
    const ALL: [RefusalCode; 6] = [
        RefusalCode::Malformed,
        RefusalCode::TooLarge,
        RefusalCode::SenderMismatch,
        RefusalCode::NotARequest,
        RefusalCode::RateLimited,
        RefusalCode::Busy,
    ];
    let name = |c: RefusalCode| match c {
        RefusalCode::Malformed => "malformed",
        RefusalCode::TooLarge => "too_large",
        RefusalCode::SenderMismatch => "sender_mismatch",
        RefusalCode::NotARequest => "not_a_request",
        RefusalCode::RateLimited => "rate_limited",
        RefusalCode::Busy => "busy",
    };
    match ALL.into_iter().find(|c| c.code() == code) {
        Some(c) => Cow::Borrowed(name(c)),
        None => Cow::Owned(format!("code_{code}")),
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn counters(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(Cow<'static, str>, u64)],
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        ConstCounter::new(*n).encode(m.encode_family(&[(label, value.as_ref())])?)?;
    }
    Ok(())
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, unit, g.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reasons_follow_the_codes() {
        assert_eq!(refusal_reason(1), "malformed");
        assert_eq!(refusal_reason(5), "rate_limited");
        assert_eq!(refusal_reason(6), "busy");
        assert_eq!(refusal_reason(9), "code_9");
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // any instant will do
    fn latency_lands_in_its_command_and_bucket() {
        let l = CommandLatency::new();
        let t0 = Instant::now();
        let s = l.start(CommandKind::Ping, t0);
        l.finish(s, t0 + std::time::Duration::from_millis(3));
        let mut out = String::new();
        let mut registry = Registry::default();
        #[derive(Debug)]
        struct Only(Arc<CommandLatency>);
        impl Collector for Only {
            fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
                self.0.encode(&mut e)
            }
        }
        registry.register_collector(Box::new(Only(Arc::new(l))));
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("mars_command_duration_seconds_count{command=\"ping\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "mars_command_duration_seconds_bucket{le=\"0.0025\",command=\"ping\"} 0\n"
            ) || out.contains(
                "mars_command_duration_seconds_bucket{command=\"ping\",le=\"0.0025\"} 0\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("mars_command_duration_seconds_count{command=\"discover\"} 0\n"),
            "{out}"
        );
    }
}
