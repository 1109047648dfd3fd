//! The one outbox every concern writes to: effects in the order they arose, datagrams through
//! the anti-amplification limit ([`crate::validate`]) for the datagram being handled.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::error::DropReason;
use crate::identity::{NameKey, NodeId};
use crate::member::{EventKind, MemberInfo, Status};
use crate::wire::{self, Kind};

/// Effects waiting for the driver, and the limit on what unvalidated sources are sent.
pub(super) struct Outbox {
    /// Effects, in the order they arose.
    pub(super) queue: VecDeque<Output>,
    /// Anti-amplification: what unvalidated sources may be sent.
    pub(super) limiter: crate::validate::Limiter,
    /// The datagram being handled: its source, its size, and whether a member vouches for
    /// the source (see [`Node::vouch`]).
    pub(super) reply: Option<Reply>,
}

/// The source of the datagram being handled, for the anti-amplification limit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reply {
    pub(super) to: SocketAddr,
    pub(super) len: usize,
    /// A member at this address sent it: not limited.
    pub(super) vouched: bool,
    /// Its bytes were counted in the limiter.
    pub(super) counted: bool,
    /// The member it made known or renewed at its source (a member's notice about itself):
    /// vouched for once what the datagram brought is applied ([`Node::vouch_sender`]).
    pub(super) sender: Option<NameKey>,
}

/// Room for effects kept between calls; a burst's extra room is given back.
pub(super) const OUTPUTS_KEPT: usize = 64;

impl Node {
    /// The next effect to carry out, in the order they arose. Drain until `None` after every
    /// call into the node.
    pub fn poll(&mut self) -> Option<Output> {
        let out = self.out.queue.pop_front();
        if out.is_none() && self.out.queue.capacity() > OUTPUTS_KEPT {
            // A burst (a full state, notices to every member) grew the queue; do not keep
            // its room for good (the simulator holds thousands of nodes).
            self.out.queue.shrink_to(OUTPUTS_KEPT);
        }
        out
    }

    pub(super) fn emit(&mut self, kind: EventKind, id: NodeId, status: Status) {
        self.out.queue.push_back(Output::Event(MemberEvent {
            kind,
            member: MemberInfo { id, status },
        }));
    }

    pub(super) fn schedule(&mut self, after: Duration, timer: TimerEvent) {
        self.out.queue.push_back(Output::Timer { after, timer });
    }

    /// The datagram being handled claims to come from the member `key`: when that member is
    /// live at the datagram's source, its source is not limited (what it asks is answered in
    /// full). Called before anything from the datagram is applied or answered.
    pub(super) fn vouch(&mut self, key: NameKey) {
        let Some(r) = self.out.reply.as_mut() else {
            return;
        };
        if self
            .membership
            .members
            .get(key)
            .is_some_and(|m| m.status.is_live() && m.id.addr() == r.to)
        {
            r.vouched = true;
            let to = r.to;
            // What was held for it (before it was known) goes out now.
            for data in self.out.limiter.forget(to) {
                self.send(to, data);
            }
        }
    }

    /// After a datagram is applied: a member it made known at its source (a join's notice
    /// reaching us before the member did) is vouched for now. Otherwise the source stays
    /// limited from its first datagram on: once the allowance is spent, probes and notices
    /// to it are held, and if the challenge or its echo is lost a live member ends up
    /// declared failed (seen at 20 % loss in the simulator).
    pub(super) fn vouch_sender(&mut self) {
        if let Some(key) = self.out.reply.as_mut().and_then(|r| r.sender.take()) {
            self.vouch(key);
        }
    }

    /// Sends `data` to `to`, within the anti-amplification limit ([`crate::validate`]): to
    /// an unvalidated source, what would pass three times the bytes it sent is held until it
    /// echoes the challenge sent with the first held datagram.
    pub(super) fn transmit(&mut self, to: SocketAddr, data: Vec<u8>) {
        let mut vouched = false;
        if let Some(r) = self.out.reply.as_mut()
            && r.to == to
        {
            vouched = r.vouched;
            if !vouched && !r.counted {
                r.counted = true;
                self.out.limiter.received(to, r.len);
            }
        }
        if !vouched {
            match self.out.limiter.check(to, &data) {
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

    pub(super) fn send(&mut self, to: SocketAddr, data: Vec<u8>) {
        self.stats.packets_out += 1;
        self.stats.bytes_out += data.len() as u64;
        if let Some(t) = data
            .get(wire::ENVELOPE_LEN - 1)
            .and_then(|k| self.stats.by_kind.get_mut(*k as usize))
        {
            t.packets_out += 1;
            t.bytes_out += data.len() as u64;
        }
        self.out.queue.push_back(Output::Transmit { to, data });
    }

    /// A challenge: echo its cookie.
    pub(super) fn on_challenge(
        &mut self,
        from: SocketAddr,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        if payload.len() != crate::validate::COOKIE_LEN {
            return Err(crate::error::DecodeError::ChallengeLength.into());
        }
        let mut out = Vec::with_capacity(wire::ENVELOPE_LEN + payload.len());
        wire::put_envelope(&mut out, Kind::ChallengeEcho);
        out.extend_from_slice(payload);
        // Not through the limit: the echo is the challenge's size (nothing to amplify), and
        // held behind our own limit for the challenger it could never validate us; two
        // members limiting each other would then hold each other's probes for good.
        self.send(from, out);
        Ok(())
    }

    /// The echo of our challenge: validates the sender, releases what was held for it.
    pub(super) fn on_challenge_echo(
        &mut self,
        from: SocketAddr,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        let Some(held) = self.out.limiter.echo(from, payload) else {
            return Err(crate::error::DecodeError::WrongCookie.into());
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
}
