//! SBOM documents for an [`Inventory`]: CycloneDX 1.6 JSON (with
//! vulnerabilities when given) and SPDX 2.3 JSON.
//!
//! Findings are passed as [`Vulnerability`], a plain record the caller
//! fills from whatever matcher it uses, so this crate does not depend on
//! the vulnerability database.

use inventory::{Ecosystem, Inventory, Package};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;

/// One vulnerability affecting one package, as SBOM writers need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vulnerability {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub ecosystem: Ecosystem,
    pub package: String,
    pub installed_version: String,
    #[serde(default)]
    pub fixed_version: Option<String>,
    /// `fixed`, `affected`, `will_not_fix`, … as the matcher reports it.
    #[serde(default)]
    pub status: String,
    /// Lower case: `critical`, `high`, `medium`, `low`, `unknown`.
    pub severity: String,
    #[serde(default)]
    pub cvss: Option<f64>,
    #[serde(default)]
    pub summary: Option<String>,
}

/// What the document is about and who made it.
#[derive(Debug, Clone)]
pub struct SbomMeta {
    /// The image reference as the user gave it.
    pub name: String,
    /// The manifest digest, when known.
    pub digest: Option<String>,
    pub tool_name: String,
    pub tool_version: String,
    /// RFC 3339 creation time; `None` means now.
    pub timestamp: Option<String>,
}

impl SbomMeta {
    pub fn new(name: impl Into<String>) -> SbomMeta {
        SbomMeta {
            name: name.into(),
            digest: None,
            tool_name: "drydock".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            timestamp: None,
        }
    }
    fn time(&self) -> String {
        self.timestamp.clone().unwrap_or_else(|| {
            let now = time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            now.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
        })
    }
}

/// Unique bom-refs: the purl, suffixed when a purl repeats.
fn bom_refs(packages: &[Package]) -> Vec<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    packages
        .iter()
        .map(|p| {
            let n = seen.entry(p.purl.as_str()).or_insert(0);
            *n += 1;
            if *n == 1 {
                p.purl.clone()
            } else {
                format!("{}#{}", p.purl, n)
            }
        })
        .collect()
}

fn properties(p: &Package) -> Vec<Value> {
    let mut props = vec![
        json!({"name": "drydock:package:ecosystem", "value": p.ecosystem.as_str()}),
        json!({"name": "drydock:package:location", "value": p.location}),
        json!({"name": "drydock:package:layer", "value": p.layer}),
    ];
    if let Some(s) = &p.source_name {
        props.push(json!({"name": "drydock:package:source_name", "value": s}));
    }
    if let Some(s) = &p.source_version {
        props.push(json!({"name": "drydock:package:source_version", "value": s}));
    }
    props
}

