//! Agent configuration: built-in defaults, then a TOML file, then environment variables and
//! flags (clap reads those two, flags winning), into one resolved [`AgentConfig`]. Each
//! setting is defined once, in [`crate::settings`]; here they are merged and validated. Every
//! error names the flag at fault.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gossip_core::crypt::Key;
use gossip_core::{CoreConfig, Limits, Profile, ROLE_TAG, Tags, identity};
use gossip_handlers::{DispatchConfig, HandlerSpec, WriterConfig};

use crate::error::ConfigError;
use crate::settings::Settings;

/// Gossip port used when `--bind`, `--advertise` or `--join` gives none.
pub const DEFAULT_PORT: u16 = 7946;
/// Default control API address.
pub const DEFAULT_RPC: &str = "127.0.0.1:7373";
/// The largest `--event-size-max`: an event travels in one datagram.
pub const EVENT_SIZE_LIMIT: usize = 2048;
/// The largest `--tags-size-max`: a probe names two members in full (name and tags) in one
/// datagram, sealed or not.
pub const TAGS_SIZE_LIMIT: usize = 1200;

/// A `--join` target: a host name or IP, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTarget {
    /// Host name or IP literal.
    pub host: String,
    /// Port (7946 when not given).
    pub port: u16,
}

impl std::fmt::Display for JoinTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for JoinTarget {
    type Err = String;

