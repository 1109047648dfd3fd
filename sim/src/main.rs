//! `sim`: run a scenario on N simulated nodes of the real core and print what it measured.
//!
//! ```text
//! cargo run --release -p sim -- --nodes 1000 --seed 7 --duration 60 --scenario crash --loss 0.05
//! ```
//!
//! Exits 1 when an invariant fails, after printing the seed and the command that reproduces
//! the run.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gossip_core::{CoreConfig, Profile, Suspicion};
use sim::scenario::{self, RunConfig, Scenario};

/// Deterministic simulation of gossip-agent's core.
#[derive(Debug, Parser)]
#[command(name = "sim")]
struct Args {
    /// Cluster size.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Seed of every random choice (network, nodes, scenario).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated seconds after the cluster formed (faults stop 30 s before the end).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Scenario.
    #[arg(long, value_enum, default_value_t = Scenario::Crash)]
    scenario: Scenario,
    /// Packet loss probability.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Packet duplication probability.
    #[arg(long, default_value_t = 0.0)]
    dup: f64,
    /// One-way latency range in ms, uniform: MIN-MAX.
    #[arg(long, default_value = "0.1-1")]
    latency_ms: String,
    /// Fraction of slow nodes (timers and packets handled late).
    #[arg(long, default_value_t = 0.0)]
    slow: f64,
    /// How late a slow node handles timers and packets, at most, in ms.
    #[arg(long, default_value_t = 1000)]
    slow_delay_ms: u64,
    /// Timing profile: lan, local or wan.
    #[arg(long, default_value = "lan")]
    profile: Profile,
    /// Suspicion policy: lifeguard (the default) or plain (foca as is).
    #[arg(long, default_value = "lifeguard")]
    suspicion: Suspicion,
    /// Suspicion timeout multiplier: timeout = MULT x max(1, log10 N) x probe period
    /// [default: the profile's]
    #[arg(long)]
    suspicion_mult: Option<f64>,
    /// Facts timed per kind, at most.
    #[arg(long, default_value_t = 20)]
    sample: usize,
    /// Members a notice goes to directly, the rest through them (0: gossip only, to compare
    /// with gossip-only models) [default: 1024].
    #[arg(long)]
    notice_fanout: Option<usize>,
    /// Lifeguard's early verdict: a suspect that sends nothing at all for this long while
    /// asked is declared failed (0: none, wait for the full timeout) [default: the
    /// profile's].
    #[arg(long)]
    confirm_ms: Option<u64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let latency = match a
        .latency_ms
        .split_once('-')
        .map(|(x, y)| (x.parse::<f64>(), y.parse::<f64>()))
    {
        Some((Ok(x), Ok(y))) if x >= 0.0 && y >= x => (
            Duration::from_secs_f64(x / 1000.0),
            Duration::from_secs_f64(y / 1000.0),
        ),
        _ => {
            eprintln!(
                "error: invalid --latency-ms {:?}: expected MIN-MAX in ms",
                a.latency_ms
            );
            return ExitCode::from(2);
        }
    };
    for (name, p) in [("--loss", a.loss), ("--dup", a.dup), ("--slow", a.slow)] {
        if !(0.0..=1.0).contains(&p) {
            eprintln!("error: invalid {name} {p}: expected a probability from 0 to 1");
            return ExitCode::from(2);
        }
    }
    let mut core = CoreConfig::new(a.profile);
    core.suspicion = a.suspicion;
    if let Some(m) = a.suspicion_mult {
        if !(0.5..=20.0).contains(&m) {
            eprintln!("error: invalid suspicion-mult {m}: expected 0.5 to 20");
            return ExitCode::from(2);
        }
        core.suspicion_mult = m;
    }
    if let Some(f) = a.notice_fanout {
        core.notice_fanout = f;
    }
    if let Some(ms) = a.confirm_ms {
        core.suspicion_confirm = (ms > 0).then(|| Duration::from_millis(ms));
    }
    let cfg = RunConfig {
        nodes: a.nodes,
        seed: a.seed,
        duration: Duration::from_secs(a.duration),
        scenario: a.scenario,
        loss: a.loss,
        dup: a.dup,
        latency,
        slow_fraction: a.slow,
        slow_delay: Duration::from_millis(a.slow_delay_ms),
        core,
        sample: a.sample,
    };
    let r = scenario::run(&cfg);
    if a.json {
        println!("{}", serde_json::to_string(&r).expect("report serializes"));
    } else {
        print_table(&r);
    }
    if r.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        for v in &r.violations {
            eprintln!("INVARIANT FAILED: {v}");
        }
        let args: Vec<String> = std::env::args().skip(1).collect();
        eprintln!(
            "seed {}; reproduce with: cargo run --release -p sim -- {}",
            r.seed,
            args.join(" ")
        );
        ExitCode::from(1)
    }
}

fn print_table(r: &scenario::Report) {
    println!(
        "scenario {:?}, {} nodes, seed {}, loss {:.0}%, slow {:.0}%, profile {}, suspicion {}",
        r.scenario,
        r.nodes,
        r.seed,
        r.loss * 100.0,
        r.slow_fraction * 100.0,
        r.profile,
        r.suspicion
    );
    println!();
    println!(
        "| fact | samples | to 50% (ms) | to 99% (ms) | to 100% (ms) | worst to 100% (ms) | incomplete |"
    );
    println!("|---|---|---|---|---|---|---|");
    for s in &r.spread {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            s.kind, s.samples, s.p50_ms, s.p99_ms, s.p100_ms, s.worst_ms, s.incomplete
        );
    }
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| cluster formed (simulated s / wall s) | {:.1} / {:.1} |",
        r.formation_s, r.formation_wall_s
    );
    println!(
        "| false failures (live, reachable members declared failed) | {} |",
        r.false_failures
    );
    println!("| resurrections of left members | {} |", r.resurrections);
    match r.agreement_s {
        Some(s) => println!("| agreement after the last fault (s) | {s:.1} |"),
        None => println!("| agreement after the last fault (s) | not within bound |"),
    }
    println!("| messages per node per s | {:.1} |", r.msgs_per_node_s);
    println!("| bytes per node per s | {:.0} |", r.bytes_per_node_s);
    let k = &r.bytes_by_kind;
    println!(
        "| of which SWIM / push-pull / coordinates / notices / acks / user events / queries / other | {:.0} / {:.0} / {:.0} / {:.0} / {:.0} / {:.0} / {:.0} / {:.0} |",
        k.swim, k.sync, k.coordinates, k.notice, k.notice_ack, k.user, k.query, k.other
    );
    println!(
        "| simulated s / wall s | {:.1} / {:.1} = {:.1}x |",
        r.sim_s, r.wall_s, r.speedup
    );
    println!(
        "| speed after formation | {:.1}x real time |",
        r.speedup_after_formation
    );
    println!("| trace hash | {} |", r.trace_hash);
    println!(
        "| invariants | {} |",
        if r.violations.is_empty() {
            "hold".to_string()
        } else {
            r.violations.join("; ")
        }
    );
}
