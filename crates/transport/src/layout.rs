//! `oci:DIR[:TAG]`: an OCI image layout on disk, read through
//! [`oci::layout::OciLayout`] (the one layout reader) off the runtime's
//! worker threads, with every manifest verified and every blob streamed.

use crate::verify::{BlobStream, file_stream};
use crate::{Error, FetchedManifest, ImageSource};
use async_trait::async_trait;
use oci::layout::{LayoutError, OciLayout};
use oci::{Descriptor, Digest};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncSeekExt;

/// An OCI image layout, with the entry of `index.json` the spec chose.
#[derive(Debug)]
pub struct OciLayoutSource {
    layout: Arc<OciLayout>,
    root: Descriptor,
    tag: Option<String>,
}

impl From<LayoutError> for Error {
    fn from(e: LayoutError) -> Error {
        match e {
            e @ (LayoutError::NotALayout(_) | LayoutError::NotFound(_)) => {
                Error::NotFound(e.to_string())
            }
            LayoutError::Invalid(m) => Error::Invalid(m),
            LayoutError::Ambiguous(m) => Error::Spec(m),
            LayoutError::DigestMismatch {
                what,
                expected,
                actual,
            } => Error::DigestMismatch {
                what,
                expected,
                actual,
            },
            LayoutError::Io { context, source } => Error::io(context, source),
        }
    }
}

/// Run a layout read on the blocking pool: file reads must not stall the
/// runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LayoutError> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("reading an OCI layout", std::io::Error::other(e)))?
        .map_err(Error::from)
}

impl OciLayoutSource {
    /// Check the layout and pick the entry tagged `tag` (or the only one).
    pub async fn open(dir: PathBuf, tag: Option<String>) -> Result<OciLayoutSource, Error> {
        let layout = Arc::new(blocking(move || OciLayout::open(dir)).await?);
        let root = layout.resolve(tag.as_deref())?;
        Ok(OciLayoutSource { layout, root, tag })
    }

    /// The `index.json` entry this source names.
    pub fn root_descriptor(&self) -> &Descriptor {
        &self.root
    }

    async fn read_manifest(
        &self,
        digest: &Digest,
        media_type: Option<&str>,
    ) -> Result<FetchedManifest, Error> {
        let (layout, d) = (self.layout.clone(), digest.clone());
        let bytes = blocking(move || layout.read_blob(&d, crate::MAX_MANIFEST_BYTES))
            .await
            .map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!(
                    "manifest {digest} is not in {}",
                    self.layout.dir().display()
                )),
                e => e,
            })?;
        FetchedManifest::verified(
            bytes.into(),
            media_type,
            Some(digest),
            &format!("manifest {digest}"),
        )
    }

    async fn open_file(&self, digest: &Digest) -> Result<(tokio::fs::File, u64), Error> {
        let (layout, d) = (self.layout.clone(), digest.clone());
        let (file, len) = blocking(move || layout.open_blob_file(&d)).await?;
        Ok((tokio::fs::File::from_std(file), len))
    }
}

#[async_trait]
impl ImageSource for OciLayoutSource {
    fn describe(&self) -> String {
        let dir = self.layout.dir().display();
        match &self.tag {
            Some(t) => format!("oci:{dir}:{t}"),
            None => format!("oci:{dir}"),
        }
    }

    async fn root(&self) -> Result<FetchedManifest, Error> {
        self.read_manifest(&self.root.digest, Some(&self.root.media_type))
            .await
    }

    async fn manifest(&self, digest: &Digest) -> Result<FetchedManifest, Error> {
        let media_type = self.layout.media_type_of(digest).map(str::to_string);
        self.read_manifest(digest, media_type.as_deref()).await
    }

    async fn blob(&self, digest: &Digest) -> Result<BlobStream, Error> {
        let (file, len) = self.open_file(digest).await?;
        Ok(BlobStream::verified(
            file_stream(file, len),
            digest.clone(),
            Some(len),
        ))
    }

    async fn blob_from(&self, digest: &Digest, offset: u64) -> Result<BlobStream, Error> {
        let (mut file, len) = self.open_file(digest).await?;
        if offset > len {
            return Err(Error::Invalid(format!(
                "blob {digest} has {len} bytes, cannot start at {offset}"
            )));
        }
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| Error::io(format!("blob {digest}"), e))?;
        Ok(BlobStream::unverified(
            file_stream(file, len - offset),
            Some(len - offset),
        ))
    }

    async fn tags(&self) -> Result<Vec<String>, Error> {
        Ok(self.layout.tags())
    }

    async fn tagged(&self, tag: &str) -> Result<FetchedManifest, Error> {
        let d = self.layout.resolve(Some(tag))?;
        self.read_manifest(&d.digest, Some(&d.media_type)).await
    }
}

impl oci::BlobSource for OciLayoutSource {
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>> {
        self.layout.open_blob(digest)
    }
}
