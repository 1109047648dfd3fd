//! Queries (Serf's `serf query`): a question sent to chosen members, whose `query` handlers
//! answer. This module holds what the core reports about them and the bookkeeping of the
//! queries this node asked; [`crate::Node::query`] and [`crate::Node::respond`] drive them.
//!
//! The asking node sends the query straight to each target (acknowledged and retransmitted,
//! like a notice): the acknowledgement is Serf's *ack* ("received"), reported as
//! [`QueryOutput::Ack`]. A target reports [`QueryOutput::Incoming`]; its handler's answer
//! goes back with [`crate::Node::respond`] and arrives as [`QueryOutput::Response`], once per
//! member. [`QueryOutput::Done`] ends the query at its deadline, or as soon as every target
//! has answered.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::identity::NameKey;

/// A query as a target's handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingQuery {
    /// Where the answer goes (the asking node's gossip address).
    pub origin: SocketAddr,
    /// The asking node's name.
    pub origin_name: String,
    /// The query's Lamport time (`SERF_QUERY_LTIME`), unique per asking node.
    pub ltime: u64,
    /// Its name (`SERF_QUERY_NAME`).
    pub name: String,
    /// Its payload (the handler's stdin, followed by a newline).
    pub payload: Vec<u8>,
}

/// What the core reports about queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryOutput {
    /// A query for this node's handlers.
    Incoming(IncomingQuery),
    /// A target received our query `id`.
    Ack {
        /// The query (its Lamport time).
        id: u64,
        /// The member.
        from: String,
    },
    /// A target answered our query `id`.
    Response {
        /// The query.
        id: u64,
        /// The member.
        from: String,
        /// Its handler's output.
        payload: Vec<u8>,
    },
    /// Our query `id` is over: deadline passed or every target answered.
    Done {
        /// The query.
        id: u64,
    },
}

/// A query this node asked, until it is done.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Targets by address, with their names.
    pub targets: BTreeMap<SocketAddr, String>,
    pub acked: BTreeSet<SocketAddr>,
    pub answered: BTreeSet<SocketAddr>,
}

/// Queries received lately, by the asking member's identity (name key and version) and the
/// query's Lamport time: each is handled once. Keyed by identity, not address: a member
/// restarted at the same address asks anew from time 0, and its queries are new.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    order: std::collections::VecDeque<(NameKey, u64, u64)>,
    set: BTreeSet<(NameKey, u64, u64)>,
}

/// How many received queries are remembered for deduplication.
const SEEN_MAX: usize = 1024;

impl Seen {
    /// True when the query `ltime` of the member `origin` at `version` is new (and
    /// remembers it).
    pub fn admit(&mut self, origin: NameKey, version: u64, ltime: u64) -> bool {
        let key = (origin, version, ltime);
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > SEEN_MAX
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}
