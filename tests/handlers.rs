//! Serf-compatible event handlers run by real agents: the environment and stdin contract,
//! filters (Serf's and member selectors), hostile tag values, a hung handler killed at its
//! timeout while membership converges, and coalescing of a burst of joins.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::{Agent, logs, member_addrs, read, script, seed_agent, test_net, wait_until};

/// A handler that records its environment and stdin in `out`.
fn recorder(dir: &Path, out: &Path) -> String {
    let p = dir.join(format!(
        "rec-{}.sh",
        out.file_name().unwrap().to_string_lossy()
    ));
    script(
        &p,
        &format!(
            "{{ echo \"EVENT=$SERF_EVENT SELF=$SERF_SELF_NAME ROLE=$SERF_SELF_ROLE ZONE=$SERF_TAG_ZONE_NAME\"; cat; echo END; }} >> {}",
            out.display()
        ),
    );
    p.display().to_string()
}

#[test]
fn serf_contract_filters_and_hostile_tags() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (all, gone, apps) = (d.join("all.out"), d.join("gone.out"), d.join("apps.out"));
    let pwned = d.join("pwned");
    let seed = seed_agent(
        "seed",
        d,
        &[
            "--role",
            "dnsserver",
            "--tag",
            "zone-name=eu",
            "--event-handler",
            &recorder(d, &all),
            "--event-handler",
            &format!("member-leave,member-failed={}", recorder(d, &gone)),
            "--event-handler",
            &format!("member-join[role=app.*]={}", recorder(d, &apps)),
        ],
    );
    let net = test_net();
    let join = seed.gossip.to_string();
    let hostile = format!(
        "$(touch {}); `touch {}` ;touch {} |x",
        pwned.display(),
        pwned.display(),
        pwned.display()
    );
    let evil_tag = format!("evil={hostile}");
    let (g, r) = member_addrs(net, 1);
    let alpha = Agent::start(
        "alpha",
        g,
        r,
        &["--role", "appserver", "--tag", &evil_tag, "--join", &join],
        d,
    );
    let (g, r) = member_addrs(net, 2);
    let beta = Agent::start("beta", g, r, &["--role", "frontserver", "--join", &join], d);

    let ok = wait_until(Duration::from_secs(10), || {
        let t = read(&all);
        t.contains("\nalpha\t") && t.contains("\nbeta\t")
    });
    assert!(
        ok.is_some(),
        "joins not delivered\n{}\n{}",
        read(&all),
        logs(&[&seed])
    );
    let t = read(&all);
    assert!(
        t.starts_with("EVENT=member-join SELF=seed ROLE=dnsserver ZONE=eu\n"),
        "{t}"
    );
    assert!(
        t.contains("seed\t127.0.0.1\tdnsserver\trole=dnsserver,zone-name=eu\n"),
        "own join: {t}"
    );
    let alpha_line = format!("alpha\t127.77.{net}.1\tappserver\tevil={hostile},role=appserver\n");
    assert!(
        t.contains(&alpha_line),
        "alpha line, literally:\n{alpha_line}\nin\n{t}"
    );
    assert!(
        t.contains(&format!(
            "beta\t127.77.{net}.2\tfrontserver\trole=frontserver\n"
        )),
        "{t}"
    );
    assert!(!pwned.exists(), "a tag value reached a shell");

    // The member selector saw only the appserver; Serf's filter saw no join.
    let a = read(&apps);
    assert!(
        a.contains("\nalpha\t") && !a.contains("beta") && !a.contains("seed\t"),
        "{a}"
    );
    assert!(read(&gone).is_empty());

    // A leave reaches the leave filter with the leaver on stdin.
    beta.signal(Signal::SIGTERM);
    let ok = wait_until(Duration::from_secs(10), || read(&gone).contains("\nbeta\t"));
    assert!(ok.is_some(), "leave not delivered: {}", read(&gone));
    assert!(
        read(&gone).starts_with("EVENT=member-leave "),
        "{}",
        read(&gone)
    );
    assert!(!pwned.exists());
    drop(alpha);
}

