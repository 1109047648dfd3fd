//! [`Node`]: one cluster member's protocol state, sans IO.
//!
//! A driver (the tokio agent, or the simulator) owns a `Node` and feeds it three kinds of
//! input: packets ([`Node::handle_packet`]), timers it was asked to schedule
//! ([`Node::handle_timer`]) and local commands ([`Node::join`], [`Node::set_tags`],
//! [`Node::leave`]). After every call it drains [`Node::poll`] until `None`, and acts on each
//! [`Output`]: send a datagram, schedule a timer (relative delay; deliver timers in deadline
//! order, ties in the order they were requested), or hand a membership event to handlers.
//!
//! The node keeps no clock and no thread RNG: randomness comes from the seed given to
//! [`Node::new`], the identity version from the driver, and every collection it iterates for
//! a decision keeps insertion order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use foca::{AccumulatingRuntime, Foca, Member, NoCustomBroadcast, OwnedNotification, State};
use hashbrown::hash_table::Entry;
use indexmap::IndexMap;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::config::{CoreConfig, Suspicion};
use crate::error::{CommandError, DropReason};
use crate::identity::{Fnv, NameKey, NodeId, Tags, validate_tags};
use crate::member::{EventKind, MemberEvent, MemberInfo, Status};
use crate::table::{KeyTable, Keyed};
use crate::wire::{self, Kind, Notice, NoticeAck, SharedDirectory, ValidatingCodec};

/// A timer the driver must deliver back through [`Node::handle_timer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerEvent {
    /// One of foca's own timers.
    Foca(foca::Timer<NodeId>),
    /// Time for a periodic push-pull (by digest).
    PushPull,
    /// A second of quiet after the first full state from this address (a join's answer):
    /// exchange digests with it, so members in a lost part of its answer, and members that
    /// joined alongside us, arrive now rather than at the next periodic push-pull.
    JoinFollowUp(SocketAddr),
    /// A few seconds after a join's follow-up, one more digest exchange, with a random
    /// member: joiners a little later than the follow-up whose notices could not name us
    /// (they passed through members that had not heard of us yet) arrive now.
    JoinFollowUpLate,
    /// The deadline of our query with this Lamport time.
    QueryDeadline(u64),
    /// Found by members (a restart) but no full state has arrived yet: ask a member again.
    /// Carries the attempt number.
    StateRetry(u32),
    /// Retransmit the notice with this sequence number to members that did not ack it.
    NoticeRetry(u64),
    /// Tell every known member about our identity, shortly after a member first accepted it
    /// (the short delay lets the rest of a full-state answer arrive first).
    AnnounceSelf,
    /// Lifeguard: lower the local health multiplier by one.
    HealthDecay,
    /// Announce ourselves to one failed member that was reaped (see [`Node::lost_members`]).
    Reconnect,
    /// A suspicion's early verdict: when the suspect sent us nothing since we learnt of the
    /// suspicion (our own notices to it unanswered), this foca timer is handled now rather
    /// than at the full suspicion timeout.
    SuspectUnconfirmed(foca::Timer<NodeId>),
}

/// An effect the driver must carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `data` as one datagram to `to`.
    Transmit {
        /// Destination.
        to: SocketAddr,
        /// The datagram.
        data: Vec<u8>,
    },
    /// Deliver `timer` back after `after`.
    Timer {
        /// Delay from now.
        after: Duration,
        /// The timer.
        timer: TimerEvent,
    },
    /// A membership change.
    Event(MemberEvent),
    /// A user event, delivered once per event (this node's own included).
    User(crate::user::UserEvent),
    /// Query traffic: one for our handlers, or acks, answers and the end of ours.
    Query(crate::query::QueryOutput),
}

/// Counters of traffic and dropped input, for `info` and the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Datagrams received.
    pub packets_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams sent.
    pub packets_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Dropped: larger than the packet size limit.
    pub dropped_oversize: u64,
    /// Dropped: not ours (bad magic).
    pub dropped_foreign: u64,
    /// Dropped: unsupported wire version.
    pub dropped_version: u64,
    /// Dropped: could not be decoded or broke the identity rules.
    pub dropped_malformed: u64,
    /// Dropped: refused by the protocol (from ourselves, for a stale identity, ...).
    pub dropped_protocol: u64,
    /// Dropped: a foca packet for another member (its destination is not this node).
    #[serde(default)]
    pub dropped_misaddressed: u64,
    /// Dropped: from, or about, a reaped member's last identity or an older one (a replay).
    #[serde(default)]
    pub dropped_buried: u64,
    /// Announcements sent to reaped failed members (partition healing).
    #[serde(default)]
    pub reconnects: u64,
    /// Datagrams held until their destination echoed a challenge (anti-amplification).
    #[serde(default)]
    pub limited_held: u64,
    /// Datagrams dropped by the anti-amplification limit (no room to hold them).
    #[serde(default)]
    pub limited_dropped: u64,
    /// Challenges sent to unvalidated sources.
    #[serde(default)]
    pub challenges: u64,
    /// Sources validated by echoing a challenge.
    #[serde(default)]
    pub validated: u64,
}

impl Stats {
    /// All dropped packets.
    pub fn dropped(&self) -> u64 {
        self.dropped_oversize
            + self.dropped_foreign
            + self.dropped_version
            + self.dropped_malformed
            + self.dropped_protocol
            + self.dropped_misaddressed
            + self.dropped_buried
    }

    fn count_drop(&mut self, reason: &DropReason) {
        let c = match reason {
            DropReason::Oversize(_) => &mut self.dropped_oversize,
            DropReason::Foreign => &mut self.dropped_foreign,
            DropReason::Version(_) => &mut self.dropped_version,
            DropReason::Malformed(_) => &mut self.dropped_malformed,
            DropReason::Protocol(_) => &mut self.dropped_protocol,
            DropReason::Misaddressed => &mut self.dropped_misaddressed,
            DropReason::Buried => &mut self.dropped_buried,
        };
        *c += 1;
    }
}

struct Record {
    id: NodeId,
    status: Status,
}

impl Keyed for Record {
    fn name_key(&self) -> NameKey {
        self.id.key()
    }
}

struct PendingNotice {
    data: Vec<u8>,
    /// The packets of targets that got their own (with a forward list) instead of `data`,
    /// with the addresses on that list: if such a target never acknowledges, they are told
    /// directly.
    own: BTreeMap<SocketAddr, (Vec<u8>, Vec<SocketAddr>)>,
    /// Destination and transmissions so far.
    targets: IndexMap<SocketAddr, u32>,
    /// Transmissions per destination before giving up.
    attempts: u32,
}

type FocaNode = Foca<NodeId, ValidatingCodec, SmallRng, NoCustomBroadcast>;

/// One member's protocol state. See the module documentation for how to drive it.
pub struct Node {
    foca: FocaNode,
    rt: AccumulatingRuntime<NodeId>,
    config: CoreConfig,
    foca_config: foca::Config,
    /// The cluster size `foca_config` was last worked out for ([`Node::resize`]).
    sized_for: usize,
    rng: SmallRng,
    /// Every other member we have reported, by name key (iterated in no useful order: what
    /// depends on the order sorts).
    members: KeyTable<Record>,
    outputs: VecDeque<Output>,
    stats: Stats,
    left: bool,
    notice_seq: u64,
    notices: BTreeMap<u64, PendingNotice>,
    /// The identity we last sent a notice about (None before the first).
    announced: Option<NodeId>,
    /// Addresses that answered a join or push-pull with their state, oldest first (bounded).
    answered: indexmap::IndexSet<SocketAddr>,
    /// Lifeguard's local health multiplier: recent suspicions this node raised.
    health: u32,
    /// Suspects (by address) awaiting an early verdict, and whether they sent us anything
    /// since we learnt of the suspicion.
    unconfirmed: BTreeMap<SocketAddr, bool>,
    /// The sequence number of our leave notice, once left.
    leave_notice: Option<u64>,
    /// Identities known in full, shared with the codec (compact references on the wire).
    dir: SharedDirectory,
    /// Members this node suspected itself (its own probe failed): when it declares one of
    /// them failed, it tells every member directly, as for a leave.
    raised: std::collections::BTreeSet<NameKey>,
    /// True while foca handles one of its timers (a suspicion scheduled then is ours).
    in_foca_timer: bool,
    /// User events: Lamport clock and recently seen events.
    events: crate::user::EventBuffer,
    /// Query Lamport clock.
    query_clock: crate::clock::LamportClock,
    /// Addresses we sent a join or push-pull request to (a full state or digest asking for an
    /// answer) and that have not answered yet, oldest first (bounded): the clocks in their
    /// answer are taken whole (see [`crate::clock`]).
    awaiting: indexmap::IndexSet<SocketAddr>,
    /// Queries we asked, until done, by Lamport time.
    queries: BTreeMap<u64, crate::query::Pending>,
    /// Sequence numbers of our query packets, to their query.
    query_seqs: BTreeMap<u64, u64>,
    /// Queries received lately.
    queries_seen: crate::query::Seen,
    /// Failed members that were reaped, by name, with the reconnect tick they were lost at:
    /// still announced to now and then, so the halves of a partition longer than the reap
    /// timeout find each other again (Serf stops trying at the reap: serf#605, serf#333).
    lost: BTreeMap<Arc<str>, (NodeId, u64)>,
    /// Notices we passed on, by sender and sequence number (bounded): a retransmission
    /// of one whose ack was lost is not passed on again.
    /// Each is named by [`notice_tag`] (8 bytes, not the 40 of an address and a number: at
    /// 10,000 simulated nodes each holds 1,024 of them).
    forwarded: BTreeSet<u64>,
    /// The same, oldest first.
    forwarded_order: VecDeque<u64>,
    /// Reconnect ticks so far; a tick is scheduled while `lost` is not empty.
    reconnect_ticks: u64,
    reconnect_scheduled: bool,
    /// Anti-amplification: what unvalidated sources may be sent ([`crate::validate`]).
    limiter: crate::validate::Limiter,
    /// The datagram being handled: its source, its size, and whether a member vouches for
    /// the source (see [`Node::vouch`]).
    reply: Option<Reply>,
}

/// The source of the datagram being handled, for the anti-amplification limit.
#[derive(Debug, Clone, Copy)]
struct Reply {
    to: SocketAddr,
    len: usize,
    /// A member at this address sent it: not limited.
    vouched: bool,
    /// Its bytes were counted in the limiter.
    counted: bool,
}

/// Room for effects kept between calls; a burst's extra room is given back.
const OUTPUTS_KEPT: usize = 64;

/// How many reaped failed members [`Node`] keeps trying to reconnect to.
const LOST_MAX: usize = 1024;

/// Delay from a join's first answer to the digest exchange that repairs any lost part of it.
const JOIN_FOLLOW_UP: Duration = Duration::from_secs(1);

/// Delay from a join's follow-up to the second, late one.
const JOIN_FOLLOW_UP_LATE: Duration = Duration::from_secs(4);

/// How many times a node found by members asks for the full state before leaving it to the
/// periodic push-pull.
const STATE_RETRIES: u32 = 5;

/// Names a notice by its sender's address and sequence number in 8 bytes: FNV-1a over the
/// address's octets, its port and the number. Two notices with one tag (about 1 in 10^19 a
/// pair, or crafted) would make the second look passed on already: its forward list would
/// then not get it from us, and its sender tells those members directly when they do not
/// acknowledge (see [`PendingNotice::own`]).
fn notice_tag(from: SocketAddr, seq: u64) -> u64 {
    let ip = match from.ip() {
        std::net::IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(ip) => ip.octets(),
    };
    let mut h = Fnv::new();
    h.write(&ip);
    h.write(&from.port().to_le_bytes());
    h.write(&seq.to_le_bytes());
    h.0
}

/// How many passed-on notices [`Node`] remembers.
const FORWARDED_MAX: usize = 1024;

/// How many answering addresses [`Node::has_answered`] remembers.
const ANSWERED_MAX: usize = 256;

/// How many unanswered join and push-pull requests [`Node`] remembers.
const AWAITING_MAX: usize = 256;

