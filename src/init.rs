//! PID 1 duties. In a container whose entrypoint is `gossip-agent`, the kernel makes it PID 1:
//! signals without a handler are ignored, and every orphaned process is reparented to it and
//! must be reaped or it stays a zombie. Like tini, the process that finds itself PID 1 stays a
//! minimal init: it starts the real agent as its child (the same binary, same arguments),
//! forwards every catchable signal to it, reaps every child that exits, and exits with the
//! agent's code. The agent then runs as usual and supervises the service.

use std::process::ExitCode;

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Signals the init forwards to the agent.
const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGALRM,
    Signal::SIGCONT,
];

fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Undoes the mask an init parent leaves blocked (a mask survives `exec`).
pub fn unblock_signals() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&signal_set()), None);
}

/// When this process is PID 1 (and `GOSSIP_INIT` is not `0`), runs as init and returns the
/// exit code; otherwise returns `None` and the caller carries on as the agent.
pub fn run_as_init() -> Option<ExitCode> {
    if std::process::id() != 1 || std::env::var("GOSSIP_INIT").is_ok_and(|v| v == "0") {
        return None;
    }
    let set = signal_set();
    // Block first: a signal arriving between the spawn and the wait stays pending.
    if let Err(e) = set.thread_block() {
        eprintln!("error: init: cannot block signals: {e}");
        return Some(ExitCode::from(1));
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: init: cannot find my own executable: {e}");
            return Some(ExitCode::from(1));
        }
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    use std::os::unix::process::CommandExt;
    let child = match std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: init: cannot start the agent: {e}");
            return Some(ExitCode::from(1));
        }
    };
    let agent = Pid::from_raw(child.id() as i32);
    // The child is reaped below with waitpid(-1), never through `child`.
    std::mem::forget(child);
    loop {
        let sig = match set.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(agent, sig);
            continue;
        }
        // Reap everything that has exited: the agent, or any orphan reparented to us.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == agent => {
                    return Some(ExitCode::from(code as u8));
                }
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == agent => {
                    return Some(ExitCode::from(128u8.wrapping_add(s as u8)));
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
