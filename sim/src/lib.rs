//! A discrete-event simulator that drives many instances of the real core
//! ([`gossip_core::Node`]) over a simulated network, in virtual time, reproducibly from a seed.
//!
//! Events (datagram deliveries and timers) wait in a [`DeadlineQueue`]: equal deadlines run in
//! the order they were scheduled, so a run is a pure function of its seed and the operations
//! applied. Nodes can crash (their pending timers and
//! packets vanish) and restart under the same name with a newer version.
//!
//! Every member event every node reports is folded into a trace hash ([`Sim::trace_hash`]):
//! two runs with one seed must give one hash.

pub mod coordinates;
pub mod latency;
pub mod scenario;

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use gossip_core::config::JoinBackoff;
use gossip_core::identity::{Fnv, KeyHasher, NameKey};
use gossip_core::wire::Kind;
use gossip_core::{
    CoreConfig, DeadlineQueue, EventKind, MemberEvent, MemberInfo, Node, Output, Status, Tags,
    TimerEvent,
};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Network and fault knobs of one run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Seed of every random choice: network and nodes.
    pub seed: u64,
    /// One-way latency, drawn uniformly from this range for each datagram.
    pub latency_min: Duration,
    /// Upper end of the latency range.
    pub latency_max: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice (the copy with its own latency).
    pub dup: f64,
    /// The core configuration every node runs.
    pub config: CoreConfig,
    /// How a node that has not joined tries again: the agent's policy
    /// (`gossip_core::config::JoinBackoff`, the default of `--retry-join-max`).
    pub join_backoff: JoinBackoff,
    /// A latency model with structure (regions, access links, jitter) instead of the uniform
    /// range: each node gets a place, each datagram half its pair's round trip, jittered.
    pub topology: Option<latency::Topology>,
    /// Keep every member event of every node (for tests; memory grows as N squared).
    pub record_events: bool,
    /// Keep every datagram sent, lost or not, and every one injected ([`Sim::packets`];
    /// for tests that look at the wire).
    pub record_packets: bool,
}

impl Params {
    /// A LAN-like network: 0.1 to 1 ms latency, no loss, the `lan` profile.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_millis(1),
            loss: 0.0,
            dup: 0.0,
            config: CoreConfig::default(),
            join_backoff: JoinBackoff::default(),
            topology: None,
            record_events: true,
            record_packets: false,
        }
    }
}

/// Observes when each node first reports one fact about one member: the times at which
/// a given kind of event about `name` (at `min_version` or newer) reached each node.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The member the fact is about.
    pub name: String,
    /// The event kind.
    pub kind: EventKind,
    /// Ignore events about older identities.
    pub min_version: u64,
    /// When the fact became true (the start of the measurement).
    pub since: Duration,
    /// Per node: when it first reported the fact (relative to `since`).
    pub seen: Vec<Option<Duration>>,
    /// Per node: its life when the fact happened, if it was up then (only those count).
    pub witnesses: Vec<Option<u32>>,
}

impl Watch {
    /// The time by which `fraction` of `population` nodes had reported it, if they had.
    pub fn time_to(&self, fraction: f64, population: usize) -> Option<Duration> {
        let mut t: Vec<Duration> = self.seen.iter().flatten().copied().collect();
        t.sort();
        let need = ((population as f64 * fraction).ceil() as usize).max(1);
        t.get(need - 1).copied()
    }
}

/// Index of a simulated node.
pub type NodeIx = usize;

enum Ev {
    Deliver {
        to: SocketAddr,
        from: SocketAddr,
        data: Vec<u8>,
    },
    Timer {
        node: NodeIx,
        life: u32,
        timer: TimerEvent,
    },
    /// The driver's join retry (as the agent's join loop): join again unless joined.
    JoinRetry {
        node: NodeIx,
        life: u32,
        via: NodeIx,
        backoff: Duration,
    },
}

struct Slot {
    name: String,
    addr: SocketAddr,
    tags: Tags,
    /// Bumped on every crash/restart, so timers of a previous life are dropped.
    life: u32,
    /// The identity version this life started with: every identity of this life (tag
    /// changes, renewals after being declared down) has this version or a later one.
    boot_version: u64,
    node: Option<Node>,
    /// Member events this node reported, with the virtual time.
    events: Vec<(Duration, MemberEvent)>,
}

