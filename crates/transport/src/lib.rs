//! Reading images from elsewhere: the sources `drydock import` and
//! `drydock scan` read from.
//!
//! One abstraction, [`ImageSource`] (one image to copy or scan; the
//! assessor's view of drydock's own registry is `assess::RegistryContent`,
//! another thing), with three implementations chosen by a [`SourceSpec`]:
//!
//! - `oci:DIR[:TAG]` — an OCI image layout (`oci-layout`, `index.json`,
//!   `blobs/<alg>/<hex>`), read through [`oci::layout`], the one layout
//!   reader. The tag is matched against the
//!   `org.opencontainers.image.ref.name` annotation of `index.json`'s entries;
//!   without a tag the layout must hold exactly one entry.
//! - `docker-archive:FILE[:NAME:TAG|:@N]` — the output of `docker save`. The
//!   archive is indexed once (entry offsets only; no layer is held in memory)
//!   and a Docker schema 2 manifest is synthesised for the chosen image (OCI
//!   when a layer is zstd-compressed). Layers keep their bytes as they are in
//!   the archive (usually uncompressed tars), so their digests are the config's
//!   `diff_ids`. With several images in the archive, pick one by its
//!   `RepoTags` entry or by `@index`.
//! - `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]` — a registry speaking the
//!   Distribution API, anonymously, with HTTP Basic, or with the Docker token
//!   flow (a `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`
//!   sends us to the realm for a token). HTTPS unless `insecure` is set.
//!   Transient failures (connection errors, 5xx, 429) are retried with
//!   exponential backoff; a blob download that is cut resumes with a `Range`
//!   request from the byte where it stopped. Extra trusted roots for a
//!   private CA: [`remote::RemoteOptions::ca_pem`] or the PEM file named by
//!   `DRYDOCK_CA_FILE`.
//!
//! Feature `test-support` adds the `testing` module (for this crate's and dependants'
//! tests): the real test images, Debian's `docker-registry` on loopback, a
//! mini registry that can demand Basic or bearer auth, serve TLS from a test
//! CA, fail, stall or cut transfers, and a TCP proxy that cuts connections.
//!
//! ```no_run
//! # async fn demo() -> Result<(), transport::Error> {
//! use tokio::io::AsyncReadExt;
//! let spec = transport::SourceSpec::parse("oci:/tmp/layout:v1")?;
//! let src = transport::open(&spec).await?;
//! let root = src.root().await?;
//! for blob in root.parse()?.blobs() {
//!     let mut s = src.blob(&blob.digest).await?;
//!     let mut sink = tokio::io::sink();
//!     tokio::io::copy(&mut s, &mut sink).await?; // errors at the end on a digest mismatch
//! }
//! # Ok(()) }
//! ```
//!
//! Invariants:
//! - Every manifest handed out has been hashed and matches its digest (the
//!   digest asked for, or the registry's `Docker-Content-Digest`).
//! - Every [`BlobStream`] hashes what it yields and fails at its end (with
//!   [`std::io::ErrorKind::InvalidData`]) when digest or size disagree, so a
//!   consumer that commits only after a clean EOF never commits bad bytes.
//! - Nothing buffers a whole blob; manifests and configs are bounded
//!   ([`MAX_MANIFEST_BYTES`], [`MAX_CONFIG_BYTES`]).
//! - Credentials never appear in `Debug` output or error messages.
//!
//! For the cataloger, which reads synchronously inside `spawn_blocking`, the
//! local sources implement [`oci::BlobSource`] directly and
//! [`blocking_blob_source`] adapts any source.

mod archive;
mod layout;
pub mod push;
pub mod remote;
mod verify;

#[cfg(feature = "test-support")]
pub mod testing;

pub use archive::DockerArchiveSource;
pub use layout::OciLayoutSource;
pub use remote::RemoteSource;
pub use verify::BlobStream;

use async_trait::async_trait;
use oci::{Digest, ImageRef, Manifest};
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

/// Largest manifest or index accepted from a source.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest image config read into memory (docker-archive synthesis).
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// A user name and password (or token) for a remote registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    /// Parse `USER:PASSWORD` (the password may contain `:`).
    pub fn parse(s: &str) -> Result<Credentials, Error> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }),
            _ => Err(Error::Spec(
                "credentials must be USER:PASSWORD with a non-empty user".into(),
            )),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, <redacted>)", self.username)
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `oci:DIR[:TAG]`.
    OciLayout { dir: PathBuf, tag: Option<String> },
    /// `docker-archive:FILE[:NAME:TAG|:@N]`; `image` picks one of several
    /// images (a `RepoTags` entry, or `@N` for the N-th, from 0).
    DockerArchive {
        file: PathBuf,
        image: Option<String>,
    },
    /// `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`.
    Registry {
        image: ImageRef,
        creds: Option<Credentials>,
        insecure: bool,
    },
}

