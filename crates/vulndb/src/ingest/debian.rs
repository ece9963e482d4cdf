//! The Debian security tracker: its JSON export and its source text files
//! (`data/CVE/list`, `data/DSA/list`, `data/DLA/list`).
//!
//! Entries are keyed on the source package per release (`debian:12`). The
//! text format's plain `- pkg …` line describes unstable and, as in the
//! tracker, applies to every release that has no `[release]` line of its
//! own. States: a version = fixed in it (`0` = never affected);
//! `<not-affected>` = not affected; `<unfixed>`, `<undetermined>`,
//! `<no-dsa>`, `<postponed>` = open; `<ignored>`, `<end-of-life>` = will not
//! be fixed; `<removed>`, `<itp>` = no statement.

use crate::Error;
use crate::build::{Builder, extend_unique};
use crate::model::{FindingStatus, Severity};
use crate::store::{Entry, Event};
use serde_json::Value;

/// Codename → release key used in index spaces (`debian:<key>`).
pub const RELEASES: [(&str, &str); 10] = [
    ("wheezy", "7"),
    ("jessie", "8"),
    ("stretch", "9"),
    ("buster", "10"),
    ("bullseye", "11"),
    ("bookworm", "12"),
    ("trixie", "13"),
    ("forky", "14"),
    ("duke", "15"),
    ("sid", "sid"),
];

/// Releases a plain (unstable) line is applied to when they have no line
/// of their own.
const DEFAULT_RELEASES: [&str; 6] = ["buster", "bullseye", "bookworm", "trixie", "forky", "sid"];

pub fn release_key(codename: &str) -> Option<&'static str> {
    RELEASES
        .iter()
        .find(|(c, _)| *c == codename)
        .map(|(_, k)| *k)
}

/// Which tracker list a text file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    Cve,
    Advisories,
}

pub(crate) fn sniff(text: &str) -> Option<ListKind> {
    let first = text.lines().find(|l| !l.trim().is_empty())?;
    if first.starts_with("CVE-") {
        return Some(ListKind::Cve);
    }
    if first.starts_with('[') {
        let after = first.split_once("] ")?.1;
        if after.starts_with("DSA-") || after.starts_with("DLA-") || after.starts_with("DTSA-") {
            return Some(ListKind::Advisories);
        }
    }
    None
}

/// What one tracker statement says about a package in a release.
#[derive(Debug, Clone, PartialEq)]
enum State {
    Fixed(String),
    NotAffected,
    Open(FindingStatus, Option<String>),
    NoStatement,
}

/// Parse `<state>|version (notes)` into a state and an urgency.
fn parse_state(rest: &str) -> (State, Option<(Severity, String)>) {
    let rest = rest.trim();
    let (head, notes) = match rest.find('(') {
        Some(i) => (
            rest[..i].trim(),
            rest[i + 1..].trim_end().trim_end_matches(')').trim(),
        ),
        None => (rest, ""),
    };
    let mut urgency = None;
    for tok in notes.split(';') {
        let t = tok.trim();
        if matches!(
            t.trim_end_matches('*'),
            "unimportant" | "low" | "medium" | "high"
        ) {
            urgency = Severity::from_word(t).map(|s| (s, t.to_string()));
        }
    }
    let note = |kind: &str| {
        let n = notes.trim();
        Some(if n.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}: {n}")
        })
    };
    let state = match head {
        "" | "<unfixed>" => State::Open(FindingStatus::Unfixed, None),
        "<not-affected>" => State::NotAffected,
        "<no-dsa>" => State::Open(FindingStatus::Unfixed, note("no-dsa")),
        "<postponed>" => State::Open(FindingStatus::Unfixed, note("postponed")),
        "<undetermined>" => State::Open(FindingStatus::Unfixed, note("undetermined")),
        "<ignored>" => State::Open(FindingStatus::WontFix, note("ignored")),
        "<end-of-life>" => State::Open(FindingStatus::WontFix, note("end-of-life")),
        "<removed>" | "<itp>" => State::NoStatement,
        h if h.starts_with('<') => {
            State::Open(FindingStatus::Unfixed, note(h.trim_matches(['<', '>'])))
        }
        "0" => State::NotAffected,
        v => State::Fixed(v.split_whitespace().next().unwrap_or(v).to_string()),
    };
    (state, urgency)
}

