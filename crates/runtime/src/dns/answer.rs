//! What the DNS server answers, from the member table alone: a pure function of the query,
//! the members and the zone's settings (and a seed for the order of the records), so that
//! every case is tested without a socket.
//!
//! Names under the zone (`gossip.` by default), case-insensitive:
//!
//! | name | answer |
//! |---|---|
//! | `ROLE.DOMAIN`, `ROLE.role.DOMAIN` | A/AAAA of every alive, healthy member with that role; SRV too |
//! | `KEY-VALUE.ROLE.DOMAIN`, `KEY-VALUE.ROLE.role.DOMAIN` | the same, only members with tag KEY=VALUE |
//! | `_ROLE._tcp.DOMAIN` | SRV: `NAME.node.DOMAIN`, port from the member's `port` tag, A/AAAA as additional records |
//! | `NAME.node.DOMAIN` | that live member's address |
//! | `DOMAIN` | SOA |
//!
//! A role's members are the alive ones, or, when none is alive, the suspect ones: a member
//! that missed a probe leaves the answer at once (as it leaves the writers' files), yet a
//! role whose every member is suspect is still answered (a suspect is not yet judged
//! failed, and an empty answer would fail every client). A node name answers while its
//! member is alive or suspect. Healthy means no `health` tag, or `health=passing`. A name no member could match is NXDOMAIN; a known name asked for another
//! type is NOERROR with no answer; both carry the zone's SOA in the authority section. Any
//! name outside the zone is [`Outcome::Forward`]ed (or refused).

use std::net::IpAddr;

use gossip_core::{MemberInfo, Status};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// The zone the agent answers for.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The domain, lower case and fully qualified (`gossip.`).
    pub domain: Name,
    /// TTL of every record (and the SOA's minimum, for negative answers).
    pub ttl: u32,
    /// Whether names outside the zone are forwarded (recursion available) or refused.
    pub forwards: bool,
}

/// What to do with a query.
#[derive(Debug)]
pub enum Outcome {
    /// Send this answer.
    Answer(Message),
    /// Outside the zone: forward the query as it is.
    Forward,
}

/// The kind of answer, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Records (or NOERROR with none).
    Answered,
    /// NXDOMAIN.
    NxDomain,
    /// REFUSED, FORMERR, NOTIMP.
    Refused,
}

/// Answers `req` from `members`; `seed` orders the records.
///
/// `near`, when given, is the estimated round trip (seconds) from the asker to a member: A,
/// AAAA and SRV answers list members nearest first (in steps of 0.1 ms, equally near ones
/// shuffled, those without an estimate last).
pub fn answer(
    req: &Message,
    members: &[MemberInfo],
    zone: &Zone,
    seed: u64,
    near: Option<Near<'_>>,
) -> (Outcome, Kind) {
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = zone.forwards;
    if let Some(e) = &req.edns {
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(e.max_payload().clamp(512, 4096));
        resp.set_edns(edns);
    }
    let refuse = |mut resp: Message, code: ResponseCode| {
        resp.metadata.response_code = code;
        (Outcome::Answer(resp), Kind::Refused)
    };
    if req.metadata.message_type != MessageType::Query {
        return refuse(resp, ResponseCode::FormErr);
    }
    if req.metadata.op_code != OpCode::Query {
        return refuse(resp, ResponseCode::NotImp);
    }
    let [q] = req.queries.as_slice() else {
        return refuse(resp, ResponseCode::FormErr);
    };
    resp.add_query(q.clone());
    let qname = q.name().to_lowercase();
    if !zone.domain.zone_of(&qname) {
        if zone.forwards {
            return (Outcome::Forward, Kind::Answered);
        }
        return refuse(resp, ResponseCode::Refused);
    }
    resp.metadata.authoritative = true;
    let rel: Vec<String> = qname
        .iter()
        .take(qname.num_labels().saturating_sub(zone.domain.num_labels()) as usize)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let qtype = q.query_type();
    let soa = soa(zone);
    let rel: Vec<&str> = rel.iter().map(String::as_str).collect();
    let name = q.name().clone();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);

    let selected: Option<Vec<&MemberInfo>> = match rel.as_slice() {
        [] => {
            if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                resp.add_answer(soa);
            } else {
                resp.add_authority(soa);
            }
            return (Outcome::Answer(resp), Kind::Answered);
        }
        [node, "node"] => {
            let found: Vec<&MemberInfo> = members
                .iter()
                .filter(|m| m.name().eq_ignore_ascii_case(node) && m.status.is_live())
                .collect();
            if found.is_empty() { None } else { Some(found) }
        }
        [srv_role, "_tcp"] if srv_role.starts_with('_') && qtype != RecordType::SOA => {
            let role = &srv_role[1..];
            let mut ms = role_members(members, role, None);
            if let Some(v) = &mut ms {
                prefer_alive(v, RecordType::SRV);
                v.shuffle(&mut rng);
                nearest_first(v, near);
            }
            return match ms {
                None => negative(resp, soa, ResponseCode::NXDomain),
                Some(ms) if matches!(qtype, RecordType::SRV | RecordType::ANY) => {
                    add_srv(&mut resp, &name, &ms, zone);
                    (Outcome::Answer(resp), Kind::Answered)
                }
                Some(_) => negative(resp, soa, ResponseCode::NoError),
            };
        }
        [role] | [role, "role"] => role_members(members, role, None),
        [sel, role] | [sel, role, "role"] => match sel.split_once('-') {
            Some((k, v)) if !k.is_empty() => role_members(members, role, Some((k, v))),
            _ => None,
        },
        _ => None,
    };
    let Some(mut ms) = selected else {
        return negative(resp, soa, ResponseCode::NXDomain);
    };
    let is_node = rel.len() == 2 && rel[1] == "node";
    if !is_node {
        prefer_alive(&mut ms, qtype);
    }
    ms.shuffle(&mut rng);
    nearest_first(&mut ms, near);
    let mut any = false;
    for m in &ms {
        if let Some(r) = address_record(&name, m, qtype, zone.ttl) {
            resp.add_answer(r);
            any = true;
        }
    }
    if !is_node && matches!(qtype, RecordType::SRV) {
        add_srv(&mut resp, &name, &ms, zone);
        any = !resp.answers.is_empty();
    }
    if !any {
        resp.add_authority(soa);
    }
    (Outcome::Answer(resp), Kind::Answered)
}

