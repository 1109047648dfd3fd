//! The dispatcher: takes events from the agent without ever blocking it, coalesces member
//! events and user events flagged for it (the first after a quiet period goes out at once;
//! what follows within the quiet period waits for quiet, with an upper bound), and fans
//! batches out to one queue and task per handler, so a slow or hung handler delays only
//! itself.
//!
//! A handler's queue is bounded ([`QUEUE_EVENTS_MAX`]): a handler that falls behind gets its
//! backlog merged (latest state per member; of user events flagged for coalescing, the
//! newest of each name) before its next run, and past the bound the oldest user events that
//! may not be coalesced are dropped and counted ([`Dispatcher::dropped`]). Member events are
//! never dropped: merged, they take one line per member.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gossip_core::{MemberEvent, NodeId};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::coalesce::{Coalescer, coalesce_users, merge_backlog};
use crate::filter::{Event, HandlerSpec};
use crate::script::{self, Outcome};
use crate::stats::Stats;

/// Most events a handler's queue holds (after merging) before user events are dropped.
pub const QUEUE_EVENTS_MAX: usize = 1024;

/// Timing of the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchConfig {
    /// Flush once no member event (or coalescable user event) arrived for this long. Zero
    /// disables coalescing: every event is delivered on its own, at once.
    pub coalesce_quiet: Duration,
    /// Flush at the latest this long after the first pending event.
    pub coalesce_max: Duration,
    /// A handler still running after this is killed with its process group.
    pub handler_timeout: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            coalesce_quiet: Duration::from_millis(100),
            coalesce_max: Duration::from_secs(1),
            handler_timeout: Duration::from_secs(30),
        }
    }
}

enum Input {
    Member(MemberEvent, NodeId),
    User(Event, NodeId),
    SetHandlers(Vec<HandlerSpec>),
}

struct Job {
    events: Vec<Event>,
    local: NodeId,
}

/// The agent's handle on the dispatcher. Cheap to clone; sending never blocks.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::UnboundedSender<Input>,
    dropped: Arc<AtomicU64>,
    stats: Arc<Stats>,
}

impl Dispatcher {
    /// Starts the dispatcher task on the current tokio runtime.
    pub fn spawn(handlers: Vec<HandlerSpec>, config: DispatchConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let dropped = Arc::new(AtomicU64::new(0));
        let stats = Arc::new(Stats::default());
        tokio::spawn(run(rx, handlers, config, dropped.clone(), stats.clone()));
        Self { tx, dropped, stats }
    }

    /// What handlers did (runs, failures, timeouts, durations, by event), shared: the agent
    /// hands the same counts to its writers and reads them for `/metrics`.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Hands over a member event seen by the node `local`.
    pub fn member_event(&self, e: MemberEvent, local: NodeId) {
        let _ = self.tx.send(Input::Member(e, local));
    }

    /// Hands over a user event or a query. A user event flagged for coalescing is coalesced
    /// like member events; a query's [`crate::filter::QueryReply`] gets the stdout of the first
    /// matching handler that exits 0.
    pub fn user_event(&self, e: Event, local: NodeId) {
        let _ = self.tx.send(Input::User(e, local));
    }

    /// Replaces the handler set (SIGHUP reload). Handlers whose spec is unchanged keep their
    /// queue; removed ones finish what they run and stop.
    pub fn set_handlers(&self, handlers: Vec<HandlerSpec>) {
        let _ = self.tx.send(Input::SetHandlers(handlers));
    }

