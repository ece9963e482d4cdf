//! The assessor's own SQLite database (`<data>/assess.db`, WAL): the queue
//! with per-digest status, stored inventories, the layer cache, results and
//! the previous assessment's keys, tag history, exemptions, webhooks and
//! their delivery log, notification dedup and usage. Times are stored as
//! milliseconds since the Unix epoch in the assessor's clock.

mod patches;
mod queue;
mod results;
mod retention;
mod usage;
mod vex;
mod webhooks;

pub use results::{EncodedFindings, PackageWindow, ResultRow, unpack};
pub use retention::{PruneBefore, Pruned};
pub use usage::UsageRow;
pub use vex::{SbomRow, VexRow};
pub use webhooks::{Delivery, Webhook};

use crate::vuln::Severity;
use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use utoipa::ToSchema;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS images(
  digest TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  media_type TEXT NOT NULL,
  kind TEXT NOT NULL DEFAULT 'unknown',
  parent TEXT,
  platform TEXT,
  status TEXT NOT NULL,
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  queued_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  last_pushed_at INTEGER,
  last_pulled_at INTEGER,
  layers TEXT,
  children TEXT
);
CREATE INDEX IF NOT EXISTS images_status ON images(status, queued_at);
CREATE INDEX IF NOT EXISTS images_parent ON images(parent);
CREATE TABLE IF NOT EXISTS image_repos(repo TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY(repo, digest));
CREATE INDEX IF NOT EXISTS image_repos_digest ON image_repos(digest);
CREATE TABLE IF NOT EXISTS tag_history(id INTEGER PRIMARY KEY AUTOINCREMENT, repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tag_history_digest ON tag_history(digest);
CREATE INDEX IF NOT EXISTS tag_history_tag ON tag_history(repo, tag, id);
CREATE TABLE IF NOT EXISTS inventories(digest TEXT PRIMARY KEY, catalog_version INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS layer_cache(layer TEXT NOT NULL, version INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(layer, version));
CREATE TABLE IF NOT EXISTS results(
  digest TEXT PRIMARY KEY,
  db_version TEXT,
  assessed_at INTEGER NOT NULL,
  findings BLOB NOT NULL,
  findings_hash TEXT NOT NULL,
  keys TEXT NOT NULL DEFAULT '[]',
  prev_db_version TEXT,
  prev_assessed_at INTEGER,
  prev_keys TEXT
);
CREATE TABLE IF NOT EXISTS exemptions(id TEXT PRIMARY KEY, data TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks(id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, repository TEXT, min_severity TEXT, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries(
  id TEXT PRIMARY KEY,
  webhook_id TEXT NOT NULL,
  event TEXT NOT NULL,
  digest TEXT,
  repo TEXT,
  payload TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  delivered_at INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_attempt_at);
CREATE TABLE IF NOT EXISTS notified(digest TEXT NOT NULL, key TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY(digest, key));
CREATE TABLE IF NOT EXISTS usage(digest TEXT PRIMARY KEY, repo TEXT NOT NULL, month TEXT NOT NULL, first_assessed_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS usage_month ON usage(month);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vex(key TEXT PRIMARY KEY, doc_id TEXT NOT NULL, subject TEXT, source TEXT NOT NULL, data TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sboms(subject TEXT PRIMARY KEY, repo TEXT NOT NULL, digest TEXT NOT NULL, catalog_version INTEGER NOT NULL, created_at INTEGER NOT NULL);
"#;

/// Per-digest status in the queue.
pub mod status {
    pub const QUEUED: &str = "queued";
    pub const CATALOGING: &str = "cataloging";
    pub const MATCHING: &str = "matching";
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
    pub const UNSUPPORTED: &str = "unsupported";
}

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

const IMAGE_COLS: &str = "digest, repo, media_type, kind, parent, platform, status, error, attempts, queued_at, started_at, finished_at, last_pushed_at, last_pulled_at, layers, children";

fn image_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRow> {
    let layers: Option<String> = r.get(14)?;
    let children: Option<String> = r.get(15)?;
    Ok(ImageRow {
        digest: r.get(0)?,
        repo: r.get(1)?,
        media_type: r.get(2)?,
        kind: r.get(3)?,
        parent: r.get(4)?,
        platform: r.get(5)?,
        status: r.get(6)?,
        error: r.get(7)?,
        attempts: r.get(8)?,
        queued_at: r.get(9)?,
        started_at: r.get(10)?,
        finished_at: r.get(11)?,
        last_pushed_at: r.get(12)?,
        last_pulled_at: r.get(13)?,
        layers: layers
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
        children: children
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
    })
}

/// The database. One connection behind a mutex: every statement is short,
/// and batch writes go in one transaction.
pub struct Store {
    conn: Mutex<Connection>,
    /// Bumped after every statement that changed a row (see [`Conn`]), so
    /// caches of what the store says (the pull gate's verdicts) know when
    /// to look again without asking the database.
    generation: AtomicU64,
    /// Bumped after writes that may change a verdict (every write not
    /// made through [`Store::c_quiet`]): the dashboard's judging of every
    /// image, seconds at 10,000 images, is redone only when this moves,
    /// not on each recorded pull.
    verdicts: AtomicU64,
    /// The assessor's clock, for the times of rows written through the
    /// cataloger's cache port (which passes none); the system's until set.
    clock: std::sync::OnceLock<std::sync::Arc<dyn crate::clock::Clock>>,
}

/// The locked connection. On release, if anything was written through it
/// the store's generation moves on: a write path cannot forget to, and
/// the bump comes after the write, so a reader that sees the new
/// generation reads the new rows.
pub(crate) struct Conn<'a> {
    guard: MutexGuard<'a, Connection>,
    changes: u64,
    generation: &'a AtomicU64,
    /// `None`: the write cannot change a verdict.
    verdicts: Option<&'a AtomicU64>,
}

impl Deref for Conn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.guard
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.guard
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if self.guard.total_changes() != self.changes {
            if let Some(v) = self.verdicts {
                v.fetch_add(1, Ordering::Release);
            }
            self.generation.fetch_add(1, Ordering::Release);
        }
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let conn =
            Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        results::migrate(&conn)?;
        retention::migrate(&conn)?;
        patches::migrate(&conn)?;
        vex::migrate(&conn)?;
        queue::migrate(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            generation: AtomicU64::new(0),
            verdicts: AtomicU64::new(0),
            clock: std::sync::OnceLock::new(),
        })
    }

    fn c(&self) -> Conn<'_> {
        let mut c = self.c_quiet();
        c.verdicts = Some(&self.verdicts);
        c
    }

    /// The connection for writes that no verdict reads (pull times, tag
    /// history, usage, deliveries, caches): they move the generation but
    /// not [`Store::verdict_generation`]. Opt-in, so a new write path
    /// counts as verdict-relevant unless it says otherwise.
    fn c_quiet(&self) -> Conn<'_> {
        let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Conn {
            changes: guard.total_changes(),
            guard,
            generation: &self.generation,
            verdicts: None,
        }
    }

    /// Time rows by `clock` from now on (the service sets its own).
    pub fn set_clock(&self, clock: std::sync::Arc<dyn crate::clock::Clock>) {
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
    /// store changed in between. No lock, no query.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Moves on after every write that may change what an image is judged
    /// to be (results, statuses, images added or forgotten, exemptions,
    /// VEX, SBOMs); not after pulls, tag history, usage, deliveries, patch
    /// jobs, the layer cache or `meta`.
    pub fn verdict_generation(&self) -> u64 {
        self.verdicts.load(Ordering::Acquire)
    }

    // ---- meta ----

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .c()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        // Only the dashboard's trend lives here; no verdict reads it.
        self.c_quiet().execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }
}

