//! Whose VEX referrers are applied: `assess.vex.trusted` names users,
//! groups and robots (with `*` globs); anyone else's pushed document is
//! stored and listed with the reason, not applied.

use serde::Deserialize;

/// Who pushed a VEX referrer, as the registry's access control knew them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pusher {
    /// Access control is off: nobody is identified.
    Unrestricted,
    Anonymous,
    User {
        name: String,
        groups: Vec<String>,
    },
    Robot {
        name: String,
    },
}

impl Pusher {
    /// The name recorded with the document: `alice`, `robot$ci`.
    pub fn display(&self) -> String {
        match self {
            Pusher::Unrestricted => "unidentified (access control off)".into(),
            Pusher::Anonymous => "anonymous".into(),
            Pusher::User { name, .. } => name.clone(),
            Pusher::Robot { name } => format!("robot${name}"),
        }
    }
}

/// Check one `assess.vex.trusted` entry: `user:GLOB`, `group:GLOB` or
/// `robot:GLOB`, where `*` stands for any run of characters.
pub fn check_trusted(entry: &str) -> Result<(), String> {
    match entry.split_once(':') {
        Some(("user" | "group" | "robot", glob)) if !glob.is_empty() => Ok(()),
        _ => Err(format!(
            "{entry:?} is not user:NAME, group:NAME or robot:NAME (names may hold '*')"
        )),
    }
}

/// Whether `pusher` is named by one of the `trusted` entries (see
/// [`check_trusted`]). Nobody unidentified is trusted: with access control
/// off, or anonymous, there is no identity to trust.
pub fn is_trusted(trusted: &[String], pusher: &Pusher) -> bool {
    trusted.iter().any(|entry| {
        let Some((kind, pattern)) = entry.split_once(':') else {
            return false;
        };
        match (kind, pusher) {
            ("user", Pusher::User { name, .. }) => glob(pattern, name),
            ("group", Pusher::User { groups, .. }) => groups.iter().any(|g| glob(pattern, g)),
            ("robot", Pusher::Robot { name }) => {
                glob(pattern.strip_prefix("robot$").unwrap_or(pattern), name)
            }
            _ => false,
        }
    })
}

/// `*` matches any run of characters (none included); everything else
/// itself.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whose VEX referrers are applied (`[assess.vex]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VexOptions {
    /// Identities whose VEX referrers are applied: `user:GLOB`,
    /// `group:GLOB`, `robot:GLOB` (`*` any run of characters). Absent:
    /// anyone the registry let push to the repository. A referrer pushed
    /// by anyone else is stored, listed with the reason, and not applied.
    /// Documents sent through `POST /api/v1/vex` are not judged by it
    /// (that endpoint asks for its own permission).
    #[serde(default)]
    pub trusted: Option<Vec<String>>,
}

impl VexOptions {
    /// Every entry well formed (see [`check_trusted`]).
    pub fn validate(&self) -> std::result::Result<(), String> {
        for e in self.trusted.iter().flatten() {
            check_trusted(e).map_err(|why| format!("assess.vex.trusted: {why}"))?;
        }
        Ok(())
    }

    /// Why a referrer pushed by `pusher` is not applied, or `None` if it is.
    pub fn refuses(&self, pusher: Option<&Pusher>) -> Option<String> {
        let trusted = self.trusted.as_ref()?;
        match pusher {
            Some(p) if is_trusted(trusted, p) => None,
            Some(p) => Some(format!(
                "pushed by {}, who is not trusted for VEX (assess.vex.trusted)",
                p.display()
            )),
            None => Some(
                "its pusher is unknown (queued before drydock stored pushers, found at start \
                 without a push, or written by drydock itself); only identities in \
                 assess.vex.trusted are trusted for VEX"
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod trust_tests {
    use super::*;

    #[test]
    fn trusted_entries_name_users_groups_and_robots() {
        let alice = Pusher::User {
            name: "alice".into(),
            groups: vec!["security".into()],
        };
        let bob = Pusher::User {
            name: "bob".into(),
            groups: vec!["dev".into()],
        };
        let ci = Pusher::Robot {
            name: "ci-release".into(),
        };
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_trusted(&list(&["group:security"]), &alice));
        assert!(!is_trusted(&list(&["group:security"]), &bob));
        assert!(is_trusted(&list(&["user:b*"]), &bob));
        assert!(!is_trusted(&list(&["user:b*"]), &ci));
        assert!(is_trusted(&list(&["robot:ci-*"]), &ci));
        assert!(is_trusted(&list(&["robot:robot$ci-*"]), &ci));
        assert!(!is_trusted(&list(&["robot:ci-*-x"]), &ci));
        assert!(is_trusted(&list(&["robot:*release"]), &ci));
        assert!(!is_trusted(&list(&["user:*"]), &Pusher::Anonymous));
        assert!(!is_trusted(&list(&["user:*"]), &Pusher::Unrestricted));
        assert!(!is_trusted(&[], &alice));
        assert!(glob("a*b*c", "abc") && glob("a*b*c", "axxbyyc") && !glob("a*b*c", "acb"));
        assert!(glob("ab", "ab") && !glob("ab", "abc") && !glob("a*a", "a"));
        assert!(check_trusted("group:security").is_ok());
        assert!(check_trusted("security").is_err());
        assert!(check_trusted("team:x").is_err());
        assert!(check_trusted("user:").is_err());
    }
}
