//! The running service: event intake, workers, the re-match scheduler and
//! the webhook delivery loop.

use crate::clock::{Clock, from_ms, rfc3339, to_ms};
use crate::notify;
use crate::policy::{Policy, evaluate};
use crate::ports::{Cataloger, ImageSource};
use crate::store::{Delivery, Store, status};
use crate::vuln::{Finding, VulnDatabase, VulnSource};
use anyhow::{Context, Result, anyhow};
use inventory::Inventory;
use oci::{Digest, ImageManifest, Manifest, Name};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration as StdDuration;
use time::{Duration, OffsetDateTime};
use tokio::sync::{Notify, watch};

/// A webhook configured in the server's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: String,
    /// Repository glob; absent for the whole registry.
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub min_severity: Option<String>,
}

/// How the assessor runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding `assess.db`.
    pub data_dir: PathBuf,
    /// Concurrent assessments (cataloging is CPU and I/O bound).
    pub workers: usize,
    /// Images pushed or pulled within this many days are re-matched when
    /// the database changes and at least every `rescan_interval`.
    pub rescan_window_days: u32,
    /// Longest time an in-window image goes without re-matching.
    pub rescan_interval: Duration,
    pub policy: Policy,
    /// How often the scheduler looks for a new database version and pulls.
    pub tick: StdDuration,
    /// Webhook attempts before giving up, and the first retry delay.
    pub webhook_attempts: u32,
    pub webhook_backoff: StdDuration,
    pub webhook_timeout: StdDuration,
    /// Webhooks from the configuration file, registered at start.
    pub webhooks: Vec<WebhookConfig>,
}

impl Options {
    pub fn new(data_dir: impl Into<PathBuf>) -> Options {
        Options {
            data_dir: data_dir.into(),
            workers: 2,
            rescan_window_days: 30,
            rescan_interval: Duration::days(1),
            policy: Policy::default(),
            tick: StdDuration::from_secs(5),
            webhook_attempts: 6,
            webhook_backoff: StdDuration::from_secs(2),
            webhook_timeout: StdDuration::from_secs(10),
            webhooks: Vec::new(),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) source: Arc<dyn ImageSource>,
    pub(crate) cataloger: Arc<dyn Cataloger>,
    pub(crate) vulns: Arc<dyn VulnSource>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) opts: Options,
    wake: Notify,
    deliver_wake: Notify,
    rematch_lock: tokio::sync::Mutex<()>,
    shutdown: watch::Sender<bool>,
    http: reqwest::Client,
}

/// The assessment service. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    pub(crate) inner: Arc<Inner>,
}

