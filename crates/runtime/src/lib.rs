//! The runtime of gossip-agent: everything around the sans-IO core that touches the world.
//!
//! - [`config`]: defaults, TOML file, environment and flags, resolved into [`AgentConfig`].
//! - [`agent`]: the tokio driver (socket, timers, signals, join retries, leave).
//! - [`control`] and [`client`]: the local control API and the CLI's client of it.
//! - [`api`]: the API's JSON bodies, Serf-shaped member output and member filters.
//! - [`resolve`]: join target resolution through hickory-resolver.
//! - [`supervise`]: running the node's service as a child (readiness, drain, stop).
//! - [`error`]: typed errors with their exit codes.

pub mod agent;
pub mod api;
pub mod client;
pub mod config;
pub mod control;
pub mod error;
pub mod resolve;
pub mod supervise;

pub use config::{AgentConfig, Overrides};
pub use error::{AgentError, ClientError, ConfigError};
