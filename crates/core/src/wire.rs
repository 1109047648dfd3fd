//! The wire format: a 4-byte envelope (magic, version, kind) around either a foca packet or one
//! of our own messages (full-state sync and acknowledged notices), and the foca codec, which
//! validates every identity it decodes and names well-known identities by compact references.
//!
//! ```text
//! 0      2         3      4
//! +------+---------+------+---------------------------+
//! | "GA" | version | kind | payload (postcard / foca) |
//! +------+---------+------+---------------------------+
//! ```
//!
//! A foca header carries two identities (sender and receiver), each with its name, address,
//! version and tags: most of a probe's bytes. The codec writes either one as a 12-byte
//! reference (name key, short fingerprint) when the other side is known to hold it: the
//! receiver always holds its own identity, and the sender's is referenced once that receiver
//! has addressed the sender's current identity itself. The [`Directory`] holds what this
//! needs; a receiver that cannot resolve a sender's reference answers [`Kind::Unknown`], and
//! the sender goes back to full identities for it.
//!
//! ```text
//! header: flags (bit 0: src is a reference, bit 1: dst is) | src | src incarnation (varint)
//!         | dst | message (postcard)
//! identity: reference = name key (u64 LE) + short fingerprint (u32 LE), or postcard in full
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, BufMut};
use foca::{Codec, Header, Member, Message, PostcardCodec};
use hashbrown::hash_table::Entry;
use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, DropReason, InvalidInput};
use crate::identity::{IdRef, Interner, Limits, NameKey, NodeId};
use crate::table::KeyTable;

/// First two bytes of every packet.
pub const MAGIC: [u8; 2] = *b"GA";
/// The wire version this build speaks (2: compact identity references in foca headers; 3:
/// Lamport clocks in full-state and digest exchanges, the asking member's version in queries;
/// 4: network coordinates in acks, full-state and digest exchanges).
pub const VERSION: u8 = 4;
/// Length of an identity reference on the wire.
pub const REF_LEN: usize = 12;
/// Envelope length in bytes.
pub const ENVELOPE_LEN: usize = 4;

/// What follows the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A foca (SWIM) packet.
    Foca = 0,
    /// Part of a full-state exchange ([`Sync`]).
    Sync = 1,
    /// An identity change that wants an acknowledgement ([`Notice`]).
    Notice = 2,
    /// The acknowledgement of a [`Notice`].
    NoticeAck = 3,
    /// "I cannot resolve your identity reference": the sender should send its identity in
    /// full to us again. No payload.
    Unknown = 4,
    /// Part of a periodic push-pull by digest ([`Digest`]).
    Digest = 5,
    /// Members a digest named that the receiver does not hold ([`Want`]).
    Want = 6,
    /// A user event, acknowledged with a [`NoticeAck`] ([`UserMsg`]).
    User = 7,
    /// A query, acknowledged with a [`NoticeAck`] (Serf's ack) ([`QueryMsg`]).
    Query = 8,
    /// A query's answer, acknowledged with a [`NoticeAck`] ([`QueryResponseMsg`]).
    QueryResponse = 9,
    /// "Echo this cookie": the sender holds datagrams for us until our address is validated
    /// (see [`crate::validate`]). Payload: the cookie.
    Challenge = 10,
    /// The echo of a [`Kind::Challenge`]'s cookie. Payload: the cookie.
    ChallengeEcho = 11,
    /// A foca ack with the sender's network coordinate before it: the coordinate's
    /// [`crate::coordinate::WIRE_LEN`] bytes, then the foca packet.
    FocaCoord = 12,
    /// Members' network coordinates, after a full state or a digest: a flag byte (1: the
    /// first entry is the sender's own), a count (varint), then per member its name key
    /// (u64 LE) and coordinate.
    Coordinates = 13,
}

impl Kind {
    /// Every kind, in the order of their bytes.
    pub const ALL: [Kind; 14] = [
        Self::Foca,
        Self::Sync,
        Self::Notice,
        Self::NoticeAck,
        Self::Unknown,
        Self::Digest,
        Self::Want,
        Self::User,
        Self::Query,
        Self::QueryResponse,
        Self::Challenge,
        Self::ChallengeEcho,
        Self::FocaCoord,
        Self::Coordinates,
    ];

    /// A name for metrics labels: `swim` (foca's probes and gossip), `sync`, `notice`, ...
    pub fn label(self) -> &'static str {
        match self {
            Self::Foca => "swim",
            Self::Sync => "sync",
            Self::Notice => "notice",
            Self::NoticeAck => "ack",
            Self::Unknown => "unknown_identity",
            Self::Digest => "digest",
            Self::Want => "want",
            Self::User => "user_event",
            Self::Query => "query",
            Self::QueryResponse => "query_response",
            Self::Challenge => "challenge",
            Self::ChallengeEcho => "challenge_echo",
            Self::FocaCoord => "swim_ack_coordinate",
            Self::Coordinates => "coordinates",
        }
    }

    /// The kind of a packet, from its envelope (`None`: too short, or a byte this build does
    /// not know).
    pub fn of_packet(packet: &[u8]) -> Option<Self> {
        packet.get(3).and_then(|b| Self::from_u8(*b))
    }

    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Foca,
            1 => Self::Sync,
            2 => Self::Notice,
            3 => Self::NoticeAck,
            4 => Self::Unknown,
            5 => Self::Digest,
            6 => Self::Want,
            7 => Self::User,
            8 => Self::Query,
            9 => Self::QueryResponse,
            10 => Self::Challenge,
            11 => Self::ChallengeEcho,
            12 => Self::FocaCoord,
            13 => Self::Coordinates,
            _ => return None,
        })
    }
}

/// One packet of a full-state exchange (Serf's push-pull): a slice of the sender's membership
/// table. Each packet stands alone, so a lost one costs only its members until the next sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sync {
    /// The receiver should answer with its own full state (join and periodic push-pull).
    pub reply: bool,
    /// The sender's Lamport clocks.
    pub clocks: Clocks,
    /// Members as the sender knows them, its own identity first.
    pub members: Vec<Member<NodeId>>,
}

/// The sender's Lamport clocks (the times its next user event and query take), carried in
/// every [`Sync`] and [`Digest`] packet, as Serf carries its clocks in push-pull: a joiner
/// takes the cluster's time before it sends an event (see [`crate::clock`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clocks {
    /// User event clock.
    pub event: u64,
    /// Query clock.
    pub query: u64,
}

