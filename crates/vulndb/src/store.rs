//! The on-disk database and its loaded form.
//!
//! Layout under `<data>/vulndb/`:
//!
//! ```text
//! CURRENT                 the version id in use (replaced by rename)
//! <version>/db.bin        postcard-encoded [`Store`]
//! <version>/status.json   human-readable status of that build
//! <version>.tmp-<pid>/    a build in progress (never read)
//! <version>.partial/      a build being received from another node (never read)
//! ```
//!
//! A build is written completely into its `.tmp` directory, synced,
//! renamed to `<version>`, and only then is `CURRENT` replaced (write
//! `CURRENT.tmp`, rename). Readers resolve `CURRENT` and read one immutable
//! directory, so they never see a partial build.

use crate::Error;
use crate::model::{Cvss, FindingStatus, Severity, SourceStatus, shared};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Format tag written into every store; bumped on incompatible changes.
pub(crate) const FORMAT: u32 = 1;

/// One range event; the strings are versions in the package's scheme,
/// `introduced: "0"` meaning "from the beginning".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
///
/// Shared (`Arc`) so that a finding's fixed version is a reference count,
/// not a copy; encoded exactly like a `String`.
pub(crate) enum Event {
    Introduced(#[serde(with = "shared::text")] Arc<str>),
    Fixed(#[serde(with = "shared::text")] Arc<str>),
    LastAffected(#[serde(with = "shared::text")] Arc<str>),
    Limit(#[serde(with = "shared::text")] Arc<str>),
}

/// Everything about an advisory that does not depend on the package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Advisory {
    pub id: String,
    pub aliases: Vec<String>,
    pub related: Vec<String>,
    pub summary: String,
    pub references: Vec<String>,
    /// Rating from CVSS or the advisory's own word; `Unknown` if neither.
    pub severity: Severity,
    pub severity_source: String,
    pub cvss: Option<Cvss>,
}

/// One (advisory, package) pair in one ecosystem or distribution release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub advisory: u32,
    /// Each range's events, sorted by version where the scheme allows.
    pub ranges: Vec<Vec<Event>>,
    /// Explicitly listed affected versions not already covered by `ranges`.
    pub versions: Vec<Box<str>>,
    /// Status when no fixed version applies (`Unfixed` or `WontFix`).
    pub open_status: FindingStatus,
    #[serde(with = "shared::opt_text")]
    pub note: Option<Arc<str>>,
    /// The distribution's own rating, with its word (urgency).
    pub distro_severity: Option<(Severity, Box<str>)>,
    #[serde(with = "shared::opt_text")]
    pub informational: Option<Arc<str>>,
    /// Index into [`Meta::sources`].
    pub source: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub format: u32,
    pub version: String,
    pub built_at: String,
    pub sources: Vec<SourceStatus>,
}

/// The whole database as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Store {
    pub meta: Meta,
    pub advisories: Vec<Advisory>,
    /// space (`npm`, `debian:12`, `alpine:v3.20`) → package name → entries.
    pub index: HashMap<String, HashMap<String, Vec<Entry>>>,
}

pub(crate) fn root(data_dir: &Path) -> PathBuf {
    data_dir.join("vulndb")
}

/// The version named by `CURRENT`, if any.
pub(crate) fn current_version(data_dir: &Path) -> Result<Option<String>, Error> {
    let path = root(data_dir).join("CURRENT");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let v = s.trim().to_string();
            if v.is_empty() || v.contains('/') || v.contains("..") {
                return Err(Error::Corrupt(format!(
                    "{}: bad version {v:?}",
                    path.display()
                )));
            }
            Ok(Some(v))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

pub(crate) fn load(data_dir: &Path, version: &str) -> Result<Store, Error> {
    let path = root(data_dir).join(version).join("db.bin");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let store: Store = postcard::from_bytes(&bytes)
        .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
    if store.meta.format != FORMAT {
        return Err(Error::Corrupt(format!(
            "{}: format {} (expected {FORMAT})",
            path.display(),
            store.meta.format
        )));
    }
    Ok(store)
}

/// The [`Meta`] at the head of a stored build's `db.bin`, read from its
/// first bytes (it is encoded first), with the format checked.
pub(crate) fn load_meta(path: &Path) -> Result<Meta, Error> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = Vec::new();
    f.take(1 << 20)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, e))?;
    let (meta, _): (Meta, _) = postcard::take_from_bytes(&head)
        .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
    if meta.format != FORMAT {
        return Err(Error::Corrupt(format!(
            "{}: format {} (expected {FORMAT})",
            path.display(),
            meta.format
        )));
    }
    Ok(meta)
}

