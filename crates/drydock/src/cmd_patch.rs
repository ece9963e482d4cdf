//! `drydock patch REPO:TAG [--dry-run]`: ask a running server to patch a
//! Debian image (`POST /api/v1/patches`), follow the job and print the
//! plan: upgrades, the findings each clears, refusals and why. Also the
//! adapters that hand the patch service the registry and the assessor.

use crate::config::Config;
use crate::out::outln;
use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures::future::BoxFuture;
use oci::{Digest, Name, Reference, Tag};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct PatchArgs {
    /// The image to patch: REPO:TAG.
    pub image: String,
    /// Plan only: print what would be upgraded and refused; push nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub server: crate::cmd_import::ServerArgs,
    /// Print the job's result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: PatchArgs, config: Config) -> Result<ExitCode> {
    let (repo, tag) = args
        .image
        .rsplit_once(':')
        .filter(|(r, _)| !r.is_empty())
        .ok_or_else(|| anyhow!("give the image as REPO:TAG"))?;
    let server = args.server.url(&config);
    let server = server.trim_end_matches('/');
    let creds = args.server.credentials()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let auth = |r: reqwest::RequestBuilder| match &creds {
        Some(c) => r.basic_auth(&c.username, Some(&c.password)),
        None => r,
    };
    let resp = auth(http.post(format!("{server}/api/v1/patches")))
        .json(&serde_json::json!({"repository": repo, "tag": tag, "dry_run": args.dry_run}))
        .send()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "{status}: {}",
            body["message"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or("request refused")
        );
    }
    let id = body["id"].as_str().unwrap_or_default().to_string();
    let job = loop {
        let j: serde_json::Value = auth(http.get(format!("{server}/api/v1/patches/{id}")))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if j["state"] != "running" {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&job)?)?;
    } else {
        print_job(&job)?;
    }
    Ok(if job["state"] == "done" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_job(job: &serde_json::Value) -> Result<()> {
    if job["state"] == "failed" {
        outln!("patch failed: {}", job["error"].as_str().unwrap_or("?"))?;
        return Ok(());
    }
    let r = &job["result"];
    for p in r["platforms"].as_array().into_iter().flatten() {
        let plan = &p["plan"];
        outln!(
            "{} ({})",
            p["digest"].as_str().unwrap_or(""),
            p["platform"]
                .as_str()
                .unwrap_or(plan["architecture"].as_str().unwrap_or(""))
        )?;
        let ups = plan["upgrades"].as_array().cloned().unwrap_or_default();
        if let Some(why) = plan["skipped"].as_str() {
            outln!("  skipped: {why}")?;
        } else if ups.is_empty() {
            outln!("  no upgrades")?;
        }
        for u in ups {
            let clears: Vec<&str> = u["clears"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str())
                .collect();
            outln!(
                "  upgrade {} {} -> {}  ({}{})",
                u["package"].as_str().unwrap_or(""),
                u["from"].as_str().unwrap_or("(new)"),
                u["to"].as_str().unwrap_or(""),
                u["reason"].as_str().unwrap_or(""),
                if clears.is_empty() {
                    String::new()
                } else {
                    format!(": {}", clears.join(", "))
                }
            )?;
        }
        for f in plan["refusals"].as_array().into_iter().flatten() {
            outln!(
                "  refused {} {}: {}",
                f["package"].as_str().unwrap_or(""),
                f["installed"].as_str().unwrap_or(""),
                f["reason"].as_str().unwrap_or("")
            )?;
        }
    }
    match (r["patched_tag"].as_str(), r["patched_digest"].as_str()) {
        (Some(t), Some(d)) => outln!(
            "pushed {}:{t} ({d})",
            r["repository"].as_str().unwrap_or("")
        )?,
        _ => outln!("{}", r["note"].as_str().unwrap_or("nothing pushed"))?,
    }
    Ok(())
}

/// The registry's in-process API as the patch service's image store.
pub struct RegistryStore(pub registry::Registry);

impl patch::ImageStore for RegistryStore {
    fn manifest<'a>(
        &'a self,
        repo: &'a Name,
        reference: &'a Reference,
    ) -> BoxFuture<'a, Result<Option<(Bytes, String, Digest)>>> {
        Box::pin(async move {
            Ok(self
                .0
                .get_manifest(repo, reference)
                .await?
                .map(|m| (m.bytes, m.media_type, m.digest)))
        })
    }

    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>> {
        self.0.blob_source().open_blob(digest)
    }

    fn put_blob<'a>(
        &'a self,
        repo: &'a Name,
        digest: &'a Digest,
        path: &'a Path,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let f = tokio::fs::File::open(path).await?;
            self.0.put_blob(repo, digest, f).await?;
            Ok(())
        })
    }

    fn put_manifest<'a>(
        &'a self,
        repo: &'a Name,
        reference: &'a Reference,
        body: Bytes,
        media_type: &'a str,
    ) -> BoxFuture<'a, Result<Digest>> {
        Box::pin(async move {
            Ok(self
                .0
                .put_manifest(
                    repo,
                    reference,
                    body,
                    Some(media_type),
                    registry::Origin::Import,
                )
                .await?)
        })
    }

    fn tags(&self, repo: &Name) -> Result<Vec<(Tag, Digest)>> {
        Ok(self.0.tags(repo)?)
    }

    fn repositories(&self) -> Result<Vec<Name>> {
        Ok(self.0.repositories()?)
    }
}

