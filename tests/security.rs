//! What keeps strangers out: the control API's token, and (with `--encrypt`) authenticated
//! encryption of every gossip packet, with keys rotated cluster-wide.

use std::process::Command;
use std::time::Duration;

use crate::util::{Agent, BIN, keygen, test_net, wait_until};

const TOKEN: &str = "s3cret-token-0123456789";

#[test]
fn a_control_api_with_a_token_refuses_requests_without_it_and_logs_them() {
    let dir = tempfile::tempdir().unwrap();
    let net = test_net();
    let a = Agent::start(
        "tok",
        format!("127.77.{net}.1:7946").parse().unwrap(),
        format!("127.77.{net}.1:7373").parse().unwrap(),
        &["--rpc-token", TOKEN],
        dir.path(),
    );
    let rpc = a.rpc.to_string();
    for extra in [&[][..], &["--rpc-token", "wrong-token-0123456789"][..]] {
        let mut args = vec!["members", "--rpc-addr", &rpc];
        args.extend(extra);
        let out = Command::new(BIN)
            .args(&args)
            .env_remove("GOSSIP_RPC_TOKEN")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("token"), "{err}");
        assert!(out.stdout.is_empty());
    }
    let out = Command::new(BIN)
        .args(["members", "--rpc-addr", &rpc])
        .env("GOSSIP_RPC_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("tok"));
    assert!(
        wait_until(Duration::from_secs(5), || {
            let log = a.log_text();
            log.contains("control API request refused") && log.contains("wrong token")
        })
        .is_some(),
        "{}",
        a.log_text()
    );
}

