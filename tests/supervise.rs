//! `gossip-agent ... -- COMMAND`: the agent supervising its service, with real processes and
//! signals. Readiness gates the join, signals are forwarded, SIGTERM leaves before the service
//! is stopped, the service's exit makes the node leave, the health tag follows its check, and
//! as PID 1 (in a PID namespace, like a container) the agent reaps orphans.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::{Agent, BIN, free_port, free_tcp_port, logs, read, script, sees, wait_until};

/// A service that logs its life to `DIR/events`; on SIGTERM it records what the seed says of
/// its node (left already?) and exits 7.
fn service_script(dir: &Path, seed_rpc: std::net::SocketAddr) -> String {
    let d = dir.display();
    let path = dir.join("svc.sh");
    script(
        &path,
        &format!(
            "echo started >> {d}/events\n\
             trap 'echo hup >> {d}/events' HUP\n\
             trap '{BIN} members --rpc-addr {seed_rpc} --name svc --format json > {d}/at_stop; echo stopped >> {d}/events; exit 7' TERM\n\
             while [ ! -f {d}/quit ]; do sleep 0.05; done\n\
             exit 3"
        ),
    );
    path.display().to_string()
}

fn addrs() -> (std::net::SocketAddr, std::net::SocketAddr) {
    (
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap(),
    )
}

#[test]
fn joins_once_ready_forwards_signals_and_leaves_before_stopping_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let seed = crate::util::seed_agent("seed", dir.path(), &[]);
    let svc = service_script(dir.path(), seed.rpc);
    let (gossip, rpc) = addrs();
    let join = seed.gossip.to_string();
    let ready = format!("cmd:test -f {}/ready", dir.path().display());
    let agent = Agent::launch(
        "svc",
        gossip,
        rpc,
        &[
            "--join",
            &join,
            "--ready",
            &ready,
            "--drain-quiet",
            "100",
            "--",
            "/bin/sh",
            &svc,
        ],
        dir.path(),
    );
    let events = dir.path().join("events");
    wait_until(Duration::from_secs(10), || {
        read(&events).contains("started")
    })
    .unwrap_or_else(|| panic!("service never started\n{}", logs(&[&agent])));
    // Not ready: the node must not be a member. Look a few times over half a second.
    for _ in 0..5 {
        assert!(seed.member("svc").is_none(), "joined before ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(dir.path().join("ready"), "").unwrap();
    wait_until(Duration::from_secs(10), || sees(&seed, "svc", "alive"))
        .unwrap_or_else(|| panic!("never joined once ready\n{}", logs(&[&agent, &seed])));

    agent.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(5), || read(&events).contains("hup"))
        .unwrap_or_else(|| panic!("SIGHUP not forwarded\n{}", logs(&[&agent])));

    agent.signal(Signal::SIGTERM);
    let code = agent.wait_exit(Duration::from_secs(15));
    assert_eq!(
        code,
        Some(7),
        "exit code is the service's\n{}",
        logs(&[&agent])
    );
    assert!(read(&events).contains("stopped"));
    // When the service got its SIGTERM, the seed already listed the node as left.
    let at_stop = read(&dir.path().join("at_stop"));
    assert!(
        at_stop.contains("\"left\""),
        "at stop the seed said: {at_stop}"
    );
    let log = agent.log_text();
    let leave = log.find("leaving the cluster").expect("leave logged");
    let stop = log.find("stopping the service").expect("stop logged");
    assert!(leave < stop, "{log}");
}

#[test]
fn the_service_exiting_makes_the_node_leave_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let seed = crate::util::seed_agent("seed", dir.path(), &[]);
    let svc = service_script(dir.path(), seed.rpc);
    let (gossip, rpc) = addrs();
    let join = seed.gossip.to_string();
    let agent = Agent::start(
        "svc",
        gossip,
        rpc,
        &["--join", &join, "--", "/bin/sh", &svc],
        dir.path(),
    );
    wait_until(Duration::from_secs(10), || sees(&seed, "svc", "alive"))
        .unwrap_or_else(|| panic!("never joined\n{}", logs(&[&agent, &seed])));
    std::fs::write(dir.path().join("quit"), "").unwrap();
    wait_until(Duration::from_secs(10), || sees(&seed, "svc", "left")).unwrap_or_else(|| {
        panic!(
            "not left after the service exited\n{}",
            logs(&[&agent, &seed])
        )
    });
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(3));
}

#[test]
fn the_health_tag_follows_its_check() {
    health_tag_follows_its_check(&[]);
}

/// The supervisor sets the tag inside the agent, not through the control API: a token on
/// the API changes nothing (it used to answer 401 to the supervisor, leaving `critical`).
#[test]
fn the_health_tag_follows_its_check_with_a_control_api_token() {
    health_tag_follows_its_check(&["--rpc-token", "0123456789abcdef0123456789"]);
}