    /// `host`, `host:port`, `ip`, `ip:port`, `[v6]:port` or a bare IPv6 address.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty join target".into());
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(Self {
                host: sa.ip().to_string(),
                port: sa.port(),
            });
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self {
                host: ip.to_string(),
                port: DEFAULT_PORT,
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("bad port {p:?} in {s:?}"))?,
            ),
            None => (s, DEFAULT_PORT),
        };
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid {
            return Err(format!("{host:?} is not a host name or IP address"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

/// The resolved configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Node name.
    pub node: String,
    /// Gossip bind address.
    pub bind: SocketAddr,
    /// Advertised IP, if set (otherwise detected at start).
    pub advertise_ip: Option<IpAddr>,
    /// Advertised port (defaults to the port the gossip socket is bound to).
    pub advertise_port: Option<u16>,
    /// Control API address.
    pub rpc_addr: SocketAddr,
    /// Control API bearer token: every request must carry it when set.
    pub rpc_token: Option<String>,
    /// The metrics-only listener (`--metrics-addr`), when set.
    pub metrics_addr: Option<SocketAddr>,
    /// The built-in DNS server, when on.
    pub dns: Option<crate::dns::DnsConfig>,
    /// Gossip encryption, when on.
    pub keyring: Option<KeyringConfig>,
    /// Member snapshot file, if kept.
    pub snapshot: Option<PathBuf>,
    /// Tags, `role` included, as configured (before runtime changes).
    pub tags: Tags,
    /// Join targets.
    pub join: Vec<JoinTarget>,
    /// The core configuration.
    pub core: CoreConfig,
    /// The config file, for SIGHUP reloads.
    pub config_file: Option<PathBuf>,
    /// Log level.
    pub log_level: String,
    /// How joins are retried.
    pub join_backoff: gossip_core::config::JoinBackoff,
    /// Longest wait for a leave to be acknowledged before exiting.
    pub leave_timeout: Duration,
    /// Event handlers: the file's, then the flags'.
    pub handlers: Vec<HandlerSpec>,
    /// Coalescing and handler timeout.
    pub dispatch: DispatchConfig,
    /// Writers: the file's, then the flags'.
    pub writers: Vec<WriterConfig>,
    /// Service supervision, as given (checked by [`crate::supervise::ServiceConfig`]).
    pub service: crate::settings::ServiceSettings,
    /// The flags and environment it was built from, so a reload applies them over the new
    /// file again.
    pub flags: Settings,
}

impl AgentConfig {
    /// Resolves the defaults, the config file `config_file` (if any) and `flags` (flags and
    /// environment variables, as clap read them; `GOSSIP_TAGS` is read here).
    pub fn resolve(flags: Settings, config_file: Option<PathBuf>) -> Result<Self, ConfigError> {
        let file = match &config_file {
            Some(p) => load_file(p)?,
            None => Settings::default(),
        };
        Self::resolve_with(file, flags, crate::settings::env_tags(), config_file)
    }

    /// Resolves the defaults, the settings of a config file, `flags` and the tags of the
    /// environment (`K=V` items, below the flags' on the same key).
    pub fn resolve_with(
        file: Settings,
        flags: Settings,
        env_tags: Vec<String>,
        config_file: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        // Lists that add up (the file's, then the flags'), before the flags win elsewhere.
        let event_handlers: Vec<String> = file
            .events
            .event_handlers
            .iter()
            .chain(&flags.events.event_handlers)
            .cloned()
            .collect();
        let file_writers = file.events.writers.clone();
        let flag_writers = flags.events.writers.clone();
        let file_tags = file.cluster.tags.clone();
        let file_role = file.cluster.role.clone();
        let flag_tags: Vec<String> = env_tags
            .into_iter()
            .chain(flags.cluster.tags.iter().cloned())
            .collect();
        let member = flags.member.clone().over(file.member);
        let cluster = flags.cluster.clone().over(file.cluster);
        let events = flags.events.clone().over(file.events);
        let service = flags.service.clone().over(file.service);
        let mut limits = Limits::default();
        if let Some(n) = events.tags_size_max {
            if !(16..=TAGS_SIZE_LIMIT).contains(&n) {
                return Err(bad(
                    "tags-size-max",
                    format!("{n} is not between 16 and {TAGS_SIZE_LIMIT} bytes"),
                ));
            }
            limits.tags_bytes_max = n;
        }

        let node = match member.node {
            Some(n) => n,
            None => hostname()?,
        };
        identity::validate_name(&node, &limits).map_err(|e| bad("node", e))?;

        let bind = match &member.bind {
            Some(b) => parse_bind(b).map_err(|e| bad("bind", e))?,
            None => SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
        };

        let (advertise_ip, advertise_port) = match &member.advertise {
            Some(a) => {
                let (ip, port) = parse_advertise(a).map_err(|e| bad("advertise", e))?;
                (Some(ip), port)
            }
            None => (None, None),
        };
        if advertise_port == Some(0) {
            return Err(bad(
                "advertise",
                "a port of 0 cannot be advertised; set one",
            ));
        }

        let rpc_addr = member
            .rpc_addr
            .unwrap_or_else(|| DEFAULT_RPC.to_string())
            .parse::<SocketAddr>()
            .map_err(|e| bad("rpc-addr", e))?;
        let rpc_token = member.rpc_token.filter(|t| !t.is_empty());
        if let Some(t) = &rpc_token {
            check_token(t).map_err(|e| bad("rpc-token", e))?;
        }
        let metrics_addr = member
            .metrics_addr
            .as_deref()
            .filter(|a| !a.is_empty())
            .map(|a| a.parse::<SocketAddr>().map_err(|e| bad("metrics-addr", e)))
            .transpose()?;
        let dns = dns_config(
            member.dns_addr.as_deref(),
            member.dns_domain.as_deref(),
            member.dns_ttl,
            &member.dns_recursors,
        )?;
        let keyring = KeyringConfig::resolve(
            member.encrypt.filter(|k| !k.is_empty()),
            member.keyring_file,
        )?;
        if !rpc_addr.ip().is_loopback() && rpc_token.is_none() {
            return Err(bad(
                "rpc-addr",
                format!(
                    "{rpc_addr} is not a loopback address: set --rpc-token (GOSSIP_RPC_TOKEN) \
                     to expose the control API beyond this host"
                ),
            ));
        }

        // The file's tags, its role, then the environment's and the flags' tags, the flags'
        // role: a later one wins on the same key.
        let mut tags = Tags::new();
        let roles = [file_role, flags.cluster.role.clone()];
        for (items, role) in [file_tags, flag_tags].iter().zip(&roles) {
            for kv in items {
                let (k, v) = parse_tag(kv).map_err(|e| bad("tag", e))?;
                tags.insert(k, v);
            }
            if let Some(r) = role {
                tags.insert(ROLE_TAG.into(), r.clone());
            }
        }
        identity::validate_tags(&tags, &limits).map_err(|e| bad("tag", e))?;

        let join = cluster
            .join
            .iter()
            .map(|j| j.parse::<JoinTarget>().map_err(|e| bad("join", e)))
            .collect::<Result<Vec<_>, _>>()?;

        let profile = cluster
            .profile
            .map(|p| p.parse::<Profile>().map_err(|e| bad("profile", e)))
            .transpose()?
            .unwrap_or_default();
        let mut core = CoreConfig::new(profile);
        core.limits.tags_bytes_max = limits.tags_bytes_max;
        if let Some(n) = events.event_size_max {
            if !(1..=EVENT_SIZE_LIMIT).contains(&n) {
                return Err(bad(
                    "event-size-max",
                    format!("{n} is not between 1 and {EVENT_SIZE_LIMIT} bytes"),
                ));
            }
            core.limits.event_bytes_max = n;
        }
        if let Some(s) = member.reap_after {
            if s == 0 {
                return Err(bad("reap-after", "must be at least 1"));
            }
            core.reap_after = Duration::from_secs(s);
        }

        let log_level = cluster.log_level.unwrap_or_else(|| "info".into());
        let log_level = match log_level.parse::<tracing::Level>() {
            Ok(l) => l.as_str().to_ascii_lowercase(),
            Err(_) => {
                return Err(bad(
                    "log-level",
                    format!("{log_level:?} is not one of error, warn, info, debug, trace"),
                ));
            }
        };
        let join_backoff = gossip_core::config::JoinBackoff {
            max: Duration::from_secs(cluster.retry_join_max.unwrap_or(30).max(1)),
            ..Default::default()
        };

        let handlers = event_handlers
            .iter()
            .map(|h| HandlerSpec::parse(h).map_err(|e| bad("event-handler", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut dispatch = DispatchConfig::default();
        if let Some(t) = events.handler_timeout {
            if t == 0 {
                return Err(bad("handler-timeout", "must be at least 1 second"));
            }
            dispatch.handler_timeout = Duration::from_secs(t);
        }
        if let Some(q) = events.coalesce_quiet {
            dispatch.coalesce_quiet = Duration::from_millis(q);
        }
        if let Some(m) = events.coalesce_max {
            dispatch.coalesce_max = Duration::from_millis(m);
        }
        if dispatch.coalesce_max < dispatch.coalesce_quiet {
            return Err(bad(
                "coalesce-max",
                "must not be shorter than the quiet period",
            ));
        }
        let mut writers = Vec::new();
        for (i, w) in file_writers.into_iter().enumerate() {
            w.0.check()
                .map_err(|e| bad(&format!("writer #{}", i + 1), e))?;
            writers.push(w.0);
        }
        writers.extend(flag_writers.into_iter().map(|w| w.0));

        Ok(Self {
            node,
            bind,
            advertise_ip,
            advertise_port,
            rpc_addr,
            rpc_token,
            metrics_addr,
            dns,
            keyring,
            snapshot: member.snapshot,
            tags,
            join,
            core,
            config_file,
            log_level,
            join_backoff,
            leave_timeout: Duration::from_secs(2),
            handlers,
            dispatch,
            writers,
            service,
            flags,
        })
    }
}

/// Reads and parses a config file.
pub fn load_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        summary: e.to_string(),
        source: e.into(),
    })?;
    Settings::from_toml(&text).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        // toml's message spans lines (it quotes the source); keep the first.
        summary: e
            .message()
            .lines()
            .next()
            .unwrap_or("parse error")
            .to_string()
            + &e.span()
                .map(|s| format!(" (at byte {})", s.start))
                .unwrap_or_default(),
        source: e.into(),
    })
}

