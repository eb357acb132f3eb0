//! # mars-sim — a deterministic simulator for MARS meshes
//!
//! `mars-sim` runs thousands of [`mars_proto::node::Node`]s in one process
//! on a virtual clock, the way TigerBeetle's VOPR and FoundationDB's
//! simulator run their systems: one event queue, one seed from which every
//! random choice derives, and a trace hash that proves a run is reproduced
//! exactly. Around the real, unmodified node it models what the real world
//! does to it — latency between regions, jitter, loss, partitions, clock
//! skew, churn, and adversarial peers — and measures whether discovery
//! still works.
//!
//! ```
//! use mars_sim::{Scenario, Sim};
//!
//! let mut sim = Sim::new(Scenario::tiny(12));
//! let report = sim.run();
//! assert!(report.phases[0].lookups.success > 0.9);
//! // The same seed gives the same run, event for event.
//! let again = Sim::new(Scenario::tiny(12)).run();
//! assert_eq!(report.trace_hash, again.trace_hash);
//! ```
//!
//! Modules, one concept each: [`queue`] (the clock's event queue), [`rng`]
//! (seeded streams), [`network`] (latency, loss, partitions), [`churn`],
//! [`adversary`], [`workload`], [`metrics`], [`report`], [`scenario`]
//! (parameters and the named scenarios), [`cli`], and the engine that ties
//! them together ([`Sim`]), with [`sweep`] to run one scenario under many
//! seeds at once. [`fullstack`] is a second engine for small
//! meshes, in which every node is a full `mars_proto::quic::Host` (TLS,
//! streams, retransmission) exchanging real QUIC datagrams over the same
//! network model.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod adversary;
pub mod churn;
pub mod cli;
mod engine;
pub mod fullstack;
pub mod liveset;
pub mod metrics;
pub mod network;
pub mod queue;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod sweep;
pub mod trace;
pub mod wall;
pub mod workload;

pub use engine::{Delivery, ProgressFn, START, Sim, Status, addr_of, index_of};
pub use report::Report;
pub use scenario::{Check, Phase, Scenario};

/// What can go wrong outside the simulation itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--scenario` named no scenario.
    #[error("unknown scenario '{0}' (try: ci-10k, churn, partition, sybil, scale-100k)")]
    UnknownScenario(String),
    /// `--kill` at or after the end of the phase.
    #[error("--kill at {0} is not before the end of --duration")]
    KillAfterEnd(String),
    /// A full-stack run's parameters are out of bounds, or a host could
    /// not be built.
    #[error(transparent)]
    FullStack(#[from] fullstack::FullStackError),
    /// The JSON report could not be made.
    #[error("could not encode the JSON report: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON report could not be written.
    #[error("could not write {path}: {source}")]
    Write {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}
