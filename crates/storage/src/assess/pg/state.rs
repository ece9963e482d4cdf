//! [`AssessState`] on PostgreSQL: each read one statement on a pooled
//! connection, each write one transaction. The statements are the SQLite
//! store's, with the queue's leases added and SQLite's forms translated
//! (`INSERT OR REPLACE` as `ON CONFLICT DO UPDATE`, NULLs sorted first as
//! SQLite sorts them).

use super::{DB_NOW_MS, PgAssessState, Verdicts, exec, query, query_opt};
use crate::assess::model::*;
use crate::assess::{AssessState, AssessStateError, Result};
use crate::pg::params;
use futures::future::try_join_all;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use tokio_postgres::Row;

/// A column of the right type, or a typed error (not a panic).
pub(super) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T> {
    Ok(crate::pg::col(r, i)?)
}

/// A `u32` stored as BIGINT.
fn col_u32(r: &Row, i: usize) -> Result<u32> {
    let v: i64 = col(r, i)?;
    u32::try_from(v).map_err(|_| AssessStateError::Corrupt(format!("a catalog version of {v}")))
}

const IMAGE_COLS: &str = "digest, repo, media_type, kind, parent, platform, status, error, attempts, queued_at, started_at, finished_at, last_pushed_at, last_pulled_at, layers, children";

/// Jobs a claim may take: queued ones, and ones in progress whose node
/// lost its lease.
const CLAIMABLE: &str = "(status = 'queued' OR (status IN ('cataloging', 'matching') AND lease_until < (extract(epoch FROM clock_timestamp()) * 1000)::bigint))";

fn image_row(r: &Row) -> Result<ImageRow> {
    let layers: Option<String> = col(r, 14)?;
    let children: Option<String> = col(r, 15)?;
    Ok(ImageRow {
        digest: col(r, 0)?,
        repo: col(r, 1)?,
        media_type: col(r, 2)?,
        kind: col(r, 3)?,
        parent: col(r, 4)?,
        platform: col(r, 5)?,
        status: col(r, 6)?,
        error: col(r, 7)?,
        attempts: col(r, 8)?,
        queued_at: col(r, 9)?,
        started_at: col(r, 10)?,
        finished_at: col(r, 11)?,
        last_pushed_at: col(r, 12)?,
        last_pulled_at: col(r, 13)?,
        // As on SQLite: an unreadable list reads as empty (the image is
        // then looked at again, not lost).
        layers: layers
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
        children: children
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
    })
}

fn image_rows(rows: &[Row]) -> Result<Vec<ImageRow>> {
    rows.iter().map(image_row).collect()
}

const DELIVERY_COLS: &str = "id, webhook_id, event, digest, repo, state, attempts, last_status, last_error, created_at, next_attempt_at, delivered_at, payload";

fn delivery_row(r: &Row) -> Result<Delivery> {
    Ok(Delivery {
        id: col(r, 0)?,
        webhook_id: col(r, 1)?,
        event: col(r, 2)?,
        digest: col(r, 3)?,
        repository: col(r, 4)?,
        state: col(r, 5)?,
        attempts: col(r, 6)?,
        last_status: col(r, 7)?,
        last_error: col(r, 8)?,
        created_at: col(r, 9)?,
        next_attempt_at: col(r, 10)?,
        delivered_at: col(r, 11)?,
        payload: col(r, 12)?,
    })
}

const VEX_COLS: &str = "key, doc_id, subject, source, data, created_at, recorded_by, not_applied";

fn vex_row(r: &Row) -> Result<VexRow> {
    let data: String = col(r, 4)?;
    Ok(VexRow {
        key: col(r, 0)?,
        doc_id: col(r, 1)?,
        subject: col(r, 2)?,
        source: col(r, 3)?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        created_at: col(r, 5)?,
        recorded_by: col(r, 6)?,
        not_applied: col(r, 7)?,
    })
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| AssessStateError::Backend(e.to_string()))
}

/// Finished patch jobs kept; older ones go as new ones are written.
const KEEP_FINISHED_PATCH_JOBS: i64 = 1000;

/// Advisory lock namespace (first key) for one tag's history: appends to
/// it take turns across nodes, so two never both append the same move.
const LOCK_TAG_HISTORY: i32 = 0x6464_0010;

#[async_trait::async_trait]
impl AssessState for PgAssessState {
    async fn generation(&self) -> Result<u64> {
        Ok(self.counters().await?.0)
    }

    async fn verdict_generation(&self) -> Result<u64> {
        Ok(self.counters().await?.1)
    }

