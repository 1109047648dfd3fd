//! The runtime of gossip-agent: everything around the sans-IO core that touches the world.
//!
//! - [`settings`]: every agent setting, defined once (flag, environment variable, TOML key).
//! - [`config`]: defaults, TOML file, environment and flags, resolved into [`AgentConfig`].
//! - [`agent`]: the tokio driver (socket, timers, signals, join retries, leave).
//! - [`command`]: the commands other tasks send the agent, and their channel.
//! - [`control`] and [`client`]: the local control API and the CLI's client of it.
//! - [`rpc`]: Serf's msgpack RPC on the control API's port.
//! - [`stream`] and [`logs`]: the fan-out of events and log lines to streams and monitors.
//! - [`watch`]: the HTTP streams (`/v1/stream`, `/v1/monitor`).
//! - [`metrics`]: Prometheus metrics (`/metrics`, and the `--metrics-addr` listener).
//! - [`ui`]: the web page of the cluster (`/ui/`).
//! - [`api`]: the API's JSON bodies, Serf-shaped member output and member filters.
//! - [`crypt`]: gossip encryption: sealing, opening, the keyring file, key commands.
//! - [`dns`]: the built-in DNS server (role and node names, forwarding).
//! - [`resolve`]: join target resolution through hickory-resolver.
//! - [`snapshot`]: the member snapshot a restarted agent rejoins through.
//! - [`supervise`]: running the node's service as a child (readiness, drain, stop).
//! - [`error`]: typed errors with their exit codes.

pub mod agent;
pub mod api;
pub mod client;
pub mod command;
pub mod config;
pub mod control;
pub mod crypt;
pub mod dns;
pub mod error;
pub mod logs;
pub mod metrics;
pub mod resolve;
pub mod rpc;
pub mod settings;
pub mod snapshot;
pub mod stream;
pub mod supervise;
pub mod ui;
pub mod watch;

pub use config::AgentConfig;
pub use error::{AgentError, ClientError, ConfigError};
pub use settings::Settings;
