//! Lamport clocks (user events and queries each have one), hardened against hostile input: a
//! time received in an event or query moves the clock at most [`JUMP_MAX`] ahead, so one
//! forged datagram cannot make every later event of other members look old; and no clock
//! ever passes [`CLOCK_MAX`], so none saturates (a saturated clock gives every later event
//! the same time, and identical events then arrive once).
//!
//! A clock is exchanged whole (not bounded) only in the answer to a join or push-pull this
//! node asked for ([`LamportClock::witness_answer`]): that is how a new or restarted member
//! takes the cluster's time before it sends anything, as Serf carries its clocks in its
//! join and push-pull exchange.

/// How many Lamport times back the event buffer remembers (Serf's default event buffer):
/// an event older than the clock by more than this is refused as old.
pub const BUFFER_LTIMES: u64 = 512;

/// The furthest one received time moves a clock ahead: half the buffer window, so that after
/// one forged far-future time an event at the senders' own time is still inside the window.
pub const JUMP_MAX: u64 = BUFFER_LTIMES / 2;

/// The furthest an answer to our own join or push-pull moves a clock ahead (2^32 events: no
/// real cluster is further ahead of a new member), so that even forged answers would need
/// 2^30 tries to bring a clock near [`CLOCK_MAX`].
pub const ANSWER_JUMP_MAX: u64 = 1 << 32;

/// No clock goes past this (2^62): far beyond any real count of events, and far from
/// `u64::MAX`, so arithmetic on times never saturates. A received time above it is refused.
pub const CLOCK_MAX: u64 = 1 << 62;

/// A Lamport clock: the time the next local event or query takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LamportClock {
    time: u64,
}

impl LamportClock {
    /// The current time (what the next local event takes).
    pub fn time(&self) -> u64 {
        self.time
    }

    /// Takes the current time for a local event and advances the clock.
    pub fn tick(&mut self) -> u64 {
        let t = self.time;
        self.time = (t + 1).min(CLOCK_MAX);
        t
    }

    /// Witnesses a time `t` carried by a received event or query: the clock moves past it,
    /// but by at most [`JUMP_MAX`].
    pub fn witness(&mut self, t: u64) {
        let next = t.saturating_add(1).min(self.time.saturating_add(JUMP_MAX));
        self.time = self.time.max(next).min(CLOCK_MAX);
    }

    /// Witnesses `next`, the time a member's clock holds in the answer to a join or push-pull
    /// this node asked for: taken whole, up to [`ANSWER_JUMP_MAX`] ahead.
    pub fn witness_answer(&mut self, next: u64) {
        let next = next.min(self.time.saturating_add(ANSWER_JUMP_MAX));
        self.time = self.time.max(next).min(CLOCK_MAX);
    }

    /// Witnesses `next`, the time a member's clock holds in a join or push-pull it sent
    /// unasked: the clock moves up to it (a clock at 0 has seen nothing and moves nothing),
    /// bounded like a received time.
    pub fn witness_request(&mut self, next: u64) {
        if next > 0 {
            self.witness(next - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_times_move_the_clock_a_bounded_step() {
        let mut c = LamportClock::default();
        assert_eq!(c.tick(), 0);
        c.witness(7);
        assert_eq!(c.time(), 8);
        c.witness(3);
        assert_eq!(c.time(), 8, "an older time changes nothing");
        c.witness(10_000);
        assert_eq!(
            c.time(),
            8 + JUMP_MAX,
            "a far-future time moves it half a window"
        );
        c.witness(u64::MAX - 1);
        assert_eq!(c.time(), 8 + 2 * JUMP_MAX);
        c.witness_request(100_000);
        assert_eq!(c.time(), 8 + 3 * JUMP_MAX);
        let mut fresh = LamportClock::default();
        fresh.witness_request(0);
        assert_eq!(fresh.time(), 0, "a clock at 0 moves nothing");
        fresh.witness_request(5);
        assert_eq!(fresh.time(), 5);
    }

    #[test]
    fn answers_are_taken_whole_and_no_clock_saturates() {
        let mut c = LamportClock::default();
        c.witness_answer(5_000);
        assert_eq!(c.time(), 5_000);
        c.witness_answer(u64::MAX);
        assert_eq!(c.time(), 5_000 + ANSWER_JUMP_MAX);
        c = LamportClock {
            time: CLOCK_MAX - 1,
        };
        c.witness_answer(u64::MAX);
        assert_eq!(c.time(), CLOCK_MAX);
        assert_eq!(c.tick(), CLOCK_MAX);
        assert_eq!(c.tick(), CLOCK_MAX, "stays below saturation");
        c.witness(u64::MAX);
        assert_eq!(c.time(), CLOCK_MAX);
    }
}
