//! Full-state exchange: a join sends our whole state and asks for theirs (Serf's join), a
//! periodic push-pull exchanges digests (14 bytes a member) and fetches only what is missing,
//! a join's follow-ups repair a lost part of its answer; the Lamport clocks travel with both.

use std::net::SocketAddr;
use std::time::Duration;

use foca::Member;

use super::*;
use crate::error::{CommandError, DropReason};
use crate::identity::NameKey;
use crate::wire::{self, Kind};

/// What the node remembers of its exchanges.
#[derive(Default)]
pub(super) struct SyncState {
    /// Addresses that answered a join or push-pull with their state, oldest first (bounded).
    pub(super) answered: indexmap::IndexSet<SocketAddr>,
    /// Addresses we sent a join or push-pull request to (a full state or digest asking for an
    /// answer) and that have not answered yet, oldest first (bounded): the clocks in their
    /// answer are taken whole (see [`crate::clock`]).
    pub(super) awaiting: indexmap::IndexSet<SocketAddr>,
}

/// Delay from a join's first answer to the digest exchange that repairs any lost part of it.
pub(super) const JOIN_FOLLOW_UP: Duration = Duration::from_secs(1);

/// Delay from a join's follow-up to the second, late one.
const JOIN_FOLLOW_UP_LATE: Duration = Duration::from_secs(4);

/// How many times a node found by members asks for the full state before leaving it to the
/// periodic push-pull.
const STATE_RETRIES: u32 = 5;

/// How many answering addresses [`Node::has_answered`] remembers.
const ANSWERED_MAX: usize = 256;

/// How many unanswered join and push-pull requests [`Node`] remembers.
const AWAITING_MAX: usize = 256;

