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
    Malformed(#[from] DecodeError),
    /// foca refused it (from ourselves, for an old identity of ours, ...).
    #[error("refused by the membership protocol: {0}")]
    Protocol(#[source] foca::Error),
    /// A foca packet for another member: its destination is not this node.
    #[error("addressed to another member")]
    Misaddressed,
    /// From, or about, the last identity of a reaped member or an older one (a replay).
    #[error("about a reaped member's identity")]
    Buried,
}

/// Why a datagram's payload could not be decoded. Nothing in the core changed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not postcard's encoding of what the kind says.
    #[error(transparent)]
    Postcard(#[from] postcard::Error),
    /// A name, tag or event in it breaks the identity rules.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Bytes left after the message.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// An envelope kind this build does not know.
    #[error("unknown kind {0}")]
    UnknownKind(u8),
    /// A digest entry cut short.
    #[error("truncated digest entry")]
    TruncatedEntry,
    /// A coordinate, or a list of them, cut short or with bytes left over.
    #[error("coordinates of the wrong length")]
    Coordinates,
    /// A forward list longer than allowed.
    #[error("forward list of {len} members, the limit is {max}")]
    ForwardTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A query answer larger than the event size limit.
    #[error("query response of {len} bytes, the limit is {max}")]
    AnswerTooBig {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A Lamport time no clock reaches.
    #[error("Lamport time {0} is beyond any clock")]
    TimeTooFar(u64),
    /// A challenge or echo of another size than a cookie's.
    #[error("a challenge holds 8 bytes")]
    ChallengeLength,
    /// An echo of a cookie that is not this address's (or too old).
    #[error("a wrong cookie")]
    WrongCookie,
    /// The foca header or a member in it could not be decoded.
    #[error(transparent)]
    Codec(crate::wire::CodecError),
    /// foca could not decode it (too big, cut short, or its codec failed).
    #[error("{0}")]
    Foca(#[source] foca::Error),
}

impl From<crate::wire::CodecError> for DecodeError {
    /// The codec's errors that are decoding errors of their own (postcard's, the identity
    /// rules') keep their kind.
    fn from(e: crate::wire::CodecError) -> Self {
        use crate::wire::CodecError;
        match e {
            CodecError::Postcard(e) => Self::Postcard(e),
            CodecError::Invalid(e) => Self::Invalid(e),
            other => Self::Codec(other),
        }
    }
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
    /// foca failed; the local state may have changed (see the source).
    #[error("membership protocol error: {0}")]
    Protocol(#[source] foca::Error),
}
