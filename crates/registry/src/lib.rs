//! The drydock registry: the OCI Distribution API (v1.1) over the
//! [`storage`] crate, plus an in-process API with exactly the same
//! validation, used by import and by the assessment service.
//!
//! Public API:
//! - [`Registry::open`] with [`Options`]; [`Registry::router`] serves
//!   `/v2/…`, `/healthz`, `/readyz` and `/metrics` (merge other routers in).
//! - In-process: [`Registry::put_blob`], [`Registry::has_blob`],
//!   [`Registry::link_blob`], [`Registry::put_manifest`],
//!   [`Registry::get_manifest`], [`Registry::blob_source`], listings, and
//!   the pull/push records.
//! - [`EventSink`]s receive an [`Event`] synchronously after each committed
//!   manifest push, manifest delete or tag delete.
//! - [`gc()`] removes what nothing references (see its docs for the
//!   protocol that makes it safe while pushes continue).
//!
//! Invariants:
//! - A blob is visible only after it was streamed to a temporary file,
//!   verified against its digest, fsynced and renamed into place.
//! - A manifest is stored only if it parses, its digest matches, and every
//!   blob and child manifest it references is present in the repository
//!   with the size (and media type) the manifest states; the check and the
//!   insert are one transaction, and tags move in that same transaction.
//! - A bad request changes nothing: failed uploads roll their session back
//!   to where it was.

mod error;
mod gc;
mod http;
mod metrics;
mod upload;

pub use error::{ErrorCode, RegistryError};
pub use gc::{GcOptions, GcReport, gc};

use bytes::Bytes;
use futures::Stream;
use oci::{Algorithm, Digest, Digester, Manifest, ManifestError, Name, Reference, Tag};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use storage::{BlobDriver, PutManifestError, Store};
use time::OffsetDateTime;
use tokio::io::AsyncRead;

/// Registry options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Data directory (blobs, uploads, metadata database).
    pub data_dir: PathBuf,
    /// Upload sessions idle for longer than this are removed.
    pub upload_expiry: Duration,
    /// Largest manifest accepted (the spec suggests at least 4 MiB).
    pub max_manifest_size: usize,
    /// How often the pull record is written to the database.
    pub pull_flush_interval: Duration,
    /// Bytes of manifests kept in the in-memory cache.
    pub manifest_cache_bytes: usize,
}

impl Options {
    /// Defaults for a data directory: 24 h upload expiry, 4 MiB manifests,
    /// pulls flushed every second, 64 MiB manifest cache.
    pub fn new(data_dir: impl Into<PathBuf>) -> Options {
        Options {
            data_dir: data_dir.into(),
            upload_expiry: Duration::from_secs(24 * 3600),
            max_manifest_size: 4 << 20,
            pull_flush_interval: Duration::from_secs(1),
            manifest_cache_bytes: 64 << 20,
        }
    }
}

/// Where a manifest came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Pushed by a client over the Distribution API.
    Push,
    /// Imported by drydock itself.
    Import,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Push => "push",
            Origin::Import => "import",
        }
    }
}

/// A committed change.
#[derive(Debug, Clone)]
pub enum Event {
    ManifestPushed {
        repo: Name,
        digest: Digest,
        media_type: String,
        tag: Option<Tag>,
        origin: Origin,
        at: OffsetDateTime,
    },
    ManifestDeleted {
        repo: Name,
        digest: Digest,
    },
    TagDeleted {
        repo: Name,
        tag: Tag,
    },
}

/// Receives events synchronously after each committed change. Must be
/// quick (hand the work to a queue).
pub trait EventSink: Send + Sync + 'static {
    fn on_event(&self, event: &Event);
}

/// A stored manifest.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
    /// The `subject` digest, if the manifest has one.
    pub subject: Option<Digest>,
}

/// A manifest's summary, for listings.
#[derive(Debug, Clone)]
pub struct ManifestInfo {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub pushed_at: OffsetDateTime,
    pub tags: Vec<Tag>,
}

/// The registry. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    opts: Options,
    sinks: RwLock<Vec<Arc<dyn EventSink>>>,
    cache: ManifestCache,
    sessions: Mutex<HashMap<uuid::Uuid, Arc<tokio::sync::Mutex<SessionState>>>>,
    pulls: Mutex<HashMap<(String, Digest), (i64, u64)>>,
    metrics: metrics::Metrics,
}

