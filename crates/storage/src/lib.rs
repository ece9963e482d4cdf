//! Storage for drydock: a content-addressed blob store behind one async
//! driver interface that owns uploads ([`BlobDriver`], [`BlobWriter`];
//! implemented for the filesystem, [`FsBlobs`], and for S3-compatible
//! object stores, [`S3Blobs`]), streaming verified ingest ([`ingest`]) and
//! the metadata and access-control stores behind two async traits
//! ([`Meta`], [`AccessStore`]; typed errors, [`MetaError`]) implemented
//! on SQLite ([`SqliteMeta`], [`SqliteAccess`]: the embedded default) and
//! on PostgreSQL ([`PgMeta`], [`PgAccess`]), both with versioned schema
//! migrations. [`MetadataStorage`] says which; [`Store::open`] and
//! [`open_access`] open it. The S3 driver keeps its upload sessions in
//! the metadata store too ([`UploadSessions`]: a save is a
//! compare-and-swap on the session's revision), so every node sees them.
//!
//! Layout of a data directory (the blob parts only with the filesystem
//! driver; see [`S3Blobs`] for the object layout):
//!
//! ```text
//! <data>/blobs/sha256/ab/<hex>   committed blobs, immutable, named by digest
//! <data>/tmp/<uuid>              monolithic pushes being written (removed at startup)
//! <data>/uploads/<uuid>/         upload sessions: `data`, `state`, `repo`, `owner`
//! <data>/meta.db                 metadata (SQLite, WAL; unless PostgreSQL is configured)
//! <data>/gc.lock                 shared by committers, exclusive for GC (SQLite; on
//!                                PostgreSQL a session advisory lock instead, see
//!                                [`Meta::cluster_lock`])
//! ```
//!
//! Invariants:
//! - A blob under its content address always hashes to its name: the
//!   writer hashes while it streams and makes the blob visible (a rename,
//!   or completing/copying an S3 object) only when the digest matches.
//! - A repository links a blob (metadata) only after the blob is committed.
//! - Committing a blob and linking it happen under the shared GC lock, and
//!   a GC sweep (unlink + delete files) under the exclusive one, so a sweep
//!   never deletes a blob that a concurrent push has just linked.

pub mod access;
pub mod assess;
mod blobs;
pub mod hashstate;
pub mod ingest;
mod meta;
mod pg;
pub mod releases;
mod s3;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
mod uploads;

pub use access::AccessStore;
pub use blobs::{
    BlobDriver, BlobError, BlobReader, BlobStat, BlobStream, BlobWriter, ByteStream, Committed,
    DriverSource, FsBlobs, block_on,
};
pub use ingest::{IngestError, Ingested, ingest};
pub use meta::{
    ClusterLock, Duty, GcMarked, GcParams, Leadership, ManifestRow, ManifestSummary, Meta,
    MetaError, MetaLock, NewManifest, PutManifestError, Referrer, StoredImportJob, UnlinkBlob,
};
pub use pg::uploads::PgUploads;
pub use pg::{PgAccess, PgConfig, PgMeta, PgTlsMode};
pub use releases::{Release, Releases, open_releases};
pub use s3::{S3Blobs, S3Config};
pub use sqlite::access::SqliteAccess;
pub use sqlite::meta::SqliteMeta;
pub use sqlite::uploads::SqliteUploads;
pub use uploads::{UploadCasError, UploadInfo, UploadRecord, UploadSessions};

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Whether an I/O error means the filesystem (or the user's quota) is
/// full: ENOSPC or EDQUOT.
pub fn is_storage_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Free space (for an unprivileged writer) and total size, in bytes, of
/// the filesystem holding `path`.
// The statvfs field types differ between platforms (u32 on some).
#[allow(clippy::unnecessary_cast)]
pub fn fs_space(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to
    // writable memory of the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    let frsize = if st.f_frsize > 0 {
        st.f_frsize as u64
    } else {
        st.f_bsize as u64
    };
    Ok((
        (st.f_bavail as u64).saturating_mul(frsize),
        (st.f_blocks as u64).saturating_mul(frsize),
    ))
}

