//! Every agent setting, defined once: its flag, environment variable, TOML key, value name and
//! documentation (with its default) are the attributes of one field. The command line (clap),
//! the environment (clap's `env`) and the config file (serde, with the TOML key) are all read
//! into these same structs; [`crate::config::AgentConfig::resolve`] merges them (flags and
//! environment over the file over the defaults) and validates each value, naming the flag.
//!
//! The settings come in four groups, each built apart by clap (a derived builder of forty
//! arguments in one function took a 124 KiB stack frame, resident for the agent's life).

use std::path::PathBuf;

use gossip_handlers::WriterConfig;
use serde::{Deserialize, Deserializer};

/// Declares a group: the struct with its clap and serde derives, and the TOML keys it reads
/// (`TOML_KEYS`), so that a key no group knows is an error naming it.
macro_rules! settings_group {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                #[arg($($arg:tt)*)]
                #[serde(rename = $key:literal $(, $sk:ident = $sv:literal)*)]
                pub $field:ident : $ty:ty,
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, Default, PartialEq, clap::Args, Deserialize)]
        #[serde(default)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                #[arg($($arg)*)]
                #[serde(rename = $key $(, $sk = $sv)*)]
                pub $field: $ty,
            )*
        }

        impl $name {
            /// The config file keys of this group.
            pub const TOML_KEYS: &'static [&'static str] = &[$($key),*];

            /// `self` (flags and environment) over `file`: a value given here wins; a list
            /// given here replaces the file's (see [`Merge`]).
            pub fn over(self, file: Self) -> Self {
                Self {
                    $($field: Merge::over(self.$field, file.$field),)*
                }
            }
        }
    };
}

/// How a value from flags and environment combines with the file's.
pub trait Merge {
    /// `self` (given on the command line or in the environment) over `file`.
    fn over(self, file: Self) -> Self;
}

impl<T> Merge for Option<T> {
    fn over(self, file: Self) -> Self {
        self.or(file)
    }
}

impl<T> Merge for Vec<T> {
    fn over(self, file: Self) -> Self {
        if self.is_empty() { file } else { self }
    }
}

