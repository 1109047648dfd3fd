//! Serf's RPC protocol, shown against clients nobody here wrote: Debian's `serf` CLI, run
//! against our agent and against Debian's Serf agent with the same commands (outputs
//! compared, addresses aside), and Serf's own Go client (`github.com/hashicorp/serf/client`,
//! from Debian's golang-github-hashicorp-serf-dev), built offline from `tests/go/`.
//!
//! Needs Debian's `serf`, `golang-go` and `golang-github-hashicorp-serf-dev` (`./test.sh`
//! installs them); fails without them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{BIN, keygen, test_net, wait_until};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    Serf,
}

/// Two agents, `a` (role=web) and `b` (role=app, joined to a); killed on drop.
struct Cluster {
    kind: Kind,
    ips: [String; 2],
    procs: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {
    fn start(kind: Kind, key: &str, dir: &Path) -> Self {
        Self::start_with(kind, key, None, dir)
    }

    /// With `token`, the RPC needs it (ours: `--rpc-token`; Serf: `rpc_auth` in a config file).
    fn start_with(kind: Kind, key: &str, token: Option<&str>, dir: &Path) -> Self {
        let net = test_net();
        let ips = [format!("127.77.{net}.1"), format!("127.77.{net}.2")];
        let dir = dir.join(format!("{kind:?}{net}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Self {
            kind,
            ips,
            procs: Vec::new(),
            dir,
        };
        for (i, (node, role)) in [("a", "web"), ("b", "app")].into_iter().enumerate() {
            let ip = c.ips[i].clone();
            let log = std::fs::File::create(c.dir.join(format!("{node}.log"))).unwrap();
            let mut cmd = match kind {
                Kind::Ours => {
                    let mut cmd = Command::new(BIN);
                    cmd.args(["--node", node, "--bind", &format!("{ip}:7946")])
                        .args(["--rpc-addr", &format!("{ip}:7373")])
                        .args(["--tag", &format!("role={role}"), "--encrypt", key])
                        .args(["--profile", "local", "--log-level", "debug"]);
                    if i == 1 {
                        cmd.args(["--join", &format!("{}:7946", c.ips[0])]);
                    }
                    if let Some(t) = token {
                        cmd.args(["--rpc-token", t]);
                    }
                    cmd
                }
                Kind::Serf => {
                    let mut cmd = Command::new("serf");
                    cmd.args(["agent", "-node", node, "-bind", &format!("{ip}:7946")])
                        .args(["-rpc-addr", &format!("{ip}:7373")])
                        .args(["-tag", &format!("role={role}"), "-encrypt", key]);
                    if i == 1 {
                        cmd.args(["-join", &format!("{}:7946", c.ips[0])]);
                    }
                    if let Some(t) = token {
                        // The agent takes it from a config file only.
                        let conf = c.dir.join(format!("{node}.json"));
                        std::fs::write(&conf, format!(r#"{{"rpc_auth": "{t}"}}"#)).unwrap();
                        cmd.args(["-config-file", conf.to_str().unwrap()]);
                    }
                    cmd
                }
            };
            let child = cmd
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start {kind:?} agent: {e} (./test.sh installs serf)"));
            c.procs.push(child);
            // Serf's `-join` is tried once, at start: a must be up before b starts.
            let rpc = c.rpc(i);
            let up = wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect(rpc.as_str()).is_ok()
            });
            assert!(
                up.is_some(),
                "{kind:?} {node}: RPC never came up\n{}",
                c.logs()
            );
        }
        let auth = token.map(|t| format!("-rpc-auth={t}"));
        let ok = wait_until(Duration::from_secs(20), || {
            let mut args = vec!["members", "-status", "alive"];
            args.extend(auth.as_deref());
            let out = c.serf(0, &args);
            String::from_utf8_lossy(&out.stdout).lines().count() == 2
        });
        assert!(
            ok.is_some(),
            "{kind:?}: the two agents never saw each other\n{}",
            c.logs()
        );
        c
    }

    fn rpc(&self, i: usize) -> String {
        format!("{}:7373", self.ips[i])
    }

    /// Debian's `serf` CLI against agent `i`.
    fn serf(&self, i: usize, args: &[&str]) -> Output {
        let (cmd, rest) = args.split_first().expect("a command");
        Command::new("serf")
            .arg(cmd)
            .arg(format!("-rpc-addr={}", self.rpc(i)))
            .args(rest)
            .env_remove("SERF_RPC_ADDR")
            .env_remove("SERF_RPC_AUTH")
            .output()
            .expect("run serf (./test.sh installs it)")
    }

    /// Exit code and output, with this cluster's addresses replaced by names.
    fn normalised(&self, i: usize, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self.serf(i, args);
        let fix = |b: &[u8]| {
            let mut s = String::from_utf8_lossy(b).into_owned();
            for (n, ip) in self.ips.iter().enumerate() {
                s = s.replace(ip.as_str(), &format!("IP{n}"));
            }
            s
        };
        let mut stdout = fix(&out.stdout);
        if args[0] == "members" && !args.contains(&"json") {
            // Serf lists members in its map's order.
            let mut lines: Vec<&str> = stdout.lines().collect();
            lines.sort();
            stdout = lines.iter().map(|l| format!("{l}\n")).collect();
        }
        (out.status.code(), stdout, fix(&out.stderr))
    }

    fn logs(&self) -> String {
        ["a", "b"]
            .iter()
            .map(|n| {
                let t =
                    std::fs::read_to_string(self.dir.join(format!("{n}.log"))).unwrap_or_default();
                format!("---- {:?} {n} ----\n{t}", self.kind)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `serf query -format json`, with the acks sorted (they come in the order they arrive).
fn query_json(text: &str) -> Value {
    let mut v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if let Some(acks) = v["Acks"].as_array_mut() {
        acks.sort_by_key(|a| a.to_string());
    }
    v
}

/// The same `serf` commands against both agents give the same answers (exit code, output;
/// addresses aside), in order: listing and filtering, events, queries, tags, joins and
/// force-leave, key rotation, `info`'s sections, `rtt` without coordinates, `monitor`, and
/// last `leave`.
#[test]
fn serf_cli_gets_the_same_answers_from_our_agent_as_from_serf() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen();
    let ours = Cluster::start(Kind::Ours, &key, dir.path());
    let serf = Cluster::start(Kind::Serf, &key, dir.path());
    let new_key = keygen();

    let same: &[&[&str]] = &[
        &["members"],
        &["members", "-detailed"],
        &["members", "-status", "alive", "-tag", "role=web"],
        &["members", "-tag", "role=a.*"],
        &["members", "-name", "b", "-format", "json"],
        &["members", "-status", "failed"],
        &["event", "deploy", "v1"],
        &["event", "-coalesce=false", "restart"],
        &[
            "query",
            "-no-ack",
            "-timeout",
            "500ms",
            "-format",
            "json",
            "nobody-answers",
        ],
        &["tags", "-set", "zone=eu", "-delete", "role"],
        &["members", "-tag", "zone=eu"],
        &["tags", "-set", "role=web", "-delete", "zone"],
        &["force-leave", "nobody"],
        &["join", "127.0.0.1:1"],
        &["keys", "-install", &new_key],
        &["keys", "-use", &new_key],
        &["keys", "-remove", &key],
        &["rtt", "nobody"],
        &["monitor", "-log-level", "loud"],
    ];
    for args in same {
        let (o, s) = (ours.normalised(0, args), serf.normalised(0, args));
        if args[0] == "join" {
            // The reason is the transport's own words; the verdict is the same.
            assert_eq!(o.0, s.0, "serf {args:?}: ours {o:?}, Serf's {s:?}");
            assert!(o.1.starts_with("Error joining the cluster: "), "{o:?}");
            continue;
        }
        assert_eq!(
            o,
            s,
            "serf {args:?}: ours first, then Serf's\n{}",
            ours.logs()
        );
    }

    // `rtt` to the other member: once a has probed b (its ack carries b's coordinate),
    // Serf's CLI prints our estimate in the words it prints Serf's in.
    let line = regex_lite::Regex::new(r"^Estimated b <-> a rtt: \d+\.\d{3} ms$").unwrap();
    let mut ours_rtt = (None, String::new());
    wait_until(Duration::from_secs(20), || {
        let (code, out, _) = ours.normalised(0, &["rtt", "b"]);
        ours_rtt = (code, out.trim().to_string());
        code == Some(0)
    });
    let (code, out, _) = serf.normalised(0, &["rtt", "b"]);
    for (who, (code, out)) in [
        ("ours", ours_rtt),
        ("Serf's", (code, out.trim().to_string())),
    ] {
        assert_eq!(code, Some(0), "{who}: {out}");
        assert!(line.is_match(&out), "{who}: {out:?}");
    }

    // A query both members ack, listed in JSON (no handler answers).
    let q = &["query", "-timeout", "1s", "-format", "json", "uptime", "hi"];
    let (o, s) = (ours.normalised(0, q), serf.normalised(0, q));
    assert_eq!(
        (o.0, query_json(&o.1)),
        (s.0, query_json(&s.1)),
        "{o:?} {s:?}"
    );

    // Keys held after the rotation (the same keys on both clusters): the new one, on both
    // members.
    let (o, s) = (
        ours.normalised(0, &["keys", "-list"]),
        serf.normalised(0, &["keys", "-list"]),
    );
    assert_eq!(o, s, "ours first, then Serf's");
    assert_eq!(o.0, Some(0), "{o:?}");
    assert!(o.1.contains(&new_key) && o.1.contains("[2/2]"), "{o:?}");
    assert!(!o.1.contains(&key), "{o:?}");

    // `info`: Serf's sections; the agent's name and tags, the member count.
    for c in [&ours, &serf] {
        let (code, out, _) = c.normalised(0, &["info", "-format", "json"]);
        assert_eq!(code, Some(0));
        let v: Value = serde_json::from_str(&out).unwrap();
        for section in ["agent", "runtime", "serf", "tags", "event_handlers"] {
            assert!(
                v.get(section).is_some(),
                "{:?} has no {section}: {out}",
                c.kind
            );
        }
        assert_eq!(v["agent"]["name"], "a", "{out}");
        assert_eq!(v["tags"]["role"], "web", "{out}");
        assert_eq!(v["serf"]["members"], "2", "{out}");
        assert_eq!(v["serf"]["encrypted"], "true", "{out}");
    }

    // `monitor`: log lines in Serf's layout, the events of the stream it opens too.
    for c in [&ours, &serf] {
        let mut mon = Command::new("serf")
            .args([
                "monitor",
                &format!("-rpc-addr={}", c.rpc(0)),
                "-log-level=info",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = mon.stdout.take().unwrap();
        // The user event's log line, in Serf's layout (Serf's monitor also prints the
        // events of the stream it opens, over several lines: those are not it).
        let layout =
            regex_lite::Regex::new(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[INFO\] .*monitor-mark")
                .unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .find(|l| layout.is_match(l))
        });
        // The monitor is up once the event sent after it shows: send until it does, bounded.
        let seen = wait_until(Duration::from_secs(10), || {
            c.serf(1, &["event", "monitor-mark"]);
            reader.is_finished()
        });
        let _ = mon.kill();
        let _ = mon.wait();
        let line = reader.join().unwrap();
        assert!(
            seen.is_some() && line.is_some(),
            "{:?}: the monitor never showed the event's log line in Serf's layout",
            c.kind
        );
    }

    // Leave last: answered, then the agent exits.
    for mut c in [ours, serf] {
        let (code, out, err) = c.normalised(1, &["leave"]);
        assert_eq!(
            (code, out.trim()),
            (Some(0), "Graceful leave complete"),
            "{:?} {err}",
            c.kind
        );
        let b = &mut c.procs[1];
        let exited = wait_until(Duration::from_secs(10), || {
            matches!(b.try_wait(), Ok(Some(_)))
        });
        assert!(exited.is_some(), "{:?}: b did not exit after leave", c.kind);
    }
}

/// Serf's Go client against our agent: members (plain and filtered), a user event and a
/// query coming back through a stream, the query answered with `respond`, an unknown query
/// ID refused, `monitor` (and a second one refused), `get-coordinate` (the agent's own: a
/// usable coordinate), `stats` and `tags`. The same program against Serf prints the same
/// lines (addresses and times aside).
#[test]
fn serf_go_client_works_against_our_agent_as_against_serf() {
    let bin = go_client();
    let dir = tempfile::tempdir().unwrap();
    let key = keygen();
    let ours = Cluster::start(Kind::Ours, &key, dir.path());
    let serf = Cluster::start(Kind::Serf, &key, dir.path());
    let run = |c: &Cluster| {
        let out = Command::new(&bin)
            .arg(c.rpc(0))
            .env("SELF", "a")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{:?}: {text}\n{}\n{}",
            c.kind,
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        );
        text.lines()
            // Serf 0.8's agent streams a query's responses in a loop that reads the ack and
            // response channels until its own timer says the deadline passed; when Serf
            // closes those channels first, each read of a closed channel sends an empty
            // response (cmd/serf/command/agent/ipc_query_response_stream.go), tens of them,
            // once in a few hundred runs. Ours must never.
            .filter(|l| c.kind == Kind::Ours || *l != "response  ")
            .map(|l| {
                let mut l = l.to_string();
                for (n, ip) in c.ips.iter().enumerate() {
                    l = l.replace(ip.as_str(), &format!("IP{n}"));
                }
                // Times and coordinates differ by nature; the line must be there.
                if l.starts_with("monitor ") {
                    l = "monitor LINE".into();
                }
                l
            })
            .collect::<Vec<_>>()
    };
    let (o, s) = (run(&ours), run(&serf));
    assert_eq!(o, s, "ours first, then Serf's");
    assert!(o.contains(&"response a it is me".to_string()), "{o:#?}");
    assert!(!o.contains(&"response  ".to_string()), "{o:#?}");
    assert!(o.contains(&"coordinate usable".to_string()), "{o:#?}");
    assert_eq!(o.last().map(String::as_str), Some("done"));
}

/// `--rpc-token` is Serf's `auth`: without it, or with a wrong one, Serf's CLI gets the
/// same refusals from our agent as from Serf's; with it, everything works.
#[test]
fn the_rpc_token_is_serfs_auth_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen();
    let token = "s3cret-token-of-the-cluster";
    let ours = Cluster::start_with(Kind::Ours, &key, Some(token), dir.path());
    let serf = Cluster::start_with(Kind::Serf, &key, Some(token), dir.path());
    let good = format!("-rpc-auth={token}");
    let cases: &[&[&str]] = &[
        &["members"],
        &["members", "-rpc-auth=wrong"],
        &["members", &good],
        &["event", "deploy"],
        &["event", &good, "deploy"],
        &["tags", "-rpc-auth=wrong", "-set", "x=y"],
    ];
    for args in cases {
        let (o, s) = (ours.normalised(0, args), serf.normalised(0, args));
        assert_eq!(o, s, "serf {args:?}: ours first, then Serf's");
    }
    let (code, out, _) = ours.normalised(0, &["members"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("Authentication required"), "{out}");
    // Our own CLI and HTTP API take the same token.
    let out = Command::new(BIN)
        .args(["members", "--rpc-addr", &ours.rpc(0), "--rpc-token", token])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The Go program, built once per test binary into the target directory, offline from
/// Debian's Go sources.
fn go_client() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let out_dir = root.join("target").join("go");
            std::fs::create_dir_all(&out_dir).unwrap();
            let bin = out_dir.join("serf_client");
            let out = Command::new("go")
                .args(["build", "-o"])
                .arg(&bin)
                .arg(root.join("tests/go/serf_client.go"))
                .env("GO111MODULE", "off")
                .env("GOPATH", "/usr/share/gocode")
                .env("GOCACHE", out_dir.join("cache"))
                .env("GOFLAGS", "")
                .output()
                .expect("run go (./test.sh installs golang-go)");
            assert!(
                out.status.success(),
                "go build failed (./test.sh installs golang-go and golang-github-hashicorp-serf-dev): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            bin
        })
        .clone()
}