/// An identity change sent straight to members (leave, tag change) and acknowledged, so the
/// change is everywhere within a round trip instead of a few gossip rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notice {
    /// Sequence number the ack echoes.
    pub seq: u64,
    /// The member state to apply.
    pub member: Member<NodeId>,
    /// The sender, so a suspect can answer it with its refutation.
    pub from: Option<NodeId>,
    /// Whether receivers should pass it on by gossip.
    pub relay: bool,
    /// The members the receiver passes this notice on to, acknowledged like the original:
    /// in a cluster larger than the notice fanout the sender tells the fanout directly and
    /// splits the rest among them. See [`Forward`].
    pub forward: Vec<Forward>,
}

/// A member to pass a [`Notice`] or [`UserMsg`] on to: its name key (little-endian) and the
/// address the sender knows it by. At most [`FORWARD_MAX`] a message. The receiver sends to
/// the address it holds itself for a live member, skips a member it holds as failed or
/// left, and uses the given address for a member it does not know (a joiner it has not
/// heard of yet) only when the sender is a live member at the datagram's source: a stranger
/// cannot make it send outside the cluster.
pub type Forward = ([u8; 8], SocketAddr);

/// Longest forward list a [`Notice`] or [`UserMsg`] may carry.
pub const FORWARD_MAX: usize = 64;

/// One packet of a periodic push-pull: each member as a 14-byte entry (name key, short
/// fingerprint, incarnation, state) instead of its identity. The receiver applies the entries
/// whose identity it holds, asks for the others with a [`Want`], and with `reply` answers with
/// its own digest. Joins still exchange full state ([`Sync`]): a joiner holds nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The receiver should answer with its own digest.
    pub reply: bool,
    /// The sender's Lamport clocks.
    pub clocks: Clocks,
    /// Members as the sender knows them, its own first.
    pub entries: Vec<DigestEntry>,
}

/// Items of a chunked message (full-state members, digest entries, wanted keys), each
/// encoded and laid end to end in one buffer: one allocation for all of them, not one each
/// (a digest of every member otherwise cost a `malloc` and a `free` per member).
#[derive(Debug, Default)]
pub(crate) struct Items {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

/// Lets postcard append to a borrowed buffer.
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl Items {
    /// Appends `value` in postcard's encoding; a value that fails to encode is left out.
    pub(crate) fn push<T: Serialize>(&mut self, value: &T) {
        let start = self.buf.len();
        match postcard::to_extend(value, Append(&mut self.buf)) {
            Ok(_) => self.ends.push(self.buf.len()),
            Err(_) => self.buf.truncate(start),
        }
    }

    /// Appends `entry`, written directly (the same bytes as [`Items::push`] gives it; a
    /// property test compares the two): one digest holds an entry per member.
    pub(crate) fn push_digest_entry(&mut self, entry: &DigestEntry) {
        entry.encode_into(&mut self.buf);
        self.ends.push(self.buf.len());
    }

    /// Appends `bytes` as one item, as they are.
    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.ends.push(self.buf.len());
    }

    /// The items, in the order they were pushed.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| &self.buf[a..b])
    }
}

/// A member in a [`Digest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// Name key, little-endian (fixed width: a hash does not shrink as a varint).
    pub key: [u8; 8],
    /// Short fingerprint of the identity, little-endian.
    pub short: [u8; 4],
    /// foca incarnation.
    pub incarnation: foca::Incarnation,
    /// foca state.
    pub state: foca::State,
}

impl DigestEntry {
    /// The entry for `member`.
    pub fn of(member: &Member<NodeId>) -> Self {
        Self {
            key: member.id().key().0.to_le_bytes(),
            short: member.id().short_fingerprint().to_le_bytes(),
            incarnation: member.incarnation(),
            state: member.state(),
        }
    }

    /// Appends postcard's encoding of the entry: the key and short fingerprint as they are
    /// (postcard writes a byte array element by element, a byte each), the incarnation as a
    /// LEB128 varint, the state as its variant index (one byte).
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.short);
        let mut v = self.incarnation;
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out.push(match self.state {
            foca::State::Alive => 0,
            foca::State::Suspect => 1,
            foca::State::Down => 2,
        });
    }

    /// Reads one entry as postcard would (the varints through postcard itself), with what
    /// follows it.
    fn take(bytes: &[u8]) -> Result<(Self, &[u8]), DropReason> {
        let (Some(key), Some(short)) = (bytes.get(..8), bytes.get(8..12)) else {
            return Err(DecodeError::TruncatedEntry.into());
        };
        let (incarnation, rest) = postcard::take_from_bytes(&bytes[12..]).map_err(malformed)?;
        let (state, rest) = postcard::take_from_bytes(rest).map_err(malformed)?;
        let entry = Self {
            key: key.try_into().expect("8 bytes"),
            short: short.try_into().expect("4 bytes"),
            incarnation,
            state,
        };
        Ok((entry, rest))
    }

    /// The name key.
    pub fn name_key(&self) -> NameKey {
        NameKey(u64::from_le_bytes(self.key))
    }

    /// The member, when `dir` holds its identity.
    pub fn resolve(&self, dir: &Directory) -> Option<Member<NodeId>> {
        dir.resolve(self.name_key(), u32::from_le_bytes(self.short))
            .map(|id| Member::new(id, self.incarnation, self.state))
    }
}

/// Asks the receiver of this for the full state of these members (by name key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Want {
    /// Name keys, little-endian.
    pub keys: Vec<[u8; 8]>,
}

/// Decodes a [`Digest`].
///
/// Read by hand rather than through serde (which decodes a byte array one element at a
/// time): the same bytes are accepted, with the same result, as `postcard` decoding a
/// [`Digest`] (a property test compares the two on valid, cut and random input).
pub fn decode_digest(payload: &[u8]) -> Result<Digest, DropReason> {
    let (reply, rest) = postcard::take_from_bytes::<bool>(payload).map_err(malformed)?;
    let (clocks, rest) = postcard::take_from_bytes::<Clocks>(rest).map_err(malformed)?;
    let (n, mut rest) = postcard::take_from_bytes::<usize>(rest).map_err(malformed)?;
    // An entry takes at least 14 bytes: room for more than the packet holds is not reserved.
    let mut entries = Vec::with_capacity(n.min(rest.len() / 14));
    for _ in 0..n {
        let (entry, after) = DigestEntry::take(rest)?;
        entries.push(entry);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()).into());
    }
    Ok(Digest {
        reply,
        clocks,
        entries,
    })
}

