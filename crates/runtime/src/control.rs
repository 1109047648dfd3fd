//! The control API server: JSON over HTTP/1.1 on `--rpc-addr` (see [`crate::api`] for the
//! routes). Each request becomes a [`Command`] to the task that owns the node.

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
use crate::command::Command;
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
    /// When set, every request must carry `Authorization: Bearer TOKEN`.
    pub token: Option<Arc<str>>,
}

/// Refuses (401, logged with the peer's address) a request without the configured token.
async fn authorize(
    AxState(s): AxState<State>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
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
fn same_token(a: &[u8], b: &[u8]) -> bool {
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
    use hyper_util::rt::{TokioIo, TokioTimer};
    let app = router(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut refused_logged: Option<Instant> = None;
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
        let service = hyper_util::service::TowerToHyperService::new(
            app.clone().layer(axum::Extension(ConnectInfo(peer))),
        );
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "control API connection ended");
            }
            drop(slot);
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(ErrorResponse { error: msg.into() })).into_response()
}

async fn ask<T>(
    s: &State,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    s.commands.send(make(tx)).await.map_err(|_| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down",
        )
    })?;
    rx.await.map_err(|_| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down",
        )
    })
}

async fn members(AxState(s): AxState<State>) -> Response {
    match ask(&s, Command::Members).await {
        Ok(ms) => Json(MembersResponse {
            members: ms.iter().map(MemberJson::from).collect(),
        })
        .into_response(),
        Err(r) => r,
    }
}

async fn info(AxState(s): AxState<State>) -> Response {
    match ask(&s, Command::Info).await {
        Ok(i) => Json(i).into_response(),
        Err(r) => r,
    }
}

async fn join(AxState(s): AxState<State>, Json(req): Json<JoinRequest>) -> Response {
    let mut targets = Vec::new();
    for t in &req.targets {
        match t.parse::<JoinTarget>() {
            Ok(t) => targets.push(t),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    }
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let mut failures = Vec::new();
    for t in &targets {
        match s.resolver.resolve(t).await {
            Ok(a) => addrs.extend(a),
            Err(e) => failures.push(format!("{t}: {e}")),
        }
    }
    if addrs.is_empty() {
        return error(
            StatusCode::BAD_GATEWAY,
            format!("cannot resolve any target: {}", failures.join("; ")),
        );
    }
    if s.commands.send(Command::Join(addrs.clone())).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down",
        );
    }
    // Wait (bounded) for answers, polling the node.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut joined = Vec::new();
    while Instant::now() < deadline {
        let a = addrs.clone();
        match ask(&s, |tx| Command::Answered(a, tx)).await {
            Ok(ok) if ok.len() == addrs.len() => {
                joined = ok;
                break;
            }
            Ok(ok) => joined = ok,
            Err(r) => return r,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if joined.is_empty() {
        return error(
            StatusCode::BAD_GATEWAY,
            format!(
                "no member answered at {}",
                addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    Json(JoinResponse {
        joined: joined.iter().map(ToString::to_string).collect(),
        contacted: addrs.iter().map(ToString::to_string).collect(),
    })
    .into_response()
}

async fn tags(AxState(s): AxState<State>, Json(req): Json<TagsRequest>) -> Response {
    match ask(&s, |tx| Command::Tags(req, tx)).await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(r) => r,
    }
}

async fn event(AxState(s): AxState<State>, Json(req): Json<EventRequest>) -> Response {
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
    let (tx, rx) = mpsc::unbounded_channel::<QueryLine>();
    match ask(&s, |reply| Command::Query(req, tx, reply)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(r) => return r,
    }
    // One JSON object per line, each as it happens; the body ends after `done`.
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
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
    let list = req.op == KeyOp::List;
    if !list {
        match req.key.as_deref().map(gossip_core::crypt::Key::parse) {
            Some(Ok(_)) => {}
            Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("invalid key: {e}")),
            None => return error(StatusCode::BAD_REQUEST, "this command needs a key"),
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<QueryLine>();
    match ask(&s, |reply| Command::Keys(req, tx, reply)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(r) => return r,
    }
    let mut out = KeysResponse::default();
    let mut waiting = std::collections::BTreeSet::new();
    while let Some(line) = rx.recv().await {
        match line {
            QueryLine::Started { targets, .. } => {
                out.members = targets.len();
                waiting.extend(targets);
            }
            QueryLine::Ack { .. } => {}
            QueryLine::Response { from, payload } => {
                waiting.remove(&from);
                match crate::crypt::KeyAnswer::decode(payload.as_bytes()) {
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
            QueryLine::Done => break,
        }
    }
    for m in waiting {
        out.errors.insert(m, "no answer before the deadline".into());
    }
    Json(out).into_response()
}

async fn leave(AxState(s): AxState<State>) -> Response {
    match ask(&s, Command::Leave).await {
        Ok(r) => Json(r).into_response(),
        Err(r) => r,
    }
}
