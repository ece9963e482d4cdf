//! Overlaying per-layer results into one image inventory.

use crate::{
    FileFacts, FileKind, ImageInventory, LayerInventory, Limits, MAX_NOTES, SkipKind, Skipped, purl,
};
use inventory::{Distro, Ecosystem, Inventory, Package};
use oci::Digest;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Remove every path strictly below `dir` (`""` is the root).
fn remove_under<V>(state: &mut BTreeMap<String, V>, dir: &str) {
    if dir.is_empty() {
        state.clear();
        return;
    }
    let lo = format!("{dir}/");
    let hi = format!("{dir}0"); // '0' is the byte after '/'
    let doomed: Vec<String> = state.range(lo..hi).map(|(k, _)| k.clone()).collect();
    for k in doomed {
        state.remove(&k);
    }
}

/// Merge layer results bottom-up (manifest order) into the image's
/// inventory, applying each layer's opaque directories and whiteouts to
/// the layers below it before adding its own files.
///
/// - A file at the same path in an upper layer replaces the lower one
///   whole (a new dpkg `status` is the new database). Packages it still
///   declares with the same name and version keep the layer that first
///   introduced them.
/// - Lockfile entries are dropped when the same package (ecosystem, name,
///   version) was found installed or built into a binary.
/// - OS package purls get the distribution's id as namespace and a
///   `distro=` qualifier.
///
/// Packages come out sorted by ecosystem, name, version, location.
///
/// This is the overlay alone: it neither caps the packages nor says what
/// was skipped. [`merge_image`] does both, and is what
/// [`crate::catalog_image`] returns.
///
/// Layers given by value are merged by moving their packages; borrowed
/// ones (`&[…]`) are copied first.
pub fn merge(layers: impl Into<Vec<(Digest, LayerInventory)>>) -> Inventory {
    overlay(layers.into(), usize::MAX).0
}

/// [`merge`], with the image's notes: every layer's skipped parts, except
/// notes about a file that an upper layer replaced or deleted (the file in
/// the image is then the upper one), and [`Limits::max_packages_per_image`]
/// applied. Packages from the OS package databases are taken first, so a
/// flood of language manifests cannot push them out of the inventory.
///
/// Layers given by value (as [`crate::catalog_image`] does) are merged by
/// moving their files and packages, never copying them: the result of a
/// layer of 50,000 packages is held once, not three times.
pub fn merge_image(
    layers: impl Into<Vec<(Digest, LayerInventory)>>,
    limits: &Limits,
) -> ImageInventory {
    let (inventory, incomplete) = overlay(layers.into(), limits.max_packages_per_image);
    ImageInventory {
        inventory,
        incomplete,
    }
}

