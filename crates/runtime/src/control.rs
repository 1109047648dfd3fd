//! The control API server: JSON over HTTP/1.1 on `--rpc-addr` (see [`crate::api`] for the
//! routes). Each request becomes a [`Command`] to the task that owns the node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{mpsc, oneshot, watch};

use crate::agent::Command;
use crate::api::{
    ErrorResponse, EventRequest, ForceLeaveRequest, JoinRequest, JoinResponse, MemberJson,
    MembersResponse, QueryLine, QueryRequest, TagsRequest,
};
use crate::config::JoinTarget;
use crate::resolve::Resolver;

/// What the handlers share.
#[derive(Clone)]
pub struct State {
    /// Channel to the task that owns the node.
    pub commands: mpsc::Sender<Command>,
    /// Resolver for `join` targets.
    pub resolver: Arc<Resolver>,
}

/// Serves until `stop` turns true, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: State,
    mut stop: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/v1/members", get(members))
        .route("/v1/info", get(info))
        .route("/v1/join", post(join))
        .route("/v1/tags", post(tags))
        .route("/v1/leave", post(leave))
        .route("/v1/event", post(event))
        .route("/v1/force-leave", post(force_leave))
        .route("/v1/query", post(query))
        .with_state(state);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "control API stopped");
    }
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
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(r) => r,
    }
}

async fn event(AxState(s): AxState<State>, Json(req): Json<EventRequest>) -> Response {
    match ask(&s, |tx| Command::Event(req, tx)).await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(r) => r,
    }
}

async fn force_leave(AxState(s): AxState<State>, Json(req): Json<ForceLeaveRequest>) -> Response {
    match ask(&s, |tx| Command::ForceLeave(req, tx)).await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(r) => r,
    }
}

async fn query(AxState(s): AxState<State>, Json(req): Json<QueryRequest>) -> Response {
    let (tx, rx) = mpsc::unbounded_channel::<QueryLine>();
    match ask(&s, |reply| Command::Query(req, tx, reply)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
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

async fn leave(AxState(s): AxState<State>) -> Response {
    match ask(&s, Command::Leave).await {
        Ok(r) => Json(r).into_response(),
        Err(r) => r,
    }
}
