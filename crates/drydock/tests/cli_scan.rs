//! End-to-end tests of `drydock scan` on the real test images
//! (`scripts/test-images.sh`): the package lists are compared with what the
//! image builder put in (dpkg database, dist-info directories, node_modules,
//! Cargo.lock), the findings with the OSV records they come from, and a
//! docker archive, an index and a platform choice give the same packages.
//! What scan writes and how it exits: `cli_scan_output.rs`.

mod cli_scan_support;
mod cli_support;

use cli_scan_support::{full_db, scan_json};
use cli_support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

type PkgSet = BTreeSet<(String, String, String)>;

fn only(set: &PkgSet, eco: &str) -> PkgSet {
    set.iter().filter(|p| p.0 == eco).cloned().collect()
}

fn triple(eco: &str, name: &str, version: &str) -> (String, String, String) {
    (eco.to_string(), name.to_string(), version.to_string())
}

/// What dpkg itself says is installed in the bookworm root file system.
fn dpkg_installed() -> PkgSet {
    let admin = test_images().join("rootfs/bookworm/var/lib/dpkg");
    let out = Command::new("dpkg-query")
        .arg("-W")
        .arg(format!("--admindir={}", admin.display()))
        .arg("-f=${db:Status-Status}\t${Package}\t${Version}\n")
        .output()
        .expect("run dpkg-query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set: PkgSet = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0] == "installed").then(|| triple("deb", f[1], f[2]))
        })
        .collect();
    assert!(set.len() > 50, "dpkg-query listed {} packages", set.len());
    set
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            walk(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// `(name, version, location)` of each `*.dist-info/METADATA` staged into
/// the python-app image.
fn staged_dist_infos() -> BTreeSet<(String, String, String)> {
    let stage = test_images().join("stage/python-app");
    let mut files = Vec::new();
    walk(&stage, &mut files);
    let mut out = BTreeSet::new();
    for f in files {
        let parent = f.parent().unwrap().file_name().unwrap().to_string_lossy();
        if !(parent.ends_with(".dist-info") && f.file_name().unwrap() == "METADATA") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let header = |key: &str| {
            text.lines()
                .take_while(|l| !l.is_empty())
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("{key} in {}", f.display()))
                .trim()
                .to_string()
        };
        let location = format!("/{}", f.strip_prefix(&stage).unwrap().display());
        out.insert((header("Name:"), header("Version:"), location));
    }
    assert!(out.len() >= 10, "{out:?}");
    out
}

/// npm packages installed under node_modules in the node-app image.
fn staged_node_modules() -> PkgSet {
    let stage = test_images().join("stage/node-app");
    let mut files = Vec::new();
    walk(&stage, &mut files);
    let mut out = PkgSet::new();
    for f in files {
        if f.file_name().unwrap() != "package.json" {
            continue;
        }
        let comps: Vec<String> = f
            .strip_prefix(&stage)
            .unwrap()
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let n = comps.len();
        let direct = n >= 3 && comps[n - 3] == "node_modules";
        let scoped = n >= 4 && comps[n - 4] == "node_modules" && comps[n - 3].starts_with('@');
        if !(direct || scoped) {
            continue;
        }
        let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        out.insert(triple(
            "npm",
            v["name"].as_str().unwrap(),
            v["version"].as_str().unwrap(),
        ));
    }
    assert!(out.len() > 10, "{out:?}");
    out
}

/// Registry crates of the rust-app's Cargo.lock (the app itself is local).
fn staged_cargo_lock() -> PkgSet {
    let lock =
        std::fs::read_to_string(test_images().join("stage/rust-app/app/Cargo.lock")).unwrap();
    let mut out = PkgSet::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |k: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        if field("source").is_some() {
            out.insert(triple(
                "cargo",
                &field("name").unwrap(),
                &field("version").unwrap(),
            ));
        }
    }
    assert!(out.len() > 10, "{out:?}");
    out
}

