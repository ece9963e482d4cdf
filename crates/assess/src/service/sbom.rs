//! SBOMs attached to images: after an image is assessed, its inventory as
//! CycloneDX 1.6 JSON (and, where configured, as SPDX 2.3 JSON) is pushed
//! into the image's repository as an OCI artifact whose `subject` is the
//! image, so referrers-aware clients (oras, crane, regctl) discover and
//! pull it. One per image, format and catalog version: an unchanged
//! re-assessment attaches nothing; a new catalog version replaces the SBOM
//! (the old artifact is deleted unless `keep_replaced`). The artifact is
//! itself an `unsupported` artifact to the assessor (its artifact type is
//! not an image's), so attaching never triggers another attach, and it is
//! never metered.

use super::Service;
use crate::clock::{rfc3339, to_ms};
use crate::ports::Artifact;
use crate::store::SbomRow;
use anyhow::Result;
use inventory::Inventory;
use oci::{Digest, Name};
use serde::Deserialize;

/// The artifact type of the SBOMs drydock attaches.
pub const SBOM_ARTIFACT_TYPE: &str = "application/vnd.cyclonedx+json";
/// The artifact type of the SPDX SBOMs drydock attaches where configured.
pub const SPDX_ARTIFACT_TYPE: &str = "application/spdx+json";
/// Annotation naming the catalog version that produced the SBOM.
pub const CATALOG_VERSION_ANNOTATION: &str = "dev.drydock.catalog.version";

/// Where SBOMs are attached.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SbomOptions {
    /// Attach to images of repositories no rule names (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Per repository glob; the first matching rule wins.
    #[serde(default)]
    pub rules: Vec<SbomRule>,
    /// Keep an SBOM replaced by a newer catalog version's (default: delete it).
    #[serde(default)]
    pub keep_replaced: bool,
    /// Attach an SPDX 2.3 document too, beside the CycloneDX one, to images
    /// of repositories no rule names (default false).
    #[serde(default)]
    pub spdx: bool,
}

impl Default for SbomOptions {
    fn default() -> Self {
        SbomOptions {
            enabled: true,
            rules: Vec::new(),
            keep_replaced: false,
            spdx: false,
        }
    }
}

/// Attach SBOMs (or not) to the images of repositories matching a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SbomRule {
    pub repository: oci::RepoPattern,
    pub enabled: bool,
    /// Attach SPDX 2.3 as well (when `enabled`); absent: [`SbomOptions::spdx`].
    #[serde(default)]
    pub spdx: Option<bool>,
}

fn yes() -> bool {
    true
}

impl SbomOptions {
    pub fn applies(&self, repo: &str) -> bool {
        self.rule(repo).map_or(self.enabled, |r| r.enabled)
    }

    /// Whether images of `repo` get an SPDX document too.
    pub fn spdx_applies(&self, repo: &str) -> bool {
        match self.rule(repo) {
            Some(r) => r.enabled && r.spdx.unwrap_or(self.spdx),
            None => self.enabled && self.spdx,
        }
    }

    fn rule(&self, repo: &str) -> Option<&SbomRule> {
        self.rules.iter().find(|r| r.repository.is_match(repo))
    }
}

/// The document formats attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    CycloneDx,
    Spdx,
}

impl Format {
    fn artifact_type(self) -> &'static str {
        match self {
            Format::CycloneDx => SBOM_ARTIFACT_TYPE,
            Format::Spdx => SPDX_ARTIFACT_TYPE,
        }
    }

    /// The key of the image's row in the `sboms` table: the image digest
    /// for CycloneDX (as before SPDX existed), `DIGEST#spdx` for SPDX.
    fn key(self, digest: &str) -> String {
        match self {
            Format::CycloneDx => digest.to_string(),
            Format::Spdx => format!("{digest}#spdx"),
        }
    }

    fn document(self, inventory: &Inventory, meta: &report::SbomMeta) -> Result<Vec<u8>> {
        Ok(match self {
            Format::CycloneDx => serde_json::to_vec(&report::cyclonedx::bom(inventory, &[], meta))?,
            Format::Spdx => serde_json::to_vec(&report::spdx::document(inventory, meta))?,
        })
    }
}

