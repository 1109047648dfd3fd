//! Images without a registry. The base is Debian, made by `debootstrap` from the mirror this
//! machine's apt uses (same release as the host, so the host-built binary runs in it) and
//! imported with `docker import`'s API; it is cached under a tag derived from the release,
//! mirror and package list, so it is built once. Each role image is a `docker build` on top of
//! it (Dockerfiles in `examples/elastic/images/<role>/`) with our binary copied in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, CreateImageOptions};
use futures_util::StreamExt;

use gossip_core::identity::Fnv;
use gossip_testkit::host;

use crate::{DemoError, ROLES, Result, Variant};

/// What the base image carries: the services of the four roles and the tools the demo uses.
pub const BASE_PACKAGES: &[&str] = &[
    "nginx-light",
    "redis-server",
    "redis-tools",
    "dnsmasq-base",
    "python3-bottle",
    "curl",
    "procps",
];

/// The image name of a role.
pub fn role_image(role: &str) -> String {
    format!("gossip-demo/{role}:latest")
}

/// The image name of a role in the Serf-script variant (the appserver is the regular one).
pub fn serf_role_image(role: &str) -> String {
    if SERF_ROLES.contains(&role) {
        format!("gossip-demo-serf/{role}:latest")
    } else {
        role_image(role)
    }
}

/// The roles the Serf-script variant has images of its own for.
pub const SERF_ROLES: [&str; 3] = ["dnsserver", "proxyserver", "frontserver"];

/// The directory holding the role Dockerfiles.
pub fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("images")
}

/// The directory holding the Serf-script variant's Dockerfiles.
pub fn serf_images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("images-serf")
}

/// The workspace root.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// The agent binary to put in the images: `$GOSSIP_AGENT_BIN` if set, else a release build
/// (`cargo release-agent`: statically linked, see `.cargo/config.toml`) into `target_dir`.
pub fn agent_binary(target_dir: &Path, log: &(dyn Fn(&str) + Sync)) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("GOSSIP_AGENT_BIN") {
        let mut p = PathBuf::from(p);
        // A relative path is taken from the workspace root (tests run in the package's).
        if p.is_relative() && !p.is_file() {
            p = workspace_dir().join(p);
        }
        if !p.is_file() {
            return Err(DemoError::Other(format!(
                "GOSSIP_AGENT_BIN={} is not a file",
                p.display()
            )));
        }
        return Ok(p);
    }
    log("building the agent (cargo release-agent)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_dir())
        .args(["-q", "release-agent"])
        .env("CARGO_TARGET_DIR", target_dir)
        .status()?;
    if !status.success() {
        return Err(DemoError::Other("building gossip-agent failed".into()));
    }
    Ok(target_dir.join("release/gossip-agent"))
}

/// The host's Debian release and the mirror its apt uses (deb822 `.sources` files or the
/// one-line `sources.list`), skipping security and updates suites.
pub fn host_mirror() -> Result<(String, String)> {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|s| s.trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| DemoError::Other("no VERSION_CODENAME in /etc/os-release".into()))?;
    let mut texts = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sources" || x == "list"))
            .collect();
        paths.sort();
        for p in paths {
            texts.push(std::fs::read_to_string(p).unwrap_or_default());
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for text in &texts {
        if let Some(m) = mirror_in(text) {
            return Ok((codename, m));
        }
    }
    Err(DemoError::Other(
        "no Debian mirror found in /etc/apt/sources.list{,.d}".into(),
    ))
}

/// The first plain (not security, not updates) Debian mirror in an apt sources text.
pub fn mirror_in(text: &str) -> Option<String> {
    let plain = |uri: &str| {
        (uri.starts_with("http://") || uri.starts_with("https://"))
            && !uri.contains("security")
            && !uri.contains("updates")
    };
    // deb822: "URIs: http://..." within a stanza of "Types: deb".
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
            })
        };
        if field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
            && field("Enabled").is_none_or(|e| e != "no")
            && let Some(uri) = field("URIs")
                .and_then(|u| u.split_whitespace().find(|u| plain(u)).map(str::to_string))
        {
            return Some(uri);
        }
    }
    // One-line: "deb [opts] URI suite components".
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        if words.next() != Some("deb") {
            return None;
        }
        words
            .find(|w| !w.starts_with('[') && !w.ends_with(']') && plain(w))
            .map(str::to_string)
    })
}

