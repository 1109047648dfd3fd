//! The `gossip-agent` binary: parses the command line, runs the agent or one control API call,
//! and maps errors to exit codes (2: bad flags or config; 1: anything else).

mod cli;
mod init;
mod serf;

use std::process::ExitCode;

use clap::Parser;
use gossip_runtime::api::{
    EventRequest, EventResponse, ForceLeaveRequest, ForceLeaveResponse, InfoResponse, JoinRequest,
    JoinResponse, KeysRequest, KeysResponse, LeaveResponse, MembersResponse, QueryLine,
    QueryRequest, TagsRequest, TagsResponse, members_text,
};
use gossip_runtime::config::parse_tag;
use gossip_runtime::supervise::ServiceConfig;
use gossip_runtime::{AgentConfig, ClientError, Settings};

use cli::{Apart, Cli, Command, Format};

fn main() -> ExitCode {
    if let Some(code) = init::run_as_init() {
        return code;
    }
    init::unblock_signals();
    let argv: Vec<String> = std::env::args().collect();
    let as_serf = argv.first().is_some_and(|a| serf::invoked_as_serf(a));
    let args = if as_serf {
        match serf::translate(&argv) {
            Ok(serf::Translated::Run(a)) => a,
            Ok(serf::Translated::Print(text)) => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    } else {
        argv
    };
    let code = run(args);
    // Serf exits 1 for every error, bad flags included.
    if as_serf && code == ExitCode::from(2) {
        return ExitCode::from(1);
    }
    code
}

fn run(args: Vec<String>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line, naming the flag: clap's first line says which and why.
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: bad arguments"));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        None => run_agent(&runtime, *cli.agent.0),
        Some(Command::Agent(Apart(a))) => run_agent(&runtime, *a),
        Some(other) => match runtime.block_on(client_command(other)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code() as u8)
            }
        },
    }
}

fn run_agent(runtime: &tokio::runtime::Runtime, a: cli::AgentArgs) -> ExitCode {
    let cli::AgentArgs {
        member: Apart(member),
        cluster: Apart(cluster),
        events: Apart(events),
        service: Apart(service),
        config,
        service_command,
    } = a;
    let flags = Settings {
        member,
        cluster,
        events,
        service,
    };
    let config = match AgentConfig::resolve(flags, config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if !service_command.is_empty() || config.service.any() {
        let service = match ServiceConfig::resolve(config.service.clone(), service_command) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        init_logging(&config.log_level);
        return match runtime.block_on(gossip_runtime::supervise::run(config, service)) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code() as u8)
            }
        };
    }
    init_logging(&config.log_level);
    match runtime.block_on(gossip_runtime::agent::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// The crates of this workspace the binary links: each logs at `--log-level`, dependencies at
/// `warn` (a test checks the list against the manifests).
const LOGGING_CRATES: &[&str] = &[
    "gossip_agent",
    "gossip_runtime",
    "gossip_core",
    "gossip_handlers",
];

/// The log filter for `level`: our crates at that level, everything else at `warn`.
fn log_filter(level: &str) -> String {
    std::iter::once("warn".to_string())
        .chain(LOGGING_CRATES.iter().map(|c| format!("{c}={level}")))
        .collect::<Vec<_>>()
        .join(",")
}

fn init_logging(level: &str) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    // `RUST_LOG` (a list of TARGET=LEVEL and LEVEL) overrides --log-level. A target filter,
    // not an EnvFilter, which brings the full regex engine and its Unicode tables (together
    // with regex-lite for our own patterns: 0.3 MiB less resident per agent).
    let ours = |level: &str| log_filter(level).parse::<Targets>().ok();
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .or_else(|| ours(level))
        .or_else(|| ours("info"))
        .unwrap_or_default();
    use std::io::IsTerminal;
    // Two layers, each with its own filter: stderr at the configured level, and the lines
    // for monitors (Serf's RPC `monitor`, /v1/monitor), at info and at whatever level a
    // monitor asks for while it runs.
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .with_filter(filter);
    let monitors = gossip_runtime::logs::MonitorLayer
        .with_filter(gossip_runtime::logs::MonitorLayer::filter());
    tracing_subscriber::registry()
        .with(stderr)
        .with(monitors)
        .init();
}

