//! Registry-wide views and actions: image listings, recommendations,
//! usage, the queue, exemptions and test webhook deliveries.

use super::{
    AffectedImage, ImageBrief, QueueEntry, QueueView, Recommendations, UsageReport,
    VulnRecommendation, t,
};
use crate::clock::{rfc3339, to_ms};
use crate::policy::evaluate_with_vex;
use crate::service::Service;
use crate::store::status;
use crate::vuln::Severity;
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};

impl Service {
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