/// The registry-wide layer cache: the cataloger's per-layer results, as
/// zstd-compressed JSON written and read like the stored inventories
/// ([`results::pack`] / [`results::unpack`]; rows from before compression
/// are plain JSON and still read).
impl catalog::LayerCache for Store {
    fn get(&self, layer: &oci::Digest, version: u32) -> Option<catalog::LayerInventory> {
        let key = layer.to_string();
        let data: Vec<u8> = self
            .c()
            .query_row(
                "SELECT data FROM layer_cache WHERE layer = ?1 AND version = ?2",
                params![key, version],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten()?;
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
        // Serialized straight into the compressor, outside the lock: the
        // JSON text of a large layer (50,000 packages: ~15 MB) is never
        // held whole.
        let data = match results::pack(inv) {
            Ok(z) => z,
            Err(e) => {
                tracing::warn!(%layer, error = %e, "cannot compress a layer inventory");
                return;
            }
        };
        let at = self.now_ms();
        // Verdicts come from stored results, not from this cache.
        let r = self.c_quiet().execute(
            "INSERT OR REPLACE INTO layer_cache(layer, version, data, at) VALUES (?1, ?2, ?3, ?4)",
            params![layer.to_string(), version, data, at],
        );
        if let Err(e) = r {
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

        store.put(&digest, v, &inv);
        let stored: Vec<u8> = store
            .c()
            .query_row("SELECT data FROM layer_cache", [], |r| r.get(0))
            .unwrap();
        assert!(!stored.starts_with(b"{"), "stored compressed");
        assert_eq!(store.get(&digest, v), Some(inv.clone()));
        assert_eq!(store.get(&digest, v + 1), None, "another version is a miss");

        // A row from before compression: plain JSON, still read.
        store
            .c()
            .execute(
                "UPDATE layer_cache SET data = ?1",
                params![serde_json::to_vec(&inv).unwrap()],
            )
            .unwrap();
        assert_eq!(store.get(&digest, v), Some(inv));

        // Damaged: a miss (the layer is read again), not an error.
        store
            .c()
            .execute(
                "UPDATE layer_cache SET data = ?1",
                params![vec![0x28u8, 0xb5, 0x2f, 0xfd, 1, 2, 3]],
            )
            .unwrap();
        assert_eq!(store.get(&digest, v), None);
    }
}
