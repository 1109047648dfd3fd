//! Entry points for the fuzzers (`fuzz/`) and their regression tests: peer data on its way to
//! handler environments, stdin lines and written files. Whatever a peer sends, what reaches a
//! handler or a file must be clean: environment names of `[A-Z0-9_]`, no NUL or newline in
//! an environment value, one stdin line per member with exactly four fields, one line per
//! member in the nginx and dnsmasq files. A violation panics, which the fuzzer reports.

use gossip_core::{EventKind, Limits, MemberInfo, NodeId, Output, QueryOutput, Status, Tags};

use crate::filter::{Event, QueryReply};
use crate::script::invocation;
use crate::writer::{Snapshot, Writer, WriterConfig};

/// A datagram from a peer (see [`gossip_core::harness::packet`]), then every member event,
/// user event and query the node reports, through handler invocations and writers.
pub fn peer_packet(data: &[u8]) {
    check_outputs(gossip_core::harness::packet(data));
}

/// The same behind decryption (see [`gossip_core::harness::sealed`]).
pub fn peer_sealed(data: &[u8]) {
    check_outputs(gossip_core::harness::sealed(data));
}

/// The bytes cut into strings at NUL bytes: a member name, a tag key and value, an event
/// name and a payload. Whatever the core's validation admits goes through the checks.
pub fn peer_strings(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let mut next = || parts.next().unwrap_or("").to_string();
    let (name, key, value, event, payload) = (next(), next(), next(), next(), next());
    let limits = Limits::default();
    let mut tags = Tags::new();
    tags.insert(key, value);
    tags.insert("role".into(), next());
    if let Ok(id) = NodeId::new(
        &name,
        "10.0.0.2:7946".parse().expect("literal"),
        1,
        tags,
        &limits,
    ) {
        check_members(&[MemberInfo {
            id,
            status: Status::Alive,
        }]);
    }
    if gossip_core::user::validate_event(&event, payload.as_bytes(), &limits).is_ok() {
        check_event(&Event::User {
            name: event,
            ltime: 1,
            payload: payload.into_bytes(),
            coalesce: true,
        });
    }
}

fn local() -> NodeId {
    NodeId::new(
        "local",
        "10.0.0.1:7946".parse().expect("literal"),
        1,
        Tags::new(),
        &Limits::default(),
    )
    .expect("valid identity")
}

fn check_outputs(outputs: Vec<Output>) {
    let mut members = Vec::new();
    for o in outputs {
        match o {
            Output::Event(e) => members.push(e.member),
            Output::User(u) => check_event(&Event::User {
                name: u.name,
                ltime: u.ltime,
                payload: u.payload,
                coalesce: u.coalesce,
            }),
            Output::Query(QueryOutput::Incoming(q)) => check_event(&Event::Query {
                name: q.name,
                ltime: q.ltime,
                payload: q.payload,
                reply: QueryReply::default(),
            }),
            _ => {}
        }
    }
    check_members(&members);
}

fn check_event(event: &Event) {
    let (env, _stdin) = invocation(event, &local());
    for (k, v) in &env {
        assert!(
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "environment name {k:?}"
        );
        assert!(
            !v.contains(['\0', '\n', '\r']),
            "environment value {k}={v:?}"
        );
    }
}

fn check_members(members: &[MemberInfo]) {
    if members.is_empty() {
        return;
    }
    let event = Event::Members {
        kind: EventKind::Join,
        members: members.to_vec(),
    };
    check_event(&event);
    let (_, stdin) = invocation(&event, &local());
    let text = String::from_utf8(stdin).expect("member lines are UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), members.len(), "stdin lines {text:?}");
    for l in &lines {
        assert_eq!(l.matches('\t').count(), 3, "stdin line {l:?}");
        assert!(!l.contains(['\0', '\r']), "stdin line {l:?}");
    }
    let snapshot = Snapshot {
        members: members.to_vec(),
        local: local(),
        index: 0,
        coordinates: Default::default(),
    };
    for flag in [
        "nginx:path=/nonexistent/upstream.conf,upstream=app,default_port=8080",
        "dnsmasq:path=/nonexistent/hosts",
    ] {
        let w = Writer::build(&WriterConfig::from_flag(flag).expect("valid flag"))
            .expect("valid writer");
        let out = w
            .render(&snapshot)
            .expect("a file writer")
            .expect("renders");
        let text = String::from_utf8(out).expect("UTF-8 file");
        for l in text.lines() {
            assert!(!l.contains(['\0', '\r']), "{flag}: line {l:?}");
        }
        let live = members.iter().filter(|m| m.status.is_live()).count();
        let member_lines = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("10.0.0."))
            .count();
        assert!(
            member_lines <= 2 * live,
            "{flag}: {member_lines} lines for {live} members:\n{text}"
        );
    }
}