/// `stream`: events as the agent sees them, as text or JSON lines.
async fn stream(a: cli::StreamArgs) -> Result<(), ClientError> {
    use gossip_runtime::watch::StreamLine;
    gossip_handlers::EventFilter::parse(&a.kind)
        .map_err(|e| ClientError::Usage(format!("--type: {e}")))?;
    let path = format!("/v1/stream?type={}&format=json", percent(&a.kind));
    let json = a.format == Format::Json;
    a.rpc
        .client()
        .get_lines(&path, |line| {
            if json {
                println!("{}", String::from_utf8_lossy(line));
                return Ok(());
            }
            let l: StreamLine =
                serde_json::from_slice(line).map_err(|e| ClientError::Protocol(e.to_string()))?;
            match &l {
                StreamLine::Join { members }
                | StreamLine::Leave { members }
                | StreamLine::Failed { members }
                | StreamLine::Update { members }
                | StreamLine::Reap { members } => {
                    for m in members {
                        let tags: Vec<String> =
                            m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        println!("{} {} {} {}", l.event(), m.name, m.addr, tags.join(","));
                    }
                }
                StreamLine::User {
                    name,
                    ltime,
                    payload,
                    ..
                } => println!("user {name} ltime={ltime} {payload}"),
                StreamLine::Query {
                    name,
                    ltime,
                    from,
                    payload,
                } => println!("query {name} ltime={ltime} from={from} {payload}"),
                StreamLine::Dropped { count } => {
                    println!("dropped {count} (this client read too slowly)")
                }
            }
            Ok(())
        })
        .await
}

