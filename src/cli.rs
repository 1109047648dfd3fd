//! Command-line definition (raw values, stage one). `main` resolves them (stage two) into an
//! agent configuration or a control API call.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gossip_runtime::settings::{ClusterSettings, EventSettings, MemberSettings, ServiceSettings};

/// gossip-agent: a gossip (SWIM) membership sidecar. Nodes find each other with no server,
/// advertise a role and tags, and every agent keeps the live member list.
#[derive(Debug, Parser)]
#[command(
    name = "gossip-agent",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (none: run the agent with the flags below).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The agent's flags, when no subcommand is named.
    #[command(flatten)]
    pub agent: Apart<Box<AgentArgs>>,
}

/// A subcommand's arguments, built in a function of their own. clap's derived builders keep
/// every argument in a stack slot of their own; inlined into one another, the agent's and the
/// other subcommands' took one 124 KiB frame, which stays resident on the main thread's stack
/// for the agent's whole life. Built apart (every subcommand, and `agent`'s flags in four
/// groups), the deepest frame is under 2 KiB.
#[derive(Debug)]
pub struct Apart<T>(pub T);

impl<T: Args> Args for Apart<T> {
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
    #[inline(never)]
    fn augment_args(cmd: clap::Command) -> clap::Command {
        T::augment_args(cmd)
    }
    #[inline(never)]
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        T::augment_args_for_update(cmd)
    }
}

impl<T: clap::FromArgMatches> clap::FromArgMatches for Apart<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Apart)
    }
    fn from_arg_matches_mut(m: &mut clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(m).map(Apart)
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
    fn update_from_arg_matches_mut(&mut self, m: &mut clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(m)
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default when no subcommand is given).
    Agent(Apart<Box<AgentArgs>>),
    /// List the members the local agent knows.
    Members(Apart<MembersArgs>),
    /// Ask the local agent to join the cluster of these targets.
    Join(Apart<JoinArgs>),
    /// Make the local agent leave the cluster gracefully and exit.
    Leave(Apart<RpcArgs>),
    /// Change the local agent's tags.
    Tags(Apart<TagsArgs>),
    /// Show the local agent's state and counters.
    Info(Apart<InfoArgs>),
    /// Send a cluster-wide user event: every member's `user` and `user:NAME` handlers run
    /// once, with the payload on stdin.
    Event(Apart<EventArgs>),
    /// Mark a failed member as left on every member (Serf's force-leave)
    ForceLeave(Apart<ForceLeaveArgs>),
    /// Ask members a query: their `query` handlers answer; acks and answers print as they
    /// arrive
    Query(Apart<QueryArgs>),
    /// Print a new random gossip encryption key (for --encrypt)
    Keygen,
    /// Manage the gossip encryption keys of every live member (rotation without downtime:
    /// --install NEW, then --use NEW, then --remove OLD)
    Keys(Apart<KeysArgs>),
    /// Print the events the local agent sees (member events, user events, queries) as they
    /// happen, until interrupted
    Stream(Apart<StreamArgs>),
    /// Print the local agent's log lines as they are written, until interrupted (Serf's
    /// monitor)
    Monitor(Apart<MonitorArgs>),
    /// Estimate the round-trip time between two members from their network coordinates,
    /// without probing them (Serf's rtt); the second member defaults to the local agent
    Rtt(Apart<RttArgs>),
}

/// Flags of `rtt`.
#[derive(Debug, Args)]
pub struct RttArgs {
    /// A member's name
    #[arg(value_name = "NODE1")]
    pub a: String,
    /// Another member's name [default: the local agent]
    #[arg(value_name = "NODE2")]
    pub b: Option<String>,
    /// Control API.
    #[command(flatten)]
    pub rpc: RpcArgs,
}

/// Flags of `stream`.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Which events: a handler filter (member-join,member-leave,member,user,user:NAME,
    /// query,query:NAME,*; member items may carry a [KEY=REGEX] selector)
    #[arg(long = "type", value_name = "FILTER", default_value = "*")]
    pub kind: String,
    /// Output format: text, or json (one object a line)
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Control API.
    #[command(flatten)]
    pub rpc: RpcArgs,
}

/// Flags of `monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Lowest level shown: trace, debug, info, warn or err
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
    /// Control API.
    #[command(flatten)]
    pub rpc: RpcArgs,
}

/// Flags of `keys`: exactly one of them.
#[derive(Debug, Args)]
#[group(id = "op", required = true, multiple = false, args = ["install", "use_key", "remove", "list"])]
pub struct KeysArgs {
    /// Add a key to every member's keyring
    #[arg(long, value_name = "KEY")]
    pub install: Option<String>,
    /// Make an installed key the one every member encrypts with
    #[arg(long = "use", value_name = "KEY")]
    pub use_key: Option<String>,
    /// Remove a key from every member's keyring (not the one in use)
    #[arg(long, value_name = "KEY")]
    pub remove: Option<String>,
    /// List the keys members hold, with how many hold each
    #[arg(long)]
    pub list: bool,
    /// Control API.
    #[command(flatten)]
    pub rpc: RpcArgs,
}

