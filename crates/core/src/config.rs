//! Core configuration: timing profiles (LAN, local, WAN) and limits, turned into foca's
//! [`foca::Config`] for the current cluster size.

use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::time::Duration;

use crate::identity::Limits;

/// A named set of timings, after memberlist's `DefaultLANConfig`, `DefaultLocalConfig` and
/// `DefaultWANConfig` (what Serf's `-profile` selects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Probe every 1 s, probe timeout 500 ms, gossip every 200 ms to 3, push-pull every 30 s.
    #[default]
    Lan,
    /// Loopback or one host: probe timeout 200 ms, gossip every 100 ms, push-pull every 15 s.
    Local,
    /// Probe every 5 s, probe timeout 3 s, gossip every 500 ms to 4, push-pull every 60 s.
    Wan,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lan" => Ok(Self::Lan),
            "local" => Ok(Self::Local),
            "wan" => Ok(Self::Wan),
            other => Err(format!(
                "unknown profile {other:?} (expected lan, local or wan)"
            )),
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Lan => "lan",
            Self::Local => "local",
            Self::Wan => "wan",
        })
    }
}

/// How suspicion turns into a failure verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Suspicion {
    /// foca as it is: a member that misses a probe is declared down after the suspicion
    /// timeout unless it refutes through gossip.
    Plain,
    /// Lifeguard-style remedies on top of foca: the suspect is told directly (and answers the
    /// prober with its refutation), and a node whose own probes keep failing (slow, or on a
    /// lossy link) stretches its suspicion timeout by its local health multiplier.
    #[default]
    Lifeguard,
}

impl std::str::FromStr for Suspicion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(Self::Plain),
            "lifeguard" => Ok(Self::Lifeguard),
            other => Err(format!(
                "unknown suspicion policy {other:?} (expected plain or lifeguard)"
            )),
        }
    }
}

impl std::fmt::Display for Suspicion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain => "plain",
            Self::Lifeguard => "lifeguard",
        })
    }
}

/// How a node that has not joined yet tries again: the agent's join loop and the simulator's
/// both follow it. The first retry comes after `first`, each wait doubles, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinBackoff {
    /// The wait before the first retry.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for JoinBackoff {
    /// 200 ms, doubling up to 30 s.
    fn default() -> Self {
        Self {
            first: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

impl JoinBackoff {
    /// The wait after one of `current`.
    pub fn next(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.max)
    }
}

/// Everything the core needs to know that is not membership state.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreConfig {
    /// Timing profile.
    pub profile: Profile,
    /// Limits on names and tags.
    pub limits: Limits,
    /// Largest packet we send or accept, envelope included. Must hold two identities at their
    /// limits (a foca header carries source and destination).
    pub packet_size_max: NonZeroUsize,
    /// Base interval of the periodic full-state exchange; scaled up with cluster size above
    /// 32 members, as memberlist does.
    pub push_pull_interval: Duration,
    /// How long failed and left members stay listed (and their identities remembered, so
    /// stale gossip cannot bring them back) before they are reaped.
    pub reap_after: Duration,
    /// How many members a notice (join, leave, tag change, failure verdict, user event) goes
    /// to directly, acknowledged; beyond that the receivers pass it on by gossip. The
    /// default, 1024, covers whole clusters up to 1,025 members: every member learns within a
    /// round trip, and gossip buffers stay free of join storms.
    pub notice_fanout: usize,
    /// Interval between notice retransmissions to members that have not acknowledged.
    pub notice_retry: Duration,
    /// Retransmissions of a notice before giving up on a member.
    pub notice_attempts: u32,
    /// Delay between a member first accepting our identity and our notice to every member.
    pub announce_delay: Duration,
    /// Suspicion policy.
    pub suspicion: Suspicion,
    /// Largest local health multiplier (Lifeguard: the suspicion timeout is stretched by up
    /// to this factor plus one).
    pub health_max: u32,
    /// How often each node announces itself to a failed member (to heal partitions).
    pub reconnect_interval: Duration,
    /// The suspicion timeout is `suspicion_mult x max(1, log10 N) x probe period` (SWIM's and
    /// memberlist's formula; Serf's LAN profile uses 4, its minimum under Lifeguard).
    pub suspicion_mult: f64,
    /// Lifeguard only: a node that learns of a suspicion asks the suspect directly
    /// (retransmitting) and, if nothing at all comes back from it for this long, declares it
    /// failed without waiting for the full timeout: its own evidence confirms the suspicion.
    /// None: always the full timeout.
    pub suspicion_confirm: Option<Duration>,
}

