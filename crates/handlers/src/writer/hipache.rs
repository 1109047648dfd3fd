//! The hipache writer: keeps the redis list `frontend:<host>` equal to
//! `[identifier, "http://IP:PORT", ...]` for the selected live members, as the serf-solution
//! demo's proxy kept it for hipache (which reads redis on every request and picks a random
//! backend).
//!
//! Level-triggered: each apply reads the list and fixes it towards the desired set with exact
//! comparisons (the demo's `grep -q ADDR` took 172.17.0.4 for 172.17.0.40), inside
//! `WATCH`/`MULTI`/`EXEC`, retried if the list changed meanwhile. A list whose element 0 is not
//! the identifier (empty after a `FLUSHALL`, or foreign) is rebuilt whole. The writer also
//! re-applies every few seconds, so a flushed redis is refilled without a membership change;
//! when redis is down it retries with backoff and never stops the agent.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::{Applied, Snapshot, WriterError, selected, service_port};
use crate::select::{Liveness, Selector};

/// Settings of the hipache writer.
pub(super) struct HipacheConfig {
    pub(super) url: String,
    pub(super) key: String,
    pub(super) identifier: String,
    pub(super) scheme: String,
    pub(super) selector: Selector,
    pub(super) live: Liveness,
    pub(super) port_tag: String,
    pub(super) default_port: u16,
}

/// The writer and its (lazily opened, reopened after errors) connection.
pub(super) struct HipacheWriter {
    c: HipacheConfig,
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
}

fn rerr(e: impl std::fmt::Display) -> WriterError {
    WriterError::Redis(e.to_string())
}

impl HipacheWriter {
    pub(super) fn new(c: HipacheConfig) -> Result<Self, String> {
        let client = redis::Client::open(c.url.as_str())
            .map_err(|e| format!("hipache writer: redis_url: {e}"))?;
        Ok(Self {
            c,
            client,
            conn: None,
        })
    }

    pub(super) fn key(&self) -> &str {
        &self.c.key
    }

    fn desired(&self, s: &Snapshot) -> Vec<String> {
        let mut urls: Vec<String> = selected(s, &self.c.selector, self.c.live)
            .into_iter()
            .filter_map(|m| {
                let port = service_port(m, &self.c.port_tag, self.c.default_port)?;
                Some(format!(
                    "{}://{}",
                    self.c.scheme,
                    std::net::SocketAddr::new(m.addr().ip(), port)
                ))
            })
            .collect();
        urls.dedup();
        urls
    }

    pub(super) async fn apply(&mut self, s: &Snapshot) -> Result<Applied, WriterError> {
        let desired = self.desired(s);
        let r = self.reconcile(&desired).await;
        if r.is_err() {
            // Reconnect next time.
            self.conn = None;
        }
        r
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, WriterError> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(
            Duration::from_secs(2),
            self.client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| WriterError::Redis(format!("no connection to {} within 2 s", self.c.url)))?
        .map_err(rerr)?;
        self.conn = Some(c.clone());
        Ok(c)
    }

    async fn reconcile(&mut self, desired: &[String]) -> Result<Applied, WriterError> {
        let mut conn = self.connection().await?;
        let key = self.c.key.clone();
        for _ in 0..5 {
            redis::cmd("WATCH")
                .arg(&key)
                .query_async::<()>(&mut conn)
                .await
                .map_err(rerr)?;
            let current: Vec<String> = redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .map_err(rerr)?;
            let mut p = redis::pipe();
            p.atomic();
            let well_formed =
                current.first() == Some(&self.c.identifier) && !has_duplicates(&current[1..]);
            if !well_formed {
                p.cmd("DEL").arg(&key).ignore();
                p.cmd("RPUSH").arg(&key).arg(&self.c.identifier).ignore();
                for u in desired {
                    p.cmd("RPUSH").arg(&key).arg(u).ignore();
                }
            } else {
                let have = &current[1..];
                let stale: Vec<&String> = have.iter().filter(|u| !desired.contains(u)).collect();
                let missing: Vec<&String> = desired.iter().filter(|u| !have.contains(u)).collect();
                if stale.is_empty() && missing.is_empty() {
                    redis::cmd("UNWATCH")
                        .query_async::<()>(&mut conn)
                        .await
                        .map_err(rerr)?;
                    return Ok(Applied::Unchanged);
                }
                for u in stale {
                    p.cmd("LREM").arg(&key).arg(0).arg(u).ignore();
                }
                for u in missing {
                    p.cmd("RPUSH").arg(&key).arg(u).ignore();
                }
            }
            // EXEC answers nil when the watched list changed meanwhile: read it again.
            let r: redis::Value = p.query_async(&mut conn).await.map_err(rerr)?;
            if !matches!(r, redis::Value::Nil) {
                return Ok(Applied::Changed);
            }
        }
        Err(WriterError::Redis(format!(
            "{key} kept changing under us; will retry"
        )))
    }
}

fn has_duplicates(v: &[String]) -> bool {
    v.iter().enumerate().any(|(i, a)| v[..i].contains(a))
}
