//! Storage for drydock: a content-addressed blob store behind one async
//! driver interface that owns uploads ([`BlobDriver`], [`BlobWriter`];
//! implemented for the filesystem, [`FsBlobs`], and for S3-compatible
//! object stores, [`S3Blobs`]), streaming verified ingest ([`ingest`]) and
//! the SQLite metadata store ([`Meta`]).
//!
//! Layout of a data directory (the blob parts only with the filesystem
//! driver; see [`S3Blobs`] for the object layout):
//!
//! ```text
//! <data>/blobs/sha256/ab/<hex>   committed blobs, immutable, named by digest
//! <data>/tmp/<uuid>              monolithic pushes being written (removed at startup)
//! <data>/uploads/<uuid>/         upload sessions: `data`, `state`, `repo`, `owner`
//! <data>/meta.db                 metadata (SQLite, WAL)
//! <data>/gc.lock                 shared by committers, exclusive for GC sweeps
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
mod blobs;
pub mod hashstate;
pub mod ingest;
mod meta;
mod s3;
mod uploads;

pub use access::AccessStore;
pub use blobs::{
    BlobDriver, BlobError, BlobReader, BlobStat, BlobStream, BlobWriter, ByteStream, Committed,
    DriverSource, FsBlobs, block_on,
};
pub use ingest::{IngestError, Ingested, ingest};
pub use meta::{
    ManifestRefs, ManifestRow, ManifestSummary, Meta, MetaError, NewManifest, PutManifestError,
    Referrer, UnlinkBlob,
};
pub use rusqlite;
pub use s3::{S3Blobs, S3Config};
pub use uploads::UploadInfo;

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

/// Everything in one data directory.
pub struct Store {
    pub root: PathBuf,
    pub blobs: Arc<dyn BlobDriver>,
    pub meta: Meta,
}

/// A held GC lock; released on drop.
pub struct GcLock(File);

impl Drop for GcLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Store {
    /// Open a data directory, creating what is missing, with blobs where
    /// `blobs` says. Does not clean anything up; see [`Store::recover`].
    pub fn open(root: &Path, blobs: &BlobStorage) -> Result<Store, StorageError> {
        let io_err = |source| StorageError::Io {
            path: root.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(root).map_err(io_err)?;
        let blobs: Arc<dyn BlobDriver> = match blobs {
            BlobStorage::Filesystem => Arc::new(FsBlobs::open(root).map_err(io_err)?),
            BlobStorage::S3(cfg) => {
                // Local temporaries are never written with S3, but tools
                // and tests look for the directory.
                std::fs::create_dir_all(root.join("tmp")).map_err(io_err)?;
                Arc::new(S3Blobs::new(cfg.clone())?)
            }
        };
        let meta = Meta::open(&root.join("meta.db"))?;
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

    /// Take the GC lock shared (committers). Blocks while a sweep runs.
    pub fn gc_lock_shared(&self) -> io::Result<GcLock> {
        let f = self.lock_file()?;
        f.lock_shared()?;
        Ok(GcLock(f))
    }

    /// Take the GC lock exclusively (a sweep). Blocks while commits run.
    pub fn gc_lock_exclusive(&self) -> io::Result<GcLock> {
        let f = self.lock_file()?;
        f.lock()?;
        Ok(GcLock(f))
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
        let full = MetaError(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        assert!(full.is_storage_full());
        let busy = MetaError(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ));
        assert!(!busy.is_storage_full());
    }

    #[test]
    fn free_space_of_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = fs_space(dir.path()).unwrap();
        assert!(total > 0 && free <= total);
        assert!(fs_space(&dir.path().join("missing")).is_err());
    }
}
