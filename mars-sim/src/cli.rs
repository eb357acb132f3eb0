//! The command line: named scenarios, and runs built from flags.
//!
//! ```text
//! mars-sim --scenario ci-10k
//! mars-sim run --nodes 2000 --seed 7 --duration 1h --publishers 200 --lookups 5000 \
//!     --churn 30%/h --loss 1% --latency regions --adversaries 20%:eclipse --json out.json
//! mars-sim scenarios
//! mars-sim quic --nodes 30 --seed 1 --publishers 10 --lookups 100 --loss 1% --latency regions
//! mars-sim sweep --scenario churn --seeds 1-20 --jobs 4
//! ```
//!
//! Flags given with `--scenario` override that scenario's parameters. The
//! phase-shaping flags (`--duration`, `--lookups`, `--churn`, `--kill`)
//! replace its phases with one measured phase (split in two at a kill) and
//! drop its checks, which name the phases they were written for.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::Error;
use crate::adversary::{AdversarySpec, Behaviour};
use crate::churn::{ChurnSpec, Kept};
use crate::fullstack::FullStackConfig;
use crate::network::{LatencyModel, NetworkConfig, PartitionSpec, REGIONS, Side};
use crate::scenario::{Phase, Scenario};

/// `mars-sim`: run MARS meshes of thousands of nodes on a virtual clock.
#[derive(Debug, Parser)]
#[command(name = "mars-sim", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: run, as `run` would).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Run parameters.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a simulation from flags, optionally on top of a named scenario.
    Run(Box<RunArgs>),
    /// List the named scenarios.
    Scenarios,
    /// Run a small full-stack mesh: every node a QUIC host (TLS, streams,
    /// retransmission) exchanging real datagrams on the simulated network.
    Quic(Box<QuicArgs>),
    /// Run one scenario under many seeds, several at once, and name the
    /// seeds whose checks fail (each replays alone with `run --seed S`).
    Sweep(Box<SweepArgs>),
}

/// Parameters of `mars-sim sweep`: the seeds, how many runs at once, and
/// the run itself (every `run` flag but `--seed`).
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Seeds to run: numbers and inclusive ranges, comma-separated
    /// (e.g. 1-20 or 1-10,42).
    #[arg(long, value_parser = crate::sweep::parse_seeds, conflicts_with = "seed")]
    pub seeds: std::vec::Vec<u64>,
    /// Runs at once, one thread each (default: the cores available). Each
    /// run holds a whole mesh: ci-10k takes about 0.5 GiB, scale-100k 4.2.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// The run every seed makes; `--json` writes the sweep's report.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The command that replays one seed of a sweep alone: this process's
/// arguments (`args`, without the program name) with `sweep` turned into
/// `run`, the sweep's own flags (`--seeds`, `--jobs`, `--json`) left out,
/// and `--seed S` added.
pub fn replay_command(args: &[String], seed: u64) -> String {
    const DROPPED: [&str; 3] = ["--seeds", "--jobs", "--json"];
    let mut out = vec!["mars-sim".to_owned()];
    let mut iter = args.iter();
    let mut subcommand_seen = false;
    while let Some(arg) = iter.next() {
        if !subcommand_seen && arg == "sweep" {
            subcommand_seen = true;
            out.push("run".to_owned());
            continue;
        }
        if DROPPED.contains(&arg.as_str()) {
            iter.next();
            continue;
        }
        if DROPPED.iter().any(|d| {
            arg.strip_prefix(d)
                .is_some_and(|rest| rest.starts_with('='))
        }) {
            continue;
        }
        out.push(shell_word(arg));
    }
    out.push("--seed".to_owned());
    out.push(seed.to_string());
    out.join(" ")
}

