//! Tests of the engine itself on tiny meshes: determinism of the trace
//! hash, partitions that really cut traffic, loss within tolerance,
//! churn and kills, adversaries that are rejected.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use mars_sim::adversary::{AdversarySpec, Behaviour};
use mars_sim::churn::{ChurnSpec, Kept};
use mars_sim::network::{LatencyModel, Network, NetworkConfig, PartitionSpec, Side, Transit};
use mars_sim::rng::SimRng;
use mars_sim::{Delivery, Phase, START, Scenario, Sim};

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let a = Sim::new(Scenario::tiny(16)).run();
    let b = Sim::new(Scenario::tiny(16)).run();
    let c = Sim::new(Scenario {
        seed: 2,
        ..Scenario::tiny(16)
    })
    .run();
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.performance.events, b.performance.events);
    assert_eq!(a.counters.requests, b.counters.requests);
    assert_ne!(a.trace_hash, c.trace_hash);
    assert!(a.performance.trace_records > 1000, "{:?}", a.performance);
}

#[test]
fn a_tiny_mesh_finds_everything() {
    let r = Sim::new(Scenario::tiny(20)).run();
    let l = &r.phases[0].lookups;
    assert!(l.issued >= 15, "{l:?}");
    assert_eq!(l.success, 1.0, "{}", r.table());
    assert!(l.rounds_mean >= 1.0);
    assert!(l.latency_ms_p50 > 0.0);
    assert!(!r.replicas.is_empty());
    assert!(r.table().contains("trace"));
}

