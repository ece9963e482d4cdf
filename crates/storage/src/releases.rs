//! Published vulnerability database builds: which build every node
//! should run, and under which blob its packed form lies.
//!
//! One node builds the database and publishes it (the blob through the
//! blob driver, then a row here); every node polls
//! [`Releases::newest_release`] and fetches what is newer than its own.
//! GC treats the digests of the rows kept here as referenced
//! ([`Releases::releases`]), so a published build's blob is never swept.
//! [`crate::SqliteMeta`]'s file and [`crate::PgMeta`]'s database hold the
//! table (`vulndb_releases`, migration V5); [`open_releases`] opens it.

use crate::{MetaError, MetadataStorage};
use oci::Digest;
use std::path::Path;
use std::sync::Arc;

/// One published build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The build's version (`<UTC stamp>Z-<hash>`): newer sorts later.
    pub version: String,
    /// The blob holding the build, packed.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// When the build was made (RFC 3339, as the database says).
    pub built_at: String,
    /// When it was published (unix nanos).
    pub published_at: i64,
}

/// The published builds. Implementations never block the async runtime.
#[async_trait::async_trait]
pub trait Releases: Send + Sync + 'static {
    /// Record a published build. A version recorded already is left as it
    /// is (two leaders for a moment publish the same bytes); returns
    /// whether the row is new.
    async fn publish_release(&self, release: Release) -> Result<bool, MetaError>;

    /// The newest release (the greatest version), if any.
    async fn newest_release(&self) -> Result<Option<Release>, MetaError>;

    /// Every release kept, newest first.
    async fn releases(&self) -> Result<Vec<Release>, MetaError>;

    /// Forget all but the newest `keep` releases; the ones forgotten
    /// (their blobs are then garbage like any other).
    async fn prune_releases(&self, keep: usize) -> Result<Vec<Release>, MetaError>;
}

/// Open the releases table where the metadata lives: `<data>/meta.db`
/// (SQLite) or the PostgreSQL database every node shares.
pub fn open_releases(
    data_dir: &Path,
    metadata: &MetadataStorage,
) -> Result<Arc<dyn Releases>, MetaError> {
    Ok(match metadata {
        MetadataStorage::Sqlite => Arc::new(crate::sqlite::releases::SqliteReleases::open(
            &data_dir.join("meta.db"),
        )?),
        MetadataStorage::Postgres(cfg) => Arc::new(crate::pg::releases::PgReleases::connect(cfg)?),
    })
}
