//! Who may do what on which repository: actions, subjects, bindings and
//! the compiled policy that answers "may X do A on R?".

use oci::RepoPattern;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a caller does to a repository. `Admin` implies the others and,
/// on the pattern `**`, administration of the whole server (users,
/// robots, bindings, audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
    Admin,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Pull, Action::Push, Action::Delete, Action::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Admin => "admin",
        }
    }

    /// Parse `pull`, `push`, `delete` or `admin`.
    pub fn parse(s: &str) -> Result<Action, PolicyError> {
        match s {
            "pull" => Ok(Action::Pull),
            "push" => Ok(Action::Push),
            "delete" => Ok(Action::Delete),
            "admin" => Ok(Action::Admin),
            other => Err(PolicyError(format!(
                "unknown action {other:?} (expected pull, push, delete or admin)"
            ))),
        }
    }

    /// Whether holding `self` allows `wanted`.
    pub fn covers(self, wanted: Action) -> bool {
        self == wanted || self == Action::Admin
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A malformed binding, pattern or action.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Who a binding grants to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Subject {
    User(String),
    Robot(String),
    Group(String),
    /// Everyone, without credentials (public repositories). Pull only.
    Anonymous,
}

impl Subject {
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::User(_) => "user",
            Subject::Robot(_) => "robot",
            Subject::Group(_) => "group",
            Subject::Anonymous => "anonymous",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Subject::User(n) | Subject::Robot(n) | Subject::Group(n) => n,
            Subject::Anonymous => "",
        }
    }

    /// From a stored kind and name.
    pub fn from_parts(kind: &str, name: &str) -> Result<Subject, PolicyError> {
        match kind {
            "user" => Ok(Subject::User(name.to_string())),
            "robot" => Ok(Subject::Robot(name.to_string())),
            "group" => Ok(Subject::Group(name.to_string())),
            "anonymous" => Ok(Subject::Anonymous),
            other => Err(PolicyError(format!(
                "unknown subject kind {other:?} (expected user, robot, group or anonymous)"
            ))),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Anonymous => f.write_str("anonymous"),
            s => write!(f, "{}:{}", s.kind(), s.name()),
        }
    }
}

/// A grant: `subject` may do `actions` on repositories matching
/// `pattern` (a glob: `*` stays within one path segment, `**` spans
/// several; `team-a/*`, `team-a/**`, `**`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Stable id (stored bindings); empty for bindings from the config file.
    #[serde(default)]
    pub id: String,
    pub subject: Subject,
    pub pattern: String,
    pub actions: Vec<Action>,
}

impl Binding {
    /// Check the pattern compiles and the grant is allowed for the subject.
    pub fn validate(&self) -> Result<(), PolicyError> {
        compile(&self.pattern)?;
        if self.actions.is_empty() {
            return Err(PolicyError("a binding needs at least one action".into()));
        }
        if self.subject == Subject::Anonymous && self.actions.iter().any(|a| *a != Action::Pull) {
            return Err(PolicyError(
                "anonymous access can only be granted pull".into(),
            ));
        }
        if self.subject.name().is_empty() && self.subject != Subject::Anonymous {
            return Err(PolicyError("a binding's subject needs a name".into()));
        }
        Ok(())
    }
}

/// Compile a repository pattern (the one syntax of [`RepoPattern`]).
pub fn compile(pattern: &str) -> Result<RepoPattern, PolicyError> {
    RepoPattern::new(pattern).map_err(|e| PolicyError(format!("repository {e}")))
}

/// The caller's identity as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// Access control is off: everything is allowed.
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

impl Identity {
    /// A name for logs and the audit log: `alice`, `robot$ci`, `anonymous`.
    pub fn display_name(&self) -> String {
        match self {
            Identity::Unrestricted => "-".into(),
            Identity::Anonymous => "anonymous".into(),
            Identity::User { name, .. } => name.clone(),
            Identity::Robot { name } => format!("{}{name}", crate::ROBOT_PREFIX),
        }
    }

    fn matches(&self, subject: &Subject) -> bool {
        match (self, subject) {
            // Everyone gets what anonymous gets.
            (_, Subject::Anonymous) => true,
            (Identity::User { name, .. }, Subject::User(s)) => name == s,
            (Identity::User { groups, .. }, Subject::Group(g)) => groups.contains(g),
            (Identity::Robot { name }, Subject::Robot(s)) => name == s,
            _ => false,
        }
    }
}

struct Compiled {
    binding: Binding,
    matcher: RepoPattern,
}

