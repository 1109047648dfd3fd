//! The command line: defaults, errors (one line, exit code 2 for bad flags and config), and a
//! clear message when no agent answers.

use std::process::Command;

use crate::util::BIN;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run gossip-agent")
}

fn one_line_error(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    err
}

#[test]
fn bad_flag_values_name_the_flag_and_exit_2() {
    for (args, needle) in [
        (&["--bind", "nonsense", "--node", "a"][..], "bind"),
        (&["--node", "bad name!"][..], "node"),
        (&["--node", "a", "--tag", "novalue"][..], "tag"),
        (&["--node", "a", "--profile", "fast"][..], "profile"),
        (&["--node", "a", "--join", "a b"][..], "join"),
        (&["--node", "a", "--advertise", "0.0.0.0"][..], "advertise"),
        (
            &["--node", "a", "--rpc-addr", "0.0.0.0:7373"][..],
            "rpc-addr",
        ),
        (&["--node", "a", "--rpc-token", "short"][..], "rpc-token"),
        (
            &["--node", "a", "--tags-size-max", "9000"][..],
            "tags-size-max",
        ),
        (&["--node", "a", "--no-such-flag"][..], "--no-such-flag"),
        (&["members", "--format", "yaml"][..], "format"),
        (&["members", "--tag", "nokv"][..], "--tag"),
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = one_line_error(&out);
        assert!(
            err.contains(needle),
            "{args:?}: {err:?} does not name {needle}"
        );
    }
}

#[test]
fn bad_config_file_names_the_field_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "node = \"a\"\nbind = \"127.0.0.1:notaport\"\n").unwrap();
    let out = run(&["--config", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line_error(&out).contains("bind"));
    std::fs::write(&f, "node = \"a\"\ncolour = \"red\"\n").unwrap();
    let out = run(&["--config", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line_error(&out).contains("colour"));
    let out = run(&["--config", "/nonexistent/agent.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line_error(&out).contains("/nonexistent/agent.toml"));
}

#[test]
fn unreachable_agent_is_one_clear_line() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    for cmd in [
        &["members"][..],
        &["info"][..],
        &["leave"][..],
        &["join", "x"][..],
        &["tags", "--set", "a=b"][..],
    ] {
        let mut args = cmd.to_vec();
        args.extend(["--rpc-addr", &addr]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}");
        let err = one_line_error(&out);
        assert!(
            err.contains("cannot reach the agent") && err.contains(&addr),
            "{err}"
        );
    }
}

#[test]
fn help_and_version_exit_0() {
    assert!(run(&["--help"]).status.success());
    assert!(run(&["--version"]).status.success());
    let out = run(&["agent", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--join"));
}
