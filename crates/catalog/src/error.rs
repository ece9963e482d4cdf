use oci::Digest;

/// Why an image or layer could not be cataloged. Every variant names the
/// layer (or manifest) it is about.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("layer {layer}: cannot open blob: {source}")]
    Open {
        layer: Digest,
        #[source]
        source: std::io::Error,
    },
    /// The blob's own reader failed (an I/O error, a connection lost): a
    /// fault of where the layer is stored, not of its content.
    #[error("layer {layer}: cannot read blob: {source}")]
    Read {
        layer: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {layer}: corrupt or truncated archive: {detail}")]
    Corrupt { layer: Digest, detail: String },
    #[error("layer {layer}: unsafe archive entry {path:?}: {reason}")]
    Unsafe {
        layer: Digest,
        path: String,
        reason: String,
    },
    #[error("layer {layer}: decompression bomb suspected: {detail}")]
    Bomb { layer: Digest, detail: String },
    #[error("layer {layer}: limit exceeded: {detail}")]
    Limit { layer: Digest, detail: String },
    #[error("layer {layer}: content does not match its digest (it hashes to {actual})")]
    DigestMismatch { layer: Digest, actual: Digest },
    #[error("layer {layer}: scratch space: {source}")]
    Scratch {
        layer: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest {digest}: {detail}")]
    Manifest { digest: Digest, detail: String },
}

impl CatalogError {
    /// The layer or manifest the error is about.
    pub fn digest(&self) -> &Digest {
        match self {
            CatalogError::Open { layer, .. }
            | CatalogError::Read { layer, .. }
            | CatalogError::Corrupt { layer, .. }
            | CatalogError::Unsafe { layer, .. }
            | CatalogError::Bomb { layer, .. }
            | CatalogError::Limit { layer, .. }
            | CatalogError::DigestMismatch { layer, .. }
            | CatalogError::Scratch { layer, .. } => layer,
            CatalogError::Manifest { digest, .. } => digest,
        }
    }
}
