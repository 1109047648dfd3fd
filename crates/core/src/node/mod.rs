//! [`Node`]: one cluster member's protocol state, sans IO.
//!
//! A driver (the tokio agent, or the simulator) owns a `Node` and feeds it three kinds of
//! input: packets ([`Node::handle_packet`]), timers it was asked to schedule
//! ([`Node::handle_timer`]) and local commands ([`Node::join`], [`Node::set_tags`],
//! [`Node::leave`]). After every call it drains [`Node::poll`] until `None`, and acts on each
//! [`Output`]: send a datagram, schedule a timer (relative delay; deliver timers in deadline
//! order, ties in the order they were requested), or hand a membership event to handlers.
//!
//! The node is a small coordinator over sub-states, each in its own file with the timers and
//! messages it owns, all writing to one `outbox`:
//!
//! - `membership`: foca (SWIM), its runtime and the member table it feeds;
//! - `notices`: acknowledged notices, user events and queries sent straight to members;
//! - `sync`: full-state exchange (joins) and digest push-pull, with the Lamport clocks;
//! - `suspicion`: Lifeguard (suspicion timers, health, early verdicts);
//! - `queries` and `events`: queries and user events;
//! - `reconnect`: reaped failed members still tried, so partitions heal;
//! - `outbox`: effects in order, datagrams through the anti-amplification limit;
//! - `coords`: probe round trips, our network coordinate and the members'.
//!
//! The node reads no clock and no thread RNG: the time comes with each packet and timer (a
//! monotonic reading of the driver's clock, only used to time probes), randomness from the seed given to
//! [`Node::new`], the identity version from the driver, and every collection it iterates for
//! a decision keeps insertion order.

mod coords;
mod events;
mod membership;
mod notices;
mod outbox;
mod queries;
mod reconnect;
mod suspicion;
mod sync;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use foca::{AccumulatingRuntime, Foca, Member};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::config::CoreConfig;
use crate::error::{CommandError, DropReason};
use crate::identity::{NodeId, Tags, validate_tags};
use crate::member::{EventKind, MemberEvent, MemberInfo, Status};
use crate::table::KeyTable;
use crate::wire::{self, Kind, SharedDirectory, ValidatingCodec};

use membership::Membership;
use notices::Notices;
use outbox::{Outbox, Reply};
use queries::Queries;
use reconnect::Reconnect;
use suspicion::SuspicionState;
use sync::SyncState;

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
    /// A member turned suspect, or alive again after a suspicion: no membership event (no
    /// handler hears of it), but its status in [`Node::members`] changed. A driver that
    /// shows or writes statuses refreshes them on it, instead of polling.
    Status(MemberInfo),
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
    /// Suspicions of a member reported ([`Output::Status`] suspect), whoever raised them.
    #[serde(default)]
    pub suspicions: u64,
    /// Of those, members that refuted in time (alive again).
    #[serde(default)]
    pub suspicions_refuted: u64,
    /// Of those, members declared failed.
    #[serde(default)]
    pub suspicions_confirmed: u64,
    /// User events delivered here (sent here or received), each once.
    #[serde(default)]
    pub user_events: u64,
    /// Queries delivered here (asked here or received), each once.
    #[serde(default)]
    pub queries: u64,
    /// Acknowledged messages sent (notices of joins, leaves and verdicts, user events,
    /// queries and their answers), first sends, one per destination.
    #[serde(default)]
    pub acked_sent: u64,
    /// Of those, sent again because no acknowledgement came in time.
    #[serde(default)]
    pub acked_retransmitted: u64,
    /// Network coordinate samples applied (one per timed probe answered with a coordinate).
    #[serde(default)]
    pub coordinate_updates: u64,
    /// Times our coordinate went bad (not finite) and was reset (Serf's `coordinate_resets`).
    #[serde(default)]
    pub coordinate_resets: u64,
    /// Coordinates from peers refused (not finite, or out of bounds) and not kept.
    #[serde(default)]
    pub coordinates_refused: u64,
    /// Round trips of our direct probes (a histogram; `/metrics` shows it, `info` does not).
    #[serde(skip)]
    pub probe_rtt: crate::coordinate::RttHistogram,
    /// Datagrams and bytes by message kind (indexed as [`Kind::ALL`]), in and out. Only
    /// datagrams with a valid envelope count in; `/metrics` shows them (`info` does not).
    #[serde(skip)]
    pub by_kind: [KindTraffic; Kind::ALL.len()],
}