impl CoreConfig {
    /// The defaults for `profile`.
    pub fn new(profile: Profile) -> Self {
        let push_pull_interval = match profile {
            Profile::Lan => Duration::from_secs(30),
            Profile::Local => Duration::from_secs(15),
            Profile::Wan => Duration::from_secs(60),
        };
        Self {
            profile,
            limits: Limits::default(),
            packet_size_max: NonZeroUsize::new(3072).expect("non-zero literal"),
            push_pull_interval,
            reap_after: Duration::from_secs(24 * 3600),
            notice_fanout: 1024,
            notice_retry: Duration::from_millis(200),
            notice_attempts: 5,
            announce_delay: Duration::from_millis(10),
            suspicion: Suspicion::default(),
            health_max: 8,
            reconnect_interval: Duration::from_secs(5),
            suspicion_confirm: Some(match profile {
                Profile::Lan | Profile::Local => Duration::from_secs(3),
                Profile::Wan => Duration::from_secs(15),
            }),
            suspicion_mult: match profile {
                Profile::Lan => 4.0,
                Profile::Local => 3.0,
                Profile::Wan => 6.0,
            },
        }
    }

    /// foca's configuration for a cluster of `cluster_size` members.
    pub fn foca_config(&self, cluster_size: usize) -> foca::Config {
        let n = NonZeroU32::new(u32::try_from(cluster_size.max(1)).unwrap_or(u32::MAX))
            .expect("max(1) is non-zero");
        let mut c = match self.profile {
            Profile::Lan => foca::Config::new_lan(n),
            Profile::Wan => foca::Config::new_wan(n),
            Profile::Local => {
                let mut c = foca::Config::new_lan(n);
                c.probe_rtt = Duration::from_millis(200);
                if let Some(g) = c.periodic_gossip.as_mut() {
                    g.frequency = Duration::from_millis(100);
                }
                c
            }
        };
        c.suspect_to_down_after = suspicion(n, c.probe_period, self.suspicion_mult);
        // Our push-pull (wire::Sync) is the anti-entropy: foca's periodic announce would add
        // a second one, a full packet of members to one member every 30 s.
        c.periodic_announce = None;
        // Serf retries failed members every 30 s; after a partition both halves see each other
        // as failed, so try them far more often (a small announce, only while some are failed).
        if let Some(d) = c.periodic_announce_to_down_members.as_mut() {
            d.frequency = self.reconnect_interval;
        }
        c.max_packet_size = NonZeroUsize::new(
            self.packet_size_max
                .get()
                .saturating_sub(crate::wire::ENVELOPE_LEN),
        )
        .unwrap_or(NonZeroUsize::MIN);
        c.remove_down_after = Some(self.reap_after);
        // Always at least a few transmissions per update, even in tiny clusters.
        c.max_transmissions = c
            .max_transmissions
            .max(NonZeroU8::new(4).expect("non-zero"));
        c
    }

    /// The push-pull interval at `cluster_size` (memberlist's `pushPullScale`).
    pub fn push_pull_interval_at(&self, cluster_size: usize) -> Duration {
        const THRESHOLD: f64 = 32.0;
        let n = cluster_size as f64;
        if n <= THRESHOLD {
            return self.push_pull_interval;
        }
        let mult = ((n.log2() - THRESHOLD.log2()).ceil() + 1.0) as u32;
        self.push_pull_interval.saturating_mul(mult)
    }
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self::new(Profile::Lan)
    }
}

fn suspicion(n: NonZeroU32, probe_period: Duration, mult: f64) -> Duration {
    let secs = f64::max(1.0, f64::from(n.get()).log10()) * mult * probe_period.as_secs_f64();
    Duration::from_secs_f64(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_pull_scales_like_memberlist() {
        let c = CoreConfig::new(Profile::Lan);
        assert_eq!(c.push_pull_interval_at(10), Duration::from_secs(30));
        assert_eq!(c.push_pull_interval_at(100), Duration::from_secs(90));
        assert_eq!(c.push_pull_interval_at(1000), Duration::from_secs(180));
    }

    #[test]
    fn profiles_differ_where_memberlist_does() {
        let lan = CoreConfig::new(Profile::Lan).foca_config(10);
        let local = CoreConfig::new(Profile::Local).foca_config(10);
        assert_eq!(lan.probe_rtt, Duration::from_millis(500));
        assert_eq!(local.probe_rtt, Duration::from_millis(200));
        assert_eq!(local.suspect_to_down_after, Duration::from_secs(3));
        assert_eq!("wan".parse::<Profile>().unwrap(), Profile::Wan);
        assert!("fast".parse::<Profile>().is_err());
    }
}