/// The simulated cluster.
pub struct Sim {
    params: Params,
    now: Duration,
    /// Events by virtual time in nanoseconds, ties in the order they were pushed (integer
    /// deadlines: a `Duration` compares seconds, then nanoseconds; its compare was a quarter
    /// of the event loop's own time at 1,000 nodes).
    queue: DeadlineQueue<u64, Ev>,
    slots: Vec<Slot>,
    rng: SmallRng,
    /// With [`Params::topology`]: the regions, and each node's place (by slot).
    layout: Option<latency::Layout>,
    places: Vec<latency::Place>,
    /// One copy of each identity for all nodes (memory: N identities, not N squared).
    interner: gossip_core::Interner,
    trace: Fnv,
    /// Datagrams handed to the network, and bytes.
    pub packets_sent: u64,
    /// Bytes handed to the network.
    pub bytes_sent: u64,
    /// Bytes handed to the network by envelope kind ([`gossip_core::wire::Kind`], indexed by
    /// its byte; the last slot: a kind the build does not know).
    pub bytes_by_kind: [u64; Kind::ALL.len() + 1],
    /// Datagrams handed to the network by envelope kind (indexed as `bytes_by_kind`).
    pub packets_by_kind: [u64; Kind::ALL.len() + 1],
    /// Partition group of each node (0 = everyone, until [`Sim::partition`]).
    group: Vec<u32>,
    /// Blocked directions between groups, `(from, to)`.
    blocked: HashSet<(u32, u32)>,
    /// Extra delay (up to) for timers and packets of slow nodes.
    slow: Vec<Option<Duration>>,
    /// Facts being timed.
    watches: Vec<Watch>,
    /// The watches about each member, by name key: an event is checked against its
    /// member's watches only, not against every watch.
    watches_by_key: HashMap<NameKey, Vec<usize>, BuildHasherDefault<KeyHasher>>,
    /// The first slot of each name, by name key (a `Failed` event finds its subject here,
    /// not by a scan of every slot).
    slot_by_key: HashMap<NameKey, NodeIx, BuildHasherDefault<KeyHasher>>,
    /// Failures reported about members that were up and reachable from the observer.
    pub false_failures: u64,
    /// The false failures, as (observer, member, time), the first 100.
    pub false_failure_log: Vec<(String, String, Duration)>,
    /// Left identities, by name: a join of one of these versions or older is a resurrection.
    /// Keyed by name key, hashed to itself (SipHash over the name was 1.5 % of a formation:
    /// every join event looks here).
    left: HashMap<NameKey, u64, BuildHasherDefault<KeyHasher>>,
    /// Joins reported about identities that had left.
    pub resurrections: u64,
    /// When the last partition was lifted.
    healed_at: Option<Duration>,
    /// User events delivered: (node, its life, when, event).
    pub user_log: Vec<(NodeIx, u32, Duration, gossip_core::UserEvent)>,
    /// Query traffic reported: (node, when, what).
    pub query_log: Vec<(NodeIx, Duration, gossip_core::QueryOutput)>,
    /// With [`Params::record_packets`]: every datagram sent (lost or not) and injected, as
    /// (when, from, to, bytes).
    pub packets: Vec<(Duration, SocketAddr, SocketAddr, Vec<u8>)>,
    /// Member status changes reported ([`Output::Status`]): (node, when, member).
    pub status_log: Vec<(NodeIx, Duration, MemberInfo)>,
}

/// `d` in whole nanoseconds (virtual time stays far below the 584 years a `u64` holds).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The port every simulated node listens on.
const PORT: u16 = 7946;
/// Node 0's address, 10.0.0.1; node `i` is at `FIRST_ADDR + i`.
const FIRST_ADDR: u32 = 0x0a00_0001;

/// After a partition heals, failure verdicts within this window were formed while cut off.
pub const HEAL_GRACE: Duration = Duration::from_secs(30);

