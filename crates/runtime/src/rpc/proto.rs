//! Serf's RPC messages (IPC version 1, as Serf 0.8's `command/agent/ipc.go` defines them):
//! the same field names (PascalCase), types and error strings, so Serf's CLI, its Go client
//! and the client libraries built on them read our answers as Serf's.
//!
//! Go's encoder writes a nil slice or map as msgpack nil and `[]byte` as bin (or str); the
//! decoders here accept each of those forms.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// The only IPC version there is.
pub const IPC_VERSION: i32 = 1;

/// Serf's error strings, which clients match on.
pub mod errors {
    /// A command other than `handshake` first.
    pub const HANDSHAKE_REQUIRED: &str = "Handshake required";
    /// A command before `auth`, when the agent has a token.
    pub const AUTH_REQUIRED: &str = "Authentication required";
    /// `auth` with the wrong token.
    pub const INVALID_AUTH_TOKEN: &str = "Invalid authentication token";
    /// A command Serf does not know.
    pub const UNSUPPORTED_COMMAND: &str = "Unsupported command";
    /// A handshake asking for a version other than 1.
    pub const UNSUPPORTED_IPC_VERSION: &str = "Unsupported IPC version";
    /// A second handshake.
    pub const DUPLICATE_HANDSHAKE: &str = "Handshake already performed";
    /// A second `monitor` on one connection.
    pub const MONITOR_EXISTS: &str = "Monitor already exists";
    /// A `stream` filter that does not parse.
    pub const INVALID_FILTER: &str = "Invalid event filter";
    /// A `stream` whose sequence number is already a stream's.
    pub const STREAM_EXISTS: &str = "Stream with given sequence exists";
    /// A `respond` for a query this connection was not given, or whose deadline passed.
    pub const INVALID_QUERY_ID: &str = "No pending queries matching ID";
}

/// Bytes as Go's `[]byte`: written as bin; read from bin, str, nil or an array of numbers.
pub mod bytes {
    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    /// Writes bin.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Reads bin, str, nil or an array of numbers.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                Ok(v.as_bytes().to_vec())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Vec<u8>, E> {
                Ok(Vec::new())
            }
            fn visit_none<E: de::Error>(self) -> Result<Vec<u8>, E> {
                Ok(Vec::new())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// A value Go may send as nil: its default then.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Before every request.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestHeader {
    /// The command.
    #[serde(deserialize_with = "nullable")]
    pub command: String,
    /// Its sequence number, echoed in the answer (and in every record of a stream).
    pub seq: u64,
}

/// Before every answer and every stream record.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResponseHeader {
    /// The request's (or the stream's) sequence number.
    pub seq: u64,
    /// Empty, or what went wrong.
    pub error: String,
}

/// The body of any request: the union of every command's fields, each read when present
/// (one decoder for all of them keeps the agent small; a command reads the fields it has).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Body {
    /// `handshake`: must be 1.
    pub version: i32,
    /// `auth`: the agent's `--rpc-token`.
    #[serde(deserialize_with = "nullable")]
    pub auth_key: String,
    /// `event`, `query`: the name; `members-filtered`: a name pattern.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// `event`, `query`, `respond`: the payload.
    #[serde(with = "bytes")]
    pub payload: Vec<u8>,
    /// `event`: Serf's coalesce flag.
    pub coalesce: bool,
    /// `force-leave`, `get-coordinate`: the member.
    #[serde(deserialize_with = "nullable")]
    pub node: String,
    /// `force-leave`: Serf 0.8.2's `-prune` (we reap on the usual schedule).
    pub prune: bool,
    /// `join`: `HOST[:PORT]` targets.
    #[serde(deserialize_with = "nullable")]
    pub existing: Vec<String>,
    /// `join`: Serf's replay of past user events (never done: ignored).
    pub replay: bool,
    /// `tags`: tags to set; `members-filtered`: tag name to pattern.
    #[serde(deserialize_with = "nullable")]
    pub tags: BTreeMap<String, String>,
    /// `members-filtered`: a status pattern.
    #[serde(deserialize_with = "nullable")]
    pub status: String,
    /// `install-key`, `use-key`, `remove-key`: the key, base64.
    #[serde(deserialize_with = "nullable")]
    pub key: String,
    /// `monitor`: TRACE, DEBUG, INFO, WARN or ERR (any case).
    #[serde(deserialize_with = "nullable")]
    pub log_level: String,
    /// `stream`: an event filter, as handlers take (`member-join,user:deploy`, `*`).
    #[serde(deserialize_with = "nullable")]
    pub r#type: String,
    /// `stop`: the sequence number of the stream or monitor to end.
    pub stop: u64,
    /// `tags`: names to delete (a name also set stays set, as in Serf).
    #[serde(deserialize_with = "nullable")]
    pub delete_tags: Vec<String>,
    /// `query`: only these members.
    #[serde(deserialize_with = "nullable")]
    pub filter_nodes: Vec<String>,
    /// `query`: only members whose tags match (tag name to anchored pattern).
    #[serde(deserialize_with = "nullable")]
    pub filter_tags: BTreeMap<String, String>,
    /// `query`: report acks.
    pub request_ack: bool,
    /// `query`: Serf's relay factor (our answers come back directly; ignored).
    pub relay_factor: u8,
    /// `query`: deadline in nanoseconds (Go's `time.Duration`); 0: Serf's default.
    pub timeout: i64,
    /// `respond`: the query's ID, as a stream record gave it.
    #[serde(rename = "ID")]
    pub id: u64,
}

