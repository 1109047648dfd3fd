//! The `serf` entry point. Invoked through a link named `serf` (`ln -s gossip-agent serf`),
//! the binary takes Serf's command line, so images and handler scripts written for Serf keep
//! working: Serf's subcommands, its single-dash flags (`-flag value`, `-flag=value`, booleans
//! as `-flag` or `-flag=false`, flags ending at the first argument that is not one), its JSON
//! config files (`-config-file`, `-config-dir`), `SERF_RPC_ADDR`, and its exit codes (1 for
//! any error, usage included). This module turns such a command line into ours.
//!
//! What Serf has and we do not yet (discovery, tags files)
//! is refused with a message naming it, never silently ignored; settings that only tune how
//! Serf itself works (retry intervals, protocol version, compression, syslog) are accepted
//! and ignored with a warning.

use std::collections::BTreeMap;
use std::path::Path;

/// What a `serf` command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Translated {
    /// Run with these arguments (ours, program name first).
    Run(Vec<String>),
    /// Print this and exit 0 (`version`, help).
    Print(String),
}

/// True when the program was invoked under the name `serf`.
pub fn invoked_as_serf(argv0: &str) -> bool {
    Path::new(argv0).file_name().and_then(|n| n.to_str()) == Some("serf")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Takes a value.
    Value,
    /// A boolean: `-flag` or `-flag=BOOL`.
    Bool,
}

