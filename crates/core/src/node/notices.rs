//! Acknowledged notices: a member state (a leave, a tag change, a failure verdict), a user
//! event or a query sent straight to members and retransmitted until each acknowledges; in
//! clusters larger than the notice fanout, split among the ones told directly, which pass it
//! on (forward lists).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use foca::{Member, State};
use indexmap::IndexMap;
use rand::RngExt;

use super::*;
use crate::error::DropReason;
use crate::identity::{Fnv, NameKey, NodeId};
use crate::wire::{self, Kind, Notice, NoticeAck};

/// A notice waiting for acknowledgements.
pub(super) struct PendingNotice {
    pub(super) data: Vec<u8>,
    /// The packets of targets that got their own (with a forward list) instead of `data`,
    /// with the addresses on that list: if such a target never acknowledges, they are told
    /// directly.
    pub(super) own: BTreeMap<SocketAddr, (Vec<u8>, Vec<SocketAddr>)>,
    /// Destination and transmissions so far.
    pub(super) targets: IndexMap<SocketAddr, u32>,
    /// Transmissions per destination before giving up.
    pub(super) attempts: u32,
}

/// The notices of one node.
#[derive(Default)]
pub(super) struct Notices {
    /// The last sequence number taken.
    pub(super) seq: u64,
    /// Notices waiting for acknowledgements, by sequence number.
    pub(super) pending: BTreeMap<u64, PendingNotice>,
    /// The identity we last sent a notice about (None before the first).
    pub(super) announced: Option<NodeId>,
    /// The members that notice went to, and when it went: members learned from a full
    /// state within [`ANNOUNCE_WINDOW`] after it are told too (see [`Node::announce_more`]).
    pub(super) announced_to: BTreeSet<NameKey>,
    /// When `announced` was sent (the node's clock).
    pub(super) announced_at: Duration,
    /// The sequence number of our leave notice, once left.
    pub(super) leave_notice: Option<u64>,
    /// Notices we passed on, by sender and sequence number (bounded): a retransmission
    /// of one whose ack was lost is not passed on again.
    /// Each is named by [`notice_tag`] (8 bytes, not the 40 of an address and a number: at
    /// 10,000 simulated nodes each holds 1,024 of them).
    pub(super) forwarded: BTreeSet<u64>,
    /// The same, oldest first.
    pub(super) forwarded_order: VecDeque<u64>,
}

/// How long after announcing an identity the node also tells the members it learns from a
/// full state: a join's answer (the whole cluster, in several datagrams, held by the answerer
/// until our address is validated) can complete after the announcement went out, and its
/// follow-ups (1 s and 5 s later) repair what was lost.
pub(super) const ANNOUNCE_WINDOW: Duration = Duration::from_secs(10);

/// How many passed-on notices [`Node`] remembers.
const FORWARDED_MAX: usize = 1024;

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

impl Node {
    /// True once every member told of our leave acknowledged it or was given up on (and
    /// before any leave).
    pub fn notices_settled(&self) -> bool {
        self.notices
            .leave_notice
            .is_none_or(|seq| !self.notices.pending.contains_key(&seq))
    }

    /// Tells every live member `member`, acknowledged (see [`Node::post_split`]): every
    /// member learns within two round trips, with no gossip storm however many change at
    /// once. Concurrent joiners that never heard of each other need nothing more: each one's
    /// digest exchange with its join target a second after the answer
    /// ([`TimerEvent::JoinFollowUp`]) brings it the others, which the target learnt from
    /// their notices.
    pub(super) fn send_notice(&mut self, member: Member<NodeId>) -> Option<u64> {
        let targets = self.notice_targets();
        self.send_notice_to(targets, member)
    }

