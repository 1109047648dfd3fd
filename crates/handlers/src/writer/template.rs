//! The template writer: any file, rendered by minijinja from the member set. Covers haproxy,
//! Caddy, a Vert.x or Hazelcast member list, anything with a text configuration.
//!
//! The context holds `members` (the live members the writer selects, sorted by name),
//! `all_members` (every known member, any status) and `local` (this node). Each member has
//! `name`, `ip`, `addr` (`IP:PORT` of gossip), `gossip_port`, `port` (the service port: the
//! `port` tag, or the writer's `port_tag`, as a number from 1 to 65535; else the writer's
//! `default_port`; else none), `status`, `role` and `tags`. Undefined variables are errors,
//! so a typo fails the render instead of writing a half-empty file.
//!
//! What is safe as it is: `name` (letters, digits, `.`, `-`, `_`), `ip`, `addr`, the ports and
//! `status`. What is raw: `role` and every tag value, which a member chooses and which may
//! hold any printable character (`80; } upstream evil {`). Put them in a file through the
//! filters `nginx` (a quoted nginx string; a value with `$` fails the render), `shell` (a
//! single-quoted word) or `json` (a JSON string).

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};
use serde::Serialize;

use super::{Snapshot, WriterError, selected};
use crate::select::{Liveness, Selector};

#[derive(Serialize)]
struct M<'a> {
    name: &'a str,
    ip: String,
    addr: String,
    gossip_port: u16,
    port: Option<u16>,
    status: &'a str,
    role: &'a str,
    tags: &'a gossip_core::Tags,
}

/// Where a member's service port comes from.
#[derive(Debug, Clone)]
pub(super) struct PortSource {
    /// The tag holding it.
    pub(super) tag: String,
    /// The port of a member without the tag.
    pub(super) default: Option<u16>,
}

impl<'a> M<'a> {
    fn of(m: &'a gossip_core::MemberInfo, ports: &PortSource) -> Self {
        let port = match m.tags().get(&ports.tag) {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0),
            None => ports.default,
        };
        Self {
            name: m.name(),
            ip: m.addr().ip().to_string(),
            addr: m.addr().to_string(),
            gossip_port: m.addr().port(),
            port,
            status: m.status.as_str(),
            role: m.id.role().unwrap_or(""),
            tags: m.tags(),
        }
    }
}

/// `{{ v | nginx }}`: a double-quoted nginx string (`\` and `"` escaped). nginx expands `$` in
/// strings and has no escape for it, so a value holding `$` (or a control character) fails
/// the render: the writer keeps its last good file and logs why.
fn nginx_filter(v: Value) -> Result<String, Error> {
    let s = v.to_string();
    if let Some(c) = s.chars().find(|c| *c == '$' || c.is_control()) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{s:?} holds {c:?}, which cannot be written safely in nginx configuration"),
        ));
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// `{{ v | shell }}`: one single-quoted shell word.
fn shell_filter(v: Value) -> String {
    format!("'{}'", v.to_string().replace('\'', "'\\''"))
}

