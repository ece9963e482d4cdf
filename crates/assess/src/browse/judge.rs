//! Judging the dashboard's images one by one, again only for those whose
//! inputs moved, and keeping the judging on disk so that a restart serves
//! it at once.
//!
//! Each top-level image (a platform image alone, or an index with its
//! platforms) is judged into a [`Piece`] under a fingerprint of what its
//! verdict reads: its rows (status, error, push time, platforms) and the
//! stamp of each platform's result (database version, time, findings
//! hash), read without the findings. What every image reads (the active
//! exemptions, the VEX documents, the policy) is one global fingerprint:
//! when it moves, every image is judged again. The registry-wide lists
//! are then assembled from the pieces, which is cheap next to reading and
//! judging every result (seconds at 10,000 images).
//!
//! The pieces are written to `<data>/dashboard-judged.json.zst` after
//! each judging; the first request after a start loads them and is served
//! from them while the images that changed meanwhile are judged again.

use super::{Affected, ImageEntry, PlatformEntry, VulnAgg, day, state, state_of, t};
use crate::clock::{from_ms, to_ms};
use crate::policy::{Health, Summary, evaluate_with_vex, fixable};
use crate::service::Service;
use crate::store::{ImageRow, status};
use crate::vuln::Severity;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped whenever what a piece holds or how an image is judged changes:
/// a file written by another build is then judged again, not trusted.
const FORMAT: u32 = 1;

/// Where the judging is kept between starts.
pub(super) fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("dashboard-judged.json.zst")
}

/// What one finding says about its vulnerability (shared by every image
/// with the same advisory record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct VulnMeta {
    pub id: String,
    pub aliases: Vec<String>,
    pub related: Vec<String>,
    pub severity: Severity,
    pub summary: String,
    pub cvss: Option<vulndb::Cvss>,
    pub severity_source: String,
    pub data_source: String,
    pub references: Vec<String>,
}

/// An open finding of a judged image.
pub(super) struct Found {
    meta: Arc<VulnMeta>,
    package: Arc<str>,
    installed: Arc<str>,
    fixed: Option<Arc<str>>,
}

/// One top-level image, judged.
pub(super) struct Piece {
    /// `stale` is set at assembly (it depends on the current database).
    entry: ImageEntry,
    found: Vec<Found>,
}

/// Every piece by digest with its fingerprint, and the global fingerprint
/// they were judged under.
#[derive(Default)]
pub(super) struct Pieces {
    global: u64,
    by_digest: HashMap<String, (u64, Arc<Piece>)>,
    /// Top-level digests in the order of the store's rows.
    order: Vec<String>,
    /// Some image was judged or left since the judging before (only then
    /// is it written to disk again).
    pub changed: bool,
}

/// The store's part of a snapshot: every image judged (results read,
/// exemptions and VEX applied), without the registry's tags.
pub(super) struct Judged {
    /// Tags empty, `untagged` true, `repos` the row's repository, sizes
    /// `None`.
    pub images: Vec<ImageEntry>,
    pub vulns: Arc<Vec<VulnAgg>>,
    pub activity: Vec<super::DayCount>,
    /// Counted findings of every platform image (`None`: no verdict).
    pub totals: Arc<HashMap<String, Option<usize>>>,
    /// The first exemption expiry after judging: verdicts change then.
    pub valid_until: Option<time::OffsetDateTime>,
    /// When the oldest verdict shown was judged (the assessor's clock).
    pub as_of: time::OffsetDateTime,
    pub pieces: Arc<Pieces>,
}

/// Shares equal strings and advisory records between pieces: at 10,000
/// images the same few thousand packages and advisories repeat a million
/// times.
#[derive(Default)]
struct Interner {
    strings: HashSet<Arc<str>>,
    metas: HashMap<String, Vec<Arc<VulnMeta>>>,
}

impl Interner {
    fn str(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }

    fn meta(&mut self, m: VulnMeta) -> Arc<VulnMeta> {
        let list = self.metas.entry(m.id.clone()).or_default();
        if let Some(a) = list.iter().find(|a| ***a == m) {
            return a.clone();
        }
        let a = Arc::new(m);
        list.push(a.clone());
        a
    }
}