/// Decodes a [`Want`].
pub fn decode_want(payload: &[u8]) -> Result<Want, DropReason> {
    decode_exact(payload)
}

/// A user event sent to a member, which acknowledges it with a [`NoticeAck`] of `seq`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserMsg {
    /// Sequence number the ack echoes.
    pub seq: u64,
    /// The event.
    pub event: crate::user::UserEvent,
    /// The sender's name key, so the receiver can tell a member's forward list from a
    /// stranger's.
    pub sender: [u8; 8],
    /// The members the receiver passes it on to, as in [`Notice::forward`].
    pub forward: Vec<Forward>,
}

/// A query sent to one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryMsg {
    /// Sequence number the ack echoes.
    pub seq: u64,
    /// The query's Lamport time on the asking node.
    pub ltime: u64,
    /// The asking node's name.
    pub origin_name: String,
    /// The asking node's identity version: with the name and the Lamport time, what makes a
    /// query unique (a member restarted at the same address asks anew, from time 0).
    pub origin_version: u64,
    /// Query name.
    pub name: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// A target's answer to a query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryResponseMsg {
    /// Sequence number the ack echoes.
    pub seq: u64,
    /// The query's Lamport time.
    pub ltime: u64,
    /// Its handler's output.
    pub payload: Vec<u8>,
}

/// Decodes a [`QueryMsg`] and checks it against `limits` (like a user event).
pub fn decode_query(payload: &[u8], limits: &Limits) -> Result<QueryMsg, DropReason> {
    let msg: QueryMsg = decode_exact(payload)?;
    check_ltime(msg.ltime)?;
    crate::user::validate_event(&msg.name, &msg.payload, limits).map_err(malformed)?;
    crate::identity::validate_name(&msg.origin_name, limits).map_err(malformed)?;
    Ok(msg)
}

/// Decodes a [`QueryResponseMsg`] and checks its size against `limits`.
pub fn decode_query_response(
    payload: &[u8],
    limits: &Limits,
) -> Result<QueryResponseMsg, DropReason> {
    let msg: QueryResponseMsg = decode_exact(payload)?;
    if msg.payload.len() > limits.event_bytes_max {
        return Err(DecodeError::AnswerTooBig {
            len: msg.payload.len(),
            max: limits.event_bytes_max,
        }
        .into());
    }
    Ok(msg)
}

/// Decodes a [`UserMsg`] and checks its event against `limits`.
pub fn decode_user(payload: &[u8], limits: &Limits) -> Result<UserMsg, DropReason> {
    let msg: UserMsg = decode_exact(payload)?;
    check_ltime(msg.event.ltime)?;
    crate::user::validate_event(&msg.event.name, &msg.event.payload, limits).map_err(malformed)?;
    check_forward(&msg.forward)?;
    Ok(msg)
}

/// Acknowledges the [`Notice`] with this sequence number.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct NoticeAck {
    /// The notice's sequence number.
    pub seq: u64,
}

/// Prepends the envelope to `out`.
pub fn put_envelope(out: &mut Vec<u8>, kind: Kind) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
}

/// Splits a packet into its kind and payload, checking size, magic and version.
pub fn open_envelope(data: &[u8], max_len: usize) -> Result<(Kind, &[u8]), DropReason> {
    if data.len() > max_len {
        return Err(DropReason::Oversize(data.len()));
    }
    if data.len() < ENVELOPE_LEN || data[..2] != MAGIC {
        return Err(DropReason::Foreign);
    }
    if data[2] != VERSION {
        return Err(DropReason::Version(data[2]));
    }
    let kind = Kind::from_u8(data[3]).ok_or(DecodeError::UnknownKind(data[3]))?;
    Ok((kind, &data[ENVELOPE_LEN..]))
}

/// Encodes `value` after an envelope of `kind`.
pub fn encode<T: Serialize>(kind: Kind, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    put_envelope(&mut out, kind);
    // Serialising our own in-memory structures into a Vec cannot fail.
    postcard::to_extend(value, out).expect("postcard encoding into a Vec is infallible")
}

/// Decodes a whole [`Sync`] payload, refusing trailing bytes. Identities `dir` already holds
/// come back as its stored copies; every other one is checked against `limits` and learnt.
pub fn decode_sync(
    payload: &[u8],
    limits: &Limits,
    dir: &mut Directory,
) -> Result<Sync, DropReason> {
    let err = |e: CodecError| DropReason::Malformed(e.into());
    let (reply, rest): (bool, _) = take(payload).map_err(err)?;
    let (clocks, rest): (Clocks, _) = take(rest).map_err(err)?;
    let (count, mut rest): (usize, _) = take(rest).map_err(err)?;
    // A hostile count costs nothing: the loop ends with the bytes.
    let mut members = Vec::with_capacity(count.min(rest.len()));
    for _ in 0..count {
        let (m, r) = take_member(rest, dir, limits).map_err(err)?;
        members.push(m);
        rest = r;
    }
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()).into());
    }
    Ok(Sync {
        reply,
        clocks,
        members,
    })
}

