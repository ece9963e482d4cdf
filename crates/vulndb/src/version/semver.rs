//! Semantic Versioning 2.0 (npm, Rust crates) and Go module versions.
//!
//! Parsing uses the `semver` crate. Build metadata (`+incompatible`,
//! `+build.5`) does not take part in ordering, as SemVer §10 requires.

use super::Scheme;
use std::cmp::Ordering;

/// SemVer 2.0 ordering (npm, Rust crates). A leading `v` or `=` is accepted.
pub struct Semver;

/// Go module ordering: SemVer with a `v` prefix (optional here, as OSV
/// writes Go versions without it). The Go toolchain's `go1.21.3`,
/// `go1.21` and `go1.21rc2` spellings are accepted for `stdlib`/`toolchain`.
pub struct GoSemver;

fn parse_semver(v: &str) -> Option<::semver::Version> {
    let v = v.trim();
    let v = v.strip_prefix('=').unwrap_or(v);
    let v = v.strip_prefix('v').unwrap_or(v);
    ::semver::Version::parse(v).ok()
}

fn cmp_ignoring_build(a: &::semver::Version, b: &::semver::Version) -> Ordering {
    (a.major, a.minor, a.patch)
        .cmp(&(b.major, b.minor, b.patch))
        .then_with(|| a.pre.cmp(&b.pre))
}

impl Scheme for Semver {
    const NAME: &'static str = "semver";
    type Parsed<'a> = ::semver::Version;
    fn parse(v: &str) -> Option<Self::Parsed<'_>> {
        parse_semver(v)
    }
    fn order(pa: &Self::Parsed<'_>, pb: &Self::Parsed<'_>) -> Ordering {
        cmp_ignoring_build(pa, pb)
    }
}

fn parse_go(v: &str) -> Option<::semver::Version> {
    let v = v.trim();
    if let Some(p) = parse_semver(v) {
        return Some(p);
    }
    // Go toolchain spellings: go1.21, go1.21.3, go1.21rc2, go1.21beta1.
    let t = v
        .strip_prefix("go")
        .or_else(|| v.strip_prefix('v'))
        .unwrap_or(v);
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (nums, pre) = t.split_at(split);
    let parts: Vec<&str> = nums.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut full = parts.join(".");
    for _ in parts.len()..3 {
        full.push_str(".0");
    }
    if !pre.is_empty() {
        let kind_len = pre.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (kind, n) = pre.split_at(kind_len);
        if !matches!(kind, "rc" | "beta" | "alpha") || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        full = format!("{full}-{kind}.{n}");
        full = full.trim_end_matches('.').to_string();
    }
    ::semver::Version::parse(&full).ok()
}

impl Scheme for GoSemver {
    const NAME: &'static str = "go";
    type Parsed<'a> = ::semver::Version;
    fn parse(v: &str) -> Option<Self::Parsed<'_>> {
        parse_go(v)
    }
    fn order(pa: &Self::Parsed<'_>, pb: &Self::Parsed<'_>) -> Ordering {
        cmp_ignoring_build(pa, pb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{VersionScheme, check_table};
    use Ordering::*;

    #[test]
    fn semver_spec_precedence() {
        // SemVer 2.0 §11 example chain, plus build metadata being ignored.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
        ];
        for w in chain.windows(2) {
            check_table(&Semver, &[(w[0], w[1], Less)]);
        }
        check_table(
            &Semver,
            &[
                ("1.0.0+build.1", "1.0.0+build.2", Equal),
                ("v1.2.3", "1.2.3", Equal),
                ("0.0.0-0", "0.0.0", Less),
                ("0.0.0-0", "0.0.1-alpha", Less),
                ("4.17.20", "4.17.21", Less),
            ],
        );
        for bad in ["1.2", "1.2.3.4", "latest", "", "01.2.3"] {
            assert!(Semver.validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn go_versions() {
        check_table(
            &GoSemver,
            &[
                ("v1.21.9", "1.21.9", Equal),
                ("1.22.0-0", "1.22.0", Less),
                ("1.21.9", "1.22.0-0", Less),
                ("go1.21", "1.21.0", Equal),
                ("go1.21rc2", "1.21.0", Less),
                ("go1.21rc2", "go1.21rc10", Less),
                ("go1.22.1", "1.22.2", Less),
                ("v17.0.0+incompatible", "17.0.0", Equal),
                ("v20.10.27+incompatible", "v24.0.9+incompatible", Less),
                ("v0.0.0-20230101000000-abcdef123456", "0.1.0", Less),
                (
                    "v0.0.0-20230101000000-abcdef123456",
                    "v0.0.0-20240101000000-abcdef123456",
                    Less,
                ),
            ],
        );
        assert!(GoSemver.validate("go1.x").is_err());
        assert!(GoSemver.validate("master").is_err());
    }
}