/// What every image's verdict reads. Pull times are not in it (they are
/// laid over the judging), nor the database version (`stale` is set at
/// assembly; a re-match moves the results' stamps).
fn global_fingerprint(svc: &Service, now: time::OffsetDateTime) -> Result<(u64, bool)> {
    let mut s = std::collections::hash_map::DefaultHasher::new();
    FORMAT.hash(&mut s);
    // Exemptions in force now: one expiring changes this too.
    let mut active: Vec<String> = svc
        .store()
        .exemptions()?
        .iter()
        .filter(|e| e.expires_at.is_none_or(|x| x > now))
        .map(|e| serde_json::to_string(e).unwrap_or_else(|_| e.id.clone()))
        .collect();
    active.sort();
    active.hash(&mut s);
    let vex = svc.store().vex_documents()?;
    for v in &vex {
        (&v.key, &v.doc_id, &v.subject, v.data.to_string()).hash(&mut s);
    }
    serde_json::to_string(&svc.options().policy)
        .unwrap_or_default()
        .hash(&mut s);
    Ok((s.finish(), !vex.is_empty()))
}

type Stamps = HashMap<String, (Option<String>, i64, String)>;

/// What one top-level image's verdict reads besides the global inputs.
fn fingerprint(
    svc: &Service,
    row: &ImageRow,
    platforms: &[&ImageRow],
    stamps: &Stamps,
    with_repos: bool,
) -> Result<u64> {
    let mut s = std::collections::hash_map::DefaultHasher::new();
    (
        &row.digest,
        &row.repo,
        &row.kind,
        &row.status,
        &row.error,
        row.last_pushed_at,
        row.queued_at,
    )
        .hash(&mut s);
    for p in platforms {
        (
            &p.digest,
            &p.platform,
            &p.status,
            &p.error,
            stamps.get(&p.digest),
        )
            .hash(&mut s);
        if with_repos {
            // VEX statements match on the repositories a digest is in.
            svc.store().repos_of(&p.digest)?.hash(&mut s);
        }
    }
    Ok(s.finish())
}

impl Service {
    /// Judge every image whose fingerprint moved since `prev` (every one
    /// when the global inputs moved), reuse the others' pieces, and
    /// assemble the lists. `judged` counts the images judged.
    pub(super) fn judge_changed(
        &self,
        prev: Option<&Pieces>,
        judged: &AtomicU64,
    ) -> Result<Judged> {
        let rows = self.store().all_images()?;
        let ours = self.store().attached_sboms()?;
        let exemptions = self.store().exemptions()?;
        let now = self.clock().now();
        let (global, with_repos) = global_fingerprint(self, now)?;
        let stamps = self.store().result_stamps()?;
        let prev = prev.filter(|p| p.global == global);

        let mut children: HashMap<&str, Vec<&ImageRow>> = HashMap::new();
        for r in &rows {
            if let Some(p) = &r.parent {
                children.entry(p.as_str()).or_default().push(r);
            }
        }
        let mut interner = Interner::default();
        let mut pieces = Pieces {
            global,
            changed: prev.is_none(),
            ..Pieces::default()
        };
        for row in rows
            .iter()
            .filter(|r| r.parent.is_none() && !ours.contains(&r.digest))
        {
            if row.status == status::UNSUPPORTED || row.kind == "artifact" {
                continue; // artifacts are found through their subjects
            }
            let platform_rows: Vec<&ImageRow> = if row.kind == "index" {
                children
                    .get(row.digest.as_str())
                    .cloned()
                    .unwrap_or_default()
            } else {
                vec![row]
            };
            let fp = fingerprint(self, row, &platform_rows, &stamps, with_repos)?;
            let piece = match prev.and_then(|p| p.by_digest.get(&row.digest)) {
                Some((f, piece)) if *f == fp => piece.clone(),
                _ => {
                    judged.fetch_add(1, Ordering::Relaxed);
                    pieces.changed = true;
                    Arc::new(self.judge_one(
                        row,
                        &platform_rows,
                        &exemptions,
                        now,
                        &mut interner,
                    )?)
                }
            };
            pieces.order.push(row.digest.clone());
            pieces.by_digest.insert(row.digest.clone(), (fp, piece));
        }
        pieces.changed |= prev.is_some_and(|p| p.order != pieces.order);
        Ok(self.assemble(Arc::new(pieces), &rows, &exemptions, now, now))
    }

