//! Prometheus metrics: `GET /metrics` on the control API (behind its token, as every route)
//! and, with `--metrics-addr`, on a listener that serves nothing else and needs no token, so
//! it can be exposed beyond loopback without exposing the API.
//!
//! Each scrape reads what the agent already keeps (the counters of `info` and the member
//! table it publishes) and encodes it with `prometheus-client` (0.26), the Prometheus
//! project's own Rust client: its `prometheus_text` encoder writes Prometheus's text format
//! (0.0.4, what `promtool check metrics` lints and every Prometheus scrapes), with label
//! values escaped and `_total` suffixes added by the library rather than by hand. Nothing is
//! registered for the agent's lifetime: a collector is built per scrape from one reading, so
//! a scrape costs one round trip to the task that owns the node and the encoding, and
//! nothing when nobody scrapes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State as AxState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::api::InfoResponse;
use crate::command::Command;
use crate::control::{SHUTTING_DOWN, State, ask_agent};

/// The content type of Prometheus's text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The statuses a member can have, each always exported (0 when none).
const STATUSES: [&str; 4] = ["alive", "suspect", "failed", "left"];

/// One reading of the agent, encoded as metric families.
#[derive(Debug)]
struct Reading {
    /// HTTP and Serf RPC requests served on the control API's port.
    requests: (u64, u64),
    info: InfoResponse,
    members: Arc<gossip_handlers::Snapshot>,
    activity: gossip_handlers::stats::Counts,
}

/// `GET /metrics`: the exposition, or 503 once the agent is gone.
pub async fn metrics(AxState(s): AxState<State>) -> Response {
    match render(&s).await {
        Some(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, SHUTTING_DOWN).into_response(),
    }
}

/// The exposition text; `None` when the agent does not answer any more.
pub async fn render(s: &State) -> Option<String> {
    let info = ask_agent(s, Command::Info).await?;
    let members = s.members.borrow().clone();
    let mut registry = Registry::default();
    let activity = s.activity.read();
    let requests = (
        s.requests.http.load(std::sync::atomic::Ordering::Relaxed),
        s.requests
            .serf_rpc
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    registry.register_collector(Box::new(Reading {
        requests,
        info,
        members,
        activity,
    }));
    let mut out = String::with_capacity(8 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).ok()?;
    Some(out)
}

/// Most connections the metrics listener serves at once (a Prometheus needs one; past the
/// limit a new connection is closed at once, so that nobody can hold the agent's file
/// descriptors through a port open beyond loopback).
pub const CONNECTIONS_MAX: usize = 16;

/// Serves `GET /metrics` alone on `listener` (`--metrics-addr`), with no token, until `stop`
/// turns true: at most [`CONNECTIONS_MAX`] connections, each sending its request's headers
/// within [`crate::control::HEADER_TIMEOUT`], as the control API.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: State,
    mut stop: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener cannot accept");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = async { let _ = stop.wait_for(|s| *s).await; } => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, max = CONNECTIONS_MAX, "metrics connection refused: too many open");
            continue;
        };
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            crate::control::serve_http(stream, peer, app, watcher).await;
            drop(slot);
        });
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), graceful.shutdown()).await;
}

