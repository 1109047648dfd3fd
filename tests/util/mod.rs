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
    /// Starts `gossip-agent` (no subcommand: `agent` is the default) with `extra` flags.
    pub fn start(
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

    /// Starts it again with the same flags (after a kill).
    pub fn restart(&self) {
        assert!(self.child.borrow().is_none(), "restart of a running agent");
        self.spawn();
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

/// `GET path` on a control API with a plain HTTP/1.1 request (cheaper than spawning the CLI
/// when polling many agents). None when the agent does not answer.
pub fn http_get_json(rpc: SocketAddr, path: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&rpc, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {rpc}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

/// The status of `name` in `rpc`'s member list, through [`http_get_json`].
pub fn status_of(rpc: SocketAddr, name: &str) -> Option<String> {
    let v = http_get_json(rpc, "/v1/members")?;
    v["members"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["status"].as_str().map(str::to_string))
}
