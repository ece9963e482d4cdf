//! The metadata store: one SQLite database (WAL) in the data directory.
//!
//! It records which blobs each repository may serve (links), manifests
//! (their bytes included: they are small and must change atomically with
//! their tags), what each manifest references, tags, and the pull record.
//! Every change is one transaction; manifest pushes check their references
//! inside the same write transaction, so a concurrent delete or GC can
//! never leave a manifest pointing at a missing blob, nor a tag at a
//! missing manifest.

use oci::Digest;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// A database failure.
#[derive(Debug, thiserror::Error)]
#[error("metadata database: {0}")]
pub struct MetaError(#[from] pub rusqlite::Error);

impl MetaError {
    /// SQLite could not write because the disk (or quota) is full.
    pub fn is_storage_full(&self) -> bool {
        match &self.0 {
            rusqlite::Error::SqliteFailure(e, _) => e.code == rusqlite::ErrorCode::DiskFull,
            _ => false,
        }
    }
}

/// Why a manifest could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PutManifestError {
    #[error("blob {0} is not known in this repository")]
    BlobUnknown(Digest),
    #[error("blob {digest} is {actual} bytes, the manifest says {expected}")]
    BlobSize {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("manifest {0} is not known in this repository")]
    ChildUnknown(Digest),
    #[error("manifest {digest}: {why}")]
    ChildMismatch { digest: Digest, why: String },
    #[error(transparent)]
    Db(#[from] MetaError),
}

impl From<rusqlite::Error> for PutManifestError {
    fn from(e: rusqlite::Error) -> Self {
        PutManifestError::Db(MetaError(e))
    }
}

/// A manifest to store, already parsed and validated by the caller.
#[derive(Debug, Clone)]
pub struct NewManifest<'a> {
    pub repo: &'a str,
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub body: &'a [u8],
    pub subject: Option<&'a Digest>,
    pub artifact_type: Option<&'a str>,
    /// JSON object of the manifest's annotations, if any.
    pub annotations: Option<String>,
    /// Blobs that must be linked to the repository, with their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Manifests that must exist in the repository: digest, size, media type.
    pub children: Vec<(Digest, u64, String)>,
    /// Tags to point at this manifest.
    pub tags: Vec<String>,
    /// `push` or `import`.
    pub origin: &'a str,
    /// Unix nanoseconds.
    pub at: i64,
}

/// A stored manifest's bytes and type.
#[derive(Debug, Clone)]
pub struct ManifestRow {
    pub digest: Digest,
    pub media_type: String,
    pub body: Vec<u8>,
    pub subject: Option<String>,
}

/// A manifest's summary.
#[derive(Debug, Clone)]
pub struct ManifestSummary {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub pushed_at: i64,
    pub tags: Vec<String>,
}

/// A referrer of a subject.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// The outcome of [`Meta::unlink_unreferenced_blob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlinkBlob {
    Unlinked,
    /// The repository did not link the blob.
    NotLinked,
    /// A manifest of the repository references the blob (a tagged one if
    /// any, with one of its tags); nothing changed.
    Referenced {
        manifest: Digest,
        tag: Option<String>,
    },
}

