//! The control API server on `--rpc-addr`: JSON over HTTP/1.1 (see [`crate::api`] for the
//! routes) and, on the same port, Serf's msgpack RPC ([`crate::rpc`]), told apart by a
//! connection's first byte. Each request becomes a [`Command`] to the task that owns the node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State as AxState};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::{
    ErrorResponse, EventRequest, ForceLeaveRequest, JoinRequest, JoinResponse, KeysRequest,
    KeysResponse, MemberJson, MembersResponse, QueryLine, QueryRequest, TagsRequest,
};
use crate::command::{Command, QueryProgress, QuerySpec, UserEvent};
use crate::config::JoinTarget;
use crate::crypt::KeyOp;
use crate::resolve::Resolver;

/// What the handlers share.
#[derive(Clone)]
pub struct State {
    /// Channel to the task that owns the node.
    pub commands: mpsc::Sender<Command>,
    /// Resolver for `join` targets.
    pub resolver: Arc<Resolver>,
    /// When set, every request must carry `Authorization: Bearer TOKEN` (Serf's RPC: `auth`
    /// with it).
    pub token: Option<Arc<str>>,
    /// The fan-out of events to streams.
    pub hub: Arc<crate::stream::Hub>,
    /// The member table as the agent last published it (on every change): Serf's RPC
    /// `members` reads it without a round trip to the task that owns the node.
    pub members: watch::Receiver<Arc<gossip_handlers::Snapshot>>,
    /// Serf's RPC `members` answer for the table in `members`, encoded once.
    pub serf_members: Arc<crate::rpc::MembersCache>,
    /// What handlers and writers did, for `/metrics`.
    pub activity: Arc<gossip_handlers::stats::Stats>,
    /// Requests served, for `/metrics`.
    pub requests: Arc<Requests>,
}

/// Requests the control API's port served, by protocol.
#[derive(Debug, Default)]
pub struct Requests {
    /// HTTP requests (our API, the page, `/metrics`), refused ones included.
    pub http: std::sync::atomic::AtomicU64,
    /// Serf RPC requests (each command, `handshake` and `auth` included).
    pub serf_rpc: std::sync::atomic::AtomicU64,
}

/// Refuses (401, logged with the peer's address) a request without the configured token.
async fn authorize(
    AxState(s): AxState<State>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    s.requests
        .http
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same_token(g.as_bytes(), token.as_bytes())) {
            tracing::warn!(%peer, path = %req.uri().path(),
                reason = if given.is_some() { "wrong token" } else { "no token" },
                "control API request refused");
            return error(
                StatusCode::UNAUTHORIZED,
                "this agent's control API needs its token (--rpc-token or GOSSIP_RPC_TOKEN)",
            );
        }
    }
    next.run(req).await
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guess was right.
pub(crate) fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Most connections the control API serves at once: past it, a new connection is closed at
/// once (idle ones cannot hold the agent's file descriptors, which handlers need).
pub const CONNECTIONS_MAX: usize = 256;

