//! What a run simulates: the parameters, the named scenarios, and the
//! assertions a scenario makes on its outcome.
//!
//! A run has a fixed shape (see `docs/simulation.md`):
//!
//! 1. **Join**: `nodes` nodes join one after another over `join_over`, each
//!    bootstrapping from a few nodes already in.
//! 2. **Settle** for `settle`.
//! 3. **Publish**: `publishers` nodes each publish one capability
//!    descriptor, spread over `publish_over`, then `publish_settle`.
//! 4. **Phases**, one after another: each issues its `lookups` spread over
//!    its duration, under its churn, after its one-shot kill. Partitions
//!    are timed from the start of the first phase.
//! 5. **Drain**: `drain` more virtual time for lookups in flight to finish.

use std::time::Duration;

use crate::adversary::AdversarySpec;
use crate::churn::ChurnSpec;
use crate::network::{LatencyModel, NetworkConfig, PartitionSpec, Side};

/// Node settings a scenario may change (everything else is
/// `mars_proto::Config::testing()`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeKnobs {
    /// K, bucket size and replication factor.
    pub k: usize,
    /// α, lookup parallelism.
    pub alpha: usize,
    /// Request timeout.
    pub request_timeout: Duration,
    /// After this long a lookup request frees its α slot.
    pub lookup_slow_after: Duration,
    /// Bucket refresh interval.
    pub refresh_interval: Duration,
    /// Buckets refreshed right after a bootstrap (mars-proto default 16).
    pub bootstrap_refreshes: usize,
    /// Share one signature cache among all nodes, so each distinct
    /// descriptor is verified once per run (results are unchanged; see
    /// `mars_proto::SignatureCache`).
    pub signature_cache: bool,
    /// Share one node-id memo among all nodes, so each identity is hashed
    /// about once per run (ids are unchanged; see
    /// `mars_proto::NodeIdCache`).
    pub node_id_cache: bool,
}

impl Default for NodeKnobs {
    fn default() -> Self {
        let c = mars_proto::Config::default();
        NodeKnobs {
            k: c.k,
            alpha: c.alpha,
            request_timeout: c.request_timeout,
            lookup_slow_after: c.lookup_slow_after,
            refresh_interval: c.refresh_interval,
            bootstrap_refreshes: c.bootstrap_refreshes,
            signature_cache: true,
            node_id_cache: true,
        }
    }
}

/// One measured stretch of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Name, as reports and checks refer to it.
    pub name: String,
    /// How long it lasts.
    pub duration: Duration,
    /// Lookups issued, spread uniformly over the phase.
    pub lookups: usize,
    /// Churn while the phase lasts.
    pub churn: Option<ChurnSpec>,
    /// A share of the live nodes crashed at once when the phase starts.
    pub kill_at_start: Option<f64>,
}

/// An assertion on a run's outcome; a failed check makes `mars-sim` exit
/// non-zero.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Lookup success in a phase (non-victim targets) is at least `min`
    /// (a fraction: 0.999 = 99.9 %).
    MinSuccess {
        /// The phase.
        phase: String,
        /// The least success rate.
        min: f64,
    },
    /// Mean lookup rounds over a phase's successful lookups is at most
    /// `max`, rounds as the node reports them (the largest hop of any peer
    /// that answered before the lookup converged on the K closest).
    MaxMeanRounds {
        /// The phase.
        phase: String,
        /// The most mean rounds.
        max: f64,
    },
    /// Mean hops to the descriptor over a phase's successful lookups is at
    /// most `max` (hops to the first holder that answered, measured on the
    /// wire: the rounds of a lookup that stops at the first holder).
    MaxMeanHops {
        /// The phase.
        phase: String,
        /// The most mean hops.
        max: f64,
    },
    /// No forged or altered descriptor was ever accepted: not in a lookup
    /// result, not into a store.
    NoForgeryAccepted,
}

