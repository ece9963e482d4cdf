//! drydock's vulnerability database: ingestion of public advisory sources
//! in their native formats, version ordering per ecosystem, and matching of
//! a package [`inventory::Inventory`] to [`Finding`]s.
//!
//! # Sources
//! [`import`] reads files, directories and `.zip` / `.tar.gz` / `.gz`
//! archives and recognises each document by its content:
//! OSV records (any ecosystem, including the Debian/Ubuntu/Alpine OSV
//! exports), Alpine secdb JSON, the Debian security tracker (JSON export,
//! `data/CVE/list`, `data/DSA/list`, `data/DLA/list`), and CVSS sources
//! (CVE JSON 5, NVD JSON 1.1 feeds, NVD API 2.0 `cve` objects). CVSS sources
//! only rate advisories; they never create package entries. [`update`]
//! downloads source URLs and imports them.
//!
//! # Public API
//! - [`Database::open`] loads the current build of `<data>/vulndb`;
//!   [`Database::match_inventory`] (and [`Database::match_report`], which
//!   also lists what could not be compared), [`Database::query`],
//!   [`Database::status`], [`Database::version`], [`Database::built_at`].
//! - [`Handle`] keeps the newest complete build loaded for a long-running
//!   server, swapping it in when `CURRENT` changes; [`Handle::changed`]
//!   waits for a new version.
//! - [`import`] / [`update`] build a new version.
//! - [`dist`] moves a build between nodes as a tar stream (`std::io`
//!   only): packed by the node that built it, received and installed
//!   beside the current build by the others.
//! - [`version`]: the [`version::VersionScheme`] trait and one ordering per
//!   scheme (dpkg, apk, rpm, SemVer, Go, PEP 440, Maven, RubyGems, NuGet,
//!   Composer).
//!
//! # Invariants
//! - A build is written beside the current one and made current by an
//!   atomic rename of `CURRENT`; a failed import (the error names the file
//!   and record) leaves the current build untouched and in use.
//! - OS packages (`deb`, `apk`, `rpm`) are matched only against their own
//!   distribution release's data (`debian:12`, `alpine:v3.20`), keyed on the
//!   source/origin package; never against language or NVD data.
//! - A version that does not parse in its scheme is reported as
//!   [`Uncomparable`], never silently matched or dismissed.
//! - Withdrawn OSV records never match; "not affected" statements (Debian
//!   fixed version `0`, Alpine secfixes key `0`) never produce findings.
//! - RustSec informational advisories carry [`Finding::informational`] and
//!   are kept apart from vulnerabilities.
//! - Severity: the distribution's own rating when given (Debian urgency),
//!   else the CVSS v4.0, then v3.x base score, else the advisory's own word
//!   (GitHub's `database_specific.severity`), else `Unknown`.

use inventory::{Distro, Ecosystem, Inventory};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

mod build;
pub mod cvss;
pub mod dist;
mod ingest;
mod matcher;
mod model;
mod store;
mod update;
pub mod version;

pub use matcher::distro_space;
pub use model::{
    Cvss, Finding, FindingStatus, MatchReport, Severity, SourceStatus, Status, Uncomparable,
};
pub use update::{DEFAULT_SOURCES, update};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A malformed input: names the file (and archive member) and the
    /// record.
    #[error("{file}{}: {message}", record.as_ref().map(|r| format!(": record {r}")).unwrap_or_default())]
    Malformed {
        file: String,
        record: Option<String>,
        message: String,
    },
    #[error(
        "no vulnerability database in {0}; run `drydock db import PATH...` or `drydock db update`"
    )]
    NoDatabase(PathBuf),
    #[error("vulnerability database is corrupt: {0}")]
    Corrupt(String),
    #[error("no advisory data found in the given inputs")]
    NoInput,
    #[error("download {url}: {message}")]
    Download { url: String, message: String },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub(crate) fn malformed(file: &str, record: Option<&str>, message: impl ToString) -> Error {
        Error::Malformed {
            file: file.to_string(),
            record: record.map(str::to_string),
            message: message.to_string(),
        }
    }
}

/// Progress of an import, reported after each file or archive member.
#[derive(Debug, Clone)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// The file (or `archive!member`) just read.
    pub current: String,
}

