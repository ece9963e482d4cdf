//! [`Releases`] on SQLite (`<data>/meta.db`).

use super::Db;
use crate::MetaError;
use crate::releases::{Release, Releases};
use rusqlite::{OptionalExtension, params};
use std::path::Path;
use std::sync::Arc;

/// The published builds in the data directory's SQLite file.
pub struct SqliteReleases {
    db: Arc<Db>,
}

impl SqliteReleases {
    /// Open (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteReleases, MetaError> {
        Ok(SqliteReleases {
            db: Db::open(path)?,
        })
    }
}

const COLUMNS: &str = "version, digest, size, built_at, published_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Release> {
    let digest: String = r.get(1)?;
    Ok(Release {
        version: r.get(0)?,
        digest: oci::Digest::parse(&digest).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        size: r.get::<_, i64>(2)? as u64,
        built_at: r.get(3)?,
        published_at: r.get(4)?,
    })
}

#[async_trait::async_trait]
impl Releases for SqliteReleases {
    async fn publish_release(&self, rel: Release) -> Result<bool, MetaError> {
        self.db
            .write(move |tx| {
                Ok(tx.execute(
                    "INSERT INTO vulndb_releases(version, digest, size, built_at, published_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(version) DO NOTHING",
                    params![
                        rel.version,
                        rel.digest.to_string(),
                        rel.size as i64,
                        rel.built_at,
                        rel.published_at
                    ],
                )? > 0)
            })
            .await
    }

    async fn newest_release(&self) -> Result<Option<Release>, MetaError> {
        self.db
            .read(|c| {
                c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM vulndb_releases ORDER BY version DESC LIMIT 1"
                ))?
                .query_row([], row)
                .optional()
            })
            .await
    }

    async fn releases(&self) -> Result<Vec<Release>, MetaError> {
        self.db
            .read(|c| {
                c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM vulndb_releases ORDER BY version DESC"
                ))?
                .query_map([], row)?
                .collect()
            })
            .await
    }

    async fn prune_releases(&self, keep: usize) -> Result<Vec<Release>, MetaError> {
        self.db
            .write(move |tx| {
                let gone: Vec<Release> = tx
                    .prepare(&format!(
                        "SELECT {COLUMNS} FROM vulndb_releases ORDER BY version DESC
                         LIMIT -1 OFFSET ?1"
                    ))?
                    .query_map([keep as i64], row)?
                    .collect::<rusqlite::Result<_>>()?;
                for r in &gone {
                    tx.execute(
                        "DELETE FROM vulndb_releases WHERE version = ?1",
                        [&r.version],
                    )?;
                }
                Ok(gone)
            })
            .await
    }
}