/// The estimated round trip (seconds) from the asker to a member, when known.
pub type Near<'a> = &'a dyn Fn(&MemberInfo) -> Option<f64>;

/// A stable sort of `ms` by `near` in 0.1 ms steps, unknown last (nothing without `near`).
fn nearest_first(ms: &mut [&MemberInfo], near: Option<Near<'_>>) {
    if let Some(near) = near {
        ms.sort_by_key(|m| near(m).map_or(u64::MAX, |d| (d * 10_000.0).round() as u64));
    }
}

fn negative(mut resp: Message, soa: Record, code: ResponseCode) -> (Outcome, Kind) {
    resp.metadata.response_code = code;
    resp.add_authority(soa);
    let kind = if code == ResponseCode::NXDomain {
        Kind::NxDomain
    } else {
        Kind::Answered
    };
    (Outcome::Answer(resp), kind)
}

/// Live, healthy members with `role` (and the tag `sel`), or `None` when no member listed
/// at all has that role and tag (the name does not exist).
fn role_members<'a>(
    members: &'a [MemberInfo],
    role: &str,
    sel: Option<(&str, &str)>,
) -> Option<Vec<&'a MemberInfo>> {
    let matching: Vec<&MemberInfo> = members
        .iter()
        .filter(|m| {
            m.tags()
                .get("role")
                .is_some_and(|r| r.eq_ignore_ascii_case(role))
        })
        .filter(|m| {
            sel.is_none_or(|(k, v)| {
                m.tags()
                    .iter()
                    .any(|(tk, tv)| tk.eq_ignore_ascii_case(k) && tv.eq_ignore_ascii_case(v))
            })
        })
        .collect();
    if matching.is_empty() {
        return None;
    }
    Some(
        matching
            .into_iter()
            .filter(|m| m.status.is_live())
            .filter(|m| m.tags().get("health").is_none_or(|h| h == "passing"))
            .collect(),
    )
}

/// Drops the suspect members of `ms` when an alive one gives a record of `qtype` (an IPv4
/// address for A, IPv6 for AAAA, a port for SRV): suspects answer only in place of nobody.
fn prefer_alive(ms: &mut Vec<&MemberInfo>, qtype: RecordType) {
    let gives = |m: &MemberInfo| match qtype {
        RecordType::A => m.addr().is_ipv4(),
        RecordType::AAAA => m.addr().is_ipv6(),
        RecordType::SRV => m
            .tags()
            .get("port")
            .is_some_and(|p| p.parse::<u16>().is_ok()),
        _ => true,
    };
    if ms.iter().any(|m| m.status == Status::Alive && gives(m)) {
        ms.retain(|m| m.status == Status::Alive);
    }
}

