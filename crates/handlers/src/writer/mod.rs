//! Built-in writers: they keep a local configuration in step with the cluster.
//!
//! Every writer is *level-triggered*: it renders from the full current member set (the latest
//! snapshot wins; intermediate ones are skipped), so a lost or reordered event cannot leave a
//! stale file. File writers (nginx, dnsmasq, template) share [`FileTarget`]: skip when the
//! bytes on disk are already right, write a temp file beside the target, fsync, rename over
//! it, fsync the directory, validate, roll back to the previous file if validation fails, and
//! only then reload. The hipache writer reconciles a redis list instead.

mod config;
mod dnsmasq;
mod hipache;
mod nginx;
mod template;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gossip_core::{MemberInfo, NodeId};
use nix::sys::signal::Signal;
use tokio::sync::watch;
use tokio::time::Instant;

pub use config::{Order, WriterConfig, WriterKind, parse_signal};

use crate::script::{self, Outcome};

/// What writers render from: every known member, and this node.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Members, this node included, in any order (writers sort what they render).
    pub members: Vec<MemberInfo>,
    /// This node.
    pub local: NodeId,
    /// Which table this is: one more each time the agent publishes a changed one (members
    /// joined, left, failed, turned suspect or changed tags), so a client that saw index N
    /// can wait for the next (`GET /v1/members?index=N&wait=30s`).
    pub index: u64,
    /// Network coordinates this node holds, by member name (its own included), for writers
    /// that order by distance. Refreshed every few seconds without a new `index` when some
    /// writer or the DNS server uses them.
    pub coordinates: Arc<std::collections::BTreeMap<String, gossip_core::Coordinate>>,
}

impl Snapshot {
    /// Estimated round trip from this node to `name`, in seconds, when both coordinates
    /// are known.
    pub fn rtt_to(&self, name: &str) -> Option<f64> {
        let here = self.coordinates.get(self.local.name())?;
        Some(here.distance_secs(self.coordinates.get(name)?))
    }
}

/// A writer failure. Retryable ones are tried again with backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriterError {
    /// Rendering failed (a template error, for instance). Not retried until members change.
    #[error("render failed: {0}")]
    Render(String),
    /// The file could not be written. Retried.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The target.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The validation command refused the new file; the previous file was put back.
    #[error("validation failed ({outcome}); kept the previous file: {output}")]
    Validation {
        /// How the command ended.
        outcome: String,
        /// What it printed.
        output: String,
    },
    /// The reload failed; the new (valid) file stays in place. Retried.
    #[error("reload failed: {0}")]
    Reload(String),
    /// redis could not be reached or refused a command. Retried.
    #[error("redis: {0}")]
    Redis(String),
}

impl WriterError {
    fn retryable(&self) -> bool {
        matches!(self, Self::Write { .. } | Self::Reload(_) | Self::Redis(_))
    }
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing to change.
    Unchanged,
    /// Changed and reloaded.
    Changed,
}

/// How to make the program reread its configuration.
#[derive(Debug, Clone)]
pub enum Reload {
    /// Nothing to do.
    None,
    /// Run a shell command.
    Command(String),
    /// Send a signal to the pid in a pid file.
    Signal {
        /// The signal.
        signal: Signal,
        /// The pid file.
        pid_file: PathBuf,
    },
}

/// A file kept in step: atomic replacement, validation with rollback, reload.
#[derive(Debug)]
pub struct FileTarget {
    path: PathBuf,
    validate: Option<String>,
    reload: Reload,
    command_timeout: Duration,
    /// Content that failed validation, so it is not retried until members change.
    refused: Option<Vec<u8>>,
}

impl FileTarget {
    /// A target at `path`.
    pub fn new(path: PathBuf, validate: Option<String>, reload: Reload) -> Self {
        Self {
            path,
            validate,
            reload,
            command_timeout: Duration::from_secs(30),
            refused: None,
        }
    }