/// Answer to `join`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinAnswer {
    /// Targets that answered.
    pub num: i32,
}

/// One member, as Serf's RPC describes it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Member {
    /// Node name.
    pub name: String,
    /// IP address: 4 bytes for IPv4, 16 for IPv6 (Go's `net.IP`).
    #[serde(with = "bytes")]
    pub addr: Vec<u8>,
    /// Gossip port.
    pub port: u16,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// alive, leaving, left or failed (a suspect member is alive, as in Serf).
    pub status: String,
    /// Memberlist protocol versions Serf 0.8 reports.
    pub protocol_min: u8,
    /// See `protocol_min`.
    pub protocol_max: u8,
    /// See `protocol_min`.
    pub protocol_cur: u8,
    /// Serf protocol versions Serf 0.8 reports.
    pub delegate_min: u8,
    /// See `delegate_min`.
    pub delegate_max: u8,
    /// See `delegate_min`.
    pub delegate_cur: u8,
}

/// Answer to `members` and `members-filtered`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Members {
    /// The members.
    pub members: Vec<Member>,
}

/// Answer to the key commands.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyAnswer {
    /// Member name to its error.
    pub messages: BTreeMap<String, String>,
    /// For `list-keys`: key to how many members hold it.
    pub keys: BTreeMap<String, i64>,
    /// Members asked.
    pub num_nodes: i64,
    /// Members that answered with an error.
    pub num_err: i64,
    /// Members that answered.
    pub num_resp: i64,
}

/// A record of a `query`'s answer stream: `ack`, `response` or `done`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueryRecord {
    /// ack, response or done.
    pub r#type: &'static str,
    /// The member (empty for done).
    pub from: String,
    /// Its answer (empty but for response).
    #[serde(with = "bytes")]
    pub payload: Vec<u8>,
}

/// A `monitor` record.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogRecord {
    /// One log line.
    pub log: String,
}

/// A `stream` record of a member event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MemberEventRecord {
    /// member-join, member-leave, member-failed, member-update or member-reap.
    pub event: &'static str,
    /// The members.
    pub members: Vec<Member>,
}

/// A `stream` record of a user event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserEventRecord {
    /// `user`.
    pub event: &'static str,
    /// Lamport time.
    #[serde(rename = "LTime")]
    pub ltime: u64,
    /// Event name.
    pub name: String,
    /// Payload.
    #[serde(with = "bytes")]
    pub payload: Vec<u8>,
    /// Serf's coalesce flag.
    pub coalesce: bool,
}

/// A `stream` record of a query, to answer with `respond` and its ID.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueryEventRecord {
    /// `query`.
    pub event: &'static str,
    /// For `respond` on this connection.
    #[serde(rename = "ID")]
    pub id: u64,
    /// Lamport time.
    #[serde(rename = "LTime")]
    pub ltime: u64,
    /// Query name.
    pub name: String,
    /// Payload.
    #[serde(with = "bytes")]
    pub payload: Vec<u8>,
}

