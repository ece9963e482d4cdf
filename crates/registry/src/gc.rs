//! Garbage collection: remove manifests and blobs that nothing references.
//!
//! Protocol (safe while the server keeps accepting pushes, in the same
//! process or another):
//! 1. Take the GC lock exclusively: on PostgreSQL a session advisory lock
//!    that every node honours, on SQLite the data directory's `gc.lock`.
//!    Committers (a blob made visible plus its repository link, a
//!    manifest stored) hold it shared, so no commit on any node
//!    interleaves with any step below, blob deletion included.
//! 2. In one metadata transaction ([`storage::Meta::gc_mark_and_sweep`],
//!    which serialises with manifest pushes and blob links: SQLite's write
//!    lock, or on PostgreSQL an advisory lock pushes hold shared):
//!    - live manifests: every tagged manifest, every manifest younger than
//!      the grace period, and, transitively, the children of live indexes
//!      and the referrers (`subject`) of live manifests, per repository;
//!    - delete the other manifests;
//!    - live blobs: those referenced by a live manifest in any repository;
//!    - delete repository links to blobs that are not live and were linked
//!      before the grace period.
//! 3. Delete blob files that are not live, no longer linked anywhere, not
//!    a published vulnerability database build ([`storage::Releases`]) and
//!    older than the grace period (a push in progress commits a fresh file
//!    or refreshes an existing one's time, so it is protected).
//! 4. Release the lock. The manifests removed are journaled in the same
//!    transaction (`manifests_removed`, kept a week); a running server
//!    notices the database changed and raises `Event::ManifestDeleted`
//!    for each (see `housekeeping.rs`).
//!
//! The grace period protects content pushed but not yet referenced: blobs
//! uploaded before their manifest, and children pushed before their index.

use crate::RegistryError;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use storage::{BlobStorage, GcParams, MetadataStorage, Store, block_on};

/// GC options.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would be removed without removing anything.
    pub dry_run: bool,
    /// Content younger than this is never removed.
    pub grace: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(3600),
        }
    }
}

/// What a GC run removed (or would remove, in a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub manifests_removed: u64,
    pub links_removed: u64,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    pub blobs_kept: u64,
    pub bytes_kept: u64,
}

/// Run a GC over a data directory whose blobs are on the filesystem.
pub async fn gc(data_dir: &Path, opts: GcOptions) -> Result<GcReport, RegistryError> {
    gc_with(data_dir, &BlobStorage::Filesystem, opts).await
}

/// Run a GC over a data directory with blobs where `blobs` says. On S3
/// the sweep lists the bucket and the grace period counts from each
/// object's modification time (a re-push rewrites the object).
pub async fn gc_with(
    data_dir: &Path,
    blobs: &BlobStorage,
    opts: GcOptions,
) -> Result<GcReport, RegistryError> {
    gc_stores(data_dir, blobs, &MetadataStorage::Sqlite, opts).await
}

/// Run a GC with blobs and metadata where the arguments say.
pub async fn gc_stores(
    data_dir: &Path,
    blobs: &BlobStorage,
    metadata: &MetadataStorage,
    opts: GcOptions,
) -> Result<GcReport, RegistryError> {
    let store = Arc::new(Store::open(data_dir, blobs, metadata).map_err(RegistryError::internal)?);
    let releases = storage::open_releases(data_dir, metadata).map_err(RegistryError::internal)?;
    gc_store_keeping(store, Some(releases), opts).await
}

/// Run a GC over an opened store that holds no published vulnerability
/// database builds (see [`gc_store_keeping`]).
pub async fn gc_store(store: Arc<Store>, opts: GcOptions) -> Result<GcReport, RegistryError> {
    gc_store_keeping(store, None, opts).await
}

/// Run a GC over an opened store, keeping the blobs of the vulnerability
/// database builds `releases` records (no manifest references them).
pub async fn gc_store_keeping(
    store: Arc<Store>,
    releases: Option<Arc<dyn storage::Releases>>,
    opts: GcOptions,
) -> Result<GcReport, RegistryError> {
    // Blocking all through: the file lock and the driver's listing need no
    // runtime of the caller's (see `storage::block_on`).
    tokio::task::spawn_blocking(move || gc_blocking(&store, releases.as_deref(), &opts))
        .await
        .map_err(RegistryError::internal)?
}

fn gc_blocking(
    store: &Store,
    releases: Option<&dyn storage::Releases>,
    opts: &GcOptions,
) -> Result<GcReport, RegistryError> {
    let _lock = store.gc_lock_exclusive()?;
    // Published database builds are live like manifests' blobs. Read
    // under the lock: a release's blob and row are written under it
    // shared, so none appears half-way through this run.
    let pinned: std::collections::HashSet<String> = match releases {
        Some(r) => block_on(r.releases())?
            .into_iter()
            .map(|r| r.digest.to_string())
            .collect(),
        None => Default::default(),
    };
    let now = SystemTime::now();
    let cutoff_time = now
        .checked_sub(opts.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let nanos = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i64
    };
    let week = Duration::from_secs(7 * 24 * 3600).as_nanos() as i64;
    let dry_run = opts.dry_run;
    // The journal of removed manifests is kept a week: a running server
    // reads it when it notices the metadata changed.
    let marked = block_on(store.meta.gc_mark_and_sweep(GcParams {
        cutoff: nanos(cutoff_time),
        now: nanos(now),
        prune_journal_before: nanos(now) - week,
        dry_run,
    }))?;
    let mut report = GcReport {
        manifests_removed: marked.manifests_removed,
        links_removed: marked.links_removed,
        ..GcReport::default()
    };

    let mut doomed = Vec::new();
    block_on(store.blobs.list(&mut |d, st| {
        let s = d.to_string();
        if marked.live_blobs.contains(&s)
            || marked.linked.contains(&s)
            || pinned.contains(&s)
            || st.modified >= cutoff_time
        {
            report.blobs_kept += 1;
            report.bytes_kept += st.size;
        } else {
            doomed.push((d, st.size));
        }
    }))?;
    for (d, size) in doomed {
        if dry_run || block_on(store.blobs.delete(&d))? {
            report.blobs_removed += 1;
            report.bytes_freed += size;
        }
    }
    tracing::info!(?report, dry_run, "gc finished");
    Ok(report)
}
