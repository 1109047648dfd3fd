//! The foca glue: the SWIM engine, its runtime, the member table it feeds, and what decides
//! whether a foca packet reaches it (its header read without learning anything: misaddressed,
//! reaped, or for a former identity of ours). Notifications become member events; the
//! settings follow the cluster size; a newer identity of our own name is outranked.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use foca::{AccumulatingRuntime, Foca, Member, NoCustomBroadcast, OwnedNotification, State};
use hashbrown::hash_table::Entry;
use rand::RngExt;
use rand::rngs::SmallRng;

use super::outbox::OUTPUTS_KEPT;
use super::reconnect::LOST_MAX;
use super::sync::JOIN_FOLLOW_UP;
use super::*;
use crate::config::Suspicion;
use crate::error::{CommandError, DropReason};
use crate::identity::{NameKey, NodeId};
use crate::member::{EventKind, MemberInfo, Status};
use crate::table::{KeyTable, Keyed};
use crate::wire::{self, Kind, Notice, ValidatingCodec};

/// foca with our identity, codec and randomness.
pub(super) type FocaNode = Foca<NodeId, ValidatingCodec, SmallRng, NoCustomBroadcast>;

/// A member as reported, by name key.
pub(super) struct Record {
    pub(super) id: NodeId,
    pub(super) status: Status,
}

impl Keyed for Record {
    fn name_key(&self) -> NameKey {
        self.id.key()
    }
}

/// The SWIM engine and the member table it feeds.
pub(super) struct Membership {
    pub(super) foca: FocaNode,
    pub(super) rt: AccumulatingRuntime<NodeId>,
    /// foca's settings now.
    pub(super) config: foca::Config,
    /// The cluster size `config` was last worked out for ([`Node::resize`]).
    pub(super) sized_for: usize,
    /// Every other member we have reported, by name key (iterated in no useful order: what
    /// depends on the order sorts).
    pub(super) members: KeyTable<Record>,
}

impl Node {
    /// Every member this node knows, itself first, then by name. Failed and left members stay
    /// listed until reaped.
    pub fn members(&self) -> Vec<MemberInfo> {
        let suspects: BTreeSet<NameKey> = self
            .membership
            .foca
            .iter_membership_state()
            .filter(|m| m.state() == State::Suspect)
            .map(|m| m.id().key())
            .collect();
        let mut out = Vec::with_capacity(self.membership.members.len() + 1);
        out.push(self.local());
        out.extend(
            self.membership
                .members
                .values()
                .map(|r| Self::info(r, &suspects)),
        );
        out[1..].sort_by(|a, b| a.name().cmp(b.name()));
        out
    }