/// `arg` quoted for a POSIX shell when it holds anything but plain
/// characters.
fn shell_word(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=.,:%/+@".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// Parameters of a full-stack run (`mars-sim quic`).
#[derive(Debug, Clone, Args)]
pub struct QuicArgs {
    /// QUIC hosts (2–2000); host 0 is the seed the others bootstrap from.
    #[arg(long, default_value_t = 30)]
    pub nodes: usize,
    /// Seed of every random choice (keys, placement, delays, losses,
    /// workload): the same seed gives the same trace hash.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Hosts that publish one capability descriptor each, under
    /// compute/sim/svc{i} (at most --nodes).
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Discover lookups, from random hosts for random published keys
    /// (any level of the path), once publishing is over.
    #[arg(long, default_value_t = 100)]
    pub lookups: usize,
    /// Probability that one datagram is lost (e.g. 1%); QUIC retransmits.
    #[arg(long, value_parser = parse_percent, default_value = "0%")]
    pub loss: f64,
    /// Losses in bursts: the mean length of a period in which one host's
    /// uplink loses every datagram (e.g. 200ms), at the same long-run
    /// `--loss`. Default: each datagram lost independently.
    #[arg(long, value_parser = parse_duration)]
    pub loss_burst: Option<Duration>,
    /// Latency model: `regions` (six cloud regions plus access delay) or
    /// `fixed:50ms` (one-way).
    #[arg(long, value_parser = parse_latency, default_value = "regions")]
    pub latency: LatencyModel,
    /// Jitter: mean extra delay as a share of the base delay (e.g. 10%).
    #[arg(long, value_parser = parse_percent, default_value = "10%")]
    pub jitter: f64,
    /// Bootstraps start spread over this long (e.g. 3s).
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub join_over: Duration,
    /// Lookups start spread over this long (e.g. 5s).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub lookup_over: Duration,
    /// Stop after this much virtual time even if lookups are still running
    /// (they count as failures).
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub max_virtual: Duration,
    /// Exit with code 1 when the share of lookups that found the published
    /// descriptor is below this (e.g. 99%). Default: 100% without loss,
    /// 95% with loss (a lookup may give up on a peer whose answers were
    /// lost past the request timeout).
    #[arg(long, value_parser = parse_percent)]
    pub min_success: Option<f64>,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl QuicArgs {
    /// The run these arguments describe.
    pub fn config(&self) -> FullStackConfig {
        FullStackConfig {
            nodes: self.nodes,
            seed: self.seed,
            publishers: self.publishers,
            lookups: self.lookups,
            network: NetworkConfig {
                latency: self.latency,
                jitter: self.jitter,
                loss: self.loss,
                loss_burst: self.loss_burst,
                ..NetworkConfig::default()
            },
            join_over: self.join_over,
            lookup_over: self.lookup_over,
            max_virtual: self.max_virtual,
            ..FullStackConfig::default()
        }
    }

    /// The success rate below which the run fails.
    pub fn min_success(&self) -> f64 {
        self.min_success
            .unwrap_or(if self.loss > 0.0 { 0.95 } else { 1.0 })
    }
}

/// Parameters of a run; anything not given comes from the scenario.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// A named scenario: ci-10k, churn, partition, sybil, scale-100k.
    #[arg(long)]
    pub scenario: Option<String>,
    /// Nodes at the start.
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Seed of every random choice.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Length of the measured phase (e.g. 30m, 1h).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Publishers (one descriptor each).
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Capability paths the publishers publish under, comma-separated; each
    /// publisher picks one at random (list a path twice to pick it twice as
    /// often). Default: paths drawn from built-in families such as
    /// compute/text/gpu (e.g. compute/inference/text-generation,tools/search).
    #[arg(long, value_parser = parse_path, value_delimiter = ',')]
    pub paths: Vec<String>,
    /// Share of lookups that look for any provider at a key, as an agent
    /// does (no publisher filter, 20 answers), reported apart with how
    /// many of the possible answers came back (e.g. 30%).
    #[arg(long, value_parser = parse_percent)]
    pub open_lookups: Option<f64>,
    /// Lookups over the measured phase.
    #[arg(long)]
    pub lookups: Option<usize>,
    /// Churn rate, as a share of nodes per hour (e.g. 30%/h).
    #[arg(long, value_parser = parse_churn)]
    pub churn: Option<f64>,
    /// What churned nodes that restart with something keep: `state` (the
    /// whole node: store, table, publications) or `store` (their descriptor
    /// store only, as a process with a durable store restarts).
    #[arg(long)]
    pub restart_keeps: Option<Kept>,
    /// Crash a share of the nodes at once, some time into the phase (e.g. 30%@10m).
    #[arg(long, value_parser = parse_kill)]
    pub kill: Option<(f64, Duration)>,
    /// Message loss rate (e.g. 1%).
    #[arg(long, value_parser = parse_percent)]
    pub loss: Option<f64>,
    /// Losses in bursts: the mean length of a period in which one node's
    /// uplink loses everything (e.g. 200ms); the long-run loss rate stays
    /// `--loss`. Default: each message lost independently.
    #[arg(long, value_parser = parse_duration)]
    pub loss_burst: Option<Duration>,
    /// Latency model: `regions`, or `fixed:50ms`.
    #[arg(long, value_parser = parse_latency)]
    pub latency: Option<LatencyModel>,
    /// Jitter: mean extra delay as a share of the base delay (e.g. 10%).
    #[arg(long, value_parser = parse_percent)]
    pub jitter: Option<f64>,
    /// Partitions: START+LENGTH:SIDE, or START+LENGTH:SIDE:oneway for a one-way
    /// cut; SIDE is a share (30%) or region=NAME (e.g. 10m+5m:30% or
    /// 20m+10m:region=ap-tokyo:oneway); repeatable.
    #[arg(long, value_parser = parse_partition)]
    pub partition: Vec<PartitionSpec>,
    /// Adversaries: SHARE:BEHAVIOUR, comma-separated (e.g. 20%:eclipse,5%:forge);
    /// behaviours drop, random, eclipse, sybil (eclipse with mined ids),
    /// refuse-store, stale, forge.
    #[arg(long, value_parser = parse_adversary, value_delimiter = ',')]
    pub adversaries: Vec<AdversarySpec>,
    /// Victim publishers whose keys eclipse adversaries attack (0: all keys).
    #[arg(long)]
    pub victims: Option<usize>,
    /// Clock skew bound per node (e.g. 2s).
    #[arg(long, value_parser = parse_duration)]
    pub skew: Option<Duration>,
    /// The initial joins are spread over this long (e.g. 10m).
    #[arg(long, value_parser = parse_duration)]
    pub join_over: Option<Duration>,
    /// Descriptor TTL in seconds (nodes republish at half).
    #[arg(long)]
    pub ttl: Option<u32>,
    /// K (bucket size, replication).
    #[arg(long)]
    pub k: Option<usize>,
    /// α (lookup parallelism).
    #[arg(long)]
    pub alpha: Option<usize>,
    /// Buckets a node refreshes right after its bootstrap (default 16).
    #[arg(long)]
    pub bootstrap_refreshes: Option<usize>,
    /// Verify every descriptor in every node (no shared signature cache).
    #[arg(long)]
    pub no_signature_cache: bool,
    /// Hash every identity in every node (no shared node-id memo).
    #[arg(long)]
    pub no_node_id_cache: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar (it only shows when stdout is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

impl RunArgs {
    /// The scenario these arguments describe.
    pub fn scenario(&self) -> Result<Scenario, Error> {
        let mut sc = match &self.scenario {
            Some(name) => {
                Scenario::by_name(name).ok_or_else(|| Error::UnknownScenario(name.clone()))?
            }
            None => Scenario::custom(),
        };
        if let Some(n) = self.nodes {
            sc.nodes = n;
        }
        if let Some(s) = self.seed {
            sc.seed = s;
        }
        if let Some(p) = self.publishers {
            sc.publishers = p;
        }
        if !self.paths.is_empty() {
            sc.paths = self.paths.clone();
        }
        if let Some(o) = self.open_lookups {
            sc.open_lookups = o;
        }
        if let Some(v) = self.victims {
            sc.victims = v;
        }
        if let Some(t) = self.ttl {
            sc.ttl_secs = t;
        }
        if let Some(k) = self.k {
            sc.node.k = k;
        }
        if let Some(a) = self.alpha {
            sc.node.alpha = a;
        }
        if let Some(b) = self.bootstrap_refreshes {
            sc.node.bootstrap_refreshes = b;
        }
        if self.no_signature_cache {
            sc.node.signature_cache = false;
        }
        if self.no_node_id_cache {
            sc.node.node_id_cache = false;
        }
        if let Some(s) = self.skew {
            sc.skew = s;
        }
        if let Some(j) = self.join_over {
            sc.join_over = j;
        }
        if let Some(l) = self.loss {
            sc.network.loss = l;
        }
        if let Some(b) = self.loss_burst {
            sc.network.loss_burst = Some(b);
        }
        if let Some(l) = self.latency {
            sc.network.latency = l;
        }
        if let Some(j) = self.jitter {
            sc.network.jitter = j;
        }
        if !self.partition.is_empty() {
            sc.network.partitions = self.partition.clone();
        }
        if !self.adversaries.is_empty() {
            sc.adversaries = self.adversaries.clone();
            if sc.adversaries.iter().any(|a| a.grind) && sc.victims == 0 {
                sc.victims = 5;
            }
        }
        let reshape = self.duration.is_some()
            || self.lookups.is_some()
            || self.churn.is_some()
            || self.kill.is_some();
        if reshape {
            let base = sc.phases.first().cloned();
            let duration = self
                .duration
                .or(base.as_ref().map(|p| p.duration))
                .unwrap_or(Duration::from_secs(600));
            let lookups = self
                .lookups
                .or(base.as_ref().map(|p| p.lookups))
                .unwrap_or(1_000);
            let churn = self.churn.map(|rate| ChurnSpec {
                rate_per_hour: rate,
                ..ChurnSpec::default()
            });
            sc.phases = match self.kill {
                Some((share, at)) if at < duration => {
                    let before = lookups as f64 * at.as_secs_f64() / duration.as_secs_f64();
                    let mut phases = Vec::new();
                    if !at.is_zero() {
                        phases.push(Phase {
                            name: "before-kill".to_owned(),
                            duration: at,
                            lookups: before.round() as usize,
                            churn: churn.clone(),
                            kill_at_start: None,
                        });
                    }
                    phases.push(Phase {
                        name: "after-kill".to_owned(),
                        duration: duration - at,
                        lookups: lookups - before.round() as usize,
                        churn,
                        kill_at_start: Some(share),
                    });
                    phases
                }
                Some((_, at)) => return Err(Error::KillAfterEnd(format!("{at:?}"))),
                None => vec![Phase {
                    name: "run".to_owned(),
                    duration,
                    lookups,
                    churn,
                    kill_at_start: None,
                }],
            };
            sc.checks.clear();
            if self.scenario.is_some() {
                sc.name = format!("{}+flags", sc.name);
            }
        }
        if let Some(keeps) = self.restart_keeps {
            for churn in sc.phases.iter_mut().filter_map(|p| p.churn.as_mut()) {
                churn.restart_keeps = keeps;
            }
        }
        Ok(sc)
    }
}

/// `90s`, `30m`, `1h`, `250ms`, `2h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("empty duration".to_owned());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("'{s}': a number needs a unit (ms, s, m, h)"))?;
        let (num, tail) = rest.split_at(digits);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("'{s}': '{num}' is not a number"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let secs = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" | "min" => value * 60.0,
            "h" => value * 3600.0,
            "d" => value * 86_400.0,
            other => return Err(format!("'{s}': unknown unit '{other}' (ms, s, m, h, d)")),
        };
        total += Duration::from_secs_f64(secs);
        rest = next;
    }
    Ok(total)
}

/// A capability path (`compute/inference/text-generation`), checked by
/// [`workload::check_path`](crate::workload::check_path).
pub fn parse_path(s: &str) -> Result<String, String> {
    let path = s.trim();
    crate::workload::check_path(path)?;
    Ok(path.to_owned())
}

/// `1%`, `0.5%`, or a plain fraction `0.01`.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let v = match s.strip_suffix('%') {
        Some(p) => {
            p.trim()
                .parse::<f64>()
                .map_err(|_| format!("'{s}' is not a percentage"))?
                / 100.0
        }
        None => s
            .parse::<f64>()
            .map_err(|_| format!("'{s}' is not a number"))?,
    };
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("'{s}' is outside 0..100 %"));
    }
    Ok(v)
}

