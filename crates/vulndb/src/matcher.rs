//! Matching installed packages against the index.

use crate::build::{distro_ecosystem, normalize_name, scheme_for_space};
use crate::ingest::debian::release_key;
use crate::model::{Cvss, Finding, FindingStatus, MatchReport, Severity, Uncomparable};
use crate::store::{Entry, Event, Store};
use crate::version::{VersionError, VersionScheme, scheme_for};
use inventory::{Distro, Ecosystem, Inventory, Package};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Outcome of one range check: `None` = not affected, `Some(fixed)` =
/// affected, with the version that ends the affected interval if any.
type RangeHit = Option<Option<Arc<str>>>;

/// Evaluate one OSV range (events sorted by version): `introduced` opens,
/// `fixed` (exclusive) and `last_affected` (inclusive) close, and when
/// `limit` events exist the version must also be below one of them.
/// `cmp(x)` compares the installed version with event version `x`.
fn eval_range<'s>(
    cmp: &mut impl FnMut(&'s str) -> Result<Ordering, VersionError>,
    events: &'s [Event],
) -> Result<RangeHit, VersionError> {
    let mut affected = false;
    let mut has_limit = false;
    let mut under_limit = false;
    // The first event that ends an interval containing the version: a
    // `fixed` above it or a `last_affected` at or above it. Recorded in the
    // same pass so that each event is compared once.
    let mut end: Option<Option<Arc<str>>> = None;
    for ev in events {
        match ev {
            Event::Introduced(x) => {
                if &**x == "0" || cmp(x)? != Ordering::Less {
                    affected = true;
                }
            }
            Event::Fixed(x) => {
                let o = cmp(x)?;
                if o != Ordering::Less {
                    affected = false;
                } else if end.is_none() {
                    end = Some(Some(x.clone()));
                }
            }
            Event::LastAffected(x) => {
                let o = cmp(x)?;
                if o == Ordering::Greater {
                    affected = false;
                } else if end.is_none() {
                    end = Some(None);
                }
            }
            Event::Limit(x) => {
                has_limit = true;
                if &**x == "*" || cmp(x)? == Ordering::Less {
                    under_limit = true;
                }
            }
        }
    }
    if !affected || (has_limit && !under_limit) {
        return Ok(None);
    }
    Ok(Some(end.unwrap_or(None)))
}

