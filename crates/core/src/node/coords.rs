//! Network coordinates in the node: the round trip of each direct probe we send (timed with
//! the driver's clock, given to [`Node::handle_packet`] and [`Node::handle_timer`]), our
//! Vivaldi coordinate, which each of those samples moves, and the latest coordinate of every
//! member.
//!
//! Our acks carry our coordinate ([`Kind::FocaCoord`]: the envelope, [`WIRE_LEN`] bytes,
//! then the foca packet), as Serf's do, but only when it is news to the prober (not sent to
//! it in the last 30 s, or moved since by more than 5 % of the round trip between us): on
//! an idle cluster that saves most of what coordinates cost. Pings carry none. A prober takes
//! the coordinate in an ack as that member's latest, and the round trip, with the latest
//! coordinate it holds of the member, as a sample. Joins and push-pulls pass coordinates on
//! too ([`Kind::Coordinates`]): a full state sends every coordinate we hold, a digest ours,
//! so a joiner knows the coordinates of members it has not probed yet. A coordinate from a
//! peer is checked before anything keeps it; a bad one is dropped and counted
//! ([`Stats::coordinates_refused`]), never passed on.

use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::time::Duration;

use foca::Message;
use hashbrown::HashMap;
use rand::rngs::SmallRng;

use super::*;
use crate::coordinate::{
    Coordinate, CoordinateError, LatencyFilter, RTT_MAX, RttHistogram, Vivaldi, WIRE_LEN,
};
use crate::identity::{KeyHasher, NameKey};

/// An ack to a member carries our coordinate when we have not sent it one for this long ...
const ACK_COORDINATE_REFRESH: Duration = Duration::from_secs(30);
/// ... or when our coordinate moved enough since: the estimated round trip to that member
/// changed by more than this fraction of it ...
const ACK_COORDINATE_MOVE: f64 = 0.05;
/// ... and by more than this many seconds (below it, jitter on a LAN would make every ack
/// carry it).
const ACK_COORDINATE_MOVE_MIN: f64 = 0.000_25;

/// The coordinate we last sent a member in an ack.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sent {
    version: u64,
    coord: Coordinate,
    at: Duration,
}

/// Bytes of one entry of a [`Kind::Coordinates`] packet: name key, coordinate.
const ENTRY_LEN: usize = 8 + WIRE_LEN;

type ByKey<V> = HashMap<NameKey, V, BuildHasherDefault<KeyHasher>>;

/// Our coordinate, the members' and the probe being timed.
pub(super) struct Coords {
    pub(super) vivaldi: Vivaldi,
    /// Vivaldi's own randomness (a direction when two coordinates coincide), apart from the
    /// node's so coordinates change no other decision.
    pub(super) rng: SmallRng,
    /// The latest coordinate of each member, by name key (looked up, never iterated for a
    /// decision).
    pub(super) of: ByKey<Coordinate>,
    /// Recent round trips of each member probed.
    pub(super) filters: ByKey<LatencyFilter>,
    /// What we last sent each member in an ack (so acks carry it only when it is news).
    pub(super) sent: ByKey<Sent>,
    /// Our direct probe in flight: its target, number, and when it left.
    pub(super) probe: Option<(NameKey, foca::ProbeNumber, Duration)>,
    /// Round trips of our direct probes.
    pub(super) rtt: RttHistogram,
    /// Coordinates from peers refused.
    pub(super) refused: u64,
}

impl Coords {
    pub(super) fn new(rng: SmallRng) -> Self {
        Self {
            vivaldi: Vivaldi::default(),
            rng,
            of: ByKey::default(),
            filters: ByKey::default(),
            sent: ByKey::default(),
            probe: None,
            rtt: RttHistogram::default(),
            refused: 0,
        }
    }
}

impl Node {
    /// Our network coordinate now.
    pub fn coordinate(&self) -> Coordinate {
        self.coords.vivaldi.coordinate()
    }