/// `30%/h` (also `/hour`, `/m`, `/min`; per hour when no period is given).
pub fn parse_churn(s: &str) -> Result<f64, String> {
    let (share, per) = match s.split_once('/') {
        Some((a, b)) => (a, b),
        None => (s, "h"),
    };
    let hours = match per {
        "h" | "hour" => 1.0,
        "m" | "min" => 1.0 / 60.0,
        "d" | "day" => 24.0,
        other => return Err(format!("'{s}': unknown period '{other}' (h, min, day)")),
    };
    let v = share
        .trim()
        .strip_suffix('%')
        .ok_or_else(|| format!("'{s}': write the rate as a percentage, e.g. 30%/h"))?
        .parse::<f64>()
        .map_err(|_| format!("'{s}' is not a percentage"))?
        / 100.0;
    if v < 0.0 {
        return Err(format!("'{s}' is negative"));
    }
    Ok(v / hours)
}

/// `30%@10m`: crash 30 % of the nodes 10 minutes into the phase.
pub fn parse_kill(s: &str) -> Result<(f64, Duration), String> {
    let (share, at) = s.split_once('@').unwrap_or((s, "0s"));
    Ok((parse_percent(share)?, parse_duration(at)?))
}

/// `regions` or `fixed:50ms`.
pub fn parse_latency(s: &str) -> Result<LatencyModel, String> {
    if s == "regions" {
        return Ok(LatencyModel::Regions);
    }
    match s.strip_prefix("fixed:") {
        Some(d) => Ok(LatencyModel::Fixed(parse_duration(d)?)),
        None => Err(format!("'{s}': use 'regions' or 'fixed:50ms'")),
    }
}