impl Node {
    /// True when `addr` answered a join (or push-pull) with its state.
    pub fn has_answered(&self, addr: SocketAddr) -> bool {
        self.sync.answered.contains(&addr)
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

    /// The Lamport clocks: the times the next local user event and query take.
    pub fn clocks(&self) -> wire::Clocks {
        wire::Clocks {
            event: self.events.clock().time(),
            query: self.queries.clock.time(),
        }
    }

    /// Witnesses the clocks a full state or digest from `from` carries: taken whole when it
    /// answers our own request (`reply` unset, from an address we asked), else bounded.
    pub(super) fn witness_clocks(&mut self, from: SocketAddr, reply: bool, clocks: wire::Clocks) {
        if !reply && self.sync.awaiting.shift_remove(&from) {
            self.events.clock_mut().witness_answer(clocks.event);
            self.queries.clock.witness_answer(clocks.query);
        } else {
            self.events.clock_mut().witness_request(clocks.event);
            self.queries.clock.witness_request(clocks.query);
        }
    }

    /// Remembers that `to` was asked for an answer (see [`Node::witness_clocks`]).
    pub(super) fn await_answer(&mut self, to: SocketAddr) {
        self.sync.awaiting.shift_remove(&to);
        self.sync.awaiting.insert(to);
        if self.sync.awaiting.len() > AWAITING_MAX {
            self.sync.awaiting.shift_remove_index(0);
        }
    }

    pub(super) fn send_full_state(&mut self, to: SocketAddr, reply: bool) {
        let me = Member::alive(self.identity().clone());
        let mut items = wire::Items::default();
        for m in std::iter::once(&me).chain(self.membership.foca.iter_membership_state()) {
            items.push(m);
        }
        if reply {
            self.await_answer(to);
        }
        self.send_chunked(to, Kind::Sync, Some(reply), &items);
        self.send_coordinates(to, true);
    }

    /// Our periodic push-pull: a digest of the membership, 14 bytes a member.
    pub(super) fn send_digest(&mut self, to: SocketAddr, reply: bool) {
        let me = Member::alive(self.identity().clone());
        let mut items = wire::Items::default();
        for m in std::iter::once(&me).chain(self.membership.foca.iter_membership_state()) {
            items.push_digest_entry(&wire::DigestEntry::of(m));
        }
        if reply {
            self.await_answer(to);
        }
        self.send_chunked(to, Kind::Digest, Some(reply), &items);
        self.send_coordinates(to, false);
    }

    /// Sends `items` (each already encoded) in as few packets as fit, each a standalone
    /// message: for a full state or digest (`reply` given) the reply flag (set on the first
    /// packet only) and our clocks, then the item count (varint), the items.
    pub(super) fn send_chunked(
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
    pub(super) fn apply_digest(
        &mut self,
        from: SocketAddr,
        digest: wire::Digest,
    ) -> Result<(), DropReason> {
        // Entries that say what foca already holds change nothing: leave them out. foca finds
        // a member by address through its index (vendor/foca/PATCHES.md), so checking an
        // entry is one lookup, and no map of all members is built per digest packet.
        let mut known = Vec::new();
        let mut want = Vec::new();
        {
            let dir = self.directory();
            for e in &digest.entries {
                let held = self.membership.foca.membership_state_of(&e.name_key());
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
        self.apply(known, true).map_err(DropReason::Protocol)
    }

    /// Answers a [`wire::Want`] with the full state of the members it names.
    pub(super) fn answer_want(&mut self, to: SocketAddr, want: &wire::Want) {
        let keys: std::collections::BTreeSet<NameKey> = want
            .keys
            .iter()
            .map(|k| NameKey(u64::from_le_bytes(*k)))
            .collect();
        let me = Member::alive(self.identity().clone());
        let mut items = wire::Items::default();
        for m in std::iter::once(&me)
            .chain(self.membership.foca.iter_membership_state())
            .filter(|m| keys.contains(&m.id().key()))
        {
            items.push(m);
        }
        self.send_chunked(to, Kind::Sync, Some(false), &items);
    }

    /// A periodic push-pull's digest: applied; answered with ours when asked.
    pub(super) fn on_digest(&mut self, from: SocketAddr, payload: &[u8]) -> Result<(), DropReason> {
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

    /// Members a digest of ours named that the sender does not hold: sent in full.
    pub(super) fn on_want(&mut self, from: SocketAddr, payload: &[u8]) -> Result<(), DropReason> {
        let want = wire::decode_want(payload)?;
        if !self.left {
            self.answer_want(from, &want);
        }
        Ok(())
    }

    /// A full state (a join, its answer, an answer to a `Want`).
    pub(super) fn on_sync(&mut self, from: SocketAddr, payload: &[u8]) -> Result<(), DropReason> {
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
        self.apply(sync.members, false)
            .map_err(DropReason::Protocol)?;
        if sync.reply {
            self.send_full_state(from, false);
        } else {
            if self.notices.announced.as_ref() == Some(self.identity()) {
                // Members it brought that our announcement did not go to are told, once
                // the member table holds them.
                self.schedule(self.config.announce_delay, TimerEvent::AnnounceSelf);
            }
            if !self.sync.answered.contains(&from) {
                self.schedule(JOIN_FOLLOW_UP, TimerEvent::JoinFollowUp(from));
            }
            self.sync.answered.shift_remove(&from);
            self.sync.answered.insert(from);
            if self.sync.answered.len() > ANSWERED_MAX {
                self.sync.answered.shift_remove_index(0);
            }
        }
        Ok(())
    }

    /// A periodic push-pull: a digest to a random member; the next one scheduled.
    pub(super) fn on_push_pull(&mut self) {
        self.out.limiter.rotate();
        if !self.left {
            if let Some(peer) = self.random_live_member() {
                self.send_digest(peer.addr(), true);
            }
            let n = self.live_members();
            let next = self.jitter(self.config.push_pull_interval_at(n));
            self.schedule(next, TimerEvent::PushPull);
        }
    }

    /// Found by members but no full state arrived yet: ask a member again.
    pub(super) fn on_state_retry(&mut self, attempt: u32) {
        if !self.left
            && self.sync.answered.is_empty()
            && attempt < STATE_RETRIES
            && let Some(peer) = self.random_live_member()
        {
            self.send_full_state(peer.addr(), true);
            self.schedule(JOIN_FOLLOW_UP, TimerEvent::StateRetry(attempt + 1));
        }
    }

    /// A second after a join's first answer: a digest exchange with that member.
    pub(super) fn on_join_follow_up(&mut self, addr: SocketAddr) {
        if !self.left {
            self.send_digest(addr, true);
            self.schedule(JOIN_FOLLOW_UP_LATE, TimerEvent::JoinFollowUpLate);
        }
    }

    /// A few seconds later, one more digest exchange, with a random member.
    pub(super) fn on_join_follow_up_late(&mut self) {
        if !self.left
            && let Some(peer) = self.random_live_member()
        {
            self.send_digest(peer.addr(), true);
        }
    }
}