/// What a manifest references (for GC).
#[derive(Debug, Clone)]
pub struct ManifestRefs {
    pub repo: String,
    pub digest: String,
    pub pushed_at: i64,
    pub subject: Option<String>,
    pub blobs: Vec<String>,
    pub children: Vec<String>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS repos (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blob_links (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blob_links_digest ON blob_links(digest);
CREATE TABLE IF NOT EXISTS manifests (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL,
    subject TEXT,
    artifact_type TEXT,
    annotations TEXT,
    origin TEXT NOT NULL,
    pushed_at INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests(repo, subject) WHERE subject IS NOT NULL;
CREATE INDEX IF NOT EXISTS manifests_pushed ON manifests(pushed_at);
CREATE TABLE IF NOT EXISTS manifest_refs (
    repo TEXT NOT NULL,
    manifest TEXT NOT NULL,
    target TEXT NOT NULL,
    kind INTEGER NOT NULL, -- 0 blob, 1 manifest
    PRIMARY KEY (repo, manifest, kind, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifest_refs_target ON manifest_refs(target);
CREATE TABLE IF NOT EXISTS tags (
    repo TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_digest ON tags(repo, digest);
CREATE TABLE IF NOT EXISTS pulls (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    last_pulled_at INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pulls_time ON pulls(last_pulled_at);
-- Manifests removed by another process (GC), so a running server can tell
-- its event sinks; pruned by GC after a week.
CREATE TABLE IF NOT EXISTS manifests_removed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    at INTEGER NOT NULL
);
"#;

const KIND_BLOB: i64 = 0;
const KIND_MANIFEST: i64 = 1;

/// The metadata database.
pub struct Meta {
    conn: Mutex<Connection>,
}

fn digest_col(s: String) -> rusqlite::Result<Digest> {
    Digest::parse(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Meta {
    /// Open (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Meta, MetaError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Meta {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A counter that changes when another connection (another process,
    /// e.g. `drydock gc`) commits. Used to invalidate caches.
    pub fn data_version(&self) -> Result<i64, MetaError> {
        Ok(self
            .conn()
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// Link a committed blob to a repository (creating the repository).
    pub fn link_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        at: i64,
    ) -> Result<(), MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR IGNORE INTO repos(name, created_at) VALUES (?1, ?2)",
            params![repo, at],
        )?;
        tx.execute(
            "INSERT INTO blob_links(repo, digest, size, linked_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(repo, digest) DO UPDATE SET linked_at = excluded.linked_at, size = excluded.size",
            params![repo, digest.to_string(), size as i64, at],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The size of a blob linked to `repo`.
    pub fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, MetaError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT size FROM blob_links WHERE repo = ?1 AND digest = ?2",
                params![repo, digest.to_string()],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|s| s as u64))
    }

    /// Whether any repository links the blob.
    pub fn blob_linked_anywhere(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT size FROM blob_links WHERE digest = ?1 LIMIT 1",
                params![digest.to_string()],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|s| s as u64))
    }

    /// The repositories a blob is linked to, in lexical order (to choose a
    /// mount source the caller may read).
    pub fn blob_repos(&self, digest: &Digest) -> Result<Vec<String>, MetaError> {
        let conn = self.conn();
        let mut st =
            conn.prepare_cached("SELECT repo FROM blob_links WHERE digest = ?1 ORDER BY repo")?;
        st.query_map(params![digest.to_string()], |r| r.get(0))?
            .collect::<Result<_, _>>()
            .map_err(MetaError)
    }

    /// Unlink a blob from a repository. `false` when it was not linked.
    pub fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError> {
        Ok(self.conn().execute(
            "DELETE FROM blob_links WHERE repo = ?1 AND digest = ?2",
            params![repo, digest.to_string()],
        )? > 0)
    }

    /// Unlink a blob from a repository unless a manifest of that repository
    /// still references it: the check and the unlink are one write
    /// transaction, so a concurrent push cannot slip a reference in between.
    pub fn unlink_unreferenced_blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<UnlinkBlob, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let d = digest.to_string();
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
        tx.commit()?;
        Ok(if n > 0 {
            UnlinkBlob::Unlinked
        } else {
            UnlinkBlob::NotLinked
        })
    }

    /// Store a manifest and point its tags at it, after checking, in the
    /// same transaction, that everything it references is present.
    /// Returns `true` if the manifest is new to the repository.
    pub fn put_manifest(&self, m: &NewManifest<'_>) -> Result<bool, PutManifestError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (d, size) in &m.blobs {
            let actual: Option<i64> = tx
                .query_row(
                    "SELECT size FROM blob_links WHERE repo = ?1 AND digest = ?2",
                    params![m.repo, d.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            match actual {
                None => return Err(PutManifestError::BlobUnknown(d.clone())),
                Some(a) if a as u64 != *size => {
                    return Err(PutManifestError::BlobSize {
                        digest: d.clone(),
                        expected: *size,
                        actual: a as u64,
                    });
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
            match row {
                None => return Err(PutManifestError::ChildUnknown(d.clone())),
                Some((s, _)) if s as u64 != *size => {
                    return Err(PutManifestError::ChildMismatch {
                        digest: d.clone(),
                        why: format!("it is {s} bytes, the index says {size}"),
                    });
                }
                Some((_, t)) if t != *media_type => {
                    return Err(PutManifestError::ChildMismatch {
                        digest: d.clone(),
                        why: format!("its media type is {t}, the index says {media_type}"),
                    });
                }
                Some(_) => {}
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
                m.subject.map(|s| s.to_string()),
                m.artifact_type,
                m.annotations,
                m.origin,
                m.at
            ],
        )? > 0;
        if new {
            let mut ins = tx.prepare(
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
        tx.commit()?;
        Ok(new)
    }

    /// A manifest by digest.
    pub fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<ManifestRow>, MetaError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT media_type, body, subject FROM manifests WHERE repo = ?1 AND digest = ?2",
                params![repo, digest.to_string()],
                |r| {
                    Ok(ManifestRow {
                        digest: digest.clone(),
                        media_type: r.get(0)?,
                        body: r.get(1)?,
                        subject: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// A manifest by tag.
    pub fn manifest_by_tag(&self, repo: &str, tag: &str) -> Result<Option<ManifestRow>, MetaError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT m.digest, m.media_type, m.body, m.subject FROM tags t
                 JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
                 WHERE t.repo = ?1 AND t.tag = ?2",
                params![repo, tag],
                |r| {
                    Ok(ManifestRow {
                        digest: digest_col(r.get(0)?)?,
                        media_type: r.get(1)?,
                        body: r.get(2)?,
                        subject: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Delete a manifest and every tag pointing at it. Returns the tags
    /// removed, or `None` when the manifest was not there.
    pub fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<String>>, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let d = digest.to_string();
        let tags: Vec<String> = {
            let mut st = tx.prepare("SELECT tag FROM tags WHERE repo = ?1 AND digest = ?2")?;
            st.query_map(params![repo, d], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
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
        tx.commit()?;
        Ok(Some(tags))
    }

    /// Delete a tag. `false` when it did not exist.
    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, MetaError> {
        Ok(self.conn().execute(
            "DELETE FROM tags WHERE repo = ?1 AND tag = ?2",
            params![repo, tag],
        )? > 0)
    }

    /// Whether the repository exists.
    pub fn repo_exists(&self, repo: &str) -> Result<bool, MetaError> {
        Ok(self
            .conn()
            .query_row("SELECT 1 FROM repos WHERE name = ?1", params![repo], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    /// Tags of a repository in lexical order, after `last`, at most `n`.
    pub fn tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<(String, Digest)>, MetaError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT tag, digest FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3",
        )?;
        let limit = n.map(|n| n as i64).unwrap_or(-1);
        st.query_map(params![repo, last.unwrap_or(""), limit], |r| {
            Ok((r.get(0)?, digest_col(r.get(1)?)?))
        })?
        .collect::<Result<_, _>>()
        .map_err(MetaError)
    }

    /// Repository names in lexical order, after `last`, at most `n`.
    pub fn repositories(
        &self,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<String>, MetaError> {
        let conn = self.conn();
        let mut st =
            conn.prepare_cached("SELECT name FROM repos WHERE name > ?1 ORDER BY name LIMIT ?2")?;
        let limit = n.map(|n| n as i64).unwrap_or(-1);
        st.query_map(params![last.unwrap_or(""), limit], |r| r.get(0))?
            .collect::<Result<_, _>>()
            .map_err(MetaError)
    }

    /// Every manifest of a repository with its tags, newest first.
    pub fn manifests(&self, repo: &str) -> Result<Vec<ManifestSummary>, MetaError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT m.digest, m.media_type, m.size, m.pushed_at,
                    (SELECT group_concat(tag, char(10)) FROM (SELECT tag FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest ORDER BY tag))
             FROM manifests m WHERE m.repo = ?1 ORDER BY m.pushed_at DESC, m.digest",
        )?;
        st.query_map(params![repo], |r| {
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
        .collect::<Result<_, _>>()
        .map_err(MetaError)
    }

    /// Manifests in `repo` whose subject is `subject`.
    pub fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Referrer>, MetaError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
             WHERE repo = ?1 AND subject = ?2 ORDER BY pushed_at, digest",
        )?;
        st.query_map(params![repo, subject.to_string()], |r| {
            Ok(Referrer {
                digest: digest_col(r.get(0)?)?,
                media_type: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
                artifact_type: r.get(3)?,
                annotations: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()
        .map_err(MetaError)
    }

    /// Record a batch of pulls: (repo, digest, last pull in unix nanos,
    /// number of pulls).
    pub fn record_pulls(&self, pulls: &[(String, Digest, i64, u64)]) -> Result<(), MetaError> {
        if pulls.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO pulls(repo, digest, last_pulled_at, count) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(repo, digest) DO UPDATE SET
                    last_pulled_at = max(last_pulled_at, excluded.last_pulled_at),
                    count = count + excluded.count",
            )?;
            for (repo, d, at, n) in pulls {
                st.execute(params![repo, d.to_string(), at, *n as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Pulls since `since` (unix nanos): repo, digest, last pull time.
    pub fn recent_pulls(&self, since: i64) -> Result<Vec<(String, Digest, i64)>, MetaError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT repo, digest, last_pulled_at FROM pulls WHERE last_pulled_at >= ?1 ORDER BY last_pulled_at",
        )?;
        st.query_map(params![since], |r| {
            Ok((r.get(0)?, digest_col(r.get(1)?)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()
        .map_err(MetaError)
    }

    /// Manifests pushed since `since` (unix nanos).
    pub fn recent_pushes(&self, since: i64) -> Result<Vec<(String, Digest, i64)>, MetaError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT repo, digest, pushed_at FROM manifests WHERE pushed_at >= ?1 ORDER BY pushed_at",
        )?;
        st.query_map(params![since], |r| {
            Ok((r.get(0)?, digest_col(r.get(1)?)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()
        .map_err(MetaError)
    }

    // ---- garbage collection -------------------------------------------

    /// Run `f` inside one immediate (write-locked) transaction.
    pub fn with_write_tx<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Journal a manifest removed by GC (inside the GC's transaction), for
    /// [`Meta::removed_since`]; rows before `prune_before` (unix nanos) go.
    pub fn journal_removed(
        tx: &rusqlite::Transaction<'_>,
        removed: &[(String, String)],
        at: i64,
        prune_before: i64,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "DELETE FROM manifests_removed WHERE at < ?1",
            params![prune_before],
        )?;
        let mut st = tx.prepare_cached(
            "INSERT INTO manifests_removed(repo, digest, at) VALUES (?1, ?2, ?3)",
        )?;
        for (repo, digest) in removed {
            st.execute(params![repo, digest, at])?;
        }
        Ok(())
    }

    /// Manifests journaled as removed after `seq` that are still absent
    /// (one pushed again since is left out), and the newest `seq` seen.
    pub fn removed_since(&self, seq: i64) -> Result<(Vec<(String, Digest)>, i64), MetaError> {
        let conn = self.conn();
        let last: i64 = conn.query_row(
            "SELECT COALESCE(MAX(seq), ?1) FROM manifests_removed",
            params![seq],
            |r| r.get(0),
        )?;
        let mut st = conn.prepare_cached(
            "SELECT g.repo, g.digest FROM manifests_removed g
             WHERE g.seq > ?1 AND g.seq <= ?2
               AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo = g.repo AND m.digest = g.digest)
             ORDER BY g.seq",
        )?;
        let rows = st
            .query_map(params![seq, last], |r| {
                Ok((r.get(0)?, digest_col(r.get(1)?)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rows, last))
    }

    /// Every manifest with its references, tags and times (read inside `tx`).
    pub fn all_manifest_refs(
        tx: &rusqlite::Transaction<'_>,
    ) -> rusqlite::Result<Vec<ManifestRefs>> {
        let mut out: Vec<ManifestRefs> = Vec::new();
        let mut index = std::collections::HashMap::new();
        {
            let mut st = tx.prepare("SELECT repo, digest, pushed_at, subject FROM manifests")?;
            let rows = st.query_map([], |r| {
                Ok(ManifestRefs {
                    repo: r.get(0)?,
                    digest: r.get(1)?,
                    pushed_at: r.get(2)?,
                    subject: r.get(3)?,
                    blobs: vec![],
                    children: vec![],
                })
            })?;
            for row in rows {
                let row = row?;
                index.insert((row.repo.clone(), row.digest.clone()), out.len());
                out.push(row);
            }
        }
        let mut st = tx.prepare("SELECT repo, manifest, target, kind FROM manifest_refs")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (repo, manifest, target, kind) = row?;
            if let Some(&i) = index.get(&(repo, manifest)) {
                if kind == KIND_BLOB {
                    out[i].blobs.push(target);
                } else {
                    out[i].children.push(target);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &[u8]) -> Digest {
        Digest::sha256_of(s)
    }

    #[test]
    fn manifests_tags_links() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.db")).unwrap();
        let layer = d(b"layer");
        let man = d(b"manifest");
        let new = |tags: Vec<String>| NewManifest {
            repo: "a/b",
            digest: &man,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            body: b"manifest",
            subject: None,
            artifact_type: None,
            annotations: None,
            blobs: vec![(layer.clone(), 5)],
            children: vec![],
            tags,
            origin: "push",
            at: 1,
        };
        assert!(matches!(
            m.put_manifest(&new(vec!["v1".into()])),
            Err(PutManifestError::BlobUnknown(_))
        ));
        assert!(!m.repo_exists("a/b").unwrap());
        m.link_blob("a/b", &layer, 4, 1).unwrap();
        assert!(matches!(
            m.put_manifest(&new(vec!["v1".into()])),
            Err(PutManifestError::BlobSize { .. })
        ));
        m.link_blob("a/b", &layer, 5, 1).unwrap();
        assert!(m.put_manifest(&new(vec!["v1".into()])).unwrap());
        assert!(!m.put_manifest(&new(vec!["v2".into()])).unwrap());
        assert_eq!(m.tags("a/b", None, None).unwrap().len(), 2);
        assert_eq!(m.tags("a/b", Some("v1"), Some(5)).unwrap()[0].0, "v2");
        assert_eq!(m.manifest_by_tag("a/b", "v2").unwrap().unwrap().digest, man);
        assert_eq!(m.manifests("a/b").unwrap()[0].tags, vec!["v1", "v2"]);
        assert!(m.delete_tag("a/b", "v2").unwrap());
        assert_eq!(
            m.delete_manifest("a/b", &man).unwrap(),
            Some(vec!["v1".to_string()])
        );
        assert!(m.manifest_by_tag("a/b", "v1").unwrap().is_none());
        assert_eq!(m.repositories(None, None).unwrap(), vec!["a/b"]);
    }

    #[test]
    fn repositories_linking_a_blob() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.db")).unwrap();
        let b = d(b"shared");
        assert!(m.blob_repos(&b).unwrap().is_empty());
        m.link_blob("z/app", &b, 6, 1).unwrap();
        m.link_blob("a/app", &b, 6, 1).unwrap();
        m.link_blob("a/app", &d(b"other"), 5, 1).unwrap();
        assert_eq!(m.blob_repos(&b).unwrap(), vec!["a/app", "z/app"]);
        assert!(m.unlink_blob("z/app", &b).unwrap());
        assert_eq!(m.blob_repos(&b).unwrap(), vec!["a/app"]);
    }

    #[test]
    fn referenced_blob_is_not_unlinked() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.db")).unwrap();
        let layer = d(b"layer");
        let man = d(b"manifest");
        m.link_blob("a", &layer, 5, 1).unwrap();
        let new = NewManifest {
            repo: "a",
            digest: &man,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            body: b"manifest",
            subject: None,
            artifact_type: None,
            annotations: None,
            blobs: vec![(layer.clone(), 5)],
            children: vec![],
            tags: vec!["v2".into(), "v1".into()],
            origin: "push",
            at: 1,
        };
        m.put_manifest(&new).unwrap();
        let held = UnlinkBlob::Referenced {
            manifest: man.clone(),
            tag: Some("v1".into()),
        };
        assert_eq!(m.unlink_unreferenced_blob("a", &layer).unwrap(), held);
        assert!(m.blob_link("a", &layer).unwrap().is_some());
        m.delete_tag("a", "v1").unwrap();
        m.delete_tag("a", "v2").unwrap();
        assert!(matches!(
            m.unlink_unreferenced_blob("a", &layer).unwrap(),
            UnlinkBlob::Referenced { tag: None, .. }
        ));
        m.delete_manifest("a", &man).unwrap();
        assert_eq!(
            m.unlink_unreferenced_blob("a", &layer).unwrap(),
            UnlinkBlob::Unlinked
        );
        assert_eq!(
            m.unlink_unreferenced_blob("a", &layer).unwrap(),
            UnlinkBlob::NotLinked
        );
    }

    #[test]
    fn pulls_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.db")).unwrap();
        m.record_pulls(&[("r".into(), d(b"x"), 10, 1), ("r".into(), d(b"x"), 20, 2)])
            .unwrap();
        let p = m.recent_pulls(15).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].2, 20);
    }
}
