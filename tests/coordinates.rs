//! Network coordinates on real agents (issue 27): four agents whose gossip passes through a
//! UDP relay that delays each datagram by half the round trip set for its pair, so round
//! trips differ per pair as on a real network (this machine's kernel has no `netem`). The
//! observer's estimates (`rtt`, Serf's `rtt`), its nginx writer with `order = "nearest"`,
//! and its DNS server asked from each member's address must rank the nearest member first.

use std::collections::{BTreeMap, BinaryHeap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::{Agent, test_net, wait_until};

/// Where each agent sits on a line, in ms of round trip: a pair's round trip is the
/// distance between them. The nearest to `a` comes last by name, so an order by name
/// cannot pass for one by distance.
const PLACES: [(&str, &str, f64); 4] = [
    ("a", "proxy", 0.0),
    ("b", "app", 44.0),
    ("c", "app", 20.0),
    ("d", "app", 4.0),
];

/// A datagram waiting for its time.
struct Due {
    at: Instant,
    from: usize,
    to: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.at.cmp(&self.at) // earliest first in a max-heap
    }
}

/// The relay: one socket at each agent's advertised address. A datagram from agent i's
/// real address to agent j's advertised one leaves from agent i's advertised address to
/// agent j's real one, `rtt(i, j) / 2` later; so every agent sees every other at its
/// advertised address, and every round trip crosses the relay twice.
struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    queue: Arc<(Mutex<BinaryHeap<Due>>, Condvar)>,
}