    /// Puts `content` in place (unless it already is), validates and reloads.
    pub async fn commit(&mut self, content: Vec<u8>) -> Result<Applied, WriterError> {
        let previous = tokio::fs::read(&self.path).await.ok();
        if previous.as_deref() == Some(content.as_slice()) {
            self.refused = None;
            return Ok(Applied::Unchanged);
        }
        if self.refused.as_deref() == Some(content.as_slice()) {
            return Ok(Applied::Unchanged);
        }
        self.write(content.clone()).await?;
        if let Some(cmd) = &self.validate {
            let f = script::run(cmd, &[], Vec::new(), self.command_timeout).await;
            if f.outcome != Outcome::Exited(0) {
                match previous {
                    Some(p) => self.write(p).await?,
                    None => {
                        let _ = tokio::fs::remove_file(&self.path).await;
                    }
                }
                self.refused = Some(content);
                return Err(WriterError::Validation {
                    outcome: format!("{:?}", f.outcome),
                    output: format!("{} {}", f.stdout.text(), f.stderr.text())
                        .trim()
                        .to_string(),
                });
            }
        }
        self.refused = None;
        self.reload().await?;
        Ok(Applied::Changed)
    }

    async fn write(&self, content: Vec<u8>) -> Result<(), WriterError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || atomic_write(&path, &content))
            .await
            .map_err(|e| WriterError::Write {
                path: self.path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(|source| WriterError::Write {
                path: self.path.clone(),
                source,
            })
    }

    async fn reload(&self) -> Result<(), WriterError> {
        match &self.reload {
            Reload::None => Ok(()),
            Reload::Command(cmd) => {
                let f = script::run(cmd, &[], Vec::new(), self.command_timeout).await;
                if f.outcome == Outcome::Exited(0) {
                    Ok(())
                } else {
                    Err(WriterError::Reload(format!(
                        "{cmd:?} ended {:?}: {} {}",
                        f.outcome,
                        f.stdout.text(),
                        f.stderr.text()
                    )))
                }
            }
            Reload::Signal { signal, pid_file } => {
                let text = tokio::fs::read_to_string(pid_file)
                    .await
                    .map_err(|e| WriterError::Reload(format!("{}: {e}", pid_file.display())))?;
                let pid: i32 = text.trim().parse().map_err(|_| {
                    WriterError::Reload(format!("{}: no pid in {text:?}", pid_file.display()))
                })?;
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), *signal)
                    .map_err(|e| WriterError::Reload(format!("signal {signal} to {pid}: {e}")))
            }
        }
    }
}

/// Replaces `path` with `content` atomically: a temp file in the same directory, written and
/// fsynced, renamed over the target, then the directory fsynced. Readers see the old file or
/// the new one, never a mix. The file is made world-readable (a server may read it after
/// dropping privileges).
pub fn atomic_write(path: &Path, content: &[u8]) -> std::io::Result<()> {
    atomic_write_mode(path, content, 0o644)
}

/// [`atomic_write`] with the file mode `mode` (0o600 for secrets such as a keyring).
pub fn atomic_write_mode(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "target".into());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(content)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Turns a snapshot into file content.
type RenderFn = Box<dyn Fn(&Snapshot) -> Result<Vec<u8>, WriterError> + Send>;

enum Engine {
    File {
        render: RenderFn,
        target: FileTarget,
    },
    Hipache(Box<hipache::HipacheWriter>),
}

impl Engine {
    async fn apply(&mut self, s: &Snapshot) -> Result<Applied, WriterError> {
        match self {
            Self::File { render, target } => {
                let content = render(s)?;
                target.commit(content).await
            }
            Self::Hipache(h) => h.apply(s).await,
        }
    }
}

/// A configured writer, ready to run.
pub struct Writer {
    name: String,
    engine: Engine,
    debounce: Duration,
    /// Re-apply this often even without changes (hipache: notices a flushed redis).
    reconcile: Option<Duration>,
}

impl Writer {
    /// Builds a writer from its configuration (templates are loaded and checked here).
    pub fn build(c: &WriterConfig) -> Result<Self, String> {
        c.build()
    }

    /// A short name for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What a file writer would write for `s` (None for hipache, which writes to redis).
    pub fn render(&self, s: &Snapshot) -> Option<Result<Vec<u8>, WriterError>> {
        match &self.engine {
            Engine::File { render, .. } => Some(render(s)),
            Engine::Hipache(_) => None,
        }
    }