/// Bindings compiled for matching. Immutable; rebuilt when bindings change.
pub struct Policy {
    rules: Vec<Compiled>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl Policy {
    /// Compile bindings; a malformed one is an error naming it.
    pub fn new(bindings: impl IntoIterator<Item = Binding>) -> Result<Policy, PolicyError> {
        let mut rules = Vec::new();
        for b in bindings {
            b.validate()
                .map_err(|e| PolicyError(format!("binding for {}: {}", b.subject, e.0)))?;
            let matcher = compile(&b.pattern)?;
            rules.push(Compiled {
                binding: b,
                matcher,
            });
        }
        Ok(Policy { rules })
    }

    /// May `who` do `action` on `repo`?
    pub fn allows(&self, who: &Identity, repo: &str, action: Action) -> bool {
        if *who == Identity::Unrestricted {
            return true;
        }
        self.rules.iter().any(|r| {
            who.matches(&r.binding.subject)
                && r.binding.actions.iter().any(|a| a.covers(action))
                && r.matcher.is_match(repo)
        })
    }

    /// Is `who` an administrator of the whole server (admin on `**`)?
    pub fn is_admin(&self, who: &Identity) -> bool {
        if *who == Identity::Unrestricted {
            return true;
        }
        self.rules.iter().any(|r| {
            r.binding.pattern == "**"
                && who.matches(&r.binding.subject)
                && r.binding.actions.contains(&Action::Admin)
        })
    }

    /// May `who` administer every repository that `pattern` can match?
    /// True when `who` is a server admin, or holds admin on a binding
    /// pattern that equals `pattern` or covers it (`team-a/**` covers
    /// `team-a/*` and `team-a/app`).
    pub fn may_admin_pattern(&self, who: &Identity, pattern: &str) -> bool {
        if self.is_admin(who) {
            return true;
        }
        self.rules.iter().any(|r| {
            who.matches(&r.binding.subject)
                && r.binding.actions.contains(&Action::Admin)
                && pattern_covers(&r.binding.pattern, &r.matcher, pattern)
        })
    }

    /// The bindings, as given.
    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.rules.iter().map(|r| &r.binding)
    }
}

/// Whether every name `inner` matches is matched by `outer`, decided
/// conservatively: equal patterns, a literal name `outer` matches, or
/// `outer` = `P/**` with `inner` starting with `P/`.
fn pattern_covers(outer: &str, outer_m: &RepoPattern, inner: &str) -> bool {
    if outer == inner || outer == "**" {
        return true;
    }
    let literal = !inner.contains(['*', '?', '[', '{', '\\']);
    if literal {
        return outer_m.is_match(inner);
    }
    if let Some(prefix) = outer.strip_suffix("/**") {
        let prefix_literal = !prefix.contains(['*', '?', '[', '{', '\\']);
        return prefix_literal && inner.starts_with(&format!("{prefix}/"));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(subject: Subject, pattern: &str, actions: &[Action]) -> Binding {
        Binding {
            id: String::new(),
            subject,
            pattern: pattern.into(),
            actions: actions.to_vec(),
        }
    }

    #[test]
    fn patterns_actions_and_groups() {
        let p = Policy::new([
            b(Subject::User("rita".into()), "team-a/*", &[Action::Pull]),
            b(Subject::Group("devs".into()), "team-a/**", &[Action::Push]),
            b(
                Subject::Robot("ci".into()),
                "team-a/app",
                &[Action::Push, Action::Pull],
            ),
            b(Subject::Anonymous, "public/**", &[Action::Pull]),
            b(Subject::User("root".into()), "**", &[Action::Admin]),
        ])
        .unwrap();
        let rita = Identity::User {
            name: "rita".into(),
            groups: vec![],
        };
        let dev = Identity::User {
            name: "dan".into(),
            groups: vec!["devs".into()],
        };
        let ci = Identity::Robot { name: "ci".into() };
        let root = Identity::User {
            name: "root".into(),
            groups: vec![],
        };
        assert!(p.allows(&rita, "team-a/app", Action::Pull));
        assert!(
            !p.allows(&rita, "team-a/x/y", Action::Pull),
            "* stays in one segment"
        );
        assert!(!p.allows(&rita, "team-a/app", Action::Push));
        assert!(!p.allows(&rita, "team-b/app", Action::Pull));
        assert!(p.allows(&rita, "public/base", Action::Pull));
        assert!(p.allows(&dev, "team-a/x/y", Action::Push));
        assert!(!p.allows(&dev, "team-a/x/y", Action::Pull));
        assert!(p.allows(&ci, "team-a/app", Action::Push));
        assert!(!p.allows(&ci, "team-a/other", Action::Push));
        assert!(p.allows(&root, "anything/at/all", Action::Delete));
        assert!(p.is_admin(&root) && !p.is_admin(&dev));
        assert!(p.allows(&Identity::Anonymous, "public/x", Action::Pull));
        assert!(!p.allows(&Identity::Anonymous, "team-a/app", Action::Pull));
        assert!(p.allows(&Identity::Unrestricted, "x", Action::Admin));
    }

    #[test]
    fn anonymous_gets_pull_only_and_patterns_are_checked() {
        assert!(Policy::new([b(Subject::Anonymous, "**", &[Action::Push])]).is_err());
        assert!(Policy::new([b(Subject::User("a".into()), "team-[", &[Action::Pull])]).is_err());
        assert!(Policy::new([b(Subject::User("a".into()), "x", &[])]).is_err());
    }

    #[test]
    fn admin_of_a_pattern() {
        let p = Policy::new([b(
            Subject::User("lead".into()),
            "team-a/**",
            &[Action::Admin],
        )])
        .unwrap();
        let lead = Identity::User {
            name: "lead".into(),
            groups: vec![],
        };
        assert!(p.may_admin_pattern(&lead, "team-a/**"));
        assert!(p.may_admin_pattern(&lead, "team-a/*"));
        assert!(p.may_admin_pattern(&lead, "team-a/app"));
        assert!(!p.may_admin_pattern(&lead, "**"));
        assert!(!p.may_admin_pattern(&lead, "team-*/app"));
        assert!(!p.is_admin(&lead));
    }
}
