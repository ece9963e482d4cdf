//! Read models for the API: what `GET /api/v1/images/{digest}` and the
//! other endpoints return, computed from the store at read time so that
//! exemptions and their expiry apply immediately.

use crate::clock::{from_ms, rfc3339};
use crate::policy::{Diff, Health, Judged, Summary, fixable};
use crate::remediation::Remediation;
use crate::store::UsageRow;
use crate::vuln::{Finding, FindingStatus, Severity};
use anyhow::Result;
use inventory::Inventory;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

mod image;
mod layers;
mod overview;

pub use layers::{LAYER_PACKAGES, LayerPackage, LayerView, LayersPage, layer_history};
pub use overview::ExemptionError;

/// Filters for an image's findings.
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    /// Keep only these severities (empty: all).
    pub severities: Vec<Severity>,
    pub status: Option<FindingStatus>,
    pub fixable: Option<bool>,
    pub exempt: Option<bool>,
}

/// A finding with its verdict.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FindingView {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub finding: Finding,
    pub fixable: bool,
    /// The version to upgrade the package to, when a fix exists.
    pub upgrade_to: Option<String>,
    pub exempt: bool,
    pub exempted_by: Option<String>,
    /// Whether this finding makes the image unhealthy.
    pub violates_policy: bool,
    /// Set when a VEX statement takes the finding out of the verdict
    /// ("not affected per VEX"): its document, author and justification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_affected_per_vex: Option<crate::vex::VexNote>,
    /// The latest VEX statement about the finding, whatever its status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vex: Option<crate::vex::VexNote>,
}

/// New and resolved findings since an earlier state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DiffView {
    /// Previous assessment time (same digest) or the previous digest (same tag).
    pub since: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_db_version: Option<String>,
    #[serde(flatten)]
    pub diff: Diff,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Diffs {
    /// Since the previous assessment of this digest.
    pub previous_assessment: Option<DiffView>,
    /// Since the previous digest of each tag that points here.
    pub previous_tag_digest: Vec<DiffView>,
}

/// A platform image of an index.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChildView {
    pub digest: String,
    pub platform: Option<String>,
    pub status: String,
    pub error: Option<String>,
    pub health: Option<Health>,
    pub summary: Option<Summary>,
}

/// Everything about one digest.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImageView {
    pub digest: String,
    /// `image`, `index`, `artifact` or `unknown`.
    pub kind: String,
    pub media_type: String,
    pub repositories: Vec<String>,
    /// `repository:tag` names pointing here.
    pub tags: Vec<String>,
    pub platform: Option<String>,
    /// The index this platform image belongs to.
    pub index: Option<String>,
    /// queued, cataloging, matching, done, failed, unsupported.
    pub status: String,
    pub error: Option<String>,
    pub queued_at: String,
    pub finished_at: Option<String>,
    pub last_pushed_at: Option<String>,
    pub last_pulled_at: Option<String>,
    pub assessed_at: Option<String>,
    pub db_version: Option<String>,
    /// True when the result was made with an older database than the
    /// current one (the image is outside the re-scan window).
    pub stale: bool,
    /// Whether every part of the image (of an index: of every platform
    /// image) was read; `None` until it is assessed. An incomplete image is
    /// never healthy (health `incomplete`, or `unhealthy` when a finding
    /// already says so).
    pub complete: Option<bool>,
    /// What could not be read and why, one sentence each: the file or
    /// archive entry, the layer, and the limit when one applies.
    pub incomplete_reasons: Vec<String>,
    pub health: Option<Health>,
    pub summary: Option<Summary>,
    /// The first page (at most [`DEFAULT_PAGE`]) of the findings that pass
    /// the filters, worst first; the rest through
    /// `GET /api/v1/images/{digest}/findings?cursor=`.
    pub findings: Vec<FindingView>,
    /// How many findings pass the filters, on every page together.
    pub findings_total: usize,
    /// Cursor of the next page of findings; `None` on the last page.
    pub findings_next_cursor: Option<String>,
    pub remediation: Option<Remediation>,
    pub diffs: Diffs,
    pub children: Vec<ChildView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub inventory: Option<Inventory>,
}

