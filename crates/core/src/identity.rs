//! Node identities: who a member is (name, advertised address, version) and what it advertises
//! (tags). Owns the validation of every name and tag that arrives from a peer.
//!
//! foca keys members by [`foca::Identity::Addr`]; ours is the node *name*, so two identities
//! with one name are the same member and the higher `(version, leaving)` wins. A restart takes
//! a fresh version (the driver passes the wall clock in milliseconds), a tag change bumps the
//! version by one, and a graceful leave switches to the same version with `leaving = true`
//! before declaring that identity down: every member can tell *left* from *failed* from the
//! identity alone.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::InvalidInput;

/// A member's tags: key to value, in key order (deterministic encoding and iteration).
pub type Tags = BTreeMap<String, String>;

/// The tag that `--role` sets.
pub const ROLE_TAG: &str = "role";

/// Limits on what an identity may carry. Enforced on local input and on every decoded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest node name, in bytes.
    pub name_len_max: usize,
    /// Largest tag set, in bytes: the sum over tags of key length + value length + 2.
    pub tags_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            name_len_max: 128,
            tags_bytes_max: 1024,
        }
    }
}

/// The name is valid when it is 1 to `name_len_max` bytes of ASCII letters, digits, `.`, `-`
/// and `_` (what a hostname or a container name may hold). Anything else is refused: names
/// reach handler environments, file names and templates.
pub fn validate_name(name: &str, limits: &Limits) -> Result<(), InvalidInput> {
    if name.is_empty() {
        return Err(InvalidInput::NameEmpty);
    }
    if name.len() > limits.name_len_max {
        return Err(InvalidInput::NameTooLong {
            len: name.len(),
            max: limits.name_len_max,
        });
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(InvalidInput::NameChar(c));
    }
    Ok(())
}

/// Tag keys follow the name rule; values may hold any printable character but no control
/// characters (no newline, tab or NUL can reach a handler's stdin line or environment).
pub fn validate_tags(tags: &Tags, limits: &Limits) -> Result<(), InvalidInput> {
    let mut total = 0usize;
    for (k, v) in tags {
        if k.is_empty() {
            return Err(InvalidInput::TagKeyEmpty);
        }
        if let Some(c) = k
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(InvalidInput::TagKeyChar {
                key: k.clone(),
                char: c,
            });
        }
        if let Some(c) = v.chars().find(|c| c.is_control()) {
            return Err(InvalidInput::TagValueChar {
                key: k.clone(),
                char: c,
            });
        }
        // Count what the encoding costs: both strings plus a length byte each (postcard
        // varints take one byte below 128, more above, which this slightly undercounts).
        total = total
            .saturating_add(k.len())
            .saturating_add(v.len())
            .saturating_add(2);
    }
    if total > limits.tags_bytes_max {
        return Err(InvalidInput::TagsTooBig {
            len: total,
            max: limits.tags_bytes_max,
        });
    }
    Ok(())
}

/// A member's identity. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct NodeId(Arc<IdInner>);

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct IdInner {
    name: Arc<str>,
    addr: SocketAddr,
    version: u64,
    leaving: bool,
    tags: Tags,
}

impl NodeId {
    /// A new identity. Validates the name and tags against `limits`.
    pub fn new(
        name: &str,
        addr: SocketAddr,
        version: u64,
        tags: Tags,
        limits: &Limits,
    ) -> Result<Self, InvalidInput> {
        validate_name(name, limits)?;
        validate_tags(&tags, limits)?;
        Ok(Self(Arc::new(IdInner {
            name: name.into(),
            addr,
            version,
            leaving: false,
            tags,
        })))
    }

    /// The node name: unique in the cluster.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The advertised gossip address.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// The identity version: start time in ms at boot, plus one per tag change or rejoin.
    pub fn version(&self) -> u64 {
        self.0.version
    }

    /// True for the identity a node switches to when it leaves gracefully.
    pub fn is_leaving(&self) -> bool {
        self.0.leaving
    }

