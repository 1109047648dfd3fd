//! The agent's log lines for those who watch them: Serf's RPC `monitor`, `GET /v1/monitor`
//! and `gossip-agent monitor`. [`MonitorLayer`], installed beside the stderr log, formats
//! each line as Serf does (`2026/12/07 10:00:00 [INFO] agent: ...`) and hands it to every
//! monitor whose level admits it, through a bounded queue: a slow monitor loses lines
//! (counted, and told), and logging never waits. The last [`BACKLOG`] lines at `INFO` and
//! above are kept, and a new monitor gets them first, as Serf's does.
//!
//! Debug and trace lines are formatted only while a monitor asks for them.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};

/// Lines kept for a new monitor (Serf's figure).
pub const BACKLOG: usize = 512;

/// Lines queued for one monitor at most.
pub const QUEUE_MAX: usize = 512;

/// A monitor's level: it gets lines at this level and above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MonitorLevel {
    /// Everything.
    Trace,
    /// Debug and above.
    Debug,
    /// Info and above.
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors.
    Err,
}

impl MonitorLevel {
    /// Parses Serf's level names (TRACE, DEBUG, INFO, WARN, ERR, in any case; ERROR and
    /// WARNING too). The error is Serf's text.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "TRACE" => Self::Trace,
            "DEBUG" => Self::Debug,
            "INFO" => Self::Info,
            "WARN" | "WARNING" => Self::Warn,
            "ERR" | "ERROR" => Self::Err,
            _ => return Err(format!("Unknown log level: {}", s.to_ascii_uppercase())),
        })
    }

    fn of(level: &Level) -> Self {
        match *level {
            Level::TRACE => Self::Trace,
            Level::DEBUG => Self::Debug,
            Level::INFO => Self::Info,
            Level::WARN => Self::Warn,
            Level::ERROR => Self::Err,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Err => "ERR",
        }
    }
}

struct Monitor {
    id: u64,
    level: MonitorLevel,
    tx: mpsc::Sender<Arc<str>>,
    dropped: Arc<AtomicU64>,
}

/// The monitors and the backlog.
#[derive(Default)]
pub struct LogHub {
    monitors: Mutex<Vec<Monitor>>,
    backlog: Mutex<VecDeque<(MonitorLevel, Arc<str>)>>,
    /// The lowest level any monitor asks for, as `MonitorLevel as usize` (Info when none).
    lowest: AtomicUsize,
    next: AtomicU64,
}

/// One monitor's end: lines in order, and how many were lost. Dropping it ends the monitor.
pub struct LogSubscription {
    /// The lines, without a newline.
    pub rx: mpsc::Receiver<Arc<str>>,
    dropped: Arc<AtomicU64>,
    id: u64,
}

impl LogSubscription {
    /// Lines lost since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for LogSubscription {
    fn drop(&mut self) {
        let hub = hub();
        let mut ms = hub.lock();
        ms.retain(|m| m.id != self.id);
        hub.set_lowest(&ms);
    }
}

/// The process's one hub.
pub fn hub() -> &'static LogHub {
    static HUB: OnceLock<LogHub> = OnceLock::new();
    HUB.get_or_init(|| {
        let h = LogHub::default();
        h.lowest
            .store(MonitorLevel::Info as usize, Ordering::Relaxed);
        h
    })
}

impl LogHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Monitor>> {
        self.monitors.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_lowest(&self, ms: &[Monitor]) {
        let lowest = ms
            .iter()
            .map(|m| m.level)
            .min()
            .unwrap_or(MonitorLevel::Info)
            .min(MonitorLevel::Info);
        self.lowest.store(lowest as usize, Ordering::Relaxed);
    }

    /// A new monitor of lines at `level` and above; the backlog comes first.
    pub fn subscribe(&self, level: MonitorLevel) -> LogSubscription {
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let dropped = Arc::new(AtomicU64::new(0));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut ms = self.lock();
        // Under the monitors' lock: no line is both in the backlog sent and sent live.
        for (l, line) in self
            .backlog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            if *l >= level {
                let _ = tx.try_send(line.clone());
            }
        }
        ms.push(Monitor {
            id,
            level,
            tx,
            dropped: dropped.clone(),
        });
        self.set_lowest(&ms);
        LogSubscription { rx, dropped, id }
    }

    /// Monitors now.
    pub fn monitors(&self) -> usize {
        self.lock().len()
    }

    fn wants(&self, level: MonitorLevel) -> bool {
        level as usize >= self.lowest.load(Ordering::Relaxed)
    }

    fn publish(&self, level: MonitorLevel, line: Arc<str>) {
        let ms = self.lock();
        for m in ms.iter() {
            if level >= m.level && m.tx.try_send(line.clone()).is_err() {
                m.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if level >= MonitorLevel::Info {
            let mut b = self.backlog.lock().unwrap_or_else(PoisonError::into_inner);
            if b.len() == BACKLOG {
                b.pop_front();
            }
            b.push_back((level, line));
        }
    }
}

/// The layer that feeds [`hub`]. Install it with [`MonitorLayer::filter`] as its own filter,
/// beside the stderr log's.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonitorLayer;

/// The monitor layer's filter: the agent's own crates, at `INFO` and above, and below that
/// while a monitor asks.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonitorFilter;

impl MonitorLayer {
    /// The filter to install this layer with.
    pub fn filter() -> MonitorFilter {
        MonitorFilter
    }
}

impl<S: Subscriber> Filter<S> for MonitorFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        meta.target().starts_with("gossip") && hub().wants(MonitorLevel::of(meta.level()))
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if meta.target().starts_with("gossip") {
            // Whether it is wanted changes as monitors come and go.
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
}

impl<S: Subscriber> Layer<S> for MonitorLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let level = MonitorLevel::of(meta.level());
        let mut line = String::with_capacity(128);
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        // 2026-12-07T10:00:00Z -> 2026/12/07 10:00:00, as Go's log package writes it.
        let _ = write!(
            line,
            "{} {} [{}] {}: ",
            now.get(..10).unwrap_or("").replace('-', "/"),
            now.get(11..19).unwrap_or(""),
            level.tag(),
            meta.target()
                .strip_prefix("gossip_")
                .unwrap_or(meta.target()),
        );
        let mut v = Fields {
            message: String::new(),
            rest: String::new(),
        };
        event.record(&mut v);
        let (message, rest) = (v.message, v.rest);
        line.push_str(&message);
        line.push_str(&rest);
        hub().publish(level, Arc::from(line));
    }
}

struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={:?}", field.name(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_as_serf_names_them() {
        assert_eq!(MonitorLevel::parse("debug"), Ok(MonitorLevel::Debug));
        assert_eq!(MonitorLevel::parse("ERR"), Ok(MonitorLevel::Err));
        assert_eq!(
            MonitorLevel::parse("loud"),
            Err("Unknown log level: LOUD".to_string())
        );
    }
}