settings_group! {
    /// Name, addresses, keys, snapshot and reap timeout.
    pub struct MemberSettings {
        /// Node name, unique in the cluster [default: the hostname]
        #[arg(long = "node", env = "GOSSIP_NODE", value_name = "NAME")]
        #[serde(rename = "node")]
        pub node: Option<String>,
        /// Address to bind the gossip socket to [default: 0.0.0.0:7946]
        #[arg(long = "bind", env = "GOSSIP_BIND", value_name = "IP:PORT")]
        #[serde(rename = "bind")]
        pub bind: Option<String>,
        /// Address to advertise to other members [default: the bind IP; else, with --join,
        /// the local address routing to the first join target (waited 10 s at most); else
        /// the first non-loopback IPv4 address; the bind port]
        #[arg(long = "advertise", env = "GOSSIP_ADVERTISE", value_name = "IP[:PORT]")]
        #[serde(rename = "advertise")]
        pub advertise: Option<String>,
        /// Address of the local control API, HTTP and Serf's RPC on one port [default:
        /// 127.0.0.1:7373]; any other than a loopback address needs --rpc-token
        #[arg(long = "rpc-addr", env = "GOSSIP_RPC_ADDR", value_name = "IP:PORT")]
        #[serde(rename = "rpc_addr")]
        pub rpc_addr: Option<String>,
        /// Bearer token every control API request must carry, and Serf's RPC `auth` key (16 to
        /// 256 printable characters)
        #[arg(long = "rpc-token", env = "GOSSIP_RPC_TOKEN", value_name = "TOKEN", hide_env_values = true)]
        #[serde(rename = "rpc_token")]
        pub rpc_token: Option<String>,
        /// Encrypt gossip with this key (base64 of 32 bytes; gossip-agent keygen makes one).
        /// Every member needs a key of the same keyring
        #[arg(long = "encrypt", env = "GOSSIP_ENCRYPT", value_name = "KEY", hide_env_values = true)]
        #[serde(rename = "encrypt")]
        pub encrypt: Option<String>,
        /// Keyring file (a JSON array of base64 keys, the primary first, as Serf's): read at
        /// start, created from --encrypt when missing, rewritten on every key rotation
        #[arg(long = "keyring-file", env = "GOSSIP_KEYRING_FILE", value_name = "FILE")]
        #[serde(rename = "keyring_file")]
        pub keyring_file: Option<PathBuf>,
        /// Keep the live members' addresses in this file, so a restart rejoins through them even
        /// when the --join targets are gone
        #[arg(long = "snapshot", env = "GOSSIP_SNAPSHOT", value_name = "FILE")]
        #[serde(rename = "snapshot")]
        pub snapshot: Option<PathBuf>,
        /// How long failed and left members stay listed before they are reaped (a reaped
        /// failed member is still tried for as long again) [default: 86400]
        #[arg(long = "reap-after", env = "GOSSIP_REAP_AFTER", value_name = "SECS")]
        #[serde(rename = "reap_after_secs")]
        pub reap_after: Option<u64>,
        /// Also serve Prometheus metrics (GET /metrics, nothing else, no token) on this
        /// address [default: off; /metrics on the control API always]
        #[arg(long = "metrics-addr", env = "GOSSIP_METRICS_ADDR", value_name = "IP:PORT")]
        #[serde(rename = "metrics_addr")]
        pub metrics_addr: Option<String>,
        /// Serve DNS on this address, UDP and TCP: ROLE.DOMAIN, NAME.node.DOMAIN,
        /// _ROLE._tcp.DOMAIN from the member table, other names forwarded [default: off]
        #[arg(long = "dns-addr", env = "GOSSIP_DNS_ADDR", value_name = "IP:PORT")]
        #[serde(rename = "dns_addr")]
        pub dns_addr: Option<String>,
        /// The DNS zone the agent answers for [default: gossip.]
        #[arg(long = "dns-domain", env = "GOSSIP_DNS_DOMAIN", value_name = "DOMAIN")]
        #[serde(rename = "dns_domain")]
        pub dns_domain: Option<String>,
        /// TTL of DNS answers, in seconds; 0: answers change the moment membership does
        /// [default: 0]
        #[arg(long = "dns-ttl", env = "GOSSIP_DNS_TTL", value_name = "SECS")]
        #[serde(rename = "dns_ttl")]
        pub dns_ttl: Option<u32>,
        /// Where names outside the zone go: IP or IP:PORT, repeatable, or `none` (REFUSED)
        /// [default: the nameservers of /etc/resolv.conf]
        #[arg(long = "dns-recursor", env = "GOSSIP_DNS_RECURSOR", value_delimiter = ',', value_name = "IP[:PORT]|none")]
        #[serde(rename = "dns_recursors")]
        pub dns_recursors: Vec<String>,
    }
}

settings_group! {
    /// Role, tags, joins, profile and log level.
    pub struct ClusterSettings {
        /// This node's role (the tag role=ROLE)
        #[arg(long = "role", env = "GOSSIP_ROLE", value_name = "ROLE")]
        #[serde(rename = "role")]
        pub role: Option<String>,
        /// A tag to advertise; repeatable. GOSSIP_TAGS holds K=V,K=V (a flag wins on the same
        /// key); in the config file, a `[tags]` table
        #[arg(long = "tag", value_name = "K=V")]
        #[serde(rename = "tags", deserialize_with = "tag_table")]
        pub tags: Vec<String>,
        /// A member to join, by name or address; repeatable. Names resolve to every address they
        /// have; retried with backoff until a member answers [port default: 7946]
        #[arg(long = "join", env = "GOSSIP_JOIN", value_delimiter = ',', value_name = "HOST[:PORT]")]
        #[serde(rename = "join")]
        pub join: Vec<String>,
        /// The longest wait between two join attempts (they start at 200 ms, doubling)
        /// [default: 30]
        #[arg(long = "retry-join-max", env = "GOSSIP_RETRY_JOIN_MAX", value_name = "SECS")]
        #[serde(rename = "retry_join_max_secs")]
        pub retry_join_max: Option<u64>,
        /// Timing profile: lan, local (one host) or wan [default: lan]
        #[arg(long = "profile", env = "GOSSIP_PROFILE", value_name = "PROFILE")]
        #[serde(rename = "profile")]
        pub profile: Option<String>,
        /// Log level: error, warn, info, debug or trace [default: info]
        #[arg(long = "log-level", env = "GOSSIP_LOG_LEVEL", value_name = "LEVEL")]
        #[serde(rename = "log_level")]
        pub log_level: Option<String>,
    }
}

