//! Usage: distinct images first assessed per repository and month.

use super::Store;
use anyhow::Result;
use rusqlite::params;
use serde::Serialize;
use utoipa::ToSchema;

/// Distinct images first assessed in one month, for one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageRow {
    pub repository: String,
    /// `YYYY-MM`.
    pub month: String,
    pub images: u64,
}

impl Store {
    // ---- usage ----

    /// Count `digest` in the month of `at` unless it was counted before.
    pub fn count_usage(&self, digest: &str, repo: &str, at: time::OffsetDateTime) -> Result<bool> {
        let month = format!("{:04}-{:02}", at.year(), u8::from(at.month()));
        Ok(self.c_quiet().execute(
            "INSERT OR IGNORE INTO usage(digest, repo, month, first_assessed_at) VALUES (?1, ?2, ?3, ?4)",
            params![digest, repo, month, crate::clock::to_ms(at)],
        )? > 0)
    }

    /// Counts per repository and month, months `from..=to` (`YYYY-MM`).
    pub fn usage(&self, from: &str, to: &str) -> Result<Vec<UsageRow>> {
        let c = self.c();
        let mut st = c.prepare(
            "SELECT repo, month, COUNT(*) FROM usage WHERE month >= ?1 AND month <= ?2 GROUP BY repo, month ORDER BY month, repo",
        )?;
        let v = st
            .query_map(params![from, to], |r| {
                Ok(UsageRow {
                    repository: r.get(0)?,
                    month: r.get(1)?,
                    images: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }
}
