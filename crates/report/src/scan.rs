//! The result of `drydock scan`: one [`ImageScan`] per image (per platform
//! of an index), and its renderings — JSON, the terminal table, SBOMs and
//! SARIF.

use crate::{SbomMeta, cyclonedx, sarif, spdx, table::columns};
use inventory::{Inventory, Package};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use vulndb::{Finding, FindingStatus, Severity};

/// One image's results.
#[derive(Debug, Clone)]
pub struct ImageScan {
    /// `os/arch[/variant]` for a platform of an index.
    pub platform: Option<String>,
    /// The manifest digest (or, for a directory, what names it).
    pub manifest: String,
    pub inventory: Inventory,
    /// Parts the catalog could not read, one sentence each.
    pub incomplete: Vec<String>,
    pub findings: Vec<Finding>,
}

/// The vulnerability database a scan used.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseInfo {
    pub version: String,
    pub built_at: String,
}

/// Everything one scan found.
#[derive(Debug, Clone)]
pub struct ScanReport {
    /// The target as the user gave it.
    pub target: String,
    /// `None`: no database was installed; packages only.
    pub database: Option<DatabaseInfo>,
    pub images: Vec<ImageScan>,
}

/// The JSON report (`--format json`).
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    pub target: &'a str,
    pub database: Option<&'a DatabaseInfo>,
    pub images: Vec<JsonImage<'a>>,
    pub packages: Vec<Tagged<'a, Package>>,
    pub vulnerabilities: Vec<Tagged<'a, Finding>>,
}

#[derive(Debug, Serialize)]
pub struct JsonImage<'a> {
    pub manifest: &'a str,
    pub platform: Option<&'a str>,
    pub distro: Option<&'a inventory::Distro>,
    pub packages: usize,
    pub vulnerabilities: usize,
    pub complete: bool,
    pub incomplete_reasons: &'a [String],
}

/// A package or finding, with its platform when the target had several.
#[derive(Debug, Serialize)]
pub struct Tagged<'a, T> {
    #[serde(flatten)]
    pub item: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Option<&'a str>>,
}

impl ScanReport {
    pub fn json(&self) -> JsonReport<'_> {
        let multi = self.images.len() > 1;
        fn tag(multi: bool, s: &ImageScan) -> Option<Option<&str>> {
            multi.then_some(s.platform.as_deref())
        }
        let mut out = JsonReport {
            target: &self.target,
            database: self.database.as_ref(),
            images: Vec::new(),
            packages: Vec::new(),
            vulnerabilities: Vec::new(),
        };
        for s in &self.images {
            out.packages
                .extend(s.inventory.packages.iter().map(|item| Tagged {
                    item,
                    platform: tag(multi, s),
                }));
            out.vulnerabilities
                .extend(s.findings.iter().map(|item| Tagged {
                    item,
                    platform: tag(multi, s),
                }));
            out.images.push(JsonImage {
                manifest: &s.manifest,
                platform: s.platform.as_deref(),
                distro: s.inventory.distro.as_ref(),
                packages: s.inventory.packages.len(),
                vulnerabilities: s.findings.len(),
                complete: s.incomplete.is_empty(),
                incomplete_reasons: &s.incomplete,
            });
        }
        out
    }

    /// One CycloneDX document per image, with its findings.
    pub fn cyclonedx(&self) -> Vec<cyclonedx::Bom> {
        self.images
            .iter()
            .map(|s| cyclonedx::bom(&s.inventory, &s.findings, &self.meta(s)))
            .collect()
    }

    /// One SPDX document per image.
    pub fn spdx(&self) -> Vec<spdx::Document> {
        self.images
            .iter()
            .map(|s| spdx::document(&s.inventory, &self.meta(s)))
            .collect()
    }

    pub fn sarif(&self) -> serde_sarif::sarif::Sarif {
        sarif::log(self)
    }

    fn meta(&self, s: &ImageScan) -> SbomMeta {
        let mut meta = SbomMeta::new(&self.target);
        meta.digest = Some(s.manifest.clone());
        meta
    }

    /// The terminal table: per image, a heading (target, platform,
    /// manifest, distribution, package counts), any incomplete reasons,
    /// then the vulnerabilities (or, without a database, the packages)
    /// and a total line.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for s in &self.images {
            out.push_str(&heading(&self.target, s));
            if self.database.is_none() {
                let rows = s.inventory.packages.iter().map(|p| {
                    vec![
                        p.ecosystem.to_string(),
                        p.name.clone(),
                        p.version.clone(),
                        p.location.clone(),
                    ]
                });
                out.push_str(&columns(
                    &["ECOSYSTEM", "PACKAGE", "VERSION", "LOCATION"],
                    rows,
                    &[],
                ));
                out.push('\n');
                continue;
            }
            let mut findings: Vec<&Finding> = s.findings.iter().collect();
            findings.sort_by(|a, b| {
                b.severity
                    .cmp(&a.severity)
                    .then_with(|| a.package.cmp(&b.package))
                    .then_with(|| a.id.cmp(&b.id))
            });
            if !findings.is_empty() {
                out.push_str(&columns(
                    &[
                        "PACKAGE",
                        "ECOSYSTEM",
                        "VULNERABILITY",
                        "SEVERITY",
                        "INSTALLED",
                        "FIXED",
                        "SUMMARY",
                    ],
                    findings.iter().map(|f| finding_row(f)),
                    &[],
                ));
                out.push('\n');
            }
            out.push_str(&total(&s.findings));
        }
        out
    }
}

