//! Scenarios run by the `sim` command line, the measurements they yield, and the invariants
//! checked at the end of every run.
//!
//! Every scenario first forms the cluster (node 0..2 are seeds; the others start at random
//! times in the first `N / 200` seconds, at least 1 s, and join a random seed) on a clean
//! network, then turns on loss, duplication and slow nodes, applies its faults, then stops
//! faulting and checks:
//!
//! - **liveness**: within [`liveness_bound`] of the last fault (one push-pull interval at that
//!   size, the protocol's own repair period, plus 30 s), every live node lists every live node
//!   alive with its current identity (so tags) and no one else as alive;
//! - **safety**: with loss at or below [`SAFE_LOSS`] and no slow node, no live, reachable node
//!   was ever declared failed;
//! - **no resurrection**: no node reported a join of an identity that had left.

use std::time::{Duration, Instant};

use gossip_core::wire::Kind;
use gossip_core::{CoreConfig, EventKind, Tags};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::{NodeIx, Params, Sim, role};

/// Faults stop this long before the end, at the latest.
pub const QUIET_TAIL: Duration = Duration::from_secs(30);

/// How long after the last fault all live nodes must agree: a node that missed a gossiped
/// update on a lossy link catches up at its next full-state exchange at the latest.
pub fn liveness_bound(core: &CoreConfig, nodes: usize) -> Duration {
    core.push_pull_interval_at(nodes).mul_f64(1.1) + Duration::from_secs(30)
}
/// The loss rate at or below which a false failure breaks the safety invariant. With the
/// default (Lifeguard) suspicion policy no false failure was seen up to 30 % loss (see
/// `sim/README.md`); foca's plain policy already fails at 20 %.
pub const SAFE_LOSS: f64 = 0.20;

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Every node starts within a short window and joins; time to converge and per-join
    /// dissemination.
    JoinStorm,
    /// 1 % of the nodes (at least one) crash; detection time.
    Crash,
    /// Two halves cut apart for 30 s, then healed; time to be one cluster again.
    PartitionHeal,
    /// Crashes, restarts, leaves and new joins, one per second.
    Churn,
    /// Nodes leave and come back under their name, one after the other.
    RollingRestart,
    /// One node changes its tags; dissemination of the update.
    TagChange,
    /// Nothing happens: the steady-state cost of membership (messages and bytes).
    Idle,
}

/// Bytes sent per node per simulated second after formation, by envelope kind.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BytesByKind {
    /// SWIM packets (probes, acks, indirect probes, gossip, announces).
    pub swim: f64,
    /// Push-pull: full state (joins), digests (periodic) and what digests ask for.
    pub sync: f64,
    /// Network coordinates: in acks (the coordinate's bytes only; the ack itself counts as
    /// SWIM) and passed on with full states and digests.
    pub coordinates: f64,
    /// Acknowledged notices (leave, tag change, suspicion).
    pub notice: f64,
    /// Notice acknowledgements.
    pub notice_ack: f64,
    /// User events.
    pub user: f64,
    /// Queries and their answers.
    pub query: f64,
    /// Anything else (requests for an identity in full, challenges and their echoes).
    pub other: f64,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Cluster size.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Simulated seconds after formation.
    pub duration: Duration,
    /// Scenario.
    pub scenario: Scenario,
    /// Packet loss.
    pub loss: f64,
    /// Packet duplication.
    pub dup: f64,
    /// One-way latency range.
    pub latency: (Duration, Duration),
    /// Fraction of slow nodes.
    pub slow_fraction: f64,
    /// How late a slow node handles timers and packets, at most.
    pub slow_delay: Duration,
    /// Core configuration.
    pub core: CoreConfig,
    /// Facts timed per kind, at most.
    pub sample: usize,
}

