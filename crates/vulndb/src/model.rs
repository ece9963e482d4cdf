//! Public result types: findings, severity, status.

use inventory::Ecosystem;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Qualitative severity. Ordered: `Critical > High > Medium > Low > Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The CVSS v3/v4 qualitative rating of a base score: 9.0–10 Critical,
    /// 7.0–8.9 High, 4.0–6.9 Medium, 0.1–3.9 Low. A score of 0.0 ("None")
    /// is reported as Low: the record says there is a vulnerability.
    pub fn from_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    /// Parse a rating word: CVSS names, GitHub's words (`MODERATE`), and
    /// Debian urgencies (`unimportant` counts as Low). Unknown words and
    /// "not yet assigned" give `None`.
    pub fn from_word(word: &str) -> Option<Severity> {
        let w = word.trim().trim_end_matches('*').to_ascii_lowercase();
        Some(match w.as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" | "unimportant" | "negligible" => Severity::Low,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parse the lowercase name produced by [`Severity::as_str`].
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "unknown" => Severity::Unknown,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a fix exists. `not_affected` is never a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingStatus {
    /// A fixed version exists (`fixed_version`).
    Fixed,
    /// No fix yet.
    Unfixed,
    /// The distribution decided not to fix it (Debian `<ignored>`,
    /// `<end-of-life>`).
    WontFix,
}

impl FindingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Fixed => "fixed",
            FindingStatus::Unfixed => "unfixed",
            FindingStatus::WontFix => "wont_fix",
        }
    }
}

/// A CVSS vector with its base score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    /// `2.0`, `3.0`, `3.1` or `4.0`.
    pub version: String,
    /// The vector string, e.g. `CVSS:3.1/AV:N/AC:L/...`.
    pub vector: String,
    /// Base score, computed from the vector.
    pub score: f64,
    /// Which record gave the vector: `osv`, `nvd`, `nvd-1.1`, `cve5:cna`,
    /// `cve5:adp`, …
    pub source: String,
}

/// One vulnerability affecting one installed package.
///
/// The text fields are shared (`Arc`): findings of one advisory, or of one
/// installed package, point at the same strings, so matching allocates
/// nothing per finding. They serialise exactly like `String` / `Vec<String>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Advisory id (`CVE-…`, `GHSA-…`, `RUSTSEC-…`, `DSA-…`).
    #[serde(with = "shared::text")]
    pub id: Arc<str>,
    /// Other ids of the same vulnerability (CVE ids, GHSA ids).
    #[serde(with = "shared::list")]
    pub aliases: Arc<[String]>,
    /// Related ids (the CVEs a DSA/DLA fixes).
    #[serde(
        default = "shared::empty_list",
        with = "shared::list",
        skip_serializing_if = "shared::list_is_empty"
    )]
    pub related: Arc<[String]>,
    pub ecosystem: Ecosystem,
    /// The distribution data it was matched against (`debian:12`,
    /// `alpine:v3.20`), for OS packages.
    #[serde(
        default,
        with = "shared::opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub distro: Option<Arc<str>>,
    /// Installed package name.
    #[serde(with = "shared::text")]
    pub package: Arc<str>,
    /// Source/origin package the advisory is keyed on, for OS packages.
    #[serde(
        default,
        with = "shared::opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_package: Option<Arc<str>>,
    /// The installed package's purl, copied from the inventory.
    #[serde(
        default = "shared::empty_text",
        with = "shared::text",
        skip_serializing_if = "shared::text_is_empty"
    )]
    pub purl: Arc<str>,
    #[serde(with = "shared::text")]
    pub installed_version: Arc<str>,
    /// The first version with the fix, when one exists.
    #[serde(default, with = "shared::opt_text")]
    pub fixed_version: Option<Arc<str>>,
    pub status: FindingStatus,
    /// Why a distribution did not fix it (`no-dsa: Minor issue`,
    /// `postponed`, `ignored: …`).
    #[serde(
        default,
        with = "shared::opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub status_note: Option<Arc<str>>,
    pub severity: Severity,
    /// Who gave the rating: `debian` (tracker urgency), `cvss:<source>`,
    /// `ghsa`, or `none`.
    #[serde(with = "shared::text")]
    pub severity_source: Arc<str>,
    #[serde(default, with = "shared::opt_cvss")]
    pub cvss: Option<Arc<Cvss>>,
    #[serde(with = "shared::text")]
    pub summary: Arc<str>,
    #[serde(with = "shared::list")]
    pub references: Arc<[String]>,
    /// RustSec informational kind (`unmaintained`, `unsound`, `notice`):
    /// such findings are not vulnerabilities and are kept apart.
    #[serde(
        default,
        with = "shared::opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub informational: Option<Arc<str>>,
    /// The data source the matching record came from (`osv:PyPI`,
    /// `alpine:v3.20/main`, `debian-tracker:CVE`, …).
    #[serde(with = "shared::text")]
    pub data_source: Arc<str>,
}

