//! End-to-end: the elastic demo in real Docker containers under a steady request load through
//! the proxy. Scale up, scale down with `docker stop`, then `docker kill` an appserver, and
//! check that no request is lost, that new appservers get traffic within 1 s of being ready,
//! that stopped ones stop getting traffic, and how long a killed one keeps being tried.
//!
//! Needs a Docker engine and `debootstrap` (the first run builds the Debian base image, about a
//! minute). Without Docker it says so and passes, unless `GOSSIP_REQUIRE_DOCKER=1` (CI sets
//! it). The report is printed and written to `target/elastic-e2e.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use elastic_demo::load::{Load, Sample, request};
use elastic_demo::{Demo, Variant, images};

const RATE: u32 = 300;
const WORKERS: usize = 12;

/// The two end-to-end tests share the engine and the images: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn elastic_demo_under_load() {
    under_load(Variant::Agent, "gd-e2e", "target/elastic-e2e.md");
}

/// The original demo's flow, driven by Serf-contract shell scripts under our binary installed
/// as `serf`, through the same checks.
#[test]
fn elastic_demo_with_serf_scripts_under_load() {
    under_load(
        Variant::SerfScripts,
        "gd-e2e-serf",
        "target/elastic-e2e-serf.md",
    );
}

fn under_load(variant: Variant, prefix: &str, report_path: &str) {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let run = format!("{prefix}-{}", std::process::id());
    let Some(demo) = rt.block_on(Demo::connect_or_skip(&run)) else {
        return;
    };
    let demo = demo.with_variant(variant);
    // The scenario runs in a task, so a failed assertion still lets the cleanup run.
    let d = demo.clone();
    let outcome = rt.block_on(async move { tokio::spawn(scenario(d)).await });
    let removed = rt.block_on(demo.down());
    eprintln!("cleanup: {removed:?}");
    match outcome {
        Ok(report) => {
            println!("{report}");
            let path = images::workspace_dir().join(report_path);
            let _ = std::fs::write(&path, &report);
        }
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("scenario task: {e}"),
    }
    assert!(removed.is_ok(), "cleanup failed: {removed:?}");
}

fn log(s: &str) {
    eprintln!("[e2e] {s}");
}

