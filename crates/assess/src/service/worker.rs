//! Workers: claim a job, catalog its image (or roll an index out into its
//! platform images) and match the inventory against the database.

use super::Service;
use crate::clock::to_ms;
use crate::ports::{CatalogFailure, Cataloged};
use crate::store::status;
use anyhow::{Result, anyhow};
use oci::{Digest, ImageManifest, Manifest, Name};
use std::time::Duration as StdDuration;

impl Service {
    pub(super) async fn worker_loop(&self) {
        let mut stop = self.inner.shutdown.subscribe();
        loop {
            if self.stopped() {
                return;
            }
            let notified = self.inner.wake.notified();
            self.give_up_exhausted();
            match self.inner.store.claim(to_ms(self.now())) {
                Ok(Some(job)) => {
                    let digest = job.digest.clone();
                    let attempt = u32::try_from(job.attempts).unwrap_or(u32::MAX);
                    let started = std::time::Instant::now();
                    if let Err(e) = self.process(job).await {
                        let mut msg = format!("{e:#}");
                        if is_transient(&e) {
                            let max = self.inner.opts.max_attempts.max(1);
                            if attempt < max {
                                tracing::warn!(digest, attempt, error = %msg, "assessment will be retried");
                                self.retry_later(&digest, attempt, &msg, &mut stop).await;
                                continue;
                            }
                            // Worded as when a crash used up the attempts.
                            msg = format!("gave up after {attempt} attempts: {msg}");
                        }
                        tracing::warn!(digest, error = %msg, "assessment failed");
                        let _ = self.inner.store.set_status(
                            &digest,
                            status::FAILED,
                            Some(&msg),
                            to_ms(self.now()),
                        );
                        self.notify_failed(&digest, &msg);
                    } else {
                        // Whatever the manifest was: the map keeps no one for long.
                        self.forget_pusher(&digest);
                        tracing::debug!(
                            digest,
                            ms = started.elapsed().as_millis() as u64,
                            "assessed"
                        );
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "cannot read the assessment queue"),
            }
            tokio::select! {
                _ = notified => {}
                _ = stop.changed() => {}
                _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
            }
        }
    }

    /// A job that failed for a reason that may pass (a blob the store
    /// could not hand over) goes back to the queue after a wait on the
    /// project's retry schedule. Its next claim counts as its next attempt,
    /// so the attempt cap bounds these retries too, across restarts; the
    /// reason stays on the row meanwhile, for the API and for
    /// [`Service::give_up_exhausted`] should the process stop.
    async fn retry_later(
        &self,
        digest: &str,
        attempt: u32,
        why: &str,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) {
        let delay = catalog_retry(self.inner.opts.max_attempts).delay(attempt);
        if !self.stopped() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => {}
            }
        }
        if let Err(e) =
            self.inner
                .store
                .set_status(digest, status::QUEUED, Some(why), to_ms(self.now()))
        {
            tracing::error!(digest, error = %e, "cannot put the assessment back in the queue");
        }
        self.inner.wake.notify_waiters();
    }

    /// Jobs claimed `max_attempts` times without finishing are failed
    /// with the reason, instead of being claimed again.
    fn give_up_exhausted(&self) {
        let max = self.inner.opts.max_attempts;
        match self.inner.store.give_up_exhausted(max, to_ms(self.now())) {
            Ok(given_up) => {
                for (digest, why) in given_up {
                    tracing::error!(digest, error = %why, "assessment given up");
                    self.notify_failed(&digest, &why);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the assessment queue"),
        }
    }

    async fn process(&self, job: crate::store::ImageRow) -> Result<()> {
        let pusher = self.pusher(&job.digest);
        let repo = Name::parse(&job.repo).map_err(|e| anyhow!("bad repository name: {e}"))?;
        let digest = Digest::parse(&job.digest).map_err(|e| anyhow!("bad digest: {e}"))?;
        let source = self.inner.source.clone();
        let (r2, d2) = (repo.clone(), digest.clone());
        let (bytes, media_type) = tokio::task::spawn_blocking(move || source.manifest(&r2, &d2))
            .await??
            .ok_or_else(|| anyhow!("manifest {} not found in {}", digest, repo))?;
        let manifest = Manifest::parse(&bytes, Some(&media_type))
            .map_err(|e| anyhow!("cannot parse manifest: {e}"))?;
        match manifest {
            Manifest::Index { index, .. } => {
                let mut children = Vec::new();
                let mut images = Vec::new();
                let now = to_ms(self.now());
                // Images (not attestations or other artifacts), one level:
                // a nested index is queued as a job of its own and rolled
                // out when it runs.
                let entries = index.manifests.iter().filter(|d| {
                    matches!(
                        oci::EntryKind::of(d),
                        oci::EntryKind::Image | oci::EntryKind::Index
                    )
                });
                for d in entries {
                    let platform = d.platform.as_ref().map(|p| p.display());
                    self.inner.store.enqueue(
                        repo.as_str(),
                        &d.digest.to_string(),
                        &d.media_type,
                        Some(&job.digest),
                        platform.as_deref(),
                        now,
                        job.last_pushed_at.is_some(),
                    )?;
                    children.push(d.digest.to_string());
                    images.push((d.digest.to_string(), d.media_type.clone(), platform));
                }
                self.inner
                    .store
                    .set_shape(&job.digest, "index", &[], &children)?;
                let attaching = self.attaching_sbom();
                self.inner
                    .store
                    .set_status(&job.digest, status::DONE, None, now)?;
                self.inner.wake.notify_waiters();
                let (this, d, size) = (self.clone(), job.digest.clone(), bytes.len() as u64);
                let attached = tokio::task::spawn_blocking(move || {
                    this.attach_index_sbom(&repo, &d, &media_type, size, &images);
                    drop(attaching);
                })
                .await;
                if let Err(e) = attached {
                    tracing::warn!(digest = job.digest, error = %e, "cannot attach the index SBOM");
                }
                Ok(())
            }
            Manifest::Image { manifest, .. } => {
                let subject = (media_type, bytes.len() as u64);
                self.process_image(&job, &repo, manifest, subject, pusher)
                    .await
            }
        }
    }

    /// A single-platform image says its platform only in its config
    /// (`os`, `architecture`, `variant`): read it (a small JSON blob) so
    /// the image is listed with one. Best effort.
    async fn record_platform(&self, digest: &str, config: &Digest) {
        let source = self.inner.source.blob_source();
        let config = config.clone();
        let platform = tokio::task::spawn_blocking(move || -> Option<String> {
            use std::io::Read;
            let mut bytes = Vec::new();
            source
                .open_blob(&config)
                .ok()?
                .take(1 << 20)
                .read_to_end(&mut bytes)
                .ok()?;
            let p: oci::Platform = serde_json::from_slice(&bytes).ok()?;
            (!p.os.is_empty() && !p.architecture.is_empty()).then(|| p.display())
        })
        .await
        .ok()
        .flatten();
        if let Some(p) = platform
            && let Err(e) = self.inner.store.set_platform_if_unknown(digest, &p)
        {
            tracing::warn!(digest, error = %e, "cannot record the platform");
        }
    }

    async fn process_image(
        &self,
        job: &crate::store::ImageRow,
        repo: &Name,
        manifest: ImageManifest,
        (media_type, size): (String, u64),
        pusher: Option<crate::vex::Pusher>,
    ) -> Result<()> {
        let layers: Vec<String> = manifest
            .layers
            .iter()
            .map(|l| l.digest.to_string())
            .collect();
        if let Some(mut why) = not_an_image(&manifest) {
            // A VEX referrer is applied; the artifact stays unsupported,
            // its status message says what became of the document.
            let (this, r, d, m) = (
                self.clone(),
                repo.to_string(),
                job.digest.clone(),
                manifest.clone(),
            );
            if let Some(note) =
                tokio::task::spawn_blocking(move || this.referrer_vex(&r, &d, &m, pusher.as_ref()))
                    .await?
            {
                why = format!("{why}; {note}");
            }
            self.inner
                .store
                .set_shape(&job.digest, "artifact", &layers, &[])?;
            self.inner.store.set_status(
                &job.digest,
                status::UNSUPPORTED,
                Some(&why),
                to_ms(self.now()),
            )?;
            return Ok(());
        }
        self.inner
            .store
            .set_shape(&job.digest, "image", &layers, &[])?;
        if job.platform.is_none() {
            self.record_platform(&job.digest, &manifest.config.digest)
                .await;
        }
        let version = self.inner.cataloger.version();
        // An incomplete inventory is cataloged again: its gaps may close
        // under raised limits (layers read whole come from the cache).
        let stored = match self.inner.store.inventory(&job.digest)? {
            Some((v, inv))
                if v == version && self.inner.store.incomplete(&job.digest)?.is_empty() =>
            {
                Some(inv)
            }
            _ => None,
        };
        let inventory = match stored {
            Some(inv) => inv,
            _ => {
                let this = self.clone();
                let cataloged = tokio::task::spawn_blocking(move || -> Result<Cataloged> {
                    let source = this.inner.source.blob_source();
                    this.inner
                        .cataloger
                        .catalog_image(
                            source.as_ref(),
                            &manifest,
                            &super::prefetch::AfterPrefetch {
                                store: &this.inner.store,
                                prefetch: &this.inner.prefetch,
                            },
                        )
                        // Kept typed under the context, so the worker can
                        // tell a transient failure.
                        .map_err(|e| anyhow::Error::new(e).context("cataloging failed"))
                })
                .await??;
                if !cataloged.incomplete.is_empty() {
                    tracing::warn!(
                        digest = job.digest,
                        reasons = ?cataloged.incomplete,
                        "image not read completely"
                    );
                }
                self.inner.store.put_cataloged(
                    &job.digest,
                    version,
                    &cataloged.inventory,
                    &cataloged.incomplete,
                )?;
                cataloged.inventory
            }
        };
        self.inner
            .store
            .set_status(&job.digest, status::MATCHING, None, to_ms(self.now()))?;
        // Shared, not copied: matching and the SBOM read the same packages.
        let inventory = std::sync::Arc::new(inventory);
        let sbom_inventory = inventory.clone();
        let db = self.inner.vulns.current();
        let (db_version, findings) = match db {
            Some(db) => {
                let v = db.version();
                let f = tokio::task::spawn_blocking(move || db.match_inventory(&inventory)).await?;
                (Some(v), f)
            }
            None => (None, Vec::new()),
        };
        let now = self.now();
        self.inner
            .store
            .save_result(&job.digest, db_version.as_deref(), to_ms(now), &findings)?;
        self.inner
            .store
            .count_usage(&job.digest, repo.as_str(), now)?;
        // Findings are stored and told before the SBOM is attached: an
        // attachment is a manifest push of its own (documents, blobs,
        // commit), which would otherwise sit between the push and its
        // findings.
        let attaching = self.attaching_sbom();
        self.inner
            .store
            .set_status(&job.digest, status::DONE, None, to_ms(now))?;
        self.notify_assessed(
            &job.digest,
            repo.as_str(),
            job.parent.as_deref(),
            db_version.as_deref(),
            &findings,
        );
        let (this, r, d) = (self.clone(), repo.clone(), job.digest.clone());
        let attached = tokio::task::spawn_blocking(move || {
            this.attach_sbom(&r, &d, &media_type, size, &sbom_inventory);
            drop(attaching);
        })
        .await;
        // The image is assessed whatever became of its SBOM.
        if let Err(e) = attached {
            tracing::warn!(digest = job.digest, error = %e, "cannot attach the SBOM");
        }
        Ok(())
    }
}

/// Whether `e` may pass without the image changing (a
/// [`CatalogFailure`] that says so, under any context).
fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<CatalogFailure>()
            .is_some_and(CatalogFailure::is_transient)
    })
}

/// The project's one retry schedule ([`egress::RetryPolicy`]), for
/// catalog reads: waits long enough for a store or connection to come
/// back, within the attempt cap.
fn catalog_retry(max_attempts: u32) -> egress::RetryPolicy {
    egress::RetryPolicy {
        attempts: max_attempts.max(1),
        base_delay: StdDuration::from_secs(1),
        max_delay: StdDuration::from_secs(30),
    }
}

/// Why a manifest is not a container image (signatures, SBOMs, other
/// artifacts), or `None` for an image.
pub fn not_an_image(m: &ImageManifest) -> Option<String> {
    let config = m.config.media_type.as_str();
    if config != oci::OCI_CONFIG && config != oci::DOCKER_CONFIG {
        return Some(format!("not a container image: config media type {config}"));
    }
    if let Some(at) = &m.artifact_type
        && at != oci::OCI_CONFIG
        && at != oci::DOCKER_CONFIG
    {
        return Some(format!("not a container image: artifact type {at}"));
    }
    if let Some(l) = m
        .layers
        .iter()
        .find(|l| oci::layer_compression(&l.media_type).is_none())
    {
        return Some(format!(
            "not a container image: layer media type {}",
            l.media_type
        ));
    }
    None
}