/// Gossip encryption: the keys to start with and the file that keeps them.
#[derive(Debug, Clone)]
pub struct KeyringConfig {
    /// Keys, the primary first.
    pub keys: Vec<Key>,
    /// Where rotations are saved (and read from at start), if anywhere.
    pub file: Option<PathBuf>,
    /// `--encrypt` was given but the keyring file exists and does not hold that key: the
    /// file won (it records rotations since); the agent warns at start.
    pub encrypt_ignored: bool,
}

impl KeyringConfig {
    /// From `--encrypt` and `--keyring-file`: an existing file gives the keys and `--encrypt`
    /// is ignored (the file records the rotations since the key was first given, so the same
    /// command line restarts the agent with the current keys); a missing file is created from
    /// `--encrypt` when the agent starts.
    pub fn resolve(
        encrypt: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Option<Self>, ConfigError> {
        let encrypt = encrypt
            .map(|k| Key::parse(&k).map_err(|e| bad("encrypt", e)))
            .transpose()?;
        let mut keys = Vec::new();
        let mut encrypt_ignored = false;
        if let Some(path) = &file
            && path.exists()
        {
            keys = Self::load(path)?;
            encrypt_ignored = encrypt.as_ref().is_some_and(|k| !keys.contains(k));
        } else if let Some(k) = encrypt {
            keys.push(k);
        }
        if keys.is_empty() {
            return match file {
                Some(p) => Err(bad(
                    "keyring-file",
                    format!(
                        "{} does not exist; give --encrypt KEY to start it (gossip-agent keygen makes one)",
                        p.display()
                    ),
                )),
                None => Ok(None),
            };
        }
        Ok(Some(Self {
            keys,
            file,
            encrypt_ignored,
        }))
    }

    /// Reads a keyring file: a JSON array of base64 keys, the primary first.
    pub fn load(path: &Path) -> Result<Vec<Key>, ConfigError> {
        let field = |m: String| bad("keyring-file", format!("{}: {m}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| field(e.to_string()))?;
        let list: Vec<String> = serde_json::from_str(&text)
            .map_err(|e| field(format!("not a JSON array of base64 keys ({e})")))?;
        if list.is_empty() {
            return Err(field("holds no key".into()));
        }
        list.iter()
            .enumerate()
            .map(|(i, k)| Key::parse(k).map_err(|e| field(format!("key #{}: {e}", i + 1))))
            .collect()
    }

    /// Writes `keys` to `path` in the same format, atomically.
    pub fn save(path: &Path, keys: &[Key]) -> std::io::Result<()> {
        let list: Vec<String> = keys.iter().map(Key::to_base64).collect();
        let mut text = serde_json::to_string_pretty(&list).map_err(std::io::Error::other)?;
        text.push('\n');
        gossip_handlers::writer::atomic_write_mode(path, text.as_bytes(), 0o600)
    }
}

/// Runtime tag edits (`tags --set/--delete`), kept apart from the configured tags so that a
/// reload re-applies them on top of the reloaded file.
#[derive(Debug, Default, Clone)]
pub struct TagOverlay {
    /// Tags set at runtime.
    pub set: Tags,
    /// Tags deleted at runtime.
    pub deleted: BTreeSet<String>,
}

impl TagOverlay {
    /// Records an edit: sets then deletes.
    pub fn edit(&mut self, set: &Tags, delete: &[String]) {
        for (k, v) in set {
            self.deleted.remove(k);
            self.set.insert(k.clone(), v.clone());
        }
        for k in delete {
            self.set.remove(k);
            self.deleted.insert(k.clone());
        }
    }

    /// `base` with the edits applied.
    pub fn apply(&self, base: &Tags) -> Tags {
        let mut t = base.clone();
        t.extend(self.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        t.retain(|k, _| !self.deleted.contains(k));
        t
    }
}

/// A control API token: 16 to 256 printable ASCII characters, no spaces (it travels in an
/// HTTP header).
pub fn check_token(t: &str) -> Result<(), String> {
    if !(16..=256).contains(&t.len()) {
        return Err(format!(
            "must be 16 to 256 characters, not {} (try: gossip-agent keygen)",
            t.len()
        ));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// Parses `K=V`.
pub fn parse_tag(kv: &str) -> Result<(String, String), String> {
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{kv:?} is not KEY=VALUE")),
    }
}

fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .map_err(|_| format!("{s:?} is not IP or IP:PORT"))
}

fn parse_advertise(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    let ip = s
        .parse::<IpAddr>()
        .map_err(|_| format!("{s:?} is not IP or IP:PORT"))?;
    if ip.is_unspecified() {
        return Err("cannot advertise an unspecified address (0.0.0.0 or ::)".into());
    }
    Ok((ip, None))
}

fn bad(field: &str, e: impl Into<crate::error::Reason>) -> ConfigError {
    ConfigError::field(field, e)
}

fn hostname() -> Result<String, ConfigError> {
    let h = nix::unistd::gethostname().map_err(|e| bad("node", format!("no hostname: {e}")))?;
    h.into_string()
        .map_err(|_| bad("node", "the hostname is not UTF-8; set --node"))
}

/// The DNS server's settings, checked; `None` without `--dns-addr`.
fn dns_config(
    addr: Option<&str>,
    domain: Option<&str>,
    ttl: Option<u32>,
    recursors: &[String],
) -> Result<Option<crate::dns::DnsConfig>, ConfigError> {
    use crate::dns::{DnsConfig, Recursors};
    let Some(addr) = addr.filter(|a| !a.is_empty()) else {
        for (field, given) in [
            ("dns-domain", domain.is_some()),
            ("dns-ttl", ttl.is_some()),
            ("dns-recursor", !recursors.is_empty()),
        ] {
            if given {
                return Err(ConfigError::field(field, "needs --dns-addr"));
            }
        }
        return Ok(None);
    };
    let addr = addr
        .parse::<SocketAddr>()
        .map_err(|e| ConfigError::field("dns-addr", e))?;
    let mut domain = domain.unwrap_or("gossip.").trim().to_ascii_lowercase();
    if !domain.ends_with('.') {
        domain.push('.');
    }
    let valid = domain.len() > 1
        && domain.len() <= 200
        && domain.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Err(ConfigError::field(
            "dns-domain",
            format!("{domain:?} is not a domain name (letters, digits, '-', dots)"),
        ));
    }
    let ttl = ttl.unwrap_or(0);
    if ttl > 86_400 {
        return Err(ConfigError::field("dns-ttl", "at most 86400 seconds"));
    }
    let recursors = if recursors.iter().any(|r| r == "none") {
        if recursors.len() > 1 {
            return Err(ConfigError::field(
                "dns-recursor",
                "`none` cannot be combined with resolvers",
            ));
        }
        Recursors::Refuse
    } else if recursors.is_empty() {
        Recursors::Forward(crate::dns::system_recursors(addr))
    } else {
        let mut out = Vec::new();
        for r in recursors {
            let a = r
                .parse::<SocketAddr>()
                .or_else(|_| {
                    r.parse::<std::net::IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 53))
                })
                .map_err(|_| {
                    ConfigError::field("dns-recursor", format!("{r:?} is not IP[:PORT] or none"))
                })?;
            out.push(a);
        }
        Recursors::Forward(out)
    };
    Ok(Some(DnsConfig {
        addr,
        domain,
        ttl,
        recursors,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::settings::Settings;

    fn ov() -> Settings {
        let mut s = Settings::default();
        s.member.node = Some("n1".into());
        s
    }

    fn file(text: &str) -> Settings {
        Settings::from_toml(text).unwrap()
    }

    fn resolve(file: Settings, flags: Settings) -> Result<AgentConfig, ConfigError> {
        AgentConfig::resolve_with(file, flags, Vec::new(), None)
    }

    #[test]
    fn event_size_limit_is_configurable_within_one_datagram() {
        let c = resolve(Settings::default(), ov()).unwrap();
        assert_eq!(c.core.limits.event_bytes_max, 1024);
        let file = file("event_size_max = 2000\n");
        let c = resolve(file, ov()).unwrap();
        assert_eq!(c.core.limits.event_bytes_max, 2000);
        let mut o = ov();
        o.events.event_size_max = Some(4096);
        let e = resolve(Settings::default(), o).unwrap_err();
        assert!(e.to_string().contains("event-size-max"), "{e}");
    }

    #[test]
    fn tags_size_limit_is_configurable_and_checked_against_the_tags() {
        let c = resolve(Settings::default(), ov()).unwrap();
        assert_eq!(c.core.limits.tags_bytes_max, 1024);
        let file = file("tags_size_max = 1200\n");
        let mut o = ov();
        o.cluster.tags = vec![format!("big={}", "x".repeat(1100))];
        let c = resolve(file, o.clone()).unwrap();
        assert_eq!(c.core.limits.tags_bytes_max, 1200);
        let e = resolve(Settings::default(), o).unwrap_err();
        assert!(e.to_string().contains("tag"), "{e}");
        let mut o = ov();
        o.events.tags_size_max = Some(4096);
        let e = resolve(Settings::default(), o).unwrap_err();
        assert!(e.to_string().contains("tags-size-max"), "{e}");
    }

    #[test]
    fn a_control_api_beyond_loopback_needs_a_token() {
        let mut o = ov();
        o.member.rpc_addr = Some("0.0.0.0:7373".into());
        let e = resolve(Settings::default(), o.clone()).unwrap_err();
        assert!(e.to_string().contains("rpc-addr"), "{e}");
        o.member.rpc_token = Some("short".into());
        let e = resolve(Settings::default(), o.clone()).unwrap_err();
        assert!(e.to_string().contains("rpc-token"), "{e}");
        o.member.rpc_token = Some("0123456789abcdef0123".into());
        let c = resolve(Settings::default(), o).unwrap();
        assert_eq!(c.rpc_token.as_deref(), Some("0123456789abcdef0123"));
        let file = file("rpc_token = \"has a space in it!!\"\n");
        let e = resolve(file, ov()).unwrap_err();
        assert!(e.to_string().contains("rpc-token"), "{e}");
    }

    #[test]
    fn defaults() {
        let c = resolve(Settings::default(), ov()).unwrap();
        assert_eq!(c.bind, "0.0.0.0:7946".parse().unwrap());
        assert_eq!(c.rpc_addr, "127.0.0.1:7373".parse().unwrap());
        assert_eq!(c.advertise_port, None);
        assert!(c.join.is_empty());
        assert_eq!(c.core.profile, Profile::Lan);
    }

    #[test]
    fn flags_beat_file_and_role_is_a_tag() {
        let file = file(
            "node = \"f\"\nbind = \"127.0.0.1:8000\"\nrole = \"db\"\njoin = [\"seed\"]\n[tags]\nzone = \"a\"\n",
        );
        let mut o = ov();
        o.cluster.role = Some("web".into());
        o.cluster.tags = vec!["zone=b".into(), "x=1".into()];
        let c = resolve(file, o).unwrap();
        assert_eq!(c.node, "n1");
        assert_eq!(c.bind.port(), 8000);
        assert_eq!(c.tags.get("role").unwrap(), "web");
        assert_eq!(c.tags.get("zone").unwrap(), "b");
        assert_eq!(
            c.join,
            vec![JoinTarget {
                host: "seed".into(),
                port: 7946
            }]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let mut o = ov();
        o.member.bind = Some("nonsense".into());
        let e = resolve(Settings::default(), o).unwrap_err();
        assert!(e.to_string().contains("bind"), "{e}");
        let mut o = ov();
        o.cluster.tags = vec!["novalue".into()];
        assert!(
            resolve(Settings::default(), o)
                .unwrap_err()
                .to_string()
                .contains("tag")
        );
        let mut o = ov();
        o.cluster.profile = Some("fast".into());
        assert!(
            resolve(Settings::default(), o)
                .unwrap_err()
                .to_string()
                .contains("profile")
        );
        let e = Settings::from_toml("colour = 1").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let s = file("tags_size_max = 100\nready = \"tcp://x:1\"\n[tags]\nzone = \"eu\"\n");
        assert_eq!(s.events.tags_size_max, Some(100));
        assert_eq!(s.service.ready.as_deref(), Some("tcp://x:1"));
        assert_eq!(s.cluster.tags, vec!["zone=eu".to_string()]);
    }

    #[test]
    fn join_targets() {
        let t = |s: &str| s.parse::<JoinTarget>();
        assert_eq!(
            t("dnsserver").unwrap(),
            JoinTarget {
                host: "dnsserver".into(),
                port: 7946
            }
        );
        assert_eq!(t("10.0.0.1:8000").unwrap().port, 8000);
        assert_eq!(t("::1").unwrap().host, "::1");
        assert_eq!(t("[::1]:9").unwrap().port, 9);
        assert!(t("a b").is_err());
        assert!(t("host:notaport").is_err());
    }

    #[test]
    fn overlay_survives_reload() {
        let mut o = TagOverlay::default();
        o.edit(&Tags::from([("a".into(), "1".into())]), &["b".into()]);
        let base = Tags::from([("b".into(), "x".into()), ("c".into(), "y".into())]);
        let t = o.apply(&base);
        assert_eq!(
            t,
            Tags::from([("a".into(), "1".into()), ("c".into(), "y".into())])
        );
    }
}