/// Result of a successful import.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportReport {
    pub version: String,
    pub status: Status,
    /// Files that were not advisory data (READMEs, provenance tables).
    pub skipped_files: Vec<String>,
    pub seconds: f64,
}

/// Build a database from files, directories and archives, and make it the
/// current version of `<data_dir>/vulndb`. On error nothing changes.
pub fn import(
    data_dir: &Path,
    paths: &[PathBuf],
    progress: &mut dyn FnMut(&Progress),
) -> Result<ImportReport, Error> {
    build::import(data_dir, paths, progress)
}

/// A loaded, immutable build of the database.
pub struct Database {
    store: store::Store,
    /// The advisories, in the shared form findings are assembled from;
    /// moved out of `store.advisories` at load.
    shared: matcher::Shared,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("version", &self.version())
            .finish()
    }
}

impl Database {
    /// Open the current build in `data_dir` (`<data_dir>/vulndb/CURRENT`).
    pub fn open(data_dir: &Path) -> Result<Database, Error> {
        let Some(v) = store::current_version(data_dir)? else {
            return Err(Error::NoDatabase(data_dir.to_path_buf()));
        };
        Self::open_version(data_dir, &v)
    }

    fn open_version(data_dir: &Path, version: &str) -> Result<Database, Error> {
        let mut store = store::load(data_dir, version)?;
        let shared = matcher::Shared::new(&mut store);
        Ok(Database { store, shared })
    }

    /// Unique id of this build: `<UTC timestamp>Z-<content hash>`.
    pub fn version(&self) -> &str {
        &self.store.meta.version
    }

    /// When this build was made (RFC 3339).
    pub fn built_at(&self) -> &str {
        &self.store.meta.built_at
    }

    /// Findings for every package of the inventory. Packages whose version
    /// could not be compared are left out; see [`Database::match_report`].
    pub fn match_inventory(&self, inv: &Inventory) -> Vec<Finding> {
        self.match_report(inv).findings
    }

    /// Findings plus the package/advisory pairs that could not be decided.
    pub fn match_report(&self, inv: &Inventory) -> MatchReport {
        matcher::match_inventory(&self.store, &self.shared, inv)
    }

    /// Look up one package. For OS ecosystems, `name` is the source
    /// package and `distro` says which release's data to use.
    pub fn query(
        &self,
        ecosystem: Ecosystem,
        name: &str,
        version: &str,
        distro: Option<&Distro>,
    ) -> MatchReport {
        let pkg = inventory::Package {
            ecosystem,
            name: name.to_string(),
            version: version.to_string(),
            source_name: None,
            source_version: None,
            purl: String::new(),
            location: String::new(),
            layer: String::new(),
        };
        matcher::match_inventory(
            &self.store,
            &self.shared,
            &Inventory {
                distro: distro.cloned(),
                packages: vec![pkg],
            },
        )
    }

    /// Sources, record counts, snapshot dates.
    pub fn status(&self) -> Status {
        Status {
            // The advisories were moved into `shared` at load.
            advisories: self.shared.len(),
            ..Self::status_of(&self.store)
        }
    }

    pub(crate) fn status_of(s: &store::Store) -> Status {
        Status {
            version: s.meta.version.clone(),
            built_at: s.meta.built_at.clone(),
            advisories: s.advisories.len(),
            entries: s
                .index
                .values()
                .flat_map(|p| p.values())
                .map(Vec::len)
                .sum(),
            packages: s.index.values().map(|p| p.len()).sum(),
            sources: s.meta.sources.clone(),
        }
    }

