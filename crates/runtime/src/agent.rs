//! The agent: drives one [`gossip_core::Node`] with a UDP socket, a timer heap, signals, a
//! join retry loop and the control API, on a single-threaded tokio runtime.
//!
//! One task owns the node. Everything else (control API requests, the join loop) talks to it
//! through [`Command`]s, so the core is never shared and never locked. Timers are delivered
//! in deadline order, ties in the order the core asked for them.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gossip_core::{MemberEvent, MemberInfo, Node, Output, TimerEvent};
use gossip_handlers::{Dispatcher, Snapshot, Writer};
use rand::{Rng, RngExt};
use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::{
    EventRequest, EventResponse, ForceLeaveRequest, ForceLeaveResponse, InfoResponse, KeysRequest,
    LeaveResponse, MemberFilter, MemberJson, QueryLine, QueryRequest, TagsRequest, TagsResponse,
    default_query_timeout,
};
use crate::config::{AgentConfig, TagOverlay};
use crate::control;
use crate::crypt::{Crypt, CryptStats, KEYS_QUERY, Opened, RESERVED_PREFIX, Warnings};
use crate::error::{AgentError, ConfigError};
use crate::resolve::Resolver;

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
    Tags(TagsRequest, oneshot::Sender<Result<TagsResponse, String>>),
    /// Leave the cluster and stop; answered once the leave went out.
    Leave(oneshot::Sender<LeaveResponse>),
    /// Send a user event.
    Event(EventRequest, oneshot::Sender<Result<EventResponse, String>>),
    /// Ask a query; its lines go to the sender until `done`.
    Query(
        QueryRequest,
        mpsc::UnboundedSender<QueryLine>,
        oneshot::Sender<Result<(), String>>,
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
        oneshot::Sender<Result<(), String>>,
    ),
    /// Mark a failed member left everywhere.
    ForceLeave(
        ForceLeaveRequest,
        oneshot::Sender<Result<ForceLeaveResponse, String>>,
    ),
}

struct Due {
    at: Instant,
    seq: u64,
    timer: TimerEvent,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// The channel of [`Command`]s to the task that owns the node: the sending half goes to
/// whatever talks to the agent from inside the process (the supervisor), the receiving half
/// to [`run_with`]. The control API gets a clone of the sending half.
pub fn channel() -> (mpsc::Sender<Command>, mpsc::Receiver<Command>) {
    mpsc::channel(64)
}

/// Runs the agent until it leaves (signal or `leave` command). Returns once the leave has
/// been acknowledged or the leave timeout passed.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    run_with(config, std::future::pending(), channel()).await
}