/// `{{ v | json }}`: a JSON string.
fn json_filter(v: Value) -> Result<String, Error> {
    serde_json::to_string(&v.to_string())
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

/// A loaded template.
pub(super) struct TemplateRender {
    env: Environment<'static>,
    selector: Selector,
    live: Liveness,
    ports: PortSource,
    order: super::Order,
}

impl TemplateRender {
    /// Renders `members` in `order` (name by default).
    pub(super) fn with_order(mut self, order: super::Order) -> Self {
        self.order = order;
        self
    }

    /// Loads and compiles `path`; a syntax error is reported here, at start.
    pub(super) fn load(
        path: &std::path::Path,
        selector: Selector,
        live: Liveness,
        ports: PortSource,
    ) -> Result<Self, String> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| format!("template {}: {e}", path.display()))?;
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.add_filter("nginx", nginx_filter);
        env.add_filter("shell", shell_filter);
        env.add_filter("json", json_filter);
        env.add_template_owned("t", source)
            .map_err(|e| format!("template {}: {e}", path.display()))?;
        Ok(Self {
            env,
            selector,
            live,
            ports,
            order: super::Order::Name,
        })
    }

    pub(super) fn render(&self, s: &Snapshot) -> Result<Vec<u8>, WriterError> {
        let mut all: Vec<&gossip_core::MemberInfo> = s.members.iter().collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        let of = |m| M::of(m, &self.ports);
        let members: Vec<M> =
            super::in_order(s, selected(s, &self.selector, self.live), self.order)
                .into_iter()
                .map(of)
                .collect();
        let all_members: Vec<M> = all.into_iter().map(of).collect();
        let local = s.members.iter().find(|m| m.id == s.local);
        let ctx = minijinja::context! {
            members => members,
            all_members => all_members,
            local => local.map(of),
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
    use gossip_core::{MemberInfo, Status};

    fn live() -> Liveness {
        Liveness {
            include_suspect: false,
        }
    }

    fn ports() -> PortSource {
        PortSource {
            tag: "port".into(),
            default: None,
        }
    }

    fn member(name: &str, ip: &str, tags: &[(&str, &str)]) -> MemberInfo {
        gossip_testkit::members::member(name, ip, tags, Status::Alive)
    }

    fn render(template: &str, members: Vec<MemberInfo>) -> Result<String, WriterError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.j2");
        std::fs::write(&p, template).unwrap();
        let local = members[0].id.clone();
        let r = TemplateRender::load(&p, Selector::all(), live(), ports()).unwrap();
        r.render(&Snapshot {
            members,
            local,
            index: 0,
            coordinates: Default::default(),
        })
        .map(|b| String::from_utf8(b).unwrap())
    }

    /// Issue 21, item 10: a hostile `port` tag cannot reach the output through `m.port`, and
    /// the filters quote raw values for their format.
    #[test]
    fn hostile_tag_values_are_escaped_or_refused() {
        let evil = "80; } upstream evil { server 6.6.6.6";
        let ms = vec![
            member("a", "10.0.0.1", &[("port", evil), ("note", "it's \"x\"")]),
            member("b", "10.0.0.2", &[("port", "8080"), ("note", "ok")]),
        ];
        let out = render(
            "{% for m in members if m.port %}server {{ m.ip }}:{{ m.port }};\n{% endfor %}",
            ms.clone(),
        )
        .unwrap();
        assert_eq!(
            out, "server 10.0.0.2:8080;\n",
            "the member with a bad port is left out"
        );
        let out = render(
            "{% for m in members %}{{ m.tags.note | shell }} {% endfor %}",
            ms.clone(),
        )
        .unwrap();
        assert_eq!(out, "'it'\\''s \"x\"' 'ok' ");
        let out = render(
            "{% for m in members %}{{ m.tags.note | json }} {% endfor %}",
            ms.clone(),
        )
        .unwrap();
        assert_eq!(out, "\"it's \\\"x\\\"\" \"ok\" ");
        let out = render(
            "{% for m in members %}{{ m.tags.port | nginx }} {% endfor %}",
            ms.clone(),
        )
        .unwrap();
        assert_eq!(out, "\"80; } upstream evil { server 6.6.6.6\" \"8080\" ");
        let dollar = vec![member("c", "10.0.0.3", &[("x", "$host")])];
        assert!(render("{{ all_members[0].tags.x | nginx }}", dollar).is_err());
    }

    #[test]
    fn renders_members_and_refuses_undefined() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.j2");
        std::fs::write(
            &p,
            "{% for m in members %}{{ m.name }} {{ m.ip }}:{{ m.tags.port }}\n{% endfor %}",
        )
        .unwrap();
        let mk = |n: &str, ip: &str| member(n, ip, &[("port", "81")]);
        let a = mk("b", "10.0.0.2");
        let s = Snapshot {
            members: vec![a.clone(), mk("a", "10.0.0.1")],
            local: a.id,
            index: 0,
            coordinates: Default::default(),
        };
        let r = TemplateRender::load(&p, Selector::all(), live(), ports()).unwrap();
        assert_eq!(
            String::from_utf8(r.render(&s).unwrap()).unwrap(),
            "a 10.0.0.1:81\nb 10.0.0.2:81\n"
        );
        std::fs::write(&p, "{{ nope }}").unwrap();
        let r = TemplateRender::load(&p, Selector::all(), live(), ports()).unwrap();
        assert!(r.render(&s).is_err());
        std::fs::write(&p, "{% for %}").unwrap();
        assert!(TemplateRender::load(&p, Selector::all(), live(), ports()).is_err());
    }
}