impl Check {
    /// A one-line description.
    pub fn describe(&self) -> String {
        match self {
            Check::MinSuccess { phase, min } => {
                format!("lookup success in '{phase}' >= {:.1} %", min * 100.0)
            }
            Check::MaxMeanRounds { phase, max } => {
                format!("mean rounds to convergence in '{phase}' <= {max}")
            }
            Check::MaxMeanHops { phase, max } => {
                format!("mean rounds (hops to the descriptor) in '{phase}' <= {max}")
            }
            Check::NoForgeryAccepted => "no forged descriptor accepted".to_owned(),
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name (a named scenario, or "custom").
    pub name: String,
    /// One line on what it shows.
    pub description: String,
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Nodes at the start (joins from churn come on top).
    pub nodes: usize,
    /// The initial joins are spread over this long.
    pub join_over: Duration,
    /// Quiet time after the joins.
    pub settle: Duration,
    /// Seeds each joining node bootstraps from (random ready honest nodes).
    pub seeds_per_join: usize,
    /// Network model.
    pub network: NetworkConfig,
    /// Node settings.
    pub node: NodeKnobs,
    /// Each node's clock is off by a uniform amount in ±this.
    pub skew: Duration,
    /// Publishers (honest nodes), one descriptor each.
    pub publishers: usize,
    /// Capability paths the publishers publish under, each picking one at
    /// random (a path listed twice is picked twice as often). Empty: paths
    /// drawn from the built-in families, kinds and variants
    /// ([`workload::random_path`](crate::workload::random_path)). Each must
    /// pass [`workload::check_path`](crate::workload::check_path).
    pub paths: Vec<String>,
    /// Share (0–1) of the non-victim lookups that discover a key the way
    /// an agent looking for any provider does: no publisher filter,
    /// `max_results` answers. They are reported apart (see
    /// [`OpenLookupReport`](crate::report::OpenLookupReport)). 0: every
    /// lookup looks for one publisher's descriptor.
    pub open_lookups: f64,
    /// Publishes are spread over this long.
    pub publish_over: Duration,
    /// Quiet time after the publishes, before the first phase.
    pub publish_settle: Duration,
    /// TTL of published descriptors, seconds; nodes republish at TTL/2.
    pub ttl_secs: u32,
    /// `max_results` of every lookup.
    pub max_results: u16,
    /// Victim publishers: their leaf keys are what eclipse adversaries
    /// attack (0: eclipse adversaries attack every key).
    pub victims: usize,
    /// Adversarial nodes.
    pub adversaries: Vec<AdversarySpec>,
    /// The measured phases.
    pub phases: Vec<Phase>,
    /// Time after the last phase for lookups in flight to finish.
    pub drain: Duration,
    /// Replicas are counted this often.
    pub sample_every: Duration,
    /// Assertions on the outcome.
    pub checks: Vec<Check>,
}

/// Makes a named scenario.
pub type Constructor = fn() -> Scenario;

const MIN: Duration = Duration::from_secs(60);

fn mins(m: u64) -> Duration {
    MIN * m as u32
}

impl Scenario {
    /// The base for `mars-sim run`: 1,000 nodes, one 10-minute phase.
    pub fn custom() -> Self {
        Scenario {
            name: "custom".to_owned(),
            description: "a run built from command-line flags".to_owned(),
            seed: 1,
            nodes: 1_000,
            join_over: mins(2),
            settle: mins(1),
            seeds_per_join: 3,
            network: NetworkConfig::default(),
            node: NodeKnobs::default(),
            skew: Duration::from_secs(2),
            publishers: 100,
            paths: Vec::new(),
            open_lookups: 0.0,
            publish_over: mins(1),
            publish_settle: mins(1),
            ttl_secs: 3_600,
            max_results: 20,
            victims: 0,
            adversaries: Vec::new(),
            phases: vec![Phase {
                name: "run".to_owned(),
                duration: mins(10),
                lookups: 1_000,
                churn: None,
                kill_at_start: None,
            }],
            drain: mins(1),
            sample_every: mins(5),
            checks: Vec::new(),
        }
    }

    /// The CI gate: 10,000 nodes; steady state, 30 %/h churn with
    /// republishing, then 30 % of the nodes killed at once.
    pub fn ci_10k() -> Self {
        Scenario {
            name: "ci-10k".to_owned(),
            description:
                "10k nodes: steady state, 20 min of 30 %/h churn with republish, 30 % killed at once"
                    .to_owned(),
            seed: 1,
            nodes: 10_000,
            join_over: mins(10),
            settle: mins(2),
            publishers: 500,
            publish_over: mins(2),
            publish_settle: mins(1),
            // Republished every 5 minutes: four times during the churn phase.
            ttl_secs: 600,
            // Six refresh lookups after each bootstrap instead of sixteen:
            // joins are most of the run's cost, and six keep the hops to a
            // descriptor under 2.5 at this size (see docs/simulation.md).
            node: NodeKnobs {
                bootstrap_refreshes: 6,
                ..NodeKnobs::default()
            },
            phases: vec![
                Phase {
                    name: "steady".to_owned(),
                    duration: mins(5),
                    lookups: 2_000,
                    churn: None,
                    kill_at_start: None,
                },
                Phase {
                    name: "churn".to_owned(),
                    duration: mins(20),
                    lookups: 2_000,
                    churn: Some(ChurnSpec::default()),
                    kill_at_start: None,
                },
                Phase {
                    name: "kill-30%".to_owned(),
                    duration: mins(3),
                    lookups: 2_000,
                    churn: None,
                    kill_at_start: Some(0.30),
                },
            ],
            checks: vec![
                Check::MinSuccess {
                    phase: "steady".to_owned(),
                    min: 1.0,
                },
                Check::MinSuccess {
                    phase: "kill-30%".to_owned(),
                    min: 0.999,
                },
                Check::MinSuccess {
                    phase: "churn".to_owned(),
                    min: 0.99,
                },
                Check::MaxMeanHops {
                    phase: "steady".to_owned(),
                    max: 2.5,
                },
            ],
            ..Scenario::custom()
        }
    }

    /// Heavy churn on 2,000 nodes: 60 %/h for an hour, half crashes and
    /// half graceful leaves, half the departed coming back (some with their
    /// state), with republishing.
    pub fn churn() -> Self {
        Scenario {
            name: "churn".to_owned(),
            description: "2k nodes under 60 %/h churn for 1 h (crashes, leaves, restarts keeping or losing state)".to_owned(),
            nodes: 2_000,
            join_over: mins(3),
            publishers: 200,
            ttl_secs: 1_200,
            phases: vec![
                Phase {
                    name: "steady".to_owned(),
                    duration: mins(5),
                    lookups: 500,
                    churn: None,
                    kill_at_start: None,
                },
                Phase {
                    name: "churn-60%/h".to_owned(),
                    duration: mins(60),
                    lookups: 3_000,
                    churn: Some(ChurnSpec {
                        rate_per_hour: 0.6,
                        ..ChurnSpec::default()
                    }),
                    kill_at_start: None,
                },
            ],
            checks: vec![Check::MinSuccess {
                phase: "churn-60%/h".to_owned(),
                min: 0.98,
            }],
            ..Scenario::custom()
        }
    }

    /// Partitions on 2,000 nodes: a third of the nodes cut off both ways
    /// for 10 minutes, then the Asia-Pacific regions cut off one way.
    pub fn partition() -> Self {
        Scenario {
            name: "partition".to_owned(),
            description:
                "2k nodes: a 30 % split for 10 min, heal, then a one-way cut of ap-tokyo for 10 min"
                    .to_owned(),
            nodes: 2_000,
            join_over: mins(3),
            publishers: 200,
            network: NetworkConfig {
                partitions: vec![
                    PartitionSpec {
                        start: mins(5),
                        duration: mins(10),
                        side: Side::Fraction(0.3),
                        oneway: false,
                    },
                    PartitionSpec {
                        start: mins(25),
                        duration: mins(10),
                        side: Side::Region(3),
                        oneway: true,
                    },
                ],
                ..NetworkConfig::default()
            },
            phases: vec![
                Phase {
                    name: "before".to_owned(),
                    duration: mins(5),
                    lookups: 500,
                    churn: None,
                    kill_at_start: None,
                },
                Phase {
                    name: "split-30%".to_owned(),
                    duration: mins(10),
                    lookups: 1_000,
                    churn: None,
                    kill_at_start: None,
                },
                Phase {
                    name: "healed".to_owned(),
                    duration: mins(10),
                    lookups: 1_000,
                    churn: None,
                    kill_at_start: None,
                },
                Phase {
                    name: "oneway-tokyo".to_owned(),
                    duration: mins(10),
                    lookups: 1_000,
                    churn: None,
                    kill_at_start: None,
                },
                Phase {
                    name: "after".to_owned(),
                    duration: mins(5),
                    lookups: 500,
                    churn: None,
                    kill_at_start: None,
                },
            ],
            checks: vec![
                Check::MinSuccess {
                    phase: "before".to_owned(),
                    min: 1.0,
                },
                Check::MinSuccess {
                    phase: "after".to_owned(),
                    min: 0.99,
                },
            ],
            ..Scenario::custom()
        }
    }

    /// Attack on 2,000 honest-majority nodes: Sybils with ground ids
    /// eclipsing five victims' keys, plus nodes that drop requests, return
    /// random node lists, refuse STOREs, serve stale or forged descriptors.
    pub fn sybil() -> Self {
        use crate::adversary::Behaviour;
        let adv = |fraction: f64, behaviour: Behaviour, grind: bool| AdversarySpec {
            fraction,
            behaviour,
            grind,
        };
        Scenario {
            name: "sybil".to_owned(),
            description: "2k nodes, 25 % adversaries: Sybil eclipse of 5 victim keys, droppers, liars, forgers".to_owned(),
            nodes: 2_000,
            join_over: mins(3),
            publishers: 200,
            victims: 5,
            ttl_secs: 1_200,
            adversaries: vec![
                adv(0.05, Behaviour::Eclipse, true),
                adv(0.05, Behaviour::DropRequests, false),
                adv(0.05, Behaviour::RandomNodes, false),
                adv(0.04, Behaviour::RefuseStore, false),
                adv(0.03, Behaviour::Stale, false),
                adv(0.03, Behaviour::Forge, false),
            ],
            phases: vec![Phase {
                name: "attack".to_owned(),
                duration: mins(20),
                lookups: 3_000,
                churn: None,
                kill_at_start: None,
            }],
            checks: vec![
                Check::NoForgeryAccepted,
                Check::MinSuccess {
                    phase: "attack".to_owned(),
                    min: 0.99,
                },
            ],
            ..Scenario::custom()
        }
    }

    /// ci-10k's timeline on 100,000 nodes (ten times the nodes and
    /// publishers, joining in the same 10 minutes; without its checks):
    /// the scale run.
    pub fn scale_100k() -> Self {
        Scenario {
            name: "scale-100k".to_owned(),
            description: "100k nodes: ci-10k's timeline with ten times the nodes and publishers"
                .to_owned(),
            nodes: 100_000,
            publishers: 5_000,
            publish_over: mins(5),
            phases: vec![
                Phase {
                    name: "steady".to_owned(),
                    duration: mins(5),
                    lookups: 5_000,
                    churn: None,
                    kill_at_start: None,
                },
                Phase {
                    name: "churn".to_owned(),
                    duration: mins(20),
                    lookups: 5_000,
                    churn: Some(ChurnSpec::default()),
                    kill_at_start: None,
                },
                Phase {
                    name: "kill-30%".to_owned(),
                    duration: mins(3),
                    lookups: 5_000,
                    churn: None,
                    kill_at_start: Some(0.30),
                },
            ],
            checks: Vec::new(),
            ..Scenario::ci_10k()
        }
    }

    /// A small scenario for tests: `n` nodes, fixed latency, short phases.
    pub fn tiny(n: usize) -> Self {
        Scenario {
            name: "tiny".to_owned(),
            description: format!("{n} nodes, for tests"),
            nodes: n,
            join_over: Duration::from_secs(n as u64),
            settle: Duration::from_secs(30),
            network: NetworkConfig {
                latency: LatencyModel::Fixed(Duration::from_millis(20)),
                ..NetworkConfig::default()
            },
            publishers: (n / 5).max(1),
            publish_over: Duration::from_secs(20),
            publish_settle: Duration::from_secs(30),
            phases: vec![Phase {
                name: "run".to_owned(),
                duration: Duration::from_secs(60),
                lookups: n,
                churn: None,
                kill_at_start: None,
            }],
            drain: Duration::from_secs(30),
            ..Scenario::custom()
        }
    }

    /// The named scenarios: name, constructor.
    pub fn named() -> [(&'static str, Constructor); 5] {
        [
            ("ci-10k", Scenario::ci_10k),
            ("churn", Scenario::churn),
            ("partition", Scenario::partition),
            ("sybil", Scenario::sybil),
            ("scale-100k", Scenario::scale_100k),
        ]
    }

    /// The named scenario `name`.
    pub fn by_name(name: &str) -> Option<Scenario> {
        Scenario::named()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f())
    }

    /// When the first phase starts, after the run's start.
    pub fn measure_start(&self) -> Duration {
        self.join_over + self.settle + self.publish_over + self.publish_settle
    }

    /// Total virtual time of the run.
    pub fn total_duration(&self) -> Duration {
        self.measure_start() + self.phases.iter().map(|p| p.duration).sum::<Duration>() + self.drain
    }

    /// The mars-proto configuration of every node (without the signature
    /// cache, which the engine adds).
    pub fn node_config(&self) -> mars_proto::Config {
        mars_proto::Config {
            k: self.node.k,
            alpha: self.node.alpha,
            request_timeout: self.node.request_timeout,
            lookup_slow_after: self.node.lookup_slow_after,
            refresh_interval: self.node.refresh_interval,
            bootstrap_refreshes: self.node.bootstrap_refreshes,
            ..mars_proto::Config::testing()
        }
    }
}