/// Like [`run`], taking commands from `commands` (see [`channel`]), and also leaving when
/// `stop` completes (its output is the logged reason).
pub async fn run_with(
    mut config: AgentConfig,
    stop: impl Future<Output = String>,
    commands: (mpsc::Sender<Command>, mpsc::Receiver<Command>),
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
            let c = Crypt::start(k).map_err(|e| ConfigError::Field {
                field: "keyring-file".into(),
                message: e.to_string(),
            })?;
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
    let bound = socket.local_addr()?;
    let advertise = SocketAddr::new(
        advertise_ip(&config),
        config.advertise_port.unwrap_or(bound.port()),
    );

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
            Writer::build(w).map_err(|message| ConfigError::Field {
                field: format!("writer #{}", i + 1),
                message,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let first = Arc::new(Snapshot {
        members: node.members(),
        local: node.identity().clone(),
    });
    let (snapshot_tx, snapshot_rx) = watch::channel(first);
    for w in writers {
        tracing::info!(writer = w.name(), "writer started");
        tokio::spawn(w.run(snapshot_rx.clone()));
    }
    if let Some(path) = &config.snapshot {
        tokio::spawn(crate::snapshot::keep(path.clone(), snapshot_rx.clone()));
    }
    drop(snapshot_rx);
    let dispatcher = Dispatcher::spawn(config.handlers.clone(), config.dispatch);

    let resolver = Arc::new(Resolver::new());
    let (cmd_tx, cmd_rx) = commands;
    let (joined_tx, joined_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);

    let server = tokio::spawn(control::serve(
        listener,
        control::State {
            commands: cmd_tx.clone(),
            resolver: resolver.clone(),
            token: config.rpc_token.as_deref().map(Arc::from),
        },
        stop_rx,
    ));
    let mut join = config.join.clone();
    if let Some(path) = &config.snapshot {
        let mut known: Vec<SocketAddr> = crate::snapshot::read(path)
            .members
            .into_iter()
            .filter(|k| k.name != config.node && k.addr != advertise)
            .map(|k| k.addr)
            .collect();
        // A few of them, at random: enough to find the cluster, not a storm of joins.
        let mut rng = rand::make_rng::<rand::rngs::SmallRng>();
        for i in (1..known.len()).rev() {
            known.swap(i, rng.random_range(0..=i));
        }
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
            config.retry_join_max,
            resolver,
            cmd_tx.clone(),
            joined_rx,
        ));
    }

    let mut driver = Driver {
        node,
        socket,
        timers: BinaryHeap::new(),
        seq: 0,
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
        last_snapshot_check: Instant::now(),
        commands: cmd_tx.clone(),
        queries: BTreeMap::new(),
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
    timers: BinaryHeap<Due>,
    seq: u64,
    config: AgentConfig,
    overlay: TagOverlay,
    started: Instant,
    rpc_addr: SocketAddr,
    joined_tx: watch::Sender<bool>,
    leave_waiters: Vec<oneshot::Sender<LeaveResponse>>,
    leave_deadline: Option<Instant>,
    dispatcher: Dispatcher,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    /// A member event was emitted since the last snapshot.
    members_changed: bool,
    last_snapshot_check: Instant,
    /// Our own command channel (query answers from handlers come back through it).
    commands: mpsc::Sender<Command>,
    /// Our queries in flight: where their lines go, and whether acks are wanted.
    queries: BTreeMap<u64, (mpsc::UnboundedSender<QueryLine>, bool)>,
    /// Gossip encryption, when on.
    crypt: Option<Crypt>,
    /// Rate limits of warnings about dropped packets.
    warnings: Warnings,
    /// Encrypted packets dropped because encryption is off.
    dropped_sealed: u64,
    /// Sealed empty datagrams for senders that could not join (see [`Crypt::open`]).
    rebuffs: Vec<(SocketAddr, Vec<u8>)>,
}

impl Driver {
    async fn run(
        &mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stop: std::pin::Pin<&mut impl Future<Output = String>>,
    ) -> Result<(), AgentError> {
        let mut stopped = false;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut buf =
            vec![0u8; self.node.config().packet_size_max.get() + gossip_core::crypt::OVERHEAD + 1];
        self.flush().await;
        loop {
            let next = [self.timers.peek().map(|d| d.at), self.leave_deadline]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((len, from)) => self.receive(from, &buf[..len]),
                    Err(e) => tracing::debug!(error = %e, "receive failed"),
                },
                () = sleep => {
                    self.fire_timers();
                    // Suspicion changes status without an event: look now and then.
                    if self.last_snapshot_check.elapsed() >= Duration::from_millis(250) {
                        self.members_changed = true;
                    }
                }
                Some(cmd) = commands.recv() => self.command(cmd),
                _ = sigterm.recv() => self.start_leave("SIGTERM"),
                _ = sigint.recv() => self.start_leave("SIGINT"),
                _ = sighup.recv() => self.reload(),
                reason = &mut stop, if !stopped => {
                    stopped = true;
                    self.start_leave(&reason);
                }
            }
            self.flush().await;
            if self.leave_finished() {
                return Ok(());
            }
        }
    }

    fn receive(&mut self, from: SocketAddr, packet: &[u8]) {
        let opened;
        let plain = match &mut self.crypt {
            Some(c) => match c.open(from, packet, &mut self.warnings) {
                Opened::Plain(p) => {
                    opened = p;
                    &opened[..]
                }
                Opened::Dropped => return,
                Opened::Rebuff(answer) => {
                    self.rebuffs.push((from, answer));
                    return;
                }
            },
            None if crate::crypt::is_sealed(packet) => {
                self.dropped_sealed += 1;
                self.warnings.warn(
                    "encrypted",
                    from,
                    "dropped an encrypted packet: this agent has no key (start it with \
                     --encrypt or --keyring-file)",
                );
                return;
            }
            None => packet,
        };
        if let Err(reason) = self.node.handle_packet(from, plain) {
            tracing::debug!(%from, %reason, "packet dropped");
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while self.timers.peek().is_some_and(|d| d.at <= now) {
            let due = self.timers.pop().expect("peeked");
            self.node.handle_timer(due.timer);
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Members(reply) => {
                let _ = reply.send(self.node.members());
            }
            Command::Info(reply) => {
                let _ = reply.send(self.info());
            }
            Command::Join(addrs) => {
                if let Err(e) = self.node.join(&addrs) {
                    tracing::warn!(error = %e, "join refused");
                }
            }
            Command::Answered(addrs, reply) => {
                let ok = addrs
                    .into_iter()
                    .filter(|a| self.node.has_answered(*a))
                    .collect();
                let _ = reply.send(ok);
            }
            Command::Tags(req, reply) => {
                let mut overlay = self.overlay.clone();
                overlay.edit(&req.set, &req.delete);
                let tags = overlay.apply(&self.config.tags);
                let r = match self.node.set_tags(tags) {
                    Ok(changed) => {
                        self.overlay = overlay;
                        Ok(TagsResponse {
                            tags: self.node.identity().tags().clone(),
                            changed,
                        })
                    }
                    Err(e) => Err(e.to_string()),
                };
                let _ = reply.send(r);
            }
            Command::Leave(reply) => {
                self.leave_waiters.push(reply);
                self.start_leave("leave command");
            }
            Command::Query(req, lines, reply) => {
                let r = if req.name.starts_with(RESERVED_PREFIX) {
                    Err(format!(
                        "query names starting with {RESERVED_PREFIX} are reserved"
                    ))
                } else {
                    self.start_query(req, lines)
                };
                let _ = reply.send(r);
            }
            Command::Keys(req, lines, reply) => {
                let r = if self.crypt.is_none() {
                    Err(
                        "encryption is not enabled on this agent (--encrypt or --keyring-file)"
                            .to_string(),
                    )
                } else {
                    let q = QueryRequest {
                        name: format!("{KEYS_QUERY}{}", req.op.as_str()),
                        payload: req.key.unwrap_or_default(),
                        nodes: Vec::new(),
                        tags: Vec::new(),
                        timeout_ms: None,
                        no_ack: true,
                    };
                    self.start_query(q, lines)
                };
                let _ = reply.send(r);
            }
            Command::Respond {
                origin,
                ltime,
                answer,
            } => {
                if let Err(e) = self.node.respond(origin, ltime, &answer) {
                    tracing::warn!(error = %e, "query answer not sent");
                }
            }
            Command::ForceLeave(req, reply) => {
                let r = self
                    .node
                    .force_leave(&req.node)
                    .map(|changed| ForceLeaveResponse { changed })
                    .map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Command::Event(req, reply) => {
                let r = if req.name.starts_with(RESERVED_PREFIX) {
                    Err(format!(
                        "event names starting with {RESERVED_PREFIX} are reserved"
                    ))
                } else {
                    self.node
                        .user_event(&req.name, req.payload.as_bytes(), req.coalesce)
                        .map(|ltime| EventResponse { ltime })
                        .map_err(|e| e.to_string())
                };
                let _ = reply.send(r);
            }
        }
    }

    fn start_query(
        &mut self,
        req: QueryRequest,
        lines: mpsc::UnboundedSender<QueryLine>,
    ) -> Result<(), String> {
        let filter = MemberFilter::new(None, None, None, &req.tags)?;
        let members = self.node.members();
        let targets: Vec<gossip_core::NodeId> = members
            .iter()
            .filter(|m| m.status.is_live())
            .filter(|m| req.nodes.is_empty() || req.nodes.iter().any(|n| n == m.name()))
            .filter(|m| filter.matches(&MemberJson::from(*m)))
            .map(|m| m.id.clone())
            .collect();
        let live = members.iter().filter(|m| m.status.is_live()).count();
        let timeout = req
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or_else(|| default_query_timeout(live));
        if timeout.is_zero() || timeout > Duration::from_secs(3600) {
            return Err("timeout must be between 1 ms and 1 hour".into());
        }
        let id = self
            .node
            .query(&req.name, req.payload.as_bytes(), &targets, timeout)
            .map_err(|e| e.to_string())?;
        let _ = lines.send(QueryLine::Started {
            id,
            targets: targets.iter().map(|t| t.name().to_string()).collect(),
            timeout_ms: timeout.as_millis() as u64,
        });
        self.queries.insert(id, (lines, !req.no_ack));
        Ok(())
    }

    fn on_query(&mut self, q: gossip_core::QueryOutput) {
        use gossip_core::QueryOutput;
        match q {
            QueryOutput::Incoming(q) if q.name.starts_with(RESERVED_PREFIX) => {
                let answer = match (crate::crypt::key_op(&q.name), &mut self.crypt) {
                    (Some(Some(op)), Some(c)) => {
                        tracing::info!(op = op.as_str(), from = %q.origin_name, "key command");
                        c.apply(op, &q.payload)
                    }
                    (Some(Some(_)), None) => {
                        Err("encryption is not enabled on this agent".to_string())
                    }
                    _ => Err(format!("unknown internal query {:?}", q.name)),
                };
                let answer = match answer {
                    Ok(a) => a,
                    Err(e) => format!("error: {e}"),
                };
                if let Err(e) = self.node.respond(q.origin, q.ltime, answer.as_bytes()) {
                    tracing::warn!(error = %e, "key command answer not sent");
                }
            }
            QueryOutput::Incoming(q) => {
                tracing::info!(query = %q.name, from = %q.origin_name, ltime = q.ltime, "query");
                let (reply, rx) = gossip_handlers::QueryReply::new();
                self.dispatcher.user_event(
                    gossip_handlers::Event::Query {
                        name: q.name,
                        ltime: q.ltime,
                        payload: q.payload,
                        reply,
                    },
                    self.node.identity().clone(),
                );
                let commands = self.commands.clone();
                let (origin, ltime) = (q.origin, q.ltime);
                tokio::spawn(async move {
                    // No answer when no handler matched or none exited 0.
                    if let Ok(answer) = rx.await {
                        let _ = commands
                            .send(Command::Respond {
                                origin,
                                ltime,
                                answer,
                            })
                            .await;
                    }
                });
            }
            QueryOutput::Ack { id, from } => {
                if let Some((tx, true)) = self.queries.get(&id) {
                    let _ = tx.send(QueryLine::Ack { from });
                }
            }
            QueryOutput::Response { id, from, payload } => {
                if let Some((tx, _)) = self.queries.get(&id) {
                    let payload = String::from_utf8_lossy(&payload).into_owned();
                    let _ = tx.send(QueryLine::Response { from, payload });
                }
            }
            QueryOutput::Done { id } => {
                if let Some((tx, _)) = self.queries.remove(&id) {
                    let _ = tx.send(QueryLine::Done);
                }
            }
        }
    }

    fn info(&self) -> InfoResponse {
        let members = self.node.members();
        let mut counts = BTreeMap::new();
        for m in &members {
            *counts.entry(m.status.as_str().to_string()).or_insert(0) += 1;
        }
        InfoResponse {
            node: MemberJson::from(&self.node.local()),
            version: self.node.identity().version(),
            profile: self.config.core.profile.to_string(),
            rpc_addr: self.rpc_addr.to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            joined: self.node.is_joined(),
            members: counts,
            stats: self.node.stats(),
            encryption: match &self.crypt {
                Some(c) => c.stats(),
                None => CryptStats {
                    dropped_wrong_key: self.dropped_sealed,
                    ..CryptStats::default()
                },
            },
            handler_events_dropped: self.dispatcher.dropped(),
            event_clock: self.node.clocks().event,
            query_clock: self.node.clocks().query,
        }
    }

    /// Hands writers the current member set, when it differs from the last one in any member's
    /// identity or status.
    fn publish_snapshot(&self) {
        let members = self.node.members();
        let local = self.node.identity().clone();
        self.snapshot_tx.send_if_modified(|cur| {
            let same = cur.local == local
                && cur.members.len() == members.len()
                && cur.members.iter().zip(&members).all(|(a, b)| a == b);
            if !same {
                *cur = Arc::new(Snapshot { members, local });
            }
            !same
        });
    }

    fn start_leave(&mut self, why: &str) {
        if self.node.has_left() {
            return;
        }
        tracing::info!(reason = why, "leaving the cluster");
        if let Err(e) = self.node.leave() {
            tracing::warn!(error = %e, "leave failed");
        }
        self.leave_deadline = Some(Instant::now() + self.config.leave_timeout);
    }

    /// True once a leave has been acknowledged by every notified member, or timed out.
    fn leave_finished(&mut self) -> bool {
        let Some(deadline) = self.leave_deadline else {
            return false;
        };
        let acknowledged = self.node.notices_settled();
        if !acknowledged && Instant::now() < deadline {
            return false;
        }
        if acknowledged {
            tracing::info!("leave acknowledged; exiting");
        } else {
            tracing::warn!("leave not acknowledged by every member before the timeout; exiting");
        }
        for w in self.leave_waiters.drain(..) {
            let _ = w.send(LeaveResponse { acknowledged });
        }
        true
    }

    fn reload(&mut self) {
        let Some(path) = self.config.config_file.clone() else {
            tracing::info!("SIGHUP: no config file to reload");
            return;
        };
        match AgentConfig::resolve(self.config.overrides.clone()) {
            Ok(new) => {
                self.dispatcher.set_handlers(new.handlers.clone());
                let tags = self.overlay.apply(&new.tags);
                self.config.tags = new.tags;
                match self.node.set_tags(tags) {
                    Ok(changed) => {
                        tracing::info!(file = %path.display(), tags_changed = changed, "config reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reloaded tags refused; keeping the old ones")
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reload failed; keeping the running config"),
        }
    }

    async fn flush(&mut self) {
        for (to, data) in std::mem::take(&mut self.rebuffs) {
            let _ = self.socket.send_to(&data, to).await;
        }
        while let Some(out) = self.node.poll() {
            match out {
                Output::Transmit { to, data } => {
                    let data = match &mut self.crypt {
                        Some(c) => c.seal(to, &data),
                        None => data,
                    };
                    if let Err(e) = self.socket.send_to(&data, to).await {
                        tracing::debug!(%to, error = %e, "send failed");
                    }
                }
                Output::Timer { after, timer } => {
                    self.seq += 1;
                    self.timers.push(Due {
                        at: Instant::now() + after,
                        seq: self.seq,
                        timer,
                    });
                }
                Output::Event(e) => {
                    log_event(&e);
                    self.dispatcher
                        .member_event(e, self.node.identity().clone());
                    self.members_changed = true;
                }
                Output::Query(q) => self.on_query(q),
                Output::User(e) => {
                    tracing::info!(event = %e.name, ltime = e.ltime, bytes = e.payload.len(), "user event");
                    self.dispatcher.user_event(
                        gossip_handlers::Event::User {
                            name: e.name,
                            ltime: e.ltime,
                            payload: e.payload,
                            coalesce: e.coalesce,
                        },
                        self.node.identity().clone(),
                    );
                }
            }
        }
        if self.members_changed {
            self.members_changed = false;
            self.last_snapshot_check = Instant::now();
            self.publish_snapshot();
        }
        self.joined_tx.send_if_modified(|j| {
            let now = self.node.is_joined();
            std::mem::replace(j, now) != now
        });
    }
}

fn log_event(e: &MemberEvent) {
    let tags: Vec<String> = e
        .member
        .tags()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    tracing::info!(
        event = e.kind.serf_name(),
        member = e.member.name(),
        addr = %e.member.addr(),
        tags = %tags.join(","),
        "member event"
    );
}

/// Joins with backoff (200 ms doubling up to `max`), resolving the targets again each time,
/// until some member has accepted this node.
async fn join_loop(
    targets: Vec<crate::config::JoinTarget>,
    max: Duration,
    resolver: Arc<Resolver>,
    commands: mpsc::Sender<Command>,
    mut joined: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if *joined.borrow() {
            return;
        }
        let addrs = resolver.resolve_all(&targets).await;
        if !addrs.is_empty() {
            tracing::debug!(?addrs, "joining");
            if commands.send(Command::Join(addrs)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            r = joined.wait_for(|j| *j) => {
                if r.is_ok() {
                    tracing::info!("joined the cluster");
                }
                return;
            }
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(max);
    }
}

/// Raises the soft limit of open files to the hard limit: handlers, writers, the control API
/// and the sockets all take descriptors, and a full table fails whatever needs one next.
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

/// The advertised IP: `--advertise`, else the bind IP unless unspecified, else the first
/// non-loopback IPv4 address of an interface that is up, else 127.0.0.1.
fn advertise_ip(config: &AgentConfig) -> IpAddr {
    if let Some(ip) = config.advertise_ip {
        return ip;
    }
    if !config.bind.ip().is_unspecified() {
        return config.bind.ip();
    }
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let up = a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
            if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in())
                && up
                && !sin.ip().is_loopback()
            {
                return IpAddr::V4(sin.ip());
            }
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}
