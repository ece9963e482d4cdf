//! Import: copy images from elsewhere (another registry, an OCI layout, a
//! docker archive) into this registry, where they are assessed on arrival.
//!
//! The job: an [`Importer`] runs import jobs in the background. Each job
//! opens a [`transport::ImageSource`], plans what the target needs (the
//! root manifest or index, the platform manifests it keeps, their blobs),
//! copies the blobs that are missing through the registry's in-process API
//! ([`registry::Registry::put_blob`], which verifies and commits), links the
//! ones present elsewhere in the store, stores child manifests by digest,
//! and only then writes the tag(s) with [`registry::Registry::put_manifest`]
//! (`Origin::Import`, which raises the "manifest pushed" event the
//! assessment service listens to).
//!
//! HTTP API ([`router`], merged into the server under `/api/v1/imports`):
//! - `POST /api/v1/imports` with an [`ImportRequest`] → `202` and the
//!   [`JobStatus`] (with `id`), `Location: /api/v1/imports/{id}`; `400` with
//!   `{"error": …}` for a request that cannot work (bad source or target
//!   syntax, bad platform, a server-side path the rules below refuse);
//!   `403` (`401` for an anonymous caller) without `push` on the target.
//! - `GET /api/v1/imports/{id}` → the [`JobStatus`] (progress, result,
//!   error); `GET /api/v1/imports` → recent jobs, newest first. Both show
//!   only jobs whose target the caller may pull (others are `404`).
//! - `DELETE /api/v1/imports/{id}` → `202` and the status: the job stops
//!   (state `cancelled`) unless it already started writing tags (`409`);
//!   needs `push` on the target.
//!
//! Several nodes: a job runs on the node that accepted it, which writes
//! its status to the metadata store ([`storage::Meta::save_import_job`])
//! when it starts, every [`ImportConfig::heartbeat`] while it runs, and
//! when it ends; so every node sharing the store answers `GET` for it
//! (this node's own jobs from memory, fresher). A job whose node stopped
//! writing for [`ImportConfig::stale_after`] is reported `failed`
//! (phase `interrupted`), never `running` for ever, and every node's
//! housekeeping writes it so in the store ([`Importer::fail_silent_jobs`]). A `DELETE` on another
//! node records the request in the store; the running node sees it at
//! its next heartbeat.
//!
//! Server-side paths (`oci:`, `docker-archive:`) are the server's own
//! files, so they are refused unless the caller is an administrator *and*
//! the path, canonicalised (symlinks and `..` resolved), lies inside one of
//! [`ImportConfig::local_dirs`] (none by default); the job then opens the
//! canonical path. `drydock import` reads local sources on the client and
//! pushes them instead ([`local::LocalPush`]). Errors describe what is wrong
//! with a file and never quote its bytes.
//!
//! Invariants:
//! - Nothing half-imported is visible by tag: tags are written last, after
//!   every blob and child manifest they need is stored. A failed job may
//!   leave verified blobs and untagged child manifests (reachable only by
//!   digest; garbage collection removes them), never a tag pointing at an
//!   incomplete image.
//! - With `--all-tags`, all tags are planned and all content is copied
//!   before the first tag is written.
//! - Blobs are streamed (never held in memory) and verified twice: by the
//!   transport against the source's digest and by the registry on commit.
//! - A blob already in the repository is not transferred; one present in
//!   another repository is linked, not copied.
//! - Credentials are never stored in a job, logged, or returned.
//!
//! Pull-through mirroring ([`mirror::apply`]): repositories under a prefix
//! fetch from an upstream registry on a manifest miss, through the same
//! import path.
//!
//! Platforms: an index is imported whole unless `platforms` picks some.
//! Picking one platform imports that platform's image manifest alone
//! (byte-for-byte as the source has it, so its digest is the source's);
//! picking several imports a new index listing just those (and any
//! attestation manifests attached to them), whose digest therefore differs
//! from the source index's.

mod api;
pub mod client;
mod copy;
mod job;
pub mod local;
pub mod mirror;

pub use api::{ImportError, openapi, router};
pub use job::{ImportedManifest, JobState, JobStatus};
pub use oci::PlatformFilter;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transport::{Credentials, SourceSpec};

