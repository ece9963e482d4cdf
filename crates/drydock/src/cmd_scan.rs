//! `drydock scan TARGET`: catalog an image from an OCI layout, a docker
//! archive or a registry, match it against the vulnerability database in
//! the data directory, and report (table, JSON, CycloneDX, SPDX, SARIF).
//!
//! An index is scanned platform by platform. Without a vulnerability
//! database the packages are still listed, with a notice saying how to
//! install one. `--exit-code N` makes the command fail with N when a
//! vulnerability of a `--severity` level is reported, for CI gates.
//!
//! An image the catalog could not read completely (a file over its cap, a
//! malformed package database, a hostile path, a cap on packages reached;
//! see docs/catalog.md) is reported as such: the table says `INCOMPLETE`
//! with the reasons under the image's heading, the JSON report gives each
//! image `complete` and `incomplete_reasons`, and every reason is also
//! written to standard error as `INCOMPLETE: ...`. The exit code is not
//! changed by it (it still says only whether vulnerabilities were found):
//! a gate that must not pass a partial scan checks `complete`.

use crate::config::Config;
use anyhow::{Context, bail};
use catalog::sbom::{SbomMeta, Vulnerability};
use catalog::{DirCache, LayerCache, MemoryCache};
use inventory::{Inventory, Package};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use vulndb::{Finding, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Cyclonedx,
    Spdx,
    Sarif,
}

#[derive(clap::Args)]
pub struct ScanArgs {
    /// The image: `oci:DIR[:TAG]`, `docker-archive:FILE[:NAME:TAG]` or
    /// `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`.
    pub target: String,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Registry credentials `USER:PASS` (for `docker://`).
    #[arg(long, env = "DRYDOCK_SCAN_CREDS", hide_env_values = true)]
    pub creds: Option<String>,
    /// Talk plain HTTP to the registry (for `docker://`).
    #[arg(long)]
    pub insecure: bool,
    /// Only this platform of an index (`os/arch[/variant]`); default all.
    #[arg(long)]
    pub platform: Option<String>,
    /// Severities to report, comma separated
    /// (`unknown,low,medium,high,critical`).
    #[arg(
        long,
        short = 's',
        value_delimiter = ',',
        default_value = "unknown,low,medium,high,critical"
    )]
    pub severity: Vec<String>,
    /// Exit with this code when any reported vulnerability remains.
    #[arg(long, default_value_t = 0)]
    pub exit_code: u8,
    /// Leave out vulnerabilities that have no fixed version.
    #[arg(long)]
    pub ignore_unfixed: bool,
    /// Do not read or write the per-layer catalog cache in the data dir.
    #[arg(long)]
    pub no_cache: bool,
}

/// One platform's results.
struct Scanned {
    platform: Option<String>,
    manifest: String,
    inventory: Inventory,
    /// Parts of the image the catalog could not read, one sentence each.
    incomplete: Vec<String>,
    findings: Vec<Finding>,
}