    /// The latest coordinate of `name` (ours for our own name), if we have one.
    pub fn coordinate_of(&self, name: &str) -> Option<Coordinate> {
        if name == self.identity().name() {
            return Some(self.coordinate());
        }
        self.coords.of.get(&NameKey::of(name)).copied()
    }

    /// Estimated round trip from this node to `name`, if we have its coordinate.
    pub fn rtt_to(&self, name: &str) -> Option<Duration> {
        self.coordinate_of(name)
            .map(|c| self.coordinate().distance_to(&c))
    }

    /// Whether an outgoing foca packet is an ack (it then carries our coordinate) or a
    /// direct probe (timed).
    pub(super) fn foca_kind_out(&mut self, to: &NodeId, data: &[u8]) -> Kind {
        use foca::Codec;
        let mut codec = ValidatingCodec::peeking(self.config.limits, self.dir.clone());
        let message = match codec.decode_header(data) {
            Ok(h) => h.message,
            Err(_) => {
                let _ = self.directory().take_unresolved();
                return Kind::Foca;
            }
        };
        match message {
            Message::Ping(n) => {
                self.coords.probe = Some((to.key(), n, self.now));
                Kind::Foca
            }
            Message::Ack(_) if self.coordinate_is_news(to) => Kind::FocaCoord,
            _ => Kind::Foca,
        }
    }

    /// Whether an ack to `to` should carry our coordinate: the first time, after
    /// [`ACK_COORDINATE_REFRESH`], or when it moved by more than [`ACK_COORDINATE_MOVE`] of
    /// the estimated round trip to `to`. Records it as sent when so.
    fn coordinate_is_news(&mut self, to: &NodeId) -> bool {
        let mine = self.coordinate();
        let key = to.key();
        let fresh = match (self.coords.sent.get(&key), self.coords.of.get(&key)) {
            (Some(s), Some(theirs)) if s.version == to.version() => {
                let before = s.coord.distance_secs(theirs);
                let now = mine.distance_secs(theirs);
                self.now.saturating_sub(s.at) < ACK_COORDINATE_REFRESH
                    && (now - before).abs()
                        <= (ACK_COORDINATE_MOVE * before).max(ACK_COORDINATE_MOVE_MIN)
            }
            _ => false,
        };
        if !fresh {
            self.coords.sent.insert(
                key,
                Sent {
                    version: to.version(),
                    coord: mine,
                    at: self.now,
                },
            );
        }
        !fresh
    }

    /// The coordinate part of a [`Kind::FocaCoord`] packet, and the foca packet after it.
    pub(super) fn split_foca_coord(
        payload: &[u8],
    ) -> Result<(Result<Coordinate, CoordinateError>, &[u8]), DropReason> {
        if payload.len() < WIRE_LEN {
            return Err(DropReason::Malformed(
                crate::error::DecodeError::Coordinates,
            ));
        }
        let (coord, rest) = payload.split_at(WIRE_LEN);
        Ok((Coordinate::decode(coord), rest))
    }

    /// A foca packet for us from `src`: an ack of our direct probe gives a round trip, and a
    /// coordinate with it is `src`'s latest; the round trip and `src`'s latest coordinate
    /// (this one, or the one we hold when the ack came without) make a Vivaldi sample.
    pub(super) fn on_probe_answer(
        &mut self,
        src: &NodeId,
        message: &Message<NodeId>,
        coord: Option<Result<Coordinate, CoordinateError>>,
    ) {
        let key = src.key();
        let mut rtt = None;
        if let (Message::Ack(n), Some((target, number, sent))) = (message, self.coords.probe)
            && target == key
            && number == *n
        {
            self.coords.probe = None;
            let sample = self.now.saturating_sub(sent);
            if sample <= RTT_MAX {
                self.coords.rtt.observe(sample);
                rtt = Some(sample);
            }
        }
        let coord = match coord {
            None => match self.coords.of.get(&key) {
                Some(c) => *c,
                None => return,
            },
            Some(Err(_)) => {
                self.coords.refused += 1;
                return;
            }
            Some(Ok(c)) => {
                self.coords.of.insert(key, c);
                c
            }
        };
        if let Some(rtt) = rtt {
            let filtered = self.coords.filters.entry(key).or_default().push(rtt);
            let Coords { vivaldi, rng, .. } = &mut self.coords;
            vivaldi.update(&coord, filtered, rng);
        }
    }

