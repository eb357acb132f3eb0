//! The network model: where nodes sit, how long a message takes between
//! two of them, whether it is lost, and which links a partition cuts.
//!
//! Like str0m's netem, this is a pure function of its inputs and a seeded
//! generator: no sockets, no clock. A message's delay is
//!
//! ```text
//! one-way = RTT(region a, region b) / 2 + access(a) + access(b)
//!         + jitter (exponential, mean = `jitter` × that base)
//!         + bytes × 8 / bandwidth
//! ```
//!
//! Every request and every response is one message: the QUIC connection
//! between two nodes is taken as already open (connection reuse), and a
//! lost message is not retransmitted, so the requester sees a timeout —
//! the worst case of a loss, and the one the node must survive.

use std::time::Duration;

use mars_proto::Timestamp;

use crate::rng::{SimRng, splitmix64};

/// A region nodes are placed in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    /// Short name, for reports and partition specs.
    pub name: &'static str,
    /// Share of nodes placed here.
    pub weight: f64,
}

/// The built-in regions: six cloud regions with the share of nodes each gets.
pub const REGIONS: [Region; 6] = [
    Region {
        name: "us-east",
        weight: 0.30,
    },
    Region {
        name: "us-west",
        weight: 0.15,
    },
    Region {
        name: "eu-west",
        weight: 0.25,
    },
    Region {
        name: "ap-tokyo",
        weight: 0.10,
    },
    Region {
        name: "ap-singapore",
        weight: 0.12,
    },
    Region {
        name: "sa-saopaulo",
        weight: 0.08,
    },
];

/// Round-trip times between the built-in regions, in milliseconds: typical
/// published inter-region figures of the large clouds (2 ms within one).
pub const RTT_MS: [[u32; 6]; 6] = [
    [2, 62, 76, 145, 215, 115],
    [62, 2, 135, 100, 165, 175],
    [76, 135, 2, 210, 160, 185],
    [145, 100, 210, 2, 70, 255],
    [215, 165, 160, 70, 2, 320],
    [115, 175, 185, 255, 320, 2],
];

/// How base latency is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyModel {
    /// The same one-way delay between every pair (no regions, no access
    /// delay); jitter still applies.
    Fixed(Duration),
    /// The six built-in regions ([`REGIONS`], [`RTT_MS`]) plus a per-node
    /// access delay drawn uniformly from 1–10 ms one-way.
    Regions,
}

/// Which nodes are on the cut-off side of a partition.
#[derive(Debug, Clone, PartialEq)]
pub enum Side {
    /// A pseudo-random share of all nodes (by index, so nodes that join
    /// later are placed too).
    Fraction(f64),
    /// Every node of one built-in region.
    Region(usize),
}

/// A partition: from `start` (after the run's start) for `duration`,
/// messages between side A and the rest are dropped; with `oneway`, only
/// messages *from* side A to the rest are (an asymmetric partition: A's
/// requests vanish, and so do its responses to the others' requests).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionSpec {
    /// When it starts, after the run's start.
    pub start: Duration,
    /// How long it lasts.
    pub duration: Duration,
    /// Side A.
    pub side: Side,
    /// Only A → rest is cut.
    pub oneway: bool,
}

/// Network parameters of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// Base latency.
    pub latency: LatencyModel,
    /// Mean extra delay, as a fraction of the base delay (exponential tail).
    pub jitter: f64,
    /// Probability that one message (request or response) is lost.
    pub loss: f64,
    /// Losses in bursts: the mean length of a period in which one node's
    /// uplink loses everything it sends (`None`: each message is lost or
    /// not independently). Each node's uplink then alternates between good
    /// periods that lose nothing and bad ones, both exponential in length,
    /// the good ones long enough that the share of time spent in bad ones
    /// — the share of messages lost — is still [`loss`](Self::loss). In
    /// time, not in messages: a node that sends little is not stuck in a
    /// burst across its retransmissions seconds apart.
    pub loss_burst: Option<Duration>,
    /// Per-node link speed for the serialisation delay, bits per second
    /// (0: none).
    pub bandwidth_bps: u64,
    /// Partitions.
    pub partitions: Vec<PartitionSpec>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            latency: LatencyModel::Regions,
            jitter: 0.1,
            loss: 0.0,
            loss_burst: None,
            bandwidth_bps: 100_000_000,
            partitions: Vec::new(),
        }
    }
}