/// The A or AAAA record of `m` under `name`, when its address is of the type asked for.
fn address_record(name: &Name, m: &MemberInfo, qtype: RecordType, ttl: u32) -> Option<Record> {
    let rdata = match (m.addr().ip(), qtype) {
        (IpAddr::V4(ip), RecordType::A | RecordType::ANY) => RData::A(A(ip)),
        (IpAddr::V6(ip), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(ip)),
        _ => return None,
    };
    Some(Record::from_rdata(name.clone(), ttl, rdata))
}

/// `NAME.node.DOMAIN`.
fn node_name(m: &MemberInfo, zone: &Zone) -> Option<Name> {
    Name::from_ascii(m.name())
        .ok()?
        .append_domain(
            &Name::from_ascii("node")
                .ok()?
                .append_domain(&zone.domain)
                .ok()?,
        )
        .ok()
}

/// SRV records for the members with a valid `port` tag, their addresses as additional records.
fn add_srv(resp: &mut Message, name: &Name, ms: &[&MemberInfo], zone: &Zone) {
    for m in ms {
        let Some(port) = m.tags().get("port").and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        let Some(target) = node_name(m, zone) else {
            continue;
        };
        resp.add_answer(Record::from_rdata(
            name.clone(),
            zone.ttl,
            RData::SRV(SRV::new(1, 1, port, target.clone())),
        ));
        if let Some(r) = address_record(&target, m, RecordType::ANY, zone.ttl) {
            resp.add_additional(r);
        }
    }
}