    /// User events dropped so far because a handler's queue was full, over every handler.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// One handler's backlog: jobs waiting for its task, bounded by merging and dropping.
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Notify,
    /// The handler was removed: its task ends once the queue is empty.
    closed: std::sync::atomic::AtomicBool,
    dropped: Arc<AtomicU64>,
    /// The handler, for the log.
    raw: String,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        // The queue holds no invariant a panic halfway could break.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a job; past [`QUEUE_EVENTS_MAX`] events, merges the backlog into one job and then
    /// drops its oldest user events that may not be coalesced, down to three quarters of the
    /// bound (so that a sustained flood merges once per quarter of the bound, not per event).
    fn push(&self, job: Job) {
        let mut jobs = self.lock();
        jobs.push_back(job);
        let count: usize = jobs.iter().map(|j| j.events.len()).sum();
        if count > QUEUE_EVENTS_MAX {
            let local = jobs.back().map(|j| j.local.clone()).expect("just pushed");
            let events: Vec<Event> = jobs.drain(..).flat_map(|j| j.events).collect();
            let mut events = merge_backlog(events);
            let mut dropped = 0u64;
            while events.len() > QUEUE_EVENTS_MAX * 3 / 4 {
                let Some(i) = events
                    .iter()
                    .position(|e| matches!(e, Event::User { .. } | Event::Query { .. }))
                else {
                    break;
                };
                events.remove(i);
                dropped += 1;
            }
            if dropped > 0 {
                let total = self.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
                tracing::warn!(handler = %self.raw, dropped, total, "handler far behind: its oldest user events were dropped");
            }
            jobs.push_back(Job { events, local });
        }
        drop(jobs);
        self.ready.notify_one();
    }

    /// Waits for jobs and takes them all; `None` once the handler was removed and nothing
    /// is left.
    async fn take(&self) -> Option<Vec<Job>> {
        loop {
            let notified = self.ready.notified();
            let jobs: Vec<Job> = self.lock().drain(..).collect();
            if !jobs.is_empty() {
                return Some(jobs);
            }
            if self.closed.load(Ordering::Relaxed) {
                return None;
            }
            notified.await;
        }
    }
}

struct HandlerTask {
    raw: String,
    queue: Arc<Queue>,
}

impl Drop for HandlerTask {
    fn drop(&mut self) {
        // A removed handler finishes what it has, then its task ends.
        self.queue.closed.store(true, Ordering::Relaxed);
        self.queue.ready.notify_one();
    }
}

fn start(
    spec: HandlerSpec,
    timeout: Duration,
    dropped: &Arc<AtomicU64>,
    stats: &Arc<Stats>,
) -> HandlerTask {
    let queue = Arc::new(Queue {
        jobs: Mutex::new(VecDeque::new()),
        ready: Notify::new(),
        closed: std::sync::atomic::AtomicBool::new(false),
        dropped: dropped.clone(),
        raw: spec.raw.clone(),
    });
    let raw = spec.raw.clone();
    tokio::spawn(handler_loop(spec, queue.clone(), timeout, stats.clone()));
    HandlerTask { raw, queue }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Input>,
    specs: Vec<HandlerSpec>,
    config: DispatchConfig,
    dropped: Arc<AtomicU64>,
    stats: Arc<Stats>,
) {
    let mut handlers: Vec<HandlerTask> = specs
        .into_iter()
        .map(|s| start(s, config.handler_timeout, &dropped, &stats))
        .collect();
    let mut coalescer = Coalescer::new();
    // User events flagged for coalescing, waiting with the member events.
    let mut users: Vec<Event> = Vec::new();
    let mut local: Option<NodeId> = None;
    let mut first_at: Option<Instant> = None;
    let mut quiet_until: Option<Instant> = None;
    // When coalesced events were last delivered.
    let mut last_flush: Option<Instant> = None;
    loop {
        let deadline = match (first_at, quiet_until) {
            (Some(f), Some(q)) => Some(q.min(f + config.coalesce_max)),
            _ => None,
        };
        let input = tokio::select! {
            i = rx.recv() => match i {
                Some(i) => Some(i),
                None => return,
            },
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => None,
        };
        let coalesced = match input {
            Some(Input::Member(e, l)) => {
                local = Some(l);
                coalescer.add(e);
                true
            }
            Some(Input::User(e @ Event::User { coalesce: true, .. }, l)) => {
                local = Some(l);
                users.push(e);
                true
            }
            Some(Input::User(e, l)) => {
                // Deliver what is pending first, so order is kept.
                flush(&mut coalescer, &mut users, &handlers, local.as_ref());
                first_at = None;
                quiet_until = None;
                send(&handlers, vec![e], &l);
                local = Some(l);
                continue;
            }
            Some(Input::SetHandlers(specs)) => {
                let mut old: Vec<HandlerTask> = std::mem::take(&mut handlers);
                for s in specs {
                    match old.iter().position(|h| h.raw == s.raw) {
                        Some(i) => handlers.push(old.swap_remove(i)),
                        None => handlers.push(start(s, config.handler_timeout, &dropped, &stats)),
                    }
                }
                tracing::info!(handlers = handlers.len(), "event handlers reloaded");
                continue;
            }
            None => false,
        };
        if coalesced {
            let now = Instant::now();
            // Leading edge: an event after a quiet period goes out at once (a single join
            // is not delayed); what follows it within the quiet period is coalesced.
            let idle =
                first_at.is_none() && last_flush.is_none_or(|t| now - t >= config.coalesce_quiet);
            if idle {
                flush(&mut coalescer, &mut users, &handlers, local.as_ref());
                last_flush = Some(now);
                continue;
            }
            first_at.get_or_insert(now);
            quiet_until = Some(now + config.coalesce_quiet);
            if !config.coalesce_quiet.is_zero() {
                continue;
            }
        }
        flush(&mut coalescer, &mut users, &handlers, local.as_ref());
        last_flush = Some(Instant::now());
        first_at = None;
        quiet_until = None;
    }
}

