//! `mars-sim`: run a named scenario or one built from flags, print the
//! table, optionally write JSON, and exit non-zero when a check fails.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use mars_sim::cli::{Cli, Command, RunArgs, describe_scenarios};
use mars_sim::{Error, Sim};

fn main() -> ExitCode {
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
            print!("{}", describe_scenarios());
            return ExitCode::SUCCESS;
        }
        Some(Command::Run(args)) => *args,
        None => cli.run,
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("mars-sim: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &RunArgs) -> Result<bool, Error> {
    let scenario = args.scenario()?;
    println!(
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
    print!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        println!("JSON report written to {}", path.display());
    }
    if !report.passed {
        println!(
            "mars-sim: {} check(s) failed",
            report.checks.iter().filter(|c| !c.passed).count()
        );
    }
    Ok(report.passed)
}
