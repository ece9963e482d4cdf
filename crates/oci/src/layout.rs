//! The one reader of an OCI image layout directory (`oci-layout`,
//! `index.json`, `blobs/<alg>/<hex>`), shared by `transport`'s `oci:DIR`
//! source and by the catalog's tests, benches and examples.
//!
//! The only file I/O in this crate. A layout may come from anyone (an
//! import from `import.local_dirs`, a `drydock scan oci:DIR`), so:
//! - it must carry an `oci-layout` file with an `imageLayoutVersion`;
//! - `index.json`, `oci-layout` and every blob read whole (manifests,
//!   configs) are bounded in size, and a blob read whole must hash to its
//!   digest;
//! - blob paths are built only from a parsed [`Digest`], whose algorithm
//!   and hex are plain tokens, so a digest such as `sha256:../../x` in
//!   `index.json` is refused as malformed before any path is formed;
//! - JSON errors name the file and the position, never its content.
//!
//! Large blobs (layers) are opened as files and streamed, never read whole.

use crate::{BlobSource, Descriptor, Digest, Digester, ImageIndex, Manifest};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The annotation an `index.json` entry names its tag with.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Largest `index.json`, manifest or index read from a layout.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest `oci-layout` marker file.
const MAX_MARKER_BYTES: u64 = 64 << 10;

/// What is wrong with a layout, or with reading from it.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The directory has no `oci-layout` file.
    #[error("{0} is not an OCI image layout (no oci-layout file)")]
    NotALayout(String),
    /// A file is malformed, too large, or does not match its digest.
    #[error("{0}")]
    Invalid(String),
    /// A blob read whole hashes to something else than its name.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    /// A tag, an image or a blob is not in the layout.
    #[error("{0}")]
    NotFound(String),
    /// No tag was given and the layout holds several images.
    #[error("{0}")]
    Ambiguous(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl LayoutError {
    fn io(path: &Path, source: io::Error) -> LayoutError {
        LayoutError::Io {
            context: path.display().to_string(),
            source,
        }
    }
}

/// An opened layout: its directory and its parsed `index.json`.
#[derive(Debug, Clone)]
pub struct OciLayout {
    dir: PathBuf,
    index: ImageIndex,
}

impl OciLayout {
    /// Check the `oci-layout` marker and read `index.json`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<OciLayout, LayoutError> {
        let dir = dir.into();
        let marker = dir.join("oci-layout");
        let body = read_bounded(&marker, MAX_MARKER_BYTES).map_err(|e| match e {
            LayoutError::NotFound(_) => LayoutError::NotALayout(dir.display().to_string()),
            e => e,
        })?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| LayoutError::Invalid(json_problem(&marker.display().to_string(), &e)))?;
        if v.get("imageLayoutVersion")
            .and_then(|v| v.as_str())
            .is_none()
        {
            return Err(LayoutError::Invalid(format!(
                "{}: no imageLayoutVersion",
                marker.display()
            )));
        }
        let index_path = dir.join("index.json");
        let body = read_bounded(&index_path, MAX_MANIFEST_BYTES)?;
        let index: ImageIndex = serde_json::from_slice(&body).map_err(|e| {
            LayoutError::Invalid(json_problem(&index_path.display().to_string(), &e))
        })?;
        Ok(OciLayout { dir, index })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parsed `index.json`.
    pub fn index(&self) -> &ImageIndex {
        &self.index
    }

    /// Tags named in `index.json`, in its order.
    pub fn tags(&self) -> Vec<String> {
        self.index
            .manifests
            .iter()
            .filter_map(ref_name)
            .map(str::to_string)
            .collect()
    }

    /// The `index.json` entry tagged `tag`, or the only entry when `tag`
    /// is `None`.
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor, LayoutError> {
        let names = || self.tags().join(", ");
        match tag {
            Some(t) => self
                .index
                .manifests
                .iter()
                .find(|d| ref_name(d) == Some(t))
                .cloned()
                .ok_or_else(|| {
                    LayoutError::NotFound(format!(
                        "tag {t:?} is not in {} (tags: {})",
                        self.dir.display(),
                        names()
                    ))
                }),
            None => match self.index.manifests.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(LayoutError::NotFound(format!(
                    "{} holds no images",
                    self.dir.display()
                ))),
                many => Err(LayoutError::Ambiguous(format!(
                    "{} holds {} images; name one with oci:DIR:TAG (tags: {})",
                    self.dir.display(),
                    many.len(),
                    names()
                ))),
            },
        }
    }

    /// The media type `index.json` gives `digest`, if it lists it.
    pub fn media_type_of(&self, digest: &Digest) -> Option<&str> {
        self.index
            .manifests
            .iter()
            .find(|d| &d.digest == digest)
            .map(|d| d.media_type.as_str())
    }

    /// Where the blob `d` lives. Safe to join: a [`Digest`]'s algorithm and
    /// hex never contain a separator or `..`.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    /// Read a small blob (a manifest or a config) whole, refusing one over
    /// `limit` bytes or one whose bytes do not hash to `d`.
    pub fn read_blob(&self, d: &Digest, limit: u64) -> Result<Vec<u8>, LayoutError> {
        let body = read_bounded(&self.blob_path(d), limit).map_err(|e| match e {
            LayoutError::NotFound(_) => {
                LayoutError::NotFound(format!("blob {d} is not in {}", self.dir.display()))
            }
            e => e,
        })?;
        let mut h = Digester::new(d.algorithm());
        h.update(&body);
        let actual = h.finish();
        if &actual != d {
            return Err(LayoutError::DigestMismatch {
                what: format!("blob {d} in {}", self.dir.display()),
                expected: d.clone(),
                actual,
            });
        }
        Ok(body)
    }

    /// Read and parse the manifest or index `d` points at.
    pub fn manifest(&self, d: &Descriptor) -> Result<Manifest, LayoutError> {
        let body = self.read_blob(&d.digest, MAX_MANIFEST_BYTES)?;
        Manifest::parse(&body, Some(&d.media_type))
            .map_err(|e| LayoutError::Invalid(format!("manifest {}: {e}", d.digest)))
    }

    /// Open a blob for streaming, with its length.
    pub fn open_blob_file(&self, d: &Digest) -> Result<(File, u64), LayoutError> {
        let path = self.blob_path(d);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                LayoutError::NotFound(format!("blob {d} is not in {}", self.dir.display()))
            } else {
                LayoutError::io(&path, e)
            }
        })?;
        let len = file
            .metadata()
            .map_err(|e| LayoutError::io(&path, e))?
            .len();
        Ok((file, len))
    }
}

