//! `oci:DIR[:TAG]`: an OCI image layout on disk.

use crate::verify::{BlobStream, file_stream};
use crate::{Error, FetchedManifest, ImageSource, MAX_MANIFEST_BYTES};
use async_trait::async_trait;
use oci::{Descriptor, Digest, ImageIndex};
use std::io::Read;
use std::path::{Path, PathBuf};
use tokio::io::AsyncSeekExt;

/// The annotation an OCI layout's `index.json` names tags with.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout, with the entry of `index.json` the spec chose.
#[derive(Debug)]
pub struct OciLayoutSource {
    dir: PathBuf,
    index: ImageIndex,
    root: Descriptor,
    tag: Option<String>,
}

impl OciLayoutSource {
    /// Check the layout and pick the entry tagged `tag` (or the only one).
    pub async fn open(dir: PathBuf, tag: Option<String>) -> Result<OciLayoutSource, Error> {
        let marker = dir.join("oci-layout");
        let layout = read_small(&marker, 64 << 10).await.map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!(
                "{} is not an OCI image layout (no oci-layout file)",
                dir.display()
            )),
            e => e,
        })?;
        let v: serde_json::Value = serde_json::from_slice(&layout)
            .map_err(|e| Error::Invalid(json_problem(&marker.display().to_string(), &e)))?;
        if v.get("imageLayoutVersion")
            .and_then(|v| v.as_str())
            .is_none()
        {
            return Err(Error::Invalid(format!(
                "{}: no imageLayoutVersion",
                marker.display()
            )));
        }
        let index_path = dir.join("index.json");
        let bytes = read_small(&index_path, MAX_MANIFEST_BYTES).await?;
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(json_problem(&index_path.display().to_string(), &e)))?;
        let root = select(&index, tag.as_deref(), &dir)?;
        Ok(OciLayoutSource {
            dir,
            index,
            root,
            tag,
        })
    }

    /// The `index.json` entry this source names.
    pub fn root_descriptor(&self) -> &Descriptor {
        &self.root
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        // Digest guarantees alg and hex are plain path-safe tokens.
        self.dir
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    async fn read_manifest(
        &self,
        digest: &Digest,
        media_type: Option<&str>,
    ) -> Result<FetchedManifest, Error> {
        let bytes = read_small(&self.blob_path(digest), MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!(
                    "manifest {digest} is not in {}",
                    self.dir.display()
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
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

fn select(index: &ImageIndex, tag: Option<&str>, dir: &Path) -> Result<Descriptor, Error> {
    let names = || {
        index
            .manifests
            .iter()
            .filter_map(ref_name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match tag {
        Some(t) => index
            .manifests
            .iter()
            .find(|d| ref_name(d) == Some(t))
            .cloned()
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "tag {t:?} is not in {} (tags: {})",
                    dir.display(),
                    names()
                ))
            }),
        None => match index.manifests.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::NotFound(format!(
                "{} holds no images",
                dir.display()
            ))),
            _ => Err(Error::Spec(format!(
                "{} holds {} images; name one with oci:DIR:TAG (tags: {})",
                dir.display(),
                index.manifests.len(),
                names()
            ))),
        },
    }
}

/// What is wrong with a JSON file, by position only: serde's own messages
/// quote the values they reject (`invalid type: string "…"`), which would
/// echo a file's content into an error.
pub(crate) fn json_problem(what: &str, e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let (line, column) = (e.line(), e.column());
    match e.classify() {
        Category::Syntax => format!("{what} is not valid JSON at line {line} column {column}"),
        Category::Eof => format!("{what} ends before its JSON does (line {line} column {column})"),
        Category::Data => format!(
            "{what} is JSON but not of the expected shape (a wrong or missing field near line {line} column {column})"
        ),
        Category::Io => format!("{what} could not be read as JSON"),
    }
}

/// Read a small file whole, refusing one larger than `limit`.
pub(crate) async fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    let meta = tokio::fs::metadata(path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound(path.display().to_string())
        } else {
            Error::io(path.display().to_string(), e)
        }
    })?;
    if meta.len() > limit {
        return Err(Error::Invalid(format!(
            "{} is {} bytes, more than the {limit} allowed",
            path.display(),
            meta.len()
        )));
    }
    tokio::fs::read(path)
        .await
        .map_err(|e| Error::io(path.display().to_string(), e))
}

#[async_trait]
impl ImageSource for OciLayoutSource {
    fn describe(&self) -> String {
        match &self.tag {
            Some(t) => format!("oci:{}:{t}", self.dir.display()),
            None => format!("oci:{}", self.dir.display()),
        }
    }

    async fn root(&self) -> Result<FetchedManifest, Error> {
        self.read_manifest(&self.root.digest, Some(&self.root.media_type))
            .await
    }

    async fn manifest(&self, digest: &Digest) -> Result<FetchedManifest, Error> {
        let media_type = self
            .index
            .manifests
            .iter()
            .find(|d| &d.digest == digest)
            .map(|d| d.media_type.clone());
        self.read_manifest(digest, media_type.as_deref()).await
    }

    async fn blob(&self, digest: &Digest) -> Result<BlobStream, Error> {
        let (file, len) = open_file(&self.blob_path(digest), digest).await?;
        Ok(BlobStream::verified(
            file_stream(file, len),
            digest.clone(),
            Some(len),
        ))
    }

    async fn blob_from(&self, digest: &Digest, offset: u64) -> Result<BlobStream, Error> {
        let path = self.blob_path(digest);
        let (mut file, len) = open_file(&path, digest).await?;
        if offset > len {
            return Err(Error::Invalid(format!(
                "blob {digest} has {len} bytes, cannot start at {offset}"
            )));
        }
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| Error::io(path.display().to_string(), e))?;
        Ok(BlobStream::unverified(
            file_stream(file, len - offset),
            Some(len - offset),
        ))
    }

    async fn tags(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .index
            .manifests
            .iter()
            .filter_map(ref_name)
            .map(str::to_string)
            .collect())
    }

    async fn tagged(&self, tag: &str) -> Result<FetchedManifest, Error> {
        let d = select(&self.index, Some(tag), &self.dir)?;
        self.read_manifest(&d.digest, Some(&d.media_type)).await
    }
}

async fn open_file(path: &Path, digest: &Digest) -> Result<(tokio::fs::File, u64), Error> {
    let file = tokio::fs::File::open(path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound(format!("blob {digest} ({})", path.display()))
        } else {
            Error::io(path.display().to_string(), e)
        }
    })?;
    let len = file
        .metadata()
        .await
        .map_err(|e| Error::io(path.display().to_string(), e))?
        .len();
    Ok((file, len))
}

impl oci::BlobSource for OciLayoutSource {
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::fs::File::open(self.blob_path(digest))?))
    }
}
