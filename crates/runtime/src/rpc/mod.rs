//! Serf's RPC protocol (msgpack over TCP, IPC version 1) on the control API's port, so that
//! Serf's CLI, its Go client and the libraries built on them talk to this agent unchanged.
//! [`crate::control::serve`] hands a connection here when its first byte opens a msgpack
//! map, as every Serf request header does.
//!
//! A connection reads one request at a time ([`frame`] finds where a value ends; [`proto`]
//! has the messages) and writes each answer, stream record, query record and log line whole
//! under one lock, so that they never interleave within a value. Streams (`stream`, `monitor`,
//! `query`'s records) each run in their own task feeding that queue; they take records from
//! bounded queues ([`crate::stream`], [`crate::logs`]), so a slow client loses records (told
//! in its stream) and never slows the agent.
//!
//! As in Serf: a command before the handshake is refused and the connection closed; with a
//! token (`--rpc-token`), every command but `handshake` and `auth` is refused until `auth`
//! gave it; an unknown command or a body that does not decode closes the connection. Query
//! IDs (for `respond`) belong to the connection whose stream delivered the query.

pub mod frame;
pub mod proto;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gossip_core::{MemberInfo, Status};
use gossip_handlers::Snapshot;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::api::{ForceLeaveRequest, KeysRequest, TagsRequest};
use crate::command::{Command, QueryProgress, QuerySpec, UserEvent};
use std::sync::atomic::Ordering;

use crate::control::{State, ask_agent, join_targets, run_keys, same_token};
use crate::crypt::KeyOp;
use frame::{FRAME_MAX, FrameError, value_len};
use proto::errors;

/// True when a connection whose first byte is `b` speaks Serf's RPC: a msgpack map (fixmap,
/// map16 or map32). HTTP starts with a method name, in ASCII.
pub fn starts_rpc(b: u8) -> bool {
    matches!(b, 0x80..=0x8f | 0xde | 0xdf)
}

/// Queries a connection may hold for `respond` at most (the oldest is forgotten first).
const PENDING_MAX: usize = 1024;

/// How long the rest of a request may take once its first byte has come.
const REQUEST_TIMEOUT: Duration = crate::control::HEADER_TIMEOUT;

/// Why a connection ends.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("closed by the client")]
    Eof,
    #[error("read: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("decode failed: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("a request took longer than {REQUEST_TIMEOUT:?} to arrive")]
    Slow,
    #[error("{0}")]
    Refused(String),
    #[error("the agent is stopping")]
    Stopped,
}

/// Reads msgpack values one by one off a connection.
struct Reader {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
}

impl Reader {
    /// The next whole value, as raw bytes.
    async fn value(&mut self) -> Result<Vec<u8>, End> {
        let mut started: Option<Instant> = None;
        loop {
            if let Some(n) = value_len(&self.buf)? {
                return Ok(self.buf.drain(..n).collect());
            }
            let mut chunk = [0u8; 4096];
            let n = if self.buf.is_empty() {
                self.rd.read(&mut chunk).await?
            } else {
                let at = *started.get_or_insert_with(Instant::now);
                let left = REQUEST_TIMEOUT.saturating_sub(at.elapsed());
                tokio::time::timeout(left, self.rd.read(&mut chunk))
                    .await
                    .map_err(|_| End::Slow)??
            };
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    End::Eof
                } else {
                    End::Io(std::io::ErrorKind::UnexpectedEof.into())
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if self.buf.len() > 2 * FRAME_MAX {
                return Err(FrameError::TooLarge.into());
            }
        }
    }

    async fn decode<T: DeserializeOwned>(&mut self) -> Result<T, End> {
        let v = self.value().await?;
        Ok(rmp_serde::from_slice(&v)?)
    }
}

/// A header and, when given, a body, encoded back to back.
fn frame(seq: u64, error: &str, body: Option<&dyn erased::Body>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let header = proto::ResponseHeader {
        seq,
        error: error.to_string(),
    };
    // Encoding into a Vec cannot fail for these types.
    let _ = rmp_serde::encode::write_named(&mut out, &header);
    if let Some(b) = body {
        b.write(&mut out);
    }
    out
}