impl SourceSpec {
    /// Parse `oci:DIR[:TAG]`, `docker-archive:FILE[:REF]` or
    /// `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`. Registry specs come back
    /// without credentials and secure; set those fields afterwards.
    pub fn parse(s: &str) -> Result<SourceSpec, Error> {
        if let Some(rest) = s.strip_prefix("oci:") {
            // The tag follows the last ':' when that part is a valid tag
            // (so "oci:/a:b/dir" keeps its ':' in the directory).
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((d, t)) if !d.is_empty() && oci::Tag::parse(t).is_ok() => {
                    (d, Some(t.to_string()))
                }
                _ => (rest, None),
            };
            if dir.is_empty() {
                return Err(Error::Spec(format!("{s:?}: expected oci:DIR[:TAG]")));
            }
            return Ok(SourceSpec::OciLayout {
                dir: PathBuf::from(dir),
                tag,
            });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (file, image) = match rest.split_once(':') {
                Some((f, i)) if !i.is_empty() => (f, Some(i.to_string())),
                Some((f, _)) => (f, None),
                None => (rest, None),
            };
            if file.is_empty() {
                return Err(Error::Spec(format!(
                    "{s:?}: expected docker-archive:FILE[:NAME:TAG]"
                )));
            }
            return Ok(SourceSpec::DockerArchive {
                file: PathBuf::from(file),
                image,
            });
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            let image = ImageRef::parse(rest).map_err(|e| Error::Spec(e.to_string()))?;
            return Ok(SourceSpec::Registry {
                image,
                creds: None,
                insecure: false,
            });
        }
        Err(Error::Spec(format!(
            "{s:?}: unknown source; use oci:DIR[:TAG], docker-archive:FILE or docker://HOST/REPO[:TAG]"
        )))
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::OciLayout { dir, tag } => {
                write!(f, "oci:{}", dir.display())?;
                match tag {
                    Some(t) => write!(f, ":{t}"),
                    None => Ok(()),
                }
            }
            SourceSpec::DockerArchive { file, image } => {
                write!(f, "docker-archive:{}", file.display())?;
                match image {
                    Some(i) => write!(f, ":{i}"),
                    None => Ok(()),
                }
            }
            SourceSpec::Registry { image, .. } => {
                write!(f, "docker://{}/{}", image.host, image.name)?;
                if let Some(t) = &image.tag {
                    write!(f, ":{t}")?;
                }
                if let Some(d) = &image.digest {
                    write!(f, "@{d}")?;
                }
                Ok(())
            }
        }
    }
}

/// Everything that can go wrong reading from a source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid source: {0}")]
    Spec(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Manifest(#[from] oci::ManifestError),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("{0}")]
    Http(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::io("I/O error", e)
    }
}

/// A manifest or index as the source holds it: exact bytes, media type and
/// digest (verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    pub bytes: bytes::Bytes,
    pub media_type: String,
    pub digest: Digest,
}

impl FetchedManifest {
    /// Parse and validate the bytes.
    pub fn parse(&self) -> Result<Manifest, Error> {
        Ok(Manifest::parse(&self.bytes, Some(&self.media_type))?)
    }

    /// Build from bytes, checking them against `expected` when given, and
    /// working out the media type (body, else `content_type`).
    pub(crate) fn verified(
        bytes: bytes::Bytes,
        content_type: Option<&str>,
        expected: Option<&Digest>,
        what: &str,
    ) -> Result<FetchedManifest, Error> {
        let digest = match expected {
            Some(e) => {
                let mut d = oci::Digester::new(e.algorithm());
                d.update(&bytes);
                let actual = d.finish();
                if &actual != e {
                    return Err(Error::DigestMismatch {
                        what: what.to_string(),
                        expected: e.clone(),
                        actual,
                    });
                }
                actual
            }
            None => Digest::sha256_of(&bytes),
        };
        let parsed = Manifest::parse(&bytes, content_type)
            .map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
        Ok(FetchedManifest {
            media_type: parsed.media_type().to_string(),
            bytes,
            digest,
        })
    }
}

