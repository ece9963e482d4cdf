//! Background work: the pull record flush, upload expiry, and noticing
//! what another process (`drydock gc`) removed.

use crate::{Event, Inner, Registry, RegistryError};
use oci::{Digest, Name};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

impl Inner {
    pub(crate) fn flush_pulls(&self) {
        let batch: Vec<(String, Digest, i64, u64)> = {
            let mut p = self.pulls.lock().unwrap_or_else(|p| p.into_inner());
            p.drain().map(|((r, d), (t, n))| (r, d, t, n)).collect()
        };
        if batch.is_empty() {
            return;
        }
        let n: u64 = batch.iter().map(|b| b.3).sum();
        match storage::block_on(self.store.meta.record_pulls(batch)) {
            Ok(()) => self.metrics.pulls_recorded.inc_by(n),
            Err(e) => tracing::warn!("cannot record pulls: {e}"),
        }
    }
}

impl Registry {
    /// When the database changed under us (another process committed),
    /// drop the manifest cache and raise `ManifestDeleted` for each
    /// manifest GC journaled as removed since the last look (and still
    /// absent). The first look, once a sink is registered, replays the
    /// whole journal (a week): removals while the server was down reach
    /// the sinks too, and a sink must treat a removal it knew as a no-op.
    pub(crate) fn notice_external_changes(&self) -> Result<(), RegistryError> {
        let inner = &self.inner;
        if inner
            .sinks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
            return Ok(());
        }
        let mut seen = inner.external.lock().unwrap_or_else(|p| p.into_inner());
        let version = storage::block_on(inner.store.meta.change_version())?;
        let cursor = match *seen {
            Some((v, _)) if v == version => return Ok(()),
            Some((_, cursor)) => {
                inner.cache.clear();
                cursor
            }
            None => 0,
        };
        let (removed, last) = storage::block_on(inner.store.meta.removed_since(cursor))?;
        *seen = Some((version, last));
        drop(seen);
        for (repo, digest) in removed {
            let Ok(repo) = Name::parse(&repo) else {
                continue;
            };
            tracing::info!(%repo, %digest, "manifest removed by garbage collection");
            self.emit(Event::ManifestDeleted { repo, digest });
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush_pulls();
    }
}

/// Background work: flush the pull record, expire idle uploads. Holds only
/// a weak reference, so it ends when the registry is dropped.
pub(crate) fn spawn_housekeeping(weak: Weak<Inner>) -> Result<(), RegistryError> {
    std::thread::Builder::new()
        .name("drydock-housekeeping".into())
        .spawn(move || {
            let mut last_expiry = Instant::now();
            loop {
                let interval = match weak.upgrade() {
                    Some(inner) => inner.opts.pull_flush_interval,
                    None => return,
                };
                std::thread::sleep(interval.min(Duration::from_secs(1)));
                let Some(inner) = weak.upgrade() else { return };
                inner.flush_pulls();
                let reg = Registry {
                    inner: Arc::clone(&inner),
                };
                if let Err(e) = reg.notice_external_changes() {
                    tracing::warn!("cannot read what garbage collection removed: {e}");
                }
                drop(reg);
                let every = (inner.opts.upload_expiry / 4)
                    .clamp(Duration::from_millis(100), Duration::from_secs(60));
                if last_expiry.elapsed() >= every {
                    last_expiry = Instant::now();
                    expire_uploads(&inner);
                }
            }
        })
        .map_err(RegistryError::internal)?;
    Ok(())
}

fn expire_uploads(inner: &Inner) {
    // Objects of sessions that no longer exist (a node that died between
    // ending a session and removing its objects; sessions kept as objects
    // before the metadata store held them).
    match storage::block_on(
        inner
            .store
            .blobs
            .sweep_upload_leftovers(inner.opts.upload_expiry),
    ) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            sessions = n,
            "removed what ended upload sessions left behind"
        ),
        Err(e) => tracing::warn!("cannot sweep what ended upload sessions left behind: {e}"),
    }
    let Ok(list) = storage::block_on(inner.store.blobs.list_uploads()) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for info in list {
        let idle = now.duration_since(info.updated).unwrap_or_default();
        if idle <= inner.opts.upload_expiry {
            continue;
        }
        // Skip sessions busy right now.
        let state = {
            let sessions = inner.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.get(&info.id).cloned()
        };
        let _guard = match &state {
            Some(s) => match s.try_lock() {
                Ok(g) => Some(g),
                Err(_) => continue,
            },
            None => None,
        };
        if expire_if_idle(&inner.store, &info.id, inner.opts.upload_expiry) {
            inner.metrics.uploads_in_progress.dec();
            tracing::info!(upload = %info.id, repo = %info.repo, "expired idle upload");
        }
        inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&info.id);
    }
}

/// Cancel an upload session that is still idle for longer than `expiry`,
/// holding its cluster lock: a request of the session running on another
/// node holds that lock, and the session is left to it (without the lock
/// a PATCH streaming slowly there was expired under it). The driver
/// re-reads it under the lock, since a request that just ended moved the
/// session on, and (S3) removes only the revision it found idle.
pub(crate) fn expire_if_idle(store: &storage::Store, id: &uuid::Uuid, expiry: Duration) -> bool {
    let _cluster = match storage::block_on(
        store
            .meta
            .try_cluster_lock(storage::ClusterLock::Upload(*id)),
    ) {
        Ok(lock) => lock,
        Err(e) if e.is_conflict() => return false,
        Err(e) => {
            tracing::warn!(upload = %id, "cannot lock an idle upload to expire it: {e}");
            return false;
        }
    };
    match storage::block_on(store.blobs.expire_upload(id, expiry)) {
        Ok(gone) => gone,
        Err(e) => {
            tracing::warn!(upload = %id, "cannot expire an idle upload: {e}");
            false
        }
    }
}