/// How long a connection may take to send a request's headers, and how long a kept-alive
/// connection may stay idle between requests, before it is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The routes.
fn router(state: State) -> Router {
    Router::new()
        .route("/v1/members", get(members))
        .route("/v1/info", get(info))
        .route("/v1/join", post(join))
        .route("/v1/tags", post(tags))
        .route("/v1/leave", post(leave))
        .route("/v1/event", post(event))
        .route("/v1/force-leave", post(force_leave))
        .route("/v1/query", post(query))
        .route("/v1/keys", post(keys))
        .route("/v1/coordinate", get(coordinate))
        .route("/v1/stream", get(crate::watch::stream))
        .route("/v1/monitor", get(crate::watch::monitor))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/ui/", get(crate::ui::page))
        .route("/ui", get(crate::ui::to_page))
        .route("/", get(crate::ui::to_page))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// Serves until `stop` turns true, then finishes the requests in flight (for at most a
/// second). At most [`CONNECTIONS_MAX`] connections at once; a request's headers (the first,
/// or the next on a kept-alive connection) must arrive within [`HEADER_TIMEOUT`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: State,
    mut stop: watch::Receiver<bool>,
) {
    let rpc_state = state.clone();
    let app = router(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut refused_logged: Option<Instant> = None;
    // Every connection task holds a clone; at shutdown, `recv` ends once all are gone.
    let (live_tx, mut live_rx) = mpsc::channel::<()>(1);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, most likely: wait a little rather than spin.
                    tracing::warn!(error = %e, "control API cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = async { let _ = stop.wait_for(|s| *s).await; } => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if refused_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                refused_logged = Some(Instant::now());
                tracing::warn!(%peer, max = CONNECTIONS_MAX, "control API connection refused: too many open");
            }
            continue;
        };
        let app = app.clone();
        let state = rpc_state.clone();
        let graceful_watch = graceful.watcher();
        let mut rpc_stop = stop.clone();
        let live = live_tx.clone();
        tokio::spawn(async move {
            // Serf's RPC opens with a msgpack map (its request header); HTTP with a method
            // name. A connection that sends nothing in time is closed.
            let mut first = [0u8; 1];
            let peeked = tokio::select! {
                r = tokio::time::timeout(HEADER_TIMEOUT, stream.peek(&mut first)) => r,
                _ = rpc_stop.wait_for(|s| *s) => return,
            };
            match peeked {
                Ok(Ok(1)) if crate::rpc::starts_rpc(first[0]) => {
                    crate::rpc::serve(stream, peer, state, rpc_stop).await;
                }
                Ok(Ok(1)) => serve_http(stream, peer, app, graceful_watch).await,
                _ => {}
            }
            drop(slot);
            drop(live);
        });
    }
    drop(live_tx);
    // HTTP requests in flight finish, RPC connections write what they answered (a `leave`
    // waits for its answer), for at most a second.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tokio::join!(graceful.shutdown(), live_rx.recv());
    })
    .await;
}

/// One HTTP connection (of the control API, or of the metrics listener).
pub(crate) async fn serve_http(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    graceful: hyper_util::server::graceful::Watcher,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let service = hyper_util::service::TowerToHyperService::new(
        app.layer(axum::Extension(ConnectInfo(peer))),
    );
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = graceful.watch(conn).await {
        tracing::debug!(%peer, error = %e, "control API connection ended");
    }
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(ErrorResponse { error: msg.into() })).into_response()
}

/// What the control API says when the agent is gone.
pub(crate) const SHUTTING_DOWN: &str = "the agent is shutting down";

/// Sends a command and waits for its answer; `None` when the agent is gone.
pub(crate) async fn ask_agent<T>(
    s: &State,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    s.commands.send(make(tx)).await.ok()?;
    rx.await.ok()
}

async fn ask<T>(
    s: &State,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, Response> {
    ask_agent(s, make)
        .await
        .ok_or_else(|| error(StatusCode::SERVICE_UNAVAILABLE, SHUTTING_DOWN))
}

/// The query of `GET /v1/members`: Consul's blocking query.
#[derive(Debug, serde::Deserialize)]
struct MembersQuery {
    /// Answer once the member table's index is past this one.
    index: Option<u64>,
    /// How long to wait for that (`30s`, `500ms`, `2m`; a bare number is seconds).
    wait: Option<String>,
}

/// The header that carries the member table's index.
pub const INDEX_HEADER: &str = "x-gossip-index";
/// The longest and the default wait of a blocking query (Consul's).
const WAIT_MAX: Duration = Duration::from_secs(600);
const WAIT_DEFAULT: Duration = Duration::from_secs(300);

/// `5s`, `250ms`, `2m`, or seconds.
fn parse_wait(w: &str) -> Option<Duration> {
    let (n, unit) = match w.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => w.split_at(i),
        None => (w, "s"),
    };
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        _ => None,
    }
}

async fn members(
    AxState(s): AxState<State>,
    axum::extract::Query(q): axum::extract::Query<MembersQuery>,
) -> Response {
    let Some(seen) = q.index else {
        // No index: now, from the node itself (the published table may be a tick behind).
        let index = s.members.borrow().index;
        return match ask(&s, Command::Members).await {
            Ok(ms) => with_index(
                MembersResponse {
                    members: ms.iter().map(MemberJson::from).collect(),
                    index,
                },
                index,
            ),
            Err(r) => r,
        };
    };
    let wait = match q.wait.as_deref().map(parse_wait) {
        None => WAIT_DEFAULT,
        Some(Some(w)) => w.min(WAIT_MAX),
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "wait: expected a duration such as 30s, 500ms or 2m",
            );
        }
    };
    // Blocking: the table as published, once its index is past `seen` or the wait is over.
    let mut rx = s.members.clone();
    let deadline = tokio::time::Instant::now() + wait;
    let snap = loop {
        let snap = rx.borrow_and_update().clone();
        if snap.index != seen {
            // Past it, or behind it (a restarted agent starts again at 1): answer now.
            break snap;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return error(StatusCode::SERVICE_UNAVAILABLE, SHUTTING_DOWN),
            Err(_) => break snap,
        }
    };
    with_index(
        MembersResponse {
            members: snap.members.iter().map(MemberJson::from).collect(),
            index: snap.index,
        },
        snap.index,
    )
}