/// In-memory state of an upload session: the sha256 state over the bytes
/// received so far (lost on restart; then the file is rehashed at the end).
#[derive(Default)]
struct SessionState {
    hashed: Option<(u64, Digester)>,
}

struct ManifestCache {
    map: RwLock<CacheMap>,
    checked: Mutex<(Instant, i64)>,
    max_bytes: usize,
}

#[derive(Default)]
struct CacheMap {
    entries: HashMap<(String, String), Arc<StoredManifest>>,
    bytes: usize,
}

impl ManifestCache {
    fn get(&self, repo: &str, reference: &str) -> Option<Arc<StoredManifest>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        // Avoid allocating a key: the map is small; look up by tuple of Strings.
        map.entries
            .get(&(repo.to_string(), reference.to_string()))
            .cloned()
    }
    fn put(&self, repo: &str, reference: &str, m: Arc<StoredManifest>) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let size = m.bytes.len() + repo.len() + reference.len() + 128;
        if size > self.max_bytes / 16 {
            return;
        }
        if map.bytes + size > self.max_bytes {
            map.entries.clear();
            map.bytes = 0;
        }
        if map
            .entries
            .insert((repo.to_string(), reference.to_string()), m)
            .is_none()
        {
            map.bytes += size;
        }
    }
    fn clear(&self) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.entries.clear();
        map.bytes = 0;
    }
}

fn nanos(t: OffsetDateTime) -> i64 {
    t.unix_timestamp_nanos() as i64
}

fn from_nanos(n: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(n as i128).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(RegistryError::internal)?
}

impl Registry {
    /// Open the registry on a data directory: creates directories and the
    /// database, removes temporary files left by a crash and expired
    /// uploads, and starts the background work (pull record flushing,
    /// upload expiry, storage accounting).
    pub fn open(opts: Options) -> Result<Registry, RegistryError> {
        let store = Store::open(&opts.data_dir).map_err(RegistryError::internal)?;
        let removed = store.recover()?;
        if removed > 0 {
            tracing::info!(removed, "removed temporary files left by a previous run");
        }
        let expired = store.uploads.expire(opts.upload_expiry)?;
        if !expired.is_empty() {
            tracing::info!(expired = expired.len(), "removed expired upload sessions");
        }
        let metrics = metrics::Metrics::new();
        metrics
            .uploads_in_progress
            .set(store.uploads.list()?.len() as i64);
        let version = store.meta.data_version()?;
        let inner = Arc::new(Inner {
            cache: ManifestCache {
                map: RwLock::new(CacheMap::default()),
                checked: Mutex::new((Instant::now(), version)),
                max_bytes: opts.manifest_cache_bytes,
            },
            store,
            opts,
            sinks: RwLock::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            pulls: Mutex::new(HashMap::new()),
            metrics,
        });
        // Storage accounting: one walk at startup, then kept up to date.
        {
            let weak = Arc::downgrade(&inner);
            let blobs = inner.store.blobs.clone();
            std::thread::Builder::new()
                .name("drydock-usage".into())
                .spawn(move || {
                    let (mut n, mut bytes) = (0i64, 0i64);
                    let _ = blobs.walk(&mut |_, size, _| {
                        n += 1;
                        bytes += size as i64;
                    });
                    if let Some(inner) = weak.upgrade() {
                        inner.metrics.storage_blobs.add(n);
                        inner.metrics.storage_bytes.add(bytes);
                    }
                })
                .map_err(RegistryError::internal)?;
        }
        spawn_housekeeping(Arc::downgrade(&inner))?;
        Ok(Registry { inner })
    }

