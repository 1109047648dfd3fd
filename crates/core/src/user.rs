//! Cluster-wide user events (Serf's `serf event NAME PAYLOAD`): their validation, the Lamport
//! clock that orders them, and the buffer that delivers each one once however many copies
//! arrive.
//!
//! An event is sent straight to every live member (up to the notice fanout) and acknowledged,
//! with retransmissions, like a leave; in clusters larger than the fanout, receivers pass it
//! on to a few members each. Receivers deduplicate by Lamport time, name and payload, as
//! Serf's event buffer does: one delivery per event, with `SERF_USER_LTIME` the sender's clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::{BUFFER_LTIMES, LamportClock};
use crate::error::InvalidInput;
use crate::identity::Limits;

/// A user event as delivered to handlers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// Lamport time of the event (`SERF_USER_LTIME`).
    pub ltime: u64,
    /// Its name (`SERF_USER_EVENT`).
    pub name: String,
    /// Its payload (the handler's stdin, followed by a newline).
    pub payload: Vec<u8>,
    /// Serf's coalesce flag: whether handlers may coalesce it with later events of the same
    /// name (`gossip-agent event --coalesce=false` clears it).
    pub coalesce: bool,
}

/// Longest event name, in bytes.
pub const EVENT_NAME_MAX: usize = 128;

/// An event name is 1 to 128 bytes of letters, digits and `.`, `-`, `_`, `:` and `/`
/// (it reaches handler environments and `user:NAME` filters, which split at `=` and `,`), and
/// name plus payload fit in [`Limits::event_bytes_max`].
pub fn validate_event(name: &str, payload: &[u8], limits: &Limits) -> Result<(), InvalidInput> {
    if name.is_empty() {
        return Err(InvalidInput::EventNameEmpty);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/')))
    {
        return Err(InvalidInput::EventNameChar(c));
    }
    if name.len() > EVENT_NAME_MAX {
        return Err(InvalidInput::EventNameTooLong {
            len: name.len(),
            max: EVENT_NAME_MAX,
        });
    }
    let len = name.len() + payload.len();
    if len > limits.event_bytes_max {
        return Err(InvalidInput::EventTooBig {
            len,
            max: limits.event_bytes_max,
        });
    }
    Ok(())
}

/// How many distinct Lamport times the buffer holds at most: the window behind the clock and
/// times ahead of it (a forged far-future time stays until the clock reaches it, so without a
/// bound every distinct one would be kept). Beyond it, the furthest ahead is forgotten first.
const SEEN_LTIMES_MAX: usize = 4 * BUFFER_LTIMES as usize;

/// The node's event clock and the events it has seen recently.
#[derive(Debug, Default)]
pub struct EventBuffer {
    clock: LamportClock,
    /// Per Lamport time, the events seen (name and payload fingerprint: FNV-1a, stable, so
    /// deduplication does not depend on the build).
    seen: BTreeMap<u64, Vec<(String, u64)>>,
}

impl EventBuffer {
    /// The Lamport time the next local event takes, advancing the clock.
    pub fn next_ltime(&mut self) -> u64 {
        self.clock.tick()
    }

    /// The clock.
    pub fn clock(&self) -> &LamportClock {
        &self.clock
    }

    /// The clock, to witness a time carried by a join or push-pull.
    pub fn clock_mut(&mut self) -> &mut LamportClock {
        &mut self.clock
    }

    /// Records an event; true when it is new (deliver it), false for a copy or one older than
    /// the buffer remembers. Its time moves the clock by at most
    /// [`crate::clock::JUMP_MAX`].
    pub fn admit(&mut self, ltime: u64, name: &str, payload: &[u8]) -> bool {
        self.clock.witness(ltime);
        let now = self.clock.time();
        if ltime.saturating_add(BUFFER_LTIMES) < now {
            return false;
        }
        let fp = crate::identity::Fnv::of(payload);
        let slot = self.seen.entry(ltime).or_default();
        if slot.iter().any(|(n, f)| n == name && *f == fp) {
            return false;
        }
        slot.push((name.to_string(), fp));
        let floor = now.saturating_sub(BUFFER_LTIMES);
        while self.seen.first_key_value().is_some_and(|(t, _)| *t < floor) {
            self.seen.pop_first();
        }
        while self.seen.len() > SEEN_LTIMES_MAX {
            self.seen.pop_last();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_is_admitted_once_and_the_clock_witnesses_remote_times() {
        let mut b = EventBuffer::default();
        assert_eq!(b.next_ltime(), 0);
        assert!(b.admit(7, "deploy", b"v2"));
        assert!(!b.admit(7, "deploy", b"v2"), "a copy");
        assert!(b.admit(7, "deploy", b"v3"), "same time, other payload");
        assert!(b.admit(7, "reload", b"v2"), "same time, other name");
        assert_eq!(b.clock().time(), 8);
        assert_eq!(b.next_ltime(), 8);
        b.clock_mut().witness_answer(9 + BUFFER_LTIMES + 5);
        assert!(b.admit(8 + BUFFER_LTIMES + 5, "x", b""));
        assert!(!b.admit(8, "late", b""), "older than the buffer");
        assert!(b.seen.len() <= 2, "old times are forgotten");
    }

    /// A forged far-future time moves the clock half a window: events at the members' own
    /// times still arrive; a time near `u64::MAX` does not saturate the clock, so identical
    /// events later still arrive each time.
    #[test]
    fn far_future_times_do_not_make_later_events_old() {
        let mut b = EventBuffer::default();
        for t in 0..600 {
            assert!(b.admit(t, "e", format!("{t}").as_bytes()));
        }
        assert!(b.admit(10_000, "forged", b""));
        assert_eq!(b.clock().time(), 600 + crate::clock::JUMP_MAX);
        assert!(
            b.admit(600, "next", b""),
            "a member's next event still arrives"
        );
        let mut c = EventBuffer::default();
        c.admit(u64::MAX - 1, "forged", b"");
        let (a, d) = (c.next_ltime(), c.next_ltime());
        assert!(
            c.admit(a, "deploy", b"v2") && c.admit(d, "deploy", b"v2"),
            "both arrive"
        );
    }

    #[test]
    fn the_buffer_stays_bounded_under_distinct_future_times() {
        let mut b = EventBuffer::default();
        for i in 0..10_000u64 {
            b.admit(1_000_000 + i * 7, "x", b"");
        }
        assert!(b.seen.len() <= SEEN_LTIMES_MAX);
    }

    #[test]
    fn names_and_sizes_are_checked() {
        let l = Limits::default();
        assert!(validate_event("frontserver_reload", b"", &l).is_ok());
        assert!(validate_event("deploy:web/v2", &[0; 100], &l).is_ok());
        assert!(validate_event("", b"", &l).is_err());
        assert!(validate_event("a=b", b"", &l).is_err());
        assert!(validate_event("a\nb", b"", &l).is_err());
        assert!(validate_event(&"x".repeat(129), b"", &l).is_err());
        assert!(validate_event("big", &vec![0; l.event_bytes_max], &l).is_err());
        assert!(validate_event("ok", &vec![0; l.event_bytes_max - 2], &l).is_ok());
    }
}