fn flush(
    c: &mut Coalescer,
    users: &mut Vec<Event>,
    handlers: &[HandlerTask],
    local: Option<&NodeId>,
) {
    if c.is_empty() && users.is_empty() {
        return;
    }
    let mut batch = c.flush();
    batch.extend(coalesce_users(std::mem::take(users)));
    if let Some(l) = local
        && !batch.is_empty()
    {
        send(handlers, batch, l);
    }
}

fn send(handlers: &[HandlerTask], events: Vec<Event>, local: &NodeId) {
    for h in handlers {
        h.queue.push(Job {
            events: events.clone(),
            local: local.clone(),
        });
    }
}

async fn handler_loop(spec: HandlerSpec, queue: Arc<Queue>, timeout: Duration, stats: Arc<Stats>) {
    while let Some(jobs) = queue.take().await {
        let merged = jobs.len();
        let local = jobs
            .last()
            .map(|j| j.local.clone())
            .expect("take returns some");
        let mut events: Vec<Event> = jobs.into_iter().flat_map(|j| j.events).collect();
        if merged > 1 {
            events = merge_backlog(events);
        }
        for e in events {
            let Some(e) = spec.accept(&e) else {
                continue;
            };
            let (env, stdin) = script::invocation(&e, &local);
            let name = env
                .iter()
                .find(|(k, _)| k == "SERF_EVENT")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let f = run_retrying(&spec.raw, &spec.script, &env, stdin, timeout).await;
            let ms = f.elapsed.as_millis() as u64;
            stats.handler_ran(&name, &f.outcome, f.elapsed);
            match &f.outcome {
                Outcome::Exited(0) => {
                    tracing::info!(handler = %spec.raw, event = %name, elapsed_ms = ms, "handler ran")
                }
                Outcome::Exited(code) => tracing::warn!(
                    handler = %spec.raw, event = %name, code, elapsed_ms = ms,
                    stderr = %f.stderr.text(), "handler failed"
                ),
                Outcome::Signaled => {
                    tracing::warn!(handler = %spec.raw, event = %name, "handler killed by a signal")
                }
                Outcome::TimedOut => tracing::warn!(
                    handler = %spec.raw, event = %name, timeout_ms = timeout.as_millis() as u64,
                    "handler timed out; killed its process group"
                ),
                Outcome::SpawnFailed(e) => {
                    tracing::error!(handler = %spec.raw, error = %e, "handler could not start")
                }
            }
            if let Event::Query { reply, name: q, .. } = &e
                && f.outcome == Outcome::Exited(0)
            {
                if f.stdout.dropped > 0 {
                    tracing::warn!(handler = %spec.raw, query = %q, "query answer too large to send");
                } else if reply.answer(f.stdout.bytes.clone()) {
                    tracing::debug!(handler = %spec.raw, query = %q, "query answered");
                }
                continue;
            }
            log_output(&spec.raw, "stdout", &f.stdout);
            if f.outcome == Outcome::Exited(0) {
                log_output(&spec.raw, "stderr", &f.stderr);
            }
        }
    }
}

