//! The shipped build (`cargo release-agent`): the functions an agent runs lie together at the
//! start of its code, in the order `release/hot-functions.txt` gives (see
//! `release/hot-functions.sh` for why: about 2 MiB less resident per agent).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The release agent: `$GOSSIP_AGENT_BIN` (CI builds it first), else `cargo release-agent`
/// into `target/elastic-demo`, the target directory the demo's tests build it in (one build
/// for both, and not the directory `cargo test` itself is using).
fn release_agent() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(p) = std::env::var_os("GOSSIP_AGENT_BIN") {
        let p = root.join(p);
        assert!(
            p.is_file(),
            "GOSSIP_AGENT_BIN={} is not a file",
            p.display()
        );
        return p;
    }
    let target = root.join("target/elastic-demo");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["-q", "release-agent"])
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo release-agent");
    assert!(status.success(), "cargo release-agent failed");
    target.join("release/gossip-agent")
}

/// The function symbols of `bin` and their addresses, from binutils' `nm`.
fn functions(bin: &Path) -> HashMap<String, u64> {
    let out = Command::new("nm")
        .arg(bin)
        .output()
        .expect("run nm (binutils)");
    assert!(out.status.success(), "nm {} failed", bin.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            matches!(kind, "t" | "T" | "w" | "W" | "i")
                .then(|| Some((name.to_string(), u64::from_str_radix(addr, 16).ok()?)))?
        })
        .collect()
}

#[test]
fn release_order_puts_the_run_functions_first() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let list = std::fs::read_to_string(root.join("release/hot-functions.txt"))
        .expect("read release/hot-functions.txt");
    let listed: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        listed.len() > 1000,
        "release/hot-functions.txt holds {} names",
        listed.len()
    );
    let bin = release_agent();
    let syms = functions(&bin);

    // Names of another build (other code, another compiler) no longer order anything.
    let found: Vec<&str> = listed
        .iter()
        .copied()
        .filter(|n| syms.contains_key(*n))
        .collect();
    assert!(
        found.len() * 10 >= listed.len() * 9,
        "release/hot-functions.txt is stale: {} of its {} names are functions of this build; \
         run ./release/hot-functions.sh",
        found.len(),
        listed.len()
    );

    // The linker placed them first: no Rust function left out of the list lies before the
    // last listed one. (glibc's functions share their object's section with their
    // neighbours, so an unlisted one can ride along with a listed one: not counted.)
    let rust = |n: &str| n.starts_with("_ZN") || n.starts_with("_R");
    let listed_set: std::collections::HashSet<&str> = found.iter().copied().collect();
    let end = found
        .iter()
        .filter(|n| rust(n))
        .map(|n| syms[*n])
        .max()
        .expect("listed Rust functions");
    let interlopers: Vec<&str> = syms
        .iter()
        .filter(|(n, a)| rust(n) && **a < end && !listed_set.contains(n.as_str()))
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        interlopers.is_empty(),
        "{} unlisted functions lie among the listed ones (is the link ordered? \
         .cargo/config.toml's release-agent passes --symbol-ordering-file), e.g. {:?}",
        interlopers.len(),
        &interlopers[..interlopers.len().min(3)]
    );
    let before = syms.values().filter(|a| **a < end).count();
    eprintln!(
        "{} of {} listed functions found; {} functions (with glibc's neighbours) lie first, \
         up to {end:#x}",
        found.len(),
        listed.len(),
        before
    );
}
