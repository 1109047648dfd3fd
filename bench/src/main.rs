//! `gossip-bench`: measurements with real agents on loopback, printed as a table.
//!
//! `upstream`: the time from a member's start until it appears in the nginx upstream file
//! written by every other agent (and, on its SIGTERM, until it is gone from all of them).
//!
//! ```text
//! cargo run --release -p gossip-bench -- upstream --nodes 10,50 --reps 5
//! ```
//!
//! `soak`: 100 agents under 10 tag changes and 1 user event a second for 5 minutes (module
//! `soak`): lost or duplicated events, false failures, memory growth.
//!
//! ```text
//! cargo run --release -p gossip-bench -- soak --nodes 100 --secs 300
//! ```
//!
//! `compare`: our agent and Debian's Serf side by side (module `compare`), writing
//! `BENCHMARKS.md`:
//!
//! ```text
//! cargo run --release -p gossip-bench -- compare --out BENCHMARKS.md
//! ```
//!
//! `dns`: the built-in DNS server against dnsmasq, with dnsperf (module `dns`), replacing
//! (or appending) its section of `BENCHMARKS.md`:
//!
//! ```text
//! cargo run --release -p gossip-bench -- dns --out BENCHMARKS.md
//! ```
//!
//! `metrics`: what a Prometheus scrape costs an agent at 100 members (module `metrics`), its
//! own section of `BENCHMARKS.md` likewise:
//!
//! ```text
//! cargo run --release -p gossip-bench -- metrics --out BENCHMARKS.md
//! ```

mod compare;
mod dns;
mod metrics;
mod soak;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Benchmarks of gossip-agent on loopback")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Member start -> present in every other agent's nginx upstream file.
    Upstream {
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_value = "10,50")]
        nodes: Vec<u8>,
        /// New members started per size.
        #[arg(long, default_value_t = 5)]
        reps: u8,
        /// Poll interval of the upstream files, in ms.
        #[arg(long, default_value_t = 2)]
        poll_ms: u64,
        /// The agent binary (default: build target/release/gossip-agent).
        #[arg(long)]
        agent_bin: Option<PathBuf>,
    },
    /// Agents under steady tag changes and user events: losses, false failures, memory.
    Soak {
        /// Agents.
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        /// Seconds of load.
        #[arg(long, default_value_t = 300)]
        secs: u64,
        /// Tag changes per second.
        #[arg(long, default_value_t = 10)]
        tag_rate: u32,
        /// User events per second.
        #[arg(long, default_value_t = 1)]
        event_rate: u32,
        /// The agent binary (default: build target/release/gossip-agent).
        #[arg(long)]
        agent_bin: Option<PathBuf>,
    },
    /// Our agent and Serf side by side: join, handler, failure, leave, idle costs.
    Compare {
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
        nodes: Vec<usize>,
        /// Repetitions per size and implementation.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Idle time before the idle window, in seconds (the issue's "steady state after 30 s
        /// idle").
        #[arg(long, default_value_t = 30)]
        settle_secs: u64,
        /// Idle measurement window, in seconds.
        #[arg(long, default_value_t = 30)]
        idle_secs: u64,
        /// Write the markdown report here too.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The agent binary (default: build target/release/gossip-agent).
        #[arg(long)]
        agent_bin: Option<PathBuf>,
        /// Run only one implementation (to study it; the report then has no ratios).
        #[arg(long, value_enum)]
        only: Option<compare::Kind>,
    },
    /// What a Prometheus scrape of /metrics costs an agent: CPU, time, memory.
    Metrics {
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_value = "100")]
        nodes: Vec<usize>,
        /// Scrapes per size.
        #[arg(long, default_value_t = 2000)]
        scrapes: usize,
        /// Replace (or add) the metrics section of this markdown report.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The agent binary (default: build target/release/gossip-agent).
        #[arg(long)]
        agent_bin: Option<PathBuf>,
    },
    /// The built-in DNS server against dnsmasq: throughput (dnsperf), latency, memory.
    Dns {
        /// Cluster sizes (members with the role asked for).
        #[arg(long, value_delimiter = ',', default_value = "10,100")]
        nodes: Vec<usize>,
        /// dnsperf's run per server, in seconds.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Replace (or add) the DNS section of this markdown report.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The agent binary (default: build target/release/gossip-agent).
        #[arg(long)]
        agent_bin: Option<PathBuf>,
    },
}

