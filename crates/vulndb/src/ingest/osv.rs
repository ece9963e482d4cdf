//! OSV records (ossf/osv-schema), any ecosystem.
//!
//! Ecosystems map to index spaces: language ecosystems to their short name
//! (`pypi`, `npm`, `go`, `maven`, `gem`, `cargo`), distribution ecosystems
//! to `<distro>:<release>` (`Debian:12` → `debian:12`, `Alpine:v3.20` →
//! `alpine:v3.20`, `Ubuntu:22.04:LTS` → `ubuntu:22.04`). Rust crates are
//! recognised by their purl type `pkg:cargo/`, never by the ecosystem name.

use super::str_field;
use crate::Error;
use crate::build::{Builder, extend_unique};
use crate::cvss::{Candidate, rank};
use crate::model::{FindingStatus, Severity};
use crate::store::{Entry, Event};
use serde::Deserialize;
use serde_json::Value;

// A missing `Option` field reads as `None` (serde's rule for `Option`),
// so only the plain fields below need `#[serde(default)]`.
#[derive(Deserialize)]
struct Record {
    id: String,
    modified: Option<String>,
    withdrawn: Option<String>,
    aliases: Option<Vec<String>>,
    related: Option<Vec<String>>,
    summary: Option<String>,
    details: Option<String>,
    severity: Option<Vec<SeverityItem>>,
    affected: Option<Vec<Affected>>,
    references: Option<Vec<Reference>>,
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct SeverityItem {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct Reference {
    url: Option<String>,
}

#[derive(Deserialize)]
struct Affected {
    package: Option<Package>,
    ranges: Option<Vec<Range>>,
    versions: Option<Vec<String>>,
    ecosystem_specific: Option<Value>,
    database_specific: Option<Value>,
    severity: Option<Vec<SeverityItem>>,
}

#[derive(Deserialize)]
struct Package {
    #[serde(default)]
    ecosystem: String,
    #[serde(default)]
    name: String,
    purl: Option<String>,
}

#[derive(Deserialize)]
struct Range {
    #[serde(rename = "type")]
    kind: String,
    events: Vec<serde_json::Map<String, Value>>,
}

/// Index space and source name of an affected package, `None` when the
/// ecosystem is one drydock cannot match.
fn space_of(pkg: &Package) -> Option<(String, String)> {
    let purl_type = pkg
        .purl
        .as_deref()
        .and_then(|p| p.strip_prefix("pkg:"))
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    if purl_type == "cargo" {
        return Some(("cargo".into(), "osv:cargo".into()));
    }
    let mut parts = pkg.ecosystem.splitn(3, ':');
    let base = parts.next().unwrap_or("");
    let release = parts.next().unwrap_or("");
    let lang = |space: &str| Some((space.to_string(), format!("osv:{base}")));
    match base {
        "PyPI" => lang("pypi"),
        "npm" => lang("npm"),
        "Go" => lang("go"),
        "Maven" => lang("maven"),
        "RubyGems" => lang("gem"),
        "Packagist" => lang("composer"),
        "NuGet" => lang("nuget"),
        "Debian" | "Ubuntu" | "Alpine" if !release.is_empty() => {
            let distro = base.to_ascii_lowercase();
            Some((
                format!("{distro}:{release}"),
                format!("osv:{base}:{release}"),
            ))
        }
        _ => match purl_type {
            "pypi" => lang("pypi"),
            "npm" => lang("npm"),
            "golang" => lang("go"),
            "maven" => lang("maven"),
            "gem" => lang("gem"),
            _ => None,
        },
    }
}

fn event(
    label: &str,
    id: &str,
    ev: &serde_json::Map<String, Value>,
) -> Result<Option<Event>, Error> {
    let Some((k, v)) = ev.iter().next() else {
        return Err(Error::malformed(label, Some(id), "empty range event"));
    };
    let Some(v) = v.as_str() else {
        return Err(Error::malformed(
            label,
            Some(id),
            format!("event {k} is not a string"),
        ));
    };
    let v: std::sync::Arc<str> = v.trim().into();
    Ok(Some(match k.as_str() {
        "introduced" => Event::Introduced(v),
        "fixed" => Event::Fixed(v),
        "last_affected" => Event::LastAffected(v),
        "limit" => Event::Limit(v),
        _ => return Ok(None),
    }))
}

pub(crate) fn read_record(b: &mut Builder, label: &str, v: Value) -> Result<(), Error> {
    let id_hint = str_field(&v, "id").unwrap_or("?").to_string();
    let rec: Record =
        serde_json::from_value(v).map_err(|e| Error::malformed(label, Some(&id_hint), e))?;
    if rec.id.trim().is_empty() {
        return Err(Error::malformed(label, None, "OSV record with empty id"));
    }
    let id = rec.id.trim().to_string();
    let affected = rec.affected.unwrap_or_default();

    // Attribute the record to each source it contributes to.
    let mut record_sources: Vec<u16> = Vec::new();
    let mut spaces = Vec::with_capacity(affected.len());
    for a in &affected {
        let sp = a
            .package
            .as_ref()
            .filter(|p| !p.name.trim().is_empty())
            .and_then(space_of);
        if let Some((_, src)) = &sp {
            let s = b.source(src);
            if !record_sources.contains(&s) {
                record_sources.push(s);
            }
        }
        spaces.push(sp);
    }
    if record_sources.is_empty() {
        let s = b.source("osv:other");
        record_sources.push(s);
    }
    for s in &record_sources {
        b.record(*s, rec.modified.as_deref());
    }
    if rec
        .withdrawn
        .as_deref()
        .is_some_and(|w| !w.trim().is_empty())
    {
        // A withdrawn advisory never matches.
        return Ok(());
    }

    // The record's own CVSS vectors, then each affected package's.
    let own_cvss: Vec<Candidate> = rec
        .severity
        .iter()
        .flatten()
        .chain(affected.iter().flat_map(|a| a.severity.iter().flatten()))
        .filter(|s| s.kind.starts_with("CVSS_V"))
        .map(|s| Candidate {
            vector: s.score.clone(),
            stated: None,
            rank: rank::OSV,
            source: "osv".into(),
        })
        .collect();
    let word = rec
        .database_specific
        .as_ref()
        .and_then(|d| d.get("severity"))
        .and_then(Value::as_str)
        .and_then(Severity::from_word);
    let summary = rec
        .summary
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            rec.details
                .as_deref()
                .map(|d| crate::build::truncate(d.trim(), 400))
        })
        .unwrap_or_default();
    let refs: Vec<String> = rec
        .references
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.url)
        .collect();
    let aliases = rec.aliases.unwrap_or_default();
    let related = rec.related.unwrap_or_default();
    let adv = b.advisory(&id, |d| {
        extend_unique(&mut d.aliases, aliases);
        extend_unique(&mut d.related, related);
        if d.summary.is_empty() {
            d.summary = summary;
        }
        extend_unique(&mut d.references, refs);
        d.own_cvss.extend(own_cvss);
        if d.word.is_none() {
            d.word = word;
        }
    });

    for (a, sp) in affected.iter().zip(spaces) {
        let (Some((space, src_name)), Some(pkg)) = (sp, a.package.as_ref()) else {
            continue;
        };
        let source = b.source(&src_name);
        let mut ranges = Vec::new();
        for r in a.ranges.iter().flatten() {
            if r.kind != "SEMVER" && r.kind != "ECOSYSTEM" {
                continue; // GIT ranges name commits, not versions.
            }
            let mut events = Vec::with_capacity(r.events.len());
            for ev in &r.events {
                if let Some(e) = event(label, &id, ev)? {
                    events.push(e);
                }
            }
            if !events.is_empty() {
                ranges.push(events);
            }
        }
        let versions: Vec<Box<str>> = string_list_ref(a.versions.as_deref());
        if ranges.is_empty() && versions.is_empty() {
            continue;
        }
        let distro_severity = a
            .ecosystem_specific
            .as_ref()
            .and_then(|e| e.get("urgency"))
            .and_then(Value::as_str)
            .and_then(|u| Severity::from_word(u).map(|s| (s, u.into())));
        let informational = a
            .database_specific
            .as_ref()
            .and_then(|d| d.get("informational"))
            .and_then(Value::as_str)
            .map(Into::into);
        b.add(
            &space,
            &pkg.name,
            Entry {
                advisory: adv,
                ranges,
                versions,
                open_status: FindingStatus::Unfixed,
                note: None,
                distro_severity,
                informational,
                source,
            },
            false,
        );
    }
    Ok(())
}

fn string_list_ref(v: Option<&[String]>) -> Vec<Box<str>> {
    v.unwrap_or_default()
        .iter()
        .map(|s| s.trim().into())
        .collect()
}
