//! Anti-amplification, as QUIC does it: until a source address is validated, a node sends it
//! at most three times the bytes it received from it. Without it, a 6-byte full-state request
//! from a forged source made a node send its whole membership (320 times as many bytes) to
//! the victim.
//!
//! A source is validated when it echoes a challenge: an 8-byte cookie, a MAC of its address
//! and the current epoch under a secret drawn at start (XChaCha20-Poly1305's tag of nothing,
//! address and epoch as nonce: a forged source never sees its cookie). The epoch turns with
//! every push-pull round and a cookie is good for the current and the
//! previous one, so a recorded echo cannot be replayed later. A datagram from a member at the address its
//! identity advertises is not limited either (the node vouches for it before it applies
//! anything from the datagram; see [`crate::Node`]).
//!
//! What would go over the limit is held, not dropped, and the source is challenged (again
//! with every fourth datagram held while the allowance has room, in case the challenge or
//! its echo was lost); when its echo comes back, what was held goes out. Echoes themselves
//! are never held. A join therefore takes one more round trip:
//! the joiner's first full-state request is answered by a challenge, and the answer follows
//! the echo. Memory is bounded: [`ENTRIES_MAX`] sources, [`HELD_BYTES_MAX`] held in all.

use std::net::SocketAddr;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use indexmap::IndexMap;

/// The limit's factor: bytes sent to an unvalidated source per byte received from it.
pub const FACTOR: u64 = 3;

/// How many sources are tracked at most (the oldest is forgotten first).
pub const ENTRIES_MAX: usize = 256;

/// How many bytes are held at most, over every source, until echoes come back.
pub const HELD_BYTES_MAX: usize = 256 * 1024;

/// Bytes of a cookie.
pub const COOKIE_LEN: usize = 8;

/// Bytes of a challenge datagram (envelope and cookie): kept free in every unvalidated
/// source's allowance, so the challenge itself stays within it.
const CHALLENGE_LEN: u64 = 4 + COOKIE_LEN as u64;

/// What the node should do with a datagram for an address.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it.
    Send,
    /// Held until the address is validated; send this challenge first (once per source).
    Held(Option<[u8; COOKIE_LEN]>),
    /// Dropped: over the limit, and no room to hold it.
    Dropped,
}

#[derive(Debug, Default)]
struct Entry {
    received: u64,
    sent: u64,
    validated: bool,
    challenged: bool,
    /// Datagrams held since the last challenge: every [`RECHALLENGE_EVERY`] one, challenge
    /// again (the last challenge, or its echo, may have been lost), if the allowance has room.
    held_since_challenge: u32,
    held: Vec<Vec<u8>>,
}

/// Held datagrams after which an unanswered challenge is sent again.
pub const RECHALLENGE_EVERY: u32 = 4;

/// Counters of the limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Datagrams held until their destination was validated.
    pub held: u64,
    /// Datagrams dropped by the limit.
    pub dropped: u64,
    /// Challenges sent.
    pub challenges: u64,
    /// Sources validated by their echo.
    pub validated: u64,
}

/// The limit's state: the sources tracked and what is held for them.
pub(crate) struct Limiter {
    cipher: XChaCha20Poly1305,
    epoch: u64,
    /// Sources, oldest first.
    entries: IndexMap<SocketAddr, Entry>,
    held_bytes: usize,
    pub(crate) counts: Counts,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Limiter({} sources)", self.entries.len())
    }
}

impl Limiter {
    /// A limiter whose cookies are keyed by `secret`.
    pub(crate) fn new(secret: [u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new((&secret).into()),
            epoch: 0,
            entries: IndexMap::new(),
            held_bytes: 0,
            counts: Counts::default(),
        }
    }

    /// Starts a new epoch: cookies of the one before last are no longer accepted.
    pub(crate) fn rotate(&mut self) {
        self.epoch += 1;
    }

    /// The cookie of `addr` in the current epoch.
    pub(crate) fn cookie(&self, addr: SocketAddr) -> [u8; COOKIE_LEN] {
        self.cookie_in(addr, self.epoch)
    }

