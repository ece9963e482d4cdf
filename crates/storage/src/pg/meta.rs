//! [`Meta`] on PostgreSQL.
//!
//! The invariants SQLite gets from its single write lock hold here by
//! locks taken explicitly (READ COMMITTED):
//! - A manifest push takes [`LOCK_GC`] shared and reads the blob links and
//!   child manifests it names `FOR SHARE`: a concurrent unlink or manifest
//!   delete waits for the push to commit (and the push, if it came
//!   second, finds the row gone and fails as if it had never been there).
//! - Unlinking a blob locks its link row `FOR UPDATE` before looking for
//!   manifests that reference it, so a push cannot add a reference in
//!   between.
//! - GC's mark-and-sweep takes [`LOCK_GC`] exclusively, so it runs
//!   between pushes and blob links, never across one, on any node.

use super::{LOCK_GC, Pg, PgConfig, col, params};
use crate::meta::{
    GcMarked, GcParams, KIND_BLOB, KIND_MANIFEST, ManifestRefs, ManifestRow, ManifestSummary, Meta,
    MetaError, NewManifest, PutManifestError, Referrer, StoredImportJob, UnlinkBlob, attach_refs,
    parse_digest, plan_sweep,
};
use crate::sqlite::meta::check_child;
use oci::Digest;
use std::collections::HashSet;
use std::sync::Arc;

/// The registry metadata in PostgreSQL, shared by every node.
#[derive(Clone)]
pub struct PgMeta {
    pub(crate) pg: Arc<Pg>,
}

impl PgMeta {
    /// Connect and migrate the schema.
    pub fn connect(cfg: &PgConfig) -> Result<PgMeta, MetaError> {
        Ok(PgMeta {
            pg: Arc::new(Pg::connect(cfg)?),
        })
    }
}

const BUMP: &str = "UPDATE meta_version SET value = value + 1 WHERE id = 0";

fn import_job_row(r: &tokio_postgres::Row) -> Result<StoredImportJob, MetaError> {
    let id: String = col(r, 0)?;
    Ok(StoredImportJob {
        id: uuid::Uuid::parse_str(&id)
            .map_err(|e| MetaError::Backend(format!("stored import job id: {e}")))?,
        status: col(r, 1)?,
        finished: col(r, 2)?,
        heartbeat: col(r, 3)?,
        cancel_requested: col(r, 4)?,
    })
}

/// A `(repo, digest, time)` row, as the recent pulls and pushes read it.
fn repo_digest_at(r: &tokio_postgres::Row) -> Result<(String, Digest, i64), MetaError> {
    Ok((col(r, 0)?, parse_digest(&col::<String>(r, 1)?)?, col(r, 2)?))
}

#[async_trait::async_trait]
impl Meta for PgMeta {
    fn describe(&self) -> String {
        self.pg.describe.clone()
    }

    async fn cluster_lock(
        &self,
        lock: crate::ClusterLock,
    ) -> Result<Option<crate::MetaLock>, MetaError> {
        self.pg.cluster_lock(lock).await.map(Some)
    }

    async fn try_cluster_lock(
        &self,
        lock: crate::ClusterLock,
    ) -> Result<Option<crate::MetaLock>, MetaError> {
        self.pg.try_cluster_lock(lock).await.map(Some)
    }

    fn lead(&self, duty: crate::Duty, retry: std::time::Duration) -> crate::Leadership {
        self.pg.lead(duty, retry)
    }

    async fn change_version(&self) -> Result<i64, MetaError> {
        let r = self
            .pg
            .query_one("SELECT value FROM meta_version WHERE id = 0", params![])
            .await?;
        col(&r, 0)
    }

