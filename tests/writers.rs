//! Built-in writers against the real programs, started by the tests on loopback: nginx
//! (upstream file, `nginx -t`, reload), redis-server (hipache's list), dnsmasq (addn-hosts +
//! SIGHUP), and a template whose output nginx refuses.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::{
    Agent, Backends, Proc, dns_a, free_tcp_port, free_udp_tcp_port, http_get, logs, member_addrs,
    read, seed_agent, test_net, wait_until,
};

/// An nginx on a loopback port proxying `/` to `upstream app`, included from `upstream.conf`.
struct Nginx {
    _proc: Proc,
    addr: SocketAddr,
    upstream: std::path::PathBuf,
    base: String,
}

impl Nginx {
    fn start(dir: &Path) -> Self {
        let port = free_tcp_port();
        let d = dir.display();
        let conf = dir.join("nginx.conf");
        let upstream = dir.join("upstream.conf");
        std::fs::write(&upstream, "upstream app { server 127.0.0.1:65535 down; }\n").unwrap();
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log notice;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/t_body;\n  proxy_temp_path {d}/t_proxy;\n\
                 fastcgi_temp_path {d}/t_fcgi;\n  uwsgi_temp_path {d}/t_uwsgi;\n  scgi_temp_path {d}/t_scgi;\n\
                 include {d}/upstream.conf;\n  server {{\n    listen 127.0.0.1:{port};\n\
                 location / {{ proxy_pass http://app; proxy_next_upstream off; }}\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let base = format!("nginx -p {d} -e {d}/error.log -c {}", conf.display());
        let p = Proc::start(
            "nginx",
            &[
                "-p",
                &d.to_string(),
                "-e",
                &format!("{d}/error.log"),
                "-c",
                conf.to_str().unwrap(),
            ],
            &dir.join("nginx.out"),
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_until(Duration::from_secs(10), || http_get(addr).is_some())
            .unwrap_or_else(|| panic!("nginx did not start: {}", read(&dir.join("error.log"))));
        Self {
            _proc: p,
            addr,
            upstream,
            base,
        }
    }

    fn validate(&self) -> String {
        format!("{} -t -q", self.base)
    }

    fn reload(&self) -> String {
        format!("{} -s reload", self.base)
    }

    /// Bodies of `n` requests.
    fn bodies(&self, n: usize) -> Vec<String> {
        (0..n)
            .filter_map(|_| http_get(self.addr))
            .map(|(code, body)| format!("{code} {body}"))
            .collect()
    }

    /// Waits until 20 requests in a row avoid `gone`, then checks 60 more.
    fn assert_never_reaches(&self, gone: &str, why: &str) {
        let bad = format!("200 {gone}");
        let settled = wait_until(Duration::from_secs(10), || !self.bodies(20).contains(&bad));
        assert!(
            settled.is_some(),
            "{why}: nginx still sends requests to {gone}"
        );
        let after = self.bodies(60);
        assert!(
            !after.contains(&bad),
            "{why}: {gone} still reached: {after:?}"
        );
        assert!(
            after.iter().all(|b| b.starts_with("200 ")),
            "{why}: failures {after:?}"
        );
    }
}

#[test]
fn nginx_upstream_follows_joins_leaves_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = test_net();
    let backends = Backends::start(&[
        ("b1", format!("127.77.{net}.1")),
        ("b2", format!("127.77.{net}.2")),
        ("b3", format!("127.77.{net}.3")),
    ]);
    let nginx = Nginx::start(d);
    let writer = format!(
        "nginx:path={},upstream=app,role=appserver,validate={},reload={}",
        nginx.upstream.display(),
        nginx.validate(),
        nginx.reload()
    );
    let proxy = seed_agent("proxy", d, &["--role", "proxyserver", "--writer", &writer]);
    let join = proxy.gossip.to_string();
    let apps: Vec<Agent> = (0..3u8)
        .map(|i| {
            let (g, r) = member_addrs(net, i + 1);
            let port = format!("port={}", backends.ports[usize::from(i)]);
            Agent::start(
                &format!("a{}", i + 1),
                g,
                r,
                &["--role", "appserver", "--tag", &port, "--join", &join],
                d,
            )
        })
        .collect();
    // Requests reach every backend once all three joined.
    let all: BTreeSet<String> = ["200 b1", "200 b2", "200 b3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let ok = wait_until(Duration::from_secs(15), || {
        let seen: BTreeSet<String> = nginx.bodies(30).into_iter().collect();
        all.is_subset(&seen)
    });
    assert!(
        ok.is_some(),
        "not every backend reached\n{}\n{}",
        read(&nginx.upstream),
        logs(&[&proxy])
    );

    // A leave (SIGTERM): no request reaches it afterwards.
    apps[1].signal(Signal::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(10), || !read(&nginx.upstream)
            .contains("# a2"))
        .is_some()
    );
    nginx.assert_never_reaches("b2", "after a2 left");

    // A failure (SIGKILL): no request reaches it once it is detected.
    apps[2].kill();
    assert!(
        wait_until(Duration::from_secs(30), || !read(&nginx.upstream)
            .contains("# a3"))
        .is_some(),
        "a3 never removed\n{}",
        logs(&[&proxy])
    );
    nginx.assert_never_reaches("b3", "after a3 failed");
    let upstream = read(&nginx.upstream);
    assert!(
        upstream.contains(&format!("server 127.77.{net}.1:{};", backends.ports[0])),
        "{upstream}"
    );
}

#[test]
fn a_template_nginx_refuses_keeps_the_previous_file_serving() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = test_net();
    let backends = Backends::start(&[("good", format!("127.77.{net}.1"))]);
    let nginx = Nginx::start(d);
    let tpl = d.join("upstream.j2");
    std::fs::write(
        &tpl,
        "upstream app {\n{% for m in members %}    server {{ m.ip }}:{{ m.tags.port }};\n{% endfor %}\
         {% if not members %}    server 127.0.0.1:65535 down;\n{% endif %}}\n",
    )
    .unwrap();
    let writer = format!(
        "template:path={},template={},role=appserver,validate={},reload={}",
        nginx.upstream.display(),
        tpl.display(),
        nginx.validate(),
        nginx.reload()
    );
    let proxy = seed_agent("proxy", d, &["--writer", &writer]);
    let join = proxy.gossip.to_string();
    let (g, r) = member_addrs(net, 1);
    let port = format!("port={}", backends.ports[0]);
    let _good = Agent::start(
        "good",
        g,
        r,
        &["--role", "appserver", "--tag", &port, "--join", &join],
        d,
    );
    // Settled: nginx has finished switching workers after the reloads so far.
    let settled = wait_until(Duration::from_secs(15), || {
        nginx.bodies(20).iter().all(|b| b == "200 good")
    });
    assert!(
        settled.is_some(),
        "good never served\n{}",
        read(&d.join("error.log"))
    );
    let before = read(&nginx.upstream);

    // A member whose port tag makes the rendered file invalid for nginx.
    let (g, r) = member_addrs(net, 2);
    let _bad = Agent::start(
        "bad",
        g,
        r,
        &[
            "--role",
            "appserver",
            "--tag",
            "port=bogus",
            "--join",
            &join,
        ],
        d,
    );
    let refused = wait_until(Duration::from_secs(15), || {
        proxy.log_text().contains("validation failed")
    });
    assert!(
        refused.is_some(),
        "no validation failure logged\n{}",
        logs(&[&proxy])
    );
    assert_eq!(read(&nginx.upstream), before, "the previous file is kept");
    let after = nginx.bodies(20);
    assert!(
        after.iter().all(|b| b == "200 good"),
        "nginx stopped serving: {after:?}\n{}",
        read(&d.join("error.log"))
    );
}

/// A redis-server on 127.0.0.1:`port`, nothing persisted.
fn redis_server(port: u16, dir: &Path) -> Proc {
    Proc::start(
        "redis-server",
        &[
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        &dir.join("redis.log"),
    )
}

fn redis_list(port: u16, key: &str) -> Vec<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--raw", "LRANGE", key, "0", "-1"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn redis_cli(port: u16, args: &[&str]) {
    let st = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .unwrap();
    assert!(st.status.success());
}

#[test]
fn hipache_list_follows_members_restarts_and_flushall() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_tcp_port();
    let _redis = redis_server(port, d);
    assert!(
        wait_until(Duration::from_secs(10), || {
            Command::new("redis-cli")
                .args(["-p", &port.to_string(), "PING"])
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
        })
        .is_some()
    );
    let writer = format!(
        "hipache:role=frontserver,default_port=8080,redis_url=redis://127.0.0.1:{port},reconcile_secs=1"
    );
    let proxy = seed_agent("proxy", d, &["--role", "proxyserver", "--writer", &writer]);
    let net = test_net();
    let join = proxy.gossip.to_string();
    // 127.77.NET.4 and 127.77.NET.40: the original's `grep -q` confused these two.
    let (g4, r4) = member_addrs(net, 4);
    let f4 = Agent::start(
        "front4",
        g4,
        r4,
        &["--role", "frontserver", "--join", &join],
        d,
    );
    let (g40, r40) = member_addrs(net, 40);
    let _f40 = Agent::start(
        "front40",
        g40,
        r40,
        &["--role", "frontserver", "--join", &join],
        d,
    );
    let u4 = format!("http://127.77.{net}.4:8080");
    let u40 = format!("http://127.77.{net}.40:8080");
    let key = "frontend:localhost";
    let expect = |want: &[&str]| {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        let ok = wait_until(Duration::from_secs(15), || {
            let l = redis_list(port, key);
            l.first().map(String::as_str) == Some("frontserver")
                && l.len() == want.len() + 1
                && want.iter().all(|u| l.contains(u))
        });
        assert!(
            ok.is_some(),
            "list {:?}, wanted frontserver + {want:?}\n{}",
            redis_list(port, key),
            logs(&[&proxy])
        );
    };
    expect(&[&u4, &u40]);

