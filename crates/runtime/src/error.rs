//! Errors of the runtime, grouped so the binary can map them to exit codes: configuration
//! errors exit 2, everything else 1.

use std::path::PathBuf;

use thiserror::Error;

/// What went wrong with one value: the error of whatever refused it (an address parser, the
/// identity rules, the keyring, ...), or a sentence when no type says it better.
pub type Reason = Box<dyn std::error::Error + Send + Sync>;

/// A bad flag, environment variable or config file value. Nothing was started.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// One field has a bad value.
    #[error("invalid {field}: {source}")]
    Field {
        /// The flag or config key.
        field: String,
        /// What is wrong.
        source: Reason,
    },
    /// The config file cannot be read or parsed.
    #[error("config file {}: {summary}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, in one line (with the byte offset of a parse error).
        summary: String,
        /// The reading or parsing error.
        source: Reason,
    },
}

impl ConfigError {
    /// A bad value of `field`.
    pub fn field(field: impl Into<String>, source: impl Into<Reason>) -> Self {
        Self::Field {
            field: field.into(),
            source: source.into(),
        }
    }
}

/// Why the agent could not run or stopped abnormally.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AgentError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// gossip, DNS, metrics or control API.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Any other I/O failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The core refused the node's own identity or a command.
    #[error(transparent)]
    Core(#[from] gossip_core::CommandError),
}

impl AgentError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) | Self::Core(gossip_core::CommandError::Invalid(_)) => 2,
            _ => 1,
        }
    }
}

/// A CLI command that talks to a running agent failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing answers at the control address.
    #[error(
        "cannot reach the agent's control API at {addr}: {source} (is the agent running? see --rpc-addr)"
    )]
    Unreachable {
        /// The address tried.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The agent answered with an error.
    #[error("the agent refused: {0}")]
    Refused(String),
    /// The answer could not be understood.
    #[error("bad answer from the agent: {0}")]
    Protocol(String),
    /// A bad argument (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// What was asked for does not exist here (a coordinate the agent does not hold).
    #[error("{0}")]
    Missing(String),
}

impl ClientError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => 2,
            _ => 1,
        }
    }
}