    async fn link_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        at: i64,
    ) -> Result<(), MetaError> {
        let (repo, d) = (repo.to_string(), digest.to_string());
        self.pg
            .tx(move |t| {
                Box::pin(async move {
                    t.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&LOCK_GC])
                        .await?;
                    t.execute(
                        "INSERT INTO repos(name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&repo, &at],
                    )
                    .await?;
                    t.execute(
                        "INSERT INTO blob_links(repo, digest, size, linked_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT(repo, digest) DO UPDATE SET linked_at = excluded.linked_at, size = excluded.size",
                        &[&repo, &d, &(size as i64), &at],
                    )
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, MetaError> {
        self.pg
            .query_opt(
                "SELECT size FROM blob_links WHERE repo = $1 AND digest = $2",
                params![repo.to_string(), digest.to_string()],
            )
            .await?
            .map(|r| Ok(col::<i64>(&r, 0)? as u64))
            .transpose()
    }

    async fn blob_linked_anywhere(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        self.pg
            .query_opt(
                "SELECT size FROM blob_links WHERE digest = $1 LIMIT 1",
                params![digest.to_string()],
            )
            .await?
            .map(|r| Ok(col::<i64>(&r, 0)? as u64))
            .transpose()
    }

    async fn blob_repos(&self, digest: &Digest) -> Result<Vec<String>, MetaError> {
        self.pg
            .query(
                "SELECT repo FROM blob_links WHERE digest = $1 ORDER BY repo",
                params![digest.to_string()],
            )
            .await?
            .iter()
            .map(|r| col(r, 0))
            .collect()
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError> {
        let n = self
            .pg
            .execute(
                "DELETE FROM blob_links WHERE repo = $1 AND digest = $2",
                params![repo.to_string(), digest.to_string()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn unlink_unreferenced_blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<UnlinkBlob, MetaError> {
        let (repo, d) = (repo.to_string(), digest.to_string());
        self.pg
            .tx(move |t| {
                Box::pin(async move {
                    t.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&LOCK_GC])
                        .await?;
                    // Lock the link first: a push reading it FOR SHARE now waits,
                    // and one that committed before is visible to the next query.
                    let linked = t
                        .query_opt(
                            "SELECT 1 FROM blob_links WHERE repo = $1 AND digest = $2 FOR UPDATE",
                            &[&repo, &d],
                        )
                        .await?;
                    if linked.is_none() {
                        return Ok(UnlinkBlob::NotLinked);
                    }
                    let holder = t
                        .query_opt(
                            "SELECT manifest, tag FROM (
                                 SELECT r.manifest,
                                        (SELECT t.tag FROM tags t WHERE t.repo = r.repo AND t.digest = r.manifest
                                         ORDER BY t.tag LIMIT 1) AS tag
                                 FROM manifest_refs r
                                 WHERE r.repo = $1 AND r.target = $2 AND r.kind = $3
                             ) h ORDER BY tag IS NULL, manifest LIMIT 1",
                            &[&repo, &d, &KIND_BLOB],
                        )
                        .await?;
                    if let Some(h) = holder {
                        return Ok(UnlinkBlob::Referenced {
                            manifest: parse_digest(&col::<String>(&h, 0)?)?,
                            tag: col(&h, 1)?,
                        });
                    }
                    t.execute(
                        "DELETE FROM blob_links WHERE repo = $1 AND digest = $2",
                        &[&repo, &d],
                    )
                    .await?;
                    Ok(UnlinkBlob::Unlinked)
                })
            })
            .await
    }

    async fn put_manifest(&self, m: NewManifest) -> Result<bool, PutManifestError> {
        // A refusal is an `Err`, so the transaction (locks and reads
        // only, by then) is rolled back.
        self.pg
            .tx(move |t| {
                Box::pin(async move {
                    t.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&LOCK_GC])
                        .await?;
                    for (d, size) in &m.blobs {
                        let actual = t
                            .query_opt(
                                "SELECT size FROM blob_links WHERE repo = $1 AND digest = $2 FOR SHARE",
                                &[&m.repo, &d.to_string()],
                            )
                            .await?;
                        match actual {
                            None => return Err(PutManifestError::BlobUnknown(d.clone())),
                            Some(r) => {
                                let a = col::<i64>(&r, 0)? as u64;
                                if a != *size {
                                    return Err(PutManifestError::BlobSize {
                                        digest: d.clone(),
                                        expected: *size,
                                        actual: a,
                                    });
                                }
                            }
                        }
                    }
                    for (d, size, media_type) in &m.children {
                        let row = match t
                            .query_opt(
                                "SELECT size, media_type FROM manifests WHERE repo = $1 AND digest = $2 FOR SHARE",
                                &[&m.repo, &d.to_string()],
                            )
                            .await?
                        {
                            Some(r) => Some((col::<i64>(&r, 0)?, col::<String>(&r, 1)?)),
                            None => None,
                        };
                        check_child(d, *size, media_type, row)?;
                    }
                    t.execute(
                        "INSERT INTO repos(name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&m.repo, &m.at],
                    )
                    .await?;
                    let digest = m.digest.to_string();
                    let subject = m.subject.as_ref().map(|s| s.to_string());
                    let new = t
                        .execute(
                            "INSERT INTO manifests(repo, digest, media_type, size, body, subject, artifact_type, annotations, origin, pushed_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                            &[
                                &m.repo,
                                &digest,
                                &m.media_type,
                                &(m.body.len() as i64),
                                &m.body,
                                &subject,
                                &m.artifact_type,
                                &m.annotations,
                                &m.origin,
                                &m.at,
                            ],
                        )
                        .await?
                        > 0;
                    if new {
                        const REF: &str = "INSERT INTO manifest_refs(repo, manifest, target, kind) VALUES ($1, $2, $3, $4)
                             ON CONFLICT DO NOTHING";
                        for (d, _) in &m.blobs {
                            t.execute(REF, &[&m.repo, &digest, &d.to_string(), &KIND_BLOB])
                                .await?;
                        }
                        for (d, _, _) in &m.children {
                            t.execute(REF, &[&m.repo, &digest, &d.to_string(), &KIND_MANIFEST])
                                .await?;
                        }
                    }
                    for tag in &m.tags {
                        t.execute(
                            "INSERT INTO tags(repo, tag, digest, updated_at) VALUES ($1, $2, $3, $4)
                             ON CONFLICT(repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
                            &[&m.repo, tag, &digest, &m.at],
                        )
                        .await?;
                    }
                    t.execute(BUMP, &[]).await?;
                    Ok(new)
                })
            })
            .await
    }

    async fn manifest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<ManifestRow>, MetaError> {
        self.pg
            .query_opt(
                "SELECT media_type, body, subject FROM manifests WHERE repo = $1 AND digest = $2",
                params![repo.to_string(), digest.to_string()],
            )
            .await?
            .map(|r| {
                Ok(ManifestRow {
                    digest: digest.clone(),
                    media_type: col(&r, 0)?,
                    body: col(&r, 1)?,
                    subject: col(&r, 2)?,
                })
            })
            .transpose()
    }

    async fn manifest_by_tag(
        &self,
        repo: &str,
        tag: &str,
    ) -> Result<Option<ManifestRow>, MetaError> {
        self.pg
            .query_opt(
                "SELECT m.digest, m.media_type, m.body, m.subject FROM tags t
                 JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
                 WHERE t.repo = $1 AND t.tag = $2",
                params![repo.to_string(), tag.to_string()],
            )
            .await?
            .map(|r| {
                Ok(ManifestRow {
                    digest: parse_digest(&col::<String>(&r, 0)?)?,
                    media_type: col(&r, 1)?,
                    body: col(&r, 2)?,
                    subject: col(&r, 3)?,
                })
            })
            .transpose()
    }

    async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<String>>, MetaError> {
        let (repo, d) = (repo.to_string(), digest.to_string());
        self.pg
            .tx(move |t| {
                Box::pin(async move {
                    let n = t
                        .execute(
                            "DELETE FROM manifests WHERE repo = $1 AND digest = $2",
                            &[&repo, &d],
                        )
                        .await?;
                    if n == 0 {
                        return Ok(None);
                    }
                    let mut tags = t
                        .query(
                            "DELETE FROM tags WHERE repo = $1 AND digest = $2 RETURNING tag",
                            &[&repo, &d],
                        )
                        .await?
                        .iter()
                        .map(|r| col::<String>(r, 0))
                        .collect::<Result<Vec<_>, _>>()?;
                    tags.sort();
                    t.execute(
                        "DELETE FROM manifest_refs WHERE repo = $1 AND manifest = $2",
                        &[&repo, &d],
                    )
                    .await?;
                    t.execute(BUMP, &[]).await?;
                    Ok(Some(tags))
                })
            })
            .await
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, MetaError> {
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.pg
            .tx(move |t| {
                Box::pin(async move {
                    let n = t
                        .execute(
                            "DELETE FROM tags WHERE repo = $1 AND tag = $2",
                            &[&repo, &tag],
                        )
                        .await?;
                    if n > 0 {
                        t.execute(BUMP, &[]).await?;
                    }
                    Ok(n > 0)
                })
            })
            .await
    }

    async fn repo_exists(&self, repo: &str) -> Result<bool, MetaError> {
        Ok(self
            .pg
            .query_opt(
                "SELECT 1 FROM repos WHERE name = $1",
                params![repo.to_string()],
            )
            .await?
            .is_some())
    }

    async fn tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<(String, Digest)>, MetaError> {
        self.pg
            .query(
                "SELECT tag, digest FROM tags WHERE repo = $1 AND tag > $2 ORDER BY tag LIMIT $3",
                params![
                    repo.to_string(),
                    last.unwrap_or("").to_string(),
                    n.map(|n| n as i64)
                ],
            )
            .await?
            .iter()
            .map(|r| Ok((col(r, 0)?, parse_digest(&col::<String>(r, 1)?)?)))
            .collect()
    }

    async fn repositories(
        &self,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<String>, MetaError> {
        self.pg
            .query(
                "SELECT name FROM repos WHERE name > $1 ORDER BY name LIMIT $2",
                params![last.unwrap_or("").to_string(), n.map(|n| n as i64)],
            )
            .await?
            .iter()
            .map(|r| col(r, 0))
            .collect()
    }

    async fn manifests(&self, repo: &str) -> Result<Vec<ManifestSummary>, MetaError> {
        self.pg
            .query(
                "SELECT m.digest, m.media_type, m.size, m.pushed_at,
                        ARRAY(SELECT t.tag FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest ORDER BY t.tag)
                 FROM manifests m WHERE m.repo = $1 ORDER BY m.pushed_at DESC, m.digest",
                params![repo.to_string()],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(ManifestSummary {
                    digest: parse_digest(&col::<String>(r, 0)?)?,
                    media_type: col(r, 1)?,
                    size: col::<i64>(r, 2)? as u64,
                    pushed_at: col(r, 3)?,
                    tags: col(r, 4)?,
                })
            })
            .collect()
    }

    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Referrer>, MetaError> {
        self.pg
            .query(
                "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
                 WHERE repo = $1 AND subject = $2 ORDER BY pushed_at, digest",
                params![repo.to_string(), subject.to_string()],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(Referrer {
                    digest: parse_digest(&col::<String>(r, 0)?)?,
                    media_type: col(r, 1)?,
                    size: col::<i64>(r, 2)? as u64,
                    artifact_type: col(r, 3)?,
                    annotations: col(r, 4)?,
                })
            })
            .collect()
    }

    async fn record_pulls(&self, pulls: Vec<(String, Digest, i64, u64)>) -> Result<(), MetaError> {
        if pulls.is_empty() {
            return Ok(());
        }
        self.pg
            .tx(move |t| {
                Box::pin(async move {
                    for (repo, d, at, n) in &pulls {
                        t.execute(
                            "INSERT INTO pulls(repo, digest, last_pulled_at, count) VALUES ($1, $2, $3, $4)
                             ON CONFLICT(repo, digest) DO UPDATE SET
                                last_pulled_at = GREATEST(pulls.last_pulled_at, excluded.last_pulled_at),
                                count = pulls.count + excluded.count",
                            &[repo, &d.to_string(), at, &(*n as i64)],
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn recent_pulls(&self, since: i64) -> Result<Vec<(String, Digest, i64)>, MetaError> {
        self.pg
            .query(
                "SELECT repo, digest, last_pulled_at FROM pulls WHERE last_pulled_at >= $1 ORDER BY last_pulled_at",
                params![since],
            )
            .await?
            .iter()
            .map(repo_digest_at)
            .collect()
    }

    async fn recent_pushes(&self, since: i64) -> Result<Vec<(String, Digest, i64)>, MetaError> {
        self.pg
            .query(
                "SELECT repo, digest, pushed_at FROM manifests WHERE pushed_at >= $1 ORDER BY pushed_at",
                params![since],
            )
            .await?
            .iter()
            .map(repo_digest_at)
            .collect()
    }

    async fn removed_since(&self, seq: i64) -> Result<(Vec<(String, Digest)>, i64), MetaError> {
        let last: i64 = col(
            &self
                .pg
                .query_one(
                    "SELECT COALESCE(MAX(seq), $1) FROM manifests_removed",
                    params![seq],
                )
                .await?,
            0,
        )?;
        let rows = self
            .pg
            .query(
                "SELECT g.repo, g.digest FROM manifests_removed g
                 WHERE g.seq > $1 AND g.seq <= $2
                   AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo = g.repo AND m.digest = g.digest)
                 ORDER BY g.seq",
                params![seq, last],
            )
            .await?
            .iter()
            .map(|r| Ok((col(r, 0)?, parse_digest(&col::<String>(r, 1)?)?)))
            .collect::<Result<Vec<_>, MetaError>>()?;
        Ok((rows, last))
    }

    async fn save_import_job(
        &self,
        id: uuid::Uuid,
        created_at: i64,
        status: String,
        finished: bool,
        heartbeat: i64,
    ) -> Result<bool, MetaError> {
        let r = self
            .pg
            .query_one(
                "INSERT INTO import_jobs(id, created_at, status, finished, heartbeat)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT(id) DO UPDATE SET status = excluded.status,
                     finished = excluded.finished, heartbeat = excluded.heartbeat
                 RETURNING cancel_requested",
                params![id.to_string(), created_at, status, finished, heartbeat],
            )
            .await?;
        col(&r, 0)
    }

    async fn import_job(&self, id: uuid::Uuid) -> Result<Option<StoredImportJob>, MetaError> {
        self.pg
            .query_opt(
                "SELECT id, status, finished, heartbeat, cancel_requested
                 FROM import_jobs WHERE id = $1",
                params![id.to_string()],
            )
            .await?
            .as_ref()
            .map(import_job_row)
            .transpose()
    }

    async fn import_jobs(&self, n: usize) -> Result<Vec<StoredImportJob>, MetaError> {
        self.pg
            .query(
                "SELECT id, status, finished, heartbeat, cancel_requested
                 FROM import_jobs ORDER BY created_at DESC, id LIMIT $1",
                params![n as i64],
            )
            .await?
            .iter()
            .map(import_job_row)
            .collect()
    }

    async fn request_import_cancel(&self, id: uuid::Uuid) -> Result<bool, MetaError> {
        Ok(self
            .pg
            .execute(
                "UPDATE import_jobs SET cancel_requested = TRUE WHERE id = $1 AND NOT finished",
                params![id.to_string()],
            )
            .await?
            > 0)
    }

    async fn prune_import_jobs(&self, keep: usize) -> Result<u64, MetaError> {
        self.pg
            .execute(
                "DELETE FROM import_jobs WHERE finished AND id NOT IN
                   (SELECT id FROM import_jobs ORDER BY created_at DESC, id LIMIT $1)",
                params![keep as i64],
            )
            .await
    }

    async fn silent_import_jobs(&self, before: i64) -> Result<Vec<StoredImportJob>, MetaError> {
        self.pg
            .query(
                "SELECT id, status, finished, heartbeat, cancel_requested
                 FROM import_jobs WHERE NOT finished AND heartbeat < $1
                 ORDER BY created_at, id",
                params![before],
            )
            .await?
            .iter()
            .map(import_job_row)
            .collect()
    }

    async fn finish_silent_import_job(
        &self,
        id: uuid::Uuid,
        heartbeat: i64,
        status: String,
    ) -> Result<bool, MetaError> {
        Ok(self
            .pg
            .execute(
                "UPDATE import_jobs SET status = $1, finished = TRUE
                 WHERE id = $2 AND NOT finished AND heartbeat = $3",
                params![status, id.to_string(), heartbeat],
            )
            .await?
            > 0)
    }

    async fn gc_mark_and_sweep(&self, p: GcParams) -> Result<GcMarked, MetaError> {
        self.pg
            .tx(move |t| {
                Box::pin(async move {
                    // Exclusive against pushes and links on every node; every
                    // statement after it sees all that committed before.
                    t.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_GC])
                        .await?;
                    let manifests = t
                        .query(
                            "SELECT repo, digest, pushed_at, subject FROM manifests",
                            &[],
                        )
                        .await?
                        .iter()
                        .map(|r| {
                            Ok(ManifestRefs {
                                repo: col(r, 0)?,
                                digest: col(r, 1)?,
                                pushed_at: col(r, 2)?,
                                subject: col(r, 3)?,
                                blobs: vec![],
                                children: vec![],
                            })
                        })
                        .collect::<Result<Vec<_>, MetaError>>()?;
                    let refs = t
                        .query(
                            "SELECT repo, manifest, target, kind FROM manifest_refs",
                            &[],
                        )
                        .await?
                        .iter()
                        .map(|r| Ok((col(r, 0)?, col(r, 1)?, col(r, 2)?, col(r, 3)?)))
                        .collect::<Result<Vec<_>, MetaError>>()?;
                    let all = attach_refs(manifests, refs);
                    let tagged: HashSet<(String, String)> = t
                        .query("SELECT repo, digest FROM tags", &[])
                        .await?
                        .iter()
                        .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
                        .collect::<Result<_, MetaError>>()?;
                    let links: Vec<(String, String, i64)> = t
                        .query("SELECT repo, digest, linked_at FROM blob_links", &[])
                        .await?
                        .iter()
                        .map(|r| Ok((col(r, 0)?, col(r, 1)?, col(r, 2)?)))
                        .collect::<Result<_, MetaError>>()?;
                    let sweep = plan_sweep(&all, &tagged, links, p.cutoff);
                    let marked = GcMarked {
                        manifests_removed: sweep.dead_manifests.len() as u64,
                        links_removed: sweep.dead_links.len() as u64,
                        live_blobs: sweep.live_blobs,
                        linked: sweep.linked,
                    };
                    if p.dry_run {
                        return Ok(marked);
                    }
                    for (repo, digest) in &sweep.dead_manifests {
                        t.execute(
                            "DELETE FROM manifests WHERE repo = $1 AND digest = $2",
                            &[repo, digest],
                        )
                        .await?;
                        t.execute(
                            "DELETE FROM manifest_refs WHERE repo = $1 AND manifest = $2",
                            &[repo, digest],
                        )
                        .await?;
                    }
                    t.execute(
                        "DELETE FROM manifests_removed WHERE at < $1",
                        &[&p.prune_journal_before],
                    )
                    .await?;
                    for (repo, digest) in &sweep.dead_manifests {
                        t.execute(
                            "INSERT INTO manifests_removed(repo, digest, at) VALUES ($1, $2, $3)",
                            &[repo, digest, &p.now],
                        )
                        .await?;
                    }
                    for (repo, digest) in &sweep.dead_links {
                        t.execute(
                            "DELETE FROM blob_links WHERE repo = $1 AND digest = $2",
                            &[repo, digest],
                        )
                        .await?;
                    }
                    t.execute(
                        "DELETE FROM repos WHERE created_at < $1
                           AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo = repos.name)
                           AND NOT EXISTS (SELECT 1 FROM blob_links b WHERE b.repo = repos.name)",
                        &[&p.cutoff],
                    )
                    .await?;
                    if !sweep.dead_manifests.is_empty() {
                        t.execute(BUMP, &[]).await?;
                    }
                    Ok(marked)
                })
            })
            .await
    }
}
