//! SBOMs attached to images: after an image is assessed, its inventory as
//! CycloneDX 1.6 JSON is pushed into the image's repository as an OCI
//! artifact whose `subject` is the image, so referrers-aware clients
//! (oras, crane, regctl) discover and pull it. One per image and catalog
//! version: an unchanged re-assessment attaches nothing; a new catalog
//! version replaces the SBOM (the old artifact is deleted unless
//! `keep_replaced`). The artifact is itself an `unsupported` artifact to
//! the assessor (its artifact type is not an image's), so attaching never
//! triggers another attach, and it is never metered.

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
}

impl Default for SbomOptions {
    fn default() -> Self {
        SbomOptions {
            enabled: true,
            rules: Vec::new(),
            keep_replaced: false,
        }
    }
}

/// Attach SBOMs (or not) to the images of repositories matching a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SbomRule {
    pub repository: oci::RepoPattern,
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl SbomOptions {
    pub fn applies(&self, repo: &str) -> bool {
        self.rules
            .iter()
            .find(|r| r.repository.is_match(repo))
            .map_or(self.enabled, |r| r.enabled)
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
        if !self.inner.opts.sbom.applies(repo.as_str()) {
            return;
        }
        if let Err(e) = self.try_attach_sbom(repo, digest, media_type, size, inventory) {
            tracing::warn!(digest, repo = %repo, error = %format!("{e:#}"), "cannot attach the SBOM");
        }
    }

    fn try_attach_sbom(
        &self,
        repo: &Name,
        digest: &str,
        media_type: &str,
        size: u64,
        inventory: &Inventory,
    ) -> Result<()> {
        let version = self.inner.cataloger.version();
        let old = self.inner.store.sbom(digest)?;
        if old.as_ref().is_some_and(|o| o.catalog_version == version) {
            return Ok(());
        }
        let now = rfc3339(self.now());
        let mut meta = report::SbomMeta::new(format!("{repo}@{digest}"));
        meta.digest = Some(digest.to_string());
        meta.timestamp = Some(now.clone());
        let doc = report::cyclonedx::bom(inventory, &[], &meta);
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
            artifact_type: SBOM_ARTIFACT_TYPE.into(),
            media_type: SBOM_ARTIFACT_TYPE.into(),
            bytes: serde_json::to_vec(&doc)?,
            annotations,
        };
        let attached = self.inner.source.attach(repo, &artifact)?;
        self.inner.store.put_sbom(
            &SbomRow {
                subject: digest.to_string(),
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
