//! Read models for the API: what `GET /api/v1/images/{digest}` and the
//! other endpoints return, computed from the store at read time so that
//! exemptions and their expiry apply immediately.

use crate::clock::{from_ms, rfc3339, to_ms};
use crate::policy::{
    Diff, Health, Judged, Summary, diff_keys, evaluate_with_vex, finding_key, fixable,
};
use crate::remediation::{self, Candidate, Remediation};
use crate::service::Service;
use crate::store::{ImageRow, UsageRow, status};
use crate::vuln::{Finding, FindingStatus, Severity};
use anyhow::Result;
use inventory::Inventory;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use utoipa::ToSchema;

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

impl Service {
    fn judged_view(j: &Judged<'_>) -> FindingView {
        let fx = fixable(j.finding);
        FindingView {
            finding: j.finding.clone(),
            fixable: fx,
            upgrade_to: if fx {
                j.finding.fixed_version.as_deref().map(String::from)
            } else {
                None
            },
            exempt: j.exempted_by.is_some(),
            exempted_by: j.exempted_by.clone(),
            violates_policy: j.violates,
            not_affected_per_vex: j.vex.clone().filter(|v| v.status.clears()),
            vex: j.vex.clone(),
        }
    }

    fn is_stale(&self, db_version: Option<&str>) -> bool {
        match (self.database(), db_version) {
            (Some(db), Some(v)) => db.version() != v,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Health and summary of a finished image (children rolled up for an index).
    pub fn verdict(&self, row: &ImageRow) -> Result<Option<(Health, Summary)>> {
        let rule = self.options().policy.rule_for(&row.repo).clone();
        if row.kind == "index" {
            let mut healths = Vec::new();
            let mut summary = Summary::default();
            for c in self.store().children(&row.digest)? {
                if let Some((h, s)) = self.verdict(&c)? {
                    healths.push(h);
                    summary.add(&s);
                }
            }
            if healths.is_empty() {
                return Ok(None);
            }
            let refs: Vec<&Health> = healths.iter().collect();
            return Ok(Some((Health::roll_up(&rule, &refs), summary)));
        }
        let Some(res) = self.store().result(&row.digest)? else {
            return Ok(None);
        };
        // Matched against no database: nothing was checked, so no verdict.
        if res.db_version.is_none() {
            return Ok(None);
        }
        let exemptions = self.store().exemptions()?;
        let incomplete = self.store().incomplete(&row.digest)?;
        let vex = self.vex_notes(&row.digest, &res.findings)?;
        let eval = evaluate_with_vex(
            &res.findings,
            &row.repo,
            &rule,
            &exemptions,
            &vex,
            &incomplete,
            self.clock().now(),
        );
        Ok(Some((eval.health, eval.summary)))
    }

    pub fn brief(&self, row: &ImageRow) -> Result<ImageBrief> {
        let verdict = self.verdict(row)?;
        let res = if row.kind == "image" {
            self.store().result(&row.digest)?
        } else {
            None
        };
        Ok(ImageBrief {
            digest: row.digest.clone(),
            repository: row.repo.clone(),
            kind: row.kind.clone(),
            tags: self.tags_of(&row.digest, row.parent.as_deref()),
            platform: row.platform.clone(),
            status: row.status.clone(),
            assessed_at: res.as_ref().map(|r| t(r.assessed_at)),
            stale: res
                .as_ref()
                .is_some_and(|r| self.is_stale(r.db_version.as_deref())),
            health: verdict.as_ref().map(|v| v.0.clone()),
            summary: verdict.map(|v| v.1),
        })
    }

    /// The full view of one digest, or `None` if unknown.
    pub fn image_view(
        &self,
        digest: &str,
        filter: &FindingFilter,
        with_inventory: bool,
    ) -> Result<Option<ImageView>> {
        let Some(row) = self.store().image(digest)? else {
            return Ok(None);
        };
        let mut view = ImageView {
            digest: row.digest.clone(),
            kind: row.kind.clone(),
            media_type: row.media_type.clone(),
            repositories: self.store().repos_of(digest)?,
            tags: self.tags_of(digest, row.parent.as_deref()),
            platform: row.platform.clone(),
            index: row.parent.clone(),
            status: row.status.clone(),
            error: row.error.clone(),
            queued_at: t(row.queued_at),
            finished_at: row.finished_at.map(t),
            last_pushed_at: row.last_pushed_at.map(t),
            last_pulled_at: row.last_pulled_at.map(t),
            assessed_at: None,
            db_version: None,
            stale: false,
            complete: None,
            incomplete_reasons: Vec::new(),
            health: None,
            summary: None,
            findings: Vec::new(),
            findings_total: 0,
            findings_next_cursor: None,
            remediation: None,
            diffs: Diffs::default(),
            children: Vec::new(),
            inventory: None,
        };
        if row.kind == "index" {
            for c in self.store().children(digest)? {
                let v = self.verdict(&c)?;
                view.children.push(ChildView {
                    digest: c.digest.clone(),
                    platform: c.platform.clone(),
                    status: c.status.clone(),
                    error: c.error.clone(),
                    health: v.as_ref().map(|v| v.0.clone()),
                    summary: v.map(|v| v.1),
                });
                // The index is as far along as its slowest child.
                if c.status != status::DONE && view.status == status::DONE {
                    view.status = c.status.clone();
                }
            }
            if let Some((h, s)) = self.verdict(&row)? {
                view.complete = Some(h.complete);
                view.incomplete_reasons = h.incomplete_reasons.clone();
                view.health = Some(h);
                view.summary = Some(s);
            }
            return Ok(Some(view));
        }
        let Some(res) = self.store().result(digest)? else {
            return Ok(Some(view));
        };
        // Assessed before any database was installed: no health to claim.
        if res.db_version.is_none() {
            view.assessed_at = Some(t(res.assessed_at));
            // Whether the image was read whole is known all the same.
            let incomplete = self.store().incomplete(digest)?;
            view.complete = Some(incomplete.is_empty());
            view.incomplete_reasons = incomplete;
            // The inventory was read all the same; it is asked for.
            if with_inventory {
                view.inventory = self.store().inventory(digest)?.map(|(_, i)| i);
            }
            return Ok(Some(view));
        }
        let rule = self.options().policy.rule_for(&row.repo).clone();
        let exemptions = self.store().exemptions()?;
        let now = self.clock().now();
        let incomplete = self.store().incomplete(digest)?;
        let vex = self.vex_notes(digest, &res.findings)?;
        let eval = evaluate_with_vex(
            &res.findings,
            &row.repo,
            &rule,
            &exemptions,
            &vex,
            &incomplete,
            now,
        );
        view.complete = Some(incomplete.is_empty());
        view.incomplete_reasons = incomplete;
        view.assessed_at = Some(t(res.assessed_at));
        view.db_version = res.db_version.clone();
        view.stale = self.is_stale(res.db_version.as_deref());
        view.health = Some(eval.health.clone());
        view.summary = Some(eval.summary.clone());
        // Remediation.
        let (plan, cleared, without_fix) = remediation::upgrade_plan(&eval.judged);
        let mut rem = Remediation {
            upgrade_plan: plan,
            findings_cleared: cleared,
            findings_without_fix: without_fix,
            base_image: None,
            better_alternative: None,
        };
        {
            let (base_layers, base_image, alternatives) = self.base_context(&row)?;
            // The inventory (which layer brought each OS package) is read
            // only when there are base layers to attribute findings to: a
            // one-layer image with 50,000 packages is viewed without
            // parsing them.
            if !base_layers.is_empty()
                && let Some((_, inv)) = self.store().inventory(digest)?
            {
                rem.base_image =
                    remediation::base_image_advice(&eval.judged, &inv, &base_layers, base_image);
            }
            if self.store().inventory_raw(digest)?.is_some() {
                rem.better_alternative =
                    remediation::better_alternative(eval.summary.total, alternatives);
            }
        }
        view.remediation = Some(rem);

        // Diffs.
        let now_keys: Vec<String> = res.findings.iter().map(finding_key).collect();
        if let Some(prev_at) = res.prev_assessed_at {
            let diff = match &res.prev_keys {
                Some(prev) => diff_keys(prev.iter(), now_keys.iter()),
                None => Diff::default(),
            };
            view.diffs.previous_assessment = Some(DiffView {
                since: t(prev_at),
                repository: None,
                tag: None,
                previous_db_version: res.prev_db_version.clone(),
                diff,
            });
        }
        for (repo, tag, prev) in self
            .store()
            .previous_tag_digests(row.parent.as_deref().unwrap_or(digest))?
        {
            let Some(prev_digest) = self.previous_same_platform(&prev, &row)? else {
                continue;
            };
            if let Some(pres) = self.store().result(&prev_digest)? {
                let prev_keys: Vec<String> = pres.findings.iter().map(finding_key).collect();
                view.diffs.previous_tag_digest.push(DiffView {
                    since: prev_digest,
                    repository: Some(repo),
                    tag: Some(tag),
                    previous_db_version: pres.db_version,
                    diff: diff_keys(prev_keys.iter(), now_keys.iter()),
                });
            }
        }

        let shown = select_findings(&eval.judged, filter, None);
        view.findings_total = shown.len();
        view.findings = shown
            .iter()
            .take(DEFAULT_PAGE)
            .map(|j| Service::judged_view(j))
            .collect();
        if shown.len() > DEFAULT_PAGE
            && let Some(hash) = self.store().findings_hash(digest)?
        {
            view.findings_next_cursor = Some(findings_cursor(
                DEFAULT_PAGE,
                &hash,
                &filter_tag(filter, None),
            ));
        }
        if with_inventory {
            view.inventory = self.store().inventory(digest)?.map(|(_, i)| i);
        }
        Ok(Some(view))
    }

    /// One page of an image's findings (filtered, worst first, in the
    /// order of [`ImageView::findings`]). `Ok(None)` when the digest is
    /// unknown or has no result yet.
    pub fn image_findings(
        &self,
        digest: &str,
        filter: &FindingFilter,
        q: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Option<FindingsPage>, PageError> {
        let Some(row) = self.store().image(digest)? else {
            return Ok(None);
        };
        let Some(res) = self.store().result(digest)? else {
            return Ok(None);
        };
        let hash = self.store().findings_hash(digest)?.unwrap_or_default();
        let made_with = filter_tag(filter, q);
        let start = match cursor {
            Some(c) => parse_findings_cursor(c, &hash, &made_with)?,
            None => 0,
        };
        let rule = self.options().policy.rule_for(&row.repo).clone();
        let exemptions = self.store().exemptions()?;
        let incomplete = self.store().incomplete(digest)?;
        let vex = self.vex_notes(digest, &res.findings)?;
        let eval = evaluate_with_vex(
            &res.findings,
            &row.repo,
            &rule,
            &exemptions,
            &vex,
            &incomplete,
            self.clock().now(),
        );
        let shown = select_findings(&eval.judged, filter, q);
        let limit = limit.clamp(1, MAX_PAGE);
        let end = start.saturating_add(limit).min(shown.len());
        let findings: Vec<FindingView> = shown
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .map(|j| Service::judged_view(j))
            .collect();
        let exempted_by: std::collections::BTreeSet<&str> = findings
            .iter()
            .filter_map(|f| f.exempted_by.as_deref())
            .collect();
        let exemptions = exemptions
            .iter()
            .filter(|e| exempted_by.contains(e.id.as_str()))
            .cloned()
            .collect();
        Ok(Some(FindingsPage {
            digest: digest.to_string(),
            total: shown.len(),
            next_cursor: (end < shown.len()).then(|| findings_cursor(end, &hash, &made_with)),
            findings,
            exemptions,
        }))
    }

    /// One page of an image's stored inventory, in stored order (by layer,
    /// then as each layer listed them). `q` keeps packages whose name or
    /// purl contains it (ignoring case). `Ok(None)` when the digest is
    /// unknown or not cataloged yet.
    pub fn image_packages(
        &self,
        digest: &str,
        q: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Option<PackagesPage>, PageError> {
        // The cursor names the stored inventory it was made from; it is
        // checked after the read, which yields that inventory's tag.
        let start = match cursor {
            Some(c) => parse_cursor(c, "")?,
            None => 0,
        };
        let limit = limit.clamp(1, MAX_PAGE);
        let needle = q.map(str::to_lowercase);
        let keep = |p: &inventory::Package| {
            needle.as_deref().is_none_or(|n| {
                p.name.to_lowercase().contains(n) || p.purl.to_lowercase().contains(n)
            })
        };
        let filter: Option<&dyn Fn(&inventory::Package) -> bool> =
            if needle.is_some() { Some(&keep) } else { None };
        let Some((window, tag)) = self
            .store()
            .inventory_window(digest, start, limit, filter)?
        else {
            return Ok(None);
        };
        if let Some(c) = cursor {
            parse_cursor(c, &tag)?;
        }
        let end = start + window.packages.len();
        Ok(Some(PackagesPage {
            digest: digest.to_string(),
            total: window.total,
            next_cursor: (end < window.total).then(|| cursor_for(end, &tag)),
            packages: window.packages,
        }))
    }

    /// The image of `prev` (a digest the tag pointed at before) to compare
    /// `row` with: when `prev` is an index, its image of `row`'s platform;
    /// when it is an image, itself unless its platform is known to differ
    /// (a tag moved to another architecture has no "previous" to compare).
    fn previous_same_platform(&self, prev: &str, row: &ImageRow) -> Result<Option<String>> {
        let children = self.store().children(prev)?;
        if !children.is_empty() {
            let Some(p) = row.platform.as_deref() else {
                return Ok(None);
            };
            return Ok(children
                .into_iter()
                .find(|c| c.platform.as_deref().is_some_and(|cp| same_platform(p, cp)))
                .map(|c| c.digest));
        }
        let prev_platform = self.store().image(prev)?.and_then(|r| r.platform);
        Ok(match (row.platform.as_deref(), prev_platform.as_deref()) {
            (Some(a), Some(b)) if !same_platform(a, b) => None,
            _ => Some(prev.to_string()),
        })
    }

    /// Base layers of an image, the registry image they come from, and the
    /// images sharing those base layers (alternatives).
    fn base_context(
        &self,
        row: &ImageRow,
    ) -> Result<(Vec<String>, Option<Candidate>, Vec<Candidate>)> {
        let all: Vec<ImageRow> = self
            .store()
            .all_images()?
            .into_iter()
            .filter(|i| i.kind == "image" && i.status == status::DONE && i.digest != row.digest)
            // Advice to start from an image of another platform is no
            // advice: only the same OS, architecture and variant count (an
            // unknown platform only matches another unknown one).
            .filter(|i| match (row.platform.as_deref(), i.platform.as_deref()) {
                (Some(a), Some(b)) => same_platform(a, b),
                (a, b) => a.is_none() && b.is_none(),
            })
            .collect();
        // The longest proper layer prefix that is another image's full layer list.
        let base = all
            .iter()
            .filter(|i| {
                !i.layers.is_empty()
                    && i.layers.len() < row.layers.len()
                    && row.layers.starts_with(&i.layers)
            })
            .max_by_key(|i| i.layers.len());
        let base_layers: Vec<String> = match base {
            Some(b) => b.layers.clone(),
            None if row.layers.len() > 1 => row.layers[..1].to_vec(),
            None => Vec::new(),
        };
        // Counts from the browse read model, judged once for all images: at
        // 10,000 images sharing a base, judging each candidate here took
        // seconds per image page.
        let totals = self.findings_totals()?;
        let counted = |i: &ImageRow| -> Result<usize> {
            Ok(match totals.get(&i.digest) {
                Some(total) => *total,
                None => self.verdict(i)?.map(|(_, s)| s.total),
            }
            .unwrap_or(usize::MAX))
        };
        let to_candidate = |i: &ImageRow| -> Result<Candidate> {
            Ok(Candidate {
                repository: i.repo.clone(),
                digest: i.digest.clone(),
                tags: self.tags_of(&i.digest, i.parent.as_deref()),
                findings: counted(i)?,
            })
        };
        let base_image = match base {
            Some(b) => Some(to_candidate(b)?),
            None => None,
        };
        let mut alternatives = Vec::new();
        if !base_layers.is_empty() {
            // Only the one with the fewest findings (then the first
            // repository) can be advised (remediation::better_alternative),
            // so only it is looked up in the registry for its tags.
            let mut best: Option<(usize, &ImageRow)> = None;
            for i in &all {
                let shares = i.layers.starts_with(&base_layers);
                let newer_base =
                    base.is_some_and(|b| b.repo == i.repo && i.layers.len() == b.layers.len());
                if (shares || newer_base) && base.is_none_or(|b| b.digest != i.digest) {
                    let n = counted(i)?;
                    if best.is_none_or(|(m, b)| (n, &i.repo) < (m, &b.repo)) {
                        best = Some((n, i));
                    }
                }
            }
            if let Some((_, i)) = best {
                alternatives.push(to_candidate(i)?);
            }
        }
        Ok((base_layers, base_image, alternatives))
    }

    /// Images, optionally in one repository, newest first.
    pub fn list_images(&self, repo: Option<&str>) -> Result<Vec<ImageBrief>> {
        let rows = match repo {
            Some(r) => self.store().images_in_repo(r)?,
            None => self.store().all_images()?,
        };
        // The SBOMs drydock attached are found through their images (the
        // referrers API), not listed beside them.
        let ours = self.store().attached_sboms()?;
        rows.iter()
            .filter(|r| !ours.contains(&r.digest))
            .map(|r| self.brief(r))
            .collect()
    }

    /// Registry-wide recommendations.
    pub fn recommendations(&self, limit: usize) -> Result<Recommendations> {
        let exemptions = self.store().exemptions()?;
        let now = self.clock().now();
        let mut by_vuln: HashMap<String, VulnRecommendation> = HashMap::new();
        let mut sev: HashMap<String, Severity> = HashMap::new();
        let mut briefs = Vec::new();
        let mut tag_cache: HashMap<String, Vec<String>> = HashMap::new();
        for row in self.store().all_images()? {
            if row.status != status::DONE || row.kind != "image" {
                continue;
            }
            let Some(res) = self.store().result(&row.digest)? else {
                continue;
            };
            let rule = self.options().policy.rule_for(&row.repo).clone();
            let incomplete = self.store().incomplete(&row.digest)?;
            let vex = self.vex_notes(&row.digest, &res.findings)?;
            let eval = evaluate_with_vex(
                &res.findings,
                &row.repo,
                &rule,
                &exemptions,
                &vex,
                &incomplete,
                now,
            );
            let tags = tag_cache
                .entry(row.parent.clone().unwrap_or(row.digest.clone()))
                .or_insert_with(|| self.tags_of(&row.digest, row.parent.as_deref()))
                .clone();
            for j in eval.judged.iter().filter(|j| {
                j.exempted_by.is_none() && !j.cleared_by_vex() && j.finding.informational.is_none()
            }) {
                let f = j.finding;
                let e = by_vuln
                    .entry(f.id.to_string())
                    .or_insert_with(|| VulnRecommendation {
                        id: f.id.to_string(),
                        aliases: f.aliases.to_vec(),
                        severity: f.severity.as_str().into(),
                        summary: f.summary.to_string(),
                        fix: BTreeMap::new(),
                        affected_images: Vec::new(),
                    });
                let s = sev.entry(f.id.to_string()).or_insert(f.severity);
                if f.severity > *s {
                    *s = f.severity;
                    e.severity = f.severity.as_str().into();
                }
                if let Some(v) = &f.fixed_version {
                    let list = e.fix.entry(f.package.to_string()).or_default();
                    if !list.iter().any(|x| **x == **v) {
                        list.push(v.to_string());
                    }
                }
                e.affected_images.push(AffectedImage {
                    repository: row.repo.clone(),
                    digest: row.digest.clone(),
                    tags: tags.clone(),
                    package: f.package.to_string(),
                    installed_version: f.installed_version.to_string(),
                    fixed_version: f.fixed_version.as_deref().map(String::from),
                });
            }
            briefs.push(ImageBrief {
                digest: row.digest.clone(),
                repository: row.repo.clone(),
                kind: row.kind.clone(),
                tags,
                platform: row.platform.clone(),
                status: row.status.clone(),
                assessed_at: Some(t(res.assessed_at)),
                stale: self.is_stale(res.db_version.as_deref()),
                health: Some(eval.health),
                summary: Some(eval.summary),
            });
        }
        let mut vulns: Vec<VulnRecommendation> = by_vuln.into_values().collect();
        vulns.sort_by(|a, b| {
            sev[&b.id]
                .cmp(&sev[&a.id])
                .then(b.affected_images.len().cmp(&a.affected_images.len()))
                .then(a.id.cmp(&b.id))
        });
        vulns.truncate(limit);
        let key = |b: &ImageBrief| {
            let s = b.summary.clone().unwrap_or_default();
            (
                b.health.as_ref().is_some_and(|h| !h.healthy),
                s.critical,
                s.high,
                s.medium,
                s.low,
                s.total,
            )
        };
        briefs.sort_by_key(|b| std::cmp::Reverse(key(b)));
        briefs.truncate(limit);
        Ok(Recommendations {
            by_vulnerability: vulns,
            by_image: briefs,
        })
    }

    /// Usage between two months (`YYYY-MM`, inclusive).
    pub fn usage(&self, from: &str, to: &str) -> Result<UsageReport> {
        let rows = self.store().usage(from, to)?;
        let total = rows.iter().map(|r| r.images).sum();
        Ok(UsageReport {
            from: from.into(),
            to: to.into(),
            rows,
            total,
        })
    }

    pub fn queue_view(&self) -> Result<QueueView> {
        let (pending, counts) = self.store().queue()?;
        Ok(QueueView {
            counts: counts.into_iter().collect(),
            pending: pending
                .into_iter()
                .map(|r| QueueEntry {
                    digest: r.digest,
                    repository: r.repo,
                    status: r.status,
                    queued_at: t(r.queued_at),
                    attempts: r.attempts,
                })
                .collect(),
        })
    }

    /// Create an exemption (validated: every error but `Store` is the
    /// caller's).
    #[allow(clippy::too_many_arguments)]
    pub fn add_exemption(
        &self,
        vulnerability: Option<String>,
        package: Option<String>,
        repository: Option<String>,
        severity: Option<Severity>,
        reason: String,
        author: String,
        expires_at: Option<time::OffsetDateTime>,
    ) -> Result<crate::policy::Exemption, ExemptionError> {
        if vulnerability.is_none() && package.is_none() && severity.is_none() {
            return Err(ExemptionError::NoCriterion);
        }
        if reason.trim().is_empty() {
            return Err(ExemptionError::Empty("reason"));
        }
        if author.trim().is_empty() {
            return Err(ExemptionError::Empty("author"));
        }
        let now = self.clock().now();
        if let Some(e) = expires_at
            && e <= now
        {
            return Err(ExemptionError::Expired);
        }
        let e = crate::policy::Exemption {
            id: uuid::Uuid::new_v4().to_string(),
            vulnerability,
            package,
            repository,
            severity,
            reason,
            author,
            created_at: now,
            expires_at,
        };
        e.validate()?;
        self.store()
            .add_exemption(&e)
            .map_err(ExemptionError::Store)?;
        let _ = to_ms(now);
        Ok(e)
    }
}

/// Why an exemption was not created.
#[derive(Debug, thiserror::Error)]
pub enum ExemptionError {
    #[error("an exemption needs at least one of vulnerability, package or severity")]
    NoCriterion,
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("expires_at must be in the future")]
    Expired,
    #[error(transparent)]
    Pattern(#[from] oci::PatternError),
    /// Not the caller's fault.
    #[error("cannot store the exemption: {0:#}")]
    Store(anyhow::Error),
}

/// Packages listed per layer in [`LayersPage`]; the rest are counted.
pub const LAYER_PACKAGES: usize = 200;
/// The largest image config read for its history (configs are a few kB;
/// a bigger one is not read, and its layers show no command).
const MAX_CONFIG: u64 = 4 << 20;

/// A package a layer adds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LayerPackage {
    pub name: String,
    pub version: String,
    pub ecosystem: String,
    pub purl: String,
}

/// One layer of an image: its size, the build step that made it and the
/// packages it adds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LayerView {
    /// Position in the manifest, from 0 (the bottom layer).
    pub index: usize,
    pub digest: String,
    pub media_type: String,
    /// Compressed size, as the manifest gives it.
    pub size: u64,
    /// The config history's `created_by` of this layer (the build command).
    pub created_by: Option<String>,
    pub created: Option<String>,
    pub comment: Option<String>,
    /// How many packages of the stored inventory this layer introduced;
    /// `None` while the image has no stored inventory.
    pub packages_total: Option<usize>,
    /// The first [`LAYER_PACKAGES`] of them.
    pub packages: Vec<LayerPackage>,
}

/// A page of an image's layers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LayersPage {
    pub digest: String,
    /// Layers in the image.
    pub total: usize,
    pub layers: Vec<LayerView>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
    /// Why commands or packages are missing, when they are (no history in
    /// the config, a history that does not match the layers, not cataloged
    /// yet).
    pub notes: Vec<String>,
}

/// The `created_by`, `created` and `comment` of each layer, from an image
/// config's `history`: the entries marked `empty_layer` (ENV, CMD, …)
/// made no layer and are skipped; the others match the layers in order.
/// `None` when the history does not have one entry per layer, since a
/// guess would name the wrong command.
pub fn layer_history(
    config: &serde_json::Value,
    layers: usize,
) -> Option<Vec<[Option<String>; 3]>> {
    let history = config.get("history")?.as_array()?;
    let text = |e: &serde_json::Value, k: &str| e.get(k).and_then(|v| v.as_str()).map(String::from);
    let steps: Vec<[Option<String>; 3]> = history
        .iter()
        .filter(|e| {
            !e.get("empty_layer")
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
        })
        .map(|e| {
            [
                text(e, "created_by"),
                text(e, "created"),
                text(e, "comment"),
            ]
        })
        .collect();
    (steps.len() == layers).then_some(steps)
}

impl Service {
    /// One page of the layers of a platform image: size and media type
    /// from the manifest, the command from the config's history, and the
    /// packages each layer introduced from the stored inventory (no layer
    /// is read). `Ok(None)` when the digest is unknown.
    pub fn image_layers(
        &self,
        digest: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Option<LayersPage>, PageError> {
        let Some(row) = self.store().image(digest)? else {
            return Ok(None);
        };
        let start = match cursor {
            Some(c) => parse_cursor(c, digest)?,
            None => 0,
        };
        let mut page = LayersPage {
            digest: digest.to_string(),
            total: 0,
            layers: Vec::new(),
            next_cursor: None,
            notes: Vec::new(),
        };
        if row.kind != "image" {
            page.notes.push(match row.kind.as_str() {
                "index" => "an index has no layers of its own: each platform image has them".into(),
                "unknown" => "not looked at yet: the layers are listed once the assessor has read the manifest (within seconds of a push)".into(),
                k => format!("a manifest of kind {k} has no image layers"),
            });
            return Ok(Some(page));
        }
        let repo = oci::Name::parse(&row.repo).map_err(|e| anyhow::anyhow!("{e}"))?;
        let d = oci::Digest::parse(digest).map_err(|e| anyhow::anyhow!("{e}"))?;
        let Some((bytes, _)) = self.source().manifest(&repo, &d)? else {
            page.notes
                .push("the manifest is no longer in the registry".into());
            return Ok(Some(page));
        };
        let manifest: oci::ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("the manifest does not parse: {e}"))?;
        let history = self.config_history(&manifest, &mut page.notes);
        let inventory = self.store().inventory(digest)?.map(|(_, i)| i);
        if inventory.is_none() {
            page.notes
                .push("not cataloged yet: the packages of each layer are not known".into());
        }
        let mut by_layer: HashMap<&str, Vec<&inventory::Package>> = HashMap::new();
        for p in inventory.iter().flat_map(|i| &i.packages) {
            by_layer.entry(p.layer.as_str()).or_default().push(p);
        }
        page.total = manifest.layers.len();
        let end = start
            .saturating_add(limit.clamp(1, MAX_PAGE))
            .min(page.total);
        for (i, l) in manifest.layers.iter().enumerate().take(end).skip(start) {
            let [created_by, created, comment] = history
                .as_ref()
                .and_then(|h| h.get(i).cloned())
                .unwrap_or_default();
            let added = by_layer
                .get(l.digest.to_string().as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            page.layers.push(LayerView {
                index: i,
                digest: l.digest.to_string(),
                media_type: l.media_type.clone(),
                size: l.size,
                created_by,
                created,
                comment,
                packages_total: inventory.as_ref().map(|_| added.len()),
                packages: added
                    .iter()
                    .take(LAYER_PACKAGES)
                    .map(|p| LayerPackage {
                        name: p.name.clone(),
                        version: p.version.clone(),
                        ecosystem: p.ecosystem.as_str().to_string(),
                        purl: p.purl.clone(),
                    })
                    .collect(),
            });
        }
        page.next_cursor = (end < page.total).then(|| cursor_for(end, digest));
        Ok(Some(page))
    }

    /// The per-layer history of an image's config, or `None` with a note
    /// saying why there is none.
    fn config_history(
        &self,
        manifest: &oci::ImageManifest,
        notes: &mut Vec<String>,
    ) -> Option<Vec<[Option<String>; 3]>> {
        use std::io::Read;
        if manifest.config.size > MAX_CONFIG {
            notes.push(format!(
                "the image config is {} bytes; configs over {MAX_CONFIG} are not read",
                manifest.config.size
            ));
            return None;
        }
        let config: Option<serde_json::Value> = (|| {
            let mut buf = Vec::new();
            self.source()
                .blob_source()
                .open_blob(&manifest.config.digest)
                .ok()?
                .take(MAX_CONFIG)
                .read_to_end(&mut buf)
                .ok()?;
            serde_json::from_slice(&buf).ok()
        })();
        let Some(config) = config else {
            notes.push("the image config cannot be read".into());
            return None;
        };
        let found = layer_history(&config, manifest.layers.len());
        if found.is_none() {
            notes.push(
                "the config's history does not list one step per layer, so no command is shown"
                    .into(),
            );
        }
        found
    }

    /// Queue a test delivery to webhook `id` through the normal delivery
    /// path (signed, retried, logged); the delivery loop sends it within a
    /// second. `Ok(None)` when there is no such webhook.
    pub fn test_webhook(
        &self,
        id: &str,
        requested_by: &str,
    ) -> Result<Option<crate::store::Delivery>> {
        let Some(w) = self.store().webhooks()?.into_iter().find(|w| w.id == id) else {
            return Ok(None);
        };
        let now = self.clock().now();
        let delivery = uuid::Uuid::new_v4().to_string();
        let body = serde_json::json!({
            "id": delivery,
            "event": crate::notify::WEBHOOK_TEST,
            "test": true,
            "at": rfc3339(now),
            "webhook": w.id,
            "repository": w.repository,
            "requested_by": requested_by,
            "message": "A test delivery from drydock, asked for by hand: no image changed.",
        });
        let d = crate::store::Delivery {
            id: delivery,
            webhook_id: w.id.clone(),
            event: crate::notify::WEBHOOK_TEST.to_string(),
            digest: None,
            repository: w.repository.clone(),
            state: "pending".into(),
            attempts: 0,
            last_status: None,
            last_error: None,
            created_at: to_ms(now),
            next_attempt_at: to_ms(now),
            delivered_at: None,
            payload: serde_json::to_string(&body)?,
        };
        self.store().add_delivery(&d)?;
        Ok(Some(d))
    }
}

#[cfg(test)]
mod layer_tests {
    use super::layer_history;
    use serde_json::json;

    #[test]
    fn empty_layer_steps_are_skipped_and_the_rest_match_layers_in_order() {
        let config = json!({"history": [
            {"created_by": "/bin/sh -c #(nop) ADD file:abc in /"},
            {"created_by": "/bin/sh -c #(nop)  CMD [\"bash\"]", "empty_layer": true},
            {"created_by": "RUN apt-get install -y curl", "created": "2024-01-01T00:00:00Z"},
            {"created_by": "ENV A=b", "empty_layer": true},
            {"created_by": "COPY app /app", "comment": "buildkit", "empty_layer": false},
        ]});
        let h = layer_history(&config, 3).unwrap();
        let cmds: Vec<_> = h.iter().map(|s| s[0].as_deref().unwrap()).collect();
        assert_eq!(
            cmds,
            [
                "/bin/sh -c #(nop) ADD file:abc in /",
                "RUN apt-get install -y curl",
                "COPY app /app"
            ]
        );
        assert_eq!(h[1][1].as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(h[2][2].as_deref(), Some("buildkit"));
        // Not one step per layer: no guess.
        assert!(layer_history(&config, 4).is_none());
        assert!(layer_history(&json!({}), 1).is_none());
    }
}
