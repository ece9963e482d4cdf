//! The databases and the JSON scan the `cli_scan*` tests share: each
//! database is imported once per test process.
//!
//! Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use crate::cli_support::{import, json_ok, vulndata};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A data directory with a database imported once per test process, under
/// cargo's scratch directory for integration tests.
pub fn db_dir(name: &str, sources: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("drydock-cli-scan")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let paths: Vec<PathBuf> = sources.iter().map(|s| vulndata(s)).collect();
    import(&dir, &paths);
    dir
}

/// Debian 12 and PyPI OSV data.
pub fn full_db() -> &'static Path {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| db_dir("full", &["osv/Debian/all.zip", "osv/PyPI/all.zip"]))
}

/// PyPI OSV data only.
pub fn pypi_db() -> &'static Path {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| db_dir("pypi", &["osv/PyPI/all.zip"]))
}

pub fn scan_json(data: &Path, target: &str, extra: &[&str]) -> Value {
    let mut args = vec!["scan", target, "--format", "json"];
    args.extend_from_slice(extra);
    json_ok(data, &args)
}
