//! Name patterns, compiled once: [`RepoPattern`] for repository names
//! (bindings, policy and pull-gate rules, exemptions, webhooks, SBOM
//! rules, VEX products, patch rules) and [`NameGlob`] for names without
//! path structure (package names, tags). One syntax (globset's), two
//! meanings of `*`, each stated here and in docs/auth.md.

use globset::{GlobBuilder, GlobMatcher};
use std::fmt;

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

fn build(pattern: &str, literal_separator: bool) -> Result<GlobMatcher, PatternError> {
    if pattern.is_empty() {
        return Err(PatternError {
            pattern: String::new(),
            reason: "empty pattern".into(),
        });
    }
    GlobBuilder::new(pattern)
        .literal_separator(literal_separator)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| PatternError {
            pattern: pattern.to_string(),
            reason: e.kind().to_string(),
        })
}

/// A glob over repository names, which are paths: `*` and `?` stay within
/// one path segment, `**` spans any number of segments (`team-a/*`
/// matches `team-a/app` but not `team-a/x/app`; `team-a/**` matches both;
/// `**` matches every repository). `[abc]`, `{a,b}` and `\` escapes as
/// usual. Matching is case-sensitive, as repository names are lower case.
#[derive(Clone)]
pub struct RepoPattern {
    text: String,
    matcher: GlobMatcher,
}

impl RepoPattern {
    pub fn new(pattern: &str) -> Result<RepoPattern, PatternError> {
        Ok(RepoPattern {
            text: pattern.to_string(),
            matcher: build(pattern, true)?,
        })
    }

    pub fn is_match(&self, repository: &str) -> bool {
        self.matcher.is_match(repository)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has no wildcard (it names one repository).
    pub fn is_literal(&self) -> bool {
        !self.text.contains(['*', '?', '[', '{', '\\'])
    }
}

/// A glob over plain names (package names, tags): `*` matches any run of
/// characters, `/` included (`golang.org/x/*` matches
/// `golang.org/x/net/http2`), `?` exactly one. Otherwise as [`RepoPattern`].
#[derive(Clone)]
pub struct NameGlob {
    text: String,
    matcher: GlobMatcher,
}

impl NameGlob {
    pub fn new(pattern: &str) -> Result<NameGlob, PatternError> {
        Ok(NameGlob {
            text: pattern.to_string(),
            matcher: build(pattern, false)?,
        })
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.matcher.is_match(name)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

macro_rules! common {
    ($t:ty) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.text, f)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }
        // Two patterns are the same when written the same.
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.text == other.text
            }
        }
        impl Eq for $t {}
        impl std::str::FromStr for $t {
            type Err = PatternError;
            fn from_str(s: &str) -> Result<Self, PatternError> {
                <$t>::new(s)
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.text)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
common!(RepoPattern);
common!(NameGlob);

#[cfg(test)]
mod tests {
    use super::*;

    /// The table docs/auth.md and docs/assessment.md give, row by row.
    #[test]
    fn repository_patterns_mean_what_the_docs_say() {
        let rows: &[(&str, &str, bool)] = &[
            ("team-a/*", "team-a/app", true),
            ("team-a/*", "team-a/x/app", false),
            ("team-a/*", "team-a", false),
            ("team-a/**", "team-a/app", true),
            ("team-a/**", "team-a/x/app", true),
            ("team-a/**", "team-b/app", false),
            ("**", "app", true),
            ("**", "a/b/c", true),
            ("*", "app", true),
            ("*", "team-a/app", false),
            ("team-a/app-*", "team-a/app-web", true),
            ("team-a/app-*", "team-a/app-web/x", false),
            ("team-?/app", "team-a/app", true),
            ("team-?/app", "team-ab/app", false),
            ("?", "/", false),
            ("team-a/app", "team-a/app", true),
            ("team-a/app", "team-a/app2", false),
            ("team-a/app", "Team-a/app", false),
            ("{team-a,team-b}/app", "team-b/app", true),
            ("team-[ab]/app", "team-b/app", true),
            ("team-[ab]/app", "team-c/app", false),
            (r"lit\*", "lit*", true),
            (r"lit\*", "litx", false),
        ];
        for (p, name, want) in rows {
            let got = RepoPattern::new(p).unwrap().is_match(name);
            assert_eq!(got, *want, "{p:?} against {name:?}");
        }
    }

    #[test]
    fn name_globs_cross_slashes() {
        let rows: &[(&str, &str, bool)] = &[
            ("openssl*", "openssl-libs", true),
            ("golang.org/x/*", "golang.org/x/net/http2", true),
            ("@scope/*", "@scope/pkg", true),
            ("lib?", "libc", true),
            ("lib?", "lib", false),
            ("v1.*", "v1.2.3", true),
            ("v1.*", "v2.0", false),
            ("*", "", true),
        ];
        for (p, name, want) in rows {
            assert_eq!(
                NameGlob::new(p).unwrap().is_match(name),
                *want,
                "{p:?} against {name:?}"
            );
        }
    }

    #[test]
    fn malformed_patterns_are_refused_by_name() {
        for p in ["", "team-[a", "{a,b"] {
            let e = RepoPattern::new(p).unwrap_err();
            assert_eq!(e.pattern, p);
            assert!(NameGlob::new(p).is_err(), "{p:?}");
        }
        let bad: Result<RepoPattern, _> = serde_json::from_str("\"team-[a\"");
        assert!(bad.unwrap_err().to_string().contains("team-[a"));
        let good: RepoPattern = serde_json::from_str("\"team-a/**\"").unwrap();
        assert_eq!(serde_json::to_string(&good).unwrap(), "\"team-a/**\"");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn segment() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9._-]{0,6}"
    }

    fn name() -> impl Strategy<Value = String> {
        proptest::collection::vec(segment(), 1..5).prop_map(|v| v.join("/"))
    }

    proptest! {
        // The documented meaning, stated as properties over random names.
        #[test]
        fn star_stays_in_a_segment_and_double_star_spans(n in name(), prefix in segment()) {
            let full = format!("{prefix}/{n}");
            let one = RepoPattern::new(&format!("{prefix}/*")).unwrap();
            let many = RepoPattern::new(&format!("{prefix}/**")).unwrap();
            prop_assert_eq!(one.is_match(&full), !n.contains('/'));
            prop_assert!(many.is_match(&full));
            prop_assert!(RepoPattern::new("**").unwrap().is_match(&n));
            prop_assert_eq!(RepoPattern::new("*").unwrap().is_match(&n), !n.contains('/'));
            prop_assert!(NameGlob::new("*").unwrap().is_match(&n));
            let plain = NameGlob::new(&format!("{prefix}/*")).unwrap();
            prop_assert!(plain.is_match(&full));
        }

        #[test]
        fn a_literal_matches_only_itself(a in name(), b in name()) {
            let p = RepoPattern::new(&a).unwrap();
            prop_assert!(p.is_literal());
            prop_assert_eq!(p.is_match(&b), a == b);
        }
    }
}
