//! The patch job: read the image, plan, fetch, build, push; jobs for the
//! API and the continuous watcher.

use crate::archive::{ArchiveSource, Fetcher, Index, Keyring, NoArchitecture};
use crate::control::Stanza;
use crate::layer::{self, Prepared};
use crate::plan::{self, Blocked, Fixable, Installed, Plan, PlanOptions, Target};
use crate::rootfs::{INFO, RootFs};
use crate::{ANNOTATION_CLEARED, ANNOTATION_ORIGINAL, ANNOTATION_SOURCE_TAG, ANNOTATION_UPGRADES};
use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures::future::BoxFuture;
use oci::{Digest, Name, Reference, Tag};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tag naming of patched images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagStyle {
    /// `v1-1`, `v1-2`, … one new tag per patch.
    #[default]
    Incremental,
    /// `v1-patched`, moved to the newest patch.
    Floating,
}

/// Repositories and tags continuous mode watches (`*` matches any run of
/// characters, `/` included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoRule {
    pub name: String,
    #[serde(default = "star")]
    pub tags: Vec<String>,
}

fn star() -> Vec<String> {
    vec!["*".into()]
}

/// The `[patch]` configuration table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PatchConfig {
    /// Continuous mode.
    pub enabled: bool,
    pub repositories: Vec<RepoRule>,
    pub tag_style: TagStyle,
    pub target: Target,
    pub allow_maintainer_scripts: bool,
    pub all_or_nothing: bool,
    /// How often continuous mode fetches the archives' `InRelease` to see
    /// whether their `Packages` indexes changed (new fixes). A new
    /// vulnerability database is noticed within a second regardless.
    pub interval_seconds: u64,
    pub debian: DebianConfig,
}

impl Default for PatchConfig {
    fn default() -> Self {
        PatchConfig {
            enabled: false,
            repositories: Vec::new(),
            tag_style: TagStyle::Incremental,
            target: Target::Lowest,
            allow_maintainer_scripts: false,
            all_or_nothing: false,
            interval_seconds: 60,
            debian: DebianConfig::default(),
        }
    }
}

/// `[patch.debian]`: the archives (suites) upgrades come from and the
/// keyring their `InRelease` must be signed with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebianConfig {
    pub archives: Vec<ArchiveSource>,
    pub keyring: Option<PathBuf>,
}

/// Where the fixable findings of an image come from.
pub trait FindingsSource: Send + Sync {
    /// `None` while the image has no assessment yet.
    fn fixable(&self, digest: &str) -> Result<Option<Vec<Fixable>>>;
    /// The database version the image's findings were made with.
    fn assessed_with(&self, digest: &str) -> Option<String>;
}

/// The registry operations a patch needs (the in-process registry API,
/// adapted in the binary, so this crate stays beside the registry rather
/// than on top of its internals).
pub trait ImageStore: Send + Sync {
    /// A manifest's bytes, media type and digest.
    fn manifest<'a>(
        &'a self,
        repo: &'a Name,
        reference: &'a Reference,
    ) -> BoxFuture<'a, Result<Option<(Bytes, String, Digest)>>>;
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>>;
    /// Stream a file in as a blob of `repo` (verified against `digest`).
    fn put_blob<'a>(
        &'a self,
        repo: &'a Name,
        digest: &'a Digest,
        path: &'a Path,
    ) -> BoxFuture<'a, Result<()>>;
    fn put_manifest<'a>(
        &'a self,
        repo: &'a Name,
        reference: &'a Reference,
        body: Bytes,
        media_type: &'a str,
    ) -> BoxFuture<'a, Result<Digest>>;
    fn tags(&self, repo: &Name) -> Result<Vec<(Tag, Digest)>>;
    fn repositories(&self) -> Result<Vec<Name>>;
}

/// The result for one image manifest (one platform).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlatformOutcome {
    pub platform: Option<String>,
    pub digest: String,
    pub plan: Plan,
    /// The patched manifest, when one was pushed.
    pub patched_digest: Option<String>,
}

/// The result of a patch (or a dry run).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outcome {
    pub repository: String,
    pub tag: String,
    pub original_digest: String,
    pub dry_run: bool,
    pub platforms: Vec<PlatformOutcome>,
    pub patched_digest: Option<String>,
    pub patched_tag: Option<String>,
    /// Why nothing was pushed, when nothing was.
    pub note: Option<String>,
}

