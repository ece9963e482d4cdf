//! Overlaying per-layer results into one image inventory.

use crate::{FileFacts, FileKind, LayerInventory, purl};
use inventory::{Distro, Ecosystem, Inventory, Package};
use oci::Digest;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Remove every path strictly below `dir` (`""` is the root).
fn remove_under(state: &mut BTreeMap<String, FileFacts>, dir: &str) {
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
pub fn merge(layers: &[(Digest, LayerInventory)]) -> Inventory {
    let mut state: BTreeMap<String, FileFacts> = BTreeMap::new();
    for (_, li) in layers {
        for d in &li.opaque_dirs {
            remove_under(&mut state, d);
        }
        for w in &li.whiteouts {
            state.remove(w);
            remove_under(&mut state, w);
        }
        for (path, facts) in &li.files {
            let mut facts = facts.clone();
            if let Some(prev) = state.get(path) {
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
            state.insert(path.clone(), facts);
        }
    }

    let distro = pick_distro(&state);
    let installed: HashSet<(Ecosystem, &str, &str)> = state
        .values()
        .filter(|f| !f.kind.is_lockfile())
        .flat_map(|f| f.packages.iter())
        .map(|p| (p.ecosystem, p.name.as_str(), p.version.as_str()))
        .collect();
    let mut packages: Vec<Package> = Vec::new();
    for facts in state.values() {
        for p in &facts.packages {
            if facts.kind.is_lockfile()
                && installed.contains(&(p.ecosystem, p.name.as_str(), p.version.as_str()))
            {
                continue;
            }
            let mut p = p.clone();
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
    Inventory { distro, packages }
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
