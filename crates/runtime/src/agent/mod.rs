//! The agent: drives one [`gossip_core::Node`] with a UDP socket, a timer queue, signals, a
//! join retry loop and the control API, on a single-threaded tokio runtime.
//!
//! One task owns the node. Everything else (control API requests, the join loop, the
//! supervisor) talks to it through [`Command`]s, so the core is never shared and never locked.
//! Timers are delivered in deadline order, ties in the order the core asked for them.
//!
//! - this file: set-up ([`run_bound`]: sockets, encryption, the node, writers, handlers,
//!   the control API, the join loop) and the driver's state;
//! - `event_loop`: the loop (datagrams, timers, commands, signals) and what it does with
//!   the node's outputs;
//! - `commands`: each command;
//! - `join`: joining with backoff, and the address to advertise.

mod commands;
mod event_loop;
mod join;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gossip_core::{DeadlineQueue, Node, TimerEvent};
use gossip_handlers::{Dispatcher, Snapshot, Writer};
use rand::Rng;
use rand::seq::SliceRandom;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::LeaveResponse;
use crate::command::{Command, channel};
use crate::config::{AgentConfig, TagOverlay};
use crate::control;
use crate::crypt::{Crypt, Warnings};
use crate::error::{AgentError, ConfigError};
use crate::resolve::Resolver;
use join::{advertise_ip, join_loop};

/// Runs the agent until it leaves (signal or `leave` command). Returns once the leave has
/// been acknowledged or the leave timeout passed.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    run_with(config, std::future::pending(), channel()).await
}

/// Like [`run`], taking commands from `commands` (see [`channel`]), and also leaving when
/// `stop` completes (its output is the logged reason).
pub async fn run_with(
    config: AgentConfig,
    stop: impl Future<Output = String>,
    commands: (mpsc::Sender<Command>, mpsc::Receiver<Command>),
) -> Result<(), AgentError> {
    run_bound(config, stop, commands, None).await
}

/// Binds the DNS server's sockets (`None` without one): for a supervisor that binds them
/// before the service starts (see [`run_bound`]).
pub async fn bind_dns(
    config: &AgentConfig,
) -> Result<Option<(UdpSocket, tokio::net::TcpListener)>, AgentError> {
    match &config.dns {
        Some(dns) => crate::dns::bind(dns.addr)
            .await
            .map(Some)
            .map_err(|source| AgentError::Bind {
                what: "DNS",
                addr: dns.addr,
                source,
            }),
        None => Ok(None),
    }
}