settings_group! {
    /// Handlers, writers and their limits.
    pub struct EventSettings {
        /// A Serf-style event handler, `[FILTER=]SCRIPT`, run with /bin/sh -c; repeatable (the
        /// config file's come first). FILTER: member-join, member-leave, member-failed,
        /// member-update, member-reap, member, user, user:NAME, query, query:NAME,
        /// comma-separated; member items may select on the member's tags:
        /// member-join[role=app.*&zone=eu]
        #[arg(long = "event-handler", value_name = "[FILTER=]SCRIPT")]
        #[serde(rename = "event_handlers")]
        pub event_handlers: Vec<String>,
        /// Kill a handler (its whole process group) after this many seconds [default: 30]
        #[arg(long = "handler-timeout", env = "GOSSIP_HANDLER_TIMEOUT", value_name = "SECS")]
        #[serde(rename = "handler_timeout_secs")]
        pub handler_timeout: Option<u64>,
        /// Deliver coalesced member events once none arrived for this long; 0 delivers every
        /// event at once [default: 100]
        #[arg(long = "coalesce-quiet", env = "GOSSIP_COALESCE_QUIET", value_name = "MS")]
        #[serde(rename = "coalesce_quiet_ms")]
        pub coalesce_quiet: Option<u64>,
        /// Deliver coalesced member events at most this long after the first [default: 1000]
        #[arg(long = "coalesce-max", env = "GOSSIP_COALESCE_MAX", value_name = "MS")]
        #[serde(rename = "coalesce_max_ms")]
        pub coalesce_max: Option<u64>,
        /// Largest user event this agent sends or accepts: name plus payload, 1 to 2048 bytes
        /// [default: 1024]
        #[arg(long = "event-size-max", env = "GOSSIP_EVENT_SIZE_MAX", value_name = "BYTES")]
        #[serde(rename = "event_size_max")]
        pub event_size_max: Option<usize>,
        /// Largest tag set this agent advertises or accepts from a member: keys plus values plus
        /// 2 a tag, 16 to 1200 bytes; the same on every member [default: 1024]
        #[arg(long = "tags-size-max", env = "GOSSIP_TAGS_SIZE_MAX", value_name = "BYTES")]
        #[serde(rename = "tags_size_max")]
        pub tags_size_max: Option<usize>,
        /// A built-in writer, KIND:KEY=VALUE,...; KIND is nginx, hipache, dnsmasq or template;
        /// repeatable (the config file's `[[writer]]` tables come first; see the README)
        #[arg(long = "writer", value_name = "KIND:K=V,...")]
        #[serde(rename = "writer")]
        pub writers: Vec<WriterArg>,
    }
}

