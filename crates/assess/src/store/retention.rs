//! Pruning of the tables that would otherwise grow for ever: the webhook
//! delivery log (whole payloads), notification dedup, tag history and
//! the layer cache.

use super::Store;
use anyhow::Result;
use rusqlite::params;

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub deliveries: usize,
    pub notified: usize,
    pub tag_history: usize,
    pub layer_cache: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.deliveries + self.notified + self.tag_history + self.layer_cache
    }
}

/// Cut-off times (milliseconds, assessor clock) for one pruning pass:
/// rows older than these may go.
#[derive(Debug, Clone, Copy)]
pub struct PruneBefore {
    /// Finished deliveries (delivered or given up) created before this.
    /// Pending ones stay whatever their age: they are still being tried.
    pub deliveries: i64,
    /// Notification records made before this; the same problem may then
    /// be told again (a reminder). Records of digests the assessor no
    /// longer knows go whatever their age.
    pub notified: i64,
    /// Tag moves recorded before this, except the two newest of each tag
    /// (which tell the current digest's predecessor, for diffs).
    pub tag_history: i64,
    /// Layer results stored before this whose layer no assessed image
    /// names (layers of deleted images, or uploads never referenced), and
    /// results of other catalog versions than `catalog_version`.
    pub layer_cache: i64,
    pub catalog_version: u32,
}

impl Store {
    /// Delete what [`PruneBefore`] lets go, in one transaction.
    pub fn prune(&self, before: &PruneBefore) -> Result<Pruned> {
        let mut c = self.c();
        let tx = c.transaction()?;
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
        tx.commit()?;
        Ok(Pruned {
            deliveries,
            notified,
            tag_history,
            layer_cache,
        })
    }
}

/// Columns added for retention after the tables were first created.
pub(super) fn migrate(conn: &rusqlite::Connection) -> Result<()> {
    let has_at = conn
        .prepare("SELECT 1 FROM pragma_table_info('layer_cache') WHERE name = 'at'")?
        .exists([])?;
    if !has_at {
        // Rows from before have no time: 0, so an unreferenced one goes at
        // the first pass.
        conn.execute_batch("ALTER TABLE layer_cache ADD COLUMN at INTEGER NOT NULL DEFAULT 0")?;
    }
    conn.execute_batch("CREATE INDEX IF NOT EXISTS notified_at ON notified(at)")?;
    Ok(())
}