fn add_state(
    b: &mut Builder,
    release: &str,
    package: &str,
    adv: u32,
    source: u16,
    state: &State,
    urgency: Option<(Severity, String)>,
) {
    let Some(key) = release_key(release) else {
        return;
    };
    let space = format!("debian:{key}");
    let (ranges, open_status, note, not_affected) = match state {
        State::NoStatement => return,
        State::NotAffected => (Vec::new(), FindingStatus::Unfixed, None, true),
        State::Fixed(v) => (
            vec![vec![
                Event::Introduced("0".into()),
                Event::Fixed(v.as_str().into()),
            ]],
            FindingStatus::Unfixed,
            None,
            false,
        ),
        State::Open(status, note) => (
            vec![vec![Event::Introduced("0".into())]],
            *status,
            note.clone(),
            false,
        ),
    };
    b.add(
        &space,
        package,
        Entry {
            advisory: adv,
            ranges,
            versions: Vec::new(),
            open_status,
            note: note.map(Into::into),
            distro_severity: urgency.map(|(s, w)| (s, w.into())),
            informational: None,
            source,
        },
        not_affected,
    );
}

/// A tracker urgency: the rating and the word it came from.
type Urgency = Option<(Severity, String)>;

/// Per-package statements of one list entry: the unstable line and the
/// per-release lines, in order of appearance.
#[derive(Default)]
struct PkgLines {
    name: String,
    sid: Option<(State, Urgency)>,
    releases: Vec<(String, State, Urgency)>,
}

/// Parse `- pkg rest` or `[release] - pkg rest`.
fn package_line(line: &str) -> Option<(Option<&str>, &str, &str)> {
    let (release, rest) = if let Some(r) = line.strip_prefix('[') {
        let (rel, rest) = r.split_once(']')?;
        (Some(rel.trim()), rest.trim_start())
    } else {
        (None, line)
    };
    let rest = rest.strip_prefix("- ")?;
    let rest = rest.trim_start();
    let (pkg, state) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    Some((release, pkg, state))
}

fn flush_packages(
    b: &mut Builder,
    adv: u32,
    source: u16,
    pkgs: Vec<PkgLines>,
    apply_default: bool,
) {
    for p in pkgs {
        let mut seen: Vec<&str> = Vec::new();
        for (rel, state, urg) in &p.releases {
            add_state(b, rel, &p.name, adv, source, state, urg.clone());
            seen.push(rel);
        }
        if let Some((state, urg)) = &p.sid {
            let targets: &[&str] = if apply_default {
                &DEFAULT_RELEASES
            } else {
                &["sid"]
            };
            for rel in targets {
                if !seen.contains(rel) {
                    add_state(b, rel, &p.name, adv, source, state, urg.clone());
                }
            }
        }
    }
}

pub(crate) fn read_list(
    b: &mut Builder,
    label: &str,
    kind: ListKind,
    text: &str,
) -> Result<(), Error> {
    match kind {
        ListKind::Cve => read_cve_list(b, label, text),
        ListKind::Advisories => read_advisory_list(b, label, text),
    }
}

struct CveEntry {
    id: String,
    summary: String,
    related: Vec<String>,
    references: Vec<String>,
    packages: Vec<PkgLines>,
    skip: bool,
}

fn read_cve_list(b: &mut Builder, label: &str, text: &str) -> Result<(), Error> {
    let source = b.source("debian-tracker:CVE");
    let mut cur: Option<CveEntry> = None;
    let finish = |b: &mut Builder, e: CveEntry| {
        b.record(source, None);
        if e.skip {
            return;
        }
        let CveEntry {
            id,
            summary,
            related,
            references,
            packages,
            ..
        } = e;
        let adv = b.advisory(&id, |d| {
            if d.summary.is_empty() {
                d.summary = summary;
            }
            extend_unique(&mut d.related, related);
            extend_unique(&mut d.references, references);
        });
        flush_packages(b, adv, source, packages, true);
    };
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            if let Some(e) = cur.take() {
                finish(b, e);
            }
            let (id, rest) = line.split_once(' ').unwrap_or((line, ""));
            if !id.starts_with("CVE-") {
                return Err(Error::malformed(
                    label,
                    Some(&format!("line {}", n + 1)),
                    format!("expected a CVE header, found {line:?}"),
                ));
            }
            let rest = rest.trim();
            let summary = rest
                .trim_start_matches(['(', '['])
                .trim_end_matches([')', ']'])
                .trim_end_matches(" ...")
                .trim()
                .to_string();
            cur = Some(CveEntry {
                id: id.to_string(),
                summary,
                related: Vec::new(),
                references: Vec::new(),
                packages: Vec::new(),
                skip: false,
            });
            continue;
        }
        let Some(e) = cur.as_mut() else {
            return Err(Error::malformed(
                label,
                Some(&format!("line {}", n + 1)),
                "annotation before the first CVE header",
            ));
        };
        let t = line.trim();
        if let Some(refs) = t.strip_prefix('{') {
            e.related.extend(
                refs.trim_end_matches('}')
                    .split_whitespace()
                    .map(str::to_string),
            );
        } else if let Some(note) = t.strip_prefix("NOTE:") {
            if let Some(url) = note.split_whitespace().find(|w| w.starts_with("https://")) {
                e.references.push(url.to_string());
            }
        } else if t.starts_with("TODO:") {
        } else if t == "RESERVED" || t == "REJECTED" || t.starts_with("NOT-FOR-US") {
            e.skip = true;
        } else if let Some((release, pkg, rest)) = package_line(t) {
            let (state, urgency) = parse_state(rest);
            let idx = match e.packages.iter().position(|p| p.name == pkg) {
                Some(i) => i,
                None => {
                    e.packages.push(PkgLines {
                        name: pkg.to_string(),
                        ..Default::default()
                    });
                    e.packages.len() - 1
                }
            };
            let p = &mut e.packages[idx];
            match release {
                None => p.sid = Some((state, urgency)),
                Some("experimental") => {}
                Some(r) => p.releases.push((r.to_string(), state, urgency)),
            }
        }
    }
    if let Some(e) = cur.take() {
        finish(b, e);
    }
    Ok(())
}