    /// One top-level image: its entry and its open findings.
    fn judge_one(
        &self,
        row: &ImageRow,
        platform_rows: &[&ImageRow],
        exemptions: &[crate::policy::Exemption],
        now: time::OffsetDateTime,
        interner: &mut Interner,
    ) -> Result<Piece> {
        let rule = self.options().policy.rule_for(&row.repo).clone();
        let mut found = Vec::new();
        let mut platforms = Vec::new();
        let mut healths = Vec::new();
        let mut summary: Option<Summary> = None;
        let mut assessed: Option<i64> = None;
        let mut used_db: Option<String> = None;
        let mut waiting = false;
        let mut any_running = false;
        for p in platform_rows {
            let res = self.store().result(&p.digest)?;
            let mut p_health = None;
            let mut p_summary = None;
            if p.status != status::DONE {
                any_running = true;
            }
            if let Some(res) = res.as_ref() {
                if res.db_version.is_none() {
                    waiting = true;
                } else {
                    let incomplete = self.store().incomplete(&p.digest)?;
                    let vex = self.vex_notes(&p.digest, &res.findings)?;
                    let eval = evaluate_with_vex(
                        &res.findings,
                        &row.repo,
                        &rule,
                        exemptions,
                        &vex,
                        &incomplete,
                        now,
                    );
                    for j in eval.judged.iter().filter(|j| {
                        j.exempted_by.is_none()
                            && !j.cleared_by_vex()
                            && j.finding.informational.is_none()
                    }) {
                        let f = j.finding;
                        let meta = interner.meta(VulnMeta {
                            id: f.id.to_string(),
                            aliases: f.aliases.to_vec(),
                            related: f.related.to_vec(),
                            severity: f.severity,
                            summary: f.summary.to_string(),
                            cvss: f.cvss.as_deref().cloned(),
                            severity_source: f.severity_source.to_string(),
                            data_source: f.data_source.to_string(),
                            references: f.references.to_vec(),
                        });
                        let fixed = fixable(f)
                            .then(|| f.fixed_version.as_deref().map(|v| interner.str(v)))
                            .flatten();
                        found.push(Found {
                            meta,
                            package: interner.str(&f.package),
                            installed: interner.str(&f.installed_version),
                            fixed,
                        });
                    }
                    summary.get_or_insert_default().add(&eval.summary);
                    p_summary = Some(eval.summary);
                    healths.push(eval.health.clone());
                    p_health = Some(eval.health);
                    used_db = res.db_version.clone();
                }
                assessed = Some(assessed.map_or(res.assessed_at, |a| a.max(res.assessed_at)));
            }
            let matched = res.as_ref().map(|r| r.db_version.is_some());
            platforms.push(PlatformEntry {
                digest: p.digest.clone(),
                platform: p.platform.clone(),
                state: state_of(p, p_health.as_ref(), matched).into(),
                error: p.error.clone(),
                summary: p_summary,
                size: None,
            });
        }
        // An index's verdict: every platform judged, rolled up; one
        // platform waiting for the database makes the whole wait.
        let health = if waiting || healths.is_empty() || healths.len() < platform_rows.len() {
            None
        } else if row.kind == "index" {
            let refs: Vec<&Health> = healths.iter().collect();
            Some(Health::roll_up(&rule, &refs))
        } else {
            healths.pop()
        };
        let failed = platforms.iter().find(|p| p.state == state::FAILED);
        let mut st = if let Some(h) = &health {
            state_of(row, Some(h), Some(true))
        } else if row.kind == "index" && failed.is_some() {
            state::FAILED
        } else if waiting {
            state::WAITING_FOR_DATABASE
        } else if row.kind == "index" && any_running {
            if platforms.iter().any(|p| p.state == state::ASSESSING) {
                state::ASSESSING
            } else {
                state::NOT_ASSESSED
            }
        } else {
            state_of(row, None, None)
        };
        if row.status == status::FAILED {
            st = state::FAILED;
        }
        let error = row
            .error
            .clone()
            .or_else(|| failed.and_then(|p| p.error.clone()));
        let reason = match st {
            state::WAITING_FOR_DATABASE => "assessed before any vulnerability database was installed: nothing was matched yet; it will be as soon as one is".to_string(),
            state::NOT_ASSESSED => "queued for assessment".to_string(),
            state::ASSESSING => "being assessed".to_string(),
            state::FAILED => format!(
                "the assessment failed: {}",
                error.as_deref().unwrap_or("unknown error")
            ),
            _ => health.as_ref().map(|h| h.reason.clone()).unwrap_or_default(),
        };
        Ok(Piece {
            entry: ImageEntry {
                digest: row.digest.clone(),
                repository: row.repo.clone(),
                kind: row.kind.clone(),
                untagged: true,
                tags: Vec::new(),
                platforms,
                state: st.into(),
                reason,
                error,
                summary: if health.is_some() { summary } else { None },
                size: None,
                pushed_at: row.last_pushed_at.map(t),
                pulled_at: None,
                assessed_at: assessed.map(t),
                stale: false,
                db_version: used_db,
                reassessing: health.is_some() && any_running,
                repos: vec![row.repo.clone()],
                pushed_ms: row.last_pushed_at.unwrap_or(row.queued_at),
            },
            found,
        })
    }