/// Polls `GET /hello/probe` on the host's own port until it answers 200; returns when.
async fn ready_at(ip: std::net::Ipv4Addr, port: u16, deadline: Instant) -> Option<Instant> {
    let addr = SocketAddr::from((ip, port));
    while Instant::now() < deadline {
        let answer = gossip_testkit::http::request_async(
            addr,
            "GET",
            "/hello/probe",
            "",
            Duration::from_millis(500),
        )
        .await;
        if answer.is_ok_and(|a| a.status == 200) {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn since(t: Instant, from: Instant) -> String {
    if t >= from {
        ms(t - from)
    } else {
        format!("-{}", ms(from - t))
    }
}

struct Phase {
    name: &'static str,
    from: Instant,
    to: Instant,
}

async fn scenario(demo: Demo) -> String {
    let target = images::workspace_dir().join("target/elastic-demo");
    // Each test builds its variant's images (the base and unchanged layers are cached).
    let agent = images::agent_binary(&target, &log).expect("agent binary");
    images::ensure(demo.docker(), &agent, demo.variant, &log)
        .await
        .expect("images");
    demo.down().await.expect("clean start");

    let t0 = Instant::now();
    demo.up().await.expect("up");
    demo.wait_for_answers(&["frontserver1"], &["appserver1"], Duration::from_secs(60))
        .await
        .expect("the four containers serve");
    let up_time = t0.elapsed();
    log(&format!("serving after {}", ms(up_time)));

    let proxy = SocketAddr::from((demo.ip("proxyserver").await.expect("proxy ip"), 80));
    let load = Load::start(proxy, RATE, WORKERS);
    let mut phases = Vec::new();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Scale up: frontserver2, appserver2, appserver3.
    let up_from = Instant::now();
    let mut started = BTreeMap::new();
    let mut ready = BTreeMap::new();
    let mut pollers = Vec::new();
    for host in ["frontserver2", "appserver2", "appserver3"] {
        started.insert(host, Instant::now());
        demo.start(host).await.expect("start");
        let ip = demo.ip(host).await.expect("ip");
        let port = 8080;
        pollers.push((
            host,
            tokio::spawn(ready_at(ip, port, Instant::now() + Duration::from_secs(60))),
        ));
    }
    for (host, p) in pollers {
        let at = p
            .await
            .expect("poller")
            .unwrap_or_else(|| panic!("{host} never answered"));
        ready.insert(host, at);
    }
    demo.wait_for_answers(
        &["frontserver1", "frontserver2"],
        &["appserver1", "appserver2", "appserver3"],
        Duration::from_secs(30),
    )
    .await
    .expect("scaled up");
    tokio::time::sleep(Duration::from_secs(2)).await;
    phases.push(Phase {
        name: "scale up (docker run x3)",
        from: up_from,
        to: Instant::now(),
    });

    // Scale down with docker stop, all three at once.
    let down_from = Instant::now();
    let mut stop_begin = BTreeMap::new();
    let mut stops = Vec::new();
    for host in ["appserver3", "appserver2", "frontserver2"] {
        stop_begin.insert(host, Instant::now());
        let d = demo.clone();
        stops.push((
            host,
            tokio::spawn(async move { d.stop(host).await.map(|()| Instant::now()) }),
        ));
    }
    let mut stop_end = BTreeMap::new();
    for (host, s) in stops {
        stop_end.insert(host, s.await.expect("stop task").expect("docker stop"));
    }
    demo.wait_for_answers(&["frontserver1"], &["appserver1"], Duration::from_secs(30))
        .await
        .expect("scaled down");
    tokio::time::sleep(Duration::from_secs(1)).await;
    phases.push(Phase {
        name: "scale down (docker stop x3)",
        from: down_from,
        to: Instant::now(),
    });

    // docker kill: a new appserver4, then killed.
    demo.start("appserver4").await.expect("start appserver4");
    demo.wait_for_answers(
        &["frontserver1"],
        &["appserver1", "appserver4"],
        Duration::from_secs(30),
    )
    .await
    .expect("appserver4 serving");
    let ip4 = demo.ip("appserver4").await.expect("ip");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kill_from = Instant::now();
    demo.kill("appserver4").await.expect("docker kill");
    let killed = Instant::now();
    let mut failed_at = None;
    let mut removed_at = None;
    let deadline = killed + Duration::from_secs(30);
    let front1 = demo.ip("frontserver1").await.expect("ip");
    while (failed_at.is_none() || removed_at.is_none()) && Instant::now() < deadline {
        if failed_at.is_none() {
            let members = demo.members("frontserver1").await.expect("members");
            if members
                .iter()
                .any(|(n, s, _)| n == "appserver4" && s == "failed")
            {
                failed_at = Some(Instant::now());
            }
        }
        if removed_at.is_none() {
            // Where the frontservers learn appservers: the name appserver.gossip, answered
            // by their own agent (agent variant, asked with dig from here), or the
            // dnsserver's hosts files they resolve through (Serf scripts).
            let gone = match demo.variant {
                Variant::Agent => {
                    let out = std::process::Command::new("dig")
                        .args(["+short", "+time=1", "+tries=1", "-p", "8600"])
                        .arg(format!("@{front1}"))
                        .arg("appserver.gossip")
                        .output()
                        .expect("dig (bind9-dnsutils, which test.sh installs)");
                    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
                    out.status.success()
                        && answer.lines().any(|l| !l.is_empty())
                        && !answer.lines().any(|l| l.trim() == ip4.to_string())
                }
                Variant::SerfScripts => {
                    let (_, conf) = demo
                        .exec("dnsserver", &["sh", "-c", "cat /etc/dnsmasq-docker/*"])
                        .await
                        .expect("cat");
                    !conf.contains(&format!("{ip4} "))
                }
            };
            if gone {
                removed_at = Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    phases.push(Phase {
        name: "docker kill appserver4",
        from: kill_from,
        to: Instant::now(),
    });
    let samples = load.finish().await;
    let _ = demo.remove("appserver4").await;

    // The proxy's redis list (hipache's contract) names frontserver1 alone.
    let (_, list) = demo
        .exec(
            "proxyserver",
            &["redis-cli", "lrange", "frontend:localhost", "0", "-1"],
        )
        .await
        .expect("redis-cli");
    let ip1 = demo.ip("frontserver1").await.expect("ip");
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        vec!["frontserver".to_string(), format!("http://{ip1}:8080")],
        "hipache list"
    );
    match demo.variant {
        // The dnsserver's agent answers the cluster's names: glibc's resolver in the proxy
        // container (started with --dns dnsserver --dns-search gossip) finds the frontserver
        // by its role, bare and under the zone, and by its node name.
        Variant::Agent => {
            let want = ip1.to_string();
            for name in [
                "frontserver",
                "frontserver.gossip",
                "frontserver1.node.gossip",
            ] {
                let (code, out) = demo
                    .exec("proxyserver", &["getent", "ahostsv4", name])
                    .await
                    .expect("getent");
                let addrs: std::collections::BTreeSet<&str> = out
                    .lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .collect();
                assert_eq!(
                    (code, addrs.into_iter().collect::<Vec<_>>()),
                    (0, vec![want.as_str()]),
                    "getent ahostsv4 {name}: {out}"
                );
            }
        }
        // The dnsserver's dnsmasq answers the members' names from its hosts files.
        Variant::SerfScripts => {
            let (code, hosts) = demo
                .exec("dnsserver", &["sh", "-c", "cat /etc/dnsmasq-docker/*"])
                .await
                .expect("hosts");
            assert_eq!(code, 0);
            assert!(hosts.contains(&format!("{ip1} frontserver1")), "{hosts}");
        }
    }

    analyse(
        &samples,
        &phases,
        up_time,
        &started,
        &ready,
        &stop_begin,
        &stop_end,
        killed,
        failed_at,
        removed_at,
    )
}

#[allow(clippy::too_many_arguments)]
fn analyse(
    samples: &[Sample],
    phases: &[Phase],
    up_time: Duration,
    started: &BTreeMap<&str, Instant>,
    ready: &BTreeMap<&str, Instant>,
    stop_begin: &BTreeMap<&str, Instant>,
    stop_end: &BTreeMap<&str, Instant>,
    killed: Instant,
    failed_at: Option<Instant>,
    removed_at: Option<Instant>,
) -> String {
    let mut r = String::new();
    let mut failures = Vec::new();
    let first = samples.first().map(|s| s.start).unwrap_or(killed);
    let last = samples.last().map(|s| s.end).unwrap_or(killed);
    let _ = writeln!(
        r,
        "{} requests in {:.1} s ({:.0}/s) through the proxy, a new connection each; \
         four containers serving {} after the first docker run.\n",
        samples.len(),
        (last - first).as_secs_f64(),
        samples.len() as f64 / (last - first).as_secs_f64().max(0.001),
        ms(up_time)
    );
    let _ = writeln!(r, "| phase | requests | failed | p50 | p99 | max |");
    let _ = writeln!(r, "|---|---|---|---|---|---|");
    for p in phases {
        let mut lat: Vec<Duration> = samples
            .iter()
            .filter(|s| s.start >= p.from && s.start < p.to)
            .map(|s| s.end - s.start)
            .collect();
        lat.sort();
        let failed: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.start >= p.from && s.start < p.to && !s.ok())
            .collect();
        let pct = |q: f64| {
            lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
                .map(|d| ms(*d))
                .unwrap_or_default()
        };
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} | {} | {} |",
            p.name,
            lat.len(),
            failed.len(),
            pct(0.5),
            pct(0.99),
            lat.last().map(|d| ms(*d)).unwrap_or_default()
        );
        for f in failed.iter().take(5) {
            failures.push(format!("{}: {:?}", p.name, f.error));
        }
    }
    let all_failed = samples.iter().filter(|s| !s.ok()).count();

    let _ = writeln!(
        r,
        "\n| new server | ready after docker run | first proxied answer after ready |"
    );
    let _ = writeln!(r, "|---|---|---|");
    let mut late = Vec::new();
    for (host, at) in ready {
        let first = samples
            .iter()
            .filter(|s| s.ok() && s.start >= *at)
            .find(|s| {
                s.answer
                    .as_ref()
                    .is_some_and(|(f, a)| f == host || a == host)
            })
            .map(|s| s.end);
        let after = first
            .map(|f| since(f, *at))
            .unwrap_or_else(|| "never".into());
        let _ = writeln!(r, "| {host} | {} | {after} |", since(*at, started[host]));
        if first.is_none_or(|f| f - *at > Duration::from_secs(1)) {
            late.push(format!("{host}: first answer {after} after ready"));
        }
    }

    let _ = writeln!(
        r,
        "\n| stopped server | docker stop took | last request it answered started | requests it answered after stop began |"
    );
    let _ = writeln!(r, "|---|---|---|---|");
    let mut lingering = Vec::new();
    for (host, begin) in stop_begin {
        let answered: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                s.answer
                    .as_ref()
                    .is_some_and(|(f, a)| f == host || a == host)
            })
            .collect();
        let after: Vec<&&Sample> = answered.iter().filter(|s| s.start >= *begin).collect();
        let last_start = answered.iter().map(|s| s.start).max();
        let _ = writeln!(
            r,
            "| {host} | {} | {} after stop began | {} |",
            since(stop_end[host], *begin),
            last_start.map(|t| since(t, *begin)).unwrap_or("-".into()),
            after.len()
        );
        if last_start.is_some_and(|t| t > *begin + Duration::from_secs(1)) {
            lingering.push(format!(
                "{host} answered a request started more than 1 s after its stop began"
            ));
        }
        if answered.iter().any(|s| s.start > stop_end[host]) {
            lingering.push(format!("{host} answered after it was gone"));
        }
    }

    let kill_phase = phases.last().expect("phases");
    let slow_kill = samples
        .iter()
        .filter(|s| s.start >= kill_phase.from && s.start < kill_phase.to)
        .filter(|s| s.end - s.start > Duration::from_millis(400))
        .count();
    let last_tried = samples
        .iter()
        .filter(|s| s.start >= killed && s.end - s.start > Duration::from_millis(400))
        .map(|s| s.start)
        .max();
    let _ = writeln!(
        r,
        "\ndocker kill appserver4: failed on frontserver1 after {}; gone from where frontserver1 learns appservers \
         (its agent's answer for appserver.gossip; the dnsserver's hosts files for the Serf scripts) after {}; \
         {} requests were slowed by a connect timeout to it (nginx then asked appserver1), the last \
         starting {} after the kill; failed requests in that phase: see the table.",
        failed_at
            .map(|t| since(t, killed))
            .unwrap_or("never".into()),
        removed_at
            .map(|t| since(t, killed))
            .unwrap_or("never".into()),
        slow_kill,
        last_tried.map(|t| since(t, killed)).unwrap_or("-".into()),
    );
    let _ = writeln!(r, "\nfailed requests in all: {all_failed}");
    print!("{r}");

    assert!(
        failures.is_empty(),
        "requests failed:\n{}",
        failures.join("\n")
    );
    assert_eq!(all_failed, 0);
    assert!(late.is_empty(), "{late:?}");
    assert!(lingering.is_empty(), "{lingering:?}");
    let removed = removed_at.expect("the killed appserver was never removed from the upstream");
    assert!(
        removed - killed < Duration::from_secs(15),
        "removal took {}",
        ms(removed - killed)
    );
    assert!(samples.len() > 1000, "too few requests: {}", samples.len());
    r
}

/// A single request through a helper, so a broken `request` shows in a unit-sized test too.
#[test]
fn request_reports_connection_errors() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Nothing listens on this loopback port.
    let s = rt.block_on(request("127.0.0.1:9".parse().expect("addr")));
    assert!(!s.ok());
    assert_eq!(s.status, 0);
    assert!(s.error.is_some());
}
