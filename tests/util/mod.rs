//! Helpers shared by the integration tests: spawning agents on their own loopback addresses,
//! calling the CLI, and polling with a deadline (never sleeping to synchronise).

#![allow(dead_code)]

use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_gossip-agent");

static NEXT_NET: AtomicU8 = AtomicU8::new(1);

/// A /24 of loopback addresses for one test: 127.77.N.0/24, N unique per test.
pub fn test_net() -> u8 {
    NEXT_NET.fetch_add(1, Ordering::SeqCst)
}

/// A UDP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let p = s.local_addr().unwrap().port();
    drop(s);
    p
}

/// A running agent; killed (SIGKILL) and reaped when dropped.
pub struct Agent {
    pub name: String,
    pub gossip: SocketAddr,
    pub rpc: SocketAddr,
    pub child: std::cell::RefCell<Option<Child>>,
    pub args: Vec<String>,
    pub log: std::path::PathBuf,
}

impl Agent {
    /// Starts `gossip-agent` (no subcommand: `agent` is the default) with `extra` flags, and
    /// waits for its control API.
    pub fn start(
        name: &str,
        gossip: SocketAddr,
        rpc: SocketAddr,
        extra: &[&str],
        logdir: &Path,
    ) -> Self {
        let a = Self::launch(name, gossip, rpc, extra, logdir);
        a.wait_ready();
        a
    }

