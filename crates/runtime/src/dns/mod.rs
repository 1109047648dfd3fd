//! The built-in DNS server (`--dns-addr`): role and node names of the cluster, answered from
//! the agent's member table on UDP and TCP, everything else forwarded to the host's resolvers.
//! [`answer`] decides what to answer (a pure function, tested without sockets); this module
//! owns the sockets, truncation, forwarding and the counters.
//!
//! Built on hickory-proto's message types, not hickory-server: the server crate's catalog
//! and authorities model zones held as record sets, loaded and updated; ours are computed per
//! query from the live member table, so a request handler over hickory-proto's `Message` is
//! all that is needed, and keeps the agent small (hickory-proto is already linked for joins).
//!
//! Bounds: a query over [`QUERY_MAX`] bytes, or one that does not parse, is dropped and
//! counted; at most [`FORWARDS_MAX`] forwards are in flight (past it, SERVFAIL), each waits
//! [`FORWARD_TIMEOUT`] per resolver; at most [`TCP_MAX`] TCP connections, each closed after
//! [`TCP_IDLE`] without a query.

pub mod answer;
mod cache;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gossip_handlers::Snapshot;
use hickory_proto::op::{Message, ResponseCode};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};

use answer::{Kind, Outcome, Zone};

/// Largest query accepted, in bytes.
pub const QUERY_MAX: usize = 4096;
/// Forwards in flight at most.
pub const FORWARDS_MAX: usize = 256;
/// How long a forward waits for one resolver.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// TCP connections served at once at most.
pub const TCP_MAX: usize = 64;
/// How long a TCP connection may stay without a query.
pub const TCP_IDLE: Duration = Duration::from_secs(5);

/// Where names outside the zone go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recursors {
    /// These resolvers, in order.
    Forward(Vec<SocketAddr>),
    /// Nowhere: REFUSED (`--dns-recursor none`).
    Refuse,
}

/// The DNS server's settings.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// UDP and TCP address.
    pub addr: SocketAddr,
    /// The zone (`gossip.`).
    pub domain: String,
    /// TTL of every answer.
    pub ttl: u32,
    /// Where other names go.
    pub recursors: Recursors,
}

/// The DNS server's counters.
#[derive(Debug, Default)]
pub struct DnsCounters {
    queries: AtomicU64,
    answered: AtomicU64,
    nxdomain: AtomicU64,
    refused: AtomicU64,
    forwarded: AtomicU64,
    forward_failed: AtomicU64,
    truncated: AtomicU64,
    dropped: AtomicU64,
}

/// A snapshot of [`DnsCounters`], as `info` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsStats {
    /// Queries received (UDP and TCP), dropped ones included.
    pub queries: u64,
    /// Answered from the member table (records, or none for the type).
    pub answered: u64,
    /// NXDOMAIN answers.
    pub nxdomain: u64,
    /// REFUSED, FORMERR and NOTIMP answers.
    pub refused: u64,
    /// Forwarded to a resolver and answered.
    pub forwarded: u64,
    /// Forwards no resolver answered (SERVFAIL sent).
    pub forward_failed: u64,
    /// UDP answers truncated (TC set; the client retries over TCP).
    pub truncated: u64,
    /// Datagrams and TCP messages dropped: not DNS queries, or over the size limit.
    pub dropped: u64,
}

impl DnsCounters {
    /// The counters now.
    pub fn stats(&self) -> DnsStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DnsStats {
            queries: g(&self.queries),
            answered: g(&self.answered),
            nxdomain: g(&self.nxdomain),
            refused: g(&self.refused),
            forwarded: g(&self.forwarded),
            forward_failed: g(&self.forward_failed),
            truncated: g(&self.truncated),
            dropped: g(&self.dropped),
        }
    }

    fn inc(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

/// The nameservers of `/etc/resolv.conf` (port 53), less `ours` (a resolver that is this
/// server would loop).
pub fn system_recursors(ours: SocketAddr) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next())?
        })
        .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|a| {
            !(*a == ours || (ours.ip().is_unspecified() && ours.port() == 53 && is_local(a.ip())))
        })
        .collect()
}

fn is_local(ip: std::net::IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// A running DNS server's shared state.
struct Server {
    zone: Zone,
    recursors: Vec<SocketAddr>,
    members: watch::Receiver<Arc<Snapshot>>,
    counters: Arc<DnsCounters>,
    forwards: Arc<Semaphore>,
    seed: AtomicU64,
    cache: std::sync::Mutex<cache::Cache>,
}

/// Binds the DNS server's sockets (so a bad address is a start-up error).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(addr).await?;
    // The same port for TCP (port 0 picks one for UDP first).
    let tcp = TcpListener::bind(udp.local_addr()?).await?;
    Ok((udp, tcp))
}

