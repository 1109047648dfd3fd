//! `soak`: a cluster of real agents on loopback under steady change for minutes: tag changes
//! and user events at fixed rates. It reports whether every event reached every agent exactly
//! once, whether any live agent was ever seen failed or suspect, whether every tag change
//! converged, and how each agent's resident memory moved (a leak shows as growth between the
//! first minute and the end).
//!
//! ```text
//! cargo run --release -p gossip-bench -- soak --nodes 100 --secs 300
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to run.
pub struct Opts {
    /// Agents.
    pub nodes: usize,
    /// Length of the load, after the cluster formed.
    pub secs: u64,
    /// Tag changes per second (each by one agent, round robin).
    pub tag_rate: u32,
    /// User events per second.
    pub event_rate: u32,
    /// The agent binary.
    pub bin: PathBuf,
}

/// The user-event handler: one line per event, bash builtins only.
const HANDLER: &str =
    "#!/bin/bash\nread -r payload\necho \"$SERF_USER_LTIME $payload\" >> \"$1\"\n";

/// The member-failed handler: every member the agent declared failed, one line each. Every
/// verdict is recorded, where polling the member lists would only sample them.
const FAILED: &str =
    "#!/bin/bash\nwhile IFS=$'\\t' read -r name rest; do echo \"$name\" >> \"$1\"; done\n";

struct Agent {
    child: Child,
    rpc: SocketAddr,
    events: PathBuf,
    failed: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 66, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// One request to an agent's control API; the body of a 2xx answer.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<String> {
    let a = gossip_testkit::http::request(addr, method, path, body, Duration::from_secs(5))?;
    a.ok().then_some(a.body)
}

