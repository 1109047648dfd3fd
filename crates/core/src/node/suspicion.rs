//! Suspicion, Lifeguard-style: foca's suspicion timers (dropped when stale), the suspect told
//! directly, the local health multiplier that stretches our timeouts when our own probes
//! keep failing, and the early verdict when a suspect answers nothing at all.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use foca::{Member, State};

use super::*;
use crate::identity::{NameKey, NodeId};

/// Lifeguard's state.
#[derive(Default)]
pub(super) struct SuspicionState {
    /// Lifeguard's local health multiplier: recent suspicions this node raised.
    pub(super) health: u32,
    /// Suspects (by address) awaiting an early verdict, and whether they sent us anything
    /// since we learnt of the suspicion.
    pub(super) unconfirmed: BTreeMap<SocketAddr, bool>,
    /// Members this node suspected itself (its own probe failed): when it declares one of
    /// them failed, it tells every member directly, as for a leave.
    pub(super) raised: BTreeSet<NameKey>,
    /// True while foca handles one of its timers (a suspicion scheduled then is ours).
    pub(super) in_foca_timer: bool,
    /// Members reported suspect ([`Output::Status`]) and not yet alive again or down.
    pub(super) suspects: BTreeSet<NameKey>,
}

impl Node {
    /// True for a suspicion timer whose suspicion is over (refuted, or the member replaced
    /// or gone). foca 2.0 checks that itself before declaring the member down, but still
    /// sends it its courtesy "you are down" message (`TurnUndead`), which makes a live member
    /// that refuted in time renew its identity as if it had been declared down: every
    /// member sees it fail over to a new version. Such timers are dropped here.
    pub(super) fn stale_suspicion(&self, t: &foca::Timer<NodeId>) -> bool {
        let foca::Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = t
        else {
            return false;
        };
        // foca holds one member per address: a lookup in its index, not a scan (this runs
        // for every suspicion every node hears of).
        !self
            .membership
            .foca
            .membership_state_of(&member_id.key())
            .is_some_and(|m| {
                m.id() == member_id
                    && m.incarnation() == *incarnation
                    && m.state() == State::Suspect
            })
    }

    /// Lifeguard: `member` is suspect (our probe failed, or we learnt it). Tell it directly
    /// (so it refutes at once, to us), and stretch our timeouts by our local health: the more
    /// of our own probes fail lately, the less our verdicts are worth. Returns the delay
    /// before the failure verdict, and the delay of the early verdict: if the suspect sends
    /// us nothing at all while our notice to it is retransmitted for `suspicion_confirm`, we
    /// have confirmed the suspicion ourselves and need not wait for the full timeout.
    pub(super) fn on_suspicion(
        &mut self,
        member: NodeId,
        incarnation: foca::Incarnation,
        after: Duration,
    ) -> (Duration, Option<Duration>) {
        let stretch = 1 + self.suspicion.health;
        let stretched = after.saturating_mul(stretch);
        if self.suspicion.health == 0 {
            self.schedule(self.membership.config.probe_period, TimerEvent::HealthDecay);
        }
        self.suspicion.health = (self.suspicion.health + 1).min(self.config.health_max);
        let to = member.addr();
        let early = self
            .config
            .suspicion_confirm
            .map(|c| c.saturating_mul(stretch))
            .filter(|c| *c < stretched);
        let seq = self.post_notice(
            vec![to],
            Member::new(member, incarnation, State::Suspect),
            true,
        );
        if let Some(early) = early {
            self.suspicion.unconfirmed.insert(to, false);
            // Keep asking for the whole confirmation window.
            let retry = self.config.notice_retry.as_millis().max(1);
            let attempts = (early.as_millis() / retry + 1).min(u128::from(u32::MAX)) as u32;
            if let Some(p) = seq.and_then(|s| self.notices.pending.get_mut(&s)) {
                p.attempts = p.attempts.max(attempts);
            }
        }
        (stretched, early)
    }

    /// One of foca's timers (a suspicion's, unless stale; a reap).
    pub(super) fn on_foca_timer(&mut self, t: foca::Timer<NodeId>) {
        let reaped = match &t {
            foca::Timer::RemoveDown(id) => Some(id.clone()),
            _ => None,
        };
        if !self.left && !self.stale_suspicion(&t) {
            // Errors here are foca noticing a stale or out-of-order timer: nothing
            // to do but carry on.
            self.suspicion.in_foca_timer = true;
            if let Err(e) = self
                .membership
                .foca
                .handle_timer(t, &mut self.membership.rt)
            {
                tracing::debug!(error = %e, "timer refused");
            }
            self.drain_foca();
            self.suspicion.in_foca_timer = false;
        }
        if let Some(id) = reaped {
            self.reap(&id);
        }
    }

    /// Lifeguard: lower the local health multiplier by one.
    pub(super) fn on_health_decay(&mut self) {
        self.suspicion.health = self.suspicion.health.saturating_sub(1);
        if self.suspicion.health > 0 {
            self.schedule(self.membership.config.probe_period, TimerEvent::HealthDecay);
        }
    }

    /// A suspicion's early verdict (see [`TimerEvent::SuspectUnconfirmed`]). False when the
    /// timer is not a suspicion's (nothing to drain then).
    pub(super) fn on_suspect_unconfirmed(&mut self, t: foca::Timer<NodeId>) -> bool {
        let addr = match &t {
            foca::Timer::ChangeSuspectToDown { member_id, .. } => member_id.addr(),
            _ => return false,
        };
        if self.suspicion.unconfirmed.remove(&addr) == Some(false)
            && !self.left
            && !self.stale_suspicion(&t)
        {
            if let Err(e) = self
                .membership
                .foca
                .handle_timer(t, &mut self.membership.rt)
            {
                tracing::debug!(error = %e, "early suspicion verdict refused");
            }
            self.drain_foca();
        }
        true
    }
}