    // front4 leaves: exactly its entry goes, not front40's.
    f4.signal(Signal::SIGTERM);
    expect(&[&u40]);

    // The proxy agent restarts while the list was tampered with: rebuilt from the members.
    proxy.kill();
    redis_cli(port, &["RPUSH", key, "http://10.9.9.9:8080"]);
    redis_cli(port, &["RPUSH", key, &u40]);
    proxy.restart();
    expect(&[&u40]);

    // FLUSHALL: refilled without any membership change.
    redis_cli(port, &["FLUSHALL"]);
    expect(&[&u40]);
}

#[test]
fn hipache_survives_redis_being_down() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_tcp_port();
    let writer =
        format!("hipache:role=frontserver,redis_url=redis://127.0.0.1:{port},reconcile_secs=1");
    let proxy = seed_agent("proxy", d, &["--writer", &writer]);
    assert!(
        wait_until(Duration::from_secs(10), || proxy
            .log_text()
            .contains("will retry"))
        .is_some()
    );
    // Still healthy, and the list appears once redis does.
    assert_eq!(proxy.members().len(), 1);
    let _redis = redis_server(port, d);
    let ok = wait_until(Duration::from_secs(40), || {
        redis_list(port, "frontend:localhost") == ["frontserver"]
    });
    assert!(ok.is_some(), "list never written\n{}", proxy.log_text());
}