/// Decodes one `Member<NodeId>` (its postcard encoding: identity, incarnation, state) through
/// `dir`, as [`Directory::intern`] does.
fn take_member<'a>(
    bytes: &'a [u8],
    dir: &mut Directory,
    limits: &Limits,
) -> Result<(Member<NodeId>, &'a [u8]), CodecError> {
    let ((id, incarnation, state), rest): ((IdRef<'_>, foca::Incarnation, foca::State), _) =
        take(bytes)?;
    let id = dir.intern(&id, limits).map_err(invalid)?;
    Ok((Member::new(id, incarnation, state), rest))
}

/// Decodes one identity through `dir`, as [`Directory::intern`] does (or only as
/// [`Directory::peek`] does when `learn` is false).
fn take_id<'a>(
    bytes: &'a [u8],
    dir: &mut Directory,
    limits: &Limits,
    learn: bool,
) -> Result<(NodeId, &'a [u8]), CodecError> {
    let (id, rest): (IdRef<'_>, _) = take(bytes)?;
    let id = if learn {
        dir.intern(&id, limits)
    } else {
        dir.peek(&id, limits)
    };
    Ok((id.map_err(invalid)?, rest))
}

fn invalid(e: InvalidInput) -> CodecError {
    CodecError::Invalid(e)
}

/// Decodes a [`Notice`] and checks its identity.
/// Identities come back through `dir`, as in [`decode_sync`].
pub fn decode_notice(
    payload: &[u8],
    limits: &Limits,
    dir: &mut Directory,
) -> Result<Notice, DropReason> {
    let err = |e: CodecError| DropReason::Malformed(e.into());
    let (seq, rest): (u64, _) = take(payload).map_err(err)?;
    let (member, rest) = take_member(rest, dir, limits).map_err(err)?;
    let (has_from, rest): (bool, _) = take(rest).map_err(err)?;
    let (from, rest) = if has_from {
        let (id, rest) = take_id(rest, dir, limits, true).map_err(err)?;
        (Some(id), rest)
    } else {
        (None, rest)
    };
    let (relay, rest): (bool, _) = take(rest).map_err(err)?;
    let (forward, rest): (Vec<Forward>, _) = take(rest).map_err(err)?;
    check_forward(&forward)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()).into());
    }
    Ok(Notice {
        seq,
        member,
        from,
        relay,
        forward,
    })
}

/// A Lamport time no clock reaches ([`crate::clock::CLOCK_MAX`]) is refused.
fn check_ltime(ltime: u64) -> Result<(), DropReason> {
    if ltime > crate::clock::CLOCK_MAX {
        return Err(DecodeError::TimeTooFar(ltime).into());
    }
    Ok(())
}

fn check_forward(forward: &[Forward]) -> Result<(), DropReason> {
    if forward.len() > FORWARD_MAX {
        return Err(DecodeError::ForwardTooLong {
            len: forward.len(),
            max: FORWARD_MAX,
        }
        .into());
    }
    Ok(())
}

/// Decodes a [`NoticeAck`].
pub fn decode_notice_ack(payload: &[u8]) -> Result<NoticeAck, DropReason> {
    decode_exact(payload)
}

fn decode_exact<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, DropReason> {
    let (value, rest) = postcard::take_from_bytes(payload).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()).into());
    }
    Ok(value)
}

fn malformed(e: impl Into<DecodeError>) -> DropReason {
    DropReason::Malformed(e.into())
}

/// What the codec needs to write and read identity references: the newest identity seen in
/// full for every name (also an interner: a decoded identity that is already known is
/// replaced by the stored one, so a node holds one copy of each), our own current identity,
/// and the peers known to hold it. Shared by a [`crate::Node`] and its codec.
#[derive(Debug, Default)]
pub struct Directory {
    /// Looked up, never iterated for a decision (swept by [`Directory::retain`]).
    known: KeyTable<NodeId>,
    me: Option<NodeId>,
    /// Peers (by address) that addressed our current identity, with the short fingerprint of
    /// their own identity then: we reference ourselves to them while they keep that identity.
    /// At most [`KNOWS_ME_MAX`].
    knows_me: BTreeMap<SocketAddr, u32>,
    /// Set when a decode failed on a sender reference we could not resolve.
    unresolved: bool,
    /// The highest version seen of an identity with our own name that outranks ours, since
    /// last taken ([`Directory::take_outranked`]).
    outranked: Option<u64>,
    /// Reaped members' last identities ([`Directory::bury`]): their rank and address; older
    /// or equal ones are refused.
    tombstones: BTreeMap<NameKey, ((u64, bool), SocketAddr)>,
    /// The same keys, oldest first.
    tombstone_order: std::collections::VecDeque<NameKey>,
    /// Identities shared with other nodes of this process (the simulator's), if any.
    shared: Option<Interner>,
}

/// How many peers [`Directory`] remembers as holding our identity (an attacker controls the
/// addresses named in identities; past this, the lowest address is forgotten: we name
/// ourselves to it in full again, nothing worse).
pub const KNOWS_ME_MAX: usize = 4096;

/// How many reaped identities [`Directory`] keeps tombstones for.
pub const TOMBSTONES_MAX: usize = 4096;

impl Directory {
    /// Our identity is now `id` (at start, after a tag change, a leave or a renewal): every
    /// peer has to learn it again before we reference it.
    pub fn set_me(&mut self, id: &NodeId) {
        if self.me.as_ref() != Some(id) {
            self.me = Some(id.clone());
            self.knows_me.clear();
            self.known.insert(id.clone());
        }
    }

    /// Remembers `id` if it is the newest identity of its name seen so far, and returns the
    /// stored copy when it is the same identity. An identity of our own name other than ours
    /// is never stored; when it outranks ours, its version is noted for
    /// [`Directory::take_outranked`].
    pub fn learn(&mut self, id: NodeId) -> NodeId {
        if let Some(me) = &self.me
            && me.key() == id.key()
        {
            if *me == id {
                return me.clone();
            }
            if id.rank() > me.rank() {
                self.outranked = self.outranked.max(Some(id.version()));
            }
            return id;
        }
        match self.known.entry(id.key()) {
            Entry::Occupied(e) if *e.get() == id => e.get().clone(),
            Entry::Occupied(e) if e.get().rank() > id.rank() => id,
            Entry::Occupied(mut e) => {
                *e.get_mut() = id.clone();
                id
            }
            Entry::Vacant(e) => {
                e.insert(id.clone());
                id
            }
        }
    }

    /// The highest version of an identity with our name that outranks ours seen since the
    /// last call (a restart with a clock that stepped back, or a forgery): the node must take
    /// a version above it.
    pub fn take_outranked(&mut self) -> Option<u64> {
        self.outranked.take()
    }

    /// Forgets the identities of a reaped member's name (unless it is our own), keeping a
    /// tombstone of the last one: identities of that name that do not outrank it are refused
    /// from now on ([`Directory::is_buried`]; the newest [`TOMBSTONES_MAX`] are kept, with no
    /// time limit, since a replay may be of any age), so replayed packets cannot bring it
    /// back. A restart takes a newer version and is not affected.
    pub fn forget(&mut self, key: NameKey) {
        if self.me.as_ref().map(NodeId::key) == Some(key) {
            return;
        }
        if let Some(id) = self.known.remove(key) {
            self.bury(&id);
        }
    }