    /// The options the registry was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// Subscribe to events.
    pub fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.inner
            .sinks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(sink);
    }

    fn emit(&self, event: Event) {
        let sinks = self.inner.sinks.read().unwrap_or_else(|p| p.into_inner());
        for s in sinks.iter() {
            s.on_event(&event);
        }
    }

    /// Write the pending pull record to the database now.
    pub fn flush(&self) {
        self.inner.flush_pulls();
    }

    // ---- blobs ----------------------------------------------------------

    /// Stream a blob in, verify it against `expected`, commit it and link
    /// it to `repo`. Returns its size.
    pub async fn put_blob(
        &self,
        repo: &Name,
        expected: &Digest,
        body: impl AsyncRead + Unpin + Send,
    ) -> Result<u64, RegistryError> {
        let stream = tokio_util::io::ReaderStream::with_capacity(body, 1 << 20);
        self.ingest_blob(repo, expected, stream, None).await
    }

    /// The one code path for monolithic blob uploads.
    pub(crate) async fn ingest_blob<S, E>(
        &self,
        repo: &Name,
        expected: &Digest,
        body: S,
        expected_len: Option<u64>,
    ) -> Result<u64, RegistryError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let blobs = self.inner.store.blobs.clone();
        let (path, file) = blocking(move || Ok(blobs.temp_file()?)).await?;
        let out = storage::ingest(
            body,
            file,
            Digester::new(expected.algorithm()),
            expected_len,
        )
        .await;
        self.inner.metrics.bytes_in.inc_by(out.written);
        let check = (|| {
            out.result.map_err(ingest_error)?;
            if let Some(l) = expected_len
                && out.written != l
            {
                return Err(RegistryError::new(
                    ErrorCode::SizeInvalid,
                    format!("received {} bytes, Content-Length said {l}", out.written),
                ));
            }
            let got = out.digester.finish();
            if &got != expected {
                return Err(RegistryError::new(
                    ErrorCode::DigestInvalid,
                    format!("content hashes to {got}, not {expected}"),
                ));
            }
            Ok(())
        })();
        drop(out.file);
        if let Err(e) = check {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let size = out.written;
        let this = self.clone();
        let (repo, digest) = (repo.clone(), expected.clone());
        blocking(move || {
            let r = this.commit_and_link(&path, &repo, &digest, size);
            if r.is_err() {
                let _ = std::fs::remove_file(&path);
            }
            r
        })
        .await?;
        Ok(size)
    }

    /// Commit a verified file into the store and link it (blocking).
    fn commit_and_link(
        &self,
        path: &std::path::Path,
        repo: &Name,
        digest: &Digest,
        size: u64,
    ) -> Result<(), RegistryError> {
        let store = &self.inner.store;
        let _lock = store.gc_lock_shared()?;
        if store.blobs.commit(path, digest)? {
            self.inner.metrics.storage_blobs.inc();
            self.inner.metrics.storage_bytes.add(size as i64);
        }
        store.meta.link_blob(
            repo.as_str(),
            digest,
            size,
            nanos(OffsetDateTime::now_utc()),
        )?;
        Ok(())
    }

    /// Whether a blob is present: linked to `repo`, or (with `None`)
    /// anywhere in the store.
    pub fn has_blob(&self, repo: Option<&Name>, digest: &Digest) -> bool {
        match repo {
            Some(r) => self.blob_size(r, digest).ok().flatten().is_some(),
            None => matches!(self.inner.store.blobs.stat(digest), Ok(Some(_))),
        }
    }

    /// The size of a blob linked to `repo` and present on disk.
    pub(crate) fn blob_size(
        &self,
        repo: &Name,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        if self
            .inner
            .store
            .meta
            .blob_link(repo.as_str(), digest)?
            .is_none()
        {
            return Ok(None);
        }
        Ok(self.inner.store.blobs.stat(digest)?)
    }

    /// Link a blob already in the store to `repo` (cross-repository mount).
    pub fn link_blob(&self, repo: &Name, digest: &Digest) -> Result<(), RegistryError> {
        let store = &self.inner.store;
        let _lock = store.gc_lock_shared()?;
        let size = store
            .blobs
            .stat(digest)?
            .ok_or_else(|| RegistryError::blob_unknown(digest))?;
        store.meta.link_blob(
            repo.as_str(),
            digest,
            size,
            nanos(OffsetDateTime::now_utc()),
        )?;
        Ok(())
    }

    /// Remove a blob from a repository (the bytes go at the next GC).
    pub fn delete_blob(&self, repo: &Name, digest: &Digest) -> Result<(), RegistryError> {
        if self.inner.store.meta.unlink_blob(repo.as_str(), digest)? {
            Ok(())
        } else {
            Err(RegistryError::blob_unknown(digest))
        }
    }

    /// Open a stored blob for reading from `offset`.
    pub(crate) fn open_blob(
        &self,
        digest: &Digest,
        offset: u64,
    ) -> std::io::Result<storage::BlobReader> {
        self.inner.store.blobs.open(digest, offset)
    }

    /// Synchronous readers over stored blobs.
    pub fn blob_source(&self) -> Arc<dyn oci::BlobSource> {
        Arc::new(storage::DriverSource(self.inner.store.blobs.clone()))
    }

    // ---- manifests ------------------------------------------------------

    /// Validate and store a manifest under `reference` (a tag, or the
    /// digest it must hash to). Returns its digest.
    pub async fn put_manifest(
        &self,
        repo: &Name,
        reference: &Reference,
        body: Bytes,
        content_type: Option<&str>,
        origin: Origin,
    ) -> Result<Digest, RegistryError> {
        self.put_manifest_tags(repo, reference, &[], body, content_type, origin)
            .await
            .map(|(d, _)| d)
    }

    /// [`Registry::put_manifest`] with extra tags (`?tag=` on a push by
    /// digest). Returns the digest and the subject, if any.
    pub(crate) async fn put_manifest_tags(
        &self,
        repo: &Name,
        reference: &Reference,
        extra_tags: &[Tag],
        body: Bytes,
        content_type: Option<&str>,
        origin: Origin,
    ) -> Result<(Digest, Option<Digest>), RegistryError> {
        if body.len() > self.inner.opts.max_manifest_size {
            return Err(RegistryError::new(
                ErrorCode::SizeInvalid,
                format!(
                    "manifest is {} bytes, the limit is {}",
                    body.len(),
                    self.inner.opts.max_manifest_size
                ),
            )
            .with_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE));
        }
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => Algorithm::Sha256,
        };
        let mut h = Digester::new(algorithm);
        h.update(&body);
        let digest = h.finish();
        if let Reference::Digest(d) = reference
            && d != &digest
        {
            return Err(RegistryError::new(
                ErrorCode::DigestInvalid,
                format!("manifest hashes to {digest}, not {d}"),
            ));
        }
        let manifest = Manifest::parse(&body, content_type).map_err(|e| match e {
            ManifestError::Schema1 => RegistryError::new(
                ErrorCode::ManifestInvalid,
                "Docker schema 1 manifests are not supported; push a schema 2 or OCI manifest",
            ),
            e => RegistryError::new(ErrorCode::ManifestInvalid, e.to_string()),
        })?;
        let blobs: Vec<(Digest, u64)> = manifest
            .blobs()
            .into_iter()
            .filter(|d| d.urls.as_ref().is_none_or(|u| u.is_empty()))
            .map(|d| (d.digest.clone(), d.size))
            .collect();
        let children: Vec<(Digest, u64, String)> = manifest
            .children()
            .iter()
            .map(|d| (d.digest.clone(), d.size, d.media_type.clone()))
            .collect();
        let subject = manifest.subject().map(|s| s.digest.clone());
        let annotations = manifest
            .annotations()
            .filter(|a| !a.is_empty())
            .map(|a| serde_json::to_string(a).unwrap_or_default());
        let mut tags: Vec<String> = extra_tags.iter().map(|t| t.to_string()).collect();
        let tag = match reference {
            Reference::Tag(t) => {
                tags.insert(0, t.to_string());
                Some(t.clone())
            }
            Reference::Digest(_) => extra_tags.first().cloned(),
        };
        let at = OffsetDateTime::now_utc();
        let media_type = manifest.media_type().to_string();
        let artifact_type = manifest.artifact_type().map(str::to_string);
        let this = self.clone();
        let (repo2, digest2, subject2) = (repo.clone(), digest.clone(), subject.clone());
        let body2 = body.clone();
        let media_type2 = media_type.clone();
        blocking(move || {
            let new = storage::NewManifest {
                repo: repo2.as_str(),
                digest: &digest2,
                media_type: &media_type2,
                body: &body2,
                subject: subject2.as_ref(),
                artifact_type: artifact_type.as_deref(),
                annotations,
                blobs,
                children,
                tags,
                origin: origin.as_str(),
                at: nanos(at),
            };
            this.inner
                .store
                .meta
                .put_manifest(&new)
                .map_err(|e| match e {
                    PutManifestError::BlobUnknown(d) => RegistryError::new(
                        ErrorCode::ManifestBlobUnknown,
                        format!("blob {d} is not in repository {repo2}; push it first"),
                    ),
                    PutManifestError::BlobSize {
                        digest,
                        expected,
                        actual,
                    } => RegistryError::new(
                        ErrorCode::ManifestInvalid,
                        format!("blob {digest} is {actual} bytes, the manifest says {expected}"),
                    ),
                    PutManifestError::ChildUnknown(d) => RegistryError::new(
                        ErrorCode::ManifestBlobUnknown,
                        format!("manifest {d} is not in repository {repo2}; push it first"),
                    ),
                    PutManifestError::ChildMismatch { digest, why } => RegistryError::new(
                        ErrorCode::ManifestInvalid,
                        format!("manifest {digest}: {why}"),
                    ),
                    PutManifestError::Db(e) => RegistryError::internal(e),
                })
        })
        .await?;
        self.inner.metrics.bytes_in.inc_by(body.len() as u64);
        self.inner.cache.clear();
        self.emit(Event::ManifestPushed {
            repo: repo.clone(),
            digest: digest.clone(),
            media_type,
            tag,
            origin,
            at,
        });
        Ok((digest, subject))
    }

    /// A manifest by tag or digest.
    pub async fn get_manifest(
        &self,
        repo: &Name,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, RegistryError> {
        Ok(self
            .get_manifest_cached(repo, reference)?
            .map(|m| (*m).clone()))
    }

    pub(crate) fn get_manifest_cached(
        &self,
        repo: &Name,
        reference: &Reference,
    ) -> Result<Option<Arc<StoredManifest>>, RegistryError> {
        self.check_cache()?;
        let key = reference.to_string();
        if let Some(m) = self.inner.cache.get(repo.as_str(), &key) {
            return Ok(Some(m));
        }
        let meta = &self.inner.store.meta;
        let row = match reference {
            Reference::Tag(t) => meta.manifest_by_tag(repo.as_str(), t.as_str())?,
            Reference::Digest(d) => meta.manifest(repo.as_str(), d)?,
        };
        let Some(row) = row else { return Ok(None) };
        let m = Arc::new(StoredManifest {
            bytes: Bytes::from(row.body),
            media_type: row.media_type,
            digest: row.digest,
            subject: row.subject.and_then(|s| Digest::parse(&s).ok()),
        });
        self.inner.cache.put(repo.as_str(), &key, m.clone());
        Ok(Some(m))
    }

    /// Drop the cache when another process (GC) changed the database;
    /// checked at most once a second.
    fn check_cache(&self) -> Result<(), RegistryError> {
        let mut checked = self
            .inner
            .cache
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if checked.0.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        let v = self.inner.store.meta.data_version()?;
        if v != checked.1 {
            self.inner.cache.clear();
        }
        *checked = (Instant::now(), v);
        Ok(())
    }

    /// Delete a manifest (by digest) and the tags pointing at it.
    pub fn delete_manifest(&self, repo: &Name, digest: &Digest) -> Result<(), RegistryError> {
        let tags = self
            .inner
            .store
            .meta
            .delete_manifest(repo.as_str(), digest)?
            .ok_or_else(|| RegistryError::manifest_unknown(digest))?;
        self.inner.cache.clear();
        for t in tags {
            if let Ok(tag) = Tag::parse(&t) {
                self.emit(Event::TagDeleted {
                    repo: repo.clone(),
                    tag,
                });
            }
        }
        self.emit(Event::ManifestDeleted {
            repo: repo.clone(),
            digest: digest.clone(),
        });
        Ok(())
    }

    /// Delete a tag (the manifest stays).
    pub fn delete_tag(&self, repo: &Name, tag: &Tag) -> Result<(), RegistryError> {
        if !self
            .inner
            .store
            .meta
            .delete_tag(repo.as_str(), tag.as_str())?
        {
            return Err(RegistryError::manifest_unknown(tag));
        }
        self.inner.cache.clear();
        self.emit(Event::TagDeleted {
            repo: repo.clone(),
            tag: tag.clone(),
        });
        Ok(())
    }

    /// Record a manifest pull (batched; written within a second).
    pub(crate) fn record_pull(&self, repo: &Name, digest: &Digest) {
        let now = nanos(OffsetDateTime::now_utc());
        let mut p = self.inner.pulls.lock().unwrap_or_else(|p| p.into_inner());
        let e = p
            .entry((repo.as_str().to_string(), digest.clone()))
            .or_insert((now, 0));
        e.0 = now;
        e.1 += 1;
    }

    // ---- listings -------------------------------------------------------

    /// All repositories, in lexical order.
    pub fn repositories(&self) -> Vec<Name> {
        self.inner
            .store
            .meta
            .repositories(None, None)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| Name::parse(&n).ok())
            .collect()
    }

    /// A repository's tags, in lexical order.
    pub fn tags(&self, repo: &Name) -> Vec<(Tag, Digest)> {
        self.inner
            .store
            .meta
            .tags(repo.as_str(), None, None)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(t, d)| Tag::parse(&t).ok().map(|t| (t, d)))
            .collect()
    }

    /// A repository's manifests, newest first.
    pub fn manifests(&self, repo: &Name) -> Vec<ManifestInfo> {
        self.inner
            .store
            .meta
            .manifests(repo.as_str())
            .unwrap_or_default()
            .into_iter()
            .map(|m| ManifestInfo {
                digest: m.digest,
                media_type: m.media_type,
                size: m.size,
                pushed_at: from_nanos(m.pushed_at),
                tags: m.tags.iter().filter_map(|t| Tag::parse(t).ok()).collect(),
            })
            .collect()
    }

    /// Manifests pulled since `since`, with the last pull time.
    pub fn recent_pulls(&self, since: OffsetDateTime) -> Vec<(Name, Digest, OffsetDateTime)> {
        self.inner.flush_pulls();
        self.inner
            .store
            .meta
            .recent_pulls(nanos(since))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(r, d, t)| Name::parse(&r).ok().map(|r| (r, d, from_nanos(t))))
            .collect()
    }

    /// Manifests pushed (or imported) since `since`.
    pub fn recent_pushes(&self, since: OffsetDateTime) -> Vec<(Name, Digest, OffsetDateTime)> {
        self.inner
            .store
            .meta
            .recent_pushes(nanos(since))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(r, d, t)| Name::parse(&r).ok().map(|r| (r, d, from_nanos(t))))
            .collect()
    }
}

