//! Writer configuration: a `[[writer]]` table in the config file, or `--writer KIND:K=V,...`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;

use super::{Engine, FileTarget, Reload, Writer, dnsmasq, hipache, nginx, template};
use crate::select::{Liveness, Selector};

/// The writer kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriterKind {
    /// An nginx `upstream` block.
    Nginx,
    /// hipache's redis list `frontend:<host>`.
    Hipache,
    /// A dnsmasq `addn-hosts` file.
    Dnsmasq,
    /// Any minijinja template.
    Template,
}

/// The order a writer renders members in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// By name (the default): the output changes only when members do.
    #[default]
    Name,
    /// By estimated round trip from this node (network coordinates), in steps of 0.1 ms,
    /// then by name; members without a coordinate yet come last.
    Nearest,
}

/// One writer. Which keys apply depends on `kind` (see the README); others are refused.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterConfig {
    /// The kind.
    pub kind: WriterKind,
    /// Output file (nginx, dnsmasq, template).
    pub path: Option<PathBuf>,
    /// Only members whose role matches this regex.
    pub role: Option<String>,
    /// Only members whose tags match these regexes.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Render suspect members too (default false).
    #[serde(default)]
    pub include_suspect: bool,
    /// Tag holding a member's service port (default `port`).
    pub port_tag: Option<String>,
    /// Port when the tag is absent.
    pub default_port: Option<u16>,
    /// nginx: the upstream name.
    pub upstream: Option<String>,
    /// nginx: parameters appended to every `server` line (e.g. `max_fails=1 fail_timeout=5s`).
    pub server_params: Option<String>,
    /// Command that checks the written file; on failure the previous file is put back.
    pub validate: Option<String>,
    /// Command that makes the program reread its configuration.
    pub reload: Option<String>,
    /// Instead of `reload`: a signal name (HUP, USR1, ...) sent to the pid in `pid_file`.
    pub reload_signal: Option<String>,
    /// The pid file for `reload_signal`.
    pub pid_file: Option<PathBuf>,
    /// Wait this long after a change before rendering, in ms (default 20).
    pub debounce_ms: Option<u64>,
    /// hipache: redis URL (default `redis://127.0.0.1:6379`).
    pub redis_url: Option<String>,
    /// hipache: the frontend host; the list is `frontend:<host>` (default `localhost`).
    pub frontend: Option<String>,
    /// hipache: element 0 of the list (default: the role, else `frontend`).
    pub identifier: Option<String>,
    /// hipache: URL scheme (default `http`).
    pub scheme: Option<String>,
    /// hipache: re-check the list this often even without changes, in seconds (default 5).
    pub reconcile_secs: Option<u64>,
    /// template: the template file.
    pub template: Option<PathBuf>,
    /// nginx, template: the order members are rendered in (default `name`).
    pub order: Option<Order>,
    /// nginx, with `order = "nearest"`: only the nearest this many are plain servers; the
    /// others are marked `backup` (nginx sends them traffic only when those are down).
    pub nearest: Option<usize>,
}