mod erased {
    /// A body of any of the answer types.
    pub trait Body {
        fn write(&self, out: &mut Vec<u8>);
    }
    impl<T: serde::Serialize> Body for T {
        fn write(&self, out: &mut Vec<u8>) {
            let _ = rmp_serde::encode::write_named(out, self);
        }
    }
}

/// The connection's writing half: answers are written by the request's handler, stream
/// records by their tasks, one whole value at a time under the lock.
#[derive(Clone)]
struct Out(Arc<tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>>);

impl Out {
    async fn send(&self, f: Vec<u8>) -> std::io::Result<()> {
        self.0.lock().await.write_all(&f).await
    }
}

/// A query delivered on one of this connection's streams, which `respond` may answer.
#[derive(Debug, Clone, Copy)]
struct Pending {
    origin: SocketAddr,
    ltime: u64,
    deadline: Instant,
}

#[derive(Default)]
struct Queries {
    next: u64,
    pending: BTreeMap<u64, Pending>,
}

impl Queries {
    fn register(&mut self, p: Pending) -> u64 {
        let now = Instant::now();
        self.pending.retain(|_, q| q.deadline > now);
        while self.pending.len() >= PENDING_MAX {
            self.pending.pop_first();
        }
        self.next += 1;
        self.pending.insert(self.next, p);
        self.next
    }

    fn take(&mut self, id: u64) -> Option<Pending> {
        self.pending
            .remove(&id)
            .filter(|p| p.deadline > Instant::now())
    }
}

/// One connection's state.
struct Conn {
    state: State,
    peer: SocketAddr,
    out: Out,
    handshaken: bool,
    authed: bool,
    streams: HashMap<u64, JoinHandle<()>>,
    monitor: Option<(u64, JoinHandle<()>)>,
    queries: Arc<Mutex<Queries>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Serves one connection until the client closes it, breaks the protocol, or `stop` turns
/// true.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    state: State,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let out = Out(Arc::new(tokio::sync::Mutex::new(wr)));
    tracing::debug!(%peer, "Serf RPC client connected");
    let mut conn = Conn {
        authed: state.token.is_none(),
        state,
        peer,
        out,
        handshaken: false,
        streams: HashMap::new(),
        monitor: None,
        queries: Arc::default(),
        tasks: Vec::new(),
    };
    let mut reader = Reader {
        rd,
        buf: Vec::new(),
    };
    let end = loop {
        let r = tokio::select! {
            // A request being answered when the agent stops (a `leave`) is answered first.
            biased;
            r = conn.next(&mut reader) => r,
            _ = stop.wait_for(|s| *s) => Err(End::Stopped),
        };
        if let Err(e) = r {
            break e;
        }
    };
    match end {
        End::Eof | End::Stopped => tracing::debug!(%peer, "Serf RPC client gone"),
        e => tracing::warn!(%peer, error = %e, "Serf RPC connection closed"),
    }
    for (_, t) in conn.streams.drain() {
        t.abort();
    }
    if let Some((_, t)) = conn.monitor.take() {
        t.abort();
    }
    for t in conn.tasks.drain(..) {
        t.abort();
    }
    let out = conn.out.clone();
    drop(conn);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        out.0.lock().await.shutdown().await
    })
    .await;
}

/// Whether a command's request has a body after its header.
fn has_body(command: &str) -> bool {
    !matches!(command, "members" | "leave" | "list-keys" | "stats")
}

impl Conn {
    async fn send(&self, f: Vec<u8>) -> Result<(), End> {
        self.out.send(f).await.map_err(End::Io)
    }

    async fn reply(&self, seq: u64, error: &str) -> Result<(), End> {
        self.send(frame(seq, error, None)).await
    }

    async fn reply_with(&self, seq: u64, error: &str, body: &impl Serialize) -> Result<(), End> {
        self.send(frame(seq, error, Some(body))).await
    }