    /// The advertised tags.
    pub fn tags(&self) -> &Tags {
        &self.0.tags
    }

    /// The `role` tag, if any.
    pub fn role(&self) -> Option<&str> {
        self.0.tags.get(ROLE_TAG).map(String::as_str)
    }

    /// The same member with new tags and the next version.
    pub fn with_tags(&self, tags: Tags) -> Self {
        Self(Arc::new(IdInner {
            name: self.0.name.clone(),
            addr: self.0.addr,
            version: self.0.version.saturating_add(1),
            leaving: false,
            tags,
        }))
    }

    /// The identity this node switches to before announcing its leave.
    pub fn as_leaving(&self) -> Self {
        Self(Arc::new(IdInner {
            name: self.0.name.clone(),
            addr: self.0.addr,
            version: self.0.version,
            leaving: true,
            tags: self.0.tags.clone(),
        }))
    }

    fn rank(&self) -> (u64, bool) {
        (self.0.version, self.0.leaving)
    }

    /// Checks a decoded identity against `limits`.
    pub(crate) fn validate(&self, limits: &Limits) -> Result<(), InvalidInput> {
        validate_name(&self.0.name, limits)?;
        validate_tags(&self.0.tags, limits)
    }
}

impl PartialEq for NodeId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.version == other.0.version
                && self.0.leaving == other.0.leaving
                && self.0.name == other.0.name
                && self.0.addr == other.0.addr
                && self.0.tags == other.0.tags)
    }
}

impl Eq for NodeId {}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}#{}{}",
            self.0.name,
            self.0.addr,
            self.0.version,
            if self.0.leaving { "(leaving)" } else { "" }
        )
    }
}

impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Structural decoding only; semantic validation (charset, sizes) happens in the codec,
        // which knows the configured limits.
        IdInner::deserialize(d).map(|inner| Self(Arc::new(inner)))
    }
}

impl foca::Identity for NodeId {
    type Addr = Arc<str>;

    fn renew(&self) -> Option<Self> {
        // A node that left must stay gone: never rejoin by itself.
        if self.0.leaving {
            return None;
        }
        Some(Self(Arc::new(IdInner {
            name: self.0.name.clone(),
            addr: self.0.addr,
            version: self.0.version.checked_add(1)?,
            leaving: false,
            tags: self.0.tags.clone(),
        })))
    }

    fn addr(&self) -> Arc<str> {
        self.0.name.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.rank() > adversary.rank()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn id(name: &str, version: u64) -> NodeId {
        NodeId::new(
            name,
            "127.0.0.1:7946".parse().unwrap(),
            version,
            Tags::new(),
            &Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn newer_version_wins_and_leaving_beats_same_version() {
        let a = id("a", 10);
        let b = a.with_tags(Tags::from([("role".into(), "web".into())]));
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
        let gone = b.as_leaving();
        assert!(gone.win_addr_conflict(&b));
        assert_eq!(gone.renew(), None, "a leaving identity never rejoins");
        let restarted = id("a", 1000);
        assert!(restarted.win_addr_conflict(&gone));
    }

    #[test]
    fn names_and_tags_are_checked() {
        let l = Limits::default();
        assert!(validate_name("app-1.example_x", &l).is_ok());
        assert!(validate_name("", &l).is_err());
        assert!(validate_name("a;rm -rf", &l).is_err());
        assert!(validate_name(&"x".repeat(129), &l).is_err());
        let bad = Tags::from([("k".into(), "v\nSERF_EVENT=x".into())]);
        assert!(validate_tags(&bad, &l).is_err());
        let big = Tags::from([("k".into(), "v".repeat(1100))]);
        assert!(validate_tags(&big, &l).is_err());
        let ok = Tags::from([("port".into(), "8080 $(x) `y`".into())]);
        assert!(validate_tags(&ok, &l).is_ok());
    }
}