#[test]
fn bookworm_base_without_database_lists_the_dpkg_packages() {
    transport::require_test_images!(dir);
    let data = tempfile::tempdir().unwrap();
    let target = oci_target("bookworm-base");
    let out = run(data.path(), &["scan", &target, "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no vulnerability database"),
        "{}",
        stderr(&out)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["target"], target.as_str());
    assert!(r["database"].is_null());
    assert_eq!(r["vulnerabilities"].as_array().unwrap().len(), 0);
    let images = r["images"].as_array().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["distro"]["id"], "debian");
    assert_eq!(images[0]["distro"]["version_id"], "12");
    assert_eq!(images[0]["distro"]["codename"], "bookworm");

    let pkgs = package_set(&r, None);
    assert_eq!(pkgs, dpkg_installed(), "scan vs dpkg-query");
    assert_eq!(images[0]["packages"], pkgs.len());
    for p in r["packages"].as_array().unwrap() {
        assert_eq!(p["location"], "/var/lib/dpkg/status");
        let purl = p["purl"].as_str().unwrap();
        assert!(
            purl.starts_with(&format!(
                "pkg:deb/debian/{}@",
                p["name"].as_str().unwrap().replace('+', "%2B")
            )) && purl.contains("distro=debian-12"),
            "{purl}"
        );
    }

    // A gate cannot be judged without a database.
    let out = run(data.path(), &["scan", &target, "--exit-code", "3"]);
    assert!(!out.status.success());
    assert_ne!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("no vulnerability database"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn python_app_packages_and_findings_match_the_records() {
    transport::require_test_images!(dir);
    let db = full_db();
    let r = scan_json(db, &oci_target("python-app"), &[]);
    assert!(r["database"]["version"].is_string(), "{:#}", r["database"]);
    let pkgs = package_set(&r, None);

    // The base layer's dpkg packages, plus exactly the staged dist-infos.
    assert_eq!(only(&pkgs, "deb"), dpkg_installed());
    let staged = staged_dist_infos();
    let got: BTreeSet<(String, String, String)> = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ecosystem"] == "pypi")
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
                p["location"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, staged);
    assert!(got.iter().any(|(n, v, _)| n == "requests" && v == "2.19.1"));

    let vulns = r["vulnerabilities"].as_array().unwrap();
    let pypi_zip = vulndata("osv/PyPI/all.zip");
    let debian_zip = vulndata("osv/Debian/all.zip");
    let (mut n_pypi, mut n_deb) = (0, 0);
    for v in vulns {
        let id = v["id"].as_str().unwrap();
        let eco = v["ecosystem"].as_str().unwrap();
        let package = v["package"].as_str().unwrap();
        let installed = v["installed_version"].as_str().unwrap();
        // Debian compares the source version when dpkg gives one
        // (`Source: util-linux (2.38.1-5+deb12u3)` for bsdutils).
        assert!(
            r["packages"].as_array().unwrap().iter().any(|p| {
                p["ecosystem"] == eco
                    && p["name"] == package
                    && (p["version"] == installed || p["source_version"] == installed)
            }),
            "{id}: {eco} {package} {installed} is not an installed package"
        );
        let (record, affected): (Value, Vec<Value>) = match eco {
            "pypi" => {
                n_pypi += 1;
                let rec = osv_record(&pypi_zip, id);
                let aff = rec["affected"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|a| {
                        inventory::pep503_name(a["package"]["name"].as_str().unwrap())
                            == inventory::pep503_name(package)
                    })
                    .cloned()
                    .collect();
                (rec, aff)
            }
            "deb" => {
                n_deb += 1;
                let src = v["source_package"].as_str().unwrap_or(package);
                let rec = osv_record(&debian_zip, id);
                let aff = rec["affected"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|a| a["package"]["ecosystem"] == "Debian:12")
                    .filter(|a| a["package"]["name"] == src)
                    .cloned()
                    .collect();
                (rec, aff)
            }
            other => panic!("unexpected ecosystem {other} in {v:#}"),
        };
        assert!(!affected.is_empty(), "{id} does not name {package}");
        assert!(
            record.get("withdrawn").is_none_or(Value::is_null),
            "{id} is withdrawn"
        );
        let fixed: Vec<String> = affected.iter().flat_map(fixed_events).collect();
        match v["fixed_version"].as_str() {
            Some(f) => {
                assert!(
                    fixed.iter().any(|x| x == f),
                    "{id}: fixed {f} not in {fixed:?}"
                );
                assert_eq!(v["status"], "fixed", "{id}");
            }
            None => {
                assert!(
                    fixed.is_empty(),
                    "{id}: no fixed version but the record has {fixed:?}"
                );
                assert_ne!(v["status"], "fixed", "{id}");
            }
        }
        // When the record enumerates affected versions, the installed one
        // is among them.
        let listed: Vec<Value> = affected
            .iter()
            .flat_map(|a| a["versions"].as_array().cloned().unwrap_or_default())
            .collect();
        if eco == "pypi" && !listed.is_empty() {
            assert!(
                listed.iter().any(|x| x == installed),
                "{id}: {installed} not in versions[]"
            );
        }
    }
    assert!(n_pypi > 0 && n_deb > 0, "pypi {n_pypi}, deb {n_deb}");
    let req = vulns
        .iter()
        .find(|v| v["id"] == "PYSEC-2018-28")
        .expect("requests 2.19.1: PYSEC-2018-28");
    assert_eq!(req["package"], "requests");
    assert_eq!(req["fixed_version"], "2.20.0");
    assert_eq!(r["images"][0]["vulnerabilities"], vulns.len());

    // --ignore-unfixed keeps exactly the findings with a fixed version.
    let r2 = scan_json(db, &oci_target("python-app"), &["--ignore-unfixed"]);
    let ids = |r: &Value, pred: &dyn Fn(&Value) -> bool| -> BTreeSet<(String, String)> {
        r["vulnerabilities"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| pred(v))
            .map(|v| {
                (
                    v["id"].as_str().unwrap().into(),
                    v["package"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert_eq!(
        ids(&r2, &|_| true),
        ids(&r, &|v| v["fixed_version"].is_string())
    );
}

#[test]
fn node_and_rust_apps_list_their_packages() {
    transport::require_test_images!(dir);
    let data = tempfile::tempdir().unwrap();
    let r = scan_json(data.path(), &oci_target("node-app"), &[]);
    let pkgs = package_set(&r, None);
    assert_eq!(only(&pkgs, "npm"), staged_node_modules());
    assert_eq!(only(&pkgs, "deb"), dpkg_installed());

    let r = scan_json(data.path(), &oci_target("rust-app"), &[]);
    let pkgs = package_set(&r, None);
    assert_eq!(only(&pkgs, "cargo"), staged_cargo_lock());
    assert_eq!(only(&pkgs, "deb"), dpkg_installed());
}

#[test]
fn multiarch_index_is_scanned_per_platform() {
    transport::require_test_images!(dir);
    let data = tempfile::tempdir().unwrap();
    let target = oci_target("multiarch");
    let r = scan_json(data.path(), &target, &[]);
    let platforms: Vec<&str> = r["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["platform"].as_str().expect("platform"))
        .collect();
    assert_eq!(platforms.len(), 2, "{platforms:?}");
    let dpkg = dpkg_installed();
    for p in &platforms {
        assert_eq!(package_set(&r, Some(p)), dpkg, "{p}");
    }
    let one = scan_json(data.path(), &target, &["--platform", platforms[1]]);
    assert_eq!(one["images"].as_array().unwrap().len(), 1);
    assert_eq!(one["images"][0]["platform"], platforms[1]);
    assert!(one["packages"][0].get("platform").is_none());
    let out = run(data.path(), &["scan", &target, "--platform", "plan9/mips"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("plan9/mips"), "{}", stderr(&out));
    assert!(stderr(&out).contains("linux/arm64/v8"), "{}", stderr(&out));
}

#[test]
fn platform_without_variant_picks_the_default_variant() {
    transport::require_test_images!(dir);
    // arm64 means arm64/v8, as container runtimes match platforms.
    let data = tempfile::tempdir().unwrap();
    let target = oci_target("multiarch");
    let r = scan_json(data.path(), &target, &["--platform", "linux/arm64"]);
    let images = r["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["platform"], "linux/arm64/v8");
    assert_eq!(package_set(&r, None), dpkg_installed());
}

#[test]
fn docker_archive_gives_the_same_packages() {
    transport::require_test_images!(dir);
    if !present_or_skip(tool_present("skopeo"), "skopeo", "CI") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("bookworm.tar");
    skopeo(&[
        "copy",
        "-q",
        &format!("oci:{}:bookworm-base", oci_dir().display()),
        &format!("docker-archive:{}:bookworm:base", tar.display()),
    ]);
    let from_oci = scan_json(data.path(), &oci_target("bookworm-base"), &["--no-cache"]);
    for target in [
        format!("docker-archive:{}", tar.display()),
        format!("docker-archive:{}:bookworm:base", tar.display()),
    ] {
        let from_tar = scan_json(data.path(), &target, &["--no-cache"]);
        assert_eq!(
            package_set(&from_tar, None),
            package_set(&from_oci, None),
            "{target}"
        );
        assert_eq!(package_set(&from_tar, None), dpkg_installed());
        assert_eq!(
            from_tar["images"][0]["distro"],
            from_oci["images"][0]["distro"]
        );
    }
    let out = run(
        data.path(),
        &[
            "scan",
            &format!("docker-archive:{}:other:tag", tar.display()),
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("other"), "{}", stderr(&out));
}

/// A finding's `installed_version` should be the installed package's
/// version: the SARIF location and CycloneDX `affects` look the package up
/// by it. For a Debian binary package whose `Source:` carries a version
/// (bsdutils 1:2.38.1-5+deb12u3, source util-linux 2.38.1-5+deb12u3), the
/// finding carries the source version instead.
#[test]
fn findings_name_the_installed_binary_version() {
    transport::require_test_images!(dir);
    let db = full_db();
    let target = oci_target("bookworm-base");
    let r = scan_json(db, &target, &[]);
    let pkgs = package_set(&r, None);
    for v in r["vulnerabilities"].as_array().unwrap() {
        let key = triple(
            v["ecosystem"].as_str().unwrap(),
            v["package"].as_str().unwrap(),
            v["installed_version"].as_str().unwrap(),
        );
        assert!(pkgs.contains(&key), "{} {key:?}", v["id"]);
    }
    let sarif = json_ok(db, &["scan", &target, "--format", "sarif"]);
    for res in sarif["runs"][0]["results"].as_array().unwrap() {
        assert_eq!(
            res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "var/lib/dpkg/status",
            "{}",
            res["message"]["text"]
        );
    }
}