#[test]
fn dnsmasq_answers_role_names_with_live_members() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hosts = d.join("hosts");
    std::fs::write(&hosts, "").unwrap();
    let pid = d.join("dnsmasq.pid");
    // The port was free when chosen, but another test may take it (for UDP or TCP) before
    // dnsmasq binds it: a start that exits is retried on a fresh port, a bounded number of times.
    let mut started = None;
    let mut tries = Vec::new();
    for attempt in 1..=5 {
        let port = free_udp_tcp_port();
        let out = d.join(format!("dnsmasq.{attempt}.out"));
        let _ = std::fs::remove_file(&pid);
        let mut dns = Proc::start(
            "dnsmasq",
            &[
                "--keep-in-foreground",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                &format!("--addn-hosts={}", hosts.display()),
                &format!("--pid-file={}", pid.display()),
                "--user=root",
                &format!("--log-facility={}", d.join("dnsmasq.log").display()),
            ],
            &out,
        );
        let up = wait_until(Duration::from_secs(10), || pid.exists() || dns.exited());
        if up.is_some() && pid.exists() && !dns.exited() {
            started = Some((dns, port));
            break;
        }
        let state = if dns.exited() {
            "exited"
        } else {
            "no pid file in 10 s"
        };
        tries.push(format!(
            "try {attempt}, port {port}, {state}: {}",
            read(&out).trim()
        ));
    }
    let Some((_dns, port)) = started else {
        panic!("dnsmasq did not start in 5 tries:\n{}", tries.join("\n"));
    };
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let writer = format!(
        "dnsmasq:path={},reload_signal=HUP,pid_file={}",
        hosts.display(),
        pid.display()
    );
    let dnsserver = seed_agent("dns", d, &["--role", "dnsserver", "--writer", &writer]);
    let net = test_net();
    let join = dnsserver.gossip.to_string();
    let apps: Vec<Agent> = (1..=2u8)
        .map(|i| {
            let (g, r) = member_addrs(net, i);
            Agent::start(
                &format!("app{i}"),
                g,
                r,
                &["--role", "appserver", "--join", &join],
                d,
            )
        })
        .collect();
    let ip = |i: u8| -> std::net::Ipv4Addr { format!("127.77.{net}.{i}").parse().unwrap() };
    let ok = wait_until(Duration::from_secs(15), || {
        dns_a(server, "appserver") == vec![ip(1), ip(2)]
    });
    assert!(
        ok.is_some(),
        "appserver -> {:?}\n{}",
        dns_a(server, "appserver"),
        read(&hosts)
    );
    assert_eq!(dns_a(server, "app2"), vec![ip(2)]);
    apps[1].signal(Signal::SIGTERM);
    let ok = wait_until(Duration::from_secs(15), || {
        dns_a(server, "appserver") == vec![ip(1)]
    });
    assert!(
        ok.is_some(),
        "after leave: {:?}\n{}",
        dns_a(server, "appserver"),
        read(&hosts)
    );
    assert!(dns_a(server, "app2").is_empty());
}
