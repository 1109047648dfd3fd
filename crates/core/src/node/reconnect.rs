//! Partition healing: failed members that were reaped are still announced to now and then,
//! so the halves of a partition longer than the reap timeout find each other again (Serf
//! stops trying at the reap: serf#605, serf#333).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;

use super::*;
use crate::identity::NodeId;

/// The reaped failed members still tried.
#[derive(Default)]
pub(super) struct Reconnect {
    /// Failed members that were reaped, by name, with the reconnect tick they were lost at.
    pub(super) lost: BTreeMap<Arc<str>, (NodeId, u64)>,
    /// Reconnect ticks so far; a tick is scheduled while `lost` is not empty.
    pub(super) ticks: u64,
    pub(super) scheduled: bool,
}

/// How many reaped failed members [`Node`] keeps trying to reconnect to.
pub(super) const LOST_MAX: usize = 1024;

impl Node {
    /// One reconnect tick: forget lost members that are back (or lost for longer than the
    /// reap timeout again), announce ourselves to one of the rest.
    pub(super) fn reconnect_tick(&mut self) {
        self.reconnect.scheduled = false;
        self.reconnect.ticks += 1;
        if self.left {
            return;
        }
        let interval = self.config.reconnect_interval.max(Duration::from_millis(1));
        let give_up = (self.config.reap_after.as_secs_f64() / interval.as_secs_f64()).ceil() as u64;
        let now = self.reconnect.ticks;
        let members = &self.membership.members;
        self.reconnect.lost.retain(|_, (id, since)| {
            !members.contains(id.key()) && now.saturating_sub(*since) <= give_up
        });
        if self.reconnect.lost.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.reconnect.lost.len());
        if let Some((id, _)) = self.reconnect.lost.values().nth(i).cloned() {
            self.stats.reconnects += 1;
            // Addressing it shows it we hold its identity, so it will answer with references
            // to it: hold it again.
            self.directory().learn(id.clone());
            if let Err(e) = self.membership.foca.announce(id, &mut self.membership.rt) {
                tracing::debug!(error = %e, "reconnect announce refused");
            }
            self.drain_foca();
        }
        self.reconnect.scheduled = true;
        let after = self.jitter(interval);
        self.schedule(after, TimerEvent::Reconnect);
    }

    /// Names of failed members that were reaped and that this node still tries to reach.
    pub fn lost_members(&self) -> Vec<String> {
        self.reconnect.lost.keys().map(|n| n.to_string()).collect()
    }
}
