//! Building a database: walking inputs, dispatching files to the format
//! readers, merging, and finalising into a [`Store`].

use crate::cvss::{self, Candidate};
use crate::ingest;
use crate::model::{FindingStatus, Severity, SourceStatus};
use crate::store::{self, Advisory, Entry, Event, Meta, Store};
use crate::version::{VersionScheme, scheme_for};
use crate::{Error, ImportReport, Progress};
use inventory::Ecosystem;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Advisory data gathered from all sources before the rating is chosen.
#[derive(Default)]
pub(crate) struct AdvisoryDraft {
    pub id: String,
    pub aliases: Vec<String>,
    pub related: Vec<String>,
    pub summary: String,
    pub references: Vec<String>,
    pub own_cvss: Vec<Candidate>,
    pub word: Option<Severity>,
}

/// A package entry before de-duplication. `not_affected` drafts exist only
/// to out-rank older affected statements for the same release.
pub(crate) struct Draft {
    pub space: String,
    pub package: String,
    pub entry: Entry,
    pub not_affected: bool,
}

#[derive(Default)]
pub(crate) struct Builder {
    advisories: Vec<AdvisoryDraft>,
    by_id: HashMap<String, u32>,
    drafts: Vec<Draft>,
    sources: Vec<SourceStatus>,
    source_ids: HashMap<String, u16>,
    nvd: HashMap<String, Vec<Candidate>>,
    descriptions: HashMap<String, String>,
    /// Modification time of the file being read.
    pub file_date: Option<String>,
    pub skipped_files: Vec<String>,
}

/// Normalise a timestamp to `YYYY-MM-DDTHH:MM:SSZ` (UTC assumed when no
/// offset is given), so snapshots compare as strings. `None` for the zero
/// dates some exports carry and for anything unparseable.
pub(crate) fn norm_date(s: &str) -> Option<String> {
    let s = s.trim();
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10))
    {
        return None;
    }
    if s.starts_with("0001-") || s.starts_with("0000-") {
        return None;
    }
    let date = &s[..10];
    let time = if b.get(10).is_some_and(|c| *c == b'T' || *c == b' ')
        && digits(11..13)
        && digits(14..16)
    {
        let sec = if b.get(16) == Some(&b':') && digits(17..19) {
            &s[17..19]
        } else {
            "00"
        };
        format!("{}:{}:{sec}", &s[11..13], &s[14..16])
    } else {
        "00:00:00".to_string()
    };
    Some(format!("{date}T{time}Z"))
}

/// The version scheme for an index space (`npm`, `debian:12`, …).
pub(crate) fn scheme_for_space(space: &str) -> Option<&'static dyn VersionScheme> {
    match space.split_once(':') {
        Some((distro, _)) => distro_scheme(distro),
        None => scheme_for(Ecosystem::parse(space)?),
    }
}

/// The package ecosystem of a distribution id (os-release `ID`).
pub(crate) fn distro_ecosystem(distro: &str) -> Option<Ecosystem> {
    Some(match distro {
        "debian" | "ubuntu" => Ecosystem::Deb,
        "alpine" | "wolfi" | "chainguard" => Ecosystem::Apk,
        "rhel" | "centos" | "rocky" | "almalinux" | "fedora" | "opensuse" | "sles" | "amzn"
        | "ol" | "mariner" | "azurelinux" => Ecosystem::Rpm,
        _ => return None,
    })
}

fn distro_scheme(distro: &str) -> Option<&'static dyn VersionScheme> {
    scheme_for(distro_ecosystem(distro)?)
}

/// PEP 503 name normalisation for Python packages; NuGet and Composer
/// names are case-insensitive, so lower-cased; other ecosystems keep names
/// as they are.
pub(crate) fn normalize_name<'a>(space: &str, name: &'a str) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    let name = name.trim();
    match space {
        "pypi" => Cow::Owned(inventory::pep503_name(name)),
        "nuget" | "composer" if name.bytes().any(|b| b.is_ascii_uppercase()) => {
            Cow::Owned(name.to_ascii_lowercase())
        }
        _ => Cow::Borrowed(name),
    }
}

/// Sort range events by version (`introduced: "0"` first). Left as given
/// when a version does not parse.
pub(crate) fn sort_events(scheme: Option<&dyn VersionScheme>, events: &mut [Event]) {
    let Some(scheme) = scheme else { return };
    let key = |e: &Event| -> std::sync::Arc<str> {
        match e {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => {
                v.clone()
            }
        }
    };
    let ok = events.iter().all(|e| {
        let v = key(e);
        &*v == "0" || &*v == "*" || scheme.validate(&v).is_ok()
    });
    if !ok {
        return;
    }
    let rank = |v: &str| -> u8 {
        match v {
            "0" => 0,
            "*" => 2,
            _ => 1,
        }
    };
    events.sort_by(|a, b| {
        let (va, vb) = (key(a), key(b));
        rank(&va).cmp(&rank(&vb)).then_with(|| {
            if rank(&va) == 1 && rank(&vb) == 1 {
                scheme.compare(&va, &vb).unwrap_or(Ordering::Equal)
            } else {
                Ordering::Equal
            }
        })
    });
}