fn with_index(body: MembersResponse, index: u64) -> Response {
    let mut r = Json(body).into_response();
    r.headers_mut()
        .insert(INDEX_HEADER, header::HeaderValue::from(index));
    r
}

async fn info(AxState(s): AxState<State>) -> Response {
    match ask(&s, Command::Info).await {
        Ok(i) => Json(i).into_response(),
        Err(r) => r,
    }
}

/// `?node=NAME` of `GET /v1/coordinate`.
#[derive(Debug, serde::Deserialize)]
struct CoordinateQuery {
    node: Option<String>,
}

/// `GET /v1/coordinate[?node=NAME]`: the member's coordinate as this agent holds it (its
/// own without `node`); 404 when it holds none for that member (yet).
async fn coordinate(
    AxState(s): AxState<State>,
    axum::extract::Query(q): axum::extract::Query<CoordinateQuery>,
) -> Response {
    let asked = q.node.clone();
    match ask(&s, |tx| Command::Coordinate(q.node, tx)).await {
        Ok(Some((node, coordinate))) => {
            Json(crate::api::CoordinateResponse { node, coordinate }).into_response()
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!(
                "no coordinate for node {:?} (not a member, or not probed yet)",
                asked.unwrap_or_default()
            ),
        ),
        Err(r) => r,
    }
}

async fn join(AxState(s): AxState<State>, Json(req): Json<JoinRequest>) -> Response {
    match join_targets(&s, &req.targets).await {
        Ok(r) => Json(r).into_response(),
        Err((code, msg)) => error(code, msg),
    }
}

