//! What handlers and writers did, counted for the agent's Prometheus metrics: handler runs,
//! failures, timeouts and durations by event; writer updates, unchanged passes, validation
//! failures, other failures and update durations by writer. One lock, taken once per handler
//! run or writer pass (rare next to packets), and read whole by a scrape.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::script::Outcome;

/// Upper bounds (seconds) of the duration histograms' buckets: a reload of a few ms to a
/// handler near its 30 s timeout.
pub const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A duration histogram: a count per bucket of [`BUCKETS`] (not cumulative; what falls past
/// the last bound is `count` less their sum), the count and the sum of the observations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket, each counted in the first bucket whose bound holds it.
    pub buckets: [u64; BUCKETS.len()],
    /// Observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += s;
    }

    /// (bound, observations in that bucket) for each bound: what Prometheus's encoders take
    /// (they make the `le` buckets cumulative themselves).
    pub fn by_bound(&self) -> Vec<(f64, u64)> {
        BUCKETS.iter().copied().zip(self.buckets).collect()
    }
}

/// One handler event kind (`member-join`, `user`, `query`, ...), over every handler.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HandlerCounts {
    /// Runs (each invocation of a handler script).
    pub runs: u64,
    /// Runs that exited non-zero, were killed by a signal or could not start.
    pub failed: u64,
    /// Runs killed at the handler timeout.
    pub timed_out: u64,
    /// How long runs took.
    pub duration: Histogram,
}

/// One writer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriterCounts {
    /// Passes that changed the configuration (written, validated, reloaded).
    pub updated: u64,
    /// Passes that found it right already.
    pub unchanged: u64,
    /// New configurations the validation command refused (the previous one kept).
    pub validation_failed: u64,
    /// Other failures: render, write, reload, redis.
    pub failed: u64,
    /// How long passes that changed the configuration took, reload included.
    pub update_duration: Histogram,
}

/// How a writer pass ended, as [`Stats::writer_pass`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Changed and reloaded.
    Updated,
    /// Nothing to change.
    Unchanged,
    /// Refused by the validation command.
    ValidationFailed,
    /// Any other failure.
    Failed,
}

/// The counts, shared by the dispatcher, the writers and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Counts>,
}

/// Everything counted so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// By event kind.
    pub handlers: BTreeMap<String, HandlerCounts>,
    /// By writer name.
    pub writers: BTreeMap<String, WriterCounts>,
}

impl Stats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counts hold no invariant a panic halfway could break.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a handler run for `event`.
    pub fn handler_ran(&self, event: &str, outcome: &Outcome, elapsed: Duration) {
        let mut c = self.lock();
        let h = c.handlers.entry(event.to_string()).or_default();
        h.runs += 1;
        match outcome {
            Outcome::Exited(0) => {}
            Outcome::TimedOut => h.timed_out += 1,
            Outcome::Exited(_) | Outcome::Signaled | Outcome::SpawnFailed(_) => h.failed += 1,
        }
        h.duration.observe(elapsed);
    }

    /// Makes `writer` known (all zero) before its first pass.
    pub fn writer_started(&self, writer: &str) {
        self.lock().writers.entry(writer.to_string()).or_default();
    }

    /// Counts a pass of `writer`.
    pub fn writer_pass(&self, writer: &str, pass: Pass, elapsed: Duration) {
        let mut c = self.lock();
        let w = c.writers.entry(writer.to_string()).or_default();
        match pass {
            Pass::Updated => {
                w.updated += 1;
                w.update_duration.observe(elapsed);
            }
            Pass::Unchanged => w.unchanged += 1,
            Pass::ValidationFailed => w.validation_failed += 1,
            Pass::Failed => w.failed += 1,
        }
    }

    /// A copy of everything counted.
    pub fn read(&self) -> Counts {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_counts_in_its_first_bucket_and_past_the_last_in_none() {
        let mut h = Histogram::default();
        for ms in [1, 7, 7, 400, 60_000] {
            h.observe(Duration::from_millis(ms));
        }
        let c = h.by_bound();
        assert_eq!(c[0], (0.005, 1));
        assert_eq!(c[1], (0.01, 2));
        assert_eq!(c[6], (0.5, 1));
        assert_eq!(c.iter().map(|(_, n)| n).sum::<u64>(), 4);
        assert_eq!(h.count, 5);
        assert!((h.sum - 60.415).abs() < 1e-9);
    }

    #[test]
    fn runs_and_passes_are_counted_by_kind() {
        let s = Stats::default();
        s.handler_ran("member-join", &Outcome::Exited(0), Duration::from_millis(3));
        s.handler_ran("member-join", &Outcome::Exited(2), Duration::from_millis(3));
        s.handler_ran("user", &Outcome::TimedOut, Duration::from_secs(30));
        s.writer_started("nginx:app");
        s.writer_pass("nginx:app", Pass::Updated, Duration::from_millis(20));
        s.writer_pass(
            "nginx:app",
            Pass::ValidationFailed,
            Duration::from_millis(20),
        );
        let c = s.read();
        let j = &c.handlers["member-join"];
        assert_eq!((j.runs, j.failed, j.timed_out), (2, 1, 0));
        assert_eq!(c.handlers["user"].timed_out, 1);
        let w = &c.writers["nginx:app"];
        assert_eq!(
            (w.updated, w.unchanged, w.validation_failed, w.failed),
            (1, 0, 1, 0)
        );
        assert_eq!(w.update_duration.count, 1);
    }
}