impl Service {
    /// Open the store; no task runs until [`Service::start`].
    pub fn open(
        opts: Options,
        source: Arc<dyn ImageSource>,
        cataloger: Arc<dyn Cataloger>,
        vulns: Arc<dyn VulnSource>,
        clock: Arc<dyn Clock>,
    ) -> Result<Service> {
        let store = Store::open(&opts.data_dir.join("assess.db"))?;
        let http = reqwest::Client::builder()
            .timeout(opts.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the webhook HTTP client")?;
        let (shutdown, _) = watch::channel(false);
        Ok(Service {
            inner: Arc::new(Inner {
                store,
                source,
                cataloger,
                vulns,
                clock,
                opts,
                wake: Notify::new(),
                deliver_wake: Notify::new(),
                rematch_lock: tokio::sync::Mutex::new(()),
                shutdown,
                http,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn source(&self) -> &Arc<dyn ImageSource> {
        &self.inner.source
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }
    pub fn database(&self) -> Option<Arc<dyn VulnDatabase>> {
        self.inner.vulns.current()
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Recover and start background tasks: jobs interrupted by a crash go
    /// back to the queue, manifests the registry holds that were never
    /// enqueued are enqueued, configured webhooks are registered, then the
    /// workers, the scheduler and the delivery loop start.
    pub async fn start(&self) -> Result<()> {
        let requeued = self.inner.store.requeue_interrupted()?;
        if requeued > 0 {
            tracing::info!(
                requeued,
                "assessment jobs interrupted by a restart are queued again"
            );
        }
        let this = self.clone();
        let found = tokio::task::spawn_blocking(move || this.enqueue_unassessed()).await??;
        if found > 0 {
            tracing::info!(found, "manifests never assessed are queued");
        }
        self.register_configured_webhooks()?;
        for _ in 0..self.inner.opts.workers {
            let this = self.clone();
            tokio::spawn(async move { this.worker_loop().await });
        }
        let this = self.clone();
        tokio::spawn(async move { this.scheduler_loop().await });
        let this = self.clone();
        tokio::spawn(async move { this.delivery_loop().await });
        Ok(())
    }

    /// Stop background tasks (they finish the step they are in).
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        self.inner.wake.notify_waiters();
        self.inner.deliver_wake.notify_waiters();
    }

    fn stopped(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    fn register_configured_webhooks(&self) -> Result<()> {
        let existing = self.inner.store.webhooks()?;
        for w in &self.inner.opts.webhooks {
            if existing
                .iter()
                .any(|e| e.url == w.url && e.repository == w.repository)
            {
                continue;
            }
            self.add_webhook(
                &w.url,
                &w.secret,
                w.repository.clone(),
                w.min_severity.clone(),
            )?;
        }
        Ok(())
    }

    pub fn add_webhook(
        &self,
        url: &str,
        secret: &str,
        repository: Option<String>,
        min_severity: Option<String>,
    ) -> Result<crate::store::Webhook> {
        let w = crate::store::Webhook {
            id: uuid::Uuid::new_v4().to_string(),
            url: url.to_string(),
            secret: secret.to_string(),
            repository,
            min_severity,
            created_at: to_ms(self.now()),
        };
        self.inner.store.add_webhook(&w)?;
        Ok(w)
    }

    fn enqueue_unassessed(&self) -> Result<usize> {
        let known = self.inner.store.known_digests()?;
        let now = to_ms(self.now());
        let mut n = 0;
        for repo in self.inner.source.repositories()? {
            for (digest, media_type) in self.inner.source.manifests(&repo)? {
                if !known.contains(digest.to_string().as_str()) {
                    self.inner.store.enqueue(
                        repo.as_str(),
                        &digest.to_string(),
                        &media_type,
                        None,
                        None,
                        now,
                        true,
                    )?;
                    n += 1;
                }
            }
        }
        if n > 0 {
            self.inner.wake.notify_waiters();
        }
        Ok(n)
    }

    // ---- intake (called synchronously from the registry's event sink) ----

    /// A manifest was pushed or imported: persist the job, wake a worker.
    pub fn manifest_pushed(&self, repo: &str, digest: &str, media_type: &str, tag: Option<&str>) {
        let now = to_ms(self.now());
        if let Some(tag) = tag
            && let Err(e) = self.inner.store.record_tag(repo, tag, digest, now)
        {
            tracing::error!(repo, tag, digest, error = %e, "cannot record tag");
        }
        match self
            .inner
            .store
            .enqueue(repo, digest, media_type, None, None, now, true)
        {
            Ok(_) => self.inner.wake.notify_one(),
            Err(e) => tracing::error!(repo, digest, error = %e, "cannot enqueue assessment"),
        }
    }

    /// A manifest was deleted from a repository.
    pub fn manifest_deleted(&self, repo: &str, digest: &str) {
        if let Err(e) = self.inner.store.forget(repo, digest) {
            tracing::error!(repo, digest, error = %e, "cannot forget deleted manifest");
        }
    }

    /// Queue `digest` again (a failed one, or on request).
    pub fn requeue(&self, digest: &str) -> Result<bool> {
        let Some(row) = self.inner.store.image(digest)? else {
            return Ok(false);
        };
        self.inner.store.set_status(
            digest,
            status::FAILED,
            Some("re-queued"),
            to_ms(self.now()),
        )?;
        self.inner.store.enqueue(
            &row.repo,
            digest,
            &row.media_type,
            row.parent.as_deref(),
            row.platform.as_deref(),
            to_ms(self.now()),
            false,
        )?;
        self.inner.wake.notify_one();
        Ok(true)
    }

    /// Wait until no job is queued or in progress (for tests and tools).
    pub async fn wait_idle(&self, timeout: StdDuration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (pending, _) = self.inner.store.queue()?;
            if pending.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow!("{} assessment jobs still pending", pending.len()));
            }
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
    }

    // ---- workers ----

    async fn worker_loop(&self) {
        let mut stop = self.inner.shutdown.subscribe();
        loop {
            if self.stopped() {
                return;
            }
            let notified = self.inner.wake.notified();
            match self.inner.store.claim(to_ms(self.now())) {
                Ok(Some(job)) => {
                    let digest = job.digest.clone();
                    let started = std::time::Instant::now();
                    if let Err(e) = self.process(job).await {
                        let msg = format!("{e:#}");
                        tracing::warn!(digest, error = %msg, "assessment failed");
                        let _ = self.inner.store.set_status(
                            &digest,
                            status::FAILED,
                            Some(&msg),
                            to_ms(self.now()),
                        );
                        self.notify_failed(&digest, &msg);
                    } else {
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

    async fn process(&self, job: crate::store::ImageRow) -> Result<()> {
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
                let now = to_ms(self.now());
                for d in &index.manifests {
                    if !oci::is_manifest_media_type(&d.media_type) || is_attestation(d) {
                        continue;
                    }
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
                }
                self.inner
                    .store
                    .set_shape(&job.digest, "index", &[], &children)?;
                self.inner
                    .store
                    .set_status(&job.digest, status::DONE, None, now)?;
                self.inner.wake.notify_waiters();
                Ok(())
            }
            Manifest::Image { manifest, .. } => self.process_image(&job, &repo, manifest).await,
        }
    }

    async fn process_image(
        &self,
        job: &crate::store::ImageRow,
        repo: &Name,
        manifest: ImageManifest,
    ) -> Result<()> {
        let layers: Vec<String> = manifest
            .layers
            .iter()
            .map(|l| l.digest.to_string())
            .collect();
        if let Some(why) = not_an_image(&manifest) {
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
        let version = self.inner.cataloger.version();
        let inventory = match self.inner.store.inventory(&job.digest)? {
            Some((v, inv)) if v == version => inv,
            _ => {
                let this = self.clone();
                let inv = tokio::task::spawn_blocking(move || -> Result<Inventory> {
                    let source = this.inner.source.blob_source();
                    this.inner
                        .cataloger
                        .catalog(source.as_ref(), &manifest, &this.inner.store)
                        .map_err(|e| anyhow!("cataloging failed: {e}"))
                })
                .await??;
                self.inner.store.put_inventory(&job.digest, version, &inv)?;
                inv
            }
        };
        self.inner
            .store
            .set_status(&job.digest, status::MATCHING, None, to_ms(self.now()))?;
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
        Ok(())
    }

    // ---- re-matching ----

    async fn scheduler_loop(&self) {
        let mut stop = self.inner.shutdown.subscribe();
        let mut last_poll =
            OffsetDateTime::now_utc() - Duration::days(self.inner.opts.rescan_window_days as i64);
        loop {
            if self.stopped() {
                return;
            }
            // Pull records: registry time, shifted into the assessor's clock.
            let poll_start = OffsetDateTime::now_utc();
            let source = self.inner.source.clone();
            let since = last_poll - Duration::seconds(1);
            if let Ok(pulls) = tokio::task::spawn_blocking(move || source.recent_pulls(since)).await
            {
                let offset = self.inner.clock.offset();
                let rows: Vec<(String, i64)> = pulls
                    .into_iter()
                    .map(|(_, d, at)| (d.to_string(), to_ms(at + offset)))
                    .collect();
                if !rows.is_empty()
                    && let Err(e) = self.inner.store.record_pulls(&rows)
                {
                    tracing::warn!(error = %e, "cannot record pulls");
                }
                last_poll = poll_start;
            }
            if let Err(e) = self.rematch_due().await {
                tracing::warn!(error = %format!("{e:#}"), "re-matching failed");
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(self.inner.opts.tick) => {}
            }
        }
    }

    /// Look at pulls now (normally done every tick).
    pub async fn poll_pulls(&self) -> Result<()> {
        let source = self.inner.source.clone();
        let since = OffsetDateTime::now_utc()
            - Duration::days(self.inner.opts.rescan_window_days as i64 + 1);
        let pulls = tokio::task::spawn_blocking(move || source.recent_pulls(since)).await?;
        let offset = self.inner.clock.offset();
        let rows: Vec<(String, i64)> = pulls
            .into_iter()
            .map(|(_, d, at)| (d.to_string(), to_ms(at + offset)))
            .collect();
        self.inner.store.record_pulls(&rows)
    }

    /// Re-match every image due: in the window (pushed or pulled within
    /// `rescan_window_days`) and either matched against another database
    /// version or longer ago than `rescan_interval`; plus images never
    /// matched against any database. Reads stored inventories only.
    /// Returns how many images were re-matched.
    pub async fn rematch_due(&self) -> Result<usize> {
        let Some(db) = self.inner.vulns.current() else {
            return Ok(0);
        };
        let _guard = self.inner.rematch_lock.lock().await;
        let now = self.now();
        let window_start = now - Duration::days(self.inner.opts.rescan_window_days as i64);
        let version = db.version();
        let candidates = self.inner.store.rematch_candidates(
            to_ms(window_start),
            &version,
            to_ms(now - self.inner.opts.rescan_interval),
        )?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let n = candidates.len();
        let started = std::time::Instant::now();
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.rematch_blocking(db, candidates)).await??;
        tracing::info!(images = n, ms = started.elapsed().as_millis() as u64, db_version = %version, "re-matched");
        Ok(n)
    }

    fn rematch_blocking(&self, db: Arc<dyn VulnDatabase>, digests: Vec<String>) -> Result<()> {
        let version = db.version();
        let threads = self.inner.opts.workers.max(1);
        for chunk in digests.chunks(1024) {
            let mut loaded: Vec<(String, Vec<u8>)> = Vec::with_capacity(chunk.len());
            for d in chunk {
                if let Some(raw) = self.inner.store.inventory_raw(d)? {
                    loaded.push((d.clone(), raw));
                }
            }
            // Parse, match and encode in parallel; only the writes are serial.
            let per = loaded.len().div_ceil(threads).max(1);
            type Out = (String, Vec<Finding>, crate::store::EncodedFindings);
            let matched: Vec<Out> = std::thread::scope(|s| {
                let handles: Vec<_> = loaded
                    .chunks(per)
                    .map(|part| {
                        let db = db.clone();
                        s.spawn(move || {
                            part.iter()
                                .filter_map(|(d, raw)| {
                                    let inv: Inventory = serde_json::from_slice(raw).ok()?;
                                    let f = db.match_inventory(&inv);
                                    let enc = crate::store::EncodedFindings::new(&f).ok()?;
                                    Some((d.clone(), f, enc))
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            let at = to_ms(self.now());
            let mut batch = Vec::with_capacity(matched.len());
            let mut findings = Vec::with_capacity(matched.len());
            for (d, f, enc) in matched {
                batch.push((d.clone(), Some(version.clone()), at, enc));
                findings.push((d, f));
            }
            self.inner.store.save_encoded(&batch)?;
            // Notifications need a receiver; with no webhook there is nothing to tell.
            if !self.inner.store.webhooks()?.is_empty() {
                for (digest, f) in &findings {
                    if let Some(row) = self.inner.store.image(digest)? {
                        self.notify_assessed(
                            digest,
                            &row.repo,
                            row.parent.as_deref(),
                            Some(&version),
                            f,
                        );
                    }
                }
            }
        }
        Ok(())
    }

    // ---- notifications ----

    fn notify_assessed(
        &self,
        digest: &str,
        repo: &str,
        parent: Option<&str>,
        db_version: Option<&str>,
        findings: &[Finding],
    ) {
        if let Err(e) = self.try_notify_assessed(digest, repo, parent, db_version, findings) {
            tracing::warn!(digest, error = %e, "cannot queue notifications");
        }
    }

    fn try_notify_assessed(
        &self,
        digest: &str,
        repo: &str,
        parent: Option<&str>,
        db_version: Option<&str>,
        findings: &[Finding],
    ) -> Result<()> {
        let webhooks = self.inner.store.webhooks()?;
        if webhooks.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let rule = self.inner.opts.policy.rule_for(repo);
        let exemptions = self.inner.store.exemptions()?;
        let eval = evaluate(findings, repo, rule, &exemptions, now);
        if eval.health.healthy {
            return Ok(());
        }
        let already = self.inner.store.notified_keys(digest)?;
        let Some(decision) = notify::decide(&eval, &already) else {
            return Ok(());
        };
        let new: Vec<&Finding> = eval
            .judged
            .iter()
            .filter(|j| {
                j.violates
                    && decision
                        .new_keys
                        .contains(&crate::policy::finding_key(j.finding))
            })
            .map(|j| j.finding)
            .collect();
        let tags = self.tags_of(digest, parent);
        let mut queued = false;
        for w in webhooks.iter().filter(|w| notify::webhook_applies(w, repo)) {
            let told = notify::findings_for(w, new.clone());
            if told.is_empty() {
                continue;
            }
            let id = uuid::Uuid::new_v4().to_string();
            let body = serde_json::json!({
                "id": id,
                "event": decision.event,
                "at": rfc3339(now),
                "repository": repo,
                "digest": digest,
                "index": parent,
                "tags": tags,
                "health": eval.health,
                "summary": eval.summary,
                "db_version": db_version,
                "new_findings": told.iter().map(|f| serde_json::json!({
                    "id": &*f.id,
                    "aliases": &*f.aliases,
                    "ecosystem": f.ecosystem,
                    "package": &*f.package,
                    "installed_version": &*f.installed_version,
                    "fixed_version": f.fixed_version.as_deref(),
                    "severity": f.severity,
                    "status": f.status,
                })).collect::<Vec<_>>(),
            });
            self.queue_delivery(w, &id, decision.event, Some(digest), Some(repo), body, now)?;
            queued = true;
        }
        self.inner
            .store
            .mark_notified(digest, &decision.new_keys, to_ms(now))?;
        if queued {
            self.inner.deliver_wake.notify_one();
        }
        Ok(())
    }

    fn notify_failed(&self, digest: &str, error: &str) {
        let r = (|| -> Result<()> {
            let key = format!("failed:{error}");
            if self.inner.store.notified_keys(digest)?.contains(&key) {
                return Ok(());
            }
            let row = self.inner.store.image(digest)?;
            let repo = row.as_ref().map(|r| r.repo.clone()).unwrap_or_default();
            let now = self.now();
            let mut queued = false;
            for w in self.inner.store.webhooks()? {
                if !notify::webhook_applies(&w, &repo) {
                    continue;
                }
                let id = uuid::Uuid::new_v4().to_string();
                let body = serde_json::json!({
                    "id": id,
                    "event": notify::ASSESSMENT_FAILED,
                    "at": rfc3339(now),
                    "repository": repo,
                    "digest": digest,
                    "error": error,
                });
                self.queue_delivery(
                    &w,
                    &id,
                    notify::ASSESSMENT_FAILED,
                    Some(digest),
                    Some(&repo),
                    body,
                    now,
                )?;
                queued = true;
            }
            self.inner.store.mark_notified(digest, &[key], to_ms(now))?;
            if queued {
                self.inner.deliver_wake.notify_one();
            }
            Ok(())
        })();
        if let Err(e) = r {
            tracing::warn!(digest, error = %e, "cannot queue failure notification");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn queue_delivery(
        &self,
        w: &crate::store::Webhook,
        id: &str,
        event: &str,
        digest: Option<&str>,
        repo: Option<&str>,
        body: serde_json::Value,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.inner.store.add_delivery(&Delivery {
            id: id.to_string(),
            webhook_id: w.id.clone(),
            event: event.to_string(),
            digest: digest.map(str::to_string),
            repository: repo.map(str::to_string),
            state: "pending".into(),
            attempts: 0,
            last_status: None,
            last_error: None,
            created_at: to_ms(now),
            next_attempt_at: to_ms(now),
            delivered_at: None,
            payload: serde_json::to_string(&body)?,
        })
    }

    /// `repo:tag` names pointing at `digest` (or at its index).
    pub fn tags_of(&self, digest: &str, parent: Option<&str>) -> Vec<String> {
        let target = parent.unwrap_or(digest);
        let mut out = Vec::new();
        let repos = self.inner.store.repos_of(target).unwrap_or_default();
        for r in repos {
            let Ok(name) = Name::parse(&r) else { continue };
            if let Ok(tags) = self.inner.source.tags(&name) {
                for (t, d) in tags {
                    if d.to_string() == target {
                        out.push(format!("{}:{}", r, t.as_str()));
                    }
                }
            }
        }
        out
    }

    async fn delivery_loop(&self) {
        let mut stop = self.inner.shutdown.subscribe();
        loop {
            if self.stopped() {
                return;
            }
            let notified = self.inner.deliver_wake.notified();
            let now = to_ms(self.now());
            let due = self.inner.store.due_deliveries(now, 64).unwrap_or_default();
            for d in due {
                self.attempt(d).await;
            }
            let wait = match self.inner.store.next_delivery_at() {
                Ok(Some(next)) => {
                    StdDuration::from_millis((next - to_ms(self.now())).clamp(5, 1000) as u64)
                }
                _ => StdDuration::from_secs(1),
            };
            tokio::select! {
                _ = notified => {}
                _ = stop.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn attempt(&self, d: Delivery) {
        let webhook = self
            .inner
            .store
            .webhooks()
            .ok()
            .and_then(|ws| ws.into_iter().find(|w| w.id == d.webhook_id));
        let now = to_ms(self.now());
        let Some(w) = webhook else {
            let _ = self.inner.store.delivery_attempted(
                &d.id,
                false,
                None,
                Some("webhook deleted"),
                None,
                now,
            );
            return;
        };
        let signature = notify::sign(&w.secret, d.payload.as_bytes());
        let res = self
            .inner
            .http
            .post(&w.url)
            .header("content-type", "application/json")
            .header(notify::SIGNATURE_HEADER, signature)
            .header(notify::EVENT_HEADER, &d.event)
            .header(notify::DELIVERY_HEADER, &d.id)
            .body(d.payload.clone())
            .send()
            .await;
        let (ok, code, err) = match res {
            Ok(r) if r.status().is_success() => (true, Some(r.status().as_u16()), None),
            Ok(r) => (
                false,
                Some(r.status().as_u16()),
                Some(format!("HTTP {}", r.status())),
            ),
            Err(e) => (false, None, Some(e.to_string())),
        };
        let attempt = d.attempts as u32 + 1;
        let next = (!ok && attempt < self.inner.opts.webhook_attempts).then(|| {
            to_ms(self.now())
                + notify::backoff(self.inner.opts.webhook_backoff, attempt).as_millis() as i64
        });
        if let Err(e) = self.inner.store.delivery_attempted(
            &d.id,
            ok,
            code,
            err.as_deref(),
            next,
            to_ms(self.now()),
        ) {
            tracing::warn!(delivery = d.id, error = %e, "cannot record delivery attempt");
        }
    }

    /// When the result of `digest` was made, as a date.
    pub fn assessed_at(&self, ms: i64) -> OffsetDateTime {
        from_ms(ms)
    }
}

/// Docker buildx attaches attestation manifests to indexes; they are not
/// platform images.
fn is_attestation(d: &oci::Descriptor) -> bool {
    d.annotations
        .as_ref()
        .and_then(|a| a.get("vnd.docker.reference.type"))
        .is_some_and(|v| v == "attestation-manifest")
        || d.platform
            .as_ref()
            .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
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