    /// Rough heap size of the loaded database in bytes (strings, vectors
    /// and hash tables), for capacity planning.
    pub fn heap_size(&self) -> usize {
        use std::mem::size_of;
        let s = &self.store;
        let strs = |v: &[String]| {
            v.iter()
                .map(|x| x.capacity() + size_of::<String>())
                .sum::<usize>()
        };
        let mut n = 0;
        for a in &s.advisories {
            n += size_of::<store::Advisory>()
                + a.id.capacity()
                + strs(&a.aliases)
                + strs(&a.related)
                + a.summary.capacity()
                + strs(&a.references)
                + a.severity_source.capacity()
                + a.cvss.as_ref().map_or(0, |c| {
                    c.vector.capacity() + c.version.capacity() + c.source.capacity()
                });
        }
        for (space, pkgs) in &s.index {
            n +=
                space.capacity() + pkgs.capacity() * (size_of::<(String, Vec<store::Entry>)>() + 8);
            for (name, entries) in pkgs {
                n += name.capacity() + entries.capacity() * size_of::<store::Entry>();
                for e in entries {
                    for r in &e.ranges {
                        n += r.capacity() * size_of::<store::Event>();
                        for ev in r {
                            let (store::Event::Introduced(v)
                            | store::Event::Fixed(v)
                            | store::Event::LastAffected(v)
                            | store::Event::Limit(v)) = ev;
                            n += v.len() + 2 * size_of::<usize>();
                        }
                    }
                    n += e.ranges.capacity() * size_of::<Vec<store::Event>>();
                    n += e
                        .versions
                        .iter()
                        .map(|v| v.len() + size_of::<Box<str>>())
                        .sum::<usize>();
                    n += e.note.as_ref().map_or(0, |x| x.len());
                }
            }
        }
        n + self.shared.heap_size()
    }
}

struct HandleInner {
    data_dir: PathBuf,
    current: RwLock<Option<Arc<Database>>>,
    tx: tokio::sync::watch::Sender<Option<String>>,
    reload_lock: std::sync::Mutex<()>,
}

/// A hot-swapping reference to the newest complete build, for servers.
///
/// A background thread checks `CURRENT` every poll interval (2 s by
/// default) and loads a new build when it changes; readers keep using the
/// `Arc<Database>` they hold. A build that fails to load is logged and the
/// previous one stays in use.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<HandleInner>,
}

impl Handle {
    /// Open with the default poll interval (2 s). Never fails: with no
    /// database yet, [`Handle::current`] is `None` until one is imported.
    pub fn open(data_dir: &Path) -> Handle {
        Self::open_with_interval(data_dir, Duration::from_secs(2))
    }

    pub fn open_with_interval(data_dir: &Path, interval: Duration) -> Handle {
        let (tx, _) = tokio::sync::watch::channel(None);
        let h = Handle {
            inner: Arc::new(HandleInner {
                data_dir: data_dir.to_path_buf(),
                current: RwLock::new(None),
                tx,
                reload_lock: std::sync::Mutex::new(()),
            }),
        };
        if let Err(e) = h.reload() {
            tracing::warn!(error = %e, "vulnerability database not loaded");
        }
        let weak: Weak<HandleInner> = Arc::downgrade(&h.inner);
        std::thread::Builder::new()
            .name("vulndb-watch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let Some(inner) = weak.upgrade() else { return };
                    if let Err(e) = (Handle { inner }).reload() {
                        tracing::warn!(error = %e, "vulnerability database reload failed");
                    }
                }
            })
            .expect("spawn vulndb watcher");
        h
    }

    /// The build in use, if any.
    pub fn current(&self) -> Option<Arc<Database>> {
        self.inner.current.read().expect("lock").clone()
    }

    /// The version id in use.
    pub fn version(&self) -> Option<String> {
        self.inner.tx.borrow().clone()
    }

    /// Check `CURRENT` now and swap in a new build. Returns whether the
    /// version changed.
    pub fn reload(&self) -> Result<bool, Error> {
        let _guard = self.inner.reload_lock.lock().expect("lock");
        let Some(v) = store::current_version(&self.inner.data_dir)? else {
            return Ok(false);
        };
        if self.version().as_deref() == Some(v.as_str()) {
            return Ok(false);
        }
        let db = Arc::new(Database::open_version(&self.inner.data_dir, &v)?);
        *self.inner.current.write().expect("lock") = Some(db);
        self.inner.tx.send_replace(Some(v.clone()));
        tracing::info!(version = %v, "vulnerability database loaded");
        Ok(true)
    }

    /// A receiver of version ids; `changed().await` on it wakes on each
    /// new build.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.inner.tx.subscribe()
    }

    /// Wait until a build newer than the one in use at the time of the
    /// call is loaded.
    pub async fn changed(&self) {
        let mut rx = self.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.changed().await;
    }
}
