//! Storage for drydock: a content-addressed blob store behind a small
//! driver trait ([`BlobDriver`], filesystem implementation [`FsBlobs`]),
//! upload sessions ([`Uploads`]), streaming verified ingest ([`ingest`]) and
//! the SQLite metadata store ([`Meta`]).
//!
//! Layout of a data directory:
//!
//! ```text
//! <data>/blobs/sha256/ab/<hex>   committed blobs, immutable, named by digest
//! <data>/tmp/<uuid>              blobs being written (removed at startup)
//! <data>/uploads/<uuid>/         upload sessions: `data` and `repo`
//! <data>/meta.db                 metadata (SQLite, WAL)
//! <data>/gc.lock                 shared by committers, exclusive for GC sweeps
//! ```
//!
//! Invariants:
//! - A file under `blobs/` always hashes to its name: it is written to a
//!   temporary file, verified by the caller, fsynced, then renamed.
//! - A repository links a blob (metadata) only after the blob is committed.
//! - Committing a blob and linking it happen under the shared GC lock, and
//!   a GC sweep (unlink + delete files) under the exclusive one, so a sweep
//!   never deletes a blob that a concurrent push has just linked.

pub mod access;
mod blobs;
pub mod ingest;
mod meta;
mod uploads;

pub use access::AccessStore;
pub use blobs::{BlobDriver, BlobReader, DriverSource, FsBlobs};
pub use ingest::{IngestError, Ingested, ingest};
pub use meta::{
    ManifestRefs, ManifestRow, ManifestSummary, Meta, MetaError, NewManifest, PutManifestError,
    Referrer, UnlinkBlob,
};
pub use rusqlite;
pub use uploads::{UploadInfo, Uploads};

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Opening a data directory failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("data directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// Everything in one data directory.
pub struct Store {
    pub root: PathBuf,
    pub blobs: Arc<FsBlobs>,
    pub uploads: Uploads,
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
    /// Open a data directory, creating what is missing. Does not clean
    /// anything up; see [`Store::recover`].
    pub fn open(root: &Path) -> Result<Store, StorageError> {
        let io_err = |source| StorageError::Io {
            path: root.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(root).map_err(io_err)?;
        let blobs = Arc::new(FsBlobs::open(root).map_err(io_err)?);
        let uploads = Uploads::open(root).map_err(io_err)?;
        let meta = Meta::open(&root.join("meta.db"))?;
        Ok(Store {
            root: root.to_path_buf(),
            blobs,
            uploads,
            meta,
        })
    }

    /// Remove temporary files left by a previous process. Only call this
    /// when no other process writes to the directory.
    pub fn recover(&self) -> io::Result<usize> {
        self.blobs.clear_temp()
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
