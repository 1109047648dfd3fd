//! The wire format: a 4-byte envelope (magic, version, kind) around either a foca packet or one
//! of our own messages (full-state sync and acknowledged notices), and the foca codec, which
//! validates every identity it decodes.
//!
//! ```text
//! 0      2         3      4
//! +------+---------+------+---------------------------+
//! | "GA" | version | kind | payload (postcard / foca) |
//! +------+---------+------+---------------------------+
//! ```

use bytes::{Buf, BufMut};
use foca::{Codec, Header, Member, Message, PostcardCodec};
use serde::{Deserialize, Serialize};

use crate::error::DropReason;
use crate::identity::{Limits, NodeId};

/// First two bytes of every packet.
pub const MAGIC: [u8; 2] = *b"GA";
/// The wire version this build speaks.
pub const VERSION: u8 = 1;
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
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Foca,
            1 => Self::Sync,
            2 => Self::Notice,
            3 => Self::NoticeAck,
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
    /// Members as the sender knows them, its own identity first.
    pub members: Vec<Member<NodeId>>,
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
    /// Whether receivers should pass it on by gossip: false when the sender told every
    /// member it knows directly.
    pub relay: bool,
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
    let kind = Kind::from_u8(data[3])
        .ok_or_else(|| DropReason::Malformed(format!("unknown kind {}", data[3])))?;
    Ok((kind, &data[ENVELOPE_LEN..]))
}

/// Encodes `value` after an envelope of `kind`.
pub fn encode<T: Serialize>(kind: Kind, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    put_envelope(&mut out, kind);
    // Serialising our own in-memory structures into a Vec cannot fail.
    postcard::to_extend(value, out).expect("postcard encoding into a Vec is infallible")
}

/// Decodes a whole payload, refusing trailing bytes, and checks every identity in it.
pub fn decode_sync(payload: &[u8], limits: &Limits) -> Result<Sync, DropReason> {
    let sync: Sync = decode_exact(payload)?;
    for m in &sync.members {
        m.id().validate(limits).map_err(malformed)?;
    }
    Ok(sync)
}

/// Decodes a [`Notice`] and checks its identity.
pub fn decode_notice(payload: &[u8], limits: &Limits) -> Result<Notice, DropReason> {
    let notice: Notice = decode_exact(payload)?;
    notice.member.id().validate(limits).map_err(malformed)?;
    if let Some(f) = &notice.from {
        f.validate(limits).map_err(malformed)?;
    }
    Ok(notice)
}

/// Decodes a [`NoticeAck`].
pub fn decode_notice_ack(payload: &[u8]) -> Result<NoticeAck, DropReason> {
    decode_exact(payload)
}

fn decode_exact<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, DropReason> {
    let (value, rest) = postcard::take_from_bytes(payload).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(DropReason::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

fn malformed(e: impl std::fmt::Display) -> DropReason {
    DropReason::Malformed(e.to_string())
}

/// foca's codec: postcard, plus validation of every identity decoded from a peer.
#[derive(Debug, Clone)]
pub struct ValidatingCodec {
    limits: Limits,
}

impl ValidatingCodec {
    /// A codec enforcing `limits` on decoded identities.
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }
}

/// A decoding or encoding failure of [`ValidatingCodec`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

impl Codec<NodeId> for ValidatingCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        PostcardCodec
            .encode_header(header, buf)
            .map_err(|e| CodecError(e.to_string()))
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<NodeId>, CodecError> {
        let header: Header<NodeId> = PostcardCodec
            .decode_header(buf)
            .map_err(|e| CodecError(e.to_string()))?;
        let check = |id: &NodeId| {
            id.validate(&self.limits)
                .map_err(|e| CodecError(e.to_string()))
        };
        check(&header.src)?;
        check(&header.dst)?;
        match &header.message {
            Message::PingReq { target: id, .. }
            | Message::IndirectPing { origin: id, .. }
            | Message::IndirectAck { target: id, .. }
            | Message::ForwardedAck { origin: id, .. } => check(id)?,
            _ => {}
        }
        Ok(header)
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        PostcardCodec
            .encode_member(member, buf)
            .map_err(|e| CodecError(e.to_string()))
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<NodeId>, CodecError> {
        let member: Member<NodeId> = PostcardCodec
            .decode_member(buf)
            .map_err(|e| CodecError(e.to_string()))?;
        member
            .id()
            .validate(&self.limits)
            .map_err(|e| CodecError(e.to_string()))?;
        Ok(member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Tags;

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
            open_envelope(b"GA\x01\x09", 100),
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
            members: vec![Member::alive(id)],
        };
        let bytes = encode(Kind::Sync, &msg);
        let (kind, payload) = open_envelope(&bytes, 1400).unwrap();
        assert_eq!(kind, Kind::Sync);
        let back = decode_sync(payload, &limits).unwrap();
        assert_eq!(back.members, msg.members);
        // Trailing garbage is refused.
        let mut longer = payload.to_vec();
        longer.push(0);
        assert!(decode_sync(&longer, &limits).is_err());
        // A name that breaks the rules is refused even though it decodes.
        let tight = Limits {
            name_len_max: 0,
            ..limits
        };
        assert!(decode_sync(payload, &tight).is_err());
    }
}