/// One message kind's traffic (see [`Stats::by_kind`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindTraffic {
    /// Datagrams received.
    pub packets_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams sent.
    pub packets_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
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

/// One member's protocol state. See the module documentation for how to drive it.
pub struct Node {
    config: CoreConfig,
    rng: SmallRng,
    stats: Stats,
    left: bool,
    /// Identities known in full, shared with the codec (compact references on the wire).
    dir: SharedDirectory,
    /// foca, its runtime and the member table.
    membership: Membership,
    /// Acknowledged notices.
    notices: Notices,
    /// Full-state and digest exchanges.
    sync: SyncState,
    /// Lifeguard.
    suspicion: SuspicionState,
    /// User events: Lamport clock and recently seen events.
    events: crate::user::EventBuffer,
    /// Queries asked and received.
    queries: Queries,
    /// Reaped failed members still tried.
    reconnect: Reconnect,
    /// Network coordinates and the probe being timed.
    coords: coords::Coords,
    /// The driver's clock at the packet or timer being handled.
    now: Duration,
    /// Effects for the driver.
    out: Outbox,
}

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
        let coords_rng = SmallRng::seed_from_u64(rng.random());
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
            config,
            rng,
            stats: Stats::default(),
            left: false,
            dir,
            membership: Membership {
                foca,
                rt: AccumulatingRuntime::new(),
                config: foca_config,
                sized_for: 1,
                members: KeyTable::default(),
            },
            notices: Notices::default(),
            sync: SyncState::default(),
            suspicion: SuspicionState::default(),
            events: crate::user::EventBuffer::default(),
            queries: Queries::default(),
            reconnect: Reconnect::default(),
            coords: coords::Coords::new(coords_rng),
            now: Duration::ZERO,
            out: Outbox {
                queue: VecDeque::new(),
                limiter: crate::validate::Limiter::new(secret),
                reply: None,
            },
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

    /// This node's current identity.
    pub fn identity(&self) -> &NodeId {
        self.membership.foca.identity()
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

    /// Counters.
    pub fn stats(&self) -> Stats {
        let c = self.out.limiter.counts;
        Stats {
            limited_held: c.held,
            limited_dropped: c.dropped,
            challenges: c.challenges,
            validated: c.validated,
            coordinate_updates: self.coords.vivaldi.updates(),
            coordinate_resets: self.coords.vivaldi.resets(),
            coordinates_refused: self.coords.refused,
            probe_rtt: self.coords.rtt,
            ..self.stats
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// True after [`Node::leave`].
    pub fn has_left(&self) -> bool {
        self.left
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
        self.membership
            .foca
            .change_identity(new.clone(), &mut self.membership.rt)
            .map_err(CommandError::Protocol)?;
        // An identity change leaves foca disconnected, its probe and suspicion timers void,
        // until a message addressed to the new identity arrives. A node that nobody answers
        // (cut off, or alone with dead members) would never detect a failure again: an
        // empty update makes foca count its members and start probing now (a suspect that
        // fails its next probe gets a fresh suspicion timer).
        self.membership
            .foca
            .apply_many(std::iter::empty(), false, &mut self.membership.rt)
            .map_err(CommandError::Protocol)?;
        self.drain_foca();
        // A member that hears from the new identity answers it, which spreads the new
        // identity at once.
        if let Some(peer) = self.random_live_member() {
            let _ = self.membership.foca.announce(peer, &mut self.membership.rt);
        }
        self.announce(new);
        Ok(())
    }

    /// Leaves the cluster gracefully: switches to the leaving identity, declares it down by
    /// gossip and tells members directly, retransmitting until they acknowledge (see
    /// [`Node::notices_settled`]). Afterwards the node only answers acknowledgements.
    pub fn leave(&mut self) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let leaving = self.identity().as_leaving();
        self.membership
            .foca
            .change_identity(leaving.clone(), &mut self.membership.rt)
            .map_err(CommandError::Protocol)?;
        self.membership
            .foca
            .leave_cluster(&mut self.membership.rt)
            .map_err(CommandError::Protocol)?;
        self.left = true;
        self.drain_foca();
        self.notices.leave_notice = self.send_notice(Member::down(leaving.clone()));
        self.emit(EventKind::Leave, leaving, Status::Left);
        Ok(())
    }

    /// Handles one datagram from `from`, received at `now` (the driver's monotonic clock,
    /// from any fixed start; it times probes). A packet that is not ours, malformed or
    /// refused is dropped, counted and returned as an error; nothing else changes then.
    pub fn handle_packet(
        &mut self,
        now: Duration,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), DropReason> {
        self.now = self.now.max(now);
        self.stats.packets_in += 1;
        self.stats.bytes_in += data.len() as u64;
        let counted = self.out.limiter.limits(from);
        if counted {
            self.out.limiter.received(from, data.len());
        }
        self.out.reply = Some(Reply {
            to: from,
            len: data.len(),
            vouched: false,
            counted,
            sender: None,
        });
        let result = self.dispatch(from, data);
        if let Err(reason) = &result {
            self.stats.count_drop(reason);
        } else if let Some(heard) = self.suspicion.unconfirmed.get_mut(&from) {
            *heard = true;
        }
        self.drain_foca();
        if result.is_ok() {
            self.vouch_sender();
        }
        self.out.reply = None;
        let outranked = self.directory().take_outranked();
        if let Some(version) = outranked {
            self.outrank(version);
        }
        self.trim_directory();
        result
    }

    fn dispatch(&mut self, from: SocketAddr, data: &[u8]) -> Result<(), DropReason> {
        let (kind, payload) = wire::open_envelope(data, self.config.packet_size_max.get())?;
        let t = &mut self.stats.by_kind[kind as usize];
        t.packets_in += 1;
        t.bytes_in += data.len() as u64;
        match kind {
            Kind::Foca => self.on_foca(from, payload, None),
            Kind::FocaCoord => {
                let (coord, packet) = Self::split_foca_coord(payload)?;
                self.on_foca(from, packet, Some(coord))
            }
            Kind::Coordinates => self.on_coordinates(from, payload),
            Kind::Unknown => self.on_unknown(from, payload),
            Kind::User => self.on_user(from, payload),
            Kind::Digest => self.on_digest(from, payload),
            Kind::Want => self.on_want(from, payload),
            Kind::Sync => self.on_sync(from, payload),
            Kind::Notice => self.on_notice(from, payload),
            Kind::Query => self.on_query(from, payload),
            Kind::QueryResponse => self.on_query_answer(from, payload),
            Kind::Challenge => self.on_challenge(from, payload),
            Kind::ChallengeEcho => self.on_challenge_echo(from, payload),
            Kind::NoticeAck => self.on_ack(from, payload),
        }
    }

    /// Handles a timer scheduled through [`Output::Timer`], due at `now` (the clock of
    /// [`Node::handle_packet`]).
    pub fn handle_timer(&mut self, now: Duration, timer: TimerEvent) {
        self.now = self.now.max(now);
        match timer {
            TimerEvent::Foca(t) => self.on_foca_timer(t),
            TimerEvent::PushPull => self.on_push_pull(),
            TimerEvent::QueryDeadline(ltime) => self.finish_query(ltime),
            TimerEvent::StateRetry(attempt) => self.on_state_retry(attempt),
            TimerEvent::JoinFollowUp(addr) => self.on_join_follow_up(addr),
            TimerEvent::JoinFollowUpLate => self.on_join_follow_up_late(),
            TimerEvent::NoticeRetry(seq) => self.retry_notice(seq),
            TimerEvent::SuspectUnconfirmed(t) => {
                if !self.on_suspect_unconfirmed(t) {
                    return;
                }
            }
            TimerEvent::Reconnect => self.reconnect_tick(),
            TimerEvent::HealthDecay => self.on_health_decay(),
            TimerEvent::AnnounceSelf => self.on_announce_self(),
        }
        self.drain_foca();
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        // +-10 %, so periodic work of many nodes does not line up.
        let f = self.rng.random_range(0.9..1.1);
        d.mul_f64(f)
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
        b.handle_packet(Duration::ZERO, a.identity().addr(), &to_b[0])
            .unwrap();
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
        a.handle_packet(Duration::ZERO, b.identity().addr(), &reply)
            .unwrap();
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
            let r = a.handle_packet(Duration::ZERO, from, &data);
            let s = a.stats();
            prop_assert_eq!(s.packets_in, 1);
            prop_assert_eq!(s.dropped(), u64::from(r.is_err()));
        }

        #[test]
        fn random_payloads_behind_a_valid_envelope_never_panic(
            kind in 0u8..14,
            payload in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let mut a = node("a", 1);
            drain(&mut a);
            let mut data = vec![b'G', b'A', wire::VERSION, kind];
            data.extend(payload);
            let _ = a.handle_packet(Duration::ZERO, SocketAddr::from(([127, 0, 0, 9], 9)), &data);
            drain(&mut a);
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
            let r = a.handle_packet(Duration::ZERO, from, &crate::harness::announce(&src, &dst));
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
}
