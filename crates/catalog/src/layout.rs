//! A minimal reader for an OCI image layout directory
//! (`DIR/index.json`, `DIR/blobs/<alg>/<hex>`), enough to catalog images
//! in tests, benches and `drydock scan oci:DIR` without the `transport`
//! crate. Blobs are opened as files and streamed, never loaded whole.

use oci::{BlobSource, Descriptor, Digest, ImageIndex, Manifest};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The annotation naming a tag in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
}

impl OciLayout {
    /// Open a layout; fails when `DIR/index.json` is missing or invalid.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<OciLayout> {
        let l = OciLayout { root: root.into() };
        l.index()?;
        Ok(l)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    /// Read a small blob (a manifest or config) whole.
    pub fn read_blob(&self, d: &Digest) -> io::Result<Vec<u8>> {
        std::fs::read(self.blob_path(d))
    }

    pub fn index(&self) -> io::Result<ImageIndex> {
        let body = std::fs::read(self.root.join("index.json"))?;
        serde_json::from_slice(&body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("index.json: {e}")))
    }

    /// Tags named in `index.json`.
    pub fn tags(&self) -> io::Result<Vec<String>> {
        Ok(self
            .index()?
            .manifests
            .iter()
            .filter_map(|d| d.annotations.as_ref()?.get(REF_NAME).cloned())
            .collect())
    }

    /// The descriptor for `tag`, or the only manifest when `tag` is `None`.
    pub fn resolve(&self, tag: Option<&str>) -> io::Result<Descriptor> {
        let index = self.index()?;
        let found: Vec<&Descriptor> = match tag {
            Some(t) => index
                .manifests
                .iter()
                .filter(|d| {
                    d.annotations
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME))
                        .is_some_and(|r| r == t)
                })
                .collect(),
            None => index.manifests.iter().collect(),
        };
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(io::Error::new(
                io::ErrorKind::NotFound,
                match tag {
                    Some(t) => format!("no image tagged {t:?} in {}", self.root.display()),
                    None => format!("no image in {}", self.root.display()),
                },
            )),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} holds several images; name one with oci:DIR:TAG",
                    self.root.display()
                ),
            )),
        }
    }

    /// Parse the manifest (image or index) a descriptor points at.
    pub fn manifest(&self, d: &Descriptor) -> io::Result<Manifest> {
        let body = self.read_blob(&d.digest)?;
        Manifest::parse(&body, Some(&d.media_type))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", d.digest)))
    }
}

impl BlobSource for OciLayout {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        let f = std::fs::File::open(self.blob_path(digest)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("blob {digest} in {}: {e}", self.root.display()),
            )
        })?;
        Ok(Box::new(f))
    }
}
