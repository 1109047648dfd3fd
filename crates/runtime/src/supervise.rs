//! Service supervision: `gossip-agent [FLAGS] -- COMMAND ARGS...` runs the node's service as a
//! child and ties the node's membership to the service's life.
//!
//! 1. The service starts first, in its own process group (a terminal's Ctrl-C reaches the
//!    agent only, which decides when the service stops).
//! 2. The node joins the cluster only once the service passes its readiness check
//!    (`--ready http://HOST:PORT/PATH`, `tcp://HOST:PORT` or `cmd:SHELL COMMAND`), so peers
//!    never route to a service that cannot answer yet.
//! 3. With `--health CHECK`, the node also advertises the tag `health=passing|critical`: it
//!    joins as `critical`, and the check runs (once the node has joined, when it joins
//!    anyone; at most 10 s later) every 100 ms until it passes, then every
//!    `--health-interval`, the tag following each change. Writers that select
//!    `tag.health=passing` (as the demo's proxy does) route only to members that serve, even
//!    when serving needs the cluster first (a frontserver needs to learn its appservers).
//! 4. `SIGHUP`, `SIGUSR1`, `SIGUSR2` and `SIGWINCH` are forwarded to the service (`SIGHUP` also
//!    reloads the agent's own config file).
//! 5. On `SIGTERM` or `SIGINT` (or `gossip-agent leave`) the node leaves first, then *drains*:
//!    the service keeps running until no new connection has reached its port for the quiet
//!    period (peers have dropped it from their upstreams and their in-flight requests are
//!    done), bounded by the drain timeout. Then the service gets its stop signal, then
//!    `SIGKILL` after the stop timeout, and the agent exits with the service's exit code
//!    (128 + signal when a signal ended it).
//! 6. If the service exits by itself, the node leaves and the agent exits with its code.
//!
//! **Sidecar mode**: with `--ready` or `--health` and no command, the agent watches a service
//! it does not run (another container sharing its network namespace: `docker run --network
//! container:NAME`, Compose's `network_mode: service:NAME`). Steps 2, 3 and 5 hold as above
//! (the checks and the drain reach the service over the shared localhost); there is nothing
//! to start, forward signals to or stop, and the agent exits 0 after the drain.
//!
//! Connections are observed in `/proc/net/tcp` and `/proc/net/tcp6` (Linux): a new remote
//! address and port on the service's local port, in any state, or an established one, counts
//! as traffic. The port is the readiness check's unless `--drain-port` names another.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::error::{AgentError, ConfigError};
use crate::settings::ServiceSettings;

/// How to tell that the service is ready to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyCheck {
    /// `http://HOST:PORT/PATH`: an HTTP/1.0 GET answered with a 2xx or 3xx status.
    Http {
        /// `HOST:PORT` (IP literal or name).
        authority: String,
        /// The request path, `/` at least.
        path: String,
    },
    /// `tcp://HOST:PORT`: a TCP connection is accepted.
    Tcp(String),
    /// `cmd:COMMAND`: the command, run with `/bin/sh -c`, exits 0.
    Command(String),
}

impl ReadyCheck {
    /// The port the check talks to, if it names one.
    pub fn port(&self) -> Option<u16> {
        let authority = match self {
            Self::Http { authority, .. } | Self::Tcp(authority) => authority,
            Self::Command(_) => return None,
        };
        authority.rsplit_once(':')?.1.parse().ok()
    }
}

impl std::str::FromStr for ReadyCheck {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let authority_ok = |a: &str| {
            a.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0))
        };
        if let Some(rest) = s.strip_prefix("http://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            if !authority_ok(authority) {
                return Err(format!("{s:?}: expected http://HOST:PORT/PATH"));
            }
            if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("{s:?}: the path must not contain spaces"));
            }
            return Ok(Self::Http {
                authority: authority.to_string(),
                path: path.to_string(),
            });
        }
        if let Some(authority) = s.strip_prefix("tcp://") {
            if !authority_ok(authority) {
                return Err(format!("{s:?}: expected tcp://HOST:PORT"));
            }
            return Ok(Self::Tcp(authority.to_string()));
        }
        if let Some(cmd) = s.strip_prefix("cmd:") {
            if cmd.trim().is_empty() {
                return Err("cmd: needs a command".into());
            }
            return Ok(Self::Command(cmd.to_string()));
        }
        Err(format!(
            "{s:?}: expected http://HOST:PORT/PATH, tcp://HOST:PORT or cmd:COMMAND"
        ))
    }
}