/// Flags of `agent`. Each may also come from the environment variable named in its help; a
/// flag beats its variable, and both beat the config file. Every setting is defined once, in
/// `gossip_runtime::settings`; the groups are built apart (see [`Apart`]).
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Name, addresses, keys, snapshot.
    #[command(flatten)]
    pub member: Apart<MemberSettings>,
    /// Role, tags, joins, profile, log level.
    #[command(flatten)]
    pub cluster: Apart<ClusterSettings>,
    /// Handlers, writers and their limits.
    #[command(flatten)]
    pub events: Apart<EventSettings>,
    /// Supervision of a service.
    #[command(flatten)]
    pub service: Apart<ServiceSettings>,
    /// TOML config file, below environment and flags; reloaded on SIGHUP
    #[arg(long, env = "GOSSIP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The service to supervise, after `--`: started first, announced once ready, stopped
    /// after the node has left and drained; the agent exits with its exit code
    #[arg(last = true, value_name = "COMMAND")]
    pub service_command: Vec<String>,
}

/// How to reach the local agent.
#[derive(Debug, Args)]
pub struct RpcArgs {
    /// Address of the agent's control API
    #[arg(
        long,
        env = "GOSSIP_RPC_ADDR",
        default_value = "127.0.0.1:7373",
        value_name = "IP:PORT"
    )]
    pub rpc_addr: SocketAddr,
    /// The agent's control API token, when it has one
    #[arg(
        long,
        env = "GOSSIP_RPC_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub rpc_token: Option<String>,
}

impl RpcArgs {
    /// A client of the agent these flags name.
    pub fn client(&self) -> gossip_runtime::client::Client {
        gossip_runtime::client::Client::new(self.rpc_addr).with_token(self.rpc_token.clone())
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Text,
    /// JSON, in the shape of Serf's.
    Json,
}

/// Flags of `members`. Patterns are regular expressions matching the whole value.
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// Only members whose status matches (alive, suspect, failed, left)
    #[arg(long, value_name = "REGEX")]
    pub status: Option<String>,
    /// Only members whose role matches
    #[arg(long, value_name = "REGEX")]
    pub role: Option<String>,
    /// Only members with tag K matching REGEX; repeatable
    #[arg(long = "tag", value_name = "K=REGEX")]
    pub tags: Vec<String>,
    /// Only members whose name matches
    #[arg(long, value_name = "REGEX")]
    pub name: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Print the list again at each change of the member table, until interrupted (a
    /// blocking query: no polling)
    #[arg(long)]
    pub watch: bool,
    /// Control API.
    #[command(flatten)]
    pub rpc: RpcArgs,
}

/// Flags of `join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Targets: host names or addresses, each with an optional port (7946 by default)
    #[arg(required = true, value_name = "HOST[:PORT]")]
    pub targets: Vec<String>,
    /// Control API.
    #[command(flatten)]
    pub rpc: RpcArgs,
}

/// Flags of `tags`.
#[derive(Debug, Args)]
pub struct TagsArgs {
    /// Set a tag; repeatable
    #[arg(long, value_name = "K=V")]
    pub set: Vec<String>,
    /// Delete a tag; repeatable
    #[arg(long, value_name = "K")]
    pub delete: Vec<String>,
    /// Control API.
    #[command(flatten)]
    pub rpc: RpcArgs,
}

/// Flags of `event`.
#[derive(Debug, Args)]
pub struct EventArgs {
    /// Serf's coalesce flag (`--coalesce=false` to clear it)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub coalesce: bool,
    /// Event name: letters, digits, '.', '-', '_', ':' and '/'
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Payload (at most 1 KiB with the name, by default)
    #[arg(value_name = "PAYLOAD")]
    pub payload: Option<String>,
    /// Control API.
    #[command(flatten)]
    pub rpc: RpcArgs,
}

/// Flags of `query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Only this member; repeatable
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Only members whose tag K matches REGEX (whole value); repeatable
    #[arg(long = "tag", value_name = "K=REGEX")]
    pub tags: Vec<String>,
    /// Deadline, e.g. 500ms, 5s, 1m [default: Serf's, 3.2 s x ceil(log10(N + 1))]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Do not print acks
    #[arg(long)]
    pub no_ack: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Query name: letters, digits, '.', '-', '_', ':' and '/'
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Payload
    #[arg(value_name = "PAYLOAD")]
    pub payload: Option<String>,
    /// Control API.
    #[command(flatten)]
    pub rpc: RpcArgs,
}

/// A duration as Serf writes them (`500ms`, `5s`, `1m`, `1h30m`; humantime's forms), or a
/// bare number of seconds; from 1 ms to 1 h.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
        s.parse().map(std::time::Duration::from_secs).ok()
    } else {
        humantime::parse_duration(s).ok()
    }
    .ok_or_else(|| format!("{s:?} is not a duration like 500ms, 5s or 1m"))?;
    if d < std::time::Duration::from_millis(1) || d > std::time::Duration::from_secs(3600) {
        return Err(format!("{s:?} is not between 1ms and 1h"));
    }
    Ok(d)
}

/// Flags of `force-leave`.
#[derive(Debug, Args)]
pub struct ForceLeaveArgs {
    /// The failed member's name
    #[arg(value_name = "NODE")]
    pub node: String,
    /// Control API.
    #[command(flatten)]
    pub rpc: RpcArgs,
}

/// Flags of `info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Control API.
    #[command(flatten)]
    pub rpc: RpcArgs,
}