#[test]
fn events_leave_in_time_order() {
    let mut sim = Sim::new(Scenario::tiny(10));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = Rc::clone(&seen);
    sim.observe(Box::new(move |d: Delivery| s.borrow_mut().push(d.at)));
    sim.run();
    let times = seen.borrow();
    assert!(times.len() > 100);
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn partitions_cut_traffic_and_heal() {
    // Half the nodes cut off both ways for the first 40 s of the phase.
    let sc = Scenario {
        network: NetworkConfig {
            latency: LatencyModel::Fixed(Duration::from_millis(20)),
            partitions: vec![PartitionSpec {
                start: Duration::ZERO,
                duration: Duration::from_secs(40),
                side: Side::Fraction(0.5),
                oneway: false,
            }],
            ..NetworkConfig::default()
        },
        ..Scenario::tiny(24)
    };
    let mut sim = Sim::new(sc);
    let window = (
        sim.measure_start(),
        sim.measure_start().saturating_add(Duration::from_secs(40)),
    );
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = Rc::clone(&log);
    sim.observe(Box::new(move |d: Delivery| l.borrow_mut().push(d)));
    let report = sim.run();
    let net = sim.network();
    let log = log.borrow();
    let crossing = |d: &&Delivery| !net.connected(d.from, d.to, d.at);
    let during = log
        .iter()
        .filter(|d| d.at >= window.0 && d.at < window.1)
        .filter(crossing)
        .count();
    let outside = log
        .iter()
        .filter(|d| d.at >= window.1)
        .filter(|d| {
            // Pairs on opposite sides, measured as if the partition held.
            let mid = window.0.saturating_add(Duration::from_secs(1));
            !net.connected(d.from, d.to, mid)
        })
        .count();
    assert_eq!(during, 0, "no message crosses an active partition");
    assert!(outside > 0, "traffic crosses again after the heal");
    assert!(report.counters.cut > 0, "{:?}", report.counters);
}

#[test]
fn a_oneway_partition_cuts_one_direction() {
    let mut net = Network::new(
        NetworkConfig {
            latency: LatencyModel::Fixed(Duration::from_millis(5)),
            partitions: vec![PartitionSpec {
                start: Duration::ZERO,
                duration: Duration::from_secs(10),
                side: Side::Fraction(0.5),
                oneway: true,
            }],
            ..NetworkConfig::default()
        },
        9,
        START,
    );
    let mut rng = SimRng::new(1);
    for _ in 0..64 {
        net.place(&mut rng);
    }
    let at = START.saturating_add(Duration::from_secs(1));
    let mut pairs = 0;
    for a in 0..64 {
        for b in 0..64 {
            if net.cut(a, b, at) {
                pairs += 1;
                assert!(!net.cut(b, a, at), "one way only: {a} -> {b}");
            }
        }
    }
    assert!(pairs > 100, "{pairs}");
    let later = START.saturating_add(Duration::from_secs(11));
    assert!((0..64).all(|a| (0..64).all(|b| !net.cut(a, b, later))));
}

#[test]
fn loss_rate_within_tolerance() {
    let mut net = Network::new(
        NetworkConfig {
            loss: 0.05,
            ..NetworkConfig::default()
        },
        3,
        START,
    );
    let mut rng = SimRng::new(2);
    for _ in 0..10 {
        net.place(&mut rng);
    }
    let n = 200_000;
    let lost = (0..n)
        .filter(|i| net.transit(i % 10, (i + 3) % 10, 100, START) == Transit::Lost)
        .count();
    let rate = lost as f64 / n as f64;
    // 5 % ± 0.25 % is over five standard deviations at this sample size.
    assert!((0.0475..0.0525).contains(&rate), "{rate}");

    // And in a whole run: the engine loses about that share of messages.
    let sc = Scenario {
        network: NetworkConfig {
            latency: LatencyModel::Fixed(Duration::from_millis(20)),
            loss: 0.05,
            ..NetworkConfig::default()
        },
        ..Scenario::tiny(16)
    };
    let r = Sim::new(sc).run();
    let sent = r.counters.requests + r.counters.responses;
    let rate = r.counters.lost as f64 / sent as f64;
    assert!((0.04..0.06).contains(&rate), "{rate} of {sent}");
}

/// Bursty loss keeps the long-run rate and makes each sender lose
/// everything it sends for periods of the set mean length.
#[test]
fn bursty_loss_keeps_the_rate_in_periods_of_the_set_length() {
    let runs = |burst: Option<Duration>| {
        let mut net = Network::new(
            NetworkConfig {
                loss: 0.05,
                loss_burst: burst,
                ..NetworkConfig::default()
            },
            3,
            START,
        );
        let mut rng = SimRng::new(2);
        let senders = 10u32;
        for _ in 0..senders {
            net.place(&mut rng);
        }
        // Every sender sends a message every millisecond for 400 s.
        let (mut sent, mut lost) = (0u32, 0u32);
        let mut current = vec![0u32; senders as usize];
        let mut finished: Vec<u32> = Vec::new();
        for ms in 0..400_000u64 {
            let at = START.saturating_add(Duration::from_millis(ms));
            for a in 0..senders {
                sent += 1;
                if net.transit(a, (a + 3) % senders, 100, at) == Transit::Lost {
                    lost += 1;
                    current[a as usize] += 1;
                } else if current[a as usize] > 0 {
                    finished.push(std::mem::take(&mut current[a as usize]));
                }
            }
        }
        let mean_run = f64::from(finished.iter().sum::<u32>()) / finished.len() as f64;
        (f64::from(lost) / f64::from(sent), mean_run)
    };
    // Bursts of 5 ms on average: 5 messages at one a millisecond, 5.5 as
    // observed (a burst between two sends is not seen), about 4,000 a run.
    let (rate, run) = runs(Some(Duration::from_millis(5)));
    assert!((0.0445..0.0555).contains(&rate), "{rate}");
    assert!((5.1..6.0).contains(&run), "{run}");
    // Independent losses (the default) come one at a time.
    let (rate, run) = runs(None);
    assert!((0.049..0.051).contains(&rate), "{rate}");
    assert!(run < 1.1, "{run}");
}

#[test]
fn latency_follows_the_region_matrix() {
    let mut net = Network::new(NetworkConfig::default(), 4, START);
    let mut rng = SimRng::new(3);
    for _ in 0..200 {
        net.place(&mut rng);
    }
    for a in 0..20u32 {
        for b in 0..20u32 {
            let base = net.base_delay(a, b);
            let (ra, rb) = (net.placement(a).region, net.placement(b).region);
            let half_rtt = u64::from(mars_sim::network::RTT_MS[ra as usize][rb as usize]) * 500;
            assert!(base.as_micros() as u64 >= half_rtt + 2_000);
            assert!(base.as_micros() as u64 <= half_rtt + 20_000);
            match net.transit(a, b, 1000, START) {
                Transit::Arrives(d) => assert!(d >= base),
                Transit::Lost => panic!("no loss configured"),
            }
        }
    }
}

#[test]
fn kills_and_churn_are_survived() {
    let mut sc = Scenario::tiny(40);
    sc.ttl_secs = 120;
    sc.phases = vec![
        Phase {
            name: "churn".to_owned(),
            duration: Duration::from_secs(240),
            lookups: 60,
            churn: Some(ChurnSpec {
                rate_per_hour: 3.0,
                mean_downtime: Duration::from_secs(20),
                ..ChurnSpec::default()
            }),
            kill_at_start: None,
        },
        Phase {
            name: "kill".to_owned(),
            duration: Duration::from_secs(60),
            lookups: 40,
            churn: None,
            kill_at_start: Some(0.3),
        },
    ];
    let r = Sim::new(sc).run();
    let c = &r.counters;
    assert!(c.crashes + c.leaves > 5, "{c:?}");
    assert!(
        c.restarts_keeping_state + c.restarts_fresh + c.newcomers > 0,
        "{c:?}"
    );
    assert!(c.republishes > 0, "{c:?}");
    assert_eq!(r.phases[1].killed, 12);
    for p in &r.phases {
        assert!(p.lookups.success >= 0.9, "{}", r.table());
    }
}

/// Churned nodes that restart around their store alone (a durable node's
/// restart): rebuilt with `Node::with_store`, they rejoin with an empty
/// table, and the mesh keeps finding everything; the run stays a function
/// of its seed.
#[test]
fn restarts_keeping_only_the_store_are_survived() {
    let scenario = || {
        let mut sc = Scenario::tiny(40);
        sc.ttl_secs = 120;
        sc.phases = vec![Phase {
            name: "churn".to_owned(),
            duration: Duration::from_secs(300),
            lookups: 80,
            churn: Some(ChurnSpec {
                rate_per_hour: 4.0,
                restart_share: 1.0,
                keep_state_share: 1.0,
                restart_keeps: Kept::Store,
                mean_downtime: Duration::from_secs(20),
                ..ChurnSpec::default()
            }),
            kill_at_start: None,
        }];
        sc
    };
    let r = Sim::new(scenario()).run();
    let c = &r.counters;
    assert!(c.restarts_keeping_store >= 5, "{c:?}");
    // They came back holding replicas, not empty.
    assert!(
        c.descriptors_kept_over_restarts >= c.restarts_keeping_store,
        "{c:?}"
    );
    assert_eq!(
        c.restarts_keeping_state + c.restarts_fresh + c.newcomers,
        0,
        "{c:?}"
    );
    assert!(r.phases[0].lookups.success >= 0.95, "{}", r.table());
    assert!(r.table().contains("with their store only"));
    assert_eq!(Sim::new(scenario()).run().trace_hash, r.trace_hash);
}

#[test]
fn forgeries_are_rejected_and_counted() {
    let mut sc = Scenario::tiny(30);
    sc.adversaries = vec![
        AdversarySpec {
            fraction: 0.2,
            behaviour: Behaviour::Forge,
            grind: false,
        },
        AdversarySpec {
            fraction: 0.1,
            behaviour: Behaviour::Stale,
            grind: false,
        },
    ];
    // K = 8 of 30: a querier mostly does not hold what it looks for, so
    // forged answers reach its validation.
    sc.node.k = 8;
    sc.phases[0].duration = Duration::from_secs(180);
    sc.checks = vec![mars_sim::Check::NoForgeryAccepted];
    let r = Sim::new(sc).run();
    let c = &r.counters;
    assert!(c.forged_served > 0, "{c:?}");
    assert!(c.rejected_in_lookups > 0, "{c:?}");
    assert!(c.forged_stores_sent > 0, "{c:?}");
    assert_eq!(c.forged_stores_accepted, 0);
    assert_eq!(c.forged_accepted_in_results, 0);
    assert!(r.passed, "{}", r.table());
    // A forged copy under the genuine id must not hide the genuine
    // descriptor (mars-proto once deduplicated ids before validating them).
    assert_eq!(r.phases[0].lookups.success, 1.0, "{}", r.table());
}

#[test]
fn eclipse_attackers_collude_on_victim_keys() {
    let mut sc = Scenario::tiny(40);
    sc.victims = 2;
    sc.adversaries = vec![AdversarySpec {
        fraction: 0.25,
        behaviour: Behaviour::Eclipse,
        grind: true,
    }];
    let r = Sim::new(sc).run();
    assert!(r.counters.lists_rewritten > 0, "{:?}", r.counters);
    let v = r.phases[0].victim_lookups.as_ref().expect("victim lookups");
    assert!(v.issued > 0);
    // Regular keys are not attacked: they are all found.
    assert!(r.phases[0].lookups.success >= 0.95, "{}", r.table());
}

#[test]
fn the_signature_cache_changes_nothing_but_the_work() {
    let with = Sim::new(Scenario::tiny(16)).run();
    let mut sc = Scenario::tiny(16);
    sc.node.signature_cache = false;
    let without = Sim::new(sc).run();
    // Same validation results, so the very same run.
    assert_eq!(with.trace_hash, without.trace_hash);
    let (hits, misses) = with.counters.verify_cache;
    assert!(hits > misses, "{hits} hits, {misses} misses");
    assert_eq!(without.counters.verify_cache, (0, 0));
}

#[test]
fn the_node_id_cache_changes_nothing_but_the_work() {
    let with = Sim::new(Scenario::tiny(16)).run();
    let mut sc = Scenario::tiny(16);
    sc.node.node_id_cache = false;
    let without = Sim::new(sc).run();
    assert_eq!(with.trace_hash, without.trace_hash);
    let (hits, misses) = with.counters.node_id_cache;
    assert!(hits > misses, "{hits} hits, {misses} misses");
    assert_eq!(without.counters.node_id_cache, (0, 0));
}

#[test]
fn bootstrap_refreshes_is_a_real_knob() {
    let run = |refreshes: usize| {
        let mut sc = Scenario::tiny(24);
        sc.node.k = 4;
        sc.node.bootstrap_refreshes = refreshes;
        Sim::new(sc).run()
    };
    let none = run(0);
    let all = run(16);
    // FIND_NODE: bootstrap lookups only, against bootstrap plus refreshes.
    assert!(
        none.counters.requests_by_type[2] * 2 < all.counters.requests_by_type[2],
        "{:?} vs {:?}",
        none.counters.requests_by_type,
        all.counters.requests_by_type
    );
}

#[test]
fn publishers_publish_under_the_paths_given() {
    use std::collections::BTreeSet;

    use mars_proto::schema;
    use mars_proto::wire::Filters;

    let paths = vec![
        "tools/search/web".to_owned(),
        "compute/inference".to_owned(),
    ];
    let sc = Scenario {
        paths: paths.clone(),
        publishers: 6,
        ..Scenario::tiny(24)
    };
    let publishers = sc.publishers;
    let mut sim = Sim::new(sc);
    let r = sim.run();
    assert_eq!(r.parameters.paths, paths);
    assert_eq!(r.phases[0].lookups.success, 1.0, "{}", r.table());
    assert!(
        r.table()
            .contains("paths: tools/search/web, compute/inference"),
        "{}",
        r.table()
    );
    assert_ne!(r.trace_hash, Sim::new(Scenario::tiny(24)).run().trace_hash);

    // Every publisher's descriptor is held at one of the given leaves, and
    // nothing at a key of the built-in generator.
    let leaves: Vec<_> = paths.iter().map(|p| schema::routing_key(p)).collect();
    let builtin = schema::routing_key("data");
    let now = sim.now();
    let mut seen = BTreeSet::new();
    for i in 0..sim.node_count() as u32 {
        let Some(node) = sim.node(i) else { continue };
        for leaf in &leaves {
            let scan = node.storage().scan(leaf, &Filters::default(), 100, now);
            seen.extend(scan.descriptors.iter().map(|d| d.publisher));
        }
        let elsewhere = node.storage().scan(&builtin, &Filters::default(), 100, now);
        assert!(
            elsewhere.descriptors.is_empty(),
            "node {i} holds a built-in path"
        );
    }
    assert_eq!(
        seen.len(),
        publishers,
        "every publisher's descriptor is held"
    );
}

#[test]
fn open_lookups_find_any_provider_and_say_how_many_came_back() {
    // Every publisher under one of two paths, so a key has several
    // providers and an open lookup can return more than one.
    let sc = Scenario {
        paths: vec!["compute/inference".to_owned(), "compute/vision".to_owned()],
        publishers: 8,
        open_lookups: 0.5,
        ..Scenario::tiny(30)
    };
    let r = Sim::new(sc).run();
    let phase = &r.phases[0];
    let open = phase.open_lookups.as_ref().expect("open lookups reported");
    assert!(open.lookups.issued >= 5, "{open:?}");
    assert!(
        phase.lookups.issued >= 5,
        "filtered lookups go on: {phase:?}"
    );
    assert_eq!(open.lookups.success, 1.0, "{}", r.table());
    // At `compute` all 8 publishers are providers; at a leaf about half.
    assert!(open.expected_mean > 1.5, "{open:?}");
    assert_eq!(open.complete, 1.0, "{}", r.table());
    assert!(
        (open.results_mean - open.expected_mean).abs() < 1e-9,
        "{open:?}"
    );
    assert!(r.table().contains("(open)"), "{}", r.table());
    assert_eq!(r.parameters.open_lookups, 0.5);
    assert_eq!(r.counters.forged_accepted_in_results, 0);

    // Without the share, nothing is drawn for them and none is reported.
    let plain = Sim::new(Scenario::tiny(30)).run();
    assert!(plain.phases[0].open_lookups.is_none());
}
