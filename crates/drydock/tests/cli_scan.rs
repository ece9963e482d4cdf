//! End-to-end tests of `drydock scan` on the real test images
//! (`scripts/test-images.sh`): the package lists are compared with what the
//! image builder put in (dpkg database, dist-info directories, node_modules,
//! Cargo.lock), the findings with the OSV records they come from, and the
//! output formats, CI gate, docker-archive and registry targets are checked.

mod cli_support;

use cli_support::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

type PkgSet = BTreeSet<(String, String, String)>;

/// A data directory with a database imported once per test process, under
/// cargo's scratch directory for integration tests.
fn db_dir(name: &str, sources: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("drydock-cli-scan")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let paths: Vec<PathBuf> = sources.iter().map(|s| vulndata(s)).collect();
    import(&dir, &paths);
    dir
}

/// Debian 12 and PyPI OSV data.
fn full_db() -> &'static Path {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| db_dir("full", &["osv/Debian/all.zip", "osv/PyPI/all.zip"]))
}

/// PyPI OSV data only.
fn pypi_db() -> &'static Path {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| db_dir("pypi", &["osv/PyPI/all.zip"]))
}

fn scan_json(data: &Path, target: &str, extra: &[&str]) -> Value {
    let mut args = vec!["scan", target, "--format", "json"];
    args.extend_from_slice(extra);
    json_ok(data, &args)
}

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
fn sbom_and_sarif_formats() {
    transport::require_test_images!(dir);
    let db = full_db();
    let target = oci_target("python-app");
    let r = scan_json(db, &target, &[]);
    let vulns = r["vulnerabilities"].as_array().unwrap();
    let ids: BTreeSet<&str> = vulns.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert!(!ids.is_empty());
    let purls: BTreeSet<&str> = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["purl"].as_str().unwrap())
        .collect();

    let out_dir = tempfile::tempdir().unwrap();
    let read = |format: &str| -> Value {
        let file = out_dir.path().join(format);
        let stdout = run_ok(
            db,
            &[
                "scan",
                &target,
                "--format",
                format,
                "-o",
                file.to_str().unwrap(),
            ],
        );
        assert!(stdout.is_empty(), "-o writes nothing to stdout: {stdout}");
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
    };

    let cdx = read("cyclonedx");
    assert_eq!(cdx["bomFormat"], "CycloneDX");
    assert_eq!(cdx["specVersion"], "1.6");
    let comp_purls: BTreeSet<&str> = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert_eq!(comp_purls, purls);
    let cdx_ids: BTreeSet<&str> = cdx["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(cdx_ids, ids);

    let spdx = read("spdx");
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    assert_eq!(spdx["SPDXID"], "SPDXRef-DOCUMENT");
    let spdx_purls: BTreeSet<String> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["externalRefs"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["referenceType"] == "purl")
        .map(|e| e["referenceLocator"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        spdx_purls,
        purls.iter().map(|p| p.to_string()).collect::<BTreeSet<_>>()
    );

    let sarif = read("sarif");
    assert_eq!(sarif["version"], "2.1.0");
    let run0 = &sarif["runs"][0];
    assert_eq!(run0["tool"]["driver"]["name"], "drydock");
    let results = run0["results"].as_array().unwrap();
    assert_eq!(results.len(), vulns.len());
    let rule_ids: BTreeSet<&str> = run0["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(rule_ids, ids);
    let mut want_levels: BTreeMap<&str, usize> = BTreeMap::new();
    for v in vulns {
        let level = match v["severity"].as_str().unwrap() {
            "critical" | "high" => "error",
            "medium" => "warning",
            _ => "note",
        };
        *want_levels.entry(level).or_default() += 1;
    }
    let mut levels: BTreeMap<&str, usize> = BTreeMap::new();
    for res in results {
        *levels.entry(res["level"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(levels, want_levels);
}

#[test]
fn severity_gate_exit_codes() {
    transport::require_test_images!(dir);
    let target = oci_target("python-app");
    let code = |db: &Path, sev: &str| {
        let out = run(
            db,
            &["scan", &target, "--severity", sev, "--exit-code", "3"],
        );
        out.status
            .code()
            .unwrap_or_else(|| panic!("killed: {}", stderr(&out)))
    };

    // Debian + PyPI: the findings include critical or high ones.
    let full = full_db();
    let r = scan_json(full, &target, &[]);
    let severities: BTreeSet<String> = r["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["severity"].as_str().unwrap().to_string())
        .collect();
    assert!(
        severities.contains("critical") || severities.contains("high"),
        "{severities:?}"
    );
    assert_eq!(code(full, "critical,high"), 3);
    // Without --exit-code the gate does not fire.
    let out = run(full, &["scan", &target, "--severity", "critical,high"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // PyPI only: some levels have no finding. Each level alone gives 3
    // exactly when the report has a finding of that level.
    let pypi = pypi_db();
    let r = scan_json(pypi, &target, &[]);
    let present: BTreeSet<String> = r["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["severity"].as_str().unwrap().to_string())
        .collect();
    let levels = ["critical", "high", "medium", "low", "unknown"];
    assert!(levels.iter().any(|l| present.contains(*l)), "{present:?}");
    assert!(levels.iter().any(|l| !present.contains(*l)), "{present:?}");
    for l in levels {
        let want = if present.contains(l) { 3 } else { 0 };
        assert_eq!(code(pypi, l), want, "--severity {l} (present: {present:?})");
        // The filter also filters the report.
        let r = scan_json(pypi, &target, &["--severity", l]);
        assert!(
            r["vulnerabilities"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["severity"] == l)
        );
    }

    let out = run(pypi, &["scan", &target, "--severity", "severe"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("\"severe\""), "{}", stderr(&out));
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

#[test]
fn bad_targets_fail_with_a_precise_message() {
    transport::require_test_images!(dir);
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("no-such-layout");
    let layout = oci_dir();
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "nonsense:x".into(),
            vec!["\"nonsense:x\"".into(), "oci:DIR".into()],
        ),
        (
            format!("oci:{}:latest", missing.display()),
            vec![
                missing.display().to_string(),
                "not an OCI image layout".into(),
            ],
        ),
        (
            format!("oci:{}:no-such-tag", layout.display()),
            vec!["\"no-such-tag\"".into(), "bookworm-base".into()],
        ),
        (
            format!("docker-archive:{}", missing.join("x.tar").display()),
            vec![missing.join("x.tar").display().to_string()],
        ),
    ];
    for (target, needles) in cases {
        let out = run(data.path(), &["scan", &target, "--format", "json"]);
        assert!(!out.status.success(), "{target} succeeded");
        assert!(out.stdout.is_empty(), "{target}: no report on failure");
        let err = stderr(&out);
        assert!(err.starts_with("drydock: "), "{target}: {err}");
        for n in needles {
            assert!(err.contains(&n), "{target}: {n:?} not in {err}");
        }
    }
}

#[test]
fn registry_target_matches_the_oci_scan() {
    transport::require_test_images!(dir);
    if !present_or_skip(tool_present("skopeo"), "skopeo", "CI") {
        return;
    }
    let registry_data = tempfile::tempdir().unwrap();
    let server = Server::start(registry_data.path());
    let addr = server.addr();
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("oci:{}:python-app", oci_dir().display()),
        &format!("docker://{addr}/app:v1"),
    ]);
    let db = full_db();
    let from_oci = scan_json(db, &oci_target("python-app"), &[]);
    let target = format!("docker://{addr}/app:v1");
    let from_reg = scan_json(db, &target, &["--insecure", "--no-cache"]);
    assert_eq!(from_reg["target"], target.as_str());
    assert_eq!(package_set(&from_reg, None), package_set(&from_oci, None));
    let findings = |r: &Value| -> BTreeSet<(String, String, String)> {
        r["vulnerabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["id"].as_str().unwrap().to_string(),
                    v["package"].as_str().unwrap().to_string(),
                    v["fixed_version"].as_str().unwrap_or("-").to_string(),
                )
            })
            .collect()
    };
    assert_eq!(findings(&from_reg), findings(&from_oci));

    // By digest too.
    let digest = from_reg["images"][0]["manifest"].as_str().unwrap();
    let by_digest = scan_json(
        db,
        &format!("docker://{addr}/app@{digest}"),
        &["--insecure"],
    );
    assert_eq!(package_set(&by_digest, None), package_set(&from_oci, None));

    // Unknown tag: an error naming it, no panic.
    let out = run(
        db,
        &["scan", &format!("docker://{addr}/app:nope"), "--insecure"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    drop(server);
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

/// Write an OCI layout of one image with uncompressed tar `layers`.
fn write_layout(dir: &Path, layers: &[Vec<u8>]) {
    use oci::Digest;
    let blob = |data: &[u8]| -> (String, usize) {
        let d = Digest::sha256_of(data);
        let path = dir.join("blobs/sha256").join(d.hex());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
        (d.to_string(), data.len())
    };
    let descs: Vec<Value> = layers
        .iter()
        .map(|l| {
            let (d, size) = blob(l);
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size})
        })
        .collect();
    let (config, config_size) = blob(br#"{"os":"linux","architecture":"amd64"}"#);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": descs,
    }))
    .unwrap();
    let (m, m_size) = blob(&manifest);
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m,
            "size": m_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// An image with a hostile entry (`..` out of the root, with control
/// characters) beside a dpkg database: the packages are listed, the image
/// is reported incomplete in the table, the JSON and on standard error
/// (escaped), and the exit code is what it would be otherwise.
#[test]
fn incomplete_image_is_reported_with_its_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let status = b"Package: aaa\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(status.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "var/lib/dpkg/status", &status[..])
        .unwrap();
    let name = b"../../etc/\x1b[2Jpasswd";
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(4);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, &b"root"[..]).unwrap();
    let layout = tmp.path().join("oci");
    write_layout(&layout, &[b.into_inner().unwrap()]);
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let target = format!("oci:{}:latest", layout.display());

    let out = run(&data, &["scan", &target, "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let image = &report["images"][0];
    assert_eq!(image["complete"], false);
    let reason = image["incomplete_reasons"][0].as_str().unwrap();
    assert!(reason.contains("../../etc/\\x1b[2Jpasswd"), "{reason}");
    assert_eq!(report["packages"][0]["name"], "aaa");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("INCOMPLETE: {target}: ../../etc/\\x1b[2Jpasswd")),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "no terminal escape reaches stderr");

    let out = run(&data, &["scan", &target]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("INCOMPLETE: 1 part of the image could not be read")
            && table.contains("../../etc/\\x1b[2Jpasswd"),
        "{table}"
    );
}