    /// The lists from the pieces, in row order: images (with `stale`
    /// against the current database), vulnerabilities with their affected
    /// images, scan activity (from `rows`), totals.
    fn assemble(
        &self,
        pieces: Arc<Pieces>,
        rows: &[ImageRow],
        exemptions: &[crate::policy::Exemption],
        now: time::OffsetDateTime,
        as_of: time::OffsetDateTime,
    ) -> Judged {
        let db_version = self.database().map(|d| d.version());
        let mut images = Vec::with_capacity(pieces.order.len());
        let mut vulns: HashMap<&str, (VulnAgg, *const VulnMeta)> = HashMap::new();
        for (idx, digest) in pieces.order.iter().enumerate() {
            let piece = &pieces.by_digest[digest].1;
            let mut e = piece.entry.clone();
            e.stale = e.db_version.is_some() && db_version.is_some() && e.db_version != db_version;
            images.push(e);
            for f in &piece.found {
                let m = &f.meta;
                let (v, last) = vulns.entry(m.id.as_str()).or_insert_with(|| {
                    (
                        VulnAgg {
                            id: m.id.clone(),
                            aliases: m.aliases.clone(),
                            related: m.related.clone(),
                            severity: m.severity,
                            summary: m.summary.clone(),
                            cvss: m.cvss.clone(),
                            severity_source: m.severity_source.clone(),
                            data_source: m.data_source.clone(),
                            references: m.references.clone(),
                            affected: Vec::new(),
                            images: Vec::new(),
                            packages: Vec::new(),
                        },
                        Arc::as_ptr(m),
                    )
                });
                // The first record gives the text; later ones raise the
                // severity, fill a missing CVSS and add references. Most
                // repeat the last one merged (interned): nothing to do.
                if *last != Arc::as_ptr(m) {
                    *last = Arc::as_ptr(m);
                    if m.severity > v.severity {
                        v.severity = m.severity;
                    }
                    if v.cvss.is_none() {
                        v.cvss = m.cvss.clone();
                    }
                    for r in &m.references {
                        if !v.references.contains(r) {
                            v.references.push(r.clone());
                        }
                    }
                }
                v.affected.push(Affected {
                    image: idx,
                    package: f.package.clone(),
                    installed: f.installed.clone(),
                    fixed: f.fixed.clone(),
                });
            }
        }
        let mut per_day: BTreeMap<String, usize> = BTreeMap::new();
        for r in rows {
            if let Some(f) = r.finished_at
                && r.status == status::DONE
            {
                *per_day.entry(day(f)).or_default() += 1;
            }
        }
        let today = now.unix_timestamp() * 1000;
        let activity = (0..14)
            .rev()
            .map(|d| {
                let k = day(today - d * 86_400_000);
                super::DayCount {
                    count: per_day.get(&k).copied().unwrap_or(0),
                    day: k,
                }
            })
            .collect();
        let totals = images
            .iter()
            .flat_map(|e| &e.platforms)
            .map(|p| (p.digest.clone(), p.summary.as_ref().map(|s| s.total)))
            .collect();
        let valid_until = exemptions
            .iter()
            .filter_map(|e| e.expires_at)
            .filter(|&e| e > now)
            .min();
        Judged {
            totals: Arc::new(totals),
            images,
            vulns: Arc::new(
                vulns
                    .into_values()
                    .map(|(mut v, _)| {
                        v.index();
                        v
                    })
                    .collect(),
            ),
            activity,
            valid_until,
            as_of,
            pieces,
        }
    }

