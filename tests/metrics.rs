//! Prometheus metrics, checked by Prometheus's own tools: `promtool check metrics` on what an
//! agent serves, and a real Prometheus server (Debian's `prometheus`, started here on
//! loopback) scraping three agents through `--metrics-addr`, asked through its HTTP API
//! whether every target is up and whether a member count follows a kill.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{Agent, Proc, free_port, free_tcp_port, test_net, wait_until};

/// `s` with every byte outside `[A-Za-z0-9_.-]` percent-encoded (a PromQL query in a URL).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `GET path` on Prometheus's API: its `data`, when it answered with status success.
fn prom(addr: SocketAddr, path: &str) -> Option<Value> {
    let v = gossip_testkit::http::get(addr, path)?.json()?;
    (v["status"] == "success").then(|| v["data"].clone())
}

/// The value of an instant query that returns one sample.
fn scalar(addr: SocketAddr, query: &str) -> Option<f64> {
    let data = prom(addr, &format!("/api/v1/query?query={}", urlencode(query)))?;
    let result = data["result"].as_array()?;
    let [sample] = result.as_slice() else {
        return None;
    };
    sample["value"][1].as_str()?.parse().ok()
}

/// The value of the sample `series` (name and labels as written) in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn agent(dir: &std::path::Path, i: u8, join: Option<&Agent>) -> (Agent, SocketAddr) {
    agent_with(dir, i, join, &[])
}

fn agent_with(
    dir: &std::path::Path,
    i: u8,
    join: Option<&Agent>,
    more: &[&str],
) -> (Agent, SocketAddr) {
    let net = test_net();
    let ip = format!("127.78.{net}.{i}");
    let gossip: SocketAddr = format!("{ip}:{}", free_port()).parse().unwrap();
    let rpc: SocketAddr = format!("{ip}:7373").parse().unwrap();
    let metrics: SocketAddr = format!("{ip}:9100").parse().unwrap();
    let m = metrics.to_string();
    let j = join.map(|a| a.gossip.to_string());
    let mut extra = vec!["--role", "web", "--metrics-addr", m.as_str()];
    if let Some(j) = &j {
        extra.extend(["--join", j.as_str()]);
    }
    extra.extend(more);
    (
        Agent::start(&format!("m{i}"), gossip, rpc, &extra, dir),
        metrics,
    )
}

/// What an agent serves passes `promtool check metrics` (Prometheus's linter: names, types,
/// units, `_total` on counters), on the control API and on the metrics listener alike; the
/// metrics listener serves nothing else.
#[test]
fn promtool_accepts_what_an_agent_serves() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    let writer = format!("dnsmasq:path={}", hosts.display());
    let (a, metrics) = agent_with(
        dir.path(),
        1,
        None,
        &["--event-handler", "member-join=true", "--writer", &writer],
    );
    let (_b, _) = agent(dir.path(), 2, Some(&a));
    assert!(
        wait_until(Duration::from_secs(10), || crate::util::sees(
            &a, "m2", "alive"
        ))
        .is_some()
    );
    assert!(a.cli(&["event", "deploy", "v2"]).status.success());
    // The handler ran for both joins and the writer wrote (counted once each is done); the
    // event was delivered once.
    let counted = wait_until(Duration::from_secs(10), || {
        gossip_testkit::http::get(metrics, "/metrics").is_some_and(|a| {
            a.body
                .contains("gossip_handler_runs_total{event=\"member-join\"} 2")
                && a.body.contains("gossip_user_events_total 1")
                && sample(&a.body, "gossip_messages_sent_total{kind=\"user_event\"}")
                    .is_some_and(|v| v >= 1.0)
                && a.body
                    .contains("gossip_writer_passes_total{writer=\"dnsmasq\",result=\"updated\"}")
        })
    });
    assert!(
        counted.is_some(),
        "{:?}",
        gossip_testkit::http::get(metrics, "/metrics")
    );
    for addr in [metrics, a.rpc] {
        let answer = gossip_testkit::http::get(addr, "/metrics").expect("an answer");
        assert_eq!(answer.status, 200, "{addr}: {}", answer.body);
        assert!(
            answer
                .body
                .contains("gossip_members{role=\"web\",status=\"alive\"} 2"),
            "{}",
            answer.body
        );
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian's prometheus, which ./test.sh installs)");
        check
            .stdin
            .take()
            .unwrap()
            .write_all(answer.body.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            answer.body
        );
    }
    let other = gossip_testkit::http::get(metrics, "/v1/members").expect("an answer");
    assert_eq!(
        other.status, 404,
        "the metrics listener serves /metrics only"
    );
}