impl Relay {
    fn start(
        advertised: &[SocketAddr],
        real: &[SocketAddr],
        rtt_ms: impl Fn(usize, usize) -> f64,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let queue: Arc<(Mutex<BinaryHeap<Due>>, Condvar)> = Arc::default();
        let sockets: Vec<Arc<UdpSocket>> = advertised
            .iter()
            .map(|a| {
                let s = UdpSocket::bind(a).expect("bind the relay's socket");
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                Arc::new(s)
            })
            .collect();
        let n = advertised.len();
        let delays: Vec<Vec<Duration>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| Duration::from_secs_f64(rtt_ms(i, j) / 2000.0))
                    .collect()
            })
            .collect();
        let mut threads = Vec::new();
        for (j, sock) in sockets.iter().enumerate() {
            let (sock, stop, queue, real, delays) = (
                sock.clone(),
                stop.clone(),
                queue.clone(),
                real.to_vec(),
                delays.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, src)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    // Only the agents' own sockets are relayed.
                    let Some(i) = real.iter().position(|r| *r == src) else {
                        continue;
                    };
                    let (lock, cv) = &*queue;
                    lock.lock().unwrap().push(Due {
                        at: Instant::now() + delays[i][j],
                        from: i,
                        to: real[j],
                        data: buf[..len].to_vec(),
                    });
                    cv.notify_one();
                }
            }));
        }
        {
            let (stop, queue) = (stop.clone(), queue.clone());
            threads.push(std::thread::spawn(move || {
                let (lock, cv) = &*queue;
                let mut q = lock.lock().unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    match q.peek() {
                        Some(d) if d.at <= now => {
                            let d = q.pop().unwrap();
                            let _ = sockets[d.from].send_to(&d.data, d.to);
                        }
                        Some(d) => {
                            let wait = d.at - now;
                            q = cv.wait_timeout(q, wait).unwrap().0;
                        }
                        None => q = cv.wait_timeout(q, Duration::from_millis(50)).unwrap().0,
                    }
                }
            }));
        }
        Self {
            stop,
            threads,
            queue,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.queue.1.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn rtt_ms(i: usize, j: usize) -> f64 {
    (PLACES[i].2 - PLACES[j].2).abs()
}

/// `rtt NODE` on agent `a`: the estimate in ms, if it has one.
fn estimate(a: &Agent, node: &str) -> Option<f64> {
    let out = a.cli(&["rtt", node]);
    let text = String::from_utf8_lossy(&out.stdout);
    let ms = text
        .trim()
        .strip_prefix(&format!("Estimated {node} <-> a rtt: "))?;
    ms.strip_suffix(" ms")?.parse().ok()
}

#[test]
fn the_nearest_member_is_ranked_first_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let net = test_net();
    let advertised: Vec<SocketAddr> = (0..PLACES.len())
        .map(|i| format!("127.77.{net}.{}:7946", 10 + i).parse().unwrap())
        .collect();
    let real: Vec<SocketAddr> = (0..PLACES.len())
        .map(|i| format!("127.77.{net}.{}:7946", 50 + i).parse().unwrap())
        .collect();
    let _relay = Relay::start(&advertised, &real, rtt_ms);
    let upstream = dir.path().join("app.conf");
    let dns: SocketAddr = format!("127.77.{net}.10:53").parse().unwrap();
    let agents: Vec<Agent> = PLACES
        .iter()
        .enumerate()
        .map(|(i, (name, role, _))| {
            let rpc: SocketAddr = format!("127.77.{net}.{}:7373", 10 + i).parse().unwrap();
            let mut extra: Vec<String> = vec![
                "--advertise".into(),
                advertised[i].to_string(),
                "--role".into(),
                (*role).into(),
            ];
            if i > 0 {
                extra.extend(["--join".into(), advertised[0].to_string()]);
            } else {
                extra.extend([
                    "--writer".into(),
                    format!(
                        "nginx:path={},upstream=app,role=app,order=nearest,nearest=1",
                        upstream.display()
                    ),
                    "--dns-addr".into(),
                    dns.to_string(),
                    "--dns-recursor=none".into(),
                ]);
            }
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            Agent::start(name, real[i], rpc, &extra, dir.path())
        })
        .collect();
    let a = &agents[0];

    // a's estimates rank d, c, b as the network does, each within 50 % (or 5 ms) of the
    // truth, once it has probed each a few times.
    let mut seen = BTreeMap::new();
    let ranked = wait_until(Duration::from_secs(60), || {
        seen = ["b", "c", "d"]
            .iter()
            .filter_map(|n| Some((*n, estimate(a, n)?)))
            .collect();
        seen.len() == 3
            && seen["d"] < seen["c"]
            && seen["c"] < seen["b"]
            && (1..4).all(|i| {
                let truth = rtt_ms(0, i);
                (seen[PLACES[i].0] - truth).abs() <= (truth * 0.5).max(5.0)
            })
    });
    assert!(
        ranked.is_some(),
        "a's estimates {seen:?} against {:?}\n{}",
        (1..4).map(|i| rtt_ms(0, i)).collect::<Vec<_>>(),
        a.log_text()
    );

    // The writer: d first, the others as backups.
    let mut text = String::new();
    let written = wait_until(Duration::from_secs(20), || {
        text = std::fs::read_to_string(&upstream).unwrap_or_default();
        let servers: Vec<&str> = text.lines().filter(|l| l.contains("server ")).collect();
        servers.len() == 3
            && servers[0].ends_with("# d")
            && !servers[0].contains("backup")
            && servers[1..].iter().all(|l| l.contains(" backup;"))
    });
    assert!(written.is_some(), "{text}");

    // DNS from each app member's address: itself first, then the nearer of the others.
    for (i, expect) in [
        (1, ["b", "c", "d"]),
        (3, ["d", "c", "b"]),
        (2, ["c", "d", "b"]),
    ] {
        let want: Vec<String> = expect
            .iter()
            .map(|n| {
                let k = PLACES.iter().position(|p| p.0 == *n).unwrap();
                advertised[k].ip().to_string()
            })
            .collect();
        let mut got = Vec::new();
        let ordered = wait_until(Duration::from_secs(20), || {
            let out = std::process::Command::new("dig")
                .args([
                    "+short",
                    "+tries=1",
                    "+time=2",
                    "-b",
                    &advertised[i].ip().to_string(),
                    "-p",
                    &dns.port().to_string(),
                    &format!("@{}", dns.ip()),
                    "app.gossip",
                    "A",
                ])
                .output()
                .expect("dig (bind9-dnsutils) runs");
            got = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            got == want
        });
        assert!(
            ordered.is_some(),
            "asked from {}: {got:?}, expected {want:?}",
            PLACES[i].0
        );
    }
}