    /// Reads and answers one request.
    async fn next(&mut self, r: &mut Reader) -> Result<(), End> {
        let h: proto::RequestHeader = r.decode().await?;
        self.state.requests.serf_rpc.fetch_add(1, Ordering::Relaxed);
        let seq = h.seq;
        let cmd = h.command.as_str();
        if !self.handshaken && cmd != "handshake" {
            self.reply(seq, errors::HANDSHAKE_REQUIRED).await?;
            return Err(End::Refused(format!("{cmd:?} before the handshake")));
        }
        if !self.authed && cmd != "handshake" && cmd != "auth" && is_known(cmd) {
            // Serf answers without reading the body; we read it, so the connection stays
            // usable for the `auth` that should follow.
            if has_body(cmd) {
                r.value().await?;
            }
            tracing::warn!(peer = %self.peer, command = cmd, "Serf RPC command before auth refused");
            return self.reply(seq, errors::AUTH_REQUIRED).await;
        }
        match cmd {
            "handshake" => {
                let req: proto::Body = r.decode().await?;
                let e = if req.version != proto::IPC_VERSION {
                    errors::UNSUPPORTED_IPC_VERSION
                } else if self.handshaken {
                    errors::DUPLICATE_HANDSHAKE
                } else {
                    self.handshaken = true;
                    ""
                };
                self.reply(seq, e).await
            }
            "auth" => {
                let req: proto::Body = r.decode().await?;
                let ok = match &self.state.token {
                    Some(t) => same_token(req.auth_key.as_bytes(), t.as_bytes()),
                    None => req.auth_key.is_empty(),
                };
                if ok {
                    self.authed = true;
                } else {
                    tracing::warn!(peer = %self.peer, "Serf RPC auth refused: wrong token");
                }
                self.reply(seq, if ok { "" } else { errors::INVALID_AUTH_TOKEN })
                    .await
            }
            "event" => {
                let req: proto::Body = r.decode().await?;
                let ev = UserEvent {
                    name: req.name,
                    payload: req.payload,
                    coalesce: req.coalesce,
                };
                let e = error_text(ask_agent(&self.state, |tx| Command::Event(ev, tx)).await);
                self.reply(seq, &e).await
            }
            "force-leave" => {
                let req: proto::Body = r.decode().await?;
                let fl = ForceLeaveRequest { node: req.node };
                let e = error_text(ask_agent(&self.state, |tx| Command::ForceLeave(fl, tx)).await);
                self.reply(seq, &e).await
            }
            "join" => {
                let req: proto::Body = r.decode().await?;
                let (num, e) = match join_targets(&self.state, &req.existing).await {
                    Ok(j) => (j.joined.len() as i32, String::new()),
                    Err((_, e)) => (0, e),
                };
                self.reply_with(seq, &e, &proto::JoinAnswer { num }).await
            }
            "members" => {
                let snapshot = self.state.members.borrow().clone();
                let body = self.state.serf_members.body(&snapshot);
                let mut f = frame(seq, "", None);
                f.extend_from_slice(&body);
                self.send(f).await
            }
            "members-filtered" => {
                let req: proto::Body = r.decode().await?;
                let filter = match MemberFilter::new(&req) {
                    Ok(f) => f,
                    // Serf closes the connection on a bad pattern, without an answer.
                    Err(e) => return Err(End::Refused(e)),
                };
                let ms = self
                    .members()
                    .await?
                    .into_iter()
                    .filter(|m| filter.matches(m))
                    .collect();
                self.reply_with(seq, "", &proto::Members { members: ms })
                    .await
            }
            "tags" => {
                let req: proto::Body = r.decode().await?;
                // Serf deletes, then sets: a name both deleted and set stays set.
                let delete = req
                    .delete_tags
                    .into_iter()
                    .filter(|k| !req.tags.contains_key(k))
                    .collect();
                let t = TagsRequest {
                    set: req.tags,
                    delete,
                };
                let e = error_text(ask_agent(&self.state, |tx| Command::Tags(t, tx)).await);
                self.reply(seq, &e).await
            }
            "stream" => {
                let req: proto::Body = r.decode().await?;
                let Ok(filter) = gossip_handlers::EventFilter::parse(&req.r#type) else {
                    return self.reply(seq, errors::INVALID_FILTER).await;
                };
                if self.streams.contains_key(&seq) {
                    return self.reply(seq, errors::STREAM_EXISTS).await;
                }
                let sub = self.state.hub.subscribe(filter);
                // The answer is queued before the task starts: it precedes every record.
                self.reply(seq, "").await?;
                let task = tokio::spawn(forward_events(
                    sub,
                    seq,
                    self.out.clone(),
                    self.queries.clone(),
                ));
                self.streams.insert(seq, task);
                Ok(())
            }
            "monitor" => {
                let req: proto::Body = r.decode().await?;
                let level = match crate::logs::MonitorLevel::parse(&req.log_level) {
                    Ok(l) => l,
                    Err(e) => return self.reply(seq, &e).await,
                };
                if self.monitor.is_some() {
                    return self.reply(seq, errors::MONITOR_EXISTS).await;
                }
                let sub = crate::logs::hub().subscribe(level);
                self.reply(seq, "").await?;
                let task = tokio::spawn(forward_logs(sub, seq, self.out.clone()));
                self.monitor = Some((seq, task));
                Ok(())
            }
            "stop" => {
                let req: proto::Body = r.decode().await?;
                if self.monitor.as_ref().is_some_and(|(s, _)| *s == req.stop)
                    && let Some((_, t)) = self.monitor.take()
                {
                    t.abort();
                }
                if let Some(t) = self.streams.remove(&req.stop) {
                    t.abort();
                }
                self.reply(seq, "").await
            }
            "leave" => {
                tracing::info!(peer = %self.peer, "graceful leave asked through Serf's RPC");
                let e = match ask_agent(&self.state, Command::Leave).await {
                    Some(_) => "",
                    None => crate::control::SHUTTING_DOWN,
                };
                self.reply(seq, e).await
            }
            "query" => {
                let req: proto::Body = r.decode().await?;
                let spec = QuerySpec {
                    name: req.name,
                    payload: req.payload,
                    nodes: req.filter_nodes,
                    tags: req
                        .filter_tags
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect(),
                    timeout: (req.timeout > 0).then(|| Duration::from_nanos(req.timeout as u64)),
                    ack: req.request_ack,
                };
                let (tx, rx) = mpsc::unbounded_channel();
                match ask_agent(&self.state, |reply| Command::Query(spec, tx, reply)).await {
                    Some(Ok(())) => {
                        self.reply(seq, "").await?;
                        self.tasks.retain(|t| !t.is_finished());
                        self.tasks
                            .push(tokio::spawn(forward_query(rx, seq, self.out.clone())));
                        Ok(())
                    }
                    Some(Err(e)) => self.reply(seq, &e.to_string()).await,
                    None => self.reply(seq, crate::control::SHUTTING_DOWN).await,
                }
            }
            "respond" => {
                let req: proto::Body = r.decode().await?;
                let found = self
                    .queries
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(req.id);
                let Some(p) = found else {
                    return self.reply(seq, errors::INVALID_QUERY_ID).await;
                };
                let sent = self
                    .state
                    .commands
                    .send(Command::Respond {
                        origin: p.origin,
                        ltime: p.ltime,
                        answer: req.payload,
                    })
                    .await;
                let e = if sent.is_ok() {
                    ""
                } else {
                    crate::control::SHUTTING_DOWN
                };
                self.reply(seq, e).await
            }
            "install-key" | "use-key" | "remove-key" | "list-keys" => {
                let (op, key) = match cmd {
                    "list-keys" => (KeyOp::List, None),
                    c => {
                        let req: proto::Body = r.decode().await?;
                        let op = match c {
                            "install-key" => KeyOp::Install,
                            "use-key" => KeyOp::Use,
                            _ => KeyOp::Remove,
                        };
                        (op, Some(req.key))
                    }
                };
                let (e, body) = self.keys(op, key).await;
                self.reply_with(seq, &e, &body).await
            }
            "stats" => {
                let stats = ask_agent(&self.state, Command::Stats)
                    .await
                    .unwrap_or_default();
                self.reply_with(seq, "", &stats).await
            }
            "get-coordinate" => {
                let req: proto::Body = r.decode().await?;
                // Serf's answer: the cached coordinate, or Go's zero value and `Ok` false
                // when it has none for the node.
                let held = ask_agent(&self.state, |tx| {
                    Command::Coordinate(Some(req.node.clone()), tx)
                })
                .await
                .flatten();
                let body = match held {
                    Some((_, c)) => proto::CoordinateAnswer {
                        coord: proto::Coordinate {
                            vec: Some(c.vec.to_vec()),
                            error: c.error,
                            adjustment: c.adjustment,
                            height: c.height,
                        },
                        ok: true,
                    },
                    None => proto::CoordinateAnswer {
                        coord: proto::Coordinate::default(),
                        ok: false,
                    },
                };
                self.reply_with(seq, "", &body).await
            }
            other => {
                self.reply(seq, errors::UNSUPPORTED_COMMAND).await?;
                Err(End::Refused(format!("command {other:?} not recognized")))
            }
        }
    }