/// The name of the Debian base image: its tag derives from the host's release, mirror and
/// [`BASE_PACKAGES`], so a change to any of them builds it anew.
pub fn base_name() -> Result<String> {
    let (release, mirror) = host_mirror()?;
    let tag = format!(
        "{release}-{:012x}",
        Fnv::of(format!("{mirror} {}", BASE_PACKAGES.join(",")).as_bytes()) & 0xffff_ffff_ffff
    );
    Ok(format!("gossip-demo/base:{tag}"))
}

/// What building the base image needs on the host.
pub const HOST_NEEDS: &[host::Need] = &[
    host::Need {
        program: "debootstrap",
        package: "debootstrap",
    },
    host::Need {
        program: "tar",
        package: "tar",
    },
];

/// Checks, before anything is built, that the host has what the images need: when the base
/// image is not cached, `debootstrap` (installed through apt-get when running as root; else
/// a [`DemoError::Missing`] naming the package and the command).
pub async fn check_host(docker: &Docker) -> Result<()> {
    if docker.inspect_image(&base_name()?).await.is_ok() {
        return Ok(());
    }
    host::ensure("elastic-demo", HOST_NEEDS)?;
    Ok(())
}

/// Builds (or finds cached) the Debian base image; returns its name.
pub async fn ensure_base(docker: &Docker, log: &(dyn Fn(&str) + Sync)) -> Result<String> {
    let name = base_name()?;
    if docker.inspect_image(&name).await.is_ok() {
        log(&format!("base image {name} is cached"));
        return Ok(name);
    }
    host::ensure("elastic-demo", HOST_NEEDS)?;
    let (release, mirror) = host_mirror()?;
    log(&format!(
        "building the base image {name}: debootstrap {release} from {mirror} (about a minute)"
    ));
    let work = std::env::temp_dir().join(format!("gossip-demo-rootfs-{}", std::process::id()));
    let result = bootstrap_and_import(docker, &release, &mirror, &work, &name).await;
    let _ = std::fs::remove_dir_all(&work);
    result?;
    Ok(name)
}

