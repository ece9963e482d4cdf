//! The running service: event intake, workers ([`worker`]), the re-match
//! scheduler ([`rematch`]) and the webhook delivery loop ([`notifications`]).

mod notifications;
mod prefetch;
mod rematch;
mod sbom;
mod stream;
mod vex;
mod worker;

pub use prefetch::UploadCatalogCounts;
pub use sbom::{
    CATALOG_VERSION_ANNOTATION, SBOM_ARTIFACT_TYPE, SPDX_ARTIFACT_TYPE, SbomOptions, SbomRule,
};
pub use vex::VexAdded;

pub use worker::not_an_image;

use crate::clock::{Clock, from_ms, to_ms};
use crate::policy::Policy;
use crate::ports::{Cataloger, RegistryContent};
use crate::store::{Store, status};
use crate::vuln::{VulnDatabase, VulnSource};
use anyhow::{Context, Result, anyhow};
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
    /// Where the assessor's state lives: `assess.db` in `data_dir`
    /// (the default), or the PostgreSQL database of `metadata.url`.
    pub metadata: storage::MetadataStorage,
    /// Concurrent assessments (cataloging is CPU and I/O bound).
    pub workers: usize,
    /// Times a job may be started before it is failed with the reason
    /// "gave up after N attempts: …": starts that never finished (the
    /// process stopped while it ran, e.g. a layer that crashes it) and
    /// retries after a transient failure (a blob the store could not hand
    /// over) both count.
    pub max_attempts: u32,
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
    /// Catalog each new layer as soon as its upload is committed, before
    /// the manifest arrives (see `service/prefetch.rs`).
    pub catalog_on_upload: bool,
    /// With `catalog_on_upload`: catalog each layer from its upload stream
    /// while its bytes arrive, instead of reading it back after its commit
    /// (see `service/stream.rs`). Off, layers are read after their commit.
    pub catalog_while_uploading: bool,
    /// Most bytes of one upload held for its stream reader; a reader that
    /// falls further behind its client gives up (the layer is then read
    /// after its commit).
    pub stream_buffer_bytes: usize,
    /// Addresses webhook deliveries may reach. The default refuses
    /// internal addresses.
    pub outbound: egress::EgressPolicy,
    /// SBOMs attached to assessed images as referrers.
    pub sbom: SbomOptions,
    /// Whose VEX referrers are applied.
    pub vex: crate::vex::VexOptions,
    /// How long rows of the ever-growing tables are kept.
    pub retention: Retention,
    /// Who leads the singleton duties (the scheduler, webhook delivery)
    /// among the nodes sharing this state. The default leads always: one
    /// node, as with `assess.db`.
    pub leads: Leads,
}

/// Stands for the lead of one of the assessor's singleton duties
/// ([`storage::Duty::AssessScheduler`], [`storage::Duty::WebhookDelivery`]).
/// With shared state (PostgreSQL) every node runs an assessor, and without
/// one leader a webhook would be posted by each and every node would
/// re-match; the binary hands in its metadata store's [`storage::Meta::lead`],
/// so the assessor needs no registry of its own to choose.
#[derive(Clone, Default)]
pub struct Leads(Option<Arc<LeadFn>>);

type LeadFn = dyn Fn(storage::Duty) -> storage::Leadership + Send + Sync;

impl Leads {
    /// This node always leads (one node, or state of its own).
    pub fn always() -> Leads {
        Leads(None)
    }

    /// Leadership from `lead`, called once per duty when the service starts
    /// (inside its Tokio runtime).
    pub fn new(
        lead: impl Fn(storage::Duty) -> storage::Leadership + Send + Sync + 'static,
    ) -> Leads {
        Leads(Some(Arc::new(lead)))
    }

    /// The leads of `meta`'s cluster, tried for every `retry` by a node that
    /// does not hold them.
    pub fn of_meta(meta: Arc<dyn storage::Meta>, retry: StdDuration) -> Leads {
        Leads::new(move |duty| meta.lead(duty, retry))
    }

    fn lead(&self, duty: storage::Duty) -> storage::Leadership {
        match &self.0 {
            Some(lead) => lead(duty),
            None => storage::Leadership::always(duty),
        }
    }
}

impl std::fmt::Debug for Leads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Leads(cluster)"
        } else {
            "Leads(always)"
        })
    }
}

