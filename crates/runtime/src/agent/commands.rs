//! The driver's commands: each [`Command`] carried out on the node, queries asked and
//! answered (user handlers, key commands), and `info`.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Driver;
use crate::api::{
    EventResponse, ForceLeaveResponse, InfoResponse, MemberJson, TagsResponse,
    default_query_timeout,
};
use crate::command::{Command, CommandFailed, QueryProgress, QuerySpec};
use crate::crypt::{CryptStats, KEYS_QUERY, RESERVED_PREFIX};

impl Driver {
    pub(super) fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Members(reply) => {
                let _ = reply.send(self.node.members());
            }
            Command::Info(reply) => {
                let _ = reply.send(self.info());
            }
            Command::Join(addrs) => {
                if let Err(e) = self.node.join(&addrs) {
                    tracing::warn!(error = %e, "join refused");
                }
            }
            Command::Answered(addrs, reply) => {
                let ok = addrs
                    .into_iter()
                    .filter(|a| self.node.has_answered(*a))
                    .collect();
                let _ = reply.send(ok);
            }
            Command::Tags(req, reply) => {
                let mut overlay = self.overlay.clone();
                overlay.edit(&req.set, &req.delete);
                let tags = overlay.apply(&self.config.tags);
                let r = match self.node.set_tags(tags) {
                    Ok(changed) => {
                        self.overlay = overlay;
                        Ok(TagsResponse {
                            tags: self.node.identity().tags().clone(),
                            changed,
                        })
                    }
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(r);
            }
            Command::Leave(reply) => {
                self.leave_waiters.push(reply);
                self.start_leave("leave command");
            }
            Command::Query(req, lines, reply) => {
                let r = if req.name.starts_with(RESERVED_PREFIX) {
                    Err(CommandFailed::Reserved { what: "query" })
                } else {
                    self.start_query(req, lines)
                };
                let _ = reply.send(r);
            }
            Command::Keys(req, lines, reply) => {
                let r = if self.crypt.is_none() {
                    Err(CommandFailed::NoEncryption)
                } else {
                    let q = QuerySpec {
                        name: format!("{KEYS_QUERY}{}", req.op.as_str()),
                        payload: req.key.unwrap_or_default().into_bytes(),
                        ..QuerySpec::default()
                    };
                    self.start_query(q, lines)
                };
                let _ = reply.send(r);
            }
            Command::Respond {
                origin,
                ltime,
                answer,
            } => {
                if let Err(e) = self.node.respond(origin, ltime, &answer) {
                    tracing::warn!(error = %e, "query answer not sent");
                }
            }
            Command::ForceLeave(req, reply) => {
                let r = self
                    .node
                    .force_leave(&req.node)
                    .map(|changed| ForceLeaveResponse { changed })
                    .map_err(CommandFailed::from);
                let _ = reply.send(r);
            }
            Command::Event(req, reply) => {
                let r = if req.name.starts_with(RESERVED_PREFIX) {
                    Err(CommandFailed::Reserved { what: "event" })
                } else {
                    self.node
                        .user_event(&req.name, &req.payload, req.coalesce)
                        .map(|ltime| EventResponse { ltime })
                        .map_err(CommandFailed::from)
                };
                let _ = reply.send(r);
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Command::Coordinate(node, reply) => {
                let name = node.unwrap_or_else(|| self.node.identity().name().to_string());
                let _ = reply.send(self.node.coordinate_of(&name).map(|c| (name, c)));
            }
        }
    }

    pub(super) fn start_query(
        &mut self,
        req: QuerySpec,
        lines: mpsc::UnboundedSender<QueryProgress>,
    ) -> Result<(), CommandFailed> {
        let filter = gossip_handlers::select::Selector::for_flags(None, None, None, &req.tags)?;
        let members = self.node.members();
        let targets: Vec<gossip_core::NodeId> = members
            .iter()
            .filter(|m| m.status.is_live())
            .filter(|m| req.nodes.is_empty() || req.nodes.iter().any(|n| n == m.name()))
            .filter(|m| filter.matches(*m))
            .map(|m| m.id.clone())
            .collect();
        let live = members.iter().filter(|m| m.status.is_live()).count();
        let timeout = req.timeout.unwrap_or_else(|| default_query_timeout(live));
        if timeout.is_zero() || timeout > Duration::from_secs(3600) {
            return Err(CommandFailed::Timeout);
        }
        let id = self
            .node
            .query(&req.name, &req.payload, &targets, timeout)?;
        let _ = lines.send(QueryProgress::Started {
            id,
            targets: targets.iter().map(|t| t.name().to_string()).collect(),
            timeout,
        });
        self.queries.insert(id, (lines, req.ack));
        Ok(())
    }

