//! Registry-wide read models for browsing: images as a user sees them (an
//! index is one image with its platforms inside; untagged digests apart),
//! repositories and their tags, vulnerabilities with the number of images
//! they affect, and the overview's aggregates.
//!
//! Everything is computed from one [`Snapshot`] of the store, rebuilt only
//! when the store, the database or the minute changes (expiring exemptions
//! are judged at read time), so paging through 10,000 images does not judge
//! them again on every request. Lists are sorted and filtered here and cut
//! with opaque keyset cursors, so a page never repeats or skips an entry
//! when the list grows between requests.

use crate::clock::{from_ms, rfc3339};
use crate::policy::{Health, Summary};
use crate::service::Service;
use crate::store::{ImageRow, status};
use crate::vuln::Severity;
use anyhow::Result;
use judge::Judged;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use utoipa::ToSchema;

mod judge;

/// What the dashboard says about an image, one word each. Only `healthy`
/// is good news, and it needs a match against a real database.
pub mod state {
    /// Queued, never assessed.
    pub const NOT_ASSESSED: &str = "not_assessed";
    /// Assessed while no vulnerability database was installed: nothing was
    /// matched, so nothing may be claimed.
    pub const WAITING_FOR_DATABASE: &str = "waiting_for_database";
    /// Being read or matched, with no earlier verdict.
    pub const ASSESSING: &str = "assessing";
    pub const FAILED: &str = "failed";
    /// An artifact (signature, SBOM, …), not a container image.
    pub const UNSUPPORTED: &str = "unsupported";
    pub const HEALTHY: &str = "healthy";
    pub const UNHEALTHY: &str = "unhealthy";
    /// Parts of the image could not be read.
    pub const INCOMPLETE: &str = "incomplete";
}

/// The state of one image row given its verdict (if any) and whether its
/// result was matched against a database.
pub fn state_of(row: &ImageRow, health: Option<&Health>, matched: Option<bool>) -> &'static str {
    if row.status == status::UNSUPPORTED || row.kind == "artifact" {
        return state::UNSUPPORTED;
    }
    if row.status == status::FAILED {
        return state::FAILED;
    }
    if let Some(h) = health {
        return match h.status.as_str() {
            "healthy" => state::HEALTHY,
            "unhealthy" => state::UNHEALTHY,
            _ => state::INCOMPLETE,
        };
    }
    if matched == Some(false) {
        return state::WAITING_FOR_DATABASE;
    }
    match row.status.as_str() {
        status::CATALOGING | status::MATCHING => state::ASSESSING,
        _ => state::NOT_ASSESSED,
    }
}

/// One platform image inside an index.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlatformEntry {
    pub digest: String,
    pub platform: Option<String>,
    pub state: String,
    pub error: Option<String>,
    pub summary: Option<Summary>,
    pub size: Option<u64>,
}

/// An image as a user sees it: a platform image on its own, or an index
/// with its platforms inside (counted once, its findings once per platform).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageEntry {
    pub digest: String,
    pub repository: String,
    /// `image` or `index`.
    pub kind: String,
    /// `repository:tag` names pointing here (every repository).
    pub tags: Vec<String>,
    /// No tag points here: a superseded or never-tagged digest.
    pub untagged: bool,
    pub platforms: Vec<PlatformEntry>,
    /// See [`state`].
    pub state: String,
    /// One sentence saying why (the health reason, the error, the wait).
    pub reason: String,
    pub error: Option<String>,
    pub summary: Option<Summary>,
    /// Bytes of config and layers (of an index: all platforms).
    pub size: Option<u64>,
    pub pushed_at: Option<String>,
    pub pulled_at: Option<String>,
    pub assessed_at: Option<String>,
    pub db_version: Option<String>,
    /// Made with an older database than the current one.
    pub stale: bool,
    /// A re-assessment is queued or running (the state is the last verdict).
    pub reassessing: bool,
    #[serde(skip)]
    repos: Vec<String>,
    #[serde(skip)]
    pushed_ms: i64,
}

/// A vulnerability across the registry, once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VulnEntry {
    pub id: String,
    pub aliases: Vec<String>,
    pub severity: String,
    pub summary: String,
    /// Some affected package has a fixed version.
    pub fixable: bool,
    /// Affected tagged images the caller may see.
    pub images: usize,
    /// Affected untagged digests the caller may see.
    pub untagged: usize,
    pub packages: Vec<String>,
}

/// Where one vulnerability was found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AffectedTag {
    pub repository: String,
    /// Tags in that repository (empty: only untagged digests).
    pub tags: Vec<String>,
    pub digests: Vec<String>,
    pub packages: Vec<String>,
}

