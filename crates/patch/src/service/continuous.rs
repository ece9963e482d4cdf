//! Continuous mode: evaluate the configured repositories when the
//! database or the archive changes, patching only what is newly fixable.

use super::{NotAssessed, Outcome, Patcher, RepoRule, TagStyle, cleared_of};
use crate::{ANNOTATION_CLEARED, ANNOTATION_ORIGINAL};
use anyhow::{Result, bail};
use oci::{Digest, Name, Reference, Tag};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;

impl Patcher {
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