/// Whether the installed version is in any of the ranges. An unparseable
/// event version makes the answer an error unless another range already
/// says "affected".
fn in_ranges_with<'s>(
    cmp: &mut impl FnMut(&'s str) -> Result<Ordering, VersionError>,
    ranges: &'s [Vec<Event>],
) -> Result<RangeHit, VersionError> {
    let mut err = None;
    for r in ranges {
        match eval_range(cmp, r) {
            Ok(Some(hit)) => return Ok(Some(hit)),
            Ok(None) => {}
            Err(e) => err = Some(e),
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// [`in_ranges_with`] comparing `v` directly in `scheme`.
pub(crate) fn in_ranges(
    scheme: &dyn VersionScheme,
    v: &str,
    ranges: &[Vec<Event>],
) -> Result<RangeHit, VersionError> {
    in_ranges_with(&mut |x: &str| scheme.compare(v, x), ranges)
}

/// Index space for an inventory's distribution (`debian:12`,
/// `alpine:v3.20`, `ubuntu:22.04`).
pub fn distro_space(d: &Distro) -> Option<String> {
    let id = d.id.trim().to_ascii_lowercase();
    let ver = d.version_id.trim();
    match id.as_str() {
        "debian" => {
            let major = ver.split('.').next().unwrap_or("");
            if !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()) {
                Some(format!("debian:{major}"))
            } else {
                let code = d.codename.as_deref()?.trim().to_ascii_lowercase();
                Some(format!("debian:{}", release_key(&code)?))
            }
        }
        "alpine" => {
            let mut parts = ver.split(['.', '_']);
            let (maj, min) = (parts.next()?, parts.next()?);
            if maj.is_empty() || min.is_empty() {
                return None;
            }
            Some(format!("alpine:v{maj}.{min}"))
        }
        "" => None,
        _ if ver.is_empty() => None,
        _ => Some(format!("{id}:{ver}")),
    }
}

/// Data shared by every finding of one advisory or data source, built once
/// when a database is loaded, so that assembling a [`Finding`] only bumps
/// reference counts.
pub(crate) struct Shared {
    advisories: Vec<SharedAdvisory>,
    sources: Vec<Arc<str>>,
}

struct SharedAdvisory {
    id: Arc<str>,
    aliases: Arc<[String]>,
    related: Arc<[String]>,
    summary: Arc<str>,
    references: Arc<[String]>,
    severity: Severity,
    severity_source: Arc<str>,
    cvss: Option<Arc<Cvss>>,
}

impl Shared {
    /// Move the advisories out of `store` (leaving its list empty, so
    /// nothing is held twice) into shared form.
    pub(crate) fn new(store: &mut Store) -> Shared {
        Shared {
            advisories: std::mem::take(&mut store.advisories)
                .into_iter()
                .map(|a| SharedAdvisory {
                    id: a.id.into(),
                    aliases: a.aliases.into(),
                    related: a.related.into(),
                    summary: a.summary.into(),
                    references: a.references.into(),
                    severity: a.severity,
                    severity_source: a.severity_source.into(),
                    cvss: a.cvss.map(Arc::new),
                })
                .collect(),
            sources: store
                .meta
                .sources
                .iter()
                .map(|s| Arc::from(&*s.name))
                .collect(),
        }
    }

    /// Number of advisories.
    pub(crate) fn len(&self) -> usize {
        self.advisories.len()
    }

    /// Rough heap size in bytes, for [`crate::Database::heap_size`].
    pub(crate) fn heap_size(&self) -> usize {
        use std::mem::size_of;
        // An `Arc` allocation carries two reference counts.
        const RC: usize = 2 * size_of::<usize>();
        let list = |v: &[String]| {
            RC + v
                .iter()
                .map(|x| x.len() + size_of::<String>())
                .sum::<usize>()
        };
        let mut n = self.advisories.capacity() * size_of::<SharedAdvisory>();
        for a in &self.advisories {
            n += RC + a.id.len() + list(&a.aliases) + list(&a.related) + RC + a.summary.len();
            n += list(&a.references) + RC + a.severity_source.len();
            n += a.cvss.as_ref().map_or(0, |c| {
                RC + size_of::<Cvss>() + c.vector.len() + c.version.len() + c.source.len()
            });
        }
        n + self.sources.iter().map(|s| RC + s.len()).sum::<usize>()
    }
}

/// What an inventory's distribution means for its OS packages, worked out
/// once per inventory.
struct DistroCtx<'s> {
    /// Package type of the distribution (`deb` for Debian and Ubuntu).
    ecosystem: Option<Ecosystem>,
    /// Index space (`debian:12`) and its package map in the store.
    space: Option<(Arc<str>, Option<&'s PackageMap>)>,
    /// Severity source of distribution ratings (`debian`).
    rater: Arc<str>,
}

type PackageMap = HashMap<String, Vec<Entry>>;

impl<'s> DistroCtx<'s> {
    fn new(store: &'s Store, distro: Option<&Distro>) -> DistroCtx<'s> {
        let Some(d) = distro else {
            return DistroCtx {
                ecosystem: None,
                space: None,
                rater: Arc::from("distro"),
            };
        };
        let space = distro_space(d);
        let rater = space
            .as_deref()
            .and_then(|s| s.split(':').next())
            .unwrap_or("distro");
        DistroCtx {
            ecosystem: distro_ecosystem(&d.id.to_ascii_lowercase()),
            rater: Arc::from(rater),
            space: space.map(|s| {
                let pkgs = store.index.get(&s);
                (Arc::from(s), pkgs)
            }),
        }
    }
}

/// A package to look up: where, under which name, at which version.
pub(crate) struct Query<'a, 's> {
    pub ecosystem: Ecosystem,
    pub space: &'a str,
    /// The space's package map, when known without a lookup.
    pub packages: Option<Option<&'s PackageMap>>,
    pub lookup_name: Cow<'a, str>,
    /// The version compared with advisories: for Debian, the source
    /// package's version (the tracker's fixed versions are source versions).
    pub version: &'a str,
    /// The version installed, as reported in findings.
    pub installed: &'a str,
    pub package: &'a str,
    pub purl: &'a str,
    pub source_package: Option<&'a str>,
    pub distro: Option<&'a Arc<str>>,
}

/// Work out how a package is looked up, or why it cannot be.
fn plan<'a, 's>(
    pkg: &'a Package,
    distro: Option<&Distro>,
    ctx: &'a DistroCtx<'s>,
) -> Result<Query<'a, 's>, Uncomparable> {
    let unc = |reason: &str| Uncomparable {
        ecosystem: pkg.ecosystem,
        package: pkg.name.clone(),
        installed_version: pkg.version.clone(),
        advisory: None,
        reason: reason.to_string(),
    };
    if pkg.ecosystem.is_os() {
        if distro.is_none() {
            return Err(unc("OS package without a distribution: not matched"));
        }
        if ctx.ecosystem != Some(pkg.ecosystem) {
            return Err(unc(
                "package type does not belong to the image's distribution",
            ));
        }
        let Some((space, packages)) = &ctx.space else {
            return Err(unc("distribution release not recognised"));
        };
        let source = pkg.source_name.as_deref().filter(|s| !s.is_empty());
        let version = match pkg.ecosystem {
            Ecosystem::Deb => pkg
                .source_version
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or(&pkg.version),
            _ => &pkg.version,
        };
        Ok(Query {
            ecosystem: pkg.ecosystem,
            lookup_name: Cow::Borrowed(source.unwrap_or(&pkg.name)),
            space,
            packages: Some(*packages),
            version,
            installed: &pkg.version,
            package: &pkg.name,
            purl: &pkg.purl,
            source_package: Some(source.unwrap_or(&pkg.name)),
            distro: Some(space),
        })
    } else {
        let space = pkg.ecosystem.as_str();
        let lookup_name = normalize_name(space, &pkg.name);
        Ok(Query {
            ecosystem: pkg.ecosystem,
            lookup_name,
            space,
            packages: None,
            version: &pkg.version,
            installed: &pkg.version,
            package: &pkg.name,
            purl: &pkg.purl,
            source_package: None,
            distro: None,
        })
    }
}

fn is_distro_advisory(id: &str) -> bool {
    id.starts_with("DSA-") || id.starts_with("DLA-") || id.starts_with("DTSA-")
}

/// FNV-1a: the matcher's hash sets hold short strings and small integers,
/// for which SipHash's DoS resistance is not needed.
#[derive(Default, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
    }
}

type FastBuild = std::hash::BuildHasherDefault<Fnv>;

/// Working memory of one `match_inventory` call, reused from package to
/// package (cleared, not reallocated).
#[derive(Default)]
struct Scratch<'s> {
    /// Installed version compared with each event version, once.
    memo: HashMap<&'s str, Result<Ordering, VersionError>, FastBuild>,
    /// Advisories already hit for the current package.
    seen: HashSet<u32, FastBuild>,
    hits: Vec<(&'s Entry, Option<Arc<str>>)>,
    /// Ids and aliases of the hits kept so far ([`dedupe_hits`]).
    ids: HashSet<&'s str, FastBuild>,
}

/// The installed package's strings, shared by all its findings.
struct PackageText {
    package: Arc<str>,
    source_package: Option<Arc<str>>,
    purl: Arc<str>,
    installed_version: Arc<str>,
}

/// Match one planned query; findings and uncomparables are appended.
fn match_query<'s>(
    store: &'s Store,
    shared: &'s Shared,
    ctx: &DistroCtx<'_>,
    q: &Query<'_, 's>,
    scratch: &mut Scratch<'s>,
    out: &mut MatchReport,
) {
    let pkgs = match q.packages {
        Some(p) => p,
        None => store.index.get(q.space),
    };
    let Some(entries) = pkgs.and_then(|pkgs| pkgs.get(&*q.lookup_name)) else {
        return;
    };
    let unc = |advisory: Option<String>, reason: String| Uncomparable {
        ecosystem: q.ecosystem,
        package: q.package.to_string(),
        installed_version: q.installed.to_string(),
        advisory,
        reason,
    };
    let Some(scheme) = scheme_for_space(q.space).or_else(|| scheme_for(q.ecosystem)) else {
        out.uncomparable.push(unc(
            None,
            format!("no version ordering for {}", q.ecosystem),
        ));
        return;
    };
    if let Err(e) = scheme.validate(q.version) {
        out.uncomparable.push(unc(None, e.to_string()));
        return;
    }
    let Scratch {
        memo,
        seen,
        hits,
        ids,
    } = scratch;
    memo.clear();
    seen.clear();
    hits.clear();
    // Entries of one package share many versions (one release fixes many
    // advisories): compare the installed version with each only once.
    let mut cmp = |x: &'s str| -> Result<Ordering, VersionError> {
        memo.entry(x)
            .or_insert_with(|| scheme.compare(q.version, x))
            .clone()
    };
    for e in entries {
        // The same advisory for the same package once (several affected
        // entries with disjoint ranges): keep the first hit.
        if seen.contains(&e.advisory) {
            continue;
        }
        let hit = if e.versions.iter().any(|x| &**x == q.version) {
            // Listed explicitly; still use the ranges for the fixed version.
            Some(
                in_ranges_with(&mut cmp, &e.ranges)
                    .ok()
                    .flatten()
                    .unwrap_or(None),
            )
        } else {
            match in_ranges_with(&mut cmp, &e.ranges) {
                Ok(h) => h,
                Err(err) => {
                    let adv = &shared.advisories[e.advisory as usize];
                    out.uncomparable
                        .push(unc(Some(adv.id.to_string()), err.to_string()));
                    continue;
                }
            }
        };
        let Some(fixed) = hit else { continue };
        seen.insert(e.advisory);
        hits.push((e, fixed));
    }
    if hits.is_empty() {
        return;
    }
    dedupe_hits(shared, hits, ids);
    let text = PackageText {
        package: Arc::from(q.package),
        source_package: q.source_package.map(Arc::from),
        purl: Arc::from(q.purl),
        installed_version: Arc::from(q.installed),
    };
    out.findings.reserve(hits.len());
    for (e, fixed) in hits.drain(..) {
        out.findings
            .push(make_finding(shared, ctx, q, &text, e, fixed));
    }
}