impl WriterConfig {
    /// Parses `KIND:K=V,K=V` (`tag.K=REGEX` for tag selectors).
    pub fn from_flag(s: &str) -> Result<Self, String> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        let mut table = toml::Table::new();
        table.insert("kind".into(), toml::Value::String(kind.to_string()));
        let mut tags = toml::Table::new();
        for kv in rest.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("writer option {kv:?} is not KEY=VALUE"))?;
            if let Some(t) = k.strip_prefix("tag.") {
                tags.insert(t.to_string(), toml::Value::String(v.to_string()));
                continue;
            }
            let value = match k {
                "default_port" | "debounce_ms" | "reconcile_secs" | "nearest" => {
                    toml::Value::Integer(
                        v.parse::<i64>()
                            .map_err(|_| format!("writer option {k}: {v:?} is not a number"))?,
                    )
                }
                "include_suspect" => toml::Value::Boolean(
                    v.parse::<bool>()
                        .map_err(|_| format!("writer option {k}: {v:?} is not true or false"))?,
                ),
                _ => toml::Value::String(v.to_string()),
            };
            table.insert(k.to_string(), value);
        }
        if !tags.is_empty() {
            table.insert("tags".into(), toml::Value::Table(tags));
        }
        let c: Self = table
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        c.check()?;
        Ok(c)
    }

    /// Checks that the keys fit the kind and required ones are there.
    pub fn check(&self) -> Result<(), String> {
        let kind = format!("{:?}", self.kind).to_lowercase();
        let file_kind = matches!(
            self.kind,
            WriterKind::Nginx | WriterKind::Dnsmasq | WriterKind::Template
        );
        let forbid = |set: bool, key: &str| {
            if set {
                Err(format!("{kind} writer: `{key}` does not apply"))
            } else {
                Ok(())
            }
        };
        if file_kind && self.path.is_none() {
            return Err(format!("{kind} writer: `path` is required"));
        }
        if self.kind == WriterKind::Nginx && self.upstream.is_none() {
            return Err("nginx writer: `upstream` is required".into());
        }
        if self.kind == WriterKind::Template && self.template.is_none() {
            return Err("template writer: `template` is required".into());
        }
        forbid(
            self.kind != WriterKind::Nginx && self.upstream.is_some(),
            "upstream",
        )?;
        forbid(
            self.kind != WriterKind::Nginx && self.server_params.is_some(),
            "server_params",
        )?;
        forbid(
            self.kind != WriterKind::Template && self.template.is_some(),
            "template",
        )?;
        forbid(
            matches!(self.kind, WriterKind::Dnsmasq | WriterKind::Hipache) && self.order.is_some(),
            "order",
        )?;
        forbid(
            self.kind != WriterKind::Nginx && self.nearest.is_some(),
            "nearest",
        )?;
        if self.nearest.is_some() && self.order != Some(Order::Nearest) {
            return Err("nginx writer: `nearest` needs `order = \"nearest\"`".into());
        }
        if self.nearest == Some(0) {
            return Err("nginx writer: `nearest` must be at least 1".into());
        }
        let hipache_only = [
            (self.redis_url.is_some(), "redis_url"),
            (self.frontend.is_some(), "frontend"),
            (self.identifier.is_some(), "identifier"),
            (self.scheme.is_some(), "scheme"),
            (self.reconcile_secs.is_some(), "reconcile_secs"),
        ];
        for (set, key) in hipache_only {
            forbid(self.kind != WriterKind::Hipache && set, key)?;
        }
        if !file_kind {
            forbid(self.path.is_some(), "path")?;
            forbid(self.validate.is_some(), "validate")?;
            forbid(self.reload.is_some(), "reload")?;
            forbid(self.reload_signal.is_some(), "reload_signal")?;
        }
        if self.reload.is_some() && self.reload_signal.is_some() {
            return Err(format!(
                "{kind} writer: give `reload` or `reload_signal`, not both"
            ));
        }
        if self.reload_signal.is_some() != self.pid_file.is_some() {
            return Err(format!(
                "{kind} writer: `reload_signal` and `pid_file` go together"
            ));
        }
        if let Some(s) = &self.reload_signal {
            parse_signal(s)?;
        }
        if let Some(u) = &self.upstream
            && (u.is_empty()
                || !u
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
        {
            return Err(format!("nginx writer: bad upstream name {u:?}"));
        }
        if let Some(p) = &self.server_params
            && p.chars().any(|c| matches!(c, ';' | '{' | '}' | '\n'))
        {
            return Err("nginx writer: `server_params` may not contain ; { } or newlines".into());
        }
        self.selector()?;
        Ok(())
    }

    fn selector(&self) -> Result<Selector, String> {
        let mut pairs: Vec<(&str, &str)> = self
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(r) = &self.role {
            pairs.push(("role", r.as_str()));
        }
        Selector::new(pairs).map_err(|e| e.to_string())
    }

    fn liveness(&self) -> Liveness {
        Liveness {
            include_suspect: self.include_suspect,
        }
    }

    fn port_tag(&self) -> String {
        self.port_tag.clone().unwrap_or_else(|| "port".into())
    }

    fn target(&self) -> Result<FileTarget, String> {
        let reload = match (&self.reload, &self.reload_signal, &self.pid_file) {
            (Some(cmd), _, _) => Reload::Command(cmd.clone()),
            (None, Some(sig), Some(pid)) => Reload::Signal {
                signal: parse_signal(sig)?,
                pid_file: pid.clone(),
            },
            _ => Reload::None,
        };
        Ok(FileTarget::new(
            self.path.clone().ok_or("path is required")?,
            self.validate.clone(),
            reload,
        ))
    }

    pub(super) fn build(&self) -> Result<Writer, String> {
        self.check()?;
        let selector = self.selector()?;
        let live = self.liveness();
        let debounce = Duration::from_millis(self.debounce_ms.unwrap_or(20));
        let (name, engine, reconcile) = match self.kind {
            WriterKind::Nginx => {
                let r = nginx::NginxRender {
                    upstream: self.upstream.clone().ok_or("upstream is required")?,
                    selector,
                    live,
                    port_tag: self.port_tag(),
                    default_port: self.default_port.unwrap_or(80),
                    server_params: self.server_params.clone(),
                    order: self.order.unwrap_or_default(),
                    nearest: self.nearest,
                };
                (
                    format!("nginx:{}", r.upstream),
                    Engine::File {
                        render: Box::new(move |s| Ok(r.render(s))),
                        target: self.target()?,
                    },
                    None,
                )
            }
            WriterKind::Dnsmasq => {
                let r = dnsmasq::DnsmasqRender { selector, live };
                (
                    "dnsmasq".to_string(),
                    Engine::File {
                        render: Box::new(move |s| Ok(r.render(s))),
                        target: self.target()?,
                    },
                    None,
                )
            }
            WriterKind::Template => {
                let path = self.template.clone().ok_or("template is required")?;
                let ports = template::PortSource {
                    tag: self.port_tag(),
                    default: self.default_port,
                };
                let r = template::TemplateRender::load(&path, selector, live, ports)?
                    .with_order(self.order.unwrap_or_default());
                (
                    format!("template:{}", path.display()),
                    Engine::File {
                        render: Box::new(move |s| r.render(s)),
                        target: self.target()?,
                    },
                    None,
                )
            }
            WriterKind::Hipache => {
                let h = hipache::HipacheWriter::new(hipache::HipacheConfig {
                    url: self
                        .redis_url
                        .clone()
                        .unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
                    key: format!(
                        "frontend:{}",
                        self.frontend.clone().unwrap_or_else(|| "localhost".into())
                    ),
                    identifier: self
                        .identifier
                        .clone()
                        .or_else(|| self.role.clone())
                        .unwrap_or_else(|| "frontend".into()),
                    scheme: self.scheme.clone().unwrap_or_else(|| "http".into()),
                    selector,
                    live,
                    port_tag: self.port_tag(),
                    default_port: self.default_port.unwrap_or(80),
                })?;
                (
                    format!("hipache:{}", h.key()),
                    Engine::Hipache(Box::new(h)),
                    Some(Duration::from_secs(self.reconcile_secs.unwrap_or(5).max(1))),
                )
            }
        };
        Ok(Writer {
            name,
            engine,
            debounce,
            reconcile,
        })
    }
}