/// CycloneDX 1.6 JSON: the image as `metadata.component`, the
/// distribution and every package as components, and `vulns` as
/// vulnerabilities referring to the affected components.
pub fn cyclonedx(inv: &Inventory, vulns: &[Vulnerability], meta: &SbomMeta) -> Value {
    let refs = bom_refs(&inv.packages);
    let mut components: Vec<Value> = Vec::new();
    if let Some(d) = &inv.distro {
        components.push(json!({
            "type": "operating-system",
            "bom-ref": format!("os:{}@{}", d.id, d.version_id),
            "name": d.id,
            "version": d.version_id,
            "description": d.pretty_name.clone().unwrap_or_default(),
        }));
    }
    for (p, r) in inv.packages.iter().zip(&refs) {
        components.push(json!({
            "type": "library",
            "bom-ref": r,
            "name": p.name,
            "version": p.version,
            "purl": p.purl,
            "properties": properties(p),
        }));
    }
    let mut by_pkg: HashMap<(Ecosystem, &str, &str), Vec<&str>> = HashMap::new();
    for (p, r) in inv.packages.iter().zip(&refs) {
        by_pkg
            .entry((p.ecosystem, p.name.as_str(), p.version.as_str()))
            .or_default()
            .push(r.as_str());
    }
    let mut vuln_docs: Vec<Value> = Vec::new();
    let mut vuln_index: HashMap<&str, usize> = HashMap::new();
    for v in vulns {
        let affects: Vec<Value> = by_pkg
            .get(&(
                v.ecosystem,
                v.package.as_str(),
                v.installed_version.as_str(),
            ))
            .map(|rs| rs.iter().map(|r| json!({"ref": r})).collect())
            .unwrap_or_default();
        if let Some(&i) = vuln_index.get(v.id.as_str()) {
            // One entry per id; more affected components.
            if let Some(a) = vuln_docs[i]["affects"].as_array_mut() {
                a.extend(affects);
            }
            continue;
        }
        let severity = match v.severity.to_ascii_lowercase().as_str() {
            s @ ("critical" | "high" | "medium" | "low" | "info" | "none") => s.to_string(),
            _ => "unknown".to_string(),
        };
        let mut rating = json!({"severity": severity});
        if let Some(score) = v.cvss {
            rating["score"] = json!(score);
            rating["method"] = json!("CVSSv31");
        }
        let mut doc = json!({
            "bom-ref": format!("vuln:{}", v.id),
            "id": v.id,
            "ratings": [rating],
            "affects": affects,
        });
        if let Some(s) = &v.summary {
            doc["description"] = json!(s);
        }
        if let Some(f) = &v.fixed_version {
            doc["recommendation"] = json!(format!("Upgrade {} to {f}", v.package));
        }
        if !v.aliases.is_empty() {
            doc["references"] = Value::Array(
                v.aliases
                    .iter()
                    .map(|a| json!({"id": a, "source": {"name": source_of(a)}}))
                    .collect(),
            );
        }
        doc["source"] = json!({"name": source_of(&v.id)});
        vuln_index.insert(v.id.as_str(), vuln_docs.len());
        vuln_docs.push(doc);
    }
    let mut image = json!({
        "type": "container",
        "bom-ref": format!("image:{}", meta.name),
        "name": meta.name,
    });
    if let Some(d) = &meta.digest {
        image["version"] = json!(d);
    }
    let mut doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "version": 1,
        "metadata": {
            "timestamp": meta.time(),
            "tools": {"components": [{
                "type": "application",
                "name": meta.tool_name,
                "version": meta.tool_version,
            }]},
            "component": image,
        },
        "components": components,
    });
    if !vuln_docs.is_empty() {
        doc["vulnerabilities"] = Value::Array(vuln_docs);
    }
    doc
}

/// The database an identifier comes from, by its prefix.
fn source_of(id: &str) -> &'static str {
    match id.split('-').next().unwrap_or("") {
        "CVE" => "NVD",
        "GHSA" => "GitHub",
        "RUSTSEC" => "RustSec",
        "PYSEC" => "PyPA",
        "GO" => "Go",
        "DSA" | "DLA" | "DEBIAN" => "Debian",
        _ => "OSV",
    }
}

/// SPDX 2.3 JSON: one package for the image, one per inventory package
/// (with its purl as an external reference), `CONTAINS` relationships.
pub fn spdx(inv: &Inventory, meta: &SbomMeta) -> Value {
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": meta.name,
        "versionInfo": meta.digest.clone().unwrap_or_default(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    if let Some(d) = &inv.distro {
        packages.push(json!({
            "SPDXID": "SPDXRef-OperatingSystem",
            "name": d.id,
            "versionInfo": d.version_id,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": "SPDXRef-OperatingSystem",
        }));
    }
    for (i, p) in inv.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{i}", p.ecosystem.as_str());
        let mut pkg = json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "sourceInfo": format!("found in {} (layer {})", p.location, p.layer),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl,
            }],
            "primaryPackagePurpose": if p.ecosystem.is_os() { "INSTALL" } else { "LIBRARY" },
        });
        if let Some(s) = &p.source_name
            && s != &p.name
        {
            pkg["comment"] = json!(format!(
                "source package {s} {}",
                p.source_version.as_deref().unwrap_or(&p.version)
            ));
        }
        packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": meta.name,
        "documentNamespace": format!("https://drydock.invalid/spdx/{}", uuid::Uuid::new_v4()),
        "creationInfo": {
            "created": meta.time(),
            "creators": [format!("Tool: {}-{}", meta.tool_name, meta.tool_version)],
        },
        "packages": packages,
        "relationships": relationships,
    })
}
