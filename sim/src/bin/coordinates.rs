//! `coordinates`: how well network coordinates estimate round trips, on a simulated network
//! with regions (see `sim/README.md`).
//!
//! ```text
//! cargo run --release -p sim --bin coordinates -- --nodes 100,1000 --loss 0,0.05
//! ```
//!
//! Prints one table row per (nodes, loss): median and 90th percentile relative error of the
//! estimated round trip against the true one after the run, and the time the median took to
//! settle. Exits 1 if a median is above `--target`, after printing the seed.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sim::coordinates::{AccuracyConfig, run};
use sim::latency::Topology;

/// Accuracy of network coordinates in the simulator.
#[derive(Debug, Parser)]
#[command(name = "coordinates")]
struct Args {
    /// Cluster sizes, comma-separated.
    #[arg(long, default_value = "100,1000", value_delimiter = ',')]
    nodes: Vec<usize>,
    /// Packet loss probabilities, comma-separated.
    #[arg(long, default_value = "0,0.05", value_delimiter = ',')]
    loss: Vec<f64>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated seconds after the cluster formed.
    #[arg(long, default_value_t = 300)]
    duration: u64,
    /// Measure every this many simulated seconds.
    #[arg(long, default_value_t = 10)]
    step: u64,
    /// Pairs measured.
    #[arg(long, default_value_t = 20_000)]
    pairs: usize,
    /// Regions.
    #[arg(long, default_value_t = 4)]
    regions: usize,
    /// Region centres within a square of this side, in ms of round trip.
    #[arg(long, default_value_t = 150.0)]
    spread_ms: f64,
    /// Nodes within this distance of their region's centre, in ms of round trip.
    #[arg(long, default_value_t = 5.0)]
    radius_ms: f64,
    /// Access links, in ms of round trip, uniform: MIN-MAX.
    #[arg(long, default_value = "0.1-1")]
    access_ms: String,
    /// Per-datagram jitter, a fraction of the latency (+-).
    #[arg(long, default_value_t = 0.1)]
    jitter: f64,
    /// Largest median relative error accepted.
    #[arg(long, default_value_t = 0.2)]
    target: f64,
    /// Print one JSON object per run instead of a table.
    #[arg(long)]
    json: bool,
}

fn ms(x: f64) -> Duration {
    Duration::from_secs_f64(x.max(0.0) / 1000.0)
}

fn main() -> ExitCode {
    let a = Args::parse();
    let Some((lo, hi)) = a
        .access_ms
        .split_once('-')
        .and_then(|(x, y)| Some((x.parse::<f64>().ok()?, y.parse::<f64>().ok()?)))
        .filter(|(x, y)| x <= y)
    else {
        eprintln!("coordinates: --access-ms: expected MIN-MAX in ms, such as 0.1-1");
        return ExitCode::from(2);
    };
    let topology = Topology {
        regions: a.regions.max(1),
        spread: ms(a.spread_ms),
        radius: ms(a.radius_ms),
        access_min: ms(lo),
        access_max: ms(hi),
        jitter: a.jitter.clamp(0.0, 0.9),
    };
    if !a.json {
        println!(
            "| nodes | loss | median error | p90 error | median <= 20 % after (s) | settled after (s) | samples / node / s | wall s |"
        );
        println!("|---|---|---|---|---|---|---|---|");
    }
    let mut failed = false;
    for &nodes in &a.nodes {
        for &loss in &a.loss {
            let mut cfg = AccuracyConfig::new(nodes);
            cfg.seed = a.seed;
            cfg.loss = loss;
            cfg.duration = Duration::from_secs(a.duration.max(1));
            cfg.step = Duration::from_secs(a.step.max(1));
            cfg.pairs = a.pairs;
            cfg.topology = topology.clone();
            let r = run(&cfg);
            let last = r.last();
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string(&r).expect("a report serialises")
                );
            } else {
                println!(
                    "| {} | {:.0} % | {:.1} % | {:.1} % | {} | {} | {:.2} | {:.1} |",
                    nodes,
                    loss * 100.0,
                    last.median * 100.0,
                    last.p90 * 100.0,
                    r.below_20_percent_s
                        .map_or("never".into(), |s| format!("{s:.0}")),
                    r.converged_s.map_or("never".into(), |s| format!("{s:.0}")),
                    r.samples_per_node_s,
                    r.wall_s
                );
            }
            if last.median.is_nan() || last.median > a.target {
                failed = true;
                eprintln!(
                    "coordinates: median error {:.1} % above the target {:.1} % at {} nodes, loss {}; \
                     reproduce with: cargo run --release -p sim --bin coordinates -- --nodes {} --loss {} --seed {}",
                    last.median * 100.0,
                    a.target * 100.0,
                    nodes,
                    loss,
                    nodes,
                    loss,
                    a.seed
                );
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