    /// Runs until the snapshot sender is dropped: applies the current snapshot at once, then
    /// after every change (debounced), retrying failures with backoff (200 ms doubling to
    /// 30 s). Each pass is counted in `stats` (its result, and how long an update took).
    pub async fn run(
        mut self,
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
        stats: Arc<crate::stats::Stats>,
    ) {
        use crate::stats::Pass;
        stats.writer_started(&self.name);
        let mut backoff = Duration::from_millis(200);
        let mut retry_at: Option<Instant> = None;
        let mut first = true;
        loop {
            if !first {
                let wake = [retry_at, self.reconcile.map(|r| Instant::now() + r)]
                    .into_iter()
                    .flatten()
                    .min();
                tokio::select! {
                    r = snapshots.changed() => {
                        if r.is_err() {
                            return;
                        }
                        tokio::time::sleep(self.debounce).await;
                    }
                    () = async {
                        match wake {
                            Some(w) => tokio::time::sleep_until(w).await,
                            None => std::future::pending().await,
                        }
                    } => {}
                }
            }
            first = false;
            let snap = snapshots.borrow_and_update().clone();
            let began = Instant::now();
            let result = self.engine.apply(&snap).await;
            let pass = match &result {
                Ok(Applied::Changed) => Pass::Updated,
                Ok(Applied::Unchanged) => Pass::Unchanged,
                Err(WriterError::Validation { .. }) => Pass::ValidationFailed,
                Err(_) => Pass::Failed,
            };
            stats.writer_pass(&self.name, pass, began.elapsed());
            match result {
                Ok(Applied::Changed) => {
                    tracing::info!(writer = %self.name, "configuration updated");
                    backoff = Duration::from_millis(200);
                    retry_at = None;
                }
                Ok(Applied::Unchanged) => {
                    backoff = Duration::from_millis(200);
                    retry_at = None;
                }
                Err(e) => {
                    if e.retryable() {
                        tracing::warn!(writer = %self.name, error = %e, retry_ms = backoff.as_millis() as u64, "writer failed; will retry");
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    } else {
                        tracing::error!(writer = %self.name, error = %e, "writer refused the new configuration");
                        retry_at = None;
                    }
                }
            }
        }
    }
}

/// Members a writer renders, sorted by name.
fn selected<'a>(
    s: &'a Snapshot,
    sel: &crate::select::Selector,
    live: crate::select::Liveness,
) -> Vec<&'a MemberInfo> {
    let mut v: Vec<&MemberInfo> = s
        .members
        .iter()
        .filter(|m| live.admits(m) && sel.matches(m))
        .collect();
    v.sort_by(|a, b| a.name().cmp(b.name()));
    v
}

/// `v` (sorted by name) in `order`: for [`Order::Nearest`], by estimated round trip in steps
/// of 0.1 ms (so noise in the estimates does not reorder members that are about as near),
/// ties and members without a coordinate keeping name order, the latter last.
fn in_order<'a>(s: &Snapshot, mut v: Vec<&'a MemberInfo>, order: Order) -> Vec<&'a MemberInfo> {
    if order == Order::Nearest {
        v.sort_by_key(|m| {
            s.rtt_to(m.name())
                .map_or(u64::MAX, |d| (d * 10_000.0).round() as u64)
        });
    }
    v
}

/// The service port of `m`: its `port_tag` tag if set and numeric, else `default`.
fn service_port(m: &MemberInfo, port_tag: &str, default: u16) -> Option<u16> {
    match m.tags().get(port_tag) {
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => {
                tracing::warn!(member = m.name(), tag = port_tag, value = %p, "not a port; member left out");
                None
            }
        },
        None => Some(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commit_skips_identical_validates_and_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.conf");
        let marker = dir.path().join("reloads");
        // Validation: the file must not contain "bad". Reload: append to a marker file.
        let validate = format!("! grep -q bad {}", path.display());
        let reload = format!("echo x >> {}", marker.display());
        let mut t = FileTarget::new(path.clone(), Some(validate), Reload::Command(reload));
        assert_eq!(
            t.commit(b"good 1\n".to_vec()).await.unwrap(),
            Applied::Changed
        );
        assert_eq!(
            t.commit(b"good 1\n".to_vec()).await.unwrap(),
            Applied::Unchanged
        );
        let err = t.commit(b"bad\n".to_vec()).await.unwrap_err();
        assert!(matches!(err, WriterError::Validation { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"good 1\n", "rolled back");
        // The refused content is not retried; new content goes through.
        assert_eq!(
            t.commit(b"bad\n".to_vec()).await.unwrap(),
            Applied::Unchanged
        );
        assert_eq!(
            t.commit(b"good 2\n".to_vec()).await.unwrap(),
            Applied::Changed
        );
        assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 2);
        // No temp files left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[tokio::test]
    async fn failed_validation_of_a_first_file_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.conf");
        let mut t = FileTarget::new(path.clone(), Some("false".into()), Reload::None);
        assert!(t.commit(b"x".to_vec()).await.is_err());
        assert!(!path.exists());
    }
}