/// A place images are read from.
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// What this source is, for messages (`oci:/dir:tag`, …).
    fn describe(&self) -> String;

    /// The manifest or index the spec names.
    async fn root(&self) -> Result<FetchedManifest, Error>;

    /// A manifest by digest (the children of an index).
    async fn manifest(&self, digest: &Digest) -> Result<FetchedManifest, Error>;

    /// A blob, streamed; the stream fails at its end if the bytes do not
    /// match `digest`.
    async fn blob(&self, digest: &Digest) -> Result<BlobStream, Error>;

    /// A blob from byte `offset` on, for callers that resume transfers
    /// themselves. Local sources seek and remote ones send a `Range` request;
    /// such streams are *not* verified (they cannot see the start), so the
    /// caller hashes the whole. The default reads through the skipped bytes
    /// and so stays verified.
    async fn blob_from(&self, digest: &Digest, offset: u64) -> Result<BlobStream, Error> {
        let mut s = self.blob(digest).await?;
        let skipped = tokio::io::copy(
            &mut tokio::io::AsyncReadExt::take(&mut s, offset),
            &mut tokio::io::sink(),
        )
        .await
        .map_err(|e| Error::io(format!("skipping to {offset} in {digest}"), e))?;
        if skipped < offset {
            return Err(Error::Invalid(format!(
                "blob {digest} has only {skipped} bytes, cannot start at {offset}"
            )));
        }
        Ok(s)
    }

    /// Tags this source knows in the same repository (layout annotations,
    /// archive `RepoTags`, the registry's tag list).
    async fn tags(&self) -> Result<Vec<String>, Error>;

    /// The manifest another tag of the same repository names.
    async fn tagged(&self, tag: &str) -> Result<FetchedManifest, Error>;
}

impl fmt::Debug for dyn ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageSource({})", self.describe())
    }
}

/// Open a source. Local sources check their files now (a bad path or a
/// missing tag fails here); a remote source only builds its client.
pub async fn open(spec: &SourceSpec) -> Result<Box<dyn ImageSource>, Error> {
    Ok(match spec {
        SourceSpec::OciLayout { dir, tag } => {
            Box::new(OciLayoutSource::open(dir.clone(), tag.clone()).await?)
        }
        SourceSpec::DockerArchive { file, image } => {
            Box::new(DockerArchiveSource::open(file.clone(), image.clone()).await?)
        }
        SourceSpec::Registry {
            image,
            creds,
            insecure,
        } => Box::new(RemoteSource::new(image.clone(), creds.clone(), *insecure)?),
    })
}

/// Adapt any source to the synchronous [`oci::BlobSource`] the cataloger
/// uses. Call `open_blob` only off the runtime's worker threads (inside
/// `spawn_blocking`); reads block on `handle`. Streams stay verified.
pub fn blocking_blob_source(
    src: Arc<dyn ImageSource>,
    handle: tokio::runtime::Handle,
) -> impl oci::BlobSource {
    BlockingSource { src, handle }
}

struct BlockingSource {
    src: Arc<dyn ImageSource>,
    handle: tokio::runtime::Handle,
}

impl oci::BlobSource for BlockingSource {
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>> {
        let stream = self
            .handle
            .block_on(self.src.blob(digest))
            .map_err(std::io::Error::other)?;
        Ok(Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
            stream,
            self.handle.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!(
            SourceSpec::parse("oci:/x/layout:v1").unwrap(),
            SourceSpec::OciLayout {
                dir: "/x/layout".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            SourceSpec::parse("oci:/x/layout").unwrap(),
            SourceSpec::OciLayout {
                dir: "/x/layout".into(),
                tag: None
            }
        );
        assert_eq!(
            SourceSpec::parse("oci:/a:b/layout").unwrap(),
            SourceSpec::OciLayout {
                dir: "/a:b/layout".into(),
                tag: None
            }
        );
        assert_eq!(
            SourceSpec::parse("docker-archive:/t/a.tar:app:v1").unwrap(),
            SourceSpec::DockerArchive {
                file: "/t/a.tar".into(),
                image: Some("app:v1".into())
            }
        );
        match SourceSpec::parse("docker://127.0.0.1:5000/team/app:v2").unwrap() {
            SourceSpec::Registry {
                image,
                creds,
                insecure,
            } => {
                assert_eq!(image.host, "127.0.0.1:5000");
                assert_eq!(image.name.as_str(), "team/app");
                assert_eq!(image.tag.unwrap().as_str(), "v2");
                assert!(creds.is_none() && !insecure);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "",
            "oci:",
            "docker-archive:",
            "docker://app",
            "ftp://x/y",
            "x/y:z",
        ] {
            assert!(SourceSpec::parse(bad).is_err(), "{bad}");
        }
        for s in ["oci:/x:v1", "docker-archive:/t/a.tar", "docker://h:1/a/b:c"] {
            assert_eq!(SourceSpec::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn credentials_are_redacted() {
        let c = Credentials::parse("me:se:cret").unwrap();
        assert_eq!(c.password, "se:cret");
        assert!(!format!("{c:?}").contains("se:cret"));
        assert!(Credentials::parse("nopass").is_err());
        assert!(Credentials::parse(":x").is_err());
    }
}
