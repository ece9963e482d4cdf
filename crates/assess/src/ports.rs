//! The assessor's view of its neighbours: the registry (manifests, blobs,
//! repositories, pulls) and the cataloger, which keeps per-layer results
//! in a [`catalog::LayerCache`] (the store, registry-wide). The service is
//! written against these traits; `live.rs` implements them for the real
//! crates, and unit tests implement them with fakes.

use catalog::{LayerCache, LayerInventory};
use inventory::Inventory;
use oci::{BlobSource, Digest, ImageManifest, Name, Tag};
use std::sync::Arc;
use time::OffsetDateTime;

/// The registry the assessor watches: its repositories, tags, manifests,
/// blobs and pulls, and the writes the assessor makes (SBOM referrers).
/// Not `transport::ImageSource`, which reads one image from elsewhere to
/// copy or scan it.
pub trait RegistryContent: Send + Sync + 'static {
    /// The manifest bytes and media type of `digest` in `repo`.
    fn manifest(&self, repo: &Name, digest: &Digest) -> anyhow::Result<Option<(Vec<u8>, String)>>;
    /// Where layer blobs are read from.
    fn blob_source(&self) -> Arc<dyn BlobSource>;
    fn repositories(&self) -> anyhow::Result<Vec<Name>>;
    /// Tags of a repository with the digest each points to.
    fn tags(&self, repo: &Name) -> anyhow::Result<Vec<(Tag, Digest)>>;
    /// Every manifest stored in a repository, with its media type.
    fn manifests(&self, repo: &Name) -> anyhow::Result<Vec<(Digest, String)>>;
    /// Manifests pulled since `since` (registry time).
    fn recent_pulls(&self, since: OffsetDateTime) -> Vec<(Name, Digest, OffsetDateTime)>;
    /// Push `artifact` into `repo` as a referrer of its subject; returns
    /// the artifact manifest's digest. Called from a blocking thread.
    /// Implementations that cannot write (test fakes) refuse.
    fn attach(&self, repo: &Name, artifact: &Artifact) -> anyhow::Result<Digest> {
        let _ = (repo, artifact);
        anyhow::bail!("this registry content cannot attach artifacts")
    }
    /// Delete a manifest drydock attached (a replaced SBOM).
    fn delete_manifest(&self, repo: &Name, digest: &Digest) -> anyhow::Result<()> {
        let _ = (repo, digest);
        anyhow::bail!("this registry content cannot delete manifests")
    }
}

/// One-blob OCI artifact attached to an image (an SBOM).
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The image it speaks of (media type, digest, size of its manifest).
    pub subject: oci::Descriptor,
    pub artifact_type: String,
    /// Media type of the one layer (the document).
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl Artifact {
    /// The artifact manifest (OCI image manifest 1.1 with the empty
    /// config) and its layer's digest.
    pub fn manifest(&self) -> (Vec<u8>, Digest) {
        let layer = Digest::sha256_of(&self.bytes);
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci::OCI_MANIFEST,
            "artifactType": self.artifact_type,
            "config": {
                "mediaType": oci::OCI_EMPTY,
                "digest": Digest::sha256_of(EMPTY_CONFIG).to_string(),
                "size": EMPTY_CONFIG.len(),
                "data": "e30=",
            },
            "layers": [{
                "mediaType": self.media_type,
                "digest": layer.to_string(),
                "size": self.bytes.len(),
            }],
            "subject": {
                "mediaType": self.subject.media_type,
                "digest": self.subject.digest.to_string(),
                "size": self.subject.size,
            },
            "annotations": self.annotations,
        });
        (serde_json::to_vec(&m).unwrap_or_default(), layer)
    }
}

/// The OCI empty descriptor's content, the config of an artifact.
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// Why an image could not be cataloged at all, by what failed, so the
/// worker can tell a fault of where blobs are kept (worth another try)
/// from an image that will fail the same way every time. The message is
/// the cataloger's own, unchanged, and names the layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogFailure {
    /// A blob could not be opened or read (the store, a lost connection):
    /// the image's content is not at fault.
    #[error("{0}")]
    BlobUnreadable(String),
    /// A layer's content is wrong beyond skipping a part of it (it does not
    /// match its digest, the manifest is unusable).
    #[error("{0}")]
    LayerMalformed(String),
    /// A limit on what one layer or image may contribute stopped the read.
    #[error("{0}")]
    Cap(String),
    /// Anything else (scratch space, a cataloger that does not say).
    #[error("{0}")]
    Other(String),
}

