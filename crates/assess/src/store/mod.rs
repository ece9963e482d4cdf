//! The assessor's view of its state: [`Store`], the synchronous API the
//! service, the API and the binary call, over an
//! [`storage::assess::AssessState`] backend (SQLite, or PostgreSQL shared
//! by several nodes). Documents are packed here (zstd-compressed JSON:
//! findings, inventories, layer results) so backends store bytes; rows
//! the API shows are this crate's types, with their OpenAPI schemas.
//!
//! Each call drives the backend's future to completion on the calling
//! thread ([`storage::block_on`]); backends do their blocking work on
//! threads of their own, so callers on an async worker wait as they did
//! for the former single connection, and the service's heavy paths run
//! on `spawn_blocking`. Times are milliseconds since the Unix epoch in
//! the assessor's clock.

mod patches;
mod queue;
mod results;
mod retention;
mod usage;
mod vex;
mod webhooks;

pub use results::{EncodedFindings, PackageWindow, ResultRow, ResultStamp, unpack};
pub use retention::{PruneBefore, Pruned};
pub use storage::assess::status;
pub use usage::UsageRow;
pub use vex::{SbomRow, VexRow};
pub use webhooks::{Delivery, Webhook};

use crate::vuln::Severity;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use storage::assess::{AssessState, SqliteAssessState};
use utoipa::ToSchema;

/// One digest the assessor knows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImageRow {
    pub digest: String,
    /// Repository the assessment reads from (the first it was pushed to).
    pub repo: String,
    pub media_type: String,
    /// `image`, `index`, `artifact` or `unknown` (not yet looked at).
    pub kind: String,
    /// The index this platform manifest belongs to.
    pub parent: Option<String>,
    pub platform: Option<String>,
    pub status: String,
    pub error: Option<String>,
    pub attempts: i64,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub last_pushed_at: Option<i64>,
    pub last_pulled_at: Option<i64>,
    pub layers: Vec<String>,
    pub children: Vec<String>,
}

impl From<storage::assess::ImageRow> for ImageRow {
    fn from(r: storage::assess::ImageRow) -> Self {
        ImageRow {
            digest: r.digest,
            repo: r.repo,
            media_type: r.media_type,
            kind: r.kind,
            parent: r.parent,
            platform: r.platform,
            status: r.status,
            error: r.error,
            attempts: r.attempts,
            queued_at: r.queued_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            last_pushed_at: r.last_pushed_at,
            last_pulled_at: r.last_pulled_at,
            layers: r.layers,
            children: r.children,
        }
    }
}

/// The assessor's state. Cheap to clone (one backend behind).
#[derive(Clone)]
pub struct Store {
    state: Arc<dyn AssessState>,
    /// The assessor's clock, for the times of rows written through the
    /// cataloger's cache port (which passes none); the system's until set.
    clock: Arc<std::sync::OnceLock<Arc<dyn crate::clock::Clock>>>,
}

/// A generation never answered before (counting down from the top, far
/// from any backend's): a cache keyed by it looks again every time.
fn unknown_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);
    NEXT.fetch_sub(1, std::sync::atomic::Ordering::Relaxed)
}

/// Wait for a backend call (see the module doc).
fn wait<T>(f: impl std::future::Future<Output = storage::assess::Result<T>>) -> Result<T> {
    Ok(storage::block_on(f)?)
}

impl Store {
    /// The embedded backend: SQLite at `path` (created, or upgraded in
    /// place).
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store::new(Arc::new(SqliteAssessState::open(path)?)))
    }

    /// Where `metadata` says: `assess.db` in `data_dir`, or PostgreSQL.
    pub fn open_where(data_dir: &Path, metadata: &storage::MetadataStorage) -> Result<Store> {
        let state = storage::assess::open_state(data_dir, metadata, Default::default())?;
        Ok(Store::new(state))
    }

    /// Over any backend.
    pub fn new(state: Arc<dyn AssessState>) -> Store {
        Store {
            state,
            clock: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// The backend, for callers that await it directly.
    pub fn state(&self) -> &Arc<dyn AssessState> {
        &self.state
    }

    /// Time rows by `clock` from now on (the service sets its own).
    pub fn set_clock(&self, clock: Arc<dyn crate::clock::Clock>) {
        let _ = self.clock.set(clock);
    }

    pub(crate) fn now_ms(&self) -> i64 {
        let now = match self.clock.get() {
            Some(c) => c.now(),
            None => time::OffsetDateTime::now_utc(),
        };
        crate::clock::to_ms(now)
    }

    /// Moves on after every write: equal generations mean nothing in the
    /// store changed in between. A backend that cannot answer reads as a
    /// change (caches then look again), never as "unchanged".
    pub fn generation(&self) -> u64 {
        storage::block_on(self.state.generation()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the state's generation");
            unknown_generation()
        })
    }

    /// Moves on after every write that may change what an image is judged
    /// to be (results, statuses, images added or forgotten, exemptions,
    /// VEX, SBOMs); not after pulls, tag history, usage, deliveries, patch
    /// jobs, the layer cache or `meta`. Unanswerable: as for
    /// [`Store::generation`].
    pub fn verdict_generation(&self) -> u64 {
        storage::block_on(self.state.verdict_generation()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the state's verdict generation");
            unknown_generation()
        })
    }

    // ---- meta ----

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        wait(self.state.meta(key))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        wait(self.state.set_meta(key, value))
    }
}

