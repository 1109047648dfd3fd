//! Running one handler invocation the way Serf does (`/bin/sh -c SCRIPT`, the Serf environment,
//! the payload on stdin), with what Serf lacks: a timeout after which the script's whole
//! process group is killed, and output capped (the last 8 KiB of each stream are kept).

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gossip_core::{MemberInfo, NodeId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::filter::Event;

/// Bytes kept of each output stream.
pub const OUTPUT_CAP: usize = 8 * 1024;

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exited with this code.
    Exited(i32),
    /// Killed by a signal it did not expect (not our timeout).
    Signaled,
    /// Ran past its timeout; its process group was killed.
    TimedOut,
    /// Could not be started.
    SpawnFailed(String),
}

/// The last bytes of an output stream, and how many were dropped before them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The kept bytes.
    pub bytes: Vec<u8>,
    /// Bytes dropped from the front.
    pub dropped: u64,
}

impl Captured {
    /// Lossy text, with a note when the front was dropped.
    pub fn text(&self) -> String {
        let t = String::from_utf8_lossy(&self.bytes).trim_end().to_string();
        if self.dropped > 0 {
            format!("[{} earlier bytes dropped] {t}", self.dropped)
        } else {
            t
        }
    }
}

/// One finished invocation.
#[derive(Debug, Clone)]
pub struct Finished {
    /// How it ended.
    pub outcome: Outcome,
    /// Standard output (capped).
    pub stdout: Captured,
    /// Standard error (capped).
    pub stderr: Captured,
    /// Wall time.
    pub elapsed: Duration,
}

/// Runs `script` with `/bin/sh -c` in a process group of its own, the agent's environment
/// plus `env`, `stdin` as its standard input. Never waits longer than `timeout` for it, plus
/// one second for its output pipes to close.
pub async fn run(
    script: &str,
    env: &[(String, String)],
    stdin: Vec<u8>,
    timeout: Duration,
) -> Finished {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Finished {
                outcome: Outcome::SpawnFailed(e.to_string()),
                stdout: Captured::default(),
                stderr: Captured::default(),
                elapsed: started.elapsed(),
            };
        }
    };
    let pgid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    if let Some(mut w) = child.stdin.take() {
        // A script that does not read its stdin must not block us: write in the background
        // and ignore a closed pipe.
        tokio::spawn(async move {
            let _ = w.write_all(&stdin).await;
            let _ = w.shutdown().await;
        });
    }
    let out = tokio::spawn(read_capped(child.stdout.take()));
    let err = tokio::spawn(read_capped(child.stderr.take()));

    let outcome = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => match status.code() {
            Some(c) => Outcome::Exited(c),
            None => Outcome::Signaled,
        },
        Ok(Err(e)) => Outcome::SpawnFailed(e.to_string()),
        Err(_) => {
            if let Some(pg) = pgid {
                let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.wait().await;
            Outcome::TimedOut
        }
    };
    // A background process that inherited the pipes may keep them open: bound the wait.
    let grace = Duration::from_secs(1);
    let stdout = tokio::time::timeout(grace, out)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let stderr = tokio::time::timeout(grace, err)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Finished {
        outcome,
        stdout,
        stderr,
        elapsed: started.elapsed(),
    }
}

async fn read_capped(r: Option<impl AsyncRead + Unpin>) -> Captured {
    let Some(mut r) = r else {
        return Captured::default();
    };
    let mut ring: VecDeque<u8> = VecDeque::with_capacity(1024);
    let mut dropped = 0u64;
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                ring.extend(&buf[..n]);
                let over = ring.len().saturating_sub(OUTPUT_CAP);
                if over > 0 {
                    ring.drain(..over);
                    dropped += over as u64;
                }
            }
        }
    }
    Captured {
        bytes: ring.into(),
        dropped,
    }
}

/// Serf's `eventClean`: tab and newline escaped, nothing else.
pub fn clean(s: &str) -> String {
    s.replace('\t', "\\t").replace('\n', "\\n")
}

/// The stdin Serf gives member event handlers: `NAME\tADDR\tROLE\tk=v,k=v\n` per member,
/// the address without its port.
pub fn member_lines(members: &[MemberInfo]) -> Vec<u8> {
    let mut out = String::new();
    for m in members {
        let tags: Vec<String> = m.tags().iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            clean(m.name()),
            m.addr().ip(),
            clean(m.id.role().unwrap_or("")),
            clean(&tags.join(","))
        ));
    }
    out.into_bytes()
}