impl Service {
    /// Attach the SBOM of image `digest` (manifest `media_type`, `size`
    /// bytes) unless one from this catalog version is attached already.
    /// Best effort: a failure is logged; the assessment stands.
    pub(super) fn attach_sbom(
        &self,
        repo: &Name,
        digest: &str,
        media_type: &str,
        size: u64,
        inventory: &Inventory,
    ) {
        let opts = &self.inner.opts.sbom;
        let mut formats = Vec::new();
        if opts.applies(repo.as_str()) {
            formats.push(Format::CycloneDx);
        }
        if opts.spdx_applies(repo.as_str()) {
            formats.push(Format::Spdx);
        }
        for format in formats {
            let document = |meta: &report::SbomMeta| format.document(inventory, meta);
            if let Err(e) = self.try_attach_sbom(repo, digest, media_type, size, format, document) {
                tracing::warn!(
                    digest,
                    repo = %repo,
                    format = format.artifact_type(),
                    error = %format!("{e:#}"),
                    "cannot attach the SBOM"
                );
            }
        }
    }

    /// Attach the SBOMs of index `digest`: a CycloneDX document whose
    /// components are its platform images (`(digest, media type,
    /// platform)`), each a `container` component whose `bom-ref` and
    /// `version` are the image's digest, and, where SPDX is on for the
    /// repository, an SPDX document whose index package `CONTAINS` one
    /// container package per platform image (its digest as
    /// `versionInfo`). Each image's packages are in that image's own SBOMs,
    /// referrers of the image's digest; the index's SBOMs tell a client of
    /// the referrers API which images to ask about. Written when the index
    /// is rolled out, so they do not wait for its images' assessments.
    /// Best effort, like [`Service::attach_sbom`].
    pub(super) fn attach_index_sbom(
        &self,
        repo: &Name,
        digest: &str,
        media_type: &str,
        size: u64,
        images: &[(String, String, Option<String>)],
    ) {
        let opts = &self.inner.opts.sbom;
        if opts.applies(repo.as_str()) {
            let document = |meta: &report::SbomMeta| index_cyclonedx(repo, images, meta);
            if let Err(e) =
                self.try_attach_sbom(repo, digest, media_type, size, Format::CycloneDx, document)
            {
                tracing::warn!(digest, repo = %repo, error = %format!("{e:#}"), "cannot attach the index SBOM");
            }
        }
        if opts.spdx_applies(repo.as_str()) {
            let document = |meta: &report::SbomMeta| index_spdx(repo, images, meta);
            if let Err(e) =
                self.try_attach_sbom(repo, digest, media_type, size, Format::Spdx, document)
            {
                tracing::warn!(digest, repo = %repo, error = %format!("{e:#}"), "cannot attach the index SPDX SBOM");
            }
        }
    }