/// One loop's hold on its duty, logging when it is taken and lost.
pub(super) struct DutyLead {
    lead: storage::Leadership,
    leading: bool,
}

impl DutyLead {
    fn new(leads: &Leads, duty: storage::Duty) -> DutyLead {
        DutyLead {
            lead: leads.lead(duty),
            leading: false,
        }
    }

    /// Whether this node leads now; checked before each step of work, so a
    /// lost lead stops the work at the next step.
    pub(super) fn holds(&mut self) -> bool {
        let now = self.lead.is_leader();
        if self.leading && !now {
            tracing::info!(
                duty = self.lead.duty().name(),
                "this node no longer leads: another node takes over this work"
            );
        } else if !self.leading && now {
            tracing::info!(
                duty = self.lead.duty().name(),
                "this node leads: it runs this work"
            );
        }
        self.leading = now;
        now
    }

    /// Waits until this node leads; `false` when the service stopped first.
    pub(super) async fn wait(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            if *stop.borrow() {
                return false;
            }
            if self.holds() {
                return true;
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = self.lead.changed() => {}
            }
        }
    }

    /// Resolves when the lead changes (then ask [`DutyLead::holds`]).
    pub(super) async fn changed(&mut self) {
        self.lead.changed().await
    }
}

/// How long the assessor keeps rows that would otherwise pile up. Pruned
/// by the scheduler every [`Retention::every`] (and once at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Finished webhook deliveries (each holds its whole payload).
    pub deliveries: Duration,
    /// Records of what was notified; after this the same problem may be
    /// told again, as a reminder. Records of images the assessor forgot
    /// go at the next pass.
    pub notified: Duration,
    /// Tag moves; the two newest of each tag always stay.
    pub tag_history: Duration,
    /// Grace for cached layer results that no assessed image names (a
    /// layer uploaded before its manifest is such a layer for a while).
    pub layer_cache_grace: Duration,
    /// Time between pruning passes.
    pub every: StdDuration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            deliveries: Duration::days(30),
            notified: Duration::days(365),
            tag_history: Duration::days(180),
            layer_cache_grace: Duration::days(1),
            every: StdDuration::from_secs(3600),
        }
    }
}

impl Options {
    pub fn new(data_dir: impl Into<PathBuf>) -> Options {
        Options {
            data_dir: data_dir.into(),
            metadata: storage::MetadataStorage::default(),
            workers: 2,
            max_attempts: 3,
            rescan_window_days: 30,
            rescan_interval: Duration::days(1),
            policy: Policy::default(),
            tick: StdDuration::from_secs(5),
            webhook_attempts: 6,
            webhook_backoff: StdDuration::from_secs(2),
            webhook_timeout: StdDuration::from_secs(10),
            webhooks: Vec::new(),
            catalog_on_upload: true,
            catalog_while_uploading: true,
            stream_buffer_bytes: 16 << 20,
            outbound: egress::EgressPolicy::default(),
            sbom: SbomOptions::default(),
            vex: crate::vex::VexOptions::default(),
            retention: Retention::default(),
            leads: Leads::always(),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) source: Arc<dyn RegistryContent>,
    pub(crate) cataloger: Arc<dyn Cataloger>,
    pub(crate) vulns: Arc<dyn VulnSource>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) opts: Options,
    wake: Notify,
    deliver_wake: Notify,
    rematch_lock: tokio::sync::Mutex<()>,
    shutdown: watch::Sender<bool>,
    http: reqwest::Client,
    pub(crate) prefetch: prefetch::Prefetch,
    /// Every stored VEX document, parsed; replaced whole on a change.
    pub(crate) vex: std::sync::RwLock<Arc<Vec<crate::vex::Stored>>>,
    /// SBOMs being attached after their image's findings were stored
    /// (see [`Service::attaching_sbom`]); [`Service::wait_idle`] waits for them.
    sbom_pending: std::sync::atomic::AtomicUsize,
    /// Taken by [`Service::start`] for the prefetch readers.
    prefetch_rx: std::sync::Mutex<Option<std::sync::mpsc::Receiver<oci::Digest>>>,
}

/// The assessment service. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    pub(crate) inner: Arc<Inner>,
}

