//! `defaults`: the evidence for the default suspicion policy. Runs the crash scenario at
//! several loss rates and with 1 % slow nodes, with foca's plain behaviour and with the
//! Lifeguard remedies, over several seeds, and prints false failures and crash detection
//! times side by side.
//!
//! ```text
//! cargo run --release -p sim --bin defaults -- --nodes 100 --seeds 3 --duration 120
//! ```

use std::time::Duration;

use clap::Parser;
use gossip_core::{CoreConfig, Profile, Suspicion};
use sim::scenario::{self, RunConfig, Scenario};

#[derive(Parser)]
struct Args {
    /// Cluster size.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Seeds per cell (1..=seeds).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Simulated seconds after formation.
    #[arg(long, default_value_t = 120)]
    duration: u64,
    /// Suspicion multipliers tried with the Lifeguard remedies (plain foca runs with 4).
    #[arg(long, value_delimiter = ',', default_value = "4")]
    mults: Vec<f64>,
    /// Early-verdict windows tried with the Lifeguard remedies, in seconds (0: none).
    #[arg(long, value_delimiter = ',', default_value = "0,3")]
    confirm_secs: Vec<u64>,
}

fn main() {
    let a = Args::parse();
    let cells: [(&str, f64, f64, u64); 7] = [
        ("0% loss", 0.0, 0.0, 0),
        ("5% loss", 0.05, 0.0, 0),
        ("10% loss", 0.10, 0.0, 0),
        ("20% loss", 0.20, 0.0, 0),
        ("30% loss", 0.30, 0.0, 0),
        ("1% slow nodes (up to 1 s late)", 0.0, 0.01, 1000),
        ("5% slow nodes (up to 2 s late)", 0.0, 0.05, 2000),
    ];
    println!(
        "Crash scenario, {} nodes, {} s after formation, seeds 1..={}, lan profile. False failures are \
         (observer, live member) pairs summed over seeds; detection is the median time for a crash to \
         reach 100% of live nodes.",
        a.nodes, a.duration, a.seeds
    );
    println!();
    let mut policies = vec![(Suspicion::Plain, 4.0, 0)];
    for m in &a.mults {
        for c in &a.confirm_secs {
            policies.push((Suspicion::Lifeguard, *m, *c));
        }
    }
    let mut header = String::from("| condition |");
    let mut rule = String::from("|---|");
    for (p, m, c) in &policies {
        let name = match c {
            0 => format!("{p} x{m}"),
            c => format!("{p} x{m} + {c} s confirm"),
        };
        header.push_str(&format!(
            " {name}: false failures | {name}: detection (s) |"
        ));
        rule.push_str("---|---|");
    }
    println!("{header}");
    println!("{rule}");
    for (label, loss, slow, slow_ms) in cells {
        let mut row = Vec::new();
        for (policy, mult, confirm) in &policies {
            let mut ff = 0;
            let mut det = Vec::new();
            for seed in 1..=a.seeds {
                let mut core = CoreConfig::new(Profile::Lan);
                core.suspicion = *policy;
                core.suspicion_mult = *mult;
                core.suspicion_confirm = (*confirm > 0).then(|| Duration::from_secs(*confirm));
                let r = scenario::run(&RunConfig {
                    nodes: a.nodes,
                    seed,
                    duration: Duration::from_secs(a.duration),
                    scenario: Scenario::Crash,
                    loss,
                    dup: 0.0,
                    latency: (Duration::from_micros(100), Duration::from_millis(1)),
                    slow_fraction: slow,
                    slow_delay: Duration::from_millis(slow_ms),
                    core,
                    sample: 20,
                });
                ff += r.false_failures;
                det.extend(
                    r.spread
                        .iter()
                        .filter(|s| s.kind == "failure")
                        .map(|s| s.p100_ms / 1000.0),
                );
            }
            det.sort_by(f64::total_cmp);
            let med = det.get(det.len() / 2).copied().unwrap_or(f64::NAN);
            row.push(format!("{ff} | {med:.1}"));
        }
        println!("| {label} | {} |", row.join(" | "));
    }
}
