//! The built-in DNS server (`--dns-addr`), asked by real resolvers: `dig` (Debian's
//! bind9-dnsutils) for every record type and case, TCP after truncation and forwarding to a
//! real upstream (dnsmasq); glibc's resolver (`getent`) in a network namespace whose only
//! nameserver is the agent; answers following a join, a leave, a failure and a health
//! change; garbage on the DNS port.
//!
//! Each test has its own 127.77.N.0/24 and serves DNS on port 53 there (root, as in CI).

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{Agent, BIN, Proc, free_port, test_net, wait_until};

struct Net {
    n: u8,
}

impl Net {
    fn new() -> Self {
        Self { n: test_net() }
    }

    fn ip(&self, host: u8) -> String {
        format!("127.77.{}.{host}", self.n)
    }

    /// An agent at host `host`: role and tags, DNS on :53 when `dns` is given (extra flags).
    fn agent(
        &self,
        dir: &Path,
        name: &str,
        host: u8,
        tags: &[&str],
        join: Option<&Agent>,
        dns: Option<&[&str]>,
    ) -> Agent {
        let ip = self.ip(host);
        let gossip: SocketAddr = format!("{ip}:{}", free_port()).parse().unwrap();
        let rpc: SocketAddr = format!("{ip}:7373").parse().unwrap();
        let mut extra: Vec<String> = Vec::new();
        for t in tags {
            extra.extend(["--tag".into(), t.to_string()]);
        }
        if let Some(j) = join {
            extra.extend(["--join".into(), j.gossip.to_string()]);
        }
        if let Some(flags) = dns {
            extra.extend(["--dns-addr".into(), format!("{ip}:53")]);
            extra.extend(flags.iter().map(|f| f.to_string()));
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Agent::start(name, gossip, rpc, &extra, dir)
    }
}

/// `dig @server -p 53 ARGS +tries=1 +time=2`, its output.
fn dig(server: &str, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{server}"))
        .args(["-p", "53", "+tries=1", "+time=2"])
        .args(args)
        .output()
        .expect("run dig (./test.sh installs bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dig +short`, sorted.
fn short(server: &str, args: &[&str]) -> Vec<String> {
    let mut a = args.to_vec();
    a.push("+short");
    let mut v: Vec<String> = dig(server, &a).lines().map(str::to_string).collect();
    v.sort();
    v
}

fn status(out: &str) -> &str {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("NONE")
}

/// dnsmasq on `ip`:53 answering `example.test` from a hosts file (an upstream for forwarding).
fn upstream(dir: &Path, ip: &str) -> Proc {
    let hosts = dir.join("upstream-hosts");
    std::fs::write(&hosts, "192.0.2.7 example.test\n").unwrap();
    let pid = dir.join("upstream.pid");
    let p = Proc::start(
        "dnsmasq",
        &[
            "--keep-in-foreground",
            "--port=53",
            &format!("--listen-address={ip}"),
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            &format!("--addn-hosts={}", hosts.display()),
            &format!("--pid-file={}", pid.display()),
            "--user=root",
        ],
        &dir.join("upstream.out"),
    );
    let up = wait_until(Duration::from_secs(10), || pid.exists());
    assert!(up.is_some(), "dnsmasq (upstream) did not start");
    p
}

#[test]
fn dig_gets_every_record_type_and_case_from_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = Net::new();
    let _up = upstream(d, &net.ip(200));
    let recursor = format!("--dns-recursor={}", net.ip(200));
    let a = net.agent(
        d,
        "a",
        1,
        &["role=web", "port=80", "zone=eu"],
        None,
        Some(&[&recursor]),
    );
    let b = net.agent(
        d,
        "b",
        2,
        &["role=web", "port=8080", "zone=us"],
        Some(&a),
        None,
    );
    let _c = net.agent(d, "c", 3, &["role=db"], Some(&a), None);
    let s = net.ip(1);
    let (ia, ib, ic) = (net.ip(1), net.ip(2), net.ip(3));
    let both = {
        let mut v = vec![ia.clone(), ib.clone()];
        v.sort();
        v
    };
    let all = wait_until(Duration::from_secs(10), || {
        short(&s, &["web.gossip", "A"]) == both
    });
    assert!(
        all.is_some(),
        "web.gossip: {:?}",
        short(&s, &["web.gossip", "A"])
    );

    assert_eq!(short(&s, &["web.role.gossip", "A"]), both);
    assert_eq!(short(&s, &["WEB.GOSSIP", "A"]), both, "case-insensitive");
    assert_eq!(short(&s, &["zone-eu.web.gossip", "A"]), [ia.as_str()]);
    assert_eq!(short(&s, &["zone-us.web.role.gossip", "A"]), [ib.as_str()]);
    assert_eq!(short(&s, &["c.node.gossip", "A"]), [ic.as_str()]);
    assert_eq!(short(&s, &["db.gossip"]), [ic.as_str()]);
    let srv = short(&s, &["_web._tcp.gossip", "SRV"]);
    assert_eq!(srv, ["1 1 80 a.node.gossip.", "1 1 8080 b.node.gossip."]);
    assert_eq!(short(&s, &["web.gossip", "SRV"]), srv);
    let full = dig(&s, &["_web._tcp.gossip", "SRV"]);
    assert!(
        full.contains("ADDITIONAL: 2") || full.contains("ADDITIONAL: 3"),
        "{full}"
    );
    assert!(
        full.contains(&format!("a.node.gossip.\t\t0\tIN\tA\t{ia}")),
        "{full}"
    );
    assert!(full.contains(" aa "), "authoritative: {full}");

    // Unknown names: NXDOMAIN with the SOA; a known name of another type: NOERROR, empty.
    for name in ["cache.gossip", "nobody.node.gossip", "zone-asia.web.gossip"] {
        let out = dig(&s, &[name, "A"]);
        assert_eq!(status(&out), "NXDOMAIN", "{name}: {out}");
        assert!(
            out.contains("AUTHORITY SECTION") && out.contains("SOA"),
            "{out}"
        );
    }
    let out = dig(&s, &["web.gossip", "MX"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(out.contains("ANSWER: 0") && out.contains("SOA"), "{out}");
    let out = dig(&s, &["web.gossip", "AAAA"]);
    assert!(out.contains("ANSWER: 0"), "{out}");
    assert!(dig(&s, &["gossip", "SOA", "+short"]).contains("ns.gossip. hostmaster.gossip."));
    // TTL 0 by default.
    let out = dig(&s, &["web.gossip", "A", "+noall", "+answer"]);
    assert!(out.lines().all(|l| l.contains("\t0\tIN\tA")), "{out}");

    // Forwarded to the upstream, over UDP and over TCP.
    assert_eq!(short(&s, &["example.test", "A"]), ["192.0.2.7"]);
    assert_eq!(short(&s, &["example.test", "A", "+tcp"]), ["192.0.2.7"]);
    // The upstream's own answer for a name it lacks, relayed as it is.
    let ours = dig(&s, &["missing.test", "A"]);
    let theirs = dig(&net.ip(200), &["missing.test", "A"]);
    assert_eq!(status(&ours), status(&theirs), "{ours}\n{theirs}");
    assert_ne!(status(&ours), "NONE", "{ours}");

    // Shuffled on each answer (the answers are kept as bytes until membership changes, and
    // shuffled in place), and in the letter case of each question.
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let out = dig(&s, &["web.gossip", "A", "+short"]);
        firsts.insert(out.lines().next().unwrap_or_default().to_string());
    }
    assert_eq!(
        firsts.len(),
        2,
        "each address comes first at times: {firsts:?}"
    );
    for name in ["WeB.gossip", "wEb.GOSSIP"] {
        let out = dig(&s, &[name, "A", "+noall", "+answer"]);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(
            out.lines().all(|l| l.starts_with(&format!("{name}."))),
            "{out}"
        );
    }

    // Over TCP the same answers.
    assert_eq!(short(&s, &["web.gossip", "A", "+tcp"]), both);

    // Counters.
    let info = a.info();
    let dns = &info["dns"];
    assert!(dns["answered"].as_u64().unwrap() > 10, "{dns}");
    assert!(dns["nxdomain"].as_u64().unwrap() >= 3, "{dns}");
    assert!(dns["forwarded"].as_u64().unwrap() >= 3, "{dns}");
    drop(b);
}

#[test]
fn answers_follow_joins_leaves_failures_and_health_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = Net::new();
    let a = net.agent(
        d,
        "a",
        1,
        &["role=ctl"],
        None,
        Some(&["--dns-recursor=none"]),
    );
    let s = net.ip(1);
    let web = |host: u8, join: &Agent| {
        net.agent(
            d,
            &format!("w{host}"),
            host,
            &["role=api"],
            Some(join),
            None,
        )
    };
    let w2 = web(2, &a);
    let w3 = web(3, &a);
    let w4 = web(4, &a);
    let expect = |hosts: &[u8]| {
        let mut v: Vec<String> = hosts.iter().map(|h| net.ip(*h)).collect();
        v.sort();
        v
    };
    let follows = |hosts: &[u8], what: &str| {
        let want = expect(hosts);
        let ok = wait_until(Duration::from_secs(15), || {
            short(&s, &["api.gossip", "A"]) == want
        });
        assert!(
            ok.is_some(),
            "{what}: {:?}, want {want:?}",
            short(&s, &["api.gossip", "A"])
        );
        ok.unwrap()
    };
    follows(&[2, 3, 4], "three joins");
    let w5 = web(5, &a);
    follows(&[2, 3, 4, 5], "a join");
    assert!(w2.cli(&["leave"]).status.success());
    let t = follows(&[3, 4, 5], "a leave");
    assert!(t < Duration::from_secs(2), "a leave took {t:?}");
    w3.kill();
    follows(&[4, 5], "a failure");
    assert!(
        w4.cli(&["tags", "--set", "health=critical"])
            .status
            .success()
    );
    follows(&[5], "a health check failing");
    assert!(
        w4.cli(&["tags", "--set", "health=passing"])
            .status
            .success()
    );
    follows(&[4, 5], "the check passing again");
    // Refused outside the zone with --dns-recursor none.
    let out = dig(&s, &["example.test", "A"]);
    assert_eq!(status(&out), "REFUSED", "{out}");
    drop(w5);
}

#[test]
fn truncated_answers_are_retried_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = Net::new();
    let a = net.agent(
        d,
        "a",
        1,
        &["role=big"],
        None,
        Some(&["--dns-recursor=none"]),
    );
    // 40 members: 40 A records do not fit 512 bytes.
    let mut fleet = Vec::new();
    for h in 2..=40u8 {
        fleet.push(net.agent(d, &format!("m{h}"), h, &["role=big"], Some(&a), None));
    }
    let s = net.ip(1);
    let ok = wait_until(Duration::from_secs(20), || {
        short(&s, &["big.gossip", "A", "+tcp"]).len() == 40
    });
    assert!(ok.is_some(), "40 members over TCP");
    // Over UDP without EDNS: truncated (dig +ignore does not retry).
    let out = dig(&s, &["big.gossip", "A", "+ignore", "+noedns"]);
    assert!(out.contains(" tc"), "TC set: {out}");
    // dig retries over TCP by default: the whole answer.
    assert_eq!(short(&s, &["big.gossip", "A", "+noedns"]).len(), 40);
    // With a large EDNS buffer it fits in one datagram.
    let out = dig(&s, &["big.gossip", "A", "+bufsize=4096", "+ignore"]);
    assert!(!out.contains(" tc") && out.contains("ANSWER: 40"), "{out}");
    assert!(a.info()["dns"]["truncated"].as_u64().unwrap() >= 1);
}

#[test]
fn garbage_and_oversize_datagrams_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = Net::new();
    let a = net.agent(
        d,
        "a",
        1,
        &["role=web"],
        None,
        Some(&["--dns-recursor=none"]),
    );
    let s = net.ip(1);
    let up = wait_until(Duration::from_secs(10), || {
        short(&s, &["web.gossip", "A"]) == [net.ip(1)]
    });
    assert!(up.is_some(), "the DNS server never answered");
    let sock = UdpSocket::bind(format!("{}:0", net.ip(99))).unwrap();
    let to = format!("{s}:53");
    sock.send_to(b"\x00", &to).unwrap();
    sock.send_to(&[0xff; 100], &to).unwrap();
    sock.send_to(&[0u8; 5000], &to).unwrap();
    // A response (QR set) is not a query either.
    let mut resp = [0u8; 12];
    resp[2] = 0x80;
    sock.send_to(&resp, &to).unwrap();
    // Garbage over TCP too.
    {
        use std::io::Write;
        let mut t = std::net::TcpStream::connect(&to).unwrap();
        let _ = t.write_all(&[0, 3, 1, 2, 3]);
    }
    let counted = wait_until(Duration::from_secs(5), || {
        a.info()["dns"]["dropped"].as_u64().unwrap_or(0) >= 5
    });
    assert!(counted.is_some(), "{}", a.info()["dns"]);
    assert_eq!(
        short(&s, &["web.gossip", "A"]),
        [net.ip(1)],
        "still answering"
    );
}

