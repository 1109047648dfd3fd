//! The commands other tasks send the task that owns the node (the control API, the
//! supervisor, handlers answering queries), and the channel they travel on. Only the agent
//! reads them; everything else only sends.

use std::net::SocketAddr;

use gossip_core::MemberInfo;
use tokio::sync::{mpsc, oneshot};

use crate::api::{
    EventRequest, EventResponse, ForceLeaveRequest, ForceLeaveResponse, InfoResponse, KeysRequest,
    LeaveResponse, QueryLine, QueryRequest, TagsRequest, TagsResponse,
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
        EventRequest,
        oneshot::Sender<Result<EventResponse, CommandFailed>>,
    ),
    /// Ask a query; its lines go to the sender until `done`.
    Query(
        QueryRequest,
        mpsc::UnboundedSender<QueryLine>,
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
    /// Run a key command on every live member; its lines go to the sender until `done`.
    Keys(
        KeysRequest,
        mpsc::UnboundedSender<QueryLine>,
        oneshot::Sender<Result<(), CommandFailed>>,
    ),
    /// Mark a failed member left everywhere.
    ForceLeave(
        ForceLeaveRequest,
        oneshot::Sender<Result<ForceLeaveResponse, CommandFailed>>,
    ),
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
