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

/// How many Lamport times back the buffer remembers (Serf's default event buffer).
pub const BUFFER_LTIMES: u64 = 512;

/// The node's event clock and the events it has seen recently.
#[derive(Debug, Default)]
pub struct EventBuffer {
    clock: u64,
    /// Per Lamport time, the events seen (name and payload fingerprint).
    seen: BTreeMap<u64, Vec<(String, u64)>>,
}

impl EventBuffer {
    /// The Lamport time the next local event takes, advancing the clock.
    pub fn next_ltime(&mut self) -> u64 {
        let t = self.clock;
        self.clock += 1;
        t
    }

    /// The current clock.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Records an event; true when it is new (deliver it), false for a copy or one older than
    /// the buffer remembers.
    pub fn admit(&mut self, ltime: u64, name: &str, payload: &[u8]) -> bool {
        // Witness the time, as a Lamport clock does.
        self.clock = self.clock.max(ltime.saturating_add(1));
        if ltime.saturating_add(BUFFER_LTIMES) < self.clock {
            return false;
        }
        let fp = fingerprint(payload);
        let slot = self.seen.entry(ltime).or_default();
        if slot.iter().any(|(n, f)| n == name && *f == fp) {
            return false;
        }
        slot.push((name.to_string(), fp));
        let floor = self.clock.saturating_sub(BUFFER_LTIMES);
        while self.seen.first_key_value().is_some_and(|(t, _)| *t < floor) {
            self.seen.pop_first();
        }
        true
    }
}

/// FNV-1a of the payload (stable, so deduplication does not depend on the build).
fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
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
        assert_eq!(b.clock(), 8);
        assert_eq!(b.next_ltime(), 8);
        assert!(b.admit(8 + BUFFER_LTIMES + 5, "x", b""));
        assert!(!b.admit(8, "late", b""), "older than the buffer");
        assert!(b.seen.len() <= 2, "old times are forgotten");
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
