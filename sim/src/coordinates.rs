//! How well the core's network coordinates estimate round trips: a cluster on a structured
//! network ([`crate::latency::Topology`]), and after each step the relative error of the
//! estimated round trip (from the two members' own coordinates, as `rtt A B` computes it)
//! against the true one, over a fixed sample of pairs.

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::latency::Topology;
use crate::{Params, Sim, role};

/// What to run.
#[derive(Debug, Clone)]
pub struct AccuracyConfig {
    /// Cluster size.
    pub nodes: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Packet loss from the start.
    pub loss: f64,
    /// Simulated time after the cluster formed.
    pub duration: Duration,
    /// How often the error is measured.
    pub step: Duration,
    /// Pairs measured (all of them when there are fewer).
    pub pairs: usize,
    /// The network.
    pub topology: Topology,
}

impl AccuracyConfig {
    /// `nodes` nodes, seed 1, no loss, 300 s, measured every 10 s over 20,000 pairs, the
    /// default topology.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            seed: 1,
            loss: 0.0,
            duration: Duration::from_secs(300),
            step: Duration::from_secs(10),
            pairs: 20_000,
            topology: Topology::default(),
        }
    }
}

/// The relative errors at one time.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ErrorAt {
    /// Simulated seconds after the cluster formed.
    pub t_s: f64,
    /// Median relative error.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccuracyReport {
    /// Cluster size.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Packet loss.
    pub loss: f64,
    /// Pairs measured.
    pub pairs: usize,
    /// The error after each step; the last is the result.
    pub series: Vec<ErrorAt>,
    /// Simulated seconds after formation from which every later median error was within
    /// 10 % of the final one, or below it.
    pub converged_s: Option<f64>,
    /// Simulated seconds after formation until the median error first fell to 20 % or
    /// below (the target; Serf reports about that on real networks).
    pub below_20_percent_s: Option<f64>,
    /// Coordinate samples applied per node per simulated second, after formation.
    pub samples_per_node_s: f64,
    /// Wall seconds the run took.
    pub wall_s: f64,
}

impl AccuracyReport {
    /// The error at the end.
    pub fn last(&self) -> ErrorAt {
        self.series.last().copied().unwrap_or(ErrorAt {
            t_s: 0.0,
            median: f64::NAN,
            p90: f64::NAN,
        })
    }
}

/// Forms a cluster on `cfg.topology`, runs it and measures the error every `cfg.step`.
pub fn run(cfg: &AccuracyConfig) -> AccuracyReport {
    let wall = Instant::now();
    let mut params = Params::new(cfg.seed);
    params.topology = Some(cfg.topology.clone());
    params.record_events = false;
    params.loss = cfg.loss;
    let mut sim = Sim::new(params);
    let mut rng = SmallRng::seed_from_u64(cfg.seed ^ 0x0072_7474);
    let n = cfg.nodes.max(2);
    let spread = Duration::from_secs_f64((n as f64 / 200.0).max(1.0));
    let mut starts: Vec<Duration> = (0..n)
        .map(|i| {
            if i < 3 {
                Duration::ZERO
            } else {
                spread.mul_f64(rng.random::<f64>())
            }
        })
        .collect();
    starts.sort();
    for (i, at) in starts.iter().enumerate() {
        sim.run_until(*at);
        let ix = sim.add_node(&format!("n{i}"), role("appserver"));
        if i > 0 {
            sim.join(ix, rng.random_range(0..i.min(3)));
        }
    }
    sim.run_until_true(
        Duration::from_millis(250),
        Duration::from_secs(120),
        Sim::converged,
    );
    let formed = sim.now();
    let updates_at = total_updates(&sim);
    let pairs = sample_pairs(n, cfg.pairs, &mut rng);
    let mut series = Vec::new();
    let mut t = Duration::ZERO;
    while t < cfg.duration {
        t = (t + cfg.step).min(cfg.duration);
        sim.run_until(formed + t);
        let (median, p90) = errors(&sim, &pairs);
        series.push(ErrorAt {
            t_s: t.as_secs_f64(),
            median,
            p90,
        });
    }
    let samples = (total_updates(&sim) - updates_at) as f64;
    AccuracyReport {
        nodes: n,
        seed: cfg.seed,
        loss: cfg.loss,
        pairs: pairs.len(),
        converged_s: settled(&series),
        below_20_percent_s: series.iter().find(|e| e.median <= 0.2).map(|e| e.t_s),
        samples_per_node_s: samples / n as f64 / cfg.duration.as_secs_f64().max(1e-9),
        series,
        wall_s: wall.elapsed().as_secs_f64(),
    }
}

fn total_updates(sim: &Sim) -> u64 {
    (0..sim.len())
        .filter_map(|i| sim.node(i))
        .map(|n| n.stats().coordinate_updates)
        .sum()
}

/// Up to `max` distinct pairs `(i, j)`, `i < j`: all of them when that many or fewer exist.
fn sample_pairs(n: usize, max: usize, rng: &mut SmallRng) -> Vec<(usize, usize)> {
    let all = n * (n - 1) / 2;
    if all <= max {
        return (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .collect();
    }
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < max {
        let i = rng.random_range(0..n);
        let j = rng.random_range(0..n);
        if i != j {
            seen.insert((i.min(j), i.max(j)));
        }
    }
    seen.into_iter().collect()
}

/// Median and 90th percentile of |estimated - true| / true over `pairs`.
pub fn errors(sim: &Sim, pairs: &[(usize, usize)]) -> (f64, f64) {
    let mut e: Vec<f64> = pairs
        .iter()
        .filter_map(|&(i, j)| {
            let (a, b) = (sim.node(i)?, sim.node(j)?);
            let truth = Topology::rtt(sim.place(i)?, sim.place(j)?);
            let est = a.coordinate().distance_secs(&b.coordinate());
            Some((est - truth).abs() / truth)
        })
        .collect();
    if e.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    e.sort_by(f64::total_cmp);
    let at = |q: f64| e[((e.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}

/// The first time from which every later median is within 10 % of the last one, or below.
fn settled(series: &[ErrorAt]) -> Option<f64> {
    let last = series.last()?.median;
    let ok = |m: f64| (m - last).abs() <= 0.1 * last.max(1e-9) || m <= last;
    let mut from = None;
    for e in series {
        if ok(e.median) {
            from.get_or_insert(e.t_s);
        } else {
            from = None;
        }
    }
    from
}