    /// The member named `name` as [`Node::members`] lists it (this node too).
    pub fn member(&self, name: &str) -> Option<MemberInfo> {
        if name == self.identity().name() {
            return Some(self.local());
        }
        let r = self
            .membership
            .members
            .get(NameKey::of(name))
            .filter(|r| r.id.name() == name)?;
        // foca holds one member per address: a lookup in its index, not a scan.
        let suspect = self
            .membership
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

    pub(super) fn info(r: &Record, suspects: &BTreeSet<NameKey>) -> MemberInfo {
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
            .chain(self.membership.members.values().map(|r| (&r.id, r.status)))
    }

    /// Number of live members, this node included.
    pub fn live_members(&self) -> usize {
        self.membership.foca.num_members() + usize::from(!self.left)
    }

    /// True once some member has accepted us (we are in a cluster, not alone).
    pub fn is_joined(&self) -> bool {
        self.membership.foca.num_members() > 0
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
            .membership
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
            .map_err(CommandError::Protocol)?;
        self.send_notice(gone);
        self.drain_foca();
        Ok(true)
    }

    /// Identities of members that left and were reaped, at or below their leaving one, are
    /// left out (replays: a restart takes a newer version).
    pub(super) fn apply(
        &mut self,
        members: Vec<Member<NodeId>>,
        broadcast: bool,
    ) -> Result<(), foca::Error> {
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
        self.membership
            .foca
            .apply_many(members.into_iter(), broadcast, &mut self.membership.rt)
    }

    /// Reads a foca packet's header without learning anything from it, and decides what
    /// becomes of the packet: `Ok(true)`, hand it to foca; `Ok(false)`, handled here (it was
    /// addressed to a former identity of ours); an error, dropped: not for this node, from a
    /// reaped member's identity, or undecodable (then, if the sender named itself by a
    /// reference we do not hold, it is asked for its identity in full). A packet dropped
    /// here leaves no identity behind in the directory.
    pub(super) fn admit_foca(
        &mut self,
        from: SocketAddr,
        payload: &[u8],
        coord: Option<Result<crate::Coordinate, crate::coordinate::CoordinateError>>,
    ) -> Result<bool, DropReason> {
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
                return Err(DropReason::Malformed(e.into()));
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
        if header.dst == me {
            self.on_probe_answer(&header.src, &header.message, coord);
            return Ok(true);
        }
        if header.message == foca::Message::Announce && header.dst.name() == me.name() {
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
    pub(super) fn tell_outranked(&mut self, to: SocketAddr, id: &NodeId) {
        let held = match self.membership.foca.membership_state_of(&id.key()) {
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
    pub(super) fn challenge_buried(&mut self, id: &NodeId) {
        if id.is_leaving() || self.left {
            return;
        }
        let cookie = self.out.limiter.cookie(id.addr());
        let mut out = Vec::with_capacity(wire::ENVELOPE_LEN + cookie.len());
        wire::put_envelope(&mut out, Kind::Challenge);
        out.extend_from_slice(&cookie);
        self.send(id.addr(), out);
    }

    /// Another identity of our name with version `seen` outranks ours (our clock stepped
    /// back across a restart, or a forgery): every member would take it for the newer us and
    /// refuse ours. Take a version above it, say so, and rejoin at once: every member is told
    /// directly, and one is asked for its full state.
    pub(super) fn outrank(&mut self, seen: u64) {
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
    pub(super) fn trim_directory(&mut self) {
        let members = self.membership.members.len() + self.reconnect.lost.len() + 1;
        if self.directory().len() <= 2 * members + 64 {
            return;
        }
        let lost: BTreeSet<NameKey> = self
            .reconnect
            .lost
            .values()
            .map(|(id, _)| id.key())
            .collect();
        let (records, foca) = (&self.membership.members, &self.membership.foca);
        self.dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|k| {
                records.contains(k) || lost.contains(&k) || foca.membership_state_of(&k).is_some()
            });
    }

    pub(super) fn reap(&mut self, id: &NodeId) {
        let reap = matches!(self.membership.members.get(id.key()),
            Some(r) if &r.id == id && !r.status.is_live());
        if reap && let Some(r) = self.membership.members.remove(id.key()) {
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
                if self.reconnect.lost.len() >= LOST_MAX
                    && let Some(oldest) = self
                        .reconnect
                        .lost
                        .iter()
                        .min_by_key(|(_, (_, t))| *t)
                        .map(|(n, _)| n.clone())
                {
                    self.reconnect.lost.remove(&oldest);
                }
                self.reconnect
                    .lost
                    .insert(r.id.name().into(), (r.id.clone(), self.reconnect.ticks));
                if !self.reconnect.scheduled {
                    self.reconnect.scheduled = true;
                    let after = self.jitter(self.config.reconnect_interval);
                    self.schedule(after, TimerEvent::Reconnect);
                }
            }
            self.emit(EventKind::Reap, r.id, r.status);
        }
    }

    pub(super) fn drain_foca(&mut self) {
        let mut membership_changed = false;
        let mut drained = 0usize;
        while let Some(n) = self.membership.rt.to_notify() {
            membership_changed |= self.on_notification(n);
            drained += 1;
        }
        while let Some((to, data)) = self.membership.rt.to_send() {
            let kind = self.foca_kind_out(&to, &data);
            let mut out =
                Vec::with_capacity(wire::ENVELOPE_LEN + crate::coordinate::WIRE_LEN + data.len());
            wire::put_envelope(&mut out, kind);
            if kind == Kind::FocaCoord {
                out.extend_from_slice(&self.coordinate().encode());
            }
            out.extend_from_slice(&data);
            self.transmit(to.addr(), out);
            drained += 1;
        }
        while let Some((after, timer)) = self.membership.rt.to_schedule() {
            drained += 1;
            let after = match &timer {
                foca::Timer::ChangeSuspectToDown {
                    member_id,
                    incarnation,
                    ..
                } if self.config.suspicion == Suspicion::Lifeguard => {
                    if self.suspicion.in_foca_timer {
                        self.suspicion.raised.insert(member_id.key());
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
        if drained > OUTPUTS_KEPT && self.membership.rt.backlog() == 0 {
            // foca's queues keep the room a burst gave them; it is empty now, so start
            // afresh rather than hold that room for good.
            self.membership.rt = AccumulatingRuntime::new();
        }
        if membership_changed {
            self.resize();
            self.prune_coordinates();
        }
        if !self.suspicion.suspects.is_empty() {
            self.settle_suspects();
        }
        self.directory().set_me(self.membership.foca.identity());
    }

    /// Suspects that are suspect no more: one alive again is reported ([`Output::Status`]);
    /// one declared down was reported by its failure event.
    fn settle_suspects(&mut self) {
        let foca = &self.membership.foca;
        let mut settled = Vec::new();
        self.suspicion
            .suspects
            .retain(|key| match foca.membership_state_of(key) {
                Some(m) if m.state() == State::Suspect => true,
                Some(m) if m.state() == State::Alive => {
                    settled.push(m.id().clone());
                    false
                }
                _ => false,
            });
        for id in settled {
            self.stats.suspicions_refuted += 1;
            self.out.queue.push_back(Output::Status(MemberInfo {
                id,
                status: Status::Alive,
            }));
        }
    }

    pub(super) fn directory(&self) -> std::sync::MutexGuard<'_, wire::Directory> {
        // The directory holds no invariant a panic halfway could break.
        self.dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies one foca notification to the member table. Returns true when the set of live
    /// members changed.
    pub(super) fn on_notification(&mut self, n: OwnedNotification<NodeId>) -> bool {
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
                } else if let Some(r) = self.membership.members.get_mut(id.key())
                    && r.status.is_live()
                {
                    if self.suspicion.suspects.remove(&id.key()) {
                        self.stats.suspicions_confirmed += 1;
                    }
                    r.status = Status::Failed;
                    r.id = id.clone();
                    // Our own probe started this: tell every member now rather than leaving
                    // the verdict to gossip, whose bounded retransmissions can miss a member
                    // (which then finds out only when its own probe reaches the dead one).
                    if self.suspicion.raised.remove(&id.key()) && !self.left {
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
                if let Some(r) = self.membership.members.get_mut(new.key()) {
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
                if !self.left && self.notices.announced.as_ref() != Some(self.identity()) {
                    self.schedule(self.config.announce_delay, TimerEvent::AnnounceSelf);
                }
                // Found by a member rather than through a join (a restarted seed): ask it for
                // the full state now instead of learning members one probe at a time.
                if !self.left
                    && self.sync.answered.is_empty()
                    && let Some(peer) = self.random_live_member()
                {
                    self.send_full_state(peer.addr(), true);
                    self.schedule(JOIN_FOLLOW_UP, TimerEvent::StateRetry(1));
                }
                false
            }
            OwnedNotification::MemberSuspect(id) => {
                // Reported once a suspicion, whoever raised it (our probe, or gossip);
                // `settle_suspects` reports the member alive again if it refutes.
                if self
                    .membership
                    .members
                    .get(id.key())
                    .is_some_and(|r| r.id == id && r.status == Status::Alive)
                    && self.suspicion.suspects.insert(id.key())
                {
                    self.stats.suspicions += 1;
                    self.out.queue.push_back(Output::Status(MemberInfo {
                        id,
                        status: Status::Suspect,
                    }));
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
                    self.announce(id);
                }
                false
            }
        }
    }

    /// Records `id` with `status` in the member table (one search of it, not two: this runs
    /// for every member every node learns). Returns the status it had.
    pub(super) fn put_record(&mut self, id: &NodeId, status: Status) -> Option<Status> {
        match self.membership.members.entry(id.key()) {
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

    pub(super) fn mark_left(&mut self, id: NodeId) {
        let was = self.put_record(&id, Status::Left);
        // Serf reports a failed member that turns out to have left as a leave too.
        if matches!(was, Some(Status::Alive | Status::Suspect | Status::Failed)) {
            self.emit(EventKind::Leave, id, Status::Left);
        }
    }

    /// Retunes foca (transmissions per update, suspicion timeout) for the cluster size.
    pub(super) fn resize(&mut self) {
        // The settings depend on the size alone (and the fixed configuration): work them
        // out only when it changed (this runs after every membership change).
        let size = self.live_members();
        if size == self.membership.sized_for {
            return;
        }
        self.membership.sized_for = size;
        let wanted = self.config.foca_config(size);
        let changed = wanted.max_transmissions != self.membership.config.max_transmissions
            || wanted.suspect_to_down_after != self.membership.config.suspect_to_down_after;
        if changed && self.membership.foca.set_config(wanted.clone()).is_ok() {
            self.membership.config = wanted;
        }
    }

    pub(super) fn random_live_member(&mut self) -> Option<NodeId> {
        let n = self.membership.foca.num_members();
        if n == 0 {
            return None;
        }
        let i = self.rng.random_range(0..n);
        self.membership
            .foca
            .iter_members()
            .nth(i)
            .map(|m| m.id().clone())
    }

    /// A foca (SWIM) packet: admitted by its header ([`Node::admit_foca`]), then handed to foca.
    /// `coord`: the coordinate the packet came with (an ack's), checked or refused.
    pub(super) fn on_foca(
        &mut self,
        from: SocketAddr,
        payload: &[u8],
        coord: Option<Result<crate::Coordinate, crate::coordinate::CoordinateError>>,
    ) -> Result<(), DropReason> {
        if self.left {
            return Ok(());
        }
        if !self.admit_foca(from, payload, coord)? {
            return Ok(());
        }
        let result = self
            .membership
            .foca
            .handle_data(payload, &mut self.membership.rt);
        result.map_err(|e| match e {
            foca::Error::Decode(_) | foca::Error::MalformedPacket | foca::Error::DataTooBig => {
                DropReason::Malformed(crate::error::DecodeError::Foca(e))
            }
            other => DropReason::Protocol(other),
        })
    }

    /// "I cannot resolve your reference": name ourselves to the sender in full again.
    pub(super) fn on_unknown(
        &mut self,
        from: SocketAddr,
        _payload: &[u8],
    ) -> Result<(), DropReason> {
        self.directory().forget_peer(from);
        Ok(())
    }
}