async fn bootstrap_and_import(
    docker: &Docker,
    release: &str,
    mirror: &str,
    work: &Path,
    name: &str,
) -> Result<()> {
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let out = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", BASE_PACKAGES.join(",")))
        .arg(release)
        .arg(&rootfs)
        .arg(mirror)
        .output()
        .map_err(|e| DemoError::Other(format!("cannot run debootstrap: {e}")))?;
    if !out.status.success() {
        let tail: String = String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .join("\n");
        return Err(DemoError::Other(format!(
            "debootstrap failed: {}\n{tail}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    // Downloaded packages and lists are not needed at run time.
    for dir in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
    ] {
        let d = rootfs.join(dir);
        if d.is_dir() {
            for e in std::fs::read_dir(&d)?.flatten() {
                let p = e.path();
                if p.is_file() {
                    let _ = std::fs::remove_file(&p);
                } else if p.is_dir() && p.file_name().is_some_and(|n| n != "partial") {
                    let _ = std::fs::remove_dir_all(&p);
                }
            }
        }
    }
    let tarball = work.join("rootfs.tar");
    let status = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(&rootfs)
        .args(["-cf"])
        .arg(&tarball)
        .arg(".")
        .status()?;
    if !status.success() {
        return Err(DemoError::Other(
            "tar of the root file system failed".into(),
        ));
    }
    let bytes = tokio::fs::read(&tarball).await?;
    let (repo, tag) = name.split_once(':').expect("name has a tag");
    let mut stream = docker.create_image(
        Some(CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.into()),
            tag: Some(tag.into()),
            changes: vec![
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "ENV LANG=C.UTF-8".into(),
            ],
            ..Default::default()
        }),
        Some(bollard::body_full(bytes.into())),
        None,
    );
    while let Some(item) = stream.next().await {
        item?;
    }
    docker
        .inspect_image(name)
        .await
        .map_err(|e| DemoError::Other(format!("import of {name} did not produce it: {e}")))?;
    Ok(())
}

/// The image of the agent alone (from scratch), to run as a sidecar.
pub const SIDECAR: &str = "agent";

/// The base image under a fixed name: Debian with the demo's packages (nginx, redis-server,
/// ...) and no agent: the "stock" image the sidecar examples run unchanged.
pub const STOCK_IMAGE: &str = "gossip-demo/debian:latest";

/// The images `variant` runs, with the directory of each one's Dockerfile and its role: the
/// four role images and the sidecar image, or the Serf-script variant's three and the regular
/// appserver.
pub fn variant_images(variant: Variant) -> Vec<(PathBuf, String, &'static str)> {
    let mut images: Vec<_> = ROLES
        .iter()
        .map(|&r| match variant {
            Variant::SerfScripts if SERF_ROLES.contains(&r) => {
                (serf_images_dir().join(r), serf_role_image(r), r)
            }
            _ => (images_dir().join(r), role_image(r), r),
        })
        .collect();
    if variant == Variant::Agent {
        images.push((images_dir().join(SIDECAR), role_image(SIDECAR), SIDECAR));
    }
    images
}

/// Builds the images `variant` runs on top of `base`, with `agent` as
/// `/usr/local/bin/gossip-agent`.
pub async fn build_roles(
    docker: &Docker,
    base: &str,
    agent: &Path,
    variant: Variant,
    log: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let binary = std::fs::read(agent)?;
    for (dir, image, role) in variant_images(variant) {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Deterministic);
        tar.append_dir_all(".", &dir)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(binary.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, "gossip-agent", binary.as_slice())?;
        let context = tar.into_inner()?;
        let started = std::time::Instant::now();
        let mut stream = docker.build_image(
            BuildImageOptions {
                dockerfile: "Dockerfile".into(),
                t: Some(image.clone()),
                rm: true,
                forcerm: true,
                buildargs: Some(HashMap::from([("BASE".to_string(), base.to_string())])),
                labels: Some(HashMap::from([(
                    "gossip-demo.image".to_string(),
                    role.to_string(),
                )])),
                ..Default::default()
            },
            None,
            Some(bollard::body_full(context.into())),
        );
        let mut output = String::new();
        while let Some(item) = stream.next().await {
            let info =
                item.map_err(|e| DemoError::Other(format!("building {image}: {e}\n{output}")))?;
            if let Some(s) = info.stream {
                output.push_str(&s);
            }
            if let Some(e) = info.error {
                return Err(DemoError::Other(format!("building {image}: {e}\n{output}")));
            }
        }
        log(&format!(
            "built {image} in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// What `variant` needs: the base image (cached) and its role images with this agent.
pub async fn ensure(
    docker: &Docker,
    agent: &Path,
    variant: Variant,
    log: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let base = ensure_base(docker, log).await?;
    let (repo, tag) = STOCK_IMAGE.split_once(':').expect("a tag in STOCK_IMAGE");
    docker
        .tag_image(
            &base,
            Some(bollard::query_parameters::TagImageOptions {
                repo: Some(repo.to_string()),
                tag: Some(tag.to_string()),
            }),
        )
        .await?;
    build_roles(docker, &base, agent, variant, log).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_builds_only_the_images_it_runs() {
        let names = |v| -> Vec<String> { variant_images(v).into_iter().map(|i| i.1).collect() };
        let mut agent = ROLES.map(role_image).to_vec();
        agent.push(role_image(SIDECAR));
        assert_eq!(
            names(Variant::Agent),
            agent,
            "the four role images and the sidecar"
        );
        let serf = names(Variant::SerfScripts);
        assert_eq!(serf.len(), 4);
        assert!(serf.contains(&role_image("appserver")));
        for r in SERF_ROLES {
            assert!(serf.contains(&serf_role_image(r)), "{r}");
        }
    }

    #[test]
    fn mirrors_are_read_from_both_apt_formats() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let security_first = "Types: deb\nURIs: http://security.debian.org/debian-security\n\nTypes: deb-src\nURIs: http://src.example/debian\n\nTypes: deb\nURIs: http://mirror.example/debian\n";
        assert_eq!(
            mirror_in(security_first).as_deref(),
            Some("http://mirror.example/debian")
        );
        let oneline = "# comment\ndeb [arch=amd64] http://ftp.example/debian bookworm main\n";
        assert_eq!(
            mirror_in(oneline).as_deref(),
            Some("http://ftp.example/debian")
        );
        assert_eq!(mirror_in("deb-src http://x/debian bookworm main\n"), None);
    }
}