/// The resolved supervision settings.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Readiness check; none means ready once started.
    pub ready: Option<ReadyCheck>,
    /// Give up (stop the service, exit 1) when not ready after this long.
    pub ready_timeout: Duration,
    /// How often readiness is checked.
    pub ready_interval: Duration,
    /// The check behind the `health` tag, run while the node is a member.
    pub health: Option<ReadyCheck>,
    /// How often the health check runs once it has passed.
    pub health_interval: Duration,
    /// The port whose connections tell whether peers still send traffic.
    pub drain_port: Option<u16>,
    /// Drained once no new connection came for this long.
    pub drain_quiet: Duration,
    /// Upper bound of the drain.
    pub drain_timeout: Duration,
    /// The signal that asks the service to stop.
    pub stop_signal: Signal,
    /// `SIGKILL` after this long.
    pub stop_timeout: Duration,
}

impl ServiceConfig {
    /// Checks the settings and the service's `command` (after `--`); errors name the flag.
    pub fn resolve(a: ServiceSettings, command: Vec<String>) -> Result<Self, ConfigError> {
        let bad = |field: &str, message: String| ConfigError::field(field, message);
        let sidecar = command.is_empty() && (a.ready.is_some() || a.health.is_some());
        if !sidecar && (command.is_empty() || command[0].is_empty()) {
            return Err(bad(
                "service command",
                "give a program after -- (or --ready/--health alone, as a sidecar)".into(),
            ));
        }
        let ready = a
            .ready
            .map(|r| r.parse::<ReadyCheck>().map_err(|e| bad("ready", e)))
            .transpose()?;
        let health = a
            .health
            .map(|r| r.parse::<ReadyCheck>().map_err(|e| bad("health", e)))
            .transpose()?;
        let health_interval = Duration::from_millis(a.health_interval.unwrap_or(1000));
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&health_interval) {
            return Err(bad("health-interval", "must be 100 to 3600000 ms".into()));
        }
        let secs = |field: &str, v: Option<u64>, default: u64| {
            let v = v.unwrap_or(default);
            if v == 0 || v > 3600 {
                Err(bad(field, format!("{v}: must be 1 to 3600 seconds")))
            } else {
                Ok(Duration::from_secs(v))
            }
        };
        let drain_quiet = Duration::from_millis(a.drain_quiet.unwrap_or(500));
        if drain_quiet > Duration::from_secs(60) {
            return Err(bad("drain-quiet", "must be at most 60000 ms".into()));
        }
        let stop_signal = match a.stop_signal.as_deref() {
            None => Signal::SIGTERM,
            Some(s) => gossip_handlers::parse_signal(s).map_err(|e| bad("stop-signal", e))?,
        };
        if a.drain_port == Some(0) {
            return Err(bad("drain-port", "must not be 0".into()));
        }
        Ok(Self {
            drain_port: a.drain_port.or(ready.as_ref().and_then(ReadyCheck::port)),
            command,
            ready,
            ready_timeout: secs("ready-timeout", a.ready_timeout, 60)?,
            ready_interval: Duration::from_millis(50),
            health,
            health_interval,
            drain_quiet,
            drain_timeout: secs("drain-timeout", a.drain_timeout, 5)?,
            stop_signal,
            stop_timeout: secs("stop-timeout", a.stop_timeout, 5)?,
        })
    }
}

