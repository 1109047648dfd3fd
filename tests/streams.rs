//! Streams for our own users: `gossip-agent stream` and `monitor`, `GET /v1/stream` (JSON
//! lines and server-sent events) and `GET /v1/monitor`, and what happens to a client that
//! stops reading a Serf RPC stream (it loses records, is told how many, and the agent does
//! not slow down).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::util::{Agent, BIN, free_port, test_net, wait_until};

fn agent(dir: &std::path::Path, name: &str, host: u8, join: Option<&Agent>) -> Agent {
    let net = test_net();
    let ip = format!("127.77.{net}.{host}");
    let gossip: SocketAddr = format!("{ip}:{}", free_port()).parse().unwrap();
    let rpc: SocketAddr = format!("{ip}:7373").parse().unwrap();
    let join_arg = join.map(|j| j.gossip.to_string());
    let mut extra = vec!["--tag", "role=app"];
    if let Some(j) = &join_arg {
        extra.extend(["--join", j.as_str()]);
    }
    Agent::start(name, gossip, rpc, &extra, dir)
}

/// A child whose stdout lines arrive on a channel; killed on drop.
struct Lines {
    child: Child,
    rx: mpsc::Receiver<String>,
}

impl Lines {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self { child, rx }
    }

    /// Waits (bounded) for a line satisfying `f`, calling `poke` between waits.
    fn wait_for(&self, mut poke: impl FnMut(), f: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            poke();
            while let Ok(l) = self.rx.recv_timeout(Duration::from_millis(200)) {
                if f(&l) {
                    return Some(l);
                }
            }
        }
        None
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_stream_and_monitor_commands_show_what_the_agent_sees() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path(), "a", 1, None);
    let rpc = a.rpc.to_string();
    let all = Lines::spawn(&["stream", "--format", "json", "--rpc-addr", &rpc]);
    let deploys = Lines::spawn(&["stream", "--type", "user:deploy", "--rpc-addr", &rpc]);
    let mon = Lines::spawn(&["monitor", "--log-level", "debug", "--rpc-addr", &rpc]);

    // A member joins: the JSON stream shows it (poked until the stream is up).
    let mut b = None;
    let join = all.wait_for(
        || {
            if b.is_none() {
                // Give the stream a moment to subscribe: it is up once it shows a user event.
                a.cli(&["event", "warmup"]);
            }
        },
        |l| l.contains(r#""event":"user""#) && l.contains("warmup"),
    );
    assert!(
        join.is_some(),
        "the JSON stream never showed the warm-up event"
    );
    b = Some(agent(dir.path(), "b", 2, Some(&a)));
    let line = all
        .wait_for(
            || {},
            |l| l.contains("member-join") && l.contains(r#""name":"b""#),
        )
        .expect("member-join of b in the JSON stream");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["members"][0]["tags"]["role"], "app", "{line}");

    // The filtered text stream: only user events named deploy.
    let got = deploys
        .wait_for(
            || drop(a.cli(&["event", "deploy", "v7"])),
            |l| l.starts_with("user "),
        )
        .expect("a deploy event");
    assert!(
        got.starts_with("user deploy ltime=") && got.ends_with(" v7"),
        "{got}"
    );
    a.cli(&["event", "other"]);
    a.cli(&["event", "deploy", "v8"]);
    let next = deploys.wait_for(|| {}, |_| true).expect("the next deploy");
    assert!(next.ends_with(" v8"), "other events filtered out: {next}");

    // The monitor: Serf's layout, debug lines included.
    let layout =
        regex_lite::Regex::new(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(TRACE|DEBUG|INFO|WARN|ERR)\] ")
            .unwrap();
    let l = mon
        .wait_for(
            || drop(a.cli(&["event", "seen-by-monitor"])),
            |l| l.contains("seen-by-monitor"),
        )
        .expect("the monitor shows the event");
    assert!(layout.is_match(&l), "{l}");
    // (A Serf RPC client's connection is logged at debug.)
    let dbg = mon.wait_for(|| drop(Rpc::connect(a.rpc)), |l| l.contains("[DEBUG]"));
    assert!(dbg.is_some(), "no debug line in a debug monitor");

    // Bad input: a one-line error, exit 2.
    for args in [
        &["monitor", "--log-level", "loud"][..],
        &["stream", "--type", "member-jion"][..],
    ] {
        let out = a.cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().count(),
            1,
            "{out:?}"
        );
    }
    drop(b);
}