/// How long, at most, queries wait for the agent's first join before they are answered
/// from what it knows then (see [`serve`]).
pub const JOIN_WAIT: Duration = Duration::from_secs(2);

/// Serves DNS on `udp` and `tcp` until the task is dropped.
///
/// With `joined` (the agent has join targets), nothing is read from the sockets until the
/// first join succeeded, [`JOIN_WAIT`] at most: a query asked at start (by a supervised
/// service whose resolver is this agent) waits in the socket and gets the cluster's answer,
/// not an NXDOMAIN from an agent alone, which resolvers would cache.
pub async fn serve(
    (udp, tcp): (UdpSocket, TcpListener),
    config: DnsConfig,
    members: watch::Receiver<Arc<Snapshot>>,
    counters: Arc<DnsCounters>,
    joined: Option<watch::Receiver<bool>>,
) {
    if let Some(mut joined) = joined {
        let _ = tokio::time::timeout(JOIN_WAIT, joined.wait_for(|j| *j)).await;
    }
    let domain = hickory_proto::rr::Name::from_ascii(&config.domain)
        .map(|n| n.to_lowercase())
        .unwrap_or_else(|_| hickory_proto::rr::Name::root());
    let mut domain = domain;
    domain.set_fqdn(true);
    let recursors = match &config.recursors {
        Recursors::Forward(r) => r.clone(),
        Recursors::Refuse => Vec::new(),
    };
    let server = Arc::new(Server {
        zone: Zone {
            domain,
            ttl: config.ttl,
            forwards: config.recursors != Recursors::Refuse,
        },
        recursors,
        members,
        counters,
        forwards: Arc::new(Semaphore::new(FORWARDS_MAX)),
        seed: AtomicU64::new(rand::random()),
        cache: std::sync::Mutex::default(),
    });
    let udp = Arc::new(udp);
    tokio::join!(
        serve_udp(udp, server.clone()),
        serve_tcp(tcp, server.clone())
    );
}

/// The coordinate of the member at `ip`, when exactly one member is there and this agent
/// holds its coordinate.
fn asker_coordinate(
    snapshot: &Arc<Snapshot>,
    ip: std::net::IpAddr,
) -> Option<gossip_core::Coordinate> {
    if snapshot.coordinates.is_empty() {
        return None;
    }
    let mut at = snapshot
        .members
        .iter()
        .filter(|m| m.addr().ip() == ip && m.status.is_live());
    let m = at.next()?;
    if at.next().is_some() {
        return None;
    }
    snapshot.coordinates.get(m.name()).copied()
}

impl Server {
    /// The answer to one query's bytes from the member table; `Err` with the parsed query
    /// when it is to be forwarded; `Ok(None)` when it is dropped. Over UDP the answer is
    /// truncated to the client's size.
    ///
    /// When the asker (`from`) is a member whose coordinate this agent holds, addresses are
    /// ordered by estimated round trip from it (nearest first; equally near ones shuffled),
    /// and the answer is neither taken from nor kept in the cache.
    fn local(
        &self,
        bytes: &[u8],
        udp: bool,
        from: std::net::IpAddr,
    ) -> Result<Option<Vec<u8>>, Box<Message>> {
        DnsCounters::inc(&self.counters.queries);
        let near = asker_coordinate(&self.members.borrow(), from);
        let question = cache::question(bytes, udp).filter(|_| near.is_none());
        if let Some(q) = &question {
            let snapshot = self.members.borrow().clone();
            let mut c = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            c.at(&snapshot);
            if let Some((out, nx)) = c.get(q, bytes) {
                DnsCounters::inc(if nx {
                    &self.counters.nxdomain
                } else {
                    &self.counters.answered
                });
                return Ok(Some(out));
            }
        }
        if bytes.len() > QUERY_MAX {
            DnsCounters::inc(&self.counters.dropped);
            return Ok(None);
        }
        let Ok(req) = Message::from_vec(bytes) else {
            DnsCounters::inc(&self.counters.dropped);
            return Ok(None);
        };
        if req.metadata.message_type != hickory_proto::op::MessageType::Query {
            DnsCounters::inc(&self.counters.dropped);
            return Ok(None);
        }
        let seed = self
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let snapshot = self.members.borrow().clone();
        let distance = |m: &gossip_core::MemberInfo| {
            let c = snapshot.coordinates.get(m.name())?;
            Some(near.as_ref()?.distance_secs(c))
        };
        let near_fn: Option<answer::Near<'_>> = near.is_some().then_some(&distance);
        let (outcome, kind) = answer::answer(&req, &snapshot.members, &self.zone, seed, near_fn);
        let Outcome::Answer(mut resp) = outcome else {
            return Err(Box::new(req));
        };
        DnsCounters::inc(match kind {
            Kind::Answered => &self.counters.answered,
            Kind::NxDomain => &self.counters.nxdomain,
            Kind::Refused => &self.counters.refused,
        });
        let Ok(mut out) = resp.to_vec() else {
            return Ok(None);
        };
        let limit = if udp {
            req.edns.as_ref().map_or(512, |e| e.max_payload().max(512)) as usize
        } else {
            u16::MAX as usize
        };
        if out.len() > limit {
            DnsCounters::inc(&self.counters.truncated);
            resp = resp.truncate();
            out = resp.to_vec().unwrap_or_default();
        }
        if let Some(q) = question
            && kind != Kind::Refused
        {
            let mut c = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Answered from `snapshot`: kept only while it is still the current table.
            c.at(&snapshot);
            c.put(q, &out);
        }
        Ok(Some(out))
    }

