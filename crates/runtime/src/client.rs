//! The CLI side of the control API: one HTTP/1.1 request per command over a fresh TCP
//! connection to `--rpc-addr`.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::ErrorResponse;
use crate::error::ClientError;

/// A client of one agent's control API.
pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
    token: Option<String>,
}

impl Client {
    /// A client of the agent listening on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            timeout: Duration::from_secs(10),
            token: None,
        }
    }

    /// The same client sending `Authorization: Bearer TOKEN` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// The same client with another overall time limit per request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `POST path` with a JSON body; the answer is one JSON value per line, each handed to
    /// `on_line` as it arrives, until the body ends.
    pub async fn post_lines<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        mut on_line: impl FnMut(R),
    ) -> Result<(), ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let work = async {
            let resp = self.send(Method::POST, path, Some(body)).await?;
            lines(resp, |line| {
                let value = serde_json::from_slice(line)
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                on_line(value);
                Ok(())
            })
            .await
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ClientError::Protocol(format!("no answer within {:?}", self.timeout)))?
    }

    /// `GET path` whose answer goes on until the agent ends it (a stream): each line (without
    /// its newline) is handed to `on_line` as it arrives. No time limit once the answer
    /// started; the time limit applies to the connection and the answer's head.
    pub async fn get_lines(
        &self,
        path: &str,
        on_line: impl FnMut(&[u8]) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let resp = tokio::time::timeout(self.timeout, self.send(Method::GET, path, None))
            .await
            .map_err(|_| ClientError::Protocol(format!("no answer within {:?}", self.timeout)))??;
        lines(resp, on_line).await
    }

    /// `GET path`.
    pub async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, ClientError> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.call(Method::POST, path, Some(body)).await
    }

    async fn call<R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<R, ClientError> {
        tokio::time::timeout(self.timeout, self.call_inner(method, path, body))
            .await
            .map_err(|_| ClientError::Protocol(format!("no answer within {:?}", self.timeout)))?
    }

    async fn call_inner<R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<R, ClientError> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|source| ClientError::Unreachable {
                addr: self.addr,
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

/// An answer's body line by line (each without its newline) as it arrives; an error status
/// is the agent's refusal.
async fn lines(
    resp: hyper::Response<hyper::body::Incoming>,
    mut on_line: impl FnMut(&[u8]) -> Result<(), ClientError>,
) -> Result<(), ClientError> {
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .to_bytes();
        return Err(refused(status, &bytes));
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Protocol(e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            buf.extend_from_slice(data);
        }
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            on_line(&line[..line.len() - 1])?;
        }
    }
    Ok(())
}

fn refused(status: hyper::StatusCode, bytes: &[u8]) -> ClientError {
    let msg = serde_json::from_slice::<ErrorResponse>(bytes)
        .map(|e| e.error)
        .unwrap_or_else(|_| format!("HTTP {status}"));
    ClientError::Refused(msg)
}
