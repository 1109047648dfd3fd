//! The elastic demo's driver library: builds the images with no registry (a Debian base made by
//! `debootstrap` and imported, then one image per role with our binary in it), and starts,
//! scales, inspects and removes the demo's containers through the Docker API (bollard).
//!
//! Everything a [`Demo`] creates carries the label `gossip-demo=<run>`, so [`Demo::down`]
//! removes exactly that, also after a crash of the driver.

pub mod images;
pub mod load;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, ListNetworksOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;

/// What can go wrong while driving the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The Docker API refused or failed.
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    /// A local command or file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A program the demo needs on the host is missing and could not be installed.
    #[error(transparent)]
    Missing(#[from] gossip_testkit::host::Missing),
    /// Anything else, said in words.
    #[error("{0}")]
    Other(String),
}

impl DemoError {
    /// The process exit code for this error: 2 when the host lacks a program, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Missing(_) => 2,
            _ => 1,
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, DemoError>;

/// The four roles.
pub const ROLES: [&str; 4] = ["dnsserver", "proxyserver", "frontserver", "appserver"];

/// Seconds `docker stop` waits before it kills: the agent leaves, drains (at most 5 s) and
/// stops its service (at most 5 s) before that.
pub const STOP_TIMEOUT_SECS: i32 = 15;

/// Which images run the roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// gossip-agent with its built-in writers and service supervision (`images/`).
    #[default]
    Agent,
    /// The original demo's flow: `serf agent` with Serf-contract shell scripts, our binary
    /// installed as `serf` (`images-serf/`); containers resolve names through the dnsserver.
    SerfScripts,
}

/// One demo deployment: a network and the containers on it.
#[derive(Clone)]
pub struct Demo {
    docker: Docker,
    /// The run's name: labels, the network name and container names derive from it.
    pub run: String,
    /// The images it runs.
    pub variant: Variant,
    /// Extra environment for every container (`K=V`).
    pub env: Vec<String>,
    /// The network's subnet, when fixed (needed to reconnect a container at its address).
    pub subnet: Option<String>,
}

impl Demo {
    /// For tests: [`Demo::connect`], or `None` after a `SKIPPED` line when no engine answers;
    /// with `GOSSIP_REQUIRE_DOCKER=1` (CI) a missing engine panics instead.
    pub async fn connect_or_skip(run: &str) -> Option<Self> {
        match Self::connect(run).await {
            Ok(d) => Some(d),
            Err(e) => {
                let required = std::env::var("GOSSIP_REQUIRE_DOCKER").is_ok_and(|v| v == "1");
                assert!(
                    !required,
                    "no Docker engine ({e}) and GOSSIP_REQUIRE_DOCKER=1"
                );
                eprintln!(
                    "SKIPPED: no Docker engine here ({e}); set GOSSIP_REQUIRE_DOCKER=1 to fail instead"
                );
                None
            }
        }
    }

    /// Connects to the local Docker engine (negotiating the API version) for run `run`.
    pub async fn connect(run: &str) -> Result<Self> {
        let docker = Docker::connect_with_local_defaults()?
            .negotiate_version()
            .await?;
        docker.ping().await?;
        Ok(Self {
            docker,
            run: run.to_string(),
            variant: Variant::Agent,
            env: Vec::new(),
            subnet: None,
        })
    }

