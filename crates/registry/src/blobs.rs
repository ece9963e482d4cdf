//! In-process blob API: ingest, existence, linking, deletion and readers.

use crate::{ErrorCode, Event, Registry, RegistryError, blocking, ingest_error, nanos};
use bytes::Bytes;
use futures::Stream;
use oci::{Digest, Digester, Name};
use std::sync::Arc;
use storage::BlobDriver;
use time::OffsetDateTime;
use tokio::io::AsyncRead;

impl Registry {
    /// Stream a blob in, verify it against `expected`, commit it and link
    /// it to `repo`. Returns its size.
    pub async fn put_blob(
        &self,
        repo: &Name,
        expected: &Digest,
        body: impl AsyncRead + Unpin + Send,
    ) -> Result<u64, RegistryError> {
        let stream = tokio_util::io::ReaderStream::with_capacity(body, 1 << 20);
        self.ingest_blob(repo, expected, stream, None).await
    }

    /// The one code path for monolithic blob uploads.
    pub(crate) async fn ingest_blob<S, E>(
        &self,
        repo: &Name,
        expected: &Digest,
        body: S,
        expected_len: Option<u64>,
    ) -> Result<u64, RegistryError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let blobs = self.inner.store.blobs.clone();
        let (path, file) = blocking(move || Ok(blobs.temp_file()?)).await?;
        let out = storage::ingest(
            body,
            file,
            Digester::new(expected.algorithm()),
            expected_len,
        )
        .await;
        self.inner.metrics.bytes_in.inc_by(out.written);
        let check = (|| {
            out.result.map_err(ingest_error)?;
            if let Some(l) = expected_len
                && out.written != l
            {
                return Err(RegistryError::new(
                    ErrorCode::SizeInvalid,
                    format!("received {} bytes, Content-Length said {l}", out.written),
                ));
            }
            let got = out.digester.finish();
            if &got != expected {
                return Err(RegistryError::new(
                    ErrorCode::DigestInvalid,
                    format!("content hashes to {got}, not {expected}"),
                ));
            }
            Ok(())
        })();
        drop(out.file);
        if let Err(e) = check {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let size = out.written;
        let this = self.clone();
        let (repo, digest) = (repo.clone(), expected.clone());
        blocking(move || {
            let r = this.commit_and_link(&path, &repo, &digest, size);
            if r.is_err() {
                let _ = std::fs::remove_file(&path);
            }
            r
        })
        .await?;
        Ok(size)
    }

    /// Commit a verified file into the store and link it (blocking).
    pub(crate) fn commit_and_link(
        &self,
        path: &std::path::Path,
        repo: &Name,
        digest: &Digest,
        size: u64,
    ) -> Result<(), RegistryError> {
        let store = &self.inner.store;
        let lock = store.gc_lock_shared()?;
        let new = store.blobs.commit(path, digest)?;
        if new {
            self.inner.metrics.storage_blobs.inc();
            self.inner.metrics.storage_bytes.add(size as i64);
        }
        store.meta.link_blob(
            repo.as_str(),
            digest,
            size,
            nanos(OffsetDateTime::now_utc()),
        )?;
        drop(lock);
        if new {
            self.emit(Event::BlobPushed {
                repo: repo.clone(),
                digest: digest.clone(),
                size,
            });
        }
        Ok(())
    }

    /// Whether a blob is present: linked to `repo`, or (with `None`)
    /// anywhere in the store. A failure to tell counts as absent (the
    /// caller then pushes it, which fails loudly if storage is broken) and
    /// is logged.
    pub fn has_blob(&self, repo: Option<&Name>, digest: &Digest) -> bool {
        let found = match repo {
            Some(r) => self.blob_size(r, digest).map(|s| s.is_some()),
            None => self
                .inner
                .store
                .blobs
                .stat(digest)
                .map(|s| s.is_some())
                .map_err(RegistryError::from),
        };
        found.unwrap_or_else(|e| {
            tracing::warn!(%digest, "cannot tell whether a blob is stored: {e}");
            false
        })
    }

    /// The size of a blob linked to `repo` and present on disk.
    pub(crate) fn blob_size(
        &self,
        repo: &Name,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        if self
            .inner
            .store
            .meta
            .blob_link(repo.as_str(), digest)?
            .is_none()
        {
            return Ok(None);
        }
        Ok(self.inner.store.blobs.stat(digest)?)
    }

    /// Link a blob already in the store to `repo` (cross-repository mount).
    pub fn link_blob(&self, repo: &Name, digest: &Digest) -> Result<(), RegistryError> {
        let store = &self.inner.store;
        let _lock = store.gc_lock_shared()?;
        let size = store
            .blobs
            .stat(digest)?
            .ok_or_else(|| RegistryError::blob_unknown(digest))?;
        store.meta.link_blob(
            repo.as_str(),
            digest,
            size,
            nanos(OffsetDateTime::now_utc()),
        )?;
        Ok(())
    }

    /// Remove a blob from a repository (the bytes go at the next GC).
    /// Refused (`UNSUPPORTED`, 405: the spec's codes for this endpoint are
    /// 404 and 405) while any manifest of the repository, tagged or not,
    /// references it: the image would no longer pull. Delete the manifest
    /// first.
    pub fn delete_blob(&self, repo: &Name, digest: &Digest) -> Result<(), RegistryError> {
        match self
            .inner
            .store
            .meta
            .unlink_unreferenced_blob(repo.as_str(), digest)?
        {
            storage::UnlinkBlob::Unlinked => Ok(()),
            storage::UnlinkBlob::NotLinked => Err(RegistryError::blob_unknown(digest)),
            storage::UnlinkBlob::Referenced { manifest, tag } => {
                let tag = match tag {
                    Some(t) => format!("tag {t}"),
                    None => "untagged".to_string(),
                };
                Err(RegistryError::new(
                    ErrorCode::Unsupported,
                    format!(
                        "blob {digest} is referenced by manifest {repo}@{manifest} ({tag}); \
                         delete the manifest first"
                    ),
                ))
            }
        }
    }

    /// Open a stored blob for reading from `offset`.
    pub(crate) fn open_blob(
        &self,
        digest: &Digest,
        offset: u64,
    ) -> std::io::Result<storage::BlobReader> {
        self.inner.store.blobs.open(digest, offset)
    }

    /// Synchronous readers over stored blobs.
    pub fn blob_source(&self) -> Arc<dyn oci::BlobSource> {
        Arc::new(storage::DriverSource(self.inner.store.blobs.clone()))
    }
}
