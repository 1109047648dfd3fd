//! Member event coalescing, as Serf's `memberEventCoalescer`: within a window only the latest
//! event per member counts, an event equal to the last one delivered for that member is
//! dropped (updates excepted), and the flush yields one batch per event kind. Unlike Serf,
//! the output order is deterministic: kinds and members in order of first appearance.
//!
//! Timing (quiet period, upper bound) belongs to the caller; this type only merges.

use std::collections::HashMap;

use gossip_core::{EventKind, MemberEvent, MemberInfo};
use indexmap::IndexMap;

use crate::filter::Event;

/// Merges member events between flushes.
#[derive(Debug, Default)]
pub struct Coalescer {
    /// Latest event per member name, in first-seen order.
    pending: IndexMap<String, (EventKind, MemberInfo)>,
    /// Last kind delivered per member (lookup only; never iterated).
    last: HashMap<String, EventKind>,
}

impl Coalescer {
    /// A coalescer with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one event.
    pub fn add(&mut self, e: MemberEvent) {
        let name = e.member.name().to_string();
        // Keep the member's first position, take its latest event.
        if let Some(slot) = self.pending.get_mut(&name) {
            *slot = (e.kind, e.member);
        } else {
            self.pending.insert(name, (e.kind, e.member));
        }
    }

    /// True when something waits for a flush.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes what is pending as one batch per kind.
    pub fn flush(&mut self) -> Vec<Event> {
        let mut batches: IndexMap<EventKind, Vec<MemberInfo>> = IndexMap::new();
        for (name, (kind, member)) in self.pending.drain(..) {
            let repeat = self.last.get(&name) == Some(&kind) && kind != EventKind::Update;
            if kind == EventKind::Reap {
                self.last.remove(&name);
            } else {
                self.last.insert(name, kind);
            }
            if !repeat {
                batches.entry(kind).or_default().push(member);
            }
        }
        batches
            .into_iter()
            .map(|(kind, members)| Event::Members { kind, members })
            .collect()
    }
}

/// Keeps, of user events that may be coalesced (Serf's `userEventCoalescer`), only those of
/// the newest Lamport time for each name, where the first of that name was; other events
/// keep their place.
pub fn coalesce_users(events: Vec<Event>) -> Vec<Event> {
    let mut newest: std::collections::HashMap<String, u64> = HashMap::new();
    for e in &events {
        if let Event::User {
            name,
            ltime,
            coalesce: true,
            ..
        } = e
        {
            let t = newest.entry(name.clone()).or_insert(*ltime);
            *t = (*t).max(*ltime);
        }
    }
    if newest.is_empty() {
        return events;
    }
    events
        .into_iter()
        .filter(|e| match e {
            Event::User {
                name,
                ltime,
                coalesce: true,
                ..
            } => newest.get(name) == Some(ltime),
            _ => true,
        })
        .collect()
}

/// Merges already-flushed batches that queued up behind a busy handler: the latest event per
/// member wins, batches per kind in order of first appearance; user events that may be
/// coalesced keep only the newest of each name ([`coalesce_users`]).
pub fn merge_backlog(batches: Vec<Event>) -> Vec<Event> {
    let batches = coalesce_users(batches);
    let mut out: Vec<Event> = Vec::new();
    let mut members: IndexMap<String, (EventKind, MemberInfo)> = IndexMap::new();
    let flush_members = |members: &mut IndexMap<String, (EventKind, MemberInfo)>,
                         out: &mut Vec<Event>| {
        let mut by_kind: IndexMap<EventKind, Vec<MemberInfo>> = IndexMap::new();
        for (_, (k, m)) in members.drain(..) {
            by_kind.entry(k).or_default().push(m);
        }
        out.extend(
            by_kind
                .into_iter()
                .map(|(kind, members)| Event::Members { kind, members }),
        );
    };
    for b in batches {
        match b {
            Event::Members { kind, members: ms } => {
                for m in ms {
                    let name = m.name().to_string();
                    if let Some(slot) = members.get_mut(&name) {
                        *slot = (kind, m);
                    } else {
                        members.insert(name, (kind, m));
                    }
                }
            }
            other => {
                // Keep user events where they were relative to member events.
                flush_members(&mut members, &mut out);
                out.push(other);
            }
        }
    }
    flush_members(&mut members, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::Status;

    fn ev(kind: EventKind, name: &str) -> MemberEvent {
        MemberEvent {
            kind,
            member: gossip_testkit::members::member(name, "10.0.0.1", &[], Status::Alive),
        }
    }

    fn shape(batches: &[Event]) -> Vec<(EventKind, Vec<String>)> {
        batches
            .iter()
            .map(|b| match b {
                Event::Members { kind, members } => (
                    *kind,
                    members.iter().map(|m| m.name().to_string()).collect(),
                ),
                Event::User { .. } | Event::Query { .. } => panic!("no user events here"),
            })
            .collect()
    }

    #[test]
    fn a_burst_of_fifty_joins_is_one_batch() {
        let mut c = Coalescer::new();
        for i in 0..50 {
            c.add(ev(EventKind::Join, &format!("n{i}")));
        }
        let b = c.flush();
        assert_eq!(b.len(), 1);
        assert_eq!(shape(&b)[0].1.len(), 50);
        assert!(c.is_empty());
    }

    #[test]
    fn latest_per_member_wins_and_repeats_are_dropped() {
        let mut c = Coalescer::new();
        c.add(ev(EventKind::Join, "a"));
        c.add(ev(EventKind::Join, "b"));
        c.add(ev(EventKind::Leave, "a"));
        assert_eq!(
            shape(&c.flush()),
            [
                (EventKind::Leave, vec!["a".to_string()]),
                (EventKind::Join, vec!["b".to_string()])
            ]
        );
        // b joins "again" (same kind as delivered): dropped. Updates always pass.
        c.add(ev(EventKind::Join, "b"));
        c.add(ev(EventKind::Update, "b"));
        assert_eq!(
            shape(&c.flush()),
            [(EventKind::Update, vec!["b".to_string()])]
        );
        c.add(ev(EventKind::Update, "b"));
        assert_eq!(shape(&c.flush()).len(), 1);
    }

    #[test]
    fn backlog_merges_to_latest_state() {
        let mut c = Coalescer::new();
        c.add(ev(EventKind::Join, "a"));
        let first = c.flush();
        c.add(ev(EventKind::Failed, "a"));
        c.add(ev(EventKind::Join, "b"));
        let second = c.flush();
        let merged = merge_backlog(first.into_iter().chain(second).collect());
        assert_eq!(
            shape(&merged),
            [
                (EventKind::Failed, vec!["a".to_string()]),
                (EventKind::Join, vec!["b".to_string()])
            ]
        );
    }
}