/// Tries before a handler that cannot be started (no free file descriptor, no process slot)
/// is given up for this event.
const SPAWN_TRIES: u32 = 6;

/// Runs a handler, trying again (after 100 ms, doubling: 3.1 s in all) while it cannot be
/// started at all: a full descriptor table passes, and the event must not be lost to it.
async fn run_retrying(
    raw: &str,
    script: &str,
    env: &[(String, String)],
    stdin: Vec<u8>,
    timeout: Duration,
) -> script::Finished {
    let mut pause = Duration::from_millis(100);
    let mut tries = 1;
    loop {
        let f = script::run(script, env, stdin.clone(), timeout).await;
        let Outcome::SpawnFailed(e) = &f.outcome else {
            return f;
        };
        if tries == SPAWN_TRIES {
            return f;
        }
        tracing::warn!(handler = %raw, error = %e, retry_in_ms = pause.as_millis() as u64, "handler could not start; trying again");
        tokio::time::sleep(pause).await;
        pause *= 2;
        tries += 1;
    }
}

/// Logs a handler's captured output at info level, one record a line (as Serf logs its
/// handlers' output), each line after the stream's name.
fn log_output(handler: &str, stream: &str, out: &script::Captured) {
    if out.dropped > 0 {
        tracing::info!(handler, "{stream}: [{} earlier bytes dropped]", out.dropped);
    }
    for line in String::from_utf8_lossy(&out.bytes).lines() {
        tracing::info!(handler, "{stream}: {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::{EventKind, Status};

    fn local() -> NodeId {
        gossip_testkit::members::id("l", "10.0.0.1", &[])
    }

    fn user(name: &str, ltime: u64, coalesce: bool) -> Event {
        Event::User {
            name: name.into(),
            ltime,
            payload: Vec::new(),
            coalesce,
        }
    }

    fn queue() -> Queue {
        Queue {
            jobs: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            dropped: Arc::new(AtomicU64::new(0)),
            raw: "h".into(),
        }
    }

    /// A burst behind a busy handler: coalescable events collapse to the newest of their
    /// name, the rest are bounded (oldest dropped, counted), member events are kept.
    #[test]
    fn a_backlog_is_bounded_and_keeps_every_member() {
        let q = queue();
        let member = |name: &str| Event::Members {
            kind: EventKind::Join,
            members: vec![gossip_testkit::members::member(
                name,
                "10.0.0.2",
                &[],
                Status::Alive,
            )],
        };
        for t in 0..7_703u64 {
            let events = if t % 1000 == 0 {
                vec![member(&format!("m{t}"))]
            } else if t % 2 == 0 {
                vec![user("deploy", t, true)]
            } else {
                vec![user("ping", t, false)]
            };
            q.push(Job {
                events,
                local: local(),
            });
        }
        let events: Vec<Event> = q.lock().drain(..).flat_map(|j| j.events).collect();
        let events = merge_backlog(events);
        assert!(
            events.len() <= QUEUE_EVENTS_MAX + 8,
            "{} events",
            events.len()
        );
        let members: usize = events
            .iter()
            .map(|e| match e {
                Event::Members { members, .. } => members.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(members, 8, "every member kept");
        let deploys: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::User { name, ltime, .. } if name == "deploy" => Some(*ltime),
                _ => None,
            })
            .collect();
        assert_eq!(deploys, vec![7702], "only the newest coalescable event");
        assert!(q.dropped.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn only_events_flagged_for_it_coalesce() {
        let out = coalesce_users(vec![
            user("a", 1, true),
            user("b", 2, false),
            user("a", 3, true),
            user("b", 4, false),
            user("a", 3, true),
        ]);
        let seen: Vec<(String, u64)> = out
            .iter()
            .filter_map(|e| match e {
                Event::User { name, ltime, .. } => Some((name.clone(), *ltime)),
                _ => None,
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("b".into(), 2),
                ("a".into(), 3),
                ("b".into(), 4),
                ("a".into(), 3)
            ]
        );
    }
}