/// Like [`run_with`], with the DNS server's sockets already bound (from [`bind_dns`]): the
/// supervisor binds them before it starts the service, so a service whose resolver is this
/// agent never finds the port closed (its query waits in the socket instead).
pub async fn run_bound(
    mut config: AgentConfig,
    stop: impl Future<Output = String>,
    commands: (mpsc::Sender<Command>, mpsc::Receiver<Command>),
    dns_sockets: Option<(UdpSocket, tokio::net::TcpListener)>,
) -> Result<(), AgentError> {
    let started = Instant::now();
    raise_fd_limit();
    let crypt = match &config.keyring {
        Some(k) => {
            if k.encrypt_ignored {
                tracing::warn!(
                    "--encrypt is ignored: the keyring file exists and holds the keys in use"
                );
            }
            let c = Crypt::start(k).map_err(|e| ConfigError::field("keyring-file", e))?;
            // Sealing adds its overhead to every datagram; the core budgets for it.
            let max = config.core.packet_size_max.get() - gossip_core::crypt::OVERHEAD;
            config.core.packet_size_max =
                std::num::NonZeroUsize::new(max).expect("the packet limit exceeds the overhead");
            Some(c)
        }
        None => None,
    };
    let socket = UdpSocket::bind(config.bind)
        .await
        .map_err(|source| AgentError::Bind {
            what: "gossip",
            addr: config.bind,
            source,
        })?;
    grow_recv_buffer(&socket);
    let bound = socket.local_addr()?;
    let resolver = Arc::new(Resolver::new());
    let advertise = SocketAddr::new(
        match join::route_to_cluster(&config, &resolver).await {
            Some(ip) => ip,
            None => advertise_ip(&config),
        },
        config.advertise_port.unwrap_or(bound.port()),
    );

    // The DNS server's sockets before the control API's: a control API that accepts
    // connections means every socket of the agent is bound.
    let dns_sockets = match dns_sockets {
        Some(s) => Some(s),
        None => bind_dns(&config).await?,
    };
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AgentError::Bind {
                    what: "metrics",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.rpc_addr)
        .await
        .map_err(|source| AgentError::Bind {
            what: "control API",
            addr: config.rpc_addr,
            source,
        })?;
    let rpc_addr = listener.local_addr()?;

    let version = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    let seed = rand::make_rng::<rand::rngs::SmallRng>().next_u64();
    let node = Node::new(
        &config.node,
        advertise,
        version,
        config.tags.clone(),
        config.core.clone(),
        seed,
    )?;
    tracing::info!(
        node = %config.node, bind = %bound, advertise = %advertise, rpc = %rpc_addr,
        profile = %config.core.profile,
        encryption = if crypt.is_some() { "on" } else { "off" }, "agent started"
    );

    // Writers are built before anything starts, so a bad template is a configuration error.
    let writers = config
        .writers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            Writer::build(w)
                .map_err(|message| ConfigError::field(format!("writer #{}", i + 1), message))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let first = Arc::new(Snapshot {
        members: node.members(),
        local: node.identity().clone(),
        index: 1,
        coordinates: Default::default(),
    });
    let (snapshot_tx, snapshot_rx) = watch::channel(first);
    let dispatcher = Dispatcher::spawn(config.handlers.clone(), config.dispatch);
    for w in writers {
        tracing::info!(writer = w.name(), "writer started");
        tokio::spawn(w.run(snapshot_rx.clone(), dispatcher.stats()));
    }
    if let Some(path) = &config.snapshot {
        tokio::spawn(crate::snapshot::keep(path.clone(), snapshot_rx.clone()));
    }
    let (joined_tx, joined_rx) = watch::channel(false);
    let dns_counters = match (&config.dns, dns_sockets) {
        (Some(dns), Some(sockets)) => {
            let bound = sockets.0.local_addr()?;
            let counters = Arc::new(crate::dns::DnsCounters::default());
            tracing::info!(addr = %bound, domain = %dns.domain, recursors = ?dns.recursors, "DNS server started");
            tokio::spawn(crate::dns::serve(
                sockets,
                dns.clone(),
                snapshot_rx.clone(),
                counters.clone(),
                (!config.join.is_empty()).then(|| joined_rx.clone()),
            ));
            Some(counters)
        }
        _ => None,
    };
    drop(snapshot_rx);

    let hub = Arc::new(crate::stream::Hub::default());
    let (cmd_tx, cmd_rx) = commands;
    let (stop_tx, stop_rx) = watch::channel(false);

    let state = control::State {
        commands: cmd_tx.clone(),
        resolver: resolver.clone(),
        token: config.rpc_token.as_deref().map(Arc::from),
        hub: hub.clone(),
        members: snapshot_tx.subscribe(),
        serf_members: Arc::default(),
        activity: dispatcher.stats(),
        requests: Arc::default(),
    };
    if let Some(l) = metrics_listener {
        tracing::info!(addr = %l.local_addr()?, "metrics listener started");
        tokio::spawn(crate::metrics::serve(l, state.clone(), stop_rx.clone()));
    }
    let server = tokio::spawn(control::serve(listener, state, stop_rx));
    let mut join = config.join.clone();
    if let Some(path) = &config.snapshot {
        let mut known: Vec<SocketAddr> = crate::snapshot::read(path)
            .members
            .into_iter()
            .filter(|k| k.name != config.node && k.addr != advertise)
            .map(|k| k.addr)
            .collect();
        // A few of them, at random: enough to find the cluster, not a storm of joins.
        known.shuffle(&mut rand::make_rng::<rand::rngs::SmallRng>());
        known.truncate(crate::snapshot::REJOIN_MAX);
        if !known.is_empty() {
            tracing::info!(members = known.len(), file = %path.display(), "rejoining through the snapshot too");
        }
        join.extend(known.into_iter().map(|a| crate::config::JoinTarget {
            host: a.ip().to_string(),
            port: a.port(),
        }));
    }
    if !join.is_empty() {
        tokio::spawn(join_loop(
            join,
            config.join_backoff,
            resolver,
            cmd_tx.clone(),
            joined_rx,
        ));
    }

    let coordinates_wanted = dns_counters.is_some()
        || config
            .writers
            .iter()
            .any(|w| w.order == Some(gossip_handlers::writer::Order::Nearest));
    let mut driver = Driver {
        coordinates_wanted,
        coordinates_published: Instant::now(),
        node,
        socket,
        timers: DeadlineQueue::new(),
        epoch: Instant::now(),
        config,
        overlay: TagOverlay::default(),
        started,
        rpc_addr,
        joined_tx,
        leave_waiters: Vec::new(),
        leave_deadline: None,
        dispatcher,
        snapshot_tx,
        members_changed: false,
        commands: cmd_tx.clone(),
        queries: BTreeMap::new(),
        hub,
        dns: dns_counters,
        crypt,
        warnings: Warnings::default(),
        dropped_sealed: 0,
        rebuffs: Vec::new(),
    };
    let result = driver.run(cmd_rx, std::pin::pin!(stop)).await;
    // Let the control API answer what is in flight (a `leave` waits for its answer).
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    result
}