/// Resolves `targets` (`HOST[:PORT]`), sends each address a join and waits (at most 3 s)
/// until all answered; the error says why none did.
pub(crate) async fn join_targets(
    s: &State,
    targets: &[String],
) -> Result<JoinResponse, (StatusCode, String)> {
    let mut parsed = Vec::new();
    for t in targets {
        match t.parse::<JoinTarget>() {
            Ok(t) => parsed.push(t),
            Err(e) => return Err((StatusCode::BAD_REQUEST, e.to_string())),
        }
    }
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let mut failures = Vec::new();
    for t in &parsed {
        match s.resolver.resolve(t).await {
            Ok(a) => addrs.extend(a),
            Err(e) => failures.push(format!("{t}: {e}")),
        }
    }
    if addrs.is_empty() {
        return Err((
            StatusCode::BAD_GATEWAY,
            format!("cannot resolve any target: {}", failures.join("; ")),
        ));
    }
    let gone = || (StatusCode::SERVICE_UNAVAILABLE, SHUTTING_DOWN.to_string());
    if s.commands.send(Command::Join(addrs.clone())).await.is_err() {
        return Err(gone());
    }
    // Wait (bounded) for answers, polling the node.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut joined = Vec::new();
    while Instant::now() < deadline {
        let a = addrs.clone();
        match ask_agent(s, |tx| Command::Answered(a, tx)).await {
            Some(ok) if ok.len() == addrs.len() => {
                joined = ok;
                break;
            }
            Some(ok) => joined = ok,
            None => return Err(gone()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if joined.is_empty() {
        return Err((
            StatusCode::BAD_GATEWAY,
            format!(
                "no member answered at {}",
                addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(JoinResponse {
        joined: joined.iter().map(ToString::to_string).collect(),
        contacted: addrs.iter().map(ToString::to_string).collect(),
    })
}

async fn tags(AxState(s): AxState<State>, Json(req): Json<TagsRequest>) -> Response {
    match ask(&s, |tx| Command::Tags(req, tx)).await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(r) => r,
    }
}

async fn event(AxState(s): AxState<State>, Json(req): Json<EventRequest>) -> Response {
    let req = UserEvent {
        name: req.name,
        payload: req.payload.into_bytes(),
        coalesce: req.coalesce,
    };
    match ask(&s, |tx| Command::Event(req, tx)).await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(r) => r,
    }
}

async fn force_leave(AxState(s): AxState<State>, Json(req): Json<ForceLeaveRequest>) -> Response {
    match ask(&s, |tx| Command::ForceLeave(req, tx)).await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(r) => r,
    }
}

async fn query(AxState(s): AxState<State>, Json(req): Json<QueryRequest>) -> Response {
    let req = QuerySpec {
        name: req.name,
        payload: req.payload.into_bytes(),
        nodes: req.nodes,
        tags: req.tags,
        timeout: req.timeout_ms.map(Duration::from_millis),
        ack: !req.no_ack,
    };
    let (tx, rx) = mpsc::unbounded_channel::<QueryProgress>();
    match ask(&s, |reply| Command::Query(req, tx, reply)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(r) => return r,
    }
    // One JSON object per line, each as it happens; the body ends after `done`.
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = match rx.recv().await? {
            QueryProgress::Started {
                id,
                targets,
                timeout,
            } => QueryLine::Started {
                id,
                targets,
                timeout_ms: timeout.as_millis() as u64,
            },
            QueryProgress::Ack { from } => QueryLine::Ack { from },
            QueryProgress::Response { from, payload } => QueryLine::Response {
                from,
                payload: String::from_utf8_lossy(&payload).into_owned(),
            },
            QueryProgress::Done => QueryLine::Done,
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        Some((Ok::<_, std::convert::Infallible>(text), rx))
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(axum::body::Body::from_stream(lines))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A key command on every live member, answered once all answered or the deadline passed.
async fn keys(AxState(s): AxState<State>, Json(req): Json<KeysRequest>) -> Response {
    match run_keys(&s, req).await {
        Ok(r) => Json(r).into_response(),
        Err((code, msg)) => error(code, msg),
    }
}

/// Runs a key command on every live member and gathers their answers.
pub(crate) async fn run_keys(
    s: &State,
    req: KeysRequest,
) -> Result<KeysResponse, (StatusCode, String)> {
    let list = req.op == KeyOp::List;
    if !list {
        match req.key.as_deref().map(gossip_core::crypt::Key::parse) {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err((StatusCode::BAD_REQUEST, format!("invalid key: {e}"))),
            None => return Err((StatusCode::BAD_REQUEST, "this command needs a key".into())),
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<QueryProgress>();
    match ask_agent(s, |reply| Command::Keys(req, tx, reply)).await {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err((StatusCode::BAD_REQUEST, e.to_string())),
        None => {
            return Err((StatusCode::SERVICE_UNAVAILABLE, SHUTTING_DOWN.into()));
        }
    }
    let mut out = KeysResponse::default();
    let mut waiting = std::collections::BTreeSet::new();
    while let Some(line) = rx.recv().await {
        match line {
            QueryProgress::Started { targets, .. } => {
                out.members = targets.len();
                waiting.extend(targets);
            }
            QueryProgress::Ack { .. } => {}
            QueryProgress::Response { from, payload } => {
                if waiting.remove(&from) {
                    out.answered += 1;
                }
                match crate::crypt::KeyAnswer::decode(&payload) {
                    crate::crypt::KeyAnswer::Error(e) => {
                        out.errors.insert(from, e);
                    }
                    crate::crypt::KeyAnswer::Keys(keys) if list => {
                        if let Some(p) = keys.first() {
                            out.primary.insert(from, p.clone());
                        }
                        for k in keys {
                            *out.keys.entry(k).or_insert(0) += 1;
                        }
                    }
                    crate::crypt::KeyAnswer::Keys(_) | crate::crypt::KeyAnswer::Done { .. } => {}
                }
            }
            QueryProgress::Done => break,
        }
    }
    for m in waiting {
        out.errors.insert(m, "no answer before the deadline".into());
    }
    Ok(out)
}

async fn leave(AxState(s): AxState<State>) -> Response {
    match ask(&s, Command::Leave).await {
        Ok(r) => Json(r).into_response(),
        Err(r) => r,
    }
}
