//! The template writer: any file, rendered by minijinja from the member set. Covers haproxy,
//! Caddy, a Vert.x or Hazelcast member list, anything with a text configuration.
//!
//! The context holds `members` (the live members the writer selects, sorted by name),
//! `all_members` (every known member, any status) and `local` (this node). Each member has
//! `name`, `ip`, `addr` (`IP:PORT` of gossip), `port` (gossip port), `status`, `role` and
//! `tags`. Undefined variables are errors, so a typo fails the render instead of writing a
//! half-empty file.

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use super::{Snapshot, WriterError, selected};
use crate::select::{Liveness, Selector};

#[derive(Serialize)]
struct M<'a> {
    name: &'a str,
    ip: String,
    addr: String,
    port: u16,
    status: &'a str,
    role: &'a str,
    tags: &'a gossip_core::Tags,
}

impl<'a> M<'a> {
    fn of(m: &'a gossip_core::MemberInfo) -> Self {
        Self {
            name: m.name(),
            ip: m.addr().ip().to_string(),
            addr: m.addr().to_string(),
            port: m.addr().port(),
            status: m.status.as_str(),
            role: m.id.role().unwrap_or(""),
            tags: m.tags(),
        }
    }
}

/// A loaded template.
pub(super) struct TemplateRender {
    env: Environment<'static>,
    selector: Selector,
    live: Liveness,
}

impl TemplateRender {
    /// Loads and compiles `path`; a syntax error is reported here, at start.
    pub(super) fn load(
        path: &std::path::Path,
        selector: Selector,
        live: Liveness,
    ) -> Result<Self, String> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| format!("template {}: {e}", path.display()))?;
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.add_template_owned("t", source)
            .map_err(|e| format!("template {}: {e}", path.display()))?;
        Ok(Self {
            env,
            selector,
            live,
        })
    }

    pub(super) fn render(&self, s: &Snapshot) -> Result<Vec<u8>, WriterError> {
        let mut all: Vec<&gossip_core::MemberInfo> = s.members.iter().collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        let members: Vec<M> = selected(s, &self.selector, self.live)
            .into_iter()
            .map(M::of)
            .collect();
        let all_members: Vec<M> = all.into_iter().map(M::of).collect();
        let local = s.members.iter().find(|m| m.id == s.local);
        let ctx = minijinja::context! {
            members => members,
            all_members => all_members,
            local => local.map(M::of),
        };
        self.env
            .get_template("t")
            .and_then(|t| t.render(ctx))
            .map(String::into_bytes)
            .map_err(|e| WriterError::Render(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::{Limits, MemberInfo, NodeId, Status, Tags};

    #[test]
    fn renders_members_and_refuses_undefined() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.j2");
        std::fs::write(
            &p,
            "{% for m in members %}{{ m.name }} {{ m.ip }}:{{ m.tags.port }}\n{% endfor %}",
        )
        .unwrap();
        let mk = |n: &str, ip: &str| MemberInfo {
            id: NodeId::new(
                n,
                format!("{ip}:7946").parse().unwrap(),
                1,
                Tags::from([("port".to_string(), "81".to_string())]),
                &Limits::default(),
            )
            .unwrap(),
            status: Status::Alive,
        };
        let a = mk("b", "10.0.0.2");
        let s = Snapshot {
            members: vec![a.clone(), mk("a", "10.0.0.1")],
            local: a.id,
        };
        let r = TemplateRender::load(
            &p,
            Selector::all(),
            Liveness {
                include_suspect: false,
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(r.render(&s).unwrap()).unwrap(),
            "a 10.0.0.1:81\nb 10.0.0.2:81\n"
        );
        std::fs::write(&p, "{{ nope }}").unwrap();
        let r = TemplateRender::load(
            &p,
            Selector::all(),
            Liveness {
                include_suspect: false,
            },
        )
        .unwrap();
        assert!(r.render(&s).is_err());
        std::fs::write(&p, "{% for %}").unwrap();
        assert!(
            TemplateRender::load(
                &p,
                Selector::all(),
                Liveness {
                    include_suspect: false
                }
            )
            .is_err()
        );
    }
}
