//! The drydock registry: the OCI Distribution API (v1.1) over the
//! [`storage`] crate, plus an in-process API with exactly the same
//! validation, used by import and by the assessment service.
//!
//! Public API:
//! - [`Registry::open`] with [`Options`]; [`Registry::routes`] serves
//!   `/v2/…`, `/healthz`, `/readyz` and `/metrics`; the server merges other
//!   routers in and puts [`Registry::observe_layer`] (metrics, one log line
//!   per request) over the whole; [`Registry::router`] is both in one.
//! - Every `/v2` response carries a [`RouteInfo`] extension (route,
//!   repository, reference) for the edge's audit log.
//! - In-process: [`Registry::put_blob`], [`Registry::has_blob`],
//!   [`Registry::link_blob`], [`Registry::put_manifest`],
//!   [`Registry::get_manifest`], [`Registry::blob_source`], listings, and
//!   the pull/push records.
//! - [`EventSink`]s receive an [`Event`] synchronously after each committed
//!   manifest push, manifest delete or tag delete.
//! - A [`PullGate`] set with [`Registry::set_pull_gate`] may refuse a
//!   manifest read (GET or HEAD) of an image with 403 `DENIED` after the
//!   reference resolved; artifacts, manifests with a `subject` and blobs
//!   are never asked about.
//! - [`gc()`] removes what nothing references (see its docs for the
//!   protocol that makes it safe while pushes continue).
//!
//! Invariants:
//! - Every `/v2` route checks an action on a repository before it reads a
//!   body or changes anything: the caller's [`auth::Principal`] (put into
//!   the request by the edge layer; none means unrestricted) must
//!   [`may`](auth::Principal::may) `pull` (manifest and blob reads, tags,
//!   referrers), `push` (manifest pushes, uploads) or `delete` it. A blob
//!   is served only through a repository it is linked to; a mount needs
//!   pull on its source; the catalog lists only what the caller may pull;
//!   an upload session answers only the identity that started it. The
//!   registry knows no users or tokens beyond `Principal` and
//!   [`auth::Challenge`].
//! - A blob is visible only after it was streamed to a temporary file,
//!   verified against its digest, fsynced and renamed into place.
//! - A manifest is stored only if it parses, its digest matches, and every
//!   blob and child manifest it references is present in the repository
//!   with the size (and media type) the manifest states; the check and the
//!   insert are one transaction, and tags move in that same transaction.
//! - A bad request changes nothing: failed uploads roll their session back
//!   to where it was.

mod blobs;
mod error;
mod gc;
mod housekeeping;
mod http;
mod listings;
mod manifest_cache;
mod manifests;
mod metrics;
mod upload;

pub use error::{ErrorCode, RegistryError};
pub use gc::{GcOptions, GcReport, gc, gc_store, gc_store_keeping, gc_stores, gc_with};
pub use http::{ObserveFn, ObserveLayer, observe};
pub use storage::{BlobStorage, Duty, Leadership, Meta, MetadataStorage, PgConfig, S3Config};

use housekeeping::spawn_housekeeping;
use manifest_cache::ManifestCache;
pub use manifest_cache::ManifestCacheStats;

use bytes::Bytes;
use oci::{Digest, Name, Tag};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use storage::{Store, block_on};
use time::OffsetDateTime;

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
    /// `/readyz` reports not ready when the data directory's filesystem
    /// has less free space than this. `None`: 1 GiB or 1% of the
    /// filesystem, whichever is smaller.
    pub min_free_bytes: Option<u64>,
    /// Where blobs and upload sessions live (the data directory unless
    /// S3 is configured).
    pub blobs: storage::BlobStorage,
    /// Where the metadata lives (`<data>/meta.db` unless PostgreSQL is
    /// configured).
    pub metadata: storage::MetadataStorage,
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
            min_free_bytes: None,
            blobs: storage::BlobStorage::Filesystem,
            metadata: storage::MetadataStorage::Sqlite,
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
    /// A blob new to the store was committed (uploaded, not mounted). No
    /// manifest needs to name it yet: subscribers may start reading it
    /// while the client is still uploading the rest of the image.
    BlobPushed {
        repo: Name,
        digest: Digest,
        size: u64,
    },
    ManifestPushed {
        repo: Name,
        digest: Digest,
        media_type: String,
        /// Every tag the push pointed at the manifest: the reference's
        /// tag, then each `?tag=` (OCI distribution 1.1); empty for a push
        /// by digest alone.
        tags: Vec<Tag>,
        origin: Origin,
        /// Who pushed it over the Distribution API (`Unrestricted` with
        /// access control off); `None` for drydock's own writes (imports,
        /// attached SBOMs). The assessor records it as the author of a
        /// VEX referrer and judges it against `assess.vex.trusted`.
        pusher: Option<auth::Identity>,
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

/// Watches blob uploads as their bytes arrive (the assessor catalogs
/// layers from the stream). Called from the request path: it must never
/// block, and may decline any upload.
pub trait BlobObserver: Send + Sync + 'static {
    /// An upload session (or a monolithic upload) receives its first
    /// bytes. `None` declines to watch it.
    fn upload_started(&self, repo: &Name) -> Option<Box<dyn UploadWatch>>;
}

