//! Resumable upload sessions: POST, PATCH (chunks in order), PUT (close
//! and commit), GET (status), DELETE (cancel).
//!
//! A session's bytes are appended to its data file. A chunk that fails
//! (out of order, wrong length, client gone) is rolled back: the file is
//! truncated to where it was and the hash state restored, so a bad request
//! changes nothing.
//!
//! A session belongs to the identity that started it: every later request
//! names the session through a [`SessionKey`] carrying the caller, and a
//! session of another identity is unknown (404), as if it did not exist.

use crate::{ErrorCode, Registry, RegistryError, SessionState, blocking, ingest_error};
use bytes::Bytes;
use futures::Stream;
use oci::{Algorithm, Digest, Digester, Name};
use std::io::Read;
use std::sync::Arc;
use storage::UploadInfo;
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

impl Registry {
    /// Start an upload session owned by `owner`.
    pub(crate) async fn start_upload(
        &self,
        repo: &Name,
        owner: &str,
    ) -> Result<Uuid, RegistryError> {
        let this = self.clone();
        let repo = repo.to_string();
        let owner = owner.to_string();
        let info = blocking(move || Ok(this.inner.store.uploads.create(&repo, &owner)?)).await?;
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
    pub(crate) fn upload_info(&self, key: &SessionKey<'_>) -> Result<UploadInfo, RegistryError> {
        let id = Uuid::parse_str(key.id).map_err(|_| RegistryError::upload_unknown())?;
        match self.inner.store.uploads.get(&id)? {
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
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let info = self.upload_info(key)?;
        let state = self.session(&info.id);
        let mut state = state.lock().await;
        // Re-read under the lock: another request may have moved it on.
        let info = self.upload_info(key)?;
        self.append(&info, &mut state, range, content_length, body)
            .await
    }

    async fn append<S, E>(
        &self,
        info: &UploadInfo,
        state: &mut SessionState,
        range: Option<(u64, u64)>,
        content_length: Option<u64>,
        body: S,
    ) -> Result<u64, RegistryError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let start = info.len;
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
        let hashed = match state.hashed.take() {
            Some((n, h)) if n == start => Some(h),
            _ => None,
        };
        let this = self.clone();
        let info2 = info.clone();
        let file = blocking(move || Ok(this.inner.store.uploads.open_data(&info2)?)).await?;
        let digester = hashed
            .clone()
            .unwrap_or_else(|| Digester::new(Algorithm::Sha256));
        let out = storage::ingest(body, file, digester, exact).await;
        self.inner.metrics.bytes_in.inc_by(out.written);
        let mut result = out.result.map_err(ingest_error);
        if result.is_ok()
            && let Some(n) = exact
            && out.written != n
        {
            result = Err(RegistryError::new(
                ErrorCode::SizeInvalid,
                format!("received {} bytes, expected {n}", out.written),
            ));
        }
        match result {
            Ok(()) => {
                let len = start + out.written;
                if hashed.is_some() || start == 0 {
                    state.hashed = Some((len, out.digester));
                }
                Ok(len)
            }
            Err(e) => {
                // Roll back to where the session was; the write's error
                // is the one the client needs to see.
                let file = out.file;
                if let Err(r) = blocking(move || Ok(file.set_len(start)?)).await {
                    tracing::warn!(upload = %info.id, "cannot roll the upload back: {r}");
                }
                state.hashed = hashed.map(|h| (start, h));
                Err(e)
            }
        }
    }

    /// Close a session: append the final chunk (if any), verify the whole
    /// blob against `digest`, commit and link it.
    pub(crate) async fn finish_upload<S, E>(
        &self,
        key: &SessionKey<'_>,
        digest: &Digest,
        range: Option<(u64, u64)>,
        content_length: Option<u64>,
        body: S,
    ) -> Result<u64, RegistryError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let info = self.upload_info(key)?;
        let state_arc = self.session(&info.id);
        let mut state = state_arc.lock().await;
        let info = self.upload_info(key)?;
        let before = info.len;
        let saved = state.hashed.clone();
        let len = self
            .append(&info, &mut state, range, content_length, body)
            .await?;
        let computed = match (&state.hashed, digest.algorithm()) {
            (Some((n, h)), Algorithm::Sha256) if *n == len => h.clone().finish(),
            _ => {
                let path = info.data.clone();
                let alg = digest.algorithm();
                blocking(move || Ok(hash_file(&path, alg)?)).await?
            }
        };
        if &computed != digest {
            // Undo the final chunk; the session stays as it was.
            let path = info.data.clone();
            blocking(move || {
                let f = std::fs::OpenOptions::new().write(true).open(path)?;
                Ok(f.set_len(before)?)
            })
            .await?;
            state.hashed = saved;
            return Err(RegistryError::new(
                ErrorCode::DigestInvalid,
                format!("upload hashes to {computed}, not {digest}"),
            ));
        }
        let this = self.clone();
        let (repo2, digest2, path, id2) =
            (key.repo.clone(), digest.clone(), info.data.clone(), info.id);
        blocking(move || {
            this.commit_and_link(&path, &repo2, &digest2, len)?;
            this.inner.store.uploads.remove(&id2)?;
            Ok(())
        })
        .await?;
        self.inner.metrics.uploads_in_progress.dec();
        drop(state);
        self.forget_session(&info.id);
        Ok(len)
    }

    /// Cancel a session.
    pub(crate) async fn cancel_upload(&self, key: &SessionKey<'_>) -> Result<(), RegistryError> {
        let info = self.upload_info(key)?;
        let state_arc = self.session(&info.id);
        let _state = state_arc.lock().await;
        if self.inner.store.uploads.remove(&info.id)? {
            self.inner.metrics.uploads_in_progress.dec();
        }
        self.forget_session(&info.id);
        Ok(())
    }
}

fn hash_file(path: &std::path::Path, alg: Algorithm) -> std::io::Result<Digest> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Digester::new(alg);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}
