//! Typed errors of the core. Each variant says whether state changed.

use thiserror::Error;

/// A name, tag or value that breaks the identity rules (see [`crate::identity`]).
/// Returned before anything is changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// The node name is empty.
    #[error("node name is empty")]
    NameEmpty,
    /// The node name is longer than allowed.
    #[error("node name is {len} bytes, the limit is {max}")]
    NameTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The node name holds a character outside `[A-Za-z0-9._-]`.
    #[error("node name holds {0:?}: only letters, digits, '.', '-' and '_' are allowed")]
    NameChar(char),
    /// A tag key is empty.
    #[error("tag key is empty")]
    TagKeyEmpty,
    /// A tag key holds a character outside `[A-Za-z0-9._-]`.
    #[error("tag key {key:?} holds {char:?}: only letters, digits, '.', '-' and '_' are allowed")]
    TagKeyChar {
        /// The key.
        key: String,
        /// The offending character.
        char: char,
    },
    /// A tag value holds a control character.
    #[error("tag {key:?} has a control character {char:?} in its value")]
    TagValueChar {
        /// The key.
        key: String,
        /// The offending character.
        char: char,
    },
    /// A node name, tag key or tag value received is not UTF-8.
    #[error("a node name, tag key or tag value is not UTF-8")]
    NotUtf8,
    /// The tags are larger than allowed.
    #[error("tags take {len} bytes, the limit is {max}")]
    TagsTooBig {
        /// Their size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An identity's version is beyond [`crate::identity::VERSION_MAX`].
    #[error("identity version {0} is beyond the limit")]
    VersionTooHigh(u64),
    /// A user event name is empty.
    #[error("event name is empty")]
    EventNameEmpty,
    /// A user event name holds a character outside `[A-Za-z0-9._:/-]`.
    #[error("event name holds {0:?}: only letters, digits, '.', '-', '_', ':' and '/' are allowed")]
    EventNameChar(char),
    /// A user event name is longer than allowed.
    #[error("event name is {len} bytes, the limit is {max}")]
    EventNameTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A user event (name and payload) is larger than allowed.
    #[error("event name and payload take {len} bytes, the limit is {max}")]
    EventTooBig {
        /// Their size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why an incoming packet was dropped. Nothing in the core changed when one is returned,
/// except for the counter of its kind in [`crate::Stats`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DropReason {
    /// Larger than the configured packet size.
    #[error("packet of {0} bytes is larger than the limit")]
    Oversize(usize),
    /// Does not start with our magic bytes: not a gossip-agent packet.
    #[error("not a gossip-agent packet (bad magic)")]
    Foreign,
    /// A wire version we do not speak.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// Could not be decoded, or carries an identity that breaks the rules.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// foca refused it (from ourselves, for an old identity of ours, ...).
    #[error("refused by the membership protocol: {0}")]
    Protocol(String),
    /// A foca packet for another member: its destination is not this node.
    #[error("addressed to another member")]
    Misaddressed,
    /// From, or about, the last identity of a reaped member or an older one (a replay).
    #[error("about a reaped member's identity")]
    Buried,
}

/// Errors of local commands (join, set tags, leave).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The input breaks the identity rules; nothing changed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The node has left; it takes no more commands. Nothing changed.
    #[error("this node has left the cluster")]
    Left,
    /// foca failed; the local state may have changed (see the message).
    #[error("membership protocol error: {0}")]
    Protocol(String),
}
