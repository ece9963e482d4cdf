//! Matching installed packages against the index.

use crate::build::{distro_ecosystem, normalize_name, scheme_for_space};
use crate::ingest::debian::release_key;
use crate::model::{Finding, FindingStatus, MatchReport, Uncomparable};
use crate::store::{Entry, Event, Store};
use crate::version::{VersionError, VersionScheme, scheme_for};
use inventory::{Distro, Ecosystem, Inventory, Package};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

/// Outcome of one range check: `None` = not affected, `Some(fixed)` =
/// affected, with the version that ends the affected interval if any.
type RangeHit = Option<Option<Box<str>>>;

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
    for ev in events {
        match ev {
            Event::Introduced(x) => {
                if &**x == "0" || cmp(x)? != Ordering::Less {
                    affected = true;
                }
            }
            Event::Fixed(x) => {
                if cmp(x)? != Ordering::Less {
                    affected = false;
                }
            }
            Event::LastAffected(x) => {
                if cmp(x)? == Ordering::Greater {
                    affected = false;
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
    for ev in events {
        match ev {
            Event::Fixed(x) if cmp(x)? == Ordering::Less => return Ok(Some(Some(x.clone()))),
            Event::LastAffected(x) if cmp(x)? != Ordering::Greater => return Ok(Some(None)),
            _ => {}
        }
    }
    Ok(Some(None))
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

/// A package to look up: where, under which name, at which version.
pub(crate) struct Query<'a> {
    pub ecosystem: Ecosystem,
    pub space: String,
    pub lookup_name: String,
    pub version: &'a str,
    pub package: &'a str,
    pub purl: &'a str,
    pub source_package: Option<&'a str>,
    pub distro: Option<String>,
}

/// Work out how a package is looked up, or why it cannot be.
pub(crate) fn plan<'a>(
    pkg: &'a Package,
    distro: Option<&Distro>,
) -> Result<Query<'a>, Uncomparable> {
    let unc = |reason: &str| Uncomparable {
        ecosystem: pkg.ecosystem,
        package: pkg.name.clone(),
        installed_version: pkg.version.clone(),
        advisory: None,
        reason: reason.to_string(),
    };
    if pkg.ecosystem.is_os() {
        let Some(d) = distro else {
            return Err(unc("OS package without a distribution: not matched"));
        };
        if distro_ecosystem(&d.id.to_ascii_lowercase()) != Some(pkg.ecosystem) {
            return Err(unc(
                "package type does not belong to the image's distribution",
            ));
        }
        let Some(space) = distro_space(d) else {
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
            lookup_name: source.unwrap_or(&pkg.name).to_string(),
            space: space.clone(),
            version,
            package: &pkg.name,
            purl: &pkg.purl,
            source_package: Some(source.unwrap_or(&pkg.name)),
            distro: Some(space),
        })
    } else {
        let space = pkg.ecosystem.as_str().to_string();
        Ok(Query {
            ecosystem: pkg.ecosystem,
            lookup_name: normalize_name(&space, &pkg.name),
            space,
            version: &pkg.version,
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

/// Match one planned query; findings and uncomparables are appended.
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

/// Match one planned query; findings and uncomparables are appended.
pub(crate) fn match_query<'s>(store: &'s Store, q: &Query<'_>, out: &mut MatchReport) {
    let Some(entries) = store
        .index
        .get(&q.space)
        .and_then(|pkgs| pkgs.get(&q.lookup_name))
    else {
        return;
    };
    let unc = |advisory: Option<String>, reason: String| Uncomparable {
        ecosystem: q.ecosystem,
        package: q.package.to_string(),
        installed_version: q.version.to_string(),
        advisory,
        reason,
    };
    let Some(scheme) = scheme_for_space(&q.space).or_else(|| scheme_for(q.ecosystem)) else {
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
    // Entries of one package share many versions (one release fixes many
    // advisories): compare the installed version with each only once.
    let mut memo: HashMap<&'s str, Result<Ordering, VersionError>, FastBuild> = HashMap::default();
    let mut cmp = |x: &'s str| -> Result<Ordering, VersionError> {
        memo.entry(x)
            .or_insert_with(|| scheme.compare(q.version, x))
            .clone()
    };
    let mut seen: HashSet<u32, FastBuild> = HashSet::default();
    let mut hits: Vec<(&'s Entry, Option<Box<str>>)> = Vec::new();
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
                    let adv = &store.advisories[e.advisory as usize];
                    out.uncomparable
                        .push(unc(Some(adv.id.clone()), err.to_string()));
                    continue;
                }
            }
        };
        let Some(fixed) = hit else { continue };
        seen.insert(e.advisory);
        hits.push((e, fixed));
    }
    dedupe_hits(store, &mut hits);
    out.findings.reserve(hits.len());
    for (e, fixed) in hits {
        out.findings.push(make_finding(store, q, e, fixed));
    }
}

fn make_finding(store: &Store, q: &Query<'_>, e: &Entry, fixed: Option<Box<str>>) -> Finding {
    let adv = &store.advisories[e.advisory as usize];
    let (severity, severity_source) = match &e.distro_severity {
        Some((s, _)) => (
            *s,
            q.space.split(':').next().unwrap_or("distro").to_string(),
        ),
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
        distro: q.distro.clone(),
        package: q.package.to_string(),
        source_package: q.source_package.map(str::to_string),
        purl: q.purl.to_string(),
        installed_version: q.version.to_string(),
        fixed_version: fixed.map(String::from),
        status,
        status_note: e.note.as_deref().map(str::to_string),
        severity,
        severity_source,
        cvss: adv.cvss.clone(),
        summary: adv.summary.clone(),
        references: adv.references.clone(),
        informational: e.informational.as_deref().map(str::to_string),
        data_source: store.meta.sources[e.source as usize].name.clone(),
    }
}

/// Within one package's hits: drop a hit whose id or alias is an id or
/// alias of a kept one (the same vulnerability from two databases), and
/// drop a DSA/DLA hit when every CVE it fixes is already reported.
fn dedupe_hits<'s>(store: &'s Store, hits: &mut Vec<(&'s Entry, Option<Box<str>>)>) {
    if hits.len() < 2 {
        return;
    }
    let adv = |e: &Entry| &store.advisories[e.advisory as usize];
    // CVE ids first so aliases collapse onto them; distro advisories last.
    hits.sort_by(|(a, _), (b, _)| {
        let (a, b) = (&adv(a).id, &adv(b).id);
        is_distro_advisory(a)
            .cmp(&is_distro_advisory(b))
            .then_with(|| b.starts_with("CVE-").cmp(&a.starts_with("CVE-")))
            .then_with(|| a.cmp(b))
    });
    let mut seen: HashSet<&'s str, FastBuild> = HashSet::default();
    hits.retain(|(e, _)| {
        let a = adv(e);
        let dup =
            seen.contains(a.id.as_str()) || a.aliases.iter().any(|x| seen.contains(x.as_str()));
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
        for x in &a.aliases {
            seen.insert(x);
        }
        true
    });
}

pub(crate) fn match_inventory(store: &Store, inv: &Inventory) -> MatchReport {
    let mut out = MatchReport::default();
    for pkg in &inv.packages {
        match plan(pkg, inv.distro.as_ref()) {
            Ok(q) => match_query(store, &q, &mut out),
            Err(u) => {
                // Only worth reporting if there is distribution data at all.
                out.uncomparable.push(u);
            }
        }
    }
    out
}