impl Node {
    /// A node that is alone until it joins. `version` must grow across restarts of the same
    /// name (the agent passes the wall clock in milliseconds); `seed` feeds every random
    /// choice. Emits a `Join` event for itself and schedules its first timers.
    pub fn new(
        name: &str,
        addr: SocketAddr,
        version: u64,
        tags: Tags,
        config: CoreConfig,
        seed: u64,
    ) -> Result<Self, CommandError> {
        let id = NodeId::new(name, addr, version, tags, &config.limits)?;
        let foca_config = config.foca_config(1);
        let mut rng = SmallRng::seed_from_u64(seed);
        let foca_rng = SmallRng::seed_from_u64(rng.random());
        let secret: [u8; 32] = rng.random();
        let dir = SharedDirectory::default();
        dir.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .set_me(&id);
        let foca = Foca::new(
            id.clone(),
            foca_config.clone(),
            foca_rng,
            ValidatingCodec::with_directory(config.limits, dir.clone()),
        );
        let mut node = Self {
            foca,
            rt: AccumulatingRuntime::new(),
            config,
            foca_config,
            sized_for: 1,
            rng,
            members: KeyTable::default(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            left: false,
            notice_seq: 0,
            notices: BTreeMap::new(),
            announced: None,
            answered: indexmap::IndexSet::new(),
            health: 0,
            unconfirmed: BTreeMap::new(),
            leave_notice: None,
            dir,
            raised: std::collections::BTreeSet::new(),
            in_foca_timer: false,
            events: crate::user::EventBuffer::default(),
            query_clock: crate::clock::LamportClock::default(),
            awaiting: indexmap::IndexSet::new(),
            queries: BTreeMap::new(),
            query_seqs: BTreeMap::new(),
            queries_seen: crate::query::Seen::default(),
            lost: BTreeMap::new(),
            forwarded: BTreeSet::new(),
            forwarded_order: VecDeque::new(),
            reconnect_ticks: 0,
            reconnect_scheduled: false,
            limiter: crate::validate::Limiter::new(secret),
            reply: None,
        };
        node.emit(EventKind::Join, id, Status::Alive);
        let first = node.jitter(node.config.push_pull_interval);
        node.schedule(first, TimerEvent::PushPull);
        Ok(node)
    }

    /// Shares decoded identities with every other node given the same `interner`: each
    /// identity is then held once per process instead of once per node. For drivers that run
    /// many nodes in one process (the simulator); it changes no decision.
    pub fn share_identities(&mut self, interner: &crate::identity::Interner) {
        self.directory().share(interner.clone());
    }

    /// The next effect to carry out, in the order they arose. Drain until `None` after every
    /// call into the node.
    pub fn poll(&mut self) -> Option<Output> {
        let out = self.outputs.pop_front();
        if out.is_none() && self.outputs.capacity() > OUTPUTS_KEPT {
            // A burst (a full state, notices to every member) grew the queue; do not keep
            // its room for good (the simulator holds thousands of nodes).
            self.outputs.shrink_to(OUTPUTS_KEPT);
        }
        out
    }

    /// This node's current identity.
    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    /// This node as a member.
    pub fn local(&self) -> MemberInfo {
        MemberInfo {
            id: self.identity().clone(),
            status: if self.left {
                Status::Left
            } else {
                Status::Alive
            },
        }
    }

    /// Every member this node knows, itself first, then by name. Failed and left members stay
    /// listed until reaped.
    pub fn members(&self) -> Vec<MemberInfo> {
        let suspects: BTreeSet<NameKey> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() == State::Suspect)
            .map(|m| m.id().key())
            .collect();
        let mut out = Vec::with_capacity(self.members.len() + 1);
        out.push(self.local());
        out.extend(self.members.values().map(|r| Self::info(r, &suspects)));
        out[1..].sort_by(|a, b| a.name().cmp(b.name()));
        out
    }

    /// The member named `name` as [`Node::members`] lists it (this node too).
    pub fn member(&self, name: &str) -> Option<MemberInfo> {
        if name == self.identity().name() {
            return Some(self.local());
        }
        let r = self
            .members
            .get(NameKey::of(name))
            .filter(|r| r.id.name() == name)?;
        // foca holds one member per address: a lookup in its index, not a scan.
        let suspect = self
            .foca
            .membership_state_of(&r.id.key())
            .is_some_and(|m| m.state() == State::Suspect && m.id() == &r.id);
        let suspects = if suspect {
            BTreeSet::from([r.id.key()])
        } else {
            BTreeSet::new()
        };
        Some(Self::info(r, &suspects))
    }

    fn info(r: &Record, suspects: &BTreeSet<NameKey>) -> MemberInfo {
        let status = if r.status == Status::Alive && suspects.contains(&r.id.key()) {
            Status::Suspect
        } else {
            r.status
        };
        MemberInfo {
            id: r.id.clone(),
            status,
        }
    }

    /// Every known member's identity and status as recorded by join, leave and failure events
    /// (suspicion not looked up), this node first, the others in no useful order (the same
    /// for the same history). Cheap: no allocation, no scan of foca.
    pub fn member_states(&self) -> impl Iterator<Item = (&NodeId, Status)> {
        std::iter::once((self.identity(), self.local().status))
            .chain(self.members.values().map(|r| (&r.id, r.status)))
    }

    /// Number of live members, this node included.
    pub fn live_members(&self) -> usize {
        self.foca.num_members() + usize::from(!self.left)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let c = self.limiter.counts;
        Stats {
            limited_held: c.held,
            limited_dropped: c.dropped,
            challenges: c.challenges,
            validated: c.validated,
            ..self.stats
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// True once some member has accepted us (we are in a cluster, not alone).
    pub fn is_joined(&self) -> bool {
        self.foca.num_members() > 0
    }

    /// True when `addr` answered a join (or push-pull) with its state.
    pub fn has_answered(&self, addr: SocketAddr) -> bool {
        self.answered.contains(&addr)
    }

    /// True after [`Node::leave`].
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// True once every member told of our leave acknowledged it or was given up on (and
    /// before any leave).
    pub fn notices_settled(&self) -> bool {
        self.leave_notice
            .is_none_or(|seq| !self.notices.contains_key(&seq))
    }

    /// Sends our full state to each address and asks for theirs (Serf's join). Join completes
    /// when one answers; [`Node::is_joined`] tells. Safe to repeat.
    pub fn join(&mut self, addrs: &[SocketAddr]) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let me = self.identity().addr();
        for &to in addrs.iter().filter(|a| **a != me) {
            self.send_full_state(to, true);
        }
        Ok(())
    }

    /// Replaces this node's tags. Returns false when they are unchanged. Every member reports
    /// the change as a member update.
    pub fn set_tags(&mut self, tags: Tags) -> Result<bool, CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        validate_tags(&tags, &self.config.limits)?;
        if &tags == self.identity().tags() {
            return Ok(false);
        }
        let new = self.identity().with_tags(tags);
        self.adopt_identity(new.clone())?;
        self.emit(EventKind::Update, new, Status::Alive);
        self.drain_foca();
        Ok(true)
    }

    /// Switches to the identity `new` (new tags, or a version above another of our name) and
    /// tells every member at once.
    fn adopt_identity(&mut self, new: NodeId) -> Result<(), CommandError> {
        self.foca
            .change_identity(new.clone(), &mut self.rt)
            .map_err(|e| CommandError::Protocol(e.to_string()))?;
        // An identity change leaves foca disconnected, its probe and suspicion timers void,
        // until a message addressed to the new identity arrives. A node that nobody answers
        // (cut off, or alone with dead members) would never detect a failure again: an
        // empty update makes foca count its members and start probing now (a suspect that
        // fails its next probe gets a fresh suspicion timer).
        self.foca
            .apply_many(std::iter::empty(), false, &mut self.rt)
            .map_err(|e| CommandError::Protocol(e.to_string()))?;
        self.drain_foca();
        // A member that hears from the new identity answers it, which spreads the new
        // identity at once.
        if let Some(peer) = self.random_live_member() {
            let _ = self.foca.announce(peer, &mut self.rt);
        }
        self.send_notice(Member::alive(new.clone()));
        self.announced = Some(new);
        Ok(())
    }

    /// Sends a user event to every member (this one included, which reports it at once as
    /// [`Output::User`]). Returns its Lamport time. Members are told directly and acknowledge,
    /// with retransmissions; beyond the notice fanout, receivers pass it on.
    pub fn user_event(
        &mut self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<u64, CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        crate::user::validate_event(name, payload, &self.config.limits)?;
        let ltime = self.events.next_ltime();
        self.events.admit(ltime, name, payload);
        let event = crate::user::UserEvent {
            ltime,
            name: name.to_string(),
            payload: payload.to_vec(),
            coalesce,
        };
        let targets = self.notice_targets();
        self.post_user(targets, event.clone());
        self.outputs.push_back(Output::User(event));
        Ok(ltime)
    }

    /// Asks `targets` (members, this node included if listed) the query `name` with
    /// `payload`; reports acks, answers and the end through [`Output::Query`], the end at the
    /// latest after `timeout`. Returns the query's id (its Lamport time).
    pub fn query(
        &mut self,
        name: &str,
        payload: &[u8],
        targets: &[NodeId],
        timeout: Duration,
    ) -> Result<u64, CommandError> {
        use crate::query::{IncomingQuery, Pending, QueryOutput};
        if self.left {
            return Err(CommandError::Left);
        }
        crate::user::validate_event(name, payload, &self.config.limits)?;
        let ltime = self.query_clock.tick();
        let me = self.identity().clone();
        let mut pending = Pending::default();
        for t in targets {
            pending.targets.insert(t.addr(), t.name().to_string());
        }
        let remote: Vec<SocketAddr> = pending
            .targets
            .keys()
            .copied()
            .filter(|a| *a != me.addr())
            .collect();
        let local = pending.targets.contains_key(&me.addr());
        self.queries.insert(ltime, pending);
        let msg = |seq| {
            wire::encode(
                Kind::Query,
                &wire::QueryMsg {
                    seq,
                    ltime,
                    origin_name: me.name().to_string(),
                    origin_version: me.version(),
                    name: name.to_string(),
                    payload: payload.to_vec(),
                },
            )
        };
        if let Some(seq) = self.post(remote, msg) {
            self.query_seqs.insert(seq, ltime);
        }
        if local {
            if let Some(p) = self.queries.get_mut(&ltime) {
                p.acked.insert(me.addr());
            }
            self.queries_seen.admit(me.key(), me.version(), ltime);
            self.outputs.push_back(Output::Query(QueryOutput::Ack {
                id: ltime,
                from: me.name().to_string(),
            }));
            self.outputs
                .push_back(Output::Query(QueryOutput::Incoming(IncomingQuery {
                    origin: me.addr(),
                    origin_name: me.name().to_string(),
                    ltime,
                    name: name.to_string(),
                    payload: payload.to_vec(),
                })));
        }
        if targets.is_empty() {
            self.finish_query(ltime);
        } else {
            self.schedule(timeout, TimerEvent::QueryDeadline(ltime));
        }
        Ok(ltime)
    }

    /// Answers the query `ltime` from `origin` (see [`crate::IncomingQuery`]) with `payload`,
    /// at most [`crate::Limits::event_bytes_max`] bytes.
    pub fn respond(
        &mut self,
        origin: SocketAddr,
        ltime: u64,
        payload: &[u8],
    ) -> Result<(), CommandError> {
        let max = self.config.limits.event_bytes_max;
        if payload.len() > max {
            return Err(CommandError::Invalid(
                crate::error::InvalidInput::EventTooBig {
                    len: payload.len(),
                    max,
                },
            ));
        }
        if origin == self.identity().addr() {
            let from = self.identity().addr();
            self.on_query_response(from, ltime, payload.to_vec());
            return Ok(());
        }
        self.post(vec![origin], |seq| {
            wire::encode(
                Kind::QueryResponse,
                &wire::QueryResponseMsg {
                    seq,
                    ltime,
                    payload: payload.to_vec(),
                },
            )
        });
        Ok(())
    }

    fn on_query_response(&mut self, from: SocketAddr, ltime: u64, payload: Vec<u8>) {
        let Some(p) = self.queries.get_mut(&ltime) else {
            return; // late, or not ours
        };
        let Some(name) = p.targets.get(&from).cloned() else {
            return;
        };
        if !p.answered.insert(from) {
            return;
        }
        // An answer proves receipt: report the ack first if it was lost.
        if p.acked.insert(from) {
            self.outputs
                .push_back(Output::Query(crate::query::QueryOutput::Ack {
                    id: ltime,
                    from: name.clone(),
                }));
        }
        let Some(p) = self.queries.get(&ltime) else {
            return;
        };
        let all = p.answered.len() == p.targets.len();
        self.outputs
            .push_back(Output::Query(crate::query::QueryOutput::Response {
                id: ltime,
                from: name,
                payload,
            }));
        if all {
            self.finish_query(ltime);
        }
    }