fn overlay(layers: Vec<(Digest, LayerInventory)>, cap: usize) -> (Inventory, Vec<Skipped>) {
    let mut state: BTreeMap<String, FileFacts> = BTreeMap::new();
    // Notes about files, by the path an upper layer may replace.
    let mut file_notes: BTreeMap<String, Vec<Skipped>> = BTreeMap::new();
    let mut notes: Vec<Skipped> = Vec::new();
    for (digest, li) in layers {
        for d in &li.opaque_dirs {
            remove_under(&mut state, d);
            remove_under(&mut file_notes, d);
        }
        for w in &li.whiteouts {
            state.remove(w);
            remove_under(&mut state, w);
            file_notes.remove(w);
            remove_under(&mut file_notes, w);
        }
        for path in li.files.keys() {
            file_notes.remove(path);
        }
        let unnamed = li.stats.skipped.saturating_sub(li.skipped.len() as u64);
        for note in li.skipped {
            match note.file_path() {
                Some(p) => file_notes.entry(p.to_string()).or_default().push(note),
                None => notes.push(note),
            }
        }
        if unnamed > 0 {
            notes.push(Skipped {
                kind: SkipKind::Limit,
                layer: Some(digest.to_string()),
                path: None,
                detail: format!(
                    "{unnamed} more parts skipped (only the first {MAX_NOTES} of a layer are named)"
                ),
            });
        }
        for (path, mut facts) in li.files {
            if let Some(prev) = state.get(&path) {
                let first: HashMap<(Ecosystem, &str, &str), &str> = prev
                    .packages
                    .iter()
                    .map(|p| {
                        (
                            (p.ecosystem, p.name.as_str(), p.version.as_str()),
                            p.layer.as_str(),
                        )
                    })
                    .collect();
                for p in &mut facts.packages {
                    if let Some(l) = first.get(&(p.ecosystem, p.name.as_str(), p.version.as_str()))
                    {
                        p.layer = l.to_string();
                    }
                }
            }
            state.insert(path, facts);
        }
    }

    let distro = pick_distro(&state);
    // OS package databases first, so a flood of language manifests cannot
    // push them past the cap; the files are moved, not copied.
    let (mut files, rest): (Vec<FileFacts>, Vec<FileFacts>) =
        state.into_values().partition(|f| is_os_database(f.kind));
    files.extend(rest);
    drop_installed_lockfile_entries(&mut files);
    // Sized once: doubling a vector of 50,000 packages held up to half as
    // much again, and copied it on each growth.
    let total: usize = files.iter().map(|f| f.packages.len()).sum();
    let mut packages: Vec<Package> = Vec::with_capacity(total.min(cap));
    let mut capped = false;
    'files: for facts in files {
        for mut p in facts.packages {
            if packages.len() >= cap {
                capped = true;
                break 'files;
            }
            if p.ecosystem.is_os()
                && let Some(d) = &distro
            {
                p.purl = purl::with_distro(&p.purl, d);
            }
            packages.push(p);
        }
    }
    packages.sort_by(|a, b| {
        (a.ecosystem, &a.name, &a.version, &a.location).cmp(&(
            b.ecosystem,
            &b.name,
            &b.version,
            &b.location,
        ))
    });
    // Lockfiles can repeat an entry (npm v1 nesting, yarn aliases).
    packages.dedup_by(|a, b| {
        a.ecosystem == b.ecosystem
            && a.name == b.name
            && a.version == b.version
            && a.location == b.location
    });
    let mut incomplete: Vec<Skipped> = Vec::new();
    let mut seen: HashSet<Skipped> = HashSet::new();
    // Layer-wide notes first (in layer order), then files by path.
    for note in notes.into_iter().chain(file_notes.into_values().flatten()) {
        if seen.insert(note.clone()) {
            incomplete.push(note);
        }
    }
    if incomplete.len() > MAX_NOTES {
        let more = incomplete.len() - MAX_NOTES;
        incomplete.truncate(MAX_NOTES);
        incomplete.push(Skipped {
            kind: SkipKind::Limit,
            layer: None,
            path: None,
            detail: format!("{more} more skipped parts not named"),
        });
    }
    if capped {
        incomplete.push(Skipped {
            kind: SkipKind::Limit,
            layer: None,
            path: None,
            detail: format!(
                "more than {cap} packages in the image (max_packages_per_image); \
                 the rest not listed"
            ),
        });
    }
    (Inventory { distro, packages }, incomplete)
}

/// Lockfile entries for a package (ecosystem, name, version) also found
/// installed or built into a binary are dropped. The positions are noted
/// first and removed after, since the set of installed packages borrows
/// the very files being trimmed.
fn drop_installed_lockfile_entries(files: &mut [FileFacts]) {
    let doomed: Vec<(usize, usize)> = {
        let installed: HashSet<(Ecosystem, &str, &str)> = files
            .iter()
            .filter(|f| !f.kind.is_lockfile())
            .flat_map(|f| f.packages.iter())
            .map(|p| (p.ecosystem, p.name.as_str(), p.version.as_str()))
            .collect();
        files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.kind.is_lockfile())
            .flat_map(|(i, f)| {
                let installed = &installed;
                f.packages.iter().enumerate().filter_map(move |(j, p)| {
                    installed
                        .contains(&(p.ecosystem, p.name.as_str(), p.version.as_str()))
                        .then_some((i, j))
                })
            })
            .collect()
    };
    // Positions come in order, file by file: one pass over each file.
    for group in doomed.chunk_by(|a, b| a.0 == b.0) {
        let mut marks = group.iter().map(|&(_, j)| j).peekable();
        let mut at = 0;
        files[group[0].0].packages.retain(|_| {
            let drop = marks.next_if_eq(&at).is_some();
            at += 1;
            !drop
        });
    }
}

