//! The full-stack engine: real QUIC hosts on the simulated network.
//! Sizes are small so each test runs in seconds in a debug build.

use std::time::Duration;

use mars_sim::fullstack::{FullStack, FullStackConfig, FullStackError, FullStackReport, Stop};
use mars_sim::network::{LatencyModel, NetworkConfig};

fn config(nodes: usize, seed: u64, loss: f64) -> FullStackConfig {
    FullStackConfig {
        nodes,
        seed,
        publishers: 5,
        lookups: 30,
        network: NetworkConfig {
            latency: LatencyModel::Regions,
            loss,
            ..NetworkConfig::default()
        },
        join_over: Duration::from_secs(2),
        settle: Duration::from_secs(1),
        ..FullStackConfig::default()
    }
}

fn run(c: FullStackConfig) -> FullStackReport {
    let r = FullStack::new(c).expect("valid configuration").run();
    eprintln!("{}", r.table());
    r
}

#[test]
fn same_seed_same_trace_hash_other_seed_another() {
    let a = run(config(8, 7, 0.02));
    let b = run(config(8, 7, 0.02));
    assert_eq!(a.stop, Stop::Finished);
    assert_eq!(a.trace_hash, b.trace_hash, "same seed, another run");
    assert_eq!(a.datagrams_sent, b.datagrams_sent);
    assert_eq!(a.bytes_sent, b.bytes_sent);
    assert_eq!(a.lookups_found, b.lookups_found);
    let c = run(config(8, 8, 0.02));
    assert_ne!(a.trace_hash, c.trace_hash, "another seed, the same trace");
}

#[test]
fn twenty_hosts_without_loss_find_everything_published() {
    let r = run(config(20, 1, 0.0));
    assert_eq!(r.stop, Stop::Finished);
    assert_eq!(r.bootstraps_ok, 19);
    assert_eq!(r.publishes_ok, 5);
    assert_eq!(r.lookups_found, 30, "{r:?}");
    assert_eq!(r.success, 1.0);
    assert_eq!(r.datagrams_lost, 0);
    assert!(r.handshakes > 0 && r.accepted > 0);
    assert!(r.latency_ms_p50 > 0.0);
}

#[test]
fn five_percent_loss_is_recovered_by_quic() {
    let r = run(config(16, 3, 0.05));
    assert_eq!(r.stop, Stop::Finished);
    assert!(r.datagrams_lost > 0, "nothing was lost");
    assert!(r.success >= 0.95, "success {:.3}", r.success);
}

#[test]
fn bad_parameters_are_errors_not_panics() {
    for c in [
        FullStackConfig {
            nodes: 0,
            ..FullStackConfig::default()
        },
        FullStackConfig {
            nodes: 1,
            ..FullStackConfig::default()
        },
        FullStackConfig {
            nodes: 3,
            publishers: 4,
            ..FullStackConfig::default()
        },
        FullStackConfig {
            publishers: 0,
            lookups: 1,
            ..FullStackConfig::default()
        },
        FullStackConfig {
            max_virtual: Duration::from_secs(1 << 40),
            ..FullStackConfig::default()
        },
    ] {
        assert!(FullStack::new(c).is_err());
    }
    assert!(matches!(
        FullStack::new(FullStackConfig {
            nodes: 1,
            ..FullStackConfig::default()
        }),
        Err(FullStackError::Nodes(1))
    ));
}

#[test]
fn a_mesh_without_publishers_or_lookups_ends_at_once() {
    let r = run(FullStackConfig {
        nodes: 3,
        publishers: 0,
        lookups: 0,
        ..FullStackConfig::default()
    });
    assert_eq!(r.stop, Stop::Finished);
    assert_eq!(r.bootstraps_ok, 2);
    assert_eq!(r.success, 1.0);
}

#[test]
fn the_quic_command_exits_2_on_usage_errors_and_1_below_min_success() {
    let bin = env!("CARGO_BIN_EXE_mars-sim");
    let status = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env("MARS_SIM_NO_HUGE_PAGES", "1")
            .output()
            .expect("the binary runs")
            .status
            .code()
    };
    assert_eq!(status(&["quic", "--nodes", "1"]), Some(2));
    assert_eq!(status(&["quic", "--loss", "lots"]), Some(2));
    assert_eq!(
        status(&["quic", "--nodes", "3", "--publishers", "4"]),
        Some(2)
    );
    let small = [
        "quic",
        "--nodes",
        "4",
        "--publishers",
        "2",
        "--lookups",
        "4",
    ];
    assert_eq!(status(&small), Some(0));
    // Without publishers every lookup fails; --lookups needs a publisher.
    assert_eq!(
        status(&[
            "quic",
            "--nodes",
            "4",
            "--publishers",
            "0",
            "--lookups",
            "4"
        ]),
        Some(2)
    );
    // A bar no run can reach: 100 % success within 1 ms of virtual time.
    let mut short = small.to_vec();
    short.extend(["--max-virtual", "1ms"]);
    assert_eq!(status(&short), Some(1));
}

/// A publish counts as ok only when a host other than the publisher holds
/// the descriptor: cut off from everyone, a publisher that stores to
/// itself alone has not published.
#[test]
fn a_publish_that_reaches_no_other_host_is_not_ok() {
    let mut c = config(6, 3, 1.0);
    c.lookups = 5;
    c.max_virtual = Duration::from_secs(120);
    let r = run(c);
    assert_eq!(r.publishes_ok, 0, "{}", r.table());
    assert_eq!(r.publishes_failed, 5);
    assert_eq!(r.lookups_found, 0);
}

/// Bursty loss (bad periods of 100 ms at 3 %) is recovered by QUIC as
/// independent loss is.
#[test]
fn bursty_loss_is_recovered_by_quic() {
    let mut c = config(12, 5, 0.03);
    c.network.loss_burst = Some(Duration::from_millis(100));
    let r = run(c);
    assert!(r.datagrams_lost > 0, "{}", r.table());
    assert!(r.success >= 0.95, "{}", r.table());
}
