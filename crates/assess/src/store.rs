//! The assessor's own SQLite database (`<data>/assess.db`, WAL): the queue
//! with per-digest status, stored inventories, the layer cache, results and
//! the previous assessment's keys, tag history, exemptions, webhooks and
//! their delivery log, notification dedup and usage. Times are stored as
//! milliseconds since the Unix epoch in the assessor's clock.

use crate::policy::{Exemption, finding_key};
use crate::ports::RawLayerCache;
use crate::vuln::{Finding, Severity};
use anyhow::{Context, Result};
use inventory::Inventory;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
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

/// A stored assessment result.
#[derive(Debug, Clone)]
pub struct ResultRow {
    pub db_version: Option<String>,
    pub assessed_at: i64,
    pub findings: Vec<Finding>,
    pub prev_db_version: Option<String>,
    pub prev_assessed_at: Option<i64>,
    /// Keys of the previous assessment; `None` with a `prev_assessed_at`
    /// means "same as now".
    pub prev_keys: Option<Vec<String>>,
}

/// A registered webhook.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    #[serde(skip)]
    pub secret: String,
    /// Repository glob; absent means the whole registry.
    pub repository: Option<String>,
    /// Only findings at or above this severity are reported (default: the policy threshold).
    pub min_severity: Option<String>,
    pub created_at: i64,
}

/// One entry of the delivery log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    pub digest: Option<String>,
    pub repository: Option<String>,
    /// `pending`, `delivered` or `failed` (gave up).
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    #[serde(skip)]
    pub payload: String,
}

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        webhook_id: r.get(1)?,
        event: r.get(2)?,
        digest: r.get(3)?,
        repository: r.get(4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        last_status: r.get(7)?,
        last_error: r.get(8)?,
        created_at: r.get(9)?,
        next_attempt_at: r.get(10)?,
        delivered_at: r.get(11)?,
        payload: r.get(12)?,
    })
}
const DELIVERY_COLS: &str = "id, webhook_id, event, digest, repo, state, attempts, last_status, last_error, created_at, next_attempt_at, delivered_at, payload";

/// Distinct images first assessed in one month, for one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageRow {
    pub repository: String,
    /// `YYYY-MM`.
    pub month: String,
    pub images: u64,
}

/// The database. One connection behind a mutex: every statement is short,
/// and batch writes go in one transaction.
pub struct Store {
    conn: Mutex<Connection>,
}

