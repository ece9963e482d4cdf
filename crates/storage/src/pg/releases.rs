//! [`Releases`] on PostgreSQL, shared by every node.

use super::{Pg, PgConfig, col, params};
use crate::MetaError;
use crate::meta::parse_digest;
use crate::releases::{Release, Releases};
use std::sync::Arc;

/// The published builds in PostgreSQL.
pub struct PgReleases {
    pg: Arc<Pg>,
}

impl PgReleases {
    /// Connect and migrate the schema.
    pub fn connect(cfg: &PgConfig) -> Result<PgReleases, MetaError> {
        Ok(PgReleases {
            pg: Arc::new(Pg::connect(cfg)?),
        })
    }
}

fn row(r: &tokio_postgres::Row) -> Result<Release, MetaError> {
    Ok(Release {
        version: col(r, 0)?,
        digest: parse_digest(&col::<String>(r, 1)?)?,
        size: col::<i64>(r, 2)? as u64,
        built_at: col(r, 3)?,
        published_at: col(r, 4)?,
    })
}

#[async_trait::async_trait]
impl Releases for PgReleases {
    async fn publish_release(&self, rel: Release) -> Result<bool, MetaError> {
        Ok(self
            .pg
            .execute(
                "INSERT INTO vulndb_releases(version, digest, size, built_at, published_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (version) DO NOTHING",
                params![
                    rel.version,
                    rel.digest.to_string(),
                    rel.size as i64,
                    rel.built_at,
                    rel.published_at
                ],
            )
            .await?
            > 0)
    }

    async fn newest_release(&self) -> Result<Option<Release>, MetaError> {
        self.pg
            .query_opt(
                "SELECT version, digest, size, built_at, published_at FROM vulndb_releases
                 ORDER BY version DESC LIMIT 1",
                params![],
            )
            .await?
            .as_ref()
            .map(row)
            .transpose()
    }

    async fn releases(&self) -> Result<Vec<Release>, MetaError> {
        self.pg
            .query(
                "SELECT version, digest, size, built_at, published_at FROM vulndb_releases
                 ORDER BY version DESC",
                params![],
            )
            .await?
            .iter()
            .map(row)
            .collect()
    }

    async fn prune_releases(&self, keep: usize) -> Result<Vec<Release>, MetaError> {
        self.pg
            .query(
                "DELETE FROM vulndb_releases WHERE version IN
                   (SELECT version FROM vulndb_releases ORDER BY version DESC OFFSET $1)
                 RETURNING version, digest, size, built_at, published_at",
                params![keep as i64],
            )
            .await?
            .iter()
            .map(row)
            .collect()
    }
}
