//! Members for tests: built ([`id`], [`member`]) for the crates' unit tests, and read from a
//! running agent's control API ([`listed`]) for the integration tests and the benchmarks.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use gossip_core::{Limits, MemberInfo, NodeId, Status, Tags};

/// Tags from pairs.
pub fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The identity `name` at `ip`:7946, version 1, with `tags`.
pub fn id(name: &str, ip: &str, tag_pairs: &[(&str, &str)]) -> NodeId {
    NodeId::new(
        name,
        format!("{ip}:7946").parse().expect("an IP address"),
        1,
        tags(tag_pairs),
        &Limits::default(),
    )
    .expect("a valid identity")
}

/// The member `name` at `ip`:7946 with `tags` and `status`.
pub fn member(name: &str, ip: &str, tag_pairs: &[(&str, &str)], status: Status) -> MemberInfo {
    MemberInfo {
        id: id(name, ip, tag_pairs),
        status,
    }
}

/// A member as an agent lists it (`GET /v1/members`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its status.
    pub status: String,
    /// `IP:PORT`.
    pub addr: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// Every member the agent whose control API is at `rpc` lists, by name; `None` when it does
/// not answer.
pub fn listed(rpc: SocketAddr) -> Option<BTreeMap<String, Listed>> {
    let v = crate::http::get(rpc, "/v1/members")?.json()?;
    Some(
        v["members"]
            .as_array()?
            .iter()
            .filter_map(|m| {
                let tags = json_tags(&m["tags"]);
                Some((
                    m["name"].as_str()?.to_string(),
                    Listed {
                        status: m["status"].as_str()?.to_string(),
                        addr: m["addr"].as_str().unwrap_or("").to_string(),
                        tags,
                    },
                ))
            })
            .collect(),
    )
}

/// Tags from their JSON form (an object of strings, as `/v1/members`, `/v1/info` and
/// `serf members -format json` give them); anything else is no tags.
pub fn json_tags(v: &serde_json::Value) -> Tags {
    v.as_object()
        .map(|t| {
            t.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}