fn keys(a: &Agent, args: &[&str]) -> (bool, String) {
    let mut full = vec!["keys"];
    full.extend(args);
    let out = a.cli(&full);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn all_see(agents: &[&Agent], name: &str, status: &str) -> bool {
    agents.iter().all(|a| crate::util::sees(a, name, status))
}

fn ring_file(path: &std::path::Path) -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Encrypted gossip end to end: a cluster on one key; strangers (wrong key, no key) kept out
/// and told why; what travels is sealed; a rotation (install, use, remove) with no downtime,
/// saved in the keyring files; and a member that was down during the rotation rejoining with
/// the old key while it is still in the ring (serf#579).
#[test]
fn encrypted_cluster_keeps_strangers_out_and_rotates_keys_without_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let net = test_net();
    let addr = |i: u8, port: u16| format!("127.77.{net}.{i}:{port}").parse().unwrap();
    let k1 = keygen();
    let k2 = keygen();
    assert_ne!(k1, k2);
    let ring = |i: u8| dir.path().join(format!("ring{i}.json"));
    let join = format!("127.77.{net}.1:7946");
    let start = |i: u8, extra: &[&str]| {
        let r = ring(i);
        let mut args = vec!["--keyring-file", r.to_str().unwrap(), "--join", &join];
        args.extend(extra);
        Agent::start(
            &format!("n{i}"),
            addr(i, 7946),
            addr(i, 7373),
            &args,
            dir.path(),
        )
    };
    // A tag long enough that ciphertext never holds it by chance (a two-byte name would,
    // about once in 200 runs).
    let marker = "plaintext-marker-that-must-not-travel";
    let a = start(1, &["--encrypt", &k1, "--tag", &format!("secret={marker}")]);
    let b = start(2, &["--encrypt", &k1]);
    let c = start(3, &["--encrypt", &k1]);
    let d = start(4, &["--encrypt", &k1]);
    let all = [&a, &b, &c, &d];
    let converged =
        |names: &[&str], agents: &[&Agent]| names.iter().all(|n| all_see(agents, n, "alive"));
    assert!(
        wait_until(Duration::from_secs(15), || converged(
            &["n1", "n2", "n3", "n4"],
            &all
        ))
        .is_some(),
        "{}",
        crate::util::logs(&all)
    );
    assert_eq!(ring_file(&ring(1)), vec![k1.clone()]);
    let mode = std::fs::metadata(ring(1)).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    // What travels is sealed: a join sent to a plain UDP socket arrives as GX..., without
    // the node's identity (its name and tags) in the clear.
    let spy = std::net::UdpSocket::bind(format!("127.77.{net}.9:7946")).unwrap();
    spy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = a.cli(&["join", &format!("127.77.{net}.9:7946")]);
    let mut buf = [0u8; 4096];
    let (n, _) = spy.recv_from(&mut buf).expect("a join packet at the spy");
    let pkt = &buf[..n];
    assert!(pkt.starts_with(b"GX"), "not sealed: {:?}", &pkt[..8.min(n)]);
    assert!(
        !pkt.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "identity in the clear"
    );

    // Strangers: a wrong key and no key never join, and each side says why.
    let wrong = Agent::start(
        "wrong",
        addr(5, 7946),
        addr(5, 7373),
        &["--encrypt", &keygen(), "--join", &join],
        dir.path(),
    );
    let plain = Agent::start(
        "plain",
        addr(6, 7946),
        addr(6, 7373),
        &["--join", &join],
        dir.path(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            let i = a.info();
            i["encryption"]["dropped_wrong_key"].as_u64() > Some(0)
                && i["encryption"]["dropped_unencrypted"].as_u64() > Some(0)
                && wrong.log_text().contains("no key in our keyring opens")
                && plain.log_text().contains("this agent has no key")
        })
        .is_some(),
        "{}",
        crate::util::logs(&[&a, &wrong, &plain])
    );
    assert_eq!(wrong.members().len(), 1);
    assert_eq!(plain.members().len(), 1);
    assert!(a.member("wrong").is_none() && a.member("plain").is_none());
    drop(wrong);
    drop(plain);

    // d goes down; the rest rotate to k2 but keep k1 installed.
    d.kill();
    assert!(
        wait_until(Duration::from_secs(15), || all_see(
            &[&a, &b, &c],
            "n4",
            "failed"
        ))
        .is_some()
    );
    let (ok, out) = keys(&a, &["--install", &k2]);
    assert!(ok, "{out}");
    assert!(out.contains("Successfully installed key!"), "{out}");
    let (ok, out) = keys(&b, &["--use", &k2]);
    assert!(ok, "{out}");
    assert_eq!(ring_file(&ring(3)), vec![k2.clone(), k1.clone()]);
    // The cluster still talks: a tag change travels under the new key.
    assert!(c.cli(&["tags", "--set", "phase=rotated"]).status.success());
    assert!(
        wait_until(Duration::from_secs(10), || {
            [&a, &b].iter().all(|x| {
                x.member("n3")
                    .is_some_and(|m| m["tags"]["phase"] == "rotated")
            })
        })
        .is_some()
    );

    // d restarts holding only k1: answered under k1, it rejoins.
    d.restart();
    assert!(
        wait_until(Duration::from_secs(10), || all_see(&all, "n4", "alive")
            && converged(&["n1", "n2", "n3"], &[&d]))
        .is_some(),
        "{}",
        crate::util::logs(&all)
    );
    assert_eq!(ring_file(&ring(4)), vec![k1.clone()]);
    // Removing k1 now would cut d off: install k2 everywhere first (d gets it), then use
    // it everywhere, then remove k1.
    let (ok, out) = keys(&a, &["--install", &k2]);
    assert!(ok, "{out}");
    let (ok, out) = keys(&a, &["--use", &k2]);
    assert!(ok, "{out}");
    let (ok, out) = keys(&a, &["--list"]);
    assert!(ok, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with(&k2) && l.contains("4/4")),
        "{out}"
    );
    let (ok, out) = keys(&a, &["--remove", &k2]);
    assert!(!ok, "removing the primary key must fail: {out}");
    assert!(out.contains("0/4 members reported success"), "{out}");
    let (ok, out) = keys(&a, &["--remove", &k1]);
    assert!(ok, "{out}");
    for i in 1..=4 {
        assert_eq!(ring_file(&ring(i)), vec![k2.clone()], "ring of n{i}");
    }
    // Still one cluster, nobody failed, and a restart reads its ring from the file.
    d.kill();
    d.restart();
    assert!(
        wait_until(Duration::from_secs(10), || converged(
            &["n1", "n2", "n3", "n4"],
            &all
        ))
        .is_some(),
        "{}",
        crate::util::logs(&all)
    );
    assert_eq!(d.info()["encryption"]["keys"], 1);
    // A bad key is a usage error, and keys without encryption is refused.
    let (ok, out) = keys(&a, &["--install", "short"]);
    assert!(!ok && out.contains("invalid key"), "{out}");
}