/// A compact line per image, for listings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImageBrief {
    pub digest: String,
    pub repository: String,
    pub kind: String,
    pub tags: Vec<String>,
    pub platform: Option<String>,
    pub status: String,
    pub assessed_at: Option<String>,
    pub stale: bool,
    pub health: Option<Health>,
    pub summary: Option<Summary>,
}

/// A vulnerability across the registry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VulnRecommendation {
    pub id: String,
    pub aliases: Vec<String>,
    pub severity: String,
    pub summary: String,
    /// Fixed versions seen, per package.
    pub fix: BTreeMap<String, Vec<String>>,
    pub affected_images: Vec<AffectedImage>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AffectedImage {
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub package: String,
    pub installed_version: String,
    pub fixed_version: Option<String>,
}

/// Recommendations, like a security center.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Recommendations {
    /// Vulnerabilities by severity, then by number of affected images.
    pub by_vulnerability: Vec<VulnRecommendation>,
    /// Images, worst first.
    pub by_image: Vec<ImageBrief>,
}

/// Usage over a range of months.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageReport {
    pub from: String,
    pub to: String,
    pub rows: Vec<UsageRow>,
    pub total: u64,
}

/// The queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueView {
    pub counts: BTreeMap<String, i64>,
    pub pending: Vec<QueueEntry>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueEntry {
    pub digest: String,
    pub repository: String,
    pub status: String,
    pub queued_at: String,
    pub attempts: i64,
}

/// Findings in an image view's first page.
pub const DEFAULT_PAGE: usize = 100;
/// Most items one page may hold.
pub const MAX_PAGE: usize = 1000;

/// A page of an image's findings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FindingsPage {
    pub digest: String,
    /// How many findings pass the filters, on every page together.
    pub total: usize,
    pub findings: Vec<FindingView>,
    /// The exemptions this page's findings name.
    pub exemptions: Vec<crate::policy::Exemption>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A page of an image's packages.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PackagesPage {
    pub digest: String,
    /// How many packages (that match `q`) the inventory holds.
    pub total: usize,
    #[schema(value_type = Vec<Object>)]
    pub packages: Vec<inventory::Package>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Why a page cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The cursor is malformed, or was made from other findings or another
    /// inventory than those stored now (the image was assessed again):
    /// start again without one.
    #[error("{0}")]
    BadCursor(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// A cursor: the position of the next item and a tag of the data it
/// indexes, hex-encoded so clients treat it as opaque.
fn cursor_for(offset: usize, tag: &str) -> String {
    hex::encode(format!("{offset}:{}", &tag[..tag.len().min(16)]))
}

/// The position a cursor names, checked against `tag` (unless empty).
fn parse_cursor(cursor: &str, tag: &str) -> Result<usize, PageError> {
    let bad = || PageError::BadCursor("cursor is not one this server made".into());
    let text = hex::decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let (offset, made_from) = text.split_once(':').ok_or_else(bad)?;
    let offset: usize = offset.parse().map_err(|_| bad())?;
    if !tag.is_empty() && made_from != &tag[..tag.len().min(16)] {
        return Err(PageError::BadCursor(
            "cursor is stale: the image was assessed again since; start again without a cursor"
                .into(),
        ));
    }
    Ok(offset)
}

/// The findings that pass `filter` and `q` (id, alias or package name
/// containing it, ignoring case), worst first: severity, then fixable,
/// then package and id.
fn select_findings<'j, 'a>(
    judged: &'j [Judged<'a>],
    filter: &FindingFilter,
    q: Option<&str>,
) -> Vec<&'j Judged<'a>> {
    let needle = q.map(str::to_lowercase);
    let mut out: Vec<&Judged<'a>> = judged
        .iter()
        .filter(|j| {
            let f = j.finding;
            (filter.severities.is_empty() || filter.severities.contains(&f.severity))
                && filter.status.is_none_or(|s| s == f.status)
                && filter.fixable.is_none_or(|x| x == fixable(f))
                && filter.exempt.is_none_or(|x| x == j.exempted_by.is_some())
                && needle.as_deref().is_none_or(|n| {
                    f.id.to_lowercase().contains(n)
                        || f.package.to_lowercase().contains(n)
                        || f.aliases.iter().any(|a| a.to_lowercase().contains(n))
                })
        })
        .collect();
    out.sort_by(|a, b| {
        let (fa, fb) = (a.finding, b.finding);
        fb.severity
            .cmp(&fa.severity)
            .then(fixable(fb).cmp(&fixable(fa)))
            .then(fa.package.cmp(&fb.package))
            .then(fa.id.cmp(&fb.id))
            .then(fa.installed_version.cmp(&fb.installed_version))
    });
    out
}

