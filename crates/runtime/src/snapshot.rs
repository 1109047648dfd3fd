//! The member snapshot (`--snapshot FILE`, Serf's `-snapshot`): the live members' names and
//! addresses, kept on disk as the cluster changes, so that a restarted agent can rejoin
//! through any of them even when its `--join` targets are gone.
//!
//! The file is JSON, rewritten atomically (temp file, fsync, rename) at most once a second
//! and only when the list changed. At start, the agent adds a few of its addresses to the join
//! targets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gossip_handlers::Snapshot;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// How many snapshot addresses a restart tries, besides `--join`.
pub const REJOIN_MAX: usize = 8;
/// Least time between two writes.
const WRITE_EVERY: Duration = Duration::from_secs(1);

/// One member, as the file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Known {
    /// Its name.
    pub name: String,
    /// Its gossip address.
    pub addr: SocketAddr,
}

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Live members other than this node, by name.
    pub members: Vec<Known>,
}

/// Reads the snapshot; a missing file is an empty one, an unreadable one is logged and
/// ignored (it is only a hint).
pub fn read(path: &Path) -> SnapshotFile {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "snapshot unreadable; ignored");
            SnapshotFile::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SnapshotFile::default(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "snapshot unreadable; ignored");
            SnapshotFile::default()
        }
    }
}

/// What a snapshot of the cluster puts in the file.
fn content(s: &Snapshot) -> SnapshotFile {
    let mut members: Vec<Known> = s
        .members
        .iter()
        .filter(|m| m.status.is_live() && m.name() != s.local.name())
        .map(|m| Known {
            name: m.name().to_string(),
            addr: m.id.addr(),
        })
        .collect();
    members.sort();
    SnapshotFile { members }
}

/// Keeps `path` in step with the member snapshots until the sender is dropped.
pub async fn keep(path: PathBuf, mut snapshots: watch::Receiver<Arc<Snapshot>>) {
    let mut last: Option<SnapshotFile> = None;
    loop {
        let now = content(&snapshots.borrow_and_update().clone());
        if last.as_ref() != Some(&now) {
            let text = serde_json::to_vec_pretty(&now).unwrap_or_default();
            let p = path.clone();
            let r = tokio::task::spawn_blocking(move || {
                gossip_handlers::writer::atomic_write_mode(&p, &text, 0o600)
            })
            .await;
            match r {
                Ok(Ok(())) => last = Some(now),
                Ok(Err(e)) => {
                    tracing::warn!(file = %path.display(), error = %e, "snapshot not written")
                }
                Err(e) => tracing::warn!(error = %e, "snapshot task failed"),
            }
        }
        tokio::time::sleep(WRITE_EVERY).await;
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}
