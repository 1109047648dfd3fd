//! A steady HTTP load through the proxy: a few workers, each opening a new connection per
//! request (`GET /hello`, HTTP/1.0), paced to a total rate. Every request is recorded with its
//! start and end, its status and which frontserver and appserver answered.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::parse_answer;

/// One request.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When the connection was opened.
    pub start: Instant,
    /// When the answer was complete (or the request failed).
    pub end: Instant,
    /// The HTTP status, or 0 when there was no HTTP answer.
    pub status: u16,
    /// The frontserver and appserver that answered.
    pub answer: Option<(String, String)>,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

impl Sample {
    /// A 200 with a well-formed answer.
    pub fn ok(&self) -> bool {
        self.status == 200 && self.answer.is_some()
    }
}

/// A running load; [`Load::finish`] stops it and returns every sample.
pub struct Load {
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Starts `workers` workers sending `rate` requests per second in total to `target`.
    pub fn start(target: SocketAddr, rate: u32, workers: usize) -> Self {
        Self::start_path(target, "/hello", rate, workers)
    }

    /// [`Load::start`] with `GET path` instead of `/hello` (the answer is then not parsed:
    /// a 200 is what counts).
    pub fn start_path(target: SocketAddr, path: &'static str, rate: u32, workers: usize) -> Self {
        let (stop, rx) = watch::channel(false);
        let period = Duration::from_secs_f64(workers as f64 / rate.max(1) as f64);
        let workers = (0..workers)
            .map(|i| {
                let rx = rx.clone();
                tokio::spawn(async move {
                    // Spread the workers over one period.
                    tokio::time::sleep(period.mul_f64(i as f64 / 8.0)).await;
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut samples = Vec::new();
                    while !*rx.borrow() {
                        tick.tick().await;
                        samples.push(request_path(target, path).await);
                    }
                    samples
                })
            })
            .collect();
        Self { stop, workers }
    }

    /// Stops the workers and returns all samples, ordered by start.
    pub async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        let mut all = Vec::new();
        for w in self.workers {
            if let Ok(s) = w.await {
                all.extend(s);
            }
        }
        all.sort_by_key(|s| s.start);
        all
    }
}

/// One `GET /hello` on a new connection, bounded by 5 s.
pub async fn request(target: SocketAddr) -> Sample {
    request_path(target, "/hello").await
}

/// One `GET path` on a new connection, bounded by 5 s.
pub async fn request_path(target: SocketAddr, path: &str) -> Sample {
    let start = Instant::now();
    let result =
        gossip_testkit::http::request_async(target, "GET", path, "", Duration::from_secs(5)).await;
    let end = Instant::now();
    let (status, answer, error) = match result {
        Err(e) => (0, None, Some(e)),
        Ok(a) => {
            let answer = parse_answer(&a.body);
            let error = (a.status != 200 || answer.is_none())
                .then(|| format!("status {}: {}", a.status, a.body.trim()));
            (a.status, answer, error)
        }
    };
    Sample {
        start,
        end,
        status,
        answer,
        error,
    }
}