/// `20%:eclipse`; `sybil` is eclipse with mined ids.
pub fn parse_adversary(s: &str) -> Result<AdversarySpec, String> {
    let (share, name) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}': write SHARE:BEHAVIOUR, e.g. 20%:eclipse"))?;
    let fraction = parse_percent(share)?;
    let (behaviour, grind) = match name {
        "sybil" => (Behaviour::Eclipse, true),
        other => (
            Behaviour::parse(other).ok_or_else(|| {
                format!("'{other}': behaviours are drop, random, eclipse, sybil, refuse-store, stale, forge")
            })?,
            false,
        ),
    };
    Ok(AdversarySpec {
        fraction,
        behaviour,
        grind,
    })
}

/// `10m+5m:30%`, `20m+10m:region=ap-tokyo:oneway`.
pub fn parse_partition(s: &str) -> Result<PartitionSpec, String> {
    let mut parts = s.split(':');
    let window = parts.next().unwrap_or_default();
    let (start, len) = window
        .split_once('+')
        .ok_or_else(|| format!("'{s}': write START+LENGTH:SIDE, e.g. 10m+5m:30%"))?;
    let side = parts
        .next()
        .ok_or_else(|| format!("'{s}': missing the side (30% or region=NAME)"))?;
    let side = match side.strip_prefix("region=") {
        Some(r) => Side::Region(
            REGIONS
                .iter()
                .position(|x| x.name == r)
                .ok_or_else(|| format!("'{r}': regions are {}", region_names()))?,
        ),
        None => Side::Fraction(parse_percent(side)?),
    };
    let oneway = match parts.next() {
        None => false,
        Some("oneway") => true,
        Some(other) => return Err(format!("'{other}': the only option is 'oneway'")),
    };
    Ok(PartitionSpec {
        start: parse_duration(start)?,
        duration: parse_duration(len)?,
        side,
        oneway,
    })
}

