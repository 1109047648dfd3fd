//! Command-line definition (raw values, stage one). `main` resolves them (stage two) into an
//! agent configuration or a control API call.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// gossip-agent: a gossip (SWIM) membership sidecar. Nodes find each other with no server,
/// advertise a role and tags, and every agent keeps the live member list.
#[derive(Debug, Parser)]
#[command(name = "gossip-agent", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: run the agent).
    #[command(subcommand)]
    pub command: Command,
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
}

/// Flags of `keys`: exactly one of them.
#[derive(Debug, Args)]
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
/// flag beats its variable, and both beat the config file. In four groups, each built apart
/// (see [`Apart`]).
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Name, addresses, keys, snapshot.
    #[command(flatten)]
    pub member: Apart<MemberFlags>,
    /// Role, tags, joins, profile, config file, log level.
    #[command(flatten)]
    pub cluster: Apart<ClusterFlags>,
    /// Handlers, writers and their limits.
    #[command(flatten)]
    pub events: Apart<EventFlags>,
    /// Supervision of a service.
    #[command(flatten)]
    pub service: Apart<ServiceFlags>,
}

/// `agent`'s name, addresses, keys, snapshot and reap timeout.
#[derive(Debug, Args)]
pub struct MemberFlags {
    /// Node name, unique in the cluster [default: the hostname]
    #[arg(long, env = "GOSSIP_NODE", value_name = "NAME")]
    pub node: Option<String>,
    /// Address to bind the gossip socket to [default: 0.0.0.0:7946]
    #[arg(long, env = "GOSSIP_BIND", value_name = "IP:PORT")]
    pub bind: Option<String>,
    /// Address to advertise to other members [default: the bind IP, else the first
    /// non-loopback IPv4 address; the bind port]
    #[arg(long, env = "GOSSIP_ADVERTISE", value_name = "IP[:PORT]")]
    pub advertise: Option<String>,
    /// Address of the local control API [default: 127.0.0.1:7373]; any other than a
    /// loopback address needs --rpc-token
    #[arg(long, env = "GOSSIP_RPC_ADDR", value_name = "IP:PORT")]
    pub rpc_addr: Option<String>,
    /// Bearer token every control API request must carry (16 to 256 printable characters)
    #[arg(
        long,
        env = "GOSSIP_RPC_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub rpc_token: Option<String>,
    /// Encrypt gossip with this key (base64 of 32 bytes; gossip-agent keygen makes one).
    /// Every member needs a key of the same keyring
    #[arg(
        long,
        env = "GOSSIP_ENCRYPT",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub encrypt: Option<String>,
    /// Keyring file (a JSON array of base64 keys, the primary first, as Serf's): read at
    /// start, created from --encrypt when missing, rewritten on every key rotation
    #[arg(long, env = "GOSSIP_KEYRING_FILE", value_name = "FILE")]
    pub keyring_file: Option<PathBuf>,
    /// Keep the live members' addresses in this file, so a restart rejoins through them even
    /// when the --join targets are gone
    #[arg(long, env = "GOSSIP_SNAPSHOT", value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// How long failed and left members stay listed before they are reaped (a reaped
    /// failed member is still tried for as long again) [default: 86400]
    #[arg(long, env = "GOSSIP_REAP_AFTER", value_name = "SECS")]
    pub reap_after: Option<u64>,
}

