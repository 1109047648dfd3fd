//! The control API's request and response bodies (JSON over HTTP on `--rpc-addr`), shared by
//! the server in the agent and the client in the CLI, and the member filters of `members`.
//!
//! | method and path   | body                         | answer            |
//! |-------------------|------------------------------|-------------------|
//! | `GET /v1/members` |                              | [`MembersResponse`] |
//! | `GET /v1/info`    |                              | [`InfoResponse`]  |
//! | `POST /v1/join`   | [`JoinRequest`]              | [`JoinResponse`]  |
//! | `POST /v1/tags`   | [`TagsRequest`]              | [`TagsResponse`]  |
//! | `POST /v1/leave`  |                              | [`LeaveResponse`] |
//! | `POST /v1/event`  | [`EventRequest`]             | [`EventResponse`] |
//! | `POST /v1/force-leave` | [`ForceLeaveRequest`]   | [`ForceLeaveResponse`] |
//! | `POST /v1/query`  | [`QueryRequest`]             | [`QueryLine`]s, one JSON object per line, as they come |
//!
//! Errors answer 4xx/5xx with an [`ErrorResponse`].

use std::collections::BTreeMap;

use gossip_core::{MemberInfo, Stats, Tags};
use serde::{Deserialize, Serialize};

/// One member, in the shape of `serf members -format json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberJson {
    /// Node name.
    pub name: String,
    /// `IP:PORT`.
    pub addr: String,
    /// Gossip port.
    pub port: u16,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// alive, suspect, failed or left.
    pub status: String,
}

impl From<&MemberInfo> for MemberJson {
    fn from(m: &MemberInfo) -> Self {
        Self {
            name: m.name().to_string(),
            addr: m.addr().to_string(),
            port: m.addr().port(),
            tags: m.tags().clone(),
            status: m.status.as_str().to_string(),
        }
    }
}

/// `GET /v1/members`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MembersResponse {
    /// This node first, then the others in first-seen order.
    pub members: Vec<MemberJson>,
    /// The member table's index (also in the `X-Gossip-Index` header): ask again with
    /// `?index=THIS&wait=30s` to be answered at the next change.
    #[serde(default)]
    pub index: u64,
}

/// `GET /v1/info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InfoResponse {
    /// This node.
    pub node: MemberJson,
    /// Identity version.
    pub version: u64,
    /// Timing profile.
    pub profile: String,
    /// Control API address.
    pub rpc_addr: String,
    /// Seconds since the agent started.
    pub uptime_secs: u64,
    /// Whether some member has accepted this node.
    pub joined: bool,
    /// Members by status, this node included.
    pub members: BTreeMap<String, usize>,
    /// Traffic and drop counters.
    pub stats: Stats,
    /// Encryption: keys held, packets it refused.
    #[serde(default)]
    pub encryption: crate::crypt::CryptStats,
    /// User events dropped because a handler's queue was full.
    #[serde(default)]
    pub handler_events_dropped: u64,
    /// The DNS server's counters, when it runs (`--dns-addr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<crate::dns::DnsStats>,
    /// The Lamport clocks: the times the next user event and query take.
    #[serde(default)]
    pub event_clock: u64,
    /// See `event_clock`.
    #[serde(default)]
    pub query_clock: u64,
    /// This agent's network coordinate.
    #[serde(default)]
    pub coordinate: Option<gossip_core::Coordinate>,
}

/// `POST /v1/keys`: a key command for every live member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeysRequest {
    /// What to do.
    pub op: crate::crypt::KeyOp,
    /// The key (base64), for install, use and remove.
    #[serde(default)]
    pub key: Option<String>,
}

/// Answer to [`KeysRequest`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeysResponse {
    /// Live members asked.
    pub members: usize,
    /// Members that answered before the deadline.
    #[serde(default)]
    pub answered: usize,
    /// Members whose answer was an error, with it; members that did not answer in time say
    /// so.
    pub errors: BTreeMap<String, String>,
    /// For `list`: each key, with how many members hold it.
    pub keys: BTreeMap<String, usize>,
    /// For `list`: each member's primary key.
    pub primary: BTreeMap<String, String>,
}

/// `POST /v1/join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// `HOST[:PORT]` targets; names are resolved to every address they have.
    pub targets: Vec<String>,
}

/// Answer to [`JoinRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    /// Addresses that answered with their state.
    pub joined: Vec<String>,
    /// Addresses contacted.
    pub contacted: Vec<String>,
}

/// `POST /v1/tags`: sets, then deletes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TagsRequest {
    /// Tags to set.
    #[serde(default)]
    pub set: Tags,
    /// Tag keys to delete.
    #[serde(default)]
    pub delete: Vec<String>,
}

