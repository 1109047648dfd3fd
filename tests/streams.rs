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

/// `GET path` on `rpc` with a read limit: (status, the `X-Gossip-Index` header, body, when
/// the answer had arrived).
fn get_indexed(
    rpc: SocketAddr,
    path: &str,
    limit: Duration,
) -> (u16, Option<u64>, String, Instant) {
    let mut s = TcpStream::connect(rpc).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(&gossip_testkit::http::encode("GET", path, ""))
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let at = Instant::now();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let index = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-gossip-index")
            .then(|| v.trim().parse().ok())
            .flatten()
    });
    (status, index, body.to_string(), at)
}

/// Consul's blocking query on `/v1/members`: with the current index it answers at the next
/// change of the member table, within 100 ms of it and not before; when the wait ends first,
/// unchanged; with an older index, at once. The index is in the header and the body.
#[test]
fn a_blocking_members_query_answers_at_the_change_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path(), "a", 1, None);
    let b = agent(dir.path(), "b", 2, Some(&a));
    assert!(
        wait_until(Duration::from_secs(10), || crate::util::sees(
            &a, "b", "alive"
        ))
        .is_some()
    );
    let (status, index, body, _) = get_indexed(a.rpc, "/v1/members", Duration::from_secs(5));
    assert_eq!(status, 200, "{body}");
    let index = index.expect("X-Gossip-Index");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["index"], index, "{body}");

    // The wait ends first: the same table, the same index, not before the wait.
    let asked = Instant::now();
    let (status, same, _, at) = get_indexed(
        a.rpc,
        &format!("/v1/members?index={index}&wait=400ms"),
        Duration::from_secs(5),
    );
    assert_eq!((status, same), (200, Some(index)));
    assert!(at - asked >= Duration::from_millis(400), "{:?}", at - asked);

    // An older index answers at once; a wait that is no duration is refused, naming it.
    let asked = Instant::now();
    let (_, now, _, at) = get_indexed(
        a.rpc,
        &format!("/v1/members?index={}&wait=30s", index - 1),
        Duration::from_secs(5),
    );
    assert_eq!(now, Some(index));
    assert!(at - asked < Duration::from_secs(1));
    let (status, _, body, _) = get_indexed(
        a.rpc,
        &format!("/v1/members?index={index}&wait=soon"),
        Duration::from_secs(5),
    );
    assert_eq!(status, 400);
    assert!(body.contains("wait"), "{body}");

    // A change: c joins. A poller sees it in the plain list; the blocking query must have
    // answered within 100 ms of that, and not before c started.
    let rpc = a.rpc;
    let blocked = std::thread::spawn(move || {
        get_indexed(
            rpc,
            &format!("/v1/members?index={index}&wait=30s"),
            Duration::from_secs(35),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!blocked.is_finished(), "answered before any change");
    let started = Instant::now();
    let _c = agent(dir.path(), "c", 3, Some(&b));
    let mut seen_at = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen_at.is_none() && Instant::now() < deadline {
        if crate::util::status_of(a.rpc, "c").is_some() {
            seen_at = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let seen_at = seen_at.expect("a never listed c");
    let (status, next, body, answered) = blocked.join().unwrap();
    assert_eq!(status, 200);
    assert!(next.is_some_and(|n| n > index), "{next:?} after {index}");
    assert!(answered >= started, "answered before c started");
    assert!(
        answered <= seen_at + Duration::from_millis(100),
        "answered {:?} after the poller saw c",
        answered - seen_at
    );
    assert!(body.contains("\"c\""), "{body}");
}

/// `members --watch` prints the table, then again when a member joins (a blocking query
/// each time), until it is stopped.
#[test]
fn members_watch_prints_the_table_again_on_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path(), "a", 4, None);
    let rpc = a.rpc.to_string();
    let watch = Lines::spawn(&["members", "--watch", "--rpc-addr", &rpc]);
    assert!(
        watch
            .wait_for(|| {}, |l| l.starts_with("a ") || l.starts_with("a\t"))
            .is_some(),
        "no first table"
    );
    let _b = agent(dir.path(), "b", 5, Some(&a));
    let line = watch.wait_for(|| {}, |l| l.starts_with('b') && l.contains("alive"));
    assert!(line.is_some(), "b never shown");
}