    /// Keeps a tombstone of `id` (bounded: the oldest go first).
    pub fn bury(&mut self, id: &NodeId) {
        let stone = (id.rank(), id.addr());
        match self.tombstones.insert(id.key(), stone) {
            Some(old) if old.0 > stone.0 => {
                self.tombstones.insert(id.key(), old);
            }
            Some(_) => {}
            None => self.tombstone_order.push_back(id.key()),
        }
        while self.tombstones.len() > TOMBSTONES_MAX
            && let Some(k) = self.tombstone_order.pop_front()
        {
            self.tombstones.remove(&k);
        }
    }

    /// Lifts the tombstones of failed (not left) members at `addr`: the address proved it is
    /// alive (it echoed a challenge), so what comes from it now is no replay. Returns how
    /// many were lifted.
    pub fn unbury_failed_at(&mut self, addr: SocketAddr) -> usize {
        let before = self.tombstones.len();
        self.tombstones
            .retain(|_, ((_, leaving), at)| *leaving || *at != addr);
        let lifted = before - self.tombstones.len();
        if lifted > 0 {
            let stones = &self.tombstones;
            self.tombstone_order.retain(|k| stones.contains_key(k));
        }
        lifted
    }

    /// True for an identity of a reaped member that does not outrank its last one.
    pub fn is_buried(&self, id: &NodeId) -> bool {
        self.tombstones
            .get(&id.key())
            .is_some_and(|(rank, _)| id.rank() <= *rank)
    }

    /// True for an identity of a reaped member that left and that does not outrank its
    /// leaving identity: it can never legitimately be alive again (a restart takes a newer
    /// version), whoever lists it.
    pub fn is_buried_left(&self, id: &NodeId) -> bool {
        self.tombstones
            .get(&id.key())
            .is_some_and(|(rank, _)| rank.1 && id.rank() <= *rank)
    }

    /// The peer at `addr` could not resolve our reference: send our identity in full again.
    pub fn forget_peer(&mut self, addr: SocketAddr) {
        self.knows_me.remove(&addr);
    }

    /// True (once) when the last failed decode was a sender reference we do not know.
    pub fn take_unresolved(&mut self) -> bool {
        std::mem::take(&mut self.unresolved)
    }

    /// How many identities are known.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// True when no identity is known.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Keeps only the identities whose key `keep` accepts (and our own): what the node no
    /// longer needs (identities named in packets it ignored or refused) is dropped.
    pub fn retain(&mut self, mut keep: impl FnMut(NameKey) -> bool) {
        let me = self.me.as_ref().map(NodeId::key);
        let drop: Vec<NameKey> = self
            .known
            .values()
            .map(NodeId::key)
            .filter(|k| Some(*k) != me && !keep(*k))
            .collect();
        for k in drop {
            self.known.remove(k);
        }
    }

    /// The identity `r` names: the stored copy when this directory holds that very identity
    /// (nothing is built, allocated or validated again), else a new one, checked against
    /// `limits` and learnt.
    pub(crate) fn intern(
        &mut self,
        r: &IdRef<'_>,
        limits: &Limits,
    ) -> Result<NodeId, InvalidInput> {
        let id = self.peek(r, limits)?;
        Ok(self.learn(id))
    }

    /// Like [`Directory::intern`], but a new identity is not learnt: for packets that may
    /// yet be ignored (their identities must not stay in memory).
    pub(crate) fn peek(&self, r: &IdRef<'_>, limits: &Limits) -> Result<NodeId, InvalidInput> {
        let key = r.key();
        if let Some(k) = self.known.get(key)
            && r.is(k)
        {
            return Ok(k.clone());
        }
        let shared = self.shared.as_ref();
        let found = shared
            .and_then(|s| s.last_if(key, |id| r.is(id)))
            .or_else(|| shared.and_then(|s| s.get(key, r.fingerprint())));
        let id = match found {
            Some(id) => id,
            None => {
                let id = r.to_owned()?;
                if let Some(s) = shared {
                    s.put(&id);
                }
                id
            }
        };
        // Checked against our own limits, also when another node built it.
        id.validate(limits)?;
        Ok(id)
    }

    /// Shares identities with the other nodes that use `interner`.
    pub fn share(&mut self, interner: Interner) {
        self.shared = Some(interner);
    }

    fn resolve(&self, key: NameKey, short: u32) -> Option<NodeId> {
        self.known
            .get(key)
            .filter(|k| k.short_fingerprint() == short)
            .cloned()
    }
}

/// A [`Directory`] shared between a node and its codec.
pub type SharedDirectory = Arc<Mutex<Directory>>;

fn lock(dir: &SharedDirectory) -> MutexGuard<'_, Directory> {
    // The directory holds no invariant a panic halfway could break.
    dir.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// foca's codec: postcard, compact identity references in headers (see the module
/// documentation), and validation of every identity decoded from a peer.
#[derive(Debug, Clone)]
pub struct ValidatingCodec {
    limits: Limits,
    dir: SharedDirectory,
    /// Whether decoded identities are learnt (false: a look at a header before deciding
    /// whether to accept the packet, see [`ValidatingCodec::peeking`]).
    learn: bool,
}

impl ValidatingCodec {
    /// A codec enforcing `limits` on decoded identities, with a directory of its own.
    pub fn new(limits: Limits) -> Self {
        Self::with_directory(limits, SharedDirectory::default())
    }

    /// A codec enforcing `limits` and resolving references through `dir`.
    pub fn with_directory(limits: Limits, dir: SharedDirectory) -> Self {
        Self {
            limits,
            dir,
            learn: true,
        }
    }

    /// A codec that decodes headers without learning the identities in them (nor which peers
    /// hold ours): a node reads a packet's header with it before it accepts the packet, so
    /// a packet it ignores leaves nothing behind.
    pub fn peeking(limits: Limits, dir: SharedDirectory) -> Self {
        Self {
            limits,
            dir,
            learn: false,
        }
    }

    /// The directory this codec resolves references through.
    pub fn directory(&self) -> &SharedDirectory {
        &self.dir
    }

    fn check(&self, id: &NodeId) -> Result<(), CodecError> {
        Ok(id.validate(&self.limits)?)
    }
}

