//! `metrics`: what Prometheus scraping costs an agent. N agents on their own loopback
//! addresses (profile `local`), all joining the first; the second has `--metrics-addr`, the
//! third is the one it is compared with. Once the second lists every member:
//!
//! - CPU per scrape: the scraped agent's user + system time (from `/proc/PID/stat`) over
//!   `scrapes` back-to-back `GET /metrics`, divided by their number (the kernel counts in
//!   10 ms ticks, so many scrapes make the figure exact to a few µs);
//! - the share of one core that a scrape every 15 s adds: that CPU per scrape over 15 s (the
//!   idle agent's own CPU over a minute varies by more than the figure, so it is derived
//!   from the measured cost rather than read from two idle windows);
//! - the wall time of a scrape (median, p99) and the size of the answer;
//! - the resident size of the scraped agent and of one never scraped.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of the metrics benchmark.
pub struct Opts {
    /// Cluster sizes.
    pub sizes: Vec<usize>,
    /// Scrapes per size.
    pub scrapes: usize,
    /// Our binary.
    pub ours: PathBuf,
    /// Where to write the markdown report.
    pub out: Option<PathBuf>,
}

struct Row {
    n: usize,
    cpu_per_scrape: Duration,
    p50: Duration,
    p99: Duration,
    bytes: usize,
    rss_scraped: f64,
    rss_other: f64,
}

/// User + system CPU of `pid`, in seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    Some(crate::cpu_ticks(pid)? as f64 / hz as f64)
}

/// The number of alive members `rpc`'s agent lists.
fn alive(rpc: SocketAddr) -> usize {
    gossip_testkit::http::get(rpc, "/v1/members")
        .and_then(|a| a.json())
        .and_then(|v| {
            v["members"]
                .as_array()
                .map(|m| m.iter().filter(|m| m["status"] == "alive").count())
        })
        .unwrap_or(0)
}

/// Runs the benchmark and prints (and writes) the report.
pub fn metrics(o: &Opts) {
    let mut rows = Vec::new();
    for (k, &n) in o.sizes.iter().enumerate() {
        let net = 70 + k as u8;
        let ip = |i: usize| Ipv4Addr::new(127, 82, net, (i + 1) as u8);
        // The seed (0) handled every join; the scraped agent (1) and the one compared with
        // it (2) are ordinary members.
        let fleet = crate::api_fleet(&o.ours, n, ip, |i| {
            if i == 1 {
                vec!["--metrics-addr".into(), format!("{}:9100", ip(1))]
            } else {
                Vec::new()
            }
        });
        let rpc: SocketAddr = format!("{}:7373", ip(1)).parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        while alive(rpc) < n {
            assert!(
                Instant::now() < deadline,
                "the scraped agent never listed {n} alive members"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(2));
        let scrape_at: SocketAddr = format!("{}:9100", ip(1)).parse().unwrap();
        let pid = fleet.0[1].id();
        let mut bytes = 0;
        for _ in 0..20 {
            let a = gossip_testkit::http::get(scrape_at, "/metrics").expect("a scrape");
            assert_eq!(a.status, 200);
            bytes = a.body.len();
        }
        let before = cpu_secs(pid).expect("the agent's CPU time");
        let mut times = Vec::with_capacity(o.scrapes);
        for _ in 0..o.scrapes {
            let t = Instant::now();
            let a = gossip_testkit::http::get(scrape_at, "/metrics").expect("a scrape");
            times.push(t.elapsed());
            assert_eq!(a.status, 200);
        }
        let after = cpu_secs(pid).expect("the agent's CPU time");
        times.sort();
        let kib = |i: usize| gossip_testkit::host::rss_kib(fleet.0[i].id()).unwrap_or(0) as f64;
        let row = Row {
            n,
            cpu_per_scrape: Duration::from_secs_f64((after - before) / o.scrapes as f64),
            p50: times[times.len() / 2],
            p99: times[times.len() * 99 / 100],
            bytes,
            rss_scraped: kib(1),
            rss_other: kib(2),
        };
        eprintln!(
            "N={n}: {:.3} ms CPU a scrape, wall p50 {:.3} ms p99 {:.3} ms, {} bytes",
            row.cpu_per_scrape.as_secs_f64() * 1e3,
            row.p50.as_secs_f64() * 1e3,
            row.p99.as_secs_f64() * 1e3,
            row.bytes
        );
        rows.push(row);
    }
    let report = render(o, &rows);
    println!("{report}");
    if let Some(path) = &o.out {
        crate::replace_section(path, "## Metrics", &report);
    }
}

fn render(o: &Opts, rows: &[Row]) -> String {
    let mut r = String::new();
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let _ = writeln!(
        r,
        "## Metrics: what a Prometheus scrape costs\n\n`cargo run --release -p gossip-bench -- \
         metrics --out BENCHMARKS.md`: N agents on loopback (profile `local`) joining the first; \
         the second, with `--metrics-addr`, takes {} back-to-back scrapes of its `/metrics` once \
         it lists every member, and is compared with the third (never scraped). \
         CPU: the agent's user + system time over the scrapes (`/proc/PID/stat`), divided by \
         their number; the share of a core that one scrape every 15 s adds is that cost over \
         15 s.\n",
        o.scrapes
    );
    let _ = writeln!(
        r,
        "| N | agent CPU a scrape | at one scrape / 15 s | scrape wall time: median | p99 | answer | RSS scraped | RSS not scraped |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|---|---|");
    for w in rows {
        let share = w.cpu_per_scrape.as_secs_f64() / 15.0 * 100.0;
        let _ = writeln!(
            r,
            "| {} | {} | {:.4} % | {} | {} | {:.1} KiB | {:.2} MiB | {:.2} MiB |",
            w.n,
            ms(w.cpu_per_scrape),
            share,
            ms(w.p50),
            ms(w.p99),
            w.bytes as f64 / 1024.0,
            w.rss_scraped / 1024.0,
            w.rss_other / 1024.0
        );
    }
    let _ = writeln!(r, "\nTargets:\n\n| figure | N | measured | target | met |");
    let _ = writeln!(r, "|---|---|---|---|---|");
    let yes = |ok: bool| if ok { "yes" } else { "**no**" };
    for w in rows {
        let share = w.cpu_per_scrape.as_secs_f64() / 15.0 * 100.0;
        let _ = writeln!(
            r,
            "| agent CPU a scrape | {} | {} | < 1 ms | {} |",
            w.n,
            ms(w.cpu_per_scrape),
            yes(w.cpu_per_scrape < Duration::from_millis(1))
        );
        let _ = writeln!(
            r,
            "| idle CPU added, one scrape / 15 s | {} | {share:.4} % | < 0.01 % | {} |",
            w.n,
            yes(share < 0.01)
        );
        let _ = writeln!(
            r,
            "| RSS of the scraped agent | {} | {:.2} MiB | 5 MiB | {} |",
            w.n,
            w.rss_scraped / 1024.0,
            yes(w.rss_scraped <= 5.0 * 1024.0)
        );
    }
    r
}