/// `agent`'s role, tags, joins, profile, config file and log level.
#[derive(Debug, Args)]
pub struct ClusterFlags {
    /// This node's role (the tag role=ROLE)
    #[arg(long, env = "GOSSIP_ROLE", value_name = "ROLE")]
    pub role: Option<String>,
    /// A tag to advertise; repeatable. GOSSIP_TAGS holds K=V,K=V (a flag wins on the same key)
    #[arg(long = "tag", value_name = "K=V")]
    pub tags: Vec<String>,
    /// A member to join, by name or address; repeatable. Names resolve to every address they
    /// have; retried with backoff until a member answers [port default: 7946]
    #[arg(
        long,
        env = "GOSSIP_JOIN",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    pub join: Vec<String>,
    /// Timing profile: lan, local (one host) or wan [default: lan]
    #[arg(long, env = "GOSSIP_PROFILE", value_name = "PROFILE")]
    pub profile: Option<String>,
    /// TOML config file, below environment and flags; reloaded on SIGHUP
    #[arg(long, env = "GOSSIP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace [default: info]
    #[arg(long, env = "GOSSIP_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// `agent`'s handler and writer flags.
#[derive(Debug, Args)]
pub struct EventFlags {
    /// A Serf-style event handler, `[FILTER=]SCRIPT`, run with /bin/sh -c; repeatable.
    /// FILTER: member-join, member-leave, member-failed, member-update, member-reap, member,
    /// user, user:NAME, query, query:NAME, comma-separated; member items may select on the
    /// member's tags: member-join[role=app.*&zone=eu]
    #[arg(long = "event-handler", value_name = "[FILTER=]SCRIPT")]
    pub event_handlers: Vec<String>,
    /// Kill a handler (its whole process group) after this many seconds [default: 30]
    #[arg(long, value_name = "SECS")]
    pub handler_timeout: Option<u64>,
    /// Deliver coalesced member events once none arrived for this long; 0 delivers every
    /// event at once [default: 100]
    #[arg(long, value_name = "MS")]
    pub coalesce_quiet: Option<u64>,
    /// Deliver coalesced member events at most this long after the first [default: 1000]
    #[arg(long, value_name = "MS")]
    pub coalesce_max: Option<u64>,
    /// Largest user event this agent sends or accepts: name plus payload, 1 to 2048 bytes
    /// [default: 1024]
    #[arg(long, env = "GOSSIP_EVENT_SIZE_MAX", value_name = "BYTES")]
    pub event_size_max: Option<usize>,
    /// Largest tag set this agent advertises or accepts from a member: keys plus values plus
    /// 2 a tag, 16 to 1200 bytes; the same on every member [default: 1024]
    #[arg(long, env = "GOSSIP_TAGS_SIZE_MAX", value_name = "BYTES")]
    pub tags_size_max: Option<usize>,
    /// A built-in writer, KIND:KEY=VALUE,...; KIND is nginx, hipache, dnsmasq or template;
    /// repeatable (see the README for the keys)
    #[arg(long = "writer", value_name = "KIND:K=V,...")]
    pub writers: Vec<String>,
}

/// `agent`'s service supervision flags.
#[derive(Debug, Args)]
pub struct ServiceFlags {
    /// Supervise a service: join only once this check passes. http://HOST:PORT/PATH (a 2xx or
    /// 3xx answer), tcp://HOST:PORT (a connection) or cmd:COMMAND (exit 0)
    #[arg(long, env = "GOSSIP_READY", value_name = "CHECK")]
    pub ready: Option<String>,
    /// Supervise a service: advertise the tag health=passing|critical from this check (same
    /// forms as --ready), run every 100 ms until it passes, then every --health-interval
    #[arg(long, env = "GOSSIP_HEALTH", value_name = "CHECK")]
    pub health: Option<String>,
    /// How often the health check runs once passing [default: 1000]
    #[arg(long, value_name = "MS")]
    pub health_interval: Option<u64>,
    /// Stop the service and exit 1 if it is not ready after this long [default: 60]
    #[arg(long, value_name = "SECS")]
    pub ready_timeout: Option<u64>,
    /// The service port watched for traffic while draining [default: the ready check's]
    #[arg(long, value_name = "PORT")]
    pub drain_port: Option<u16>,
    /// After leaving, keep the service until no new connection came for this long
    /// [default: 500]
    #[arg(long, value_name = "MS")]
    pub drain_quiet: Option<u64>,
    /// Upper bound of the drain [default: 5]
    #[arg(long, value_name = "SECS")]
    pub drain_timeout: Option<u64>,
    /// The signal that stops the service (QUIT for nginx's graceful stop) [default: TERM]
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// SIGKILL the service when it has not stopped after this long [default: 5]
    #[arg(long, value_name = "SECS")]
    pub stop_timeout: Option<u64>,
    /// The service to supervise, after `--`: started first, announced once ready, stopped
    /// after the node has left and drained; the agent exits with its exit code
    #[arg(last = true, value_name = "COMMAND")]
    pub service: Vec<String>,
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

/// A Go-style duration: a number with `ms`, `s`, `m` or `h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 5s or 1m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?} is not a duration like 500ms, 5s or 1m")),
    };
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err(format!("{s:?} is not between 1ms and 1h"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
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

/// Subcommand names, to decide when to insert the default `agent`.
pub const SUBCOMMANDS: &[&str] = &[
    "agent",
    "members",
    "join",
    "leave",
    "tags",
    "info",
    "event",
    "force-leave",
    "query",
    "keygen",
    "keys",
    "help",
];

/// Inserts `agent` when no subcommand is named: `gossip-agent --role x` runs the agent.
pub fn with_default_subcommand(mut args: Vec<String>) -> Vec<String> {
    let first = args.get(1).map(String::as_str);
    let top_level_flag = matches!(first, Some("-h" | "--help" | "-V" | "--version"));
    let named = first.is_some_and(|f| SUBCOMMANDS.contains(&f));
    if !named && !top_level_flag {
        args.insert(1, "agent".into());
    }
    args
}