pub(crate) fn sync_dir(path: &Path) {
    // Best effort: directory fsync is not supported everywhere.
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.sync_all();
    }
}

/// Write a finished store as a new version and make it current.
pub(crate) fn commit(data_dir: &Path, store: &mut Store) -> Result<String, Error> {
    use sha2::Digest;
    let dir = root(data_dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let body = postcard::to_allocvec(&(&store.advisories, &store.index))
        .map_err(|e| Error::Corrupt(format!("encoding: {e}")))?;
    let hash = hex::encode(&sha2::Sha256::digest(&body)[..6]);
    let stamp = store.meta.built_at.replace(['-', ':'], "");
    let stamp = stamp
        .split('.')
        .next()
        .unwrap_or(&stamp)
        .trim_end_matches('Z');
    let version = format!("{stamp}Z-{hash}");
    store.meta.version = version.clone();
    let bytes =
        postcard::to_allocvec(&*store).map_err(|e| Error::Corrupt(format!("encoding: {e}")))?;

    let tmp = dir.join(format!("{version}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let write = |name: &str, data: &[u8]| -> Result<(), Error> {
        use std::io::Write;
        let p = tmp.join(name);
        let mut f = std::fs::File::create(&p).map_err(|e| Error::io(&p, e))?;
        f.write_all(data).map_err(|e| Error::io(&p, e))?;
        f.sync_all().map_err(|e| Error::io(&p, e))
    };
    write("db.bin", &bytes)?;
    let status = crate::Database::status_of(store);
    let status_json = serde_json::to_vec_pretty(&status).expect("status serialises");
    write("status.json", &status_json)?;
    sync_dir(&tmp);

    let final_dir = dir.join(&version);
    if final_dir.exists() {
        // Same content built in the same second: keep the existing one.
        let _ = std::fs::remove_dir_all(&tmp);
    } else {
        std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    }
    make_current(&dir, &version)?;
    Ok(version)
}

/// Point `CURRENT` in `dir` (`<data>/vulndb`) at `version`, a complete
/// build already in place (write `CURRENT.tmp-<pid>`, rename), then
/// prune older builds.
pub(crate) fn make_current(dir: &Path, version: &str) -> Result<(), Error> {
    let cur_tmp = dir.join(format!("CURRENT.tmp-{}", std::process::id()));
    std::fs::write(&cur_tmp, format!("{version}\n")).map_err(|e| Error::io(&cur_tmp, e))?;
    if let Ok(f) = std::fs::File::open(&cur_tmp) {
        let _ = f.sync_all();
    }
    let cur = dir.join("CURRENT");
    std::fs::rename(&cur_tmp, &cur).map_err(|e| Error::io(&cur, e))?;
    sync_dir(dir);
    prune(dir, version);
    Ok(())
}

/// Remove builds other than the current one and the one before it, and
/// stale temporary directories of dead builds.
fn prune(dir: &Path, current: &str) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut versions: Vec<String> = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.path().is_dir() {
            continue;
        }
        if name.contains(".tmp-") || name.ends_with(".partial") {
            // Only remove our own leftovers; another process may be building.
            if name.ends_with(&format!(".tmp-{}", std::process::id())) {
                let _ = std::fs::remove_dir_all(e.path());
            }
            continue;
        }
        if e.path().join("db.bin").exists() {
            versions.push(name);
        }
    }
    versions.sort();
    let keep_prev = versions
        .iter()
        .rev()
        .find(|v| v.as_str() < current)
        .cloned();
    for v in versions {
        if v != current && Some(&v) != keep_prev.as_ref() && v.as_str() < current {
            let _ = std::fs::remove_dir_all(dir.join(v));
        }
    }
}