/// A real Prometheus scrapes three agents every second: every target is up, and after one
/// agent is killed, the others' `gossip_members{status="failed"}` says so.
#[test]
fn prometheus_scrapes_three_agents_and_sees_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ma) = agent(dir.path(), 11, None);
    let (b, mb) = agent(dir.path(), 12, Some(&a));
    let (c, mc) = agent(dir.path(), 13, Some(&a));
    assert!(
        wait_until(Duration::from_secs(10), || ["m12", "m13"].iter().all(
            |n| crate::util::sees(&a, n, "alive") && crate::util::sees(&b, n, "alive")
        ))
        .is_some()
    );
    let port = free_tcp_port();
    let web: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: gossip\n    static_configs:\n      - targets: ['{ma}', '{mb}', '{mc}']\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("tsdb");
    let mut server = Proc::start(
        "prometheus",
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", data.display()),
            &format!("--web.listen-address={web}"),
        ],
        &dir.path().join("prometheus.log"),
    );
    let log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();

    // Every target up, through Prometheus's own view of them.
    let up = wait_until(Duration::from_secs(30), || {
        prom(web, "/api/v1/targets").is_some_and(|d| {
            let t = d["activeTargets"].as_array().cloned().unwrap_or_default();
            t.len() == 3 && t.iter().all(|t| t["health"] == "up")
        })
    });
    assert!(
        up.is_some(),
        "targets not all up: {:?}\n{}",
        prom(web, "/api/v1/targets"),
        log()
    );
    let alive_on_a = format!("sum(gossip_members{{instance=\"{ma}\",status=\"alive\"}})");
    assert!(
        wait_until(Duration::from_secs(15), || scalar(web, &alive_on_a)
            == Some(3.0))
        .is_some(),
        "{:?}",
        scalar(web, &alive_on_a)
    );

    // A kill: the survivors' failed count goes to 1, as Prometheus records it.
    c.kill();
    let failed = format!("sum(gossip_members{{instance=~\"{ma}|{mb}\",status=\"failed\"}})");
    assert!(
        wait_until(Duration::from_secs(30), || scalar(web, &failed)
            == Some(2.0))
        .is_some(),
        "failed seen by a and b: {:?}\n{}",
        scalar(web, &failed),
        log()
    );
    assert_eq!(scalar(web, &alive_on_a), Some(2.0));
    // Each survivor reported the dead one suspect first, then confirmed it.
    let confirmed = format!(
        "sum(gossip_suspicions_ended_total{{instance=~\"{ma}|{mb}\",outcome=\"confirmed\"}})"
    );
    assert!(
        wait_until(Duration::from_secs(10), || scalar(web, &confirmed)
            == Some(2.0))
        .is_some(),
        "{:?}",
        scalar(web, &confirmed)
    );
    server.stop_with(nix::sys::signal::Signal::SIGTERM);
}

/// The metrics listener, open beyond loopback without a token, cannot be held by idle
/// connections: past 16 at once a new one is closed at once, and once they go, scrapes work.
#[test]
fn the_metrics_listener_bounds_its_connections() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().unwrap();
    let (_a, metrics) = agent(dir.path(), 21, None);
    let idle: Vec<std::net::TcpStream> = (0..16)
        .map(|_| std::net::TcpStream::connect(metrics).unwrap())
        .collect();
    // The listener takes the sixteen in order; poll (bounded) until a 17th is closed.
    let closed = wait_until(Duration::from_secs(5), || {
        let mut extra = std::net::TcpStream::connect(metrics).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let _ = extra.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
        let mut buf = [0u8; 16];
        // Closed: end of stream or a reset; not served, and not merely waiting (a timeout).
        match extra.read(&mut buf) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    });
    assert!(closed.is_some(), "a 17th connection was served");
    drop(idle);
    let served = wait_until(Duration::from_secs(5), || {
        gossip_testkit::http::get(metrics, "/metrics").is_some_and(|a| a.status == 200)
    });
    assert!(
        served.is_some(),
        "no scrape once the idle connections were gone"
    );
}
