//! Pure remediation guidance: the upgrade plan and base-image advice.

use crate::policy::{Judged, fixable};
use crate::vuln::Severity;
use inventory::Inventory;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use utoipa::ToSchema;

/// One package upgrade and what it clears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Upgrade {
    pub ecosystem: String,
    pub package: String,
    pub installed_version: String,
    /// The lowest version that fixes every finding listed in `clears`.
    pub upgrade_to: String,
    /// Vulnerability ids this upgrade clears.
    pub clears: Vec<String>,
    /// The most severe finding it clears.
    pub highest_severity: String,
}

/// Another image in the registry that is a better starting point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Candidate {
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    /// Its counted (non-exempt, non-informational) findings.
    pub findings: usize,
}

/// Advice to rebuild on a newer base image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BaseImageAdvice {
    pub advice: String,
    /// Counted findings in OS packages installed by the base layers.
    pub os_findings_in_base_layers: usize,
    pub total_findings: usize,
    /// The base layers (digests) the image shares with its base.
    pub base_layers: Vec<String>,
    /// The registry image whose layers this image starts with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<Candidate>,
}

/// Per-image remediation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Remediation {
    /// Upgrades, most valuable first: taking the first k clears the most
    /// (and most severe) findings any k upgrades can.
    pub upgrade_plan: Vec<Upgrade>,
    /// Counted findings the whole plan clears.
    pub findings_cleared: usize,
    /// Counted findings with no fix available.
    pub findings_without_fix: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<BaseImageAdvice>,
    /// An image in the registry that shares this image's base layers and
    /// carries fewer findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub better_alternative: Option<Candidate>,
}

/// Build the upgrade plan from judged findings (exempt and informational
/// findings are left out). Findings on one package are cleared by one
/// upgrade to the highest of their fixed versions, so the sets are disjoint
/// and ordering by value gives the best plan for every prefix length.
#[allow(clippy::type_complexity)]
pub fn upgrade_plan(judged: &[Judged<'_>]) -> (Vec<Upgrade>, usize, usize) {
    let mut groups: BTreeMap<(String, String, String), (String, Vec<String>, Severity)> =
        BTreeMap::new();
    let mut without_fix = 0;
    for j in judged {
        let f = j.finding;
        if j.exempted_by.is_some() || j.cleared_by_vex() || f.informational.is_some() {
            continue;
        }
        if !fixable(f) {
            without_fix += 1;
            continue;
        }
        let fixed = f.fixed_version.as_deref().unwrap_or_default().to_string();
        let key = (
            f.ecosystem.as_str().to_string(),
            f.package.to_string(),
            f.installed_version.to_string(),
        );
        let entry = groups
            .entry(key)
            .or_insert_with(|| (fixed.clone(), Vec::new(), f.severity));
        if compare_versions(&fixed, &entry.0) == Ordering::Greater {
            entry.0 = fixed;
        }
        if !entry.1.iter().any(|x| **x == *f.id) {
            entry.1.push(f.id.to_string());
        }
        entry.2 = entry.2.max(f.severity);
    }
    let mut plan: Vec<(Severity, Upgrade)> = groups
        .into_iter()
        .map(|((eco, pkg, installed), (to, mut ids, sev))| {
            ids.sort();
            (
                sev,
                Upgrade {
                    ecosystem: eco,
                    package: pkg,
                    installed_version: installed,
                    upgrade_to: to,
                    clears: ids,
                    highest_severity: sev.as_str().into(),
                },
            )
        })
        .collect();
    plan.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(b.1.clears.len().cmp(&a.1.clears.len()))
            .then(a.1.package.cmp(&b.1.package))
    });
    let cleared = plan.iter().map(|(_, u)| u.clears.len()).sum();
    (
        plan.into_iter().map(|(_, u)| u).collect(),
        cleared,
        without_fix,
    )
}