fn hash_bytes(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
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
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn c(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- queue ----

    /// Enqueue `digest` from `repo`. Deduplicates by digest: a digest that
    /// is queued or in progress stays as it is; a failed one is retried; a
    /// done or unsupported one is not assessed again (its content cannot
    /// have changed). Returns whether a job is now waiting that was not.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &self,
        repo: &str,
        digest: &str,
        media_type: &str,
        parent: Option<&str>,
        platform: Option<&str>,
        now: i64,
        pushed: bool,
    ) -> Result<bool> {
        let c = self.c();
        let pushed_at = pushed.then_some(now);
        let changed = c.execute(
            "INSERT INTO images(digest, repo, media_type, parent, platform, status, queued_at, last_pushed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7)
             ON CONFLICT(digest) DO UPDATE SET
               last_pushed_at = COALESCE(excluded.last_pushed_at, images.last_pushed_at),
               parent = COALESCE(images.parent, excluded.parent),
               platform = COALESCE(images.platform, excluded.platform),
               status = CASE WHEN images.status = 'failed' THEN 'queued' ELSE images.status END,
               error = CASE WHEN images.status = 'failed' THEN NULL ELSE images.error END,
               queued_at = CASE WHEN images.status = 'failed' THEN excluded.queued_at ELSE images.queued_at END",
            params![digest, repo, media_type, parent, platform, now, pushed_at],
        )?;
        let _ = changed;
        c.execute(
            "INSERT OR IGNORE INTO image_repos(repo, digest) VALUES (?1, ?2)",
            params![repo, digest],
        )?;
        let st: String = c.query_row(
            "SELECT status FROM images WHERE digest = ?1",
            [digest],
            |r| r.get(0),
        )?;
        Ok(st == status::QUEUED)
    }

    pub fn record_tag(&self, repo: &str, tag: &str, digest: &str, at: i64) -> Result<()> {
        let c = self.c();
        let last: Option<String> = c
            .query_row(
                "SELECT digest FROM tag_history WHERE repo = ?1 AND tag = ?2 ORDER BY id DESC LIMIT 1",
                params![repo, tag],
                |r| r.get(0),
            )
            .optional()?;
        if last.as_deref() != Some(digest) {
            c.execute(
                "INSERT INTO tag_history(repo, tag, digest, at) VALUES (?1, ?2, ?3, ?4)",
                params![repo, tag, digest, at],
            )?;
        }
        Ok(())
    }

    /// For each (repo, tag) that pointed at `digest`, the digest it pointed
    /// at just before.
    pub fn previous_tag_digests(&self, digest: &str) -> Result<Vec<(String, String, String)>> {
        let c = self.c();
        let mut st = c.prepare(
            "SELECT h.repo, h.tag, (SELECT p.digest FROM tag_history p
                 WHERE p.repo = h.repo AND p.tag = h.tag AND p.id < h.id AND p.digest != h.digest
                 ORDER BY p.id DESC LIMIT 1)
             FROM tag_history h WHERE h.digest = ?1 AND h.id = (SELECT MAX(id) FROM tag_history x WHERE x.repo = h.repo AND x.tag = h.tag AND x.digest = h.digest)",
        )?;
        let rows = st
            .query_map([digest], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?
            .filter_map(|r| r.ok())
            .filter_map(|(a, b, p)| p.map(|p| (a, b, p)))
            .collect();
        Ok(rows)
    }

    /// Claim the oldest queued job, marking it `cataloging`.
    pub fn claim(&self, now: i64) -> Result<Option<ImageRow>> {
        let c = self.c();
        let sql = format!(
            "UPDATE images SET status = 'cataloging', started_at = ?1, attempts = attempts + 1
             WHERE digest = (SELECT digest FROM images WHERE status = 'queued' ORDER BY queued_at, rowid LIMIT 1)
             RETURNING {IMAGE_COLS}"
        );
        Ok(c.query_row(&sql, [now], image_row).optional()?)
    }

    pub fn set_status(&self, digest: &str, st: &str, error: Option<&str>, now: i64) -> Result<()> {
        let finished =
            matches!(st, status::DONE | status::FAILED | status::UNSUPPORTED).then_some(now);
        self.c().execute(
            "UPDATE images SET status = ?2, error = ?3, finished_at = COALESCE(?4, finished_at) WHERE digest = ?1",
            params![digest, st, error, finished],
        )?;
        Ok(())
    }

    pub fn set_shape(
        &self,
        digest: &str,
        kind: &str,
        layers: &[String],
        children: &[String],
    ) -> Result<()> {
        self.c().execute(
            "UPDATE images SET kind = ?2, layers = ?3, children = ?4 WHERE digest = ?1",
            params![
                digest,
                kind,
                serde_json::to_string(layers)?,
                serde_json::to_string(children)?
            ],
        )?;
        Ok(())
    }

    /// After a crash: jobs that were in progress go back to the queue.
    pub fn requeue_interrupted(&self) -> Result<usize> {
        Ok(self.c().execute(
            "UPDATE images SET status = 'queued' WHERE status IN ('cataloging', 'matching')",
            [],
        )?)
    }

    pub fn known_digests(&self) -> Result<HashSet<String>> {
        let c = self.c();
        let mut st = c.prepare("SELECT digest FROM images")?;
        let v = st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    pub fn image(&self, digest: &str) -> Result<Option<ImageRow>> {
        let c = self.c();
        Ok(c.query_row(
            &format!("SELECT {IMAGE_COLS} FROM images WHERE digest = ?1"),
            [digest],
            image_row,
        )
        .optional()?)
    }

    /// Images matching a WHERE clause fragment (internal use only).
    fn images_where(&self, clause: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<ImageRow>> {
        let c = self.c();
        let mut st = c.prepare(&format!("SELECT {IMAGE_COLS} FROM images {clause}"))?;
        let v = st
            .query_map(p, image_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    pub fn children(&self, index: &str) -> Result<Vec<ImageRow>> {
        self.images_where("WHERE parent = ?1 ORDER BY platform", &[&index])
    }

    pub fn all_images(&self) -> Result<Vec<ImageRow>> {
        self.images_where("ORDER BY queued_at DESC", &[])
    }

    pub fn images_in_repo(&self, repo: &str) -> Result<Vec<ImageRow>> {
        self.images_where(
            "WHERE digest IN (SELECT digest FROM image_repos WHERE repo = ?1) ORDER BY queued_at DESC",
            &[&repo],
        )
    }

    pub fn repos_of(&self, digest: &str) -> Result<Vec<String>> {
        let c = self.c();
        let mut st = c.prepare("SELECT repo FROM image_repos WHERE digest = ?1 ORDER BY repo")?;
        let v = st
            .query_map([digest], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// Jobs not finished, oldest first, and counts per status.
    #[allow(clippy::type_complexity)]
    pub fn queue(&self) -> Result<(Vec<ImageRow>, Vec<(String, i64)>)> {
        let pending = self.images_where(
            "WHERE status IN ('queued', 'cataloging', 'matching') ORDER BY queued_at LIMIT 1000",
            &[],
        )?;
        let c = self.c();
        let mut st =
            c.prepare("SELECT status, COUNT(*) FROM images GROUP BY status ORDER BY status")?;
        let counts = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok((pending, counts))
    }

    /// A manifest was deleted from `repo`; forget it when no repository
    /// holds it any more (usage is kept).
    pub fn forget(&self, repo: &str, digest: &str) -> Result<()> {
        let mut c = self.c();
        let tx = c.transaction()?;
        tx.execute(
            "DELETE FROM image_repos WHERE repo = ?1 AND digest = ?2",
            params![repo, digest],
        )?;
        let left: i64 = tx.query_row(
            "SELECT COUNT(*) FROM image_repos WHERE digest = ?1",
            [digest],
            |r| r.get(0),
        )?;
        if left == 0 {
            for t in ["images", "results", "inventories"] {
                tx.execute(&format!("DELETE FROM {t} WHERE digest = ?1"), [digest])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Record pulls (assessor time). Pulling an index counts for its children.
    pub fn record_pulls(&self, pulls: &[(String, i64)]) -> Result<()> {
        let mut c = self.c();
        let tx = c.transaction()?;
        for (digest, at) in pulls {
            tx.execute(
                "UPDATE images SET last_pulled_at = MAX(COALESCE(last_pulled_at, 0), ?2) WHERE digest = ?1 OR parent = ?1",
                params![digest, at],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Drop every cached layer inventory (benchmarks measure cold catalogs).
    pub fn clear_layer_cache(&self) -> Result<()> {
        self.c().execute("DELETE FROM layer_cache", [])?;
        Ok(())
    }

    // ---- inventories ----

    pub fn put_inventory(&self, digest: &str, version: u32, inv: &Inventory) -> Result<()> {
        let data = serde_json::to_vec(inv)?;
        self.c().execute(
            "INSERT OR REPLACE INTO inventories(digest, catalog_version, data) VALUES (?1, ?2, ?3)",
            params![digest, version, data],
        )?;
        Ok(())
    }

    pub fn inventory(&self, digest: &str) -> Result<Option<(u32, Inventory)>> {
        let row: Option<(u32, Vec<u8>)> = self
            .c()
            .query_row(
                "SELECT catalog_version, data FROM inventories WHERE digest = ?1",
                [digest],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            None => Ok(None),
            Some((v, data)) => Ok(Some((v, serde_json::from_slice(&data)?))),
        }
    }

    // ---- results ----

    /// Store an assessment. When the findings are unchanged only the
    /// version and time move (cheap for mass re-matching). Returns the
    /// previous findings' keys when there was a previous assessment.
    pub fn save_result(
        &self,
        digest: &str,
        db_version: Option<&str>,
        at: i64,
        findings: &[Finding],
    ) -> Result<()> {
        let enc = EncodedFindings::new(findings)?;
        let mut c = self.c();
        let tx = c.transaction()?;
        save_result_tx(&tx, digest, db_version, at, &enc)?;
        tx.commit()?;
        Ok(())
    }

    /// Many results (findings already encoded) in one transaction.
    pub fn save_encoded(
        &self,
        batch: &[(String, Option<String>, i64, EncodedFindings)],
    ) -> Result<()> {
        let mut c = self.c();
        let tx = c.transaction()?;
        for (digest, v, at, enc) in batch {
            save_result_tx(&tx, digest, v.as_deref(), *at, enc)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The stored inventory's bytes (JSON), without parsing.
    pub fn inventory_raw(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .c()
            .query_row(
                "SELECT data FROM inventories WHERE digest = ?1",
                [digest],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn result(&self, digest: &str) -> Result<Option<ResultRow>> {
        #[allow(clippy::type_complexity)]
        let row: Option<(Option<String>, i64, Vec<u8>, Option<String>, Option<i64>, Option<String>)> = self
            .c()
            .query_row(
                "SELECT db_version, assessed_at, findings, prev_db_version, prev_assessed_at, prev_keys FROM results WHERE digest = ?1",
                [digest],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()?;
        let Some((db_version, assessed_at, data, prev_db_version, prev_assessed_at, prev_keys)) =
            row
        else {
            return Ok(None);
        };
        Ok(Some(ResultRow {
            db_version,
            assessed_at,
            findings: serde_json::from_slice(&data)?,
            prev_db_version,
            prev_assessed_at,
            prev_keys: prev_keys.and_then(|s| serde_json::from_str(&s).ok()),
        }))
    }

    /// Digests to re-match: finished images (not indexes or artifacts)
    /// pushed or pulled since `window_start` whose result is older than
    /// `older_than` or from another database version, plus any finished
    /// image never matched against a database.
    pub fn rematch_candidates(
        &self,
        window_start: i64,
        db_version: &str,
        older_than: i64,
    ) -> Result<Vec<String>> {
        let c = self.c();
        let mut st = c.prepare(
            "SELECT i.digest FROM images i JOIN results r ON r.digest = i.digest
             WHERE i.status = 'done' AND i.kind = 'image' AND (
               r.db_version IS NULL OR (
                 (COALESCE(i.last_pushed_at, 0) >= ?1 OR COALESCE(i.last_pulled_at, 0) >= ?1)
                 AND (r.db_version != ?2 OR r.assessed_at < ?3)))",
        )?;
        let v = st
            .query_map(params![window_start, db_version, older_than], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    // ---- meta ----

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .c()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.c().execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }

    // ---- exemptions ----

    pub fn add_exemption(&self, e: &Exemption) -> Result<()> {
        self.c().execute(
            "INSERT INTO exemptions(id, data, created_at) VALUES (?1, ?2, ?3)",
            params![
                e.id,
                serde_json::to_string(e)?,
                crate::clock::to_ms(e.created_at)
            ],
        )?;
        Ok(())
    }

    pub fn exemptions(&self) -> Result<Vec<Exemption>> {
        let c = self.c();
        let mut st = c.prepare("SELECT data FROM exemptions ORDER BY created_at, id")?;
        let rows: Vec<String> = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect())
    }

    pub fn delete_exemption(&self, id: &str) -> Result<bool> {
        Ok(self
            .c()
            .execute("DELETE FROM exemptions WHERE id = ?1", [id])?
            > 0)
    }

    // ---- webhooks and deliveries ----

    pub fn add_webhook(&self, w: &Webhook) -> Result<()> {
        self.c().execute(
            "INSERT INTO webhooks(id, url, secret, repository, min_severity, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![w.id, w.url, w.secret, w.repository, w.min_severity, w.created_at],
        )?;
        Ok(())
    }

    pub fn webhooks(&self) -> Result<Vec<Webhook>> {
        let c = self.c();
        let mut st = c.prepare(
            "SELECT id, url, secret, repository, min_severity, created_at FROM webhooks ORDER BY created_at, id",
        )?;
        let v = st
            .query_map([], |r| {
                Ok(Webhook {
                    id: r.get(0)?,
                    url: r.get(1)?,
                    secret: r.get(2)?,
                    repository: r.get(3)?,
                    min_severity: r.get(4)?,
                    created_at: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    pub fn delete_webhook(&self, id: &str) -> Result<bool> {
        let c = self.c();
        c.execute(
            "UPDATE deliveries SET state = 'failed', last_error = 'webhook deleted' WHERE webhook_id = ?1 AND state = 'pending'",
            [id],
        )?;
        Ok(c.execute("DELETE FROM webhooks WHERE id = ?1", [id])? > 0)
    }

    pub fn add_delivery(&self, d: &Delivery) -> Result<()> {
        self.c().execute(
            "INSERT INTO deliveries(id, webhook_id, event, digest, repo, payload, state, attempts, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8)",
            params![d.id, d.webhook_id, d.event, d.digest, d.repository, d.payload, d.created_at, d.next_attempt_at],
        )?;
        Ok(())
    }

    pub fn due_deliveries(&self, now: i64, limit: usize) -> Result<Vec<Delivery>> {
        let c = self.c();
        let mut st = c.prepare(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2"
        ))?;
        let v = st
            .query_map(params![now, limit as i64], delivery_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    pub fn next_delivery_at(&self) -> Result<Option<i64>> {
        Ok(self.c().query_row(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Record one attempt. `next` is the time of the next attempt, or
    /// `None` when delivered or given up.
    pub fn delivery_attempted(
        &self,
        id: &str,
        delivered: bool,
        status: Option<u16>,
        error: Option<&str>,
        next: Option<i64>,
        now: i64,
    ) -> Result<()> {
        let state = if delivered {
            "delivered"
        } else if next.is_some() {
            "pending"
        } else {
            "failed"
        };
        self.c().execute(
            "UPDATE deliveries SET state = ?2, attempts = attempts + 1, last_status = ?3, last_error = ?4,
               next_attempt_at = COALESCE(?5, next_attempt_at), delivered_at = CASE WHEN ?6 THEN ?7 ELSE delivered_at END
             WHERE id = ?1",
            params![id, state, status.map(i64::from), error, next, delivered, now],
        )?;
        Ok(())
    }

    pub fn deliveries(&self, webhook_id: Option<&str>, limit: usize) -> Result<Vec<Delivery>> {
        let c = self.c();
        let mut st = c.prepare(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE (?1 IS NULL OR webhook_id = ?1) ORDER BY created_at DESC LIMIT ?2"
        ))?;
        let v = st
            .query_map(params![webhook_id, limit as i64], delivery_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    // ---- notification dedup ----

    pub fn notified_keys(&self, digest: &str) -> Result<HashSet<String>> {
        let c = self.c();
        let mut st = c.prepare("SELECT key FROM notified WHERE digest = ?1")?;
        let v = st
            .query_map([digest], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    pub fn mark_notified(&self, digest: &str, keys: &[String], at: i64) -> Result<()> {
        let mut c = self.c();
        let tx = c.transaction()?;
        for k in keys {
            tx.execute(
                "INSERT OR IGNORE INTO notified(digest, key, at) VALUES (?1, ?2, ?3)",
                params![digest, k, at],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    // ---- usage ----

    /// Count `digest` in the month of `at` unless it was counted before.
    pub fn count_usage(&self, digest: &str, repo: &str, at: time::OffsetDateTime) -> Result<bool> {
        let month = format!("{:04}-{:02}", at.year(), u8::from(at.month()));
        Ok(self.c().execute(
            "INSERT OR IGNORE INTO usage(digest, repo, month, first_assessed_at) VALUES (?1, ?2, ?3, ?4)",
            params![digest, repo, month, crate::clock::to_ms(at)],
        )? > 0)
    }

    /// Counts per repository and month, months `from..=to` (`YYYY-MM`).
    pub fn usage(&self, from: &str, to: &str) -> Result<Vec<UsageRow>> {
        let c = self.c();
        let mut st = c.prepare(
            "SELECT repo, month, COUNT(*) FROM usage WHERE month >= ?1 AND month <= ?2 GROUP BY repo, month ORDER BY month, repo",
        )?;
        let v = st
            .query_map(params![from, to], |r| {
                Ok(UsageRow {
                    repository: r.get(0)?,
                    month: r.get(1)?,
                    images: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }
}

/// Findings serialized for storage, with their hash and sorted keys;
/// computed outside the store's lock (in parallel when re-matching).
pub struct EncodedFindings {
    pub data: Vec<u8>,
    pub hash: String,
    pub keys: String,
}

impl EncodedFindings {
    pub fn new(findings: &[Finding]) -> Result<EncodedFindings> {
        let data = serde_json::to_vec(findings)?;
        let hash = hash_bytes(&data);
        let mut keys: Vec<String> = findings.iter().map(finding_key).collect();
        keys.sort();
        keys.dedup();
        Ok(EncodedFindings {
            data,
            hash,
            keys: serde_json::to_string(&keys)?,
        })
    }
}

fn save_result_tx(
    tx: &rusqlite::Transaction<'_>,
    digest: &str,
    db_version: Option<&str>,
    at: i64,
    enc: &EncodedFindings,
) -> Result<()> {
    let old: Option<(String, Option<String>, i64, String)> = tx
        .query_row(
            "SELECT findings_hash, db_version, assessed_at, keys FROM results WHERE digest = ?1",
            [digest],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    match old {
        Some((old_hash, old_version, old_at, _)) if old_hash == enc.hash => {
            tx.execute(
                "UPDATE results SET db_version = ?2, assessed_at = ?3, prev_db_version = ?4, prev_assessed_at = ?5, prev_keys = NULL WHERE digest = ?1",
                params![digest, db_version, at, old_version, old_at],
            )?;
        }
        Some((_, old_version, old_at, old_keys)) => {
            tx.execute(
                "UPDATE results SET db_version = ?2, assessed_at = ?3, findings = ?4, findings_hash = ?5, keys = ?6,
                   prev_db_version = ?7, prev_assessed_at = ?8, prev_keys = ?9 WHERE digest = ?1",
                params![digest, db_version, at, enc.data, enc.hash, enc.keys, old_version, old_at, old_keys],
            )?;
        }
        None => {
            tx.execute(
                "INSERT INTO results(digest, db_version, assessed_at, findings, findings_hash, keys) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![digest, db_version, at, enc.data, enc.hash, enc.keys],
            )?;
        }
    }
    Ok(())
}

impl RawLayerCache for Store {
    fn get(&self, layer: &str, version: u32) -> Option<Vec<u8>> {
        self.c()
            .query_row(
                "SELECT data FROM layer_cache WHERE layer = ?1 AND version = ?2",
                params![layer, version],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten()
    }

    fn put(&self, layer: &str, version: u32, data: &[u8]) {
        let r = self.c().execute(
            "INSERT OR REPLACE INTO layer_cache(layer, version, data) VALUES (?1, ?2, ?3)",
            params![layer, version, data],
        );
        if let Err(e) = r {
            tracing::warn!(layer, error = %e, "cannot store layer inventory");
        }
    }
}

/// Severity from a stored string (webhook thresholds).
pub fn parse_severity(s: Option<&str>) -> Option<Severity> {
    s.and_then(Severity::parse)
}