/// A signal by name (`HUP`, `SIGHUP`, `hup`) or number (`1`).
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    if let Ok(n) = s.trim().parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("{s:?} is not a signal number"));
    }
    let name = s.trim().to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("unknown signal {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_checks() {
        let c = WriterConfig::from_flag(
            "nginx:path=/tmp/u.conf,upstream=app,role=appserver,default_port=8080,tag.zone=eu-.*,reload_signal=HUP,pid_file=/run/nginx.pid",
        )
        .unwrap();
        assert_eq!(c.kind, WriterKind::Nginx);
        assert_eq!(c.default_port, Some(8080));
        assert_eq!(c.tags.get("zone").unwrap(), "eu-.*");
        assert!(
            WriterConfig::from_flag("nginx:path=/x")
                .unwrap_err()
                .contains("upstream")
        );
        assert!(
            WriterConfig::from_flag("dnsmasq:path=/x,upstream=y")
                .unwrap_err()
                .contains("upstream")
        );
        assert!(
            WriterConfig::from_flag("hipache:path=/x")
                .unwrap_err()
                .contains("path")
        );
        assert!(WriterConfig::from_flag("nginx:path=/x,upstream=a,bogus=1").is_err());
        assert!(WriterConfig::from_flag("squid:path=/x").is_err());
        assert!(WriterConfig::from_flag("nginx:path=/x,upstream=a,reload_signal=HUP").is_err());
        assert!(WriterConfig::from_flag("nginx:path=/x,upstream=a;b").is_err());
        assert!(WriterConfig::from_flag("hipache:role=frontserver,default_port=8080").is_ok());
    }
}
