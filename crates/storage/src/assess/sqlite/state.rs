//! [`AssessState`] on SQLite: each method one closure on a reader, or one
//! transaction on the writer.

use super::{SqliteAssessState, Verdicts};
use crate::assess::model::*;
use crate::assess::{AssessState, AssessStateError, Result};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

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
        // Lists are JSON text; an unreadable one reads as empty (the image
        // is then looked at again, not lost).
        layers: layers
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
        children: children
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
    })
}

fn images_where(
    c: &Connection,
    clause: &str,
    p: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<ImageRow>> {
    let mut st = c.prepare(&format!("SELECT {IMAGE_COLS} FROM images {clause}"))?;
    st.query_map(p, image_row)?.collect()
}

const DELIVERY_COLS: &str = "id, webhook_id, event, digest, repo, state, attempts, last_status, last_error, created_at, next_attempt_at, delivered_at, payload";

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

const VEX_COLS: &str = "key, doc_id, subject, source, data, created_at, recorded_by, not_applied";

fn vex_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VexRow> {
    let data: String = r.get(4)?;
    Ok(VexRow {
        key: r.get(0)?,
        doc_id: r.get(1)?,
        subject: r.get(2)?,
        source: r.get(3)?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        created_at: r.get(5)?,
        recorded_by: r.get(6)?,
        not_applied: r.get(7)?,
    })
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> rusqlite::Result<String> {
    serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Finished patch jobs kept; older ones go as new ones are written.
const KEEP_FINISHED_PATCH_JOBS: i64 = 1000;

fn save_result_tx(tx: &Transaction<'_>, r: &NewResult) -> rusqlite::Result<()> {
    let old: Option<(String, Option<String>, i64, String)> = tx
        .query_row(
            "SELECT findings_hash, db_version, assessed_at, keys FROM results WHERE digest = ?1",
            [&r.digest],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let enc = &r.findings;
    let keys = to_json(&enc.keys)?;
    match old {
        Some((old_hash, old_version, old_at, _)) if old_hash == enc.hash => {
            tx.execute(
                "UPDATE results SET db_version = ?2, assessed_at = ?3, prev_db_version = ?4, prev_assessed_at = ?5, prev_keys = NULL WHERE digest = ?1",
                params![r.digest, r.db_version, r.assessed_at, old_version, old_at],
            )?;
        }
        Some((_, old_version, old_at, old_keys)) => {
            tx.execute(
                "UPDATE results SET db_version = ?2, assessed_at = ?3, findings = ?4, findings_hash = ?5, keys = ?6,
                   prev_db_version = ?7, prev_assessed_at = ?8, prev_keys = ?9 WHERE digest = ?1",
                params![r.digest, r.db_version, r.assessed_at, enc.data, enc.hash, keys, old_version, old_at, old_keys],
            )?;
        }
        None => {
            tx.execute(
                "INSERT INTO results(digest, db_version, assessed_at, findings, findings_hash, keys) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![r.digest, r.db_version, r.assessed_at, enc.data, enc.hash, keys],
            )?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl AssessState for SqliteAssessState {
    async fn generation(&self) -> Result<u64> {
        Ok(self.db.generation.load(Ordering::Acquire))
    }

    async fn verdict_generation(&self) -> Result<u64> {
        Ok(self.db.verdicts.load(Ordering::Acquire))
    }

    async fn meta(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.read(move |c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        })
        .await
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(Verdicts::Keep, move |c| {
            c.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(drop)
        })
        .await
    }

    async fn enqueue(&self, j: Enqueue) -> Result<bool> {
        self.write(Verdicts::Move, move |c| {
            let pushed_at = j.pushed.then_some(j.now);
            // A failed job is retried. So is a finished artifact pushed
            // again by someone known: a VEX referrer is judged by its
            // pushers, and this one may be trusted where the first was not.
            let again = "images.status = 'failed' OR (excluded.pusher IS NOT NULL \
                         AND images.kind = 'artifact' AND images.status = 'unsupported')";
            c.execute(
                &format!(
                    "INSERT INTO images(digest, repo, media_type, parent, platform, status, queued_at, last_pushed_at, pusher)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8)
                 ON CONFLICT(digest) DO UPDATE SET
                   last_pushed_at = COALESCE(excluded.last_pushed_at, images.last_pushed_at),
                   pusher = COALESCE(excluded.pusher, images.pusher),
                   parent = COALESCE(images.parent, excluded.parent),
                   platform = COALESCE(images.platform, excluded.platform),
                   status = CASE WHEN {again} THEN 'queued' ELSE images.status END,
                   attempts = CASE WHEN {again} THEN 0 ELSE images.attempts END,
                   error = CASE WHEN {again} THEN NULL ELSE images.error END,
                   queued_at = CASE WHEN {again} THEN excluded.queued_at ELSE images.queued_at END"
                ),
                params![j.digest, j.repo, j.media_type, j.parent, j.platform, j.now, pushed_at, j.pusher],
            )?;
            c.execute(
                "INSERT OR IGNORE INTO image_repos(repo, digest) VALUES (?1, ?2)",
                params![j.repo, j.digest],
            )?;
            let st: String = c.query_row(
                "SELECT status FROM images WHERE digest = ?1",
                [&j.digest],
                |r| r.get(0),
            )?;
            Ok(st == status::QUEUED)
        })
        .await
    }

    async fn pusher(&self, digest: &str) -> Result<Option<String>> {
        let digest = digest.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT pusher FROM images WHERE digest = ?1",
                [digest],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
        })
        .await
    }

    async fn forget_pusher(&self, digest: &str) -> Result<()> {
        let digest = digest.to_owned();
        // No verdict reads the pusher once the job is done.
        self.write(Verdicts::Keep, move |c| {
            c.execute(
                "UPDATE images SET pusher = NULL WHERE digest = ?1 AND pusher IS NOT NULL",
                [digest],
            )
            .map(drop)
        })
        .await
    }

    async fn claim(&self, now: i64) -> Result<Option<ImageRow>> {
        self.write(Verdicts::Move, move |c| {
            c.query_row(
                &format!(
                    "UPDATE images SET status = 'cataloging', started_at = ?1, attempts = attempts + 1
                     WHERE digest = (SELECT digest FROM images WHERE status = 'queued' ORDER BY queued_at, rowid LIMIT 1)
                     RETURNING {IMAGE_COLS}"
                ),
                [now],
                image_row,
            )
            .optional()
        })
        .await
    }

    async fn give_up_exhausted(
        &self,
        max_attempts: u32,
        now: i64,
    ) -> Result<Vec<(String, String)>> {
        self.write(Verdicts::Move, move |c| {
            let mut st = c.prepare(
                "UPDATE images SET status = 'failed', finished_at = ?2,
                   error = 'gave up after ' || attempts || ' attempts: '
                           || COALESCE(error, 'the process stopped while assessing')
                 WHERE status = 'queued' AND attempts >= ?1
                 RETURNING digest, error",
            )?;
            st.query_map(params![max_attempts.max(1), now], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })
        .await
    }

    async fn set_status(
        &self,
        digest: &str,
        st: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let finished =
            matches!(st, status::DONE | status::FAILED | status::UNSUPPORTED).then_some(now);
        let (digest, st, error) = (digest.to_owned(), st.to_owned(), error.map(str::to_owned));
        self.write(Verdicts::Move, move |c| {
            c.execute(
                "UPDATE images SET status = ?2, error = ?3, finished_at = COALESCE(?4, finished_at) WHERE digest = ?1",
                params![digest, st, error, finished],
            )
            .map(drop)
        })
        .await
    }

    async fn set_shape(
        &self,
        digest: &str,
        kind: &str,
        layers: &[String],
        children: &[String],
    ) -> Result<()> {
        let (digest, kind) = (digest.to_owned(), kind.to_owned());
        let layers = serde_json::to_string(layers).map_err(backend)?;
        let children = serde_json::to_string(children).map_err(backend)?;
        self.write(Verdicts::Move, move |c| {
            c.execute(
                "UPDATE images SET kind = ?2, layers = ?3, children = ?4 WHERE digest = ?1",
                params![digest, kind, layers, children],
            )
            .map(drop)
        })
        .await
    }

    async fn set_platform_if_unknown(&self, digest: &str, platform: &str) -> Result<()> {
        let (digest, platform) = (digest.to_owned(), platform.to_owned());
        self.write(Verdicts::Move, move |c| {
            c.execute(
                "UPDATE images SET platform = ?2 WHERE digest = ?1 AND platform IS NULL",
                params![digest, platform],
            )
            .map(drop)
        })
        .await
    }

    async fn requeue_interrupted(&self) -> Result<usize> {
        self.write(Verdicts::Move, |c| {
            c.execute(
                "UPDATE images SET status = 'queued' WHERE status IN ('cataloging', 'matching')",
                [],
            )
        })
        .await
    }

    async fn known_digests(&self) -> Result<HashSet<String>> {
        self.read(|c| {
            let mut st = c.prepare("SELECT digest FROM images")?;
            st.query_map([], |r| r.get::<_, String>(0))?.collect()
        })
        .await
    }

    async fn image(&self, digest: &str) -> Result<Option<ImageRow>> {
        let digest = digest.to_owned();
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {IMAGE_COLS} FROM images WHERE digest = ?1"),
                [digest],
                image_row,
            )
            .optional()
        })
        .await
    }

    async fn children(&self, index: &str) -> Result<Vec<ImageRow>> {
        let index = index.to_owned();
        self.read(move |c| images_where(c, "WHERE parent = ?1 ORDER BY platform", &[&index]))
            .await
    }

    async fn all_images(&self) -> Result<Vec<ImageRow>> {
        self.read(|c| images_where(c, "ORDER BY queued_at DESC", &[]))
            .await
    }

    async fn images_in_repo(&self, repo: &str) -> Result<Vec<ImageRow>> {
        let repo = repo.to_owned();
        self.read(move |c| {
            images_where(
                c,
                "WHERE digest IN (SELECT digest FROM image_repos WHERE repo = ?1) ORDER BY queued_at DESC",
                &[&repo],
            )
        })
        .await
    }

    async fn repos_of(&self, digest: &str) -> Result<Vec<String>> {
        let digest = digest.to_owned();
        self.read(move |c| {
            let mut st =
                c.prepare("SELECT repo FROM image_repos WHERE digest = ?1 ORDER BY repo")?;
            st.query_map([digest], |r| r.get::<_, String>(0))?.collect()
        })
        .await
    }

    async fn queue(&self) -> Result<QueueSummary> {
        self.read(|c| {
            let pending = images_where(
                c,
                "WHERE status IN ('queued', 'cataloging', 'matching') ORDER BY queued_at LIMIT 1000",
                &[],
            )?;
            let mut st =
                c.prepare("SELECT status, COUNT(*) FROM images GROUP BY status ORDER BY status")?;
            let counts = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(QueueSummary { pending, counts })
        })
        .await
    }

    async fn forget(&self, repo: &str, digest: &str) -> Result<()> {
        let (repo, digest) = (repo.to_owned(), digest.to_owned());
        self.write(Verdicts::Move, move |tx| {
            tx.execute(
                "DELETE FROM image_repos WHERE repo = ?1 AND digest = ?2",
                params![repo, digest],
            )?;
            let left: i64 = tx.query_row(
                "SELECT COUNT(*) FROM image_repos WHERE digest = ?1",
                [&digest],
                |r| r.get(0),
            )?;
            if left == 0 {
                for t in ["images", "results", "inventories"] {
                    tx.execute(&format!("DELETE FROM {t} WHERE digest = ?1"), [&digest])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn record_pulls(&self, pulls: &[(String, i64)]) -> Result<()> {
        let pulls = pulls.to_vec();
        // Quiet: a busy registry records pulls all the time, and the
        // dashboard lays pull times over its judging (`pulled_times`).
        self.write(Verdicts::Keep, move |tx| {
            for (digest, at) in &pulls {
                tx.execute(
                    "UPDATE images SET last_pulled_at = MAX(COALESCE(last_pulled_at, 0), ?2) WHERE digest = ?1 OR parent = ?1",
                    params![digest, at],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn pulled_times(&self) -> Result<HashMap<String, i64>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT digest, last_pulled_at FROM images WHERE last_pulled_at IS NOT NULL",
            )?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
        })
        .await
    }

    async fn record_tag(&self, repo: &str, tag: &str, digest: &str, at: i64) -> Result<()> {
        let (repo, tag, digest) = (repo.to_owned(), tag.to_owned(), digest.to_owned());
        // History for diffs; the dashboard reads tags from the registry.
        self.write(Verdicts::Keep, move |c| {
            let last: Option<String> = c
                .query_row(
                    "SELECT digest FROM tag_history WHERE repo = ?1 AND tag = ?2 ORDER BY id DESC LIMIT 1",
                    params![repo, tag],
                    |r| r.get(0),
                )
                .optional()?;
            if last.as_deref() != Some(digest.as_str()) {
                c.execute(
                    "INSERT INTO tag_history(repo, tag, digest, at) VALUES (?1, ?2, ?3, ?4)",
                    params![repo, tag, digest, at],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn previous_tag_digests(&self, digest: &str) -> Result<Vec<(String, String, String)>> {
        let digest = digest.to_owned();
        self.read(move |c| {
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
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(a, b, p)| p.map(|p| (a, b, p)))
                .collect())
        })
        .await
    }

    async fn put_inventory(
        &self,
        digest: &str,
        catalog_version: u32,
        data: Vec<u8>,
        incomplete: &[String],
    ) -> Result<()> {
        let digest = digest.to_owned();
        let incomplete = if incomplete.is_empty() {
            None
        } else {
            Some(serde_json::to_string(incomplete).map_err(backend)?)
        };
        self.write(Verdicts::Move, move |c| {
            c.execute(
                "INSERT OR REPLACE INTO inventories(digest, catalog_version, data, incomplete) VALUES (?1, ?2, ?3, ?4)",
                params![digest, catalog_version, data, incomplete],
            )
            .map(drop)
        })
        .await
    }

    async fn inventory(&self, digest: &str) -> Result<Option<StoredInventory>> {
        let digest = digest.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT catalog_version, data FROM inventories WHERE digest = ?1",
                [digest],
                |r| {
                    Ok(StoredInventory {
                        catalog_version: r.get(0)?,
                        data: r.get(1)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn inventories(&self, digests: &[String]) -> Result<Vec<(String, StoredInventory)>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let digests = digests.to_vec();
        let mut found = self
            .read(move |c| {
                let mut found = HashMap::with_capacity(digests.len());
                // Bound lists stay well under SQLite's variable limit.
                for part in digests.chunks(500) {
                    let marks = vec!["?"; part.len()].join(",");
                    let mut st = c.prepare_cached(&format!(
                        "SELECT digest, catalog_version, data FROM inventories WHERE digest IN ({marks})"
                    ))?;
                    let rows = st.query_map(rusqlite::params_from_iter(part), |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            StoredInventory {
                                catalog_version: r.get(1)?,
                                data: r.get(2)?,
                            },
                        ))
                    })?;
                    for row in rows {
                        let (d, inv) = row?;
                        found.insert(d, inv);
                    }
                }
                Ok((digests, found))
            })
            .await?;
        let (digests, ref mut map) = found;
        Ok(digests
            .into_iter()
            .filter_map(|d| map.remove(&d).map(|inv| (d, inv)))
            .collect())
    }

    async fn incomplete(&self, digest: &str) -> Result<Vec<String>> {
        let digest = digest.to_owned();
        let row: Option<Option<String>> = self
            .read(move |c| {
                c.query_row(
                    "SELECT incomplete FROM inventories WHERE digest = ?1",
                    [digest],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        match row.flatten() {
            None => Ok(Vec::new()),
            Some(s) => serde_json::from_str(&s)
                .map_err(|e| AssessStateError::Corrupt(format!("an inventory's reasons: {e}"))),
        }
    }

    async fn layer_cache_get(&self, layer: &str, version: u32) -> Result<Option<Vec<u8>>> {
        let layer = layer.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT data FROM layer_cache WHERE layer = ?1 AND version = ?2",
                params![layer, version],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    async fn layer_cache_put(
        &self,
        layer: &str,
        version: u32,
        data: Vec<u8>,
        at: i64,
    ) -> Result<()> {
        let layer = layer.to_owned();
        // Verdicts come from stored results, not from this cache.
        self.write(Verdicts::Keep, move |c| {
            c.execute(
                "INSERT OR REPLACE INTO layer_cache(layer, version, data, at) VALUES (?1, ?2, ?3, ?4)",
                params![layer, version, data, at],
            )
            .map(drop)
        })
        .await
    }

    async fn clear_layer_cache(&self) -> Result<()> {
        self.write(Verdicts::Keep, |c| {
            c.execute("DELETE FROM layer_cache", []).map(drop)
        })
        .await
    }

    async fn save_results(&self, batch: Vec<NewResult>) -> Result<()> {
        self.write(Verdicts::Move, move |tx| {
            for r in &batch {
                save_result_tx(tx, r)?;
            }
            Ok(())
        })
        .await
    }

    async fn result(&self, digest: &str) -> Result<Option<StoredResult>> {
        let digest = digest.to_owned();
        let row = self
            .read(move |c| {
                c.query_row(
                    "SELECT db_version, assessed_at, findings, findings_hash, prev_db_version, prev_assessed_at, prev_keys FROM results WHERE digest = ?1",
                    [digest],
                    |r| {
                        Ok((
                            StoredResult {
                                db_version: r.get(0)?,
                                assessed_at: r.get(1)?,
                                findings: r.get(2)?,
                                findings_hash: r.get(3)?,
                                prev_db_version: r.get(4)?,
                                prev_assessed_at: r.get(5)?,
                                prev_keys: None,
                            },
                            r.get::<_, Option<String>>(6)?,
                        ))
                    },
                )
                .optional()
            })
            .await?;
        Ok(row.map(|(mut r, keys)| {
            // Unreadable previous keys read as "same as now", as before.
            r.prev_keys = keys.and_then(|s| serde_json::from_str(&s).ok());
            r
        }))
    }

    async fn rematch_candidates(
        &self,
        window_start: i64,
        db_version: &str,
        older_than: i64,
    ) -> Result<Vec<String>> {
        let db_version = db_version.to_owned();
        self.read(move |c| {
            let mut st = c.prepare(
                "SELECT i.digest FROM images i JOIN results r ON r.digest = i.digest
                 WHERE i.status = 'done' AND i.kind = 'image' AND (
                   r.db_version IS NULL OR (
                     (COALESCE(i.last_pushed_at, 0) >= ?1 OR COALESCE(i.last_pulled_at, 0) >= ?1)
                     AND (r.db_version != ?2 OR r.assessed_at < ?3)))",
            )?;
            st.query_map(params![window_start, db_version, older_than], |r| r.get(0))?
                .collect()
        })
        .await
    }

    async fn result_stamps(&self) -> Result<ResultStamps> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT digest, db_version, assessed_at, findings_hash FROM results")?;
            st.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))?
                .collect()
        })
        .await
    }

    async fn findings_hash(&self, digest: &str) -> Result<Option<String>> {
        let digest = digest.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT findings_hash FROM results WHERE digest = ?1",
                [digest],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    async fn add_exemption(&self, e: &ExemptionRow) -> Result<()> {
        let e = e.clone();
        self.write(Verdicts::Move, move |c| {
            c.execute(
                "INSERT INTO exemptions(id, data, created_at) VALUES (?1, ?2, ?3)",
                params![e.id, e.data, e.created_at],
            )
            .map(drop)
        })
        .await
    }

    async fn exemptions(&self) -> Result<Vec<ExemptionRow>> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT id, data, created_at FROM exemptions ORDER BY created_at, id")?;
            st.query_map([], |r| {
                Ok(ExemptionRow {
                    id: r.get(0)?,
                    data: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn delete_exemption(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(Verdicts::Move, move |c| {
            Ok(c.execute("DELETE FROM exemptions WHERE id = ?1", [id])? > 0)
        })
        .await
    }

    async fn add_webhook(&self, w: &Webhook) -> Result<()> {
        let w = w.clone();
        self.write(Verdicts::Move, move |c| {
            c.execute(
                "INSERT INTO webhooks(id, url, secret, repository, min_severity, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![w.id, w.url, w.secret, w.repository, w.min_severity, w.created_at],
            )
            .map(drop)
        })
        .await
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, url, secret, repository, min_severity, created_at FROM webhooks ORDER BY created_at, id",
            )?;
            st.query_map([], |r| {
                Ok(Webhook {
                    id: r.get(0)?,
                    url: r.get(1)?,
                    secret: r.get(2)?,
                    repository: r.get(3)?,
                    min_severity: r.get(4)?,
                    created_at: r.get(5)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(Verdicts::Move, move |c| {
            c.execute(
                "UPDATE deliveries SET state = 'failed', last_error = 'webhook deleted' WHERE webhook_id = ?1 AND state = 'pending'",
                [&id],
            )?;
            Ok(c.execute("DELETE FROM webhooks WHERE id = ?1", [&id])? > 0)
        })
        .await
    }

    async fn add_delivery(&self, d: &Delivery) -> Result<()> {
        let d = d.clone();
        self.write(Verdicts::Keep, move |c| {
            c.execute(
                "INSERT INTO deliveries(id, webhook_id, event, digest, repo, payload, state, attempts, created_at, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8)",
                params![d.id, d.webhook_id, d.event, d.digest, d.repository, d.payload, d.created_at, d.next_attempt_at],
            )
            .map(drop)
        })
        .await
    }

    async fn due_deliveries(&self, now: i64, limit: usize) -> Result<Vec<Delivery>> {
        self.read(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {DELIVERY_COLS} FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2"
            ))?;
            st.query_map(params![now, limit as i64], delivery_row)?
                .collect()
        })
        .await
    }

    async fn next_delivery_at(&self) -> Result<Option<i64>> {
        self.read(|c| {
            c.query_row(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn delivery_attempted(&self, a: &DeliveryAttempt) -> Result<()> {
        let a = a.clone();
        let state = if a.delivered {
            "delivered"
        } else if a.next.is_some() {
            "pending"
        } else {
            "failed"
        };
        self.write(Verdicts::Keep, move |c| {
            c.execute(
                "UPDATE deliveries SET state = ?2, attempts = attempts + 1, last_status = ?3, last_error = ?4,
                   next_attempt_at = COALESCE(?5, next_attempt_at), delivered_at = CASE WHEN ?6 THEN ?7 ELSE delivered_at END
                 WHERE id = ?1",
                params![a.id, state, a.status.map(i64::from), a.error, a.next, a.delivered, a.now],
            )
            .map(drop)
        })
        .await
    }

    async fn deliveries(&self, webhook_id: Option<&str>, limit: usize) -> Result<Vec<Delivery>> {
        let webhook_id = webhook_id.map(str::to_owned);
        self.read(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {DELIVERY_COLS} FROM deliveries WHERE (?1 IS NULL OR webhook_id = ?1) ORDER BY created_at DESC LIMIT ?2"
            ))?;
            st.query_map(params![webhook_id, limit as i64], delivery_row)?
                .collect()
        })
        .await
    }

    async fn notified_keys(&self, digest: &str) -> Result<HashSet<String>> {
        let digest = digest.to_owned();
        self.read(move |c| {
            let mut st = c.prepare("SELECT key FROM notified WHERE digest = ?1")?;
            st.query_map([digest], |r| r.get(0))?.collect()
        })
        .await
    }

    async fn mark_notified(&self, digest: &str, keys: &[String], at: i64) -> Result<()> {
        let (digest, keys) = (digest.to_owned(), keys.to_vec());
        self.write(Verdicts::Keep, move |tx| {
            for k in &keys {
                tx.execute(
                    "INSERT OR IGNORE INTO notified(digest, key, at) VALUES (?1, ?2, ?3)",
                    params![digest, k, at],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn count_usage(&self, digest: &str, repo: &str, month: &str, at: i64) -> Result<bool> {
        let (digest, repo, month) = (digest.to_owned(), repo.to_owned(), month.to_owned());
        self.write(Verdicts::Keep, move |c| {
            Ok(c.execute(
                "INSERT OR IGNORE INTO usage(digest, repo, month, first_assessed_at) VALUES (?1, ?2, ?3, ?4)",
                params![digest, repo, month, at],
            )? > 0)
        })
        .await
    }

    async fn usage(&self, from: &str, to: &str) -> Result<Vec<UsageRow>> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.read(move |c| {
            let mut st = c.prepare(
                "SELECT repo, month, COUNT(*) FROM usage WHERE month >= ?1 AND month <= ?2 GROUP BY repo, month ORDER BY month, repo",
            )?;
            st.query_map(params![from, to], |r| {
                Ok(UsageRow {
                    repository: r.get(0)?,
                    month: r.get(1)?,
                    images: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect()
        })
        .await
    }

    async fn prune(&self, before: &PruneBefore) -> Result<Pruned> {
        let before = *before;
        // Verdict-relevant as before the move (one pass a day).
        self.write(Verdicts::Move, move |tx| {
            let deliveries = tx.execute(
                "DELETE FROM deliveries WHERE state != 'pending' AND created_at < ?1",
                [before.deliveries],
            )?;
            let notified = tx.execute(
                "DELETE FROM notified WHERE at < ?1 OR digest NOT IN (SELECT digest FROM images)",
                [before.notified],
            )?;
            let tag_history = tx.execute(
                "DELETE FROM tag_history WHERE at < ?1 AND id NOT IN (
                   SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY repo, tag ORDER BY id DESC) AS n
                                   FROM tag_history) WHERE n <= 2)",
                [before.tag_history],
            )?;
            let layer_cache = tx.execute(
                "DELETE FROM layer_cache WHERE version != ?2 OR (at < ?1 AND layer NOT IN (
                   SELECT j.value FROM images i, json_each(i.layers) j WHERE i.layers IS NOT NULL))",
                params![before.layer_cache, before.catalog_version],
            )?;
            Ok(Pruned {
                deliveries,
                notified,
                tag_history,
                layer_cache,
            })
        })
        .await
    }

    async fn put_vex(&self, row: &VexRow) -> Result<Option<VexRow>> {
        let row = row.clone();
        self.write(Verdicts::Move, move |tx| {
            let old = tx
                .query_row(
                    &format!("SELECT {VEX_COLS} FROM vex WHERE key = ?1"),
                    [&row.key],
                    vex_row,
                )
                .optional()?;
            tx.execute(
                "INSERT OR REPLACE INTO vex(key, doc_id, subject, source, data, created_at, recorded_by, not_applied) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![row.key, row.doc_id, row.subject, row.source, row.data.to_string(), row.created_at, row.recorded_by, row.not_applied],
            )?;
            Ok(old)
        })
        .await
    }

    async fn vex_document(&self, key: &str) -> Result<Option<VexRow>> {
        let key = key.to_owned();
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {VEX_COLS} FROM vex WHERE key = ?1"),
                [key],
                vex_row,
            )
            .optional()
        })
        .await
    }

    async fn vex_documents(&self) -> Result<Vec<VexRow>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {VEX_COLS} FROM vex ORDER BY created_at, key"
            ))?;
            st.query_map([], vex_row)?.collect()
        })
        .await
    }

    async fn delete_vex(&self, key: &str) -> Result<Option<VexRow>> {
        let key = key.to_owned();
        self.write(Verdicts::Move, move |tx| {
            let old = tx
                .query_row(
                    &format!("SELECT {VEX_COLS} FROM vex WHERE key = ?1"),
                    [&key],
                    vex_row,
                )
                .optional()?;
            tx.execute("DELETE FROM vex WHERE key = ?1", [&key])?;
            Ok(old)
        })
        .await
    }

    async fn sbom(&self, subject: &str) -> Result<Option<SbomRow>> {
        let subject = subject.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT subject, repo, digest, catalog_version FROM sboms WHERE subject = ?1",
                [subject],
                |r| {
                    Ok(SbomRow {
                        subject: r.get(0)?,
                        repo: r.get(1)?,
                        digest: r.get(2)?,
                        catalog_version: r.get(3)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn attached_sboms(&self) -> Result<HashSet<String>> {
        self.read(|c| {
            let mut st = c.prepare("SELECT digest FROM sboms")?;
            st.query_map([], |r| r.get::<_, String>(0))?.collect()
        })
        .await
    }

    async fn put_sbom(&self, row: &SbomRow, at: i64) -> Result<()> {
        let row = row.clone();
        self.write(Verdicts::Move, move |c| {
            c.execute(
                "INSERT OR REPLACE INTO sboms(subject, repo, digest, catalog_version, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![row.subject, row.repo, row.digest, row.catalog_version, at],
            )
            .map(drop)
        })
        .await
    }

    async fn save_patch_job(&self, job: &PatchJobRow) -> Result<()> {
        let job = job.clone();
        self.write(Verdicts::Keep, move |c| {
            c.execute(
                "INSERT OR REPLACE INTO patch_jobs(id, repo, state, data, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![job.id, job.repo, job.state, job.data, job.updated_at],
            )?;
            if job.state != "running" {
                c.execute(
                    "DELETE FROM patch_jobs WHERE state != 'running' AND id NOT IN \
                     (SELECT id FROM patch_jobs WHERE state != 'running' ORDER BY updated_at DESC LIMIT ?1)",
                    [KEEP_FINISHED_PATCH_JOBS],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn patch_job(&self, id: &str) -> Result<Option<String>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.query_row("SELECT data FROM patch_jobs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
        })
        .await
    }

    async fn patch_jobs_in_state(&self, state: &str) -> Result<Vec<String>> {
        let state = state.to_owned();
        self.read(move |c| {
            let mut st =
                c.prepare("SELECT data FROM patch_jobs WHERE state = ?1 ORDER BY updated_at")?;
            st.query_map([state], |r| r.get(0))?.collect()
        })
        .await
    }
}

fn backend(e: serde_json::Error) -> AssessStateError {
    AssessStateError::Backend(e.to_string())
}