/// One upload being watched. The registry feeds it every byte in order;
/// dropping it without [`UploadWatch::committed`] means the upload was
/// abandoned (digest mismatch, cancel, bad chunk, expiry, or bytes the
/// watch did not see): whatever it derived from the bytes must go.
pub trait UploadWatch: Send + 'static {
    /// The next bytes of the blob. Must not block. `false`: the watch
    /// takes no more bytes (say, its buffer is full because its reader is
    /// slower than the client); the upload goes on at full speed unwatched,
    /// and the watch is still told how it ends.
    fn chunk(&mut self, bytes: &Bytes) -> bool;
    /// The bytes fed hash to `digest`, which is now committed. Called
    /// before [`Event::BlobPushed`] is raised for it.
    fn committed(self: Box<Self>, digest: &Digest, size: u64);
}

/// Decides whether an image may be pulled (the assessor's quarantine).
/// Called on every manifest GET and HEAD of an image manifest or index
/// without a `subject`, after the reference resolved to `digest`: it must
/// answer from memory (no database query per pull).
pub trait PullGate: Send + Sync + 'static {
    /// `None` serves the manifest; a refusal answers 403 `DENIED` with its
    /// message unless the caller is exempt.
    fn check(&self, repo: &Name, digest: &Digest, media_type: &str) -> Option<PullRefusal>;
}

/// Why a pull is refused, and who may pull all the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRefusal {
    /// A short label for the metrics (`unhealthy`, `incomplete`,
    /// `not_assessed`, …): `drydock_pull_gate_refusals_total{reason}`.
    pub reason: String,
    /// Names the rule and where to see the findings; sent to the client.
    pub message: String,
    /// Identities exempt from the rule: `user:NAME` or `robot:NAME`
    /// (`robot$NAME` too). Callers with `admin` on the repository are
    /// always exempt.
    pub bypass: Vec<String>,
}

/// What a `/v2` request was about: a response extension on every `/v2`
/// response, so the edge can audit pushes, deletes and pulls per
/// repository without parsing paths again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// `base`, `catalog`, `tags`, `manifest`, `blob`, `upload`,
    /// `referrers`, or `other` (no such endpoint). Also the metrics label.
    pub route: &'static str,
    /// The repository named in the path, as sent.
    pub repo: Option<String>,
    /// The path's last segment: tag or digest (manifests), digest (blobs,
    /// referrers), session id (uploads).
    pub reference: Option<String>,
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
    /// Set once at startup; unset means every pull is served.
    pull_gate: OnceLock<Arc<dyn PullGate>>,
    /// Set once at startup; unset means uploads are not watched.
    blob_observer: OnceLock<Arc<dyn BlobObserver>>,
    /// The database's data version when the GC journal was last read, and
    /// the journal position (see `housekeeping.rs`); `None` until read.
    external: Mutex<Option<(i64, i64)>>,
}