fn health_tag_follows_its_check(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let seed = crate::util::seed_agent("seed", dir.path(), &[]);
    let svc = service_script(dir.path(), seed.rpc);
    let (gossip, rpc) = addrs();
    let join = seed.gossip.to_string();
    let health = format!("cmd:test -f {}/healthy", dir.path().display());
    let mut args = vec![
        "--join",
        &join,
        "--health",
        &health,
        "--health-interval",
        "100",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "/bin/sh", &svc]);
    let agent = Agent::start("svc", gossip, rpc, &args, dir.path());
    let health_is = |v: &str| seed.member("svc").is_some_and(|m| m["tags"]["health"] == v);
    wait_until(Duration::from_secs(10), || health_is("critical"))
        .unwrap_or_else(|| panic!("not critical at first\n{}", logs(&[&agent, &seed])));
    std::fs::write(dir.path().join("healthy"), "").unwrap();
    wait_until(Duration::from_secs(10), || health_is("passing"))
        .unwrap_or_else(|| panic!("never passing\n{}", logs(&[&agent, &seed])));
    std::fs::remove_file(dir.path().join("healthy")).unwrap();
    wait_until(Duration::from_secs(10), || health_is("critical"))
        .unwrap_or_else(|| panic!("never critical again\n{}", logs(&[&agent, &seed])));
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(15)), Some(7));
}

/// Sidecar mode: `--ready`/`--health` and no command. The agent watches a service it does not
/// run (here a listener of the test's own): it joins once the service is ready, the health
/// tag follows it, and on SIGTERM it leaves and exits 0, the service untouched.
#[test]
fn as_a_sidecar_it_watches_a_service_it_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let seed = crate::util::seed_agent("seed", dir.path(), &[]);
    let service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let check = format!("tcp://{}", service.local_addr().unwrap());
    let (gossip, rpc) = addrs();
    let join = seed.gossip.to_string();
    let agent = Agent::start(
        "web",
        gossip,
        rpc,
        &[
            "--join",
            &join,
            "--ready",
            &check,
            "--health",
            &check,
            "--health-interval",
            "100",
            "--drain-quiet",
            "100",
        ],
        dir.path(),
    );
    let health_is = |v: &str| seed.member("web").is_some_and(|m| m["tags"]["health"] == v);
    wait_until(Duration::from_secs(10), || health_is("passing"))
        .unwrap_or_else(|| panic!("never passing\n{}", logs(&[&agent, &seed])));
    drop(service);
    wait_until(Duration::from_secs(10), || health_is("critical"))
        .unwrap_or_else(|| panic!("never critical\n{}", logs(&[&agent, &seed])));
    agent.signal(Signal::SIGTERM);
    assert_eq!(
        agent.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        agent.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(5), || sees(&seed, "web", "left")).is_some(),
        "{}",
        logs(&[&agent, &seed])
    );
    assert!(agent.log_text().contains("sidecar"), "{}", agent.log_text());
}

#[test]
fn bad_service_flags_exit_2_naming_the_flag() {
    for (args, field) in [
        (vec!["--ready", "bogus", "--", "true"], "ready"),
        (vec!["--stop-signal", "NOPE", "--", "true"], "stop-signal"),
        (vec!["--health", "tcp://x", "--", "true"], "health"),
        (vec!["--drain-port", "8080"], "service command"),
    ] {
        let out = std::process::Command::new(BIN)
            .args([
                "--node",
                "x",
                "--bind",
                "127.0.0.1:0",
                "--rpc-addr",
                "127.0.0.1:0",
            ])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(field), "{args:?}: {err}");
    }
}

/// The host pids whose parent is `ppid`, with their state letter.
fn children(ppid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if f.next().and_then(|p| p.parse::<u32>().ok()) == Some(ppid) {
            out.push((pid, state));
        }
    }
    out
}

#[test]
fn as_pid_1_it_reaps_orphans_and_forwards_sigterm() {
    let probe = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("GOSSIP_REQUIRE_PIDNS").is_err(),
            "unshare --pid is not available"
        );
        eprintln!("SKIPPED: unshare --pid is not available here (needs root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // The service leaves an orphan behind every 100 ms: a subshell's background sleep.
    let svc = dir.path().join("svc.sh");
    script(
        &svc,
        &format!(
            "trap 'echo stopped >> {d}/events; exit 7' TERM\n\
             while :; do sh -c 'sleep 0.05 &'; sleep 0.1; done"
        ),
    );
    let (gossip, rpc) = addrs();
    let log = std::fs::File::create(dir.path().join("init.log")).unwrap();
    let unshare = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", BIN])
        .args([
            "--node",
            "init",
            "--bind",
            &gossip.to_string(),
            "--rpc-addr",
            &rpc.to_string(),
        ])
        .args([
            "--profile",
            "local",
            "--",
            "/bin/sh",
            &svc.display().to_string(),
        ])
        .stderr(log)
        .spawn()
        .unwrap();
    // Killed (and, through --kill-child, its namespace) if an assertion fails.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut unshare = Guard(unshare);
    // unshare's child is PID 1 of the new namespace: our binary, as init.
    let mut init = None;
    wait_until(Duration::from_secs(5), || {
        init = children(unshare.0.id()).first().map(|c| c.0);
        init.is_some()
    });
    let init = init.expect("no init process");
    wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(rpc).is_ok()
    })
    .expect("agent never came up");
    // Orphans appear and are reaped: after a second of them, no zombie is left under init.
    std::thread::sleep(Duration::from_secs(1));
    let zombies = || children(init).into_iter().filter(|c| c.1 == 'Z').count();
    // A sleep may have ended a moment ago; give init a moment to reap it.
    let clean = wait_until(Duration::from_secs(2), || zombies() == 0);
    assert!(clean.is_some(), "zombies under init: {:?}", children(init));

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init as i32), Signal::SIGTERM).unwrap();
    let mut code = None;
    wait_until(Duration::from_secs(15), || {
        code = unshare.0.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    });
    assert_eq!(
        code,
        Some(Some(7)),
        "{}",
        read(&dir.path().join("init.log"))
    );
    assert!(read(&dir.path().join("events")).contains("stopped"));
}
