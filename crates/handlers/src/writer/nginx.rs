//! The nginx writer: one `upstream NAME { server IP:PORT; ... }` block, for an `include` in
//! the nginx configuration.

use super::{Snapshot, selected, service_port};
use crate::select::{Liveness, Selector};

/// Renders the upstream block.
pub(super) struct NginxRender {
    pub(super) upstream: String,
    pub(super) selector: Selector,
    pub(super) live: Liveness,
    pub(super) port_tag: String,
    pub(super) default_port: u16,
    pub(super) server_params: Option<String>,
}

/// With no member, nginx still needs one server in the block: a placeholder marked `down`
/// keeps the configuration valid, and clients get `502 Bad Gateway` until a member arrives.
pub(super) const PLACEHOLDER: &str = "server 127.0.0.1:65535 down;";

impl NginxRender {
    pub(super) fn render(&self, s: &Snapshot) -> Vec<u8> {
        let params = self
            .server_params
            .as_deref()
            .map(|p| format!(" {p}"))
            .unwrap_or_default();
        let mut out = format!(
            "# Written by gossip-agent; rewritten whenever members change.\nupstream {} {{\n",
            self.upstream
        );
        let mut any = false;
        for m in selected(s, &self.selector, self.live) {
            let Some(port) = service_port(m, &self.port_tag, self.default_port) else {
                continue;
            };
            let addr = std::net::SocketAddr::new(m.addr().ip(), port);
            out.push_str(&format!("    server {addr}{params};  # {}\n", m.name()));
            any = true;
        }
        if !any {
            out.push_str(&format!("    {PLACEHOLDER}  # no member\n"));
        }
        out.push_str("}\n");
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::{MemberInfo, Status};

    fn m(name: &str, ip: &str, tags: &[(&str, &str)], status: Status) -> MemberInfo {
        gossip_testkit::members::member(name, ip, tags, status)
    }

    #[test]
    fn renders_selected_live_members_sorted_with_ports() {
        let local = m("proxy", "10.0.0.1", &[("role", "proxy")], Status::Alive);
        let s = Snapshot {
            members: vec![
                local.clone(),
                m(
                    "b",
                    "10.0.0.40",
                    &[("role", "app"), ("port", "9000")],
                    Status::Alive,
                ),
                m("a", "10.0.0.4", &[("role", "app")], Status::Alive),
                m("c", "10.0.0.5", &[("role", "app")], Status::Failed),
                m("d", "10.0.0.6", &[("role", "app")], Status::Suspect),
                m(
                    "e",
                    "10.0.0.7",
                    &[("role", "app"), ("port", "nope")],
                    Status::Alive,
                ),
            ],
            local: local.id,
            index: 0,
        };
        let r = NginxRender {
            upstream: "app".into(),
            selector: Selector::new([("role", "app")]).unwrap(),
            live: Liveness {
                include_suspect: false,
            },
            port_tag: "port".into(),
            default_port: 8080,
            server_params: Some("max_fails=1".into()),
        };
        let text = String::from_utf8(r.render(&s)).unwrap();
        assert_eq!(
            text,
            "# Written by gossip-agent; rewritten whenever members change.\nupstream app {\n    server 10.0.0.4:8080 max_fails=1;  # a\n    server 10.0.0.40:9000 max_fails=1;  # b\n}\n"
        );
        let empty = Snapshot {
            members: vec![],
            local: s.local.clone(),
            index: 0,
        };
        assert!(
            String::from_utf8(r.render(&empty))
                .unwrap()
                .contains(PLACEHOLDER)
        );
    }
}