impl Builder {
    pub fn source(&mut self, name: &str) -> u16 {
        if let Some(&i) = self.source_ids.get(name) {
            return i;
        }
        let i = self.sources.len() as u16;
        self.sources.push(SourceStatus {
            name: name.to_string(),
            records: 0,
            entries: 0,
            snapshot: None,
            file_date: None,
        });
        self.source_ids.insert(name.to_string(), i);
        i
    }

    /// Count one record of a source, with the record's own date if any.
    pub fn record(&mut self, source: u16, date: Option<&str>) {
        let fd = self.file_date.clone();
        let s = &mut self.sources[source as usize];
        s.records += 1;
        if let Some(d) = date.and_then(norm_date)
            && s.snapshot.as_ref().is_none_or(|cur| d > *cur)
        {
            s.snapshot = Some(d);
        }
        if let Some(fd) = fd
            && s.file_date.as_ref().is_none_or(|cur| fd > *cur)
        {
            s.file_date = Some(fd);
        }
    }

    /// Get or create the advisory with this id; `f` merges new data in.
    pub fn advisory(&mut self, id: &str, f: impl FnOnce(&mut AdvisoryDraft)) -> u32 {
        let idx = match self.by_id.get(id) {
            Some(&i) => i,
            None => {
                let i = self.advisories.len() as u32;
                self.advisories.push(AdvisoryDraft {
                    id: id.to_string(),
                    ..Default::default()
                });
                self.by_id.insert(id.to_string(), i);
                i
            }
        };
        f(&mut self.advisories[idx as usize]);
        idx
    }

    pub fn add(&mut self, space: &str, package: &str, mut entry: Entry, not_affected: bool) {
        let scheme = scheme_for_space(space);
        for r in &mut entry.ranges {
            sort_events(scheme, r);
        }
        // Drop listed versions that the ranges already cover.
        if let Some(scheme) = scheme
            && !entry.versions.is_empty()
            && !entry.ranges.is_empty()
        {
            let ranges = entry.ranges.clone();
            entry
                .versions
                .retain(|v| !matches!(crate::matcher::in_ranges(scheme, v, &ranges), Ok(Some(_))));
        }
        if !not_affected {
            self.sources[entry.source as usize].entries += 1;
        }
        let package = normalize_name(space, package).into_owned();
        self.drafts.push(Draft {
            space: space.to_string(),
            package,
            entry,
            not_affected,
        });
    }

    pub fn add_cvss(&mut self, cve: &str, c: Candidate) {
        let list = self.nvd.entry(cve.to_string()).or_default();
        if !list
            .iter()
            .any(|x| x.vector == c.vector && x.rank == c.rank)
        {
            list.push(c);
        }
    }

    pub fn add_description(&mut self, cve: &str, text: &str) {
        let text = text.trim();
        if !text.is_empty() {
            self.descriptions
                .entry(cve.to_string())
                .or_insert_with(|| truncate(text, 400));
        }
    }

    fn dedupe(&mut self) -> Vec<Draft> {
        let drafts = std::mem::take(&mut self.drafts);
        let snap = |src: u16| self.sources[src as usize].snapshot.clone();
        let mut out: Vec<Draft> = Vec::with_capacity(drafts.len());
        let mut pos: HashMap<(String, String, u32), usize> = HashMap::new();
        for d in drafts {
            if !d.space.contains(':') {
                if !d.not_affected {
                    out.push(d);
                }
                continue;
            }
            let key = (d.space.clone(), d.package.clone(), d.entry.advisory);
            match pos.get(&key) {
                None => {
                    pos.insert(key, out.len());
                    out.push(d);
                }
                Some(&i) => {
                    let cur = &out[i];
                    let (sn, sc) = (snap(d.entry.source), snap(cur.entry.source));
                    // Dated beats undated, newer beats older; ties keep the first.
                    let newer = match (&sn, &sc) {
                        (Some(a), Some(b)) => a > b,
                        (Some(_), None) => true,
                        _ => false,
                    };
                    let (winner, loser) = if newer {
                        let old = std::mem::replace(&mut out[i], d);
                        (i, old)
                    } else {
                        (i, d)
                    };
                    refine(&mut out[winner], &loser);
                }
            }
        }
        out.retain(|d| !d.not_affected);
        out
    }