settings_group! {
    /// Supervision of a service (its command follows `--`).
    pub struct ServiceSettings {
        /// Supervise a service: join only once this check passes. http://HOST:PORT/PATH (a 2xx or
        /// 3xx answer), tcp://HOST:PORT (a connection) or cmd:COMMAND (exit 0)
        #[arg(long = "ready", env = "GOSSIP_READY", value_name = "CHECK")]
        #[serde(rename = "ready")]
        pub ready: Option<String>,
        /// Supervise a service: advertise the tag health=passing|critical from this check (same
        /// forms as --ready), run every 100 ms until it passes, then every --health-interval
        #[arg(long = "health", env = "GOSSIP_HEALTH", value_name = "CHECK")]
        #[serde(rename = "health")]
        pub health: Option<String>,
        /// How often the health check runs once passing [default: 1000]
        #[arg(long = "health-interval", env = "GOSSIP_HEALTH_INTERVAL", value_name = "MS")]
        #[serde(rename = "health_interval_ms")]
        pub health_interval: Option<u64>,
        /// Stop the service and exit 1 if it is not ready after this long [default: 60]
        #[arg(long = "ready-timeout", env = "GOSSIP_READY_TIMEOUT", value_name = "SECS")]
        #[serde(rename = "ready_timeout_secs")]
        pub ready_timeout: Option<u64>,
        /// The service port watched for traffic while draining [default: the ready check's]
        #[arg(long = "drain-port", env = "GOSSIP_DRAIN_PORT", value_name = "PORT")]
        #[serde(rename = "drain_port")]
        pub drain_port: Option<u16>,
        /// After leaving, keep the service until no new connection came for this long
        /// [default: 500]
        #[arg(long = "drain-quiet", env = "GOSSIP_DRAIN_QUIET", value_name = "MS")]
        #[serde(rename = "drain_quiet_ms")]
        pub drain_quiet: Option<u64>,
        /// Upper bound of the drain [default: 5]
        #[arg(long = "drain-timeout", env = "GOSSIP_DRAIN_TIMEOUT", value_name = "SECS")]
        #[serde(rename = "drain_timeout_secs")]
        pub drain_timeout: Option<u64>,
        /// The signal that stops the service (QUIT for nginx's graceful stop) [default: TERM]
        #[arg(long = "stop-signal", env = "GOSSIP_STOP_SIGNAL", value_name = "SIGNAL")]
        #[serde(rename = "stop_signal")]
        pub stop_signal: Option<String>,
        /// SIGKILL the service when it has not stopped after this long [default: 5]
        #[arg(long = "stop-timeout", env = "GOSSIP_STOP_TIMEOUT", value_name = "SECS")]
        #[serde(rename = "stop_timeout_secs")]
        pub stop_timeout: Option<u64>,
    }
}

impl ServiceSettings {
    /// True when any supervision setting is given.
    pub fn any(&self) -> bool {
        *self != Self::default()
    }
}

/// Every agent setting, from one source (flags and environment, or the config file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// Name, addresses, keys.
    pub member: MemberSettings,
    /// Role, tags, joins.
    pub cluster: ClusterSettings,
    /// Handlers, writers.
    pub events: EventSettings,
    /// Service supervision.
    pub service: ServiceSettings,
}

impl Settings {
    /// Every key a config file may hold.
    pub fn toml_keys() -> impl Iterator<Item = &'static str> {
        MemberSettings::TOML_KEYS
            .iter()
            .chain(ClusterSettings::TOML_KEYS)
            .chain(EventSettings::TOML_KEYS)
            .chain(ServiceSettings::TOML_KEYS)
            .copied()
    }

    /// The settings a config file's text holds; an unknown key is an error naming it.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        use serde::de::Error;
        let table: toml::Table = toml::from_str(text)?;
        if let Some(k) = table.keys().find(|k| !Self::toml_keys().any(|t| t == *k)) {
            return Err(toml::de::Error::custom(format!(
                "unknown field `{k}`, expected one of {}",
                Self::toml_keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let value = toml::Value::Table(table);
        Ok(Self {
            member: value.clone().try_into()?,
            cluster: value.clone().try_into()?,
            events: value.clone().try_into()?,
            service: value.try_into()?,
        })
    }
}

/// A `[tags]` table of the config file, as `K=V` items (the flags' form).
fn tag_table<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let table = std::collections::BTreeMap::<String, String>::deserialize(d)?;
    Ok(table.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// A writer: from a flag (`KIND:K=V,...`) or a `[[writer]]` table of the config file.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterArg(pub WriterConfig);

impl std::str::FromStr for WriterArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        WriterConfig::from_flag(s).map(Self)
    }
}

impl<'de> Deserialize<'de> for WriterArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        WriterConfig::deserialize(d).map(Self)
    }
}

/// The tags of the environment variable `GOSSIP_TAGS` (`K=V,K=V`): below the flags' on the
/// same key, above the config file's.
pub fn env_tags() -> Vec<String> {
    std::env::var("GOSSIP_TAGS")
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