/// Opening a data directory failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("data directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("blob storage: {0}")]
    Blobs(#[from] BlobError),
}

/// Where blobs live.
#[derive(Debug, Clone, Default)]
pub enum BlobStorage {
    /// Under the data directory (the default).
    #[default]
    Filesystem,
    /// In an S3-compatible bucket.
    S3(S3Config),
}

/// A metadata store and its upload session table, on shared connections.
pub type MetaAndUploads = (Arc<dyn Meta>, Arc<dyn UploadSessions>);

/// Where registry metadata and access control live.
#[derive(Debug, Clone, Default)]
pub enum MetadataStorage {
    /// `<data>/meta.db` (the default).
    #[default]
    Sqlite,
    /// A PostgreSQL database, shared by every node.
    Postgres(Box<PgConfig>),
}

impl MetadataStorage {
    /// From a `metadata.url`: `postgres://…` (or `postgresql://…`) selects
    /// PostgreSQL, `sqlite` or an empty string the data directory's file.
    pub fn from_url(url: &str) -> Result<MetadataStorage, MetaError> {
        let url = url.trim();
        if url.is_empty() || url == "sqlite" {
            return Ok(MetadataStorage::Sqlite);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(MetadataStorage::Postgres(Box::new(PgConfig::new(url)?)));
        }
        Err(MetaError::Backend(
            "metadata.url must start with postgres:// (or be empty for SQLite)".into(),
        ))
    }

    /// Open the registry metadata store.
    pub fn open_meta(&self, data_dir: &Path) -> Result<Arc<dyn Meta>, MetaError> {
        Ok(match self {
            MetadataStorage::Sqlite => Arc::new(SqliteMeta::open(&data_dir.join("meta.db"))?),
            MetadataStorage::Postgres(cfg) => Arc::new(PgMeta::connect(cfg)?),
        })
    }

    /// Open the registry metadata store and, on the same connections, its
    /// upload session table.
    pub fn open_meta_and_uploads(&self, data_dir: &Path) -> Result<MetaAndUploads, MetaError> {
        Ok(match self {
            MetadataStorage::Sqlite => {
                let m = SqliteMeta::open(&data_dir.join("meta.db"))?;
                (Arc::new(m.clone()), Arc::new(SqliteUploads::of(&m)))
            }
            MetadataStorage::Postgres(cfg) => {
                let m = PgMeta::connect(cfg)?;
                (Arc::new(m.clone()), Arc::new(PgUploads::of(&m)))
            }
        })
    }
}

/// Open the access-control store (users, robots, tokens, bindings, audit).
pub fn open_access(
    data_dir: &Path,
    metadata: &MetadataStorage,
) -> Result<Arc<dyn AccessStore>, MetaError> {
    Ok(match metadata {
        MetadataStorage::Sqlite => Arc::new(SqliteAccess::open(&data_dir.join("meta.db"))?),
        MetadataStorage::Postgres(cfg) => Arc::new(PgAccess::connect(cfg)?),
    })
}

/// Everything in one data directory.
pub struct Store {
    pub root: PathBuf,
    pub blobs: Arc<dyn BlobDriver>,
    pub meta: Arc<dyn Meta>,
}

/// A held GC lock (the cluster's, or the data directory's
/// `gc.lock`); released on drop.
pub struct GcLock {
    file: Option<File>,
    _cluster: Option<MetaLock>,
}

impl Drop for GcLock {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = f.unlock();
        }
    }
}

