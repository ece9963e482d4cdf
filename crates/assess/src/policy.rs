//! Pure decisions over findings: repository patterns, the health policy,
//! exemptions, summaries and diffs. Nothing here does I/O or reads a clock;
//! callers pass `now`.

use crate::vuln::{Finding, FindingStatus, Severity};
use oci::{NameGlob, RepoPattern};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// When is an image unhealthy? A finding *violates* the rule when it is not
/// informational, not exempt, at or above `threshold`, and (if
/// `fixable_only`) has a fix available. One violation makes the image
/// unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyRule {
    /// Repository pattern this rule applies to (`**` for all; `*` stays
    /// within one path segment, as in access bindings).
    #[schema(value_type = String, example = "team-a/**")]
    pub repository: RepoPattern,
    #[schema(value_type = String, example = "high")]
    pub threshold: Severity,
    /// Count only findings with a fix available (default true).
    #[serde(default = "yes")]
    pub fixable_only: bool,
}

fn yes() -> bool {
    true
}

/// Rules per repository pattern; the first matching rule wins, then the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub rules: Vec<PolicyRule>,
    pub default: PolicyRule,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            rules: Vec::new(),
            default: PolicyRule {
                repository: RepoPattern::new("**").expect("a valid pattern"),
                threshold: Severity::High,
                fixable_only: true,
            },
        }
    }
}

impl Policy {
    pub fn rule_for(&self, repo: &str) -> &PolicyRule {
        self.rules
            .iter()
            .find(|r| r.repository.is_match(repo))
            .unwrap_or(&self.default)
    }
}

/// An exemption: findings it matches are shown as exempt and do not count
/// toward health or notifications. Every criterion given must match; at
/// least one of `vulnerability`, `package`, `severity` must be given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Exemption {
    pub id: String,
    /// Vulnerability id or alias (`CVE-2023-1234`, `GHSA-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerability: Option<String>,
    /// Package name as the finding reports it, or a [`NameGlob`] over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Repository pattern ([`RepoPattern`]); absent means every repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Exempts findings at or below this severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "low")]
    pub severity: Option<Severity>,
    pub reason: String,
    pub author: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

impl Exemption {
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }

    /// Check the patterns compile (before the exemption is stored).
    pub fn validate(&self) -> Result<(), oci::PatternError> {
        if let Some(r) = &self.repository {
            RepoPattern::new(r)?;
        }
        if let Some(p) = &self.package {
            NameGlob::new(p)?;
        }
        Ok(())
    }

    /// The exemption with its patterns compiled, to match many findings.
    pub fn compile(&self) -> CompiledExemption<'_> {
        CompiledExemption {
            repository: self.repository.as_deref().map(RepoPattern::new),
            package: self.package.as_deref().map(NameGlob::new),
            e: self,
        }
    }

    /// Whether the exemption covers finding `f` of an image in `repo`
    /// (compiles the patterns: for many findings, use [`Exemption::compile`]).
    pub fn matches(&self, repo: &str, f: &Finding) -> bool {
        self.compile().matches(repo, f)
    }
}

/// An [`Exemption`] with its patterns compiled. A pattern that does not
/// compile (stored before patterns were checked) matches nothing: an
/// exemption narrows health, so failing to apply it is the safe side.
pub struct CompiledExemption<'a> {
    pub e: &'a Exemption,
    repository: Option<Result<RepoPattern, oci::PatternError>>,
    package: Option<Result<NameGlob, oci::PatternError>>,
}

impl CompiledExemption<'_> {
    /// Whether the exemption applies to images in `repo` at all.
    pub fn covers_repository(&self, repo: &str) -> bool {
        match &self.repository {
            None => true,
            Some(Ok(p)) => p.is_match(repo),
            Some(Err(_)) => false,
        }
    }

    pub fn matches(&self, repo: &str, f: &Finding) -> bool {
        if !self.covers_repository(repo) {
            return false;
        }
        let e = self.e;
        if let Some(v) = &e.vulnerability
            && !(f.id.eq_ignore_ascii_case(v)
                || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(v)))
        {
            return false;
        }
        if let Some(p) = &self.package
            && !p.as_ref().is_ok_and(|p| p.is_match(&f.package))
        {
            return false;
        }
        if let Some(s) = e.severity
            && f.severity > s
        {
            return false;
        }
        true
    }
}

/// Whether a fix is available for a finding.
pub fn fixable(f: &Finding) -> bool {
    f.status == FindingStatus::Fixed && f.fixed_version.is_some()
}

/// Identity of a problem across assessments and digests: vulnerability,
/// ecosystem and package (not the installed version, so an upgrade that
/// does not fix it is not "new").
pub fn finding_key(f: &Finding) -> String {
    format!("{}|{}|{}", f.id, f.ecosystem.as_str(), f.package)
}

