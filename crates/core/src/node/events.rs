//! User events (Serf's `event`): sent to every member, delivered once each (the event buffer
//! and clock are [`crate::user::EventBuffer`]).

use std::net::SocketAddr;

use super::*;
use crate::error::{CommandError, DropReason};
use crate::identity::NameKey;
use crate::wire::{self, Kind, NoticeAck};

impl Node {
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
        self.stats.user_events += 1;
        self.out.queue.push_back(Output::User(event));
        Ok(ltime)
    }

    /// A user event: delivered once, passed on to its share of members.
    pub(super) fn on_user(&mut self, from: SocketAddr, payload: &[u8]) -> Result<(), DropReason> {
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
            self.stats.user_events += 1;
            self.out.queue.push_back(Output::User(e));
        }
        Ok(())
    }
}