impl Sim {
    /// An empty cluster.
    pub fn new(params: Params) -> Self {
        let rng = SmallRng::seed_from_u64(params.seed);
        let layout = params
            .topology
            .clone()
            .map(|t| latency::Layout::new(t, params.seed));
        Self {
            layout,
            places: Vec::new(),
            params,
            now: Duration::ZERO,
            queue: DeadlineQueue::new(),
            slots: Vec::new(),
            rng,
            interner: gossip_core::Interner::new(),
            trace: Fnv::new(),
            packets_sent: 0,
            bytes_sent: 0,
            bytes_by_kind: [0; Kind::ALL.len() + 1],
            packets_by_kind: [0; Kind::ALL.len() + 1],
            group: Vec::new(),
            blocked: HashSet::new(),
            slow: Vec::new(),
            user_log: Vec::new(),
            packets: Vec::new(),
            status_log: Vec::new(),
            query_log: Vec::new(),
            watches: Vec::new(),
            watches_by_key: HashMap::default(),
            slot_by_key: HashMap::default(),
            false_failures: 0,
            false_failure_log: Vec::new(),
            left: HashMap::default(),
            resurrections: 0,
            healed_at: None,
        }
    }

    /// Changes packet loss and duplication from now on.
    pub fn set_network_faults(&mut self, loss: f64, dup: f64) {
        self.params.loss = loss;
        self.params.dup = dup;
    }

    /// Splits the cluster: node `ix` goes to group `groups[ix]`; traffic between different
    /// groups is dropped, both ways, or only from a lower to a higher group when `one_way`.
    pub fn partition(&mut self, groups: &[u32], one_way: bool) {
        self.group = groups.to_vec();
        self.group.resize(self.slots.len(), 0);
        self.blocked.clear();
        let mut ids: Vec<u32> = self.group.clone();
        ids.sort();
        ids.dedup();
        for &a in &ids {
            for &b in &ids {
                if a != b && (!one_way || a < b) {
                    self.blocked.insert((a, b));
                }
            }
        }
    }

