//! `docker-archive:FILE[:REF]`: the output of `docker save`.
//!
//! The archive is scanned once for entry headers (path → offset and size;
//! symlinks and hard links resolved), never for content held in memory.
//! `manifest.json` names each image's config and layer files; we synthesise
//! a manifest for the chosen image from them. Layer digests come from the
//! file name when it is content-addressed (`blobs/sha256/<hex>`), else from
//! the config's `rootfs.diff_ids` for an uncompressed layer (docker saves
//! layers as their diffs), else by hashing the range. Every blob read is
//! verified, so a wrong guess fails loudly instead of importing bad bytes.

use crate::verify::{BlobStream, file_stream};
use crate::{Error, FetchedManifest, ImageSource, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use async_trait::async_trait;
use oci as media;
use oci::layout::json_problem;
use oci::{Descriptor, Digest, Digester, ImageManifest};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncSeekExt;

/// Media type Docker uses for an uncompressed layer.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    offset: u64,
    size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Debug)]
struct Index {
    file: PathBuf,
    entries: HashMap<String, Range>,
    links: HashMap<String, String>,
    images: Vec<ArchiveImage>,
}

/// A `docker save` archive, with the image the spec chose.
pub struct DockerArchiveSource {
    index: Arc<Index>,
    chosen: usize,
    label: String,
    manifest: FetchedManifest,
    /// Blobs of every manifest synthesised so far.
    blobs: Mutex<HashMap<Digest, Range>>,
    /// Manifests synthesised so far (root, other tags).
    manifests: Mutex<HashMap<Digest, FetchedManifest>>,
}

impl std::fmt::Debug for DockerArchiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerArchiveSource")
            .field("label", &self.label)
            .field("digest", &self.manifest.digest)
            .finish_non_exhaustive()
    }
}

impl DockerArchiveSource {
    /// Index the archive and synthesise the chosen image's manifest.
    pub async fn open(file: PathBuf, image: Option<String>) -> Result<DockerArchiveSource, Error> {
        let label = match &image {
            Some(i) => format!("docker-archive:{}:{i}", file.display()),
            None => format!("docker-archive:{}", file.display()),
        };
        let (index, chosen, manifest, blobs) = tokio::task::spawn_blocking(move || {
            let index = Arc::new(Index::scan(file)?);
            let chosen = index.choose(image.as_deref())?;
            let (manifest, blobs) = index.synthesise(chosen)?;
            Ok::<_, Error>((index, chosen, manifest, blobs))
        })
        .await
        .map_err(|e| Error::Invalid(format!("archive indexing failed: {e}")))??;
        let manifests = HashMap::from([(manifest.digest.clone(), manifest.clone())]);
        Ok(DockerArchiveSource {
            index,
            chosen,
            label,
            manifest,
            blobs: Mutex::new(blobs),
            manifests: Mutex::new(manifests),
        })
    }

    fn range_of(&self, digest: &Digest) -> Result<Range, Error> {
        self.blobs
            .lock()
            .expect("blob map")
            .get(digest)
            .copied()
            .ok_or_else(|| Error::NotFound(format!("blob {digest} is not in {}", self.label)))
    }

    fn repo_of(tag: &str) -> &str {
        // "name:tag" where name may hold a port ("host:5000/app:v1").
        match tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => n,
            _ => tag,
        }
    }
}