fn is_os_database(kind: FileKind) -> bool {
    matches!(
        kind,
        FileKind::DpkgStatus | FileKind::ApkInstalled | FileKind::RpmDb
    )
}

/// os-release first (`/etc`, then `/usr/lib`), then the older release files.
fn pick_distro(state: &BTreeMap<String, FileFacts>) -> Option<Distro> {
    let get = |path: &str| state.get(path).and_then(|f| f.distro.clone());
    if let Some(d) = get("etc/os-release").or_else(|| get("usr/lib/os-release")) {
        return Some(d);
    }
    if let Some(d) = get("etc/alpine-release") {
        return Some(d);
    }
    for p in [
        "etc/redhat-release",
        "etc/centos-release",
        "etc/rocky-release",
        "etc/almalinux-release",
        "etc/fedora-release",
    ] {
        if let Some(d) = get(p) {
            return Some(d);
        }
    }
    state
        .values()
        .find(|f| f.kind == FileKind::DebianVersion)
        .and_then(|f| f.distro.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npm(name: &str, version: &str, location: &str) -> Package {
        Package {
            ecosystem: Ecosystem::Npm,
            name: name.into(),
            version: version.into(),
            source_name: None,
            source_version: None,
            purl: format!("pkg:npm/{name}@{version}"),
            location: location.into(),
            layer: "sha256:00".into(),
        }
    }

    fn facts(kind: FileKind, location: &str, pkgs: &[(&str, &str)]) -> FileFacts {
        FileFacts {
            kind,
            packages: pkgs.iter().map(|(n, v)| npm(n, v, location)).collect(),
            distro: None,
        }
    }

    #[test]
    fn lockfile_entries_installed_elsewhere_are_dropped_from_every_lockfile() {
        let mut files = vec![
            facts(
                FileKind::NpmLock,
                "/a/package-lock.json",
                &[("x", "1"), ("y", "1"), ("z", "1")],
            ),
            facts(FileKind::NpmPackage, "/n/x/package.json", &[("x", "1")]),
            facts(FileKind::NpmPackage, "/n/z/package.json", &[("z", "1")]),
            facts(
                FileKind::YarnLock,
                "/b/yarn.lock",
                &[("z", "1"), ("z", "2"), ("x", "1")],
            ),
        ];
        drop_installed_lockfile_entries(&mut files);
        let left = |f: &FileFacts| -> Vec<String> {
            f.packages
                .iter()
                .map(|p| format!("{}@{}", p.name, p.version))
                .collect()
        };
        assert_eq!(left(&files[0]), ["y@1"]);
        assert_eq!(left(&files[1]), ["x@1"], "installed packages stay");
        assert_eq!(left(&files[2]), ["z@1"]);
        assert_eq!(
            left(&files[3]),
            ["z@2"],
            "another version is another package"
        );
    }

    #[test]
    fn layers_by_value_and_by_reference_merge_alike() {
        let d = Digest::sha256_of(b"layer");
        let mut li = LayerInventory::new();
        li.files.insert(
            "a/package-lock.json".into(),
            facts(
                FileKind::NpmLock,
                "/a/package-lock.json",
                &[("x", "1"), ("y", "1")],
            ),
        );
        li.files.insert(
            "n/x/package.json".into(),
            facts(FileKind::NpmPackage, "/n/x/package.json", &[("x", "1")]),
        );
        let layers = vec![(d, li)];
        let borrowed = merge(&layers[..]);
        let moved = merge(layers);
        assert_eq!(borrowed, moved);
        let got: Vec<_> = moved
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.location.as_str()))
            .collect();
        assert_eq!(
            got,
            [("x", "/n/x/package.json"), ("y", "/a/package-lock.json")]
        );
    }
}