/// Dissemination of one kind of fact: over the sampled facts, the median time to reach
/// 50 %, 99 % and 100 % of live nodes, and the worst.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    /// join, leave, failure, tag-change.
    pub kind: &'static str,
    /// Facts timed.
    pub samples: usize,
    /// Median over facts of the time to 50 % of live nodes, ms.
    pub p50_ms: f64,
    /// Median over facts of the time to 99 %, ms.
    pub p99_ms: f64,
    /// Median over facts of the time to 100 %, ms.
    pub p100_ms: f64,
    /// Worst time to 100 %, ms.
    pub worst_ms: f64,
    /// Facts that never reached every live node.
    pub incomplete: usize,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario.
    pub scenario: Scenario,
    /// Nodes.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Packet loss.
    pub loss: f64,
    /// Fraction of slow nodes.
    pub slow_fraction: f64,
    /// Profile.
    pub profile: String,
    /// Suspicion policy.
    pub suspicion: String,
    /// Simulated seconds until the initial cluster converged.
    pub formation_s: f64,
    /// Wall-clock seconds the formation took.
    pub formation_wall_s: f64,
    /// Simulated seconds per wall-clock second after formation (the measured phase).
    pub speedup_after_formation: f64,
    /// Dissemination per kind.
    pub spread: Vec<Spread>,
    /// Live, reachable members declared failed (observer, member pairs).
    pub false_failures: u64,
    /// Joins of identities that had left.
    pub resurrections: u64,
    /// Time from the last fault until every live node agreed, s (None: not within bound).
    pub agreement_s: Option<f64>,
    /// Datagrams sent per node per simulated second, after formation.
    pub msgs_per_node_s: f64,
    /// Bytes sent per node per simulated second, after formation (envelope and payload, no
    /// IP/UDP headers).
    pub bytes_per_node_s: f64,
    /// The same bytes by what carried them.
    pub bytes_by_kind: BytesByKind,
    /// Simulated seconds in all.
    pub sim_s: f64,
    /// Wall-clock seconds.
    pub wall_s: f64,
    /// Simulated seconds per wall-clock second.
    pub speedup: f64,
    /// Hash of every member event every node reported ([`crate::Sim::trace_hash`]), in hex:
    /// two runs with one seed and one build give the same.
    pub trace_hash: String,
    /// Invariant violations (empty when all hold).
    pub violations: Vec<String>,
}

