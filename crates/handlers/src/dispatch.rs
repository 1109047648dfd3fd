//! The dispatcher: takes events from the agent without ever blocking it, coalesces member
//! events (the first after a quiet period goes out at once; what follows within the quiet
//! period waits for quiet, with an upper bound), and fans batches out to one queue and
//! task per handler, so a slow or hung handler delays only itself. A handler that falls behind
//! gets its backlog merged (latest state per member) before its next run.

use std::sync::Arc;
use std::time::Duration;

use gossip_core::{MemberEvent, NodeId};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::coalesce::{Coalescer, merge_backlog};
use crate::filter::{Event, HandlerSpec};
use crate::script::{self, Outcome};

/// Timing of the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchConfig {
    /// Flush once no member event arrived for this long. Zero disables coalescing: every event
    /// is delivered on its own, at once.
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
}

impl Dispatcher {
    /// Starts the dispatcher task on the current tokio runtime.
    pub fn spawn(handlers: Vec<HandlerSpec>, config: DispatchConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, handlers, config));
        Self { tx }
    }

    /// Hands over a member event seen by the node `local`.
    pub fn member_event(&self, e: MemberEvent, local: NodeId) {
        let _ = self.tx.send(Input::Member(e, local));
    }

    /// Hands over a user event or a query (not coalesced). A query's
    /// [`crate::filter::QueryReply`] gets the stdout of the first matching handler that exits 0.
    pub fn user_event(&self, e: Event, local: NodeId) {
        let _ = self.tx.send(Input::User(e, local));
    }

    /// Replaces the handler set (SIGHUP reload). Handlers whose spec is unchanged keep their
    /// queue; removed ones finish what they run and stop.
    pub fn set_handlers(&self, handlers: Vec<HandlerSpec>) {
        let _ = self.tx.send(Input::SetHandlers(handlers));
    }
}

struct HandlerTask {
    raw: String,
    tx: mpsc::UnboundedSender<Arc<Job>>,
}

fn start(spec: HandlerSpec, timeout: Duration) -> HandlerTask {
    let (tx, rx) = mpsc::unbounded_channel();
    let raw = spec.raw.clone();
    tokio::spawn(handler_loop(spec, rx, timeout));
    HandlerTask { raw, tx }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Input>,
    specs: Vec<HandlerSpec>,
    config: DispatchConfig,
) {
    let mut handlers: Vec<HandlerTask> = specs
        .into_iter()
        .map(|s| start(s, config.handler_timeout))
        .collect();
    let mut coalescer = Coalescer::new();
    let mut local: Option<NodeId> = None;
    let mut first_at: Option<Instant> = None;
    let mut quiet_until: Option<Instant> = None;
    // When member events were last delivered.
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
        match input {
            Some(Input::Member(e, l)) => {
                local = Some(l);
                coalescer.add(e);
                let now = Instant::now();
                // Leading edge: an event after a quiet period goes out at once (a single join
                // is not delayed); what follows it within the quiet period is coalesced.
                let idle = first_at.is_none()
                    && last_flush.is_none_or(|t| now - t >= config.coalesce_quiet);
                if idle {
                    flush(&mut coalescer, &handlers, local.as_ref());
                    last_flush = Some(now);
                    continue;
                }
                first_at.get_or_insert(now);
                quiet_until = Some(now + config.coalesce_quiet);
                if !config.coalesce_quiet.is_zero() {
                    continue;
                }
            }
            Some(Input::User(e, l)) => {
                // Deliver what is pending first, so order is kept.
                flush(&mut coalescer, &handlers, local.as_ref());
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
                        None => handlers.push(start(s, config.handler_timeout)),
                    }
                }
                tracing::info!(handlers = handlers.len(), "event handlers reloaded");
                continue;
            }
            None => {}
        }
        flush(&mut coalescer, &handlers, local.as_ref());
        last_flush = Some(Instant::now());
        first_at = None;
        quiet_until = None;
    }
}

fn flush(c: &mut Coalescer, handlers: &[HandlerTask], local: Option<&NodeId>) {
    if c.is_empty() {
        return;
    }
    let batches = c.flush();
    if let Some(l) = local
        && !batches.is_empty()
    {
        send(handlers, batches, l);
    }
}

fn send(handlers: &[HandlerTask], events: Vec<Event>, local: &NodeId) {
    let job = Arc::new(Job {
        events,
        local: local.clone(),
    });
    for h in handlers {
        let _ = h.tx.send(job.clone());
    }
}

async fn handler_loop(
    spec: HandlerSpec,
    mut rx: mpsc::UnboundedReceiver<Arc<Job>>,
    timeout: Duration,
) {
    while let Some(job) = rx.recv().await {
        let mut events = job.events.clone();
        let mut local = job.local.clone();
        let mut merged = 1;
        while let Ok(more) = rx.try_recv() {
            events.extend(more.events.iter().cloned());
            local = more.local.clone();
            merged += 1;
        }
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
            let f = script::run(&spec.script, &env, stdin, timeout).await;
            let ms = f.elapsed.as_millis() as u64;
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
