//! A five-agent cluster on loopback through its whole life: join through a name, roles and
//! tags everywhere, a tag change, SIGTERM (left), SIGKILL (failed), restart (alive again).
//! Plus garbage on the gossip port and a SIGHUP reload.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::{Agent, logs, sees, test_net, wait_until};

fn seed_agent(dir: &std::path::Path, extra: &[&str]) -> Agent {
    crate::util::seed_agent("seed", dir, extra)
}

/// Agents 1..n on 127.77.NET.i with Serf's default ports, joining `localhost:SEED_PORT`.
fn members(dir: &std::path::Path, seed: &Agent, n: u8) -> Vec<Agent> {
    let net = test_net();
    let join = format!("localhost:{}", seed.gossip.port());
    (1..=n)
        .map(|i| {
            let ip = format!("127.77.{net}.{i}");
            let role = if i % 2 == 0 {
                "frontserver"
            } else {
                "appserver"
            };
            let idx = format!("idx={i}");
            Agent::start(
                &format!("node{i}"),
                format!("{ip}:7946").parse().unwrap(),
                format!("{ip}:7373").parse().unwrap(),
                &[
                    "--role",
                    role,
                    "--tag",
                    &idx,
                    "--tag",
                    "port=8080",
                    "--join",
                    &join,
                ],
                dir,
            )
        })
        .collect()
}

#[test]
fn five_agents_join_by_name_change_tags_leave_fail_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_agent(dir.path(), &["--role", "dnsserver"]);
    let nodes = members(dir.path(), &seed, 4);
    let all = |nodes: &Vec<Agent>| -> Vec<String> {
        std::iter::once("seed".to_string())
            .chain(nodes.iter().map(|a| a.name.clone()))
            .collect()
    };
    let names = all(&nodes);

    // Every agent lists all five, alive, with roles and tags.
    let converged = wait_until(Duration::from_secs(20), || {
        std::iter::once(&seed).chain(nodes.iter()).all(|a| {
            let ms = a.members();
            names.iter().all(|n| {
                ms.iter().any(|m| {
                    m["name"] == n.as_str()
                        && m["status"] == "alive"
                        && m["tags"]["role"].is_string()
                })
            })
        })
    });
    let agents: Vec<&Agent> = std::iter::once(&seed).chain(nodes.iter()).collect();
    assert!(converged.is_some(), "no convergence\n{}", logs(&agents));
    let m = seed.member("node2").unwrap();
    assert_eq!(m["tags"]["role"], "frontserver");
    assert_eq!(m["tags"]["idx"], "2");
    assert_eq!(m["tags"]["port"], "8080");
    assert_eq!(m["addr"], format!("{}", nodes[1].gossip));
    assert_eq!(m["port"], 7946);

    // A tag change at runtime reaches every member.
    let out = nodes[0].cli(&["tags", "--set", "version=2", "--delete", "port"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = wait_until(Duration::from_secs(10), || {
        agents.iter().all(|a| {
            a.member("node1")
                .is_some_and(|m| m["tags"]["version"] == "2" && m["tags"]["port"].is_null())
        })
    });
    assert!(
        took.is_some(),
        "tag change did not reach all\n{}",
        logs(&agents)
    );
    assert!(
        seed.log_text().contains("member-update"),
        "no member-update logged"
    );

    // SIGTERM: graceful leave, exit 0, *left* on every other member quickly.
    nodes[1].signal(Signal::SIGTERM);
    let code = nodes[1].wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "SIGTERM exit code");
    let others: Vec<&Agent> = agents
        .iter()
        .copied()
        .filter(|a| a.name != "node2")
        .collect();
    let took = wait_until(Duration::from_secs(5), || {
        others.iter().all(|a| sees(a, "node2", "left"))
    })
    .unwrap_or_else(|| panic!("node2 not left everywhere\n{}", logs(&others)));
    eprintln!("SIGTERM -> left on all 4 others within {took:?} (poll interval 50 ms)");

    // SIGKILL: no leave; the failure detector declares it failed everywhere.
    nodes[2].kill();
    let live: Vec<&Agent> = agents
        .iter()
        .copied()
        .filter(|a| a.name != "node2" && a.name != "node3")
        .collect();
    let took = wait_until(Duration::from_secs(30), || {
        live.iter().all(|a| sees(a, "node3", "failed"))
    })
    .unwrap_or_else(|| panic!("node3 not failed everywhere\n{}", logs(&live)));
    eprintln!("SIGKILL -> failed on all 3 others within {took:?}");
    // node2 stays left: the failure detector never turns a leave into a failure.
    assert!(live.iter().all(|a| sees(a, "node2", "left")));

    // Restarted under its name: alive again everywhere.
    nodes[2].restart();
    let took = wait_until(Duration::from_secs(10), || {
        live.iter().all(|a| sees(a, "node3", "alive")) && sees(&nodes[2], "seed", "alive")
    })
    .unwrap_or_else(|| panic!("node3 not alive again\n{}", logs(&live)));
    eprintln!("restart -> alive on all within {took:?}");
}