pub async fn run(args: ScanArgs, config: Config) -> anyhow::Result<ExitCode> {
    let mut wanted = Vec::new();
    for s in &args.severity {
        wanted.push(Severity::parse(s.trim()).with_context(|| {
            format!("--severity: unknown level {s:?} (use unknown,low,medium,high,critical)")
        })?);
    }
    let mut spec = transport::SourceSpec::parse(&args.target)
        .with_context(|| format!("invalid target {:?}", args.target))?;
    if let transport::SourceSpec::Registry {
        creds, insecure, ..
    } = &mut spec
    {
        if let Some(c) = &args.creds {
            *creds = Some(transport::Credentials::parse(c).context("--creds")?);
        }
        *insecure = args.insecure;
    } else if args.creds.is_some() || args.insecure {
        bail!("--creds and --insecure only apply to docker:// targets");
    }

    let db = match vulndb::Database::open(&config.data) {
        Ok(db) => Some(db),
        Err(vulndb::Error::NoDatabase(_)) => None,
        Err(e) => return Err(e).context("opening the vulnerability database"),
    };
    if db.is_none() && args.exit_code != 0 {
        bail!(
            "no vulnerability database in {}: cannot gate on vulnerabilities; run `drydock db import PATH...` or `drydock db update` first",
            config.data.display()
        );
    }

    let source: Arc<dyn transport::ImageSource> = Arc::from(
        transport::open(&spec)
            .await
            .with_context(|| format!("opening {}", args.target))?,
    );
    let root = source
        .root()
        .await
        .with_context(|| format!("reading the manifest of {}", args.target))?;
    let parsed = root.parse()?;
    // (manifest digest, platform, image manifest)
    let mut images: Vec<(String, Option<oci::Platform>, oci::ImageManifest)> = Vec::new();
    match parsed {
        oci::Manifest::Image { manifest, .. } => {
            images.push((root.digest.to_string(), None, manifest));
        }
        oci::Manifest::Index { index, .. } => {
            for d in index
                .manifests
                .iter()
                .filter(|d| catalog::is_platform_image(d))
            {
                if let (Some(want), Some(p)) = (&args.platform, &d.platform)
                    && &p.display() != want
                {
                    continue;
                }
                let child = source.manifest(&d.digest).await?;
                match child.parse()? {
                    oci::Manifest::Image { manifest, .. } => {
                        images.push((d.digest.to_string(), d.platform.clone(), manifest))
                    }
                    oci::Manifest::Index { .. } => {
                        tracing::warn!("skipping nested index {}", d.digest)
                    }
                }
            }
            if images.is_empty() {
                bail!(
                    "{} is an index with no image{}",
                    args.target,
                    args.platform
                        .as_ref()
                        .map(|p| format!(" for platform {p}"))
                        .unwrap_or_default()
                );
            }
        }
    }

    let cache: Arc<dyn LayerCache> = if args.no_cache || !config.data.is_dir() {
        Arc::new(MemoryCache::new())
    } else {
        Arc::new(DirCache::new(config.data.join("catalog-cache")))
    };
    let blobs = Arc::new(transport::blocking_blob_source(
        source.clone(),
        tokio::runtime::Handle::current(),
    ));
    let mut scanned = Vec::new();
    for (digest, platform, manifest) in images {
        let (blobs, cache) = (blobs.clone(), cache.clone());
        // transport's blob streams verify their digest at the end, and
        // the catalog reads every layer to its end: no need to hash twice.
        let limits = catalog::Limits {
            verify_digest: false,
            ..config.catalog.limits()
        };
        let image = tokio::task::spawn_blocking(move || {
            catalog::catalog_image(blobs.as_ref(), &manifest, cache.as_ref(), &limits)
        })
        .await??;
        let incomplete = image.reasons();
        let inventory = image.inventory;
        let findings: Vec<Finding> = match &db {
            Some(db) => db
                .match_inventory(&inventory)
                .into_iter()
                .filter(|f| f.is_vulnerability())
                .filter(|f| wanted.contains(&f.severity))
                .filter(|f| !args.ignore_unfixed || f.fixed_version.is_some())
                .collect(),
            None => Vec::new(),
        };
        scanned.push(Scanned {
            platform: platform.map(|p| p.display()),
            manifest: digest,
            inventory,
            incomplete,
            findings,
        });
    }

    let db_note = match &db {
        Some(d) => json!({"version": d.version(), "built_at": d.built_at()}),
        None => Value::Null,
    };
    let report = match args.format {
        Format::Table => table(&args.target, &scanned, db.is_some(), &config),
        Format::Json => to_json(&json_report(&args.target, &scanned, db_note)),
        Format::Cyclonedx | Format::Spdx => {
            let docs: Vec<Value> = scanned
                .iter()
                .map(|s| {
                    let mut meta = SbomMeta::new(&args.target);
                    meta.digest = Some(s.manifest.clone());
                    if args.format == Format::Spdx {
                        catalog::sbom::spdx(&s.inventory, &meta)
                    } else {
                        let v: Vec<Vulnerability> = s.findings.iter().map(to_sbom_vuln).collect();
                        catalog::sbom::cyclonedx(&s.inventory, &v, &meta)
                    }
                })
                .collect();
            // One document per platform: a single one stands alone.
            match docs.len() {
                1 => to_json(&docs[0]),
                _ => to_json(&Value::Array(docs)),
            }
        }
        Format::Sarif => to_json(&sarif(&args.target, &scanned)),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, report).with_context(|| format!("writing {}", path.display()))?
        }
        None => crate::out::write_all(report.as_bytes())?,
    }
    for s in &scanned {
        let platform = s
            .platform
            .as_deref()
            .map(|p| format!(" [{p}]"))
            .unwrap_or_default();
        for r in &s.incomplete {
            eprintln!("INCOMPLETE: {}{platform}: {r}", args.target);
        }
    }
    if db.is_none() && args.format != Format::Table {
        eprintln!(
            "note: no vulnerability database is installed in {}; packages only. Run `drydock db import PATH...` or `drydock db update`.",
            config.data.display()
        );
    }
    let total: usize = scanned.iter().map(|s| s.findings.len()).sum();
    if args.exit_code != 0 && total > 0 {
        return Ok(ExitCode::from(args.exit_code));
    }
    Ok(ExitCode::SUCCESS)
}