    /// Read one input path (file, directory or archive).
    pub fn read_path(
        &mut self,
        path: &Path,
        progress: &mut ProgressState<'_>,
    ) -> Result<(), Error> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            children.sort();
            for c in children {
                self.read_path(&c, progress)?;
            }
            return Ok(());
        }
        self.file_date = meta
            .modified()
            .ok()
            .map(time::OffsetDateTime::from)
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .and_then(|s| norm_date(&s));
        let display = path.display().to_string();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".zip") {
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))
                .map_err(|e| Error::malformed(&display, None, e))?;
            for i in 0..zip.len() {
                let mut entry = zip
                    .by_index(i)
                    .map_err(|e| Error::malformed(&display, None, e))?;
                if entry.is_dir() {
                    continue;
                }
                let ename = entry.name().to_string();
                let label = format!("{display}!{ename}");
                let mut buf = Vec::with_capacity(entry.size() as usize);
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| Error::malformed(&label, None, e))?;
                progress.advance(entry.compressed_size(), &label);
                self.read_bytes(&label, &ename, buf)?;
            }
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".tar") {
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let reader: Box<dyn Read> = if name.ends_with(".tar") {
                Box::new(std::io::BufReader::new(f))
            } else {
                Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))
            };
            let mut ar = tar::Archive::new(reader);
            let entries = ar
                .entries()
                .map_err(|e| Error::malformed(&display, None, e))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| Error::malformed(&display, None, e))?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let ename = entry
                    .path()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let label = format!("{display}!{ename}");
                let mut buf = Vec::new();
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| Error::malformed(&label, None, e))?;
                self.read_bytes(&label, &ename, buf)?;
            }
            progress.advance(meta.len(), &display);
        } else if let Some(inner) = name.strip_suffix(".gz") {
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let mut buf = Vec::new();
            flate2::read::GzDecoder::new(std::io::BufReader::new(f))
                .read_to_end(&mut buf)
                .map_err(|e| Error::malformed(&display, None, e))?;
            progress.advance(meta.len(), &display);
            self.read_bytes(&display, inner, buf)?;
        } else {
            let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            progress.advance(meta.len(), &display);
            self.read_bytes(&display, &name, buf)?;
        }
        Ok(())
    }

    /// Dispatch one file's bytes by name and content.
    pub fn read_bytes(&mut self, label: &str, name: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let base = name.rsplit('/').next().unwrap_or(name);
        let json_like = !base.contains('.')
            && bytes
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b'{');
        if base.ends_with(".json") || json_like {
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::malformed(label, None, e))?;
            return ingest::read_json(self, label, value);
        }
        if base.ends_with(".md")
            || base.ends_with(".tsv")
            || base.ends_with(".yaml")
            || base.ends_with(".yml")
            || base.starts_with('.')
        {
            self.skipped_files.push(label.to_string());
            return Ok(());
        }
        // Text: the Debian tracker's list formats are recognised by content.
        match std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| ingest::debian::sniff(text).map(|kind| (kind, text)))
        {
            Some((kind, text)) => ingest::debian::read_list(self, label, kind, text),
            None => self.unrecognised(label, base),
        }
    }

    /// A file that is not advisory data. Published archives carry a few
    /// such files (licences, images, CI files) beside the records, so
    /// inside an archive it is skipped; named directly, or found in a
    /// directory, it fails the import, unless it is a licence or README.
    fn unrecognised(&mut self, label: &str, base: &str) -> Result<(), Error> {
        let upper = base.to_ascii_uppercase();
        let in_archive = label.contains('!');
        if in_archive
            || ["README", "LICENSE", "LICENCE", "COPYING", "NOTICE"]
                .iter()
                .any(|p| upper.starts_with(p))
        {
            self.skipped_files.push(label.to_string());
            return Ok(());
        }
        Err(Error::malformed(
            label,
            None,
            "not advisory data (expected OSV, Alpine secdb, Debian tracker, CVE 5 or NVD JSON)",
        ))
    }

    /// Resolve ratings, de-duplicate, and produce the store.
    pub fn finish(mut self, built_at: String) -> Store {
        let drafts = self.dedupe();
        let mut advisories = Vec::with_capacity(self.advisories.len());
        for a in std::mem::take(&mut self.advisories) {
            let mut cands = a.own_cvss.clone();
            for id in std::iter::once(&a.id).chain(a.aliases.iter()) {
                if let Some(list) = self.nvd.get(id) {
                    cands.extend(list.iter().cloned());
                }
            }
            let chosen = cvss::choose(&cands);
            let (severity, severity_source) = match (&chosen, a.word) {
                (Some(c), _) => (Severity::from_score(c.score), format!("cvss:{}", c.source)),
                (None, Some(w)) => (w, "ghsa".to_string()),
                (None, None) => (Severity::Unknown, "none".to_string()),
            };
            let mut summary = a.summary;
            if summary.is_empty() {
                for id in std::iter::once(&a.id).chain(a.aliases.iter()) {
                    if let Some(d) = self.descriptions.get(id) {
                        summary = d.clone();
                        break;
                    }
                }
            }
            // `related` is kept for distribution advisories (the CVEs a DSA
            // fixes); other records' related lists name other databases'
            // ids and are not carried into findings.
            let distro_adv = ["DSA-", "DLA-", "DTSA-"]
                .iter()
                .any(|p| a.id.starts_with(p));
            advisories.push(Advisory {
                id: a.id,
                aliases: a.aliases,
                related: if distro_adv { a.related } else { Vec::new() },
                summary,
                references: a.references,
                severity,
                severity_source,
                cvss: chosen,
            });
        }
        let mut index: HashMap<String, HashMap<String, Vec<Entry>>> = HashMap::new();
        for d in drafts {
            index
                .entry(d.space)
                .or_default()
                .entry(d.package)
                .or_default()
                .push(d.entry);
        }
        for pkgs in index.values_mut() {
            for list in pkgs.values_mut() {
                list.shrink_to_fit();
            }
            pkgs.shrink_to_fit();
        }
        // Entry counts after de-duplication.
        for s in &mut self.sources {
            s.entries = 0;
        }
        for pkgs in index.values() {
            for list in pkgs.values() {
                for e in list {
                    self.sources[e.source as usize].entries += 1;
                }
            }
        }
        Store {
            meta: Meta {
                format: store::FORMAT,
                version: String::new(),
                built_at,
                sources: self.sources,
            },
            advisories,
            index,
        }
    }
}

