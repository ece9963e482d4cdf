//! Catalog the real test images and compare with the native tools' view of
//! the same files: dpkg-query, pip list, npm ls, Cargo.lock.

mod common;

use catalog::{CATALOG_VERSION, LayerCache, Limits, MemoryCache};
use common::*;
use inventory::Ecosystem;
use std::collections::BTreeSet;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn dpkg_inventory_equals_dpkg_query() {
    transport::require_test_images!(dir);
    let inv = catalog_tag("bookworm-base", &MemoryCache::new());
    let admindir = test_images().join("rootfs/bookworm/var/lib/dpkg");
    let out = run(Command::new("dpkg-query")
        .arg(format!("--admindir={}", admindir.display()))
        .args([
            "-W",
            "-f",
            "${db:Status-Abbrev}\t${Package}\t${Version}\t${source:Package}\t${source:Version}\n",
        ]));
    let mut want = BTreeSet::new();
    let mut want_src = BTreeSet::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f[0].trim() != "ii" {
            continue;
        }
        want.insert((f[1].to_string(), f[2].to_string()));
        want_src.insert((f[1].to_string(), f[3].to_string(), f[4].to_string()));
    }
    assert!(
        want.len() > 80,
        "debootstrap rootfs has {} packages?",
        want.len()
    );
    assert_eq!(name_versions(&inv, Ecosystem::Deb), want);
    let got_src: BTreeSet<(String, String, String)> = inv
        .packages
        .iter()
        .filter(|p| p.ecosystem == Ecosystem::Deb)
        .map(|p| {
            (
                p.name.clone(),
                p.source_name.clone().unwrap(),
                p.source_version
                    .clone()
                    .unwrap_or_else(|| p.version.clone()),
            )
        })
        .collect();
    assert_eq!(got_src, want_src);
    let d = inv.distro.as_ref().expect("distro");
    assert_eq!((d.id.as_str(), d.version_id.as_str()), ("debian", "12"));
    assert_eq!(d.codename.as_deref(), Some("bookworm"));
    let libc = inv.packages.iter().find(|p| p.name == "libc6").unwrap();
    assert!(
        libc.purl.starts_with("pkg:deb/debian/libc6@"),
        "{}",
        libc.purl
    );
    assert!(libc.purl.contains("distro=debian-12"), "{}", libc.purl);
    assert_eq!(libc.location, "/var/lib/dpkg/status");
    // Only dpkg packages in a minbase rootfs.
    assert!(
        inv.packages.iter().all(|p| p.ecosystem == Ecosystem::Deb),
        "{:?}",
        inv.packages
            .iter()
            .filter(|p| p.ecosystem != Ecosystem::Deb)
            .collect::<Vec<_>>()
    );
}

fn pep503(s: &str) -> String {
    catalog::purl::pypi_name(s)
}