/// A decoding or encoding failure of [`ValidatingCodec`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Not postcard's encoding of what was expected.
    #[error(transparent)]
    Postcard(#[from] postcard::Error),
    /// An identity that breaks the rules.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// No header at all.
    #[error("empty header")]
    EmptyHeader,
    /// Header flags this build does not know.
    #[error("unknown header flags {0:#x}")]
    UnknownFlags(u8),
    /// A reference to a sender identity we do not hold.
    #[error("unknown sender identity reference")]
    UnknownSender,
    /// A reference to a destination that is neither known nor us.
    #[error("packet for an unknown member")]
    UnknownMember,
    /// An identity reference cut short.
    #[error("truncated identity reference")]
    TruncatedRef,
    /// The packet buffer cannot take the header.
    #[error("packet buffer full")]
    BufferFull,
    /// foca's own postcard codec failed.
    #[error("{0}")]
    Foca(String),
}

const FLAG_SRC_REF: u8 = 1;
const FLAG_DST_REF: u8 = 2;

fn put_ref(out: &mut Vec<u8>, id: &NodeId) {
    out.extend_from_slice(&id.key().0.to_le_bytes());
    out.extend_from_slice(&id.short_fingerprint().to_le_bytes());
}

fn take_ref(bytes: &[u8]) -> Result<((NameKey, u32), &[u8]), CodecError> {
    if bytes.len() < REF_LEN {
        return Err(CodecError::TruncatedRef);
    }
    let (r, rest) = bytes.split_at(REF_LEN);
    let key = u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
    let short = u32::from_le_bytes(r[8..].try_into().expect("4 bytes"));
    Ok(((NameKey(key), short), rest))
}

fn take<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<(T, &'a [u8]), CodecError> {
    Ok(postcard::take_from_bytes(bytes)?)
}

fn put<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), CodecError> {
    let bytes = postcard::to_stdvec(value)?;
    out.extend_from_slice(&bytes);
    Ok(())
}

fn put_buf(out: &[u8], mut buf: impl BufMut) -> Result<(), CodecError> {
    if buf.remaining_mut() < out.len() {
        return Err(CodecError::BufferFull);
    }
    buf.put_slice(out);
    Ok(())
}