impl BlobSource for OciLayout {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        match self.open_blob_file(digest) {
            Ok((f, _)) => Ok(Box::new(f)),
            Err(LayoutError::Io { context, source }) => Err(io::Error::new(
                source.kind(),
                format!("{context}: {source}"),
            )),
            Err(e) => Err(io::Error::new(io::ErrorKind::NotFound, e.to_string())),
        }
    }
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

/// Read a file whole, refusing one larger than `limit`. The read itself is
/// bounded too, so a file that grows (or a device) cannot run past it.
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, LayoutError> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            LayoutError::NotFound(path.display().to_string())
        } else {
            LayoutError::io(path, e)
        }
    })?;
    let too_big = |n: u64| {
        LayoutError::Invalid(format!(
            "{} is {n} bytes, more than the {limit} allowed",
            path.display()
        ))
    };
    let len = file.metadata().map_err(|e| LayoutError::io(path, e))?.len();
    if len > limit {
        return Err(too_big(len));
    }
    let mut body = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| LayoutError::io(path, e))?;
    if body.len() as u64 > limit {
        return Err(too_big(body.len() as u64));
    }
    Ok(body)
}

/// What is wrong with a JSON file, by position only: serde's own messages
/// quote the values they reject (`invalid type: string "…"`), which would
/// echo a file's content into an error.
pub fn json_problem(what: &str, e: &serde_json::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory under the system temp dir, removed when dropped.
    struct Tmp(PathBuf);
    impl Tmp {
        fn new() -> Tmp {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "oci-layout-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(p.join("blobs/sha256")).unwrap();
            Tmp(p)
        }
        fn put(&self, bytes: &[u8]) -> Digest {
            let d = Digest::sha256_of(bytes);
            std::fs::write(self.0.join("blobs/sha256").join(d.hex()), bytes).unwrap();
            d
        }
        fn write(&self, name: &str, body: &str) {
            std::fs::write(self.0.join(name), body).unwrap();
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const MARKER: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

    /// A layout with one image per tag; returns each image's manifest digest.
    fn layout(tags: &[Option<&str>]) -> (Tmp, Vec<Digest>) {
        let t = Tmp::new();
        t.write("oci-layout", MARKER);
        let config = t.put(b"{}");
        let mut entries = Vec::new();
        let mut digests = Vec::new();
        for (i, tag) in tags.iter().enumerate() {
            let layer = t.put(format!("layer {i}").as_bytes());
            let m = format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config}","size":2}},"layers":[{{"mediaType":"{}","digest":"{layer}","size":7}}]}}"#,
                crate::OCI_MANIFEST,
                crate::OCI_CONFIG,
                crate::OCI_LAYER_TAR,
            );
            let d = t.put(m.as_bytes());
            let ann = tag
                .map(|t| format!(r#","annotations":{{"{REF_NAME}":"{t}"}}"#))
                .unwrap_or_default();
            entries.push(format!(
                r#"{{"mediaType":"{}","digest":"{d}","size":{}{ann}}}"#,
                crate::OCI_MANIFEST,
                m.len()
            ));
            digests.push(d);
        }
        t.write(
            "index.json",
            &format!(
                r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
                entries.join(",")
            ),
        );
        (t, digests)
    }

    fn refused(dir: &Path) -> LayoutError {
        OciLayout::open(dir).expect_err("layout refused")
    }

    #[test]
    fn reads_tags_manifests_and_blobs() {
        let (t, ds) = layout(&[Some("a"), Some("b")]);
        let l = OciLayout::open(&t.0).unwrap();
        assert_eq!(l.tags(), ["a", "b"]);
        let b = l.resolve(Some("b")).unwrap();
        assert_eq!(b.digest, ds[1]);
        assert_eq!(l.media_type_of(&ds[1]), Some(crate::OCI_MANIFEST));
        let m = l.manifest(&b).unwrap();
        let layer = m.blobs().last().unwrap().digest.clone();
        let mut s = String::new();
        l.open_blob(&layer).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "layer 1");
        let (_, len) = l.open_blob_file(&layer).unwrap();
        assert_eq!(len, 7);
    }

    #[test]
    fn a_directory_without_oci_layout_is_not_a_layout() {
        let (t, _) = layout(&[None]);
        std::fs::remove_file(t.0.join("oci-layout")).unwrap();
        let e = refused(&t.0);
        assert!(matches!(e, LayoutError::NotALayout(_)), "{e:?}");
        assert!(e.to_string().contains("not an OCI image layout"), "{e}");
    }

    #[test]
    fn an_oci_layout_without_a_version_is_refused() {
        let (t, _) = layout(&[None]);
        t.write("oci-layout", r#"{"other":"1.0.0"}"#);
        let e = refused(&t.0).to_string();
        assert!(e.contains("no imageLayoutVersion"), "{e}");
        t.write("oci-layout", "not json SECRET-ISH");
        let e = refused(&t.0).to_string();
        assert!(e.contains("oci-layout is not valid JSON at line 1"), "{e}");
        assert!(!e.contains("SECRET-ISH"), "{e}");
    }

    #[test]
    fn bad_index_json_is_refused_without_echoing_it() {
        let (t, _) = layout(&[None]);
        t.write(
            "index.json",
            r#"{"schemaVersion":2,"manifests":["echo-me"]}"#,
        );
        let e = refused(&t.0);
        assert!(matches!(e, LayoutError::Invalid(_)), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("index.json is JSON but not of the expected shape"),
            "{e}"
        );
        assert!(!e.contains("echo-me"), "{e}");
        t.write("index.json", r#"{"schemaVersion":2,"#);
        let e = refused(&t.0).to_string();
        assert!(e.contains("index.json ends before its JSON does"), "{e}");
        std::fs::remove_file(t.0.join("index.json")).unwrap();
        assert!(matches!(refused(&t.0), LayoutError::NotFound(_)));
    }

    #[test]
    fn a_digest_that_climbs_out_of_blobs_is_refused() {
        let (t, _) = layout(&[None]);
        // Something a traversal would reach, if a path were ever formed.
        std::fs::write(t.0.join("secret"), "x").unwrap();
        for bad in [
            "sha256:../../secret",
            "sha256/../../secret:abc",
            "../sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "sha256:/etc/passwd",
        ] {
            t.write(
                "index.json",
                &format!(
                    r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{bad}","size":1}}]}}"#,
                    crate::OCI_MANIFEST
                ),
            );
            let e = refused(&t.0);
            assert!(matches!(e, LayoutError::Invalid(_)), "{bad}: {e:?}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn oversized_files_are_refused() {
        let (t, _) = layout(&[None]);
        let big = format!(
            r#"{{"schemaVersion":2,"manifests":[],"annotations":{{"x":"{}"}}}}"#,
            "a".repeat(MAX_MANIFEST_BYTES as usize)
        );
        t.write("index.json", &big);
        let e = refused(&t.0).to_string();
        assert!(e.contains("more than the 4194304 allowed"), "{e}");
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_is_refused() {
        let (t, ds) = layout(&[None]);
        let l = OciLayout::open(&t.0).unwrap();
        std::fs::write(t.0.join("blobs/sha256").join(ds[0].hex()), "{}").unwrap();
        let e = l.manifest(&l.resolve(None).unwrap()).unwrap_err();
        assert!(matches!(e, LayoutError::DigestMismatch { .. }), "{e:?}");
        let missing = Digest::sha256_of(b"absent");
        let e = l.read_blob(&missing, 10).unwrap_err();
        assert!(matches!(e, LayoutError::NotFound(_)), "{e:?}");
        assert!(l.open_blob(&missing).is_err());
    }

    #[test]
    fn picking_an_image_names_the_choices() {
        let (t, ds) = layout(&[Some("v1"), Some("v2")]);
        let l = OciLayout::open(&t.0).unwrap();
        let e = l.resolve(None).unwrap_err();
        assert!(matches!(e, LayoutError::Ambiguous(_)), "{e:?}");
        assert!(
            e.to_string()
                .contains("holds 2 images; name one with oci:DIR:TAG (tags: v1, v2)"),
            "{e}"
        );
        let e = l.resolve(Some("v3")).unwrap_err();
        assert!(matches!(e, LayoutError::NotFound(_)), "{e:?}");
        assert!(e.to_string().contains("tag \"v3\" is not in"), "{e}");
        assert_eq!(l.resolve(Some("v1")).unwrap().digest, ds[0]);
        let (t, _) = layout(&[]);
        let e = OciLayout::open(&t.0).unwrap().resolve(None).unwrap_err();
        assert!(e.to_string().contains("holds no images"), "{e}");
    }
}