    pub(super) fn on_query(&mut self, q: gossip_core::QueryOutput) {
        use gossip_core::QueryOutput;
        match q {
            QueryOutput::Incoming(q) if q.name.starts_with(RESERVED_PREFIX) => {
                use crate::crypt::{KeyAnswer, KeyCommandError};
                let answer = match (crate::crypt::key_op(&q.name), &mut self.crypt) {
                    (Some(Some(op)), Some(c)) => {
                        tracing::info!(op = op.as_str(), from = %q.origin_name, "key command");
                        c.apply(op, &q.payload)
                    }
                    (Some(Some(_)), None) => {
                        KeyAnswer::Error(KeyCommandError::NoEncryption.to_string())
                    }
                    _ => KeyAnswer::Error(KeyCommandError::Unknown(q.name.clone()).to_string()),
                };
                if let Err(e) = self.node.respond(q.origin, q.ltime, &answer.encode()) {
                    tracing::warn!(error = %e, "key command answer not sent");
                }
            }
            QueryOutput::Incoming(q) => {
                tracing::info!(query = %q.name, from = %q.origin_name, ltime = q.ltime, "query");
                self.hub.publish(crate::stream::Record::Query {
                    origin: q.origin,
                    origin_name: q.origin_name.clone(),
                    ltime: q.ltime,
                    name: q.name.clone(),
                    payload: q.payload.clone(),
                    deadline: std::time::Instant::now() + self.query_answer_window(),
                });
                let (reply, rx) = gossip_handlers::QueryReply::new();
                self.dispatcher.user_event(
                    gossip_handlers::Event::Query {
                        name: q.name,
                        ltime: q.ltime,
                        payload: q.payload,
                        reply,
                    },
                    self.node.identity().clone(),
                );
                let commands = self.commands.clone();
                let (origin, ltime) = (q.origin, q.ltime);
                tokio::spawn(async move {
                    // No answer when no handler matched or none exited 0.
                    if let Ok(answer) = rx.await {
                        let _ = commands
                            .send(Command::Respond {
                                origin,
                                ltime,
                                answer,
                            })
                            .await;
                    }
                });
            }
            QueryOutput::Ack { id, from } => {
                if let Some((tx, true)) = self.queries.get(&id) {
                    let _ = tx.send(QueryProgress::Ack { from });
                }
            }
            QueryOutput::Response { id, from, payload } => {
                if let Some((tx, _)) = self.queries.get(&id) {
                    let _ = tx.send(QueryProgress::Response { from, payload });
                }
            }
            QueryOutput::Done { id } => {
                if let Some((tx, _)) = self.queries.remove(&id) {
                    let _ = tx.send(QueryProgress::Done);
                }
            }
        }
    }

    /// How long a stream subscriber may answer a query: the query carries no deadline, so
    /// Serf's default for a cluster of this size (the asker's own deadline is usually it).
    fn query_answer_window(&self) -> Duration {
        let live = self
            .node
            .members()
            .iter()
            .filter(|m| m.status.is_live())
            .count();
        default_query_timeout(live)
    }

    /// Serf's `stats`: the sections `agent`, `runtime`, `serf`, `tags` and
    /// `event_handlers`, with Serf's names where we have the figure.
    pub(super) fn stats(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let info = self.info();
        let s = |v: &dyn ToString| v.to_string();
        // Serf's "serf" section also has health_score, member_time and the queue depths:
        // figures this agent does not keep, so they are left out.
        let count = |k: &str| info.members.get(k).copied().unwrap_or(0);
        let mut out = BTreeMap::new();
        out.insert(
            "agent".to_string(),
            BTreeMap::from([("name".to_string(), info.node.name.clone())]),
        );
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        out.insert(
            "runtime".to_string(),
            BTreeMap::from([
                ("os".to_string(), std::env::consts::OS.to_string()),
                ("arch".to_string(), std::env::consts::ARCH.to_string()),
                (
                    "version".to_string(),
                    format!("gossip-agent {}", env!("CARGO_PKG_VERSION")),
                ),
                ("cpu_count".to_string(), s(&threads)),
            ]),
        );
        out.insert(
            "serf".to_string(),
            BTreeMap::from([
                (
                    "members".to_string(),
                    s(&info.members.values().sum::<usize>()),
                ),
                ("failed".to_string(), s(&count("failed"))),
                ("left".to_string(), s(&count("left"))),
                ("event_time".to_string(), s(&info.event_clock)),
                ("query_time".to_string(), s(&info.query_clock)),
                ("encrypted".to_string(), s(&self.crypt.is_some())),
                (
                    "coordinate_resets".to_string(),
                    s(&info.stats.coordinate_resets),
                ),
            ]),
        );
        out.insert("tags".to_string(), info.node.tags.clone());
        out.insert(
            "event_handlers".to_string(),
            self.config
                .handlers
                .iter()
                .map(|h| (h.filter_text().to_string(), h.script.clone()))
                .collect(),
        );
        out
    }

    pub(super) fn info(&self) -> InfoResponse {
        let members = self.node.members();
        let mut counts = BTreeMap::new();
        for m in &members {
            *counts.entry(m.status.as_str().to_string()).or_insert(0) += 1;
        }
        InfoResponse {
            node: MemberJson::from(&self.node.local()),
            version: self.node.identity().version(),
            profile: self.config.core.profile.to_string(),
            rpc_addr: self.rpc_addr.to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            joined: self.node.is_joined(),
            members: counts,
            stats: self.node.stats(),
            encryption: match &self.crypt {
                Some(c) => c.stats(),
                None => CryptStats {
                    dropped_wrong_key: self.dropped_sealed,
                    ..CryptStats::default()
                },
            },
            handler_events_dropped: self.dispatcher.dropped(),
            dns: self.dns.as_ref().map(|d| d.stats()),
            event_clock: self.node.clocks().event,
            query_clock: self.node.clocks().query,
            coordinate: Some(self.node.coordinate()),
        }
    }
}