    /// The same deployment with `K=V` in every container's environment.
    pub fn with_env(mut self, env: &[&str]) -> Self {
        self.env = env.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The same deployment on a network with this subnet (CIDR).
    pub fn with_subnet(mut self, subnet: &str) -> Self {
        self.subnet = Some(subnet.to_string());
        self
    }

    /// `docker network disconnect`: the container loses its interface on the network.
    pub async fn disconnect(&self, host: &str) -> Result<()> {
        self.docker
            .disconnect_network(
                &self.network(),
                NetworkDisconnectRequest {
                    container: Some(self.container(host)),
                    force: Some(true),
                },
            )
            .await?;
        Ok(())
    }

    /// `docker network connect --ip IP`: the container is back, at the address it had.
    pub async fn reconnect(&self, host: &str, ip: Ipv4Addr) -> Result<()> {
        self.docker
            .connect_network(
                &self.network(),
                NetworkConnectRequest {
                    container: Some(self.container(host)),
                    endpoint_config: Some(EndpointSettings {
                        aliases: Some(vec![host.to_string()]),
                        ipam_config: Some(EndpointIpamConfig {
                            ipv4_address: Some(ip.to_string()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                },
            )
            .await?;
        Ok(())
    }

    /// The same deployment run with `variant`'s images.
    pub fn with_variant(mut self, variant: Variant) -> Self {
        self.variant = variant;
        self
    }

    /// The Docker client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The network's name.
    pub fn network(&self) -> String {
        format!("{}-net", self.run)
    }

    /// The container name of host `host` (e.g. `appserver2`).
    pub fn container(&self, host: &str) -> String {
        format!("{}-{host}", self.run)
    }

    /// The Docker API filter selecting what this run created.
    fn label_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_string(),
            vec![format!("gossip-demo={}", self.run)],
        )])
    }

    fn label(&self) -> HashMap<String, String> {
        HashMap::from([("gossip-demo".to_string(), self.run.clone())])
    }

    /// Creates the network (if absent) and starts dnsserver, proxyserver, frontserver1 and
    /// appserver1.
    pub async fn up(&self) -> Result<()> {
        self.ensure_network().await?;
        for host in ["dnsserver", "proxyserver", "frontserver1", "appserver1"] {
            if !self.hosts().await?.contains_key(host) {
                self.start(host).await?;
            }
        }
        Ok(())
    }

    async fn ensure_network(&self) -> Result<()> {
        let name = self.network();
        let existing = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(HashMap::from([("name".to_string(), vec![name.clone()])])),
            }))
            .await?;
        if existing.iter().any(|n| n.name.as_deref() == Some(&name)) {
            return Ok(());
        }
        self.docker
            .create_network(NetworkCreateRequest {
                name,
                driver: Some("bridge".into()),
                labels: Some(self.label()),
                ipam: self.subnet.as_ref().map(|s| Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(s.clone()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Starts host `host`; its role is the host name without the trailing digits.
    pub async fn start(&self, host: &str) -> Result<()> {
        let role = role_of(host);
        if !ROLES.contains(&role) {
            return Err(DemoError::Other(format!("{host}: no such role {role:?}")));
        }
        let mut labels = self.label();
        labels.insert("gossip-demo.host".into(), host.into());
        labels.insert("gossip-demo.role".into(), role.into());
        let network = self.network();
        let (image, dns) = match self.variant {
            // Every container asks the dnsserver's agent for the cluster's names (through
            // Docker's embedded DNS, which answers container names itself).
            Variant::Agent if role != "dnsserver" => (
                images::role_image(role),
                Some(vec![self.ip("dnsserver").await?.to_string()]),
            ),
            Variant::Agent => (images::role_image(role), None),
            // As in the original: every container asks the dnsserver for names.
            Variant::SerfScripts if role != "dnsserver" => (
                images::serf_role_image(role),
                Some(vec![self.ip("dnsserver").await?.to_string()]),
            ),
            Variant::SerfScripts => (images::serf_role_image(role), None),
        };
        let body = ContainerCreateBody {
            image: Some(image),
            env: (!self.env.is_empty()).then(|| self.env.clone()),
            hostname: Some(host.into()),
            labels: Some(labels),
            stop_timeout: Some(STOP_TIMEOUT_SECS as i64),
            host_config: Some(HostConfig {
                network_mode: Some(network.clone()),
                // A bare role name resolves (`appserver`), through the agent's zone.
                dns_search: (self.variant == Variant::Agent && dns.is_some())
                    .then(|| vec!["gossip".to_string()]),
                dns,
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network,
                    EndpointSettings {
                        aliases: Some(vec![host.to_string()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let name = self.container(host);
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await?;
        self.docker
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await?;
        Ok(())
    }

    /// `docker stop`: SIGTERM, then SIGKILL after [`STOP_TIMEOUT_SECS`]; then removes it.
    pub async fn stop(&self, host: &str) -> Result<()> {
        let name = self.container(host);
        self.docker
            .stop_container(
                &name,
                Some(StopContainerOptions {
                    t: Some(STOP_TIMEOUT_SECS),
                    signal: None,
                }),
            )
            .await?;
        self.remove(host).await
    }

    /// `docker kill` (SIGKILL to the whole container); the container is kept for inspection
    /// until [`Demo::remove`] or [`Demo::down`].
    pub async fn kill(&self, host: &str) -> Result<()> {
        self.docker
            .kill_container(
                &self.container(host),
                Some(KillContainerOptions {
                    signal: "SIGKILL".into(),
                }),
            )
            .await?;
        Ok(())
    }

    /// Removes a container, running or not.
    pub async fn remove(&self, host: &str) -> Result<()> {
        self.docker
            .remove_container(
                &self.container(host),
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await?;
        Ok(())
    }

    /// The running containers of this run: host name to role.
    pub async fn hosts(&self) -> Result<HashMap<String, String>> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: false,
                filters: Some(self.label_filter()),
                ..Default::default()
            }))
            .await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels?;
                Some((
                    labels.get("gossip-demo.host")?.clone(),
                    labels.get("gossip-demo.role")?.clone(),
                ))
            })
            .collect())
    }

    /// Scales the appservers and frontservers to these counts: starts the missing ones
    /// (lowest free numbers), stops the highest-numbered extra ones, all stops at once (each
    /// `docker stop` waits for its node to leave and drain). Returns what it did.
    pub async fn scale(&self, app: usize, front: usize) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let mut to_stop = Vec::new();
        let hosts = self.hosts().await?;
        for (role, want) in [("frontserver", front), ("appserver", app)] {
            let mut have: Vec<u32> = hosts
                .keys()
                .filter(|h| role_of(h) == role)
                .filter_map(|h| h[role.len()..].parse().ok())
                .collect();
            have.sort_unstable();
            let mut n = 1;
            while have.len() < want {
                if !have.contains(&n) {
                    let host = format!("{role}{n}");
                    self.start(&host).await?;
                    done.push(format!("started {host}"));
                    have.push(n);
                }
                n += 1;
            }
            have.sort_unstable();
            while have.len() > want {
                let n = have.pop().expect("non-empty");
                to_stop.push(format!("{role}{n}"));
            }
        }
        let stops = to_stop.iter().map(|h| self.stop(h));
        for (host, r) in to_stop
            .iter()
            .zip(futures_util::future::join_all(stops).await)
        {
            r?;
            done.push(format!("stopped {host}"));
        }
        Ok(done)
    }

    /// The container's IPv4 address on the demo network.
    pub async fn ip(&self, host: &str) -> Result<Ipv4Addr> {
        let info = self
            .docker
            .inspect_container(
                &self.container(host),
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await?;
        let ip = info
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(&self.network()))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| DemoError::Other(format!("{host} has no address")))?;
        ip.parse()
            .map_err(|_| DemoError::Other(format!("{host}: bad address {ip:?}")))
    }

    /// Runs a command in a container; returns its exit code and output (stdout and stderr).
    pub async fn exec(&self, host: &str, cmd: &[&str]) -> Result<(i64, String)> {
        let exec = self
            .docker
            .create_exec(
                &self.container(host),
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.to_vec()),
                    ..Default::default()
                },
            )
            .await?;
        let mut out = String::new();
        if let StartExecResults::Attached { mut output, .. } =
            self.docker.start_exec(&exec.id, None).await?
        {
            while let Some(chunk) = output.next().await {
                out.push_str(&chunk?.to_string());
            }
        }
        let code = self
            .docker
            .inspect_exec(&exec.id)
            .await?
            .exit_code
            .unwrap_or(-1);
        Ok((code, out))
    }