/// What to import: the body of `POST /api/v1/imports`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`, `oci:DIR[:TAG]` or
    /// `docker-archive:FILE[:NAME:TAG]` (paths on the server: only for
    /// administrators, inside the configured import directories).
    pub source: String,
    /// `REPO[:TAG]` in this registry. Without a tag, the source's tag is
    /// used; a source named by digest alone is stored by digest.
    pub target: String,
    /// `os/arch[/variant]` entries to keep from an index (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Import every tag of the source repository (TARGET then has no tag).
    #[serde(default)]
    pub all_tags: bool,
    /// `USER:PASSWORD` for the source registry (else the stored ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creds: Option<String>,
    /// Plain HTTP to the source registry.
    #[serde(default)]
    pub insecure: bool,
}

/// Credentials and transport settings stored per remote registry host.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RemoteConfig {
    pub username: Option<String>,
    pub password: Option<String>,
    /// Always use plain HTTP for this host.
    #[serde(default)]
    pub insecure: bool,
    /// PEM bundle of extra trusted roots for this host (a private CA).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

/// Importer settings.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    /// Directories whose contents `oci:` and `docker-archive:` sources may
    /// name (paths on the server; administrators only). Empty: none.
    pub local_dirs: Vec<PathBuf>,
    /// Stored settings per remote, keyed by `HOST[:PORT]`.
    pub remotes: HashMap<String, RemoteConfig>,
    /// Jobs that run at once; more wait in `queued`.
    pub max_concurrent_jobs: usize,
    /// Blobs copied at once within a job.
    pub blob_concurrency: usize,
    /// Finished jobs remembered for `GET`.
    pub keep_finished: usize,
    /// Addresses jobs and mirrors may fetch from (registries, their token
    /// servers, redirects). The default refuses internal addresses.
    pub outbound: egress::EgressPolicy,
    /// How often a running job's status is written to the store.
    pub heartbeat: std::time::Duration,
    /// A job not finished whose node wrote nothing for this long is
    /// reported interrupted (its node died).
    pub stale_after: std::time::Duration,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            local_dirs: Vec::new(),
            remotes: HashMap::new(),
            max_concurrent_jobs: 2,
            blob_concurrency: 3,
            keep_finished: 200,
            outbound: egress::EgressPolicy::default(),
            heartbeat: std::time::Duration::from_secs(1),
            stale_after: std::time::Duration::from_secs(30),
        }
    }
}

/// Why a request was refused before a job started.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request cannot work (`400`).
    #[error("{0}")]
    Invalid(String),
    /// The caller is anonymous and lacks a right it needs (`401`).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller lacks a right it needs (`403`).
    #[error("{0}")]
    Forbidden(String),
}