/// Serialises this process's requests on one upload session (the
/// session's state itself is saved by the blob driver), and keeps the
/// session's [`UploadWatch`] between its requests.
#[derive(Default)]
struct SessionState {
    /// The watch, parked between requests: see `upload::WatchSlot`.
    watch: Option<crate::upload::Parked>,
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
        let store = Store::open(&opts.data_dir, &opts.blobs, &opts.metadata)
            .map_err(RegistryError::internal)?;
        tracing::info!(blobs = %store.blobs.describe(), metadata = %store.meta.describe(), "storage");
        let removed = store.recover()?;
        if removed > 0 {
            tracing::info!(removed, "removed temporary files left by a previous run");
        }
        let mut open_uploads = 0i64;
        let mut expired = 0usize;
        let now = std::time::SystemTime::now();
        for info in block_on(store.blobs.list_uploads())? {
            let idle = now.duration_since(info.updated).unwrap_or_default();
            if idle > opts.upload_expiry
                && housekeeping::expire_if_idle(&store, &info.id, opts.upload_expiry)
            {
                expired += 1;
            } else {
                open_uploads += 1;
            }
        }
        if expired > 0 {
            tracing::info!(expired, "removed expired upload sessions");
        }
        let metrics = metrics::Metrics::new();
        metrics.uploads_in_progress.set(open_uploads);
        let version = block_on(store.meta.change_version())?;
        let inner = Arc::new(Inner {
            cache: ManifestCache::new(version, opts.manifest_cache_bytes),
            store,
            opts,
            sinks: RwLock::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            pulls: Mutex::new(HashMap::new()),
            metrics,
            pull_gate: OnceLock::new(),
            blob_observer: OnceLock::new(),
            external: Mutex::new(None),
        });
        // Storage accounting: one walk at startup, then kept up to date.
        {
            let weak = Arc::downgrade(&inner);
            let blobs = inner.store.blobs.clone();
            std::thread::Builder::new()
                .name("drydock-usage".into())
                .spawn(move || {
                    let (mut n, mut bytes) = (0i64, 0i64);
                    let _ = block_on(blobs.list(&mut |_, st| {
                        n += 1;
                        bytes += st.size as i64;
                    }));
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

    /// The metadata store, for state kept beside the registry's that
    /// every node must see (import jobs).
    pub fn meta(&self) -> &Arc<dyn storage::Meta> {
        &self.inner.store.meta
    }

    /// Subscribe to events.
    pub fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.inner
            .sinks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(sink);
    }

    /// Gate manifest reads (see [`PullGate`]). Only the first gate set is
    /// used: returns false if one was set already.
    pub fn set_pull_gate(&self, gate: Arc<dyn PullGate>) -> bool {
        self.inner.pull_gate.set(gate).is_ok()
    }

    /// Watch uploads as they stream in (see [`BlobObserver`]). Only the
    /// first observer set is used: returns false if one was set already.
    pub fn set_blob_observer(&self, observer: Arc<dyn BlobObserver>) -> bool {
        self.inner.blob_observer.set(observer).is_ok()
    }

    /// Serve `metrics` (another component's, such as the assessor's) in
    /// this registry's `/metrics` beside its own, so a scrape sees one
    /// registry. A collector with the same metric names as an earlier one
    /// replaces it: an assessor restarted on a running registry brings
    /// new counters, and the old ones must not be served (nor refuse it).
    pub fn register_metrics(
        &self,
        metrics: Vec<Box<dyn prometheus::core::Collector>>,
    ) -> Result<(), prometheus::Error> {
        let registry = &self.inner.metrics.registry;
        for m in metrics {
            let m = metrics::SharedCollector::new(m);
            // Unregistering goes by the metrics' descriptions, so the new
            // collector names the old one; none registered is not an error.
            let _ = registry.unregister(Box::new(m.clone()));
            registry.register(Box::new(m))?;
        }
        Ok(())
    }

    /// A watch for an upload starting now, if an observer wants it.
    pub(crate) fn watch_upload(&self, repo: &Name) -> Option<Box<dyn UploadWatch>> {
        let watch = self.inner.blob_observer.get()?.upload_started(repo);
        if watch.is_none() {
            self.inner
                .metrics
                .streamed_uploads
                .with_label_values(&["declined"])
                .inc();
        }
        watch
    }

    pub(crate) fn pull_gate(&self) -> Option<&Arc<dyn PullGate>> {
        self.inner.pull_gate.get()
    }

    pub(crate) fn emit(&self, event: Event) {
        let sinks = self.inner.sinks.read().unwrap_or_else(|p| p.into_inner());
        for s in sinks.iter() {
            s.on_event(&event);
        }
    }

    /// Write the pending pull record to the database now.
    pub fn flush(&self) {
        self.inner.flush_pulls();
    }
}