/// The zone's SOA.
pub fn soa(zone: &Zone) -> Record {
    let sub = |l: &str| {
        Name::from_ascii(l)
            .and_then(|n| n.append_domain(&zone.domain))
            .unwrap_or_else(|_| zone.domain.clone())
    };
    Record::from_rdata(
        zone.domain.clone(),
        zone.ttl,
        RData::SOA(SOA::new(
            sub("ns"),
            sub("hostmaster"),
            1,
            3600,
            600,
            86400,
            zone.ttl,
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::NodeId;
    use hickory_proto::op::{Edns, Query};

    fn m(name: &str, ip: &str, status: Status, tags: &[(&str, &str)]) -> MemberInfo {
        let tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let id = NodeId::new(
            name,
            SocketAddr::new(ip.parse().unwrap(), 7946),
            1,
            tags,
            &gossip_core::identity::Limits::default(),
        )
        .unwrap();
        MemberInfo { id, status }
    }

    use std::net::SocketAddr;

    fn fleet() -> Vec<MemberInfo> {
        vec![
            m(
                "web1",
                "10.0.0.1",
                Status::Alive,
                &[("role", "web"), ("port", "80"), ("zone", "eu")],
            ),
            m(
                "web2",
                "10.0.0.2",
                Status::Suspect,
                &[("role", "web"), ("port", "8080"), ("zone", "us")],
            ),
            m(
                "web3",
                "10.0.0.3",
                Status::Failed,
                &[("role", "web"), ("port", "80")],
            ),
            m(
                "web4",
                "10.0.0.4",
                Status::Alive,
                &[("role", "web"), ("health", "critical")],
            ),
            m(
                "web6",
                "fd00::6",
                Status::Alive,
                &[("role", "web"), ("health", "passing")],
            ),
            m("db1", "10.0.0.9", Status::Left, &[("role", "db")]),
        ]
    }

    fn zone() -> Zone {
        Zone {
            domain: Name::from_ascii("gossip.").unwrap(),
            ttl: 0,
            forwards: true,
        }
    }

    fn ask(name: &str, t: RecordType) -> (Outcome, Kind) {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        answer(&q, &fleet(), &zone(), 7, None)
    }

    fn reply(name: &str, t: RecordType) -> Message {
        match ask(name, t).0 {
            Outcome::Answer(m) => m,
            Outcome::Forward => panic!("{name} forwarded"),
        }
    }

    fn ips(m: &Message) -> Vec<String> {
        let mut v: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                RData::AAAA(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_role_is_its_alive_healthy_members() {
        for name in ["web.gossip.", "WEB.Gossip.", "web.role.gossip."] {
            let r = reply(name, RecordType::A);
            assert_eq!(r.metadata.response_code, ResponseCode::NoError);
            assert!(r.metadata.authoritative);
            assert_eq!(ips(&r), ["10.0.0.1"], "{name}: not the suspect web2");
            assert!(r.answers.iter().all(|a| a.ttl == 0));
        }
        assert_eq!(ips(&reply("web.gossip.", RecordType::AAAA)), ["fd00::6"]);
        let both = reply("web.gossip.", RecordType::ANY);
        assert_eq!(ips(&both).len(), 2);
    }

    #[test]
    fn suspects_answer_only_when_no_member_is_alive() {
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("web.gossip.").unwrap(),
            RecordType::A,
        ));
        let mut members = fleet();
        for m in &mut members {
            if m.id.name() == "web1" {
                m.status = Status::Suspect;
            }
        }
        let Outcome::Answer(r) = answer(&q, &members, &zone(), 7, None).0 else {
            panic!()
        };
        // No IPv4 member is alive: the suspects answer A (the alive IPv6 one gives none).
        assert_eq!(ips(&r), ["10.0.0.1", "10.0.0.2"]);
        // For any type, the alive IPv6 member answers alone.
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("web.gossip.").unwrap(),
            RecordType::ANY,
        ));
        let Outcome::Answer(r) = answer(&q, &members, &zone(), 7, None).0 else {
            panic!()
        };
        assert_eq!(ips(&r), ["fd00::6"]);
    }

    #[test]
    fn tag_selection_and_nodes() {
        assert_eq!(
            ips(&reply("zone-eu.web.gossip.", RecordType::A)),
            ["10.0.0.1"]
        );
        assert_eq!(
            ips(&reply("zone-us.web.role.gossip.", RecordType::A)),
            ["10.0.0.2"]
        );
        assert_eq!(
            ips(&reply("web2.node.gossip.", RecordType::A)),
            ["10.0.0.2"]
        );
        // A failed node is not answered; an unknown tag value is no name at all.
        for name in [
            "web3.node.gossip.",
            "nobody.node.gossip.",
            "zone-asia.web.gossip.",
        ] {
            let (o, k) = ask(name, RecordType::A);
            let Outcome::Answer(r) = o else { panic!() };
            assert_eq!(
                (r.metadata.response_code, k),
                (ResponseCode::NXDomain, Kind::NxDomain),
                "{name}"
            );
            assert!(
                matches!(r.authorities[0].data, RData::SOA(_)),
                "{name}: SOA"
            );
        }
    }

    #[test]
    fn unknown_names_are_nxdomain_and_known_ones_of_another_type_are_empty() {
        let r = reply("cache.gossip.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        // db has only a left member: the name exists, with nothing in it.
        let r = reply("db.gossip.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert!(matches!(r.authorities[0].data, RData::SOA(_)));
        let r = reply("web.gossip.", RecordType::MX);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty() && !r.authorities.is_empty());
        let r = reply("gossip.", RecordType::SOA);
        assert!(matches!(r.answers[0].data, RData::SOA(_)));
    }

    #[test]
    fn srv_names_the_nodes_with_their_port_and_adds_their_addresses() {
        for name in ["_web._tcp.gossip.", "web.gossip."] {
            let r = reply(name, RecordType::SRV);
            let mut srv: Vec<(String, u16)> = r
                .answers
                .iter()
                .filter_map(|a| match &a.data {
                    RData::SRV(s) => Some((s.target.to_ascii(), s.port)),
                    _ => None,
                })
                .collect();
            srv.sort();
            assert_eq!(
                srv,
                [("web1.node.gossip.".to_string(), 80)],
                "{name}: not the suspect web2"
            );
            assert_eq!(
                r.additionals.len(),
                1,
                "{name}: addresses as additional records"
            );
        }
        assert_eq!(
            reply("_cache._tcp.gossip.", RecordType::SRV)
                .metadata
                .response_code,
            ResponseCode::NXDomain
        );
    }

    #[test]
    fn the_order_changes_from_answer_to_answer() {
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("web.gossip.").unwrap(),
            RecordType::ANY,
        ));
        let order = |seed| match answer(&q, &fleet(), &zone(), seed, None).0 {
            Outcome::Answer(m) => m
                .answers
                .iter()
                .map(|a| format!("{:?}", a.data))
                .collect::<Vec<_>>(),
            Outcome::Forward => panic!(),
        };
        let first = order(0);
        assert!((1..20).any(|s| order(s) != first), "always {first:?}");
    }

    #[test]
    fn other_names_are_forwarded_or_refused() {
        assert!(matches!(
            ask("example.com.", RecordType::A).0,
            Outcome::Forward
        ));
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("example.com.").unwrap(),
            RecordType::A,
        ));
        let z = Zone {
            forwards: false,
            ..zone()
        };
        let Outcome::Answer(r) = answer(&q, &fleet(), &z, 1, None).0 else {
            panic!()
        };
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        // EDNS is answered with EDNS.
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("web.gossip.").unwrap(),
            RecordType::A,
        ));
        let mut e = Edns::new();
        e.set_max_payload(1232);
        q.set_edns(e);
        let Outcome::Answer(r) = answer(&q, &fleet(), &zone(), 1, None).0 else {
            panic!()
        };
        assert_eq!(r.edns.map(|e| e.max_payload()), Some(1232));
    }
}