impl Index {
    fn scan(file: PathBuf) -> Result<Index, Error> {
        let display = file.display().to_string();
        let ctx = || display.clone();
        let mut f = File::open(&file).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(ctx())
            } else {
                Error::io(ctx(), e)
            }
        })?;
        let mut magic = [0u8; 4];
        let n = f.read(&mut magic).map_err(|e| Error::io(ctx(), e))?;
        if n >= 2 && magic[..2] == [0x1f, 0x8b] || n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(Error::Invalid(format!(
                "{} is compressed; decompress it first (docker-archive reads a plain tar)",
                ctx()
            )));
        }
        f.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(ctx(), e))?;
        let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 16, f));
        let mut entries = HashMap::new();
        let mut links = HashMap::new();
        // The tar crate's messages quote header fields (the first bytes of
        // a file that is not a tar at all): say what is wrong, never what
        // was read.
        let bad = |seen: usize| {
            Error::Invalid(if seen == 0 {
                format!(
                    "{} is not a tar archive (docker-archive reads the output of docker save)",
                    ctx()
                )
            } else {
                format!(
                    "{} is not a valid tar archive: the header after entry {seen} is malformed or cut short",
                    ctx()
                )
            })
        };
        for (n, entry) in archive.entries().map_err(|_| bad(0))?.enumerate() {
            let entry = entry.map_err(|_| bad(n))?;
            let path = normalise(&entry.path().map_err(|_| bad(n + 1))?.to_string_lossy());
            let kind = entry.header().entry_type();
            if kind.is_file() {
                entries.insert(
                    path,
                    Range {
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                    },
                );
            } else if (kind.is_symlink() || kind.is_hard_link())
                && let Some(target) = entry.link_name().map_err(|_| bad(n + 1))?
            {
                let target = target.to_string_lossy();
                let resolved = if kind.is_symlink() && !target.starts_with('/') {
                    // Relative to the link's directory.
                    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    normalise(&format!("{dir}/{target}"))
                } else {
                    normalise(&target)
                };
                links.insert(path, resolved);
            }
        }
        let mut index = Index {
            file,
            entries,
            links,
            images: Vec::new(),
        };
        let Some(range) = index.resolve("manifest.json") else {
            return Err(Error::Invalid(format!(
                "{} is not a docker archive: it holds no manifest.json (docker-archive reads the output of docker save)",
                ctx()
            )));
        };
        let manifest_json = index.read_range(range, "manifest.json", MAX_MANIFEST_BYTES)?;
        index.images = serde_json::from_slice(&manifest_json).map_err(|e| {
            Error::Invalid(format!("{}: {}", ctx(), json_problem("manifest.json", &e)))
        })?;
        Ok(index)
    }

    /// The entry `path` names, following links.
    fn resolve(&self, path: &str) -> Option<Range> {
        let mut p = normalise(path);
        for _ in 0..16 {
            if let Some(r) = self.entries.get(&p) {
                return Some(*r);
            }
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        None
    }

    /// The entry of a file manifest.json names; `what` describes it by its
    /// place (`image 0's config`), not by the name read from the archive.
    fn named(&self, path: &str, what: &str) -> Result<Range, Error> {
        self.resolve(path).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: manifest.json lists {what}, but the archive does not hold that file",
                self.file.display()
            ))
        })
    }

    fn open_range(&self, r: Range) -> Result<std::io::Take<File>, Error> {
        let ctx = || self.file.display().to_string();
        let mut f = File::open(&self.file).map_err(|e| Error::io(ctx(), e))?;
        f.seek(SeekFrom::Start(r.offset))
            .map_err(|e| Error::io(ctx(), e))?;
        Ok(f.take(r.size))
    }

    fn read_range(&self, r: Range, what: &str, limit: u64) -> Result<Vec<u8>, Error> {
        if r.size > limit {
            return Err(Error::Invalid(format!(
                "{}: {what} is {} bytes, more than the {limit} allowed",
                self.file.display(),
                r.size
            )));
        }
        let mut buf = Vec::with_capacity(r.size as usize);
        self.open_range(r)?
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(self.file.display().to_string(), e))?;
        Ok(buf)
    }

    fn all_tags(&self) -> Vec<&str> {
        self.images
            .iter()
            .flat_map(|i| i.repo_tags.iter().flatten())
            .map(String::as_str)
            .collect()
    }

    fn choose(&self, image: Option<&str>) -> Result<usize, Error> {
        let f = self.file.display();
        match image {
            None => match self.images.len() {
                1 => Ok(0),
                0 => Err(Error::NotFound(format!("{f} holds no images"))),
                n => Err(Error::Spec(format!(
                    "{f} holds {n} images; pick one with docker-archive:FILE:NAME:TAG or :@INDEX (tags: {})",
                    self.all_tags().join(", ")
                ))),
            },
            Some(sel) => {
                if let Some(n) = sel.strip_prefix('@') {
                    let i: usize = n
                        .parse()
                        .map_err(|_| Error::Spec(format!("{sel:?} is not @INDEX")))?;
                    return if i < self.images.len() {
                        Ok(i)
                    } else {
                        Err(Error::NotFound(format!(
                            "{f} holds {} images, no @{i}",
                            self.images.len()
                        )))
                    };
                }
                let sel = if sel.rsplit_once(':').is_some_and(|(_, t)| !t.contains('/')) {
                    sel.to_string()
                } else {
                    format!("{sel}:latest")
                };
                // Docker and skopeo write names fully qualified (a default
                // registry host, a default namespace): match at any
                // path-component boundary from the end.
                let suffix = format!("/{sel}");
                self.images
                    .iter()
                    .position(|i| {
                        i.repo_tags
                            .iter()
                            .flatten()
                            .any(|t| *t == sel || t.ends_with(&suffix))
                    })
                    .ok_or_else(|| {
                        Error::NotFound(format!(
                            "{sel:?} is not in {f} (tags: {})",
                            self.all_tags().join(", ")
                        ))
                    })
            }
        }
    }

    /// Build the manifest for image `i`; returns it with its blobs' ranges.
    fn synthesise(&self, i: usize) -> Result<(FetchedManifest, HashMap<Digest, Range>), Error> {
        let img = &self.images[i];
        let f = self.file.display().to_string();
        let config_what = format!("image {i}'s config");
        let config_range = self.named(&img.config, &config_what)?;
        let config = self.read_range(config_range, &config_what, MAX_CONFIG_BYTES)?;
        let config_digest = Digest::sha256_of(&config);
        #[derive(Deserialize)]
        struct RootFs {
            #[serde(default)]
            diff_ids: Vec<Digest>,
        }
        #[derive(Deserialize)]
        struct Config {
            rootfs: Option<RootFs>,
        }
        let parsed: Config = serde_json::from_slice(&config)
            .map_err(|e| Error::Invalid(format!("{f}: {}", json_problem(&config_what, &e))))?;
        let diff_ids = parsed.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        let mut blobs = HashMap::from([(config_digest.clone(), config_range)]);
        let mut layers = Vec::new();
        let mut zstd = false;
        for (n, path) in img.layers.iter().enumerate() {
            let range = self.named(path, &format!("image {i}'s layer {n}"))?;
            let mut head = [0u8; 4];
            let got = read_up_to(&mut self.open_range(range)?, &mut head)
                .map_err(|e| Error::io(f.clone(), e))?;
            let compression = match &head[..got] {
                [0x1f, 0x8b, ..] => media::LayerCompression::Gzip,
                [0x28, 0xb5, 0x2f, 0xfd] => media::LayerCompression::Zstd,
                _ => media::LayerCompression::None,
            };
            zstd |= compression == media::LayerCompression::Zstd;
            let digest = match content_addressed(path).or_else(|| {
                self.links
                    .get(&normalise(path))
                    .and_then(|t| content_addressed(t))
            }) {
                Some(d) => d,
                None if compression == media::LayerCompression::None && n < diff_ids.len() => {
                    diff_ids[n].clone()
                }
                None => {
                    let mut d = Digester::new(oci::Algorithm::Sha256);
                    let mut r = self.open_range(range)?;
                    let mut buf = vec![0u8; 256 << 10];
                    loop {
                        let k = r.read(&mut buf).map_err(|e| Error::io(f.clone(), e))?;
                        if k == 0 {
                            break;
                        }
                        d.update(&buf[..k]);
                    }
                    d.finish()
                }
            };
            blobs.insert(digest.clone(), range);
            layers.push((digest, range.size, compression));
        }
        // Docker schema 2 unless it cannot say what we hold.
        let oci_form = zstd || layers.is_empty();
        let layer_type = |c: media::LayerCompression| match (oci_form, c) {
            (false, media::LayerCompression::None) => DOCKER_LAYER_TAR,
            (false, _) => media::DOCKER_LAYER_GZIP,
            (true, media::LayerCompression::None) => media::OCI_LAYER_TAR,
            (true, media::LayerCompression::Gzip) => media::OCI_LAYER_GZIP,
            (true, media::LayerCompression::Zstd) => media::OCI_LAYER_ZSTD,
        };
        let descriptor = |media_type: &str, digest: Digest, size: u64| Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
            data: None,
        };
        let (manifest_type, config_type) = if oci_form {
            (media::OCI_MANIFEST, media::OCI_CONFIG)
        } else {
            (media::DOCKER_MANIFEST, media::DOCKER_CONFIG)
        };
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(manifest_type.to_string()),
            artifact_type: None,
            config: descriptor(config_type, config_digest, config.len() as u64),
            layers: layers
                .into_iter()
                .map(|(d, size, c)| descriptor(layer_type(c), d, size))
                .collect(),
            subject: None,
            annotations: None,
        };
        let bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
        let fetched = FetchedManifest::verified(
            bytes.into(),
            Some(manifest_type),
            None,
            "synthesised manifest",
        )?;
        Ok((fetched, blobs))
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// `blobs/sha256/<hex>` names its digest.
fn content_addressed(path: &str) -> Option<Digest> {
    let p = normalise(path);
    let rest = p.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// Strip `./`, collapse `a/../b` and `//`; archives use `/` separators.
fn normalise(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    out.join("/")
}

#[async_trait]
impl ImageSource for DockerArchiveSource {
    fn describe(&self) -> String {
        self.label.clone()
    }

    async fn root(&self) -> Result<FetchedManifest, Error> {
        Ok(self.manifest.clone())
    }

    async fn manifest(&self, digest: &Digest) -> Result<FetchedManifest, Error> {
        self.manifests
            .lock()
            .expect("manifest map")
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("manifest {digest} is not in {}", self.label)))
    }

    async fn blob(&self, digest: &Digest) -> Result<BlobStream, Error> {
        let r = self.range_of(digest)?;
        let file = open_at(&self.index.file, r.offset).await?;
        Ok(BlobStream::verified(
            file_stream(file, r.size),
            digest.clone(),
            Some(r.size),
        ))
    }

    async fn blob_from(&self, digest: &Digest, offset: u64) -> Result<BlobStream, Error> {
        let r = self.range_of(digest)?;
        if offset > r.size {
            return Err(Error::Invalid(format!(
                "blob {digest} has {} bytes, cannot start at {offset}",
                r.size
            )));
        }
        let file = open_at(&self.index.file, r.offset + offset).await?;
        Ok(BlobStream::unverified(
            file_stream(file, r.size - offset),
            Some(r.size - offset),
        ))
    }

    async fn tags(&self) -> Result<Vec<String>, Error> {
        let img = &self.index.images[self.chosen];
        let Some(first) = img.repo_tags.iter().flatten().next() else {
            return Ok(Vec::new());
        };
        let repo = Self::repo_of(first);
        let mut tags: Vec<String> = self
            .index
            .all_tags()
            .into_iter()
            .filter(|t| Self::repo_of(t) == repo)
            .filter_map(|t| t.rsplit_once(':').map(|(_, tag)| tag.to_string()))
            .collect();
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    async fn tagged(&self, tag: &str) -> Result<FetchedManifest, Error> {
        let img = &self.index.images[self.chosen];
        let repo = img
            .repo_tags
            .iter()
            .flatten()
            .next()
            .map(|t| Self::repo_of(t).to_string())
            .ok_or_else(|| Error::NotFound(format!("{} has no tags", self.label)))?;
        let index = self.index.clone();
        let sel = format!("{repo}:{tag}");
        let (manifest, blobs) = tokio::task::spawn_blocking(move || {
            let i = index.choose(Some(&sel))?;
            index.synthesise(i)
        })
        .await
        .map_err(|e| Error::Invalid(format!("archive read failed: {e}")))??;
        self.blobs.lock().expect("blob map").extend(blobs);
        self.manifests
            .lock()
            .expect("manifest map")
            .insert(manifest.digest.clone(), manifest.clone());
        Ok(manifest)
    }
}

async fn open_at(path: &Path, offset: u64) -> Result<tokio::fs::File, Error> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(path.display().to_string(), e))?;
    f.seek(SeekFrom::Start(offset))
        .await
        .map_err(|e| Error::io(path.display().to_string(), e))?;
    Ok(f)
}

impl oci::BlobSource for DockerArchiveSource {
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>> {
        let r = self.range_of(digest).map_err(std::io::Error::other)?;
        Ok(Box::new(
            self.index.open_range(r).map_err(std::io::Error::other)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_paths() {
        assert_eq!(normalise("./a//b/../c"), "a/c");
        assert_eq!(normalise("/blobs/sha256/x"), "blobs/sha256/x");
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            content_addressed(&format!("./blobs/sha256/{hex}"))
                .unwrap()
                .hex(),
            hex
        );
        assert!(content_addressed(&format!("{hex}.tar")).is_none());
    }
}