fn month(m: &str) -> Option<u8> {
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    months.iter().position(|x| *x == m).map(|i| i as u8 + 1)
}

fn read_advisory_list(b: &mut Builder, label: &str, text: &str) -> Result<(), Error> {
    struct Adv {
        id: String,
        date: Option<String>,
        summary: String,
        related: Vec<String>,
        packages: Vec<PkgLines>,
    }
    let mut cur: Option<Adv> = None;
    let finish = |b: &mut Builder, a: Adv| {
        let kind = a.id.split('-').next().unwrap_or("DSA").to_string();
        let source = b.source(&format!("debian-tracker:{kind}"));
        b.record(source, a.date.as_deref());
        let Adv {
            id,
            summary,
            related,
            packages,
            ..
        } = a;
        let adv = b.advisory(&id, |d| {
            if d.summary.is_empty() {
                d.summary = summary;
            }
            extend_unique(&mut d.related, related);
        });
        flush_packages(b, adv, source, packages, false);
    };
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(r) = line.strip_prefix('[') {
            if let Some(e) = cur.take() {
                finish(b, e);
            }
            let bad = || {
                Error::malformed(
                    label,
                    Some(&format!("line {}", n + 1)),
                    format!("expected `[DD Mon YYYY] DSA-N pkg - text`, found {line:?}"),
                )
            };
            let (date, rest) = r.split_once(']').ok_or_else(bad)?;
            let mut d = date.split_whitespace();
            let date = match (d.next(), d.next().and_then(month), d.next()) {
                (Some(day), Some(m), Some(y)) if day.len() <= 2 && y.len() == 4 => {
                    Some(format!("{y}-{m:02}-{:0>2}", day))
                }
                _ => return Err(bad()),
            };
            let rest = rest.trim();
            let (head, desc) = rest.split_once(" - ").unwrap_or((rest, ""));
            let mut words = head.split_whitespace();
            let id = words.next().ok_or_else(bad)?;
            let pkg = words.next().unwrap_or("");
            cur = Some(Adv {
                id: id.to_string(),
                date,
                summary: if pkg.is_empty() {
                    desc.to_string()
                } else {
                    format!("{pkg} - {desc}")
                },
                related: Vec::new(),
                packages: Vec::new(),
            });
            continue;
        }
        let Some(a) = cur.as_mut() else {
            return Err(Error::malformed(
                label,
                Some(&format!("line {}", n + 1)),
                "annotation before the first advisory header",
            ));
        };
        let t = line.trim();
        if let Some(refs) = t.strip_prefix('{') {
            a.related.extend(
                refs.trim_end_matches('}')
                    .split_whitespace()
                    .map(str::to_string),
            );
        } else if let Some((release, pkg, rest)) = package_line(t) {
            let (state, urgency) = parse_state(rest);
            let lines = PkgLines {
                name: pkg.to_string(),
                ..Default::default()
            };
            a.packages.push(lines);
            let p = a.packages.last_mut().expect("just pushed");
            match release {
                None => p.sid = Some((state, urgency)),
                Some(r) => p.releases.push((r.to_string(), state, urgency)),
            }
        }
    }
    if let Some(e) = cur.take() {
        finish(b, e);
    }
    Ok(())
}