/// When the kept statement and an older one both say "no fix", the older
/// one may say why (Debian's `<no-dsa>`, `<ignored>`); keep that reason.
fn refine(kept: &mut Draft, other: &Draft) {
    if kept.not_affected || other.not_affected {
        return;
    }
    let no_fix = |e: &Entry| {
        e.ranges
            .iter()
            .all(|r| !r.iter().any(|ev| matches!(ev, Event::Fixed(_))))
    };
    if no_fix(&kept.entry) && no_fix(&other.entry) {
        if kept.entry.note.is_none() {
            kept.entry.note = other.entry.note.clone();
        }
        if kept.entry.open_status == FindingStatus::Unfixed {
            kept.entry.open_status = other.entry.open_status;
        }
    }
    if kept.entry.distro_severity.is_none() {
        kept.entry.distro_severity = other.entry.distro_severity.clone();
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Byte-based progress over all inputs.
pub(crate) struct ProgressState<'a> {
    pub done: u64,
    pub total: u64,
    pub callback: &'a mut dyn FnMut(&Progress),
}

impl ProgressState<'_> {
    fn advance(&mut self, bytes: u64, current: &str) {
        self.done = (self.done + bytes).min(self.total);
        (self.callback)(&Progress {
            bytes_done: self.done,
            bytes_total: self.total,
            current: current.to_string(),
        });
    }
}

fn total_size(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| total_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Build a database from `paths` and make it current. See [`crate::import`].
pub(crate) fn import(
    data_dir: &Path,
    paths: &[PathBuf],
    progress: &mut dyn FnMut(&Progress),
) -> Result<ImportReport, Error> {
    let started = std::time::Instant::now();
    if paths.is_empty() {
        return Err(Error::NoInput);
    }
    let total = paths.iter().map(|p| total_size(p)).sum();
    let mut state = ProgressState {
        done: 0,
        total,
        callback: progress,
    };
    let mut b = Builder::default();
    for p in paths {
        b.read_path(p, &mut state)?;
    }
    if b.sources.iter().all(|s| s.records == 0) {
        return Err(Error::NoInput);
    }
    let skipped = std::mem::take(&mut b.skipped_files);
    let built_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats");
    let mut store = b.finish(built_at);
    let version = store::commit(data_dir, &mut store)?;
    let status = crate::Database::status_of(&store);
    Ok(ImportReport {
        version,
        status,
        skipped_files: skipped,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Helper used by readers: push unique strings.
pub(crate) fn extend_unique(dst: &mut Vec<String>, src: impl IntoIterator<Item = String>) {
    let mut seen: HashSet<String> = dst.iter().cloned().collect();
    for s in src {
        if !s.is_empty() && seen.insert(s.clone()) {
            dst.push(s);
        }
    }
}
