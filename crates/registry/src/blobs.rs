//! In-process blob API: ingest, existence, linking, deletion and readers.

use crate::upload::{WatchSlot, byte_stream};
use crate::{ErrorCode, Event, Registry, RegistryError, blocking, nanos};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use oci::{Digest, Name};
use std::sync::Arc;
use storage::{BlobError, BlobWriter, block_on};
use time::OffsetDateTime;
use tokio::io::AsyncRead;

impl From<BlobError> for RegistryError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::StorageFull(m) => RegistryError::storage_full(m),
            BlobError::UploadUnknown => RegistryError::upload_unknown(),
            BlobError::UploadChanged => crate::upload::range_error(e.to_string()),
            BlobError::DigestMismatch { expected, got } => RegistryError::new(
                ErrorCode::DigestInvalid,
                format!("content hashes to {got}, not {expected}"),
            ),
            BlobError::Body(m) => RegistryError::new(ErrorCode::BlobUploadInvalid, m),
            BlobError::TooLarge(l) => RegistryError::new(
                ErrorCode::SizeInvalid,
                format!("more than the {l} bytes announced"),
            ),
            BlobError::Io(e) => RegistryError::from(e),
            e @ (BlobError::NotFound | BlobError::Backend(_)) => RegistryError::internal(e),
        }
    }
}

impl From<storage::StorageError> for RegistryError {
    fn from(e: storage::StorageError) -> Self {
        match e {
            storage::StorageError::Io { source, .. } => RegistryError::from(source),
            storage::StorageError::Meta(e) => RegistryError::from(e),
            storage::StorageError::Blobs(e) => RegistryError::from(e),
        }
    }
}

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
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let mut w = self.inner.store.blobs.put(expected).await?;
        let mut slot = WatchSlot::new(self, self.watch_upload(repo));
        let (written, result) = w
            .append(byte_stream(slot.watched(body)), expected_len)
            .await;
        self.inner.metrics.bytes_in.inc_by(written);
        // Dropping the writer on any error leaves nothing behind.
        result?;
        if let Some(l) = expected_len
            && written != l
        {
            return Err(RegistryError::new(
                ErrorCode::SizeInvalid,
                format!("received {written} bytes, Content-Length said {l}"),
            ));
        }
        self.commit_and_link(w, repo, expected, slot).await
    }

    /// Verify and commit a writer's blob and link it to `repo`, under the
    /// shared GC lock (the cluster's on PostgreSQL: a GC on any node waits
    /// for the commit, or the commit for the GC), and tell the upload's watch (if any) before the
    /// `BlobPushed` event. Returns its size.
    pub(crate) async fn commit_and_link(
        &self,
        w: Box<dyn BlobWriter>,
        repo: &Name,
        digest: &Digest,
        watch: WatchSlot,
    ) -> Result<u64, RegistryError> {
        let this = self.clone();
        let lock = blocking(move || Ok(this.inner.store.gc_lock_shared()?)).await?;
        let committed = w.commit(digest).await?;
        let size = committed.size;
        if committed.new {
            self.inner.metrics.storage_blobs.inc();
            self.inner.metrics.storage_bytes.add(size as i64);
        }
        self.inner
            .store
            .meta
            .link_blob(
                repo.as_str(),
                digest,
                size,
                nanos(OffsetDateTime::now_utc()),
            )
            .await?;
        drop(lock);
        watch.committed(digest, size);
        if committed.new {
            self.emit(Event::BlobPushed {
                repo: repo.clone(),
                digest: digest.clone(),
                size,
            });
        }
        Ok(size)
    }

    /// Whether a blob is present: linked to `repo`, or (with `None`)
    /// anywhere in the store. A failure to tell counts as absent (the
    /// caller then pushes it, which fails loudly if storage is broken) and
    /// is logged.
    pub fn has_blob(&self, repo: Option<&Name>, digest: &Digest) -> bool {
        let found = match repo {
            Some(r) => self.blob_size(r, digest).map(|s| s.is_some()),
            None => block_on(self.inner.store.blobs.stat(digest))
                .map(|s| s.is_some())
                .map_err(RegistryError::from),
        };
        found.unwrap_or_else(|e| {
            tracing::warn!(%digest, "cannot tell whether a blob is stored: {e}");
            false
        })
    }

    /// The size of a blob linked to `repo` and present in the store
    /// (blocking: for synchronous callers).
    pub(crate) fn blob_size(
        &self,
        repo: &Name,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        if block_on(self.inner.store.meta.blob_link(repo.as_str(), digest))?.is_none() {
            return Ok(None);
        }
        Ok(block_on(self.inner.store.blobs.stat(digest))?.map(|s| s.size))
    }

    /// [`Registry::blob_size`] for async callers.
    pub(crate) async fn blob_size_async(
        &self,
        repo: &Name,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        if self
            .inner
            .store
            .meta
            .blob_link(repo.as_str(), digest)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        Ok(self.inner.store.blobs.stat(digest).await?.map(|s| s.size))
    }

    /// Link a blob already in the store to `repo` (cross-repository mount).
    pub fn link_blob(&self, repo: &Name, digest: &Digest) -> Result<(), RegistryError> {
        let store = &self.inner.store;
        let _lock = store.gc_lock_shared()?;
        let size = block_on(store.blobs.stat(digest))?
            .ok_or_else(|| RegistryError::blob_unknown(digest))?
            .size;
        block_on(store.meta.link_blob(
            repo.as_str(),
            digest,
            size,
            nanos(OffsetDateTime::now_utc()),
        ))?;
        Ok(())
    }

    /// Remove a blob from a repository (the bytes go at the next GC).
    /// Refused (`UNSUPPORTED`, 405: the spec's codes for this endpoint are
    /// 404 and 405) while any manifest of the repository, tagged or not,
    /// references it: the image would no longer pull. Delete the manifest
    /// first.
    pub fn delete_blob(&self, repo: &Name, digest: &Digest) -> Result<(), RegistryError> {
        match block_on(
            self.inner
                .store
                .meta
                .unlink_unreferenced_blob(repo.as_str(), digest),
        )? {
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

    /// Stream `len` bytes of a stored blob from `offset`, counted as
    /// bytes out.
    pub(crate) async fn read_blob(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<storage::BlobStream, RegistryError> {
        let stream = match self.inner.store.blobs.read(digest, offset, Some(len)).await {
            Ok(s) => s,
            Err(BlobError::NotFound) => return Err(RegistryError::blob_unknown(digest)),
            Err(e) => return Err(e.into()),
        };
        let reg = self.clone();
        Ok(Box::pin(stream.inspect(move |b| {
            if let Ok(b) = b {
                reg.inner.metrics.bytes_out.inc_by(b.len() as u64);
            }
        })))
    }

    /// Where a client may fetch the blob directly, when the driver hands
    /// out presigned URLs.
    pub(crate) async fn blob_redirect(
        &self,
        digest: &Digest,
    ) -> Result<Option<String>, RegistryError> {
        Ok(self.inner.store.blobs.redirect_url(digest).await?)
    }

    /// Synchronous readers over stored blobs (call them from blocking
    /// threads).
    pub fn blob_source(&self) -> Arc<dyn oci::BlobSource> {
        Arc::new(storage::DriverSource(self.inner.store.blobs.clone()))
    }
}