#[test]
fn a_hung_handler_is_killed_and_blocks_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("joins.out");
    let net = test_net();
    // A marker no other test uses, to find the hung process.
    let marker = 7000 + u32::from(net);
    // In a script file, so that the agent's own command line does not match `pgrep`.
    let hang = d.join("hang.sh");
    script(&hang, &format!("sleep {marker} & sleep {marker}"));
    let seed = seed_agent(
        "seed",
        d,
        &[
            "--handler-timeout",
            "1",
            "--event-handler",
            &format!("member-join={}", hang.display()),
            "--event-handler",
            &format!("member-join={}", recorder(d, &out)),
        ],
    );
    let join = seed.gossip.to_string();
    let nodes: Vec<Agent> = (1..=3)
        .map(|i| {
            let (g, r) = member_addrs(net, i);
            Agent::start(&format!("n{i}"), g, r, &["--join", &join], d)
        })
        .collect();
    // The other handler and membership are not held up by the hung one.
    let took = wait_until(Duration::from_secs(5), || {
        let t = read(&out);
        (1..=3).all(|i| t.contains(&format!("\nn{i}\t")))
    });
    assert!(
        took.is_some(),
        "recorder held up: {}\n{}",
        read(&out),
        logs(&[&seed])
    );
    assert!(
        nodes.iter().all(|n| n.members().len() == 4),
        "membership did not converge"
    );
    // The hung handler is killed at its timeout, with its process group, and it is logged.
    let killed = wait_until(Duration::from_secs(10), || {
        seed.log_text().contains("handler timed out")
            && !std::process::Command::new("pgrep")
                .args(["-f", &format!("sleep {marker}")])
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap()
                .success()
    });
    assert!(
        killed.is_some(),
        "hung handler not killed\n{}",
        seed.log_text()
    );
}

#[test]
fn a_lone_join_is_not_held_back_by_coalescing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("joins.out");
    let handler = format!("member-join=cat >> {}", out.display());
    // A long quiet period: a lone join must still run at once (leading edge).
    let flags = [
        "--event-handler",
        &handler,
        "--coalesce-quiet",
        "3000",
        "--coalesce-max",
        "6000",
    ];
    let seed = seed_agent("seed", d, &flags);
    wait_until(Duration::from_secs(5), || read(&out).contains("seed\t"))
        .expect("self join delivered");
    std::thread::sleep(Duration::from_millis(3100)); // past the quiet period: the line is idle
    let (g, r) = member_addrs(test_net(), 1);
    let join = seed.gossip.to_string();
    let start = std::time::Instant::now();
    let _late = Agent::start("late", g, r, &["--join", &join], d);
    let took = wait_until(Duration::from_secs(10), || read(&out).contains("late\t"))
        .expect("join delivered");
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "the lone join waited {took:?} (quiet period 3 s)"
    );
}

#[test]
fn a_burst_of_joins_gives_a_few_invocations() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("count.out");
    let counter = d.join("count.sh");
    script(
        &counter,
        &format!("n=$(wc -l); echo \"$SERF_EVENT $n\" >> {}", out.display()),
    );
    let seed = seed_agent("seed", d, &["--event-handler", counter.to_str().unwrap()]);
    let net = test_net();
    let join = seed.gossip.to_string();
    let nodes: Vec<Agent> = (1..=20)
        .map(|i| {
            let (g, r) = member_addrs(net, i);
            Agent::launch(&format!("b{i}"), g, r, &["--join", &join], d)
        })
        .collect();
    nodes.iter().for_each(Agent::wait_ready);
    let total = || -> u32 {
        read(&out)
            .lines()
            .filter_map(|l| l.strip_prefix("member-join "))
            .map(|n| n.trim().parse::<u32>().unwrap())
            .sum()
    };
    let ok = wait_until(Duration::from_secs(15), || total() == 21);
    assert!(
        ok.is_some(),
        "joins delivered: {} of 21\n{}",
        total(),
        read(&out)
    );
    let invocations = read(&out).lines().count();
    eprintln!("21 member-joins (self + 20) in {invocations} invocations");
    assert!(
        invocations <= 8,
        "{invocations} invocations for a burst of 20 joins:\n{}",
        read(&out)
    );
}