    /// Lifts every partition. Failure verdicts in the following [`HEAL_GRACE`] come from
    /// suspicions formed while cut off, so they do not count as false failures.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.group.iter_mut().for_each(|g| *g = 0);
        self.healed_at = Some(self.now);
    }

    /// Makes node `ix` slow: its timers and incoming packets are handled up to `delay` late
    /// (uniformly drawn), as a CPU-starved process.
    pub fn set_slow(&mut self, ix: NodeIx, delay: Option<Duration>) {
        self.slow[ix] = delay;
    }

    /// True when node `ix` can currently send to node `to`.
    pub fn reachable(&self, ix: NodeIx, to: NodeIx) -> bool {
        self.blocked.is_empty() || !self.blocked.contains(&(self.group[ix], self.group[to]))
    }

    /// Starts timing a fact; returns its index for [`Sim::watch`].
    pub fn add_watch(&mut self, name: &str, kind: EventKind, min_version: u64) -> usize {
        let witnesses = self
            .slots
            .iter()
            .map(|s| (s.node.is_some() && s.name != name).then_some(s.life))
            .collect();
        self.watches_by_key
            .entry(NameKey::of(name))
            .or_default()
            .push(self.watches.len());
        self.watches.push(Watch {
            name: name.to_string(),
            kind,
            min_version,
            since: self.now,
            seen: vec![None; self.slots.len()],
            witnesses,
        });
        self.watches.len() - 1
    }

    /// A timed fact.
    pub fn watch(&self, w: usize) -> &Watch {
        &self.watches[w]
    }

    /// Stops timing every fact.
    pub fn clear_watches(&mut self) {
        self.watches.clear();
        self.watches_by_key.clear();
    }

    /// The current identity version of node `ix` (0 when down).
    pub fn version(&self, ix: NodeIx) -> u64 {
        self.node(ix).map_or(0, |n| n.identity().version())
    }

    /// How many nodes can still report watch `w`: up when the fact happened and still in that
    /// same life (not crashed or restarted since).
    pub fn witnesses(&self, w: usize) -> usize {
        self.watches[w]
            .witnesses
            .iter()
            .enumerate()
            .filter(|(i, l)| l.is_some_and(|l| self.is_up(*i) && self.slots[*i].life == l))
            .count()
    }

    /// Indexes of running nodes.
    pub fn up(&self) -> Vec<NodeIx> {
        (0..self.slots.len()).filter(|&i| self.is_up(i)).collect()
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.params.seed
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The node at `addr`, if any. Addresses are handed out in order (node 0 is
    /// 10.0.0.1:7946) and nodes are never removed, so this is arithmetic: a hash map looked
    /// up twice per datagram was 5 % of a formation.
    fn ix_at(&self, addr: SocketAddr) -> Option<NodeIx> {
        match addr {
            SocketAddr::V4(a) if a.port() == PORT => {
                let ix = u32::from(*a.ip()).checked_sub(FIRST_ADDR)? as usize;
                (ix < self.slots.len()).then_some(ix)
            }
            _ => None,
        }
    }

    /// Node `ix`'s place, with [`Params::topology`].
    pub fn place(&self, ix: NodeIx) -> Option<&latency::Place> {
        self.places.get(ix)
    }

    /// Starts a node named `name` with `tags` (alone; see [`Sim::join`]).
    pub fn add_node(&mut self, name: &str, tags: Tags) -> NodeIx {
        let ix = self.slots.len();
        self.slot_by_key.entry(NameKey::of(name)).or_insert(ix);
        let addr = SocketAddr::from((Ipv4Addr::from(FIRST_ADDR + ix as u32), PORT));
        self.slots.push(Slot {
            name: name.to_string(),
            addr,
            tags,
            life: 0,
            boot_version: 0,
            node: None,
            events: Vec::new(),
        });
        self.group.push(0);
        self.slow.push(None);
        if let Some(layout) = self.layout.as_mut() {
            self.places.push(layout.place());
        }
        self.boot(ix);
        ix
    }

    fn boot(&mut self, ix: NodeIx) {
        let seed = self.rng.random();
        let slot = &self.slots[ix];
        // The version is the boot time in ms plus one, as the agent uses the wall clock.
        let version = self.now.as_millis() as u64 + 1;
        let mut node = Node::new(
            &slot.name,
            slot.addr,
            version,
            slot.tags.clone(),
            self.params.config.clone(),
            seed,
        )
        .expect("simulated node names and tags are valid");
        node.share_identities(&self.interner);
        self.slots[ix].node = Some(node);
        self.slots[ix].boot_version = version;
        self.drain(ix);
    }

    /// Asks node `ix` to join through node `via`, retrying as the agent does
    /// ([`Params::join_backoff`]) until some member accepted it.
    pub fn join(&mut self, ix: NodeIx, via: NodeIx) {
        self.join_once(ix, via);
        let life = self.slots[ix].life;
        let backoff = self.params.join_backoff.first;
        self.push(
            self.now + backoff,
            Ev::JoinRetry {
                node: ix,
                life,
                via,
                backoff,
            },
        );
    }

    fn join_once(&mut self, ix: NodeIx, via: NodeIx) {
        let to = self.slots[via].addr;
        if let Some(n) = self.slots[ix].node.as_mut() {
            n.join(&[to]).expect("join before leave");
        }
        self.drain(ix);
    }

    /// Node `ix` leaves gracefully (the core keeps running to retransmit its notices).
    pub fn leave(&mut self, ix: NodeIx) {
        if let Some(n) = self.slots[ix].node.as_mut() {
            n.leave().expect("leave once");
        }
        self.drain(ix);
    }

    /// Stops node `ix` for good after a graceful leave, like the agent exiting.
    pub fn stop(&mut self, ix: NodeIx) {
        self.crash(ix);
    }

    /// Node `ix` changes its tags.
    pub fn set_tags(&mut self, ix: NodeIx, tags: Tags) {
        self.slots[ix].tags = tags.clone();
        if let Some(n) = self.slots[ix].node.as_mut() {
            n.set_tags(tags).expect("valid tags");
        }
        self.drain(ix);
    }

    /// Node `ix` sends a user event; returns its Lamport time.
    pub fn user_event(&mut self, ix: NodeIx, name: &str, payload: &[u8]) -> u64 {
        let ltime = self.slots[ix]
            .node
            .as_mut()
            .expect("a running node")
            .user_event(name, payload, true)
            .expect("a valid event");
        self.drain(ix);
        ltime
    }

    /// Node `ix` asks `targets` the query `name`; returns its id.
    pub fn query(
        &mut self,
        ix: NodeIx,
        name: &str,
        payload: &[u8],
        targets: &[NodeIx],
        timeout: Duration,
    ) -> u64 {
        let ids: Vec<gossip_core::NodeId> = targets
            .iter()
            .filter_map(|&t| self.slots[t].node.as_ref().map(|n| n.identity().clone()))
            .collect();
        let id = self.slots[ix]
            .node
            .as_mut()
            .expect("a running node")
            .query(name, payload, &ids, timeout)
            .expect("a valid query");
        self.drain(ix);
        id
    }

    /// Node `ix` answers the query `ltime` from `origin`.
    pub fn respond(&mut self, ix: NodeIx, origin: SocketAddr, ltime: u64, payload: &[u8]) {
        if let Some(n) = self.slots[ix].node.as_mut() {
            n.respond(origin, ltime, payload).expect("a valid answer");
            self.drain(ix);
        }
    }

    /// Node `ix` force-leaves the member `name` (Serf's `force-leave`); true when it was failed.
    pub fn force_leave(&mut self, ix: NodeIx, name: &str) -> bool {
        let done = self.slots[ix]
            .node
            .as_mut()
            .expect("a running node")
            .force_leave(name)
            .expect("not left");
        self.drain(ix);
        done
    }

    /// Node `ix` dies at once: no leave, its timers and in-flight packets to it vanish.
    pub fn crash(&mut self, ix: NodeIx) {
        self.slots[ix].node = None;
        self.slots[ix].life += 1;
    }

    /// Restarts a crashed node `ix` under its name, with a newer version, and joins via `via`.
    pub fn restart(&mut self, ix: NodeIx, via: NodeIx) {
        assert!(self.slots[ix].node.is_none(), "restart of a running node");
        self.boot(ix);
        self.join(ix, via);
    }

    /// Restarts a crashed node `ix` under its name, joining nobody (a seed).
    pub fn restart_alone(&mut self, ix: NodeIx) {
        assert!(self.slots[ix].node.is_none(), "restart of a running node");
        self.boot(ix);
    }

    /// True when node `ix` runs.
    pub fn is_up(&self, ix: NodeIx) -> bool {
        self.slots[ix].node.is_some()
    }

    /// The running node `ix`.
    pub fn node(&self, ix: NodeIx) -> Option<&Node> {
        self.slots[ix].node.as_ref()
    }

    /// Node `ix`'s name.
    pub fn name(&self, ix: NodeIx) -> &str {
        &self.slots[ix].name
    }

    /// Number of nodes ever added.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no node was added.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Node `ix`'s view of `name`, if it knows it.
    pub fn view(&self, ix: NodeIx, name: &str) -> Option<MemberInfo> {
        self.node(ix)?.member(name)
    }

    /// The member events node `ix` reported, with their virtual times.
    pub fn events(&self, ix: NodeIx) -> &[(Duration, MemberEvent)] {
        &self.slots[ix].events
    }

    /// A hash of every member event of every node so far, with times.
    pub fn trace_hash(&self) -> u64 {
        self.trace.0
    }

    /// Node `ix`'s address.
    pub fn addr(&self, ix: NodeIx) -> SocketAddr {
        self.slots[ix].addr
    }

    /// Hands node `ix` a datagram from `from` now (any address: a forged or outside sender),
    /// and carries out what it makes of it. False when the node is down.
    pub fn inject(&mut self, ix: NodeIx, from: SocketAddr, data: &[u8]) -> bool {
        if self.params.record_packets {
            self.packets
                .push((self.now, from, self.slots[ix].addr, data.to_vec()));
        }
        let Some(n) = self.slots[ix].node.as_mut() else {
            return false;
        };
        let _ = n.handle_packet(self.now, from, data);
        self.drain(ix);
        true
    }

    /// Calls `f` on node `ix` (a command the simulator has no method for), then carries out
    /// its outputs. `None` when the node is down.
    pub fn with_node<R>(&mut self, ix: NodeIx, f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        let r = f(self.slots[ix].node.as_mut()?);
        self.drain(ix);
        Some(r)
    }

    /// Runs events until virtual time `until`.
    pub fn run_until(&mut self, until: Duration) {
        let until_ns = nanos(until);
        while let Some((at, ev)) = self.queue.pop_due(until_ns) {
            self.now = Duration::from_nanos(at);
            self.step(ev);
        }
        self.now = until;
    }

    /// Runs events for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs in steps of `step` until `pred` holds or `limit` of virtual time passed; returns
    /// the virtual time it took, or `None`.
    pub fn run_until_true(
        &mut self,
        step: Duration,
        limit: Duration,
        mut pred: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        loop {
            if pred(self) {
                return Some(self.now - start);
            }
            if self.now - start >= limit {
                return None;
            }
            self.run_for(step);
        }
    }

    /// True when every running node sees `name` with `status` (itself excluded).
    pub fn all_see(&self, name: &str, status: Status) -> bool {
        self.slots.iter().enumerate().all(|(ix, s)| {
            s.node.is_none()
                || s.name == name
                || self.view(ix, name).is_some_and(|m| m.status == status)
        })
    }

    /// True when every running node lists every other running node alive with its current
    /// tags.
    pub fn converged(&self) -> bool {
        let up = self.slots.iter().filter(|s| s.node.is_some()).count();
        // A cheap necessary condition first (one count per node: a node that counts fewer
        // live members than are up cannot list them all alive), so that polling while the
        // cluster is still forming costs O(N), not O(N^2).
        if self
            .slots
            .iter()
            .filter_map(|s| s.node.as_ref())
            .any(|n| n.live_members() < up)
        {
            return false;
        }
        // Keyed by name key, hashed to itself (it is already a hash): SipHash here was 2 %
        // of a formation, polled at every step.
        let truth: HashMap<
            gossip_core::identity::NameKey,
            &gossip_core::NodeId,
            std::hash::BuildHasherDefault<gossip_core::identity::KeyHasher>,
        > = self
            .slots
            .iter()
            .filter_map(|s| {
                let id = s.node.as_ref()?.identity();
                Some((id.key(), id))
            })
            .collect();
        self.slots.iter().filter_map(|s| s.node.as_ref()).all(|n| {
            let mut alive = 0;
            for (id, status) in n.member_states() {
                if status == Status::Alive {
                    // Identity equality: name key and content fingerprint, so the current
                    // version and tags, without reading the identity's content.
                    if truth.get(&id.key()) != Some(&id) {
                        return false;
                    }
                    alive += 1;
                }
            }
            alive == truth.len()
        })
    }

    /// Why [`Sim::converged`] fails: up to `max` lines "observer: member seen as X, is Y".
    pub fn disagreements(&self, max: usize) -> Vec<String> {
        let truth: HashMap<gossip_core::identity::NameKey, (u64, &str)> = self
            .slots
            .iter()
            .filter_map(|s| {
                let id = s.node.as_ref()?.identity();
                Some((id.key(), (id.version(), s.name.as_str())))
            })
            .collect();
        let mut out = Vec::new();
        for s in self.slots.iter().filter(|s| s.node.is_some()) {
            let n = s.node.as_ref().expect("filtered");
            let mut seen = 0;
            for (id, status) in n.member_states() {
                let t = truth.get(&id.key());
                if status == Status::Alive {
                    if t.map(|t| t.0) != Some(id.version()) {
                        out.push(format!(
                            "{}: {} alive at v{} but is {:?}",
                            s.name,
                            id.name(),
                            id.version(),
                            t.map(|t| t.0)
                        ));
                    } else {
                        seen += 1;
                    }
                } else if t.is_some_and(|t| t.0 == id.version()) {
                    out.push(format!("{}: {} seen {status} but is up", s.name, id.name()));
                }
            }
            if seen < truth.len() {
                out.push(format!("{}: sees {seen} of {} alive", s.name, truth.len()));
            }
            if out.len() >= max {
                break;
            }
        }
        out
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, from, data } => {
                let Some(ix) = self.ix_at(to) else {
                    return;
                };
                if let Some(src) = self.ix_at(from)
                    && !self.reachable(src, ix)
                {
                    return;
                }
                if let Some(n) = self.slots[ix].node.as_mut() {
                    let _ = n.handle_packet(self.now, from, &data);
                    self.drain(ix);
                }
            }
            Ev::JoinRetry {
                node,
                life,
                via,
                backoff,
            } => {
                let pending = self.slots[node].life == life
                    && self.slots[node]
                        .node
                        .as_ref()
                        .is_some_and(|n| !n.is_joined() && !n.has_left());
                if pending {
                    self.join_once(node, via);
                    let backoff = self.params.join_backoff.next(backoff);
                    self.push(
                        self.now + backoff,
                        Ev::JoinRetry {
                            node,
                            life,
                            via,
                            backoff,
                        },
                    );
                }
            }
            Ev::Timer { node, life, timer } => {
                if self.slots[node].life != life {
                    return;
                }
                if let Some(n) = self.slots[node].node.as_mut() {
                    n.handle_timer(self.now, timer);
                    self.drain(node);
                }
            }
        }
    }

    fn push(&mut self, at: Duration, ev: Ev) {
        self.queue.push(nanos(at), ev);
    }

    fn drain(&mut self, ix: NodeIx) {
        let from = self.slots[ix].addr;
        let life = self.slots[ix].life;
        while let Some(out) = self.slots[ix].node.as_mut().and_then(Node::poll) {
            match out {
                Output::Transmit { to, data } => {
                    if self.params.record_packets {
                        self.packets.push((self.now, from, to, data.clone()));
                    }
                    self.packets_sent += 1;
                    self.bytes_sent += data.len() as u64;
                    let slot = Kind::of_packet(&data).map_or(Kind::ALL.len(), |k| k as usize);
                    self.bytes_by_kind[slot] += data.len() as u64;
                    self.packets_by_kind[slot] += 1;
                    if self.params.loss > 0.0 && self.rng.random_bool(self.params.loss) {
                        continue;
                    }
                    let dest = self.ix_at(to);
                    if self.params.dup > 0.0 && self.rng.random_bool(self.params.dup) {
                        let lat = self.latency(ix, dest);
                        self.push(
                            self.now + lat,
                            Ev::Deliver {
                                to,
                                from,
                                data: data.clone(),
                            },
                        );
                    }
                    let lat = self.latency(ix, dest);
                    self.push(self.now + lat, Ev::Deliver { to, from, data });
                }
                Output::Timer { after, timer } => {
                    let mut at = self.now + after;
                    if let Some(slow) = self.slow[ix] {
                        at += self.rng.random_range(Duration::ZERO..=slow);
                    }
                    self.push(
                        at,
                        Ev::Timer {
                            node: ix,
                            life,
                            timer,
                        },
                    );
                }
                Output::Event(e) => {
                    self.observe(ix, &e);
                    self.fold_trace(ix, &e);
                    if self.params.record_events {
                        self.slots[ix].events.push((self.now, e));
                    }
                }
                Output::User(e) => {
                    let mut bytes = Vec::new();
                    bytes.extend_from_slice(&(self.now.as_nanos() as u64).to_le_bytes());
                    bytes.extend_from_slice(&(ix as u64).to_le_bytes());
                    bytes.extend_from_slice(&e.ltime.to_le_bytes());
                    bytes.extend_from_slice(e.name.as_bytes());
                    self.fold_bytes(&bytes);
                    self.user_log.push((ix, self.slots[ix].life, self.now, e));
                }
                Output::Query(q) => {
                    let mut bytes = Vec::new();
                    bytes.extend_from_slice(&(self.now.as_nanos() as u64).to_le_bytes());
                    bytes.extend_from_slice(&(ix as u64).to_le_bytes());
                    bytes.extend_from_slice(format!("{q:?}").as_bytes());
                    self.fold_bytes(&bytes);
                    self.query_log.push((ix, self.now, q));
                }
                // Suspect and alive-again transitions change no decision; the trace (what
                // handlers hear) leaves them out.
                Output::Status(m) => {
                    if self.params.record_events {
                        self.status_log.push((ix, self.now, m));
                    }
                }
            }
        }
    }

    /// One-way latency from node `src` to node `dest`, plus its slowness.
    fn latency(&mut self, src: NodeIx, dest: Option<NodeIx>) -> Duration {
        let mut lat = match (&self.params.topology, dest) {
            (Some(t), Some(d)) => t.one_way(&self.places[src], &self.places[d], &mut self.rng),
            _ => self
                .rng
                .random_range(self.params.latency_min..=self.params.latency_max),
        };
        if let Some(Some(slow)) = dest.map(|d| self.slow[d]) {
            lat += self.rng.random_range(Duration::ZERO..=slow);
        }
        lat
    }

    /// Updates watches and safety counters with one event reported by node `ix`.
    fn observe(&mut self, ix: NodeIx, e: &MemberEvent) {
        let name = e.member.name();
        let version = e.member.id.version();
        let key = e.member.id.key();
        for &i in self.watches_by_key.get(&key).into_iter().flatten() {
            let w = &mut self.watches[i];
            if w.kind == e.kind && w.name == name && version >= w.min_version {
                if w.seen.len() <= ix {
                    w.seen.resize(ix + 1, None);
                }
                if w.seen[ix].is_none() {
                    w.seen[ix] = Some(self.now - w.since);
                }
            }
        }
        match e.kind {
            EventKind::Failed => {
                let subject = match self.slot_by_key.get(&key) {
                    Some(&m) if self.slots[m].name == name => Some(m),
                    // Not a simulated node, or another name with the same key: scan.
                    _ => self.slots.iter().position(|s| s.name == name),
                };
                // An identity of the subject's current life: it was up all along (a node
                // declared down renews its identity at once, so comparing with its current
                // version would miss exactly those verdicts).
                if let Some(m) = subject
                    && m != ix
                    && self.is_up(m)
                    && self.slots[m].boot_version <= version
                    && !self.slots[m].node.as_ref().is_some_and(Node::has_left)
                    && self.reachable(ix, m)
                    && self.reachable(m, ix)
                    && self.healed_at.is_none_or(|h| self.now >= h + HEAL_GRACE)
                {
                    self.false_failures += 1;
                    if self.false_failure_log.len() < 100 {
                        let observer = self.slots[ix].name.clone();
                        self.false_failure_log
                            .push((observer, name.to_string(), self.now));
                    }
                }
            }
            EventKind::Leave => {
                let v = self.left.entry(e.member.id.key()).or_insert(0);
                *v = (*v).max(version);
            }
            EventKind::Join
                if self
                    .left
                    .get(&e.member.id.key())
                    .is_some_and(|&v| version <= v) =>
            {
                self.resurrections += 1;
            }
            _ => {}
        }
    }

    fn fold_trace(&mut self, ix: NodeIx, e: &MemberEvent) {
        let kind = match e.kind {
            EventKind::Join => 1u8,
            EventKind::Leave => 2,
            EventKind::Failed => 3,
            EventKind::Update => 4,
            EventKind::Reap => 5,
        };
        // Folded piece by piece, not gathered into a `Vec` first: the same bytes in the same
        // order (so the same hash), without an allocation and its growth per member event
        // (5 % of a 1,000-node formation).
        self.fold_bytes(&(self.now.as_nanos() as u64).to_le_bytes());
        self.fold_bytes(&(ix as u64).to_le_bytes());
        self.fold_bytes(&[kind]);
        self.fold_bytes(e.member.name().as_bytes());
        self.fold_bytes(&e.member.id.version().to_le_bytes());
    }

    fn fold_bytes(&mut self, bytes: &[u8]) {
        self.trace.write(bytes);
    }
}

/// Tags with just a role.
pub fn role(r: &str) -> Tags {
    Tags::from([("role".to_string(), r.to_string())])
}