fn main() {
    match Cli::parse().cmd {
        Cmd::Upstream {
            nodes,
            reps,
            poll_ms,
            agent_bin,
        } => {
            let bin = agent_bin.unwrap_or_else(build_agent);
            upstream(&bin, &nodes, reps, Duration::from_millis(poll_ms));
        }
        Cmd::Soak {
            nodes,
            secs,
            tag_rate,
            event_rate,
            agent_bin,
        } => {
            if !(2..=1000).contains(&nodes) || secs == 0 || tag_rate > 1000 || event_rate > 100 {
                eprintln!("error: invalid --nodes/--secs/--tag-rate/--event-rate");
                std::process::exit(2);
            }
            soak::soak(&soak::Opts {
                nodes,
                secs,
                tag_rate,
                event_rate,
                bin: agent_bin.unwrap_or_else(build_agent),
            });
        }
        Cmd::Compare {
            nodes,
            reps,
            settle_secs,
            idle_secs,
            out,
            agent_bin,
            only,
        } => {
            if nodes.is_empty() || nodes.iter().any(|n| !(4..=250).contains(n)) || reps == 0 {
                eprintln!("error: invalid --nodes/--reps: sizes 4 to 250, at least one repetition");
                std::process::exit(2);
            }
            let ours = agent_bin.unwrap_or_else(build_agent);
            let serf = ensure_installed("serf", "serf");
            ensure_installed("tcpdump", "tcpdump");
            compare::compare(&compare::Opts {
                sizes: nodes,
                reps,
                settle: Duration::from_secs(settle_secs),
                idle: Duration::from_secs(idle_secs),
                ours,
                serf,
                out,
                only,
            });
        }
        Cmd::Metrics {
            nodes,
            scrapes,
            out,
            agent_bin,
        } => {
            if nodes.is_empty() || nodes.iter().any(|n| !(2..=240).contains(n)) || scrapes < 100 {
                eprintln!("error: invalid --nodes/--scrapes: sizes 2 to 240, at least 100 scrapes");
                std::process::exit(2);
            }
            metrics::metrics(&metrics::Opts {
                sizes: nodes,
                scrapes,
                ours: agent_bin.unwrap_or_else(build_agent),
                out,
            });
        }
        Cmd::Dns {
            nodes,
            secs,
            out,
            agent_bin,
        } => {
            if nodes.is_empty() || nodes.iter().any(|n| !(2..=240).contains(n)) || secs == 0 {
                eprintln!("error: invalid --nodes/--secs: sizes 2 to 240, at least a second");
                std::process::exit(2);
            }
            let ours = agent_bin.unwrap_or_else(build_agent);
            ensure_installed("dnsperf", "dnsperf");
            ensure_installed("dnsmasq", "dnsmasq-base");
            dns::dns(&dns::Opts {
                sizes: nodes,
                secs,
                ours,
                out,
            });
        }
    }
}

/// Replaces the section of the markdown file at `path` that starts with the line `heading`
/// (up to the next `## ` heading, or the end) by `report`, or appends it.
/// The part of `old` from the first of `headings` (each starting a line) to the end, with a
/// blank line before it; empty when none is there.
fn other_sections(old: &str, headings: &[&str]) -> String {
    headings
        .iter()
        .filter_map(|h| old.find(&format!("\n{h}")))
        .min()
        .map(|start| format!("\n{}", &old[start + 1..]))
        .unwrap_or_default()
}

