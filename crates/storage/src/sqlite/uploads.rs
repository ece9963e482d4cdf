//! [`UploadSessions`] on SQLite: the `upload_sessions` table of
//! `meta.db`, on the metadata store's own connections. A save is one
//! `UPDATE … WHERE revision = ?` in the writer's immediate transaction.

use super::Db;
use super::meta::SqliteMeta;
use crate::MetaError;
use crate::uploads::{UploadCasError, UploadRecord, UploadSessions, now_ms};
use rusqlite::{OptionalExtension, params};
use std::sync::Arc;
use uuid::Uuid;

/// Upload sessions in a SQLite metadata store.
#[derive(Clone)]
pub struct SqliteUploads {
    db: Arc<Db>,
}

impl SqliteUploads {
    /// On the connections of `meta` (the same `meta.db`).
    pub fn of(meta: &SqliteMeta) -> SqliteUploads {
        SqliteUploads {
            db: meta.db.clone(),
        }
    }
}

const COLUMNS: &str = "id, repo, owner, created_at, updated_at, upload_offset, revision, state";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<UploadRecord> {
    let id: String = r.get(0)?;
    let id = Uuid::parse_str(&id).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(UploadRecord {
        id,
        repo: r.get(1)?,
        owner: r.get(2)?,
        created_ms: r.get(3)?,
        updated_ms: r.get(4)?,
        offset: r.get::<_, i64>(5)? as u64,
        revision: r.get(6)?,
        state: r.get(7)?,
    })
}

/// What a failed compare-and-swap found: the row moved on, or none.
fn cas_failure(tx: &rusqlite::Transaction<'_>, id: &str) -> rusqlite::Result<UploadCasError> {
    let exists = tx
        .query_row("SELECT 1 FROM upload_sessions WHERE id = ?1", [id], |_| {
            Ok(())
        })
        .optional()?;
    Ok(match exists {
        Some(()) => UploadCasError::Conflict,
        None => UploadCasError::Gone,
    })
}

#[async_trait::async_trait]
impl UploadSessions for SqliteUploads {
    async fn create(
        &self,
        id: Uuid,
        repo: &str,
        owner: &str,
        state: &[u8],
    ) -> Result<UploadRecord, MetaError> {
        let rec = UploadRecord {
            id,
            repo: repo.to_string(),
            owner: owner.to_string(),
            created_ms: now_ms(),
            updated_ms: now_ms(),
            offset: 0,
            revision: 0,
            state: state.to_vec(),
        };
        let r = rec.clone();
        self.db
            .write(move |tx| {
                tx.execute(
                    &format!("INSERT INTO upload_sessions({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, ?6)"),
                    params![r.id.to_string(), r.repo, r.owner, r.created_ms, r.updated_ms, r.state],
                )
            })
            .await?;
        Ok(rec)
    }

    async fn get(&self, id: &Uuid) -> Result<Option<UploadRecord>, MetaError> {
        let id = id.to_string();
        self.db
            .read(move |c| {
                c.query_row(
                    &format!("SELECT {COLUMNS} FROM upload_sessions WHERE id = ?1"),
                    [id],
                    record,
                )
                .optional()
            })
            .await
    }

    async fn save(
        &self,
        id: &Uuid,
        revision: i64,
        offset: u64,
        state: &[u8],
    ) -> Result<i64, UploadCasError> {
        let (id, state) = (id.to_string(), state.to_vec());
        self.db
            .write(move |tx| {
                let n = tx.execute(
                    "UPDATE upload_sessions
                     SET upload_offset = ?3, state = ?4, updated_at = ?5, revision = revision + 1
                     WHERE id = ?1 AND revision = ?2",
                    params![id, revision, offset as i64, state, now_ms()],
                )?;
                if n == 1 {
                    Ok(Ok(revision + 1))
                } else {
                    Ok(Err(cas_failure(tx, &id)?))
                }
            })
            .await?
    }

    async fn delete(&self, id: &Uuid) -> Result<Option<UploadRecord>, MetaError> {
        let id = id.to_string();
        self.db
            .write(move |tx| {
                tx.query_row(
                    &format!("DELETE FROM upload_sessions WHERE id = ?1 RETURNING {COLUMNS}"),
                    [id],
                    record,
                )
                .optional()
            })
            .await
    }

    async fn delete_at(&self, id: &Uuid, revision: i64) -> Result<UploadRecord, UploadCasError> {
        let id = id.to_string();
        self.db
            .write(move |tx| {
                let gone = tx
                    .query_row(
                        &format!(
                            "DELETE FROM upload_sessions WHERE id = ?1 AND revision = ?2
                             RETURNING {COLUMNS}"
                        ),
                        params![id, revision],
                        record,
                    )
                    .optional()?;
                match gone {
                    Some(r) => Ok(Ok(r)),
                    None => Ok(Err(cas_failure(tx, &id)?)),
                }
            })
            .await?
    }

    async fn list(&self) -> Result<Vec<UploadRecord>, MetaError> {
        self.db
            .read(|c| {
                let mut st = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM upload_sessions ORDER BY created_at, id"
                ))?;
                st.query_map([], record)?.collect()
            })
            .await
    }
}
