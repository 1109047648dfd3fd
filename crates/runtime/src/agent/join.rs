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

/// The advertised IP: `--advertise`, else the bind IP unless unspecified, else the first
/// non-loopback IPv4 address of an interface that is up, else 127.0.0.1.
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