impl Service {
    /// Open the store `opts.metadata` names (`<data>/assess.db` by
    /// default); no task runs until [`Service::start`].
    pub fn open(
        opts: Options,
        source: Arc<dyn RegistryContent>,
        cataloger: Arc<dyn Cataloger>,
        vulns: Arc<dyn VulnSource>,
        clock: Arc<dyn Clock>,
    ) -> Result<Service> {
        let state = storage::assess::open_state(
            &opts.data_dir,
            &opts.metadata,
            storage::assess::PgAssessOptions {
                max_attempts: opts.max_attempts,
                ..Default::default()
            },
        )?;
        Service::open_with_state(opts, state, source, cataloger, vulns, clock)
    }

    /// [`Service::open`] over any backend of the assessor's state (the
    /// binary passes PostgreSQL's with `metadata.url`).
    pub fn open_with_state(
        opts: Options,
        state: Arc<dyn storage::assess::AssessState>,
        source: Arc<dyn RegistryContent>,
        cataloger: Arc<dyn Cataloger>,
        vulns: Arc<dyn VulnSource>,
        clock: Arc<dyn Clock>,
    ) -> Result<Service> {
        let store = Store::new(state);
        store.set_clock(clock.clone());
        // Deliveries follow no redirect: a receiver that moved is a failed
        // delivery, not a POST turned into a GET somewhere else.
        let http = egress::apply(
            reqwest::Client::builder().timeout(opts.webhook_timeout),
            &opts.outbound,
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the webhook HTTP client")?;
        let (shutdown, _) = watch::channel(false);
        let (prefetch, prefetch_rx) = prefetch::Prefetch::new();
        let vex = std::sync::RwLock::new(Arc::new(vex::load(&store)?));
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
                prefetch,
                vex,
                sbom_pending: std::sync::atomic::AtomicUsize::new(0),
                prefetch_rx: std::sync::Mutex::new(Some(prefetch_rx)),
            }),
        })
    }

    /// The registry's [`registry::BlobObserver`]: catalogs layers from
    /// their upload streams (`service/stream.rs`).
    pub fn blob_observer(&self) -> Arc<dyn registry::BlobObserver> {
        Arc::new(stream::Streams::new(Arc::downgrade(&self.inner)))
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn source(&self) -> &Arc<dyn RegistryContent> {
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
    /// workers, the scheduler and the delivery loop start. Workers run on
    /// every node (the queue is leased); the scheduler and the delivery
    /// loop work only while this node leads their duty (`Options::leads`).
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
        let prefetch_rx = self
            .inner
            .prefetch_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(rx) = prefetch_rx {
            prefetch::spawn_readers(Arc::downgrade(&self.inner), rx, self.inner.opts.workers);
        }
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
        // Shared state: hand this node's jobs to the others now rather
        // than when their leases lapse.
        if let Err(e) = self.inner.store.release_claims() {
            tracing::warn!(error = %e, "cannot give back this node's assessment jobs");
        }
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
            // Registered all the same (the list may change with a restart);
            // the URL is not logged, it may carry a token.
            if let Err(refused) = self.inner.opts.outbound.check_url_str(&w.url) {
                tracing::warn!(
                    repository = ?w.repository,
                    "a configured webhook's deliveries will fail: {refused}"
                );
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

    /// May webhooks be delivered to `url`? A literal internal address is
    /// refused here (unless the outbound policy allows it); a name is
    /// judged at each delivery, on the addresses it resolves to.
    pub fn check_webhook_url(&self, url: &str) -> Result<(), WebhookUrlRefused> {
        self.inner
            .opts
            .outbound
            .check_url_str(url)
            .map_err(|refused| WebhookUrlRefused {
                url: url.to_string(),
                refused,
            })
    }

    pub fn add_webhook(
        &self,
        url: &str,
        secret: &str,
        repository: Option<String>,
        min_severity: Option<String>,
    ) -> Result<crate::store::Webhook> {
        if let Some(r) = &repository {
            oci::RepoPattern::new(r)?;
        }
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

    /// A manifest was pushed or imported under `tags` (none, one, or
    /// several with `?tag=`): record each tag, persist the job, wake a
    /// worker.
    pub fn manifest_pushed(&self, repo: &str, digest: &str, media_type: &str, tags: &[&str]) {
        self.manifest_pushed_by(repo, digest, media_type, tags, None)
    }

    /// [`Service::manifest_pushed`] by `pusher`, as the registry's access
    /// control knew them (`None` for drydock's own writes).
    pub fn manifest_pushed_by(
        &self,
        repo: &str,
        digest: &str,
        media_type: &str,
        tags: &[&str],
        pusher: Option<crate::vex::Pusher>,
    ) {
        let now = to_ms(self.now());
        for &tag in tags {
            if let Err(e) = self.inner.store.record_tag(repo, tag, digest, now) {
                tracing::error!(repo, tag, digest, error = %e, "cannot record tag");
            }
        }
        // The pusher is stored with the job (a VEX referrer is judged by
        // it, also after a restart).
        match self
            .inner
            .store
            .enqueue_pushed_by(repo, digest, media_type, now, pusher.as_ref())
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
        self.referrer_deleted(digest);
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

    /// Wait until no job is queued or in progress and no SBOM is still
    /// being attached (for tests and tools).
    pub async fn wait_idle(&self, timeout: StdDuration) -> Result<()> {
        use std::sync::atomic::Ordering;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // The count first: an attachment queues its artifact's job
            // before it stops counting, so a zero here and an empty queue
            // read after it mean nothing is left.
            let attaching = self.inner.sbom_pending.load(Ordering::SeqCst);
            let (pending, _) = self.inner.store.queue()?;
            if attaching == 0 && pending.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow!(
                    "{} assessment jobs still pending, {attaching} SBOMs being attached",
                    pending.len()
                ));
            }
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
    }

    /// Who pushed `digest`, stored with its job until the job succeeds (a
    /// retried job, or one that outlived a restart, still knows its
    /// pusher). Unreadable: unknown, which `assess.vex.trusted` trusts not.
    pub(super) fn pusher(&self, digest: &str) -> Option<crate::vex::Pusher> {
        self.inner.store.pusher(digest).unwrap_or_else(|e| {
            tracing::error!(digest, error = %e, "cannot read who pushed a manifest");
            None
        })
    }

    /// Forget who pushed `digest` (its job is done).
    pub(super) fn forget_pusher(&self, digest: &str) {
        if let Err(e) = self.inner.store.forget_pusher(digest) {
            tracing::warn!(digest, error = %e, "cannot forget who pushed a manifest");
        }
    }

    /// Count an SBOM attachment from now until the guard is dropped. Taken
    /// before the image's job is marked done, so that [`Service::wait_idle`]
    /// never sees a done job whose SBOM is not yet attached as idle.
    pub(super) fn attaching_sbom(&self) -> SbomPending {
        self.inner
            .sbom_pending
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        SbomPending(self.inner.clone())
    }

    /// Delete rows older than [`Options::retention`] allows (the scheduler
    /// does this every `retention.every`).
    pub fn prune(&self) -> Result<crate::store::Pruned> {
        let r = &self.inner.opts.retention;
        let now = self.now();
        let pruned = self.inner.store.prune(&crate::store::PruneBefore {
            deliveries: to_ms(now - r.deliveries),
            notified: to_ms(now - r.notified),
            tag_history: to_ms(now - r.tag_history),
            layer_cache: to_ms(now - r.layer_cache_grace),
            catalog_version: self.inner.cataloger.version(),
        })?;
        if pruned.total() > 0 {
            tracing::info!(
                deliveries = pruned.deliveries,
                notified = pruned.notified,
                tag_history = pruned.tag_history,
                layer_cache = pruned.layer_cache,
                "pruned assessment tables"
            );
        }
        Ok(pruned)
    }

    /// When the result of `digest` was made, as a date.
    pub fn assessed_at(&self, ms: i64) -> OffsetDateTime {
        from_ms(ms)
    }
}

/// An SBOM attachment in progress (see [`Service::attaching_sbom`]).
pub(super) struct SbomPending(Arc<Inner>);

impl Drop for SbomPending {
    fn drop(&mut self) {
        self.0
            .sbom_pending
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A webhook URL the outbound policy refuses.
#[derive(Debug, Clone, thiserror::Error)]
#[error("url {url:?}: {refused}")]
pub struct WebhookUrlRefused {
    pub url: String,
    pub refused: egress::Refused,
}