fn heading(target: &str, s: &ImageScan) -> String {
    let distro = s
        .inventory
        .distro
        .as_ref()
        .map(|d| {
            d.pretty_name
                .clone()
                .unwrap_or_else(|| format!("{} {}", d.id, d.version_id))
        })
        .unwrap_or_else(|| "unknown OS".into());
    let mut per_eco: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &s.inventory.packages {
        *per_eco.entry(p.ecosystem.as_str()).or_default() += 1;
    }
    let ecos: Vec<String> = per_eco.iter().map(|(e, n)| format!("{e} {n}")).collect();
    let mut out = format!(
        "{target}{} ({})\n{distro}; {} packages ({})\n\n",
        s.platform
            .as_deref()
            .map(|p| format!(" [{p}]"))
            .unwrap_or_default(),
        s.manifest,
        s.inventory.packages.len(),
        ecos.join(", ")
    );
    if !s.incomplete.is_empty() {
        let n = s.incomplete.len();
        out.push_str(&format!(
            "INCOMPLETE: {n} part{} of the image could not be read; what is listed below may not be all:\n",
            if n == 1 { "" } else { "s" }
        ));
        for r in &s.incomplete {
            out.push_str(&format!("  - {r}\n"));
        }
        out.push('\n');
    }
    out
}

fn finding_row(f: &Finding) -> Vec<String> {
    let mut summary: String = f.summary.chars().take(60).collect();
    if f.summary.chars().count() > 60 {
        summary.push('…');
    }
    let fixed = match (&f.fixed_version, f.status) {
        (Some(v), _) => v.to_string(),
        (None, FindingStatus::WontFix) => "(won't fix)".into(),
        (None, _) => "(no fix)".into(),
    };
    vec![
        f.package.to_string(),
        f.ecosystem.to_string(),
        f.id.to_string(),
        f.severity.as_str().to_uppercase(),
        f.installed_version.to_string(),
        fixed,
        summary,
    ]
}

fn total(findings: &[Finding]) -> String {
    let count = |sev: Severity| findings.iter().filter(|f| f.severity == sev).count();
    let affected: BTreeSet<(&str, &str)> = findings
        .iter()
        .map(|f| (&*f.package, &*f.installed_version))
        .collect();
    format!(
        "Total: {} vulnerabilities in {} packages (critical: {}, high: {}, medium: {}, low: {}, unknown: {})\n\n",
        findings.len(),
        affected.len(),
        count(Severity::Critical),
        count(Severity::High),
        count(Severity::Medium),
        count(Severity::Low),
        count(Severity::Unknown),
    )
}
