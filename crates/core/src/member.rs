//! What the core reports about members: their status, a snapshot type, and the membership
//! events handlers and writers consume.

use std::fmt;
use std::net::SocketAddr;

use serde::Serialize;

use crate::identity::{NodeId, Tags};

/// A member's status, as Serf names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Answering probes.
    Alive,
    /// Missed a probe; declared failed unless it refutes in time.
    Suspect,
    /// Declared down by the failure detector.
    Failed,
    /// Announced its own departure.
    Left,
}

impl Status {
    /// The lower-case name (`alive`, `suspect`, `failed`, `left`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Failed => "failed",
            Self::Left => "left",
        }
    }

    /// Alive or suspect: still a member.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Alive | Self::Suspect)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "alive" => Ok(Self::Alive),
            "suspect" => Ok(Self::Suspect),
            "failed" => Ok(Self::Failed),
            "left" => Ok(Self::Left),
            other => Err(format!(
                "unknown status {other:?} (expected alive, suspect, failed or left)"
            )),
        }
    }
}

/// A member as seen at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its identity (name, address, tags, version).
    pub id: NodeId,
    /// Its status.
    pub status: Status,
}

impl MemberInfo {
    /// The node name.
    pub fn name(&self) -> &str {
        self.id.name()
    }

    /// The advertised gossip address.
    pub fn addr(&self) -> SocketAddr {
        self.id.addr()
    }

    /// The tags.
    pub fn tags(&self) -> &Tags {
        self.id.tags()
    }
}

/// Serf's member event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventKind {
    /// A member joined (or came back after failing or leaving).
    Join,
    /// A member left gracefully.
    Leave,
    /// A member was declared failed.
    Failed,
    /// A live member changed its tags or address.
    Update,
    /// A failed or left member was forgotten.
    Reap,
}

impl EventKind {
    /// Serf's `SERF_EVENT` value.
    pub fn serf_name(self) -> &'static str {
        match self {
            Self::Join => "member-join",
            Self::Leave => "member-leave",
            Self::Failed => "member-failed",
            Self::Update => "member-update",
            Self::Reap => "member-reap",
        }
    }
}

/// One membership change, in the order the core observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEvent {
    /// What happened.
    pub kind: EventKind,
    /// The member, as it is after the change.
    pub member: MemberInfo,
}