pub(crate) fn looks_like_tracker_json(obj: &serde_json::Map<String, Value>) -> bool {
    obj.values().take(3).all(|pkg| {
        pkg.as_object().is_some_and(|cves| {
            cves.values()
                .take(2)
                .all(|c| c.get("releases").is_some_and(Value::is_object))
        })
    }) && !obj.is_empty()
}

/// The tracker's JSON export: `{pkg: {CVE: {description, releases:
/// {codename: {status, fixed_version, urgency, nodsa, nodsa_reason}}}}}`.
pub(crate) fn read_tracker_json(b: &mut Builder, label: &str, v: &Value) -> Result<(), Error> {
    let source = b.source("debian-tracker:json");
    let obj = v.as_object().expect("checked by caller");
    for (pkg, cves) in obj {
        let Some(cves) = cves.as_object() else {
            return Err(Error::malformed(
                label,
                Some(pkg),
                "package value is not an object",
            ));
        };
        for (cve, data) in cves {
            b.record(source, None);
            let Some(releases) = data.get("releases").and_then(Value::as_object) else {
                return Err(Error::malformed(
                    label,
                    Some(&format!("{pkg}/{cve}")),
                    "missing `releases`",
                ));
            };
            let desc = data
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let adv = b.advisory(cve, |d| {
                if d.summary.is_empty() {
                    d.summary = crate::build::truncate(&desc, 400);
                }
            });
            for (codename, r) in releases {
                let status = r.get("status").and_then(Value::as_str).unwrap_or("");
                let fixed = r.get("fixed_version").and_then(Value::as_str);
                let urgency_word = r.get("urgency").and_then(Value::as_str).unwrap_or("");
                let nodsa = r.get("nodsa").and_then(Value::as_str).unwrap_or("");
                let reason = r.get("nodsa_reason").and_then(Value::as_str).unwrap_or("");
                let note = |kind: &str| {
                    Some(if nodsa.is_empty() {
                        kind.to_string()
                    } else {
                        format!("{kind}: {nodsa}")
                    })
                };
                let state = match (status, fixed) {
                    ("resolved", Some("0")) => State::NotAffected,
                    ("resolved", Some(v)) => State::Fixed(v.to_string()),
                    ("resolved", None) => State::NotAffected,
                    (_, _) if urgency_word == "end-of-life" => {
                        State::Open(FindingStatus::WontFix, Some("end-of-life".into()))
                    }
                    (_, _) if reason == "ignored" => {
                        State::Open(FindingStatus::WontFix, note("ignored"))
                    }
                    (_, _) if reason == "postponed" => {
                        State::Open(FindingStatus::Unfixed, note("postponed"))
                    }
                    (_, _) if !nodsa.is_empty() => {
                        State::Open(FindingStatus::Unfixed, note("no-dsa"))
                    }
                    ("undetermined", _) => {
                        State::Open(FindingStatus::Unfixed, Some("undetermined".into()))
                    }
                    ("open", _) => State::Open(FindingStatus::Unfixed, None),
                    (other, _) => {
                        return Err(Error::malformed(
                            label,
                            Some(&format!("{pkg}/{cve}/{codename}")),
                            format!("unknown status {other:?}"),
                        ));
                    }
                };
                let urgency =
                    Severity::from_word(urgency_word).map(|s| (s, urgency_word.to_string()));
                add_state(b, codename, pkg, adv, source, &state, urgency);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_from_tracker_lines() {
        assert_eq!(
            parse_state("<no-dsa> (Minor issue)").0,
            State::Open(FindingStatus::Unfixed, Some("no-dsa: Minor issue".into()))
        );
        assert_eq!(
            parse_state("<ignored> (Minor issue, too intrusive to backport)").0,
            State::Open(
                FindingStatus::WontFix,
                Some("ignored: Minor issue, too intrusive to backport".into())
            )
        );
        let (s, u) = parse_state("1.24.0-2 (unimportant; bug #1053770)");
        assert_eq!(s, State::Fixed("1.24.0-2".into()));
        assert_eq!(u, Some((Severity::Low, "unimportant".into())));
        assert_eq!(
            parse_state("<not-affected> (Vulnerable code not present)").0,
            State::NotAffected
        );
        assert_eq!(parse_state("<removed>").0, State::NoStatement);
        assert_eq!(
            package_line("[bookworm] - openssl 3.0.14-1~deb12u1"),
            Some((Some("bookworm"), "openssl", "3.0.14-1~deb12u1"))
        );
        assert_eq!(
            package_line("- curl 8.3.0-3"),
            Some((None, "curl", "8.3.0-3"))
        );
    }
}