/// Serde adapters for the shared (`Arc`) fields: the same encoding as the
/// owned types, without needing serde's `rc` feature.
pub(crate) mod shared {
    use super::Cvss;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn empty_list() -> Arc<[String]> {
        Arc::from(Vec::new())
    }
    pub fn list_is_empty(v: &Arc<[String]>) -> bool {
        v.is_empty()
    }
    pub fn empty_text() -> Arc<str> {
        Arc::from("")
    }
    pub fn text_is_empty(v: &Arc<str>) -> bool {
        v.is_empty()
    }

    pub mod text {
        use super::*;
        pub fn serialize<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(v)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
            Ok(String::deserialize(d)?.into())
        }
    }

    pub mod opt_text {
        use super::*;
        pub fn serialize<S: Serializer>(v: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
            v.as_deref().serialize(s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
            Ok(Option::<String>::deserialize(d)?.map(Into::into))
        }
    }

    pub mod list {
        use super::*;
        pub fn serialize<S: Serializer>(v: &Arc<[String]>, s: S) -> Result<S::Ok, S::Error> {
            (**v).serialize(s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<[String]>, D::Error> {
            Ok(Vec::<String>::deserialize(d)?.into())
        }
    }

    pub mod opt_cvss {
        use super::*;
        pub fn serialize<S: Serializer>(v: &Option<Arc<Cvss>>, s: S) -> Result<S::Ok, S::Error> {
            v.as_deref().serialize(s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<Cvss>>, D::Error> {
            Ok(Option::<Cvss>::deserialize(d)?.map(Arc::new))
        }
    }
}

impl Finding {
    /// True for a vulnerability, false for an informational advisory.
    pub fn is_vulnerability(&self) -> bool {
        self.informational.is_none()
    }
}

/// A package/advisory pair that could not be decided because a version did
/// not parse in the ecosystem's scheme (or the ecosystem has no scheme, or
/// an OS package came without a distribution).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uncomparable {
    pub ecosystem: Ecosystem,
    pub package: String,
    pub installed_version: String,
    /// Advisory id, when one advisory's range could not be evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisory: Option<String>,
    pub reason: String,
}

/// Findings plus everything that could not be decided.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MatchReport {
    pub findings: Vec<Finding>,
    pub uncomparable: Vec<Uncomparable>,
}

/// One imported data source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// `osv:PyPI`, `osv:Debian:12`, `alpine:v3.20/main`,
    /// `debian-tracker:CVE`, `nvd:cve5`, …
    pub name: String,
    /// Records read (advisories, CVE entries, secdb packages, NVD items).
    pub records: usize,
    /// Package entries indexed for matching (0 for CVSS-only sources).
    pub entries: usize,
    /// Newest date found in the data itself (`modified`, feed timestamp,
    /// newest DSA date), RFC 3339.
    pub snapshot: Option<String>,
    /// Newest modification time of the files it came from, RFC 3339.
    pub file_date: Option<String>,
}

/// `drydock db status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub built_at: String,
    pub advisories: usize,
    pub entries: usize,
    pub packages: usize,
    pub sources: Vec<SourceStatus>,
}
