//! One small HTTP/1.0 client for tests, benchmarks and the demo: a request on a new
//! connection (closed by the server after the answer, as HTTP/1.0 does), the status and the
//! body of the answer. Blocking ([`request`]) and async ([`request_async`], on tokio).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An answer: its status code and its body (not trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: String,
}

impl Answer {
    /// True for a 2xx status.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, for a 2xx answer.
    pub fn json(&self) -> Option<serde_json::Value> {
        self.ok()
            .then(|| serde_json::from_str(&self.body).ok())
            .flatten()
    }
}

/// The bytes of a request: `method path`, JSON `body` (none when empty).
pub fn encode(method: &str, path: &str, body: &str) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\n");
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

/// Reads an answer from its bytes: `None` when it is not an HTTP answer.
pub fn decode(bytes: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.") {
        return None;
    }
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Answer {
        status,
        body: body.to_string(),
    })
}

/// `method path` with a JSON `body` to `addr`: connects within 2 s, reads the answer for at
/// most `timeout`. `None` when nothing (or no HTTP) answers.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Option<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(&encode(method, path, body)).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    decode(&buf)
}

/// `GET path`, 5 s at most.
pub fn get(addr: SocketAddr, path: &str) -> Option<Answer> {
    request(addr, "GET", path, "", Duration::from_secs(5))
}

/// `POST path` with a JSON `body`, 5 s at most.
pub fn post(addr: SocketAddr, path: &str, body: &str) -> Option<Answer> {
    request(addr, "POST", path, body, Duration::from_secs(5))
}

/// [`request`] on tokio: the whole exchange bounded by `timeout`. The error says what failed.
pub async fn request_async(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<Answer, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(&encode(method, path, body)).await?;
        let mut buf = Vec::with_capacity(512);
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err(format!("timed out after {} s", timeout.as_secs_f64())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(buf)) => decode(&buf).ok_or_else(|| "not an HTTP answer".to_string()),
    }
}
