//! The dnsmasq writer: an `addn-hosts` file with `ADDR ROLE` and `ADDR NODE` for each live
//! member (as the serf-solution demo writes), so the role name resolves to every member that
//! has it. dnsmasq rereads it on SIGHUP (`reload_signal = "HUP"`).

use super::{Snapshot, selected};
use crate::select::{Liveness, Selector};

/// Renders the hosts file.
pub(super) struct DnsmasqRender {
    pub(super) selector: Selector,
    pub(super) live: Liveness,
}

impl DnsmasqRender {
    pub(super) fn render(&self, s: &Snapshot) -> Vec<u8> {
        let mut out =
            String::from("# Written by gossip-agent; rewritten whenever members change.\n");
        for m in selected(s, &self.selector, self.live) {
            let ip = m.addr().ip();
            if let Some(role) = m.id.role().filter(|r| is_hostname(r)) {
                out.push_str(&format!("{ip} {role}\n"));
            }
            out.push_str(&format!("{ip} {}\n", m.name()));
        }
        out.into_bytes()
    }
}

/// Only what a hosts file can hold as a name (names are already restricted; roles are tags).
fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::Status;
    use gossip_testkit::members::member;

    #[test]
    fn role_and_name_lines() {
        let mk = |n: &str, ip: &str, role: &str| member(n, ip, &[("role", role)], Status::Alive);
        let a = mk("app1", "10.0.0.4", "appserver");
        let s = Snapshot {
            members: vec![a.clone(), mk("evil", "10.0.0.9", "x y;$(rm)")],
            local: a.id,
            index: 0,
            coordinates: Default::default(),
        };
        let r = DnsmasqRender {
            selector: Selector::all(),
            live: Liveness {
                include_suspect: false,
            },
        };
        let text = String::from_utf8(r.render(&s)).unwrap();
        assert!(
            text.ends_with("10.0.0.4 appserver\n10.0.0.4 app1\n10.0.0.9 evil\n"),
            "{text}"
        );
    }
}