fn to_json(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON values serialise");
    s.push('\n');
    s
}

fn to_sbom_vuln(f: &Finding) -> Vulnerability {
    Vulnerability {
        id: f.id.to_string(),
        aliases: f.aliases.to_vec(),
        ecosystem: f.ecosystem,
        package: f.package.to_string(),
        installed_version: f.installed_version.to_string(),
        fixed_version: f.fixed_version.as_deref().map(String::from),
        status: f.status.as_str().to_string(),
        severity: f.severity.as_str().to_string(),
        cvss: f.cvss.as_ref().map(|c| c.score),
        summary: (!f.summary.is_empty()).then(|| f.summary.to_string()),
    }
}

fn package_json(p: &Package) -> Value {
    json!({
        "ecosystem": p.ecosystem.as_str(),
        "name": p.name,
        "version": p.version,
        "source_name": p.source_name,
        "source_version": p.source_version,
        "purl": p.purl,
        "location": p.location,
        "layer": p.layer,
    })
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "id": &*f.id,
        "aliases": &*f.aliases,
        "ecosystem": f.ecosystem.as_str(),
        "package": &*f.package,
        "source_package": f.source_package.as_deref(),
        "purl": &*f.purl,
        "installed_version": &*f.installed_version,
        "fixed_version": f.fixed_version.as_deref(),
        "status": f.status.as_str(),
        "severity": f.severity.as_str(),
        "cvss": f.cvss.as_ref().map(|c| json!({"version": c.version, "vector": c.vector, "score": c.score})),
        "summary": &*f.summary,
        "references": &*f.references,
    })
}

fn json_report(target: &str, scanned: &[Scanned], db: Value) -> Value {
    let multi = scanned.len() > 1;
    let mut packages = Vec::new();
    let mut vulns = Vec::new();
    let mut images = Vec::new();
    for s in scanned {
        for p in &s.inventory.packages {
            let mut v = package_json(p);
            if multi {
                v["platform"] = json!(s.platform);
            }
            packages.push(v);
        }
        for f in &s.findings {
            let mut v = finding_json(f);
            if multi {
                v["platform"] = json!(s.platform);
            }
            vulns.push(v);
        }
        images.push(json!({
            "manifest": s.manifest,
            "platform": s.platform,
            "distro": s.inventory.distro,
            "packages": s.inventory.packages.len(),
            "vulnerabilities": s.findings.len(),
            "complete": s.incomplete.is_empty(),
            "incomplete_reasons": s.incomplete,
        }));
    }
    json!({
        "target": target,
        "database": db,
        "images": images,
        "packages": packages,
        "vulnerabilities": vulns,
    })
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Unknown => "note",
    }
}

