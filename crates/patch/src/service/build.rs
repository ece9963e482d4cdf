//! One patch: read the image (or each platform image of an index), plan
//! its upgrades, fetch and verify the packages, build the new layer, push
//! the patched image under its patch tag.

use super::{NotAssessed, Outcome, Patcher, PlatformOutcome, TagStyle, cleared_of};
use crate::archive::{Index, NoArchitecture};
use crate::control::Stanza;
use crate::layer::{self, Prepared};
use crate::plan::{self, Blocked, Installed, Plan};
use crate::rootfs::{INFO, RootFs};
use crate::{ANNOTATION_CLEARED, ANNOTATION_ORIGINAL, ANNOTATION_SOURCE_TAG, ANNOTATION_UPGRADES};
use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use oci::{Digest, Name, Reference, Tag};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

impl Patcher {
    pub(super) async fn patch(
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
