//! The elastic demo where users already run containers (issue 26): Docker Compose
//! (`examples/elastic/docker-compose.yml`, scaled with `up -d --scale`), a one-node Swarm
//! (`examples/elastic/docker-stack.yml`: `docker service scale` and a rolling `docker service
//! update --force`), and sidecars beside unchanged images (`docker run --network
//! container:NAME`). Each runs under the same steady load as the demo's end-to-end test and
//! must lose no request; the reports go to `target/elastic-{compose,swarm,sidecar}.md`.
//!
//! Without a Docker engine each says SKIPPED and passes, unless `GOSSIP_REQUIRE_DOCKER=1`.
//! The Swarm test creates a one-node Swarm (`docker swarm init --advertise-addr 127.0.0.1`)
//! and leaves it at the end; when the engine is already part of a Swarm it did not create,
//! it says SKIPPED and touches nothing.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use elastic_demo::load::{Load, Sample, request, request_path};
use elastic_demo::{Demo, Variant, images};

const RATE: u32 = 300;
const WORKERS: usize = 12;
/// Requests each scenario must see, at least.
const REQUESTS_MIN: usize = 3000;

/// The Docker tests of this file share the engine: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn log(s: &str) {
    eprintln!("[orchestrators] {s}");
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Runs `scenario` with the images built, on a runtime of its own; SKIPPED without Docker.
fn with_docker<F, Fut>(name: &str, report: &str, scenario: F)
where
    F: FnOnce(Demo) -> Fut,
    Fut: std::future::Future<Output = Option<String>> + Send + 'static,
{
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let run = format!("{name}-{}", std::process::id());
    let Some(demo) = rt.block_on(Demo::connect_or_skip(&run)) else {
        return;
    };
    let demo = demo.with_variant(Variant::Agent);
    let target = images::workspace_dir().join("target/elastic-demo");
    let agent = images::agent_binary(&target, &log).expect("agent binary");
    rt.block_on(images::ensure(demo.docker(), &agent, Variant::Agent, &log))
        .expect("images");
    let outcome = rt.block_on(async move { tokio::spawn(scenario(demo)).await });
    match outcome {
        Ok(Some(text)) => {
            println!("{text}");
            let _ = std::fs::write(images::workspace_dir().join(report), &text);
        }
        Ok(None) => {}
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("scenario task: {e}"),
    }
}