/// The assessor's stored results as the patch service's findings.
pub struct AssessFindings(pub assess::Service);

impl patch::FindingsSource for AssessFindings {
    fn fixable(&self, digest: &str) -> Result<Option<Vec<patch::Fixable>>> {
        let filter = assess::views::FindingFilter::default();
        let Some(view) = self.0.image_view(digest, &filter, false)? else {
            return Ok(None);
        };
        // Not matched against any database yet (an image cataloged
        // while none was there): no findings to plan from, not "none".
        if view.assessed_at.is_none() || view.db_version.is_none() {
            return Ok(None);
        }
        // Every fixable finding, page by page: the view holds only the
        // first page (the worst 100), and a plan made from it left the
        // rest of an image's fixable findings unpatched.
        let filter = assess::views::FindingFilter {
            fixable: Some(true),
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .0
                .image_findings(
                    digest,
                    &filter,
                    None,
                    assess::views::MAX_PAGE,
                    cursor.as_deref(),
                )
                .map_err(|e| anyhow!("the findings of {digest}: {e}"))?;
            let Some(page) = page else {
                return Ok(None);
            };
            out.extend(
                page.findings
                    .iter()
                    .filter(|f| {
                        f.fixable
                            && !f.exempt
                            && f.not_affected_per_vex.is_none()
                            && f.finding.ecosystem == inventory::Ecosystem::Deb
                    })
                    .filter_map(|f| {
                        Some(patch::Fixable {
                            id: f.finding.id.to_string(),
                            package: f.finding.package.to_string(),
                            installed_version: f.finding.installed_version.to_string(),
                            fixed_version: f.finding.fixed_version.as_deref()?.to_string(),
                            severity: f.finding.severity.as_str().to_string(),
                        })
                    }),
            );
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(Some(out)),
            }
        }
    }

    fn assessed_with(&self, digest: &str) -> Option<String> {
        let filter = assess::views::FindingFilter::default();
        self.0
            .image_view(digest, &filter, false)
            .ok()
            .flatten()
            .and_then(|v| v.db_version)
    }
}

/// Patch jobs kept in the assessor's database (`patch_jobs`).
pub struct AssessJobs(pub assess::Service);

impl patch::JobStore for AssessJobs {
    fn save(&self, job: &patch::JobView) -> Result<()> {
        self.0.store().save_patch_job(
            &job.id,
            &job.repository,
            &job.state,
            &serde_json::to_string(job)?,
        )
    }