/// Runs one scenario.
pub fn run(cfg: &RunConfig) -> Report {
    let wall = Instant::now();
    let mut params = Params::new(cfg.seed);
    params.latency_min = cfg.latency.0;
    params.latency_max = cfg.latency.1;
    params.config = cfg.core.clone();
    params.record_events = false;
    let mut sim = Sim::new(params);
    let mut rng = SmallRng::seed_from_u64(cfg.seed ^ 0x5eed);

    // --- formation ---
    let n = cfg.nodes.max(2);
    let window = Duration::from_secs_f64((n as f64 / 200.0).max(1.0));
    let mut starts: Vec<Duration> = (0..n)
        .map(|i| {
            if i < 3 {
                Duration::ZERO
            } else {
                window.mul_f64(rng.random_range(0.0..1.0))
            }
        })
        .collect();
    starts.sort();
    let join_watch_every = (n / cfg.sample.max(1)).max(1);
    let mut join_watches = Vec::new();
    for (i, at) in starts.iter().enumerate() {
        sim.run_until(*at);
        let ix = sim.add_node(
            &format!("n{i}"),
            role(if i % 2 == 0 {
                "appserver"
            } else {
                "frontserver"
            }),
        );
        if i % join_watch_every == 0 && i >= 3 {
            let v = sim.version(ix);
            join_watches.push(sim.add_watch(&format!("n{i}"), EventKind::Join, v));
        }
        if i > 0 {
            let seed = rng.random_range(0..i.min(3));
            sim.join(ix, seed);
        }
    }
    let formed = sim.run_until_true(
        Duration::from_millis(250),
        Duration::from_secs(120),
        Sim::converged,
    );
    let formation_s = sim.now().as_secs_f64();
    let formation_wall_s = wall.elapsed().as_secs_f64();
    let (packets_at_formation, bytes_at_formation) = (sim.packets_sent, sim.bytes_sent);
    let kinds_at_formation = sim.bytes_by_kind;
    let acks_at_formation = sim.packets_by_kind[Kind::FocaCoord as usize];
    let mut violations = Vec::new();
    if formed.is_none() {
        violations.push("liveness: the initial cluster did not converge within 120 s".into());
    }
    let mut spread = Vec::new();
    if cfg.scenario == Scenario::JoinStorm {
        spread.push(summarize("join", &sim, &join_watches));
    }
    sim.clear_watches();

    // Network faults and slow nodes start after formation.
    sim.set_network_faults(cfg.loss, cfg.dup);
    let k = (n as f64 * cfg.slow_fraction).ceil() as usize;
    let mut pool: Vec<NodeIx> = (0..n).collect();
    let mut slow: Vec<NodeIx> = Vec::new();
    for _ in 0..k.min(n) {
        slow.push(pool.swap_remove(rng.random_range(0..pool.len())));
    }
    for &ix in &slow {
        sim.set_slow(ix, Some(cfg.slow_delay));
    }

    // --- faults ---
    let t0 = sim.now();
    let end = t0 + cfg.duration;
    let fault_end = end.saturating_sub(QUIET_TAIL).max(t0);
    let sample = cfg.sample.max(1);
    match cfg.scenario {
        Scenario::JoinStorm => {}
        Scenario::Idle => sim.run_until(fault_end),
        Scenario::Crash => {
            let k = (n / 100).max(1).min(sample);
            let mut ws = Vec::new();
            for _ in 0..k {
                let up = sim.up();
                let ix = up[rng.random_range(0..up.len())];
                let v = sim.version(ix);
                let name = sim.name(ix).to_string();
                sim.crash(ix);
                ws.push(sim.add_watch(&name, EventKind::Failed, v));
            }
            sim.run_until(fault_end);
            spread.push(summarize("failure", &sim, &ws));
        }
        Scenario::PartitionHeal => {
            let groups: Vec<u32> = (0..n).map(|i| u32::from(i >= n / 2)).collect();
            sim.partition(&groups, false);
            sim.run_for(Duration::from_secs(30));
            sim.heal();
        }
        Scenario::TagChange => {
            let ix = rng.random_range(0..n);
            let mut t: Tags = role("appserver");
            t.insert("version".into(), "2".into());
            sim.set_tags(ix, t);
            let w = sim.add_watch(&owned_name(&sim, ix), EventKind::Update, sim.version(ix));
            sim.run_until(fault_end);
            spread.push(summarize("tag-change", &sim, &[w]));
        }
        Scenario::Churn => {
            let mut crashed: Vec<NodeIx> = Vec::new();
            let mut leave_ws = Vec::new();
            let mut next_name = n;
            while sim.now() + Duration::from_secs(1) <= fault_end {
                sim.run_for(Duration::from_secs(1));
                let up = sim.up();
                match rng.random_range(0..4) {
                    0 if up.len() > 3 => {
                        let ix = up[rng.random_range(3..up.len())];
                        sim.crash(ix);
                        crashed.push(ix);
                    }
                    1 if !crashed.is_empty() => {
                        let ix = crashed.swap_remove(rng.random_range(0..crashed.len()));
                        sim.restart(ix, rng.random_range(0..3));
                    }
                    2 if up.len() > 3 => {
                        let ix = up[rng.random_range(3..up.len())];
                        let v = sim.version(ix);
                        sim.leave(ix);
                        if leave_ws.len() < sample {
                            leave_ws.push(sim.add_watch(
                                &owned_name(&sim, ix),
                                EventKind::Leave,
                                v,
                            ));
                        }
                        sim.run_for(Duration::from_millis(300));
                        sim.stop(ix);
                    }
                    _ => {
                        let ix = sim.add_node(&format!("n{next_name}"), role("appserver"));
                        next_name += 1;
                        sim.join(ix, rng.random_range(0..3));
                    }
                }
            }
            sim.run_until(fault_end);
            spread.push(summarize("leave", &sim, &leave_ws));
        }
        Scenario::RollingRestart => {
            let mut join_ws = Vec::new();
            let mut leave_ws = Vec::new();
            for ix in 3..n {
                if sim.now() + Duration::from_secs(2) > fault_end || join_ws.len() >= sample {
                    break;
                }
                let v = sim.version(ix);
                sim.leave(ix);
                leave_ws.push(sim.add_watch(&owned_name(&sim, ix), EventKind::Leave, v));
                sim.run_for(Duration::from_millis(500));
                sim.stop(ix);
                sim.run_for(Duration::from_millis(500));
                sim.restart(ix, 0);
                join_ws.push(sim.add_watch(
                    &owned_name(&sim, ix),
                    EventKind::Join,
                    sim.version(ix),
                ));
                sim.run_for(Duration::from_secs(1));
            }
            sim.run_until(fault_end);
            spread.push(summarize("leave", &sim, &leave_ws));
            spread.push(summarize("join", &sim, &join_ws));
        }
    }
    // Slow nodes stay slow: they are part of the steady state being measured.
    let last_fault = sim.now();
    let bound = liveness_bound(&cfg.core, n);
    let agreed = sim.run_until_true(Duration::from_millis(250), bound, Sim::converged);
    let agreement_s = agreed.map(|d| d.as_secs_f64());
    if agreed.is_none() {
        violations.push(format!(
            "liveness: live nodes did not agree within {}s of the last fault (t={:.1}s): {:?}",
            bound.as_secs(),
            last_fault.as_secs_f64(),
            sim.disagreements(5)
        ));
    }
    if sim.now() < end {
        sim.run_until(end);
    }
    if cfg.loss <= SAFE_LOSS && slow.is_empty() && sim.false_failures > 0 {
        violations.push(format!(
            "safety: {} false failures at {:.0}% loss, first: {:?}",
            sim.false_failures,
            cfg.loss * 100.0,
            sim.false_failure_log.first()
        ));
    }
    if sim.resurrections > 0 {
        violations.push(format!(
            "{} joins of identities that had left",
            sim.resurrections
        ));
    }
    let sim_s = sim.now().as_secs_f64();
    let live = sim.len() as f64;
    let wall_s = wall.elapsed().as_secs_f64();
    let formation_s = formation_s.min(sim_s);
    let steady_s = (sim_s - formation_s).max(1e-9);
    let kind_rate = |kinds: &[Kind]| {
        kinds
            .iter()
            .map(|&k| (sim.bytes_by_kind[k as usize] - kinds_at_formation[k as usize]) as f64)
            .sum::<f64>()
            / live
            / steady_s
    };
    let coord_in_acks = ((sim.packets_by_kind[Kind::FocaCoord as usize] - acks_at_formation)
        * gossip_core::coordinate::WIRE_LEN as u64) as f64
        / live
        / steady_s;
    let unknown = Kind::ALL.len();
    let unknown_rate =
        (sim.bytes_by_kind[unknown] - kinds_at_formation[unknown]) as f64 / live / steady_s;
    Report {
        scenario: cfg.scenario,
        nodes: n,
        seed: cfg.seed,
        loss: cfg.loss,
        slow_fraction: cfg.slow_fraction,
        profile: cfg.core.profile.to_string(),
        suspicion: cfg.core.suspicion.to_string(),
        formation_s,
        formation_wall_s,
        speedup_after_formation: (sim_s - formation_s) / (wall_s - formation_wall_s).max(1e-9),
        spread,
        false_failures: sim.false_failures,
        resurrections: sim.resurrections,
        agreement_s,
        msgs_per_node_s: (sim.packets_sent - packets_at_formation) as f64 / live / steady_s,
        bytes_per_node_s: (sim.bytes_sent - bytes_at_formation) as f64 / live / steady_s,
        bytes_by_kind: BytesByKind {
            swim: kind_rate(&[Kind::Foca, Kind::FocaCoord]) - coord_in_acks,
            coordinates: coord_in_acks + kind_rate(&[Kind::Coordinates]),
            sync: kind_rate(&[Kind::Sync, Kind::Digest, Kind::Want]),
            notice: kind_rate(&[Kind::Notice]),
            notice_ack: kind_rate(&[Kind::NoticeAck]),
            user: kind_rate(&[Kind::User]),
            query: kind_rate(&[Kind::Query, Kind::QueryResponse]),
            other: kind_rate(&[Kind::Unknown, Kind::Challenge, Kind::ChallengeEcho]) + unknown_rate,
        },
        sim_s,
        wall_s,
        speedup: sim_s / wall_s.max(1e-9),
        trace_hash: format!("{:016x}", sim.trace_hash()),
        violations,
    }
}

fn summarize(kind: &'static str, sim: &Sim, watches: &[usize]) -> Spread {
    let mut t50 = Vec::new();
    let mut t99 = Vec::new();
    let mut t100 = Vec::new();
    let mut incomplete = 0;
    for &w in watches {
        let watch = sim.watch(w);
        let population = sim.witnesses(w);
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        match (
            ms(watch.time_to(0.5, population)),
            ms(watch.time_to(0.99, population)),
            ms(watch.time_to(1.0, population)),
        ) {
            (Some(a), Some(b), Some(c)) => {
                t50.push(a);
                t99.push(b);
                t100.push(c);
            }
            _ => incomplete += 1,
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let worst = t100.iter().copied().fold(f64::NAN, f64::max);
    Spread {
        kind,
        samples: watches.len(),
        p50_ms: med(&mut t50),
        p99_ms: med(&mut t99),
        p100_ms: med(&mut t100),
        worst_ms: worst,
        incomplete,
    }
}

fn owned_name(sim: &Sim, ix: NodeIx) -> String {
    sim.name(ix).to_string()
}