/// Everything about one vulnerability.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VulnDetail {
    #[serde(flatten)]
    pub entry: VulnEntry,
    pub related: Vec<String>,
    pub cvss_vector: Option<String>,
    pub cvss_score: Option<f64>,
    pub cvss_source: Option<String>,
    pub severity_source: String,
    pub data_source: String,
    pub references: Vec<String>,
    /// Fixed versions per package.
    pub fix: BTreeMap<String, Vec<String>>,
    /// One page of the affected repositories (by name), each once over
    /// all pages, with its tags.
    pub affected: Vec<AffectedTag>,
    /// Affected repositories over all pages.
    pub affected_total: usize,
    /// The cursor of the next page of `affected`.
    pub affected_next: Option<String>,
    /// When the verdicts shown were judged (RFC 3339).
    pub as_of: String,
}

/// A repository and what it holds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RepositoryEntry {
    pub name: String,
    pub tags: usize,
    /// Tagged images (an index counts once).
    pub images: usize,
    pub untagged: usize,
    pub unhealthy: usize,
    pub last_pushed_at: Option<String>,
}

/// One tag of a repository.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TagEntry {
    pub tag: String,
    pub digest: String,
    pub kind: String,
    pub platforms: Vec<String>,
    pub size: Option<u64>,
    pub pushed_at: Option<String>,
    pub pulled_at: Option<String>,
    pub state: String,
    pub reason: String,
    pub summary: Option<Summary>,
}

/// A page of a list: `next` is the cursor of the following page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Entries matching the filters, over all pages.
    pub total: usize,
    pub next: Option<String>,
    /// When the verdicts shown were judged (RFC 3339): a change is judged
    /// again in the background while the previous judging is served.
    pub as_of: String,
}

