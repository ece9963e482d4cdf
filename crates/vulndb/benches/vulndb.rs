//! Benchmarks over all of ../shared/vulndata: building the database,
//! loading it, and matching a 500-package inventory. The loaded database's
//! memory is printed (heap estimate and resident-set growth).

use criterion::{Criterion, criterion_group, criterion_main};
use inventory::{Distro, Ecosystem, Inventory, Package};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn vulndata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vulndata")
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

fn inventory() -> Inventory {
    let mut packages = Vec::new();
    let mk = |eco, name: &str, version: &str, source: Option<&str>| Package {
        ecosystem: eco,
        name: name.to_string(),
        version: version.to_string(),
        source_name: source.map(str::to_string),
        source_version: None,
        purl: String::new(),
        location: String::new(),
        layer: String::new(),
    };
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
        distro: Some(Distro {
            id: "debian".into(),
            version_id: "12".into(),
            codename: Some("bookworm".into()),
            pretty_name: None,
        }),
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
}

criterion_group!(vulndb_benches, benches);
criterion_main!(vulndb_benches);