/// A `stream` record Serf does not have: this many records were dropped because the client
/// read too slowly (the agent never waits for a client).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DroppedRecord {
    /// `dropped`.
    pub event: &'static str,
    /// Records lost since the last one told.
    pub count: u64,
}

/// Serf's network coordinate (seconds).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coordinate {
    /// Euclidean part; nil when there is no coordinate, as Go's zero value.
    pub vec: Option<Vec<f64>>,
    /// Confidence.
    pub error: f64,
    /// Offset.
    pub adjustment: f64,
    /// Height.
    pub height: f64,
}

/// Answer to `get-coordinate`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CoordinateAnswer {
    /// The coordinate (Go's zero value when `ok` is false).
    pub coord: Coordinate,
    /// Whether the agent has one for the member.
    pub ok: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's encoder, as Serf's client sends a query: nil slices and maps, `[]byte` as str
    /// (go-msgpack without WriteExt) or bin.
    #[test]
    fn reads_what_go_sends_including_nil() {
        let mut buf = Vec::new();
        rmp::encode::write_map_len(&mut buf, 7).unwrap();
        for (k, nil) in [("FilterNodes", true), ("FilterTags", true)] {
            rmp::encode::write_str(&mut buf, k).unwrap();
            assert!(nil);
            rmp::encode::write_nil(&mut buf).unwrap();
        }
        rmp::encode::write_str(&mut buf, "RequestAck").unwrap();
        rmp::encode::write_bool(&mut buf, true).unwrap();
        rmp::encode::write_str(&mut buf, "RelayFactor").unwrap();
        rmp::encode::write_uint(&mut buf, 0).unwrap();
        rmp::encode::write_str(&mut buf, "Timeout").unwrap();
        rmp::encode::write_sint(&mut buf, 2_000_000_000).unwrap();
        rmp::encode::write_str(&mut buf, "Name").unwrap();
        rmp::encode::write_str(&mut buf, "uptime").unwrap();
        rmp::encode::write_str(&mut buf, "Payload").unwrap();
        rmp::encode::write_str(&mut buf, "hi").unwrap();
        let q: Body = rmp_serde::from_slice(&buf).unwrap();
        assert!(q.filter_nodes.is_empty() && q.filter_tags.is_empty());
        assert!(q.request_ack);
        assert_eq!(q.timeout, 2_000_000_000);
        assert_eq!(
            (q.name.as_str(), q.payload.as_slice()),
            ("uptime", &b"hi"[..])
        );

        let mut buf = Vec::new();
        rmp::encode::write_map_len(&mut buf, 2).unwrap();
        rmp::encode::write_str(&mut buf, "ID").unwrap();
        rmp::encode::write_uint(&mut buf, 3).unwrap();
        rmp::encode::write_str(&mut buf, "Payload").unwrap();
        rmp::encode::write_bin(&mut buf, &[0, 255]).unwrap();
        let r: Body = rmp_serde::from_slice(&buf).unwrap();
        assert_eq!((r.id, r.payload), (3, vec![0, 255]));
    }

    #[test]
    fn writes_field_names_and_bin_as_serf_does() {
        let rec = UserEventRecord {
            event: "user",
            ltime: 4,
            name: "deploy".into(),
            payload: vec![1, 2],
            coalesce: true,
        };
        let buf = rmp_serde::to_vec_named(&rec).unwrap();
        let mut want = vec![0x85];
        for (k, v) in [
            ("Event", &[0xa4, b'u', b's', b'e', b'r'][..]),
            ("LTime", &[0x04]),
            ("Name", &[0xa6, b'd', b'e', b'p', b'l', b'o', b'y']),
            ("Payload", &[0xc4, 2, 1, 2]),
            ("Coalesce", &[0xc3]),
        ] {
            want.push(0xa0 | k.len() as u8);
            want.extend_from_slice(k.as_bytes());
            want.extend_from_slice(v);
        }
        assert_eq!(buf, want);
    }
}