    fn try_attach_sbom(
        &self,
        repo: &Name,
        digest: &str,
        media_type: &str,
        size: u64,
        format: Format,
        document: impl FnOnce(&report::SbomMeta) -> Result<Vec<u8>>,
    ) -> Result<()> {
        let version = self.inner.cataloger.version();
        let key = format.key(digest);
        let old = self.inner.store.sbom(&key)?;
        if old.as_ref().is_some_and(|o| o.catalog_version == version) {
            return Ok(());
        }
        // Whole seconds: SPDX 2.3's `created` allows no fraction.
        let now = self.now();
        let now = rfc3339(now.replace_nanosecond(0).unwrap_or(now));
        let mut meta = report::SbomMeta::new(format!("{repo}@{digest}"));
        meta.digest = Some(digest.to_string());
        meta.timestamp = Some(now.clone());
        let bytes = document(&meta)?;
        let mut annotations = std::collections::BTreeMap::new();
        annotations.insert("org.opencontainers.image.created".into(), now);
        annotations.insert(CATALOG_VERSION_ANNOTATION.into(), version.to_string());
        let artifact = Artifact {
            subject: oci::Descriptor {
                media_type: media_type.to_string(),
                digest: Digest::parse(digest)?,
                size,
                urls: None,
                annotations: None,
                platform: None,
                artifact_type: None,
                data: None,
            },
            artifact_type: format.artifact_type().into(),
            media_type: format.artifact_type().into(),
            bytes,
            annotations,
        };
        let attached = self.inner.source.attach(repo, &artifact)?;
        self.inner.store.put_sbom(
            &SbomRow {
                subject: key,
                repo: repo.to_string(),
                digest: attached.to_string(),
                catalog_version: version,
            },
            to_ms(self.now()),
        )?;
        tracing::debug!(digest, sbom = %attached, "SBOM attached");
        if let Some(old) = old
            && old.digest != attached.to_string()
            && !self.inner.opts.sbom.keep_replaced
        {
            let (r, d) = (Name::parse(&old.repo)?, Digest::parse(&old.digest)?);
            if let Err(e) = self.inner.source.delete_manifest(&r, &d) {
                tracing::warn!(sbom = old.digest, error = %e, "cannot delete the replaced SBOM");
            }
        }
        Ok(())
    }
}

/// The CycloneDX SBOM of an index: one `container` component per platform image.
fn index_cyclonedx(
    repo: &Name,
    images: &[(String, String, Option<String>)],
    meta: &report::SbomMeta,
) -> Result<Vec<u8>> {
    let mut bom = report::cyclonedx::bom(&Inventory::default(), &[], meta);
    for (image, image_type, platform) in images {
        let mut properties = vec![report::cyclonedx::Property {
            name: "drydock:mediaType".into(),
            value: image_type.clone(),
        }];
        if let Some(p) = platform {
            properties.push(report::cyclonedx::Property {
                name: "drydock:platform".into(),
                value: p.clone(),
            });
        }
        bom.components.push(report::cyclonedx::Component {
            kind: report::cyclonedx::ComponentType::Container,
            bom_ref: Some(image.clone()),
            name: repo.to_string(),
            version: Some(image.clone()),
            description: platform.clone(),
            purl: None,
            properties,
        });
    }
    Ok(serde_json::to_vec(&bom)?)
}

/// The SPDX SBOM of an index: the index's package (`SPDXRef-Image`)
/// `CONTAINS` one `CONTAINER` package per platform image, named after the
/// repository, its digest as `versionInfo`, its platform and media type in
/// the comment.
fn index_spdx(
    repo: &Name,
    images: &[(String, String, Option<String>)],
    meta: &report::SbomMeta,
) -> Result<Vec<u8>> {
    use report::spdx::{Package, Purpose, Relationship, RelationshipType};
    let mut doc = report::spdx::document(&Inventory::default(), meta);
    for (i, (image, image_type, platform)) in images.iter().enumerate() {
        let id = format!("SPDXRef-PlatformImage-{i}");
        let comment = match platform {
            Some(p) => format!("platform {p}, media type {image_type}"),
            None => format!("media type {image_type}"),
        };
        doc.packages.push(Package {
            spdx_id: id.clone(),
            name: repo.to_string(),
            version_info: image.clone(),
            download_location: "NOASSERTION",
            files_analyzed: false,
            source_info: None,
            external_refs: Vec::new(),
            primary_package_purpose: Purpose::Container,
            comment: Some(comment),
        });
        doc.relationships.push(Relationship {
            spdx_element_id: "SPDXRef-Image".into(),
            relationship_type: RelationshipType::Contains,
            related_spdx_element: id,
        });
    }
    Ok(serde_json::to_vec(&doc)?)
}
