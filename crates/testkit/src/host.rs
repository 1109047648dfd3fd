//! Programs a tool needs on the host (debootstrap for the demo's base image, serf and tcpdump
//! for the benchmark), installed from Debian's packages when they are missing: through
//! `apt-get` when running as root, saying so in one line; otherwise a [`Missing`] error that
//! names the package and the command to run, before anything else is done.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A program and the Debian package that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// The program, looked up in `PATH`.
    pub program: &'static str,
    /// The Debian package that installs it.
    pub package: &'static str,
}

/// Programs that are missing and could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("{what} needs {}; {why}: run `apt-get install {}` as root", .packages.join(", "), .packages.join(" "))]
pub struct Missing {
    /// Who needs them (for the message).
    pub what: String,
    /// The packages to install.
    pub packages: Vec<String>,
    /// Why they were not installed.
    pub why: String,
}

/// The path of `program` in `PATH` or in the system's `sbin` directories (which a user's
/// `PATH` often lacks, and where `debootstrap` lives), if it is there.
pub fn which(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Makes sure every program in `needs` is on the host, installing the packages of the missing
/// ones with `apt-get` when this process is root (one line on stderr says so). `what` names
/// the tool that needs them, in messages. Nothing is done when none is missing.
pub fn ensure(what: &str, needs: &[Need]) -> Result<(), Missing> {
    let mut packages: Vec<String> = needs
        .iter()
        .filter(|n| which(n.program).is_none())
        .map(|n| n.package.to_string())
        .collect();
    packages.dedup();
    if packages.is_empty() {
        return Ok(());
    }
    let missing = |why: &str| Missing {
        what: what.to_string(),
        packages: packages.clone(),
        why: why.to_string(),
    };
    if !nix::unistd::geteuid().is_root() {
        return Err(missing("they are missing and this is not root"));
    }
    if which("apt-get").is_none() {
        return Err(missing("they are missing and there is no apt-get here"));
    }
    eprintln!(
        "{what}: installing Debian's {} (apt-get)",
        packages.join(", ")
    );
    // A fresh system may hold no package lists yet: fetch them and try once more.
    let installed = apt_install(&packages) || (apt_update() && apt_install(&packages));
    if !installed {
        return Err(missing("apt-get could not install them"));
    }
    match needs.iter().find(|n| which(n.program).is_none()) {
        Some(n) => Err(Missing {
            what: what.to_string(),
            packages: vec![n.package.to_string()],
            why: format!("{} is still missing after the install", n.program),
        }),
        None => Ok(()),
    }
}

/// The resident set size of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn apt_install(packages: &[String]) -> bool {
    Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn apt_update() -> bool {
    Command::new("apt-get")
        .args(["update", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_programs_need_nothing() {
        ensure(
            "test",
            &[Need {
                program: "sh",
                package: "dash",
            }],
        )
        .unwrap();
        assert!(which("sh").is_some());
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
        assert!(which("no-such-program-here").is_none());
    }

    #[test]
    fn the_message_names_the_package_and_the_command() {
        let m = Missing {
            what: "elastic-demo".into(),
            packages: vec!["debootstrap".into()],
            why: "they are missing and this is not root".into(),
        };
        assert_eq!(
            m.to_string(),
            "elastic-demo needs debootstrap; they are missing and this is not root: run \
             `apt-get install debootstrap` as root"
        );
    }
}