/// A counter family, one sample per label value.
fn counters<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
) -> std::fmt::Result {
    let mut family =
        enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (value, n) in samples {
        let labels = [(label, value)];
        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter without labels.
fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, n: u64) -> std::fmt::Result {
    let c = ConstCounter::new(n);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

/// A gauge without labels.
fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Collector for Reading {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let i = &self.info;

        // Prometheus's convention for build information: a gauge of 1 whose labels say it
        // (OpenMetrics' `info` type is unknown to Prometheus's text format and promtool).
        let build = ConstGauge::new(1i64);
        let mut family = enc.encode_descriptor(
            "gossip_build_info",
            "The agent's version, as labels; always 1.",
            None,
            build.metric_type(),
        )?;
        build.encode(family.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        gauge(
            &mut enc,
            "gossip_uptime_seconds",
            "Seconds since the agent started.",
            int(i.uptime_secs),
        )?;
        gauge(
            &mut enc,
            "gossip_joined",
            "1 once some member has accepted this node, else 0.",
            i64::from(i.joined),
        )?;

        // Members by role and status, every status present for every role (0 when none),
        // so that a count going to 0 is a sample, not a missing series.
        let mut by: BTreeMap<(String, &str), i64> = BTreeMap::new();
        for m in &self.members.members {
            let role = m.id.role().unwrap_or_default().to_string();
            for s in STATUSES {
                by.entry((role.clone(), s)).or_default();
            }
            *by.entry((role, status_name(m.status))).or_default() += 1;
        }
        let mut family = enc.encode_descriptor(
            "gossip_members",
            "Members this agent knows (itself included), by role (empty: none) and status.",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for ((role, status), n) in &by {
            let labels = [("role", role.as_str()), ("status", *status)];
            ConstGauge::new(*n).encode(family.encode_family(&labels)?)?;
        }
        gauge(
            &mut enc,
            "gossip_member_table_index",
            "The member table's index (X-Gossip-Index): one more at each change.",
            int(self.members.index),
        )?;

        let st = &i.stats;
        counter(
            &mut enc,
            "gossip_received_packets",
            "Gossip datagrams received.",
            st.packets_in,
        )?;
        counter(
            &mut enc,
            "gossip_received_bytes",
            "Gossip bytes received.",
            st.bytes_in,
        )?;
        counter(
            &mut enc,
            "gossip_sent_packets",
            "Gossip datagrams sent.",
            st.packets_out,
        )?;
        counter(
            &mut enc,
            "gossip_sent_bytes",
            "Gossip bytes sent.",
            st.bytes_out,
        )?;
        let kinds = || {
            gossip_core::wire::Kind::ALL
                .iter()
                .map(|k| k.label())
                .zip(st.by_kind)
        };
        counters(
            &mut enc,
            "gossip_messages_received",
            "Gossip datagrams received with a valid envelope, by message kind.",
            "kind",
            kinds().map(|(k, t)| (k, t.packets_in)),
        )?;
        counters(
            &mut enc,
            "gossip_message_received_bytes",
            "Gossip bytes received with a valid envelope, by message kind.",
            "kind",
            kinds().map(|(k, t)| (k, t.bytes_in)),
        )?;
        counters(
            &mut enc,
            "gossip_messages_sent",
            "Gossip datagrams sent, by message kind.",
            "kind",
            kinds().map(|(k, t)| (k, t.packets_out)),
        )?;
        counters(
            &mut enc,
            "gossip_message_sent_bytes",
            "Gossip bytes sent, by message kind.",
            "kind",
            kinds().map(|(k, t)| (k, t.bytes_out)),
        )?;
        let e = &i.encryption;
        counters(
            &mut enc,
            "gossip_dropped_packets",
            "Gossip datagrams dropped, by reason.",
            "reason",
            [
                ("oversize", st.dropped_oversize),
                ("foreign", st.dropped_foreign),
                ("version", st.dropped_version),
                ("malformed", st.dropped_malformed),
                ("protocol", st.dropped_protocol),
                ("misaddressed", st.dropped_misaddressed),
                ("buried", st.dropped_buried),
                ("unencrypted", e.dropped_unencrypted),
                ("undecryptable", e.dropped_junk),
                ("wrong_key", e.dropped_wrong_key),
                ("bad_format", e.dropped_bad_format),
                ("amplification_limit", st.limited_dropped),
            ],
        )?;
        counter(
            &mut enc,
            "gossip_challenges_sent",
            "Challenges sent to unvalidated sources (anti-amplification).",
            st.challenges,
        )?;
        counter(
            &mut enc,
            "gossip_sources_validated",
            "Sources validated by echoing a challenge.",
            st.validated,
        )?;
        counter(
            &mut enc,
            "gossip_held_packets",
            "Datagrams held until their destination echoed a challenge.",
            st.limited_held,
        )?;
        counter(
            &mut enc,
            "gossip_reconnect_attempts",
            "Announcements sent to reaped failed members (partition healing).",
            st.reconnects,
        )?;
        counter(
            &mut enc,
            "gossip_suspicions",
            "Members reported suspect (a probe failed, here or elsewhere).",
            st.suspicions,
        )?;
        let rtt = &st.probe_rtt;
        enc.encode_descriptor(
            "gossip_probe_rtt_seconds",
            "Round trips of this agent's direct probes (ping to ack).",
            None,
            prometheus_client::metrics::MetricType::Histogram,
        )?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            rtt.sum_secs(),
            rtt.count,
            &rtt.by_bound(),
            None,
        )?;
        counter(
            &mut enc,
            "gossip_coordinate_updates",
            "Network coordinate samples applied (timed probes answered).",
            st.coordinate_updates,
        )?;
        counter(
            &mut enc,
            "gossip_coordinate_resets",
            "Times this agent's coordinate went bad and was reset.",
            st.coordinate_resets,
        )?;
        counter(
            &mut enc,
            "gossip_coordinates_refused",
            "Coordinates from peers refused (not finite, or out of bounds) and not kept.",
            st.coordinates_refused,
        )?;
        if let Some(c) = &i.coordinate {
            let g = ConstGauge::new(c.error);
            g.encode(enc.encode_descriptor(
                "gossip_coordinate_error",
                "This agent's own estimate of its coordinate's relative error (1.5 at start).",
                None,
                g.metric_type(),
            )?)?;
        }
        counters(
            &mut enc,
            "gossip_suspicions_ended",
            "Suspicions ended: refuted (alive again) or confirmed (declared failed).",
            "outcome",
            [
                ("refuted", st.suspicions_refuted),
                ("confirmed", st.suspicions_confirmed),
            ],
        )?;
        counter(
            &mut enc,
            "gossip_acked_messages_sent",
            "Acknowledged messages sent (notices, user events, queries, answers), one per \
             destination, first sends.",
            st.acked_sent,
        )?;
        counter(
            &mut enc,
            "gossip_acked_messages_retransmitted",
            "Acknowledged messages sent again for want of an acknowledgement.",
            st.acked_retransmitted,
        )?;
        counter(
            &mut enc,
            "gossip_user_events",
            "User events delivered here (sent or received), each once.",
            st.user_events,
        )?;
        counter(
            &mut enc,
            "gossip_queries",
            "Queries delivered here (asked or received), each once.",
            st.queries,
        )?;
        gauge(
            &mut enc,
            "gossip_encryption_keys",
            "Keys in the keyring (0: gossip is not encrypted).",
            int(e.keys),
        )?;
        gauge(
            &mut enc,
            "gossip_user_event_clock",
            "The Lamport time the next user event takes.",
            int(i.event_clock),
        )?;
        gauge(
            &mut enc,
            "gossip_query_clock",
            "The Lamport time the next query takes.",
            int(i.query_clock),
        )?;
        counter(
            &mut enc,
            "gossip_handler_events_dropped",
            "Events dropped because a handler's queue was full.",
            i.handler_events_dropped,
        )?;

        self.encode_activity(&mut enc)?;
        counters(
            &mut enc,
            "gossip_api_requests",
            "Requests on the control API's port, by protocol (http, serf_rpc); scrapes of the \
             metrics listener are not counted.",
            "protocol",
            [("http", self.requests.0), ("serf_rpc", self.requests.1)],
        )?;

        if let Some(d) = &i.dns {
            counter(
                &mut enc,
                "gossip_dns_queries",
                "DNS queries received.",
                d.queries,
            )?;
            counters(
                &mut enc,
                "gossip_dns_responses",
                "DNS answers sent, by outcome.",
                "outcome",
                [
                    ("answered", d.answered),
                    ("nxdomain", d.nxdomain),
                    ("refused", d.refused),
                    ("forwarded", d.forwarded),
                    ("forward_failed", d.forward_failed),
                ],
            )?;
            counter(
                &mut enc,
                "gossip_dns_truncated_responses",
                "DNS answers sent truncated (TC set).",
                d.truncated,
            )?;
            counter(
                &mut enc,
                "gossip_dns_dropped_datagrams",
                "DNS datagrams dropped: not a query, or over 4 KiB.",
                d.dropped,
            )?;
        }
        Ok(())
    }
}

impl Reading {
    /// Handler runs by event and writer passes by writer, with their durations.
    fn encode_activity(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let a = &self.activity;
        let h = &a.handlers;
        counters(
            enc,
            "gossip_handler_runs",
            "Handler script runs, by event (member-join, user, query, ...).",
            "event",
            h.iter().map(|(e, c)| (e.as_str(), c.runs)),
        )?;
        counters(
            enc,
            "gossip_handler_failures",
            "Handler runs that exited non-zero, were killed by a signal or could not start.",
            "event",
            h.iter().map(|(e, c)| (e.as_str(), c.failed)),
        )?;
        counters(
            enc,
            "gossip_handler_timeouts",
            "Handler runs killed at the handler timeout.",
            "event",
            h.iter().map(|(e, c)| (e.as_str(), c.timed_out)),
        )?;
        histograms(
            enc,
            "gossip_handler_duration_seconds",
            "How long handler runs took, by event.",
            "event",
            h.iter().map(|(e, c)| (e.as_str(), &c.duration)),
        )?;
        let w = &a.writers;
        let mut family = enc.encode_descriptor(
            "gossip_writer_passes",
            "Writer passes, by writer and result: updated (written, validated, reloaded), \
             unchanged, validation_failed (the previous file kept), failed.",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (name, c) in w {
            for (result, n) in [
                ("updated", c.updated),
                ("unchanged", c.unchanged),
                ("validation_failed", c.validation_failed),
                ("failed", c.failed),
            ] {
                let labels = [("writer", name.as_str()), ("result", result)];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        histograms(
            enc,
            "gossip_writer_update_duration_seconds",
            "How long writer updates took (render, write, validate, reload), by writer.",
            "writer",
            w.iter().map(|(n, c)| (n.as_str(), &c.update_duration)),
        )
    }
}

/// A histogram family, one histogram per label value.
fn histograms<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    samples: impl IntoIterator<Item = (&'a str, &'a gossip_handlers::stats::Histogram)>,
) -> std::fmt::Result {
    let mut family = enc.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Histogram,
    )?;
    for (value, h) in samples {
        let labels = [(label, value)];
        family
            .encode_family(&labels)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum,
                h.count,
                &h.by_bound(),
                None,
            )?;
    }
    Ok(())
}

fn status_name(s: gossip_core::Status) -> &'static str {
    match s {
        gossip_core::Status::Alive => "alive",
        gossip_core::Status::Suspect => "suspect",
        gossip_core::Status::Failed => "failed",
        gossip_core::Status::Left => "left",
    }
}
