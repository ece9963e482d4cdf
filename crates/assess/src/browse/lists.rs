//! The snapshot's lists, filtered by what the caller may see, sorted and
//! paged: images, repositories, tags, vulnerabilities, one vulnerability
//! with its affected repositories, and the overview's counts.

use super::page::{K, contains, paginate, sev_rank};
use super::{
    AffectedTag, BrowseError, ImageEntry, ImageQuery, Overview, Page, RepositoryEntry, Snapshot,
    TagEntry, VulnAgg, VulnDetail, VulnEntry, VulnQuery, state,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The orders of the images list (empty: by name).
const IMAGE_SORTS: &[&str] = &["name", "pushed", "findings", "severity", "size"];
/// The orders of the vulnerabilities list (empty: by severity).
const VULN_SORTS: &[&str] = &["severity", "images", "id"];

/// Refuse an order the list does not know, rather than quietly sort by
/// the default one: the caller asked for something else.
fn known_sort(sort: &str, allowed: &[&str]) -> Result<(), BrowseError> {
    if sort.is_empty() || allowed.contains(&sort) {
        return Ok(());
    }
    Err(BrowseError::BadFilter(format!(
        "sort must be one of {}, not {sort:?}",
        allowed.join(", ")
    )))
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

impl Snapshot {
    fn visible(&self, i: usize, visible: &dyn Fn(&str) -> bool) -> bool {
        self.images[i].repos.iter().any(|r| visible(r))
    }

    /// `page` with this snapshot's `as_of`.
    fn dated<T>(&self, page: Result<Page<T>, BrowseError>) -> Result<Page<T>, BrowseError> {
        page.map(|p| Page {
            as_of: self.as_of.clone(),
            ..p
        })
    }

    /// When its verdicts were judged (RFC 3339).
    pub fn as_of(&self) -> &str {
        &self.as_of
    }

    pub(super) fn counts(&self, visible: &dyn Fn(&str) -> bool) -> Overview {
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
    ) -> Result<Page<ImageEntry>, BrowseError> {
        known_sort(&q.sort, IMAGE_SORTS)?;
        // An unknown state would match nothing: an empty list that hides
        // the caller's typo.
        if let Some(s) = q.states.iter().find(|s| !state::ALL.contains(&s.as_str())) {
            return Err(BrowseError::BadFilter(format!(
                "state must be among {}, not {s:?}",
                state::ALL.join(", ")
            )));
        }
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
    ) -> Result<Page<RepositoryEntry>, BrowseError> {
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
    ) -> Result<Page<TagEntry>, BrowseError> {
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
    ) -> Result<Page<VulnEntry>, BrowseError> {
        known_sort(&q.sort, VULN_SORTS)?;
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
    ) -> Result<Option<VulnDetail>, BrowseError> {
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
