//! [`UploadSessions`] on PostgreSQL: the `upload_sessions` table, on the
//! metadata store's pool, so every node sees every session. A save is one
//! `UPDATE … WHERE revision = $n`: under READ COMMITTED a concurrent one
//! waits for the row, re-checks the revision, and finds it moved.

use super::meta::PgMeta;
use super::{Pg, col, params};
use crate::MetaError;
use crate::uploads::{UploadCasError, UploadRecord, UploadSessions, now_ms};
use std::sync::Arc;
use uuid::Uuid;

/// Upload sessions in a PostgreSQL metadata store.
#[derive(Clone)]
pub struct PgUploads {
    pg: Arc<Pg>,
}

impl PgUploads {
    /// On the pool of `meta` (the same database).
    pub fn of(meta: &PgMeta) -> PgUploads {
        PgUploads {
            pg: meta.pg.clone(),
        }
    }

    /// After a compare-and-swap matched no row: was it moved on, or gone?
    async fn cas_failure(&self, id: String) -> UploadCasError {
        match self
            .pg
            .query_opt("SELECT 1 FROM upload_sessions WHERE id = $1", params![id])
            .await
        {
            Ok(Some(_)) => UploadCasError::Conflict,
            Ok(None) => UploadCasError::Gone,
            Err(e) => UploadCasError::Store(e),
        }
    }
}

const SELECT: &str =
    "SELECT id, repo, owner, created_at, updated_at, upload_offset, revision, state
                      FROM upload_sessions";
const RETURNING: &str =
    "RETURNING id, repo, owner, created_at, updated_at, upload_offset, revision, state";

fn record(r: &tokio_postgres::Row) -> Result<UploadRecord, MetaError> {
    let id: String = col(r, 0)?;
    Ok(UploadRecord {
        id: Uuid::parse_str(&id)
            .map_err(|e| MetaError::Backend(format!("stored upload session id: {e}")))?,
        repo: col(r, 1)?,
        owner: col(r, 2)?,
        created_ms: col(r, 3)?,
        updated_ms: col(r, 4)?,
        offset: col::<i64>(r, 5)? as u64,
        revision: col(r, 6)?,
        state: col(r, 7)?,
    })
}

#[async_trait::async_trait]
impl UploadSessions for PgUploads {
    async fn create(
        &self,
        id: Uuid,
        repo: &str,
        owner: &str,
        state: &[u8],
    ) -> Result<UploadRecord, MetaError> {
        let now = now_ms();
        let rec = UploadRecord {
            id,
            repo: repo.to_string(),
            owner: owner.to_string(),
            created_ms: now,
            updated_ms: now,
            offset: 0,
            revision: 0,
            state: state.to_vec(),
        };
        self.pg
            .execute(
                "INSERT INTO upload_sessions
                 (id, repo, owner, created_at, updated_at, upload_offset, revision, state)
                 VALUES ($1, $2, $3, $4, $4, 0, 0, $5)",
                params![
                    id.to_string(),
                    rec.repo.clone(),
                    rec.owner.clone(),
                    now,
                    rec.state.clone()
                ],
            )
            .await?;
        Ok(rec)
    }

    async fn get(&self, id: &Uuid) -> Result<Option<UploadRecord>, MetaError> {
        self.pg
            .query_opt(format!("{SELECT} WHERE id = $1"), params![id.to_string()])
            .await?
            .as_ref()
            .map(record)
            .transpose()
    }

    async fn save(
        &self,
        id: &Uuid,
        revision: i64,
        offset: u64,
        state: &[u8],
    ) -> Result<i64, UploadCasError> {
        let saved = self
            .pg
            .query_opt(
                "UPDATE upload_sessions
                 SET upload_offset = $3, state = $4, updated_at = $5, revision = revision + 1
                 WHERE id = $1 AND revision = $2
                 RETURNING revision",
                params![
                    id.to_string(),
                    revision,
                    offset as i64,
                    state.to_vec(),
                    now_ms()
                ],
            )
            .await?;
        match saved {
            Some(r) => Ok(col::<i64>(&r, 0)?),
            None => Err(self.cas_failure(id.to_string()).await),
        }
    }

    async fn delete(&self, id: &Uuid) -> Result<Option<UploadRecord>, MetaError> {
        self.pg
            .query_opt(
                format!("DELETE FROM upload_sessions WHERE id = $1 {RETURNING}"),
                params![id.to_string()],
            )
            .await?
            .as_ref()
            .map(record)
            .transpose()
    }

    async fn delete_at(&self, id: &Uuid, revision: i64) -> Result<UploadRecord, UploadCasError> {
        let gone = self
            .pg
            .query_opt(
                format!("DELETE FROM upload_sessions WHERE id = $1 AND revision = $2 {RETURNING}"),
                params![id.to_string(), revision],
            )
            .await?;
        match gone {
            Some(r) => Ok(record(&r)?),
            None => Err(self.cas_failure(id.to_string()).await),
        }
    }

    async fn list(&self) -> Result<Vec<UploadRecord>, MetaError> {
        self.pg
            .query(format!("{SELECT} ORDER BY created_at, id"), params![])
            .await?
            .iter()
            .map(record)
            .collect()
    }
}