    /// The members, from the table the agent publishes on every change.
    async fn members(&self) -> Result<Vec<proto::Member>, End> {
        let snapshot = self.state.members.borrow().clone();
        Ok(snapshot.members.iter().map(member).collect())
    }

    /// A key command, answered as Serf's: per-member errors, counts, and an error when a
    /// member failed or did not answer.
    async fn keys(&self, op: KeyOp, key: Option<String>) -> (String, proto::KeyAnswer) {
        let list = op == KeyOp::List;
        match run_keys(&self.state, KeysRequest { op, key }).await {
            Ok(k) => {
                let body = proto::KeyAnswer {
                    num_nodes: k.members as i64,
                    num_err: k.errors.len() as i64,
                    num_resp: k.answered as i64,
                    messages: k.errors,
                    keys: if list {
                        k.keys.into_iter().map(|(k, n)| (k, n as i64)).collect()
                    } else {
                        BTreeMap::new()
                    },
                };
                let e = if body.num_err != 0 {
                    format!("{}/{} nodes reported failure", body.num_err, body.num_nodes)
                } else if body.num_resp != body.num_nodes {
                    format!(
                        "{}/{} nodes reported success",
                        body.num_resp, body.num_nodes
                    )
                } else {
                    String::new()
                };
                (e, body)
            }
            Err((_, e)) => (e, proto::KeyAnswer::default()),
        }
    }
}