    /// Relays `bytes` (the query `req`) to the resolvers in turn; SERVFAIL when none answers.
    async fn forward(&self, req: &Message, bytes: &[u8]) -> Vec<u8> {
        let servfail = || {
            let mut m = Message::error_msg(
                req.metadata.id,
                req.metadata.op_code,
                ResponseCode::ServFail,
            );
            m.queries = req.queries.clone();
            m.metadata.recursion_desired = req.metadata.recursion_desired;
            m.metadata.recursion_available = true;
            m.to_vec().unwrap_or_default()
        };
        let Ok(_permit) = self.forwards.clone().try_acquire_owned() else {
            DnsCounters::inc(&self.counters.forward_failed);
            return servfail();
        };
        for r in &self.recursors {
            if let Some(answer) = forward_one(*r, req.metadata.id, bytes).await {
                DnsCounters::inc(&self.counters.forwarded);
                return answer;
            }
        }
        DnsCounters::inc(&self.counters.forward_failed);
        servfail()
    }
}

/// One resolver: over UDP, then over TCP when the answer came truncated.
async fn forward_one(to: SocketAddr, id: u16, bytes: &[u8]) -> Option<Vec<u8>> {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let sock = UdpSocket::bind(bind).await.ok()?;
    sock.connect(to).await.ok()?;
    sock.send(bytes).await.ok()?;
    let mut buf = vec![0u8; 65535];
    let got = tokio::time::timeout(FORWARD_TIMEOUT, async {
        loop {
            let n = sock.recv(&mut buf).await.ok()?;
            // The answer to this query (a stray datagram is ignored).
            if n >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                return Some(n);
            }
        }
    })
    .await
    .ok()??;
    let truncated = buf[2] & 0x02 != 0;
    if !truncated {
        buf.truncate(got);
        return Some(buf);
    }
    tokio::time::timeout(FORWARD_TIMEOUT, async {
        let mut s = TcpStream::connect(to).await.ok()?;
        s.write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .ok()?;
        s.write_all(bytes).await.ok()?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.ok()?;
        let mut out = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut out).await.ok()?;
        Some(out)
    })
    .await
    .ok()?
}

async fn serve_udp(udp: Arc<UdpSocket>, server: Arc<Server>) {
    let mut buf = vec![0u8; QUERY_MAX + 1];
    loop {
        let (n, from) = match udp.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "DNS receive failed");
                continue;
            }
        };
        match server.local(&buf[..n], true, from.ip()) {
            Ok(Some(out)) => {
                let _ = udp.send_to(&out, from).await;
            }
            Ok(None) => {}
            // A forward waits for its resolver: in its own task.
            Err(req) => {
                let bytes = buf[..n].to_vec();
                let (udp, server) = (udp.clone(), server.clone());
                tokio::spawn(async move {
                    let out = server.forward(&req, &bytes).await;
                    let _ = udp.send_to(&out, from).await;
                });
            }
        }
    }
}

async fn serve_tcp(tcp: TcpListener, server: Arc<Server>) {
    let slots = Arc::new(Semaphore::new(TCP_MAX));
    loop {
        let Ok((stream, _)) = tcp.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let _ = serve_conn(stream, &server).await;
            drop(slot);
        });
    }
}

/// One TCP connection: length-prefixed queries, answered in turn.
async fn serve_conn(mut s: TcpStream, server: &Arc<Server>) -> Option<()> {
    let peer = s.peer_addr().ok()?.ip();
    loop {
        let mut len = [0u8; 2];
        tokio::time::timeout(TCP_IDLE, s.read_exact(&mut len))
            .await
            .ok()?
            .ok()?;
        let n = u16::from_be_bytes(len) as usize;
        let mut q = vec![0u8; n];
        tokio::time::timeout(TCP_IDLE, s.read_exact(&mut q))
            .await
            .ok()?
            .ok()?;
        let out = match server.local(&q, false, peer) {
            Ok(Some(out)) => out,
            // Not DNS: the connection is not worth keeping.
            Ok(None) => return None,
            Err(req) => server.forward(&req, &q).await,
        };
        s.write_all(&(out.len() as u16).to_be_bytes()).await.ok()?;
        s.write_all(&out).await.ok()?;
    }
}
