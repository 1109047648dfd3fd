//! Joining: the join targets resolved and tried with backoff until a member answers, and the
//! address to advertise when none is given.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::command::Command;
use crate::config::AgentConfig;
use crate::resolve::Resolver;

/// Joins with backoff (200 ms doubling up to `max`), resolving the targets again each time,
/// until some member has accepted this node.
pub(super) async fn join_loop(
    targets: Vec<crate::config::JoinTarget>,
    policy: gossip_core::config::JoinBackoff,
    resolver: Arc<Resolver>,
    commands: mpsc::Sender<Command>,
    mut joined: watch::Receiver<bool>,
) {
    let mut backoff = policy.first;
    loop {
        if *joined.borrow() {
            return;
        }
        let addrs = resolver.resolve_all(&targets).await;
        if !addrs.is_empty() {
            tracing::debug!(?addrs, "joining");
            if commands.send(Command::Join(addrs)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            r = joined.wait_for(|j| *j) => {
                if r.is_ok() {
                    tracing::info!("joined the cluster");
                }
                return;
            }
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = policy.next(backoff);
    }
}

/// How long the agent waits at start for a join target to resolve, to learn which of its
/// addresses routes to the cluster (see [`route_to_cluster`]).
pub(super) const ROUTE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The local IP the kernel would send from to reach the first join target that resolves
/// (a connected UDP socket sends nothing), not loopback: on a multi-homed host or container
/// (a Swarm task with a published port has the ingress network first, its stack's network
/// after) that is the address members can reach. Waits [`ROUTE_WAIT`] at most for a target
/// to resolve; `None` then, or without targets.
pub(super) async fn route_to_cluster(config: &AgentConfig, resolver: &Resolver) -> Option<IpAddr> {
    if config.join.is_empty() || config.advertise_ip.is_some() || !config.bind.ip().is_unspecified()
    {
        return None;
    }
    let find = async {
        let mut backoff = std::time::Duration::from_millis(100);
        loop {
            for addr in resolver.resolve_all(&config.join).await {
                let any: std::net::SocketAddr = if addr.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let Ok(s) = std::net::UdpSocket::bind(any) else {
                    continue;
                };
                if s.connect(addr).is_ok()
                    && let Ok(local) = s.local_addr()
                    && !local.ip().is_loopback()
                    && !local.ip().is_unspecified()
                {
                    return local.ip();
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
        }
    };
    match tokio::time::timeout(ROUTE_WAIT, find).await {
        Ok(ip) => {
            tracing::debug!(%ip, "advertising the address that routes to the join targets");
            Some(ip)
        }
        Err(_) => {
            tracing::warn!(
                wait = ?ROUTE_WAIT,
                "no join target resolved at start: advertising the first interface's address"
            );
            None
        }
    }
}

/// The advertised IP: `--advertise`, else the bind IP unless unspecified, else the first
/// non-loopback IPv4 address of an interface that is up, else 127.0.0.1. (Before this,
/// [`route_to_cluster`] is asked when there are join targets.)
pub(super) fn advertise_ip(config: &AgentConfig) -> IpAddr {
    if let Some(ip) = config.advertise_ip {
        return ip;
    }
    if !config.bind.ip().is_unspecified() {
        return config.bind.ip();
    }
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let up = a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
            if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in())
                && up
                && !sin.ip().is_loopback()
            {
                return IpAddr::V4(sin.ip());
            }
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}
