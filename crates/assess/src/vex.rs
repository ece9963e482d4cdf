//! VEX (Vulnerability Exploitability eXchange): statements that a
//! vulnerability does or does not affect a product. Pure: parsing,
//! validation with the JSON path of the first problem, and matching a
//! finding of an image against the statements.
//!
//! Two formats are read into one model: OpenVEX (0.2.0 documents; the
//! statement fields the specification defines) and CycloneDX VEX
//! (`vulnerabilities[].analysis.state`, with `affects[].ref` naming the
//! product and the component the `bom-ref` names as the subcomponent).
//!
//! Products are named by image digest (`sha256:…`), by an OCI purl that
//! carries one (`pkg:oci/app@sha256%3A…` or `…?digest=sha256:…`), by a
//! repository (a name or a glob), or by a package purl (every image holding
//! that package). Subcomponents are package purls. `not_affected` and
//! `fixed` take a finding out of the verdict; `affected` and
//! `under_investigation` leave it counted. When several statements speak
//! of one finding, the latest (by timestamp) wins.
//!
//! Where things are: this file holds the model and the checks both
//! parsers share; `openvex` and `cyclonedx` read the two formats,
//! `matching` says which statement speaks of which finding (and what a
//! product covers, for access checks), and `trust` whose pushed documents
//! are applied.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

mod cyclonedx;
mod matching;
mod openvex;
mod trust;

pub use matching::{Scope, Stored, Subject, VexNote, judge, product_scope, purl_matches};
pub use trust::{Pusher, VexOptions, check_trusted, is_trusted};

/// The artifact type of an OpenVEX document pushed as a referrer.
pub const OPENVEX_ARTIFACT_TYPE: &str = "application/vnd.openvex+json";
/// The artifact type of a CycloneDX document (an SBOM, or a VEX when it
/// carries `vulnerabilities[].analysis`).
pub const CYCLONEDX_ARTIFACT_TYPE: &str = "application/vnd.cyclonedx+json";

/// The impact statuses both formats share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VexStatus {
    NotAffected,
    Affected,
    Fixed,
    UnderInvestigation,
}

impl VexStatus {
    /// Whether the status takes a finding out of the verdict.
    pub fn clears(self) -> bool {
        matches!(self, VexStatus::NotAffected | VexStatus::Fixed)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            VexStatus::NotAffected => "not_affected",
            VexStatus::Affected => "affected",
            VexStatus::Fixed => "fixed",
            VexStatus::UnderInvestigation => "under_investigation",
        }
    }
}

/// OpenVEX's justification labels for `not_affected`.
pub const JUSTIFICATIONS: &[&str] = &[
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
];

/// One statement, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Vulnerability name and aliases (`CVE-…`, `GHSA-…`).
    pub vulnerabilities: Vec<String>,
    /// Product identifiers (digests, purls, repositories).
    pub products: Vec<String>,
    /// Package purls inside the product; empty for the whole product.
    pub subcomponents: Vec<String>,
    pub status: VexStatus,
    pub justification: Option<String>,
    pub impact_statement: Option<String>,
    /// RFC 3339; the document's when the statement has none.
    pub timestamp: String,
    #[serde(skip)]
    patterns: ProductPatterns,
}

/// `products` as repository patterns, compiled on first use (`None` for
/// one that is not a pattern). A cache, not part of the value: equality
/// ignores it.
#[derive(Debug, Clone, Default)]
struct ProductPatterns(std::sync::OnceLock<Vec<Option<oci::RepoPattern>>>);

impl PartialEq for ProductPatterns {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A validated document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// The document's own id (`@id`, or CycloneDX `serialNumber`).
    pub id: String,
    pub author: String,
    pub timestamp: String,
    /// `openvex` or `cyclonedx`.
    pub format: String,
    pub statements: Vec<Statement>,
}

/// Why a document was refused: the JSON path of the problem and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn bad(path: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        path: path.into(),
        message: message.into(),
    }
}

fn req_str<'a>(v: &'a Value, key: &str, path: &str) -> Result<&'a str, Invalid> {
    match v.get(key) {
        None | Some(Value::Null) => Err(bad(format!("{path}.{key}"), "is required")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(bad(format!("{path}.{key}"), "must not be empty"))
        }
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(bad(format!("{path}.{key}"), "must be a string")),
    }
}

fn opt_str<'a>(v: &'a Value, key: &str, path: &str) -> Result<Option<&'a str>, Invalid> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("{path}.{key}"), "must be a string")),
    }
}

fn check_time(s: &str, path: &str) -> Result<(), Invalid> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|_| ())
        .map_err(|_| bad(path, format!("{s:?} is not an RFC 3339 time")))
}

fn array<'a>(v: &'a Value, key: &str, path: &str) -> Result<Option<&'a Vec<Value>>, Invalid> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(bad(format!("{path}.{key}"), "must be an array")),
    }
}

/// Parse and validate a document in either format (told apart by
/// OpenVEX's `@context` or CycloneDX's `bomFormat`).
pub fn parse(bytes: &[u8]) -> Result<Document, Invalid> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| bad("$", format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(bad("$", "must be a JSON object"));
    }
    if v.get("bomFormat").is_some() {
        return cyclonedx::parse_cyclonedx(&v);
    }
    openvex::parse_openvex(&v)
}