struct Driver {
    node: Node,
    socket: UdpSocket,
    timers: DeadlineQueue<Instant, TimerEvent>,
    /// The start of the core's clock: packets and timers are handed to it with the time
    /// since then (it times probes with it).
    epoch: Instant,
    config: AgentConfig,
    overlay: TagOverlay,
    started: Instant,
    rpc_addr: SocketAddr,
    joined_tx: watch::Sender<bool>,
    leave_waiters: Vec<oneshot::Sender<LeaveResponse>>,
    leave_deadline: Option<Instant>,
    dispatcher: Dispatcher,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    /// A member event or status change was reported since the last snapshot.
    members_changed: bool,
    /// Our own command channel (query answers from handlers come back through it).
    commands: mpsc::Sender<Command>,
    /// Our queries in flight: where their lines go, and whether acks are wanted.
    queries: BTreeMap<u64, (mpsc::UnboundedSender<crate::command::QueryProgress>, bool)>,
    /// Streams of events (Serf's RPC `stream`, `/v1/stream`).
    hub: Arc<crate::stream::Hub>,
    /// The DNS server's counters, when it runs.
    dns: Option<Arc<crate::dns::DnsCounters>>,
    /// Whether the snapshot's coordinates are refreshed between membership changes (a
    /// writer orders by distance, or the DNS server runs).
    coordinates_wanted: bool,
    /// When the snapshot's coordinates were last published.
    coordinates_published: Instant,
    /// Gossip encryption, when on.
    crypt: Option<Crypt>,
    /// Rate limits of warnings about dropped packets.
    warnings: Warnings,
    /// Encrypted packets dropped because encryption is off.
    dropped_sealed: u64,
    /// Sealed empty datagrams for senders that could not join (see [`Crypt::open`]).
    rebuffs: Vec<(SocketAddr, Vec<u8>)>,
}

/// Raises the soft limit of open files to the hard limit: handlers, writers, the control API
/// and the sockets all take descriptors, and a full table fails whatever needs one next.
/// The gossip socket's receive buffer we ask for: memberlist's (Serf's) 2 MiB. A join storm
/// brings a new member hundreds of datagrams at once (full states, every member's notice);
/// with Linux's default of 208 KiB some were dropped, and the member waited for its join's
/// retry (0.2 s, then 0.4 s) or the next push-pull.
const RECV_BUFFER: usize = 2 * 1024 * 1024;

/// Asks for [`RECV_BUFFER`] on `socket`, halving down to the default as memberlist does
/// (the kernel caps the request at `net.core.rmem_max`; what was granted is logged).
fn grow_recv_buffer(socket: &UdpSocket) {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt::RcvBuf};
    let mut want = RECV_BUFFER;
    while want >= 256 * 1024 {
        if setsockopt(socket, RcvBuf, &want).is_ok() {
            break;
        }
        want /= 2;
    }
    match getsockopt(socket, RcvBuf) {
        // Linux reports twice what was set (its bookkeeping overhead).
        Ok(granted) => tracing::debug!(asked = want, granted, "gossip receive buffer"),
        Err(e) => tracing::debug!(error = %e, "cannot read the gossip receive buffer size"),
    }
}

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open files limit"),
            Err(e) => tracing::warn!(error = %e, soft, hard, "cannot raise the open files limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open files limit"),
    }
}