/// Runs the service and the agent as described in the module doc. Returns the exit code the
/// process should end with (the service's).
pub async fn run(mut config: AgentConfig, service: ServiceConfig) -> Result<i32, AgentError> {
    // Install the handlers before the child exists, so no signal finds the default action.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut winch = signal(SignalKind::window_change())?;

    // The DNS server's sockets before the service: a service whose resolver is this agent
    // must find the port open from its start (a query to a closed port is lost, and nginx,
    // for one, only asks again after 5 s); its queries wait in the socket until the agent
    // runs and has joined.
    let dns_sockets = crate::agent::bind_dns(&config).await?;
    let (exit_tx, exit_rx) = watch::channel(None::<ExitStatus>);
    // In sidecar mode the sender lives as long as this function: no exit is ever reported.
    let mut _sidecar_exit = None;
    let pid = if service.command.is_empty() {
        tracing::info!(ready = ?service.ready, health = ?service.health, "watching a service this agent does not run (sidecar)");
        _sidecar_exit = Some(exit_tx);
        None
    } else {
        let mut cmd = tokio::process::Command::new(&service.command[0]);
        cmd.args(&service.command[1..]).process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            AgentError::Io(std::io::Error::new(
                e.kind(),
                format!("cannot start the service {:?}: {e}", service.command[0]),
            ))
        })?;
        let pid = Pid::from_raw(child.id().map(|p| p as i32).unwrap_or(0));
        tracing::info!(pid = pid.as_raw(), command = ?service.command, "service started");
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = exit_tx.send(Some(status.unwrap_or_else(|_| failed_status())));
        });
        Some(pid)
    };
    let exited = |rx: &watch::Receiver<Option<ExitStatus>>| *rx.borrow();

    // Readiness, while watching for an early exit or a stop request.
    let started = Instant::now();
    if let Some(check) = &service.ready {
        let mut rx = exit_rx.clone();
        loop {
            if let Some(status) = exited(&rx) {
                tracing::error!(code = code_of(status), "service exited before it was ready");
                return Ok(code_of(status));
            }
            if started.elapsed() >= service.ready_timeout {
                tracing::error!(
                    check = ?check, timeout = ?service.ready_timeout,
                    "service not ready in time; stopping it"
                );
                stop_service(pid, &service, exit_rx.clone()).await;
                return Ok(1);
            }
            if probe(
                check,
                service.ready_interval.max(Duration::from_millis(500)),
            )
            .await
            {
                break;
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = term.recv() => return Ok(stop_service(pid, &service, exit_rx.clone()).await),
                _ = int.recv() => return Ok(stop_service(pid, &service, exit_rx.clone()).await),
                () = tokio::time::sleep(service.ready_interval) => {}
            }
        }
        tracing::info!(after = ?started.elapsed(), "service ready; joining");
    }

    // The agent runs until it has left: on a signal, `leave`, or the service's own exit.
    let mut rx = exit_rx.clone();
    let service_gone: Pin<Box<dyn Future<Output = String>>> = Box::pin(async move {
        let _ = rx.wait_for(Option::is_some).await;
        "service exited".to_string()
    });
    let (commands, inbox) = crate::command::channel();
    let health_task = service.health.clone().map(|check| {
        config
            .tags
            .insert(HEALTH_TAG.to_string(), "critical".to_string());
        tokio::spawn(health_loop(
            check,
            service.health_interval,
            !config.join.is_empty(),
            commands.clone(),
        ))
    });
    let agent = crate::agent::run_bound(config, service_gone, (commands, inbox), dns_sockets);
    tokio::pin!(agent);
    let result = loop {
        let sig = tokio::select! {
            r = &mut agent => break r,
            _ = hup.recv() => Signal::SIGHUP,
            _ = usr1.recv() => Signal::SIGUSR1,
            _ = usr2.recv() => Signal::SIGUSR2,
            _ = winch.recv() => Signal::SIGWINCH,
        };
        if let Some(pid) = pid
            && exited(&exit_rx).is_none()
        {
            tracing::info!(signal = %sig, "forwarding to the service");
            let _ = kill(pid, sig);
        }
    };
    if let Some(t) = health_task {
        t.abort();
    }
    if let Err(e) = result {
        tracing::error!(error = %e, "agent failed; stopping the service");
        stop_service(pid, &service, exit_rx.clone()).await;
        return Err(e);
    }
    if let Some(status) = exited(&exit_rx) {
        return Ok(code_of(status));
    }
    let outcome = drain(
        service.drain_port,
        service.drain_quiet,
        service.drain_timeout,
    )
    .await;
    match outcome {
        Drain::Quiet(t) => tracing::info!(after = ?t, port = ?service.drain_port, "drained"),
        Drain::TimedOut => {
            tracing::warn!(timeout = ?service.drain_timeout, "still receiving traffic at the drain timeout")
        }
    }
    Ok(stop_service(pid, &service, exit_rx).await)
}