#[test]
fn a_user_event_runs_every_members_user_handlers_once_with_payload_and_ltime() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rec = |name: &str| {
        let out = d.join(format!("{name}.events"));
        let p = d.join(format!("user-{name}.sh"));
        script(
            &p,
            &format!(
                "{{ echo \"EVENT=$SERF_EVENT NAME=$SERF_USER_EVENT LTIME=$SERF_USER_LTIME\"; cat; echo END; }} >> {}",
                out.display()
            ),
        );
        (out, p.display().to_string())
    };
    let (seed_out, seed_h) = rec("seed");
    let seed = seed_agent(
        "seed",
        d,
        &["--event-handler", &format!("user:deploy={seed_h}")],
    );
    let join = seed.gossip.to_string();
    let net = test_net();
    let mut agents = Vec::new();
    let mut outs = vec![seed_out];
    for i in 1..=2u8 {
        let (out, h) = rec(&format!("m{i}"));
        let (g, r) = member_addrs(net, i);
        // m1 listens to every user event, m2 to `deploy` only.
        let spec = if i == 1 {
            format!("user={h}")
        } else {
            format!("user:deploy={h}")
        };
        agents.push(Agent::start(
            &format!("m{i}"),
            g,
            r,
            &["--event-handler", &spec, "--join", &join],
            d,
        ));
        outs.push(out);
    }
    let all = wait_until(Duration::from_secs(10), || {
        agents.iter().all(|a| a.members().len() == 3) && seed.members().len() == 3
    });
    assert!(all.is_some(), "no cluster\n{}", logs(&[&seed]));

    let out = agents[0].cli(&["event", "deploy", "v2 $(touch pwned)"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Event 'deploy' dispatched! Coalescing enabled: true\n"
    );
    let delivered = wait_until(Duration::from_secs(10), || {
        outs.iter().all(|o| read(o).contains("NAME=deploy"))
    });
    assert!(
        delivered.is_some(),
        "not delivered: {:?}",
        outs.iter().map(|o| read(o)).collect::<Vec<_>>()
    );
    // m2 has seen time 0: its own event takes time 1 (a Lamport clock).
    let out = agents[1].cli(&["event", "--coalesce=false", "other"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let delivered = wait_until(Duration::from_secs(10), || {
        read(&outs[1]).contains("NAME=other")
    });
    assert!(
        delivered.is_some(),
        "other not delivered: {}",
        read(&outs[1])
    );
    // Let any duplicate arrive before counting.
    std::thread::sleep(Duration::from_millis(500));
    for o in &outs {
        let t = read(o);
        assert_eq!(t.matches("NAME=deploy").count(), 1, "once: {t}");
        assert!(
            t.contains("EVENT=user NAME=deploy LTIME=0\nv2 $(touch pwned)\nEND\n"),
            "env and stdin: {t}"
        );
    }
    assert!(!read(&outs[0]).contains("NAME=other"), "filtered by name");
    assert!(!read(&outs[2]).contains("NAME=other"), "filtered by name");
    assert!(read(&outs[1]).contains("EVENT=user NAME=other LTIME=1\n\nEND\n"));
    assert!(!d.join("pwned").exists() && !std::path::Path::new("pwned").exists());

    // A bad name is refused with the reason; an oversize payload too.
    let out = agents[0].cli(&["event", "a=b"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("event name"),
        "{out:?}"
    );
    let big = "x".repeat(2000);
    let out = agents[0].cli(&["event", "big", &big]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("limit is 1024"),
        "{out:?}"
    );
}

#[test]
fn queries_stream_acks_and_answers_respect_filters_and_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let up = d.join("up.sh");
    script(
        &up,
        "read p; echo \"up on $SERF_SELF_NAME ($SERF_QUERY_NAME: $p)\"",
    );
    let handlers = |extra: &str| {
        vec![
            "--event-handler".to_string(),
            format!("query:uptime={}", up.display()),
            "--event-handler".to_string(),
            format!("query:slow=sleep {extra}"),
        ]
    };
    let h: Vec<String> = handlers("5");
    let h: Vec<&str> = h.iter().map(String::as_str).collect();
    let mut seed_args = vec!["--role", "dnsserver"];
    seed_args.extend(&h);
    let seed = seed_agent("seed", d, &seed_args);
    let join = seed.gossip.to_string();
    let net = test_net();
    let mut agents = Vec::new();
    for (i, role) in [(1u8, "appserver"), (2, "frontserver")] {
        let (g, r) = member_addrs(net, i);
        let mut args = vec!["--role", role, "--join", &join];
        args.extend(&h);
        agents.push(Agent::start(&format!("m{i}"), g, r, &args, d));
    }
    let all = wait_until(Duration::from_secs(10), || {
        agents.iter().all(|a| a.members().len() == 3) && seed.members().len() == 3
    });
    assert!(all.is_some(), "no cluster\n{}", logs(&[&seed]));

    let out = seed.cli(&["query", "uptime", "hi"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert!(text.starts_with("Query 'uptime' dispatched\n"), "{text}");
    for n in ["seed", "m1", "m2"] {
        assert!(text.contains(&format!("Ack from '{n}'\n")), "{text}");
        assert!(
            text.contains(&format!("Response from '{n}': up on {n} (uptime: hi)\n")),
            "{text}"
        );
    }
    assert!(
        text.ends_with("Total Acks: 3\nTotal Responses: 3\n"),
        "{text}"
    );

    let out = seed.cli(&["query", "--tag", "role=app.*", "--format", "json", "uptime"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["Acks"], serde_json::json!(["m1"]), "{v}");
    assert_eq!(v["Responses"]["m1"], "up on m1 (uptime: )\n", "{v}");

    // A handler past the deadline: acknowledged, no answer, and the command ends on time.
    let started = std::time::Instant::now();
    let out = seed.cli(&["query", "--node", "m2", "--timeout", "1s", "slow"]);
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text,
        "Query 'slow' dispatched\nAck from 'm2'\nTotal Acks: 1\nTotal Responses: 0\n"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );

    let out = seed.cli(&["query", "--timeout", "soon", "x"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A handler's stdout and stderr reach the agent's log at `info`, a line each, whether the
/// binary runs as `gossip-agent` or as `serf` (Serf's own demo scripts `echo` what they do).
#[test]
fn handler_output_is_logged_at_info_under_both_names() {
    let dir = tempfile::tempdir().unwrap();
    let serf = dir.path().join("serf");
    std::os::unix::fs::symlink(Path::new(crate::util::BIN).canonicalize().unwrap(), &serf).unwrap();
    let handler = "echo \"reloading nginx for $SERF_EVENT\"; echo second line; echo on stderr >&2";
    let net = test_net();
    let runs: [(&Path, Vec<String>); 2] = [
        (
            Path::new(crate::util::BIN),
            vec![
                "--node".into(),
                "ours".into(),
                "--bind".into(),
                format!("127.77.{net}.1:7946"),
                "--rpc-addr".into(),
                format!("127.77.{net}.1:7373"),
                "--log-level".into(),
                "info".into(),
                "--event-handler".into(),
                handler.into(),
            ],
        ),
        (
            &serf,
            vec![
                "agent".into(),
                "-node=serfname".into(),
                format!("-bind=127.77.{net}.2:7946"),
                format!("-rpc-addr=127.77.{net}.2:7373"),
                "-log-level=info".into(),
                format!("-event-handler={handler}"),
            ],
        ),
    ];
    for (i, (bin, args)) in runs.iter().enumerate() {
        let log = dir.path().join(format!("{i}.log"));
        let mut child = std::process::Command::new(bin)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // The agent's own member-join runs the handler at start.
        let seen = wait_until(Duration::from_secs(10), || {
            let text = read(&log);
            text.contains("stdout: reloading nginx for member-join")
                && text.contains("stdout: second line")
                && text.contains("stderr: on stderr")
        });
        let _ = child.kill();
        let _ = child.wait();
        let text = read(&log);
        assert!(
            seen.is_some(),
            "{}: handler output not logged:\n{text}",
            bin.display()
        );
        assert!(
            text.lines()
                .filter(|l| l.contains("stdout:") || l.contains("stderr:"))
                .all(|l| l.contains("INFO")),
            "at info level:\n{text}"
        );
    }
}