/// A job of `/api/v1/patches`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    pub repository: String,
    pub tag: String,
    pub dry_run: bool,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub error: Option<String>,
    pub result: Option<Outcome>,
    /// When the job was started and when it ended (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
}

/// The error a job left running by an earlier process ends with.
pub const INTERRUPTED: &str = "interrupted by restart";

/// Where jobs are kept so that they outlive the process (the assessor's
/// database, adapted in the binary). The service keeps running jobs in
/// memory as well and writes each one when it starts and when it ends.
pub trait JobStore: Send + Sync {
    fn save(&self, job: &JobView) -> Result<()>;
    fn load(&self, id: &str) -> Result<Option<JobView>>;
    /// Fail every job still `running` (left by an earlier process) with
    /// `error`; how many there were.
    fn fail_running(&self, error: &str, at: &str) -> Result<usize>;
}

/// Told of every patched image pushed (webhooks, in the binary).
pub trait PatchEvents: Send + Sync {
    fn patched(&self, outcome: &Outcome);
}

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

    async fn patch(
        &self,
        repo: &str,
        tag: &str,
        dry_run: bool,
        only_if_new: Option<&BTreeSet<String>>,
    ) -> Result<Outcome> {
        let name = Name::parse(repo).map_err(|e| anyhow!("{e}"))?;
        let t = Tag::parse(tag).map_err(|e| anyhow!("{e}"))?;
        let reg = &self.inner.registry;
        let _guard = self.inner.lock.lock().await;
        let stored = Stored::from(
            reg.manifest(&name, &Reference::Tag(t.clone()))
                .await?
                .ok_or_else(|| anyhow!("{repo}:{tag} does not exist"))?,
        );
        let doc: Value = serde_json::from_slice(&stored.bytes)?;
        let mut outcome = Outcome {
            repository: repo.into(),
            tag: tag.into(),
            original_digest: stored.digest.to_string(),
            dry_run,
            platforms: Vec::new(),
            patched_digest: None,
            patched_tag: None,
            note: None,
        };
        if doc.get("manifests").is_some() {
            let mut new_index = doc.clone();
            let mut changed = false;
            let children = doc["manifests"].as_array().cloned().unwrap_or_default();
            for (i, child) in children.iter().enumerate() {
                let plat = &child["platform"];
                let os = plat["os"].as_str().unwrap_or("");
                if os != "linux" {
                    continue; // attestations (unknown/unknown), other systems
                }
                let platform = format!(
                    "{os}/{}{}",
                    plat["architecture"].as_str().unwrap_or(""),
                    plat["variant"]
                        .as_str()
                        .map(|v| format!("/{v}"))
                        .unwrap_or_default()
                );
                let digest = Digest::parse(child["digest"].as_str().unwrap_or(""))
                    .map_err(|e| anyhow!("index child: {e}"))?;
                let mut p = self
                    .patch_image(&name, &digest, dry_run, &stored.digest, tag)
                    .await?;
                p.0.platform = Some(platform);
                if let Some((d, size, mt)) = &p.1 {
                    new_index["manifests"][i]["digest"] = json!(d);
                    new_index["manifests"][i]["size"] = json!(size);
                    new_index["manifests"][i]["mediaType"] = json!(mt);
                    changed = true;
                }
                outcome.platforms.push(p.0);
            }
            if changed && !dry_run {
                let cleared = cleared_of(&outcome.platforms);
                if let Some(prev) = only_if_new
                    && cleared.is_subset(prev)
                {
                    outcome.note = Some("clears nothing an earlier patch did not".into());
                    return Ok(outcome);
                }
                annotate(&mut new_index, &stored.digest, tag, &outcome.platforms);
                let media = stored.media_type.clone();
                let (d, ptag) = self.push_tagged(&name, tag, new_index, &media).await?;
                outcome.patched_digest = Some(d);
                outcome.patched_tag = Some(ptag);
            }
        } else {
            let mut p = self
                .patch_image(&name, &stored.digest, dry_run, &stored.digest, tag)
                .await?;
            if let Some((_, _, _)) = &p.1 {
                let cleared = cleared_of(std::slice::from_ref(&p.0));
                if let Some(prev) = only_if_new
                    && cleared.is_subset(prev)
                {
                    outcome.note = Some("clears nothing an earlier patch did not".into());
                    outcome.platforms.push(p.0);
                    return Ok(outcome);
                }
                let doc = p.2.take().expect("a built manifest");
                let media = stored.media_type.clone();
                let (d, ptag) = self.push_tagged(&name, tag, doc, &media).await?;
                p.0.patched_digest = Some(d.clone());
                outcome.patched_digest = Some(d);
                outcome.patched_tag = Some(ptag);
            }
            outcome.platforms.push(p.0);
        }
        if outcome.patched_digest.is_none() && outcome.note.is_none() {
            let skipped: Vec<String> = outcome
                .platforms
                .iter()
                .filter_map(|p| p.plan.skipped.as_deref())
                .map(str::to_string)
                .collect();
            outcome.note = Some(if dry_run {
                "dry run: nothing pushed".into()
            } else if !skipped.is_empty() {
                format!("nothing pushed; skipped: {}", skipped.join("; "))
            } else {
                "no upgrade to make".into()
            });
        }
        Ok(outcome)
    }

    /// Push a manifest or index under the next patch tag.
    async fn push_tagged(
        &self,
        name: &Name,
        tag: &str,
        doc: Value,
        media_type: &str,
    ) -> Result<(String, String)> {
        let reg = &self.inner.registry;
        let new_tag = match self.inner.cfg.tag_style {
            TagStyle::Floating => format!("{tag}-patched"),
            TagStyle::Incremental => {
                let prefix = format!("{tag}-");
                let n = reg
                    .tags(name)?
                    .iter()
                    .filter_map(|(t, _)| t.as_str().strip_prefix(&prefix)?.parse::<u64>().ok())
                    .max()
                    .unwrap_or(0);
                format!("{tag}-{}", n + 1)
            }
        };
        let t = Tag::parse(&new_tag).map_err(|e| anyhow!("patch tag {new_tag}: {e}"))?;
        let body = Bytes::from(serde_json::to_vec(&doc)?);
        let d = reg
            .put_manifest(name, &Reference::Tag(t), body, media_type)
            .await?;
        Ok((d.to_string(), new_tag))
    }

    /// Plan and (unless dry run) build one image manifest's patch; returns
    /// the outcome, the pushed manifest (digest, size, media type) and the
    /// manifest document (for the caller to tag).
    async fn patch_image(
        &self,
        name: &Name,
        digest: &Digest,
        dry_run: bool,
        original: &Digest,
        tag: &str,
    ) -> Result<ImageResult> {
        let reg = self.inner.registry.clone();
        let stored = Stored::from(
            reg.manifest(name, &Reference::Digest(digest.clone()))
                .await?
                .ok_or_else(|| anyhow!("manifest {digest} is missing"))?,
        );
        let manifest: Value = serde_json::from_slice(&stored.bytes)?;
        let config_desc = &manifest["config"];
        let config_digest = Digest::parse(config_desc["digest"].as_str().unwrap_or(""))
            .map_err(|e| anyhow!("config: {e}"))?;
        let source = reg.clone();
        let config: Value = {
            let cd = config_digest.clone();
            let s = source.clone();
            tokio::task::spawn_blocking(move || -> Result<Value> {
                let mut r = s.open_blob(&cd)?;
                let mut buf = Vec::new();
                (&mut r).take(16 << 20).read_to_end(&mut buf)?;
                Ok(serde_json::from_slice(&buf)?)
            })
            .await??
        };
        let arch = debian_arch(
            config["architecture"].as_str().unwrap_or("amd64"),
            config["variant"].as_str(),
        );
        let layers: Vec<(Digest, String)> = manifest["layers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| {
                        Some((
                            Digest::parse(l["digest"].as_str()?).ok()?,
                            l["mediaType"].as_str().unwrap_or("").to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let fixable = self
            .inner
            .findings
            .fixable(&digest.to_string())?
            .ok_or_else(|| NotAssessed(format!("{name}@{digest}")))?;
        let empty = PlatformOutcome {
            platform: None,
            digest: digest.to_string(),
            plan: Plan {
                architecture: arch.clone(),
                ..Plan::default()
            },
            patched_digest: None,
        };
        if fixable.is_empty() {
            return Ok(ImageResult(empty, None, None));
        }
        // Before the layers are read: a platform the archives do not carry
        // is skipped with the reason, and the index's other platforms are
        // still patched.
        let index = match self.index(&arch).await {
            Ok(i) => i,
            Err(e) => match e.downcast_ref::<NoArchitecture>() {
                Some(why) => {
                    let mut out = empty;
                    out.plan.skipped = Some(why.to_string());
                    return Ok(ImageResult(out, None, None));
                }
                None => return Err(e),
            },
        };
        let s = source.clone();
        let root = tokio::task::spawn_blocking(move || -> Result<RootFs> {
            let mut root = RootFs::default();
            for (d, mt) in &layers {
                let r = s.open_blob(d)?;
                let r: Box<dyn Read> = if mt.ends_with("zstd") {
                    Box::new(zstd::stream::read::Decoder::new(r)?)
                } else if mt.ends_with(".tar") || mt.ends_with("v1.tar") {
                    Box::new(r)
                } else {
                    Box::new(flate2::read::GzDecoder::new(r))
                };
                root.apply_layer(r).with_context(|| format!("layer {d}"))?;
            }
            Ok(root)
        })
        .await??;
        let stanzas = root.installed()?;
        let installed = installed_map(&stanzas, &arch);
        let opts = self.options();
        let mut blocked = Blocked::new();
        let (plan, prepared) = loop {
            let plan = plan::choose(&installed, &index, &fixable, &opts, &blocked, &arch);
            let mut prepared = Vec::new();
            let mut newly = false;
            for u in &plan.upgrades {
                let c = u.candidate.as_ref().expect("from the index");
                let deb = self
                    .inner
                    .fetcher
                    .verified(&c.url, &c.sha256, c.size)
                    .await
                    .with_context(|| format!("downloading {} {}", u.package, u.to))?;
                let d2 = deb.clone();
                let control =
                    tokio::task::spawn_blocking(move || crate::deb::read_control(&d2)).await??;
                if control.stanza.package() != u.package || control.stanza.version() != u.to {
                    bail!(
                        "{}: the archive's .deb is {} {}, not {} {}",
                        c.url,
                        control.stanza.package(),
                        control.stanza.version(),
                        u.package,
                        u.to
                    );
                }
                if !opts.allow_maintainer_scripts {
                    let old = old_scripts(&root, &u.package, &arch);
                    if let Some(why) = plan::script_refusal(&control, &old) {
                        blocked.insert(format!("{}={}", u.package, u.to), why);
                        newly = true;
                    }
                }
                prepared.push(Prepared {
                    upgrade: u.clone(),
                    deb,
                    control,
                });
            }
            if !newly {
                break (plan, prepared);
            }
        };
        let mut out = PlatformOutcome { plan, ..empty };
        if dry_run || prepared.is_empty() {
            return Ok(ImageResult(out, None, None));
        }

        let tmp = self.inner.tmp.clone();
        let archc = arch.clone();
        let mtime = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let built = tokio::task::spawn_blocking(move || {
            layer::build(&root, &prepared, &archc, &tmp, mtime)
        })
        .await??;
        let layer_digest = Digest::parse(&built.digest).map_err(|e| anyhow!("{e}"))?;
        reg.put_blob(name, &layer_digest, built.file.path()).await?;

        let summary = out.plan.summary();
        let mut config = config;
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        match config["rootfs"]["diff_ids"].as_array_mut() {
            Some(ids) => ids.push(json!(built.diff_id)),
            None => bail!("the image config has no rootfs.diff_ids"),
        }
        let hist = json!({
            "created": now,
            "created_by": format!("drydock patch: {summary}"),
            "comment": format!("clears {}", out.plan.cleared().join(", ")),
        });
        match config["history"].as_array_mut() {
            Some(h) => h.push(hist),
            None => config["history"] = json!([hist]),
        }
        config["created"] = json!(now);
        let config_bytes = serde_json::to_vec(&config)?;
        let cfg_digest = sha256_digest(&config_bytes);
        let cfg_file = tempfile::NamedTempFile::new_in(&self.inner.tmp)?;
        std::fs::write(cfg_file.path(), &config_bytes)?;
        reg.put_blob(name, &cfg_digest, cfg_file.path()).await?;

        let mut m = manifest.clone();
        m["config"]["digest"] = json!(cfg_digest.to_string());
        m["config"]["size"] = json!(config_bytes.len());
        let docker = stored.media_type == oci::DOCKER_MANIFEST;
        let layer_type = if docker {
            oci::DOCKER_LAYER_GZIP
        } else {
            oci::OCI_LAYER_GZIP
        };
        match m["layers"].as_array_mut() {
            Some(l) => {
                l.push(json!({"mediaType": layer_type, "digest": built.digest, "size": built.size}))
            }
            None => bail!("the manifest has no layers"),
        }
        if !docker {
            let ann = m
                .as_object_mut()
                .expect("a manifest is an object")
                .entry("annotations")
                .or_insert_with(|| json!({}));
            ann[ANNOTATION_ORIGINAL] = json!(original.to_string());
            ann[ANNOTATION_SOURCE_TAG] = json!(tag);
            ann[ANNOTATION_UPGRADES] = json!(summary);
            ann[ANNOTATION_CLEARED] = json!(out.plan.cleared().join(","));
        }
        let body = serde_json::to_vec(&m)?;
        let d = sha256_digest(&body);
        let size = body.len() as u64;
        // Children of an index are pushed by digest; a single image is
        // tagged by the caller.
        if original != digest {
            reg.put_manifest(
                name,
                &Reference::Digest(d.clone()),
                Bytes::from(body),
                &stored.media_type,
            )
            .await?;
        }
        out.patched_digest = Some(d.to_string());
        Ok(ImageResult(
            out,
            Some((d.to_string(), size, stored.media_type.clone())),
            Some(m),
        ))
    }

    async fn index(&self, arch: &str) -> Result<Index> {
        let cfg = &self.inner.cfg.debian;
        if cfg.archives.is_empty() {
            bail!("no Debian archive is configured (patch.debian.archives)");
        }
        let Some(keyring) = &self.inner.keyring else {
            bail!("no keyring is configured (patch.debian.keyring): archives cannot be verified");
        };
        self.inner.fetcher.index(&cfg.archives, keyring, arch).await
    }

    /// Continuous mode: evaluate the configured repositories now, patching
    /// each tag whose plan clears something the newest patch of that tag
    /// did not. Returns the outcomes of the patches made.
    pub async fn evaluate(&self) -> Result<Vec<Outcome>> {
        Ok(self.evaluate_pass().await?.0)
    }

    /// [`Patcher::evaluate`], and whether an image was not assessed yet
    /// (the watcher tries again a little later).
    async fn evaluate_pass(&self) -> Result<(Vec<Outcome>, bool)> {
        let reg = &self.inner.registry;
        let mut made = Vec::new();
        let mut waiting = false;
        for repo in reg.repositories()? {
            let rules: Vec<&RepoRule> = self
                .inner
                .cfg
                .repositories
                .iter()
                .filter(|r| glob(&r.name, repo.as_str()))
                .collect();
            if rules.is_empty() {
                continue;
            }
            let tags = reg.tags(&repo)?;
            let patch_tags: BTreeSet<String> = tags
                .iter()
                .map(|(t, _)| t.as_str().to_string())
                .filter(|t| is_patch_tag(t, &tags))
                .collect();
            for (t, _) in &tags {
                let tag = t.as_str();
                if patch_tags.contains(tag)
                    || !rules.iter().any(|r| r.tags.iter().any(|g| glob(g, tag)))
                {
                    continue;
                }
                let prev = self.previously_cleared(&repo, tag, &tags).await;
                // Plan first: nothing is built when the plan clears
                // nothing new (the common case on every re-evaluation).
                let r = match self.run_inner(repo.as_str(), tag, true, None).await {
                    Ok(plan) if cleared_of(&plan.platforms).is_subset(&prev) => {
                        tracing::debug!(repository = %repo, tag, "clears nothing new");
                        continue;
                    }
                    Ok(_) => self.run_inner(repo.as_str(), tag, false, Some(&prev)).await,
                    Err(e) => Err(e),
                };
                match r {
                    Ok(o) if o.patched_digest.is_some() => {
                        tracing::info!(repository = %repo, tag, patched = ?o.patched_tag, "patched image pushed");
                        made.push(o);
                    }
                    Ok(_) => {}
                    Err(e) if e.downcast_ref::<NotAssessed>().is_some() => waiting = true,
                    Err(e) => {
                        tracing::warn!(repository = %repo, tag, error = %format!("{e:#}"), "patch failed")
                    }
                }
            }
        }
        Ok((made, waiting))
    }

    /// What the newest existing patch of `repo:tag` cleared (from its
    /// annotations), when it was made from the image the tag names now; a
    /// tag moved to another image starts afresh. Continuous mode patches
    /// only when a plan clears something outside this set.
    async fn previously_cleared(
        &self,
        repo: &Name,
        tag: &str,
        tags: &[(Tag, Digest)],
    ) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Some(current) = tags.iter().find(|(t, _)| t.as_str() == tag).map(|(_, d)| d) else {
            return out;
        };
        let Some(newest) = newest_patch(tag, tags, self.inner.cfg.tag_style) else {
            return out;
        };
        let reg = &self.inner.registry;
        let Ok(Some(m)) = reg.manifest(repo, &Reference::Digest(newest.clone())).await else {
            return out;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&m.0) else {
            return out;
        };
        let original = v["annotations"][ANNOTATION_ORIGINAL].as_str();
        let mut docs = vec![v.clone()];
        if let Some(children) = v["manifests"].as_array() {
            for c in children {
                if let Some(cd) = c["digest"].as_str().and_then(|s| Digest::parse(s).ok())
                    && let Ok(Some(cm)) = reg.manifest(repo, &Reference::Digest(cd)).await
                    && let Ok(cv) = serde_json::from_slice::<Value>(&cm.0)
                {
                    docs.push(cv);
                }
            }
        }
        if original.is_some_and(|o| o != current.to_string()) {
            return out;
        }
        for d in docs {
            if let Some(c) = d["annotations"][ANNOTATION_CLEARED].as_str() {
                out.extend(c.split(',').filter(|s| !s.is_empty()).map(str::to_string));
            } else if let Some(cd) = d["config"]["digest"]
                .as_str()
                .and_then(|s| Digest::parse(s).ok())
            {
                // A Docker schema 2 manifest carries no annotations: the
                // config's last history entry says what the patch cleared.
                let s = reg.clone();
                let clears = tokio::task::spawn_blocking(move || -> Option<String> {
                    let mut buf = Vec::new();
                    s.open_blob(&cd)
                        .ok()?
                        .take(16 << 20)
                        .read_to_end(&mut buf)
                        .ok()?;
                    let v: Value = serde_json::from_slice(&buf).ok()?;
                    let last = v["history"].as_array()?.last()?.clone();
                    last["created_by"]
                        .as_str()?
                        .starts_with("drydock patch:")
                        .then_some(())?;
                    Some(
                        last["comment"]
                            .as_str()?
                            .strip_prefix("clears ")?
                            .to_string(),
                    )
                })
                .await
                .ok()
                .flatten();
                if let Some(c) = clears {
                    out.extend(c.split(", ").filter(|s| !s.is_empty()).map(str::to_string));
                }
            }
        }
        out
    }

    /// Run continuous mode until the process ends. `database` carries the
    /// version of the vulnerability database the assessor serves (the
    /// binary hands in its database handle's subscription): each new
    /// version wakes the watcher at once; it waits until the watched
    /// images were re-matched with it, then [`Patcher::evaluate`]s. Every
    /// `interval_seconds` it fetches the archives' signed `InRelease`; a
    /// change in the `Packages` hashes they list re-evaluates as well. The
    /// first pass (the database present at start) evaluates once. When the
    /// sender is gone, only the archive poll remains.
    pub async fn watch(self, mut database: tokio::sync::watch::Receiver<Option<String>>) {
        let every = Duration::from_secs(self.inner.cfg.interval_seconds.max(1));
        let mut seen_db: Option<String> = None;
        let mut seen_archive: Option<String> = None;
        let mut archive_checked: Option<std::time::Instant> = None;
        let mut retry: Option<(std::time::Instant, u32)> = None;
        let mut subscribed = true;
        loop {
            let mut due = false;
            let now = database.borrow_and_update().clone();
            if now.is_some() && now != seen_db {
                // Give the assessor time to re-match the watched images.
                for _ in 0..240 {
                    if self.rematched(now.as_deref()).await {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                tracing::info!(db_version = ?now, "continuous patching: new vulnerability database");
                seen_db = now;
                due = true;
            }
            if archive_checked.is_none_or(|t| t.elapsed() >= every) {
                archive_checked = Some(std::time::Instant::now());
                match self.archive_fingerprint().await {
                    Ok(fp) => {
                        if seen_archive.as_ref().is_some_and(|s| *s != fp) {
                            tracing::info!("continuous patching: the archive changed");
                            due = true;
                        }
                        seen_archive = Some(fp);
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "continuous patching: cannot read the archive")
                    }
                }
            }
            if retry.is_some_and(|(at, _)| at <= std::time::Instant::now()) {
                due = true;
            }
            if due && seen_db.is_some() {
                match self.evaluate_pass().await {
                    Ok((made, waiting)) => {
                        tracing::info!(patches = made.len(), "continuous patching evaluated");
                        // Images not assessed yet (pushed just before the
                        // database changed): look again, for a while.
                        let tries = retry.map_or(0, |(_, n)| n) + 1;
                        retry = (waiting && tries <= RETRIES)
                            .then(|| (std::time::Instant::now() + RETRY_AFTER, tries));
                    }
                    Err(e) => {
                        retry = None;
                        tracing::warn!(error = %format!("{e:#}"), "continuous patching failed")
                    }
                }
            }
            // Sleep until the next archive poll or retry, unless a new
            // database comes first.
            let mut wake = archive_checked.map_or(std::time::Instant::now(), |t| t + every);
            if let Some((at, _)) = retry {
                wake = wake.min(at);
            }
            let sleep = tokio::time::sleep_until(wake.into());
            if subscribed {
                tokio::select! {
                    r = database.changed() => subscribed = r.is_ok(),
                    _ = sleep => {}
                }
            } else {
                sleep.await;
            }
        }
    }

    /// The archives' signed `Packages` hashes (see [`Fetcher::fingerprint`]).
    pub async fn archive_fingerprint(&self) -> Result<String> {
        let cfg = &self.inner.cfg.debian;
        let Some(keyring) = &self.inner.keyring else {
            bail!("no keyring is configured (patch.debian.keyring)");
        };
        self.inner.fetcher.fingerprint(&cfg.archives, keyring).await
    }

    async fn rematched(&self, version: Option<&str>) -> bool {
        let reg = &self.inner.registry;
        let Ok(repos) = reg.repositories() else {
            return false;
        };
        for repo in repos {
            if !self
                .inner
                .cfg
                .repositories
                .iter()
                .any(|r| glob(&r.name, repo.as_str()))
            {
                continue;
            }
            let Ok(tags) = reg.tags(&repo) else { continue };
            for (_, d) in tags {
                let Ok(Some(m)) = reg.manifest(&repo, &Reference::Digest(d.clone())).await else {
                    continue;
                };
                let mut digests = vec![d.to_string()];
                if let Ok(v) = serde_json::from_slice::<Value>(&m.0)
                    && let Some(c) = v["manifests"].as_array()
                {
                    digests = c
                        .iter()
                        .filter_map(|c| c["digest"].as_str().map(str::to_string))
                        .collect();
                }
                for dg in digests {
                    let with = self.inner.findings.assessed_with(&dg);
                    if with.is_some() && with.as_deref() != version {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// An image without an assessment yet: no findings to plan from.
#[derive(Debug, thiserror::Error)]
#[error("{0} has not been assessed yet; try again when its assessment is done")]
struct NotAssessed(String);

/// Continuous mode's second looks at images not assessed yet.
const RETRIES: u32 = 60;
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The newest patch of `tag`: `tag-patched` with floating tags, else the
/// highest `tag-N` (either style's tag when the other is absent, as after
/// a change of `tag_style`).
fn newest_patch<'a>(tag: &str, tags: &'a [(Tag, Digest)], style: TagStyle) -> Option<&'a Digest> {
    let floating = format!("{tag}-patched");
    let prefix = format!("{tag}-");
    let f = tags
        .iter()
        .find(|(t, _)| t.as_str() == floating)
        .map(|(_, d)| d);
    let n = tags
        .iter()
        .filter_map(|(t, d)| Some((t.as_str().strip_prefix(&prefix)?.parse::<u64>().ok()?, d)))
        .max_by_key(|(n, _)| *n)
        .map(|(_, d)| d);
    match style {
        TagStyle::Floating => f.or(n),
        TagStyle::Incremental => n.or(f),
    }
}

struct Stored {
    bytes: Bytes,
    media_type: String,
    digest: Digest,
}

impl From<(Bytes, String, Digest)> for Stored {
    fn from((bytes, media_type, digest): (Bytes, String, Digest)) -> Stored {
        Stored {
            bytes,
            media_type,
            digest,
        }
    }
}

struct ImageResult(
    PlatformOutcome,
    Option<(String, u64, String)>,
    Option<Value>,
);

fn cleared_of(p: &[PlatformOutcome]) -> BTreeSet<String> {
    p.iter().flat_map(|o| o.plan.cleared()).collect()
}

fn annotate(index: &mut Value, original: &Digest, tag: &str, platforms: &[PlatformOutcome]) {
    let summary: Vec<String> = platforms
        .iter()
        .filter(|p| !p.plan.upgrades.is_empty())
        .map(|p| {
            format!(
                "{}: {}",
                p.platform.as_deref().unwrap_or("?"),
                p.plan.summary()
            )
        })
        .collect();
    let cleared: Vec<String> = cleared_of(platforms).into_iter().collect();
    if let Some(o) = index.as_object_mut() {
        let ann = o.entry("annotations").or_insert_with(|| json!({}));
        ann[ANNOTATION_ORIGINAL] = json!(original.to_string());
        ann[ANNOTATION_SOURCE_TAG] = json!(tag);
        ann[ANNOTATION_UPGRADES] = json!(summary.join("; "));
        ann[ANNOTATION_CLEARED] = json!(cleared.join(","));
    }
}

/// Installed packages by name: those dpkg lists as `install ok installed`,
/// the image's own architecture winning for `Multi-Arch: same` ones.
fn installed_map(stanzas: &[Stanza], arch: &str) -> Installed {
    let mut out: Installed = HashMap::new();
    for s in stanzas {
        if s.get("Status") != Some("install ok installed") {
            continue;
        }
        let a = s.get("Architecture").unwrap_or_default();
        if a != arch && a != "all" && out.contains_key(s.package()) {
            continue;
        }
        out.insert(s.package().to_string(), s.clone());
    }
    out
}

/// The installed version's `prerm`/`postrm` (dpkg runs them on upgrade).
fn old_scripts(root: &RootFs, pkg: &str, arch: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for name in [format!("{pkg}:{arch}"), pkg.to_string()] {
        for s in ["prerm", "postrm"] {
            if let Some(b) = root.info.get(&format!("{INFO}{name}.{s}")) {
                out.insert(s.to_string(), b.clone());
            }
        }
    }
    out
}

/// The Debian architecture name of an OCI platform.
pub fn debian_arch(arch: &str, variant: Option<&str>) -> String {
    match (arch, variant) {
        ("amd64", _) => "amd64",
        ("arm64", _) => "arm64",
        ("arm", Some("v5")) => "armel",
        ("arm", _) => "armhf",
        ("386", _) => "i386",
        ("ppc64le", _) => "ppc64el",
        ("mips64le", _) => "mips64el",
        (other, _) => other,
    }
    .to_string()
}

fn sha256_digest(b: &[u8]) -> Digest {
    use sha2::Digest as _;
    Digest::parse(&format!("sha256:{}", hex::encode(sha2::Sha256::digest(b))))
        .expect("a sha256 digest")
}

/// A repository pattern as everywhere else ([`oci::RepoPattern`]: `*`
/// within one path segment, `**` across); tags have no `/`, so there `*`
/// is any run of characters. A pattern that does not parse matches nothing.
pub fn glob(pattern: &str, s: &str) -> bool {
    oci::RepoPattern::new(pattern).is_ok_and(|p| p.is_match(s))
}

/// Whether a tag is a patch tag of another tag in the repository
/// (`v1-3` or `v1-patched` beside `v1`): continuous mode patches the
/// originals, never its own results.
fn is_patch_tag(t: &str, tags: &[(Tag, Digest)]) -> bool {
    let Some((base, suffix)) = t.rsplit_once('-') else {
        return false;
    };
    (suffix == "patched" || suffix.parse::<u64>().is_ok())
        && tags.iter().any(|(o, _)| o.as_str() == base)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