#[test]
fn garbage_on_the_gossip_port_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_agent(dir.path(), &["--role", "x"]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // A deterministic mix: random bytes, our magic with a bad version, a truncated envelope,
    // a valid envelope with a garbage body, and an oversize datagram.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut sent = 0u64;
    let v = gossip_core::wire::VERSION;
    for i in 0..200u64 {
        let len = (next() % 1500) as usize;
        let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let p: Vec<u8> = match i % 5 {
            1 => [b"GA\x09\x00".as_slice(), &body].concat(),
            2 => b"GA".to_vec(),
            3 => [[b'G', b'A', v, 0].as_slice(), &body].concat(),
            4 => [[b'G', b'A', v, 1].as_slice(), &body].concat(),
            _ => [b"\xff".as_slice(), &body].concat(),
        };
        sock.send_to(&p, seed.gossip).unwrap();
        sent += 1;
        // Paced: a burst could overflow the socket buffer of a busy agent, and UDP drops.
        if sent.is_multiple_of(10) {
            let arrived = wait_until(Duration::from_secs(10), || {
                seed.info()["stats"]["packets_in"].as_u64() == Some(sent)
            });
            assert!(
                arrived.is_some(),
                "datagram {sent} never arrived: {}",
                seed.info()
            );
        }
    }
    sock.send_to(&vec![0u8; 9000], seed.gossip).unwrap();
    sent += 1;
    let counted = wait_until(Duration::from_secs(10), || {
        seed.info()["stats"]["packets_in"].as_u64() == Some(sent)
    });
    assert!(
        counted.is_some(),
        "not every datagram arrived: {}",
        seed.info()
    );
    let info = seed.info();
    let s = &info["stats"];
    let dropped: u64 = [
        "dropped_oversize",
        "dropped_foreign",
        "dropped_version",
        "dropped_malformed",
        "dropped_protocol",
    ]
    .iter()
    .map(|k| s[k].as_u64().unwrap())
    .sum();
    assert_eq!(dropped, sent, "every garbage datagram is dropped: {s}");
    assert!(s["dropped_oversize"].as_u64().unwrap() >= 1);
    assert!(s["dropped_version"].as_u64().unwrap() >= 40);
    assert!(s["dropped_malformed"].as_u64().unwrap() >= 1);
    // Still healthy: it answers, and a new member can join it.
    let net = test_net();
    let ip = format!("127.77.{net}.1");
    let join = seed.gossip.to_string();
    let other = Agent::start(
        "other",
        format!("{ip}:7946").parse().unwrap(),
        format!("{ip}:7373").parse().unwrap(),
        &["--join", &join],
        dir.path(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || sees(&seed, "other", "alive")).is_some(),
        "{}",
        logs(&[&seed, &other])
    );
}

#[test]
fn sighup_reloads_tags_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, "role = \"appserver\"\n[tags]\nport = \"8080\"\n").unwrap();
    let seed = seed_agent(
        dir.path(),
        &["--config", cfg.to_str().unwrap(), "--tag", "zone=a"],
    );
    let me = || seed.member("seed").unwrap();
    assert_eq!(me()["tags"]["role"], "appserver");
    assert_eq!(me()["tags"]["zone"], "a");
    // A runtime edit survives the reload; the file's new value arrives; the flag still wins.
    assert!(seed.cli(&["tags", "--set", "extra=1"]).status.success());
    std::fs::write(
        &cfg,
        "role = \"appserver\"\n[tags]\nport = \"9090\"\nzone = \"b\"\n",
    )
    .unwrap();
    seed.signal(Signal::SIGHUP);
    let ok = wait_until(Duration::from_secs(5), || me()["tags"]["port"] == "9090");
    assert!(
        ok.is_some(),
        "reload did not apply: {}\n{}",
        me(),
        seed.log_text()
    );
    assert_eq!(me()["tags"]["zone"], "a");
    assert_eq!(me()["tags"]["extra"], "1");
    // A broken file is refused and the agent keeps running with what it had.
    std::fs::write(&cfg, "role = [\n").unwrap();
    seed.signal(Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || seed
            .log_text()
            .contains("reload failed"))
        .is_some()
    );
    assert_eq!(me()["tags"]["port"], "9090");
}

