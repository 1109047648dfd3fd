//! Every CLI scenario at a small size: invariants hold, and runs are reproducible.

use std::time::Duration;

use gossip_core::{CoreConfig, Profile, Suspicion};
use sim::scenario::{Report, RunConfig, Scenario, run};

fn cfg(scenario: Scenario, seed: u64) -> RunConfig {
    RunConfig {
        nodes: 60,
        seed,
        duration: Duration::from_secs(70),
        scenario,
        loss: 0.0,
        dup: 0.0,
        latency: (Duration::from_micros(100), Duration::from_millis(1)),
        slow_fraction: 0.0,
        slow_delay: Duration::from_secs(1),
        core: CoreConfig::new(Profile::Lan),
        sample: 10,
    }
}

fn check(r: &Report) {
    assert!(
        r.violations.is_empty(),
        "seed {}: {:?}; reproduce: cargo run --release -p sim -- --nodes {} --seed {} --duration 70 --scenario {:?}",
        r.seed,
        r.violations,
        r.nodes,
        r.seed,
        r.scenario
    );
    assert!(
        r.spread.iter().all(|s| s.incomplete == 0),
        "seed {}: {:?}",
        r.seed,
        r.spread
    );
}

#[test]
fn every_scenario_keeps_its_invariants() {
    for sc in [
        Scenario::JoinStorm,
        Scenario::Crash,
        Scenario::PartitionHeal,
        Scenario::Churn,
        Scenario::RollingRestart,
        Scenario::TagChange,
        Scenario::Idle,
    ] {
        check(&run(&cfg(sc, 11)));
    }
}

#[test]
fn faults_with_duplication_and_slow_nodes_keep_invariants() {
    let mut c = cfg(Scenario::Churn, 12);
    c.loss = 0.05;
    c.dup = 0.05;
    c.slow_fraction = 0.05;
    check(&run(&c));
}

#[test]
fn a_run_is_a_function_of_its_seed() {
    let a = run(&cfg(Scenario::Churn, 13));
    let b = run(&cfg(Scenario::Churn, 13));
    let key = |r: &Report| {
        (
            r.formation_s.to_bits(),
            r.false_failures,
            r.msgs_per_node_s.to_bits(),
            r.bytes_per_node_s.to_bits(),
            r.spread
                .iter()
                .map(|s| s.p100_ms.to_bits())
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(key(&a), key(&b), "seed 13: two runs differ");
}

#[test]
fn lifeguard_declares_no_live_member_failed_at_twenty_percent_loss() {
    for seed in [21, 22] {
        let mut c = cfg(Scenario::Crash, seed);
        c.loss = 0.20;
        c.duration = Duration::from_secs(120);
        c.core.suspicion = Suspicion::Lifeguard;
        let r = run(&c);
        assert_eq!(r.false_failures, 0, "seed {seed}: lifeguard at 20% loss");
        check(&r);
    }
}
