//! `compare`: our agent and Debian's `serf`, side by side in one run, on loopback.
//!
//! For each cluster size, for each repetition, a cluster of our agents and then one of Serf
//! agents (alternating, same machine, same run), each agent on its own 127.x.y.z with the
//! default ports, every agent joining the first. Measured:
//!
//! - join convergence: from the last agent's start until every agent lists all N alive;
//! - member-join handler: one more agent started, a second after the join converged; until
//!   the handler (a bash script writing a timestamp) has run for it on every other agent;
//! - failure detection: SIGKILL of one agent, until every other lists it failed;
//! - SIGTERM: until every other lists it left (or, for Serf, anything but alive), and the
//!   status they converge to; SIGINT (Serf's graceful leave) the same;
//! - idle (first repetition): after a settling pause, over a window: RSS and CPU per agent
//!   from /proc, gossip bytes per second per agent from a tcpdump capture of the gossip port
//!   (IP packets, UDP and TCP), and for ours the agents' own counters as a cross-check;
//! - false failures: any live member seen failed by anyone, in any poll, during the run;
//! - Serf's RPC (first repetition, after the idle window): `members` round trips through
//!   Serf's msgpack RPC on the first agent (both implementations speak it), and that agent's
//!   RSS with 50 `stream` subscriptions open while user events flow through them.
//!
//! Membership is polled through each agent's API: our HTTP API, Serf's msgpack RPC (one
//! connection per agent, kept open), by four threads that take the agents not yet satisfied
//! in turn, so that one agent slow to answer (seen for up to 0.2 s on two cores, in the
//! window where a hundred agents run their member-join handlers) delays only its own poll.
//! A figure is the end of the poll that saw the last agent reach the state; the interval
//! between two polls of one agent is its resolution (reported), and the join's lower bound
//! (the latest poll that saw an agent lacking one) is reported too.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// The two implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Kind {
    /// gossip-agent.
    Ours,
    /// HashiCorp Serf, Debian's package.
    Serf,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Serf => "serf",
        }
    }
    fn net(self) -> u8 {
        match self {
            Kind::Ours => 78,
            Kind::Serf => 79,
        }
    }
}

/// Options of the comparison.
pub struct Opts {
    /// Cluster sizes.
    pub sizes: Vec<usize>,
    /// Repetitions per size and implementation.
    pub reps: usize,
    /// Settling pause before the idle window.
    pub settle: Duration,
    /// Idle measurement window.
    pub idle: Duration,
    /// Our binary.
    pub ours: PathBuf,
    /// The serf binary.
    pub serf: PathBuf,
    /// Where to write the markdown report.
    pub out: Option<PathBuf>,
    /// Run only this implementation (a diagnostic: the report then has no ratios).
    pub only: Option<Kind>,
}

/// One measured figure of one repetition.
#[derive(Debug, Default, Clone)]
struct Run {
    join: Option<Duration>,
    handler: Option<Duration>,
    fail: Option<Duration>,
    fail_status: String,
    term: Option<Duration>,
    term_status: String,
    int: Option<Duration>,
    int_status: String,
    false_failures: usize,
    /// The observers that listed everyone last, and whom they lacked at their last poll
    /// before that (see [`stragglers`]).
    join_stragglers: String,
    /// The join's lower bound: the latest poll that saw an agent not yet listing everyone.
    join_low: Option<Duration>,
    poll: Vec<Duration>,
    idle: Option<Idle>,
    rpc: Option<RpcFigures>,
}

/// Serf's RPC on one agent.
#[derive(Debug, Clone)]
struct RpcFigures {
    /// `members` round trips: median and 99th percentile.
    members_median: Duration,
    members_p99: Duration,
    /// Members listed (a check that the answer was whole).
    listed: usize,
    /// RSS of the agent before the streams were opened, and with them open.
    rss_before_kib: f64,
    rss_streams_kib: f64,
}

/// Streams held open for the memory figure.
const RPC_STREAMS: usize = 50;
/// `members` round trips timed.
const RPC_ROUND_TRIPS: usize = 200;

#[derive(Debug, Clone)]
struct Idle {
    rss_kib: f64,
    pss_kib: f64,
    cpu_pct: f64,
    bytes_per_s: f64,
    counter_bytes_per_s: Option<f64>,
}

