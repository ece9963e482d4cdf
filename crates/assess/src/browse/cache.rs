//! The snapshot kept per data directory, and when the images are judged
//! again: a request is served the last judging while a newer one is under
//! way (at most [`WAIT_FOR_JUDGING`] late), tags and pull times are laid
//! over it every two seconds, and the overview's trend is recorded once a
//! judging is new.

use super::judge::{self, Judged};
use super::{BrowseError, Overview, Snapshot, TrendPoint, day, state, t};
use crate::clock::rfc3339;
use crate::service::Service;
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};

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

pub(super) fn sizes() -> &'static Mutex<HashMap<String, Option<u64>>> {
    // Digests are immutable, so their sizes are too.
    static SIZES: OnceLock<Mutex<HashMap<String, Option<u64>>>> = OnceLock::new();
    SIZES.get_or_init(Default::default)
}

pub(super) fn cached_size(svc: &Service, repo: &str, digest: &str) -> Option<u64> {
    if let Some(s) = sizes().lock().unwrap().get(digest) {
        return *s;
    }
    let s = image_size(svc, repo, digest);
    sizes().lock().unwrap().insert(digest.to_string(), s);
    s
}

impl Service {
    /// The current snapshot: images judged again when a verdict may have
    /// changed (see [`Service::judged`]); tags and pull times read again
    /// after two seconds (tags live in the registry, which has no change
    /// counter here; pulls are too frequent to judge again for).
    pub fn snapshot(&self) -> Result<Arc<Snapshot>, BrowseError> {
        let cell = cache(self);
        let (mut cached, judged) = self.judged(&cell).map_err(BrowseError::Store)?;
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
