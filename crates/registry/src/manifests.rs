//! In-process manifest API (validated push, cached reads, deletes, pull
//! records). The cache itself is in `manifest_cache.rs`.

use crate::{ErrorCode, Event, Origin, Registry, RegistryError, StoredManifest, blocking, nanos};
use bytes::Bytes;
use oci::{Algorithm, Digest, Digester, Manifest, ManifestError, Name, Reference, Tag};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{PutManifestError, block_on};
use time::OffsetDateTime;

impl Registry {
    /// Validate and store a manifest under `reference` (a tag, or the
    /// digest it must hash to). Returns its digest.
    pub async fn put_manifest(
        &self,
        repo: &Name,
        reference: &Reference,
        body: Bytes,
        content_type: Option<&str>,
        origin: Origin,
    ) -> Result<Digest, RegistryError> {
        self.put_manifest_tags(repo, reference, &[], body, content_type, origin, None)
            .await
            .map(|(d, _)| d)
    }

    /// [`Registry::put_manifest`] with extra tags (`?tag=` on a push by
    /// digest). Returns the digest and the subject, if any.
    #[allow(clippy::too_many_arguments)] // one internal caller besides put_manifest
    pub(crate) async fn put_manifest_tags(
        &self,
        repo: &Name,
        reference: &Reference,
        extra_tags: &[Tag],
        body: Bytes,
        content_type: Option<&str>,
        origin: Origin,
        pusher: Option<auth::Identity>,
    ) -> Result<(Digest, Option<Digest>), RegistryError> {
        if body.len() > self.inner.opts.max_manifest_size {
            return Err(RegistryError::new(
                ErrorCode::SizeInvalid,
                format!(
                    "manifest is {} bytes, the limit is {}",
                    body.len(),
                    self.inner.opts.max_manifest_size
                ),
            )
            .with_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE));
        }
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => Algorithm::Sha256,
        };
        let mut h = Digester::new(algorithm);
        h.update(&body);
        let digest = h.finish();
        if let Reference::Digest(d) = reference
            && d != &digest
        {
            return Err(RegistryError::new(
                ErrorCode::DigestInvalid,
                format!("manifest hashes to {digest}, not {d}"),
            ));
        }
        let manifest = Manifest::parse(&body, content_type).map_err(|e| match e {
            ManifestError::Schema1 => RegistryError::new(
                ErrorCode::ManifestInvalid,
                "Docker schema 1 manifests are not supported; push a schema 2 or OCI manifest",
            ),
            e => RegistryError::new(ErrorCode::ManifestInvalid, e.to_string()),
        })?;
        let blobs: Vec<(Digest, u64)> = manifest
            .blobs()
            .into_iter()
            .filter(|d| d.urls.as_ref().is_none_or(|u| u.is_empty()))
            .map(|d| (d.digest.clone(), d.size))
            .collect();
        let children: Vec<(Digest, u64, String)> = manifest
            .children()
            .iter()
            .map(|d| (d.digest.clone(), d.size, d.media_type.clone()))
            .collect();
        let subject = manifest.subject().map(|s| s.digest.clone());
        let annotations = manifest
            .annotations()
            .filter(|a| !a.is_empty())
            .map(|a| serde_json::to_string(a).unwrap_or_default());
        let mut event_tags: Vec<Tag> = Vec::with_capacity(extra_tags.len() + 1);
        if let Reference::Tag(t) = reference {
            event_tags.push(t.clone());
        }
        for t in extra_tags {
            if !event_tags.contains(t) {
                event_tags.push(t.clone());
            }
        }
        let tags: Vec<String> = event_tags.iter().map(|t| t.to_string()).collect();
        let at = OffsetDateTime::now_utc();
        let media_type = manifest.media_type().to_string();
        let artifact_type = manifest.artifact_type().map(str::to_string);
        let new = storage::NewManifest {
            repo: repo.as_str().to_string(),
            digest: digest.clone(),
            media_type: media_type.clone(),
            body: body.to_vec(),
            subject: subject.clone(),
            artifact_type,
            annotations,
            blobs,
            children,
            tags,
            origin: origin.as_str().to_string(),
            at: nanos(at),
        };
        let repo2 = repo;
        // Under the shared GC lock, as blob commits: no GC on any node
        // runs between the reference check and the commit.
        let this = self.clone();
        let gc_lock = blocking(move || Ok(this.inner.store.gc_lock_shared()?)).await?;
        let stored = self.inner.store.meta.put_manifest(new).await;
        drop(gc_lock);
        stored.map_err(|e| match e {
            PutManifestError::BlobUnknown(d) => RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("blob {d} is not in repository {repo2}; push it first"),
            ),
            PutManifestError::BlobSize {
                digest,
                expected,
                actual,
            } => RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!("blob {digest} is {actual} bytes, the manifest says {expected}"),
            ),
            PutManifestError::ChildUnknown(d) => RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("manifest {d} is not in repository {repo2}; push it first"),
            ),
            PutManifestError::ChildMismatch { digest, why } => RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!("manifest {digest}: {why}"),
            ),
            PutManifestError::Db(e) => RegistryError::from(e),
        })?;
        self.inner.metrics.bytes_in.inc_by(body.len() as u64);
        let digest_key = digest.to_string();
        self.inner.cache.invalidate(
            repo.as_str(),
            event_tags
                .iter()
                .map(|t| t.as_str())
                .chain([digest_key.as_str()]),
        );
        self.emit(Event::ManifestPushed {
            repo: repo.clone(),
            digest: digest.clone(),
            media_type,
            tags: event_tags,
            origin,
            pusher,
            at,
        });
        Ok((digest, subject))
    }

    /// A manifest by tag or digest.
    pub async fn get_manifest(
        &self,
        repo: &Name,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, RegistryError> {
        Ok(self
            .get_manifest_cached(repo, reference)?
            .map(|m| (*m).clone()))
    }

    pub(crate) fn get_manifest_cached(
        &self,
        repo: &Name,
        reference: &Reference,
    ) -> Result<Option<Arc<StoredManifest>>, RegistryError> {
        self.check_cache()?;
        let key = reference.to_string();
        if let Some(m) = self.inner.cache.get(repo.as_str(), &key) {
            return Ok(Some(m));
        }
        let seen = self.inner.cache.generation();
        let meta = &self.inner.store.meta;
        let row = match reference {
            Reference::Tag(t) => block_on(meta.manifest_by_tag(repo.as_str(), t.as_str()))?,
            Reference::Digest(d) => block_on(meta.manifest(repo.as_str(), d))?,
        };
        let Some(row) = row else { return Ok(None) };
        let m = Arc::new(StoredManifest {
            bytes: Bytes::from(row.body),
            media_type: row.media_type,
            digest: row.digest,
            subject: row.subject.and_then(|s| Digest::parse(&s).ok()),
        });
        self.inner.cache.put(repo.as_str(), &key, m.clone(), seen);
        Ok(Some(m))
    }

    /// Drop the cache when another process (GC) changed the database;
    /// checked at most once a second.
    fn check_cache(&self) -> Result<(), RegistryError> {
        let mut checked = self
            .inner
            .cache
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if checked.0.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        let v = block_on(self.inner.store.meta.change_version())?;
        if v != checked.1 {
            self.inner.cache.clear();
        }
        *checked = (Instant::now(), v);
        Ok(())
    }

    /// Delete a manifest (by digest) and the tags pointing at it.
    pub fn delete_manifest(&self, repo: &Name, digest: &Digest) -> Result<(), RegistryError> {
        let tags = block_on(self.inner.store.meta.delete_manifest(repo.as_str(), digest))?
            .ok_or_else(|| RegistryError::manifest_unknown(digest))?;
        let digest_key = digest.to_string();
        self.inner.cache.invalidate(
            repo.as_str(),
            tags.iter().map(String::as_str).chain([digest_key.as_str()]),
        );
        for t in tags {
            if let Ok(tag) = Tag::parse(&t) {
                self.emit(Event::TagDeleted {
                    repo: repo.clone(),
                    tag,
                });
            }
        }
        self.emit(Event::ManifestDeleted {
            repo: repo.clone(),
            digest: digest.clone(),
        });
        Ok(())
    }

    /// Delete a tag (the manifest stays).
    pub fn delete_tag(&self, repo: &Name, tag: &Tag) -> Result<(), RegistryError> {
        if !block_on(
            self.inner
                .store
                .meta
                .delete_tag(repo.as_str(), tag.as_str()),
        )? {
            return Err(RegistryError::manifest_unknown(tag));
        }
        self.inner.cache.invalidate(repo.as_str(), [tag.as_str()]);
        self.emit(Event::TagDeleted {
            repo: repo.clone(),
            tag: tag.clone(),
        });
        Ok(())
    }

    /// The manifest cache's hit and miss counts since start.
    pub fn manifest_cache_stats(&self) -> crate::ManifestCacheStats {
        self.inner.cache.stats()
    }

    /// Record a manifest pull (batched; written within a second).
    pub(crate) fn record_pull(&self, repo: &Name, digest: &Digest) {
        let now = nanos(OffsetDateTime::now_utc());
        let mut p = self.inner.pulls.lock().unwrap_or_else(|p| p.into_inner());
        let e = p
            .entry((repo.as_str().to_string(), digest.clone()))
            .or_insert((now, 0));
        e.0 = now;
        e.1 += 1;
    }
}