/// Counts and charts of the overview page.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Overview {
    /// Tagged images by state (an index counts once).
    pub images: BTreeMap<String, usize>,
    pub images_total: usize,
    pub untagged: usize,
    pub repositories: usize,
    /// Open findings by severity over tagged images.
    pub findings: BTreeMap<String, usize>,
    pub fixable: usize,
    pub not_fixable: usize,
    /// One point a day: unhealthy images and open findings.
    pub trend: Vec<TrendPoint>,
    /// Worst first (unhealthy, then critical, high, …).
    pub most_vulnerable: Vec<ImageEntry>,
    /// By number of affected images.
    pub most_widespread: Vec<VulnEntry>,
    /// Assessments finished per day, the last 14 days.
    pub scan_activity: Vec<DayCount>,
    pub queue: BTreeMap<String, i64>,
    /// When the verdicts counted were judged (RFC 3339).
    pub as_of: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TrendPoint {
    pub day: String,
    pub unhealthy: usize,
    pub findings: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DayCount {
    pub day: String,
    pub count: usize,
}

/// The filters of the images list.
#[derive(Debug, Clone, Default)]
pub struct ImageQuery {
    /// Substring of the repository, a tag or the digest.
    pub q: Option<String>,
    pub repository: Option<String>,
    pub states: Vec<String>,
    /// `Some(true)`: only untagged digests; `Some(false)` (the default
    /// of the API): only tagged images.
    pub untagged: Option<bool>,
    /// `name`, `pushed`, `findings`, `severity`, `size`.
    pub sort: String,
    pub descending: bool,
}

/// The filters of the vulnerabilities list.
#[derive(Debug, Clone, Default)]
pub struct VulnQuery {
    /// Substring of the id, an alias, the summary or a package.
    pub q: Option<String>,
    /// At or above this severity.
    pub min_severity: Option<Severity>,
    /// Exactly these severities (empty: any).
    pub severities: Vec<Severity>,
    pub fixable: Option<bool>,
    /// `severity` (then images), `images`, `id`.
    pub sort: String,
    pub descending: bool,
}

struct Affected {
    image: usize,
    package: Arc<str>,
    installed: Arc<str>,
    fixed: Option<Arc<str>>,
}

struct VulnAgg {
    id: String,
    aliases: Vec<String>,
    related: Vec<String>,
    severity: Severity,
    summary: String,
    cvss: Option<vulndb::Cvss>,
    severity_source: String,
    data_source: String,
    references: Vec<String>,
    affected: Vec<Affected>,
    /// The distinct images of `affected`, ascending: lists count these
    /// (a million affected rows at 10,000 images; sets built from them on
    /// every request cost a second).
    images: Vec<usize>,
    /// Per package: its images, and those of its rows with a fix
    /// (ascending, distinct).
    packages: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl VulnAgg {
    /// Fill `images` and `packages` from `affected`.
    fn index(&mut self) {
        let mut per: BTreeMap<&str, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
        for a in &self.affected {
            let e = per.entry(&*a.package).or_default();
            e.0.push(a.image);
            if a.fixed.is_some() {
                e.1.push(a.image);
            }
        }
        let distinct = |mut v: Vec<usize>| {
            v.sort_unstable();
            v.dedup();
            v
        };
        self.packages = per
            .into_iter()
            .map(|(p, (imgs, fixed))| (p.to_string(), distinct(imgs), distinct(fixed)))
            .collect();
        let mut all: Vec<usize> = self.affected.iter().map(|a| a.image).collect();
        all.sort_unstable();
        all.dedup();
        self.images = all;
    }
}

/// One consistent view of every image and vulnerability.
pub struct Snapshot {
    images: Vec<ImageEntry>,
    vulns: Arc<Vec<VulnAgg>>,
    /// repository → (tag, digest)
    tags: BTreeMap<String, Vec<(String, String)>>,
    by_digest: HashMap<String, usize>,
    activity: Vec<DayCount>,
    as_of: String,
}

/// The store's verdict generation (pulls and other writes no verdict
/// reads do not move it), database version, day (activity and trend are
/// per day).
type JudgedKey = (u64, Option<String>, i64);

/// How long a request waits for a judging under way before it is served
/// the previous one (with its `as_of`): at 10,000 images a judging takes
/// seconds, and readers must not wait for it after every push.
const WAIT_FOR_JUDGING: std::time::Duration = std::time::Duration::from_millis(300);

#[derive(Default)]
struct Cached {
    judged: Option<(JudgedKey, Arc<Judged>)>,
    snapshot: Option<(std::time::Instant, Arc<Judged>, Arc<Snapshot>)>,
    /// One judging at a time: ten requests arriving while the verdicts
    /// changed must not start ten.
    judging: bool,
}

#[derive(Default)]
struct Cell {
    cached: Mutex<Cached>,
    /// Signalled when a judging ends (stored or failed).
    judged: Condvar,
    /// Images judged since the service started (each judging judges only
    /// those whose inputs moved).
    images_judged: AtomicU64,
}

impl Cell {
    fn lock(&self) -> MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Ends a judging however it ends (a failure or a panic too), so that
/// `judging` cannot stay set and leave every reader on an old view.
struct Judging<'a>(&'a Cell);

impl Drop for Judging<'_> {
    fn drop(&mut self) {
        self.0.lock().judging = false;
        self.0.judged.notify_all();
    }
}

/// Per data directory: the cache and its judging, of the service that
/// opened it last (a service opened again on the directory starts as
/// after a restart: from the judging kept on disk).
fn cache(svc: &Service) -> Arc<Cell> {
    type Cells = HashMap<PathBuf, (Weak<crate::service::Inner>, Arc<Cell>)>;
    static CACHE: OnceLock<Mutex<Cells>> = OnceLock::new();
    let mut cells = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    cells.retain(|_, (w, _)| w.strong_count() > 0);
    let e = cells
        .entry(svc.options().data_dir.clone())
        .or_insert_with(|| (Arc::downgrade(&svc.inner), Arc::default()));
    if !Weak::ptr_eq(&e.0, &Arc::downgrade(&svc.inner)) {
        *e = (Arc::downgrade(&svc.inner), Arc::default());
    }
    e.1.clone()
}

fn t(ms: i64) -> String {
    rfc3339(from_ms(ms))
}

fn day(ms: i64) -> String {
    t(ms)[..10].to_string()
}

/// Bytes of config and layers of an image manifest.
fn image_size(svc: &Service, repo: &str, digest: &str) -> Option<u64> {
    let name = oci::Name::parse(repo).ok()?;
    let d = oci::Digest::parse(digest).ok()?;
    let (bytes, mt) = svc.source().manifest(&name, &d).ok()??;
    match oci::Manifest::parse(&bytes, Some(&mt)).ok()? {
        oci::Manifest::Image { manifest, .. } => {
            Some(manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>())
        }
        oci::Manifest::Index { .. } => None,
    }
}

fn sizes() -> &'static Mutex<HashMap<String, Option<u64>>> {
    // Digests are immutable, so their sizes are too.
    static SIZES: OnceLock<Mutex<HashMap<String, Option<u64>>>> = OnceLock::new();
    SIZES.get_or_init(Default::default)
}

fn cached_size(svc: &Service, repo: &str, digest: &str) -> Option<u64> {
    if let Some(s) = sizes().lock().unwrap().get(digest) {
        return *s;
    }
    let s = image_size(svc, repo, digest);
    sizes().lock().unwrap().insert(digest.to_string(), s);
    s
}

fn worse(a: &ImageEntry) -> (bool, usize, usize, usize, usize, usize) {
    let s = a.summary.clone().unwrap_or_default();
    (
        a.state == state::UNHEALTHY,
        s.critical,
        s.high,
        s.medium,
        s.low,
        s.total,
    )
}

