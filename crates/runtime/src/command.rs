//! The commands other tasks send the task that owns the node (the control API, the
//! supervisor, handlers answering queries), and the channel they travel on. Only the agent
//! reads them; everything else only sends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use gossip_core::MemberInfo;
use tokio::sync::{mpsc, oneshot};

use crate::api::{
    EventResponse, ForceLeaveRequest, ForceLeaveResponse, InfoResponse, KeysRequest, LeaveResponse,
    TagsRequest, TagsResponse,
};

/// A request to the task that owns the node.
#[derive(Debug)]
pub enum Command {
    /// Every known member.
    Members(oneshot::Sender<Vec<MemberInfo>>),
    /// Agent information.
    Info(oneshot::Sender<InfoResponse>),
    /// Send a join (full-state exchange) to these addresses.
    Join(Vec<SocketAddr>),
    /// Which of these addresses answered a join.
    Answered(Vec<SocketAddr>, oneshot::Sender<Vec<SocketAddr>>),
    /// Edit tags.
    Tags(
        TagsRequest,
        oneshot::Sender<Result<TagsResponse, CommandFailed>>,
    ),
    /// Leave the cluster and stop; answered once the leave went out.
    Leave(oneshot::Sender<LeaveResponse>),
    /// Send a user event.
    Event(
        UserEvent,
        oneshot::Sender<Result<EventResponse, CommandFailed>>,
    ),
    /// Ask a query; its progress goes to the sender until `Done`.
    Query(
        QuerySpec,
        mpsc::UnboundedSender<QueryProgress>,
        oneshot::Sender<Result<(), CommandFailed>>,
    ),
    /// A local handler's answer to a query.
    Respond {
        /// The asking node.
        origin: SocketAddr,
        /// The query.
        ltime: u64,
        /// The answer.
        answer: Vec<u8>,
    },
    /// Run a key command on every live member; its progress goes to the sender until `Done`.
    Keys(
        KeysRequest,
        mpsc::UnboundedSender<QueryProgress>,
        oneshot::Sender<Result<(), CommandFailed>>,
    ),
    /// Mark a failed member left everywhere.
    ForceLeave(
        ForceLeaveRequest,
        oneshot::Sender<Result<ForceLeaveResponse, CommandFailed>>,
    ),
    /// Serf's `stats`: sections of names to values.
    Stats(oneshot::Sender<BTreeMap<String, BTreeMap<String, String>>>),
    /// A member's network coordinate as this node holds it (`None`: this node's own);
    /// answered with the member's name and coordinate, or `None` when it has none for it.
    Coordinate(
        Option<String>,
        oneshot::Sender<Option<(String, gossip_core::Coordinate)>>,
    ),
}

/// A user event to send (from the HTTP API or Serf's RPC: the payload is bytes).
#[derive(Debug, Clone)]
pub struct UserEvent {
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Serf's coalesce flag.
    pub coalesce: bool,
}

/// A query to ask.
#[derive(Debug, Clone, Default)]
pub struct QuerySpec {
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Only these members (by name); empty: every live member.
    pub nodes: Vec<String>,
    /// Only members whose tags match these `KEY=REGEX` filters.
    pub tags: Vec<String>,
    /// Deadline; `None`: Serf's default for the cluster's size.
    pub timeout: Option<Duration>,
    /// Report acks.
    pub ack: bool,
}

/// What happens to a query we asked, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryProgress {
    /// Sent to these members, with this deadline.
    Started {
        /// The query's id (its Lamport time).
        id: u64,
        /// Targets, by name.
        targets: Vec<String>,
        /// Deadline.
        timeout: Duration,
    },
    /// A member received it.
    Ack {
        /// The member.
        from: String,
    },
    /// A member answered.
    Response {
        /// The member.
        from: String,
        /// Its answer.
        payload: Vec<u8>,
    },
    /// Over: deadline passed or every target answered.
    Done,
}

/// The channel of [`Command`]s to the task that owns the node: the sending half goes to
/// whatever talks to the agent from inside the process (the supervisor), the receiving half
/// to [`crate::agent::run_with`]. The control API gets a clone of the sending half.
pub fn channel() -> (mpsc::Sender<Command>, mpsc::Receiver<Command>) {
    mpsc::channel(64)
}

/// Why the agent refused a command. Nothing changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandFailed {
    /// The node refused it (a name or tag that breaks the rules, or it has left).
    #[error(transparent)]
    Node(#[from] gossip_core::CommandError),
    /// An event or query name under the agent's own prefix.
    #[error("{what} names starting with {prefix} are reserved", prefix = crate::crypt::RESERVED_PREFIX)]
    Reserved {
        /// `event` or `query`.
        what: &'static str,
    },
    /// A key command on an agent without encryption.
    #[error("encryption is not enabled on this agent (--encrypt or --keyring-file)")]
    NoEncryption,
    /// A query's member filter is not a valid pattern.
    #[error(transparent)]
    Filter(#[from] gossip_handlers::select::SelectorError),
    /// A query deadline out of range.
    #[error("timeout must be between 1 ms and 1 hour")]
    Timeout,
}