fn replace_section(path: &Path, heading: &str, report: &str) {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let text = match old.find(&format!("\n{heading}")) {
        Some(start) => {
            let after = &old[start + 1..];
            let end = after[heading.len()..]
                .find("\n## ")
                .map(|i| start + 1 + heading.len() + i + 1);
            let tail = end.map(|e| &old[e..]).unwrap_or("");
            format!(
                "{}\n\n{}\n\n{}",
                old[..start].trim_end(),
                report.trim_end(),
                tail
            )
        }
        None => format!("{}\n\n{}", old.trim_end(), report.trim_end()),
    };
    std::fs::write(path, text.trim_end().to_string() + "\n").expect("write the report");
}

/// The program's path, installing its Debian package (apt-get, as root) when it is missing.
fn ensure_installed(program: &'static str, package: &'static str) -> PathBuf {
    use gossip_testkit::host;
    if let Err(e) = host::ensure("gossip-bench", &[host::Need { program, package }]) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    host::which(program).expect("installed just now")
}

fn build_agent() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let st = Command::new("cargo")
        // The statically linked release build (`.cargo/config.toml`), as shipped.
        .args(["-q", "release-agent"])
        .current_dir(root)
        .status()
        .expect("run cargo");
    assert!(st.success(), "cargo build failed");
    root.join("target/release/gossip-agent")
}

