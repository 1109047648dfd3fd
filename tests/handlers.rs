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
