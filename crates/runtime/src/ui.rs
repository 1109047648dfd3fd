//! The web page of the cluster at `GET /ui/` on the control API: one HTML file with its
//! style and script inline (`ui/index.html`, a dozen KB), compiled into the binary, so
//! nothing is fetched from anywhere at run time. The page keeps the member table with the
//! blocking query (`/v1/members?index=N&wait=60s`) and the last events with server-sent
//! events (`/v1/stream?format=sse`), and says so when the agent cannot be reached.

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};

/// The page.
pub const PAGE: &str = include_str!("ui/index.html");

/// `GET /ui/`.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

/// `GET /ui` and `GET /`: to `/ui/`.
pub async fn to_page() -> Response {
    Redirect::temporary("/ui/").into_response()
}