/// Runs a command (at most 5 minutes); its stdout, or its exit and stderr as the error.
async fn cmd(program: &str, args: &[&str], env: &[(&str, String)]) -> Result<String, String> {
    let mut c = tokio::process::Command::new(program);
    c.args(args)
        .current_dir(images::workspace_dir())
        .kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(300), c.output())
        .await
        .map_err(|_| format!("{program} {args:?}: no end in 5 minutes"))?
        .map_err(|e| format!("{program} {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A TCP port free on 127.0.0.1 now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Asks through the proxy until `apps` distinct appservers and `fronts` distinct
/// frontservers answered (each answer names both), or the deadline; when each new one first
/// answered.
async fn answers(
    proxy: SocketAddr,
    fronts: usize,
    apps: usize,
    limit: Duration,
) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
    let deadline = Instant::now() + limit;
    let (mut f, mut a) = (BTreeSet::new(), BTreeSet::new());
    while Instant::now() < deadline {
        if let Some((front, app)) = request(proxy).await.answer {
            f.insert(front);
            a.insert(app);
            if f.len() >= fronts && a.len() >= apps {
                return Ok((f, a));
            }
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Err(format!(
        "after {limit:?}: frontservers {f:?}, appservers {a:?} (wanted {fronts} and {apps})"
    ))
}

/// Asks through the proxy until `streak` answers in a row were 200s (a just-deployed proxy
/// reloads nginx as its first upstreams arrive; connections that an old worker still took
/// then get the placeholder's 502: that is the deployment settling, not scaling).
async fn steady(
    proxy: SocketAddr,
    path: &str,
    streak: usize,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut run = 0;
    while Instant::now() < deadline {
        if request_path(proxy, path).await.status == 200 {
            run += 1;
            if run >= streak {
                return Ok(());
            }
        } else {
            run = 0;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Err(format!("no {streak} answers in a row within {limit:?}"))
}

/// Keeps the load on until it has made at least [`REQUESTS_MIN`] requests (at [`RATE`] a
/// second from `started`) and at least `tail` more, then returns every sample.
async fn finish(load: Load, started: Instant, tail: Duration) -> Vec<Sample> {
    let needed = Duration::from_secs_f64(REQUESTS_MIN as f64 / f64::from(RATE) * 1.1);
    let until = (started + needed).max(Instant::now() + tail);
    tokio::time::sleep_until(until.into()).await;
    load.finish().await
}

/// The load's verdict: requests, failures (listed), and when each appserver first and last
/// answered, relative to `t0`.
fn summary(samples: &[Sample], t0: Instant, out: &mut String) -> usize {
    let failed: Vec<&Sample> = samples.iter().filter(|s| !s.ok()).collect();
    let _ = writeln!(
        out,
        "| requests | {} |\n| failed | {} |",
        samples.len(),
        failed.len()
    );
    for s in failed.iter().take(10) {
        let _ = writeln!(
            out,
            "| failure at {} | {} |",
            ms(s.start.saturating_duration_since(t0)),
            s.error.clone().unwrap_or_default()
        );
    }
    failed.len()
}

/// When each appserver first and last answered (from `t0`), sorted by first answer.
fn spans(samples: &[Sample], t0: Instant) -> Vec<(String, Duration, Duration)> {
    let mut by: std::collections::BTreeMap<String, (Instant, Instant)> = Default::default();
    for s in samples.iter().filter(|s| s.ok()) {
        let app = s.answer.as_ref().map(|a| a.1.clone()).unwrap_or_default();
        let e = by.entry(app).or_insert((s.start, s.start));
        e.0 = e.0.min(s.start);
        e.1 = e.1.max(s.start);
    }
    let mut v: Vec<_> = by
        .into_iter()
        .map(|(k, (a, b))| {
            (
                k,
                a.saturating_duration_since(t0),
                b.saturating_duration_since(t0),
            )
        })
        .collect();
    v.sort_by_key(|x| x.1);
    v
}

#[test]
fn compose_scales_up_and_down_under_load() {
    with_docker(
        "gd-compose",
        "target/elastic-compose.md",
        |_demo| async move {
            let project = format!("gd-compose-{}", std::process::id());
            let port = free_port();
            // A subnet of its own per run (the file's default, moved), so runs never collide.
            let octet = 20 + std::process::id() % 200;
            let env = vec![
                ("GOSSIP_COMPOSE_PORT", port.to_string()),
                ("GOSSIP_COMPOSE_SUBNET", format!("10.197.{octet}.0/24")),
                ("GOSSIP_COMPOSE_DNS", format!("10.197.{octet}.2")),
            ];
            let file = "examples/elastic/docker-compose.yml";
            let compose = |args: Vec<&'static str>| {
                let env = env.clone();
                let project = project.clone();
                async move {
                    let mut all = vec!["-p", project.as_str(), "-f", file];
                    all.extend(args);
                    cmd("docker-compose", &all, &env).await
                }
            };
            let result = async {
            compose(vec!["up", "-d"]).await?;
            let proxy = SocketAddr::from(([127, 0, 0, 1], port));
            answers(proxy, 1, 1, Duration::from_secs(90)).await?;
            steady(proxy, "/hello", 100, Duration::from_secs(30)).await?;
            let t0 = Instant::now();
            let load = Load::start(proxy, RATE, WORKERS);
            tokio::time::sleep(Duration::from_secs(2)).await;
            let up = Instant::now();
            compose(vec![
                "up", "-d", "--scale", "appserver=4", "--scale", "frontserver=2",
            ])
            .await?;
            answers(proxy, 2, 4, Duration::from_secs(60)).await?;
            let up_done = up.elapsed();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let down = Instant::now();
            compose(vec![
                "up", "-d", "--scale", "appserver=1", "--scale", "frontserver=1",
            ])
            .await?;
            let down_done = down.elapsed();
            let samples = finish(load, t0, Duration::from_secs(2)).await;
            let mut out = String::from("# Compose: scale 1 -> 4 appservers, 1 -> 2 frontservers, and back, under load\n\n");
            let _ = writeln!(out, "`docker-compose -f {file}` (1.29), {RATE} requests/s through the proxy, a new connection each.\n\n| | |\n|---|---|");
            let _ = writeln!(out, "| scale up: every new member answered after | {} |", ms(up_done));
            let _ = writeln!(out, "| scale down: `up -d --scale ...=1` returned after (containers stopped) | {} |", ms(down_done));
            let failed = summary(&samples, t0, &mut out);
            out.push_str("\n| appserver (container) | first answer, from `up --scale =4` | last answer, from `up --scale =1` |\n|---|---|---|\n");
            let end = samples.last().map_or(t0, |s| s.start).saturating_duration_since(t0);
            for (app, first, last) in spans(&samples, t0) {
                let f = if first > up - t0 { ms(first - (up - t0)) } else { "(before)".into() };
                // Those removed stopped answering well before the end.
                let l = if last + Duration::from_secs(1) < end {
                    ms(last.saturating_sub(down - t0))
                } else {
                    "(kept)".into()
                };
                let _ = writeln!(out, "| {app} | {f} | {l} |");
            }
            Ok::<_, String>((out, failed, samples.len()))
        }
        .await;
            let cleanup = compose(vec!["down", "-v", "--remove-orphans", "-t", "15"]).await;
            let (out, failed, n) = result.unwrap_or_else(|e| panic!("compose: {e}"));
            cleanup.expect("docker-compose down");
            assert_eq!(failed, 0, "{out}");
            assert!(n >= REQUESTS_MIN, "{n} requests\n{out}");
            Some(out)
        },
    );
}

/// Follows a container's log (the agent logs to stderr) until it ends; the agent's line
/// saying it leaves the cluster, if one came.
async fn leave_line(id: String) -> Option<String> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new("docker")
        .args(["logs", "-f", "--since", "1s", &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take()?).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("leaving the cluster") {
                return Some(l);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let _ = child.kill().await;
    found
}

/// Seconds since midnight UTC of `t`.
fn secs_of_day(t: std::time::SystemTime) -> f64 {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_nanos()) / 1e9
}

/// Seconds since midnight UTC of a log line's timestamp (`2026-12-07T10:32:54.281171Z ...`).
fn log_secs_of_day(line: &str) -> Option<f64> {
    let time = line
        .split_whitespace()
        .next()?
        .split_once('T')?
        .1
        .strip_suffix('Z')?;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Swarm's state on this engine: `inactive`, `active`, `pending`, ...
async fn swarm_state() -> Result<String, String> {
    Ok(cmd(
        "docker",
        &["info", "--format", "{{.Swarm.LocalNodeState}}"],
        &[],
    )
    .await?
    .trim()
    .to_string())
}

/// Every alive appserver as `agent`'s container lists them.
async fn alive_appservers(container: &str) -> Result<usize, String> {
    let out = cmd(
        "docker",
        &[
            "exec",
            container,
            "gossip-agent",
            "members",
            "--role",
            "appserver",
            "--status",
            "alive",
        ],
        &[],
    )
    .await?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
}

/// The running containers of a stack's service.
async fn task_containers(stack: &str, service: &str) -> Result<Vec<String>, String> {
    let out = cmd(
        "docker",
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={stack}_{service}"),
        ],
        &[],
    )
    .await?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Polls every frontserver's agent until each lists `n` alive appservers; how long it took.
async fn fronts_list(stack: &str, n: usize, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let fronts = task_containers(stack, "frontserver").await?;
        let mut all = !fronts.is_empty();
        for f in &fronts {
            all &= alive_appservers(f).await.unwrap_or(0) == n;
        }
        if all {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(format!("frontservers never listed {n} appservers"));
        }
    }
}

#[test]
fn swarm_scales_and_rolls_under_load() {
    with_docker("gd-swarm", "target/elastic-swarm.md", |_demo| async move {
        let state = swarm_state().await.expect("docker info");
        if state != "inactive" {
            eprintln!(
                "SKIPPED: this engine is already in a Swarm ({state}) that this test did not create; it touches none"
            );
            return None;
        }
        cmd(
            "docker",
            &["swarm", "init", "--advertise-addr", "127.0.0.1"],
            &[],
        )
        .await
        .expect("docker swarm init");
        let stack = format!("gds{}", std::process::id());
        let port = free_port();
        let env = vec![("GOSSIP_STACK_PORT", port.to_string())];
        let file = "examples/elastic/docker-stack.yml";
        let result = async {
            cmd(
                "docker",
                &["stack", "deploy", "--resolve-image", "never", "-c", file, &stack],
                &env,
            )
            .await?;
            let proxy = SocketAddr::from(([127, 0, 0, 1], port));
            answers(proxy, 1, 1, Duration::from_secs(120)).await?;
            steady(proxy, "/hello", 100, Duration::from_secs(30)).await?;
            let t0 = Instant::now();
            let load = Load::start(proxy, RATE, WORKERS);
            tokio::time::sleep(Duration::from_secs(2)).await;
            let service = format!("{stack}_appserver");
            let up = Instant::now();
            cmd("docker", &["service", "scale", "--detach=false", &format!("{service}=5")], &[]).await?;
            answers(proxy, 1, 5, Duration::from_secs(90)).await?;
            let up_done = up.elapsed();
            tokio::time::sleep(Duration::from_secs(2)).await;
            // Every frontserver's view is polled while Swarm stops the tasks: a stopped task's
            // agent leaves first, then drains, then stops its service.
            // Follow each task's log from now: Swarm removes the containers of the slots it
            // scales away, and their agents' log says when each got its SIGTERM.
            let mut follows = std::collections::BTreeMap::new();
            for id in task_containers(&stack, "appserver").await? {
                let short: String = id.chars().take(12).collect();
                follows.insert(short, tokio::spawn(leave_line(id)));
            }
            let down = Instant::now();
            let down_wall = std::time::SystemTime::now();
            let poll = {
                let stack = stack.clone();
                tokio::spawn(async move { fronts_list(&stack, 1, Duration::from_secs(60)).await })
            };
            cmd("docker", &["service", "scale", "--detach=false", &format!("{service}=1")], &[]).await?;
            let scaled_down = down.elapsed();
            let down_done = poll.await.map_err(|e| e.to_string())??;
            let roll = Instant::now();
            cmd("docker", &["service", "update", "--force", "--detach=false", &service], &[]).await?;
            let rolled = roll.elapsed();
            let samples = finish(load, t0, Duration::from_secs(3)).await;
            let mut out = String::from("# Swarm: scale 1 -> 5 appservers and back, then a rolling update, under load\n\n");
            let _ = writeln!(out, "`docker stack deploy -c {file}` on a one-node Swarm, {RATE} requests/s through the proxy's port (published in host mode), a new connection each.\n\n| | |\n|---|---|");
            let _ = writeln!(out, "| `service scale =5`: every new task answered after | {} |", ms(up_done));
            let _ = writeln!(out, "| `service scale =1` returned after (4 tasks stopped: SIGTERM, leave, drain) | {} |", ms(scaled_down));
            let _ = writeln!(out, "| from `scale =1` until every frontserver's agent listed 1 appserver (polled with `docker exec`, ~100 ms a poll) | {} |", ms(down_done));
            let _ = writeln!(out, "| `service update --force` (start-first, each new task healthy before the old one stops) took | {} |", ms(rolled));
            let failed = summary(&samples, t0, &mut out);
            out.push_str("\n| appserver task (container) | first answer, from `scale =5` | its agent got SIGTERM, from `scale =1` | its last answer, from that SIGTERM |\n|---|---|---|---|\n");
            let end = samples.last().map_or(t0, |s| s.start).saturating_duration_since(t0);
            let down_s = secs_of_day(down_wall);
            for (app, first, last) in spans(&samples, t0) {
                let f = if first > up - t0 { ms(first - (up - t0)) } else { "(before)".into() };
                if last + Duration::from_secs(1) >= end {
                    let _ = writeln!(out, "| {app} | {f} | (kept) | |");
                    continue;
                }
                // The agent's own log says when the SIGTERM came (Swarm decides when).
                let term = match follows.remove(&app) {
                    Some(f) => tokio::time::timeout(Duration::from_secs(5), f)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten()
                        .as_deref()
                        .and_then(log_secs_of_day),
                    None => None,
                };
                match term {
                    Some(t) => {
                        let term_from_down = t - down_s;
                        let last_from_down = (last.as_secs_f64() - (down - t0).as_secs_f64()) * 1000.0;
                        let _ = writeln!(out, "| {app} | {f} | {:.0} ms | {:.0} ms |", term_from_down * 1000.0, last_from_down - term_from_down * 1000.0);
                    }
                    None => {
                        let _ = writeln!(out, "| {app} | {f} | (no log) | |");
                    }
                }
            }
            Ok::<_, String>((out, failed, samples.len()))
        }
        .await;
        let removed = cmd("docker", &["stack", "rm", &stack], &[]).await;
        // The stack's network goes once its tasks are gone; leave the Swarm this test made.
        let gone = async {
            for _ in 0..120 {
                let left = cmd(
                    "docker",
                    &[
                        "ps",
                        "-q",
                        "--filter",
                        &format!("label=com.docker.stack.namespace={stack}"),
                    ],
                    &[],
                )
                .await
                .unwrap_or_default();
                if left.trim().is_empty() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            false
        }
        .await;
        let left = cmd("docker", &["swarm", "leave", "--force"], &[]).await;
        let (out, failed, n) = result.unwrap_or_else(|e| panic!("swarm: {e}"));
        removed.expect("docker stack rm");
        assert!(gone, "the stack's containers are still there");
        left.expect("docker swarm leave");
        assert_eq!(failed, 0, "{out}");
        assert!(n >= REQUESTS_MIN, "{n} requests\n{out}");
        Some(out)
    });
}

/// One stock nginx container (Debian's package, no agent in the image) and its sidecar.
async fn web_pair(run: &str, net: &str, n: u32) -> Result<(), String> {
    let web = format!("{run}-web{n}");
    cmd(
        "docker",
        &[
            "run",
            "-d",
            "--name",
            &web,
            "--network",
            net,
            "--label",
            &format!("gossip-demo={run}"),
            images::STOCK_IMAGE,
            "nginx",
            "-g",
            "daemon off;",
        ],
        &[],
    )
    .await?;
    sidecar(
        run,
        &web,
        &format!("web{n}"),
        &[
            "--role",
            "web",
            "--tag",
            "port=80",
            "--ready",
            "http://127.0.0.1:80/",
            "--health",
            "http://127.0.0.1:80/",
        ],
    )
    .await
}

/// The agent in a container of its own, in `service`'s network namespace.
async fn sidecar(run: &str, service: &str, node: &str, flags: &[&str]) -> Result<(), String> {
    let name = format!("{service}-agent");
    let ns = format!("container:{service}");
    let label = format!("gossip-demo={run}");
    let image = images::role_image(images::SIDECAR);
    let mut args = vec![
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &ns,
        "--label",
        &label,
        "--stop-timeout",
        "15",
        &image,
        "--node",
        node,
        "--join",
        "dnsserver",
    ];
    args.extend(flags);
    cmd("docker", &args, &[]).await.map(|_| ())
}

/// The proxy's upstream file, as its agent wrote it.
async fn upstream(proxy: &str) -> String {
    cmd(
        "docker",
        &[
            "exec",
            proxy,
            "cat",
            "/etc/nginx/upstreams/frontservers.conf",
        ],
        &[],
    )
    .await
    .unwrap_or_default()
}

async fn wait_servers(proxy: &str, n: usize, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let text = upstream(proxy).await;
        let servers = text
            .lines()
            .filter(|l| l.contains("server ") && !l.contains("down;"))
            .count();
        if servers == n {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(format!(
                "the proxy's upstream never had {n} servers:\n{text}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn sidecars_beside_stock_images_follow_scaling_under_load() {
    with_docker(
        "gd-sidecar",
        "target/elastic-sidecar.md",
        |_demo| async move {
            let run = format!("gd-sidecar-{}", std::process::id());
            let net = format!("{run}-net");
            let label = format!("gossip-demo={run}");
            let port = free_port();
            let toml = images::workspace_dir().join("examples/elastic/sidecar/proxy.toml");
            let result = async {
            cmd("docker", &["network", "create", "--label", &label, &net], &[]).await?;
            cmd("docker", &["run", "-d", "--name", &format!("{run}-dnsserver"), "--network", &net, "--network-alias", "dnsserver", "--label", &label, "--stop-timeout", "15", &images::role_image("dnsserver")], &[]).await?;
            let proxy = format!("{run}-proxy");
            cmd("docker", &["run", "-d", "--name", &proxy, "--network", &net, "--label", &label, "--stop-timeout", "15",
                "-v", &format!("{}:/etc/gossip-agent.toml:ro", toml.display()),
                "-p", &format!("127.0.0.1:{port}:80"), &images::role_image("proxyserver")], &[]).await?;
            web_pair(&run, &net, 1).await?;
            // A stock redis-server with its sidecar: reachable as cache.gossip.
            let cache = format!("{run}-cache1");
            cmd("docker", &["run", "-d", "--name", &cache, "--network", &net, "--label", &label, images::STOCK_IMAGE, "redis-server", "--protected-mode", "no", "--save", ""], &[]).await?;
            sidecar(&run, &cache, "cache1", &["--role", "cache", "--tag", "port=6379", "--health", "tcp://127.0.0.1:6379"]).await?;
            wait_servers(&proxy, 1, Duration::from_secs(60)).await?;
            let target = SocketAddr::from(([127, 0, 0, 1], port));
            steady(target, "/", 100, Duration::from_secs(30)).await?;
            let t0 = Instant::now();
            let load = Load::start_path(target, "/", RATE, WORKERS);
            tokio::time::sleep(Duration::from_secs(2)).await;
            let up = Instant::now();
            web_pair(&run, &net, 2).await?;
            web_pair(&run, &net, 3).await?;
            wait_servers(&proxy, 3, Duration::from_secs(60)).await?;
            let up_done = up.elapsed();
            tokio::time::sleep(Duration::from_secs(2)).await;
            // Scale down: each sidecar is stopped first (it leaves, then waits until no
            // connection reaches nginx any more), then its nginx.
            let down = Instant::now();
            for n in [3, 2] {
                cmd("docker", &["stop", "-t", "15", &format!("{run}-web{n}-agent")], &[]).await?;
                cmd("docker", &["stop", "-t", "15", &format!("{run}-web{n}")], &[]).await?;
            }
            let down_done = down.elapsed();
            let servers = wait_servers(&proxy, 1, Duration::from_secs(30)).await;
            // The cache is known by name to every member.
            let dns_ip = cmd("docker", &["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &format!("{run}-dnsserver")], &[]).await?;
            let cache_ip = cmd("docker", &["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &cache], &[]).await?;
            let dig = cmd("dig", &["+short", "+tries=1", "+time=2", &format!("@{}", dns_ip.trim()), "cache.gossip", "A"], &[]).await?;
            let samples = finish(load, t0, Duration::from_secs(2)).await;
            let failed: Vec<&Sample> = samples.iter().filter(|s| s.status != 200).collect();
            let mut out = String::from("# Sidecars beside stock images: nginx 1 -> 3 and back, under load\n\n");
            let _ = writeln!(out, "Debian's nginx and redis-server in `{}` (no agent inside), each with `gossip-agent` in its own container (`{}`, from scratch) in its network namespace; {RATE} requests/s through the proxy (nginx's own welcome page).\n\n| | |\n|---|---|", images::STOCK_IMAGE, images::role_image(images::SIDECAR));
            let _ = writeln!(out, "| two pairs started; the proxy's upstream listed them after | {} |", ms(up_done));
            let _ = writeln!(out, "| two pairs stopped, sidecar first (leave, drain), then nginx | {} |", ms(down_done));
            let _ = writeln!(out, "| `cache.gossip` (the redis sidecar's name) | {} (the container: {}) |", dig.trim(), cache_ip.trim());
            let _ = writeln!(out, "| requests | {} |\n| failed | {} |", samples.len(), failed.len());
            for s in failed.iter().take(10) {
                let _ = writeln!(out, "| failure at {} | status {}: {} |", ms(s.start.saturating_duration_since(t0)), s.status, s.error.clone().unwrap_or_default());
            }
            servers?;
            if dig.trim() != cache_ip.trim() {
                return Err(format!("cache.gossip: {dig:?}, expected {cache_ip:?}\n{out}"));
            }
            Ok::<_, String>((out, failed.len(), samples.len()))
        }
        .await;
            // Everything this test started carries its label.
            let ids = cmd(
                "docker",
                &["ps", "-aq", "--filter", &format!("label={label}")],
                &[],
            )
            .await
            .unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(&ids);
                let _ = cmd("docker", &args, &[]).await;
            }
            let _ = cmd("docker", &["network", "rm", &net], &[]).await;
            let (out, failed, n) = result.unwrap_or_else(|e| panic!("sidecar: {e}"));
            assert_eq!(failed, 0, "{out}");
            assert!(n >= REQUESTS_MIN, "{n} requests\n{out}");
            Some(out)
        },
    );
}

#[test]
fn the_compose_and_stack_files_name_only_images_the_demo_builds() {
    let built: BTreeSet<String> = images::variant_images(Variant::Agent)
        .into_iter()
        .map(|i| i.1)
        .chain([images::STOCK_IMAGE.to_string()])
        .collect();
    for file in [
        "examples/elastic/docker-compose.yml",
        "examples/elastic/docker-stack.yml",
        "examples/elastic/sidecar/docker-compose.yml",
    ] {
        let text = std::fs::read_to_string(images::workspace_dir().join(file)).unwrap();
        let named: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("image: "))
            .collect();
        assert!(!named.is_empty(), "{file}");
        for image in named {
            assert!(
                built.contains(image),
                "{file}: {image} is not built by the demo"
            );
        }
        assert!(Path::new(&images::workspace_dir().join(file)).exists());
    }
}