/// Percent-encodes what a query string value cannot hold as is.
fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.:,*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn client_command(cmd: Command) -> Result<(), ClientError> {
    match cmd {
        Command::Agent(_) => unreachable!("handled by main"),
        Command::Members(Apart(m)) => {
            let filter = gossip_handlers::select::Selector::for_flags(
                m.status.as_deref(),
                m.name.as_deref(),
                m.role.as_deref(),
                &m.tags,
            )
            .map_err(|e| ClientError::Usage(e.to_string()))?;
            if !m.watch {
                let mut resp: MembersResponse = m.rpc.client().get("/v1/members").await?;
                resp.members.retain(|x| filter.matches(x));
                match m.format {
                    // Serf's shape: the members alone.
                    Format::Json => {
                        println!("{}", to_json(&serde_json::json!({"members": resp.members})))
                    }
                    Format::Text => print!("{}", members_text(&resp.members)),
                }
                return Ok(());
            }
            // Blocking queries: each answers at the next change of the table (or after 5
            // minutes, unchanged, and is asked again). Index 0 answers at once.
            let client = m
                .rpc
                .client()
                .with_timeout(std::time::Duration::from_secs(330));
            let mut index = 0;
            let mut shown: Option<Vec<gossip_runtime::api::MemberJson>> = None;
            loop {
                let mut resp: MembersResponse = client
                    .get(&format!("/v1/members?index={index}&wait=5m"))
                    .await?;
                index = resp.index;
                resp.members.retain(|x| filter.matches(x));
                // A change outside the filter changes nothing shown.
                if shown.as_ref() == Some(&resp.members) {
                    continue;
                }
                match m.format {
                    Format::Json => {
                        println!("{}", serde_json::to_string(&resp).unwrap_or_default())
                    }
                    Format::Text => {
                        if shown.is_some() {
                            println!();
                        }
                        print!("{}", members_text(&resp.members));
                    }
                }
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
                shown = Some(resp.members);
            }
        }
        Command::Join(Apart(j)) => {
            let resp: JoinResponse = j
                .rpc
                .client()
                .post("/v1/join", &JoinRequest { targets: j.targets })
                .await?;
            println!(
                "Successfully joined cluster by contacting {} nodes.",
                resp.joined.len()
            );
        }
        Command::Leave(Apart(r)) => {
            let resp: LeaveResponse = r.client().post("/v1/leave", &()).await?;
            if resp.acknowledged {
                println!("Graceful leave complete");
            } else {
                println!("Left, but not every member acknowledged before the timeout");
            }
        }
        Command::Tags(Apart(t)) => {
            if t.set.is_empty() && t.delete.is_empty() {
                return Err(ClientError::Usage(
                    "tags: give --set K=V or --delete K".into(),
                ));
            }
            let mut req = TagsRequest::default();
            for kv in &t.set {
                let (k, v) =
                    parse_tag(kv).map_err(|e| ClientError::Usage(format!("invalid --set: {e}")))?;
                req.set.insert(k, v);
            }
            req.delete = t.delete;
            let resp: TagsResponse = t.rpc.client().post("/v1/tags", &req).await?;
            println!("Successfully updated agent tags");
            for (k, v) in &resp.tags {
                println!("{k}={v}");
            }
        }
        Command::Event(Apart(e)) => {
            let req = EventRequest {
                name: e.name.clone(),
                payload: e.payload.unwrap_or_default(),
                coalesce: e.coalesce,
            };
            let _: EventResponse = e.rpc.client().post("/v1/event", &req).await?;
            println!(
                "Event '{}' dispatched! Coalescing enabled: {}",
                e.name, e.coalesce
            );
        }
        Command::Query(Apart(q)) => query(q).await?,
        Command::Keygen => println!("{}", gossip_runtime::crypt::keygen()),
        Command::Keys(Apart(k)) => keys(k).await?,
        Command::Stream(Apart(a)) => stream(a).await?,
        Command::Monitor(Apart(a)) => {
            let level = gossip_runtime::logs::MonitorLevel::parse(&a.log_level)
                .map_err(|e| ClientError::Usage(format!("--log-level: {e}")))?;
            let path = format!("/v1/monitor?level={level:?}");
            a.rpc
                .client()
                .get_lines(&path, |line| {
                    println!("{}", String::from_utf8_lossy(line));
                    Ok(())
                })
                .await?;
        }
        Command::ForceLeave(Apart(f)) => {
            let resp: ForceLeaveResponse = f
                .rpc
                .client()
                .post(
                    "/v1/force-leave",
                    &ForceLeaveRequest {
                        node: f.node.clone(),
                    },
                )
                .await?;
            // Like Serf: success either way; say so when there was nothing to do.
            if !resp.changed {
                eprintln!("{} is not a failed member here: nothing to do", f.node);
            }
        }
        Command::Rtt(Apart(r)) => rtt(r).await?,
        Command::Info(Apart(i)) => {
            let resp: InfoResponse = i.rpc.client().get("/v1/info").await?;
            match i.format {
                Format::Json => println!("{}", to_json(&resp)),
                Format::Text => print_info(&resp),
            }
        }
    }
    Ok(())
}

/// `rtt`: both coordinates as the local agent holds them, and the distance between them in
/// Serf's words.
async fn rtt(r: cli::RttArgs) -> Result<(), ClientError> {
    use gossip_runtime::api::CoordinateResponse;
    let client = r.rpc.client();
    let fetch = |name: Option<&str>| {
        let path = match name {
            Some(n) => format!("/v1/coordinate?node={}", percent_encode(n)),
            None => "/v1/coordinate".to_string(),
        };
        let client = &client;
        let name = name.map(str::to_string);
        async move {
            match client.get::<CoordinateResponse>(&path).await {
                Err(ClientError::Refused(msg)) if msg.contains("no coordinate") => {
                    Err(ClientError::Missing(format!(
                        "Could not find a coordinate for node {:?}",
                        name.unwrap_or_default()
                    )))
                }
                other => other,
            }
        }
    };
    let a = fetch(Some(&r.a)).await?;
    let b = fetch(r.b.as_deref()).await?;
    let ms = a.coordinate.distance_secs(&b.coordinate) * 1000.0;
    println!("Estimated {} <-> {} rtt: {ms:.3} ms", a.node, b.node);
    Ok(())
}

