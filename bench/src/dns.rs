//! `dns`: the agent's built-in DNS server against dnsmasq serving the same names from a
//! hosts file, same machine, same run. For each cluster size: N agents with role `api` on
//! their own loopback addresses, the first serving DNS; dnsmasq with the same N addresses
//! under `api.gossip`. Measured for both, asking `api.gossip A`:
//!
//! - throughput: `dnsperf` (Debian's) for a fixed time, as many queries in flight as it
//!   keeps by default; queries per second and its average latency;
//! - latency: one query at a time from this process (a UDP socket, 5,000 queries after a
//!   warm-up): median and 99th percentile;
//! - memory: the resident size of the DNS agent and of an agent of the same cluster without
//!   DNS, after the load.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Options of the DNS benchmark.
pub struct Opts {
    /// Cluster sizes (members with the role).
    pub sizes: Vec<usize>,
    /// dnsperf's run time per server.
    pub secs: u64,
    /// Our binary.
    pub ours: std::path::PathBuf,
    /// Where to write the markdown report.
    pub out: Option<std::path::PathBuf>,
}

/// A query for `api.gossip A` with id `id` (RD set), with EDNS (4,096-byte answers: 100
/// addresses do not fit 512 bytes), as dnsperf `-e` sends it.
fn query(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(48);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in ["api", "gossip"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    // OPT: root name, type 41, payload 4096, no extended flags, no options.
    q.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
    q
}

/// Answers in the reply to `id` (`None`: no reply or another id).
fn ask(sock: &UdpSocket, to: SocketAddr, id: u16) -> Option<u16> {
    sock.send_to(&query(id), to).ok()?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = sock.recv_from(&mut buf).ok()?;
        if n >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            return Some(u16::from_be_bytes([buf[6], buf[7]]));
        }
    }
}

/// Median and 99th percentile of one-at-a-time queries.
fn latency(to: SocketAddr, n: usize) -> Option<(Duration, Duration)> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    for i in 0..200u16 {
        ask(&sock, to, i)?;
    }
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        ask(&sock, to, (i % 65536) as u16)?;
        times.push(t.elapsed());
    }
    times.sort();
    Some((times[n / 2], times[n * 99 / 100]))
}

