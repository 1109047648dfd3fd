//! Member selectors: which members a writer renders, a filtered handler hears about, a query
//! goes to, or `members` lists: regular expressions anchored at both ends (as Serf's member
//! filters) on tags, and optionally the status and the name. The one member filter of the
//! workspace; it applies to anything that shows a member ([`MemberView`]).

use gossip_core::{MemberInfo, Status};
use regex_lite::Regex;

/// What a selector needs to see of a member.
pub trait MemberView {
    /// The node name.
    fn name(&self) -> &str;
    /// `alive`, `suspect`, `failed` or `left`.
    fn status(&self) -> &str;
    /// The value of tag `key`, if it has one.
    fn tag(&self, key: &str) -> Option<&str>;
}

impl MemberView for MemberInfo {
    fn name(&self) -> &str {
        MemberInfo::name(self)
    }
    fn status(&self) -> &str {
        self.status.as_str()
    }
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags().get(key).map(String::as_str)
    }
}

impl<T: MemberView + ?Sized> MemberView for &T {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn status(&self) -> &str {
        (**self).status()
    }
    fn tag(&self, key: &str) -> Option<&str> {
        (**self).tag(key)
    }
}

/// A selector that cannot be built: which pattern, of what, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// A pattern that is not a regular expression.
    #[error("invalid {what} pattern {pattern:?}: {reason}")]
    Pattern {
        /// The flag or tag it is for (`--status`, `--tag`, `tag "role"`).
        what: String,
        /// The pattern.
        pattern: String,
        /// The regex engine's reason.
        reason: String,
    },
    /// A `--tag` item without `=`.
    #[error("invalid --tag {0:?}: expected KEY=REGEX")]
    NotKeyValue(String),
    /// A tag condition without a key.
    #[error("empty tag key in selector")]
    EmptyKey,
}

/// Conditions on a member; all must hold. A missing tag never matches.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    status: Option<Regex>,
    name: Option<Regex>,
    tags: Vec<(String, Regex)>,
}

impl Selector {
    /// Every member.
    pub fn all() -> Self {
        Self::default()
    }

    /// From `KEY=REGEX` pairs (a writer's `tag.KEY` settings, a handler's `[k=v&...]`).
    pub fn new<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, SelectorError> {
        let mut tags = Vec::new();
        for (k, v) in pairs {
            if k.is_empty() {
                return Err(SelectorError::EmptyKey);
            }
            tags.push((k.to_string(), anchored(&format!("tag {k:?}"), v)?));
        }
        Ok(Self {
            tags,
            ..Self::default()
        })
    }

    /// The filters of `members` and `query`: `--status`, `--name`, `--role` (the `role` tag)
    /// and `--tag KEY=REGEX` items; an error names the flag.
    pub fn for_flags(
        status: Option<&str>,
        name: Option<&str>,
        role: Option<&str>,
        tags: &[String],
    ) -> Result<Self, SelectorError> {
        let re = anchored;
        let mut out = Self {
            status: status.map(|s| re("--status", s)).transpose()?,
            name: name.map(|s| re("--name", s)).transpose()?,
            tags: Vec::new(),
        };
        if let Some(r) = role {
            out.tags.push(("role".into(), re("--role", r)?));
        }
        for kv in tags {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| SelectorError::NotKeyValue(kv.clone()))?;
            out.tags.push((k.to_string(), re("--tag", v)?));
        }
        Ok(out)
    }

    /// True when no condition is set.
    pub fn is_all(&self) -> bool {
        self.tags.is_empty() && self.status.is_none() && self.name.is_none()
    }

    /// True when `m` satisfies every condition.
    pub fn matches(&self, m: &impl MemberView) -> bool {
        self.status.as_ref().is_none_or(|r| r.is_match(m.status()))
            && self.name.as_ref().is_none_or(|r| r.is_match(m.name()))
            && self
                .tags
                .iter()
                .all(|(k, re)| m.tag(k).is_some_and(|v| re.is_match(v)))
    }
}

/// `pattern` (for `what`) anchored at both ends; an error carries the regex's own last line.
fn anchored(what: &str, pattern: &str) -> Result<Regex, SelectorError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| SelectorError::Pattern {
        what: what.to_string(),
        pattern: pattern.to_string(),
        reason: last_line(&e.to_string()),
    })
}

/// Which statuses a writer renders: alive, and suspect unless excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Render suspect members too (default false: a member that misses a probe leaves the
    /// configuration at once, and returns when it refutes).
    pub include_suspect: bool,
}

impl Liveness {
    /// True when `m` should be rendered.
    pub fn admits(&self, m: &MemberInfo) -> bool {
        m.status == Status::Alive || (self.include_suspect && m.status == Status::Suspect)
    }
}

fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or(s).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(tags: &[(&str, &str)]) -> MemberInfo {
        gossip_testkit::members::member("n", "10.0.0.1", tags, Status::Alive)
    }

    #[test]
    fn selectors_are_anchored_and_need_the_tag() {
        let s = Selector::new([("role", "app.*")]).unwrap();
        assert!(s.matches(&m(&[("role", "appserver")])));
        assert!(!s.matches(&m(&[("role", "webapp")])));
        assert!(!s.matches(&m(&[])));
        assert!(Selector::all().matches(&m(&[])));
        assert!(Selector::new([("role", "(")]).is_err());
    }

    #[test]
    fn flag_filters_match_status_name_and_tags() {
        let f = Selector::for_flags(Some("alive"), Some("n"), Some("app.*"), &[]).unwrap();
        assert!(f.matches(&m(&[("role", "appserver")])));
        assert!(!f.matches(&m(&[("role", "webapp")])));
        let f = Selector::for_flags(Some("failed"), None, None, &[]).unwrap();
        assert!(!f.matches(&m(&[])));
        let f = Selector::for_flags(None, None, None, &["zone=.*".into()]).unwrap();
        assert!(!f.matches(&m(&[("role", "x")])), "missing tag fails");
        let e = Selector::for_flags(None, None, None, &["nokv".into()]).unwrap_err();
        assert!(e.to_string().contains("--tag"), "{e}");
        let e = Selector::for_flags(Some("("), None, None, &[]).unwrap_err();
        assert!(e.to_string().starts_with("invalid --status pattern"), "{e}");
    }
}