/// Serf's RPC: msgpack over TCP, a header then a body per request and response.
struct SerfRpc {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    seq: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReqHeader<'a> {
    command: &'a str,
    seq: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RespHeader {
    #[allow(dead_code)]
    seq: u64,
    error: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Handshake {
    version: i32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SerfMembers {
    members: Vec<SerfMember>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SerfMember {
    name: String,
    status: String,
}

impl SerfRpc {
    fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_nodelay(true)?;
        let mut rpc = Self {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            seq: 0,
        };
        rpc.send("handshake", Some(&Handshake { version: 1 }))?;
        rpc.header()?;
        Ok(rpc)
    }

    fn send<B: Serialize>(&mut self, command: &str, body: Option<&B>) -> std::io::Result<()> {
        let mut buf = rmp_serde::to_vec_named(&ReqHeader {
            command,
            seq: self.seq,
        })
        .map_err(std::io::Error::other)?;
        if let Some(b) = body {
            buf.extend(rmp_serde::to_vec_named(b).map_err(std::io::Error::other)?);
        }
        self.seq += 1;
        self.writer.write_all(&buf)
    }

    fn header(&mut self) -> std::io::Result<()> {
        let h: RespHeader =
            rmp_serde::from_read(&mut self.reader).map_err(std::io::Error::other)?;
        if h.error.is_empty() {
            Ok(())
        } else {
            Err(std::io::Error::other(h.error))
        }
    }

    /// Opens a stream of every event on this connection (its records are left unread).
    fn stream(&mut self) -> std::io::Result<()> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Stream<'a> {
            r#type: &'a str,
        }
        self.send("stream", Some(&Stream { r#type: "*" }))?;
        self.header()
    }

    /// Sends a user event.
    fn event(&mut self, name: &str, payload: &[u8]) -> std::io::Result<()> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Event<'a> {
            name: &'a str,
            #[serde(with = "serde_bytes_compat")]
            payload: &'a [u8],
            coalesce: bool,
        }
        self.send(
            "event",
            Some(&Event {
                name,
                payload,
                coalesce: false,
            }),
        )?;
        self.header()
    }

    fn members(&mut self) -> std::io::Result<HashMap<String, String>> {
        self.send::<()>("members", None)?;
        self.header()?;
        let m: SerfMembers =
            rmp_serde::from_read(&mut self.reader).map_err(std::io::Error::other)?;
        Ok(m.members.into_iter().map(|m| (m.name, m.status)).collect())
    }
}

/// `[]byte` as msgpack bin, as Serf's Go encoder writes it.
mod serde_bytes_compat {
    pub fn serialize<S: serde::Serializer>(v: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
}

/// Serf's RPC on agent 0 of `c`: `members` round trips, then its memory with
/// [`RPC_STREAMS`] streams open while user events go through them.
fn rpc_figures(c: &Cluster) -> Option<RpcFigures> {
    let addr = c.rpc_addr(0);
    let pid = c.pid(0)?;
    let mut rpc = SerfRpc::connect(addr).ok()?;
    let mut times = Vec::with_capacity(RPC_ROUND_TRIPS);
    let mut listed = 0;
    for _ in 0..RPC_ROUND_TRIPS {
        let t = Instant::now();
        listed = rpc.members().ok()?.len();
        times.push(t.elapsed());
    }
    times.sort();
    let rss_before_kib = proc_stat(pid)?.1;
    let mut streams = Vec::with_capacity(RPC_STREAMS);
    for _ in 0..RPC_STREAMS {
        let mut s = SerfRpc::connect(addr).ok()?;
        s.stream().ok()?;
        streams.push(s);
    }
    for i in 0..20 {
        rpc.event("bench", format!("event {i}").as_bytes()).ok()?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_streams_kib = proc_stat(pid)?.1;
    drop(streams);
    Some(RpcFigures {
        members_median: times[times.len() / 2],
        members_p99: times[times.len() * 99 / 100],
        listed,
        rss_before_kib,
        rss_streams_kib,
    })
}

/// What the agent at `addr` lists, name to status: ours through its HTTP API, Serf through
/// its RPC connection `rpc` (opened when `None`, dropped on an error).
fn poll_view(
    kind: Kind,
    addr: SocketAddr,
    rpc: &mut Option<SerfRpc>,
) -> Option<HashMap<String, String>> {
    match kind {
        Kind::Ours => ours_members(addr),
        Kind::Serf => {
            if rpc.is_none() {
                *rpc = SerfRpc::connect(addr).ok();
            }
            let r = rpc.as_mut()?.members();
            if r.is_err() {
                *rpc = None;
            }
            r.ok()
        }
    }
}

/// Polling threads of [`Cluster::until`]: two per core of the machine this was written for.
const POLLERS: usize = 4;
/// The shortest interval between two polls of one agent.
const POLL_GAP: Duration = Duration::from_millis(5);

/// Our API: every member's status, by name.
fn ours_members(addr: SocketAddr) -> Option<HashMap<String, String>> {
    Some(
        gossip_testkit::members::listed(addr)?
            .into_iter()
            .map(|(name, m)| (name, m.status))
            .collect(),
    )
}

/// Ours: the anti-amplification counters after the join (the seed's, and the sums over
/// every agent), to tell a join slowed by held or dropped answers.
fn limiter_note(c: &Cluster, n: usize) -> String {
    let keys = ["limited_held", "limited_dropped", "challenges", "validated"];
    let mut sums = [0u64; 4];
    let mut seed = [0u64; 4];
    for i in 0..n {
        let Some(v) = gossip_testkit::http::get(c.rpc_addr(i), "/v1/info").and_then(|a| a.json())
        else {
            continue;
        };
        for (k, key) in keys.iter().enumerate() {
            let x = v["stats"][key].as_u64().unwrap_or(0);
            sums[k] += x;
            if i == 0 {
                seed[k] = x;
            }
        }
    }
    format!(
        " [limiter, seed/all: held {}/{}, dropped {}/{}, challenges {}/{}, validated {}/{}]",
        seed[0], sums[0], seed[1], sums[1], seed[2], sums[2], seed[3], sums[3]
    )
}

fn ours_bytes_out(addr: SocketAddr) -> Option<u64> {
    gossip_testkit::http::get(addr, "/v1/info")?.json()?["stats"]["bytes_out"].as_u64()
}

struct Node {
    name: String,
    ip: Ipv4Addr,
    child: Option<Child>,
    events: PathBuf,
    rpc: Option<SerfRpc>,
}

/// One cluster of one implementation; every process is killed on drop.
struct Cluster {
    kind: Kind,
    bin: PathBuf,
    subnet: u8,
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    /// Names that are expected down (killed, stopped): not false failures.
    down: HashSet<String>,
    false_failures: HashSet<(String, String)>,
    /// Intervals between two polls of one agent, over the run.
    rounds: Vec<Duration>,
    /// The last [`Cluster::until`]: when each observer first met the predicate (since
    /// `from`), and its last view before that, with that poll's time.
    met: BTreeMap<usize, Duration>,
    unmet: BTreeMap<usize, (Duration, HashMap<String, String>)>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The member-join handler both implementations run: bash builtins only (no `date`, `cut`
/// or `sed` processes), so that a hundred agents running it at once measure the agents rather
/// than process creation on a small machine.
const HANDLER: &str = "#!/bin/bash\n# member-join: one line per joined member, with the time the handler ran (ns).\nts=${EPOCHREALTIME/./}000\nwhile IFS=$'\\t' read -r name rest; do echo \"$ts $name\"; done >> \"$1\"\n";

impl Cluster {
    fn new(kind: Kind, bin: &Path, subnet: u8) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = dir.path().join("handler.sh");
        std::fs::write(&h, HANDLER).expect("handler");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&h, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Self {
            kind,
            bin: bin.to_path_buf(),
            subnet,
            dir,
            nodes: Vec::new(),
            down: HashSet::new(),
            false_failures: HashSet::new(),
            rounds: Vec::new(),
            met: BTreeMap::new(),
            unmet: BTreeMap::new(),
        }
    }

    fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, self.kind.net(), self.subnet, (i + 1) as u8)
    }

    /// Starts node `i` (joining node 0 unless it is node 0); returns the start time.
    fn spawn(&mut self, i: usize) -> SystemTime {
        let ip = self.ip(i);
        let name = format!("n{i}");
        let events = self.dir.path().join(format!("{name}.events"));
        let handler = format!(
            "member-join={} {}",
            self.dir.path().join("handler.sh").display(),
            events.display()
        );
        let seed = self.ip(0);
        let mut cmd = Command::new(&self.bin);
        match self.kind {
            Kind::Ours => {
                cmd.args(["--node", &name, "--bind", &format!("{ip}:7946")])
                    .args(["--rpc-addr", &format!("{ip}:7373"), "--role", "appserver"])
                    .args(["--event-handler", &handler, "--log-level", "warn"]);
                if i > 0 {
                    cmd.args(["--join", &seed.to_string()]);
                }
            }
            Kind::Serf => {
                cmd.args(["agent", "-node", &name, "-bind", &format!("{ip}:7946")])
                    .args(["-rpc-addr", &format!("{ip}:7373"), "-tag", "role=appserver"])
                    .args(["-event-handler", &handler, "-log-level", "warn"]);
                if i > 0 {
                    cmd.args(["-join", &format!("{seed}:7946")]);
                }
            }
        }
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log");
        let started = SystemTime::now();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        let node = Node {
            name,
            ip,
            child: Some(child),
            events,
            rpc: None,
        };
        if i < self.nodes.len() {
            self.nodes[i] = node;
        } else {
            self.nodes.push(node);
        }
        started
    }

    fn rpc_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.nodes[i].ip, 7373))
    }