fn ingest_error(e: storage::IngestError) -> RegistryError {
    match e {
        storage::IngestError::Body(m) => RegistryError::new(ErrorCode::BlobUploadInvalid, m),
        storage::IngestError::TooLarge(l) => RegistryError::new(
            ErrorCode::SizeInvalid,
            format!("more than the {l} bytes announced"),
        ),
        storage::IngestError::Io(e) => RegistryError::internal(e),
    }
}

impl Inner {
    fn flush_pulls(&self) {
        let batch: Vec<(String, Digest, i64, u64)> = {
            let mut p = self.pulls.lock().unwrap_or_else(|p| p.into_inner());
            p.drain().map(|((r, d), (t, n))| (r, d, t, n)).collect()
        };
        if batch.is_empty() {
            return;
        }
        let n: u64 = batch.iter().map(|b| b.3).sum();
        match self.store.meta.record_pulls(&batch) {
            Ok(()) => self.metrics.pulls_recorded.inc_by(n),
            Err(e) => tracing::warn!("cannot record pulls: {e}"),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush_pulls();
    }
}

/// Background work: flush the pull record, expire idle uploads. Holds only
/// a weak reference, so it ends when the registry is dropped.
fn spawn_housekeeping(weak: Weak<Inner>) -> Result<(), RegistryError> {
    std::thread::Builder::new()
        .name("drydock-housekeeping".into())
        .spawn(move || {
            let mut last_expiry = Instant::now();
            loop {
                let interval = match weak.upgrade() {
                    Some(inner) => inner.opts.pull_flush_interval,
                    None => return,
                };
                std::thread::sleep(interval.min(Duration::from_secs(1)));
                let Some(inner) = weak.upgrade() else { return };
                inner.flush_pulls();
                let every = (inner.opts.upload_expiry / 4)
                    .clamp(Duration::from_millis(100), Duration::from_secs(60));
                if last_expiry.elapsed() >= every {
                    last_expiry = Instant::now();
                    expire_uploads(&inner);
                }
            }
        })
        .map_err(RegistryError::internal)?;
    Ok(())
}

fn expire_uploads(inner: &Inner) {
    let Ok(list) = inner.store.uploads.list() else {
        return;
    };
    let now = std::time::SystemTime::now();
    for info in list {
        let idle = now.duration_since(info.updated).unwrap_or_default();
        if idle <= inner.opts.upload_expiry {
            continue;
        }
        // Skip sessions busy right now.
        let state = {
            let sessions = inner.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.get(&info.id).cloned()
        };
        let _guard = match &state {
            Some(s) => match s.try_lock() {
                Ok(g) => Some(g),
                Err(_) => continue,
            },
            None => None,
        };
        if inner.store.uploads.remove(&info.id).unwrap_or(false) {
            inner.metrics.uploads_in_progress.dec();
            tracing::info!(upload = %info.id, repo = %info.repo, "expired idle upload");
        }
        inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&info.id);
    }
}