    fn finish_query(&mut self, ltime: u64) {
        if self.queries.remove(&ltime).is_some() {
            self.query_seqs.retain(|_, q| *q != ltime);
            self.outputs
                .push_back(Output::Query(crate::query::QueryOutput::Done { id: ltime }));
        }
    }

    /// Serf's `force-leave`: a member that is *failed* here is marked *left* on every member
    /// (its leaving identity is applied here and sent to all as a notice), so handlers see a
    /// leave and it is reaped like one. Returns false, changing nothing, when the member is
    /// unknown or not failed (a live member must leave by itself).
    pub fn force_leave(&mut self, name: &str) -> Result<bool, CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let Some(r) = self
            .members
            .get(NameKey::of(name))
            .filter(|r| r.id.name() == name)
        else {
            return Ok(false);
        };
        if r.status != Status::Failed {
            return Ok(false);
        }
        let gone = Member::down(r.id.as_leaving());
        self.apply(vec![gone.clone()], true)
            .map_err(|e| CommandError::Protocol(e.to_string()))?;
        self.send_notice(gone);
        self.drain_foca();
        Ok(true)
    }

    /// The Lamport clocks: the times the next local user event and query take.
    pub fn clocks(&self) -> wire::Clocks {
        wire::Clocks {
            event: self.events.clock().time(),
            query: self.query_clock.time(),
        }
    }

    /// Witnesses the clocks a full state or digest from `from` carries: taken whole when it
    /// answers our own request (`reply` unset, from an address we asked), else bounded.
    fn witness_clocks(&mut self, from: SocketAddr, reply: bool, clocks: wire::Clocks) {
        if !reply && self.awaiting.shift_remove(&from) {
            self.events.clock_mut().witness_answer(clocks.event);
            self.query_clock.witness_answer(clocks.query);
        } else {
            self.events.clock_mut().witness_request(clocks.event);
            self.query_clock.witness_request(clocks.query);
        }
    }

    /// Remembers that `to` was asked for an answer (see [`Node::witness_clocks`]).
    fn await_answer(&mut self, to: SocketAddr) {
        self.awaiting.shift_remove(&to);
        self.awaiting.insert(to);
        if self.awaiting.len() > AWAITING_MAX {
            self.awaiting.shift_remove_index(0);
        }
    }

    /// Leaves the cluster gracefully: switches to the leaving identity, declares it down by
    /// gossip and tells members directly, retransmitting until they acknowledge (see
    /// [`Node::notices_settled`]). Afterwards the node only answers acknowledgements.
    pub fn leave(&mut self) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let leaving = self.identity().as_leaving();
        self.foca
            .change_identity(leaving.clone(), &mut self.rt)
            .map_err(|e| CommandError::Protocol(e.to_string()))?;
        self.foca
            .leave_cluster(&mut self.rt)
            .map_err(|e| CommandError::Protocol(e.to_string()))?;
        self.left = true;
        self.drain_foca();
        self.leave_notice = self.send_notice(Member::down(leaving.clone()));
        self.emit(EventKind::Leave, leaving, Status::Left);
        Ok(())
    }

    /// Handles one datagram from `from`. A packet that is not ours, malformed or refused is
    /// dropped, counted and returned as an error; nothing else changes then.
    pub fn handle_packet(&mut self, from: SocketAddr, data: &[u8]) -> Result<(), DropReason> {
        self.stats.packets_in += 1;
        self.stats.bytes_in += data.len() as u64;
        let counted = self.limiter.limits(from);
        if counted {
            self.limiter.received(from, data.len());
        }
        self.reply = Some(Reply {
            to: from,
            len: data.len(),
            vouched: false,
            counted,
        });
        let result = self.dispatch(from, data);
        if let Err(reason) = &result {
            self.stats.count_drop(reason);
        } else if let Some(heard) = self.unconfirmed.get_mut(&from) {
            *heard = true;
        }
        self.drain_foca();
        self.reply = None;
        let outranked = self.directory().take_outranked();
        if let Some(version) = outranked {
            self.outrank(version);
        }
        self.trim_directory();
        result
    }

    /// Another identity of our name with version `seen` outranks ours (our clock stepped
    /// back across a restart, or a forgery): every member would take it for the newer us and
    /// refuse ours. Take a version above it, say so, and rejoin at once: every member is told
    /// directly, and one is asked for its full state.
    fn outrank(&mut self, seen: u64) {
        let mine = self.identity().clone();
        if self.left || seen < mine.version() {
            return;
        }
        if seen >= crate::identity::VERSION_MAX {
            tracing::error!(
                seen,
                "an identity of our name has the highest version there is; cannot take one above it"
            );
            return;
        }
        let new = mine.with_version(seen + 1);
        tracing::warn!(
            ours = mine.version(),
            seen,
            new = new.version(),
            "another identity of our name has a newer version (a clock that stepped back, or a forgery); rejoining above it"
        );
        if let Err(e) = self.adopt_identity(new) {
            tracing::warn!(error = %e, "could not take a newer identity version");
            return;
        }
        if let Some(peer) = self.random_live_member() {
            self.send_full_state(peer.addr(), true);
        }
    }

    /// Drops identities from the directory that no member, lost member or ourselves holds any
    /// more (named in packets that were refused), once they are more than the members.
    fn trim_directory(&mut self) {
        let members = self.members.len() + self.lost.len() + 1;
        if self.directory().len() <= 2 * members + 64 {
            return;
        }
        let lost: BTreeSet<NameKey> = self.lost.values().map(|(id, _)| id.key()).collect();
        let (records, foca) = (&self.members, &self.foca);
        self.dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|k| {
                records.contains(k) || lost.contains(&k) || foca.membership_state_of(&k).is_some()
            });
    }

    fn dispatch(&mut self, from: SocketAddr, data: &[u8]) -> Result<(), DropReason> {
        let (kind, payload) = wire::open_envelope(data, self.config.packet_size_max.get())?;
        match kind {
            Kind::Foca => {
                if self.left {
                    return Ok(());
                }
                if !self.admit_foca(from, payload)? {
                    return Ok(());
                }
                let result = self.foca.handle_data(payload, &mut self.rt);
                result.map_err(|e| match e {
                    foca::Error::Decode(_)
                    | foca::Error::MalformedPacket
                    | foca::Error::DataTooBig => DropReason::Malformed(e.to_string()),
                    other => DropReason::Protocol(other.to_string()),
                })
            }
            Kind::Unknown => {
                self.directory().forget_peer(from);
                Ok(())
            }
            Kind::User => {
                let msg = wire::decode_user(payload, &self.config.limits)?;
                self.vouch(NameKey(u64::from_le_bytes(msg.sender)));
                let ack = wire::encode(Kind::NoticeAck, &NoticeAck { seq: msg.seq });
                self.transmit(from, ack);
                let e = msg.event;
                if !self.left && self.events.admit(e.ltime, &e.name, &e.payload) {
                    let sender = NameKey(u64::from_le_bytes(msg.sender));
                    let targets = self.forward_targets(sender, from, &msg.forward);
                    if !targets.is_empty() {
                        let event = e.clone();
                        let me = self.identity().key().0.to_le_bytes();
                        self.post(targets, |seq| {
                            wire::encode(
                                Kind::User,
                                &wire::UserMsg {
                                    seq,
                                    event,
                                    sender: me,
                                    forward: Vec::new(),
                                },
                            )
                        });
                    }
                    self.outputs.push_back(Output::User(e));
                }
                Ok(())
            }
            Kind::Digest => {
                let digest = wire::decode_digest(payload)?;
                if self.left {
                    return Ok(());
                }
                if let Some(e) = digest.entries.first() {
                    self.vouch(e.name_key());
                    let sender = e.resolve(&self.directory()).map(|m| m.id().clone());
                    if let Some(sender) = sender
                        && self.directory().is_buried(&sender)
                    {
                        self.challenge_buried(&sender);
                        return Err(DropReason::Buried);
                    }
                }
                let reply = digest.reply;
                self.witness_clocks(from, reply, digest.clocks);
                self.apply_digest(from, digest)?;
                if reply {
                    self.send_digest(from, false);
                }
                Ok(())
            }
            Kind::Want => {
                let want = wire::decode_want(payload)?;
                if !self.left {
                    self.answer_want(from, &want);
                }
                Ok(())
            }
            Kind::Sync => {
                let sync = wire::decode_sync(payload, &self.config.limits, &mut self.directory())?;
                if self.left {
                    return Ok(());
                }
                if let Some(m) = sync.members.first() {
                    self.vouch(m.id().key());
                    if self.directory().is_buried(m.id()) {
                        let id = m.id().clone();
                        self.challenge_buried(&id);
                        return Err(DropReason::Buried);
                    }
                }
                self.witness_clocks(from, sync.reply, sync.clocks);
                // Not gossiped on: the answer to a join is the cluster as everyone in it
                // knows it, and a joiner's own state reaches everyone through its notices.
                // Gossiping either would fill every buffer with old news (at a join storm,
                // N joiners times N members).
                self.apply(sync.members, false)?;
                if sync.reply {
                    self.send_full_state(from, false);
                } else {
                    if !self.answered.contains(&from) {
                        self.schedule(JOIN_FOLLOW_UP, TimerEvent::JoinFollowUp(from));
                    }
                    self.answered.shift_remove(&from);
                    self.answered.insert(from);
                    if self.answered.len() > ANSWERED_MAX {
                        self.answered.shift_remove_index(0);
                    }
                }
                Ok(())
            }
            Kind::Notice => {
                let notice =
                    wire::decode_notice(payload, &self.config.limits, &mut self.directory())?;
                if notice.from.as_ref().is_none_or(|f| f == notice.member.id()) {
                    let about = notice.member.id().clone();
                    self.tell_outranked(from, &about);
                }
                if let Some(f) = &notice.from {
                    self.vouch(f.key());
                }
                // Its sender (the member itself when none is named) must not be a reaped
                // member's old identity; a member that left stays out whoever passes it on.
                let sender = notice.from.as_ref().unwrap_or(notice.member.id()).clone();
                if self.directory().is_buried(&sender) {
                    self.challenge_buried(&sender);
                    return Err(DropReason::Buried);
                }
                if self.directory().is_buried_left(notice.member.id()) {
                    return Err(DropReason::Buried);
                }
                if !self.left {
                    let suspects_me = notice.member.state() == State::Suspect
                        && notice.member.id() == self.identity();
                    let incarnation = notice.member.incarnation();
                    let m = notice.member;
                    if !notice.forward.is_empty()
                        && let tag = notice_tag(from, notice.seq)
                        && self.forwarded.insert(tag)
                    {
                        self.forwarded_order.push_back(tag);
                        if self.forwarded_order.len() > FORWARDED_MAX
                            && let Some(old) = self.forwarded_order.pop_front()
                        {
                            self.forwarded.remove(&old);
                        }
                        let sender = notice.from.as_ref().map_or(NameKey(0), NodeId::key);
                        let targets = self.forward_targets(sender, from, &notice.forward);
                        self.post_notice_from(targets, m.clone(), notice.from.clone(), false);
                    }
                    self.foca
                        .apply_many(std::iter::once(m), notice.relay, &mut self.rt)
                        .map_err(|e| DropReason::Protocol(e.to_string()))?;
                    // Lifeguard's buddy system: foca has refuted by raising our incarnation
                    // above the suspected one. Tell the member that asked, acknowledged: left
                    // to gossip, the refutation can lose the race with its suspicion timeout
                    // under loss (alive at a higher incarnation beats the suspicion; foca may
                    // be higher still, which any later packet of ours shows).
                    if suspects_me && incarnation < foca::Incarnation::MAX {
                        let me =
                            Member::new(self.identity().clone(), incarnation + 1, State::Alive);
                        self.post_notice(vec![from], me, false);
                    }
                }
                let ack = wire::encode(Kind::NoticeAck, &NoticeAck { seq: notice.seq });
                self.transmit(from, ack);
                Ok(())
            }
            Kind::Query => {
                let msg = wire::decode_query(payload, &self.config.limits)?;
                self.vouch(NameKey::of(&msg.origin_name));
                let ack = wire::encode(Kind::NoticeAck, &NoticeAck { seq: msg.seq });
                self.transmit(from, ack);
                self.query_clock.witness(msg.ltime);
                let origin = crate::identity::NameKey::of(&msg.origin_name);
                if !self.left
                    && self
                        .queries_seen
                        .admit(origin, msg.origin_version, msg.ltime)
                {
                    self.outputs
                        .push_back(Output::Query(crate::query::QueryOutput::Incoming(
                            crate::query::IncomingQuery {
                                origin: from,
                                origin_name: msg.origin_name,
                                ltime: msg.ltime,
                                name: msg.name,
                                payload: msg.payload,
                            },
                        )));
                }
                Ok(())
            }
            Kind::QueryResponse => {
                let msg = wire::decode_query_response(payload, &self.config.limits)?;
                let ack = wire::encode(Kind::NoticeAck, &NoticeAck { seq: msg.seq });
                self.transmit(from, ack);
                self.on_query_response(from, msg.ltime, msg.payload);
                Ok(())
            }
            Kind::Challenge => {
                if payload.len() != crate::validate::COOKIE_LEN {
                    return Err(DropReason::Malformed("a challenge holds 8 bytes".into()));
                }
                let mut out = Vec::with_capacity(wire::ENVELOPE_LEN + payload.len());
                wire::put_envelope(&mut out, Kind::ChallengeEcho);
                out.extend_from_slice(payload);
                self.transmit(from, out);
                Ok(())
            }
            Kind::ChallengeEcho => {
                let Some(held) = self.limiter.echo(from, payload) else {
                    return Err(DropReason::Malformed("a wrong cookie".into()));
                };
                for data in held {
                    self.send(from, data);
                }
                // A reaped failed member at this address is alive after all (the other side
                // of a partition): let it back in, and exchange full state with it now.
                if self.directory().unbury_failed_at(from) > 0 && !self.left {
                    self.send_full_state(from, true);
                }
                Ok(())
            }
            Kind::NoticeAck => {
                let ack = wire::decode_notice_ack(payload)?;
                if let Some(&q) = self.query_seqs.get(&ack.seq)
                    && let Some(p) = self.queries.get_mut(&q)
                    && p.acked.insert(from)
                    && let Some(name) = p.targets.get(&from).cloned()
                {
                    self.outputs
                        .push_back(Output::Query(crate::query::QueryOutput::Ack {
                            id: q,
                            from: name,
                        }));
                }
                if let Some(p) = self.notices.get_mut(&ack.seq) {
                    // Order among targets is only the order of retransmissions: swap.
                    p.targets.swap_remove(&from);
                    if p.targets.is_empty() {
                        self.notices.remove(&ack.seq);
                    }
                }
                Ok(())
            }
        }
    }

    /// Reads a foca packet's header without learning anything from it, and decides what
    /// becomes of the packet: `Ok(true)`, hand it to foca; `Ok(false)`, handled here (it was
    /// addressed to a former identity of ours); an error, dropped: not for this node, from a
    /// reaped member's identity, or undecodable (then, if the sender named itself by a
    /// reference we do not hold, it is asked for its identity in full). A packet dropped
    /// here leaves no identity behind in the directory.
    fn admit_foca(&mut self, from: SocketAddr, payload: &[u8]) -> Result<bool, DropReason> {
        use foca::Codec;
        let mut codec = ValidatingCodec::peeking(self.config.limits, self.dir.clone());
        let header = match codec.decode_header(payload) {
            Ok(h) => h,
            Err(e) => {
                if self.directory().take_unresolved() {
                    let mut out = Vec::with_capacity(wire::ENVELOPE_LEN);
                    wire::put_envelope(&mut out, Kind::Unknown);
                    self.transmit(from, out);
                }
                return Err(DropReason::Malformed(e.to_string()));
            }
        };
        self.vouch(header.src.key());
        let me = self.identity().clone();
        if header.src.name() == me.name() {
            if header.src.rank() > me.rank() {
                // Another identity of our name, newer than ours: take a version above it.
                self.directory().learn(header.src);
            }
            return Ok(true); // foca refuses data from ourselves, and says so
        }
        if self.directory().is_buried(&header.src) {
            self.challenge_buried(&header.src);
            return Err(DropReason::Buried);
        }
        self.tell_outranked(from, &header.src);
        if header.dst == me
            || (header.message == foca::Message::Announce && header.dst.name() == me.name())
        {
            return Ok(true);
        }
        if header.dst.name() != me.name() {
            return Err(DropReason::Misaddressed);
        }
        // A member still talking to a previous identity of ours (we restarted, or changed
        // tags, and it has not heard yet): foca ignores such packets, so the sender would
        // end up suspecting us, and a restarted node with no join target would stay alone.
        // Learn the sender and tell it who we are now.
        let sender = Member::new(header.src, header.src_incarnation, State::Alive);
        let _ = self.apply(vec![sender], true);
        let notice = Notice {
            seq: 0,
            member: Member::alive(me),
            from: None,
            relay: true,
            forward: Vec::new(),
        };
        self.transmit(from, wire::encode(Kind::Notice, &notice));
        Ok(false)
    }

    /// Feeds `members` to foca; `broadcast`: gossip the changes they make on.
    /// A member speaks with `id` while we hold a newer identity of its name (its clock stepped
    /// back across a restart, or someone forged one ahead of it): tell it what we hold, in
    /// full, so it can take a version above it ([`Node::outrank`]). Otherwise it would only
    /// ever see references to that identity, and every member would refuse it.
    fn tell_outranked(&mut self, to: SocketAddr, id: &NodeId) {
        let held = match self.foca.membership_state_of(&id.key()) {
            Some(m) if m.id().name() == id.name() && m.id().rank() > id.rank() => m.clone(),
            _ => return,
        };
        let notice = Notice {
            seq: 0,
            member: held,
            from: None,
            relay: false,
            forward: Vec::new(),
        };
        self.transmit(to, wire::encode(Kind::Notice, &notice));
    }

    /// A datagram came from the last identity of a reaped member, or an older one: a replay,
    /// or, for a failed member, the other side of a partition that outlasted the reap. The
    /// member's address is challenged (12 bytes): only a live member echoes, and its echo
    /// lets it back in ([`Kind::ChallengeEcho`]). A member that left stays out: a restart
    /// takes a newer version.
    fn challenge_buried(&mut self, id: &NodeId) {
        if id.is_leaving() || self.left {
            return;
        }
        let cookie = self.limiter.cookie(id.addr());
        let mut out = Vec::with_capacity(wire::ENVELOPE_LEN + cookie.len());
        wire::put_envelope(&mut out, Kind::Challenge);
        out.extend_from_slice(&cookie);
        self.send(id.addr(), out);
    }

    /// Identities of members that left and were reaped, at or below their leaving one, are
    /// left out (replays: a restart takes a newer version).
    fn apply(&mut self, members: Vec<Member<NodeId>>, broadcast: bool) -> Result<(), DropReason> {
        let members: Vec<Member<NodeId>> = {
            let mut dir = self.directory();
            members
                .into_iter()
                .filter_map(|m| {
                    (!dir.is_buried_left(m.id()))
                        .then(|| Member::new(dir.learn(m.id().clone()), m.incarnation(), m.state()))
                })
                .collect()
        };
        self.foca
            .apply_many(members.into_iter(), broadcast, &mut self.rt)
            .map_err(|e| DropReason::Protocol(e.to_string()))
    }

    /// Handles a timer scheduled through [`Output::Timer`].
    pub fn handle_timer(&mut self, timer: TimerEvent) {
        match timer {
            TimerEvent::Foca(t) => {
                let reaped = match &t {
                    foca::Timer::RemoveDown(id) => Some(id.clone()),
                    _ => None,
                };
                if !self.left && !self.stale_suspicion(&t) {
                    // Errors here are foca noticing a stale or out-of-order timer: nothing
                    // to do but carry on.
                    self.in_foca_timer = true;
                    if let Err(e) = self.foca.handle_timer(t, &mut self.rt) {
                        tracing::debug!(error = %e, "timer refused");
                    }
                    self.drain_foca();
                    self.in_foca_timer = false;
                }
                if let Some(id) = reaped {
                    self.reap(&id);
                }
            }
            TimerEvent::PushPull => {
                self.limiter.rotate();
                if !self.left {
                    if let Some(peer) = self.random_live_member() {
                        self.send_digest(peer.addr(), true);
                    }
                    let n = self.live_members();
                    let next = self.jitter(self.config.push_pull_interval_at(n));
                    self.schedule(next, TimerEvent::PushPull);
                }
            }
            TimerEvent::QueryDeadline(ltime) => self.finish_query(ltime),
            TimerEvent::StateRetry(attempt) => {
                if !self.left
                    && self.answered.is_empty()
                    && attempt < STATE_RETRIES
                    && let Some(peer) = self.random_live_member()
                {
                    self.send_full_state(peer.addr(), true);
                    self.schedule(JOIN_FOLLOW_UP, TimerEvent::StateRetry(attempt + 1));
                }
            }
            TimerEvent::JoinFollowUp(addr) => {
                if !self.left {
                    self.send_digest(addr, true);
                    self.schedule(JOIN_FOLLOW_UP_LATE, TimerEvent::JoinFollowUpLate);
                }
            }
            TimerEvent::JoinFollowUpLate => {
                if !self.left
                    && let Some(peer) = self.random_live_member()
                {
                    self.send_digest(peer.addr(), true);
                }
            }
            TimerEvent::NoticeRetry(seq) => self.retry_notice(seq),
            TimerEvent::SuspectUnconfirmed(t) => {
                let addr = match &t {
                    foca::Timer::ChangeSuspectToDown { member_id, .. } => member_id.addr(),
                    _ => return,
                };
                if self.unconfirmed.remove(&addr) == Some(false)
                    && !self.left
                    && !self.stale_suspicion(&t)
                {
                    if let Err(e) = self.foca.handle_timer(t, &mut self.rt) {
                        tracing::debug!(error = %e, "early suspicion verdict refused");
                    }
                    self.drain_foca();
                }
            }
            TimerEvent::Reconnect => self.reconnect(),

            TimerEvent::HealthDecay => {
                self.health = self.health.saturating_sub(1);
                if self.health > 0 {
                    self.schedule(self.foca_config.probe_period, TimerEvent::HealthDecay);
                }
            }
            TimerEvent::AnnounceSelf => {
                let me = self.identity().clone();
                if !self.left && self.announced.as_ref() != Some(&me) {
                    self.send_notice(Member::alive(me.clone()));
                    self.announced = Some(me);
                }
            }
        }
        self.drain_foca();
    }

    /// True for a suspicion timer whose suspicion is over (refuted, or the member replaced
    /// or gone). foca 2.0 checks that itself before declaring the member down, but still
    /// sends it its courtesy "you are down" message (`TurnUndead`), which makes a live member
    /// that refuted in time renew its identity as if it had been declared down: every
    /// member sees it fail over to a new version. Such timers are dropped here.
    fn stale_suspicion(&self, t: &foca::Timer<NodeId>) -> bool {
        let foca::Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = t
        else {
            return false;
        };
        // foca holds one member per address: a lookup in its index, not a scan (this runs
        // for every suspicion every node hears of).
        !self
            .foca
            .membership_state_of(&member_id.key())
            .is_some_and(|m| {
                m.id() == member_id
                    && m.incarnation() == *incarnation
                    && m.state() == State::Suspect
            })
    }

    /// One reconnect tick: forget lost members that are back (or lost for longer than the
    /// reap timeout again), announce ourselves to one of the rest.
    fn reconnect(&mut self) {
        self.reconnect_scheduled = false;
        self.reconnect_ticks += 1;
        if self.left {
            return;
        }
        let interval = self.config.reconnect_interval.max(Duration::from_millis(1));
        let give_up = (self.config.reap_after.as_secs_f64() / interval.as_secs_f64()).ceil() as u64;
        let now = self.reconnect_ticks;
        let members = &self.members;
        self.lost.retain(|_, (id, since)| {
            !members.contains(id.key()) && now.saturating_sub(*since) <= give_up
        });
        if self.lost.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.lost.len());
        if let Some((id, _)) = self.lost.values().nth(i).cloned() {
            self.stats.reconnects += 1;
            // Addressing it shows it we hold its identity, so it will answer with references
            // to it: hold it again.
            self.directory().learn(id.clone());
            if let Err(e) = self.foca.announce(id, &mut self.rt) {
                tracing::debug!(error = %e, "reconnect announce refused");
            }
            self.drain_foca();
        }
        self.reconnect_scheduled = true;
        let after = self.jitter(interval);
        self.schedule(after, TimerEvent::Reconnect);
    }

    /// Names of failed members that were reaped and that this node still tries to reach.
    pub fn lost_members(&self) -> Vec<String> {
        self.lost.keys().map(|n| n.to_string()).collect()
    }

    fn reap(&mut self, id: &NodeId) {
        let reap = matches!(self.members.get(id.key()),
            Some(r) if &r.id == id && !r.status.is_live());
        if reap && let Some(r) = self.members.remove(id.key()) {
            {
                // It forgets us as we forget it: whatever we send it next names us in full.
                // Its last identity stays buried (the newest few thousand are kept): replayed
                // packets of it cannot bring it back.
                let mut dir = self.directory();
                dir.forget(r.id.key());
                dir.bury(&r.id);
                dir.forget_peer(r.id.addr());
            }

            if r.status == Status::Failed && !self.left {
                if self.lost.len() >= LOST_MAX
                    && let Some(oldest) = self
                        .lost
                        .iter()
                        .min_by_key(|(_, (_, t))| *t)
                        .map(|(n, _)| n.clone())
                {
                    self.lost.remove(&oldest);
                }
                self.lost
                    .insert(r.id.name().into(), (r.id.clone(), self.reconnect_ticks));
                if !self.reconnect_scheduled {
                    self.reconnect_scheduled = true;
                    let after = self.jitter(self.config.reconnect_interval);
                    self.schedule(after, TimerEvent::Reconnect);
                }
            }
            self.emit(EventKind::Reap, r.id, r.status);
        }
    }

    // ----- notices -----

    /// Tells every live member `member`, acknowledged (see [`Node::post_split`]): every
    /// member learns within two round trips, with no gossip storm however many change at
    /// once. Concurrent joiners that never heard of each other need nothing more: each one's
    /// digest exchange with its join target a second after the answer
    /// ([`TimerEvent::JoinFollowUp`]) brings it the others, which the target learnt from
    /// their notices.
    fn send_notice(&mut self, member: Member<NodeId>) -> Option<u64> {
        let targets = self.notice_targets();
        let from = Some(self.identity().clone());
        self.post_split(targets, |seq, forward| {
            wire::encode(
                Kind::Notice,
                &Notice {
                    seq,
                    member: member.clone(),
                    from: from.clone(),
                    relay: false,
                    forward,
                },
            )
        })
    }

    /// Every live member's address and name key, by name key.
    fn notice_targets(&self) -> Vec<(SocketAddr, NameKey)> {
        let mut out: Vec<_> = self
            .members
            .values()
            .filter(|r| r.status.is_live())
            .map(|r| (r.id.addr(), r.id.key()))
            .collect();
        // The table's order is arbitrary; the split of a notice follows this one. Keys are
        // unique, so an unstable sort gives one order.
        out.sort_unstable_by_key(|t| t.1);
        out
    }

    /// Where to pass on a message whose forward list is `list`, from `sender` (its name
    /// key) at the datagram source `from` (see [`wire::Forward`]).
    fn forward_targets(
        &self,
        sender: NameKey,
        from: SocketAddr,
        list: &[wire::Forward],
    ) -> Vec<SocketAddr> {
        let vouched = self
            .members
            .get(sender)
            .is_some_and(|r| r.status.is_live() && r.id.addr() == from);
        list.iter()
            .take(wire::FORWARD_MAX)
            .filter_map(
                |(k, addr)| match self.members.get(NameKey(u64::from_le_bytes(*k))) {
                    Some(r) => r.status.is_live().then(|| r.id.addr()),
                    None => vouched.then_some(*addr),
                },
            )
            .filter(|a| *a != self.identity().addr())
            .collect()
    }

    /// Sends a user event to `targets`, acknowledged and retransmitted like a notice, split
    /// like one.
    fn post_user(&mut self, targets: Vec<(SocketAddr, NameKey)>, event: crate::user::UserEvent) {
        let sender = self.identity().key().0.to_le_bytes();
        self.post_split(targets, |seq, forward| {
            wire::encode(
                Kind::User,
                &wire::UserMsg {
                    seq,
                    event: event.clone(),
                    sender,
                    forward,
                },
            )
        });
    }

    /// Sends one notice to `targets` and keeps retransmitting it to those that do not
    /// acknowledge; `relay`: receivers gossip it on. Returns its sequence number, or `None`
    /// when there is no target.
    fn post_notice(
        &mut self,
        targets: Vec<SocketAddr>,
        member: Member<NodeId>,
        relay: bool,
    ) -> Option<u64> {
        let from = Some(self.identity().clone());
        self.post_notice_from(targets, member, from, relay)
    }

    /// [`Self::post_notice`] on behalf of `from` (the member that first sent it, when this
    /// node passes it on to its share).
    fn post_notice_from(
        &mut self,
        targets: Vec<SocketAddr>,
        member: Member<NodeId>,
        from: Option<NodeId>,
        relay: bool,
    ) -> Option<u64> {
        self.post(targets, |seq| {
            wire::encode(
                Kind::Notice,
                &Notice {
                    seq,
                    member,
                    from,
                    relay,
                    forward: Vec::new(),
                },
            )
        })
    }

    /// Sends the packet `make` builds for the next sequence number to `targets`, and keeps
    /// retransmitting it to those that do not acknowledge. Returns the sequence number, or
    /// `None` when there is no target.
    fn post(&mut self, targets: Vec<SocketAddr>, make: impl FnOnce(u64) -> Vec<u8>) -> Option<u64> {
        let mut make = Some(make);
        let plan = targets.into_iter().map(|t| (t, Vec::new())).collect();
        self.post_plan(plan, |seq, _| (make.take().expect("built once"))(seq))
    }

    /// [`Node::post`] to every one of `targets`, through at most `notice_fanout` of them:
    /// beyond the fanout, the rest are split among the ones told directly (drawn at random),
    /// each passing it on to its share (at most [`wire::FORWARD_MAX`]; more are told
    /// directly when the shares would be larger). `make` builds the packet for a sequence
    /// number and a forward list.
    fn post_split(
        &mut self,
        mut targets: Vec<(SocketAddr, NameKey)>,
        make: impl FnMut(u64, Vec<wire::Forward>) -> Vec<u8>,
    ) -> Option<u64> {
        let n = targets.len();
        let fanout = self.config.notice_fanout;
        if fanout == 0 {
            return None; // gossip only (a simulator knob)
        }
        if n <= fanout {
            let plan = targets.into_iter().map(|(t, _)| (t, Vec::new())).collect();
            return self.post_plan(plan, make);
        }
        let direct = fanout.max(n.div_ceil(wire::FORWARD_MAX + 1));
        for i in 0..direct {
            let j = self.rng.random_range(i..n);
            targets.swap(i, j);
        }
        let mut plan: Vec<(SocketAddr, Vec<wire::Forward>)> = targets[..direct]
            .iter()
            .map(|&(t, _)| (t, Vec::new()))
            .collect();
        for (i, (a, k)) in targets[direct..].iter().enumerate() {
            plan[i % direct].1.push((k.0.to_le_bytes(), *a));
        }
        self.post_plan(plan, make)
    }

    /// Sends each target its packet (built by `make` with the target's forward list; targets
    /// with none share one) and retransmits to those that do not acknowledge.
    fn post_plan(
        &mut self,
        plan: Vec<(SocketAddr, Vec<wire::Forward>)>,
        mut make: impl FnMut(u64, Vec<wire::Forward>) -> Vec<u8>,
    ) -> Option<u64> {
        if plan.is_empty() {
            return None;
        }
        self.notice_seq += 1;
        let seq = self.notice_seq;
        let data = make(seq, Vec::new());
        let mut own = BTreeMap::new();
        let mut targets = IndexMap::with_capacity(plan.len());
        for (to, forward) in plan {
            if forward.is_empty() {
                self.transmit(to, data.clone());
            } else {
                let share = forward.iter().map(|(_, a)| *a).collect();
                let packet = make(seq, forward);
                self.transmit(to, packet.clone());
                own.insert(to, (packet, share));
            }
            targets.insert(to, 1);
        }
        self.notices.insert(
            seq,
            PendingNotice {
                data,
                own,
                targets,
                attempts: self.config.notice_attempts,
            },
        );
        self.schedule(self.config.notice_retry, TimerEvent::NoticeRetry(seq));
        Some(seq)
    }

    fn retry_notice(&mut self, seq: u64) {
        let Some(mut p) = self.notices.remove(&seq) else {
            return;
        };
        let attempts_max = p.attempts;
        // A member that was to pass it on and never answered (it died, or is cut off): tell
        // its share directly instead.
        let mut handoff = Vec::new();
        p.targets.retain(|to, n| {
            let keep = *n < attempts_max;
            if !keep && let Some((_, share)) = p.own.remove(to) {
                handoff.extend(share);
            }
            keep
        });
        for to in handoff {
            p.targets.entry(to).or_insert(0);
        }
        if p.targets.is_empty() {
            return;
        }
        let sends: Vec<SocketAddr> = p.targets.keys().copied().collect();
        for to in sends {
            let data = p.own.get(&to).map_or(&p.data, |(d, _)| d).clone();
            self.transmit(to, data);
        }
        p.targets.values_mut().for_each(|n| *n += 1);
        self.notices.insert(seq, p);
        self.schedule(self.config.notice_retry, TimerEvent::NoticeRetry(seq));
    }

    // ----- full-state sync -----

    fn send_full_state(&mut self, to: SocketAddr, reply: bool) {
        let me = Member::alive(self.identity().clone());
        let mut items = wire::Items::default();
        for m in std::iter::once(&me).chain(self.foca.iter_membership_state()) {
            items.push(m);
        }
        if reply {
            self.await_answer(to);
        }
        self.send_chunked(to, Kind::Sync, Some(reply), &items);
    }

    /// Our periodic push-pull: a digest of the membership, 14 bytes a member.
    fn send_digest(&mut self, to: SocketAddr, reply: bool) {
        let me = Member::alive(self.identity().clone());
        let mut items = wire::Items::default();
        for m in std::iter::once(&me).chain(self.foca.iter_membership_state()) {
            items.push_digest_entry(&wire::DigestEntry::of(m));
        }
        if reply {
            self.await_answer(to);
        }
        self.send_chunked(to, Kind::Digest, Some(reply), &items);
    }

    /// Sends `items` (each already encoded) in as few packets as fit, each a standalone
    /// message: for a full state or digest (`reply` given) the reply flag (set on the first
    /// packet only) and our clocks, then the item count (varint), the items.
    fn send_chunked(
        &mut self,
        to: SocketAddr,
        kind: Kind,
        reply: Option<bool>,
        items: &wire::Items,
    ) {
        // Envelope, reply flag, clocks (two varints of at most 10 bytes), count.
        let budget = self.config.packet_size_max.get() - wire::ENVELOPE_LEN - 1 - 20 - 5;
        let clocks = postcard::to_stdvec(&self.clocks()).expect("varints of two u64");
        let mut chunk: Vec<&[u8]> = Vec::new();
        let mut size = 0;
        let mut chunks = Vec::new();
        for m in items.iter() {
            if m.len() > budget {
                continue;
            }
            if size + m.len() > budget {
                chunks.push(std::mem::take(&mut chunk));
                size = 0;
            }
            size += m.len();
            chunk.push(m);
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut out = Vec::with_capacity(self.config.packet_size_max.get());
            wire::put_envelope(&mut out, kind);
            if let Some(reply) = reply {
                // One answer per exchange: only the first packet asks for it (each packet
                // asking would make the receiver send its whole state once per packet).
                out.push(u8::from(reply && i == 0));
                out.extend_from_slice(&clocks);
            }
            out.extend(postcard::to_stdvec(&chunk.len()).expect("varint of a usize"));
            for m in chunk {
                out.extend_from_slice(m);
            }
            self.transmit(to, out);
        }
    }

    /// Applies a digest: entries whose identity we hold are applied as full state would be;
    /// the others are asked for.
    fn apply_digest(&mut self, from: SocketAddr, digest: wire::Digest) -> Result<(), DropReason> {
        // Entries that say what foca already holds change nothing: leave them out. foca finds
        // a member by address through its index (vendor/foca/PATCHES.md), so checking an
        // entry is one lookup, and no map of all members is built per digest packet.
        let mut known = Vec::new();
        let mut want = Vec::new();
        {
            let dir = self.directory();
            for e in &digest.entries {
                let held = self.foca.membership_state_of(&e.name_key());
                if held.is_some_and(|m| wire::DigestEntry::of(m) == *e) {
                    continue;
                }
                match e.resolve(&dir) {
                    Some(m) => known.push(m),
                    None => want.push(e.key),
                }
            }
        }
        if !want.is_empty() {
            let mut items = wire::Items::default();
            for k in &want {
                items.push_bytes(k);
            }
            self.send_chunked(from, Kind::Want, None, &items);
        }
        self.apply(known, true)
    }

    /// Answers a [`wire::Want`] with the full state of the members it names.
    fn answer_want(&mut self, to: SocketAddr, want: &wire::Want) {
        let keys: std::collections::BTreeSet<NameKey> = want
            .keys
            .iter()
            .map(|k| NameKey(u64::from_le_bytes(*k)))
            .collect();
        let me = Member::alive(self.identity().clone());
        let mut items = wire::Items::default();
        for m in std::iter::once(&me)
            .chain(self.foca.iter_membership_state())
            .filter(|m| keys.contains(&m.id().key()))
        {
            items.push(m);
        }
        self.send_chunked(to, Kind::Sync, Some(false), &items);
    }

    // ----- foca plumbing -----

    fn drain_foca(&mut self) {
        let mut membership_changed = false;
        let mut drained = 0usize;
        while let Some(n) = self.rt.to_notify() {
            membership_changed |= self.on_notification(n);
            drained += 1;
        }
        while let Some((to, data)) = self.rt.to_send() {
            let mut out = Vec::with_capacity(wire::ENVELOPE_LEN + data.len());
            wire::put_envelope(&mut out, Kind::Foca);
            out.extend_from_slice(&data);
            self.transmit(to.addr(), out);
            drained += 1;
        }
        while let Some((after, timer)) = self.rt.to_schedule() {
            drained += 1;
            let after = match &timer {
                foca::Timer::ChangeSuspectToDown {
                    member_id,
                    incarnation,
                    ..
                } if self.config.suspicion == Suspicion::Lifeguard => {
                    if self.in_foca_timer {
                        self.raised.insert(member_id.key());
                    }
                    let (after, early) = self.on_suspicion(member_id.clone(), *incarnation, after);
                    if let Some(early) = early {
                        self.schedule(early, TimerEvent::SuspectUnconfirmed(timer.clone()));
                    }
                    after
                }
                _ => after,
            };
            self.schedule(after, TimerEvent::Foca(timer));
        }
        if drained > OUTPUTS_KEPT && self.rt.backlog() == 0 {
            // foca's queues keep the room a burst gave them; it is empty now, so start
            // afresh rather than hold that room for good.
            self.rt = AccumulatingRuntime::new();
        }
        if membership_changed {
            self.resize();
        }
        self.directory().set_me(self.foca.identity());
    }

    fn directory(&self) -> std::sync::MutexGuard<'_, wire::Directory> {
        // The directory holds no invariant a panic halfway could break.
        self.dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies one foca notification to the member table. Returns true when the set of live
    /// members changed.
    fn on_notification(&mut self, n: OwnedNotification<NodeId>) -> bool {
        match n {
            OwnedNotification::MemberUp(id) => {
                if id.is_leaving() {
                    self.mark_left(id);
                    return true;
                }
                let was = self.put_record(&id, Status::Alive);
                // Back from failed: likely the other side of a healed partition. Exchange full
                // state with it now, so both sides learn who the other declared down.
                if was == Some(Status::Failed) && !self.left {
                    self.send_full_state(id.addr(), true);
                }
                if was.is_none_or(|s| !s.is_live()) {
                    self.emit(EventKind::Join, id, Status::Alive);
                }
                true
            }
            OwnedNotification::MemberDown(id) => {
                if id.is_leaving() {
                    self.mark_left(id);
                } else if let Some(r) = self.members.get_mut(id.key())
                    && r.status.is_live()
                {
                    r.status = Status::Failed;
                    r.id = id.clone();
                    // Our own probe started this: tell every member now rather than leaving
                    // the verdict to gossip, whose bounded retransmissions can miss a member
                    // (which then finds out only when its own probe reaches the dead one).
                    if self.raised.remove(&id.key()) && !self.left {
                        self.send_notice(Member::down(id.clone()));
                    }
                    self.emit(EventKind::Failed, id, Status::Failed);
                }
                true
            }
            OwnedNotification::Rename(old, new) => {
                if new.is_leaving() {
                    self.mark_left(new);
                    return true;
                }
                if let Some(r) = self.members.get_mut(new.key()) {
                    r.id = new.clone();
                    // A live member with new tags or address is an update; a member that was
                    // down and is back gets MemberUp right after this, hence a join.
                    if r.status.is_live() && (old.tags() != new.tags() || old.addr() != new.addr())
                    {
                        self.emit(EventKind::Update, new, Status::Alive);
                    }
                }
                false
            }
            OwnedNotification::Active => {
                if !self.left && self.announced.as_ref() != Some(self.identity()) {
                    self.schedule(self.config.announce_delay, TimerEvent::AnnounceSelf);
                }
                // Found by a member rather than through a join (a restarted seed): ask it for
                // the full state now instead of learning members one probe at a time.
                if !self.left
                    && self.answered.is_empty()
                    && let Some(peer) = self.random_live_member()
                {
                    self.send_full_state(peer.addr(), true);
                    self.schedule(JOIN_FOLLOW_UP, TimerEvent::StateRetry(1));
                }
                false
            }
            OwnedNotification::Idle => false,
            OwnedNotification::Defunct => {
                if !self.left {
                    tracing::warn!("declared down by the cluster and cannot rejoin by itself");
                }
                false
            }
            OwnedNotification::Rejoin(id) => {
                tracing::info!(identity = ?id, "was declared down; rejoined under a new version");
                // Tell every member at once, acknowledged: left to gossip, the new identity
                // may never reach members that hold the old one as alive (they did not hear
                // the verdict either), least of all under the loss that caused the verdict.
                if !self.left {
                    self.send_notice(Member::alive(id.clone()));
                    self.announced = Some(id);
                }
                false
            }
        }
    }

    /// Records `id` with `status` in the member table (one search of it, not two: this runs
    /// for every member every node learns). Returns the status it had.
    fn put_record(&mut self, id: &NodeId, status: Status) -> Option<Status> {
        match self.members.entry(id.key()) {
            Entry::Occupied(mut e) => {
                let r = e.get_mut();
                let was = r.status;
                r.id = id.clone();
                r.status = status;
                Some(was)
            }
            Entry::Vacant(e) => {
                e.insert(Record {
                    id: id.clone(),
                    status,
                });
                None
            }
        }
    }

    fn mark_left(&mut self, id: NodeId) {
        let was = self.put_record(&id, Status::Left);
        // Serf reports a failed member that turns out to have left as a leave too.
        if matches!(was, Some(Status::Alive | Status::Suspect | Status::Failed)) {
            self.emit(EventKind::Leave, id, Status::Left);
        }
    }

    /// Lifeguard: `member` is suspect (our probe failed, or we learnt it). Tell it directly
    /// (so it refutes at once, to us), and stretch our timeouts by our local health: the more
    /// of our own probes fail lately, the less our verdicts are worth. Returns the delay
    /// before the failure verdict, and the delay of the early verdict: if the suspect sends
    /// us nothing at all while our notice to it is retransmitted for `suspicion_confirm`, we
    /// have confirmed the suspicion ourselves and need not wait for the full timeout.
    fn on_suspicion(
        &mut self,
        member: NodeId,
        incarnation: foca::Incarnation,
        after: Duration,
    ) -> (Duration, Option<Duration>) {
        let stretch = 1 + self.health;
        let stretched = after.saturating_mul(stretch);
        if self.health == 0 {
            self.schedule(self.foca_config.probe_period, TimerEvent::HealthDecay);
        }
        self.health = (self.health + 1).min(self.config.health_max);
        let to = member.addr();
        let early = self
            .config
            .suspicion_confirm
            .map(|c| c.saturating_mul(stretch))
            .filter(|c| *c < stretched);
        let seq = self.post_notice(
            vec![to],
            Member::new(member, incarnation, State::Suspect),
            true,
        );
        if let Some(early) = early {
            self.unconfirmed.insert(to, false);
            // Keep asking for the whole confirmation window.
            let retry = self.config.notice_retry.as_millis().max(1);
            let attempts = (early.as_millis() / retry + 1).min(u128::from(u32::MAX)) as u32;
            if let Some(p) = seq.and_then(|s| self.notices.get_mut(&s)) {
                p.attempts = p.attempts.max(attempts);
            }
        }
        (stretched, early)
    }

    /// Retunes foca (transmissions per update, suspicion timeout) for the cluster size.
    fn resize(&mut self) {
        // The settings depend on the size alone (and the fixed configuration): work them
        // out only when it changed (this runs after every membership change).
        let size = self.live_members();
        if size == self.sized_for {
            return;
        }
        self.sized_for = size;
        let wanted = self.config.foca_config(size);
        let changed = wanted.max_transmissions != self.foca_config.max_transmissions
            || wanted.suspect_to_down_after != self.foca_config.suspect_to_down_after;
        if changed && self.foca.set_config(wanted.clone()).is_ok() {
            self.foca_config = wanted;
        }
    }

    fn random_live_member(&mut self) -> Option<NodeId> {
        let n = self.foca.num_members();
        if n == 0 {
            return None;
        }
        let i = self.rng.random_range(0..n);
        self.foca.iter_members().nth(i).map(|m| m.id().clone())
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        // +-10 %, so periodic work of many nodes does not line up.
        let f = self.rng.random_range(0.9..1.1);
        d.mul_f64(f)
    }

    fn emit(&mut self, kind: EventKind, id: NodeId, status: Status) {
        self.outputs.push_back(Output::Event(MemberEvent {
            kind,
            member: MemberInfo { id, status },
        }));
    }

    fn schedule(&mut self, after: Duration, timer: TimerEvent) {
        self.outputs.push_back(Output::Timer { after, timer });
    }

    /// The datagram being handled claims to come from the member `key`: when that member is
    /// live at the datagram's source, its source is not limited (what it asks is answered in
    /// full). Called before anything from the datagram is applied or answered.
    fn vouch(&mut self, key: NameKey) {
        let Some(r) = self.reply.as_mut() else {
            return;
        };
        if self
            .members
            .get(key)
            .is_some_and(|m| m.status.is_live() && m.id.addr() == r.to)
        {
            r.vouched = true;
            self.limiter.forget(r.to);
        }
    }

    /// Sends `data` to `to`, within the anti-amplification limit ([`crate::validate`]): to
    /// an unvalidated source, what would pass three times the bytes it sent is held until it
    /// echoes the challenge sent with the first held datagram.
    fn transmit(&mut self, to: SocketAddr, data: Vec<u8>) {
        let mut vouched = false;
        if let Some(r) = self.reply.as_mut()
            && r.to == to
        {
            vouched = r.vouched;
            if !vouched && !r.counted {
                r.counted = true;
                self.limiter.received(to, r.len);
            }
        }
        if !vouched {
            match self.limiter.check(to, &data) {
                crate::validate::Verdict::Send => {}
                crate::validate::Verdict::Held(challenge) => {
                    if let Some(cookie) = challenge {
                        let mut out = Vec::with_capacity(wire::ENVELOPE_LEN + cookie.len());
                        wire::put_envelope(&mut out, Kind::Challenge);
                        out.extend_from_slice(&cookie);
                        self.send(to, out);
                    }
                    return;
                }
                crate::validate::Verdict::Dropped => return,
            }
        }
        self.send(to, data);
    }

    fn send(&mut self, to: SocketAddr, data: Vec<u8>) {
        self.stats.packets_out += 1;
        self.stats.bytes_out += data.len() as u64;
        self.outputs.push_back(Output::Transmit { to, data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(name: &str, seed: u64) -> Node {
        let addr = SocketAddr::from(([127, 0, 0, 1], 7000 + seed as u16));
        Node::new(name, addr, 1, Tags::new(), CoreConfig::default(), seed).unwrap()
    }

    fn drain(n: &mut Node) -> Vec<Output> {
        std::iter::from_fn(|| n.poll()).collect()
    }

    #[test]
    fn a_new_node_reports_its_own_join_and_schedules_push_pull() {
        let mut n = node("a", 1);
        let out = drain(&mut n);
        assert!(
            matches!(&out[0], Output::Event(e) if e.kind == EventKind::Join && e.member.name() == "a")
        );
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Timer {
                timer: TimerEvent::PushPull,
                ..
            }
        )));
        assert_eq!(n.members().len(), 1);
    }

    #[test]
    fn join_is_a_full_state_exchange() {
        let mut a = node("a", 1);
        let mut b = node("b", 2);
        drain(&mut a);
        drain(&mut b);
        a.join(&[b.identity().addr()]).unwrap();
        let to_b: Vec<Vec<u8>> = drain(&mut a)
            .into_iter()
            .filter_map(|o| match o {
                Output::Transmit { data, .. } => Some(data),
                _ => None,
            })
            .collect();
        assert_eq!(to_b.len(), 1);
        b.handle_packet(a.identity().addr(), &to_b[0]).unwrap();
        let out = drain(&mut b);
        assert!(out.iter().any(
            |o| matches!(o, Output::Event(e) if e.kind == EventKind::Join && e.member.name() == "a")
        ));
        let reply = out
            .into_iter()
            .find_map(|o| match o {
                Output::Transmit { data, .. } if data[3] == Kind::Sync as u8 => Some(data),
                _ => None,
            })
            .expect("b answers with its state");
        a.handle_packet(b.identity().addr(), &reply).unwrap();
        assert!(a.is_joined());
        assert_eq!(a.members().len(), 2);
    }

    #[test]
    fn bad_tags_are_refused_without_change() {
        let mut a = node("a", 1);
        let before = a.identity().clone();
        let bad = Tags::from([("k".into(), "line\nbreak".into())]);
        assert!(matches!(a.set_tags(bad), Err(CommandError::Invalid(_))));
        assert_eq!(a.identity(), &before);
    }

    proptest! {
        #[test]
        fn random_bytes_are_dropped_and_counted(data in proptest::collection::vec(any::<u8>(), 0..4000)) {
            let mut a = node("a", 1);
            drain(&mut a);
            let from = SocketAddr::from(([127, 0, 0, 9], 9));
            let r = a.handle_packet(from, &data);
            let s = a.stats();
            prop_assert_eq!(s.packets_in, 1);
            prop_assert_eq!(s.dropped(), u64::from(r.is_err()));
        }

        #[test]
        fn random_payloads_behind_a_valid_envelope_never_panic(
            kind in 0u8..8,
            payload in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let mut a = node("a", 1);
            drain(&mut a);
            let mut data = vec![b'G', b'A', wire::VERSION, kind];
            data.extend(payload);
            let _ = a.handle_packet(SocketAddr::from(([127, 0, 0, 9], 9)), &data);
            drain(&mut a);
        }
    }

    /// A zero-latency network of nodes with virtual time, for tests that need timers.
    struct Net {
        nodes: Vec<Node>,
        now: Duration,
        seq: u64,
        timers: Vec<(Duration, u64, usize, TimerEvent)>,
        packets: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
        /// Every datagram delivered: (time, from, to, data).
        log: Vec<(Duration, SocketAddr, SocketAddr, Vec<u8>)>,
        /// Every event, user event and query output, per node index.
        seen: Vec<Vec<Output>>,
    }

    impl Net {
        fn new(nodes: Vec<Node>) -> Self {
            let mut net = Self {
                nodes,
                now: Duration::ZERO,
                seq: 0,
                timers: Vec::new(),
                packets: VecDeque::new(),
                log: Vec::new(),
                seen: Vec::new(),
            };
            for i in 0..net.nodes.len() {
                net.collect(i);
            }
            net
        }

        fn collect(&mut self, i: usize) {
            let from = self.nodes[i].identity().addr();
            while let Some(o) = self.nodes[i].poll() {
                match o {
                    Output::Transmit { to, data } => self.packets.push_back((from, to, data)),
                    Output::Timer { after, timer } => {
                        self.seq += 1;
                        self.timers.push((self.now + after, self.seq, i, timer));
                    }
                    o @ (Output::Event(_) | Output::User(_) | Output::Query(_)) => {
                        if self.seen.len() <= i {
                            self.seen.resize_with(i + 1, Vec::new);
                        }
                        self.seen[i].push(o);
                    }
                }
            }
        }

        fn index(&self, addr: SocketAddr) -> Option<usize> {
            self.nodes.iter().position(|n| n.identity().addr() == addr)
        }

        fn deliver_all(&mut self) {
            for _ in 0..100_000 {
                let Some((from, to, data)) = self.packets.pop_front() else {
                    return;
                };
                self.log.push((self.now, from, to, data.clone()));
                if let Some(i) = self.index(to) {
                    let _ = self.nodes[i].handle_packet(from, &data);
                    self.collect(i);
                }
            }
            for (at, f, t, d) in self.log.iter().rev().take(12) {
                eprintln!("{at:?} {f} -> {t} kind {} len {}", d[3], d.len());
            }
            panic!("packet storm");
        }

        fn run_until(&mut self, end: Duration) {
            for _ in 0..1_000_000 {
                self.deliver_all();
                let Some(k) = (0..self.timers.len())
                    .filter(|&k| self.timers[k].0 <= end)
                    .min_by_key(|&k| (self.timers[k].0, self.timers[k].1))
                else {
                    self.now = end;
                    return;
                };
                let (at, _, i, timer) = self.timers.swap_remove(k);
                self.now = at;
                self.nodes[i].handle_timer(timer);
                self.collect(i);
            }
            panic!("timer storm");
        }

        /// foca packets from `from` to `to` sent at or after `since`.
        fn foca_packets(&self, from: usize, to: usize, since: Duration) -> Vec<&[u8]> {
            let (f, t) = (
                self.nodes[from].identity().addr(),
                self.nodes[to].identity().addr(),
            );
            self.log
                .iter()
                .filter(|(at, a, b, d)| {
                    *at >= since && *a == f && *b == t && d[3] == Kind::Foca as u8
                })
                .map(|(_, _, _, d)| d.as_slice())
                .collect()
        }
    }

    const SRC_REF: u8 = 1;
    const DST_REF: u8 = 2;

    fn cluster(names: &[&str]) -> Net {
        let nodes: Vec<Node> = names.iter().zip(1..).map(|(n, s)| node(n, s)).collect();
        let mut net = Net::new(nodes);
        let first = net.nodes[0].identity().addr();
        for i in 1..net.nodes.len() {
            net.nodes[i].join(&[first]).unwrap();
            net.collect(i);
        }
        net.run_until(Duration::from_secs(5));
        for n in &net.nodes {
            assert_eq!(
                n.live_members(),
                names.len(),
                "{} sees everyone",
                n.identity().name()
            );
        }
        net
    }

    #[test]
    fn probes_name_both_identities_by_reference_once_each_side_knows_them() {
        let mut net = cluster(&["a", "b", "c"]);
        let since = net.now;
        net.run_until(since + Duration::from_secs(10));
        let packets = net.foca_packets(0, 1, since);
        assert!(!packets.is_empty(), "a probed b");
        for p in &packets {
            assert_eq!(p[4], SRC_REF | DST_REF, "both identities by reference");
            assert!(p.len() < 48, "a probe is small: {} bytes", p.len());
        }
    }

    #[test]
    fn a_receiver_that_cannot_resolve_a_reference_gets_full_identities_again() {
        let mut net = cluster(&["a", "b"]);
        // b restarts under its name: the new process knows nobody, but a still believes b
        // holds a's identity.
        let addr = net.nodes[1].identity().addr();
        net.nodes[1] = Node::new("b", addr, 2, Tags::new(), CoreConfig::default(), 99).unwrap();
        net.timers.retain(|t| t.2 != 1);
        net.collect(1);
        let before = net.nodes[1].stats().dropped();
        let since = net.now;
        net.run_until(since + Duration::from_secs(10));
        let packets = net.foca_packets(0, 1, since);
        assert!(
            packets.iter().any(|p| p[4] & SRC_REF != 0),
            "a first referenced itself"
        );
        assert!(
            net.nodes[1].stats().dropped() > before,
            "b could not resolve it"
        );
        assert!(
            net.log
                .iter()
                .any(|(_, f, _, d)| *f == addr && d[3] == Kind::Unknown as u8),
            "b said so"
        );
        assert_eq!(
            net.nodes[1].live_members(),
            2,
            "and b learnt a, and a the new b"
        );
        assert!(
            net.nodes[0]
                .members()
                .iter()
                .any(|m| m.name() == "b" && m.id.version() == 2 && m.status == Status::Alive)
        );
    }

    #[test]
    fn a_digest_in_several_packets_asks_for_one_answer() {
        let mut net = cluster(&["a", "b", "c"]);
        // Two 14-byte entries a packet (after the envelope, flag, clocks and count): three
        // members take two packets.
        for n in &mut net.nodes {
            n.config.packet_size_max = std::num::NonZeroUsize::new(60).unwrap();
        }
        let digests = |out: Vec<Output>| -> Vec<Vec<u8>> {
            out.into_iter()
                .filter_map(|o| match o {
                    Output::Transmit { data, .. } if data[3] == Kind::Digest as u8 => Some(data),
                    _ => None,
                })
                .collect()
        };
        let (a, b) = (
            net.nodes[0].identity().addr(),
            net.nodes[1].identity().addr(),
        );
        net.nodes[0].send_digest(b, true);
        let sent = digests(drain(&mut net.nodes[0]));
        assert_eq!(sent.len(), 2);
        let asking: Vec<u8> = sent.iter().map(|d| d[wire::ENVELOPE_LEN]).collect();
        assert_eq!(asking, [1, 0], "only the first packet asks for an answer");
        let mut answer = Vec::new();
        for p in &sent {
            net.nodes[1].handle_packet(a, p).unwrap();
            answer.extend(digests(drain(&mut net.nodes[1])));
        }
        assert_eq!(answer.len(), 2, "b answers once, with its whole digest");
        assert!(answer.iter().all(|d| d[wire::ENVELOPE_LEN] == 0));
    }

    #[test]
    fn periodic_push_pull_is_a_digest_and_fetches_only_unknown_members() {
        let mut net = cluster(&["a", "b", "c"]);
        let since = net.now;
        // Past the push-pull interval (30 s, jittered): every node exchanged digests.
        net.run_until(since + Duration::from_secs(70));
        let digests = net
            .log
            .iter()
            .filter(|(at, _, _, d)| *at >= since && d[3] == Kind::Digest as u8)
            .count();
        assert!(digests >= 2, "digests exchanged: {digests}");
        let fetched = net
            .log
            .iter()
            .filter(|(at, _, _, d)| *at >= since && d[3] == Kind::Want as u8)
            .count();
        assert_eq!(fetched, 0, "everyone held every identity already");

        // A digest naming a member the receiver never heard of makes it ask for it in full.
        let d = node("d", 4);
        let entry = wire::DigestEntry::of(&Member::alive(d.identity().clone()));
        let mut packet = Vec::new();
        wire::put_envelope(&mut packet, Kind::Digest);
        packet.extend(postcard::to_stdvec(&(false, wire::Clocks::default(), vec![entry])).unwrap());
        let from = net.nodes[1].identity().addr();
        net.nodes[0].handle_packet(from, &packet).unwrap();
        let out = drain(&mut net.nodes[0]);
        let want = out
            .iter()
            .find_map(|o| match o {
                Output::Transmit { to, data } if data[3] == Kind::Want as u8 => Some((to, data)),
                _ => None,
            })
            .expect("a asks for d");
        assert_eq!(*want.0, from);
        let keys = wire::decode_want(&want.1[wire::ENVELOPE_LEN..])
            .unwrap()
            .keys;
        assert_eq!(keys, vec![d.identity().key().0.to_le_bytes()]);
    }

    /// User events node `i` delivered, by name.
    fn user_events(net: &Net, i: usize) -> Vec<String> {
        net.seen
            .get(i)
            .into_iter()
            .flatten()
            .filter_map(|o| match o {
                Output::User(e) => Some(e.name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Restarts node `i` under its name with `version`, forgetting its timers.
    fn restart(net: &mut Net, i: usize, version: u64, seed: u64) {
        let (name, addr) = (
            net.nodes[i].identity().name().to_string(),
            net.nodes[i].identity().addr(),
        );
        net.nodes[i] = Node::new(
            &name,
            addr,
            version,
            Tags::new(),
            CoreConfig::default(),
            seed,
        )
        .unwrap();
        net.timers.retain(|t| t.2 != i);
        net.collect(i);
    }

    /// Issue 21, item 1: after more than 512 events, a restarted member's events still reach
    /// everyone: it takes the cluster's event clock from the join's answer.
    #[test]
    fn a_restarted_member_takes_the_event_clock_on_join_and_its_events_arrive() {
        let mut net = cluster(&["a", "b", "c"]);
        for k in 0..600 {
            net.nodes[0]
                .user_event(&format!("old{k}"), b"", false)
                .unwrap();
            net.collect(0);
        }
        net.run_until(net.now + Duration::from_secs(2));
        assert!(net.nodes[1].clocks().event >= 600);
        restart(&mut net, 2, 2, 33);
        let a = net.nodes[0].identity().addr();
        net.nodes[2].join(&[a]).unwrap();
        net.collect(2);
        net.run_until(net.now + Duration::from_secs(5));
        assert!(
            net.nodes[2].clocks().event >= 600,
            "{:?}",
            net.nodes[2].clocks()
        );
        for k in 0..6 {
            net.nodes[2]
                .user_event(&format!("new{k}"), b"", false)
                .unwrap();
            net.collect(2);
        }
        net.run_until(net.now + Duration::from_secs(2));
        for i in [0, 1] {
            let got = user_events(&net, i)
                .iter()
                .filter(|n| n.starts_with("new"))
                .count();
            assert_eq!(
                got, 6,
                "node {i} delivered {got} of the restarted member's 6 events"
            );
        }
    }

    /// Issue 21, item 1, hostile forms: an event time of 10,000, or near `u64::MAX`, from a
    /// stranger does not make a third member's later events old.
    #[test]
    fn forged_event_times_do_not_silence_other_members() {
        for forged_ltime in [10_000, crate::clock::CLOCK_MAX, u64::MAX - 1] {
            let mut net = cluster(&["a", "b", "c"]);
            let stranger = SocketAddr::from(([127, 0, 0, 99], 9));
            let forged = wire::encode(
                Kind::User,
                &wire::UserMsg {
                    seq: 1,
                    event: crate::user::UserEvent {
                        ltime: forged_ltime,
                        name: "forged".into(),
                        payload: Vec::new(),
                        coalesce: false,
                    },
                    sender: [0; 8],
                    forward: Vec::new(),
                },
            );
            for i in [0, 1] {
                let _ = net.nodes[i].handle_packet(stranger, &forged);
                net.collect(i);
            }
            for k in 0..3 {
                net.nodes[2].user_event("deploy", b"v2", false).unwrap();
                net.collect(2);
                net.run_until(net.now + Duration::from_millis(100 * (k + 1)));
            }
            net.run_until(net.now + Duration::from_secs(2));
            for i in [0, 1] {
                let got = user_events(&net, i)
                    .iter()
                    .filter(|n| *n == "deploy")
                    .count();
                assert_eq!(
                    got, 3,
                    "forged time {forged_ltime}: node {i} delivered {got} of 3"
                );
            }
        }
    }

    /// Issue 21, item 3: a member restarted at the same address asks queries from time 0
    /// again; they are new queries and are answered.
    #[test]
    fn queries_from_a_member_restarted_at_the_same_address_are_new() {
        let mut net = cluster(&["a", "b"]);
        let targets = vec![net.nodes[0].identity().clone()];
        net.nodes[1]
            .query("uptime", b"", &targets, Duration::from_secs(2))
            .unwrap();
        net.collect(1);
        net.run_until(net.now + Duration::from_secs(3));
        restart(&mut net, 1, 2, 44);
        let targets = vec![net.nodes[0].identity().clone()];
        // Before it learns the cluster's query clock: time 0 again, as before the restart.
        net.nodes[1]
            .query("uptime", b"", &targets, Duration::from_secs(2))
            .unwrap();
        net.collect(1);
        net.run_until(net.now + Duration::from_secs(3));
        let incoming = net.seen[0]
            .iter()
            .filter(|o| matches!(o, Output::Query(crate::query::QueryOutput::Incoming(_))))
            .count();
        assert_eq!(incoming, 2, "a handled both queries");
    }

    /// Issue 21, item 4: a forged identity of b with a version far ahead, told to a: b takes
    /// a version above it and stays alive everywhere.
    #[test]
    fn a_member_outranked_by_a_newer_identity_of_its_name_takes_a_version_above_it() {
        let mut net = cluster(&["a", "b", "c"]);
        let b = net.nodes[1].identity().clone();
        let forged_version = b.version() + 1_000_000_000;
        let forged = b.with_version(forged_version);
        let notice = wire::encode(
            Kind::Notice,
            &Notice {
                seq: 9,
                member: Member::alive(forged),
                from: None,
                relay: true,
                forward: Vec::new(),
            },
        );
        let stranger = SocketAddr::from(([127, 0, 0, 99], 9));
        let _ = net.nodes[0].handle_packet(stranger, &notice);
        net.collect(0);
        net.run_until(net.now + Duration::from_secs(20));
        let now_b = net.nodes[1].identity().clone();
        assert!(now_b.version() > forged_version, "b at {}", now_b.version());
        for i in [0, 2] {
            let seen = net.nodes[i].member("b").expect("b known");
            assert_eq!(seen.status, Status::Alive, "node {i}: {seen:?}");
            assert_eq!(seen.id, now_b, "node {i} holds b's newest identity");
        }
    }

    /// Issue 21, item 2: packets naming new identities for another member are dropped,
    /// counted, and leave nothing in the directory.
    #[test]
    fn packets_for_another_member_leave_nothing_behind() {
        let mut a = node("a", 1);
        drain(&mut a);
        let l = crate::Limits::default();
        let from = SocketAddr::from(([127, 0, 0, 99], 9));
        for i in 0..10_000u32 {
            let addr = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 7946));
            let src = NodeId::new(&format!("src{i}"), addr, 1, Tags::new(), &l).unwrap();
            let dst = NodeId::new(&format!("dst{i}"), addr, 1, Tags::new(), &l).unwrap();
            let r = a.handle_packet(from, &crate::harness::announce(&src, &dst));
            assert!(matches!(r, Err(DropReason::Misaddressed)), "{r:?}");
            drain(&mut a);
        }
        assert_eq!(a.stats().dropped_misaddressed, 10_000);
        assert!(
            a.directory().len() <= 1,
            "{} identities kept",
            a.directory().len()
        );
        assert_eq!(a.members().len(), 1);
    }

    /// Outputs to `to` since the node was drained: their total bytes.
    fn bytes_to(out: &[Output], to: SocketAddr) -> usize {
        out.iter()
            .map(|o| match o {
                Output::Transmit { to: t, data } if *t == to => data.len(),
                _ => 0,
            })
            .sum()
    }

    /// Issue 21, item 7: a forged source gets at most three times the bytes it sent until it
    /// echoes a challenge; the echo releases what was held.
    #[test]
    fn an_unvalidated_source_gets_at_most_three_times_its_bytes() {
        let mut net = cluster(&["a", "b", "c", "d", "e", "f"]);
        let before = net.nodes[0].stats();
        let victim = SocketAddr::from(([127, 0, 0, 99], 9));
        // A full-state request with nothing in it: 8 bytes.
        let sync = crate::harness::sync_request();
        let a = &mut net.nodes[0];
        a.handle_packet(victim, &sync).unwrap();
        let out = drain(a);
        let sent = bytes_to(&out, victim);
        assert!(sent <= 3 * sync.len(), "{sent} bytes for {}", sync.len());
        let challenge = out
            .iter()
            .find_map(|o| match o {
                Output::Transmit { to, data }
                    if *to == victim && data[3] == Kind::Challenge as u8 =>
                {
                    Some(data.clone())
                }
                _ => None,
            })
            .expect("a challenge");
        // A query whose answer is a kilobyte.
        let q = wire::encode(
            Kind::Query,
            &wire::QueryMsg {
                seq: 3,
                ltime: 0,
                origin_name: "zz".into(),
                origin_version: 1,
                name: "big".into(),
                payload: Vec::new(),
            },
        );
        a.handle_packet(victim, &q).unwrap();
        a.respond(victim, 0, &[b'x'; 1000]).unwrap();
        a.handle_timer(TimerEvent::NoticeRetry(a.notice_seq));
        let out = drain(a);
        let received = sync.len() + q.len();
        assert!(bytes_to(&out, victim) + sent <= 3 * received);
        // The echo releases the held answers.
        let mut echo = challenge.clone();
        echo[3] = Kind::ChallengeEcho as u8;
        a.handle_packet(victim, &echo).unwrap();
        let out = drain(a);
        assert!(
            bytes_to(&out, victim) > 1000,
            "the state and the answer went out"
        );
        let stats = a.stats();
        assert_eq!(
            (stats.validated, stats.challenges),
            (before.validated + 1, before.challenges + 2),
            "{stats:?}"
        );
    }

    /// Issue 21, item 8: once a member that left is reaped, replays of its old packets do not
    /// bring it back; a failed one comes back only if its address echoes a challenge.
    #[test]
    fn replays_of_a_reaped_member_do_not_bring_it_back() {
        for crashed in [false, true] {
            let config = CoreConfig {
                reap_after: Duration::from_secs(20),
                ..CoreConfig::default()
            };
            let nodes = ["a", "b", "c"]
                .iter()
                .zip(1..)
                .map(|(n, s)| {
                    let addr = SocketAddr::from(([127, 0, 0, 1], 7000 + s as u16));
                    Node::new(n, addr, 1, Tags::new(), config.clone(), s).unwrap()
                })
                .collect();
            let mut net = Net::new(nodes);
            let first = net.nodes[0].identity().addr();
            for i in 1..3 {
                net.nodes[i].join(&[first]).unwrap();
                net.collect(i);
            }
            net.run_until(Duration::from_secs(5));
            let c = net.nodes[2].identity().addr();
            let from_c: Vec<Vec<u8>> = net
                .log
                .iter()
                .filter(|(_, f, _, _)| *f == c)
                .map(|(_, _, _, d)| d.clone())
                .collect();
            assert!(!from_c.is_empty());
            if crashed {
                // c's address goes dead: nothing reaches it any more.
                net.nodes[2] = node("zz-dead", 99);
            } else {
                net.nodes[2].leave().unwrap();
                net.collect(2);
            }
            net.run_until(net.now + Duration::from_secs(60));
            assert!(
                net.nodes[0].member("c").is_none(),
                "crashed {crashed}: c reaped"
            );
            let joins_before = net.seen[0]
                .iter()
                .filter(|o| matches!(o, Output::Event(e) if e.kind == EventKind::Join && e.member.name() == "c"))
                .count();
            for p in &from_c {
                let before = net.nodes[0].member("c").is_some();
                let r = net.nodes[0].handle_packet(c, p);
                net.collect(0);
                assert!(
                    before || net.nodes[0].member("c").is_none(),
                    "crashed {crashed}: a packet of kind {} brought c back ({r:?})",
                    p[3]
                );
            }
            net.run_until(net.now + Duration::from_secs(10));
            assert!(
                net.nodes[0].member("c").is_none(),
                "crashed {crashed}: c came back"
            );
            let joins_after = net.seen[0]
                .iter()
                .filter(|o| matches!(o, Output::Event(e) if e.kind == EventKind::Join && e.member.name() == "c"))
                .count();
            assert_eq!(
                joins_before, joins_after,
                "crashed {crashed}: a join event for c"
            );
            assert!(net.nodes[0].stats().dropped_buried > 0);
        }
    }
}
