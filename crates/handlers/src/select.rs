//! Member selectors: which members a writer renders or a filtered handler hears about, by tag
//! regular expressions (anchored, as Serf's member filters) and status.

use gossip_core::{MemberInfo, Status};
use regex_lite::Regex;

/// Conditions on a member's tags; all must hold. A missing tag never matches.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    tags: Vec<(String, Regex)>,
}

impl Selector {
    /// Every member.
    pub fn all() -> Self {
        Self::default()
    }

    /// From `KEY=REGEX` pairs.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut tags = Vec::new();
        for (k, v) in pairs {
            if k.is_empty() {
                return Err("empty tag key in selector".into());
            }
            let re = Regex::new(&format!("^(?:{v})$")).map_err(|e| {
                format!(
                    "bad pattern {v:?} for tag {k:?}: {}",
                    last_line(&e.to_string())
                )
            })?;
            tags.push((k.to_string(), re));
        }
        Ok(Self { tags })
    }

    /// True when no condition is set.
    pub fn is_all(&self) -> bool {
        self.tags.is_empty()
    }

    /// True when `m`'s tags satisfy every condition.
    pub fn matches(&self, m: &MemberInfo) -> bool {
        self.tags
            .iter()
            .all(|(k, re)| m.tags().get(k).is_some_and(|v| re.is_match(v)))
    }
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
    use gossip_core::{Limits, NodeId, Tags};

    fn m(tags: &[(&str, &str)]) -> MemberInfo {
        let tags: Tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        MemberInfo {
            id: NodeId::new(
                "n",
                "10.0.0.1:7946".parse().unwrap(),
                1,
                tags,
                &Limits::default(),
            )
            .unwrap(),
            status: Status::Alive,
        }
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
}