    fn load(&self, id: &str) -> Result<Option<patch::JobView>> {
        match self.0.store().patch_job(id)? {
            Some(s) => Ok(Some(serde_json::from_str(&s)?)),
            None => Ok(None),
        }
    }

    fn fail_running(&self, error: &str, at: &str) -> Result<usize> {
        let running = self.0.store().patch_jobs_in_state("running")?;
        for s in &running {
            let mut job: patch::JobView = serde_json::from_str(s)?;
            job.state = "failed".into();
            job.error = Some(error.to_string());
            job.finished_at = Some(at.to_string());
            self.save(&job)?;
        }
        Ok(running.len())
    }
}

/// Webhook event announcing a patched image.
pub const IMAGE_PATCHED: &str = "image.patched";

/// Patched images announced through the assessor's webhook deliveries
/// (signed, retried and logged like its own events).
pub struct PatchWebhooks(pub assess::Service);

impl PatchWebhooks {
    fn queue(&self, o: &patch::Outcome) -> Result<()> {
        let store = self.0.store();
        let webhooks = store.webhooks()?;
        let now = self.0.clock().now();
        let upgrades: Vec<serde_json::Value> = o
            .platforms
            .iter()
            .flat_map(|p| {
                p.plan.upgrades.iter().map(move |u| {
                    serde_json::json!({
                        "platform": p.platform,
                        "package": u.package,
                        "from": u.from,
                        "to": u.to,
                        "clears": u.clears,
                    })
                })
            })
            .collect();
        let cleared: std::collections::BTreeSet<String> =
            o.platforms.iter().flat_map(|p| p.plan.cleared()).collect();
        for w in webhooks
            .iter()
            .filter(|w| assess::notify::webhook_applies(w, &o.repository))
        {
            let id = uuid::Uuid::new_v4().to_string();
            let body = serde_json::json!({
                "id": id,
                "event": IMAGE_PATCHED,
                "at": assess::clock::rfc3339(now),
                "repository": o.repository,
                "digest": o.patched_digest,
                "tag": o.patched_tag,
                "source_tag": o.tag,
                "original_digest": o.original_digest,
                "patched_digest": o.patched_digest,
                "upgrades": upgrades,
                "cleared": cleared,
            });
            let at = assess::clock::to_ms(now);
            store.add_delivery(&assess::store::Delivery {
                id,
                webhook_id: w.id.clone(),
                event: IMAGE_PATCHED.into(),
                digest: o.patched_digest.clone(),
                repository: Some(o.repository.clone()),
                state: "pending".into(),
                attempts: 0,
                last_status: None,
                last_error: None,
                created_at: at,
                next_attempt_at: at,
                delivered_at: None,
                payload: serde_json::to_string(&body)?,
            })?;
        }
        Ok(())
    }
}

impl patch::PatchEvents for PatchWebhooks {
    fn patched(&self, outcome: &patch::Outcome) {
        if let Err(e) = self.queue(outcome) {
            tracing::warn!(repository = outcome.repository, error = %format!("{e:#}"), "cannot queue the image.patched webhooks");
        }
    }
}

/// The patch service of `drydock serve`, and continuous mode when enabled,
/// woken by each new build of the database the assessor serves (`vulndb`,
/// the handle the assessor was started with).
pub fn start(
    config: &Config,
    registry: &registry::Registry,
    assess: &assess::Service,
    vulndb: &vulndb::Handle,
    outbound: egress::EgressPolicy,
) -> Result<patch::Patcher> {
    let patcher = patch::Patcher::new(
        Arc::new(RegistryStore(registry.clone())),
        &config.data,
        Arc::new(AssessFindings(assess.clone())),
        outbound,
        config.patch.clone(),
    )?
    .with_job_store(Arc::new(AssessJobs(assess.clone())))?
    .with_events(Arc::new(PatchWebhooks(assess.clone())))?;
    if config.patch.enabled {
        tokio::spawn(patcher.clone().watch(vulndb.subscribe()));
    }
    Ok(patcher)
}