/// `GET /v1/stream` as server-sent events, chosen by the Accept header.
#[test]
fn the_http_stream_speaks_server_sent_events() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path(), "a", 1, None);
    let mut s = TcpStream::connect(a.rpc).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        s,
        "GET /v1/stream?type=user HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut got = String::new();
    let ok = wait_until(Duration::from_secs(10), || {
        a.cli(&["event", "sse-check", "hello"]);
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        got.contains("event: user\r\n") || got.contains("event: user\n")
    });
    assert!(ok.is_some(), "{got}");
    assert!(got.contains("content-type: text/event-stream"), "{got}");
    assert!(
        got.contains(r#"data: {"event":"user","name":"sse-check""#),
        "{got}"
    );
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Header<'a> {
    command: &'a str,
    seq: u64,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct RespHeader {
    seq: u64,
    error: String,
}

/// A client of Serf's RPC, for what Serf's own clients cannot be made to do (stop reading).
struct Rpc {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Rpc {
    fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = Self { s, buf: Vec::new() };
        r.send(0, "handshake", Some(&serde_json::json!({"Version": 1})));
        let h: RespHeader = r.read();
        assert_eq!((h.seq, h.error.as_str()), (0, ""));
        r
    }

    fn send(&mut self, seq: u64, command: &str, body: Option<&serde_json::Value>) {
        let mut out = rmp_serde::to_vec_named(&Header { command, seq }).unwrap();
        if let Some(b) = body {
            out.extend(rmp_serde::to_vec_named(b).unwrap());
        }
        self.s.write_all(&out).unwrap();
    }

    fn read<T: for<'de> Deserialize<'de>>(&mut self) -> T {
        loop {
            let mut cur = std::io::Cursor::new(&self.buf[..]);
            if let Ok(v) = rmp_serde::from_read::<_, T>(&mut cur) {
                let n = cur.position() as usize;
                self.buf.drain(..n);
                return v;
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).expect("read from the agent");
            assert!(n > 0, "the agent closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Rec {
    event: String,
    #[serde(default)]
    count: u64,
}

/// Issue 23: a stream whose client stops reading loses records (and is told how many when
/// it reads again); meanwhile the agent answers as fast as ever.
#[test]
fn a_stream_that_is_not_read_loses_records_and_never_slows_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path(), "a", 1, None);
    let mut slow = Rpc::connect(a.rpc);
    slow.send(1, "stream", Some(&serde_json::json!({"Type": "user"})));
    let h: RespHeader = slow.read();
    assert_eq!((h.seq, h.error.as_str()), (1, ""));

    // 30,000 events of 400 bytes (12 MB): more than the stream's queue and the sockets hold
    // (loopback buffers grow to megabytes).
    let sent = 30_000u64;
    let mut fast = Rpc::connect(a.rpc);
    let payload = serde_bytes(&[b'x'; 400]);
    let started = Instant::now();
    for i in 0..sent {
        fast.send(
            10 + i,
            "event",
            Some(&serde_json::json!({"Name": "flood", "Payload": payload, "Coalesce": false})),
        );
        let h: RespHeader = fast.read();
        assert_eq!(h.error, "", "event {i}");
    }
    let took = started.elapsed();
    // Members through the HTTP API still answer at once (generous bound).
    let t = Instant::now();
    assert!(a.cli(&["members"]).status.success());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "members took {:?}",
        t.elapsed()
    );
    assert!(
        took < Duration::from_secs(120),
        "30,000 events took {took:?}"
    );

    // Now read: records, a `dropped` record counting the rest, every event accounted for.
    let (mut records, mut dropped) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while records + dropped < sent && Instant::now() < deadline {
        let h: RespHeader = slow.read();
        assert_eq!(h.seq, 1);
        let r: Rec = slow.read();
        match r.event.as_str() {
            "user" => records += 1,
            "dropped" => dropped += r.count,
            other => panic!("unexpected record {other}"),
        }
    }
    assert!(
        dropped > 0,
        "nothing dropped ({records} records): the test did not fill the queue"
    );
    assert_eq!(
        records + dropped,
        sent,
        "{records} records, {dropped} dropped"
    );
}

/// Bytes for a msgpack body built through serde_json: an array of numbers, which the agent
/// accepts for `[]byte` as it accepts bin and str.
fn serde_bytes(b: &[u8]) -> serde_json::Value {
    serde_json::Value::Array(b.iter().map(|x| (*x).into()).collect())
}