fn region_names() -> String {
    REGIONS
        .iter()
        .map(|r| r.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `scenarios` listing.
pub fn describe_scenarios() -> String {
    let mut s = String::new();
    for (name, f) in Scenario::named() {
        let sc = f();
        s.push_str(&format!("{name}: {}\n", sc.description));
        s.push_str(&format!(
            "  nodes {}, publishers {}{}, TTL {} s, joins over {:?}, {} + {} phases:\n",
            sc.nodes,
            sc.publishers,
            if sc.victims > 0 {
                format!(" + {} victims", sc.victims)
            } else {
                String::new()
            },
            sc.ttl_secs,
            sc.join_over,
            sc.network.partitions.len(),
            sc.phases.len()
        ));
        for p in &sc.phases {
            s.push_str(&format!(
                "    {}: {:?}, {} lookups{}{}\n",
                p.name,
                p.duration,
                p.lookups,
                p.churn
                    .as_ref()
                    .map(|c| format!(", churn {:.0} %/h", c.rate_per_hour * 100.0))
                    .unwrap_or_default(),
                p.kill_at_start
                    .map(|k| format!(", {:.0} % killed at start", k * 100.0))
                    .unwrap_or_default()
            ));
        }
        for c in &sc.checks {
            s.push_str(&format!("    check: {}\n", c.describe()));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_parses_and_replays_one_seed_alone() {
        let argv = [
            "sweep",
            "--scenario",
            "churn",
            "--seeds",
            "1-3,9",
            "--jobs",
            "2",
            "--loss",
            "1%",
            "--json=sweep.json",
            "--partition",
            "10m+5m:region=ap-tokyo",
            "--adversaries",
            "20%:eclipse,5%:forge",
        ];
        let cli = Cli::try_parse_from(std::iter::once("mars-sim").chain(argv)).unwrap();
        let Some(Command::Sweep(args)) = cli.command else {
            panic!("not a sweep: {cli:?}");
        };
        assert_eq!(args.seeds, vec![1, 2, 3, 9]);
        assert_eq!(args.jobs, Some(2));
        assert_eq!(args.run.scenario.as_deref(), Some("churn"));
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            replay_command(&argv, 3),
            "mars-sim run --scenario churn --loss 1% --partition 10m+5m:region=ap-tokyo \
             --adversaries 20%:eclipse,5%:forge --seed 3"
        );
        // Words a shell would split are quoted.
        let spaced = ["sweep".to_owned(), "--paths".to_owned(), "a b".to_owned()];
        assert_eq!(
            replay_command(&spaced, 1),
            "mars-sim run --paths 'a b' --seed 1"
        );
        // A seed of its own conflicts with the sweep's seeds; no seeds at all
        // is refused too, and so are zero jobs.
        let sweep = |args: &[&str]| Cli::try_parse_from(["mars-sim", "sweep"].iter().chain(args));
        assert!(sweep(&["--seeds", "1-2", "--seed", "4"]).is_err());
        assert!(sweep(&[]).is_err());
        assert!(sweep(&["--seeds", "1", "--jobs", "0"]).is_err());
    }

    #[test]
    fn paths_are_given_comma_separated_or_repeated_and_checked() {
        let cli =
            Cli::try_parse_from(["mars-sim", "run", "--paths", "a/b, c", "--paths", "d"]).unwrap();
        let Some(Command::Run(run)) = cli.command else {
            panic!("not a run");
        };
        assert_eq!(run.paths, vec!["a/b", "c", "d"]);
        assert_eq!(run.scenario().unwrap().paths, vec!["a/b", "c", "d"]);
        assert!(Cli::try_parse_from(["mars-sim", "run", "--paths", "a//b"]).is_err());
        let open = Cli::try_parse_from(["mars-sim", "--open-lookups", "30%"]).unwrap();
        assert_eq!(open.run.scenario().unwrap().open_lookups, 0.3);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("2h30m").unwrap(), Duration::from_secs(9000));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn rates_and_shares() {
        assert!((parse_churn("30%/h").unwrap() - 0.3).abs() < 1e-12);
        assert!((parse_churn("1%/min").unwrap() - 0.6).abs() < 1e-12);
        assert!((parse_percent("1%").unwrap() - 0.01).abs() < 1e-12);
        assert!(parse_percent("150%").is_err());
        assert_eq!(
            parse_kill("30%@10m").unwrap(),
            (0.3, Duration::from_secs(600))
        );
        let a = parse_adversary("20%:sybil").unwrap();
        assert_eq!((a.behaviour, a.grind), (Behaviour::Eclipse, true));
        assert!(parse_adversary("20%:nice").is_err());
        let p = parse_partition("20m+10m:region=ap-tokyo:oneway").unwrap();
        assert_eq!(p.side, Side::Region(3));
        assert!(p.oneway);
        assert_eq!(
            parse_latency("fixed:50ms").unwrap(),
            LatencyModel::Fixed(Duration::from_millis(50))
        );
    }

    #[test]
    fn a_kill_splits_the_phase() {
        let args = RunArgs {
            duration: Some(Duration::from_secs(1200)),
            lookups: Some(1000),
            kill: Some((0.3, Duration::from_secs(600))),
            ..RunArgs::default()
        };
        let sc = args.scenario().unwrap();
        assert_eq!(sc.phases.len(), 2);
        assert_eq!(sc.phases[0].lookups + sc.phases[1].lookups, 1000);
        assert_eq!(sc.phases[1].kill_at_start, Some(0.3));
    }

    #[test]
    fn restart_keeps_reaches_every_churning_phase() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["mars-sim", "--scenario", "ci-10k"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).unwrap().run.scenario().unwrap()
        };
        let keeps = |sc: &Scenario| -> Vec<Kept> {
            sc.phases
                .iter()
                .filter_map(|p| p.churn.as_ref().map(|c| c.restart_keeps))
                .collect()
        };
        assert_eq!(keeps(&parse(&[])), vec![Kept::State]);
        let sc = parse(&["--restart-keeps", "store"]);
        assert_eq!(keeps(&sc), vec![Kept::Store]);
        // The scenario's checks stay: the flag does not reshape phases.
        assert!(!sc.checks.is_empty());
        assert!(
            Cli::try_parse_from(["mars-sim", "--restart-keeps", "table"]).is_err(),
            "only state or store"
        );
    }

    #[test]
    fn both_command_forms_parse() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let root =
            Cli::try_parse_from(["mars-sim", "--scenario", "ci-10k", "--no-progress"]).unwrap();
        assert!(root.command.is_none());
        assert_eq!(root.run.scenario.as_deref(), Some("ci-10k"));
        let run = Cli::try_parse_from([
            "mars-sim",
            "run",
            "--nodes",
            "2000",
            "--seed",
            "7",
            "--duration",
            "1h",
            "--publishers",
            "200",
            "--lookups",
            "5000",
            "--churn",
            "30%/h",
            "--loss",
            "1%",
            "--latency",
            "regions",
            "--adversaries",
            "20%:eclipse,5%:forge",
            "--partition",
            "10m+5m:30%",
            "--json",
            "out.json",
        ])
        .unwrap();
        let Some(Command::Run(args)) = run.command else {
            panic!("not a run")
        };
        let sc = args.scenario().unwrap();
        assert_eq!((sc.nodes, sc.seed, sc.publishers), (2000, 7, 200));
        assert_eq!(sc.adversaries.len(), 2);
        assert_eq!(sc.network.partitions.len(), 1);
        assert!((sc.network.loss - 0.01).abs() < 1e-12);
        assert_eq!(sc.phases[0].lookups, 5000);
        assert!(
            Cli::try_parse_from(["mars-sim", "--scenario", "nope"])
                .unwrap()
                .run
                .scenario()
                .is_err()
        );
    }

    #[test]
    fn quic_parses_with_defaults_and_flags() {
        let cli = Cli::try_parse_from(["mars-sim", "quic"]).unwrap();
        let Some(Command::Quic(args)) = cli.command else {
            panic!("not quic")
        };
        let c = args.config();
        assert_eq!((c.nodes, c.seed, c.publishers, c.lookups), (30, 1, 10, 100));
        assert_eq!(c.network.loss, 0.0);
        assert_eq!(args.min_success(), 1.0);
        let cli = Cli::try_parse_from([
            "mars-sim",
            "quic",
            "--nodes",
            "12",
            "--loss",
            "1%",
            "--latency",
            "fixed:20ms",
            "--json",
            "q.json",
        ])
        .unwrap();
        let Some(Command::Quic(args)) = cli.command else {
            panic!("not quic")
        };
        assert_eq!(args.config().nodes, 12);
        assert_eq!(args.min_success(), 0.95);
        assert_eq!(
            args.config().network.latency,
            LatencyModel::Fixed(Duration::from_millis(20))
        );
        assert!(Cli::try_parse_from(["mars-sim", "quic", "--loss", "150%"]).is_err());
        assert!(Cli::try_parse_from(["mars-sim", "quic", "--nodes", "-1"]).is_err());
    }

    #[test]
    fn every_named_scenario_parses() {
        for (name, _) in Scenario::named() {
            let args = RunArgs {
                scenario: Some(name.to_owned()),
                ..RunArgs::default()
            };
            assert_eq!(args.scenario().unwrap().name, name);
        }
    }
}