/// `n` agents with role `api` (profile `local`, logs at `warn`) at `ip(0)`..`ip(n - 1)`,
/// gossip on 7946 and the control API on 7373, every one but the first joining the first;
/// `extra(i)` adds flags to agent `i`. The others start once the first's API answers (at
/// most 10 s).
fn api_fleet(
    bin: &Path,
    n: usize,
    ip: impl Fn(usize) -> Ipv4Addr,
    extra: impl Fn(usize) -> Vec<String>,
) -> Fleet {
    let mut fleet = Fleet(Vec::with_capacity(n));
    for i in 0..n {
        let mut cmd = Command::new(bin);
        cmd.args(["--node", &format!("n{i}")])
            .args(["--bind", &format!("{}:7946", ip(i))])
            .args(["--rpc-addr", &format!("{}:7373", ip(i))])
            .args(["--role", "api", "--profile", "local", "--log-level", "warn"])
            .args(extra(i));
        if i > 0 {
            cmd.args(["--join", &format!("{}:7946", ip(0))]);
        }
        fleet.0.push(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start gossip-agent"),
        );
        if i == 0 {
            let api = std::net::SocketAddr::from((ip(0), 7373));
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(api).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "the first agent's API never answered"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    fleet
}

/// User + system CPU of `pid` so far, in clock ticks (`/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the ')': state is field 3 of the line, utime 14 and stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Agents started by the benchmark; all killed on drop, also on panic.
struct Fleet(Vec<Child>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(bin: &Path, name: &str, ip: Ipv4Addr, join: Option<Ipv4Addr>, file: &Path) -> Child {
    let mut args = vec![
        "--node".to_string(),
        name.to_string(),
        "--bind".into(),
        format!("{ip}:7946"),
        "--rpc-addr".into(),
        format!("{ip}:7373"),
        "--role".into(),
        "appserver".into(),
        "--tag".into(),
        "port=8080".into(),
        "--log-level".into(),
        "warn".into(),
        "--writer".into(),
        format!("nginx:path={},upstream=app,role=appserver", file.display()),
    ];
    if let Some(j) = join {
        args.push("--join".into());
        args.push(j.to_string());
    }
    Command::new(bin)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gossip-agent")
}

/// Polls until `pred` holds for every file; returns per-file times (None: not within limit).
fn watch(
    files: &[PathBuf],
    start: Instant,
    poll: Duration,
    limit: Duration,
    pred: impl Fn(&str) -> bool,
) -> Vec<Option<Duration>> {
    let mut out: Vec<Option<Duration>> = vec![None; files.len()];
    while start.elapsed() < limit && out.iter().any(Option::is_none) {
        for (i, f) in files.iter().enumerate() {
            if out[i].is_none() && pred(&std::fs::read_to_string(f).unwrap_or_default()) {
                out[i] = Some(start.elapsed());
            }
        }
        std::thread::sleep(poll);
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn summary(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let med = v[v.len() / 2];
    let p99 = v[(v.len() * 99 / 100).min(v.len() - 1)];
    (med, p99, *v.last().expect("non-empty"))
}

fn upstream(bin: &Path, sizes: &[u8], reps: u8, poll: Duration) {
    let mut rows = Vec::new();
    for &n in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let ip = |net: u8, i: u8| Ipv4Addr::new(127, 88, net, i);
        let files: Vec<PathBuf> = (1..=n)
            .map(|i| dir.path().join(format!("n{i}.conf")))
            .collect();
        let mut fleet = Fleet(Vec::new());
        for i in 1..=n {
            let join = (i > 1).then(|| ip(0, 1));
            fleet.0.push(spawn(
                bin,
                &format!("n{i}"),
                ip(0, i),
                join,
                &files[usize::from(i) - 1],
            ));
        }
        let all_in = |t: &str| t.matches("    server ").count() == usize::from(n);
        let conv = watch(
            &files,
            Instant::now(),
            Duration::from_millis(20),
            Duration::from_secs(60),
            all_in,
        );
        assert!(
            conv.iter().all(Option::is_some),
            "{n} agents did not converge in 60 s"
        );
        let mut join_times = Vec::new();
        let mut leave_times = Vec::new();
        for r in 1..=reps {
            let name = format!("new{r}");
            let marker = format!("# {name}\n");
            let file = dir.path().join(format!("{name}.conf"));
            let t0 = Instant::now();
            let mut child = spawn(bin, &name, ip(1, r), Some(ip(0, 1)), &file);
            let got = watch(&files, t0, poll, Duration::from_secs(10), |t| {
                t.contains(&marker)
            });
            assert!(
                got.iter().all(Option::is_some),
                "{name} missing from some upstream file after 10 s"
            );
            join_times.extend(got.into_iter().flatten());
            let t1 = Instant::now();
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let gone = watch(&files, t1, poll, Duration::from_secs(10), |t| {
                !t.contains(&marker)
            });
            assert!(
                gone.iter().all(Option::is_some),
                "{name} still in some upstream file 10 s after SIGTERM"
            );
            leave_times.extend(gone.into_iter().flatten());
            let _ = child.wait();
        }
        rows.push((n, join_times, leave_times));
        drop(fleet);
    }
    println!(
        "Upstream file latency, gossip-agent {} (lan profile, loopback, poll every {} ms)",
        env!("CARGO_PKG_VERSION"),
        poll.as_millis()
    );
    println!();
    println!(
        "| agents | new members | start -> in every upstream file: median / p99 / max (ms) | SIGTERM -> gone from every file: median / p99 / max (ms) |"
    );
    println!("|---|---|---|---|");
    for (n, j, l) in rows {
        let (jm, jp, jx) = summary(j);
        let (lm, lp, lx) = summary(l);
        println!(
            "| {n} | {reps} | {} / {} / {} | {} / {} / {} |",
            ms(jm),
            ms(jp),
            ms(jx),
            ms(lm),
            ms(lp),
            ms(lx)
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_section_is_replaced_in_place_or_appended() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("B.md");
        assert_eq!(
            super::other_sections(
                "# C\nx\n\n## DNS\nd\n\n## Metrics\nm\n",
                &["## Metrics", "## DNS"]
            ),
            "\n## DNS\nd\n\n## Metrics\nm\n"
        );
        assert_eq!(super::other_sections("# C\nx\n", &["## DNS"]), "");
        std::fs::write(&p, "# B\n\n## DNS\nold dns\n\n## Other\nkept\n").unwrap();
        super::replace_section(&p, "## DNS", "## DNS\nnew dns\n");
        super::replace_section(&p, "## Metrics", "## Metrics\nm\n");
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "# B\n\n## DNS\nnew dns\n\n## Other\nkept\n\n## Metrics\nm\n"
        );
    }
}