    /// `curl -s localhost/hello` run `n` times inside the proxyserver, as in the original
    /// demo: the answers, one per line.
    pub async fn curl(&self, n: usize) -> Result<Vec<String>> {
        let script = format!(
            "for i in $(seq {n}); do curl -s --max-time 5 localhost/hello || echo FAILED; done"
        );
        let (_, out) = self.exec("proxyserver", &["sh", "-c", &script]).await?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// The members the given host's agent lists, as `(name, status, role)`.
    pub async fn members(&self, host: &str) -> Result<Vec<(String, String, String)>> {
        let (code, out) = self
            .exec(host, &["gossip-agent", "members", "--format", "json"])
            .await?;
        if code != 0 {
            return Err(DemoError::Other(format!("members on {host}: {out}")));
        }
        let v: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| DemoError::Other(format!("members on {host}: {e}: {out}")))?;
        let list = v["members"].as_array().cloned().unwrap_or_default();
        Ok(list
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or("").to_string(),
                    m["status"].as_str().unwrap_or("").to_string(),
                    m["tags"]["role"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect())
    }

    /// Waits until the proxy's answers cover exactly these frontservers and appservers (each
    /// seen at least once in a window of requests), at most `timeout`.
    pub async fn wait_for_answers(
        &self,
        fronts: &[&str],
        apps: &[&str],
        timeout: Duration,
    ) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let answers = self.curl(30).await?;
            let mut seen_f = std::collections::BTreeSet::new();
            let mut seen_a = std::collections::BTreeSet::new();
            let mut ok = true;
            for a in &answers {
                match parse_answer(a) {
                    Some((f, ap)) => {
                        seen_f.insert(f);
                        seen_a.insert(ap);
                    }
                    None => ok = false,
                }
            }
            let want_f: std::collections::BTreeSet<String> =
                fronts.iter().map(|s| s.to_string()).collect();
            let want_a: std::collections::BTreeSet<String> =
                apps.iter().map(|s| s.to_string()).collect();
            if ok && seen_f == want_f && seen_a == want_a {
                return Ok(answers);
            }
            if Instant::now() >= deadline {
                return Err(DemoError::Other(format!(
                    "after {timeout:?} the proxy answers from frontservers {seen_f:?} and appservers \
                     {seen_a:?} (wanted {want_f:?} and {want_a:?}); last answers: {answers:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Removes every container and the network of this run. Safe to call twice.
    pub async fn down(&self) -> Result<usize> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(self.label_filter()),
                ..Default::default()
            }))
            .await?;
        let n = list.len();
        for c in list {
            if let Some(id) = c.id {
                let _ = self
                    .docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        }),
                    )
                    .await;
            }
        }
        let nets = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(self.label_filter()),
            }))
            .await?;
        for net in nets {
            if let Some(id) = net.id {
                self.docker.remove_network(&id).await?;
            }
        }
        Ok(n)
    }
}

/// The role of a host name: `appserver12` is an `appserver`.
pub fn role_of(host: &str) -> &str {
    host.trim_end_matches(|c: char| c.is_ascii_digit())
}

/// `Hello frontserver1, I'm appserver2 !` gives `("frontserver1", "appserver2")`.
pub fn parse_answer(line: &str) -> Option<(String, String)> {
    let rest = line.trim_end().strip_prefix("Hello ")?;
    let (front, rest) = rest.split_once(", I'm ")?;
    let app = rest.strip_suffix(" !")?;
    Some((front.to_string(), app.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_roles_parse() {
        assert_eq!(
            parse_answer("Hello frontserver1, I'm appserver2 !\n"),
            Some(("frontserver1".into(), "appserver2".into()))
        );
        assert_eq!(parse_answer("<html>502</html>"), None);
        assert_eq!(role_of("appserver12"), "appserver");
        assert_eq!(role_of("dnsserver"), "dnsserver");
    }
}
