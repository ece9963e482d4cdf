//! The vulnerability database as the assessor sees it.
//!
//! TEMPORARY: `vulndb` has not landed yet, so the finding model of its
//! contract is mirrored here with the same names; when `vulndb` lands this
//! module becomes `pub use vulndb::{Finding, FixStatus, Severity};` and the
//! adapter in `live.rs` implements [`VulnDatabase`] for `vulndb::Database`.

use inventory::{Ecosystem, Inventory};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How severe a finding is. Ordered: `Critical > High > Medium > Low > Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Unknown,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Whether a fix exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixStatus {
    Fixed,
    Unfixed,
    WontFix,
}

impl FixStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FixStatus::Fixed => "fixed",
            FixStatus::Unfixed => "unfixed",
            FixStatus::WontFix => "wont_fix",
        }
    }
    pub fn parse(s: &str) -> Option<FixStatus> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fixed" => Some(FixStatus::Fixed),
            "unfixed" => Some(FixStatus::Unfixed),
            "wont_fix" | "wontfix" | "won't fix" => Some(FixStatus::WontFix),
            _ => None,
        }
    }
}

/// One vulnerability affecting one installed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub ecosystem: Ecosystem,
    pub package: String,
    pub installed_version: String,
    #[serde(default)]
    pub fixed_version: Option<String>,
    pub status: FixStatus,
    pub severity: Severity,
    #[serde(default)]
    pub cvss: Option<f32>,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub informational: bool,
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