impl RequestError {
    fn status(&self) -> StatusCode {
        match self {
            RequestError::Invalid(_) => StatusCode::BAD_REQUEST,
            RequestError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            RequestError::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }
}

/// What the import endpoints need to know about who is asking: an
/// [`auth::Principal`], which the server's authentication layer puts into
/// every request (unrestricted when authentication is off).
pub trait Caller: Send + Sync {
    /// No credentials were presented.
    fn is_anonymous(&self) -> bool;
    fn is_admin(&self) -> bool;
    fn may_push(&self, repo: &str) -> bool;
    fn may_pull(&self, repo: &str) -> bool;
}

impl Caller for auth::Principal {
    fn is_anonymous(&self) -> bool {
        auth::Principal::is_anonymous(self)
    }
    fn is_admin(&self) -> bool {
        auth::Principal::is_admin(self)
    }
    fn may_push(&self, repo: &str) -> bool {
        self.may(repo, auth::Action::Push)
    }
    fn may_pull(&self, repo: &str) -> bool {
        self.may(repo, auth::Action::Pull)
    }
}

/// Anyone, with every right (authentication off, in-process callers).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unrestricted;

impl Caller for Unrestricted {
    fn is_anonymous(&self) -> bool {
        false
    }
    fn is_admin(&self) -> bool {
        true
    }
    fn may_push(&self, _: &str) -> bool {
        true
    }
    fn may_pull(&self, _: &str) -> bool {
        true
    }
}

/// Whether a caller may start (or cancel) an import into `repo`: `push`
/// on the target, and administrator rights for a server-side path.
pub fn authorize(
    caller: &dyn Caller,
    repo: &str,
    server_side_path: bool,
) -> Result<(), RequestError> {
    if !caller.may_push(repo) {
        let msg = format!("importing into {repo} needs push access to it");
        return Err(if caller.is_anonymous() {
            RequestError::Unauthenticated(format!("{msg}; sign in"))
        } else {
            RequestError::Forbidden(msg)
        });
    }
    if server_side_path && !caller.is_admin() {
        return Err(RequestError::Invalid(
            "server-side paths (oci:, docker-archive:) may only be imported by an administrator; \
             `drydock import` reads such sources on your machine and pushes them"
                .into(),
        ));
    }
    Ok(())
}

/// Resolve a server-side source path and check it lies inside one of
/// `dirs` (both canonicalised, so neither a symlink nor `..` leads out). A
/// path that does not exist is refused with the same message as one
/// outside, so the answer says nothing about the server's other files.
pub fn confine(path: &std::path::Path, dirs: &[PathBuf]) -> Result<PathBuf, RequestError> {
    if dirs.is_empty() {
        return Err(RequestError::Invalid(
            "this server does not import from server-side paths (oci:, docker-archive:): \
             no import directories are configured (import.local_dirs); \
             `drydock import` reads such sources on your machine and pushes them"
                .into(),
        ));
    }
    let outside = || {
        RequestError::Invalid(format!(
            "{} is not an existing path inside this server's import directories ({})",
            path.display(),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    if !path.is_absolute() {
        return Err(RequestError::Invalid(format!(
            "{} must be an absolute path on the server",
            path.display()
        )));
    }
    let real = std::fs::canonicalize(path).map_err(|_| outside())?;
    let inside = dirs
        .iter()
        .any(|d| std::fs::canonicalize(d).is_ok_and(|d| real.starts_with(&d)));
    if inside { Ok(real) } else { Err(outside()) }
}

/// The target repository and tag, and the platform filter, of a request.
pub(crate) fn parse_target(
    req: &ImportRequest,
) -> Result<(oci::Name, Option<oci::Tag>, PlatformFilter), RequestError> {
    let bad = |m: String| RequestError::Invalid(m);
    let target = req.target.trim();
    let (repo, tag) = match target.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (
            r,
            Some(oci::Tag::parse(t).map_err(|e| bad(format!("target: {e}")))?),
        ),
        _ => (target, None),
    };
    if target.contains('@') {
        return Err(bad(
            "TARGET is REPO[:TAG]; the digest comes from the source".into(),
        ));
    }
    let repo = oci::Name::parse(repo).map_err(|e| bad(format!("target: {e}")))?;
    if req.all_tags && tag.is_some() {
        return Err(bad(
            "--all-tags keeps the source's tags; give TARGET as a repository without a tag".into(),
        ));
    }
    let platforms = PlatformFilter::parse(&req.platforms).map_err(|e| bad(e.to_string()))?;
    Ok((repo, tag, platforms))
}

/// Whether a source names a path (on whichever machine reads it).
pub fn is_local_source(source: &str) -> bool {
    let s = source.trim();
    s.starts_with("oci:") || s.starts_with("docker-archive:")
}

/// A request checked and resolved into what a job needs.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub spec: SourceSpec,
    pub repo: oci::Name,
    pub tag: Option<oci::Tag>,
    pub platforms: PlatformFilter,
    pub all_tags: bool,
    /// Extra trusted roots for the source registry.
    pub ca_pem: Option<Vec<u8>>,
    /// Where a registry source may be reached.
    pub outbound: egress::EgressPolicy,
}

impl Plan {
    /// Open the source. A registry is read through a client that enforces
    /// the outbound policy on names, redirects and token servers.
    pub(crate) async fn open_source(
        &self,
    ) -> Result<Box<dyn transport::ImageSource>, transport::Error> {
        match &self.spec {
            SourceSpec::Registry {
                image,
                creds,
                insecure,
            } => {
                let ca_pem = match &self.ca_pem {
                    Some(ca) => Some(ca.clone()),
                    None => transport::remote::ca_pem_from_env()?,
                };
                let src = transport::RemoteSource::with_options(
                    image.clone(),
                    creds.clone(),
                    *insecure,
                    transport::remote::RemoteOptions {
                        ca_pem,
                        outbound: self.outbound.clone(),
                        ..Default::default()
                    },
                )?;
                Ok(Box::new(src))
            }
            _ => transport::open(&self.spec).await,
        }
    }
}

/// Runs import jobs. Cheap to clone.
#[derive(Clone)]
pub struct Importer {
    inner: Arc<Inner>,
}

struct Inner {
    registry: registry::Registry,
    config: ImportConfig,
    jobs: Mutex<Jobs>,
    slots: Arc<tokio::sync::Semaphore>,
}

#[derive(Default)]
struct Jobs {
    by_id: HashMap<uuid::Uuid, Arc<job::Job>>,
    order: VecDeque<uuid::Uuid>,
}

impl Importer {
    pub fn new(registry: registry::Registry, config: ImportConfig) -> Importer {
        let slots = Arc::new(tokio::sync::Semaphore::new(
            config.max_concurrent_jobs.max(1),
        ));
        let importer = Importer {
            inner: Arc::new(Inner {
                registry,
                config,
                jobs: Mutex::new(Jobs::default()),
                slots,
            }),
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let every = (importer.inner.config.stale_after / 3).max(Duration::from_secs(1));
            rt.spawn(housekeeping(Arc::downgrade(&importer.inner), every));
        }
        importer
    }

    /// Write every stored job whose node went silent (not finished, no
    /// heartbeat for [`ImportConfig::stale_after`]) as failed
    /// (`interrupted`) in the store itself, so that lists, counts and
    /// filters see it as `GET` reports it; how many were written.
    ///
    /// Every node does this on its housekeeping round rather than one
    /// leader: the rewrite holds only while the row still has the
    /// heartbeat judged silent (a node that wrote since keeps its job),
    /// so nodes sweeping at once write each job once, and a dead node's
    /// jobs end without waiting for any leader to be elected.
    pub async fn fail_silent_jobs(&self) -> Result<usize, storage::MetaError> {
        let stale_after = self.inner.config.stale_after;
        let before = job::nanos(time::OffsetDateTime::now_utc())
            .saturating_sub(i64::try_from(stale_after.as_nanos()).unwrap_or(i64::MAX));
        let mut written = 0;
        for stored in self.meta().silent_import_jobs(before).await? {
            if self
                .status(stored.id)
                .is_some_and(|s| !s.state.is_finished())
            {
                // Running here: its heartbeat is only late.
                continue;
            }
            let Some(status) = JobStatus::from_stored(&stored, stale_after) else {
                continue;
            };
            if !status.state.is_finished() {
                continue;
            }
            let json = serde_json::to_string(&status)
                .map_err(|e| storage::MetaError::Backend(format!("import job status: {e}")))?;
            if self
                .meta()
                .finish_silent_import_job(stored.id, stored.heartbeat, json)
                .await?
            {
                tracing::info!(id = %stored.id, "import job written failed: its node went silent");
                written += 1;
            }
        }
        Ok(written)
    }

    /// The registry jobs import into.
    pub fn registry(&self) -> &registry::Registry {
        &self.inner.registry
    }

    /// Check a request and resolve credentials; nothing is contacted.
    pub(crate) fn plan(&self, req: &ImportRequest) -> Result<Plan, RequestError> {
        let (repo, tag, platforms) = parse_target(req)?;
        let bad = |m: String| RequestError::Invalid(m);
        let mut spec = SourceSpec::parse(req.source.trim()).map_err(|e| bad(e.to_string()))?;
        let mut ca_pem = None;
        match &mut spec {
            SourceSpec::Registry {
                image,
                creds,
                insecure,
            } => {
                let stored = self.inner.config.remotes.get(&image.host);
                *creds = match (&req.creds, stored) {
                    (Some(c), _) => Some(Credentials::parse(c).map_err(|e| bad(e.to_string()))?),
                    (
                        None,
                        Some(RemoteConfig {
                            username: Some(u),
                            password,
                            ..
                        }),
                    ) => Some(Credentials {
                        username: u.clone(),
                        password: password.clone().unwrap_or_default(),
                    }),
                    _ => None,
                };
                *insecure = req.insecure || stored.is_some_and(|s| s.insecure);
                if let Some(path) = stored.and_then(|s| s.ca_file.as_ref()) {
                    ca_pem = Some(std::fs::read(path).map_err(|e| {
                        bad(format!(
                            "CA file {} for {}: {e}",
                            path.display(),
                            image.host
                        ))
                    })?);
                }
                // A literal internal address is refused now; a name is
                // judged when it resolves, at every connection.
                self.inner
                    .config
                    .outbound
                    .check_host(&image.host)
                    .map_err(|r| bad(format!("{}: {r}", req.source.trim())))?;
                if req.all_tags && image.digest.is_some() {
                    return Err(bad(
                        "--all-tags takes a source repository, not a digest".into()
                    ));
                }
            }
            SourceSpec::OciLayout { dir, .. } | SourceSpec::DockerArchive { file: dir, .. } => {
                if req.creds.is_some() {
                    return Err(bad("--creds only applies to docker:// sources".into()));
                }
                // The job opens the canonical path, not one a symlink
                // swapped in later could redirect.
                *dir = confine(dir, &self.inner.config.local_dirs)?;
            }
        }
        Ok(Plan {
            spec,
            repo,
            tag,
            platforms,
            all_tags: req.all_tags,
            ca_pem,
            outbound: self.inner.config.outbound.clone(),
        })
    }

    /// Check a request from `caller` (rights first, so a caller without
    /// them learns nothing about the server's paths) and start a job.
    pub fn submit_as(
        &self,
        caller: &dyn Caller,
        req: ImportRequest,
    ) -> Result<JobStatus, RequestError> {
        let (repo, _, _) = parse_target(&req)?;
        authorize(caller, repo.as_str(), is_local_source(&req.source))?;
        self.submit(req)
    }

    /// Check a request and start a job for it, on the embedder's authority
    /// (no caller check; server-side paths still only inside
    /// [`ImportConfig::local_dirs`]).
    pub fn submit(&self, req: ImportRequest) -> Result<JobStatus, RequestError> {
        self.start(req).map(|job| job.status())
    }

    /// Start a job; the job itself, which outlives its place in the list.
    fn start(&self, req: ImportRequest) -> Result<Arc<job::Job>, RequestError> {
        let plan = self.plan(&req)?;
        let job = Arc::new(job::Job::new(&plan, &req));
        {
            let mut jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.by_id.insert(job.id, job.clone());
            jobs.order.push_back(job.id);
            // Forget the oldest finished jobs beyond the limit.
            let keep = self.inner.config.keep_finished.max(1);
            while jobs.order.len() > keep {
                let Some(pos) = jobs
                    .order
                    .iter()
                    .position(|id| jobs.by_id.get(id).is_none_or(|j| j.finished()))
                else {
                    break;
                };
                let id = jobs.order.remove(pos).expect("position");
                jobs.by_id.remove(&id);
            }
        }
        let this = self.clone();
        let handle = job.clone();
        tokio::spawn(async move {
            let beat = tokio::spawn(heartbeat(
                job.clone(),
                this.meta().clone(),
                this.inner.config.heartbeat,
            ));
            this.work(&plan, &job).await;
            beat.abort();
            if let Err(e) = job.save(&**this.meta()).await {
                tracing::warn!(id = %job.id, "cannot store the import job's result: {e}");
            }
            let keep = this.inner.config.keep_finished.max(1);
            if let Err(e) = this.meta().prune_import_jobs(keep).await {
                tracing::warn!("cannot prune stored import jobs: {e}");
            }
        });
        Ok(handle)
    }

    fn meta(&self) -> &Arc<dyn storage::Meta> {
        self.inner.registry.meta()
    }

    /// Run a job to its end (waiting for a slot first).
    async fn work(&self, plan: &Plan, job: &Arc<job::Job>) {
        let _slot = tokio::select! {
            s = self.inner.slots.clone().acquire_owned() => s,
            _ = job.cancelled() => {
                job.mark_cancelled();
                return;
            }
        };
        job.start();
        let sink = copy::RegistrySink {
            reg: &self.inner.registry,
            repo: &plan.repo,
        };
        match copy::run(&sink, self.inner.config.blob_concurrency, plan, job).await {
            Ok(()) => job.succeed(),
            Err(copy::Stopped::Cancelled) => {
                tracing::info!(id = %job.id, source = %plan.spec, "import cancelled");
                job.mark_cancelled();
            }
            Err(copy::Stopped::Failed(e)) => {
                tracing::warn!(id = %job.id, source = %plan.spec, error = %e, "import failed");
                job.fail(e.to_string());
            }
        }
    }

    /// Write a job's status to the store now (the API does so before it
    /// answers, so another node knows the job at once).
    async fn save(&self, id: uuid::Uuid) {
        let job = {
            let jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.by_id.get(&id).cloned()
        };
        if let Some(job) = job
            && let Err(e) = job.save(&**self.meta()).await
        {
            tracing::warn!(%id, "cannot store the import job: {e}");
        }
    }

    /// A job's status on any node: this node's own from memory, others'
    /// from the store (judged interrupted when their node went silent).
    pub async fn find(&self, id: uuid::Uuid) -> Option<JobStatus> {
        if let Some(s) = self.status(id) {
            return Some(s);
        }
        match self.meta().import_job(id).await {
            Ok(stored) => {
                stored.and_then(|j| JobStatus::from_stored(&j, self.inner.config.stale_after))
            }
            Err(e) => {
                tracing::warn!(%id, "cannot read the stored import job: {e}");
                None
            }
        }
    }

    /// Recent jobs of every node, newest first (this node's from memory).
    pub async fn recent(&self) -> Vec<JobStatus> {
        let mut out: HashMap<uuid::Uuid, JobStatus> = HashMap::new();
        let keep = self.inner.config.keep_finished.max(1);
        match self.meta().import_jobs(keep).await {
            Ok(stored) => out.extend(stored.iter().filter_map(|j| {
                JobStatus::from_stored(j, self.inner.config.stale_after).map(|s| (s.id, s))
            })),
            Err(e) => tracing::warn!("cannot read the stored import jobs: {e}"),
        }
        out.extend(self.list().into_iter().map(|s| (s.id, s)));
        let mut out: Vec<JobStatus> = out.into_values().collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        out.truncate(keep);
        out
    }

    /// The status of a job this node runs (or ran); see [`Importer::find`]
    /// for any node's.
    pub fn status(&self, id: uuid::Uuid) -> Option<JobStatus> {
        let jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.by_id.get(&id).map(|j| j.status())
    }

    /// Ask a job to stop: `None` if unknown, `Some(false)` if it already
    /// finished or is writing tags (then it runs to its end).
    pub fn cancel(&self, id: uuid::Uuid) -> Option<bool> {
        let job = {
            let jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.by_id.get(&id).cloned()
        }?;
        Some(job.request_cancel())
    }

    /// Recent jobs of this node, newest first; see [`Importer::recent`]
    /// for every node's.
    pub fn list(&self) -> Vec<JobStatus> {
        let jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.order
            .iter()
            .rev()
            .filter_map(|id| jobs.by_id.get(id).map(|j| j.status()))
            .collect()
    }

    /// Submit and wait for the job to finish (for tests and embedding).
    pub async fn run(&self, req: ImportRequest) -> Result<JobStatus, RequestError> {
        // Poll the job itself, not the list: a finished job may be
        // forgotten from the list (keep_finished) between two polls.
        let job = self.start(req)?;
        loop {
            let s = job.status();
            if s.state.is_finished() {
                return Ok(s);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Every `every`, while the importer lives: write the jobs of silent
/// nodes as failed ([`Importer::fail_silent_jobs`]).
async fn housekeeping(inner: std::sync::Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(e) = (Importer { inner }).fail_silent_jobs().await {
            tracing::warn!("cannot write silent nodes' import jobs as failed: {e}");
        }
    }
}

/// Write a job's status every `every` until it finishes, and pass on a
/// stop asked for on another node.
async fn heartbeat(job: Arc<job::Job>, meta: Arc<dyn storage::Meta>, every: std::time::Duration) {
    while !job.finished() {
        match job.save(&*meta).await {
            Ok(true) => {
                job.request_cancel();
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(id = %job.id, "cannot store the import job's progress: {e}"),
        }
        tokio::time::sleep(every).await;
    }
}