    /// [`Self::send_notice`] to `targets` only.
    fn send_notice_to(
        &mut self,
        targets: Vec<(SocketAddr, NameKey)>,
        member: Member<NodeId>,
    ) -> Option<u64> {
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
    pub(super) fn notice_targets(&self) -> Vec<(SocketAddr, NameKey)> {
        let mut out: Vec<_> = self
            .membership
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
    pub(super) fn forward_targets(
        &self,
        sender: NameKey,
        from: SocketAddr,
        list: &[wire::Forward],
    ) -> Vec<SocketAddr> {
        let vouched = self
            .membership
            .members
            .get(sender)
            .is_some_and(|r| r.status.is_live() && r.id.addr() == from);
        list.iter()
            .take(wire::FORWARD_MAX)
            .filter_map(|(k, addr)| {
                match self.membership.members.get(NameKey(u64::from_le_bytes(*k))) {
                    Some(r) => r.status.is_live().then(|| r.id.addr()),
                    None => vouched.then_some(*addr),
                }
            })
            .filter(|a| *a != self.identity().addr())
            .collect()
    }

    /// Sends a user event to `targets`, acknowledged and retransmitted like a notice, split
    /// like one.
    pub(super) fn post_user(
        &mut self,
        targets: Vec<(SocketAddr, NameKey)>,
        event: crate::user::UserEvent,
    ) {
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
    pub(super) fn post_notice(
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
    pub(super) fn post_notice_from(
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
    pub(super) fn post(
        &mut self,
        targets: Vec<SocketAddr>,
        make: impl FnOnce(u64) -> Vec<u8>,
    ) -> Option<u64> {
        let mut make = Some(make);
        let plan = targets.into_iter().map(|t| (t, Vec::new())).collect();
        self.post_plan(plan, |seq, _| (make.take().expect("built once"))(seq))
    }

    /// [`Node::post`] to every one of `targets`, through at most `notice_fanout` of them:
    /// beyond the fanout, the rest are split among the ones told directly (drawn at random),
    /// each passing it on to its share (at most [`wire::FORWARD_MAX`]; more are told
    /// directly when the shares would be larger). `make` builds the packet for a sequence
    /// number and a forward list.
    pub(super) fn post_split(
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
        // A partial Fisher-Yates: only `direct` draws. (rand's `partial_shuffle` draws from
        // the other end, which would change every simulator trace for no gain.)
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
    pub(super) fn post_plan(
        &mut self,
        plan: Vec<(SocketAddr, Vec<wire::Forward>)>,
        mut make: impl FnMut(u64, Vec<wire::Forward>) -> Vec<u8>,
    ) -> Option<u64> {
        if plan.is_empty() {
            return None;
        }
        self.notices.seq += 1;
        let seq = self.notices.seq;
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
        self.stats.acked_sent += targets.len() as u64;
        self.notices.pending.insert(
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

    pub(super) fn retry_notice(&mut self, seq: u64) {
        let Some(mut p) = self.notices.pending.remove(&seq) else {
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
        self.stats.acked_retransmitted += sends.len() as u64;
        for to in sends {
            let data = p.own.get(&to).map_or(&p.data, |(d, _)| d).clone();
            self.transmit(to, data);
        }
        p.targets.values_mut().for_each(|n| *n += 1);
        self.notices.pending.insert(seq, p);
        self.schedule(self.config.notice_retry, TimerEvent::NoticeRetry(seq));
    }

    /// A notice: a member state to apply (and maybe to pass on), acknowledged.
    pub(super) fn on_notice(&mut self, from: SocketAddr, payload: &[u8]) -> Result<(), DropReason> {
        let notice = wire::decode_notice(payload, &self.config.limits, &mut self.directory())?;
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
        if let Some(r) = self.out.reply.as_mut() {
            r.sender = Some(sender.key());
        }
        if self.directory().is_buried(&sender) {
            self.challenge_buried(&sender);
            return Err(DropReason::Buried);
        }
        if self.directory().is_buried_left(notice.member.id()) {
            return Err(DropReason::Buried);
        }
        if !self.left {
            let suspects_me =
                notice.member.state() == State::Suspect && notice.member.id() == self.identity();
            let incarnation = notice.member.incarnation();
            let m = notice.member;
            if !notice.forward.is_empty()
                && let tag = notice_tag(from, notice.seq)
                && self.notices.forwarded.insert(tag)
            {
                self.notices.forwarded_order.push_back(tag);
                if self.notices.forwarded_order.len() > FORWARDED_MAX
                    && let Some(old) = self.notices.forwarded_order.pop_front()
                {
                    self.notices.forwarded.remove(&old);
                }
                let sender = notice.from.as_ref().map_or(NameKey(0), NodeId::key);
                let targets = self.forward_targets(sender, from, &notice.forward);
                self.post_notice_from(targets, m.clone(), notice.from.clone(), false);
            }
            self.membership
                .foca
                .apply_many(std::iter::once(m), notice.relay, &mut self.membership.rt)
                .map_err(DropReason::Protocol)?;
            // Lifeguard's buddy system: foca has refuted by raising our incarnation
            // above the suspected one. Tell the member that asked, acknowledged: left
            // to gossip, the refutation can lose the race with its suspicion timeout
            // under loss (alive at a higher incarnation beats the suspicion; foca may
            // be higher still, which any later packet of ours shows).
            if suspects_me && incarnation < foca::Incarnation::MAX {
                let me = Member::new(self.identity().clone(), incarnation + 1, State::Alive);
                let seq = self.post_notice(vec![from], me, false);
                // Retried for as long as the suspecter may wait for it before its early
                // verdict, not the usual five tries: five lost in a row (one in 400 at 30 %
                // loss) left a live member declared failed in the simulator.
                let window = self
                    .config
                    .suspicion_confirm
                    .unwrap_or(Duration::from_secs(3));
                let retry = self.config.notice_retry.as_millis().max(1);
                let attempts = (window.as_millis() / retry + 1).min(u128::from(u32::MAX)) as u32;
                if let Some(p) = seq.and_then(|s| self.notices.pending.get_mut(&s)) {
                    p.attempts = p.attempts.max(attempts);
                }
            }
        }
        let ack = wire::encode(Kind::NoticeAck, &NoticeAck { seq: notice.seq });
        self.transmit(from, ack);
        Ok(())
    }

    /// The acknowledgement of a notice, user event or query (a query's ack is Serf's).
    pub(super) fn on_ack(&mut self, from: SocketAddr, payload: &[u8]) -> Result<(), DropReason> {
        let ack = wire::decode_notice_ack(payload)?;
        if let Some(&q) = self.queries.seqs.get(&ack.seq)
            && let Some(p) = self.queries.pending.get_mut(&q)
            && p.acked.insert(from)
            && let Some(name) = p.targets.get(&from).cloned()
        {
            self.out
                .queue
                .push_back(Output::Query(crate::query::QueryOutput::Ack {
                    id: q,
                    from: name,
                }));
        }
        if let Some(p) = self.notices.pending.get_mut(&ack.seq) {
            // Order among targets is only the order of retransmissions: swap.
            p.targets.swap_remove(&from);
            if p.targets.is_empty() {
                self.notices.pending.remove(&ack.seq);
            }
        }
        Ok(())
    }

    /// Tells every known member about our identity, once a member accepted it; after that,
    /// the members learned since (see [`Self::announce_more`]).
    pub(super) fn on_announce_self(&mut self) {
        if self.left {
            return;
        }
        let me = self.identity().clone();
        if self.notices.announced.as_ref() != Some(&me) {
            self.announce(me);
        } else {
            self.announce_more();
        }
    }

    /// Tells every live member about `id`, our new identity, acknowledged.
    pub(super) fn announce(&mut self, id: NodeId) {
        let targets = self.notice_targets();
        self.notices.announced_to = targets.iter().map(|t| t.1).collect();
        self.notices.announced_at = self.now;
        self.send_notice_to(targets, Member::alive(id.clone()));
        self.notices.announced = Some(id);
    }

    /// After a full state was applied (through [`TimerEvent::AnnounceSelf`], once the member
    /// table holds what it brought): within [`ANNOUNCE_WINDOW`] of our announcement, tells
    /// the live members it did not go to. Without this, members a joiner learned only after
    /// announcing (the rest of the join's answer, released once the answerer validated our
    /// address) heard of it only through the next push-pull: about a second in a join storm
    /// of 100, where the join's answer often completes after the announcement.
    fn announce_more(&mut self) {
        let me = self.identity().clone();
        if self.notices.announced.as_ref() != Some(&me) {
            return;
        }
        if self.now.saturating_sub(self.notices.announced_at) > ANNOUNCE_WINDOW {
            // Past the window: the set is not needed any more.
            self.notices.announced_to = BTreeSet::new();
            return;
        }
        let targets: Vec<_> = self
            .notice_targets()
            .into_iter()
            .filter(|t| !self.notices.announced_to.contains(&t.1))
            .collect();
        if targets.is_empty() {
            return;
        }
        self.notices
            .announced_to
            .extend(targets.iter().map(|t| t.1));
        self.send_notice_to(targets, Member::alive(me));
    }
}
