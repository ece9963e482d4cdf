//! The vulnerability database as the assessor sees it.
//!
//! The finding model is `vulndb`'s (re-exported here). The service reaches
//! the database through the small [`VulnDatabase`] / [`VulnSource`] traits,
//! implemented in `live.rs` for `vulndb::Database` / `vulndb::Handle` and by
//! fakes in unit tests.

use inventory::Inventory;
use std::sync::Arc;

pub use vulndb::{Finding, FindingStatus, Severity};

/// Parse a fix status as the API accepts it (`fixed`, `unfixed`, `wont_fix`).
pub fn parse_fix_status(s: &str) -> Option<FindingStatus> {
    match s.trim().to_ascii_lowercase().as_str() {
        "fixed" => Some(FindingStatus::Fixed),
        "unfixed" => Some(FindingStatus::Unfixed),
        "wont_fix" | "wontfix" => Some(FindingStatus::WontFix),
        _ => None,
    }
}

/// One built version of the vulnerability database.
pub trait VulnDatabase: Send + Sync {
    /// Identifies the build; a different value means the data changed.
    fn version(&self) -> String;
    fn match_inventory(&self, inventory: &Inventory) -> Vec<Finding>;
    /// Status document for the API (sources, record counts, build time).
    fn status(&self) -> serde_json::Value;
}

/// Where the newest database build comes from.
pub trait VulnSource: Send + Sync {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>>;
}