/// A command's answer as Serf's `Error` field: empty on success.
fn error_text<T, E: std::fmt::Display>(answer: Option<Result<T, E>>) -> String {
    match answer {
        Some(Ok(_)) => String::new(),
        Some(Err(e)) => e.to_string(),
        None => crate::control::SHUTTING_DOWN.to_string(),
    }
}

fn is_known(cmd: &str) -> bool {
    matches!(
        cmd,
        "handshake"
            | "auth"
            | "event"
            | "force-leave"
            | "join"
            | "members"
            | "members-filtered"
            | "stream"
            | "monitor"
            | "stop"
            | "leave"
            | "install-key"
            | "use-key"
            | "remove-key"
            | "list-keys"
            | "tags"
            | "query"
            | "respond"
            | "stats"
            | "get-coordinate"
    )
}

/// Serf's protocol versions, as Serf 0.8 reports them for every member (memberlist's
/// 1..5, speaking 2; Serf's 2..5, speaking 5): clients display them, none negotiates
/// through them.
const PROTOCOL: (u8, u8, u8) = (1, 5, 2);
const DELEGATE: (u8, u8, u8) = (2, 5, 5);

/// The `members` answer's body, encoded once for each member table the agent publishes and
/// shared by every connection: a client polling `members` costs a copy, not a conversion
/// and encoding of every member.
#[derive(Default)]
pub struct MembersCache(Mutex<Option<Encoded>>);