    /// Like [`Agent::start`] without waiting: for bursts of starts.
    pub fn launch(
        name: &str,
        gossip: SocketAddr,
        rpc: SocketAddr,
        extra: &[&str],
        logdir: &Path,
    ) -> Self {
        let mut args: Vec<String> = vec![
            "--node".into(),
            name.into(),
            "--bind".into(),
            gossip.to_string(),
            "--rpc-addr".into(),
            rpc.to_string(),
            "--profile".into(),
            "local".into(),
            "--log-level".into(),
            "debug".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = logdir.join(format!("{name}.log"));
        let a = Self {
            name: name.into(),
            gossip,
            rpc,
            child: RefCell::new(None),
            args,
            log,
        };
        a.spawn();
        a
    }

    /// Waits until the control API accepts connections.
    pub fn wait_ready(&self) {
        let rpc = self.rpc;
        wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(rpc).is_ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "{}: control API never came up; log:\n{}",
                self.name,
                self.log_text()
            )
        });
    }

    fn spawn(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open agent log");
        let child = Command::new(BIN)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn gossip-agent");
        *self.child.borrow_mut() = Some(child);
    }

    /// Starts it again with the same flags (after a kill).
    pub fn restart(&self) {
        assert!(self.child.borrow().is_none(), "restart of a running agent");
        self.spawn();
        self.wait_ready();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.borrow().as_ref().expect("running").id()
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.child.borrow().as_ref().expect("running").id() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).expect("signal");
    }

    /// SIGKILL and reap.
    pub fn kill(&self) {
        if let Some(mut c) = self.child.borrow_mut().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&self, limit: Duration) -> Option<i32> {
        let mut c = self.child.borrow_mut().take().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = c.try_wait().expect("try_wait") {
                return st.code();
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a CLI subcommand against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        full.push("--rpc-addr".into());
        full.push(self.rpc.to_string());
        Command::new(BIN).args(&full).output().expect("run CLI")
    }

    /// `members --format json`, parsed; empty when the agent does not answer.
    pub fn members(&self) -> Vec<Value> {
        let out = self.cli(&["members", "--format", "json"]);
        if !out.status.success() {
            return Vec::new();
        }
        let v: Value = serde_json::from_slice(&out.stdout).expect("members JSON");
        v["members"].as_array().cloned().unwrap_or_default()
    }

    /// The member `name` as this agent sees it.
    pub fn member(&self, name: &str) -> Option<Value> {
        self.members().into_iter().find(|m| m["name"] == name)
    }

    /// `info --format json`, parsed.
    pub fn info(&self) -> Value {
        let out = self.cli(&["info", "--format", "json"]);
        assert!(
            out.status.success(),
            "info failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("info JSON")
    }

    /// The agent's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A new key from `gossip-agent keygen` (base64 of 32 bytes).
pub fn keygen() -> String {
    let out = Command::new(BIN).arg("keygen").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let k = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(k.len(), 44, "{k}");
    k
}

/// Polls `cond` every 50 ms until it holds (returns the time it took) or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when `agent` lists `name` with `status`.
pub fn sees(agent: &Agent, name: &str, status: &str) -> bool {
    agent.member(name).is_some_and(|m| m["status"] == status)
}

/// Dumps every agent's log, for a failing assertion.
pub fn logs(agents: &[&Agent]) -> String {
    agents
        .iter()
        .map(|a| format!("---- {} ----\n{}", a.name, a.log_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `GET path` on a control API, as JSON (cheaper than spawning the CLI when polling many
/// agents). None when the agent does not answer.
pub fn http_get_json(rpc: SocketAddr, path: &str) -> Option<Value> {
    gossip_testkit::http::get(rpc, path)?.json()
}

/// The status of `name` in `rpc`'s member list.
pub fn status_of(rpc: SocketAddr, name: &str) -> Option<String> {
    gossip_testkit::members::listed(rpc)?
        .remove(name)
        .map(|m| m.status)
}

/// A helper process (nginx, redis-server, dnsmasq) killed and reaped when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    /// Starts `cmd args`, its output appended to `log`.
    pub fn start(cmd: &str, args: &[&str], log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("create log");
        let child = Command::new(cmd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {cmd}: {e} (is it installed? ./test.sh installs it)")
            });
        Self {
            name: cmd.to_string(),
            child,
        }
    }
}

impl Proc {
    /// Whether it has exited already (reaping it if so).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it with `sig` first (nginx's master must be asked to stop, or a SIGKILL orphans
    /// its workers), then SIGKILL after a bounded wait.
    pub fn stop_with(&mut self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, sig);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM lets nginx (fast shutdown), redis-server and dnsmasq stop their children.
        self.stop_with(nix::sys::signal::Signal::SIGTERM);
    }
}

/// A port free on 127.0.0.1 for both UDP and TCP right now (a DNS server binds both).
pub fn free_udp_tcp_port() -> u16 {
    for _ in 0..100 {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let p = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no port free for both UDP and TCP in 100 tries");
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Tiny HTTP backends, one thread each, answering every request with their name. They stop
/// (and their threads end) when dropped.
pub struct Backends {
    pub ports: Vec<u16>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Backends {
    /// One backend per `(name, ip)`, each on an ephemeral port of its IP.
    pub fn start(names: &[(&str, String)]) -> Self {
        use std::io::{Read, Write};
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut ports = Vec::new();
        let mut threads = Vec::new();
        for (name, ip) in names {
            let l = std::net::TcpListener::bind((ip.as_str(), 0)).unwrap();
            l.set_nonblocking(true).unwrap();
            ports.push(l.local_addr().unwrap().port());
            let stop = stop.clone();
            let name = name.to_string();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                            let mut buf = [0u8; 2048];
                            let _ = s.read(&mut buf);
                            let body = format!("{name}\n");
                            let _ = write!(
                                s,
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            );
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }));
        }
        Self {
            ports,
            stop,
            threads,
        }
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `GET /` on `addr`: (status code, trimmed body). None when nothing answers.
pub fn http_get(addr: SocketAddr) -> Option<(u16, String)> {
    gossip_testkit::http::get(addr, "/").map(|a| (a.status, a.body.trim().to_string()))
}

/// Sends the user event `name` through the control API at `rpc` (no CLI process).
pub fn send_event(rpc: SocketAddr, name: &str, payload: &str, coalesce: bool) -> bool {
    let body = serde_json::json!({"name": name, "payload": payload, "coalesce": coalesce});
    gossip_testkit::http::post(rpc, "/v1/event", &body.to_string()).is_some_and(|a| a.ok())
}

/// The A records of `name` from the DNS server at `server` (one UDP query, no recursion).
pub fn dns_a(server: SocketAddr, name: &str) -> Vec<std::net::Ipv4Addr> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let id: u16 = 0x4242;
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    if sock.send_to(&q, server).is_err() {
        return Vec::new();
    }
    let mut buf = [0u8; 1500];
    let Ok((n, _)) = sock.recv_from(&mut buf) else {
        return Vec::new();
    };
    let r = &buf[..n];
    if n < 12 || r[0..2] != id.to_be_bytes() {
        return Vec::new();
    }
    let answers = u16::from_be_bytes([r[6], r[7]]);
    // Skip the question: the name as we sent it, then type and class.
    let mut i = q.len();
    let mut out = Vec::new();
    for _ in 0..answers {
        if i + 12 > n {
            break;
        }
        // Name: a pointer (2 bytes) or labels.
        if r[i] & 0xc0 == 0xc0 {
            i += 2;
        } else {
            while i < n && r[i] != 0 {
                i += 1 + r[i] as usize;
            }
            i += 1;
        }
        let typ = u16::from_be_bytes([r[i], r[i + 1]]);
        let len = u16::from_be_bytes([r[i + 8], r[i + 9]]) as usize;
        i += 10;
        if typ == 1 && len == 4 && i + 4 <= n {
            out.push(std::net::Ipv4Addr::new(r[i], r[i + 1], r[i + 2], r[i + 3]));
        }
        i += len;
    }
    out.sort();
    out
}

/// Agent `i` of test network `net`: 127.77.NET.I with Serf's default ports.
pub fn member_addrs(net: u8, i: u8) -> (SocketAddr, SocketAddr) {
    (
        format!("127.77.{net}.{i}:7946").parse().unwrap(),
        format!("127.77.{net}.{i}:7373").parse().unwrap(),
    )
}

/// A seed agent on 127.0.0.1 with ephemeral ports.
pub fn seed_agent(name: &str, dir: &Path, extra: &[&str]) -> Agent {
    let gossip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let rpc: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    Agent::start(name, gossip, rpc, extra, dir)
}

/// Writes an executable shell script.
pub fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The file's text, empty when missing.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