    /// The judging kept by the last run, assembled, or `None` when there
    /// is none or it cannot be read (then everything is judged).
    pub(super) fn load_judged(&self) -> Option<Judged> {
        let path = file(&self.options().data_dir);
        let bytes = std::fs::read(&path).ok()?;
        let stored: Stored = match zstd::stream::decode_all(&bytes[..])
            .map_err(anyhow::Error::from)
            .and_then(|raw| Ok(serde_json::from_slice(&raw)?))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the dashboard's kept judging; judging every image");
                return None;
            }
        };
        if stored.format != FORMAT {
            return None;
        }
        let rows = self.store().all_images().ok()?;
        let exemptions = self.store().exemptions().ok()?;
        let metas: Vec<Arc<VulnMeta>> = stored.metas.into_iter().map(Arc::new).collect();
        let strings: Vec<Arc<str>> = stored.strings.into_iter().map(Arc::from).collect();
        let s = |i: u32| strings.get(i as usize).cloned();
        let mut pieces = Pieces {
            global: stored.global,
            ..Pieces::default()
        };
        for p in stored.pieces {
            let mut found = Vec::with_capacity(p.found.len());
            for [m, pkg, inst, fixed] in p.found {
                found.push(Found {
                    meta: metas.get(m as usize)?.clone(),
                    package: s(pkg)?,
                    installed: s(inst)?,
                    fixed: if fixed == u32::MAX {
                        None
                    } else {
                        Some(s(fixed)?)
                    },
                });
            }
            let mut entry = p.entry;
            entry.repos = vec![entry.repository.clone()];
            entry.pushed_ms = p.pushed_ms;
            // Kept sizes spare reading every manifest again after a start
            // (seconds at 10,000 images with a cold page cache); pieces
            // themselves carry none (the snapshot lays sizes over them).
            let mut sizes = super::sizes().lock().unwrap_or_else(|p| p.into_inner());
            for pl in &mut entry.platforms {
                if let Some(size) = pl.size.take() {
                    sizes.entry(pl.digest.clone()).or_insert(Some(size));
                }
            }
            drop(sizes);
            pieces.order.push(entry.digest.clone());
            pieces.by_digest.insert(
                entry.digest.clone(),
                (p.fp, Arc::new(Piece { entry, found })),
            );
        }
        let now = self.clock().now();
        Some(self.assemble(
            Arc::new(pieces),
            &rows,
            &exemptions,
            now,
            from_ms(stored.as_of_ms),
        ))
    }
}

/// The file's form: advisory records and strings once, findings as
/// indexes into them.
#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    global: u64,
    as_of_ms: i64,
    metas: Vec<VulnMeta>,
    strings: Vec<String>,
    pieces: Vec<StoredPiece>,
}

#[derive(Serialize, Deserialize)]
struct StoredPiece {
    fp: u64,
    pushed_ms: i64,
    entry: ImageEntry,
    /// (advisory, package, installed, fixed or `u32::MAX`).
    found: Vec<[u32; 4]>,
}

/// Write `judged`'s pieces for the next start: beside the file, then
/// renamed over it, so a crash leaves the previous one whole.
pub(super) fn save(svc: &Service, judged: &Judged) -> Result<()> {
    let pieces = &judged.pieces;
    let mut metas: Vec<VulnMeta> = Vec::new();
    let mut meta_ix: HashMap<*const VulnMeta, u32> = HashMap::new();
    let mut strings: Vec<String> = Vec::new();
    let mut string_ix: HashMap<Arc<str>, u32> = HashMap::new();
    let mut str_ix = |a: &Arc<str>| -> u32 {
        *string_ix.entry(a.clone()).or_insert_with(|| {
            strings.push(a.to_string());
            (strings.len() - 1) as u32
        })
    };
    let mut out = Vec::with_capacity(pieces.order.len());
    for digest in &pieces.order {
        let (fp, piece) = &pieces.by_digest[digest];
        let found = piece
            .found
            .iter()
            .map(|f| {
                let m = *meta_ix.entry(Arc::as_ptr(&f.meta)).or_insert_with(|| {
                    metas.push((*f.meta).clone());
                    (metas.len() - 1) as u32
                });
                [
                    m,
                    str_ix(&f.package),
                    str_ix(&f.installed),
                    f.fixed.as_ref().map_or(u32::MAX, &mut str_ix),
                ]
            })
            .collect();
        let mut entry = piece.entry.clone();
        // Sizes are kept with the entry (digests are immutable, so are
        // their sizes); read here if the snapshot has not yet.
        for pl in &mut entry.platforms {
            pl.size = super::cached_size(svc, &entry.repository, &pl.digest);
        }
        out.push(StoredPiece {
            fp: *fp,
            pushed_ms: piece.entry.pushed_ms,
            entry,
            found,
        });
    }
    let stored = Stored {
        format: FORMAT,
        global: pieces.global,
        as_of_ms: to_ms(judged.as_of),
        metas,
        strings,
        pieces: out,
    };
    let path = file(&svc.options().data_dir);
    let tmp = path.with_extension("tmp");
    let f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut z = zstd::stream::Encoder::new(std::io::BufWriter::new(f), 3)?;
    serde_json::to_writer(&mut z, &stored)?;
    let mut w = z.finish()?;
    w.flush()?;
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", tmp.display(), e.error()))?
        .sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