/// `SERF_TAG_<KEY>`: the key upper-cased, every character outside `[A-Z0-9_]` made `_`.
pub fn tag_env_name(key: &str) -> String {
    let k: String = key
        .chars()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("SERF_TAG_{k}")
}

/// The environment and stdin of one invocation for `event`, as seen by the node `local`.
pub fn invocation(event: &Event, local: &NodeId) -> (Vec<(String, String)>, Vec<u8>) {
    let mut env = vec![
        ("SERF_SELF_NAME".to_string(), local.name().to_string()),
        (
            "SERF_SELF_ROLE".to_string(),
            local.role().unwrap_or("").to_string(),
        ),
    ];
    for (k, v) in local.tags() {
        env.push((tag_env_name(k), v.clone()));
    }
    let stdin = match event {
        Event::Members { kind, members } => {
            env.push(("SERF_EVENT".into(), kind.serf_name().into()));
            member_lines(members)
        }
        Event::User {
            name,
            ltime,
            payload,
            ..
        } => {
            env.push(("SERF_EVENT".into(), "user".into()));
            env.push(("SERF_USER_EVENT".into(), name.clone()));
            env.push(("SERF_USER_LTIME".into(), ltime.to_string()));
            let mut p = payload.clone();
            p.push(b'\n');
            p
        }
        Event::Query {
            name,
            ltime,
            payload,
            ..
        } => {
            env.push(("SERF_EVENT".into(), "query".into()));
            env.push(("SERF_QUERY_NAME".into(), name.clone()));
            env.push(("SERF_QUERY_LTIME".into(), ltime.to_string()));
            let mut p = payload.clone();
            p.push(b'\n');
            p
        }
    };
    (env, stdin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::{EventKind, Status};

    #[test]
    fn serf_stdin_and_env() {
        let id =
            gossip_testkit::members::id("n1", "10.0.0.4", &[("role", "web"), ("dc-name", "eu 1")]);
        let e = Event::Members {
            kind: EventKind::Join,
            members: vec![MemberInfo {
                id: id.clone(),
                status: Status::Alive,
            }],
        };
        let (env, stdin) = invocation(&e, &id);
        assert_eq!(
            String::from_utf8(stdin).unwrap(),
            "n1\t10.0.0.4\tweb\tdc-name=eu 1,role=web\n"
        );
        assert!(env.contains(&("SERF_EVENT".into(), "member-join".into())));
        assert!(env.contains(&("SERF_TAG_DC_NAME".into(), "eu 1".into())));
        assert!(env.contains(&("SERF_SELF_ROLE".into(), "web".into())));
        assert_eq!(clean("a\tb\nc"), "a\\tb\\nc");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("bg.pid");
        // The script starts a background sleeper and then hangs itself.
        let script = format!("sleep 600 & echo $! > {}; sleep 600", pidfile.display());
        let f = run(&script, &[], vec![], Duration::from_millis(300)).await;
        assert_eq!(f.outcome, Outcome::TimedOut);
        assert!(f.elapsed < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background child was in the group: it dies (a signal is delivered asynchronously,
        // so poll, bounded) or lingers only as a zombie.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.split(' ').nth(2).is_none_or(|st| st != "Z"))
                .unwrap_or(false)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!alive(), "background process {pid} survived the timeout");
    }

    #[tokio::test]
    async fn output_is_capped_and_stdin_is_delivered() {
        let f = run(
            "cat; head -c 20000 /dev/zero | tr '\\0' x >&2; exit 3",
            &[],
            b"hello\n".to_vec(),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(f.outcome, Outcome::Exited(3));
        assert_eq!(f.stdout.bytes, b"hello\n");
        assert_eq!(f.stderr.bytes.len(), OUTPUT_CAP);
        assert_eq!(f.stderr.dropped, 20000 - OUTPUT_CAP as u64);
        // A script that ignores a large stdin does not block.
        let f = run("exit 0", &[], vec![0u8; 1 << 20], Duration::from_secs(10)).await;
        assert_eq!(f.outcome, Outcome::Exited(0));
    }
}
