//! Benchmarks over the larger offline data set (`$DRYDOCK_VULNDATA`, else
//! `$DRYDOCK_SHARED/vulndata`, by default `../shared/vulndata`; the
//! repository's small fixtures are not meant for timing): building the database,
//! loading it, and matching a 500-package inventory. The loaded database's
//! memory is printed (heap estimate and resident-set growth).

use criterion::{Criterion, criterion_group, criterion_main};
use inventory::{Distro, Ecosystem, Inventory, Package};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn vulndata() -> PathBuf {
    if let Some(d) = std::env::var_os("DRYDOCK_VULNDATA") {
        return PathBuf::from(d);
    }
    std::env::var_os("DRYDOCK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("vulndata")
}

/// (name, version) pairs from the `versions[]` lists of an OSV export, one
/// per package, in name order: versions the records know about, so the
/// inventory produces real findings.
fn known_versions(zip: &str, eco_prefix: &str, n: usize) -> Vec<(String, String)> {
    let f = std::fs::File::open(vulndata().join(zip)).unwrap();
    let mut z = zip::ZipArchive::new(f).unwrap();
    let mut picked: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..z.len() {
        let mut buf = Vec::new();
        z.by_index(i).unwrap().read_to_end(&mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        for a in v["affected"].as_array().into_iter().flatten() {
            let eco = a["package"]["ecosystem"].as_str().unwrap_or("");
            let name = a["package"]["name"].as_str().unwrap_or("");
            if !eco.starts_with(eco_prefix) || name.is_empty() {
                continue;
            }
            if let Some(ver) = a["versions"]
                .as_array()
                .and_then(|l| l.first())
                .and_then(|x| x.as_str())
            {
                picked
                    .entry(name.to_string())
                    .or_insert_with(|| ver.to_string());
            }
        }
    }
    picked.into_iter().take(n).collect()
}

fn mk(eco: Ecosystem, name: &str, version: &str, source: Option<&str>) -> Package {
    Package {
        ecosystem: eco,
        name: name.to_string(),
        version: version.to_string(),
        source_name: source.map(str::to_string),
        source_version: None,
        purl: String::new(),
        location: String::new(),
        layer: String::new(),
    }
}

fn bookworm() -> Option<Distro> {
    Some(Distro {
        id: "debian".into(),
        version_id: "12".into(),
        codename: Some("bookworm".into()),
        pretty_name: None,
    })
}

/// Worst case: every package at the oldest version the records list as
/// affected.
fn inventory() -> Inventory {
    let mut packages = Vec::new();
    // A Debian 12 image's worth of source packages (linux, with thousands of
    // entries, is skipped: container images do not install the kernel).
    for (name, ver) in known_versions("osv/Debian/all.zip", "Debian:12", 401)
        .into_iter()
        .filter(|(n, _)| n != "linux")
        .take(400)
    {
        packages.push(mk(Ecosystem::Deb, &format!("lib{name}"), &ver, Some(&name)));
    }
    for (name, ver) in known_versions("osv/PyPI/all.zip", "PyPI", 100) {
        packages.push(mk(Ecosystem::PyPI, &name, &ver, None));
    }
    assert_eq!(packages.len(), 500);
    Inventory {
        distro: bookworm(),
        packages,
    }
}

/// The test images built by the workspace's image fixtures, if present.
fn test_images() -> Option<PathBuf> {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-images");
    [local, PathBuf::from("/tmp/peers/images")]
        .into_iter()
        .find(|d| d.join("rootfs/bookworm/var/lib/dpkg/status").is_file())
}

/// Debian 12 source package → the newest `fixed` version the OSV records
/// give it: the version an up-to-date bookworm image has installed.
fn debian_latest_fixed() -> BTreeMap<String, String> {
    use vulndb::version::{Dpkg, VersionScheme};
    let f = std::fs::File::open(vulndata().join("osv/Debian/all.zip")).unwrap();
    let mut z = zip::ZipArchive::new(f).unwrap();
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..z.len() {
        let mut buf = Vec::new();
        z.by_index(i).unwrap().read_to_end(&mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        for a in v["affected"].as_array().into_iter().flatten() {
            if a["package"]["ecosystem"].as_str() != Some("Debian:12") {
                continue;
            }
            let name = a["package"]["name"].as_str().unwrap_or("");
            let fixed = a["ranges"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r["events"].as_array().into_iter().flatten())
                .filter_map(|e| e["fixed"].as_str());
            for x in fixed {
                let newer = out
                    .get(name)
                    .is_none_or(|cur| Dpkg.compare(x, cur).map(|o| o.is_gt()).unwrap_or(false));
                if newer {
                    out.insert(name.to_string(), x.to_string());
                }
            }
        }
    }
    out
}

/// A 500-package inventory shaped like the test images: the bookworm base
/// image's dpkg database at its real versions, the PyPI, npm and cargo
/// packages of the python/node/rust app images, and, to reach 500, further
/// Debian 12 source packages at their newest fixed version (a larger,
/// up-to-date bookworm image).
fn realistic_inventory(images: &Path) -> Inventory {
    let mut packages = Vec::new();
    let status =
        std::fs::read_to_string(images.join("rootfs/bookworm/var/lib/dpkg/status")).unwrap();
    for para in status.split("\n\n") {
        let field = |k: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                .map(str::trim)
        };
        let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
            continue;
        };
        let mut p = mk(Ecosystem::Deb, name, version, None);
        if let Some(src) = field("Source") {
            let (sname, sver) = match src.split_once(' ') {
                Some((n, v)) => (n, Some(v.trim_matches(['(', ')', ' ']))),
                None => (src, None),
            };
            p.source_name = Some(sname.to_string());
            p.source_version = sver.map(str::to_string);
        }
        packages.push(p);
    }
    let site = images.join("stage/python-app/usr/local/lib/python3.11/site-packages");
    let mut dists: Vec<String> = std::fs::read_dir(site)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".dist-info").map(str::to_string))
        .collect();
    dists.sort();
    for d in dists {
        if let Some((name, version)) = d.split_once('-') {
            packages.push(mk(Ecosystem::PyPI, name, version, None));
        }
    }
    let lock: serde_json::Value = serde_json::from_slice(
        &std::fs::read(images.join("stage/node-app/app/package-lock.json")).unwrap(),
    )
    .unwrap();
    for (path, meta) in lock["packages"].as_object().into_iter().flatten() {
        let Some(name) = path.rsplit_once("node_modules/").map(|(_, n)| n) else {
            continue;
        };
        if let Some(version) = meta["version"].as_str() {
            packages.push(mk(Ecosystem::Npm, name, version, None));
        }
    }
    let cargo_lock = std::fs::read_to_string(images.join("stage/rust-app/app/Cargo.lock")).unwrap();
    for block in cargo_lock.split("[[package]]").skip(1) {
        let field = |k: &str| {
            block.lines().find_map(|l| {
                let v = l.strip_prefix(k)?.trim_start().strip_prefix('=')?;
                Some(v.trim().trim_matches('"').to_string())
            })
        };
        if let (Some(name), Some(version)) = (field("name"), field("version")) {
            packages.push(mk(Ecosystem::Cargo, &name, &version, None));
        }
    }
    let present: std::collections::HashSet<String> = packages
        .iter()
        .filter(|p| p.ecosystem == Ecosystem::Deb)
        .map(|p| p.source_name.clone().unwrap_or_else(|| p.name.clone()))
        .collect();
    let pad = 500usize.saturating_sub(packages.len());
    for (name, ver) in debian_latest_fixed()
        .into_iter()
        .filter(|(n, _)| n != "linux" && !present.contains(n))
        .take(pad)
    {
        packages.push(mk(Ecosystem::Deb, &name, &ver, Some(&name)));
    }
    packages.truncate(500);
    assert_eq!(packages.len(), 500);
    Inventory {
        distro: bookworm(),
        packages,
    }
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|x| x.parse::<usize>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let src = vulndata();
    // One build up front so the other benchmarks run even when filtered.
    vulndb::import(&data, std::slice::from_ref(&src), &mut |_| {}).unwrap();

    let mut g = c.benchmark_group("vulndb");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("build_all_vulndata", |b| {
        b.iter(|| vulndb::import(&data, std::slice::from_ref(&src), &mut |_| {}).unwrap())
    });
    g.finish();

    let before = rss_bytes();
    let db = vulndb::Database::open(&data).unwrap();
    let after = rss_bytes();
    let disk = std::fs::metadata(data.join("vulndb").join(db.version()).join("db.bin"))
        .unwrap()
        .len();
    eprintln!(
        "loaded database: heap estimate {:.1} MB, RSS growth {:.1} MB, db.bin {:.1} MB, {} advisories, {} entries",
        db.heap_size() as f64 / 1e6,
        after.saturating_sub(before) as f64 / 1e6,
        disk as f64 / 1e6,
        db.status().advisories,
        db.status().entries,
    );

    let mut g = c.benchmark_group("vulndb");
    g.sample_size(20);
    g.bench_function("load", |b| {
        b.iter(|| vulndb::Database::open(&data).unwrap())
    });
    g.finish();

    let inv = inventory();
    let report = db.match_report(&inv);
    eprintln!(
        "500-package inventory: {} findings, {} uncomparable",
        report.findings.len(),
        report.uncomparable.len()
    );
    c.bench_function("vulndb/match_500_packages", |b| {
        b.iter(|| db.match_inventory(&inv))
    });

    let Some(images) = test_images() else {
        eprintln!("test images not found: skipping vulndb/match_500_realistic");
        return;
    };
    let inv = realistic_inventory(&images);
    let report = db.match_report(&inv);
    let count = |e: Ecosystem| inv.packages.iter().filter(|p| p.ecosystem == e).count();
    eprintln!(
        "realistic inventory ({} deb, {} pypi, {} npm, {} cargo): {} findings, {} uncomparable",
        count(Ecosystem::Deb),
        count(Ecosystem::PyPI),
        count(Ecosystem::Npm),
        count(Ecosystem::Cargo),
        report.findings.len(),
        report.uncomparable.len()
    );
    c.bench_function("vulndb/match_500_realistic", |b| {
        b.iter(|| db.match_inventory(&inv))
    });
}

criterion_group!(vulndb_benches, benches);
criterion_main!(vulndb_benches);
