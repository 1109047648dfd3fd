//! A discrete-event simulator that drives many instances of the real core
//! ([`gossip_core::Node`]) over a simulated network, in virtual time, reproducibly from a seed.
//!
//! Events (datagram deliveries and timers) wait in a heap ordered by `(at, seq)`; `seq` is a
//! global counter, so equal deadlines run in the order they were scheduled and a run is a pure
//! function of its seed and the operations applied. Nodes can crash (their pending timers and
//! packets vanish) and restart under the same name with a newer version.
//!
//! Every member event every node reports is folded into a trace hash ([`Sim::trace_hash`]):
//! two runs with one seed must give one hash.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use gossip_core::{
    CoreConfig, EventKind, MemberEvent, MemberInfo, Node, Output, Status, Tags, TimerEvent,
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
    /// The core configuration every node runs.
    pub config: CoreConfig,
}

impl Params {
    /// A LAN-like network: 0.1 to 1 ms latency, no loss, the `lan` profile.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_millis(1),
            loss: 0.0,
            config: CoreConfig::default(),
        }
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
}

struct Slot {
    name: String,
    addr: SocketAddr,
    tags: Tags,
    /// Bumped on every crash/restart, so timers of a previous life are dropped.
    life: u32,
    node: Option<Node>,
    /// Member events this node reported, with the virtual time.
    events: Vec<(Duration, MemberEvent)>,
}

/// The simulated cluster.
pub struct Sim {
    params: Params,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    /// Event payloads by heap key (kept out of the heap so `Ev` needs no ordering).
    pending: HashMap<usize, Ev>,
    next_key: usize,
    slots: Vec<Slot>,
    by_addr: HashMap<SocketAddr, NodeIx>,
    rng: SmallRng,
    trace: u64,
    /// Datagrams handed to the network, and bytes.
    pub packets_sent: u64,
    /// Bytes handed to the network.
    pub bytes_sent: u64,
}

impl Sim {
    /// An empty cluster.
    pub fn new(params: Params) -> Self {
        let rng = SmallRng::seed_from_u64(params.seed);
        Self {
            params,
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            next_key: 0,
            slots: Vec::new(),
            by_addr: HashMap::new(),
            rng,
            trace: 0xcbf2_9ce4_8422_2325,
            packets_sent: 0,
            bytes_sent: 0,
        }
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.params.seed
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Starts a node named `name` with `tags` (alone; see [`Sim::join`]).
    pub fn add_node(&mut self, name: &str, tags: Tags) -> NodeIx {
        let ix = self.slots.len();
        let addr = SocketAddr::from((Ipv4Addr::from(0x0a00_0000u32 + ix as u32 + 1), 7946));
        self.slots.push(Slot {
            name: name.to_string(),
            addr,
            tags,
            life: 0,
            node: None,
            events: Vec::new(),
        });
        self.by_addr.insert(addr, ix);
        self.boot(ix);
        ix
    }

    fn boot(&mut self, ix: NodeIx) {
        let seed = self.rng.random();
        let slot = &self.slots[ix];
        // The version is the boot time in ms plus one, as the agent uses the wall clock.
        let version = self.now.as_millis() as u64 + 1;
        let node = Node::new(
            &slot.name,
            slot.addr,
            version,
            slot.tags.clone(),
            self.params.config.clone(),
            seed,
        )
        .expect("simulated node names and tags are valid");
        self.slots[ix].node = Some(node);
        self.drain(ix);
    }

    /// Asks node `ix` to join through node `via`.
    pub fn join(&mut self, ix: NodeIx, via: NodeIx) {
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
        self.node(ix)?
            .members()
            .into_iter()
            .find(|m| m.name() == name)
    }

    /// The member events node `ix` reported, with their virtual times.
    pub fn events(&self, ix: NodeIx) -> &[(Duration, MemberEvent)] {
        &self.slots[ix].events
    }

    /// A hash of every member event of every node so far, with times.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// Runs events until virtual time `until`.
    pub fn run_until(&mut self, until: Duration) {
        while let Some(Reverse((at, _, key))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            let ev = self.pending.remove(&key).expect("every key has its event");
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
        let live: Vec<&Slot> = self.slots.iter().filter(|s| s.node.is_some()).collect();
        live.iter().all(|s| {
            let members = s.node.as_ref().expect("filtered").members();
            live.iter().all(|o| {
                members
                    .iter()
                    .any(|m| m.name() == o.name && m.status == Status::Alive && m.tags() == &o.tags)
            })
        })
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, from, data } => {
                let Some(&ix) = self.by_addr.get(&to) else {
                    return;
                };
                if let Some(n) = self.slots[ix].node.as_mut() {
                    let _ = n.handle_packet(from, &data);
                    self.drain(ix);
                }
            }
            Ev::Timer { node, life, timer } => {
                if self.slots[node].life != life {
                    return;
                }
                if let Some(n) = self.slots[node].node.as_mut() {
                    n.handle_timer(timer);
                    self.drain(node);
                }
            }
        }
    }

    fn push(&mut self, at: Duration, ev: Ev) {
        let key = self.next_key;
        self.next_key += 1;
        self.seq += 1;
        self.pending.insert(key, ev);
        self.queue.push(Reverse((at, self.seq, key)));
    }

    fn drain(&mut self, ix: NodeIx) {
        let from = self.slots[ix].addr;
        let life = self.slots[ix].life;
        while let Some(out) = self.slots[ix].node.as_mut().and_then(Node::poll) {
            match out {
                Output::Transmit { to, data } => {
                    self.packets_sent += 1;
                    self.bytes_sent += data.len() as u64;
                    if self.params.loss > 0.0 && self.rng.random_bool(self.params.loss) {
                        continue;
                    }
                    let lat = self
                        .rng
                        .random_range(self.params.latency_min..=self.params.latency_max);
                    self.push(self.now + lat, Ev::Deliver { to, from, data });
                }
                Output::Timer { after, timer } => {
                    self.push(
                        self.now + after,
                        Ev::Timer {
                            node: ix,
                            life,
                            timer,
                        },
                    );
                }
                Output::Event(e) => {
                    self.fold_trace(ix, &e);
                    self.slots[ix].events.push((self.now, e));
                }
            }
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
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(self.now.as_nanos() as u64).to_le_bytes());
        bytes.extend_from_slice(&(ix as u64).to_le_bytes());
        bytes.push(kind);
        bytes.extend_from_slice(e.member.name().as_bytes());
        bytes.extend_from_slice(&e.member.id.version().to_le_bytes());
        for b in bytes {
            // FNV-1a: stable across processes and builds, unlike std's hasher.
            self.trace ^= u64::from(b);
            self.trace = self.trace.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Tags with just a role.
pub fn role(r: &str) -> Tags {
    Tags::from([("role".to_string(), r.to_string())])
}
