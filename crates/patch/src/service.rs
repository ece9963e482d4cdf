//! The patch job: read the image, plan, fetch, build, push; jobs for the
//! API and the continuous watcher.
//!
//! By concern: `config` (the `[patch]` table), `ports` (what the binary
//! adapts, and the results and jobs they carry), `build` (one patch: read,
//! plan, fetch, build, push), `continuous` (the watcher); here the
//! service itself and its jobs.

mod build;
mod config;
mod continuous;
mod ports;

pub use config::{DebianConfig, PatchConfig, RepoRule, TagStyle};
pub use ports::{
    FindingsSource, INTERRUPTED, ImageStore, JobStore, JobView, Outcome, PatchEvents,
    PlatformOutcome,
};

use crate::archive::{Fetcher, Keyring};
use crate::plan::PlanOptions;
use anyhow::{Context, Result, anyhow, bail};
use oci::{Name, Tag};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

struct Inner {
    registry: Arc<dyn ImageStore>,
    findings: Arc<dyn FindingsSource>,
    fetcher: Fetcher,
    cfg: PatchConfig,
    keyring: Option<Keyring>,
    tmp: PathBuf,
    jobs: Mutex<BTreeMap<String, JobView>>,
    store: Option<Arc<dyn JobStore>>,
    events: Option<Arc<dyn PatchEvents>>,
    /// One patch per repository at a time (tag numbering).
    lock: tokio::sync::Mutex<()>,
}

/// The patch service.
#[derive(Clone)]
pub struct Patcher {
    inner: Arc<Inner>,
}

const MAX_JOBS: usize = 200;

impl Patcher {
    pub fn new(
        registry: Arc<dyn ImageStore>,
        data_dir: &Path,
        findings: Arc<dyn FindingsSource>,
        policy: egress::EgressPolicy,
        cfg: PatchConfig,
    ) -> Result<Patcher> {
        let fetcher = Fetcher::new(data_dir, policy)?;
        let keyring = cfg
            .debian
            .keyring
            .as_deref()
            .map(Keyring::load)
            .transpose()
            .context("patch.debian.keyring")?;
        let tmp = fetcher.cache_dir().join("tmp");
        std::fs::create_dir_all(&tmp)?;
        Ok(Patcher {
            inner: Arc::new(Inner {
                registry,
                findings,
                fetcher,
                cfg,
                keyring,
                tmp,
                jobs: Mutex::new(BTreeMap::new()),
                store: None,
                events: None,
                lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Keep jobs in `store`; jobs an earlier process left running are
    /// failed with [`INTERRUPTED`] (they cannot be resumed: their state
    /// was in that process). Call before the patcher is cloned.
    pub fn with_job_store(mut self, store: Arc<dyn JobStore>) -> Result<Patcher> {
        let n = store.fail_running(INTERRUPTED, &now_rfc3339())?;
        if n > 0 {
            tracing::warn!(
                jobs = n,
                "patch jobs interrupted by a restart are marked failed"
            );
        }
        Arc::get_mut(&mut self.inner)
            .ok_or_else(|| anyhow!("the job store is set before the patcher is shared"))?
            .store = Some(store);
        Ok(self)
    }

    /// Tell `events` of every patched image pushed. Call before the
    /// patcher is cloned.
    pub fn with_events(mut self, events: Arc<dyn PatchEvents>) -> Result<Patcher> {
        Arc::get_mut(&mut self.inner)
            .ok_or_else(|| anyhow!("events are set before the patcher is shared"))?
            .events = Some(events);
        Ok(self)
    }

    fn persist(&self, job: &JobView) {
        if let Some(st) = &self.inner.store
            && let Err(e) = st.save(job)
        {
            tracing::warn!(job = job.id, error = %format!("{e:#}"), "cannot store a patch job");
        }
    }

    pub fn config(&self) -> &PatchConfig {
        &self.inner.cfg
    }

    /// Start a patch in the background; follow it with [`Patcher::job`].
    pub fn submit(&self, repo: &str, tag: &str, dry_run: bool) -> Result<String> {
        Name::parse(repo).map_err(|e| anyhow!("{e}"))?;
        Tag::parse(tag).map_err(|e| anyhow!("{e}"))?;
        let id = uuid::Uuid::new_v4().to_string();
        let view = JobView {
            id: id.clone(),
            repository: repo.into(),
            tag: tag.into(),
            dry_run,
            state: "running".into(),
            error: None,
            result: None,
            created_at: Some(now_rfc3339()),
            finished_at: None,
        };
        self.persist(&view);
        {
            let mut jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
            while jobs.len() >= MAX_JOBS {
                let done = jobs
                    .iter()
                    .find(|(_, j)| j.state != "running")
                    .map(|(k, _)| k.clone());
                match done {
                    Some(k) => jobs.remove(&k),
                    None => bail!("too many patch jobs running"),
                };
            }
            jobs.insert(id.clone(), view);
        }
        let this = self.clone();
        let (repo, tag, jid) = (repo.to_string(), tag.to_string(), id.clone());
        tokio::spawn(async move {
            let r = this.run(&repo, &tag, dry_run).await;
            let done = {
                let mut jobs = this.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
                jobs.get_mut(&jid).map(|j| {
                    match r {
                        Ok(o) => {
                            j.state = "done".into();
                            j.result = Some(o);
                        }
                        Err(e) => {
                            j.state = "failed".into();
                            j.error = Some(format!("{e:#}"));
                        }
                    }
                    j.finished_at = Some(now_rfc3339());
                    j.clone()
                })
            };
            if let Some(j) = done {
                this.persist(&j);
            }
        });
        Ok(id)
    }

    /// A job of this process, or one stored by an earlier one.
    pub fn job(&self, id: &str) -> Option<JobView> {
        let mem = {
            let jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.get(id).cloned()
        };
        mem.or_else(|| {
            let st = self.inner.store.as_ref()?;
            st.load(id)
                .inspect_err(|e| tracing::warn!(job = id, error = %format!("{e:#}"), "cannot read a patch job"))
                .ok()
                .flatten()
        })
    }

    fn options(&self) -> PlanOptions {
        PlanOptions {
            target: self.inner.cfg.target,
            allow_maintainer_scripts: self.inner.cfg.allow_maintainer_scripts,
            all_or_nothing: self.inner.cfg.all_or_nothing,
        }
    }

    /// Plan (and unless `dry_run`, build and push) the patch of `repo:tag`.
    pub async fn run(&self, repo: &str, tag: &str, dry_run: bool) -> Result<Outcome> {
        self.run_inner(repo, tag, dry_run, None).await
    }

    async fn run_inner(
        &self,
        repo: &str,
        tag: &str,
        dry_run: bool,
        only_if_new: Option<&BTreeSet<String>>,
    ) -> Result<Outcome> {
        let outcome = self.patch(repo, tag, dry_run, only_if_new).await?;
        if outcome.patched_digest.is_some()
            && let Some(ev) = &self.inner.events
        {
            ev.patched(&outcome);
        }
        Ok(outcome)
    }
}

/// An image without an assessment yet: no findings to plan from.
#[derive(Debug, thiserror::Error)]
#[error("{0} has not been assessed yet; try again when its assessment is done")]
struct NotAssessed(String);

fn cleared_of(p: &[PlatformOutcome]) -> BTreeSet<String> {
    p.iter().flat_map(|o| o.plan.cleared()).collect()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