/// Where one node sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Index into [`REGIONS`] (0 for the fixed model).
    pub region: u8,
    /// One-way access delay, microseconds.
    pub access_us: u32,
}

/// What happened to a message handed to the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transit {
    /// It arrives after this delay.
    Arrives(Duration),
    /// It is lost.
    Lost,
}

/// The network: placements of every node ever created, and the model.
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    start: Timestamp,
    placements: Vec<Placement>,
    rng: SimRng,
    salt: u64,
    /// Partition windows as absolute times.
    windows: Vec<(Timestamp, Timestamp)>,
    /// Per node, whether its uplink is in a loss burst and until when
    /// (bursty loss only; drawn as the node sends).
    bursts: Vec<Option<(bool, Timestamp)>>,
}

impl Network {
    /// A network for a run seeded with `seed` that starts at `start`.
    pub fn new(config: NetworkConfig, seed: u64, start: Timestamp) -> Self {
        let windows = config
            .partitions
            .iter()
            .map(|p| {
                let s = start.saturating_add(p.start);
                (s, s.saturating_add(p.duration))
            })
            .collect();
        Network {
            config,
            start,
            placements: Vec::new(),
            rng: SimRng::stream(seed, "network"),
            salt: splitmix64(seed ^ 0x5041_5254),
            windows,
            bursts: Vec::new(),
        }
    }

    /// The parameters.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// When the run started.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// Places the next node (index = number placed so far) and returns its
    /// placement.
    pub fn place(&mut self, rng: &mut SimRng) -> Placement {
        let p = match self.config.latency {
            LatencyModel::Fixed(_) => Placement {
                region: 0,
                access_us: 0,
            },
            LatencyModel::Regions => {
                let weights: Vec<f64> = REGIONS.iter().map(|r| r.weight).collect();
                Placement {
                    region: rng.weighted(&weights) as u8,
                    access_us: 1_000 + rng.below(9_000) as u32,
                }
            }
        };
        self.placements.push(p);
        p
    }

    /// The placement of node `i`.
    pub fn placement(&self, i: u32) -> Placement {
        self.placements[i as usize]
    }

    /// The delay before jitter and serialisation between `a` and `b`.
    pub fn base_delay(&self, a: u32, b: u32) -> Duration {
        match self.config.latency {
            LatencyModel::Fixed(d) => d,
            LatencyModel::Regions => {
                let pa = self.placements[a as usize];
                let pb = self.placements[b as usize];
                let rtt_ms = RTT_MS[pa.region as usize][pb.region as usize];
                Duration::from_micros(
                    u64::from(rtt_ms) * 500 + u64::from(pa.access_us) + u64::from(pb.access_us),
                )
            }
        }
    }

    /// The smallest delay any message can have: how far ahead of "now"
    /// the effects of an event can reach another node.
    pub fn min_delay(&self) -> Duration {
        match self.config.latency {
            LatencyModel::Fixed(d) => d,
            LatencyModel::Regions => Duration::from_micros(1_000 + 2 * 1_000),
        }
    }

    /// Sends `bytes` from `a` to `b` at `at`: lost, or arriving after a
    /// delay.
    pub fn transit(&mut self, a: u32, b: u32, bytes: usize, at: Timestamp) -> Transit {
        if self.lost(a, at) {
            return Transit::Lost;
        }
        let base = self.base_delay(a, b);
        let mut us = base.as_micros() as f64;
        if self.config.jitter > 0.0 {
            us += self.rng.exp(us * self.config.jitter);
        }
        if self.config.bandwidth_bps > 0 {
            us += bytes as f64 * 8.0 * 1e6 / self.config.bandwidth_bps as f64;
        }
        Transit::Arrives(Duration::from_micros(us as u64))
    }

