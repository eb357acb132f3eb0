//! `mars-sim`: run a named scenario or one built from flags (or, with
//! `quic`, a small mesh of full QUIC hosts; with `sweep`, one scenario
//! under many seeds), print the table, optionally write JSON, and exit
//! non-zero when a check fails.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use mars_sim::cli::{
    Cli, Command, QuicArgs, RunArgs, SweepArgs, describe_scenarios, replay_command,
};
use mars_sim::fullstack::FullStack;
use mars_sim::sweep::{self, SweepReport};
use mars_sim::{Error, Scenario, Sim};

/// `print!` that ends the process quietly when stdout is a closed pipe
/// (`mars-sim … | head`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        write_stdout(format_args!($($arg)*), false)
    };
}

/// `println!`, with [`out!`]'s handling of a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {
        write_stdout(format_args!($($arg)*), true)
    };
}

fn write_stdout(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                stdout.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        // Whoever read the output has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("mars-sim: cannot write to stdout: {e}");
            std::process::exit(2);
        }
    }
}

fn main() -> ExitCode {
    if let Some(code) = rerun_with_huge_pages() {
        return code;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Scenarios) => {
            out!("{}", describe_scenarios());
            return ExitCode::SUCCESS;
        }
        Some(Command::Run(args)) => *args,
        Some(Command::Quic(args)) => return exit_code(run_quic(&args)),
        Some(Command::Sweep(args)) => return exit_code(run_sweep(&args)),
        None => cli.run,
    };
    exit_code(run(&args))
}

/// 0 when the run passed, 1 when a check failed, 2 when it could not run.
fn exit_code(result: Result<bool, Error>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("mars-sim: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs this same command again with glibc's malloc asked to back its heap
/// with transparent huge pages, unless that is already settled (the
/// tunable is set either way) or `MARS_SIM_NO_HUGE_PAGES` is set; `None`
/// to go on in this process.
///
/// A run touches a random node's state with every event, spread over
/// gigabytes, so with 4 KiB pages nearly every access also misses the TLB
/// and walks page tables that no longer fit the caches. glibc reads its
/// tunables once at start, hence the second process. Measured: ci-10k
/// 16 % less CPU; results and trace hashes are the same (nothing in a run
/// depends on where memory lies).
///
/// The second process checks that the tunable took: glibc 2.36 (Debian 12)
/// reads the kernel's THP mode into a buffer it never terminates, so
/// whether it sees "madvise" depends on a stray stack byte, which differs
/// between builds and, with address randomisation, between runs (measured:
/// 4 of 6 starts of one build ran without huge pages). A process that finds
/// none exits at once with [`NO_HUGE_PAGES`] and the first tries again, up
/// to [`HUGE_PAGE_TRIES`] times, the last try running either way.
fn rerun_with_huge_pages() -> Option<ExitCode> {
    const VAR: &str = "GLIBC_TUNABLES";
    const TUNABLE: &str = "glibc.malloc.hugetlb";
    if !cfg!(all(target_os = "linux", target_env = "gnu"))
        || std::env::var_os("MARS_SIM_NO_HUGE_PAGES").is_some()
    {
        return None;
    }
    let current = match std::env::var(VAR) {
        Ok(v) => v,
        Err(std::env::VarError::NotPresent) => String::new(),
        Err(std::env::VarError::NotUnicode(_)) => return None,
    };
    if current.contains(TUNABLE) {
        // The second process (or the user's own setting).
        let last_try = std::env::var(TRY_VAR).is_ok_and(|t| t.len() >= HUGE_PAGE_TRIES);
        if std::env::var_os(TRY_VAR).is_some() && !last_try && !huge_pages_active() {
            return Some(ExitCode::from(NO_HUGE_PAGES));
        }
        return None;
    }
    let value = if current.is_empty() {
        format!("{TUNABLE}=1")
    } else {
        format!("{current}:{TUNABLE}=1")
    };
    let exe = std::env::current_exe().ok()?;
    let retry = thp_mode_is_madvise();
    for tries in 1..=HUGE_PAGE_TRIES {
        // One more character each time: the try count, and a different
        // stack layout for glibc's start-up.
        let marker = if retry && tries < HUGE_PAGE_TRIES {
            "+".repeat(tries)
        } else {
            "+".repeat(HUGE_PAGE_TRIES)
        };
        let status = std::process::Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env(VAR, &value)
            .env(TRY_VAR, &marker)
            .status()
            .ok()?;
        let code = status.code().map_or(1, |c| c.clamp(0, 255) as u8);
        if code != NO_HUGE_PAGES || marker.len() >= HUGE_PAGE_TRIES {
            return Some(ExitCode::from(code));
        }
    }
    Some(ExitCode::from(1))
}

/// Set by the first process for the second: one `+` per try.
const TRY_VAR: &str = "MARS_SIM_HUGE_PAGE_TRY";
/// Starts of the second process before it runs with or without huge pages.
const HUGE_PAGE_TRIES: usize = 8;
/// Exit code of a second process whose malloc did not take the tunable.
const NO_HUGE_PAGES: u8 = 75;

/// Whether the kernel gives huge pages to memory advised so (the only mode
/// in which glibc's tunable does anything).
fn thp_mode_is_madvise() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| s.contains("[madvise]"))
}

