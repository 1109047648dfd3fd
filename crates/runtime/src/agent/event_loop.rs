//! The driver's loop: datagrams in (opened when encrypted), timers due, commands, signals
//! and the stop future; after each, the node's outputs carried out (datagrams sealed and sent,
//! timers queued, events to handlers and writers), and the leave followed to its end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gossip_core::{MemberEvent, Output};
use gossip_handlers::Snapshot;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::Driver;
use crate::api::LeaveResponse;
use crate::command::Command;
use crate::config::AgentConfig;
use crate::crypt::Opened;
use crate::error::AgentError;

/// How often the published snapshot's coordinates are refreshed (see
/// [`Driver::refresh_coordinates`]).
const COORDINATES_REFRESH: Duration = Duration::from_secs(5);

impl Driver {
    pub(super) async fn run(
        &mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stop: std::pin::Pin<&mut impl Future<Output = String>>,
    ) -> Result<(), AgentError> {
        let mut stopped = false;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut buf =
            vec![0u8; self.node.config().packet_size_max.get() + gossip_core::crypt::OVERHEAD + 1];
        self.flush().await;
        loop {
            let next = [self.timers.next_deadline(), self.leave_deadline]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((len, from)) => self.receive(from, &buf[..len]),
                    Err(e) => tracing::debug!(error = %e, "receive failed"),
                },
                () = sleep => self.fire_timers(),
                Some(cmd) = commands.recv() => self.command(cmd),
                _ = sigterm.recv() => self.start_leave("SIGTERM"),
                _ = sigint.recv() => self.start_leave("SIGINT"),
                _ = sighup.recv() => self.reload(),
                reason = &mut stop, if !stopped => {
                    stopped = true;
                    self.start_leave(&reason);
                }
            }
            self.flush().await;
            if self.leave_finished() {
                return Ok(());
            }
        }
    }

    pub(super) fn receive(&mut self, from: SocketAddr, packet: &[u8]) {
        let opened;
        let plain = match &mut self.crypt {
            Some(c) => match c.open(from, packet, &mut self.warnings) {
                Opened::Plain(p) => {
                    opened = p;
                    &opened[..]
                }
                Opened::Dropped => return,
                Opened::Rebuff(answer) => {
                    self.rebuffs.push((from, answer));
                    return;
                }
            },
            None if crate::crypt::is_sealed(packet) => {
                self.dropped_sealed += 1;
                self.warnings.warn(
                    "encrypted",
                    from,
                    "dropped an encrypted packet: this agent has no key (start it with \
                     --encrypt or --keyring-file)",
                );
                return;
            }
            None => packet,
        };
        let now = self.epoch.elapsed();
        if let Err(reason) = self.node.handle_packet(now, from, plain) {
            tracing::debug!(%from, %reason, "packet dropped");
        }
    }

    pub(super) fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some((_, timer)) = self.timers.pop_due(now) {
            self.node
                .handle_timer(now.saturating_duration_since(self.epoch), timer);
        }
    }

    /// Hands writers the current member set, when it differs from the last one in any member's
    /// identity or status.
    pub(super) fn publish_snapshot(&mut self) {
        let members = self.node.members();
        let local = self.node.identity().clone();
        // Only when something orders by distance: otherwise the snapshot carries none.
        let coordinates = if self.coordinates_wanted {
            self.coordinates_published = Instant::now();
            self.coordinates_of(&members)
        } else {
            Arc::default()
        };
        self.snapshot_tx.send_if_modified(|cur| {
            let same = cur.local == local
                && cur.members.len() == members.len()
                && cur.members.iter().zip(&members).all(|(a, b)| a == b);
            if !same {
                let index = cur.index + 1;
                *cur = Arc::new(Snapshot {
                    members,
                    local,
                    index,
                    coordinates,
                });
            }
            !same
        });
    }

    /// The coordinates this node holds of `members`, by name.
    fn coordinates_of(
        &self,
        members: &[gossip_core::MemberInfo],
    ) -> Arc<std::collections::BTreeMap<String, gossip_core::Coordinate>> {
        Arc::new(
            members
                .iter()
                .filter_map(|m| Some((m.name().to_string(), self.node.coordinate_of(m.name())?)))
                .collect(),
        )
    }

    /// Every [`COORDINATES_REFRESH`], when a writer orders by distance or the DNS server
    /// runs: the published snapshot gets the coordinates held now (same members, same
    /// index: blocking queries do not wake; writers render again and rewrite only if their
    /// output changed).
    fn refresh_coordinates(&mut self) {
        if !self.coordinates_wanted || self.coordinates_published.elapsed() < COORDINATES_REFRESH {
            return;
        }
        self.coordinates_published = Instant::now();
        let cur = self.snapshot_tx.borrow().clone();
        let coordinates = self.coordinates_of(&cur.members);
        if coordinates != cur.coordinates {
            self.snapshot_tx.send_replace(Arc::new(Snapshot {
                coordinates,
                ..(*cur).clone()
            }));
        }
    }

    pub(super) fn start_leave(&mut self, why: &str) {
        if self.node.has_left() {
            return;
        }
        tracing::info!(reason = why, "leaving the cluster");
        if let Err(e) = self.node.leave() {
            tracing::warn!(error = %e, "leave failed");
        }
        self.leave_deadline = Some(Instant::now() + self.config.leave_timeout);
    }

    /// True once a leave has been acknowledged by every notified member, or timed out.
    pub(super) fn leave_finished(&mut self) -> bool {
        let Some(deadline) = self.leave_deadline else {
            return false;
        };
        let acknowledged = self.node.notices_settled();
        if !acknowledged && Instant::now() < deadline {
            return false;
        }
        if acknowledged {
            tracing::info!("leave acknowledged; exiting");
        } else {
            tracing::warn!("leave not acknowledged by every member before the timeout; exiting");
        }
        for w in self.leave_waiters.drain(..) {
            let _ = w.send(LeaveResponse { acknowledged });
        }
        true
    }

    pub(super) fn reload(&mut self) {
        let Some(path) = self.config.config_file.clone() else {
            tracing::info!("SIGHUP: no config file to reload");
            return;
        };
        match AgentConfig::resolve(self.config.flags.clone(), Some(path.clone())) {
            Ok(new) => {
                self.dispatcher.set_handlers(new.handlers.clone());
                self.config.handlers = new.handlers;
                let tags = self.overlay.apply(&new.tags);
                self.config.tags = new.tags;
                match self.node.set_tags(tags) {
                    Ok(changed) => {
                        tracing::info!(file = %path.display(), tags_changed = changed, "config reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reloaded tags refused; keeping the old ones")
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reload failed; keeping the running config"),
        }
    }

    pub(super) async fn flush(&mut self) {
        for (to, data) in std::mem::take(&mut self.rebuffs) {
            let _ = self.socket.send_to(&data, to).await;
        }
        while let Some(out) = self.node.poll() {
            match out {
                Output::Transmit { to, data } => {
                    let data = match &mut self.crypt {
                        Some(c) => c.seal(to, &data),
                        None => data,
                    };
                    if let Err(e) = self.socket.send_to(&data, to).await {
                        tracing::debug!(%to, error = %e, "send failed");
                    }
                }
                Output::Timer { after, timer } => {
                    self.timers.push(Instant::now() + after, timer);
                }
                Output::Event(e) => {
                    log_event(&e);
                    self.hub.publish(crate::stream::Record::Member {
                        kind: e.kind,
                        member: e.member.clone(),
                    });
                    self.dispatcher
                        .member_event(e, self.node.identity().clone());
                    self.members_changed = true;
                }
                Output::Query(q) => self.on_query(q),
                Output::Status(m) => {
                    tracing::debug!(member = m.name(), status = %m.status, "member status");
                    self.members_changed = true;
                }
                Output::User(e) => {
                    tracing::info!(event = %e.name, ltime = e.ltime, bytes = e.payload.len(), "user event");
                    if !e.name.starts_with(crate::crypt::RESERVED_PREFIX) {
                        self.hub.publish(crate::stream::Record::User {
                            name: e.name.clone(),
                            ltime: e.ltime,
                            payload: e.payload.clone(),
                            coalesce: e.coalesce,
                        });
                    }
                    self.dispatcher.user_event(
                        gossip_handlers::Event::User {
                            name: e.name,
                            ltime: e.ltime,
                            payload: e.payload,
                            coalesce: e.coalesce,
                        },
                        self.node.identity().clone(),
                    );
                }
            }
        }
        if self.members_changed {
            self.members_changed = false;
            self.publish_snapshot();
        } else {
            self.refresh_coordinates();
        }
        self.joined_tx.send_if_modified(|j| {
            let now = self.node.is_joined();
            std::mem::replace(j, now) != now
        });
    }
}

pub(super) fn log_event(e: &MemberEvent) {
    let tags: Vec<String> = e
        .member
        .tags()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    tracing::info!(
        event = e.kind.serf_name(),
        member = e.member.name(),
        addr = %e.member.addr(),
        tags = %tags.join(","),
        "member event"
    );
}