/// glibc's resolver (`getent`), in a network namespace whose /etc/resolv.conf names only the
/// agent: role names, node names, and the search domain for a bare role name.
#[test]
fn glibc_resolves_role_names_through_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let resolv = d.join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\nsearch gossip\noptions ndots:1\n",
    )
    .unwrap();
    let hosts = d.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    // In a new network and mount namespace: lo up, resolv.conf and hosts bind-mounted, two
    // agents (one serving DNS on 127.0.0.1:53), then getent.
    let script = format!(
        r#"set -e
ip link set lo up
mount --bind {resolv} /etc/resolv.conf
mount --bind {hosts} /etc/hosts
{bin} --node a --bind 127.0.0.1:7946 --rpc-addr 127.0.0.1:7373 --tag role=api --profile local --dns-addr 127.0.0.1:53 --dns-recursor none 2>{dir}/a.log &
A=$!
{bin} --node b --bind 127.0.0.2:7946 --rpc-addr 127.0.0.2:7373 --tag role=api --profile local --join 127.0.0.1:7946 2>{dir}/b.log &
B=$!
trap 'kill $A $B 2>/dev/null; wait' EXIT
for i in $(seq 100); do
  n=$(getent ahosts api.gossip | awk '{{print $1}}' | sort -u | wc -l)
  [ "$n" = 2 ] && break
  sleep 0.1
done
echo "ahosts: $(getent ahosts api.gossip | awk '{{print $1}}' | sort -u | tr '\n' ' ')"
echo "hosts: $(getent hosts b.node.gossip)"
echo "bare: $(getent ahosts api | awk '{{print $1}}' | sort -u | tr '\n' ' ')"
getent hosts nothing.gossip || echo "nothing: $?"
"#,
        resolv = resolv.display(),
        hosts = hosts.display(),
        bin = BIN,
        dir = d.display()
    );
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--fork", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    let text = String::from_utf8_lossy(&out.stdout);
    let a_log = std::fs::read_to_string(d.join("a.log")).unwrap_or_default();
    assert!(
        text.contains("ahosts: 127.0.0.1 127.0.0.2 "),
        "{text}\n{}\n{a_log}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("hosts: 127.0.0.2       b.node.gossip"),
        "{text}"
    );
    assert!(
        text.contains("bare: 127.0.0.1 127.0.0.2 "),
        "search domain: {text}"
    );
    assert!(
        text.contains("nothing: 2"),
        "NXDOMAIN is getent's 2: {text}"
    );
}