#[derive(Clone, Copy)]
enum Map {
    /// Our flag of that name.
    To(&'static str),
    /// Accepted, warned about, ignored.
    Ignore,
    /// Refused: we do not have it.
    Refuse,
    /// Handled by the subcommand itself.
    Special,
}

use Kind::{Bool, Value};
use Map::{Ignore, Refuse, Special, To};

const RPC: [(&str, Kind, Map); 2] = [
    ("rpc-addr", Value, To("rpc-addr")),
    ("rpc-auth", Value, To("rpc-token")),
];

fn spec(cmd: &str) -> Option<Vec<(&'static str, Kind, Map)>> {
    let mut s: Vec<(&str, Kind, Map)> = match cmd {
        "agent" => vec![
            ("node", Value, To("node")),
            ("bind", Value, To("bind")),
            ("advertise", Value, To("advertise")),
            ("tag", Value, To("tag")),
            ("role", Value, To("role")),
            ("join", Value, To("join")),
            ("retry-join", Value, To("join")),
            ("event-handler", Value, To("event-handler")),
            ("log-level", Value, To("log-level")),
            ("profile", Value, To("profile")),
            ("config-file", Value, Special),
            ("config-dir", Value, Special),
            ("iface", Value, Refuse),
            ("discover", Value, Refuse),
            ("encrypt", Value, To("encrypt")),
            ("keyring-file", Value, To("keyring-file")),
            ("snapshot", Value, To("snapshot")),
            ("tags-file", Value, Refuse),
            ("protocol", Value, Ignore),
            ("retry-interval", Value, Ignore),
            ("retry-max", Value, Ignore),
            ("broadcast-timeout", Value, Ignore),
            ("rejoin", Bool, Ignore),
            ("replay", Bool, Ignore),
            ("disable-compression", Bool, Ignore),
            ("syslog", Bool, Ignore),
        ],
        "members" => vec![
            ("format", Value, To("format")),
            ("status", Value, To("status")),
            ("name", Value, To("name")),
            ("role", Value, To("role")),
            ("tag", Value, To("tag")),
            ("detailed", Bool, Ignore),
        ],
        "event" => vec![("coalesce", Bool, Special)],
        "query" => vec![
            ("node", Value, To("node")),
            ("tag", Value, To("tag")),
            ("timeout", Value, To("timeout")),
            ("format", Value, To("format")),
            ("no-ack", Bool, Special),
            ("relay-factor", Value, Ignore),
        ],
        "join" => vec![("replay", Bool, Ignore)],
        "leave" => vec![],
        "force-leave" => vec![("prune", Bool, Ignore)],
        "tags" => vec![("set", Value, To("set")), ("delete", Value, To("delete"))],
        "info" => vec![("format", Value, To("format"))],
        "monitor" => vec![("log-level", Value, To("log-level"))],
        "rtt" => vec![],
        "keys" => vec![
            ("install", Value, To("install")),
            ("use", Value, To("use")),
            ("remove", Value, To("remove")),
            ("list", Bool, Special),
        ],
        _ => return None,
    };
    s.extend(RPC);
    Some(s)
}

const USAGE: &str = "usage: serf [--version] [--help] <command> [<args>]

Available commands are (gossip-agent's Serf-compatible entry point):
    agent          Runs a Serf agent
    event          Send a custom event through the Serf cluster
    query          Send a query to the Serf cluster
    force-leave    Forces a member of the cluster to enter the \"left\" state
    info           Provides debugging information for operators
    join           Tell Serf agent to join cluster
    leave          Gracefully leaves the Serf cluster and shuts down
    members        Lists the members of a Serf cluster
    monitor        Stream logs from a Serf agent
    rtt            Estimates network round trip time between nodes
    tags           Modify tags of a running Serf agent
    keygen         Generates a new encryption key
    keys           Manipulate the internal encryption keyring used by Serf
    version        Prints the Serf version
";

/// The version line `serf version` prints.
pub fn version() -> String {
    format!(
        "Serf v0.8.2 (gossip-agent {})\nAgent Protocol: 5 (Understands back to: 2)\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Translates `args` (program name first) from Serf's command line to ours.
pub fn translate(args: &[String]) -> Result<Translated, String> {
    let mut it = args.iter().skip(1);
    let Some(cmd) = it.next() else {
        return Ok(Translated::Print(USAGE.into()));
    };
    let rest: Vec<String> = it.cloned().collect();
    match cmd.as_str() {
        "-h" | "-help" | "--help" | "help" => return Ok(Translated::Print(USAGE.into())),
        "version" | "-v" | "-version" | "--version" => return Ok(Translated::Print(version())),
        "keygen" => {
            return Ok(Translated::Run(vec![
                "gossip-agent".into(),
                "keygen".into(),
            ]));
        }
        "reachability" => {
            return Err(format!("serf {cmd} is not supported by gossip-agent"));
        }
        _ => {}
    }
    let Some(spec) = spec(cmd) else {
        return Err(format!("serf: unknown command {cmd:?}\n{USAGE}"));
    };
    let (flags, positional) = parse(cmd, &spec, &rest)?;
    let mut out = vec!["gossip-agent".to_string(), cmd.clone()];
    let mut scalars: BTreeMap<&str, String> = BTreeMap::new();
    let mut lists: Vec<(&str, String)> = Vec::new();
    let mut coalesce = None;
    let mut no_ack = false;
    let mut list = false;
    if cmd == "agent" {
        // Config files first, in order; flags after them win (Serf merges the same way).
        for (name, value) in &flags {
            match *name {
                "config-file" => config_file(Path::new(value), &mut scalars, &mut lists)?,
                "config-dir" => config_dir(Path::new(value), &mut scalars, &mut lists)?,
                _ => {}
            }
        }
    }
    for (name, value) in &flags {
        let (_, _, map) = spec
            .iter()
            .find(|(n, _, _)| n == name)
            .expect("parsed from spec");
        match map {
            To(ours) if is_list(cmd, ours) => lists.push((ours, value.clone())),
            To(ours) => {
                scalars.insert(ours, value.clone());
            }
            Ignore => eprintln!("serf: -{name} is accepted and ignored by gossip-agent"),
            Refuse => {
                return Err(format!(
                    "serf: -{name} is not supported by gossip-agent yet"
                ));
            }
            Special if *name == "coalesce" => coalesce = Some(parse_bool(name, value)?),
            Special if *name == "no-ack" => no_ack = parse_bool(name, value)?,
            Special if *name == "list" => list = parse_bool(name, value)?,
            Special => {}
        }
    }
    if !scalars.contains_key("rpc-addr")
        && let Ok(a) = std::env::var("SERF_RPC_ADDR")
        && !a.is_empty()
    {
        scalars.insert("rpc-addr", a);
    }
    if !scalars.contains_key("rpc-token")
        && let Ok(a) = std::env::var("SERF_RPC_AUTH")
        && !a.is_empty()
    {
        scalars.insert("rpc-token", a);
    }
    for (k, v) in scalars {
        out.push(format!("--{k}={v}"));
    }
    for (k, v) in lists {
        out.push(format!("--{k}={v}"));
    }
    if let Some(c) = coalesce {
        out.push(format!("--coalesce={c}"));
    }
    if no_ack {
        out.push("--no-ack".into());
    }
    if list {
        out.push("--list".into());
    }
    match cmd.as_str() {
        "agent" | "members" | "leave" | "info" | "tags" | "keys" | "monitor"
            if !positional.is_empty() =>
        {
            return Err(format!(
                "serf {cmd}: unexpected argument {:?}",
                positional[0]
            ));
        }
        "event" | "query" if positional.is_empty() || positional.len() > 2 => {
            return Err(format!("serf {cmd}: give a name and optionally a payload"));
        }
        "join" if positional.is_empty() => {
            return Err("serf join: at least one address to join must be specified".into());
        }
        "force-leave" if positional.len() != 1 => {
            return Err("serf force-leave: a node name must be specified".into());
        }
        "rtt" if positional.is_empty() || positional.len() > 2 => {
            return Err("One or two node names must be specified".into());
        }
        _ => {}
    }
    if !positional.is_empty() {
        out.push("--".into());
        out.extend(positional);
    }
    Ok(Translated::Run(out))
}

fn is_list(cmd: &str, ours: &str) -> bool {
    matches!(ours, "tag" | "join" | "event-handler" | "set" | "delete")
        || (cmd == "query" && ours == "node")
}

fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("serf: invalid boolean value {v:?} for -{name}")),
    }
}

/// Go's flag rules: `-f`, `--f`, `-f=v`, `-f v` (not for booleans); parsing stops at the
/// first argument that is not a flag, or after `--`.
#[allow(clippy::type_complexity)]
fn parse(
    cmd: &str,
    spec: &[(&'static str, Kind, Map)],
    args: &[String],
) -> Result<(Vec<(&'static str, String)>, Vec<String>), String> {
    let mut flags = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            break;
        };
        if body.is_empty() {
            break;
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some((sname, kind, _)) = spec.iter().find(|(n, _, _)| *n == name) else {
            return Err(format!(
                "serf {cmd}: flag provided but not defined: -{name}"
            ));
        };
        let value = match (kind, inline) {
            (Bool, Some(v)) => parse_bool(name, &v)?.to_string(),
            (Bool, None) => "true".into(),
            (Value, Some(v)) => v,
            (Value, None) => {
                i += 1;
                args.get(i)
                    .cloned()
                    .ok_or_else(|| format!("serf {cmd}: flag needs an argument: -{name}"))?
            }
        };
        flags.push((*sname, value));
        i += 1;
    }
    Ok((flags, args[i.min(args.len())..].to_vec()))
}

/// Serf's JSON agent configuration, turned into our flags.
fn config_file(
    path: &Path,
    scalars: &mut BTreeMap<&'static str, String>,
    lists: &mut Vec<(&'static str, String)>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("serf: cannot read config file {}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("serf: config file {}: {e}", path.display()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("serf: config file {}: not a JSON object", path.display()))?;
    let bad =
        |key: &str, what: &str| format!("serf: config file {}: {key}: {what}", path.display());
    let string = |key: &str, v: &serde_json::Value| -> Result<String, String> {
        match v {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            _ => Err(bad(key, "expected a string")),
        }
    };
    let strings = |key: &str, v: &serde_json::Value| -> Result<Vec<String>, String> {
        v.as_array()
            .ok_or_else(|| bad(key, "expected a list of strings"))?
            .iter()
            .map(|x| string(key, x))
            .collect()
    };
    for (key, value) in obj {
        match key.as_str() {
            "node_name" => {
                scalars.insert("node", string(key, value)?);
            }
            "role" => {
                scalars.insert("role", string(key, value)?);
            }
            "bind" => {
                scalars.insert("bind", string(key, value)?);
            }
            "advertise" => {
                scalars.insert("advertise", string(key, value)?);
            }
            "rpc_addr" => {
                scalars.insert("rpc-addr", string(key, value)?);
            }
            "rpc_auth" => {
                scalars.insert("rpc-token", string(key, value)?);
            }
            "encrypt_key" => {
                scalars.insert("encrypt", string(key, value)?);
            }
            "keyring_file" => {
                scalars.insert("keyring-file", string(key, value)?);
            }
            "snapshot_path" => {
                scalars.insert("snapshot", string(key, value)?);
            }
            "log_level" => {
                scalars.insert("log-level", string(key, value)?.to_lowercase());
            }
            "profile" => {
                scalars.insert("profile", string(key, value)?);
            }
            "user_event_size_limit" => {
                scalars.insert("event-size-max", string(key, value)?);
            }
            "tags" => {
                let tags = value
                    .as_object()
                    .ok_or_else(|| bad(key, "expected an object"))?;
                for (k, v) in tags {
                    lists.push(("tag", format!("{k}={}", string(key, v)?)));
                }
            }
            "start_join" | "retry_join" => {
                for j in strings(key, value)? {
                    lists.push(("join", j));
                }
            }
            "event_handlers" => {
                for h in strings(key, value)? {
                    lists.push(("event-handler", h));
                }
            }
            "discover" | "interface" | "mdns" | "tags_file" => {
                return Err(bad(key, "not supported by gossip-agent yet"));
            }
            key if ignored_key(key).is_some() => {
                eprintln!(
                    "serf: {key} in {} is accepted and ignored by gossip-agent: {}",
                    path.display(),
                    ignored_key(key).unwrap_or_default()
                );
            }
            other => return Err(bad(other, "unknown configuration key")),
        }
    }
    Ok(())
}

/// Why a Serf config key that only tunes Serf itself is ignored, or `None` for a key that is
/// not one of them.
fn ignored_key(key: &str) -> Option<&'static str> {
    Some(match key {
        "leave_on_terminate" | "skip_leave_on_interrupt" => {
            "it always leaves on SIGTERM and SIGINT"
        }
        "replay_on_join" => "a joiner gets the events sent after it joined, never older ones",
        "rejoin_after_leave" => "a restart always joins again, under a newer identity version",
        "retry_interval" | "retry_max_attempts" => {
            "joins are retried with backoff (200 ms doubling to retry_join_max_secs) until one answers"
        }
        "protocol" => "it speaks its own wire protocol, one version",
        "enable_compression" => "it sends compact identities instead",
        "disable_coordinates" => "network coordinates are always kept (Serf 0.8 ignores it too)",
        "enable_syslog" | "syslog_facility" => "it logs to stderr",
        "reconnect_interval" | "reconnect_timeout" => {
            "reaped failed members are tried every 5 s for another reap period (--reap-after)"
        }
        "tombstone_timeout" => "left and failed members stay --reap-after",
        "disable_name_resolution" => "join targets are always resolved",
        "broadcast_timeout" => "a leave waits for acknowledgements at most 2 s",
        "statsite_addr" | "statsd_addr" => "it has no metrics sink",
        "query_response_size_limit" | "query_size_limit" => "its limit is --event-size-max",
        _ => return None,
    })
}

fn config_dir(
    dir: &Path,
    scalars: &mut BTreeMap<&'static str, String>,
    lists: &mut Vec<(&'static str, String)>,
) -> Result<(), String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("serf: cannot read config dir {}: {e}", dir.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    for f in files {
        config_file(&f, scalars, lists)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Vec<String>, String> {
        let args: Vec<String> = std::iter::once("serf")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        match translate(&args)? {
            Translated::Run(a) => Ok(a[1..].to_vec()),
            Translated::Print(p) => Ok(vec![p]),
        }
    }

    #[test]
    fn single_dash_flags_become_ours() {
        assert_eq!(
            run(&[
                "members",
                "-format",
                "json",
                "-status=alive",
                "-tag",
                "role=web"
            ])
            .unwrap(),
            [
                "members",
                "--format=json",
                "--status=alive",
                "--tag=role=web"
            ]
        );
        assert_eq!(
            run(&["event", "-coalesce=false", "deploy", "v2"]).unwrap(),
            ["event", "--coalesce=false", "--", "deploy", "v2"]
        );
        // Flags end at the first positional argument, as in Go.
        assert_eq!(
            run(&["event", "deploy", "-coalesce=false"]).unwrap(),
            ["event", "--", "deploy", "-coalesce=false"]
        );
        assert_eq!(
            run(&[
                "agent",
                "-node=a",
                "-tag",
                "k=v",
                "-role",
                "web",
                "-retry-join",
                "seed",
                "-join=x"
            ])
            .unwrap(),
            [
                "agent",
                "--node=a",
                "--role=web",
                "--tag=k=v",
                "--join=seed",
                "--join=x"
            ]
        );
        assert_eq!(
            run(&["force-leave", "-prune", "n1"]).unwrap(),
            ["force-leave", "--", "n1"]
        );
    }

    #[test]
    fn what_we_lack_is_refused_by_name() {
        assert!(
            run(&["agent", "-tags-file", "/x"])
                .unwrap_err()
                .contains("-tags-file")
        );
        assert_eq!(run(&["keys", "-list"]).unwrap(), ["keys", "--list"]);
        assert_eq!(
            run(&["agent", "-encrypt=K", "-keyring-file", "/r.json"]).unwrap(),
            ["agent", "--encrypt=K", "--keyring-file=/r.json"]
        );
        assert_eq!(
            run(&["members", "-rpc-auth=0123456789abcdef"]).unwrap(),
            ["members", "--rpc-token=0123456789abcdef"]
        );
        assert!(
            run(&["members", "-bogus"])
                .unwrap_err()
                .contains("not defined: -bogus")
        );
        assert!(run(&["event"]).is_err());
        assert!(run(&["nosuch"]).is_err());
        assert!(run(&["version"]).unwrap()[0].starts_with("Serf v0.8.2"));
    }

    #[test]
    fn json_config_files_merge_before_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.json");
        std::fs::write(
            &f,
            r#"{"node_name": "fromfile", "tags": {"role": "db", "zone": "eu"},
                "start_join": ["seed1"], "event_handlers": ["member-join=/h.sh"],
                "leave_on_terminate": true}"#,
        )
        .unwrap();
        let out = run(&[
            "agent",
            "-config-file",
            f.to_str().unwrap(),
            "-node",
            "flag",
        ])
        .unwrap();
        assert_eq!(
            out,
            [
                "agent",
                "--node=flag",
                "--event-handler=member-join=/h.sh",
                "--join=seed1",
                "--tag=role=db",
                "--tag=zone=eu",
            ]
        );
        std::fs::write(&f, r#"{"tags_file": "x"}"#).unwrap();
        let e = run(&["agent", "-config-dir", dir.path().to_str().unwrap()]).unwrap_err();
        assert!(e.contains("tags_file"), "{e}");
    }

    /// Every flag the translation produces exists in our command line's definition (the
    /// agent's come from the settings, defined once): a renamed flag fails here, not in a
    /// user's container. Flags and the JSON config's keys alike.
    #[test]
    fn every_translation_target_is_one_of_our_flags() {
        use clap::{CommandFactory, Parser};
        let ours = crate::cli::Cli::command();
        let longs = |cmd: &str| -> Vec<String> {
            ours.find_subcommand(cmd)
                .unwrap_or_else(|| panic!("our CLI has no `{cmd}`"))
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect()
        };
        for cmd in [
            "agent",
            "members",
            "event",
            "query",
            "join",
            "leave",
            "force-leave",
            "tags",
            "info",
            "keys",
        ] {
            let have = longs(cmd);
            for (name, _, map) in spec(cmd).expect("a Serf command") {
                if let To(target) = map {
                    assert!(
                        have.iter().any(|l| l == target),
                        "serf {cmd} -{name} translates to --{target}, which `{cmd}` lacks"
                    );
                }
            }
        }
        // The JSON config: every key it maps, then the result parsed by our CLI.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("all.json");
        std::fs::write(
            &f,
            r#"{"node_name": "n", "role": "r", "bind": "127.0.0.1:7946",
                "advertise": "127.0.0.1", "rpc_addr": "127.0.0.1:7373",
                "rpc_auth": "0123456789abcdef0123", "encrypt_key": "k",
                "keyring_file": "/k", "snapshot_path": "/s", "log_level": "INFO",
                "profile": "lan", "user_event_size_limit": 512, "tags": {"a": "b"},
                "start_join": ["x"], "retry_join": ["y"], "event_handlers": ["h.sh"]}"#,
        )
        .unwrap();
        let args: Vec<String> = ["serf", "agent", "-config-file", f.to_str().unwrap()]
            .map(String::from)
            .to_vec();
        let Translated::Run(ours_args) = translate(&args).unwrap() else {
            panic!("an agent to run");
        };
        assert!(ours_args.len() > 15, "{ours_args:?}");
        if let Err(e) = crate::cli::Cli::try_parse_from(&ours_args) {
            panic!("our CLI refuses the translation {ours_args:?}: {e}");
        }
    }
}