/// A finding judged against exemptions and the policy.
#[derive(Debug, Clone)]
pub struct Judged<'a> {
    pub finding: &'a Finding,
    /// The id of the first active exemption that matches.
    pub exempted_by: Option<String>,
    /// The latest VEX statement about this finding, if any; one whose
    /// status clears it (`not_affected`, `fixed`) takes it out of the verdict.
    pub vex: Option<crate::vex::VexNote>,
    /// Whether this finding makes the image unhealthy.
    pub violates: bool,
}

impl Judged<'_> {
    /// Whether a VEX statement takes this finding out of the verdict.
    pub fn cleared_by_vex(&self) -> bool {
        self.vex.as_ref().is_some_and(|v| v.status.clears())
    }
}

/// Counts by severity and fix availability. Exempt and informational
/// findings are counted apart and not in the other numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    pub total: usize,
    pub critical: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    pub unknown: usize,
    /// Findings with a fixed version available.
    pub fixable: usize,
    pub unfixed: usize,
    pub wont_fix: usize,
    pub exempt: usize,
    pub informational: usize,
    /// Findings a VEX statement says do not apply (`not_affected`, `fixed`).
    #[serde(default)]
    pub not_affected: usize,
}

impl Summary {
    pub fn add(&mut self, other: &Summary) {
        self.total += other.total;
        self.critical += other.critical;
        self.high += other.high;
        self.medium += other.medium;
        self.low += other.low;
        self.unknown += other.unknown;
        self.fixable += other.fixable;
        self.unfixed += other.unfixed;
        self.wont_fix += other.wont_fix;
        self.exempt += other.exempt;
        self.informational += other.informational;
        self.not_affected += other.not_affected;
    }
}

/// The verdict. A healthy image says so explicitly (`healthy: true`).
///
/// Three states: `unhealthy` when a finding violates the rule (whether or
/// not the image was read whole: what was found is enough), else
/// `incomplete` when part of the image could not be read (the catalog
/// skipped and named it: a file over its cap, a malformed package
/// database, a hostile path, a cap on packages reached), else `healthy`.
/// An incomplete image is never healthy: what was not read may hide
/// anything. Only `healthy` has `healthy: true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub healthy: bool,
    /// `healthy`, `unhealthy` or `incomplete`.
    pub status: String,
    /// One sentence saying why.
    pub reason: String,
    /// Number of findings that violate the policy.
    pub violations: usize,
    /// Whether every part of the image was read (for an index: of every
    /// platform image).
    #[serde(default = "yes")]
    pub complete: bool,
    /// What was not read and why, one sentence each (empty when complete).
    #[serde(default)]
    pub incomplete_reasons: Vec<String>,
    pub policy: PolicyRule,
}

/// Health states, as [`Health::status`] says them.
pub mod health_status {
    pub const HEALTHY: &str = "healthy";
    pub const UNHEALTHY: &str = "unhealthy";
    pub const INCOMPLETE: &str = "incomplete";
}

impl Health {
    /// Health of a set of children (an index): unhealthy if any is, else
    /// incomplete if any is, else healthy.
    pub fn roll_up(rule: &PolicyRule, children: &[&Health]) -> Health {
        use health_status::*;
        let violations: usize = children.iter().map(|h| h.violations).sum();
        let n = children.len();
        let count = |s: &str| children.iter().filter(|h| h.status == s).count();
        let (unhealthy, incomplete) = (count(UNHEALTHY), count(INCOMPLETE));
        let mut reasons: Vec<String> = Vec::new();
        for r in children.iter().flat_map(|h| h.incomplete_reasons.iter()) {
            if !reasons.contains(r) {
                reasons.push(r.clone());
            }
        }
        let complete = children.iter().all(|h| h.complete);
        let (healthy, status, reason) = if unhealthy > 0 {
            (
                false,
                UNHEALTHY,
                format!("{unhealthy} of {n} platform images are unhealthy"),
            )
        } else if incomplete > 0 || !complete {
            (
                false,
                INCOMPLETE,
                format!("{incomplete} of {n} platform images could not be read completely"),
            )
        } else {
            (
                true,
                HEALTHY,
                format!("all {n} platform images are healthy"),
            )
        };
        Health {
            healthy,
            status: status.into(),
            reason,
            violations,
            complete,
            incomplete_reasons: reasons,
            policy: rule.clone(),
        }
    }
}

/// Everything the policy says about one image's findings.
#[derive(Debug, Clone)]
pub struct Evaluation<'a> {
    pub judged: Vec<Judged<'a>>,
    pub summary: Summary,
    pub health: Health,
}

/// Judge findings of an image in `repo` at time `now`, as if every part
/// of the image was read. Callers with an image's incomplete reasons use
/// [`evaluate_image`].
pub fn evaluate<'a>(
    findings: &'a [Finding],
    repo: &str,
    rule: &PolicyRule,
    exemptions: &[Exemption],
    now: OffsetDateTime,
) -> Evaluation<'a> {
    evaluate_image(findings, repo, rule, exemptions, &[], now)
}

