//! Platforms as `--platform` flags name them, and how they match an index
//! entry's platform.
//!
//! Matching compares normalized forms, the way container runtimes pick a
//! platform from an index: `arm64` means `arm64/v8` and `arm` means
//! `arm/v7` when no variant is given, `amd64/v1` is plain `amd64`, and
//! common aliases (`aarch64`, `x86_64`, `armhf`, …) name the same thing.
//! A filter without a variant means the architecture's default variant, so
//! `linux/arm` does not pick `linux/arm/v6`.

use crate::Platform;
use std::fmt;

/// A platform named by a user: `os/arch[/variant]`, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    os: String,
    architecture: String,
    variant: Option<String>,
    /// As the user wrote it, for messages.
    given: String,
}

/// A `--platform` value that is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("platform {0:?} is not os/arch[/variant] (e.g. linux/arm64/v8)")]
pub struct PlatformError(pub String);

/// The normalized (os, architecture, variant) of a platform.
fn normalize(os: &str, arch: &str, variant: Option<&str>) -> (String, String, Option<String>) {
    let os = os.to_ascii_lowercase();
    let arch = arch.to_ascii_lowercase();
    let variant = variant
        .map(str::to_ascii_lowercase)
        .filter(|v| !v.is_empty());
    let (arch, variant) = match (arch.as_str(), variant.as_deref()) {
        ("aarch64" | "arm64", None | Some("8" | "v8" | "v8.0")) => ("arm64", Some("v8".into())),
        ("aarch64" | "arm64", v) => ("arm64", v.map(str::to_string)),
        ("armhf", _) => ("arm", Some("v7".into())),
        ("armel", _) => ("arm", Some("v6".into())),
        ("arm", None | Some("7")) => ("arm", Some("v7".into())),
        ("arm", Some(v @ ("5" | "6" | "8"))) => ("arm", Some(format!("v{v}"))),
        ("x86_64" | "x86-64" | "amd64", None | Some("v1")) => ("amd64", None),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v.map(str::to_string)),
        ("i386", v) => ("386", v.map(str::to_string)),
        (a, v) => (a, v.map(str::to_string)),
    };
    (os, arch.to_string(), variant)
}

impl PlatformSpec {
    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<PlatformSpec, PlatformError> {
        let s = s.trim();
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        let parts: Vec<&str> = s.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => (*os, *arch, None),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => (*os, *arch, Some(*v)),
            _ => return Err(PlatformError(s.to_string())),
        };
        let (os, architecture, variant) = normalize(os, arch, variant);
        Ok(PlatformSpec {
            os,
            architecture,
            variant,
            given: s.to_string(),
        })
    }

    /// Whether an index entry's platform is this one.
    pub fn matches(&self, p: &Platform) -> bool {
        let (os, arch, variant) = normalize(&p.os, &p.architecture, p.variant.as_deref());
        os == self.os && arch == self.architecture && variant == self.variant
    }
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.given)
    }
}

/// The platforms a user asked for; empty means all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformFilter(Vec<PlatformSpec>);

impl PlatformFilter {
    /// Parse `os/arch[/variant]` entries (comma-separated lists allowed).
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<PlatformFilter, PlatformError> {
        let specs = items
            .iter()
            .flat_map(|s| s.as_ref().split(','))
            .filter(|s| !s.trim().is_empty())
            .map(PlatformSpec::parse)
            .collect::<Result<_, _>>()?;
        Ok(PlatformFilter(specs))
    }

    /// Every platform.
    pub fn all() -> PlatformFilter {
        PlatformFilter::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn specs(&self) -> &[PlatformSpec] {
        &self.0
    }

    /// Whether an entry with this platform is kept (an empty filter keeps
    /// entries with no platform too).
    pub fn keeps(&self, p: Option<&Platform>) -> bool {
        self.0.is_empty() || p.is_some_and(|p| self.0.iter().any(|s| s.matches(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plat(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: arch.into(),
            os: os.into(),
            os_version: None,
            os_features: None,
            variant: variant.map(str::to_string),
        }
    }

    #[test]
    fn default_variants_match_as_runtimes_do() {
        let m = |spec: &str, p: Platform| PlatformSpec::parse(spec).unwrap().matches(&p);
        assert!(m("linux/arm64", plat("linux", "arm64", Some("v8"))));
        assert!(m("linux/arm64/v8", plat("linux", "arm64", None)));
        assert!(m("linux/arm64", plat("linux", "aarch64", None)));
        assert!(!m("linux/arm64", plat("linux", "arm64", Some("v9"))));
        assert!(m("linux/arm", plat("linux", "arm", Some("v7"))));
        assert!(m("linux/arm/v7", plat("linux", "arm", None)));
        assert!(!m("linux/arm", plat("linux", "arm", Some("v6"))));
        assert!(m("linux/arm/v6", plat("linux", "armel", None)));
        assert!(m("linux/amd64", plat("linux", "amd64", Some("v1"))));
        assert!(m("linux/x86_64", plat("linux", "amd64", None)));
        assert!(!m("linux/amd64", plat("linux", "amd64", Some("v3"))));
        assert!(m("linux/amd64/v3", plat("linux", "amd64", Some("v3"))));
        assert!(!m("linux/amd64", plat("windows", "amd64", None)));
        assert!(m("Linux/AMD64", plat("linux", "amd64", None)));
    }

    #[test]
    fn parses_lists_and_refuses_malformed_entries() {
        let f = PlatformFilter::parse(&["linux/amd64,linux/arm64/v8", " ", "linux/arm"]).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f.specs()[1].to_string(), "linux/arm64/v8");
        assert!(f.keeps(Some(&plat("linux", "arm", Some("v7")))));
        assert!(!f.keeps(None));
        assert!(PlatformFilter::all().keeps(None));
        for bad in ["linux", "linux/a m d", "a/b/c/d", "/amd64", "linux//v8"] {
            let e = PlatformFilter::parse(&[bad]).unwrap_err();
            assert!(e.to_string().contains("os/arch"), "{bad}: {e}");
        }
    }
}
