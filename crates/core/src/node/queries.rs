//! Queries this node asks and answers (Serf's `query`): the query clock, the queries in
//! flight with their acks and answers, and the queries received lately.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::error::{CommandError, DropReason};
use crate::identity::{NameKey, NodeId};
use crate::wire::{self, Kind, NoticeAck};

/// The queries of one node.
#[derive(Default)]
pub(super) struct Queries {
    /// Query Lamport clock.
    pub(super) clock: crate::clock::LamportClock,
    /// Queries we asked, until done, by Lamport time.
    pub(super) pending: BTreeMap<u64, crate::query::Pending>,
    /// Sequence numbers of our query packets, to their query.
    pub(super) seqs: BTreeMap<u64, u64>,
    /// Queries received lately.
    pub(super) seen: crate::query::Seen,
}

impl Node {
    /// Asks `targets` (members, this node included if listed) the query `name` with
    /// `payload`; reports acks, answers and the end through [`Output::Query`], the end at the
    /// latest after `timeout`. Returns the query's id (its Lamport time).
    pub fn query(
        &mut self,
        name: &str,
        payload: &[u8],
        targets: &[NodeId],
        timeout: Duration,
    ) -> Result<u64, CommandError> {
        use crate::query::{IncomingQuery, Pending, QueryOutput};
        if self.left {
            return Err(CommandError::Left);
        }
        crate::user::validate_event(name, payload, &self.config.limits)?;
        let ltime = self.queries.clock.tick();
        let me = self.identity().clone();
        let mut pending = Pending::default();
        for t in targets {
            pending.targets.insert(t.addr(), t.name().to_string());
        }
        let remote: Vec<SocketAddr> = pending
            .targets
            .keys()
            .copied()
            .filter(|a| *a != me.addr())
            .collect();
        let local = pending.targets.contains_key(&me.addr());
        self.queries.pending.insert(ltime, pending);
        let msg = |seq| {
            wire::encode(
                Kind::Query,
                &wire::QueryMsg {
                    seq,
                    ltime,
                    origin_name: me.name().to_string(),
                    origin_version: me.version(),
                    name: name.to_string(),
                    payload: payload.to_vec(),
                },
            )
        };
        if let Some(seq) = self.post(remote, msg) {
            self.queries.seqs.insert(seq, ltime);
        }
        if local {
            if let Some(p) = self.queries.pending.get_mut(&ltime) {
                p.acked.insert(me.addr());
            }
            self.queries.seen.admit(me.key(), me.version(), ltime);
            self.out.queue.push_back(Output::Query(QueryOutput::Ack {
                id: ltime,
                from: me.name().to_string(),
            }));
            self.stats.queries += 1;
            self.out
                .queue
                .push_back(Output::Query(QueryOutput::Incoming(IncomingQuery {
                    origin: me.addr(),
                    origin_name: me.name().to_string(),
                    ltime,
                    name: name.to_string(),
                    payload: payload.to_vec(),
                })));
        }
        if targets.is_empty() {
            self.finish_query(ltime);
        } else {
            self.schedule(timeout, TimerEvent::QueryDeadline(ltime));
        }
        Ok(ltime)
    }

    /// Answers the query `ltime` from `origin` (see [`crate::IncomingQuery`]) with `payload`,
    /// at most [`crate::Limits::event_bytes_max`] bytes.
    pub fn respond(
        &mut self,
        origin: SocketAddr,
        ltime: u64,
        payload: &[u8],
    ) -> Result<(), CommandError> {
        let max = self.config.limits.event_bytes_max;
        if payload.len() > max {
            return Err(CommandError::Invalid(
                crate::error::InvalidInput::EventTooBig {
                    len: payload.len(),
                    max,
                },
            ));
        }
        if origin == self.identity().addr() {
            let from = self.identity().addr();
            self.on_query_response(from, ltime, payload.to_vec());
            return Ok(());
        }
        self.post(vec![origin], |seq| {
            wire::encode(
                Kind::QueryResponse,
                &wire::QueryResponseMsg {
                    seq,
                    ltime,
                    payload: payload.to_vec(),
                },
            )
        });
        Ok(())
    }

    pub(super) fn on_query_response(&mut self, from: SocketAddr, ltime: u64, payload: Vec<u8>) {
        let Some(p) = self.queries.pending.get_mut(&ltime) else {
            return; // late, or not ours
        };
        let Some(name) = p.targets.get(&from).cloned() else {
            return;
        };
        if !p.answered.insert(from) {
            return;
        }
        // An answer proves receipt: report the ack first if it was lost.
        if p.acked.insert(from) {
            self.out
                .queue
                .push_back(Output::Query(crate::query::QueryOutput::Ack {
                    id: ltime,
                    from: name.clone(),
                }));
        }
        let Some(p) = self.queries.pending.get(&ltime) else {
            return;
        };
        let all = p.answered.len() == p.targets.len();
        self.out
            .queue
            .push_back(Output::Query(crate::query::QueryOutput::Response {
                id: ltime,
                from: name,
                payload,
            }));
        if all {
            self.finish_query(ltime);
        }
    }

    pub(super) fn finish_query(&mut self, ltime: u64) {
        if self.queries.pending.remove(&ltime).is_some() {
            self.queries.seqs.retain(|_, q| *q != ltime);
            self.out
                .queue
                .push_back(Output::Query(crate::query::QueryOutput::Done { id: ltime }));
        }
    }

    /// A query for this node.
    pub(super) fn on_query(&mut self, from: SocketAddr, payload: &[u8]) -> Result<(), DropReason> {
        let msg = wire::decode_query(payload, &self.config.limits)?;
        self.vouch(NameKey::of(&msg.origin_name));
        let ack = wire::encode(Kind::NoticeAck, &NoticeAck { seq: msg.seq });
        self.transmit(from, ack);
        self.queries.clock.witness(msg.ltime);
        let origin = crate::identity::NameKey::of(&msg.origin_name);
        if !self.left
            && self
                .queries
                .seen
                .admit(origin, msg.origin_version, msg.ltime)
        {
            self.stats.queries += 1;
            self.out
                .queue
                .push_back(Output::Query(crate::query::QueryOutput::Incoming(
                    crate::query::IncomingQuery {
                        origin: from,
                        origin_name: msg.origin_name,
                        ltime: msg.ltime,
                        name: msg.name,
                        payload: msg.payload,
                    },
                )));
        }
        Ok(())
    }

    /// An answer to one of our queries.
    pub(super) fn on_query_answer(
        &mut self,
        from: SocketAddr,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        let msg = wire::decode_query_response(payload, &self.config.limits)?;
        let ack = wire::encode(Kind::NoticeAck, &NoticeAck { seq: msg.seq });
        self.transmit(from, ack);
        self.on_query_response(from, msg.ltime, msg.payload);
        Ok(())
    }
}
