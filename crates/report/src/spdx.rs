//! SPDX 2.3 JSON: one package for the image, one for the distribution, one
//! per inventory package (its purl as an external reference), and
//! `DESCRIBES`/`CONTAINS` relationships.
//!
//! Typed serde structs rather than `spdx-rs`: that crate models SPDX 2.2
//! documents (its new documents say `SPDX-2.2`), needs every part of a
//! full document, and brings a second date-time library and parser stack;
//! the few types drydock writes are below, and the tests validate the
//! output with the reference SPDX tools.

use crate::SbomMeta;
use inventory::Inventory;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub spdx_version: &'static str,
    pub data_license: &'static str,
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub name: String,
    pub document_namespace: String,
    pub creation_info: CreationInfo,
    pub packages: Vec<Package>,
    pub relationships: Vec<Relationship>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CreationInfo {
    pub created: String,
    pub creators: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
pub enum Purpose {
    Container,
    OperatingSystem,
    Install,
    Library,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub name: String,
    pub version_info: String,
    pub download_location: &'static str,
    pub files_analyzed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_info: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    pub primary_package_purpose: Purpose,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRef {
    pub reference_category: &'static str,
    pub reference_type: &'static str,
    pub reference_locator: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RelationshipType {
    Describes,
    Contains,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    pub spdx_element_id: String,
    pub relationship_type: RelationshipType,
    pub related_spdx_element: String,
}

fn package(id: &str, name: &str, version: &str, purpose: Purpose) -> Package {
    Package {
        spdx_id: id.into(),
        name: name.into(),
        version_info: version.into(),
        download_location: "NOASSERTION",
        files_analyzed: false,
        source_info: None,
        external_refs: Vec::new(),
        primary_package_purpose: purpose,
        comment: None,
    }
}

fn contains(id: &str) -> Relationship {
    Relationship {
        spdx_element_id: "SPDXRef-Image".into(),
        relationship_type: RelationshipType::Contains,
        related_spdx_element: id.into(),
    }
}

/// The SPDX document of `inv`.
pub fn document(inv: &Inventory, meta: &SbomMeta) -> Document {
    let mut packages = vec![package(
        "SPDXRef-Image",
        &meta.name,
        meta.digest.as_deref().unwrap_or_default(),
        Purpose::Container,
    )];
    let mut relationships = vec![Relationship {
        spdx_element_id: "SPDXRef-DOCUMENT".into(),
        relationship_type: RelationshipType::Describes,
        related_spdx_element: "SPDXRef-Image".into(),
    }];
    if let Some(d) = &inv.distro {
        let id = "SPDXRef-OperatingSystem";
        packages.push(package(id, &d.id, &d.version_id, Purpose::OperatingSystem));
        relationships.push(contains(id));
    }
    for (i, p) in inv.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{i}", p.ecosystem.as_str());
        let purpose = if p.ecosystem.is_os() {
            Purpose::Install
        } else {
            Purpose::Library
        };
        let mut pkg = package(&id, &p.name, &p.version, purpose);
        pkg.source_info = Some(format!("found in {} (layer {})", p.location, p.layer));
        pkg.external_refs.push(ExternalRef {
            reference_category: "PACKAGE-MANAGER",
            reference_type: "purl",
            reference_locator: p.purl.clone(),
        });
        if let Some(s) = &p.source_name
            && s != &p.name
        {
            pkg.comment = Some(format!(
                "source package {s} {}",
                p.source_version.as_deref().unwrap_or(&p.version)
            ));
        }
        packages.push(pkg);
        relationships.push(contains(&id));
    }
    Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT".into(),
        name: meta.name.clone(),
        document_namespace: format!("https://drydock.invalid/spdx/{}", uuid::Uuid::new_v4()),
        creation_info: CreationInfo {
            created: meta.time(),
            creators: vec![format!("Tool: {}-{}", meta.tool_name, meta.tool_version)],
        },
        packages,
        relationships,
    }
}