    async fn meta(&self, key: &str) -> Result<Option<String>> {
        let row = self
            .read_opt(
                "SELECT value FROM assess_meta WHERE key = $1",
                params![key.to_owned()],
            )
            .await?;
        row.map(|r| col(&r, 0)).transpose()
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(Verdicts::Keep, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "INSERT INTO assess_meta(key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&key, &value],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn enqueue(&self, j: Enqueue) -> Result<bool> {
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let pushed_at = j.pushed.then_some(j.now);
                // As on SQLite: a failed job is retried, and so is a
                // finished artifact pushed again by someone known.
                let again = "i.status = 'failed' OR (excluded.pusher IS NOT NULL \
                             AND i.kind = 'artifact' AND i.status = 'unsupported')";
                let row = query(
                    t,
                    &format!(
                        "INSERT INTO assess_images AS i (digest, repo, media_type, parent, platform, status, queued_at, last_pushed_at, pusher)
                         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8)
                         ON CONFLICT (digest) DO UPDATE SET
                           last_pushed_at = COALESCE(excluded.last_pushed_at, i.last_pushed_at),
                           pusher = COALESCE(excluded.pusher, i.pusher),
                           parent = COALESCE(i.parent, excluded.parent),
                           platform = COALESCE(i.platform, excluded.platform),
                           status = CASE WHEN {again} THEN 'queued' ELSE i.status END,
                           attempts = CASE WHEN {again} THEN 0 ELSE i.attempts END,
                           error = CASE WHEN {again} THEN NULL ELSE i.error END,
                           queued_at = CASE WHEN {again} THEN excluded.queued_at ELSE i.queued_at END
                         RETURNING status"
                    ),
                    &[
                        &j.digest,
                        &j.repo,
                        &j.media_type,
                        &j.parent,
                        &j.platform,
                        &j.now,
                        &pushed_at,
                        &j.pusher,
                    ],
                )
                .await?;
                let status: String = match row.first() {
                    Some(r) => col(r, 0)?,
                    None => return Err(AssessStateError::Backend("enqueue returned no row".into())),
                };
                exec(
                    t,
                    "INSERT INTO assess_image_repos(repo, digest) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&j.repo, &j.digest],
                )
                .await?;
                Ok((status == status::QUEUED, 1))
            })
        })
        .await
    }

    async fn pusher(&self, digest: &str) -> Result<Option<String>> {
        let row = self
            .read_opt(
                "SELECT pusher FROM assess_images WHERE digest = $1",
                params![digest.to_owned()],
            )
            .await?;
        Ok(row
            .map(|r| col::<Option<String>>(&r, 0))
            .transpose()?
            .flatten())
    }

    async fn forget_pusher(&self, digest: &str) -> Result<()> {
        let digest = digest.to_owned();
        // No verdict reads the pusher once the job is done.
        self.write(Verdicts::Keep, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "UPDATE assess_images SET pusher = NULL WHERE digest = $1 AND pusher IS NOT NULL",
                    &[&digest],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn claim(&self, now: i64) -> Result<Option<ImageRow>> {
        let node = self.inner.node.clone();
        let lease = self.inner.lease_ms;
        let max = i64::from(self.inner.max_attempts.load(Ordering::Relaxed));
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                // SKIP LOCKED: a job another node is claiming right now is
                // passed over, not waited for; the next one is taken.
                let row = query_opt(
                    t,
                    &format!(
                        "UPDATE assess_images SET status = 'cataloging', started_at = $1, attempts = attempts + 1,
                           lease_owner = $2, lease_until = {DB_NOW_MS} + $3
                         WHERE digest = (
                           SELECT digest FROM assess_images
                           WHERE {CLAIMABLE} AND attempts < $4
                           ORDER BY queued_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED)
                         RETURNING {IMAGE_COLS}"
                    ),
                    &[&now, &node, &lease, &max],
                )
                .await?;
                let job = row.as_ref().map(image_row).transpose()?;
                let n = u64::from(job.is_some());
                Ok((job, n))
            })
        })
        .await
    }

    async fn give_up_exhausted(
        &self,
        max_attempts: u32,
        now: i64,
    ) -> Result<Vec<(String, String)>> {
        let max = max_attempts.max(1);
        // The assessor's limit is the one claims keep to.
        self.inner.max_attempts.store(max, Ordering::Relaxed);
        let max = i64::from(max);
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                // Queued jobs at the limit, and ones whose node died
                // holding their last attempt.
                let rows = query(
                    t,
                    &format!(
                        "UPDATE assess_images SET status = 'failed', finished_at = $2,
                           error = 'gave up after ' || attempts || ' attempts: '
                                   || COALESCE(error, 'the process stopped while assessing'),
                           lease_owner = NULL, lease_until = NULL
                         WHERE {CLAIMABLE} AND attempts >= $1
                         RETURNING digest, error"
                    ),
                    &[&max, &now],
                )
                .await?;
                let out = rows
                    .iter()
                    .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
                    .collect::<Result<Vec<_>>>()?;
                let n = out.len() as u64;
                Ok((out, n))
            })
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
        // Out of progress, the job holds no lease any more.
        let keeps_lease = matches!(st, status::CATALOGING | status::MATCHING);
        let (digest, st, error) = (digest.to_owned(), st.to_owned(), error.map(str::to_owned));
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "UPDATE assess_images SET status = $2, error = $3, finished_at = COALESCE($4, finished_at),
                       lease_owner = CASE WHEN $5 THEN lease_owner END,
                       lease_until = CASE WHEN $5 THEN lease_until END
                     WHERE digest = $1",
                    &[&digest, &st, &error, &finished, &keeps_lease],
                )
                .await?;
                Ok(((), n))
            })
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
        let (layers, children) = (to_json(layers)?, to_json(children)?);
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "UPDATE assess_images SET kind = $2, layers = $3, children = $4 WHERE digest = $1",
                    &[&digest, &kind, &layers, &children],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn set_platform_if_unknown(&self, digest: &str, platform: &str) -> Result<()> {
        let (digest, platform) = (digest.to_owned(), platform.to_owned());
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "UPDATE assess_images SET platform = $2 WHERE digest = $1 AND platform IS NULL",
                    &[&digest, &platform],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn requeue_interrupted(&self) -> Result<usize> {
        let node = self.inner.node.clone();
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                // Only this node's own jobs (it restarted under the same
                // name) and those whose node is gone: a live node's job
                // stays with it.
                let n = exec(
                    t,
                    &format!(
                        "UPDATE assess_images SET status = 'queued', lease_owner = NULL, lease_until = NULL
                         WHERE status IN ('cataloging', 'matching')
                           AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < {DB_NOW_MS})"
                    ),
                    &[&node],
                )
                .await?;
                Ok((n as usize, n))
            })
        })
        .await
    }

    async fn release_claims(&self) -> Result<usize> {
        self.inner
            .stopped
            .store(true, std::sync::atomic::Ordering::Release);
        let node = self.inner.node.clone();
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "UPDATE assess_images SET status = 'queued', lease_owner = NULL, lease_until = NULL
                     WHERE lease_owner = $1 AND status IN ('cataloging', 'matching')",
                    &[&node],
                )
                .await?;
                Ok((n as usize, n))
            })
        })
        .await
    }

    async fn known_digests(&self) -> Result<HashSet<String>> {
        let rows = self
            .read("SELECT digest FROM assess_images", vec![])
            .await?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    async fn image(&self, digest: &str) -> Result<Option<ImageRow>> {
        let row = self
            .read_opt(
                format!("SELECT {IMAGE_COLS} FROM assess_images WHERE digest = $1"),
                params![digest.to_owned()],
            )
            .await?;
        row.as_ref().map(image_row).transpose()
    }

    async fn children(&self, index: &str) -> Result<Vec<ImageRow>> {
        let rows = self
            .read(
                format!(
                    "SELECT {IMAGE_COLS} FROM assess_images WHERE parent = $1 ORDER BY platform NULLS FIRST, seq"
                ),
                params![index.to_owned()],
            )
            .await?;
        image_rows(&rows)
    }

    async fn all_images(&self) -> Result<Vec<ImageRow>> {
        let rows = self
            .read(
                format!("SELECT {IMAGE_COLS} FROM assess_images ORDER BY queued_at DESC, seq DESC"),
                vec![],
            )
            .await?;
        image_rows(&rows)
    }

    async fn images_in_repo(&self, repo: &str) -> Result<Vec<ImageRow>> {
        let rows = self
            .read(
                format!(
                    "SELECT {IMAGE_COLS} FROM assess_images
                     WHERE digest IN (SELECT digest FROM assess_image_repos WHERE repo = $1)
                     ORDER BY queued_at DESC, seq DESC"
                ),
                params![repo.to_owned()],
            )
            .await?;
        image_rows(&rows)
    }

    async fn repos_of(&self, digest: &str) -> Result<Vec<String>> {
        let rows = self
            .read(
                "SELECT repo FROM assess_image_repos WHERE digest = $1 ORDER BY repo",
                params![digest.to_owned()],
            )
            .await?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    async fn queue(&self) -> Result<QueueSummary> {
        let (pending, counts) = futures::try_join!(
            self.read(
                format!(
                    "SELECT {IMAGE_COLS} FROM assess_images
                     WHERE status IN ('queued', 'cataloging', 'matching') ORDER BY queued_at, seq LIMIT 1000"
                ),
                vec![],
            ),
            self.read(
                "SELECT status, COUNT(*) FROM assess_images GROUP BY status ORDER BY status COLLATE \"C\"",
                vec![],
            ),
        )?;
        Ok(QueueSummary {
            pending: image_rows(&pending)?,
            counts: counts
                .iter()
                .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
                .collect::<Result<_>>()?,
        })
    }

    async fn forget(&self, repo: &str, digest: &str) -> Result<()> {
        let (repo, digest) = (repo.to_owned(), digest.to_owned());
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                // The image's row first: forgets and enqueues of one digest
                // on several nodes take turns, so the last repository's
                // removal sees every other's and a new push is not lost.
                exec(
                    t,
                    "SELECT 1 FROM assess_images WHERE digest = $1 FOR UPDATE",
                    &[&digest],
                )
                .await?;
                let mut n = exec(
                    t,
                    "DELETE FROM assess_image_repos WHERE repo = $1 AND digest = $2",
                    &[&repo, &digest],
                )
                .await?;
                let left = query(
                    t,
                    "SELECT COUNT(*) FROM assess_image_repos WHERE digest = $1",
                    &[&digest],
                )
                .await?;
                let left: i64 = match left.first() {
                    Some(r) => col(r, 0)?,
                    None => 0,
                };
                if left == 0 {
                    for sql in [
                        "DELETE FROM assess_images WHERE digest = $1",
                        "DELETE FROM assess_results WHERE digest = $1",
                        "DELETE FROM assess_inventories WHERE digest = $1",
                    ] {
                        n += exec(t, sql, &[&digest]).await?;
                    }
                }
                Ok(((), n))
            })
        })
        .await
    }

    async fn record_pulls(&self, pulls: &[(String, i64)]) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        let (digests, ats): (Vec<String>, Vec<i64>) = pulls.iter().cloned().unzip();
        // Quiet: a busy registry records pulls all the time. One
        // statement: each image takes the latest of the pulls of itself
        // and of its index.
        self.write(Verdicts::Keep, move |t| {
            Box::pin(async move {
                // Rows locked in digest order first: two nodes recording
                // pulls of the same images wait for each other instead of
                // deadlocking.
                exec(
                    t,
                    "SELECT 1 FROM assess_images WHERE digest = ANY($1) OR parent = ANY($1)
                     ORDER BY digest FOR UPDATE",
                    &[&digests],
                )
                .await?;
                let n = exec(
                    t,
                    "UPDATE assess_images i SET last_pulled_at = GREATEST(COALESCE(i.last_pulled_at, 0), m.at)
                     FROM (SELECT x.digest, MAX(u.at) AS at
                           FROM unnest($1::text[], $2::bigint[]) AS u(digest, at)
                           JOIN assess_images x ON x.digest = u.digest OR x.parent = u.digest
                           GROUP BY x.digest) m
                     WHERE i.digest = m.digest",
                    &[&digests, &ats],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn pulled_times(&self) -> Result<HashMap<String, i64>> {
        let rows = self
            .read(
                "SELECT digest, last_pulled_at FROM assess_images WHERE last_pulled_at IS NOT NULL",
                vec![],
            )
            .await?;
        rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
    }

    async fn record_tag(&self, repo: &str, tag: &str, digest: &str, at: i64) -> Result<()> {
        let (repo, tag, digest) = (repo.to_owned(), tag.to_owned(), digest.to_owned());
        // History for diffs; the dashboard reads tags from the registry.
        self.write(Verdicts::Keep, move |t| {
            Box::pin(async move {
                let key = format!("{repo}:{tag}");
                exec(
                    t,
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                    &[&LOCK_TAG_HISTORY, &key],
                )
                .await?;
                let n = exec(
                    t,
                    "INSERT INTO assess_tag_history(repo, tag, digest, at)
                     SELECT $1, $2, $3, $4
                     WHERE (SELECT digest FROM assess_tag_history WHERE repo = $1 AND tag = $2
                            ORDER BY id DESC LIMIT 1) IS DISTINCT FROM $3",
                    &[&repo, &tag, &digest, &at],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn previous_tag_digests(&self, digest: &str) -> Result<Vec<(String, String, String)>> {
        let rows = self
            .read(
                "SELECT h.repo, h.tag, (SELECT p.digest FROM assess_tag_history p
                     WHERE p.repo = h.repo AND p.tag = h.tag AND p.id < h.id AND p.digest != h.digest
                     ORDER BY p.id DESC LIMIT 1)
                 FROM assess_tag_history h WHERE h.digest = $1
                   AND h.id = (SELECT MAX(id) FROM assess_tag_history x
                               WHERE x.repo = h.repo AND x.tag = h.tag AND x.digest = h.digest)",
                params![digest.to_owned()],
            )
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            if let Some(prev) = col::<Option<String>>(r, 2)? {
                out.push((col(r, 0)?, col(r, 1)?, prev));
            }
        }
        Ok(out)
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
            Some(to_json(incomplete)?)
        };
        let version = i64::from(catalog_version);
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "INSERT INTO assess_inventories(digest, catalog_version, data, incomplete) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (digest) DO UPDATE SET catalog_version = excluded.catalog_version,
                       data = excluded.data, incomplete = excluded.incomplete",
                    &[&digest, &version, &data, &incomplete],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn inventory(&self, digest: &str) -> Result<Option<StoredInventory>> {
        let row = self
            .read_opt(
                "SELECT catalog_version, data FROM assess_inventories WHERE digest = $1",
                params![digest.to_owned()],
            )
            .await?;
        row.map(|r| {
            Ok(StoredInventory {
                catalog_version: col_u32(&r, 0)?,
                data: col(&r, 1)?,
            })
        })
        .transpose()
    }

    async fn inventories(&self, digests: &[String]) -> Result<Vec<(String, StoredInventory)>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .read(
                "SELECT digest, catalog_version, data FROM assess_inventories WHERE digest = ANY($1)",
                params![digests.to_vec()],
            )
            .await?;
        let mut found = HashMap::with_capacity(rows.len());
        for r in rows {
            found.insert(
                col::<String>(&r, 0)?,
                StoredInventory {
                    catalog_version: col_u32(&r, 1)?,
                    data: col(&r, 2)?,
                },
            );
        }
        Ok(digests
            .iter()
            .filter_map(|d| found.remove(d).map(|inv| (d.clone(), inv)))
            .collect())
    }

    async fn incomplete(&self, digest: &str) -> Result<Vec<String>> {
        let row = self
            .read_opt(
                "SELECT incomplete FROM assess_inventories WHERE digest = $1",
                params![digest.to_owned()],
            )
            .await?;
        match row
            .map(|r| col::<Option<String>>(&r, 0))
            .transpose()?
            .flatten()
        {
            None => Ok(Vec::new()),
            Some(s) => serde_json::from_str(&s)
                .map_err(|e| AssessStateError::Corrupt(format!("an inventory's reasons: {e}"))),
        }
    }

    async fn layer_cache_get(&self, layer: &str, version: u32) -> Result<Option<Vec<u8>>> {
        let row = self
            .read_opt(
                "SELECT data FROM assess_layer_cache WHERE layer = $1 AND version = $2",
                params![layer.to_owned(), i64::from(version)],
            )
            .await?;
        row.map(|r| col(&r, 0)).transpose()
    }

    async fn layer_cache_put(
        &self,
        layer: &str,
        version: u32,
        data: Vec<u8>,
        at: i64,
    ) -> Result<()> {
        let layer = layer.to_owned();
        let version = i64::from(version);
        // Verdicts come from stored results, not from this cache.
        self.write(Verdicts::Keep, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "INSERT INTO assess_layer_cache(layer, version, data, at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (layer, version) DO UPDATE SET data = excluded.data, at = excluded.at",
                    &[&layer, &version, &data, &at],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn clear_layer_cache(&self) -> Result<()> {
        self.write(Verdicts::Keep, |t| {
            Box::pin(async move {
                let n = exec(t, "DELETE FROM assess_layer_cache", &[]).await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn save_results(&self, batch: Vec<NewResult>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut rows = batch
            .into_iter()
            .map(|r| Ok((to_json(&r.findings.keys)?, r)))
            .collect::<Result<Vec<_>>>()?;
        // Rows locked in digest order (a stable sort: repeats of one
        // digest stay in their order), so two batches never deadlock.
        rows.sort_by(|a, b| a.1.digest.cmp(&b.1.digest));
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                // One statement per result, all sent before the first
                // answer (the client pipelines them on the connection):
                // a re-match of thousands costs no round trip each.
                // Unchanged findings (same hash) keep their document and
                // keys; changed ones keep the old keys as `prev_keys`.
                let sql = "INSERT INTO assess_results AS r (digest, db_version, assessed_at, findings, findings_hash, keys)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (digest) DO UPDATE SET
                       db_version = excluded.db_version,
                       assessed_at = excluded.assessed_at,
                       prev_db_version = r.db_version,
                       prev_assessed_at = r.assessed_at,
                       prev_keys = CASE WHEN r.findings_hash = excluded.findings_hash THEN NULL ELSE r.keys END,
                       findings = CASE WHEN r.findings_hash = excluded.findings_hash THEN r.findings ELSE excluded.findings END,
                       keys = CASE WHEN r.findings_hash = excluded.findings_hash THEN r.keys ELSE excluded.keys END,
                       findings_hash = excluded.findings_hash";
                let st = t.prepare_cached(sql).await.map_err(crate::pg::err)?;
                let done = try_join_all(rows.iter().map(|(keys, r)| {
                    let st = &st;
                    async move {
                        t.execute(
                            st,
                            &[
                                &r.digest,
                                &r.db_version,
                                &r.assessed_at,
                                &r.findings.data,
                                &r.findings.hash,
                                keys,
                            ],
                        )
                        .await
                        .map_err(crate::pg::err)
                    }
                }))
                .await?;
                Ok(((), done.iter().sum()))
            })
        })
        .await
    }

    async fn result(&self, digest: &str) -> Result<Option<StoredResult>> {
        let row = self
            .read_opt(
                "SELECT db_version, assessed_at, findings, findings_hash, prev_db_version, prev_assessed_at, prev_keys
                 FROM assess_results WHERE digest = $1",
                params![digest.to_owned()],
            )
            .await?;
        row.map(|r| {
            let prev_keys: Option<String> = col(&r, 6)?;
            Ok(StoredResult {
                db_version: col(&r, 0)?,
                assessed_at: col(&r, 1)?,
                findings: col(&r, 2)?,
                findings_hash: col(&r, 3)?,
                prev_db_version: col(&r, 4)?,
                prev_assessed_at: col(&r, 5)?,
                // Unreadable previous keys read as "same as now", as on
                // SQLite.
                prev_keys: prev_keys.and_then(|s| serde_json::from_str(&s).ok()),
            })
        })
        .transpose()
    }

    async fn rematch_candidates(
        &self,
        window_start: i64,
        db_version: &str,
        older_than: i64,
    ) -> Result<Vec<String>> {
        let rows = self
            .read(
                "SELECT i.digest FROM assess_images i JOIN assess_results r ON r.digest = i.digest
                 WHERE i.status = 'done' AND i.kind = 'image' AND (
                   r.db_version IS NULL OR (
                     (COALESCE(i.last_pushed_at, 0) >= $1 OR COALESCE(i.last_pulled_at, 0) >= $1)
                     AND (r.db_version != $2 OR r.assessed_at < $3)))",
                params![window_start, db_version.to_owned(), older_than],
            )
            .await?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    async fn result_stamps(&self) -> Result<ResultStamps> {
        let rows = self
            .read(
                "SELECT digest, db_version, assessed_at, findings_hash FROM assess_results",
                vec![],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((col(r, 0)?, (col(r, 1)?, col(r, 2)?, col(r, 3)?))))
            .collect()
    }

    async fn findings_hash(&self, digest: &str) -> Result<Option<String>> {
        let row = self
            .read_opt(
                "SELECT findings_hash FROM assess_results WHERE digest = $1",
                params![digest.to_owned()],
            )
            .await?;
        row.map(|r| col(&r, 0)).transpose()
    }

    async fn add_exemption(&self, e: &ExemptionRow) -> Result<()> {
        let e = e.clone();
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "INSERT INTO assess_exemptions(id, data, created_at) VALUES ($1, $2, $3)",
                    &[&e.id, &e.data, &e.created_at],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn exemptions(&self) -> Result<Vec<ExemptionRow>> {
        let rows = self
            .read(
                "SELECT id, data, created_at FROM assess_exemptions ORDER BY created_at, id",
                vec![],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ExemptionRow {
                    id: col(r, 0)?,
                    data: col(r, 1)?,
                    created_at: col(r, 2)?,
                })
            })
            .collect()
    }

    async fn delete_exemption(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let n = exec(t, "DELETE FROM assess_exemptions WHERE id = $1", &[&id]).await?;
                Ok((n > 0, n))
            })
        })
        .await
    }

    async fn add_webhook(&self, w: &Webhook) -> Result<()> {
        let w = w.clone();
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "INSERT INTO assess_webhooks(id, url, secret, repository, min_severity, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&w.id, &w.url, &w.secret, &w.repository, &w.min_severity, &w.created_at],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        let rows = self
            .read(
                "SELECT id, url, secret, repository, min_severity, created_at FROM assess_webhooks
                 ORDER BY created_at, id",
                vec![],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Webhook {
                    id: col(r, 0)?,
                    url: col(r, 1)?,
                    secret: col(r, 2)?,
                    repository: col(r, 3)?,
                    min_severity: col(r, 4)?,
                    created_at: col(r, 5)?,
                })
            })
            .collect()
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let failed = exec(
                    t,
                    "UPDATE assess_deliveries SET state = 'failed', last_error = 'webhook deleted'
                     WHERE webhook_id = $1 AND state = 'pending'",
                    &[&id],
                )
                .await?;
                let n = exec(t, "DELETE FROM assess_webhooks WHERE id = $1", &[&id]).await?;
                Ok((n > 0, failed + n))
            })
        })
        .await
    }

    async fn add_delivery(&self, d: &Delivery) -> Result<()> {
        let d = d.clone();
        self.write(Verdicts::Keep, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "INSERT INTO assess_deliveries(id, webhook_id, event, digest, repo, payload, state, attempts, created_at, next_attempt_at)
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8)",
                    &[
                        &d.id,
                        &d.webhook_id,
                        &d.event,
                        &d.digest,
                        &d.repository,
                        &d.payload,
                        &d.created_at,
                        &d.next_attempt_at,
                    ],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn due_deliveries(&self, now: i64, limit: usize) -> Result<Vec<Delivery>> {
        let rows = self
            .read(
                format!(
                    "SELECT {DELIVERY_COLS} FROM assess_deliveries
                     WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2"
                ),
                params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await?;
        rows.iter().map(delivery_row).collect()
    }

    async fn next_delivery_at(&self) -> Result<Option<i64>> {
        let row = self
            .read_opt(
                "SELECT MIN(next_attempt_at) FROM assess_deliveries WHERE state = 'pending'",
                vec![],
            )
            .await?;
        Ok(row
            .map(|r| col::<Option<i64>>(&r, 0))
            .transpose()?
            .flatten())
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
        self.write(Verdicts::Keep, move |t| {
            Box::pin(async move {
                let status = a.status.map(i64::from);
                let n = exec(
                    t,
                    "UPDATE assess_deliveries SET state = $2, attempts = attempts + 1, last_status = $3, last_error = $4,
                       next_attempt_at = COALESCE($5, next_attempt_at),
                       delivered_at = CASE WHEN $6 THEN $7 ELSE delivered_at END
                     WHERE id = $1",
                    &[&a.id, &state, &status, &a.error, &a.next, &a.delivered, &a.now],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn deliveries(&self, webhook_id: Option<&str>, limit: usize) -> Result<Vec<Delivery>> {
        let rows = self
            .read(
                format!(
                    "SELECT {DELIVERY_COLS} FROM assess_deliveries
                     WHERE ($1::text IS NULL OR webhook_id = $1) ORDER BY created_at DESC LIMIT $2"
                ),
                params![
                    webhook_id.map(str::to_owned),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
            )
            .await?;
        rows.iter().map(delivery_row).collect()
    }

    async fn notified_keys(&self, digest: &str) -> Result<HashSet<String>> {
        let rows = self
            .read(
                "SELECT key FROM assess_notified WHERE digest = $1",
                params![digest.to_owned()],
            )
            .await?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    async fn mark_notified(&self, digest: &str, keys: &[String], at: i64) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let digest = digest.to_owned();
        // In key order, so two nodes inserting the same keys never deadlock.
        let mut keys = keys.to_vec();
        keys.sort();
        self.write(Verdicts::Keep, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "INSERT INTO assess_notified(digest, key, at)
                     SELECT $1, k, $3 FROM unnest($2::text[]) AS k
                     ON CONFLICT DO NOTHING",
                    &[&digest, &keys, &at],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn count_usage(&self, digest: &str, repo: &str, month: &str, at: i64) -> Result<bool> {
        let (digest, repo, month) = (digest.to_owned(), repo.to_owned(), month.to_owned());
        self.write(Verdicts::Keep, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "INSERT INTO assess_usage(digest, repo, month, first_assessed_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                    &[&digest, &repo, &month, &at],
                )
                .await?;
                Ok((n > 0, n))
            })
        })
        .await
    }

    async fn usage(&self, from: &str, to: &str) -> Result<Vec<UsageRow>> {
        let rows = self
            .read(
                "SELECT repo, month, COUNT(*) FROM assess_usage WHERE month >= $1 AND month <= $2
                 GROUP BY repo, month ORDER BY month, repo",
                params![from.to_owned(), to.to_owned()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageRow {
                    repository: col(r, 0)?,
                    month: col(r, 1)?,
                    images: col::<i64>(r, 2)? as u64,
                })
            })
            .collect()
    }

    async fn prune(&self, before: &PruneBefore) -> Result<Pruned> {
        let before = *before;
        let version = i64::from(before.catalog_version);
        // Verdict-relevant, as on SQLite (one pass a day).
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let deliveries = exec(
                    t,
                    "DELETE FROM assess_deliveries WHERE state != 'pending' AND created_at < $1",
                    &[&before.deliveries],
                )
                .await?;
                let notified = exec(
                    t,
                    "DELETE FROM assess_notified n WHERE n.at < $1
                       OR NOT EXISTS (SELECT 1 FROM assess_images i WHERE i.digest = n.digest)",
                    &[&before.notified],
                )
                .await?;
                let tag_history = exec(
                    t,
                    "DELETE FROM assess_tag_history WHERE at < $1 AND id NOT IN (
                       SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY repo, tag ORDER BY id DESC) AS n
                                       FROM assess_tag_history) k WHERE n <= 2)",
                    &[&before.tag_history],
                )
                .await?;
                let layer_cache = exec(
                    t,
                    "DELETE FROM assess_layer_cache WHERE version != $2 OR (at < $1 AND layer NOT IN (
                       SELECT jsonb_array_elements_text(i.layers::jsonb) FROM assess_images i
                       WHERE i.layers IS NOT NULL))",
                    &[&before.layer_cache, &version],
                )
                .await?;
                let n = deliveries + notified + tag_history + layer_cache;
                let pruned = Pruned {
                    deliveries: deliveries as usize,
                    notified: notified as usize,
                    tag_history: tag_history as usize,
                    layer_cache: layer_cache as usize,
                };
                Ok((pruned, n))
            })
        })
        .await
    }

    async fn put_vex(&self, row: &VexRow) -> Result<Option<VexRow>> {
        let row = row.clone();
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let old = query_opt(
                    t,
                    &format!("SELECT {VEX_COLS} FROM assess_vex WHERE key = $1 FOR UPDATE"),
                    &[&row.key],
                )
                .await?
                .as_ref()
                .map(vex_row)
                .transpose()?;
                let data = row.data.to_string();
                let n = exec(
                    t,
                    "INSERT INTO assess_vex(key, doc_id, subject, source, data, created_at, recorded_by, not_applied)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (key) DO UPDATE SET doc_id = excluded.doc_id, subject = excluded.subject,
                       source = excluded.source, data = excluded.data, created_at = excluded.created_at,
                       recorded_by = excluded.recorded_by, not_applied = excluded.not_applied",
                    &[
                        &row.key,
                        &row.doc_id,
                        &row.subject,
                        &row.source,
                        &data,
                        &row.created_at,
                        &row.recorded_by,
                        &row.not_applied,
                    ],
                )
                .await?;
                Ok((old, n))
            })
        })
        .await
    }

    async fn vex_document(&self, key: &str) -> Result<Option<VexRow>> {
        let row = self
            .read_opt(
                format!("SELECT {VEX_COLS} FROM assess_vex WHERE key = $1"),
                params![key.to_owned()],
            )
            .await?;
        row.as_ref().map(vex_row).transpose()
    }

    async fn vex_documents(&self) -> Result<Vec<VexRow>> {
        let rows = self
            .read(
                format!("SELECT {VEX_COLS} FROM assess_vex ORDER BY created_at, key"),
                vec![],
            )
            .await?;
        rows.iter().map(vex_row).collect()
    }

    async fn delete_vex(&self, key: &str) -> Result<Option<VexRow>> {
        let key = key.to_owned();
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let old = query_opt(
                    t,
                    &format!("DELETE FROM assess_vex WHERE key = $1 RETURNING {VEX_COLS}"),
                    &[&key],
                )
                .await?
                .as_ref()
                .map(vex_row)
                .transpose()?;
                let n = u64::from(old.is_some());
                Ok((old, n))
            })
        })
        .await
    }

    async fn sbom(&self, subject: &str) -> Result<Option<SbomRow>> {
        let row = self
            .read_opt(
                "SELECT subject, repo, digest, catalog_version FROM assess_sboms WHERE subject = $1",
                params![subject.to_owned()],
            )
            .await?;
        row.map(|r| {
            Ok(SbomRow {
                subject: col(&r, 0)?,
                repo: col(&r, 1)?,
                digest: col(&r, 2)?,
                catalog_version: col_u32(&r, 3)?,
            })
        })
        .transpose()
    }

    async fn attached_sboms(&self) -> Result<HashSet<String>> {
        let rows = self.read("SELECT digest FROM assess_sboms", vec![]).await?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    async fn put_sbom(&self, row: &SbomRow, at: i64) -> Result<()> {
        let row = row.clone();
        let version = i64::from(row.catalog_version);
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "INSERT INTO assess_sboms(subject, repo, digest, catalog_version, created_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (subject) DO UPDATE SET repo = excluded.repo, digest = excluded.digest,
                       catalog_version = excluded.catalog_version, created_at = excluded.created_at",
                    &[&row.subject, &row.repo, &row.digest, &version, &at],
                )
                .await?;
                Ok(((), n))
            })
        })
        .await
    }

    async fn save_patch_job(&self, job: &PatchJobRow) -> Result<()> {
        let job = job.clone();
        self.write(Verdicts::Keep, move |t| {
            Box::pin(async move {
                let mut n = exec(
                    t,
                    "INSERT INTO assess_patch_jobs(id, repo, state, data, updated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO UPDATE SET repo = excluded.repo, state = excluded.state,
                       data = excluded.data, updated_at = excluded.updated_at",
                    &[&job.id, &job.repo, &job.state, &job.data, &job.updated_at],
                )
                .await?;
                if job.state != "running" {
                    n += exec(
                        t,
                        "DELETE FROM assess_patch_jobs WHERE state != 'running' AND id NOT IN
                           (SELECT id FROM assess_patch_jobs WHERE state != 'running'
                            ORDER BY updated_at DESC LIMIT $1)",
                        &[&KEEP_FINISHED_PATCH_JOBS],
                    )
                    .await?;
                }
                Ok(((), n))
            })
        })
        .await
    }

    async fn patch_job(&self, id: &str) -> Result<Option<String>> {
        let row = self
            .read_opt(
                "SELECT data FROM assess_patch_jobs WHERE id = $1",
                params![id.to_owned()],
            )
            .await?;
        row.map(|r| col(&r, 0)).transpose()
    }

    async fn patch_jobs_in_state(&self, state: &str) -> Result<Vec<String>> {
        let rows = self
            .read(
                "SELECT data FROM assess_patch_jobs WHERE state = $1 ORDER BY updated_at",
                params![state.to_owned()],
            )
            .await?;
        rows.iter().map(|r| col(r, 0)).collect()
    }
}