/// Base-image advice: when more than half of the counted findings are in OS
/// packages that the base layers installed, and at least one of those has
/// a fix, rebuilding on a newer base is the cheapest fix. `base_layers` are the layers this image shares with
/// its base (a registry image whose layers are a prefix of this one's, or
/// else the first layer).
pub fn base_image_advice(
    judged: &[Judged<'_>],
    inventory: &Inventory,
    base_layers: &[String],
    base_image: Option<Candidate>,
) -> Option<BaseImageAdvice> {
    if base_layers.is_empty() {
        return None;
    }
    let base: HashSet<&str> = base_layers.iter().map(String::as_str).collect();
    // (ecosystem, name or source name, version) -> layer
    let mut layer_of: HashMap<(&str, &str), &str> = HashMap::new();
    for p in &inventory.packages {
        if !p.ecosystem.is_os() {
            continue;
        }
        layer_of
            .entry((p.ecosystem.as_str(), p.name.as_str()))
            .or_insert(&p.layer);
        if let Some(src) = &p.source_name {
            layer_of
                .entry((p.ecosystem.as_str(), src.as_str()))
                .or_insert(&p.layer);
        }
    }
    let mut total = 0;
    let mut in_base = 0;
    let mut in_base_fixable = 0;
    for j in judged {
        let f = j.finding;
        if j.exempted_by.is_some() || j.cleared_by_vex() || f.informational.is_some() {
            continue;
        }
        total += 1;
        if f.ecosystem.is_os()
            && layer_of
                .get(&(f.ecosystem.as_str(), &*f.package))
                .is_some_and(|l| base.contains(l))
        {
            in_base += 1;
            if fixable(f) {
                in_base_fixable += 1;
            }
        }
    }
    // A newer base can only help when it carries a fix: with none of the
    // base's findings fixed yet, rebuilding changes nothing.
    if total == 0 || in_base * 2 <= total || in_base_fixable == 0 {
        return None;
    }
    let advice = match &base_image {
        Some(b) => format!(
            "{in_base} of {total} findings are in OS packages from the base image {}; rebuild on a newer base image",
            b.repository
        ),
        None => format!(
            "{in_base} of {total} findings are in OS packages from the base layers; rebuild on a newer base image"
        ),
    };
    Some(BaseImageAdvice {
        advice,
        os_findings_in_base_layers: in_base,
        total_findings: total,
        base_layers: base_layers.to_vec(),
        base_image,
    })
}

/// The candidate with the fewest findings, if it has fewer than `mine`.
pub fn better_alternative(mine: usize, candidates: Vec<Candidate>) -> Option<Candidate> {
    candidates
        .into_iter()
        .filter(|c| c.findings < mine)
        .min_by(|a, b| {
            a.findings
                .cmp(&b.findings)
                .then(a.repository.cmp(&b.repository))
        })
}

/// A version order good enough to pick the highest of several fixed
/// versions of one package: an optional `epoch:`, then runs of digits
/// compared as numbers and other runs compared as text, with `~` sorting
/// before everything (Debian's pre-release marker).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split_epoch(v: &str) -> (u64, &str) {
        match v.split_once(':') {
            Some((e, rest)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => {
                (e.parse().unwrap_or(0), rest)
            }
            _ => (0, v),
        }
    }
    let (ea, ra) = split_epoch(a);
    let (eb, rb) = split_epoch(b);
    ea.cmp(&eb)
        .then_with(|| compare_rest(ra.as_bytes(), rb.as_bytes()))
}

fn compare_rest(mut a: &[u8], mut b: &[u8]) -> Ordering {
    loop {
        // Non-digit run.
        let na = a.iter().take_while(|c| !c.is_ascii_digit()).count();
        let nb = b.iter().take_while(|c| !c.is_ascii_digit()).count();
        let (sa, sb) = (&a[..na], &b[..nb]);
        let mut i = 0;
        loop {
            let ca = sa.get(i).copied();
            let cb = sb.get(i).copied();
            let ord = match (ca, cb) {
                (None, None) => break,
                (Some(b'~'), Some(b'~')) => Ordering::Equal,
                (Some(b'~'), _) => return Ordering::Less,
                (_, Some(b'~')) => return Ordering::Greater,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some(x), Some(y)) => x.cmp(&y),
            };
            if ord != Ordering::Equal {
                return ord;
            }
            i += 1;
        }
        a = &a[na..];
        b = &b[nb..];
        let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let num = |s: &[u8]| -> u128 {
            std::str::from_utf8(s)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        };
        let ord = num(&a[..da]).cmp(&num(&b[..db]));
        if ord != Ordering::Equal {
            return ord;
        }
        a = &a[da..];
        b = &b[db..];
        if a.is_empty() && b.is_empty() {
            return Ordering::Equal;
        }
    }
}
