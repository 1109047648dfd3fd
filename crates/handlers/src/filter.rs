//! Serf's event handler specification, `[FILTER=]SCRIPT`, and the events a handler receives.
//!
//! `FILTER` is a comma-separated list of: `member-join`, `member-leave`, `member-failed`,
//! `member-update`, `member-reap`, `member` (all five), `user`, `user:NAME`, `query`,
//! `query:NAME`, or `*` (everything). Going beyond Serf (serf#321), a member item may carry a
//! selector on the *member's* tags in brackets, conditions joined by `&`, each value an
//! anchored regular expression:
//!
//! ```text
//! member-join[role=appserver]=/etc/reload.sh
//! member[role=appserver&zone=eu-.*]=/usr/local/bin/refresh-upstreams
//! ```
//!
//! Serf splits at the first `=`; so do we, but only when what comes before it parses as a
//! filter, so `FOO=1 ./script.sh` is the script `FOO=1 ./script.sh`, not the filter `FOO`.

use gossip_core::{EventKind, MemberInfo};

use crate::select::Selector;

/// Which events a filter item accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Accept {
    Any,
    Member(Option<EventKind>),
    User(Option<String>),
    Query(Option<String>),
}

#[derive(Debug, Clone)]
struct Item {
    accept: Accept,
    selector: Selector,
}

/// A parsed `--event-handler` value.
#[derive(Debug, Clone)]
pub struct HandlerSpec {
    /// The value as given.
    pub raw: String,
    /// The shell command line, run with `/bin/sh -c`.
    pub script: String,
    filter: EventFilter,
}

/// A filter alone, as Serf's RPC `stream` takes it: `*`, `member-join,user:deploy`, ... (the
/// `FILTER` part of a handler specification, with the same member selectors).
#[derive(Debug, Clone)]
pub struct EventFilter {
    items: Vec<Item>,
}

impl EventFilter {
    /// Parses a filter; an empty one accepts everything, as Serf's does.
    pub fn parse(f: &str) -> Result<Self, String> {
        if f.trim().is_empty() {
            return Ok(Self { items: vec![any()] });
        }
        parse_filter(f).map(|items| Self { items })
    }

    /// True when a member event of `kind` about `m` passes.
    pub fn accepts_member(&self, kind: EventKind, m: &MemberInfo) -> bool {
        self.items.iter().any(|it| {
            let kind_ok = match &it.accept {
                Accept::Any => true,
                Accept::Member(k) => k.is_none_or(|k| k == kind),
                _ => false,
            };
            kind_ok && it.selector.matches(m)
        })
    }

    /// True when a user event named `name` passes.
    pub fn accepts_user(&self, name: &str) -> bool {
        self.items.iter().any(|it| match &it.accept {
            Accept::Any => true,
            Accept::User(n) => n.as_deref().is_none_or(|n| n == name),
            _ => false,
        })
    }

    /// True when a query named `name` passes.
    pub fn accepts_query(&self, name: &str) -> bool {
        self.items.iter().any(|it| match &it.accept {
            Accept::Any => true,
            Accept::Query(n) => n.as_deref().is_none_or(|n| n == name),
            _ => false,
        })
    }
}

/// An event, as handlers see it.
#[derive(Debug, Clone)]
pub enum Event {
    /// Members that changed in the same way (one invocation, one stdin line each).
    Members {
        /// What happened.
        kind: EventKind,
        /// To whom.
        members: Vec<MemberInfo>,
    },
    /// A cluster-wide user event.
    User {
        /// Its name.
        name: String,
        /// Its Lamport time.
        ltime: u64,
        /// Its payload.
        payload: Vec<u8>,
        /// Serf's coalesce flag: handlers that fall behind get only the newest event of this
        /// name (all events of the newest time).
        coalesce: bool,
    },
    /// A query: the first matching handler that exits 0 answers with its stdout.
    Query {
        /// Its name.
        name: String,
        /// Its Lamport time.
        ltime: u64,
        /// Its payload.
        payload: Vec<u8>,
        /// Where the answer goes.
        reply: QueryReply,
    },
}