/// Whether malloc advises huge pages: a 4 MiB allocation (mapped on its
/// own) is checked for the `hg` flag in `/proc/self/smaps`. True when that
/// cannot be told.
fn huge_pages_active() -> bool {
    let probe: Vec<u8> = Vec::with_capacity(4 << 20);
    let addr = std::hint::black_box(probe.as_ptr()) as usize;
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return true;
    };
    let mut inside = false;
    for line in smaps.lines() {
        let range = line.split_once(' ').and_then(|(r, _)| r.split_once('-'));
        if let Some((a, b)) = range {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                inside = a <= addr && addr < b;
                continue;
            }
        }
        if inside && line.starts_with("VmFlags:") {
            return line.split_whitespace().any(|f| f == "hg");
        }
    }
    true
}

/// `mars-sim quic`: a full-stack run; passes when enough lookups succeed.
fn run_quic(args: &QuicArgs) -> Result<bool, Error> {
    let sim = FullStack::new(args.config())?;
    let report = sim.run();
    out!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        outln!("JSON report written to {}", path.display());
    }
    let min = args.min_success();
    if report.success < min {
        outln!(
            "mars-sim: lookup success {:.2} % is below --min-success {:.2} %",
            report.success * 100.0,
            min * 100.0
        );
        return Ok(false);
    }
    Ok(true)
}

fn run(args: &RunArgs) -> Result<bool, Error> {
    let scenario = args.scenario()?;
    outln!(
        "mars-sim: scenario {} — {} nodes, seed {}, {:.0} min of virtual time",
        scenario.name,
        scenario.nodes,
        scenario.seed,
        scenario.total_duration().as_secs_f64() / 60.0
    );
    tracing::info!(?scenario, "starting");
    let mut sim = Sim::new(scenario);
    let bar = (!args.no_progress && std::io::stdout().is_terminal()).then(|| {
        let bar = ProgressBar::new(1000);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {percent:>3}% of virtual time  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    if let Some(bar) = bar.clone() {
        sim.on_progress(Box::new(move |done, events| {
            bar.set_position((done * 1000.0) as u64);
            bar.set_message(format!("{:.1} M events", events as f64 / 1e6));
        }));
    }
    let report = sim.run();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    out!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        outln!("JSON report written to {}", path.display());
    }
    if !report.passed {
        outln!(
            "mars-sim: {} check(s) failed",
            report.checks.iter().filter(|c| !c.passed).count()
        );
    }
    Ok(report.passed)
}

/// `mars-sim sweep`: every seed's run on a pool of threads, a line per
/// seed as it ends, then the verdict and the command that replays each
/// failed seed alone. Passes when every seed passes.
fn run_sweep(args: &SweepArgs) -> Result<bool, Error> {
    let base = args.run.scenario()?;
    let jobs = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let jobs = jobs.min(args.seeds.len()).max(1);
    outln!(
        "mars-sim: sweep of scenario {} — {} nodes, {} seeds, {} at once",
        base.name,
        base.nodes,
        args.seeds.len(),
        jobs
    );
    let started = mars_sim::wall::Stopwatch::start();
    let total = args.seeds.len();
    let mut done = 0;
    let outcomes = sweep::sweep(
        &args.seeds,
        jobs,
        |seed| {
            Sim::new(Scenario {
                seed,
                ..base.clone()
            })
            .run()
        },
        |outcome| {
            done += 1;
            outln!("[{done}/{total}] {}", sweep::seed_line(outcome));
        },
    );
    let wall = started.elapsed();
    let report = SweepReport::new(&base.name, &outcomes, jobs, wall);
    outln!(
        "sweep: {} seeds, {} passed, {} failed, {} panicked; {:.1} M events in {:.1} s wall",
        outcomes.len(),
        outcomes.iter().filter(|o| o.passed()).count(),
        report.failed_seeds.len(),
        report.panicked.len(),
        report.events as f64 / 1e6,
        wall.as_secs_f64()
    );
    let replay: Vec<u64> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| o.seed)
        .collect();
    if !replay.is_empty() {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        outln!("replay a failed seed alone:");
        for seed in replay {
            outln!("  {}", replay_command(&argv, seed));
        }
    }
    if let Some(path) = &args.run.json {
        report.write_json(path)?;
        outln!("JSON report written to {}", path.display());
    }
    Ok(report.passed)
}
