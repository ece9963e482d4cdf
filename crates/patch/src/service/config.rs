//! The `[patch]` configuration table.

use crate::archive::ArchiveSource;
use crate::plan::Target;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Tag naming of patched images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagStyle {
    /// `v1-1`, `v1-2`, … one new tag per patch.
    #[default]
    Incremental,
    /// `v1-patched`, moved to the newest patch.
    Floating,
}

/// Repositories and tags continuous mode watches (`*` matches any run of
/// characters, `/` included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoRule {
    pub name: String,
    #[serde(default = "star")]
    pub tags: Vec<String>,
}

fn star() -> Vec<String> {
    vec!["*".into()]
}

/// The `[patch]` configuration table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PatchConfig {
    /// Continuous mode.
    pub enabled: bool,
    pub repositories: Vec<RepoRule>,
    pub tag_style: TagStyle,
    pub target: Target,
    pub allow_maintainer_scripts: bool,
    pub all_or_nothing: bool,
    /// How often continuous mode fetches the archives' `InRelease` to see
    /// whether their `Packages` indexes changed (new fixes). A new
    /// vulnerability database is noticed within a second regardless.
    pub interval_seconds: u64,
    pub debian: DebianConfig,
}

impl Default for PatchConfig {
    fn default() -> Self {
        PatchConfig {
            enabled: false,
            repositories: Vec::new(),
            tag_style: TagStyle::Incremental,
            target: Target::Lowest,
            allow_maintainer_scripts: false,
            all_or_nothing: false,
            interval_seconds: 60,
            debian: DebianConfig::default(),
        }
    }
}

/// `[patch.debian]`: the archives (suites) upgrades come from and the
/// keyring their `InRelease` must be signed with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebianConfig {
    pub archives: Vec<ArchiveSource>,
    pub keyring: Option<PathBuf>,
}