impl Codec<NodeId> for ValidatingCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        let mut dir = lock(&self.dir);
        if dir.me.as_ref() != Some(&header.src) {
            dir.set_me(&header.src);
        }
        let src_ref = dir.knows_me.get(&header.dst.addr()) == Some(&header.dst.short_fingerprint());
        drop(dir);
        // Announces go to members that may not know us, or to an identity we only guessed.
        let dst_ref = header.message != Message::Announce;
        let mut out = Vec::with_capacity(96);
        out.push(if src_ref { FLAG_SRC_REF } else { 0 } | if dst_ref { FLAG_DST_REF } else { 0 });
        if src_ref {
            put_ref(&mut out, &header.src);
        } else {
            put(&mut out, &header.src)?;
        }
        put(&mut out, &header.src_incarnation)?;
        if dst_ref {
            put_ref(&mut out, &header.dst);
        } else {
            put(&mut out, &header.dst)?;
        }
        put(&mut out, &header.message)?;
        put_buf(&out, buf)
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<NodeId>, CodecError> {
        let remaining = buf.remaining();
        // foca hands the codec one contiguous buffer.
        let bytes = buf.chunk();
        debug_assert_eq!(remaining, bytes.len());
        let (&flags, rest) = bytes.split_first().ok_or(CodecError::EmptyHeader)?;
        if flags & !(FLAG_SRC_REF | FLAG_DST_REF) != 0 {
            return Err(CodecError::UnknownFlags(flags));
        }
        let mut dir = lock(&self.dir);
        let (src, rest) = if flags & FLAG_SRC_REF != 0 {
            let ((key, short), rest) = take_ref(rest)?;
            match dir.resolve(key, short) {
                Some(id) => (id, rest),
                None => {
                    dir.unresolved = true;
                    return Err(CodecError::UnknownSender);
                }
            }
        } else {
            take_id(rest, &mut dir, &self.limits, self.learn)?
        };
        let (src_incarnation, rest) = take(rest)?;
        let (dst, rest) = if flags & FLAG_DST_REF != 0 {
            let ((key, short), rest) = take_ref(rest)?;
            let dst = match (dir.resolve(key, short), &dir.me) {
                (Some(id), _) => id,
                // A reference to a former identity of ours (before a restart or a tag change).
                (None, Some(me)) if me.key() == key => me.former(),
                (None, _) => return Err(CodecError::UnknownMember),
            };
            (dst, rest)
        } else {
            take_id(rest, &mut dir, &self.limits, self.learn)?
        };
        let (message, rest): (Message<NodeId>, _) = take(rest)?;
        let learn = self.learn;
        let mut seen = |id: NodeId| -> Result<NodeId, CodecError> {
            self.check(&id)?;
            Ok(if learn { dir.learn(id) } else { id })
        };
        let message = match message {
            Message::PingReq {
                target,
                probe_number,
            } => Message::PingReq {
                target: seen(target)?,
                probe_number,
            },
            Message::IndirectPing {
                origin,
                probe_number,
            } => Message::IndirectPing {
                origin: seen(origin)?,
                probe_number,
            },
            Message::IndirectAck {
                target,
                probe_number,
            } => Message::IndirectAck {
                target: seen(target)?,
                probe_number,
            },
            Message::ForwardedAck {
                origin,
                probe_number,
            } => Message::ForwardedAck {
                origin: seen(origin)?,
                probe_number,
            },
            other => other,
        };
        if self.learn && dir.me.as_ref() == Some(&dst) {
            if dir.knows_me.len() >= KNOWS_ME_MAX && !dir.knows_me.contains_key(&src.addr()) {
                dir.knows_me.pop_first();
            }
            dir.knows_me.insert(src.addr(), src.short_fingerprint());
        }
        let after = rest.len();
        drop(dir);
        buf.advance(remaining - after);
        Ok(Header {
            src,
            src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        PostcardCodec
            .encode_member(member, buf)
            .map_err(|e| CodecError::Foca(e.to_string()))
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<NodeId>, CodecError> {
        let remaining = buf.remaining();
        // foca hands the codec one contiguous buffer.
        let bytes = buf.chunk();
        debug_assert_eq!(remaining, bytes.len());
        let (member, rest) = take_member(bytes, &mut lock(&self.dir), &self.limits)?;
        let after = rest.len();
        buf.advance(remaining - after);
        Ok(member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Tags;

    #[test]
    fn directories_sharing_an_interner_hold_one_copy_of_each_identity() {
        let l = Limits::default();
        let interner = Interner::new();
        let (mut a, mut b) = (Directory::default(), Directory::default());
        a.share(interner.clone());
        b.share(interner.clone());
        let v1 = NodeId::new(
            "web1",
            "10.0.0.4:7946".parse().unwrap(),
            1,
            Tags::from([("role".into(), "app".into())]),
            &l,
        )
        .unwrap();
        let v2 = v1.with_tags(Tags::from([("role".into(), "db".into())]));
        let (bytes1, bytes2) = (
            postcard::to_stdvec(&v1).unwrap(),
            postcard::to_stdvec(&v2).unwrap(),
        );
        let decode = |d: &mut Directory, bytes: &[u8]| {
            d.intern(&postcard::from_bytes::<IdRef<'_>>(bytes).unwrap(), &l)
                .unwrap()
        };
        let a1 = decode(&mut a, &bytes1);
        let a2 = decode(&mut a, &bytes2);
        assert_eq!((&a1, &a2), (&v1, &v2));
        assert!(!a1.same_copy(&a2));
        // v1 is no longer the last shared under its name: found by its fingerprint.
        let b1 = decode(&mut b, &bytes1);
        // v2 is: found by comparing fields.
        let b2 = decode(&mut b, &bytes2);
        assert!(b1.same_copy(&a1) && b2.same_copy(&a2));
        assert!(decode(&mut a, &bytes2).same_copy(&a2));
        assert_eq!(interner.len(), 2);
        // A copy no node holds any more is not handed out: it is built again.
        drop((a1, b1));
        let mut c = Directory::default();
        c.share(interner.clone());
        let c1 = decode(&mut c, &bytes1);
        assert_eq!(c1, v1);
        assert!(!c1.same_copy(&a2));
    }

    #[test]
    fn items_hold_each_value_as_postcard_encodes_it_alone() {
        let id = NodeId::new(
            "n1",
            "127.0.0.1:7946".parse().unwrap(),
            3,
            Tags::from([("role".into(), "web".into())]),
            &Limits::default(),
        )
        .unwrap();
        let members = [
            Member::alive(id.clone()),
            Member::new(id.clone(), 700, foca::State::Suspect),
            Member::new(id, u16::MAX, foca::State::Down),
        ];
        let mut items = Items::default();
        let mut want: Vec<Vec<u8>> = Vec::new();
        for m in &members {
            items.push(m);
            want.push(postcard::to_stdvec(m).unwrap());
            items.push(&DigestEntry::of(m));
            want.push(postcard::to_stdvec(&DigestEntry::of(m)).unwrap());
            items.push_digest_entry(&DigestEntry::of(m));
            want.push(postcard::to_stdvec(&DigestEntry::of(m)).unwrap());
        }
        items.push_bytes(&[]);
        want.push(Vec::new());
        items.push_bytes(&7u64.to_le_bytes());
        want.push(7u64.to_le_bytes().to_vec());
        let got: Vec<Vec<u8>> = items.iter().map(<[u8]>::to_vec).collect();
        assert_eq!(got, want);
        assert_eq!(Items::default().iter().count(), 0);
    }

    #[test]
    fn envelope_checks_magic_version_kind_and_size() {
        let mut p = Vec::new();
        put_envelope(&mut p, Kind::Sync);
        p.push(7);
        assert_eq!(open_envelope(&p, 100).unwrap().0, Kind::Sync);
        assert!(matches!(
            open_envelope(b"xx", 100),
            Err(DropReason::Foreign)
        ));
        assert!(matches!(
            open_envelope(b"GA\x09\x00", 100),
            Err(DropReason::Version(9))
        ));
        assert!(matches!(
            open_envelope(&[b'G', b'A', VERSION, 200], 100),
            Err(DropReason::Malformed(_))
        ));
        assert!(matches!(
            open_envelope(&[0; 200], 100),
            Err(DropReason::Oversize(200))
        ));
    }

    #[test]
    fn sync_round_trips_and_rejects_bad_identities() {
        let limits = Limits::default();
        let id = NodeId::new(
            "a",
            "10.0.0.1:7946".parse().unwrap(),
            5,
            Tags::new(),
            &limits,
        )
        .unwrap();
        let msg = Sync {
            reply: true,
            clocks: Clocks {
                event: 600,
                query: 3,
            },
            members: vec![Member::alive(id)],
        };
        let bytes = encode(Kind::Sync, &msg);
        let (kind, payload) = open_envelope(&bytes, 1400).unwrap();
        assert_eq!(kind, Kind::Sync);
        let back = decode_sync(payload, &limits, &mut Directory::default()).unwrap();
        assert_eq!(back.members, msg.members);
        assert_eq!(back.clocks, msg.clocks);
        // Trailing garbage is refused.
        let mut longer = payload.to_vec();
        longer.push(0);
        assert!(decode_sync(&longer, &limits, &mut Directory::default()).is_err());
        // A name that breaks the rules is refused even though it decodes.
        let tight = Limits {
            name_len_max: 0,
            ..limits
        };
        assert!(decode_sync(payload, &tight, &mut Directory::default()).is_err());
    }

    #[test]
    fn sync_with_a_name_or_tag_that_is_not_utf8_is_refused() {
        let limits = Limits::default();
        let tags = Tags::from([("role".to_string(), "app".to_string())]);
        let id = NodeId::new("ab", "10.0.0.1:7946".parse().unwrap(), 5, tags, &limits).unwrap();
        let good = encode(
            Kind::Sync,
            &Sync {
                reply: false,
                clocks: Clocks::default(),
                members: vec![Member::alive(id.clone())],
            },
        );
        let (_, payload) = open_envelope(&good, 1400).unwrap();
        let mut known = Directory::default();
        known.learn(id);
        for (text, bad) in [(&b"ab"[..], &b"a\xff"[..]), (b"app", b"a\xc3p")] {
            let at = payload
                .windows(text.len())
                .position(|w| w == text)
                .expect("the text is in the packet");
            let mut broken = payload.to_vec();
            broken[at..at + bad.len()].copy_from_slice(bad);
            // Unknown to the directory, and known under the same name: refused either way.
            for dir in [&mut Directory::default(), &mut known] {
                let err = decode_sync(&broken, &limits, dir).unwrap_err();
                assert!(
                    matches!(
                        &err,
                        DropReason::Malformed(DecodeError::Invalid(InvalidInput::NotUtf8))
                    ),
                    "{err:?}"
                );
            }
        }
    }

    mod codec_round_trip {
        use super::*;
        use proptest::prelude::*;

        fn identity() -> impl Strategy<Value = NodeId> {
            (
                "[A-Za-z0-9._-]{1,24}",
                any::<[u8; 4]>(),
                any::<u16>(),
                0..=crate::identity::VERSION_MAX,
                any::<bool>(),
                proptest::collection::btree_map("[a-z0-9_.-]{1,8}", "[ -~]{0,24}", 0..5),
            )
                .prop_map(|(name, ip, port, version, leaving, tags)| {
                    let addr = SocketAddr::from((ip, port));
                    let id = NodeId::new(&name, addr, version, tags, &Limits::default())
                        .expect("the strategy draws valid identities");
                    if leaving { id.as_leaving() } else { id }
                })
        }

        fn state() -> impl Strategy<Value = foca::State> {
            prop_oneof![
                Just(foca::State::Alive),
                Just(foca::State::Suspect),
                Just(foca::State::Down)
            ]
        }

        fn member() -> impl Strategy<Value = Member<NodeId>> {
            (identity(), any::<u16>(), state()).prop_map(|(id, inc, st)| Member::new(id, inc, st))
        }

        fn same(a: &Member<NodeId>, b: &Member<NodeId>) -> bool {
            a == b
                && a.id().name() == b.id().name()
                && a.id().addr() == b.id().addr()
                && a.id().version() == b.id().version()
                && a.id().is_leaving() == b.id().is_leaving()
                && a.id().tags() == b.id().tags()
        }

        fn digest_entry() -> impl Strategy<Value = DigestEntry> {
            (any::<[u8; 8]>(), any::<[u8; 4]>(), any::<u16>(), state()).prop_map(
                |(key, short, incarnation, state)| DigestEntry {
                    key,
                    short,
                    incarnation,
                    state,
                },
            )
        }

        proptest! {
            /// The hand-written digest codec is postcard's: the same bytes out, and the same
            /// verdict and value for any input (valid, cut short, a byte changed, or noise).
            #[test]
            fn digest_codec_is_postcards(
                reply in any::<bool>(),
                clocks in any::<(u64, u64)>(),
                entries in proptest::collection::vec(digest_entry(), 0..6),
                cut in any::<prop::sample::Index>(),
                flip in any::<(prop::sample::Index, u8)>(),
                noise in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                for e in &entries {
                    let mut ours = Vec::new();
                    e.encode_into(&mut ours);
                    prop_assert_eq!(ours, postcard::to_stdvec(e).unwrap());
                }
                let clocks = Clocks { event: clocks.0, query: clocks.1 };
                let digest = Digest { reply, clocks, entries };
                let bytes = postcard::to_stdvec(&digest).unwrap();
                let mut cut_short = bytes.clone();
                cut_short.truncate(cut.index(bytes.len() + 1));
                let mut changed = bytes.clone();
                let at = flip.0.index(changed.len());
                changed[at] ^= flip.1;
                let mut longer = bytes.clone();
                longer.extend_from_slice(&noise);
                for input in [&bytes, &cut_short, &changed, &noise, &longer] {
                    let ours = decode_digest(input).ok();
                    let theirs = decode_exact::<Digest>(input).ok();
                    prop_assert_eq!(&ours, &theirs, "input {:?}", input);
                }
                prop_assert_eq!(decode_digest(&bytes).ok(), Some(digest));
            }

            #[test]
            fn sync_notices_and_foca_members_round_trip(
                members in proptest::collection::vec(member(), 0..8),
                from in proptest::option::of(identity()),
                forward in proptest::collection::vec((any::<[u8; 8]>(), any::<([u8; 4], u16)>()), 0..4),
                reply in any::<bool>(),
            ) {
                let limits = Limits::default();
                // A directory that holds nothing builds every identity; one that holds them
                // all hands back its own copies: both must give the same members.
                let mut empty = Directory::default();
                let mut full = Directory::default();
                for m in &members {
                    full.learn(m.id().clone());
                }
                let sync = Sync { reply, clocks: Clocks { event: 9, query: 1 << 40 }, members: members.clone() };
                let bytes = encode(Kind::Sync, &sync);
                for dir in [&mut empty, &mut full] {
                    let back = decode_sync(&bytes[ENVELOPE_LEN..], &limits, dir).unwrap();
                    prop_assert_eq!(back.reply, reply);
                    prop_assert_eq!(back.members.len(), members.len());
                    for (a, b) in back.members.iter().zip(&members) {
                        prop_assert!(same(a, b), "{:?} != {:?}", a, b);
                    }
                }

                let forward: Vec<Forward> = forward
                    .into_iter()
                    .map(|(k, (ip, port))| (k, SocketAddr::from((ip, port))))
                    .collect();
                for m in &members {
                    let notice = Notice {
                        seq: 7,
                        member: m.clone(),
                        from: from.clone(),
                        relay: reply,
                        forward: forward.clone(),
                    };
                    let bytes = encode(Kind::Notice, &notice);
                    let back = decode_notice(&bytes[ENVELOPE_LEN..], &limits, &mut Directory::default())
                        .unwrap();
                    prop_assert!(same(&back.member, m));
                    prop_assert_eq!(back.seq, 7);
                    prop_assert_eq!(back.relay, reply);
                    prop_assert_eq!(&back.forward, &forward);
                    prop_assert_eq!(back.from.as_ref().map(NodeId::tags), from.as_ref().map(NodeId::tags));

                    let mut codec = ValidatingCodec::new(limits);
                    let mut buf = Vec::new();
                    codec.encode_member(m, &mut buf).unwrap();
                    let mut slice = &buf[..];
                    let back = codec.decode_member(&mut slice).unwrap();
                    prop_assert!(same(&back, m));
                    prop_assert!(slice.is_empty());
                }
            }
        }
    }
}