    fn cookie_in(&self, addr: SocketAddr, epoch: u64) -> [u8; COOKIE_LEN] {
        let mut nonce = [0u8; 24];
        let ip = match addr.ip() {
            std::net::IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(ip) => ip.octets(),
        };
        nonce[..16].copy_from_slice(&ip);
        nonce[16..18].copy_from_slice(&addr.port().to_le_bytes());
        nonce[18..24].copy_from_slice(&epoch.to_le_bytes()[..6]);
        let tag = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &[],
                    aad: b"gossip-agent address cookie",
                },
            )
            .expect("sealing nothing cannot fail");
        tag[..COOKIE_LEN].try_into().expect("a tag is 16 bytes")
    }

    /// `len` bytes arrived from `from`, a source that no member vouches for: count them
    /// (tracking it from now on). A new datagram may be answered by a new challenge: the
    /// last one, or its echo, may have been lost (a joiner retrying its join gets one).
    pub(crate) fn received(&mut self, from: SocketAddr, len: usize) {
        if !self.entries.contains_key(&from) && self.entries.len() >= ENTRIES_MAX {
            self.evict_oldest();
        }
        let e = self.entries.entry(from).or_default();
        e.received = e.received.saturating_add(len as u64);
        e.challenged = false;
    }

    /// True when `from` is tracked (not vouched for, not validated).
    pub(crate) fn limits(&self, to: SocketAddr) -> bool {
        self.entries.get(&to).is_some_and(|e| !e.validated)
    }

    /// A member vouches for `from`: it is not limited any more. Returns what was held for
    /// it, to send now.
    pub(crate) fn forget(&mut self, from: SocketAddr) -> Vec<Vec<u8>> {
        match self.entries.shift_remove(&from) {
            Some(e) => {
                self.held_bytes -= e.held.iter().map(Vec::len).sum::<usize>();
                e.held
            }
            None => Vec::new(),
        }
    }

    /// What to do with `data` for `to`.
    pub(crate) fn check(&mut self, to: SocketAddr, data: &[u8]) -> Verdict {
        let Some(e) = self.entries.get_mut(&to) else {
            return Verdict::Send;
        };
        let len = data.len() as u64;
        let reserve = if e.challenged { 0 } else { CHALLENGE_LEN };
        if e.validated || e.sent + len + reserve <= e.received.saturating_mul(FACTOR) {
            e.sent += len;
            return Verdict::Send;
        }
        if self.held_bytes + data.len() > HELD_BYTES_MAX {
            self.counts.dropped += 1;
            return Verdict::Dropped;
        }
        self.held_bytes += data.len();
        e.held.push(data.to_vec());
        self.counts.held += 1;
        e.held_since_challenge += 1;
        // A repeated challenge only within the allowance: the limit holds for challenges too.
        let challenge = !std::mem::replace(&mut e.challenged, true)
            || (e.held_since_challenge >= RECHALLENGE_EVERY
                && e.sent + CHALLENGE_LEN <= e.received.saturating_mul(FACTOR));
        if challenge {
            e.held_since_challenge = 0;
            e.sent += CHALLENGE_LEN;
            self.counts.challenges += 1;
        }
        Verdict::Held(challenge.then(|| self.cookie(to)))
    }

    /// An echo of `cookie` came from `from`: when it is the right one, `from` is validated
    /// and what was held for it is returned, to send now.
    pub(crate) fn echo(&mut self, from: SocketAddr, cookie: &[u8]) -> Option<Vec<Vec<u8>>> {
        let current = cookie == self.cookie(from);
        if !current && (self.epoch == 0 || cookie != self.cookie_in(from, self.epoch - 1)) {
            return None;
        }
        if !self.entries.contains_key(&from) && self.entries.len() >= ENTRIES_MAX {
            self.evict_oldest();
        }
        let e = self.entries.entry(from).or_default();
        let first = !e.validated;
        e.validated = true;
        let held = std::mem::take(&mut e.held);
        self.held_bytes -= held.iter().map(Vec::len).sum::<usize>();
        if first {
            self.counts.validated += 1;
        }
        Some(held)
    }

    fn evict_oldest(&mut self) {
        if let Some((_, e)) = self.entries.shift_remove_index(0) {
            let bytes: usize = e.held.iter().map(Vec::len).sum();
            self.held_bytes -= bytes;
            self.counts.dropped += e.held.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from((i.to_be_bytes(), 7946))
    }

    #[test]
    fn held_datagrams_bring_the_challenge_again_within_the_allowance_and_go_when_vouched() {
        let mut l = Limiter::new([7; 32]);
        let a = addr(1);
        l.received(a, 100);
        assert_eq!(l.check(a, &[0; 270]), Verdict::Send);
        let cookie = l.cookie(a);
        assert_eq!(l.check(a, &[1; 50]), Verdict::Held(Some(cookie)));
        for i in 2..RECHALLENGE_EVERY + 1 {
            assert_eq!(l.check(a, &[i as u8; 50]), Verdict::Held(None));
        }
        // The fourth held since the challenge brings it again: 270 + 12 + 12 <= 300.
        assert_eq!(l.check(a, &[9; 50]), Verdict::Held(Some(cookie)));
        for _ in 0..2 * RECHALLENGE_EVERY {
            // No room left in the allowance: held, never challenged again.
            assert_eq!(l.check(a, &[8; 50]), Verdict::Held(None));
        }
        // A member vouches for it: everything held is handed back, and it is not limited.
        let held = l.forget(a);
        assert_eq!(
            held.len(),
            1 + RECHALLENGE_EVERY as usize + 2 * RECHALLENGE_EVERY as usize
        );
        assert_eq!(l.check(a, &[0; 5000]), Verdict::Send);
    }

    #[test]
    fn an_unvalidated_source_gets_three_times_what_it_sent_then_a_challenge() {
        let mut l = Limiter::new([7; 32]);
        let a = addr(1);
        assert_eq!(
            l.check(a, &[0; 500]),
            Verdict::Send,
            "untracked: sent freely"
        );
        l.received(a, 6);
        assert_eq!(
            l.check(a, &[0; 6]),
            Verdict::Send,
            "18 bytes allowed, 12 kept free"
        );
        let cookie = l.cookie(a);
        assert_eq!(l.check(a, &[1; 1917]), Verdict::Held(Some(cookie)));
        assert_eq!(
            l.check(a, &[2; 100]),
            Verdict::Held(None),
            "challenged once"
        );
        l.received(a, 6);
        assert_eq!(
            l.check(a, &[4; 10]),
            Verdict::Held(Some(cookie)),
            "a new datagram, a new challenge (the last may have been lost)"
        );
        assert!(l.echo(a, &[0; COOKIE_LEN]).is_none(), "a wrong cookie");
        assert!(
            l.echo(addr(2), &cookie).is_none(),
            "another address's cookie"
        );
        let released = l.echo(a, &cookie).expect("the right cookie");
        assert_eq!(released, vec![vec![1; 1917], vec![2; 100], vec![4; 10]]);
        assert_eq!(l.check(a, &[3; 5000]), Verdict::Send, "validated");
        assert_eq!(l.held_bytes, 0);
    }

    #[test]
    fn memory_stays_bounded_under_many_forged_sources() {
        let mut l = Limiter::new([9; 32]);
        for i in 0..10_000 {
            l.received(addr(i), 6);
            let _ = l.check(addr(i), &[0; 1900]);
        }
        assert!(l.entries.len() <= ENTRIES_MAX);
        assert!(l.held_bytes <= HELD_BYTES_MAX);
        assert!(l.counts.dropped > 0);
        let held: usize = l.entries.values().flat_map(|e| &e.held).map(Vec::len).sum();
        assert_eq!(held, l.held_bytes);
    }

    #[test]
    fn a_cookie_lasts_two_epochs() {
        let mut l = Limiter::new([3; 32]);
        let old = l.cookie(addr(1));
        l.rotate();
        assert!(l.echo(addr(1), &old).is_some(), "the previous epoch's");
        l.rotate();
        assert!(l.echo(addr(1), &old).is_none(), "two epochs back: a replay");
        assert!(l.echo(addr(1), &l.cookie(addr(1))).is_some());
    }

    #[test]
    fn cookies_differ_by_address_and_secret() {
        let (a, b) = (Limiter::new([1; 32]), Limiter::new([2; 32]));
        assert_ne!(a.cookie(addr(1)), a.cookie(addr(2)));
        assert_ne!(a.cookie(addr(1)), b.cookie(addr(1)));
        assert_eq!(a.cookie(addr(1)), a.cookie(addr(1)));
    }
}