/// `s` for a URL's query string: unreserved characters as they are, the rest as `%XX`.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `keys`: Serf's wording, and exit 1 unless every live member succeeded.
async fn keys(k: cli::KeysArgs) -> Result<(), ClientError> {
    use gossip_runtime::crypt::KeyOp;
    // Exactly one is given (clap checks it).
    let (op, key, doing, done) = if let Some(key) = k.install {
        (
            KeyOp::Install,
            Some(key),
            "Installing key on",
            "installed key",
        )
    } else if let Some(key) = k.use_key {
        (
            KeyOp::Use,
            Some(key),
            "Changing primary key on",
            "changed primary key",
        )
    } else if let Some(key) = k.remove {
        (KeyOp::Remove, Some(key), "Removing key on", "removed key")
    } else {
        (
            KeyOp::List,
            None,
            "Gathering installed encryption keys from",
            "gathered keys",
        )
    };
    if let Some(key) = &key {
        gossip_runtime::crypt::check_key(key)
            .map_err(|e| ClientError::Usage(format!("invalid key: {e}")))?;
    }
    println!("{doing} all members...");
    let resp: KeysResponse = k
        .rpc
        .client()
        .post("/v1/keys", &KeysRequest { op, key })
        .await?;
    if !resp.errors.is_empty() {
        let ok = resp.members.saturating_sub(resp.errors.len());
        let mut msg = format!("{ok}/{} members reported success", resp.members);
        for (node, e) in &resp.errors {
            msg.push_str(&format!("\n\t{node}: {e}"));
        }
        if op == KeyOp::List {
            print_keys(&resp);
        }
        return Err(ClientError::Refused(msg));
    }
    println!("Successfully {done}!");
    if op == KeyOp::List {
        print_keys(&resp);
    }
    Ok(())
}

fn print_keys(resp: &KeysResponse) {
    println!();
    println!("{:<46}{:<12}PRIMARY ON", "KEY", "INSTALLED");
    for (key, n) in &resp.keys {
        let primary = resp.primary.values().filter(|p| *p == key).count();
        println!(
            "{key:<46}{:<12}{primary}/{}",
            format!("{n}/{}", resp.members),
            resp.members
        );
    }
}