    /// Whether a message `a` sends at `at` is lost: independently at the
    /// loss rate, or when `a`'s uplink is in a burst at `at`.
    fn lost(&mut self, a: u32, at: Timestamp) -> bool {
        let loss = self.config.loss;
        if loss <= 0.0 {
            return false;
        }
        let Some(burst) = self
            .config
            .loss_burst
            .filter(|b| !b.is_zero() && loss < 1.0)
        else {
            return self.rng.chance(loss);
        };
        let bad_us = burst.as_micros() as f64;
        let good_us = bad_us * (1.0 - loss) / loss;
        let i = a as usize;
        if self.bursts.len() <= i {
            self.bursts.resize(i + 1, None);
        }
        // A node's first message starts its chain in the long-run mix, and
        // so does one after a silence of many periods (the chain has
        // forgotten its state by then; this bounds the catching up).
        let forgotten = |until: Timestamp| {
            at.duration_since(until).as_micros() as f64 > 64.0 * (good_us + bad_us)
        };
        let (mut bad, mut until) = match self.bursts[i] {
            Some((bad, until)) if !forgotten(until) => (bad, until),
            _ => {
                let bad = self.rng.chance(loss);
                let mean = if bad { bad_us } else { good_us };
                (
                    bad,
                    at.saturating_add(Duration::from_micros(self.rng.exp(mean) as u64)),
                )
            }
        };
        while until <= at {
            bad = !bad;
            let mean = if bad { bad_us } else { good_us };
            let next = Duration::from_micros(self.rng.exp(mean).max(1.0) as u64);
            until = until.saturating_add(next);
        }
        self.bursts[i] = Some((bad, until));
        bad
    }

    /// The delay of an immediate transport failure reported back to `a`
    /// (an ICMP unreachable, a stateless reset): one base delay, no loss.
    pub fn error_delay(&self, a: u32, b: u32) -> Duration {
        self.base_delay(a, b).saturating_mul(2)
    }

    /// Whether partition `p` puts node `i` on side A.
    fn on_side_a(&self, p: usize, i: u32) -> bool {
        match &self.config.partitions[p].side {
            Side::Fraction(f) => {
                let h = splitmix64(u64::from(i) ^ self.salt ^ (p as u64).wrapping_mul(0x9e37));
                (h as f64) < f * (u64::MAX as f64)
            }
            Side::Region(r) => self
                .placements
                .get(i as usize)
                .is_some_and(|pl| pl.region as usize == *r),
        }
    }

    /// Whether a message from `a` to `b` arriving at `at` is cut by a
    /// partition.
    pub fn cut(&self, a: u32, b: u32, at: Timestamp) -> bool {
        for (p, (s, e)) in self.windows.iter().enumerate() {
            if at < *s || at >= *e {
                continue;
            }
            let (sa, sb) = (self.on_side_a(p, a), self.on_side_a(p, b));
            if sa == sb {
                continue;
            }
            if !self.config.partitions[p].oneway || sa {
                return true;
            }
        }
        false
    }

    /// Whether any partition is in force at `at`.
    pub fn partitioned_at(&self, at: Timestamp) -> bool {
        self.windows.iter().any(|(s, e)| at >= *s && at < *e)
    }

    /// Whether nodes `a` and `b` can talk both ways at `at`.
    pub fn connected(&self, a: u32, b: u32, at: Timestamp) -> bool {
        !self.cut(a, b, at) && !self.cut(b, a, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_matrix_is_symmetric() {
        for (i, row) in RTT_MS.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert_eq!(*v, RTT_MS[j][i]);
            }
        }
        let total: f64 = REGIONS.iter().map(|r| r.weight).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }
}