/// Judge findings of an image in `repo` at time `now`; `incomplete` names
/// the parts of the image that could not be read (empty when it was read
/// whole). An image with a violation is unhealthy; otherwise one with
/// anything in `incomplete` is `incomplete`, not healthy.
pub fn evaluate_image<'a>(
    findings: &'a [Finding],
    repo: &str,
    rule: &PolicyRule,
    exemptions: &[Exemption],
    incomplete: &[String],
    now: OffsetDateTime,
) -> Evaluation<'a> {
    evaluate_with_vex(findings, repo, rule, exemptions, &[], incomplete, now)
}

/// [`evaluate_image`] with VEX: `vex[i]` is the latest statement about
/// `findings[i]` (an empty slice when there is none). A finding a VEX
/// statement clears is shown as not affected and counted apart, before
/// exemptions are looked at.
pub fn evaluate_with_vex<'a>(
    findings: &'a [Finding],
    repo: &str,
    rule: &PolicyRule,
    exemptions: &[Exemption],
    vex: &[Option<crate::vex::VexNote>],
    incomplete: &[String],
    now: OffsetDateTime,
) -> Evaluation<'a> {
    let active: Vec<CompiledExemption<'_>> = exemptions
        .iter()
        .filter(|e| e.is_active(now))
        .map(Exemption::compile)
        .filter(|c| c.covers_repository(repo))
        .collect();
    let mut summary = Summary::default();
    let mut judged = Vec::with_capacity(findings.len());
    for (i, f) in findings.iter().enumerate() {
        let vex = vex.get(i).cloned().flatten();
        let cleared = vex.as_ref().is_some_and(|v| v.status.clears());
        let exempted_by = active
            .iter()
            .find(|c| c.matches(repo, f))
            .map(|c| c.e.id.clone());
        let violates = !cleared
            && exempted_by.is_none()
            && f.informational.is_none()
            && f.severity >= rule.threshold
            && (!rule.fixable_only || fixable(f));
        if cleared {
            summary.not_affected += 1;
        } else if exempted_by.is_some() {
            summary.exempt += 1;
        } else if f.informational.is_some() {
            summary.informational += 1;
        } else {
            summary.total += 1;
            match f.severity {
                Severity::Critical => summary.critical += 1,
                Severity::High => summary.high += 1,
                Severity::Medium => summary.medium += 1,
                Severity::Low => summary.low += 1,
                Severity::Unknown => summary.unknown += 1,
            }
            if fixable(f) {
                summary.fixable += 1;
            } else if f.status == FindingStatus::WontFix {
                summary.wont_fix += 1;
            } else {
                summary.unfixed += 1;
            }
        }
        judged.push(Judged {
            finding: f,
            exempted_by,
            vex,
            violates,
        });
    }
    let violations = judged.iter().filter(|j| j.violates).count();
    let fix = if rule.fixable_only { "fixable " } else { "" };
    let threshold = rule.threshold.as_str();
    let complete = incomplete.is_empty();
    let gaps = {
        let n = incomplete.len();
        let s = if n == 1 { "" } else { "s" };
        format!("the image could not be read completely ({n} part{s} skipped)")
    };
    let (status, reason) = if violations > 0 {
        let s = if violations == 1 { "" } else { "s" };
        let found = format!("{violations} {fix}finding{s} at or above {threshold}");
        if complete {
            (health_status::UNHEALTHY, found)
        } else {
            (health_status::UNHEALTHY, format!("{found}; {gaps}"))
        }
    } else if !complete {
        (
            health_status::INCOMPLETE,
            format!("{gaps}; no {fix}finding at or above {threshold} in what was read"),
        )
    } else {
        (
            health_status::HEALTHY,
            format!("no {fix}finding at or above {threshold}"),
        )
    };
    let health = Health {
        healthy: status == health_status::HEALTHY,
        status: status.into(),
        reason,
        violations,
        complete,
        incomplete_reasons: incomplete.to_vec(),
        policy: rule.clone(),
    };
    Evaluation {
        judged,
        summary,
        health,
    }
}

/// What changed between two sets of findings, by [`finding_key`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Diff {
    /// Keys (`id|ecosystem|package`) present now and not before.
    pub new: Vec<String>,
    /// Keys present before and not now.
    pub resolved: Vec<String>,
}

pub fn diff_keys<'a>(
    before: impl IntoIterator<Item = &'a String>,
    now: impl IntoIterator<Item = &'a String>,
) -> Diff {
    let before: HashSet<&String> = before.into_iter().collect();
    let now: HashSet<&String> = now.into_iter().collect();
    let mut new: Vec<String> = now.difference(&before).map(|s| (*s).clone()).collect();
    let mut resolved: Vec<String> = before.difference(&now).map(|s| (*s).clone()).collect();
    new.sort();
    resolved.sort();
    Diff { new, resolved }
}

/// Count findings per severity name, for compact listings.
pub fn severity_counts(findings: &[Finding]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for f in findings {
        *m.entry(f.severity.as_str()).or_insert(0) += 1;
    }
    m
}