#[test]
fn python_inventory_equals_pip_list() {
    transport::require_test_images!(dir);
    let inv = catalog_tag("python-app", &MemoryCache::new());
    let sp = test_images().join("stage/python-app/usr/local/lib/python3.11/site-packages");
    let out = run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "list",
            "--disable-pip-version-check",
            "--format",
            "json",
            "--path",
        ])
        .arg(&sp));
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let want: BTreeSet<(String, String)> = listed
        .iter()
        .map(|p| {
            (
                pep503(p["name"].as_str().unwrap()),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(want.len() >= 11, "{want:?}");
    let got: BTreeSet<(String, String)> = name_versions(&inv, Ecosystem::PyPI)
        .into_iter()
        .map(|(n, v)| (pep503(&n), v))
        .collect();
    assert_eq!(got, want);
    // The Python packages came with the second layer, dpkg with the first.
    let l = layout();
    let (_, m) = image_manifest(&l, "python-app");
    let top = m.layers.last().unwrap().digest.to_string();
    let base = m.layers[0].digest.to_string();
    for p in &inv.packages {
        let want_layer = if p.ecosystem == Ecosystem::PyPI {
            &top
        } else {
            &base
        };
        assert_eq!(&p.layer, want_layer, "{p:?}");
    }
    let req = inv.packages.iter().find(|p| p.name == "requests").unwrap();
    assert_eq!(req.purl, "pkg:pypi/requests@2.19.1");
    assert!(
        req.location.ends_with("requests-2.19.1.dist-info/METADATA"),
        "{}",
        req.location
    );
}

fn npm_ls_collect(v: &serde_json::Value, out: &mut BTreeSet<(String, String)>) {
    if let Some(deps) = v.get("dependencies").and_then(|d| d.as_object()) {
        for (name, d) in deps {
            if let Some(ver) = d.get("version").and_then(|v| v.as_str()) {
                out.insert((name.clone(), ver.to_string()));
            }
            npm_ls_collect(d, out);
        }
    }
}

#[test]
fn npm_inventory_equals_npm_ls() {
    transport::require_test_images!(dir);
    let inv = catalog_tag("node-app", &MemoryCache::new());
    let app = test_images().join("stage/node-app/app");
    let out = run(Command::new("npm")
        .args(["ls", "--all", "--json"])
        .current_dir(&app));
    let tree: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut want = BTreeSet::new();
    npm_ls_collect(&tree, &mut want);
    assert!(want.len() > 40, "{}", want.len());
    assert_eq!(name_versions(&inv, Ecosystem::Npm), want);
    // Installed package.json wins over the lockfile entry for the same package.
    let lodash = inv.packages.iter().find(|p| p.name == "lodash").unwrap();
    assert_eq!(lodash.location, "/app/node_modules/lodash/package.json");
    assert_eq!(lodash.purl, "pkg:npm/lodash@4.17.15");
}

#[test]
fn rust_inventory_from_lockfile_and_auditable_binary() {
    transport::require_test_images!(dir);
    let l = layout();
    let (_, m) = image_manifest(&l, "rust-app");
    let layers =
        catalog::catalog_image_layers(&l, &m, &catalog::NoCache, &Limits::default()).unwrap();
    let top = &layers.last().unwrap().1;
    let lock_text =
        std::fs::read_to_string(test_images().join("stage/rust-app/app/Cargo.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&lock_text).unwrap();
    let want: BTreeSet<(String, String)> = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.get("source").is_some())
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let from_lock: BTreeSet<(String, String)> = top.files["app/Cargo.lock"]
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    assert_eq!(from_lock, want);
    let bin = test_images().join("stage/rust-app/usr/local/bin/rust-app");
    if bin.exists() {
        let from_bin: BTreeSet<(String, String)> = top.files["usr/local/bin/rust-app"]
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        for krate in ["smallvec", "regex", "tokio", "time", "chrono", "hyper"] {
            assert!(
                from_bin.iter().any(|(n, _)| n == krate),
                "{krate} missing from {from_bin:?}"
            );
        }
        // Everything compiled in is also in the lockfile.
        assert!(
            from_bin.is_subset(&want),
            "{:?}",
            from_bin.difference(&want).collect::<Vec<_>>()
        );
    }
    let inv = catalog::merge(layers);
    let smallvec: Vec<_> = inv
        .packages
        .iter()
        .filter(|p| p.name == "smallvec")
        .collect();
    assert_eq!(
        smallvec.len(),
        1,
        "lockfile entry deduplicated against the binary: {smallvec:?}"
    );
    assert_eq!(smallvec[0].version, "1.6.0");
}

#[test]
fn multiarch_index_catalogs_each_platform_and_reads_shared_layers_once() {
    transport::require_test_images!(dir);
    let l = layout();
    let desc = l.resolve(Some("multiarch")).unwrap();
    let oci::Manifest::Index { index, .. } = l.manifest(&desc).unwrap() else {
        panic!("multiarch is not an index")
    };
    let cache = MemoryCache::new();
    let fetch = |d: &oci::Descriptor| {
        l.read_blob(&d.digest, oci::layout::MAX_MANIFEST_BYTES)
            .map_err(std::io::Error::other)
    };
    let per = catalog::catalog_index(&l, &index, &fetch, &cache, &Limits::default()).unwrap();
    assert_eq!(per.len(), 2);
    let platforms: Vec<String> = per
        .iter()
        .map(|p| p.platform.as_ref().unwrap().display())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    for p in &per {
        assert!(p.inventory.packages.len() > 80);
    }
    let distinct_layers: BTreeSet<String> = per
        .iter()
        .flat_map(|p| p.inventory.packages.iter().map(|x| x.layer.clone()))
        .collect();
    assert_eq!(cache.len(), distinct_layers.len());
}

#[test]
fn cache_hit_gives_the_same_inventory() {
    transport::require_test_images!(dir);
    let dir = tempfile::tempdir().unwrap();
    let cache = catalog::DirCache::new(dir.path());
    let first = catalog_tag("python-app", &cache);
    let l = layout();
    let (_, m) = image_manifest(&l, "python-app");
    for layer in &m.layers {
        assert!(cache.get(&layer.digest, CATALOG_VERSION).is_some());
        assert!(cache.get(&layer.digest, CATALOG_VERSION + 1).is_none());
    }
    // A source with no blobs at all: everything must come from the cache.
    struct Nothing;
    impl oci::BlobSource for Nothing {
        fn open_blob(&self, d: &oci::Digest) -> std::io::Result<Box<dyn std::io::Read + Send>> {
            Err(std::io::Error::other(format!("{d} not cached")))
        }
    }
    let second = catalog::catalog_image(&Nothing, &m, &cache, &Limits::default())
        .unwrap()
        .inventory;
    assert_eq!(first, second);
}

#[test]
fn layers_read_in_parallel_match_a_sequential_read() {
    transport::require_test_images!(dir);
    let l = layout();
    for tag in ["python-app", "node-app", "rust-app"] {
        let (_, m) = image_manifest(&l, tag);
        assert!(m.layers.len() > 1, "{tag} has one layer");
        let read = |parallel_layers| {
            let limits = Limits {
                parallel_layers,
                ..Limits::default()
            };
            catalog::catalog_image_layers(&l, &m, &catalog::NoCache, &limits).unwrap()
        };
        let sequential = read(1);
        let parallel = read(4);
        let digests: Vec<_> = m.layers.iter().map(|d| d.digest.clone()).collect();
        assert_eq!(
            parallel.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
            digests,
            "{tag}: layers in manifest order"
        );
        assert_eq!(sequential, parallel, "{tag}");
    }
}

#[test]
fn a_failing_layer_read_in_parallel_is_the_error_reported() {
    transport::require_test_images!(dir);
    let l = layout();
    let (_, m) = image_manifest(&l, "python-app");
    let bad = m.layers.last().unwrap().digest.clone();
    // Every layer but the top one is readable.
    struct AllBut<'a>(&'a oci::layout::OciLayout, oci::Digest);
    impl oci::BlobSource for AllBut<'_> {
        fn open_blob(&self, d: &oci::Digest) -> std::io::Result<Box<dyn std::io::Read + Send>> {
            if d == &self.1 {
                return Err(std::io::Error::other("gone"));
            }
            self.0.open_blob(d)
        }
    }
    let cache = MemoryCache::new();
    let limits = Limits {
        parallel_layers: 4,
        ..Limits::default()
    };
    let err =
        catalog::catalog_image_layers(&AllBut(&l, bad.clone()), &m, &cache, &limits).unwrap_err();
    assert!(
        matches!(&err, catalog::CatalogError::Open { layer, .. } if layer == &bad),
        "{err:?}"
    );
}