/// The tag that carries the health check's result.
pub const HEALTH_TAG: &str = "health";

/// Runs the health check and sets the `health` tag on every change, through the agent's own
/// command channel (no HTTP, so no token is needed). A change the agent refuses is logged at
/// `warn` and tried again after `interval`.
async fn health_loop(
    check: ReadyCheck,
    interval: Duration,
    joins: bool,
    commands: tokio::sync::mpsc::Sender<crate::command::Command>,
) {
    if joins {
        wait_joined(&commands, HEALTH_JOIN_WAIT).await;
    }
    let mut advertised = false;
    loop {
        let passing = probe(&check, interval.max(Duration::from_millis(500))).await;
        let mut refused = false;
        if passing != advertised {
            let state = if passing { "passing" } else { "critical" };
            let req = crate::api::TagsRequest {
                set: [(HEALTH_TAG.to_string(), state.to_string())].into(),
                delete: Vec::new(),
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            if commands
                .send(crate::command::Command::Tags(req, tx))
                .await
                .is_err()
            {
                return; // the agent has stopped
            }
            match rx.await {
                Ok(Ok(_)) => {
                    tracing::info!(health = state, "health changed");
                    advertised = passing;
                }
                Ok(Err(e)) => {
                    tracing::warn!(health = state, error = %e, "cannot advertise the health");
                    refused = true;
                }
                Err(_) => return,
            }
        }
        let pause = if advertised || refused {
            interval
        } else {
            Duration::from_millis(100)
        };
        tokio::time::sleep(pause).await;
    }
}

/// How long the first health check waits for the join.
const HEALTH_JOIN_WAIT: Duration = Duration::from_secs(10);

/// Returns once the agent has joined its cluster (it learnt the members from a seed), or
/// after `limit`, or when the agent has stopped. The first health check waits for it: a check
/// that goes through the cluster (the demo's frontserver asks an appserver, found by name
/// through the agent) cannot pass before, and its failure may be remembered (nginx keeps a
/// DNS answer, NXDOMAIN too, until its clock's next second).
async fn wait_joined(
    commands: &tokio::sync::mpsc::Sender<crate::command::Command>,
    limit: Duration,
) {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if commands
            .send(crate::command::Command::Info(tx))
            .await
            .is_err()
        {
            return;
        }
        match rx.await {
            Ok(info) if info.joined => return,
            Ok(_) => {}
            Err(_) => return,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks the service to stop, kills its process group after the timeout, and returns its code
/// (0 in sidecar mode, `pid` `None`: the service is not ours to stop).
async fn stop_service(
    pid: Option<Pid>,
    service: &ServiceConfig,
    mut exit: watch::Receiver<Option<ExitStatus>>,
) -> i32 {
    let Some(pid) = pid else {
        tracing::info!("sidecar: the service is left running");
        return 0;
    };
    if let Some(status) = *exit.borrow() {
        return code_of(status);
    }
    tracing::info!(signal = %service.stop_signal, "stopping the service");
    let _ = kill(pid, service.stop_signal);
    let waited = tokio::time::timeout(service.stop_timeout, exit.wait_for(Option::is_some))
        .await
        .is_ok();
    if !waited {
        tracing::warn!(timeout = ?service.stop_timeout, "service did not stop; killing it");
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = exit.wait_for(Option::is_some).await;
    }
    let status = exit.borrow().unwrap_or_else(failed_status);
    let code = code_of(status);
    tracing::info!(code, "service stopped");
    code
}

fn failed_status() -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(1 << 8)
}

/// The shell's convention: the exit code, or 128 + the signal that ended the process.
pub fn code_of(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Runs one readiness probe, bounded by `timeout`.
async fn probe(check: &ReadyCheck, timeout: Duration) -> bool {
    let attempt = async {
        match check {
            ReadyCheck::Tcp(a) => tokio::net::TcpStream::connect(a.as_str()).await.is_ok(),
            ReadyCheck::Http { authority, path } => http_ok(authority, path).await,
            ReadyCheck::Command(c) => tokio::process::Command::new("/bin/sh")
                .args(["-c", c])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .is_ok_and(|s| s.success()),
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(false)
}

async fn http_ok(authority: &str, path: &str) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(authority).await else {
        return false;
    };
    let req =
        format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: gossip-agent\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let mut n = 0;
    while n < head.len() {
        match s.read(&mut head[n..]).await {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    // "HTTP/1.x 2xx" or 3xx.
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.split_whitespace().nth(1).unwrap_or("");
    line.starts_with("HTTP/") && (status.starts_with('2') || status.starts_with('3'))
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// No new connection for the quiet period; the drain took this long.
    Quiet(Duration),
    /// Traffic was still arriving at the bound.
    TimedOut,
}

/// Waits until no new connection reached `port` for `quiet` (just `quiet` when the port is
/// unknown or `/proc` unreadable), at most `timeout`.
pub async fn drain(port: Option<u16>, quiet: Duration, timeout: Duration) -> Drain {
    let start = Instant::now();
    let mut seen: HashSet<SocketAddr> = HashSet::new();
    let sample = |seen: &mut HashSet<SocketAddr>| -> bool {
        let Some(port) = port else { return false };
        let mut active = false;
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            for c in parse_proc_net_tcp(&text).filter(|c| c.local_port == port) {
                if c.state == TCP_LISTEN {
                    continue;
                }
                let new = seen.insert(c.remote);
                active |= new || c.state == TCP_ESTABLISHED || c.state == TCP_SYN_RECV;
            }
        }
        active
    };
    sample(&mut seen);
    let mut quiet_since = Instant::now();
    loop {
        if quiet_since.elapsed() >= quiet {
            return Drain::Quiet(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return Drain::TimedOut;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if sample(&mut seen) {
            quiet_since = Instant::now();
        }
    }
}

const TCP_ESTABLISHED: u8 = 0x01;
const TCP_SYN_RECV: u8 = 0x03;
const TCP_LISTEN: u8 = 0x0A;

/// One socket line of `/proc/net/tcp{,6}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSocket {
    /// Local port.
    pub local_port: u16,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// Kernel TCP state (1 established, 3 syn-recv, 6 time-wait, 10 listen, ...).
    pub state: u8,
}

/// Parses the socket lines of `/proc/net/tcp` or `/proc/net/tcp6`; malformed lines are skipped.
pub fn parse_proc_net_tcp(text: &str) -> impl Iterator<Item = ProcSocket> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let mut f = line.split_whitespace();
        let _slot = f.next()?;
        let local = f.next()?;
        let remote = f.next()?;
        let state = u8::from_str_radix(f.next()?, 16).ok()?;
        let local_port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
        let (rip, rport) = remote.rsplit_once(':')?;
        let rport = u16::from_str_radix(rport, 16).ok()?;
        let ip = parse_hex_ip(rip)?;
        Some(ProcSocket {
            local_port,
            remote: SocketAddr::new(ip, rport),
            state,
        })
    })
}

/// The kernel prints addresses as 32-bit words in host byte order.
fn parse_hex_ip(s: &str) -> Option<std::net::IpAddr> {
    let words: Vec<u32> = (0..s.len() / 8)
        .map(|i| u32::from_str_radix(s.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let mut bytes = Vec::with_capacity(16);
    for w in &words {
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    match (s.len(), bytes.len()) {
        (8, 4) => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        (32, 16) => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_checks_parse_and_name_their_port() {
        let h: ReadyCheck = "http://127.0.0.1:8080/hello/x".parse().unwrap();
        assert_eq!(
            h,
            ReadyCheck::Http {
                authority: "127.0.0.1:8080".into(),
                path: "/hello/x".into()
            }
        );
        assert_eq!(h.port(), Some(8080));
        let t: ReadyCheck = "tcp://localhost:80".parse().unwrap();
        assert_eq!(t.port(), Some(80));
        let c: ReadyCheck = "cmd:test -f /tmp/x".parse().unwrap();
        assert_eq!(c, ReadyCheck::Command("test -f /tmp/x".into()));
        assert_eq!(c.port(), None);
        assert_eq!(
            "http://h:1".parse::<ReadyCheck>().unwrap(),
            ReadyCheck::Http {
                authority: "h:1".into(),
                path: "/".into()
            }
        );
        for bad in [
            "http://nohost/",
            "tcp://h:0",
            "tcp://h",
            "cmd: ",
            "ftp://x:1",
            "x",
        ] {
            assert!(bad.parse::<ReadyCheck>().is_err(), "{bad}");
        }
    }

    #[test]
    fn service_flags_are_checked() {
        let cmd = vec!["x".to_string()];
        let ok = ServiceConfig::resolve(
            ServiceSettings {
                ready: Some("tcp://127.0.0.1:80".into()),
                stop_signal: Some("quit".into()),
                ..Default::default()
            },
            vec!["nginx".into()],
        )
        .unwrap();
        assert_eq!(ok.drain_port, Some(80));
        assert_eq!(ok.stop_signal, Signal::SIGQUIT);
        let err = |a: ServiceSettings, c: &[String]| {
            ServiceConfig::resolve(a, c.to_vec())
                .unwrap_err()
                .to_string()
        };
        assert!(err(ServiceSettings::default(), &[]).contains("service command"));
        // A sidecar: checks, no command.
        let sidecar = ServiceConfig::resolve(
            ServiceSettings {
                health: Some("tcp://127.0.0.1:6379".into()),
                ..Default::default()
            },
            Vec::new(),
        )
        .unwrap();
        assert!(sidecar.command.is_empty());
        let bad = [
            (
                ServiceSettings {
                    stop_signal: Some("NOPE".into()),
                    ..Default::default()
                },
                "stop-signal",
            ),
            (
                ServiceSettings {
                    ready: Some("tcp://x".into()),
                    ..Default::default()
                },
                "ready",
            ),
            (
                ServiceSettings {
                    drain_timeout: Some(0),
                    ..Default::default()
                },
                "drain-timeout",
            ),
        ];
        for (settings, field) in bad {
            assert!(err(settings, &cmd).contains(field), "{field}");
        }
    }

    #[test]
    fn proc_net_tcp_lines_parse() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:D431 06 00000000:00000000 03:00000F9A 00000000     0        0 0 3 0000000000000000\n garbage\n";
        let s: Vec<ProcSocket> = parse_proc_net_tcp(v4).collect();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].local_port, 8080);
        assert_eq!(s[0].state, TCP_LISTEN);
        assert_eq!(s[1].remote, "127.0.0.1:54321".parse().unwrap());
        assert_eq!(s[1].state, 6);
        let v6 = "  sl  local_address                         remote_address                        st\n   0: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D431 01 0\n";
        let s: Vec<ProcSocket> = parse_proc_net_tcp(v6).collect();
        assert_eq!(s[0].remote, "[::1]:54321".parse().unwrap());
        assert_eq!(s[0].state, TCP_ESTABLISHED);
    }

    #[test]
    fn signals_parse_and_codes_follow_the_shell() {
        use gossip_handlers::parse_signal;
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGQUIT"), Ok(Signal::SIGQUIT));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("SIGNOPE").is_err());
        assert_eq!(code_of(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(code_of(ExitStatus::from_raw(15)), 143);
    }
}
