//! The views of one image: its verdict and brief line, the full view
//! (`GET /api/v1/images/{digest}`), and the pages of its findings and
//! packages.

use super::{
    ChildView, DEFAULT_PAGE, DiffView, Diffs, FindingFilter, FindingView, FindingsPage, ImageBrief,
    ImageView, MAX_PAGE, PackagesPage, PageError, cursor_for, filter_tag, findings_cursor,
    parse_cursor, parse_findings_cursor, same_platform, select_findings, t,
};
use crate::policy::{
    Diff, Health, Judged, Summary, diff_keys, evaluate_with_vex, finding_key, fixable,
};
use crate::remediation::{self, Candidate, Remediation};
use crate::service::Service;
use crate::store::{ImageRow, status};
use anyhow::Result;

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

    pub(super) fn is_stale(&self, db_version: Option<&str>) -> bool {
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
        // Keys only when there is something to compare with (5,000
        // findings make 5,000 strings).
        let keys = std::cell::OnceCell::new();
        let now_keys = || -> &Vec<String> {
            keys.get_or_init(|| res.findings.iter().map(finding_key).collect())
        };
        if let Some(prev_at) = res.prev_assessed_at {
            let diff = match &res.prev_keys {
                Some(prev) => diff_keys(prev.iter(), now_keys().iter()),
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
                    diff: diff_keys(prev_keys.iter(), now_keys().iter()),
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
}