fn sarif(target: &str, scanned: &[Scanned]) -> Value {
    let mut rules: BTreeMap<String, Value> = BTreeMap::new();
    let mut results = Vec::new();
    for s in scanned {
        for f in &s.findings {
            rules.entry(f.id.to_string()).or_insert_with(|| {
                let mut r = json!({
                    "id": &*f.id,
                    "name": f.id.replace('-', ""),
                    "shortDescription": {"text": format!("{} in {}", f.id, f.package)},
                    "fullDescription": {"text": if f.summary.is_empty() { &*f.id } else { &*f.summary }},
                    "defaultConfiguration": {"level": sarif_level(f.severity)},
                    "properties": {"tags": ["vulnerability", "security", f.severity.as_str()]},
                });
                if let Some(c) = &f.cvss {
                    r["properties"]["security-severity"] = json!(format!("{:.1}", c.score));
                }
                if let Some(u) = f.references.first() {
                    r["helpUri"] = json!(u);
                }
                r
            });
            let location = s
                .inventory
                .packages
                .iter()
                .find(|p| {
                    p.ecosystem == f.ecosystem
                        && *p.name == *f.package
                        && *p.version == *f.installed_version
                })
                .map(|p| p.location.trim_start_matches('/').to_string())
                .unwrap_or_else(|| target.to_string());
            let fixed = f
                .fixed_version
                .as_deref()
                .map(|v| format!("; fixed in {v}"))
                .unwrap_or_default();
            results.push(json!({
                "ruleId": &*f.id,
                "level": sarif_level(f.severity),
                "message": {"text": format!(
                    "{} {} {} is affected by {} ({}){fixed}{}",
                    f.ecosystem, f.package, f.installed_version, f.id, f.severity,
                    s.platform.as_deref().map(|p| format!(" [{p}]")).unwrap_or_default()
                )},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": location}}}],
            }));
        }
    }
    json!({
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "drydock",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules.into_values().collect::<Vec<_>>(),
            }},
            "results": results,
        }],
    })
}

/// Render rows as aligned columns.
fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