/// The registry-wide layer cache: the cataloger's per-layer results,
/// packed like the stored inventories ([`results::pack`] /
/// [`results::unpack`]; rows from before compression are plain JSON and
/// still read).
impl catalog::LayerCache for Store {
    fn get(&self, layer: &oci::Digest, version: u32) -> Option<catalog::LayerInventory> {
        let data = match wait(self.state.layer_cache_get(&layer.to_string(), version)) {
            Ok(d) => d?,
            Err(e) => {
                tracing::warn!(%layer, error = %e, "cannot read the layer cache");
                return None;
            }
        };
        // Unreadable or no longer parsing: read the layer again, like a
        // missing one, rather than fail.
        match results::unpack(&data) {
            Ok(inv) => Some(inv),
            Err(e) => {
                tracing::warn!(%layer, error = %e, "cannot read a cached layer inventory");
                None
            }
        }
    }

    fn put(&self, layer: &oci::Digest, version: u32, inv: &catalog::LayerInventory) {
        // Serialized straight into the compressor: the JSON text of a
        // large layer (50,000 packages: ~15 MB) is never held whole.
        let data = match results::pack(inv) {
            Ok(z) => z,
            Err(e) => {
                tracing::warn!(%layer, error = %e, "cannot compress a layer inventory");
                return;
            }
        };
        let at = self.now_ms();
        if let Err(e) = wait(
            self.state
                .layer_cache_put(&layer.to_string(), version, data, at),
        ) {
            tracing::warn!(%layer, error = %e, "cannot store layer inventory");
        }
    }
}

/// Severity from a stored string (webhook thresholds).
pub fn parse_severity(s: Option<&str>) -> Option<Severity> {
    s.and_then(Severity::parse)
}

#[cfg(test)]
mod layer_cache_tests {
    use super::*;
    use catalog::LayerCache;

    fn empty_layer() -> (oci::Digest, catalog::LayerInventory) {
        // Two zero blocks: a tar archive with no entries.
        let tar = vec![0u8; 1024];
        let digest = oci::Digest::sha256_of(&tar);
        let limits = catalog::Limits {
            verify_digest: false,
            ..catalog::Limits::default()
        };
        let inv = catalog::catalog_layer(&tar[..], oci::LayerCompression::None, &digest, &limits)
            .unwrap();
        (digest, inv)
    }

    #[test]
    fn a_cached_layer_reads_back_compressed_plain_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("assess.db")).unwrap();
        let (digest, inv) = empty_layer();
        let v = inv.catalog_version;
        let raw = |s: &Store| wait(s.state.layer_cache_get(&digest.to_string(), v)).unwrap();

        store.put(&digest, v, &inv);
        assert!(!raw(&store).unwrap().starts_with(b"{"), "stored compressed");
        assert_eq!(store.get(&digest, v), Some(inv.clone()));
        assert_eq!(store.get(&digest, v + 1), None, "another version is a miss");

        // A row from before compression: plain JSON, still read.
        let put = |data: Vec<u8>| {
            wait(store.state.layer_cache_put(&digest.to_string(), v, data, 0)).unwrap()
        };
        put(serde_json::to_vec(&inv).unwrap());
        assert_eq!(store.get(&digest, v), Some(inv));

        // Damaged: a miss (the layer is read again), not an error.
        put(vec![0x28u8, 0xb5, 0x2f, 0xfd, 1, 2, 3]);
        assert_eq!(store.get(&digest, v), None);
    }
}