/// The one-shot channel a query's answer goes back through: the first handler to take it
/// answers, later ones find it gone.
#[derive(Clone, Default)]
pub struct QueryReply(
    std::sync::Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Vec<u8>>>>>,
);

impl QueryReply {
    /// A reply channel and its receiving end.
    pub fn new() -> (Self, tokio::sync::oneshot::Receiver<Vec<u8>>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (
            Self(std::sync::Arc::new(std::sync::Mutex::new(Some(tx)))),
            rx,
        )
    }

    /// Sends `answer` if no handler answered yet; true when this one did.
    pub fn answer(&self, answer: Vec<u8>) -> bool {
        let tx = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        tx.is_some_and(|tx| tx.send(answer).is_ok())
    }
}

impl std::fmt::Debug for QueryReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryReply")
    }
}

impl HandlerSpec {
    /// Parses `[FILTER=]SCRIPT`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (items, script) = match split_spec(raw) {
            Some((f, s)) => match parse_filter(f) {
                Ok(items) => (items, s),
                Err(e) if looks_like_filter(f) => return Err(e),
                Err(_) => (vec![any()], raw),
            },
            None => (vec![any()], raw),
        };
        let script = script.trim();
        if script.is_empty() {
            return Err(format!("event handler {raw:?} has no script"));
        }
        Ok(Self {
            raw: raw.to_string(),
            script: script.to_string(),
            filter: EventFilter { items },
        })
    }

    /// The part of `event` this handler should see, or `None` when it should not run. For
    /// member events that is the members its filter selects.
    pub fn accept(&self, event: &Event) -> Option<Event> {
        let f = &self.filter;
        match event {
            Event::Members { kind, members } => {
                let selected: Vec<MemberInfo> = members
                    .iter()
                    .filter(|m| f.accepts_member(*kind, m))
                    .cloned()
                    .collect();
                (!selected.is_empty()).then_some(Event::Members {
                    kind: *kind,
                    members: selected,
                })
            }
            Event::User { name, .. } => f.accepts_user(name).then(|| event.clone()),
            Event::Query { name, .. } => f.accepts_query(name).then(|| event.clone()),
        }
    }

    /// The filter part: what Serf's `stats` lists a handler under (`*` when none was given).
    pub fn filter_text(&self) -> &str {
        match split_spec(&self.raw) {
            Some((f, s)) if s.trim() == self.script => f,
            _ => "*",
        }
    }
}

/// Splits at the first `=` outside `[...]`.
fn split_spec(raw: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    for (i, c) in raw.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '=' if depth == 0 => return Some((&raw[..i], &raw[i + 1..])),
            _ => {}
        }
    }
    None
}

fn any() -> Item {
    Item {
        accept: Accept::Any,
        selector: Selector::all(),
    }
}

/// True when the text before `=` is meant as a filter (so a parse error is reported rather
/// than taken for part of the script).
fn looks_like_filter(f: &str) -> bool {
    let head = f.split([',', '[']).next().unwrap_or("");
    head == "*"
        || head == "member"
        || head.starts_with("member-")
        || head.starts_with("user")
        || head.starts_with("query")
}

fn parse_filter(f: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    for part in split_outside_brackets(f)? {
        let (name, selector) = match part.split_once('[') {
            Some((n, rest)) => {
                let inner = rest
                    .strip_suffix(']')
                    .ok_or_else(|| format!("unclosed '[' in filter item {part:?}"))?;
                let mut pairs = Vec::new();
                for cond in inner.split('&') {
                    let (k, v) = cond
                        .split_once('=')
                        .ok_or_else(|| format!("selector {cond:?} in {part:?} is not KEY=REGEX"))?;
                    pairs.push((k.trim(), v.trim()));
                }
                (n, Selector::new(pairs).map_err(|e| e.to_string())?)
            }
            None => (part, Selector::all()),
        };
        let accept = match name.trim() {
            "*" => Accept::Any,
            "member" => Accept::Member(None),
            "member-join" => Accept::Member(Some(EventKind::Join)),
            "member-leave" => Accept::Member(Some(EventKind::Leave)),
            "member-failed" => Accept::Member(Some(EventKind::Failed)),
            "member-update" => Accept::Member(Some(EventKind::Update)),
            "member-reap" => Accept::Member(Some(EventKind::Reap)),
            "user" => Accept::User(None),
            "query" => Accept::Query(None),
            other => match other.split_once(':') {
                Some(("user", n)) if !n.is_empty() => Accept::User(Some(n.to_string())),
                Some(("query", n)) if !n.is_empty() => Accept::Query(Some(n.to_string())),
                _ => return Err(format!("unknown event type {other:?} in handler filter")),
            },
        };
        if !selector.is_all() && !matches!(accept, Accept::Member(_)) {
            return Err(format!(
                "a [selector] applies to member events only, not {name:?}"
            ));
        }
        items.push(Item { accept, selector });
    }
    Ok(items)
}

