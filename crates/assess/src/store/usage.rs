//! Usage: distinct images first assessed per repository and month.

use super::{Store, wait};
use anyhow::Result;
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
        wait(
            self.state
                .count_usage(digest, repo, &month, crate::clock::to_ms(at)),
        )
    }

    /// Counts per repository and month, months `from..=to` (`YYYY-MM`).
    pub fn usage(&self, from: &str, to: &str) -> Result<Vec<UsageRow>> {
        Ok(wait(self.state.usage(from, to))?
            .into_iter()
            .map(|u| UsageRow {
                repository: u.repository,
                month: u.month,
                images: u.images,
            })
            .collect())
    }
}