/// A table and its encoded `members` body.
struct Encoded {
    /// Keeps the table's allocation (not its members): no other table can come to lie at
    /// the same address while it is cached.
    table: std::sync::Weak<Snapshot>,
    body: Arc<[u8]>,
}

impl MembersCache {
    /// The encoded `members` body of `snapshot` (Serf's `{"Members": [...]}`).
    pub fn body(&self, snapshot: &Arc<Snapshot>) -> Arc<[u8]> {
        let mut cached = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = &*cached
            && std::ptr::eq(e.table.as_ptr(), Arc::as_ptr(snapshot))
        {
            return e.body.clone();
        }
        let members = proto::Members {
            members: snapshot.members.iter().map(member).collect(),
        };
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for these types.
        let _ = rmp_serde::encode::write_named(&mut out, &members);
        let body: Arc<[u8]> = out.into();
        *cached = Some(Encoded {
            table: Arc::downgrade(snapshot),
            body: body.clone(),
        });
        body
    }
}

/// A member as Serf's RPC gives it.
pub fn member(m: &MemberInfo) -> proto::Member {
    let addr = m.addr();
    proto::Member {
        name: m.name().to_string(),
        addr: match addr.ip() {
            IpAddr::V4(ip) => ip.octets().to_vec(),
            IpAddr::V6(ip) => ip.octets().to_vec(),
        },
        port: addr.port(),
        tags: m.tags().clone(),
        status: match m.status {
            Status::Alive | Status::Suspect => "alive",
            Status::Failed => "failed",
            Status::Left => "left",
        }
        .to_string(),
        protocol_min: PROTOCOL.0,
        protocol_max: PROTOCOL.1,
        protocol_cur: PROTOCOL.2,
        delegate_min: DELEGATE.0,
        delegate_max: DELEGATE.1,
        delegate_cur: DELEGATE.2,
    }
}

/// `members-filtered`'s patterns, anchored as Serf anchors them.
struct MemberFilter {
    tags: Vec<(String, regex_lite::Regex)>,
    status: Option<regex_lite::Regex>,
    name: Option<regex_lite::Regex>,
}

impl MemberFilter {
    fn new(req: &proto::Body) -> Result<Self, String> {
        let re = |p: &str| {
            regex_lite::Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| format!("Failed to compile regex: {e}"))
        };
        let opt = |p: &str| (!p.is_empty()).then(|| re(p)).transpose();
        Ok(Self {
            tags: req
                .tags
                .iter()
                .map(|(k, v)| Ok((k.clone(), re(v)?)))
                .collect::<Result<_, String>>()?,
            status: opt(&req.status)?,
            name: opt(&req.name)?,
        })
    }

    fn matches(&self, m: &proto::Member) -> bool {
        self.tags
            .iter()
            .all(|(k, re)| re.is_match(m.tags.get(k).map(String::as_str).unwrap_or("")))
            && self.status.as_ref().is_none_or(|re| re.is_match(&m.status))
            && self.name.as_ref().is_none_or(|re| re.is_match(&m.name))
    }
}