    /// Sends coordinates to `to`: ours (once a sample has moved it), then, after a full state
    /// (`all`), every one we hold; after a digest ours only (on an idle cluster more would
    /// cost more than it brings: joins pass every one on, and acks keep them fresh). Nothing
    /// when there is none.
    pub(super) fn send_coordinates(&mut self, to: SocketAddr, all: bool) {
        let own = self.coords.vivaldi.updates() > 0;
        let mut entries = Vec::new();
        if own {
            entries.push((self.identity().key(), self.coordinate()));
        }
        if all {
            // In foca's member order (not the map's): the packets are the same every run.
            for m in self.membership.foca.iter_membership_state() {
                let k = m.id().key();
                if let Some(c) = self.coords.of.get(&k) {
                    entries.push((k, *c));
                }
            }
        }
        let per_packet = (self.config.packet_size_max.get() - wire::ENVELOPE_LEN - 6) / ENTRY_LEN;
        for (i, chunk) in entries.chunks(per_packet.max(1)).enumerate() {
            let mut out = Vec::with_capacity(wire::ENVELOPE_LEN + 6 + chunk.len() * ENTRY_LEN);
            wire::put_envelope(&mut out, Kind::Coordinates);
            out.push(u8::from(own && i == 0));
            out.extend(postcard::to_stdvec(&chunk.len()).expect("varint of a usize"));
            for (key, c) in chunk {
                out.extend_from_slice(&key.0.to_le_bytes());
                out.extend_from_slice(&c.encode());
            }
            self.transmit(to, out);
        }
    }

    /// Coordinates from a member: the first entry, when the flag before the count says so and
    /// it names the member at the datagram's source, is the sender's own and replaces what
    /// we hold; the others fill only what we lack (our own samples are fresher). Entries about
    /// members we do not know, or about us, are ignored; bad ones are refused and counted.
    pub(super) fn on_coordinates(
        &mut self,
        from: SocketAddr,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        let malformed = || DropReason::Malformed(crate::error::DecodeError::Coordinates);
        let (&own, payload) = payload.split_first().ok_or_else(malformed)?;
        let (count, rest): (usize, &[u8]) =
            postcard::take_from_bytes(payload).map_err(|_| malformed())?;
        if rest.len() != count.saturating_mul(ENTRY_LEN) {
            return Err(malformed());
        }
        if self.left {
            return Ok(());
        }
        let me = self.identity().key();
        for (i, entry) in rest.chunks_exact(ENTRY_LEN).enumerate() {
            let (key, coord) = entry.split_at(8);
            let key = NameKey(u64::from_le_bytes(key.try_into().expect("8 bytes")));
            let coord = match Coordinate::decode(coord) {
                Ok(c) => c,
                Err(_) => {
                    self.coords.refused += 1;
                    continue;
                }
            };
            let Some(member) = self.membership.members.get(key) else {
                continue;
            };
            if key == me {
                continue;
            }
            let senders_own = i == 0 && own == 1 && member.id.addr() == from;
            if senders_own || !self.coords.of.contains_key(&key) {
                self.coords.of.insert(key, coord);
            }
        }
        Ok(())
    }

    /// Forgets the coordinates of members no longer listed.
    pub(super) fn prune_coordinates(&mut self) {
        let members = &self.membership.members;
        self.coords.of.retain(|k, _| members.contains(*k));
        self.coords.filters.retain(|k, _| members.contains(*k));
        self.coords.sent.retain(|k, _| members.contains(*k));
    }
}