fn table(target: &str, scanned: &[Scanned], have_db: bool, config: &Config) -> String {
    let mut out = String::new();
    for s in scanned {
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
        out.push_str(&format!(
            "{target}{} ({})\n{distro}; {} packages ({})\n\n",
            s.platform
                .as_deref()
                .map(|p| format!(" [{p}]"))
                .unwrap_or_default(),
            s.manifest,
            s.inventory.packages.len(),
            ecos.join(", ")
        ));
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
        if !have_db {
            let rows: Vec<Vec<String>> = s
                .inventory
                .packages
                .iter()
                .map(|p| {
                    vec![
                        p.ecosystem.to_string(),
                        p.name.clone(),
                        p.version.clone(),
                        p.location.clone(),
                    ]
                })
                .collect();
            out.push_str(&columns(
                &["ECOSYSTEM", "PACKAGE", "VERSION", "LOCATION"],
                &rows,
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
        let rows: Vec<Vec<String>> = findings
            .iter()
            .map(|f| {
                let mut summary: String = f.summary.chars().take(60).collect();
                if f.summary.chars().count() > 60 {
                    summary.push('…');
                }
                vec![
                    f.package.to_string(),
                    f.ecosystem.to_string(),
                    f.id.to_string(),
                    f.severity.as_str().to_uppercase(),
                    f.installed_version.to_string(),
                    f.fixed_version.as_deref().map_or_else(
                        || match f.status {
                            vulndb::FindingStatus::WontFix => "(won't fix)".into(),
                            _ => "(no fix)".into(),
                        },
                        String::from,
                    ),
                    summary,
                ]
            })
            .collect();
        if !rows.is_empty() {
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
                &rows,
            ));
            out.push('\n');
        }
        let count = |sev: Severity| s.findings.iter().filter(|f| f.severity == sev).count();
        let affected: std::collections::BTreeSet<(&str, &str)> = s
            .findings
            .iter()
            .map(|f| (&*f.package, &*f.installed_version))
            .collect();
        out.push_str(&format!(
            "Total: {} vulnerabilities in {} packages (critical: {}, high: {}, medium: {}, low: {}, unknown: {})\n\n",
            s.findings.len(),
            affected.len(),
            count(Severity::Critical),
            count(Severity::High),
            count(Severity::Medium),
            count(Severity::Low),
            count(Severity::Unknown),
        ));
    }
    if !have_db {
        out.push_str(&format!(
            "No vulnerability database is installed in {}: packages are listed, vulnerabilities are not.\nInstall one with `drydock db import PATH...` (offline) or `drydock db update`.\n",
            config.data.display()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory::Ecosystem;

    fn scanned() -> Scanned {
        let pkg = Package {
            ecosystem: Ecosystem::PyPI,
            name: "requests".into(),
            version: "2.19.1".into(),
            source_name: None,
            source_version: None,
            purl: "pkg:pypi/requests@2.19.1".into(),
            location: "/usr/lib/python3/site-packages/requests-2.19.1.dist-info/METADATA".into(),
            layer: "sha256:aa".into(),
        };
        let finding = Finding {
            id: "PYSEC-2018-28".into(),
            aliases: vec!["CVE-2018-18074".to_string()].into(),
            related: Vec::new().into(),
            ecosystem: Ecosystem::PyPI,
            distro: None,
            package: "requests".into(),
            source_package: None,
            purl: pkg.purl.as_str().into(),
            installed_version: "2.19.1".into(),
            fixed_version: Some("2.20.0".into()),
            status: vulndb::FindingStatus::Fixed,
            status_note: None,
            severity: Severity::High,
            severity_source: "cvss:nvd".into(),
            cvss: Some(std::sync::Arc::new(vulndb::Cvss {
                version: "3.1".into(),
                vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N".into(),
                score: 7.5,
                source: "nvd".into(),
            })),
            summary: "sends credentials over http".into(),
            references: Vec::new().into(),
            informational: None,
            data_source: "osv:PyPI".into(),
        };
        Scanned {
            platform: None,
            manifest: "sha256:bb".into(),
            inventory: Inventory {
                distro: None,
                packages: vec![pkg],
            },
            incomplete: Vec::new(),
            findings: vec![finding],
        }
    }

    #[test]
    fn json_report_has_the_documented_fields() {
        let r = json_report("oci:x", &[scanned()], Value::Null);
        let p = &r["packages"][0];
        for k in [
            "ecosystem",
            "name",
            "version",
            "source_name",
            "source_version",
            "purl",
            "layer",
        ] {
            assert!(p.get(k).is_some(), "packages[].{k}");
        }
        let v = &r["vulnerabilities"][0];
        for k in [
            "id",
            "aliases",
            "ecosystem",
            "package",
            "installed_version",
            "fixed_version",
            "status",
            "severity",
            "cvss",
        ] {
            assert!(v.get(k).is_some(), "vulnerabilities[].{k}");
        }
        assert_eq!(v["severity"], "high");
        assert_eq!(v["cvss"]["score"], 7.5);
        assert!(
            p.get("platform").is_none(),
            "single image: no platform field"
        );
    }

    #[test]
    fn sarif_and_table() {
        let s = sarif("oci:x", &[scanned()]);
        let run = &s["runs"][0];
        assert_eq!(run["results"][0]["level"], "error");
        assert_eq!(
            run["tool"]["driver"]["rules"][0]["properties"]["security-severity"],
            "7.5"
        );
        assert_eq!(
            run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "usr/lib/python3/site-packages/requests-2.19.1.dist-info/METADATA"
        );
        let t = table("oci:x", &[scanned()], true, &Config::default());
        assert!(
            t.contains("PYSEC-2018-28") && t.contains("HIGH") && t.contains("2.20.0"),
            "{t}"
        );
        assert!(
            t.contains("Total: 1 vulnerabilities in 1 packages (critical: 0, high: 1"),
            "{t}"
        );
        let t = table("oci:x", &[scanned()], false, &Config::default());
        assert!(t.contains("No vulnerability database is installed"), "{t}");
        assert!(!t.contains("INCOMPLETE"), "{t}");
    }

    #[test]
    fn incomplete_images_say_so_in_the_table_and_json() {
        let mut s = scanned();
        s.incomplete = vec![
            "/var/lib/dpkg/status: 40000000 bytes, over the limit of 33554432 bytes (max_file_bytes); not read (layer sha256:0123456789ab)".into(),
        ];
        let t = table("oci:x", std::slice::from_ref(&s), true, &Config::default());
        assert!(
            t.contains("INCOMPLETE: 1 part of the image could not be read")
                && t.contains("  - /var/lib/dpkg/status: 40000000 bytes"),
            "{t}"
        );
        let r = json_report("oci:x", &[s], Value::Null);
        assert_eq!(r["images"][0]["complete"], false);
        assert!(
            r["images"][0]["incomplete_reasons"][0]
                .as_str()
                .unwrap()
                .contains("max_file_bytes")
        );
        let r = json_report("oci:x", &[scanned()], Value::Null);
        assert_eq!(r["images"][0]["complete"], true);
        assert_eq!(r["images"][0]["incomplete_reasons"], json!([]));
    }
}
