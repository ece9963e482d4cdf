//! Patch jobs (`/api/v1/patches`), kept so that they outlive the process.
//! The job itself is the patch service's JSON; this table only keys it by
//! id and state, so a restart can find the jobs an earlier process left
//! running.

use super::Store;
use anyhow::Result;
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS patch_jobs(id TEXT PRIMARY KEY, repo TEXT NOT NULL, state TEXT NOT NULL, data TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS patch_jobs_state ON patch_jobs(state, updated_at);";

/// Finished jobs kept; older ones go as new ones are written.
const KEEP_FINISHED: i64 = 1000;

pub(super) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

impl Store {
    // ---- patch jobs ----

    /// Insert or replace a job's JSON.
    pub fn save_patch_job(&self, id: &str, repo: &str, state: &str, data: &str) -> Result<()> {
        let at = self.now_ms();
        let c = self.c_quiet();
        c.execute(
            "INSERT OR REPLACE INTO patch_jobs(id, repo, state, data, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, repo, state, data, at],
        )?;
        if state != "running" {
            c.execute(
                "DELETE FROM patch_jobs WHERE state != 'running' AND id NOT IN \
                 (SELECT id FROM patch_jobs WHERE state != 'running' ORDER BY updated_at DESC LIMIT ?1)",
                [KEEP_FINISHED],
            )?;
        }
        Ok(())
    }

    /// A job's JSON.
    pub fn patch_job(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .c()
            .query_row("SELECT data FROM patch_jobs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// The JSON of every job in `state`, oldest first.
    pub fn patch_jobs_in_state(&self, state: &str) -> Result<Vec<String>> {
        let c = self.c();
        let mut st =
            c.prepare("SELECT data FROM patch_jobs WHERE state = ?1 ORDER BY updated_at")?;
        let v = st
            .query_map([state], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }
}