fn make_finding(
    shared: &Shared,
    ctx: &DistroCtx<'_>,
    q: &Query<'_, '_>,
    text: &PackageText,
    e: &Entry,
    fixed: Option<Arc<str>>,
) -> Finding {
    let adv = &shared.advisories[e.advisory as usize];
    let (severity, severity_source) = match &e.distro_severity {
        Some((s, _)) => (*s, ctx.rater.clone()),
        None => (adv.severity, adv.severity_source.clone()),
    };
    let status = if fixed.is_some() {
        FindingStatus::Fixed
    } else {
        e.open_status
    };
    Finding {
        id: adv.id.clone(),
        aliases: adv.aliases.clone(),
        related: adv.related.clone(),
        ecosystem: q.ecosystem,
        distro: q.distro.cloned(),
        package: text.package.clone(),
        source_package: text.source_package.clone(),
        purl: text.purl.clone(),
        installed_version: text.installed_version.clone(),
        fixed_version: fixed,
        status,
        status_note: e.note.clone(),
        severity,
        severity_source,
        cvss: adv.cvss.clone(),
        summary: adv.summary.clone(),
        references: adv.references.clone(),
        informational: e.informational.clone(),
        data_source: shared.sources[e.source as usize].clone(),
    }
}
/// Within one package's hits: drop a hit whose id or alias is an id or
/// alias of a kept one (the same vulnerability from two databases), and
/// drop a DSA/DLA hit when every CVE it fixes is already reported.
fn dedupe_hits<'s>(
    shared: &'s Shared,
    hits: &mut Vec<(&'s Entry, Option<Arc<str>>)>,
    seen: &mut HashSet<&'s str, FastBuild>,
) {
    if hits.len() < 2 {
        return;
    }
    let adv = |e: &Entry| &shared.advisories[e.advisory as usize];
    // CVE ids first so aliases collapse onto them; distro advisories last.
    hits.sort_by(|(a, _), (b, _)| {
        let (a, b) = (&adv(a).id, &adv(b).id);
        is_distro_advisory(a)
            .cmp(&is_distro_advisory(b))
            .then_with(|| b.starts_with("CVE-").cmp(&a.starts_with("CVE-")))
            .then_with(|| a.cmp(b))
    });
    seen.clear();
    hits.retain(|(e, _)| {
        let a = adv(e);
        let dup = seen.contains(&*a.id) || a.aliases.iter().any(|x| seen.contains(x.as_str()));
        let covered = is_distro_advisory(&a.id) && {
            let mut cves = a
                .related
                .iter()
                .filter(|r| r.starts_with("CVE-"))
                .peekable();
            cves.peek().is_some() && cves.all(|c| seen.contains(c.as_str()))
        };
        if dup || covered {
            return false;
        }
        seen.insert(&a.id);
        for x in a.aliases.iter() {
            seen.insert(x);
        }
        true
    });
}

pub(crate) fn match_inventory(store: &Store, shared: &Shared, inv: &Inventory) -> MatchReport {
    let mut out = MatchReport::default();
    let distro = inv.distro.as_ref();
    let ctx = DistroCtx::new(store, distro);
    let mut scratch = Scratch::default();
    for pkg in &inv.packages {
        match plan(pkg, distro, &ctx) {
            Ok(q) => match_query(store, shared, &ctx, &q, &mut scratch, &mut out),
            Err(u) => {
                // Only worth reporting if there is distribution data at all.
                out.uncomparable.push(u);
            }
        }
    }
    out
}
