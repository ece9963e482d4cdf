//! Resumable upload sessions: POST, PATCH (chunks in order), PUT (close
//! and commit), GET (status), DELETE (cancel).
//!
//! The blob driver owns the session: each request resumes it by id from
//! its saved state (offset, hash state, stored parts), streams its chunk
//! in, and saves it (PATCH) or commits it (PUT). A chunk that fails (out of
//! order, wrong length, client gone) is not saved, so the session stays
//! where it was: a bad request changes nothing. Any process that shares the
//! driver's storage can serve the next request of a session.
//!
//! A session's requests run one at a time: a lock per session in the
//! process, and across nodes the metadata store's lock for the session
//! ([`storage::ClusterLock::Upload`], PostgreSQL). Without it two
//! requests of one session on two nodes (a client's retry through a
//! balancer) would both resume the same saved state, and the later save
//! would describe bytes the earlier one had overwritten. Should the lock
//! fail anyway (its holder's connection died mid-request), the driver's
//! save is a compare-and-swap on the state it resumed (S3: the session
//! row in the metadata store): the second save fails and changes nothing.
//!
//! A cancel (DELETE) does not wait for that lock: it removes the session
//! at once, and a request of it still streaming on another node then
//! fails (`BLOB_UPLOAD_UNKNOWN`) instead of saving it back into being.
//!
//! A session belongs to the identity that started it: every later request
//! names the session through a [`SessionKey`] carrying the caller, and a
//! session of another identity is unknown (404), as if it did not exist.

use crate::{ErrorCode, Registry, RegistryError, SessionState, UploadWatch};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use oci::{Digest, Name};
use std::sync::Arc;
use storage::{BlobWriter, UploadInfo};
use uuid::Uuid;

/// 416: the chunk does not start where the upload stands.
pub(crate) fn range_error(msg: impl Into<String>) -> RegistryError {
    RegistryError::new(ErrorCode::BlobUploadInvalid, msg)
        .with_status(axum::http::StatusCode::RANGE_NOT_SATISFIABLE)
}

/// Which session a request is about, and who asks.
pub(crate) struct SessionKey<'a> {
    pub repo: &'a Name,
    /// The session id as the client sent it.
    pub id: &'a str,
    /// The caller's name ([`auth::Principal::name`]).
    pub owner: &'a str,
}

/// Who owns a session created before owners were recorded: only then was
/// there no access control, so the unrestricted principal.
fn legacy_owner() -> String {
    auth::Principal::unrestricted().name()
}

/// A request body as the driver takes it.
pub(crate) fn byte_stream<'a, S, E>(body: S) -> storage::ByteStream<'a>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'a,
    E: std::fmt::Display,
{
    Box::pin(body.map_err(|e| std::io::Error::other(e.to_string())))
}

/// An upload's [`UploadWatch`] while a request feeds it. Counts what
/// became of it in `drydock_upload_streams_total`; dropping it with the
/// watch still inside means the bytes it saw do not count (abandoned).
pub(crate) struct WatchSlot {
    watch: Option<Box<dyn UploadWatch>>,
    /// Still taking bytes (it has not said `false`).
    feeding: bool,
    outcomes: prometheus::IntCounterVec,
}

/// A session's watch between its requests: the offset it has seen up to
/// and whether it still takes bytes.
pub(crate) struct Parked {
    seen: u64,
    feeding: bool,
    watch: Box<dyn UploadWatch>,
}

impl WatchSlot {
    pub(crate) fn new(reg: &Registry, watch: Option<Box<dyn UploadWatch>>) -> WatchSlot {
        WatchSlot {
            watch,
            feeding: true,
            outcomes: reg.inner.metrics.streamed_uploads.clone(),
        }
    }

    fn count(&self, outcome: &str) {
        self.outcomes.with_label_values(&[outcome]).inc();
    }

    fn feed(&mut self, bytes: &Bytes) {
        if !self.feeding {
            return;
        }
        if let Some(w) = &mut self.watch
            && !w.chunk(bytes)
        {
            // The watcher fell behind: the upload goes on at full speed and
            // the watcher reads the rest after the commit.
            self.feeding = false;
            self.count("fell_behind");
        }
    }

