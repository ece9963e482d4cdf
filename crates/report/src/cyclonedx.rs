//! CycloneDX 1.6 JSON: the image as `metadata.component`, the distribution
//! and every package as components, and findings as vulnerabilities that
//! refer to the affected components.
//!
//! Typed serde structs rather than `cyclonedx-bom`: that crate's newest
//! release models spec 1.3–1.5 only, and drydock's SBOMs (the ones it
//! attaches as referrers too) are 1.6. The structs cover the part of the
//! 1.6 schema drydock writes; the tests validate the output against the
//! reference validator.

use crate::SbomMeta;
use inventory::{Ecosystem, Inventory, Package};
use serde::Serialize;
use std::collections::HashMap;
use vulndb::{Cvss, Finding, Severity};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bom {
    pub bom_format: &'static str,
    pub spec_version: &'static str,
    pub serial_number: String,
    pub version: u32,
    pub metadata: Metadata,
    pub components: Vec<Component>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vulnerabilities: Vec<Vulnerability>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    pub timestamp: String,
    pub tools: Tools,
    pub component: Component,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tools {
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentType {
    Application,
    Container,
    OperatingSystem,
    Library,
}

#[derive(Debug, Clone, Serialize)]
pub struct Component {
    #[serde(rename = "type")]
    pub kind: ComponentType,
    #[serde(rename = "bom-ref", skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

impl Component {
    fn new(kind: ComponentType, name: impl Into<String>) -> Component {
        Component {
            kind,
            bom_ref: None,
            name: name.into(),
            version: None,
            description: None,
            purl: None,
            properties: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Property {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub id: String,
    pub source: Source,
}

/// The `method` of a rating: how the score was computed (the 1.6 enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ScoreMethod {
    #[serde(rename = "CVSSv2")]
    CvssV2,
    #[serde(rename = "CVSSv3")]
    CvssV3,
    #[serde(rename = "CVSSv31")]
    CvssV31,
    #[serde(rename = "CVSSv4")]
    CvssV4,
    #[serde(rename = "other")]
    Other,
}

impl ScoreMethod {
    /// Label a CVSS score by the version its vector declares
    /// (`CVSS:3.1/…`, `CVSS:4.0/…`; v2 vectors carry no prefix), falling
    /// back to the recorded version.
    pub fn of(cvss: &Cvss) -> ScoreMethod {
        let declared = cvss
            .vector
            .strip_prefix("CVSS:")
            .and_then(|r| r.split('/').next())
            .unwrap_or(cvss.version.as_str());
        match declared {
            "2.0" | "2" => ScoreMethod::CvssV2,
            "3.0" | "3" => ScoreMethod::CvssV3,
            "3.1" => ScoreMethod::CvssV31,
            "4.0" | "4" => ScoreMethod::CvssV4,
            _ => ScoreMethod::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RatingSeverity {
    Critical,
    High,
    Medium,
    Low,
    Unknown,
}

impl From<Severity> for RatingSeverity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Critical => RatingSeverity::Critical,
            Severity::High => RatingSeverity::High,
            Severity::Medium => RatingSeverity::Medium,
            Severity::Low => RatingSeverity::Low,
            Severity::Unknown => RatingSeverity::Unknown,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Rating {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    pub severity: RatingSeverity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<ScoreMethod>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Affect {
    #[serde(rename = "ref")]
    pub reference: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Vulnerability {
    #[serde(rename = "bom-ref")]
    pub bom_ref: String,
    pub id: String,
    pub source: Source,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    pub ratings: Vec<Rating>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<String>,
    pub affects: Vec<Affect>,
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

fn property(name: &str, value: &str) -> Property {
    Property {
        name: format!("drydock:package:{name}"),
        value: value.to_string(),
    }
}

fn properties(p: &Package) -> Vec<Property> {
    let mut props = vec![
        property("ecosystem", p.ecosystem.as_str()),
        property("location", &p.location),
        property("layer", &p.layer),
    ];
    if let Some(s) = &p.source_name {
        props.push(property("source_name", s));
    }
    if let Some(s) = &p.source_version {
        props.push(property("source_version", s));
    }
    props
}

/// The database an identifier comes from, by its prefix.
fn source_of(id: &str) -> Source {
    let name = match id.split('-').next().unwrap_or("") {
        "CVE" => "NVD",
        "GHSA" => "GitHub",
        "RUSTSEC" => "RustSec",
        "PYSEC" => "PyPA",
        "GO" => "Go",
        "DSA" | "DLA" | "DEBIAN" => "Debian",
        _ => "OSV",
    };
    Source { name: name.into() }
}

/// The CycloneDX document of `inv`, with `findings` as vulnerabilities
/// (one entry per advisory id, affecting every matching component).
pub fn bom(inv: &Inventory, findings: &[Finding], meta: &SbomMeta) -> Bom {
    let refs = bom_refs(&inv.packages);
    let mut components = Vec::new();
    if let Some(d) = &inv.distro {
        let mut c = Component::new(ComponentType::OperatingSystem, &d.id);
        c.bom_ref = Some(format!("os:{}@{}", d.id, d.version_id));
        c.version = Some(d.version_id.clone());
        c.description = Some(d.pretty_name.clone().unwrap_or_default());
        components.push(c);
    }
    let mut by_pkg: HashMap<(Ecosystem, &str, &str), Vec<&str>> = HashMap::new();
    for (p, r) in inv.packages.iter().zip(&refs) {
        let mut c = Component::new(ComponentType::Library, &p.name);
        c.bom_ref = Some(r.clone());
        c.version = Some(p.version.clone());
        c.purl = Some(p.purl.clone());
        c.properties = properties(p);
        components.push(c);
        by_pkg
            .entry((p.ecosystem, p.name.as_str(), p.version.as_str()))
            .or_default()
            .push(r.as_str());
    }
    let mut vulnerabilities: Vec<Vulnerability> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for f in findings {
        let affects: Vec<Affect> = by_pkg
            .get(&(f.ecosystem, &*f.package, &*f.installed_version))
            .map(|rs| {
                rs.iter()
                    .map(|r| Affect {
                        reference: r.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(&i) = index.get(&*f.id) {
            let v: &mut Vulnerability = &mut vulnerabilities[i];
            for a in affects {
                if !v.affects.iter().any(|b| b.reference == a.reference) {
                    v.affects.push(a);
                }
            }
            continue;
        }
        let rating = Rating {
            score: f.cvss.as_ref().map(|c| c.score),
            severity: f.severity.into(),
            method: f.cvss.as_deref().map(ScoreMethod::of),
            vector: f.cvss.as_ref().map(|c| c.vector.clone()),
        };
        index.insert(&f.id, vulnerabilities.len());
        vulnerabilities.push(Vulnerability {
            bom_ref: format!("vuln:{}", f.id),
            id: f.id.to_string(),
            source: source_of(&f.id),
            references: f
                .aliases
                .iter()
                .map(|a| Reference {
                    id: a.clone(),
                    source: source_of(a),
                })
                .collect(),
            ratings: vec![rating],
            description: (!f.summary.is_empty()).then(|| f.summary.to_string()),
            recommendation: f
                .fixed_version
                .as_ref()
                .map(|v| format!("Upgrade {} to {v}", f.package)),
            affects,
        });
    }
    let mut image = Component::new(ComponentType::Container, &meta.name);
    image.bom_ref = Some(format!("image:{}", meta.name));
    image.version = meta.digest.clone();
    let mut tool = Component::new(ComponentType::Application, &meta.tool_name);
    tool.version = Some(meta.tool_version.clone());
    Bom {
        bom_format: "CycloneDX",
        spec_version: "1.6",
        serial_number: format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        version: 1,
        metadata: Metadata {
            timestamp: meta.time(),
            tools: Tools {
                components: vec![tool],
            },
            component: image,
        },
        components,
        vulnerabilities,
    }
}
