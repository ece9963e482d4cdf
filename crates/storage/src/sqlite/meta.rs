//! [`Meta`] on SQLite.

use super::Db;
use crate::meta::{
    GcMarked, GcParams, KIND_BLOB, KIND_MANIFEST, ManifestRefs, ManifestRow, ManifestSummary, Meta,
    MetaError, NewManifest, PutManifestError, Referrer, StoredImportJob, UnlinkBlob, attach_refs,
    plan_sweep,
};
use oci::Digest;
use rusqlite::{OptionalExtension, params};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// The registry metadata in a SQLite file (the embedded default).
#[derive(Clone)]
pub struct SqliteMeta {
    pub(crate) db: Arc<Db>,
}

fn digest_col(s: String) -> rusqlite::Result<Digest> {
    Digest::parse(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn import_job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredImportJob> {
    let id: String = r.get(0)?;
    Ok(StoredImportJob {
        id: uuid::Uuid::parse_str(&id).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?,
        status: r.get(1)?,
        finished: r.get(2)?,
        heartbeat: r.get(3)?,
        cancel_requested: r.get(4)?,
    })
}

/// The SQL `LIMIT` for "at most n" (SQLite: -1 is none).
fn limit(n: Option<usize>) -> i64 {
    n.map(|n| n as i64).unwrap_or(-1)
}

impl SqliteMeta {
    /// Open (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteMeta, MetaError> {
        Ok(SqliteMeta {
            db: Db::open(path)?,
        })
    }
}

#[async_trait::async_trait]
impl Meta for SqliteMeta {
    fn describe(&self) -> String {
        format!("sqlite {}", self.db.path().display())
    }

    async fn change_version(&self) -> Result<i64, MetaError> {
        // The writer's data_version moves only when another connection
        // (another process: `drydock gc`) commits; readers never write.
        self.db
            .on_writer(|c| c.query_row("PRAGMA data_version", [], |r| r.get(0)))
            .await
    }

    async fn link_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        at: i64,
    ) -> Result<(), MetaError> {
        let (repo, d) = (repo.to_string(), digest.to_string());
        self.db
            .write(move |tx| {
                tx.execute(
                    "INSERT OR IGNORE INTO repos(name, created_at) VALUES (?1, ?2)",
                    params![repo, at],
                )?;
                tx.execute(
                    "INSERT INTO blob_links(repo, digest, size, linked_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(repo, digest) DO UPDATE SET linked_at = excluded.linked_at, size = excluded.size",
                    params![repo, d, size as i64, at],
                )?;
                Ok(())
            })
            .await
    }

    async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, MetaError> {
        let (repo, d) = (repo.to_string(), digest.to_string());
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT size FROM blob_links WHERE repo = ?1 AND digest = ?2")?
                    .query_row(params![repo, d], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .await
            .map(|s| s.map(|s| s as u64))
    }

    async fn blob_linked_anywhere(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        let d = digest.to_string();
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT size FROM blob_links WHERE digest = ?1 LIMIT 1")?
                    .query_row(params![d], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .await
            .map(|s| s.map(|s| s as u64))
    }

    async fn blob_repos(&self, digest: &Digest) -> Result<Vec<String>, MetaError> {
        let d = digest.to_string();
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT repo FROM blob_links WHERE digest = ?1 ORDER BY repo")?
                    .query_map(params![d], |r| r.get(0))?
                    .collect()
            })
            .await
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError> {
        let (repo, d) = (repo.to_string(), digest.to_string());
        self.db
            .write(move |tx| {
                Ok(tx.execute(
                    "DELETE FROM blob_links WHERE repo = ?1 AND digest = ?2",
                    params![repo, d],
                )? > 0)
            })
            .await
    }

    async fn unlink_unreferenced_blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<UnlinkBlob, MetaError> {
        let (repo, d) = (repo.to_string(), digest.to_string());
        // The check and the delete share the write lock, so a push cannot
        // slip a reference in between.
        self.db
            .write(move |tx| {
                // A tagged manifest is the more useful one to name.
                let holder: Option<(String, Option<String>)> = tx
                    .query_row(
                        "SELECT r.manifest,
                                (SELECT t.tag FROM tags t WHERE t.repo = r.repo AND t.digest = r.manifest
                                 ORDER BY t.tag LIMIT 1) AS tag
                         FROM manifest_refs r
                         WHERE r.repo = ?1 AND r.target = ?2 AND r.kind = ?3
                         ORDER BY tag IS NULL, r.manifest LIMIT 1",
                        params![repo, d, KIND_BLOB],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                if let Some((manifest, tag)) = holder {
                    return Ok(UnlinkBlob::Referenced {
                        manifest: digest_col(manifest)?,
                        tag,
                    });
                }
                let n = tx.execute(
                    "DELETE FROM blob_links WHERE repo = ?1 AND digest = ?2",
                    params![repo, d],
                )?;
                Ok(if n > 0 {
                    UnlinkBlob::Unlinked
                } else {
                    UnlinkBlob::NotLinked
                })
            })
            .await
    }

    async fn put_manifest(&self, m: NewManifest) -> Result<bool, PutManifestError> {
        // The reference checks and the inserts are one immediate
        // transaction: GC and blob deletes take the same write lock.
        self.db
            .write(move |tx| {
                for (d, size) in &m.blobs {
                    let actual: Option<i64> = tx
                        .query_row(
                            "SELECT size FROM blob_links WHERE repo = ?1 AND digest = ?2",
                            params![m.repo, d.to_string()],
                            |r| r.get(0),
                        )
                        .optional()?;
                    match actual {
                        None => return Ok(Err(PutManifestError::BlobUnknown(d.clone()))),
                        Some(a) if a as u64 != *size => {
                            return Ok(Err(PutManifestError::BlobSize {
                                digest: d.clone(),
                                expected: *size,
                                actual: a as u64,
                            }));
                        }
                        Some(_) => {}
                    }
                }
                for (d, size, media_type) in &m.children {
                    let row: Option<(i64, String)> = tx
                        .query_row(
                            "SELECT size, media_type FROM manifests WHERE repo = ?1 AND digest = ?2",
                            params![m.repo, d.to_string()],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()?;
                    if let Err(e) = check_child(d, *size, media_type, row) {
                        return Ok(Err(e));
                    }
                }
                tx.execute(
                    "INSERT OR IGNORE INTO repos(name, created_at) VALUES (?1, ?2)",
                    params![m.repo, m.at],
                )?;
                let digest = m.digest.to_string();
                let new = tx.execute(
                    "INSERT OR IGNORE INTO manifests(repo, digest, media_type, size, body, subject, artifact_type, annotations, origin, pushed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        m.repo,
                        digest,
                        m.media_type,
                        m.body.len() as i64,
                        m.body,
                        m.subject.as_ref().map(|s| s.to_string()),
                        m.artifact_type,
                        m.annotations,
                        m.origin,
                        m.at
                    ],
                )? > 0;
                if new {
                    let mut ins = tx.prepare_cached(
                        "INSERT OR IGNORE INTO manifest_refs(repo, manifest, target, kind) VALUES (?1, ?2, ?3, ?4)",
                    )?;
                    for (d, _) in &m.blobs {
                        ins.execute(params![m.repo, digest, d.to_string(), KIND_BLOB])?;
                    }
                    for (d, _, _) in &m.children {
                        ins.execute(params![m.repo, digest, d.to_string(), KIND_MANIFEST])?;
                    }
                }
                for tag in &m.tags {
                    tx.execute(
                        "INSERT INTO tags(repo, tag, digest, updated_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
                        params![m.repo, tag, digest, m.at],
                    )?;
                }
                Ok(Ok(new))
            })
            .await?
    }

    async fn manifest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<ManifestRow>, MetaError> {
        let (repo, digest) = (repo.to_string(), digest.clone());
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT media_type, body, subject FROM manifests WHERE repo = ?1 AND digest = ?2",
                )?
                .query_row(params![repo, digest.to_string()], |r| {
                    Ok(ManifestRow {
                        digest: digest.clone(),
                        media_type: r.get(0)?,
                        body: r.get(1)?,
                        subject: r.get(2)?,
                    })
                })
                .optional()
            })
            .await
    }

    async fn manifest_by_tag(
        &self,
        repo: &str,
        tag: &str,
    ) -> Result<Option<ManifestRow>, MetaError> {
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT m.digest, m.media_type, m.body, m.subject FROM tags t
                     JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
                     WHERE t.repo = ?1 AND t.tag = ?2",
                )?
                .query_row(params![repo, tag], |r| {
                    Ok(ManifestRow {
                        digest: digest_col(r.get(0)?)?,
                        media_type: r.get(1)?,
                        body: r.get(2)?,
                        subject: r.get(3)?,
                    })
                })
                .optional()
            })
            .await
    }

    async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<String>>, MetaError> {
        let (repo, d) = (repo.to_string(), digest.to_string());
        self.db
            .write(move |tx| {
                let tags: Vec<String> = tx
                    .prepare("SELECT tag FROM tags WHERE repo = ?1 AND digest = ?2 ORDER BY tag")?
                    .query_map(params![repo, d], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let n = tx.execute(
                    "DELETE FROM manifests WHERE repo = ?1 AND digest = ?2",
                    params![repo, d],
                )?;
                if n == 0 {
                    return Ok(None);
                }
                tx.execute(
                    "DELETE FROM tags WHERE repo = ?1 AND digest = ?2",
                    params![repo, d],
                )?;
                tx.execute(
                    "DELETE FROM manifest_refs WHERE repo = ?1 AND manifest = ?2",
                    params![repo, d],
                )?;
                Ok(Some(tags))
            })
            .await
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, MetaError> {
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.db
            .write(move |tx| {
                Ok(tx.execute(
                    "DELETE FROM tags WHERE repo = ?1 AND tag = ?2",
                    params![repo, tag],
                )? > 0)
            })
            .await
    }

    async fn repo_exists(&self, repo: &str) -> Result<bool, MetaError> {
        let repo = repo.to_string();
        self.db
            .read(move |c| {
                c.query_row("SELECT 1 FROM repos WHERE name = ?1", params![repo], |_| {
                    Ok(())
                })
                .optional()
            })
            .await
            .map(|r| r.is_some())
    }

    async fn tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<(String, Digest)>, MetaError> {
        let (repo, last) = (repo.to_string(), last.unwrap_or("").to_string());
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT tag, digest FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3",
                )?
                .query_map(params![repo, last, limit(n)], |r| {
                    Ok((r.get(0)?, digest_col(r.get(1)?)?))
                })?
                .collect()
            })
            .await
    }

    async fn repositories(
        &self,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<String>, MetaError> {
        let last = last.unwrap_or("").to_string();
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT name FROM repos WHERE name > ?1 ORDER BY name LIMIT ?2")?
                    .query_map(params![last, limit(n)], |r| r.get(0))?
                    .collect()
            })
            .await
    }

    async fn manifests(&self, repo: &str) -> Result<Vec<ManifestSummary>, MetaError> {
        let repo = repo.to_string();
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT m.digest, m.media_type, m.size, m.pushed_at,
                            (SELECT group_concat(tag, char(10)) FROM (SELECT tag FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest ORDER BY tag))
                     FROM manifests m WHERE m.repo = ?1 ORDER BY m.pushed_at DESC, m.digest",
                )?
                .query_map(params![repo], |r| {
                    let tags: Option<String> = r.get(4)?;
                    Ok(ManifestSummary {
                        digest: digest_col(r.get(0)?)?,
                        media_type: r.get(1)?,
                        size: r.get::<_, i64>(2)? as u64,
                        pushed_at: r.get(3)?,
                        tags: tags
                            .map(|t| t.split('\n').map(str::to_string).collect())
                            .unwrap_or_default(),
                    })
                })?
                .collect()
            })
            .await
    }

    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Referrer>, MetaError> {
        let (repo, subject) = (repo.to_string(), subject.to_string());
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
                     WHERE repo = ?1 AND subject = ?2 ORDER BY pushed_at, digest",
                )?
                .query_map(params![repo, subject], |r| {
                    Ok(Referrer {
                        digest: digest_col(r.get(0)?)?,
                        media_type: r.get(1)?,
                        size: r.get::<_, i64>(2)? as u64,
                        artifact_type: r.get(3)?,
                        annotations: r.get(4)?,
                    })
                })?
                .collect()
            })
            .await
    }

    async fn record_pulls(&self, pulls: Vec<(String, Digest, i64, u64)>) -> Result<(), MetaError> {
        if pulls.is_empty() {
            return Ok(());
        }
        self.db
            .write(move |tx| {
                let mut st = tx.prepare_cached(
                    "INSERT INTO pulls(repo, digest, last_pulled_at, count) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(repo, digest) DO UPDATE SET
                        last_pulled_at = max(last_pulled_at, excluded.last_pulled_at),
                        count = count + excluded.count",
                )?;
                for (repo, d, at, n) in &pulls {
                    st.execute(params![repo, d.to_string(), at, *n as i64])?;
                }
                Ok(())
            })
            .await
    }

    async fn recent_pulls(&self, since: i64) -> Result<Vec<(String, Digest, i64)>, MetaError> {
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT repo, digest, last_pulled_at FROM pulls WHERE last_pulled_at >= ?1 ORDER BY last_pulled_at",
                )?
                .query_map(params![since], |r| {
                    Ok((r.get(0)?, digest_col(r.get(1)?)?, r.get(2)?))
                })?
                .collect()
            })
            .await
    }

    async fn recent_pushes(&self, since: i64) -> Result<Vec<(String, Digest, i64)>, MetaError> {
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT repo, digest, pushed_at FROM manifests WHERE pushed_at >= ?1 ORDER BY pushed_at",
                )?
                .query_map(params![since], |r| {
                    Ok((r.get(0)?, digest_col(r.get(1)?)?, r.get(2)?))
                })?
                .collect()
            })
            .await
    }

    async fn removed_since(&self, seq: i64) -> Result<(Vec<(String, Digest)>, i64), MetaError> {
        self.db
            .read(move |c| {
                let last: i64 = c.query_row(
                    "SELECT COALESCE(MAX(seq), ?1) FROM manifests_removed",
                    params![seq],
                    |r| r.get(0),
                )?;
                let rows = c
                    .prepare_cached(
                        "SELECT g.repo, g.digest FROM manifests_removed g
                         WHERE g.seq > ?1 AND g.seq <= ?2
                           AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo = g.repo AND m.digest = g.digest)
                         ORDER BY g.seq",
                    )?
                    .query_map(params![seq, last], |r| {
                        Ok((r.get(0)?, digest_col(r.get(1)?)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((rows, last))
            })
            .await
    }

    async fn save_import_job(
        &self,
        id: uuid::Uuid,
        created_at: i64,
        status: String,
        finished: bool,
        heartbeat: i64,
    ) -> Result<bool, MetaError> {
        let id = id.to_string();
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO import_jobs(id, created_at, status, finished, heartbeat)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(id) DO UPDATE SET status = excluded.status,
                         finished = excluded.finished, heartbeat = excluded.heartbeat
                     RETURNING cancel_requested",
                )?
                .query_row(params![id, created_at, status, finished, heartbeat], |r| {
                    r.get::<_, bool>(0)
                })
            })
            .await
    }

    async fn import_job(&self, id: uuid::Uuid) -> Result<Option<StoredImportJob>, MetaError> {
        let id = id.to_string();
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT id, status, finished, heartbeat, cancel_requested
                     FROM import_jobs WHERE id = ?1",
                )?
                .query_row(params![id], import_job_row)
                .optional()
            })
            .await
    }

    async fn import_jobs(&self, n: usize) -> Result<Vec<StoredImportJob>, MetaError> {
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT id, status, finished, heartbeat, cancel_requested
                     FROM import_jobs ORDER BY created_at DESC, id LIMIT ?1",
                )?
                .query_map(params![n as i64], import_job_row)?
                .collect()
            })
            .await
    }

    async fn request_import_cancel(&self, id: uuid::Uuid) -> Result<bool, MetaError> {
        let id = id.to_string();
        self.db
            .write(move |tx| {
                Ok(tx.execute(
                    "UPDATE import_jobs SET cancel_requested = 1 WHERE id = ?1 AND NOT finished",
                    params![id],
                )? > 0)
            })
            .await
    }

    async fn prune_import_jobs(&self, keep: usize) -> Result<u64, MetaError> {
        self.db
            .write(move |tx| {
                Ok(tx.execute(
                    "DELETE FROM import_jobs WHERE finished AND id NOT IN
                       (SELECT id FROM import_jobs ORDER BY created_at DESC, id LIMIT ?1)",
                    params![keep as i64],
                )? as u64)
            })
            .await
    }

    async fn silent_import_jobs(&self, before: i64) -> Result<Vec<StoredImportJob>, MetaError> {
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT id, status, finished, heartbeat, cancel_requested
                     FROM import_jobs WHERE NOT finished AND heartbeat < ?1
                     ORDER BY created_at, id",
                )?
                .query_map(params![before], import_job_row)?
                .collect()
            })
            .await
    }

    async fn finish_silent_import_job(
        &self,
        id: uuid::Uuid,
        heartbeat: i64,
        status: String,
    ) -> Result<bool, MetaError> {
        let id = id.to_string();
        self.db
            .write(move |tx| {
                Ok(tx.execute(
                    "UPDATE import_jobs SET status = ?1, finished = 1
                     WHERE id = ?2 AND NOT finished AND heartbeat = ?3",
                    params![status, id, heartbeat],
                )? > 0)
            })
            .await
    }

    async fn gc_mark_and_sweep(&self, p: GcParams) -> Result<GcMarked, MetaError> {
        // One immediate transaction: manifest pushes check their
        // references under the same write lock, so the two serialise.
        self.db
            .write(move |tx| {
                let manifests = tx
                    .prepare("SELECT repo, digest, pushed_at, subject FROM manifests")?
                    .query_map([], |r| {
                        Ok(ManifestRefs {
                            repo: r.get(0)?,
                            digest: r.get(1)?,
                            pushed_at: r.get(2)?,
                            subject: r.get(3)?,
                            blobs: vec![],
                            children: vec![],
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let refs = tx
                    .prepare("SELECT repo, manifest, target, kind FROM manifest_refs")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                let all = attach_refs(manifests, refs);
                let tagged: HashSet<(String, String)> = tx
                    .prepare("SELECT repo, digest FROM tags")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let links: Vec<(String, String, i64)> = tx
                    .prepare("SELECT repo, digest, linked_at FROM blob_links")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?;
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
                    tx.execute(
                        "DELETE FROM manifests WHERE repo = ?1 AND digest = ?2",
                        params![repo, digest],
                    )?;
                    tx.execute(
                        "DELETE FROM manifest_refs WHERE repo = ?1 AND manifest = ?2",
                        params![repo, digest],
                    )?;
                }
                // A running server reads this journal when it notices the
                // database changed, and raises `ManifestDeleted` for each.
                tx.execute(
                    "DELETE FROM manifests_removed WHERE at < ?1",
                    params![p.prune_journal_before],
                )?;
                for (repo, digest) in &sweep.dead_manifests {
                    tx.execute(
                        "INSERT INTO manifests_removed(repo, digest, at) VALUES (?1, ?2, ?3)",
                        params![repo, digest, p.now],
                    )?;
                }
                for (repo, digest) in &sweep.dead_links {
                    tx.execute(
                        "DELETE FROM blob_links WHERE repo = ?1 AND digest = ?2",
                        params![repo, digest],
                    )?;
                }
                tx.execute(
                    "DELETE FROM repos WHERE created_at < ?1
                       AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo = repos.name)
                       AND NOT EXISTS (SELECT 1 FROM blob_links b WHERE b.repo = repos.name)",
                    params![p.cutoff],
                )?;
                Ok(marked)
            })
            .await
    }
}

/// Whether a child manifest row matches what the index says.
pub(crate) fn check_child(
    d: &Digest,
    size: u64,
    media_type: &str,
    row: Option<(i64, String)>,
) -> Result<(), PutManifestError> {
    match row {
        None => Err(PutManifestError::ChildUnknown(d.clone())),
        Some((s, _)) if s as u64 != size => Err(PutManifestError::ChildMismatch {
            digest: d.clone(),
            why: format!("it is {s} bytes, the index says {size}"),
        }),
        Some((_, t)) if t != media_type => Err(PutManifestError::ChildMismatch {
            digest: d.clone(),
            why: format!("its media type is {t}, the index says {media_type}"),
        }),
        Some(_) => Ok(()),
    }
}
