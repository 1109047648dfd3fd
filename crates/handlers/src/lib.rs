//! What gossip-agent does with membership changes: Serf-compatible event handler scripts,
//! and built-in writers that keep local configuration (nginx, hipache's redis list, dnsmasq,
//! any template) in step with the cluster.
//!
//! - [`filter`]: Serf's `[FILTER=]SCRIPT` handler specs, plus member tag selectors.
//! - [`coalesce`]: merging bursts of member events (Serf's coalescer, deterministic).
//! - [`script`]: running one handler with Serf's environment and stdin, a timeout and capped
//!   output.
//! - [`dispatch`]: the task that takes events from the agent and feeds a queue per handler.
//! - [`writer`]: level-triggered writers with atomic replacement, validation and rollback.
//! - [`select`]: member selectors shared by filters and writers.
//! - [`stats`]: counts of handler runs and writer passes, for the agent's metrics.
//! - [`harness`]: what the fuzzers call: peer data to environments, stdin and files.

pub mod coalesce;
pub mod dispatch;
pub mod filter;
pub mod harness;
pub mod script;
pub mod select;
pub mod stats;
pub mod writer;

pub use dispatch::{DispatchConfig, Dispatcher};
pub use filter::{Event, EventFilter, HandlerSpec, QueryReply};

pub use writer::{Snapshot, Writer, WriterConfig, parse_signal};