/// Feeds one `stream`'s records to the connection.
async fn forward_events(
    mut sub: crate::stream::Subscription,
    seq: u64,
    out: Out,
    queries: Arc<Mutex<Queries>>,
) {
    use crate::stream::Record;
    while let Some(rec) = sub.rx.recv().await {
        let dropped = sub.take_dropped();
        if dropped > 0 {
            let d = proto::DroppedRecord {
                event: "dropped",
                count: dropped,
            };
            if out.send(frame(seq, "", Some(&d))).await.is_err() {
                return;
            }
        }
        let f = match &*rec {
            Record::Member { kind, member: m } => frame(
                seq,
                "",
                Some(&proto::MemberEventRecord {
                    event: kind.serf_name(),
                    members: vec![member(m)],
                }),
            ),
            Record::User {
                name,
                ltime,
                payload,
                coalesce,
            } => frame(
                seq,
                "",
                Some(&proto::UserEventRecord {
                    event: "user",
                    ltime: *ltime,
                    name: name.clone(),
                    payload: payload.clone(),
                    coalesce: *coalesce,
                }),
            ),
            Record::Query {
                origin,
                ltime,
                name,
                payload,
                deadline,
                ..
            } => {
                let id = queries
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .register(Pending {
                        origin: *origin,
                        ltime: *ltime,
                        deadline: *deadline,
                    });
                frame(
                    seq,
                    "",
                    Some(&proto::QueryEventRecord {
                        event: "query",
                        id,
                        ltime: *ltime,
                        name: name.clone(),
                        payload: payload.clone(),
                    }),
                )
            }
        };
        if out.send(f).await.is_err() {
            return;
        }
    }
}

/// Feeds one `monitor`'s lines to the connection.
async fn forward_logs(mut sub: crate::logs::LogSubscription, seq: u64, out: Out) {
    while let Some(line) = sub.rx.recv().await {
        let dropped = sub.take_dropped();
        if dropped > 0 {
            let note = proto::LogRecord {
                log: format!(
                    "[WARN] agent.ipc: {dropped} log lines dropped: this monitor reads too slowly"
                ),
            };
            if out.send(frame(seq, "", Some(&note))).await.is_err() {
                return;
            }
        }
        let rec = proto::LogRecord {
            log: line.to_string(),
        };
        if out.send(frame(seq, "", Some(&rec))).await.is_err() {
            return;
        }
    }
}

/// Feeds one `query`'s acks and answers to the connection, then `done`.
async fn forward_query(mut rx: mpsc::UnboundedReceiver<QueryProgress>, seq: u64, out: Out) {
    while let Some(p) = rx.recv().await {
        let (kind, from, payload) = match p {
            QueryProgress::Started { .. } => continue,
            QueryProgress::Ack { from } => ("ack", from, Vec::new()),
            QueryProgress::Response { from, payload } => ("response", from, payload),
            QueryProgress::Done => ("done", String::new(), Vec::new()),
        };
        let rec = proto::QueryRecord {
            r#type: kind,
            from,
            payload,
        };
        if out.send(frame(seq, "", Some(&rec))).await.is_err() || kind == "done" {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_testkit::members::member as info;

    fn table(names: &[&str]) -> Arc<Snapshot> {
        let members: Vec<MemberInfo> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                info(
                    n,
                    &format!("10.0.0.{}", i + 1),
                    &[("role", "app")],
                    Status::Alive,
                )
            })
            .collect();
        Arc::new(Snapshot {
            local: members[0].id.clone(),
            members,
            index: 1,
            coordinates: Default::default(),
        })
    }

    /// What `members` answered before the cache: every member converted and encoded.
    fn encoded(t: &Snapshot) -> Vec<u8> {
        let body = proto::Members {
            members: t.members.iter().map(member).collect(),
        };
        rmp_serde::encode::to_vec_named(&body).unwrap()
    }

    #[test]
    fn members_body_is_encoded_once_per_published_table() {
        let cache = MembersCache::default();
        let a = table(&["a", "b"]);
        let first = cache.body(&a);
        assert_eq!(&first[..], &encoded(&a)[..]);
        assert!(Arc::ptr_eq(&first, &cache.body(&a)), "encoded again");

        let b = table(&["a", "b", "c"]);
        let second = cache.body(&b);
        assert_eq!(&second[..], &encoded(&b)[..]);
        // A table published anew is encoded anew, even with the same members (its
        // coordinates may be all that changed).
        let a2 = table(&["a", "b"]);
        assert!(!Arc::ptr_eq(&cache.body(&a2), &second));
        // The old table can go: the cache keeps only a weak pointer to it.
        drop(a);
        assert_eq!(Arc::strong_count(&b), 1);
    }
}