/// dnsperf against `to` for `secs`: (queries per second, average latency), from its report.
fn dnsperf(to: SocketAddr, secs: u64, dir: &Path) -> Option<(f64, Duration)> {
    let qfile = dir.join("queries.txt");
    std::fs::write(&qfile, "api.gossip A\n").ok()?;
    let out = Command::new("dnsperf")
        .args(["-s", &to.ip().to_string(), "-p", &to.port().to_string()])
        .arg("-d")
        .arg(&qfile)
        .args(["-l", &secs.to_string(), "-c", "1", "-T", "1", "-e"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let num = |key: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.trim_start().starts_with(key))?;
        line.split(':')
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let qps = num("Queries per second")?;
    let avg = num("Average Latency (s)")?;
    Some((qps, Duration::from_secs_f64(avg)))
}

struct Figures {
    qps: f64,
    avg: Duration,
    p50: Duration,
    p99: Duration,
}

/// Runs the benchmark and prints (and writes) the report.
pub fn dns(o: &Opts) {
    let mut rows: Vec<(usize, &'static str, Figures)> = Vec::new();
    let mut rss: Vec<(usize, f64, f64)> = Vec::new();
    for (k, &n) in o.sizes.iter().enumerate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let net = 90 + k as u8;
        let ip = |i: usize| Ipv4Addr::new(127, 81, net, (i + 1) as u8);
        let mut fleet = crate::api_fleet(&o.ours, n, ip, |i| {
            if i == 0 {
                let dns = format!("{}:53", ip(0));
                vec![
                    "--dns-addr".into(),
                    dns,
                    "--dns-recursor".into(),
                    "none".into(),
                ]
            } else {
                Vec::new()
            }
        });
        let ours: SocketAddr = format!("{}:53", ip(0)).parse().unwrap();
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while ask(&probe, ours, 1) != Some(n as u16) {
            assert!(
                Instant::now() < deadline,
                "the agent never listed {n} members"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // dnsmasq with the same names, from a hosts file.
        let hosts = dir.path().join("hosts");
        let mut text = String::new();
        for i in 0..n {
            let _ = writeln!(text, "{} api.gossip", ip(i));
        }
        std::fs::write(&hosts, text).unwrap();
        let dm_ip = Ipv4Addr::new(127, 81, net, 250);
        let pid = dir.path().join("dnsmasq.pid");
        let dm = Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--port=53"])
            .arg(format!("--listen-address={dm_ip}"))
            .args([
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
            ])
            // Its default caps answers at 1,232 bytes (75 addresses); ours follows the
            // client's EDNS size (up to 4,096).
            .arg("--edns-packet-max=4096")
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg(format!("--pid-file={}", pid.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        fleet.0.push(dm);
        let theirs: SocketAddr = format!("{dm_ip}:53").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = None;
        while got != Some(n as u16) {
            got = ask(&probe, theirs, 1);
            assert!(
                Instant::now() < deadline,
                "dnsmasq never answered {n} addresses (last: {got:?})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for (label, to) in [("ours", ours), ("dnsmasq", theirs)] {
            let (p50, p99) = latency(to, 5000).expect("latency run");
            let (qps, avg) = dnsperf(to, o.secs, dir.path()).expect("dnsperf run");
            eprintln!(
                "N={n} {label}: {qps:.0} q/s, avg {:.3} ms, p50 {:.3} ms, p99 {:.3} ms",
                avg.as_secs_f64() * 1e3,
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
            rows.push((n, label, Figures { qps, avg, p50, p99 }));
        }
        let kib = |c: &Child| gossip_testkit::host::rss_kib(c.id()).unwrap_or(0) as f64;
        rss.push((n, kib(&fleet.0[0]), kib(&fleet.0[1])));
    }
    let report = render(o, &rows, &rss);
    println!("{report}");
    if let Some(path) = &o.out {
        crate::replace_section(path, "## DNS", &report);
    }
}

fn render(o: &Opts, rows: &[(usize, &str, Figures)], rss: &[(usize, f64, f64)]) -> String {
    let mut r = String::new();
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let _ = writeln!(
        r,
        "## DNS: the agent's server against dnsmasq\n\n`cargo run --release -p gossip-bench -- dns \
         --out BENCHMARKS.md`: N agents with role `api`, the first serving DNS; dnsmasq serving \
         the same N addresses under `api.gossip` from a hosts file (`--edns-packet-max=4096`); \
         both asked `api.gossip A` \
         on loopback. Throughput: dnsperf for {} s (one client, one thread, its default 100 \
         queries in flight, EDNS on so that 100 addresses fit one datagram). Latency: one query at \
         a time, 5,000 after a warm-up.\n",
        o.secs
    );
    let _ = writeln!(
        r,
        "| N | server | queries/s (dnsperf) | dnsperf average | one at a time: median | p99 |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|");
    for (n, label, f) in rows {
        let _ = writeln!(
            r,
            "| {n} | {label} | {:.0} | {} | {} | {} |",
            f.qps,
            ms(f.avg),
            ms(f.p50),
            ms(f.p99)
        );
    }
    let _ = writeln!(
        r,
        "\nTargets:\n\n| figure | N | ours | dnsmasq | target | met |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|");
    for chunk in rows.chunks(2) {
        let [(n, _, a), (_, _, b)] = chunk else {
            continue;
        };
        let yes = |ok: bool| if ok { "yes" } else { "**no**" };
        let _ = writeln!(
            r,
            "| queries/s | {n} | {:.0} | {:.0} | >= dnsmasq's | {} |",
            a.qps,
            b.qps,
            yes(a.qps >= b.qps)
        );
        let _ = writeln!(
            r,
            "| p99 latency | {n} | {} | {} | < 1 ms | {} |",
            ms(a.p99),
            ms(b.p99),
            yes(a.p99 < Duration::from_millis(1))
        );
    }
    for (n, with, without) in rss {
        let _ = writeln!(
            r,
            "| RSS with DNS on (after the load) | {n} | {:.2} MiB | without: {:.2} MiB | within 0.5 MiB | {} |",
            with / 1024.0,
            without / 1024.0,
            if with - without <= 512.0 {
                "yes"
            } else {
                "**no**"
            }
        );
    }
    r
}
