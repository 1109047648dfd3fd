//! The HTTP side of streams: `GET /v1/stream` (events as JSON lines, or server-sent events)
//! and `GET /v1/monitor` (log lines as text), backed by the same fan-out as Serf's RPC
//! `stream` and `monitor` ([`crate::stream`], [`crate::logs`]). A client that reads too
//! slowly loses records and is told (`{"event":"dropped","count":N}`, or a log line).

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::api::MemberJson;
use crate::control::State;
use crate::stream::{Record, Subscription};

/// `GET /v1/stream` parameters.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamParams {
    /// An event filter, as handlers take it (`member-join,user:deploy`); empty: everything.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// `json` (one object a line, the default) or `sse` (server-sent events; also chosen by
    /// `Accept: text/event-stream`).
    #[serde(default)]
    pub format: Option<String>,
}

/// One record of `GET /v1/stream`, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum StreamLine {
    /// A member joined.
    #[serde(rename = "member-join")]
    Join {
        /// The members.
        members: Vec<MemberJson>,
    },
    /// A member left.
    #[serde(rename = "member-leave")]
    Leave {
        /// The members.
        members: Vec<MemberJson>,
    },
    /// A member failed.
    #[serde(rename = "member-failed")]
    Failed {
        /// The members.
        members: Vec<MemberJson>,
    },
    /// A member's tags or address changed.
    #[serde(rename = "member-update")]
    Update {
        /// The members.
        members: Vec<MemberJson>,
    },
    /// A failed or left member was forgotten.
    #[serde(rename = "member-reap")]
    Reap {
        /// The members.
        members: Vec<MemberJson>,
    },
    /// A user event.
    #[serde(rename = "user")]
    User {
        /// Its name.
        name: String,
        /// Its Lamport time.
        ltime: u64,
        /// Its payload (lossy UTF-8).
        payload: String,
        /// Serf's coalesce flag.
        coalesce: bool,
    },
    /// A query for this node (answered by its handlers; Serf's RPC can answer it too).
    #[serde(rename = "query")]
    Query {
        /// Its name.
        name: String,
        /// Its Lamport time.
        ltime: u64,
        /// The asking member.
        from: String,
        /// Its payload (lossy UTF-8).
        payload: String,
    },
    /// This many records were lost: the client read too slowly.
    #[serde(rename = "dropped")]
    Dropped {
        /// How many.
        count: u64,
    },
}

impl StreamLine {
    /// The JSON line of a record.
    pub fn of(r: &Record) -> Self {
        match r {
            Record::Member { kind, member } => {
                let members = vec![MemberJson::from(member)];
                match kind {
                    gossip_core::EventKind::Join => Self::Join { members },
                    gossip_core::EventKind::Leave => Self::Leave { members },
                    gossip_core::EventKind::Failed => Self::Failed { members },
                    gossip_core::EventKind::Update => Self::Update { members },
                    gossip_core::EventKind::Reap => Self::Reap { members },
                }
            }
            Record::User {
                name,
                ltime,
                payload,
                coalesce,
            } => Self::User {
                name: name.clone(),
                ltime: *ltime,
                payload: String::from_utf8_lossy(payload).into_owned(),
                coalesce: *coalesce,
            },
            Record::Query {
                origin_name,
                ltime,
                name,
                payload,
                ..
            } => Self::Query {
                name: name.clone(),
                ltime: *ltime,
                from: origin_name.clone(),
                payload: String::from_utf8_lossy(payload).into_owned(),
            },
        }
    }

    /// Its event name (`member-join`, `user`, ...).
    pub fn event(&self) -> &'static str {
        match self {
            Self::Join { .. } => "member-join",
            Self::Leave { .. } => "member-leave",
            Self::Failed { .. } => "member-failed",
            Self::Update { .. } => "member-update",
            Self::Reap { .. } => "member-reap",
            Self::User { .. } => "user",
            Self::Query { .. } => "query",
            Self::Dropped { .. } => "dropped",
        }
    }
}

fn bad_request(msg: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(crate::api::ErrorResponse { error: msg }),
    )
        .into_response()
}

/// `GET /v1/stream?type=FILTER[&format=json|sse]`.
pub async fn stream(
    AxState(s): AxState<State>,
    headers: HeaderMap,
    Query(p): Query<StreamParams>,
) -> Response {
    let filter = match gossip_handlers::EventFilter::parse(&p.kind) {
        Ok(f) => f,
        Err(e) => return bad_request(format!("type: {e}")),
    };
    let sse = match p.format.as_deref() {
        Some("sse") => true,
        Some("json") => false,
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream")),
        Some(other) => return bad_request(format!("format: {other:?} is not json or sse")),
    };
    let sub = s.hub.subscribe(filter);
    let body = futures_util::stream::unfold(
        (sub, Vec::<StreamLine>::new()),
        move |(mut sub, mut queued): (Subscription, Vec<StreamLine>)| async move {
            if queued.is_empty() {
                let rec = sub.rx.recv().await?;
                queued.push(StreamLine::of(&rec));
                let dropped = sub.take_dropped();
                if dropped > 0 {
                    queued.push(StreamLine::Dropped { count: dropped });
                }
            }
            let line = queued.pop()?;
            let json = serde_json::to_string(&line).unwrap_or_default();
            let text = if sse {
                format!("event: {}\ndata: {json}\n\n", line.event())
            } else {
                format!("{json}\n")
            };
            Some((Ok::<_, Infallible>(text), (sub, queued)))
        },
    );
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            if sse {
                "text/event-stream"
            } else {
                "application/x-ndjson"
            },
        )
        .header(header::CACHE_CONTROL, "no-cache")
        .body(axum::body::Body::from_stream(body))
        .unwrap_or_else(|e| bad_request(e.to_string()))
}

/// `GET /v1/monitor?level=LEVEL`: log lines as text, one a line (Serf's levels; INFO by
/// default).
pub async fn monitor(Query(p): Query<BTreeMap<String, String>>) -> Response {
    let level = match crate::logs::MonitorLevel::parse(
        p.get("level").map(String::as_str).unwrap_or("INFO"),
    ) {
        Ok(l) => l,
        Err(e) => return bad_request(e),
    };
    let sub = crate::logs::hub().subscribe(level);
    let body = futures_util::stream::unfold(sub, |mut sub| async move {
        let line = sub.rx.recv().await?;
        let dropped = sub.take_dropped();
        let mut text = String::new();
        if dropped > 0 {
            text.push_str(&format!(
                "[WARN] agent.http: {dropped} log lines dropped: this monitor reads too slowly\n"
            ));
        }
        text.push_str(&line);
        text.push('\n');
        Some((Ok::<_, Infallible>(text), sub))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(axum::body::Body::from_stream(body))
        .unwrap_or_else(|e| bad_request(e.to_string()))
}