/// Answer to [`TagsRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagsResponse {
    /// The tags now advertised.
    pub tags: Tags,
    /// Whether they changed.
    pub changed: bool,
}

/// `POST /v1/event`: a cluster-wide user event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRequest {
    /// Event name.
    pub name: String,
    /// Payload (handlers read it on stdin, followed by a newline).
    #[serde(default)]
    pub payload: String,
    /// Serf's coalesce flag.
    #[serde(default = "yes")]
    pub coalesce: bool,
}

fn yes() -> bool {
    true
}

/// Answer to [`EventRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventResponse {
    /// The event's Lamport time.
    pub ltime: u64,
}

/// `POST /v1/query`: ask members, stream their acks and answers back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QueryRequest {
    /// Query name.
    pub name: String,
    /// Payload.
    #[serde(default)]
    pub payload: String,
    /// Only these members (by name); empty: every live member.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Only members with tags matching these `KEY=REGEX` filters.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Deadline in ms [default: Serf's, 3.2 s x ceil(log10(N + 1))].
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Do not report acks.
    #[serde(default)]
    pub no_ack: bool,
}

/// One line of a [`QueryRequest`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum QueryLine {
    /// Sent to these members, with this deadline.
    Started {
        /// The query's id (its Lamport time).
        id: u64,
        /// Targets, by name.
        targets: Vec<String>,
        /// Deadline, ms.
        timeout_ms: u64,
    },
    /// A member received it.
    Ack {
        /// The member.
        from: String,
    },
    /// A member answered.
    Response {
        /// The member.
        from: String,
        /// Its answer (lossy UTF-8).
        payload: String,
    },
    /// Over: deadline passed or every target answered.
    Done,
}

/// Serf's default query timeout: gossip interval (200 ms) x 16 x ceil(log10(N + 1)).
pub fn default_query_timeout(cluster_size: usize) -> std::time::Duration {
    let scale = ((cluster_size as f64 + 1.0).log10().ceil()).max(1.0) as u32;
    std::time::Duration::from_millis(3200) * scale
}

/// `POST /v1/force-leave`: mark a failed member left on every member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForceLeaveRequest {
    /// The member's name.
    pub node: String,
}

/// Answer to [`ForceLeaveRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForceLeaveResponse {
    /// False when the member is unknown or not failed here (nothing was done).
    pub changed: bool,
}

/// Answer to `POST /v1/leave`, sent once the leave has gone out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaveResponse {
    /// True when every notified member acknowledged within the leave timeout.
    pub acknowledged: bool,
}

/// Body of an error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: String,
}

impl gossip_handlers::select::MemberView for MemberJson {
    fn name(&self) -> &str {
        &self.name
    }
    fn status(&self) -> &str {
        &self.status
    }
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

/// Serf's text layout: name, address, status, tags as `k=v,k=v`, in aligned columns.
pub fn members_text(members: &[MemberJson]) -> String {
    let w_name = members.iter().map(|m| m.name.len()).max().unwrap_or(0);
    let w_addr = members.iter().map(|m| m.addr.len()).max().unwrap_or(0);
    let mut out = String::new();
    for m in members {
        let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let line = format!(
            "{:w_name$}  {:w_addr$}  {:7}  {}",
            m.name,
            m.addr,
            m.status,
            tags.join(",")
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, status: &str, role: &str) -> MemberJson {
        MemberJson {
            name: name.into(),
            addr: "10.0.0.1:7946".into(),
            port: 7946,
            tags: BTreeMap::from([("role".into(), role.into())]),
            status: status.into(),
        }
    }

    #[test]
    fn the_member_filter_reads_the_json_form() {
        use gossip_handlers::select::Selector;
        let f = Selector::for_flags(Some("alive"), None, Some("app.*"), &[]).unwrap();
        assert!(f.matches(&m("a", "alive", "appserver")));
        assert!(!f.matches(&m("a", "failed", "appserver")));
        assert!(!f.matches(&m("a", "alive", "webapp")));
    }

    #[test]
    fn text_layout_is_aligned() {
        let t = members_text(&[m("a", "alive", "x"), m("bbbb", "left", "y")]);
        assert_eq!(
            t,
            "a     10.0.0.1:7946  alive    role=x\nbbbb  10.0.0.1:7946  left     role=y\n"
        );
    }
}

/// Answer to `GET /v1/coordinate?node=NAME`: a member's network coordinate as this agent
/// holds it (its own when `node` is left out). Distances are in seconds, as Serf's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoordinateResponse {
    /// The member.
    pub node: String,
    /// Its coordinate.
    pub coordinate: gossip_core::Coordinate,
}
