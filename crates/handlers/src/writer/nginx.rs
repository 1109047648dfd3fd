//! The nginx writer: one `upstream NAME { server IP:PORT; ... }` block, for an `include` in
//! the nginx configuration.

use super::{Order, Snapshot, in_order, selected, service_port};
use crate::select::{Liveness, Selector};

/// Renders the upstream block.
pub(super) struct NginxRender {
    pub(super) upstream: String,
    pub(super) selector: Selector,
    pub(super) live: Liveness,
    pub(super) port_tag: String,
    pub(super) default_port: u16,
    pub(super) server_params: Option<String>,
    pub(super) order: Order,
    /// With [`Order::Nearest`]: servers past this many are `backup`.
    pub(super) nearest: Option<usize>,
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
        let mut any = 0;
        for m in in_order(s, selected(s, &self.selector, self.live), self.order) {
            let Some(port) = service_port(m, &self.port_tag, self.default_port) else {
                continue;
            };
            let addr = std::net::SocketAddr::new(m.addr().ip(), port);
            let backup = if self.nearest.is_some_and(|k| any >= k) {
                " backup"
            } else {
                ""
            };
            out.push_str(&format!(
                "    server {addr}{params}{backup};  # {}\n",
                m.name()
            ));
            any += 1;
        }
        let any = any > 0;
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
            coordinates: Default::default(),
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
            order: Order::Name,
            nearest: None,
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
            coordinates: Default::default(),
        };
        assert!(
            String::from_utf8(r.render(&empty))
                .unwrap()
                .contains(PLACEHOLDER)
        );
    }

    #[test]
    fn nearest_first_and_the_rest_as_backup() {
        use gossip_core::Coordinate;
        let local = m("proxy", "10.0.0.1", &[("role", "proxy")], Status::Alive);
        let at = |x: f64| {
            let mut c = Coordinate::new(&Default::default());
            c.vec[0] = x;
            c
        };
        let coords = [
            ("proxy", 0.0),
            ("far", 0.080),
            ("near", 0.002),
            ("mid", 0.030),
        ];
        let s = Snapshot {
            members: vec![
                local.clone(),
                m("far", "10.0.0.2", &[("role", "app")], Status::Alive),
                m("near", "10.0.0.3", &[("role", "app")], Status::Alive),
                m("mid", "10.0.0.4", &[("role", "app")], Status::Alive),
                m("unknown", "10.0.0.5", &[("role", "app")], Status::Alive),
            ],
            local: local.id,
            index: 0,
            coordinates: std::sync::Arc::new(
                coords
                    .iter()
                    .map(|(n, x)| (n.to_string(), at(*x)))
                    .collect(),
            ),
        };
        let r = NginxRender {
            upstream: "app".into(),
            selector: Selector::new([("role", "app")]).unwrap(),
            live: Liveness {
                include_suspect: false,
            },
            port_tag: "port".into(),
            default_port: 80,
            server_params: None,
            order: Order::Nearest,
            nearest: Some(1),
        };
        let text = String::from_utf8(r.render(&s)).unwrap();
        let servers: Vec<&str> = text.lines().filter(|l| l.contains("server")).collect();
        assert_eq!(
            servers,
            [
                "    server 10.0.0.3:80;  # near",
                "    server 10.0.0.4:80 backup;  # mid",
                "    server 10.0.0.2:80 backup;  # far",
                "    server 10.0.0.5:80 backup;  # unknown",
            ]
        );
    }
}