    /// Waits until node `i`'s API answers.
    fn wait_api(&mut self, i: usize, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.view(i).is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// What node `i` lists: name to status.
    fn view(&mut self, i: usize) -> Option<HashMap<String, String>> {
        let addr = self.rpc_addr(i);
        poll_view(self.kind, addr, &mut self.nodes[i].rpc)
    }

    /// Polls the observers until `pred` holds on each, with [`POLLERS`] threads taking the
    /// observers not yet satisfied in turn (one agent slow to answer holds up only its
    /// poller; an agent is asked again [`POLL_GAP`] after its last poll at the earliest).
    /// Returns the time since `from` when the poll that saw the last one satisfied ended
    /// (an upper bound: it held by then), and each observer's final view. Fills
    /// [`Cluster::met`], [`Cluster::unmet`] (each observer's last poll that did not see it,
    /// by its start: a lower bound; the latest of those bounds the whole from below) and the
    /// intervals between two polls of one agent.
    fn until(
        &mut self,
        observers: &[usize],
        from: Instant,
        limit: Duration,
        pred: impl Fn(&HashMap<String, String>) -> bool + std::marker::Sync,
    ) -> (Option<Duration>, Vec<HashMap<String, String>>) {
        #[derive(Default)]
        struct Shared {
            queue: VecDeque<usize>,
            in_flight: usize,
            last: BTreeMap<usize, HashMap<String, String>>,
            met: BTreeMap<usize, Duration>,
            unmet: BTreeMap<usize, (Duration, HashMap<String, String>)>,
            polled_at: HashMap<usize, Instant>,
            gaps: Vec<Duration>,
            failed: Vec<(usize, String)>,
        }
        let kind = self.kind;
        let addrs: Vec<SocketAddr> = (0..self.nodes.len()).map(|i| self.rpc_addr(i)).collect();
        let conns: Vec<Mutex<Option<SerfRpc>>> = self
            .nodes
            .iter_mut()
            .map(|n| Mutex::new(n.rpc.take()))
            .collect();
        let shared = Mutex::new(Shared {
            queue: observers.iter().copied().collect(),
            ..Shared::default()
        });
        fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
            m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }
        std::thread::scope(|s| {
            for _ in 0..POLLERS.min(observers.len()) {
                s.spawn(|| {
                    loop {
                        let next = {
                            let mut g = lock(&shared);
                            if (g.queue.is_empty() && g.in_flight == 0) || from.elapsed() >= limit {
                                break;
                            }
                            let next = g.queue.pop_front();
                            if let Some(i) = next {
                                g.in_flight += 1;
                                Some((i, g.polled_at.get(&i).copied()))
                            } else {
                                None
                            }
                        };
                        let Some((i, prev)) = next else {
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        };
                        if let Some(p) = prev {
                            std::thread::sleep(POLL_GAP.saturating_sub(p.elapsed()));
                        }
                        let start = Instant::now();
                        let v = {
                            let mut c = conns[i]
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            poll_view(kind, addrs[i], &mut c).unwrap_or_default()
                        };
                        let end = from.elapsed();
                        let ok = pred(&v);
                        let mut g = lock(&shared);
                        g.in_flight -= 1;
                        if let Some(p) = prev {
                            g.gaps.push(start.saturating_duration_since(p));
                        }
                        g.polled_at.insert(i, start);
                        for (name, status) in &v {
                            if status == "failed" {
                                g.failed.push((i, name.clone()));
                            }
                        }
                        if ok {
                            g.met.insert(i, end);
                        } else {
                            g.unmet
                                .insert(i, (start.saturating_duration_since(from), v.clone()));
                            g.queue.push_back(i);
                        }
                        g.last.insert(i, v);
                    }
                });
            }
        });
        let g = shared
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (n, c) in self.nodes.iter_mut().zip(conns) {
            n.rpc = c
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        for (i, name) in g.failed {
            if !self.down.contains(&name) {
                self.false_failures
                    .insert((self.nodes[i].name.clone(), name));
            }
        }
        self.rounds.extend(g.gaps);
        let done = observers.iter().all(|i| g.met.contains_key(i));
        let t = done.then(|| g.met.values().copied().max().unwrap_or_default());
        self.met = g.met;
        self.unmet = g.unmet;
        (t, g.last.into_values().collect())
    }

    fn pid(&self, i: usize) -> Option<nix::unistd::Pid> {
        self.nodes[i]
            .child
            .as_ref()
            .map(|c| nix::unistd::Pid::from_raw(c.id() as i32))
    }

    fn signal(&mut self, i: usize, sig: Signal) -> Instant {
        self.down.insert(self.nodes[i].name.clone());
        let at = Instant::now();
        if let Some(p) = self.pid(i) {
            let _ = nix::sys::signal::kill(p, sig);
        }
        at
    }

    fn reap(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `k` observers of the last [`Cluster::until`] that met it last (or never): when, and which of
/// `names` each lacked (absent, or its status) at its last poll before that, in seconds:
/// "n37 at 0.41 (0.35: n88 absent)". Where the time goes in a slow repetition.
fn stragglers(c: &Cluster, names: &[String], k: usize) -> String {
    // Those that never did first (as `None`), then the latest.
    let mut met: Vec<(Option<Duration>, usize)> = c
        .unmet
        .keys()
        .filter(|i| !c.met.contains_key(i))
        .map(|i| (None, *i))
        .chain(c.met.iter().map(|(i, t)| (Some(*t), *i)))
        .collect();
    met.sort_by_key(|&(t, _)| std::cmp::Reverse(t.unwrap_or(Duration::MAX)));
    met.iter()
        .take(k)
        .map(|&(t, i)| {
            let lacked = c.unmet.get(&i).map_or_else(String::new, |(at, v)| {
                let missing: Vec<String> = names
                    .iter()
                    .filter_map(|x| match v.get(x).map(String::as_str) {
                        Some("alive") => None,
                        Some(s) => Some(format!("{x} {s}")),
                        None => Some(format!("{x} absent")),
                    })
                    .collect();
                let more = missing.len().saturating_sub(5);
                let shown = missing[..missing.len().min(5)].join(", ");
                if more > 0 {
                    format!(" ({}: {shown} and {more} more)", secs(*at))
                } else {
                    format!(" ({}: {shown})", secs(*at))
                }
            });
            match t {
                Some(t) => format!("{} at {}{lacked}", c.nodes[i].name, secs(t)),
                None => format!("{} never{lacked}", c.nodes[i].name),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Which statuses the views hold for `name`, counted: "left x9".
fn statuses(views: &[HashMap<String, String>], name: &str) -> String {
    let mut c: BTreeMap<&str, usize> = BTreeMap::new();
    for v in views {
        *c.entry(v.get(name).map(String::as_str).unwrap_or("absent"))
            .or_default() += 1;
    }
    c.iter()
        .map(|(s, n)| format!("{s} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The handler times for `name` on every events file but `skip`'s: ns since the epoch.
fn handler_times(c: &Cluster, name: &str, skip: usize) -> Vec<Option<u128>> {
    (0..c.nodes.len())
        .filter(|i| *i != skip && c.nodes[*i].child.is_some())
        .map(|i| {
            std::fs::read_to_string(&c.nodes[i].events)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let (ts, n) = l.split_once(' ')?;
                    (n == name).then(|| ts.parse::<u128>().ok()).flatten()
                })
                .min()
        })
        .collect()
}

fn proc_stat(pid: nix::unistd::Pid) -> Option<(u64, f64)> {
    let ticks = crate::cpu_ticks(pid.as_raw().unsigned_abs())?;
    let rss = gossip_testkit::host::rss_kib(pid.as_raw().unsigned_abs())? as f64;
    Some((ticks, rss))
}

/// Proportional set size: shared pages (the binary, libc) divided among the processes
/// mapping them.
fn pss_kib(pid: nix::unistd::Pid) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Sums the IP bytes of a pcap file written by tcpdump on `lo` (14-byte link headers).
fn pcap_ip_bytes(path: &Path) -> Option<(u64, u64)> {
    let data = std::fs::read(path).ok()?;
    if data.len() < 24 {
        return None;
    }
    let magic = u32::from_le_bytes(data[0..4].try_into().ok()?);
    if magic != 0xa1b2c3d4 && magic != 0xa1b23c4d {
        return None;
    }
    let (mut off, mut bytes, mut packets) = (24usize, 0u64, 0u64);
    while off + 16 <= data.len() {
        let incl = u32::from_le_bytes(data[off + 8..off + 12].try_into().ok()?) as usize;
        let orig = u32::from_le_bytes(data[off + 12..off + 16].try_into().ok()?) as u64;
        bytes += orig.saturating_sub(14);
        packets += 1;
        off += 16 + incl;
    }
    Some((bytes, packets))
}

fn idle_window(c: &mut Cluster, settle: Duration, window: Duration) -> Option<Idle> {
    std::thread::sleep(settle);
    let n = c.nodes.iter().filter(|n| n.child.is_some()).count();
    let pcap = c.dir.path().join("idle.pcap");
    let filter = format!("net 127.{}.{}.0/24 and port 7946", c.kind.net(), c.subnet);
    let mut dump = Command::new("tcpdump")
        .args(["-i", "lo", "-n", "-U", "-s", "96", "-w"])
        .arg(&pcap)
        .arg(&filter)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok();
    std::thread::sleep(Duration::from_millis(500));
    let pids: Vec<_> = (0..c.nodes.len()).filter_map(|i| c.pid(i)).collect();
    let before: Vec<_> = pids.iter().map(|p| proc_stat(*p)).collect();
    let counters_before: Vec<Option<u64>> = if c.kind == Kind::Ours {
        (0..c.nodes.len())
            .filter(|i| c.nodes[*i].child.is_some())
            .map(|i| ours_bytes_out(c.rpc_addr(i)))
            .collect()
    } else {
        Vec::new()
    };
    let t = Instant::now();
    std::thread::sleep(window);
    let secs = t.elapsed().as_secs_f64();
    let after: Vec<_> = pids.iter().map(|p| proc_stat(*p)).collect();
    let counters_after: Vec<Option<u64>> = if c.kind == Kind::Ours {
        (0..c.nodes.len())
            .filter(|i| c.nodes[*i].child.is_some())
            .map(|i| ours_bytes_out(c.rpc_addr(i)))
            .collect()
    } else {
        Vec::new()
    };
    std::thread::sleep(Duration::from_millis(300));
    if let Some(d) = dump.as_mut() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.id() as i32), Signal::SIGTERM);
        let _ = d.wait();
    }
    let tick = 100.0; // USER_HZ
    let mut cpu = Vec::new();
    let mut rss = Vec::new();
    let pss: Vec<f64> = pids.iter().filter_map(|p| pss_kib(*p)).collect();
    for (b, a) in before.iter().zip(&after) {
        if let (Some((tb, _)), Some((ta, r))) = (b, a) {
            cpu.push((ta - tb) as f64 / tick / secs * 100.0);
            rss.push(*r);
        }
    }
    let (bytes, _) = pcap_ip_bytes(&pcap)?;
    let counter = (c.kind == Kind::Ours).then(|| {
        let sum: u64 = counters_before
            .iter()
            .zip(&counters_after)
            .filter_map(|(b, a)| Some(a.as_ref()? - b.as_ref()?))
            .sum();
        sum as f64 / secs / n as f64
    });
    Some(Idle {
        rss_kib: rss.iter().sum::<f64>() / rss.len().max(1) as f64,
        pss_kib: pss.iter().sum::<f64>() / pss.len().max(1) as f64,
        cpu_pct: cpu.iter().sum::<f64>() / cpu.len().max(1) as f64,
        bytes_per_s: bytes as f64 / (secs + 0.3) / n as f64,
        counter_bytes_per_s: counter,
    })
}

fn one_run(
    kind: Kind,
    bin: &Path,
    n: usize,
    subnet: u8,
    idle: Option<(Duration, Duration)>,
) -> Run {
    let mut c = Cluster::new(kind, bin, subnet);
    let mut run = Run::default();
    c.spawn(0);
    assert!(
        c.wait_api(0, Duration::from_secs(10)),
        "{} seed never answered",
        kind.name()
    );
    for i in 1..n {
        c.spawn(i);
    }
    let last_start = Instant::now();
    let all: Vec<usize> = (0..n).collect();
    let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    let (t, _) = c.until(&all, last_start, Duration::from_secs(60), |v| {
        names.iter().all(|x| v.get(x).is_some_and(|s| s == "alive"))
    });
    run.join = t;
    run.join_low = t.map(|_| {
        c.unmet
            .values()
            .map(|(at, _)| *at)
            .max()
            .unwrap_or_default()
    });
    run.join_stragglers = stragglers(&c, &names, 3);
    if kind == Kind::Ours {
        run.join_stragglers.push_str(&limiter_note(&c, n));
    }

    // A late joiner, once the cluster has been quiet for a second (as a scale-up after the
    // initial start would be): its member-join handler on every other agent.
    std::thread::sleep(Duration::from_secs(1));
    let late = n;
    let started = c.spawn(late);
    let started_ns = started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let late_name = format!("n{late}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut times;
    loop {
        times = handler_times(&c, &late_name, late);
        if times.iter().all(Option::is_some) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    run.handler = if times.iter().all(Option::is_some) {
        times
            .iter()
            .flatten()
            .max()
            .map(|t| Duration::from_nanos(t.saturating_sub(started_ns) as u64))
    } else {
        None
    };
    // Everyone (late one included) alive before the faults.
    let everyone: Vec<usize> = (0..=n).collect();
    let names_all: Vec<String> = (0..=n).map(|i| format!("n{i}")).collect();
    c.until(&everyone, Instant::now(), Duration::from_secs(30), |v| {
        names_all
            .iter()
            .all(|x| v.get(x).is_some_and(|s| s == "alive"))
    });

    if let Some((settle, window)) = idle {
        run.idle = idle_window(&mut c, settle, window);
        run.rpc = rpc_figures(&c);
    }

    // SIGKILL node 1: failed everywhere.
    let victim = 1;
    let at = c.signal(victim, Signal::SIGKILL);
    c.reap(victim);
    let others: Vec<usize> = (0..=n).filter(|i| *i != victim).collect();
    let (t, views) = c.until(&others, at, Duration::from_secs(60), |v| {
        v.get("n1").is_some_and(|s| s == "failed")
    });
    run.fail = t;
    run.fail_status = statuses(&views, "n1");

    // SIGTERM node 2, then SIGINT node 3 (Serf's graceful leave).
    let (t, status) = leave(&mut c, n, 2, Signal::SIGTERM);
    run.term = t;
    run.term_status = status;
    let (t, status) = leave(&mut c, n, 3, Signal::SIGINT);
    run.int = t;
    run.int_status = status;
    run.false_failures = c.false_failures.len();
    run.poll = std::mem::take(&mut c.rounds);
    run
}

/// Signals node `i` of a cluster of `n` + 1 and waits (30 s at most) until every other live
/// node lists it left or failed. Returns the time when all list it *left* (None otherwise)
/// and what they converged to.
fn leave(c: &mut Cluster, n: usize, i: usize, sig: Signal) -> (Option<Duration>, String) {
    let name = format!("n{i}");
    let at = c.signal(i, sig);
    let others: Vec<usize> = (0..=n)
        .filter(|j| *j != i && c.nodes[*j].child.is_some())
        .collect();
    let (t, views) = c.until(&others, at, Duration::from_secs(30), |v| {
        v.get(&name).is_some_and(|s| s == "left" || s == "failed")
    });
    c.reap(i);
    let all_left = views
        .iter()
        .all(|v| v.get(&name).is_some_and(|s| s == "left"));
    let status = format!(
        "{} after {}",
        statuses(&views, &name),
        t.map(|t| format!("{:.1} s", t.as_secs_f64()))
            .unwrap_or("30 s+".into())
    );
    (if all_left { t } else { None }, status)
}

fn stats(v: &[Duration]) -> Option<(Duration, Duration, Duration)> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort();
    Some((v[0], v[v.len() / 2], v[v.len() - 1]))
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// Runs the comparison and prints (and writes) the report.
pub fn compare(o: &Opts) {
    let serf_version = Command::new(&o.serf)
        .arg("version")
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    let ours_version = Command::new(&o.ours)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default();
    let mut results: BTreeMap<(usize, Kind), Vec<Run>> = BTreeMap::new();
    let mut subnet = 1u8;
    for &n in &o.sizes {
        for rep in 0..o.reps {
            for kind in [Kind::Ours, Kind::Serf] {
                if o.only.is_some_and(|k| k != kind) {
                    continue;
                }
                let bin = if kind == Kind::Ours { &o.ours } else { &o.serf };
                let idle = (rep == 0).then_some((o.settle, o.idle));
                eprintln!("N={n} rep {} {} ...", rep + 1, kind.name());
                let r = one_run(kind, bin, n, subnet, idle);
                eprintln!(
                    "    join {:?} handler {:?} fail {:?} term {} int {:?} false failures {}",
                    r.join, r.handler, r.fail, r.term_status, r.int, r.false_failures
                );
                eprintln!(
                    "    join after {:?}; last to list all: {}",
                    r.join_low, r.join_stragglers
                );
                subnet = subnet.wrapping_add(1).max(1);
                results.entry((n, kind)).or_default().push(r);
            }
        }
    }
    let report = render(o, &results, &serf_version, &ours_version);
    println!("{report}");
    if let Some(p) = &o.out {
        // The sections other subcommands write (`dns`, `metrics`) stay as they were.
        let old = std::fs::read_to_string(p).unwrap_or_default();
        let text = format!(
            "{}\n{}",
            report.trim_end(),
            crate::other_sections(&old, &["## DNS", "## Metrics"])
        );
        std::fs::write(p, text.trim_end().to_string() + "\n").expect("write the report");
        eprintln!("report written to {}", p.display());
    }
}

fn render(
    o: &Opts,
    results: &BTreeMap<(usize, Kind), Vec<Run>>,
    serf_version: &str,
    ours_version: &str,
) -> String {
    use std::fmt::Write as _;
    let mut r = String::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let _ = writeln!(r, "# gossip-agent vs Serf\n");
    let _ = writeln!(
        r,
        "Run on {date}: {cores} cores ({cpu}), Linux {}; ours: {ours_version} (commit {commit}), \
         release build; Serf: `{serf_version}` from Debian's package; both with their LAN profile \
         and default settings, on loopback (each agent on its own 127.x.y.z). Sizes {:?}, {} \
         repetitions each, ours and Serf alternating. Command: `cargo run --release -p \
         gossip-bench -- compare`.\n",
        kernel.trim(),
        o.sizes,
        o.reps
    );
    let _ = writeln!(
        r,
        "Times in seconds, min / median / max over the repetitions; ratio = median ours / \
         median Serf. Each is the end of the poll that saw the last agent reach the state, so \
         the true time lies up to one poll interval earlier (intervals below).\n"
    );
    let _ = writeln!(r, "| figure | N | ours | Serf | ratio | target | met |");
    let _ = writeln!(r, "|---|---|---|---|---|---|---|");
    type Pick = fn(&Run) -> Option<Duration>;
    let figures: [(&str, Pick, Option<f64>, &str); 5] = [
        (
            "join convergence",
            |x| x.join,
            Some(0.5),
            "<= 0.5x Serf at N=100",
        ),
        (
            "member-join handler ran on all",
            |x| x.handler,
            None,
            "<= 0.3 s at N=100",
        ),
        (
            "failure detection (SIGKILL)",
            |x| x.fail,
            Some(0.6),
            "<= 0.6x Serf at N=100",
        ),
        ("left on all after SIGTERM", |x| x.term, None, "<= 1 s"),
        (
            "left on all after SIGINT",
            |x| x.int,
            Some(0.5),
            "<= 0.5x Serf at N=100",
        ),
    ];
    for (name, pick, ratio_target, target) in figures {
        for &n in &o.sizes {
            let get = |k: Kind| -> (Vec<Duration>, usize) {
                let runs = results.get(&(n, k)).map(Vec::as_slice).unwrap_or(&[]);
                let v: Vec<Duration> = runs.iter().filter_map(pick).collect();
                (v.clone(), runs.len() - v.len())
            };
            let (ov, omiss) = get(Kind::Ours);
            let (sv, smiss) = get(Kind::Serf);
            let fmt = |v: &[Duration], miss: usize| match stats(v) {
                Some((a, m, b)) if miss == 0 => format!("{} / {} / {}", secs(a), secs(m), secs(b)),
                Some((a, m, b)) => {
                    format!("{} / {} / {} ({miss} never)", secs(a), secs(m), secs(b))
                }
                None => "never".to_string(),
            };
            let ratio = match (stats(&ov), stats(&sv)) {
                (Some((_, a, _)), Some((_, b, _))) if !b.is_zero() => {
                    Some(a.as_secs_f64() / b.as_secs_f64())
                }
                _ => None,
            };
            let is_target_size =
                n == 100 || (n == *o.sizes.iter().max().unwrap_or(&n) && !o.sizes.contains(&100));
            let met = if !is_target_size {
                String::new()
            } else {
                let om = stats(&ov).map(|s| s.1);
                let ok = match (name, ratio_target) {
                    (_, Some(t)) => ratio.is_some_and(|x| x <= t) && omiss == 0,
                    ("member-join handler ran on all", _) => {
                        om.is_some_and(|m| m <= Duration::from_millis(300))
                    }
                    _ => om.is_some_and(|m| m <= Duration::from_secs(1)) && omiss == 0,
                };
                if ok { "yes".into() } else { "**no**".into() }
            };
            let _ = writeln!(
                r,
                "| {name} | {n} | {} | {} | {} | {} | {met} |",
                fmt(&ov, omiss),
                fmt(&sv, smiss),
                ratio.map(|x| format!("{x:.2}")).unwrap_or("-".into()),
                if is_target_size { target } else { "" },
            );
        }
    }
    let _ = writeln!(
        r,
        "\nWorst repetition / median, join convergence (target for ours: at most 3x):\n"
    );
    let _ = writeln!(r, "| N | ours | Serf |");
    let _ = writeln!(r, "|---|---|---|");
    for &n in &o.sizes {
        let spread = |k: Kind| {
            let runs = results.get(&(n, k)).map(Vec::as_slice).unwrap_or(&[]);
            let v: Vec<Duration> = runs.iter().filter_map(|x| x.join).collect();
            match stats(&v) {
                _ if v.len() < runs.len() => "a repetition never converged (60 s)".to_string(),
                Some((_, m, mx)) if !m.is_zero() => {
                    format!("{:.2}x", mx.as_secs_f64() / m.as_secs_f64())
                }
                _ => "-".to_string(),
            }
        };
        let _ = writeln!(
            r,
            "| {n} | {} | {} |",
            spread(Kind::Ours),
            spread(Kind::Serf)
        );
    }
    if let Some(&n) = o.sizes.iter().max() {
        let _ = writeln!(
            r,
            "\nJoin at N={n}, per repetition: the three agents that listed everyone last, and \
             what each lacked at its poll before that (the true join time lies after the \
             latest poll that saw an agent lacking one, and before the end of the poll that \
             saw the last one list everyone):\n"
        );
        let _ = writeln!(r, "| impl | rep | join between | last to list all |");
        let _ = writeln!(r, "|---|---|---|---|");
        for k in [Kind::Ours, Kind::Serf] {
            for (i, x) in results.get(&(n, k)).into_iter().flatten().enumerate() {
                let _ = writeln!(
                    r,
                    "| {} | {} | {} | {} |",
                    k.name(),
                    i + 1,
                    match (x.join_low, x.join) {
                        (Some(a), Some(b)) => format!("{} and {}", secs(a), secs(b)),
                        _ => "never".into(),
                    },
                    x.join_stragglers
                );
            }
        }
    }
    let _ = writeln!(r, "\nWhat the others converged to (first repetition):\n");
    let _ = writeln!(
        r,
        "| N | impl | after SIGKILL | after SIGTERM | after SIGINT | false failures (all reps) |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|");
    for ((n, k), runs) in results {
        let ff: usize = runs.iter().map(|x| x.false_failures).sum();
        let f = &runs[0];
        let _ = writeln!(
            r,
            "| {n} | {} | {} | {} | {} | {ff} |",
            k.name(),
            f.fail_status,
            f.term_status,
            f.int_status
        );
    }
    let _ = writeln!(
        r,
        "\nIdle (first repetition, after {} s idle, over the {} s after that; bytes are IP packets on the \
         gossip port captured with tcpdump, UDP and TCP, divided by the number of agents):\n",
        o.settle.as_secs(),
        o.idle.as_secs()
    );
    let _ = writeln!(
        r,
        "| N | impl | RSS per agent | PSS per agent | CPU per agent | gossip bytes/s per agent | own counters (UDP payload) |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|---|");
    for ((n, k), runs) in results {
        if let Some(i) = runs.iter().find_map(|x| x.idle.clone()) {
            let _ = writeln!(
                r,
                "| {n} | {} | {:.1} MiB | {:.1} MiB | {:.2} % | {:.0} | {} |",
                k.name(),
                i.rss_kib / 1024.0,
                i.pss_kib / 1024.0,
                i.cpu_pct,
                i.bytes_per_s,
                i.counter_bytes_per_s
                    .map(|b| format!("{b:.0}"))
                    .unwrap_or("-".into())
            );
        }
    }
    // The idle targets, for every N: RSS at most 5 MiB, CPU and bytes at most Serf's.
    let _ = writeln!(r, "\nIdle targets (every N):\n");
    let _ = writeln!(r, "| figure | N | ours | Serf | target | met |");
    let _ = writeln!(r, "|---|---|---|---|---|---|");
    let idle_of = |n: usize, k: Kind| {
        results
            .get(&(n, k))
            .and_then(|runs| runs.iter().find_map(|x| x.idle.clone()))
    };
    let sizes: std::collections::BTreeSet<usize> = results.keys().map(|(n, _)| *n).collect();
    for n in sizes {
        let (Some(ours), Some(serf)) = (idle_of(n, Kind::Ours), idle_of(n, Kind::Serf)) else {
            continue;
        };
        let rows = [
            (
                "RSS per agent",
                format!("{:.2} MiB", ours.rss_kib / 1024.0),
                format!("{:.2} MiB", serf.rss_kib / 1024.0),
                "<= 5 MiB",
                ours.rss_kib <= 5.0 * 1024.0,
            ),
            (
                "CPU per agent",
                format!("{:.2} %", ours.cpu_pct),
                format!("{:.2} %", serf.cpu_pct),
                "<= Serf's",
                ours.cpu_pct <= serf.cpu_pct,
            ),
            (
                "gossip bytes/s per agent",
                format!("{:.0}", ours.bytes_per_s),
                format!("{:.0}", serf.bytes_per_s),
                "<= Serf's",
                ours.bytes_per_s <= serf.bytes_per_s,
            ),
        ];
        for (name, a, b, target, ok) in rows {
            let met = if ok { "yes" } else { "**no**" };
            let _ = writeln!(r, "| {name} | {n} | {a} | {b} | {target} | {met} |");
        }
    }
    let _ = writeln!(
        r,
        "\nSerf's RPC on the first agent (first repetition, after the idle window): `members` \
         round trips through Serf's msgpack RPC ({RPC_ROUND_TRIPS}, one connection), and the \
         agent's RSS before and with {RPC_STREAMS} `stream` subscriptions open while 20 user \
         events went through them:\n"
    );
    let _ = writeln!(
        r,
        "| N | impl | members listed | round trip median | round trip p99 | RSS before | RSS with {RPC_STREAMS} streams |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|---|");
    let rpc_of = |n: usize, k: Kind| {
        results
            .get(&(n, k))
            .and_then(|runs| runs.iter().find_map(|x| x.rpc.clone()))
    };
    for ((n, k), runs) in results {
        if let Some(f) = runs.iter().find_map(|x| x.rpc.clone()) {
            let _ = writeln!(
                r,
                "| {n} | {} | {} | {:.3} ms | {:.3} ms | {:.2} MiB | {:.2} MiB |",
                k.name(),
                f.listed,
                f.members_median.as_secs_f64() * 1e3,
                f.members_p99.as_secs_f64() * 1e3,
                f.rss_before_kib / 1024.0,
                f.rss_streams_kib / 1024.0
            );
        }
    }
    let _ = writeln!(r, "\nRPC targets (every N):\n");
    let _ = writeln!(r, "| figure | N | ours | Serf | target | met |");
    let _ = writeln!(r, "|---|---|---|---|---|---|");
    let sizes: std::collections::BTreeSet<usize> = results.keys().map(|(n, _)| *n).collect();
    for n in sizes {
        let (Some(ours), Some(serf)) = (rpc_of(n, Kind::Ours), rpc_of(n, Kind::Serf)) else {
            continue;
        };
        let rows = [
            (
                "RPC members round trip (median)",
                format!("{:.3} ms", ours.members_median.as_secs_f64() * 1e3),
                format!("{:.3} ms", serf.members_median.as_secs_f64() * 1e3),
                "<= Serf's".to_string(),
                ours.members_median <= serf.members_median,
            ),
            (
                "RSS with 50 streams",
                format!("{:.2} MiB", ours.rss_streams_kib / 1024.0),
                format!("{:.2} MiB", serf.rss_streams_kib / 1024.0),
                "<= 6 MiB (5 MiB + 1 MiB)".to_string(),
                ours.rss_streams_kib <= 6.0 * 1024.0,
            ),
            (
                "RSS growth with 50 streams",
                format!(
                    "{:.2} MiB",
                    (ours.rss_streams_kib - ours.rss_before_kib) / 1024.0
                ),
                format!(
                    "{:.2} MiB",
                    (serf.rss_streams_kib - serf.rss_before_kib) / 1024.0
                ),
                "<= 1 MiB".to_string(),
                ours.rss_streams_kib - ours.rss_before_kib <= 1024.0,
            ),
        ];
        for (name, a, b, target, ok) in rows {
            let met = if ok { "yes" } else { "**no**" };
            let _ = writeln!(r, "| {name} | {n} | {a} | {b} | {target} | {met} |");
        }
    }
    let _ = writeln!(
        r,
        "\nInterval between two polls of one agent, while it was not yet there (the timings' \
         resolution; {POLLERS} polling threads, {} ms apart at least):\n",
        POLL_GAP.as_millis()
    );
    let _ = writeln!(r, "| N | impl | median interval | max interval |");
    let _ = writeln!(r, "|---|---|---|---|");
    for ((n, k), runs) in results {
        let all: Vec<Duration> = runs.iter().flat_map(|x| x.poll.iter().copied()).collect();
        if let Some((_, m, mx)) = stats(&all) {
            let _ = writeln!(
                r,
                "| {n} | {} | {:.0} ms | {:.0} ms |",
                k.name(),
                m.as_secs_f64() * 1e3,
                mx.as_secs_f64() * 1e3
            );
        }
    }
    r
}
