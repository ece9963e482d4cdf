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
//!
//! Where things are: this file holds the read models and the states;
//! `judge` judges the images (and keeps that judging on disk), `cache`
//! keeps the snapshot per data directory and decides when to judge again,
//! `lists` filters, sorts and pages the snapshot's lists, and `page` cuts
//! pages with keyset cursors.

use crate::clock::{from_ms, rfc3339};
use crate::policy::{Health, Summary};
use crate::store::{ImageRow, status};
use crate::vuln::Severity;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use utoipa::ToSchema;

mod cache;
mod judge;
mod lists;
mod page;
#[cfg(test)]
mod tests;

// judge.rs reads and fills the sizes the cache keeps.
use cache::{cached_size, sizes};

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

    /// Every state, as the images list's filter accepts them.
    pub const ALL: &[&str] = &[
        NOT_ASSESSED,
        WAITING_FOR_DATABASE,
        ASSESSING,
        FAILED,
        UNSUPPORTED,
        HEALTHY,
        UNHEALTHY,
        INCOMPLETE,
    ];
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

/// Why a list (or its snapshot) could not be given. The first two are the
/// caller's mistake (an API answers 400 with the message), the last the
/// server's (500; the message is for the log).
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    /// The cursor was not made by this server, or was altered.
    #[error("cursor is not one this server gave")]
    BadCursor,
    /// A sort or filter value the list does not know; the message names it.
    #[error("{0}")]
    BadFilter(String),
    /// Judging the images failed: the assessor's store could not be read.
    #[error("cannot judge the registry's images: {0:#}")]
    Store(anyhow::Error),
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
    /// `name` (or empty), `pushed`, `findings`, `severity`, `size`;
    /// another is refused ([`BrowseError::BadFilter`]), as is a state not
    /// in [`state::ALL`].
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
    /// `severity` (then images; or empty), `images`, `id`; another is
    /// refused ([`BrowseError::BadFilter`]).
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

fn t(ms: i64) -> String {
    rfc3339(from_ms(ms))
}

fn day(ms: i64) -> String {
    t(ms)[..10].to_string()
}