impl Store {
    /// Open a data directory, creating what is missing, with blobs where
    /// `blobs` says and metadata where `metadata` says. Does not clean
    /// anything up; see [`Store::recover`].
    pub fn open(
        root: &Path,
        blobs: &BlobStorage,
        metadata: &MetadataStorage,
    ) -> Result<Store, StorageError> {
        let io_err = |source| StorageError::Io {
            path: root.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(root).map_err(io_err)?;
        let (meta, sessions) = metadata.open_meta_and_uploads(root)?;
        let blobs: Arc<dyn BlobDriver> = match blobs {
            // One host: its sessions stay beside their bytes (`uploads/`).
            BlobStorage::Filesystem => Arc::new(FsBlobs::open(root).map_err(io_err)?),
            BlobStorage::S3(cfg) => {
                // Local temporaries are never written with S3, but tools
                // and tests look for the directory.
                std::fs::create_dir_all(root.join("tmp")).map_err(io_err)?;
                // Sessions in the metadata store, where any node finds
                // them and a save is a compare-and-swap; bytes in the bucket.
                Arc::new(S3Blobs::new(cfg.clone())?.with_sessions(sessions))
            }
        };
        Ok(Store {
            root: root.to_path_buf(),
            blobs,
            meta,
        })
    }

    /// Remove temporary files left by a previous process. Only call this
    /// when no other process writes to the directory.
    pub fn recover(&self) -> Result<usize, BlobError> {
        block_on(self.blobs.recover())
    }

    fn lock_file(&self) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(self.root.join("gc.lock"))
    }

    /// Take the GC lock shared (committers of blobs and manifests).
    /// Blocks while a sweep runs, on any node sharing the metadata store.
    /// Blocking: call it from a blocking thread.
    pub fn gc_lock_shared(&self) -> Result<GcLock, StorageError> {
        self.gc_lock(false)
    }

    /// Take the GC lock exclusively (a whole GC: mark, sweep and blob
    /// deletion). Blocks while commits run, on any node. Blocking.
    pub fn gc_lock_exclusive(&self) -> Result<GcLock, StorageError> {
        self.gc_lock(true)
    }

    /// The metadata store's cluster lock when it has one (PostgreSQL: the
    /// nodes share no directory), else the data directory's file.
    fn gc_lock(&self, exclusive: bool) -> Result<GcLock, StorageError> {
        let which = if exclusive {
            ClusterLock::GcExclusive
        } else {
            ClusterLock::GcShared
        };
        if let Some(l) = block_on(self.meta.cluster_lock(which))? {
            return Ok(GcLock {
                file: None,
                _cluster: Some(l),
            });
        }
        let io_err = |source| StorageError::Io {
            path: self.root.join("gc.lock"),
            source,
        };
        let f = self.lock_file().map_err(io_err)?;
        if exclusive { f.lock() } else { f.lock_shared() }.map_err(io_err)?;
        Ok(GcLock {
            file: Some(f),
            _cluster: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_errors_are_recognised() {
        assert!(is_storage_full(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_storage_full(&io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(is_storage_full(&io::Error::from(
            io::ErrorKind::StorageFull
        )));
        assert!(!is_storage_full(&io::Error::from_raw_os_error(libc::EIO)));
        let sqlite = |code| {
            sqlite::err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        assert!(sqlite(rusqlite::ffi::SQLITE_FULL).is_storage_full());
        assert!(!sqlite(rusqlite::ffi::SQLITE_BUSY).is_storage_full());
        assert!(sqlite(rusqlite::ffi::SQLITE_BUSY).is_conflict());
        assert!(sqlite(rusqlite::ffi::SQLITE_CONSTRAINT).is_conflict());
    }

    #[test]
    fn metadata_urls() {
        assert!(matches!(
            MetadataStorage::from_url("").unwrap(),
            MetadataStorage::Sqlite
        ));
        let MetadataStorage::Postgres(pg) =
            MetadataStorage::from_url("postgres://drydock:s3cret@127.0.0.1:5432/reg").unwrap()
        else {
            panic!("not postgres");
        };
        assert!(!pg.describe().contains("s3cret"));
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert!(MetadataStorage::from_url("mysql://x").is_err());
        let bad = MetadataStorage::from_url("postgres://u:s3cret@[bad").unwrap_err();
        assert!(!bad.to_string().contains("s3cret"));
    }

    #[test]
    fn free_space_of_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = fs_space(dir.path()).unwrap();
        assert!(total > 0 && free <= total);
        assert!(fs_space(&dir.path().join("missing")).is_err());
    }
}