/// A short tag of a findings filter and text search, put in the findings
/// cursor: a cursor is a position in one filtered list, and the same
/// offset in another list would skip or repeat findings silently.
fn filter_tag(filter: &FindingFilter, q: Option<&str>) -> String {
    use sha2::Digest as _;
    let mut severities: Vec<&str> = filter.severities.iter().map(|s| s.as_str()).collect();
    severities.sort_unstable();
    severities.dedup();
    let q = q.map(|q| q.to_lowercase()).unwrap_or_default();
    let canonical = serde_json::json!([
        severities,
        filter.status.map(|s| s.as_str()),
        filter.fixable,
        filter.exempt,
        q
    ]);
    hex::encode(&sha2::Sha256::digest(canonical.to_string().as_bytes())[..6])
}

/// A findings cursor: [`cursor_for`] with the filter's tag after the data's.
fn findings_cursor(offset: usize, hash: &str, filter: &str) -> String {
    hex::encode(format!("{offset}:{}/{filter}", &hash[..hash.len().min(16)]))
}

/// The position a findings cursor names, checked against the stored
/// findings' `hash` and the request's `filter` tag.
fn parse_findings_cursor(cursor: &str, hash: &str, filter: &str) -> Result<usize, PageError> {
    let bad = || PageError::BadCursor("cursor is not one this server made".into());
    let text = String::from_utf8(hex::decode(cursor).map_err(|_| bad())?).map_err(|_| bad())?;
    let (offset, made_from) = text.split_once(':').ok_or_else(bad)?;
    let (data, made_with) = made_from.split_once('/').ok_or_else(bad)?;
    let offset: usize = offset.parse().map_err(|_| bad())?;
    if data != &hash[..hash.len().min(16)] {
        return Err(PageError::BadCursor(
            "cursor is stale: the image was assessed again since; start again without a cursor"
                .into(),
        ));
    }
    if made_with != filter {
        return Err(PageError::BadCursor(
            "cursor was made with other filters (severity, status, fixable, exempt or q): send the filters of the page it came from, or start again without a cursor"
                .into(),
        ));
    }
    Ok(offset)
}

/// Whether two recorded platforms (`os/arch[/variant]`) name the same
/// OS, architecture and variant once normalized (`linux/arm64` is
/// `linux/arm64/v8`, as runtimes match them).
fn same_platform(a: &str, b: &str) -> bool {
    let Ok(spec) = oci::PlatformSpec::parse(a) else {
        return a == b;
    };
    let mut parts = b.split('/');
    let (Some(os), Some(architecture)) = (parts.next(), parts.next()) else {
        return a == b;
    };
    spec.matches(&oci::Platform {
        os: os.into(),
        architecture: architecture.into(),
        variant: parts.next().map(String::from),
        os_version: None,
        os_features: None,
    })
}

fn t(ms: i64) -> String {
    rfc3339(from_ms(ms))
}