#[test]
fn sigterm_is_left_on_all_fifty() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_agent(dir.path(), &["--role", "dnsserver"]);
    let net = test_net();
    let join = seed.gossip.to_string();
    let nodes: Vec<Agent> = (1..=49u8)
        .map(|i| {
            let ip = format!("127.77.{net}.{i}");
            Agent::start(
                &format!("n{i}"),
                format!("{ip}:7946").parse().unwrap(),
                format!("{ip}:7373").parse().unwrap(),
                &["--role", "appserver", "--join", &join],
                dir.path(),
            )
        })
        .collect();
    let rpcs: Vec<SocketAddr> = std::iter::once(seed.rpc)
        .chain(nodes.iter().map(|a| a.rpc))
        .collect();
    let everyone_alive = || {
        rpcs.iter().all(|r| {
            crate::util::http_get_json(*r, "/v1/members").is_some_and(|v| {
                v["members"]
                    .as_array()
                    .is_some_and(|ms| ms.len() == 50 && ms.iter().all(|m| m["status"] == "alive"))
            })
        })
    };
    let agents: Vec<&Agent> = std::iter::once(&seed).chain(nodes.iter()).collect();
    let took = wait_until(Duration::from_secs(30), everyone_alive)
        .unwrap_or_else(|| panic!("50 agents did not converge\n{}", logs(&agents[..3])));
    eprintln!("50 agents converged within {took:?} of the last start");

    let leaver = &nodes[20];
    let others: Vec<SocketAddr> = rpcs.iter().copied().filter(|r| *r != leaver.rpc).collect();
    leaver.signal(Signal::SIGTERM);
    // Poll all 49 in a tight loop (one HTTP request each, about 1 ms apiece).
    let took = wait_until(Duration::from_secs(5), || {
        others
            .iter()
            .all(|r| crate::util::status_of(*r, "n21").as_deref() == Some("left"))
    })
    .unwrap_or_else(|| panic!("n21 not left on all 49\n{}", logs(&agents[..3])));
    eprintln!("SIGTERM -> left on all 49 others within {took:?} (upper bound: one poll round)");
    assert_eq!(leaver.wait_exit(Duration::from_secs(5)), Some(0));
    // Nobody reported a failure along the way.
    assert!(
        agents
            .iter()
            .all(|a| !a.log_text().contains("member-failed"))
    );
}

/// A restart under the same name: alive again on every member at once, without a failure in
/// between, and through the member snapshot when its `--join` target is gone.
#[test]
fn a_restart_rejoins_through_its_snapshot_when_the_join_target_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let net = test_net();
    let addr =
        |i: u8, port: u16| -> SocketAddr { format!("127.77.{net}.{i}:{port}").parse().unwrap() };
    let snap = |i: u8| dir.path().join(format!("snap{i}.json"));
    let join = format!("127.77.{net}.1:7946");
    let seed = Agent::start("seed", addr(1, 7946), addr(1, 7373), &[], dir.path());
    let start = |name: &str, i: u8| {
        let s = snap(i);
        Agent::start(
            name,
            addr(i, 7946),
            addr(i, 7373),
            &["--join", &join, "--snapshot", s.to_str().unwrap()],
            dir.path(),
        )
    };
    let a = start("a", 2);
    let b = start("b", 3);
    let c = start("c", 4);
    let all = [&seed, &a, &b, &c];
    assert!(
        wait_until(Duration::from_secs(15), || {
            all.iter()
                .all(|x| ["seed", "a", "b", "c"].iter().all(|n| sees(x, n, "alive")))
        })
        .is_some(),
        "{}",
        logs(&all)
    );
    // The snapshot lists the others (not itself), by name and address.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let s = std::fs::read_to_string(snap(3)).unwrap_or_default();
            s.contains("\"a\"")
                && s.contains("\"c\"")
                && s.contains("\"seed\"")
                && !s.contains("\"b\"")
        })
        .is_some(),
        "{}",
        std::fs::read_to_string(snap(3)).unwrap_or_default()
    );

    // The join target goes away for good; then b restarts.
    seed.signal(Signal::SIGTERM);
    assert_eq!(seed.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(
        wait_until(Duration::from_secs(5), || sees(&a, "seed", "left")
            && sees(&b, "seed", "left"))
        .is_some()
    );
    b.kill();
    b.restart();
    let took = wait_until(Duration::from_secs(10), || {
        sees(&b, "a", "alive") && sees(&b, "c", "alive")
    })
    .unwrap_or_else(|| {
        panic!(
            "b did not rejoin through its snapshot\n{}",
            logs(&[&a, &b, &c])
        )
    });
    eprintln!("restart -> rejoined through the snapshot within {took:?} (poll interval 50 ms)");
    assert!(
        b.log_text().contains("rejoining through the snapshot"),
        "{}",
        b.log_text()
    );
    // No flapping: a and c never list b as anything but alive from here on.
    let flapped = wait_until(Duration::from_secs(3), || {
        [&a, &c].iter().any(|x| !sees(x, "b", "alive"))
    });
    assert!(
        flapped.is_none(),
        "b flapped after its restart\n{}",
        logs(&[&a, &b, &c])
    );
}