impl Service {
    /// The current snapshot: images judged again when a verdict may have
    /// changed (see [`Service::judged`]); tags and pull times read again
    /// after two seconds (tags live in the registry, which has no change
    /// counter here; pulls are too frequent to judge again for).
    pub fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let cell = cache(self);
        let (mut cached, judged) = self.judged(&cell)?;
        if let Some((at, j, s)) = &cached.snapshot
            && Arc::ptr_eq(j, &judged)
            && at.elapsed() < std::time::Duration::from_secs(2)
        {
            return Ok(s.clone());
        }
        let snap = Arc::new(self.with_tags(&judged));
        let fresh = cached
            .snapshot
            .as_ref()
            .is_none_or(|(_, j, _)| !Arc::ptr_eq(j, &judged));
        cached.snapshot = Some((std::time::Instant::now(), judged, snap.clone()));
        if fresh {
            // A quiet write (`meta`): it does not send the next request
            // through a judging again.
            self.record_trend(&snap);
        }
        Ok(snap)
    }

    /// Every image judged, again only when the store's verdict generation
    /// or the database changed, the day turned or an exemption expired,
    /// and then only the images whose inputs moved (see [`judge`]). The
    /// first judging after a start is the one kept on disk, judged again
    /// in the background; without one it is waited for. Later ones run on
    /// a thread of their own, and a request waits at most
    /// [`WAIT_FOR_JUDGING`] for one before it is served the previous
    /// judging (its `as_of` says when). Keeping a judging reads the
    /// manifests whose sizes are not known yet, so call it where blocking
    /// is allowed (as the snapshot, which reads them anyway).
    fn judged<'a>(&self, cell: &'a Arc<Cell>) -> Result<(MutexGuard<'a, Cached>, Arc<Judged>)> {
        let deadline = std::time::Instant::now() + WAIT_FOR_JUDGING;
        let mut cached = cell.lock();
        if cached.judged.is_none() && !cached.judging {
            // After a start: the kept judging, under a key no store has,
            // so the images changed meanwhile are judged again below.
            cached.judging = true;
            drop(cached);
            let end = Judging(cell);
            let loaded = self.load_judged();
            if let Some(j) = loaded {
                let mut c = cell.lock();
                if c.judged.is_none() {
                    c.judged = Some(((u64::MAX, None, i64::MIN), Arc::new(j)));
                }
            }
            // Only now may the requests waiting meanwhile go on: had they
            // been woken before the kept judging was in place, one would
            // have found none and judged every image while it waited
            // (9 s at 10,000 images).
            drop(end);
            cached = cell.lock();
        }
        loop {
            let now = self.clock().now();
            // Read before judging starts: a write during it moves the key
            // again, and that is judged next.
            let key: JudgedKey = (
                self.store().verdict_generation(),
                self.database().map(|d| d.version()),
                now.unix_timestamp().div_euclid(86_400),
            );
            if let Some((k, j)) = &cached.judged
                && *k == key
                && j.valid_until.is_none_or(|u| now < u)
            {
                let j = j.clone();
                return Ok((cached, j));
            }
            if !cached.judging {
                cached.judging = true;
                if cached.judged.is_none() {
                    // Nothing to serve meanwhile: judge here, the others
                    // wait for it.
                    drop(cached);
                    let r = self.judge_into(cell, key);
                    cached = cell.lock();
                    r?;
                    continue;
                }
                let (svc, cell) = (self.clone(), cell.clone());
                let spawned = std::thread::Builder::new()
                    .name("dashboard-judge".into())
                    .spawn(move || {
                        if let Err(e) = svc.judge_into(&cell, key) {
                            tracing::warn!(error = %e, "cannot judge the dashboard's images");
                        }
                    });
                if let Err(e) = spawned {
                    cached.judging = false;
                    tracing::warn!(error = %e, "cannot start judging the dashboard's images");
                }
            }
            match &cached.judged {
                None => cached = cell.judged.wait(cached).unwrap_or_else(|p| p.into_inner()),
                Some((_, j)) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        let j = j.clone();
                        return Ok((cached, j));
                    }
                    cached = cell
                        .judged
                        .wait_timeout(cached, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// One judging (of the images whose inputs moved since the last),
    /// stored under `key` (the caller set `judging`), then kept on disk.
    fn judge_into(&self, cell: &Cell, key: JudgedKey) -> Result<()> {
        // Ends the judging after the write below: the next one starts from
        // what was kept.
        let _end = Judging(cell);
        let prev = cell.lock().judged.as_ref().map(|(_, j)| j.pieces.clone());
        let j = Arc::new(self.judge_changed(prev.as_deref(), &cell.images_judged)?);
        cell.lock().judged = Some((key, j.clone()));
        // Readers are served already; the write is not in their way.
        cell.judged.notify_all();
        if j.pieces.changed
            && let Err(e) = judge::save(self, &j)
        {
            tracing::warn!(error = %e, "cannot keep the dashboard's judging");
        }
        Ok(())
    }

    /// Images judged for the dashboard since this service opened: a
    /// judging judges only those whose inputs moved, and the first after a
    /// start only those that changed since the judging kept on disk.
    pub fn dashboard_images_judged(&self) -> u64 {
        cache(self).images_judged.load(Ordering::Relaxed)
    }

    /// Counted findings of every platform image (alone or in an index)
    /// the assessor judged; `None` for those without a verdict. From the
    /// same judging as the dashboard's lists, so an image page asking for
    /// thousands of images' counts does not judge each again.
    pub fn findings_totals(&self) -> Result<Arc<HashMap<String, Option<usize>>>> {
        let cell = cache(self);
        Ok(self.judged(&cell)?.1.totals.clone())
    }

    /// The registry's tags (and the images' sizes) laid over the judged
    /// images.
    fn with_tags(&self, judged: &Judged) -> Snapshot {
        // Tags straight from the registry: digest → ["repo:tag"].
        let mut tags: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut tagged: HashMap<String, Vec<String>> = HashMap::new();
        for name in self.source().repositories().unwrap_or_default() {
            let list = self.source().tags(&name).unwrap_or_default();
            let repo = name.as_str().to_string();
            let mut out = Vec::new();
            for (tag, d) in list {
                tagged
                    .entry(d.to_string())
                    .or_default()
                    .push(format!("{repo}:{}", tag.as_str()));
                out.push((tag.as_str().to_string(), d.to_string()));
            }
            tags.insert(repo, out);
        }
        let pulled = self.store().pulled_times().unwrap_or_default();
        let mut images = judged.images.clone();
        for e in &mut images {
            e.pulled_at = pulled.get(&e.digest).copied().map(t);
            for p in &mut e.platforms {
                p.size = cached_size(self, &e.repository, &p.digest);
            }
            e.size = e
                .platforms
                .iter()
                .filter_map(|p| p.size)
                .reduce(|a, b| a + b);
            let tag_names = tagged.remove(&e.digest).unwrap_or_default();
            e.repos.extend(
                tag_names
                    .iter()
                    .filter_map(|t| t.rsplit_once(':').map(|(r, _)| r.to_string())),
            );
            e.repos.sort();
            e.repos.dedup();
            e.untagged = tag_names.is_empty();
            e.tags = tag_names;
        }
        let by_digest = images
            .iter()
            .enumerate()
            .map(|(i, e)| (e.digest.clone(), i))
            .collect();
        Snapshot {
            images,
            vulns: judged.vulns.clone(),
            tags,
            by_digest,
            activity: judged.activity.clone(),
            as_of: rfc3339(judged.as_of),
        }
    }

    /// Keep one trend point a day in the store (only when it changed, so
    /// the write is not repeated on every judging).
    fn record_trend(&self, snap: &Snapshot) {
        let all = |_: &str| true;
        let o = snap.counts(&all);
        let point = TrendPoint {
            day: day(self.clock().now().unix_timestamp() * 1000),
            unhealthy: o.images.get(state::UNHEALTHY).copied().unwrap_or(0),
            findings: o.findings.values().sum(),
        };
        let mut trend: Vec<TrendPoint> = self
            .store()
            .meta("dashboard.trend")
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        if trend.last() == Some(&point) {
            return;
        }
        if trend.last().is_some_and(|p| p.day == point.day) {
            trend.pop();
        }
        trend.push(point);
        let keep = trend.len().saturating_sub(90);
        trend.drain(..keep);
        if let Ok(s) = serde_json::to_string(&trend)
            && let Err(e) = self.store().set_meta("dashboard.trend", &s)
        {
            tracing::warn!(error = %e, "cannot store the dashboard's trend");
        }
    }

    /// The overview's aggregates over what `visible` repositories hold.
    pub fn overview(&self, visible: &dyn Fn(&str) -> bool) -> Result<Overview> {
        let snap = self.snapshot()?;
        let mut o = snap.counts(visible);
        o.trend = self
            .store()
            .meta("dashboard.trend")?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let (_, counts) = self.store().queue()?;
        o.queue = counts.into_iter().collect();
        o.scan_activity = snap.activity.clone();
        Ok(o)
    }
}

fn sev_rank(s: &str) -> i64 {
    match s {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

/// A sort key of a list entry.
#[derive(Debug, Clone, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(untagged)]
enum K {
    N(i64),
    S(String),
}

fn encode_cursor(k: &K, id: &str) -> String {
    hex::encode(serde_json::to_vec(&(k, id)).unwrap_or_default())
}

fn decode_cursor(c: &str) -> Result<(K, String), String> {
    hex::decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| "cursor is not one this server gave".to_string())
}

/// Sort by (key, id) and cut one page after `cursor`.
fn paginate<T>(
    mut items: Vec<(K, String, T)>,
    descending: bool,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<T>, String> {
    items.sort_by(|a, b| {
        let o =
            a.0.partial_cmp(&b.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.1.cmp(&b.1));
        if descending { o.reverse() } else { o }
    });
    let total = items.len();
    let start = match cursor {
        None => 0,
        Some(c) => {
            let (k, id) = decode_cursor(c)?;
            items.partition_point(|x| {
                let o =
                    x.0.partial_cmp(&k)
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then_with(|| x.1.cmp(&id));
                if descending { o.is_ge() } else { o.is_le() }
            })
        }
    };
    let limit = limit.clamp(1, 500);
    let end = (start + limit).min(total);
    let next = (end < total).then(|| encode_cursor(&items[end - 1].0, &items[end - 1].1));
    Ok(Page {
        items: items.drain(start..end).map(|x| x.2).collect(),
        total,
        next,
        as_of: String::new(),
    })
}

fn contains(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(needle)
}

impl Snapshot {
    fn visible(&self, i: usize, visible: &dyn Fn(&str) -> bool) -> bool {
        self.images[i].repos.iter().any(|r| visible(r))
    }

    /// `page` with this snapshot's `as_of`.
    fn dated<T>(&self, page: Result<Page<T>, String>) -> Result<Page<T>, String> {
        page.map(|p| Page {
            as_of: self.as_of.clone(),
            ..p
        })
    }

    /// When its verdicts were judged (RFC 3339).
    pub fn as_of(&self) -> &str {
        &self.as_of
    }

    fn counts(&self, visible: &dyn Fn(&str) -> bool) -> Overview {
        let mut o = Overview {
            as_of: self.as_of.clone(),
            ..Overview::default()
        };
        let shown: Vec<bool> = (0..self.images.len())
            .map(|i| self.visible(i, visible))
            .collect();
        let mut repos = BTreeSet::new();
        for (i, e) in self.images.iter().enumerate() {
            if !shown[i] {
                continue;
            }
            for r in &e.repos {
                if visible(r) {
                    repos.insert(r.clone());
                }
            }
            if e.untagged {
                o.untagged += 1;
                continue;
            }
            o.images_total += 1;
            *o.images.entry(e.state.clone()).or_default() += 1;
            if let Some(s) = &e.summary {
                for (k, n) in [
                    ("critical", s.critical),
                    ("high", s.high),
                    ("medium", s.medium),
                    ("low", s.low),
                    ("unknown", s.unknown),
                ] {
                    *o.findings.entry(k.into()).or_default() += n;
                }
                o.fixable += s.fixable;
                o.not_fixable += s.unfixed + s.wont_fix;
            }
        }
        o.repositories = repos.len();
        let mut worst: Vec<&ImageEntry> = self
            .images
            .iter()
            .enumerate()
            .filter(|(i, e)| shown[*i] && !e.untagged && e.summary.is_some())
            .map(|(_, e)| e)
            .filter(|e| e.summary.as_ref().is_some_and(|s| s.total > 0))
            .collect();
        worst.sort_by_key(|e| std::cmp::Reverse(worse(e)));
        o.most_vulnerable = worst.into_iter().take(10).cloned().collect();
        let mut spread: Vec<VulnEntry> = self
            .vulns
            .iter()
            .map(|v| self.vuln_entry(v, &shown))
            .filter(|v| v.images > 0)
            .collect();
        spread.sort_by(|a, b| {
            b.images
                .cmp(&a.images)
                .then(sev_rank(&b.severity).cmp(&sev_rank(&a.severity)))
                .then(a.id.cmp(&b.id))
        });
        spread.truncate(10);
        o.most_widespread = spread;
        o
    }

    fn vuln_entry(&self, v: &VulnAgg, shown: &[bool]) -> VulnEntry {
        let (mut images, mut untagged) = (0, 0);
        for &i in v.images.iter().filter(|&&i| shown[i]) {
            if self.images[i].untagged {
                untagged += 1;
            } else {
                images += 1;
            }
        }
        let mut fx = false;
        let mut packages = Vec::new();
        for (p, imgs, fixed) in &v.packages {
            if imgs.iter().any(|&i| shown[i]) {
                packages.push(p.clone());
                fx = fx || fixed.iter().any(|&i| shown[i]);
            }
        }
        VulnEntry {
            id: v.id.clone(),
            aliases: v.aliases.clone(),
            severity: v.severity.as_str().into(),
            summary: v.summary.clone(),
            fixable: fx,
            images,
            untagged,
            packages,
        }
    }

    /// Images (an index once), filtered, sorted and paged.
    pub fn images(
        &self,
        q: &ImageQuery,
        visible: &dyn Fn(&str) -> bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ImageEntry>, String> {
        let needle = q.q.as_deref().map(|s| s.trim().to_lowercase());
        let untagged = q.untagged.unwrap_or(false);
        let mut items = Vec::new();
        for (i, e) in self.images.iter().enumerate() {
            if e.untagged != untagged || !self.visible(i, visible) {
                continue;
            }
            if let Some(r) = &q.repository
                && !e.repos.contains(r)
            {
                continue;
            }
            if !q.states.is_empty() && !q.states.contains(&e.state) {
                continue;
            }
            if let Some(n) = needle.as_deref().filter(|n| !n.is_empty())
                && !(contains(&e.repository, n)
                    || contains(&e.digest, n)
                    || e.tags.iter().any(|t| contains(t, n)))
            {
                continue;
            }
            let s = e.summary.clone().unwrap_or_default();
            let key = match q.sort.as_str() {
                "pushed" => K::N(e.pushed_ms),
                "findings" => K::N(s.total as i64),
                "size" => K::N(e.size.unwrap_or(0) as i64),
                "severity" => K::N(
                    (e.state == state::UNHEALTHY) as i64 * 1_000_000_000_000
                        + (s.critical.min(9999) as i64) * 100_000_000
                        + (s.high.min(9999) as i64) * 10_000
                        + s.medium.min(9999) as i64,
                ),
                _ => K::S(
                    e.tags
                        .first()
                        .cloned()
                        .unwrap_or_else(|| e.repository.clone()),
                ),
            };
            items.push((key, e.digest.clone(), i));
        }
        // Only the page's entries are copied (8,000 clones per request
        // otherwise).
        let page = paginate(items, q.descending, cursor, limit)?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|i| {
                    let mut e = self.images[i].clone();
                    e.tags
                        .retain(|t| t.rsplit_once(':').is_some_and(|(r, _)| visible(r)));
                    if !visible(&e.repository)
                        && let Some(r) = e.repos.iter().find(|r| visible(r))
                    {
                        e.repository = r.clone();
                    }
                    e
                })
                .collect(),
            total: page.total,
            next: page.next,
            as_of: self.as_of.clone(),
        })
    }

    /// Repositories whose name contains `q`, by name.
    pub fn repositories(
        &self,
        q: Option<&str>,
        visible: &dyn Fn(&str) -> bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RepositoryEntry>, String> {
        let needle = q.map(|s| s.trim().to_lowercase()).unwrap_or_default();
        let mut per: BTreeMap<&str, RepositoryEntry> = BTreeMap::new();
        let mut last: HashMap<&str, i64> = HashMap::new();
        for e in &self.images {
            for r in &e.repos {
                if !visible(r) || !contains(r, &needle) {
                    continue;
                }
                let x = per.entry(r).or_insert_with(|| RepositoryEntry {
                    name: r.clone(),
                    tags: 0,
                    images: 0,
                    untagged: 0,
                    unhealthy: 0,
                    last_pushed_at: None,
                });
                let in_repo = e
                    .tags
                    .iter()
                    .any(|t| t.rsplit_once(':').is_some_and(|(rr, _)| rr == r));
                if in_repo {
                    x.images += 1;
                    if e.state == state::UNHEALTHY {
                        x.unhealthy += 1;
                    }
                } else if e.repository == *r {
                    x.untagged += 1;
                }
                let l = last.entry(r).or_insert(0);
                if e.pushed_ms > *l {
                    *l = e.pushed_ms;
                    x.last_pushed_at = e.pushed_at.clone();
                }
            }
        }
        let items = per
            .into_values()
            .map(|mut r| {
                r.tags = self.tags.get(&r.name).map_or(0, |t| t.len());
                (K::S(r.name.clone()), r.name.clone(), r)
            })
            .collect();
        self.dated(paginate(items, false, cursor, limit))
    }

    /// The tags of one repository, by tag name or push time.
    pub fn tags(
        &self,
        repo: &str,
        q: Option<&str>,
        sort_pushed: bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<TagEntry>, String> {
        let needle = q.map(|s| s.trim().to_lowercase()).unwrap_or_default();
        let mut items = Vec::new();
        for (tag, digest) in self.tags.get(repo).into_iter().flatten() {
            if !contains(tag, &needle) {
                continue;
            }
            let e = self.by_digest.get(digest).map(|&i| &self.images[i]);
            let entry = TagEntry {
                tag: tag.clone(),
                digest: digest.clone(),
                kind: e.map_or("unknown".into(), |e| e.kind.clone()),
                platforms: e
                    .map(|e| {
                        e.platforms
                            .iter()
                            .filter_map(|p| p.platform.clone())
                            .collect()
                    })
                    .unwrap_or_default(),
                size: e.and_then(|e| e.size),
                pushed_at: e.and_then(|e| e.pushed_at.clone()),
                pulled_at: e.and_then(|e| e.pulled_at.clone()),
                state: e.map_or(state::NOT_ASSESSED.into(), |e| e.state.clone()),
                reason: e.map(|e| e.reason.clone()).unwrap_or_default(),
                summary: e.and_then(|e| e.summary.clone()),
            };
            let key = if sort_pushed {
                K::N(e.map_or(0, |e| e.pushed_ms))
            } else {
                K::S(tag.clone())
            };
            items.push((key, tag.clone(), entry));
        }
        self.dated(paginate(items, sort_pushed, cursor, limit))
    }

    /// Vulnerabilities, each once, with the images they affect.
    pub fn vulnerabilities(
        &self,
        q: &VulnQuery,
        visible: &dyn Fn(&str) -> bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<VulnEntry>, String> {
        let shown: Vec<bool> = (0..self.images.len())
            .map(|i| self.visible(i, visible))
            .collect();
        let needle =
            q.q.as_deref()
                .map(|s| s.trim().to_lowercase())
                .unwrap_or_default();
        let mut items = Vec::new();
        for v in self.vulns.iter() {
            if q.min_severity.is_some_and(|m| v.severity < m)
                || (!q.severities.is_empty() && !q.severities.contains(&v.severity))
            {
                continue;
            }
            let e = self.vuln_entry(v, &shown);
            if e.images + e.untagged == 0 || q.fixable.is_some_and(|f| f != e.fixable) {
                continue;
            }
            let matches = needle.is_empty()
                || contains(&e.id, &needle)
                || e.aliases.iter().any(|a| contains(a, &needle))
                || contains(&e.summary, &needle)
                || e.packages.iter().any(|p| contains(p, &needle));
            if !matches {
                continue;
            }
            let key = match q.sort.as_str() {
                "id" => K::S(e.id.clone()),
                "images" => K::N(e.images as i64),
                _ => K::N(sev_rank(&e.severity) * 1_000_000_000 + e.images as i64),
            };
            items.push((key, e.id.clone(), e));
        }
        self.dated(paginate(items, q.descending, cursor, limit))
    }

    /// One vulnerability (by id or alias), or `None` when no visible
    /// image has it; `affected` is one page of repositories by name,
    /// after `cursor` (the `affected_next` of the page before).
    pub fn vulnerability(
        &self,
        id: &str,
        visible: &dyn Fn(&str) -> bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Option<VulnDetail>, String> {
        let found = self.vulns.iter().find(|v| v.id == id).or_else(|| {
            self.vulns
                .iter()
                .find(|v| v.aliases.iter().any(|a| a.eq_ignore_ascii_case(id)))
        });
        let Some(v) = found else {
            return Ok(None);
        };
        let shown: Vec<bool> = (0..self.images.len())
            .map(|i| self.visible(i, visible))
            .collect();
        let entry = self.vuln_entry(v, &shown);
        if entry.images + entry.untagged == 0 {
            return Ok(None);
        }
        let mut fix: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // repository → (tags, digests, "package version")
        let mut per_repo: BTreeMap<String, [BTreeSet<String>; 3]> = BTreeMap::new();
        for a in v.affected.iter().filter(|a| shown[a.image]) {
            let set = fix.entry(a.package.to_string()).or_default();
            if let Some(f) = &a.fixed {
                set.insert(f.to_string());
            }
            let img = &self.images[a.image];
            let mut placed = false;
            for t in &img.tags {
                if let Some((r, tag)) = t.rsplit_once(':')
                    && visible(r)
                {
                    let x = per_repo.entry(r.to_string()).or_default();
                    x[0].insert(tag.to_string());
                    x[1].insert(img.digest.clone());
                    x[2].insert(format!("{} {}", a.package, a.installed));
                    placed = true;
                }
            }
            if !placed && visible(&img.repository) {
                let x = per_repo.entry(img.repository.clone()).or_default();
                x[1].insert(img.digest.clone());
                x[2].insert(format!("{} {}", a.package, a.installed));
            }
        }
        // Sorted by name already; the key is the same for all, so the
        // cursor is the repository's name.
        let affected = paginate(
            per_repo
                .into_iter()
                .map(|(repository, [tags, digests, packages])| {
                    (
                        K::N(0),
                        repository.clone(),
                        AffectedTag {
                            repository,
                            tags: tags.into_iter().collect(),
                            digests: digests.into_iter().collect(),
                            packages: packages.into_iter().collect(),
                        },
                    )
                })
                .collect(),
            false,
            cursor,
            limit,
        )?;
        Ok(Some(VulnDetail {
            entry,
            related: v.related.clone(),
            cvss_vector: v.cvss.as_ref().map(|c| c.vector.clone()),
            cvss_score: v.cvss.as_ref().map(|c| c.score),
            cvss_source: v.cvss.as_ref().map(|c| c.source.clone()),
            severity_source: v.severity_source.clone(),
            data_source: v.data_source.clone(),
            references: v.references.clone(),
            fix: fix
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
            affected: affected.items,
            affected_total: affected.total,
            affected_next: affected.next,
            as_of: self.as_of.clone(),
        }))
    }
}
