//! Join target resolution: IP literals as they are, names through hickory-resolver (hosts
//! file first, then DNS) to every address they have. Cached answers live at most a second, so
//! a retry sees members that registered in DNS meanwhile.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, ResolveHosts};

use crate::config::JoinTarget;

/// Resolves join targets. The DNS resolver is built on the first name to resolve, so an
/// agent that joins by address never loads it (less code and memory resident).
pub struct Resolver {
    inner: std::sync::OnceLock<Option<TokioResolver>>,
}

impl Resolver {
    /// A resolver using the system's configuration once needed; it falls back to the C
    /// library's resolver when that configuration cannot be read.
    pub fn new() -> Self {
        Self {
            inner: std::sync::OnceLock::new(),
        }
    }

    fn dns(&self) -> Option<&TokioResolver> {
        self.inner.get_or_init(build).as_ref()
    }

    /// Every address of `target`.
    pub async fn resolve(&self, target: &JoinTarget) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, target.port)]);
        }
        let mut out: Vec<SocketAddr> = match self.dns() {
            Some(r) => r
                .lookup_ip(target.host.as_str())
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .map(|ip| SocketAddr::new(ip, target.port))
                .collect(),
            None => tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .map_err(|e| e.to_string())?
                .collect(),
        };
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err("no address".into());
        }
        Ok(out)
    }

    /// Every address of every target; failures are logged and skipped.
    pub async fn resolve_all(&self, targets: &[JoinTarget]) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for t in targets {
            match self.resolve(t).await {
                Ok(a) => out.extend(a),
                Err(e) => tracing::info!(target = %t, error = %e, "cannot resolve join target yet"),
            }
        }
        out
    }
}

fn build() -> Option<TokioResolver> {
    match TokioResolver::builder_tokio() {
        Ok(mut b) => {
            let o = b.options_mut();
            o.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
            o.use_hosts_file = ResolveHosts::Always;
            o.positive_max_ttl = Some(Duration::from_secs(1));
            o.negative_max_ttl = Some(Duration::from_secs(1));
            o.timeout = Duration::from_secs(2);
            o.attempts = 1;
            match b.build() {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot build DNS resolver; using the system's");
                    None
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read resolver configuration; using the system's");
            None
        }
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}