async fn query(q: cli::QueryArgs) -> Result<(), ClientError> {
    let req = QueryRequest {
        name: q.name.clone(),
        payload: q.payload.clone().unwrap_or_default(),
        nodes: q.nodes.clone(),
        tags: q.tags.clone(),
        timeout_ms: q.timeout.map(|t| t.as_millis() as u64),
        no_ack: q.no_ack,
    };
    let text = q.format == Format::Text;
    if text {
        println!("Query '{}' dispatched", q.name);
    }
    let mut acks: Vec<String> = Vec::new();
    let mut responses: std::collections::BTreeMap<String, String> = Default::default();
    // The agent ends the stream at the deadline; allow for it plus slack.
    let limit = q.timeout.unwrap_or(std::time::Duration::from_secs(60))
        + std::time::Duration::from_secs(10);
    q.rpc
        .client()
        .with_timeout(limit)
        .post_lines("/v1/query", &req, |line: QueryLine| match line {
            QueryLine::Ack { from } => {
                if text {
                    println!("Ack from '{from}'");
                }
                acks.push(from);
            }
            QueryLine::Response { from, payload } => {
                if text {
                    println!(
                        "Response from '{from}': {}",
                        payload.strip_suffix('\n').unwrap_or(&payload)
                    );
                }
                responses.insert(from, payload);
            }
            QueryLine::Started { .. } | QueryLine::Done => {}
        })
        .await?;
    if text {
        if !q.no_ack {
            println!("Total Acks: {}", acks.len());
        }
        println!("Total Responses: {}", responses.len());
    } else {
        #[derive(serde::Serialize)]
        struct Out {
            #[serde(rename = "Acks")]
            acks: Vec<String>,
            #[serde(rename = "Responses")]
            responses: std::collections::BTreeMap<String, String>,
        }
        println!("{}", to_json(&Out { acks, responses }));
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn print_info(i: &InfoResponse) {
    let tags: Vec<String> = i
        .node
        .tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("agent:");
    println!("\tname = {}", i.node.name);
    println!("\taddr = {}", i.node.addr);
    println!("\tstatus = {}", i.node.status);
    println!("\ttags = {}", tags.join(","));
    println!("\tversion = {}", i.version);
    println!("\tprofile = {}", i.profile);
    println!("\trpc_addr = {}", i.rpc_addr);
    println!("\tuptime_secs = {}", i.uptime_secs);
    println!("\tjoined = {}", i.joined);
    println!("members:");
    for (status, n) in &i.members {
        println!("\t{status} = {n}");
    }
    let s = &i.stats;
    println!("gossip:");
    println!("\tpackets_in = {}", s.packets_in);
    println!("\tbytes_in = {}", s.bytes_in);
    println!("\tpackets_out = {}", s.packets_out);
    println!("\tbytes_out = {}", s.bytes_out);
    println!("\tdropped = {}", s.dropped());
    println!("\tdropped_oversize = {}", s.dropped_oversize);
    println!("\tdropped_foreign = {}", s.dropped_foreign);
    println!("\tdropped_version = {}", s.dropped_version);
    println!("\tdropped_malformed = {}", s.dropped_malformed);
    println!("\tdropped_protocol = {}", s.dropped_protocol);
    println!("\tdropped_misaddressed = {}", s.dropped_misaddressed);
    println!("\tdropped_buried = {}", s.dropped_buried);
    println!("\tlimited_held = {}", s.limited_held);
    println!("\tlimited_dropped = {}", s.limited_dropped);
    println!("\tchallenges = {}", s.challenges);
    println!("\tvalidated = {}", s.validated);
    println!("\tevent_clock = {}", i.event_clock);
    println!("\tquery_clock = {}", i.query_clock);
    println!("handlers:");
    println!("\tevents_dropped = {}", i.handler_events_dropped);
    let e = &i.encryption;
    println!("encryption:");
    println!("\tkeys = {}", e.keys);
    println!("\tdropped_unencrypted = {}", e.dropped_unencrypted);
    println!("\tdropped_junk = {}", e.dropped_junk);
    println!("\tdropped_wrong_key = {}", e.dropped_wrong_key);
    println!("\tdropped_bad_format = {}", e.dropped_bad_format);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `gossip-*` crates a manifest depends on (normal dependencies), by the path the
    /// workspace gives each.
    fn our_deps(
        manifest: &std::path::Path,
        workspace: &toml::Table,
    ) -> Vec<(String, std::path::PathBuf)> {
        let text = std::fs::read_to_string(manifest).unwrap();
        let t: toml::Table = toml::from_str(&text).unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let Some(deps) = t.get("dependencies").and_then(|d| d.as_table()) else {
            return Vec::new();
        };
        deps.keys()
            .filter(|k| k.starts_with("gossip-"))
            .map(|k| {
                let path = workspace[k]["path"].as_str().expect("a path dependency");
                (k.clone(), root.join(path).join("Cargo.toml"))
            })
            .collect()
    }

    #[test]
    fn every_crate_the_binary_links_follows_the_log_level() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let top: toml::Table = toml::from_str(&std::fs::read_to_string(&root).unwrap()).unwrap();
        let workspace = top["workspace"]["dependencies"].as_table().unwrap().clone();
        let mut linked = std::collections::BTreeSet::from(["gossip_agent".to_string()]);
        let mut todo = vec![root];
        while let Some(m) = todo.pop() {
            for (name, manifest) in our_deps(&m, &workspace) {
                if linked.insert(name.replace('-', "_")) {
                    todo.push(manifest);
                }
            }
        }
        let listed: std::collections::BTreeSet<String> =
            LOGGING_CRATES.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            listed, linked,
            "LOGGING_CRATES must name every linked crate"
        );
        assert_eq!(
            log_filter("debug"),
            "warn,gossip_agent=debug,gossip_runtime=debug,gossip_core=debug,gossip_handlers=debug"
        );
    }
}