impl CatalogFailure {
    /// Whether the same read may succeed later without the image changing.
    pub fn is_transient(&self) -> bool {
        matches!(self, CatalogFailure::BlobUnreadable(_))
    }
}

impl From<catalog::CatalogError> for CatalogFailure {
    fn from(e: catalog::CatalogError) -> CatalogFailure {
        use catalog::CatalogError as E;
        let message = e.to_string();
        match e {
            E::Open { .. } | E::Read { .. } => CatalogFailure::BlobUnreadable(message),
            E::Corrupt { .. }
            | E::Unsafe { .. }
            | E::Bomb { .. }
            | E::DigestMismatch { .. }
            | E::Manifest { .. } => CatalogFailure::LayerMalformed(message),
            E::Limit { .. } => CatalogFailure::Cap(message),
            E::Scratch { .. } => CatalogFailure::Other(message),
        }
    }
}

/// A failure a cataloger (a test fake) gives only as text.
impl From<String> for CatalogFailure {
    fn from(message: String) -> CatalogFailure {
        CatalogFailure::Other(message)
    }
}

impl From<&str> for CatalogFailure {
    fn from(message: &str) -> CatalogFailure {
        CatalogFailure::Other(message.to_string())
    }
}

/// An image's inventory and the parts of the image that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cataloged {
    pub inventory: Inventory,
    /// One sentence per part skipped (a file over its cap, a malformed
    /// package database, a hostile path, a cap reached); empty when the
    /// image was read whole. A non-empty list makes the image incomplete.
    pub incomplete: Vec<String>,
}

/// Turns an image manifest into an inventory by reading its layers.
pub trait Cataloger: Send + Sync + 'static {
    /// Bumped by the cataloger when its output changes; a stored inventory
    /// of another version is recomputed.
    fn version(&self) -> u32;
    fn catalog(
        &self,
        source: &dyn BlobSource,
        manifest: &ImageManifest,
        cache: &dyn LayerCache,
    ) -> Result<Inventory, CatalogFailure>;
    /// [`Cataloger::catalog`] with the parts of the image that could not
    /// be read, which the worker stores and the verdict uses. A cataloger
    /// that can skip anything must implement it (the real one does); the
    /// default is for fakes that always read everything.
    fn catalog_image(
        &self,
        source: &dyn BlobSource,
        manifest: &ImageManifest,
        cache: &dyn LayerCache,
    ) -> Result<Cataloged, CatalogFailure> {
        self.catalog(source, manifest, cache)
            .map(|inventory| Cataloged {
                inventory,
                incomplete: Vec::new(),
            })
    }
    /// Read one blob that no manifest names yet, as it arrives, and put
    /// its layer result into `cache` if it turns out to be a layer, so the
    /// image's assessment finds it done. Best effort: anything that goes
    /// wrong is left for [`Cataloger::catalog`] to meet and report. The
    /// default does nothing. Returns whether a layer was read and its
    /// result stored.
    fn prefetch_layer(
        &self,
        source: &dyn BlobSource,
        layer: &Digest,
        cache: &dyn LayerCache,
    ) -> bool {
        let _ = (source, layer, cache);
        false
    }
    /// Catalog a blob from its upload stream, before its digest is known
    /// or verified. `placeholder` stands for the digest wherever the result
    /// names the layer: the caller replaces it with the real digest once
    /// the upload verifies ([`catalog::relabel_layer`]), and discards the
    /// result otherwise. Returns `None` if the blob is not a layer or could
    /// not be read (it is then read after its commit, which reports what
    /// went wrong). The default reads nothing.
    fn catalog_upload(
        &self,
        reader: &mut dyn std::io::Read,
        placeholder: &Digest,
    ) -> Option<LayerInventory> {
        let _ = (reader, placeholder);
        None
    }
}