    /// The blob verified as `digest`: tell the watch.
    pub(crate) fn committed(mut self, digest: &Digest, size: u64) {
        if let Some(w) = self.watch.take() {
            w.committed(digest, size);
            if self.feeding {
                self.count("committed");
            }
        }
    }

    /// Keep the watch for the session's next request, which starts at `offset`.
    fn park(mut self, offset: u64) -> Option<Parked> {
        let feeding = self.feeding;
        self.watch.take().map(|watch| Parked {
            seen: offset,
            feeding,
            watch,
        })
    }

    /// `body`, with each chunk shown to the watch on its way to the driver.
    pub(crate) fn watched<'a, S, E>(
        &'a mut self,
        body: S,
    ) -> impl Stream<Item = Result<Bytes, E>> + Send + Unpin + 'a
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'a,
    {
        body.inspect(move |r| {
            if let Ok(b) = r {
                self.feed(b);
            }
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        if self.watch.is_some() {
            self.count("abandoned");
        }
    }
}

impl Registry {
    /// The watch for a session's next chunk at `offset`: the one parked
    /// by its previous request if that saw every byte so far (or takes no
    /// more bytes anyway), a new one at offset 0, else none (the session
    /// is not watched).
    fn session_watch(&self, state: &mut SessionState, repo: &Name, offset: u64) -> WatchSlot {
        match state.watch.take() {
            Some(p) if p.seen == offset || !p.feeding => {
                let mut slot = WatchSlot::new(self, Some(p.watch));
                slot.feeding = p.feeding;
                slot
            }
            Some(p) => {
                // Bytes were written elsewhere (another process): what it
                // saw is not the blob.
                drop(WatchSlot::new(self, Some(p.watch)));
                WatchSlot::new(self, None)
            }
            None if offset == 0 => WatchSlot::new(self, self.watch_upload(repo)),
            None => WatchSlot::new(self, None),
        }
    }

    /// Start an upload session owned by `owner`.
    pub(crate) async fn start_upload(
        &self,
        repo: &Name,
        owner: &str,
    ) -> Result<Uuid, RegistryError> {
        let info = self
            .inner
            .store
            .blobs
            .create_upload(repo.as_str(), owner)
            .await?;
        self.inner.metrics.uploads_in_progress.inc();
        Ok(info.id)
    }

    fn session(&self, id: &Uuid) -> Arc<tokio::sync::Mutex<SessionState>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(*id)
            .or_default()
            .clone()
    }

    fn forget_session(&self, id: &Uuid) {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Look a session up, checking it belongs to the key's repository and
    /// was started by the key's owner (anyone else: unknown).
    pub(crate) async fn upload_info(
        &self,
        key: &SessionKey<'_>,
    ) -> Result<UploadInfo, RegistryError> {
        let id = Uuid::parse_str(key.id).map_err(|_| RegistryError::upload_unknown())?;
        match self.inner.store.blobs.upload_info(&id).await? {
            Some(info)
                if info.repo == key.repo.as_str()
                    && info
                        .owner
                        .as_deref()
                        .map_or_else(|| legacy_owner() == key.owner, |o| o == key.owner) =>
            {
                Ok(info)
            }
            _ => Err(RegistryError::upload_unknown()),
        }
    }

    /// The cluster-wide lock of a session (none on SQLite: one host, and
    /// the process's own lock serves).
    async fn lock_session(&self, id: &Uuid) -> Result<Option<storage::MetaLock>, RegistryError> {
        Ok(self
            .inner
            .store
            .meta
            .cluster_lock(storage::ClusterLock::Upload(*id))
            .await?)
    }

    /// Resume a session checked by [`Registry::upload_info`].
    async fn resume(&self, id: &Uuid) -> Result<Box<dyn BlobWriter>, RegistryError> {
        match self.inner.store.blobs.resume_upload(id).await {
            Ok(w) => Ok(w),
            Err(storage::BlobError::UploadUnknown) => Err(RegistryError::upload_unknown()),
            Err(e) => Err(e.into()),
        }
    }

    /// Append a chunk. `range` is the inclusive `Content-Range`, if given.
    /// Returns the new length.
    pub(crate) async fn patch_upload<S, E>(
        &self,
        key: &SessionKey<'_>,
        range: Option<(u64, u64)>,
        content_length: Option<u64>,
        body: S,
    ) -> Result<u64, RegistryError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let info = self.upload_info(key).await?;
        let state = self.session(&info.id);
        let mut state = state.lock().await;
        let _cluster = self.lock_session(&info.id).await?;
        // Re-read under the lock: another request may have moved it on.
        let info = self.upload_info(key).await?;
        let mut w = self.resume(&info.id).await?;
        let mut slot = self.session_watch(&mut state, key.repo, w.offset());
        let appended = self
            .append(&mut *w, range, content_length, slot.watched(body))
            .await;
        let saved = match appended {
            Ok(()) => w.save().await.map_err(RegistryError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = saved {
            return Err(self.unless_cancelled(key, e).await);
        }
        state.watch = slot.park(w.offset());
        Ok(w.offset())
    }

    /// A request of a session failed: if the session was cancelled (or
    /// expired) meanwhile, say so (`BLOB_UPLOAD_UNKNOWN`) rather than
    /// how the writes into its removed objects failed.
    async fn unless_cancelled(&self, key: &SessionKey<'_>, e: RegistryError) -> RegistryError {
        match self.upload_info(key).await {
            Err(gone) if gone.code == ErrorCode::BlobUploadUnknown => gone,
            _ => e,
        }
    }

    async fn append<S, E>(
        &self,
        w: &mut dyn BlobWriter,
        range: Option<(u64, u64)>,
        content_length: Option<u64>,
        body: S,
    ) -> Result<(), RegistryError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let start = w.offset();
        let mut exact = None;
        if let Some((first, last)) = range {
            if first != start || last < first {
                return Err(range_error(format!(
                    "chunk {first}-{last} does not continue the upload, which has {start} bytes"
                )));
            }
            let n = last - first + 1;
            if let Some(cl) = content_length
                && cl != n
            {
                return Err(range_error(format!(
                    "Content-Range {first}-{last} is {n} bytes, Content-Length is {cl}"
                )));
            }
            exact = Some(n);
        }
        let exact = exact.or(content_length);
        let (written, result) = w.append(byte_stream(body), exact).await;
        self.inner.metrics.bytes_in.inc_by(written);
        result?;
        if let Some(n) = exact
            && written != n
        {
            return Err(RegistryError::new(
                ErrorCode::SizeInvalid,
                format!("received {written} bytes, expected {n}"),
            ));
        }
        Ok(())
    }

    /// Close a session: append the final chunk (if any), verify the whole
    /// blob against `digest`, commit and link it. On a mismatch the session
    /// stays as it was before this request.
    pub(crate) async fn finish_upload<S, E>(
        &self,
        key: &SessionKey<'_>,
        digest: &Digest,
        range: Option<(u64, u64)>,
        content_length: Option<u64>,
        body: S,
    ) -> Result<u64, RegistryError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let info = self.upload_info(key).await?;
        let state_arc = self.session(&info.id);
        let mut state = state_arc.lock().await;
        let cluster = self.lock_session(&info.id).await?;
        let info = self.upload_info(key).await?;
        let mut w = self.resume(&info.id).await?;
        let mut slot = self.session_watch(&mut state, key.repo, w.offset());
        if let Err(e) = self
            .append(&mut *w, range, content_length, slot.watched(body))
            .await
        {
            return Err(self.unless_cancelled(key, e).await);
        }
        let len = match self.commit_and_link(w, key.repo, digest, slot).await {
            Ok(len) => len,
            Err(e) => return Err(self.unless_cancelled(key, e).await),
        };
        self.inner.metrics.uploads_in_progress.dec();
        drop(cluster);
        drop(state);
        self.forget_session(&info.id);
        Ok(len)
    }

    /// Cancel a session: the driver removes everything it stored. Not
    /// under the session's cluster lock: a request streaming on another
    /// node would hold the DELETE until its body ended; it finds the
    /// session gone when it saves instead.
    pub(crate) async fn cancel_upload(&self, key: &SessionKey<'_>) -> Result<(), RegistryError> {
        let info = self.upload_info(key).await?;
        let state_arc = self.session(&info.id);
        let _state = state_arc.lock().await;
        if self.inner.store.blobs.cancel_upload(&info.id).await? {
            self.inner.metrics.uploads_in_progress.dec();
        }
        self.forget_session(&info.id);
        Ok(())
    }
}