/// The largest identities the limits allow (128-byte names, 1,200 bytes of tags with
/// `--tags-size-max 1200`) fit the datagram sealed: three such agents join, each sees the
/// others' tags in full, and a runtime tag change at the limit arrives too.
#[test]
fn the_largest_names_and_tags_travel_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let net = test_net();
    let addr = |i: u8, port: u16| format!("127.77.{net}.{i}:{port}").parse().unwrap();
    let key = keygen();
    const FILL: usize = 1200 - 15 - 2 * (2 + 2); // two tags with 2-byte keys
    const A_LEN: usize = FILL / 2;
    let name = |i: u8| format!("{i}{}", "n".repeat(127));
    // 1,200 bytes: key + value + 2 for each tag ("role" takes its share).
    let tags = |i: u8| {
        let mut t = vec!["--role".to_string(), "appserver".to_string()];
        let used = 4 + 9 + 2;
        t.extend(["--tag".into(), format!("a{i}={}", "x".repeat(A_LEN))]);
        t.extend(["--tag".into(), format!("b{i}={}", "y".repeat(FILL - A_LEN))]);
        assert_eq!(used + FILL + 2 * (2 + 2), 1200);
        t
    };
    let join = format!("127.77.{net}.1:7946");
    let agents: Vec<Agent> = (1..=3)
        .map(|i| {
            let mut args: Vec<String> = vec![
                "--encrypt".into(),
                key.clone(),
                "--tags-size-max".into(),
                "1200".into(),
                "--join".into(),
                join.clone(),
            ];
            args.extend(tags(i));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Agent::start(&name(i), addr(i, 7946), addr(i, 7373), &args, dir.path())
        })
        .collect();
    let full = |a: &Agent, i: u8| {
        a.member(&name(i)).is_some_and(|m| {
            m["status"] == "alive"
                && m["tags"][format!("a{i}")].as_str().map(str::len) == Some(A_LEN)
                && m["tags"][format!("b{i}")].as_str().map(str::len) == Some(FILL - A_LEN)
        })
    };
    let ok = wait_until(Duration::from_secs(20), || {
        agents.iter().all(|a| (1..=3).all(|i| full(a, i)))
    });
    let refs: Vec<&Agent> = agents.iter().collect();
    assert!(
        ok.is_some(),
        "not all saw all in full\n{}",
        crate::util::logs(&refs)
    );

    // A tag change that keeps the set at the limit, and one beyond it, refused by name.
    let a1 = &agents[0];
    let out = a1.cli(&["tags", "--set", &format!("a1={}", "z".repeat(A_LEN))]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = a1.cli(&["tags", "--set", "c=1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tag"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let changed = |a: &Agent| {
        a.member(&name(1)).is_some_and(|m| {
            m["tags"]["a1"].as_str().is_some_and(|v| v.starts_with('z')) && m["tags"]["c"].is_null()
        })
    };
    let ok = wait_until(Duration::from_secs(20), || agents.iter().all(changed));
    assert!(
        ok.is_some(),
        "the change did not arrive\n{}",
        crate::util::logs(&refs)
    );
}