/// Every member's status and `seq` tag, as agent `rpc` lists them.
fn view(rpc: SocketAddr) -> Option<BTreeMap<String, (String, String)>> {
    Some(
        gossip_testkit::members::listed(rpc)?
            .into_iter()
            .map(|(name, m)| {
                let seq = m.tags.get("seq").cloned().unwrap_or_default();
                (name, (m.status, seq))
            })
            .collect(),
    )
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn start(bin: &Path, dir: &Path, i: usize) -> Agent {
    let name = format!("s{i}");
    let events = dir.join(format!("{name}.events"));
    let handler = format!(
        "user={} {}",
        dir.join("handler.sh").display(),
        events.display()
    );
    let failed = dir.join(format!("{name}.failed"));
    let on_failed = format!(
        "member-failed={} {}",
        dir.join("failed.sh").display(),
        failed.display()
    );
    let rpc = SocketAddr::new(ip(i).into(), 7373);
    let mut cmd = Command::new(bin);
    cmd.args(["--node", &name, "--bind", &format!("{}:7946", ip(i))])
        .args(["--rpc-addr", &rpc.to_string(), "--role", "appserver"])
        .args(["--tag", "seq=0", "--event-handler", &handler])
        .args(["--event-handler", &on_failed])
        .args(["--log-level", "warn"]);
    if i > 0 {
        cmd.args(["--join", &format!("{}:7946", ip(0))]);
    }
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("spawn the agent");
    Agent {
        child,
        rpc,
        events,
        failed,
    }
}

/// Runs the soak and prints its table; exits 1 when an event was lost or duplicated, a live
/// agent was seen failed, or a tag change did not converge.
pub fn soak(o: &Opts) {
    let dir = tempfile::tempdir().expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    for (file, text) in [("handler.sh", HANDLER), ("failed.sh", FAILED)] {
        let h = dir.path().join(file);
        std::fs::write(&h, text).expect("handler");
        std::fs::set_permissions(&h, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    let agents: Vec<Agent> = (0..o.nodes)
        .map(|i| {
            let a = start(&o.bin, dir.path(), i);
            std::thread::sleep(Duration::from_millis(20));
            a
        })
        .collect();
    let formed = Instant::now();
    let all_alive = |a: &Agent| {
        view(a.rpc).is_some_and(|v| v.len() == o.nodes && v.values().all(|(s, _)| s == "alive"))
    };
    while !agents.iter().all(all_alive) {
        assert!(
            formed.elapsed() < Duration::from_secs(120),
            "the cluster did not form in 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "soak: {} agents formed in {:.1} s; load for {} s",
        o.nodes,
        formed.elapsed().as_secs_f64(),
        o.secs
    );

    let rss_now = || -> Vec<u64> {
        agents
            .iter()
            .filter_map(|a| gossip_testkit::host::rss_kib(a.child.id()))
            .collect()
    };
    let mut rss_first = Vec::new();
    let mut rss_peak = 0u64;
    // (seconds into the load, median RSS) once a minute: growth without bound shows as a slope.
    let mut rss_timeline: Vec<(u64, u64)> = Vec::new();
    let mut tags_sent = 0u64;
    let mut events_sent: Vec<u64> = Vec::new();
    let mut refused = 0u64;
    let mut not_alive: BTreeSet<(String, String)> = BTreeSet::new();
    let mut last_seq: BTreeMap<usize, u64> = BTreeMap::new();
    let tag_every = Duration::from_secs(1) / o.tag_rate.max(1);
    let event_every = Duration::from_secs(1) / o.event_rate.max(1);
    let t0 = Instant::now();
    let (mut next_tag, mut next_event, mut next_check) = (t0, t0, t0 + Duration::from_secs(5));
    let mut check_ix = 0usize;
    while t0.elapsed() < Duration::from_secs(o.secs) {
        let now = Instant::now();
        if o.tag_rate > 0 && now >= next_tag {
            let i = (tags_sent as usize) % o.nodes;
            let seq = tags_sent + 1;
            let body = format!("{{\"set\":{{\"seq\":\"{seq}\"}}}}");
            if http(agents[i].rpc, "POST", "/v1/tags", &body).is_some() {
                last_seq.insert(i, seq);
            } else {
                refused += 1;
            }
            tags_sent += 1;
            next_tag += tag_every;
        }
        if o.event_rate > 0 && now >= next_event {
            let i = (events_sent.len() * 7) % o.nodes;
            let k = events_sent.len() as u64;
            // Not coalesced: every event must reach every handler.
            let body = format!("{{\"name\":\"soak\",\"payload\":\"e{k}\",\"coalesce\":false}}");
            match http(agents[i].rpc, "POST", "/v1/event", &body) {
                Some(_) => events_sent.push(k),
                None => refused += 1,
            }
            next_event += event_every;
        }
        if now >= next_check {
            // Ten agents' views per check, in turn: every view is read every few checks.
            for _ in 0..10 {
                let a = &agents[check_ix % o.nodes];
                check_ix += 1;
                if let Some(v) = view(a.rpc) {
                    for (name, (status, _)) in v {
                        if status != "alive" {
                            not_alive.insert((
                                format!("s{}", (check_ix - 1) % o.nodes),
                                format!("{name}={status}"),
                            ));
                        }
                    }
                }
            }
            let r = rss_now();
            rss_peak = rss_peak.max(r.iter().copied().max().unwrap_or(0));
            let minute = t0.elapsed().as_secs() / 60;
            if minute > rss_timeline.len() as u64 {
                rss_timeline.push((minute * 60, median(&mut r.clone())));
            }
            if rss_first.is_empty() && t0.elapsed() >= Duration::from_secs(60.min(o.secs / 2)) {
                rss_first = r;
            }
            next_check += Duration::from_secs(2);
        }
        let wake = next_tag.min(next_event).min(next_check);
        if let Some(d) = wake.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let load = t0.elapsed();

    // Settle, then: every event once on every agent; every agent's last tag everywhere.
    let settle = Instant::now();
    let want: BTreeSet<String> = events_sent.iter().map(|k| format!("e{k}")).collect();
    let deliveries = |a: &Agent| -> (usize, usize, usize) {
        let text = std::fs::read_to_string(&a.events).unwrap_or_default();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for l in text.lines() {
            if let Some((_, p)) = l.split_once(' ') {
                *seen.entry(p.to_string()).or_default() += 1;
            }
        }
        let missing = want.iter().filter(|w| !seen.contains_key(*w)).count();
        let dups = seen.values().filter(|n| **n > 1).count();
        (seen.len(), missing, dups)
    };
    let tags_converged = |a: &Agent| {
        view(a.rpc).is_some_and(|v| {
            last_seq.iter().all(|(i, s)| {
                v.get(&format!("s{i}"))
                    .is_some_and(|(_, t)| *t == s.to_string())
            })
        })
    };
    loop {
        let done = agents.iter().all(|a| deliveries(a).1 == 0) && agents.iter().all(tags_converged);
        if done || settle.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut rss_end = rss_now();
    let stats: Vec<(usize, usize, usize)> = agents.iter().map(deliveries).collect();
    let missing: usize = stats.iter().map(|s| s.1).sum();
    let dups: usize = stats.iter().map(|s| s.2).sum();
    let unconverged = agents.iter().filter(|a| !tags_converged(a)).count();
    // Every member-failed verdict any agent reached (each agent's handler wrote them down).
    let verdicts: Vec<String> = agents
        .iter()
        .enumerate()
        .flat_map(|(i, a)| {
            std::fs::read_to_string(&a.failed)
                .unwrap_or_default()
                .lines()
                .map(|l| format!("s{i} declared {l} failed"))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut first = rss_first.clone();
    let (m_first, m_end) = (median(&mut first), median(&mut rss_end.clone()));
    let max_growth = rss_first
        .iter()
        .zip(&rss_end)
        .map(|(a, b)| b.saturating_sub(*a))
        .max()
        .unwrap_or(0);
    rss_end.sort_unstable();

    println!(
        "| soak: {} agents, {:.0} s, {} tag changes/s, {} user events/s | |",
        o.nodes,
        load.as_secs_f64(),
        o.tag_rate,
        o.event_rate
    );
    println!("|---|---|");
    println!("| tag changes sent (refused) | {tags_sent} ({refused}) |");
    println!(
        "| tag changes converged on every agent | {} |",
        if unconverged == 0 {
            "yes".to_string()
        } else {
            format!("no: {unconverged} agents behind")
        }
    );
    println!("| user events sent | {} |", events_sent.len());
    println!("| deliveries: missing / duplicated (over all agents) | {missing} / {dups} |");
    println!(
        "| member-failed verdicts (every agent's handler) | {} |",
        if verdicts.is_empty() {
            "none".to_string()
        } else {
            format!(
                "{}: {:?}",
                verdicts.len(),
                verdicts.iter().take(5).collect::<Vec<_>>()
            )
        }
    );
    println!(
        "| live agents seen failed or suspect (member lists, 5 views a second) | {} |",
        if not_alive.is_empty() {
            "none".to_string()
        } else {
            format!("{:?}", not_alive.iter().take(5).collect::<Vec<_>>())
        }
    );
    println!(
        "| RSS per agent, median: after {} s / at the end | {:.1} / {:.1} MiB |",
        60.min(o.secs / 2),
        m_first as f64 / 1024.0,
        m_end as f64 / 1024.0
    );
    println!(
        "| RSS growth, worst agent, from then to the end | {:.2} MiB |",
        max_growth as f64 / 1024.0
    );
    println!(
        "| RSS peak, any agent | {:.1} MiB |",
        rss_peak as f64 / 1024.0
    );
    let timeline: Vec<String> = rss_timeline
        .iter()
        .map(|(s, kib)| format!("{s} s: {:.2}", *kib as f64 / 1024.0))
        .collect();
    println!(
        "| RSS per agent, median, each minute (MiB) | {} |",
        timeline.join(", ")
    );
    let ok = missing == 0
        && dups == 0
        && not_alive.is_empty()
        && verdicts.is_empty()
        && unconverged == 0;
    println!("| verdict | {} |", if ok { "pass" } else { "FAIL" });
    drop(agents);
    if !ok {
        std::process::exit(1);
    }
}