fn split_outside_brackets(f: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in f.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&f[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!("unbalanced ']' in filter {f:?}"));
        }
    }
    out.push(&f[start..]);
    if out.iter().any(|p| p.trim().is_empty()) {
        return Err(format!("empty item in filter {f:?}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::Status;

    fn m(name: &str, role: &str) -> MemberInfo {
        gossip_testkit::members::member(name, "10.0.0.1", &[("role", role)], Status::Alive)
    }

    fn members(kind: EventKind) -> Event {
        Event::Members {
            kind,
            members: vec![m("a", "appserver"), m("f", "frontserver")],
        }
    }

    fn names(e: Option<Event>) -> Vec<String> {
        match e {
            Some(Event::Members { members, .. }) => {
                members.iter().map(|m| m.name().to_string()).collect()
            }
            _ => vec![],
        }
    }

    #[test]
    fn serf_forms() {
        let h = HandlerSpec::parse("handler.sh").unwrap();
        assert_eq!(h.script, "handler.sh");
        assert_eq!(names(h.accept(&members(EventKind::Join))).len(), 2);
        let h = HandlerSpec::parse("member-leave,member-failed=./gone.sh arg").unwrap();
        assert_eq!(h.script, "./gone.sh arg");
        assert!(h.accept(&members(EventKind::Join)).is_none());
        assert!(h.accept(&members(EventKind::Failed)).is_some());
        let user = Event::User {
            name: "deploy".into(),
            ltime: 1,
            payload: vec![],
            coalesce: true,
        };
        assert!(
            HandlerSpec::parse("user:deploy=x")
                .unwrap()
                .accept(&user)
                .is_some()
        );
        assert!(
            HandlerSpec::parse("user:other=x")
                .unwrap()
                .accept(&user)
                .is_none()
        );
        assert!(
            HandlerSpec::parse("user=x")
                .unwrap()
                .accept(&user)
                .is_some()
        );
        assert!(
            HandlerSpec::parse("member-join=x")
                .unwrap()
                .accept(&user)
                .is_none()
        );
    }

    #[test]
    fn member_selectors_go_beyond_serf() {
        let h = HandlerSpec::parse("member-join[role=app.*],member-leave=x").unwrap();
        assert_eq!(names(h.accept(&members(EventKind::Join))), ["a"]);
        assert_eq!(names(h.accept(&members(EventKind::Leave))), ["a", "f"]);
        let h = HandlerSpec::parse("member[role=frontserver&role=front.*]=x").unwrap();
        assert_eq!(names(h.accept(&members(EventKind::Update))), ["f"]);
        let h = HandlerSpec::parse("member[role=nothing]=x").unwrap();
        assert!(
            h.accept(&members(EventKind::Join)).is_none(),
            "no selected member, no run"
        );
    }

    #[test]
    fn scripts_with_equals_and_bad_filters() {
        let h = HandlerSpec::parse("FOO=1 ./s.sh").unwrap();
        assert_eq!(h.script, "FOO=1 ./s.sh");
        assert!(HandlerSpec::parse("member-jion=x").is_err());
        assert!(HandlerSpec::parse("member-join[role=(]=x").is_err());
        assert!(HandlerSpec::parse("user[role=x]=s").is_err());
        assert!(HandlerSpec::parse("member-join=").is_err());
    }
}
