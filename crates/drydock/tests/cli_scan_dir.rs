//! `drydock scan dir:PATH`: a project folder or root filesystem cataloged
//! like an image layer (lock files, a dpkg database), matched against the
//! fixture database; symlinks never lead outside the folder; `--exclude`;
//! the `--fail-on` gate; unreadable parts named as incomplete.

mod cli_support;

use cli_support::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Cargo, npm and Debian 12 OSV data, imported once per test process.
fn db() -> &'static Path {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("drydock-cli-scan-dir")
            .join(format!("db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        import(
            &dir,
            &[
                vulndata("osv/cargo/all.zip"),
                vulndata("osv/npm/all.zip"),
                vulndata("osv/Debian/all.zip"),
            ],
        );
        dir
    })
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn cargo_lock(crates: &[(&str, &str)]) -> String {
    let mut s = String::from("version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n");
    for (n, v) in crates {
        s.push_str(&format!(
            "\n[[package]]\nname = \"{n}\"\nversion = \"{v}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
        ));
    }
    s
}

/// A project with a Rust lock file (smallvec 1.6.0: RUSTSEC-2021-0003,
/// critical, fixed in 1.6.1; regex 1.5.4: RUSTSEC-2022-0013, high), an npm
/// lock file (minimist 1.2.5: critical; lodash 4.17.20: high), and a
/// Debian 12 root with curl 7.88.1-10 in a fake dpkg status file
/// (DSA-5523-1).
fn project(root: &Path) {
    write(
        root,
        "Cargo.lock",
        &cargo_lock(&[("smallvec", "1.6.0"), ("regex", "1.5.4")]),
    );
    write(
        root,
        "ui/package-lock.json",
        r#"{"name": "ui", "version": "1.0.0", "lockfileVersion": 3, "packages": {
            "": {"name": "ui", "version": "1.0.0"},
            "node_modules/minimist": {"version": "1.2.5"},
            "node_modules/lodash": {"version": "4.17.20"}
        }}"#,
    );
    write(
        root,
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
    );
    write(
        root,
        "var/lib/dpkg/status",
        "Package: curl\nStatus: install ok installed\nArchitecture: amd64\nSource: curl\nVersion: 7.88.1-10\n\n\
         Package: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.4+deb12u5\n\n",
    );
}

fn names(r: &Value, key: &str, field: &str) -> Vec<String> {
    r[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[field].as_str().unwrap().to_string())
        .collect()
}

fn scan(dir: &Path, extra: &[&str]) -> std::process::Output {
    let target = format!("dir:{}", dir.display());
    let mut args = vec!["scan", target.as_str()];
    args.extend_from_slice(extra);
    run(db(), &args)
}

#[test]
fn a_project_folder_is_cataloged_and_matched() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("project");
    project(&root);
    // A link out of the folder: its target must never be read.
    let outside = tmp.path().join("outside");
    write(&outside, "Cargo.lock", &cargo_lock(&[("time", "0.1.40")]));
    std::os::unix::fs::symlink(&outside, root.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(outside.join("Cargo.lock"), root.join("vendor.lock")).unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::os::unix::fs::symlink("../../outside/Cargo.lock", root.join("sub/Cargo.lock")).unwrap();
    // Excluded: a fixture folder with its own vulnerable lock file.
    write(
        &root,
        "tests/fixtures/Cargo.lock",
        &cargo_lock(&[("smallvec", "0.6.9")]),
    );

    let out = scan(&root, &["--format", "json", "--exclude", "tests/fixtures"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pkgs = package_set(&r, None);
    for (eco, name, version) in [
        ("cargo", "smallvec", "1.6.0"),
        ("cargo", "regex", "1.5.4"),
        ("npm", "minimist", "1.2.5"),
        ("npm", "lodash", "4.17.20"),
        ("deb", "curl", "7.88.1-10"),
    ] {
        assert!(
            pkgs.iter()
                .any(|(e, n, v)| e == eco && n == name && v == version),
            "{eco} {name} {version} not in {pkgs:?}"
        );
    }
    assert!(
        !pkgs.iter().any(|(_, n, v)| n == "time" || v == "0.6.9"),
        "read through a link or an excluded path: {pkgs:?}"
    );
    assert_eq!(r["images"][0]["distro"]["id"], "debian");
    assert_eq!(r["images"][0]["complete"], true, "{:#}", r["images"]);
    let ids = names(&r, "vulnerabilities", "id");
    for id in [
        "RUSTSEC-2021-0003",
        "RUSTSEC-2022-0013",
        "GHSA-xvch-5gv4-984h",
        "GHSA-35jh-r3h4-6jhm",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id} not in {ids:?}");
    }
    assert!(
        r["vulnerabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["package"] == "curl" && v["fixed_version"] == "7.88.1-10+deb12u4"),
        "no curl finding: {ids:?}"
    );
    let loc = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "minimist")
        .unwrap()["location"]
        .clone();
    assert_eq!(loc, "/ui/package-lock.json");

    // The table shows the same findings.
    let out = scan(&root, &["--exclude", "tests/fixtures"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("RUSTSEC-2021-0003")
            && table.contains("CRITICAL")
            && table.contains("Debian GNU/Linux 12"),
        "{table}"
    );
}

#[test]
fn fail_on_gates_on_fixable_criticals() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    project(root);
    let out = scan(root, &["--fail-on", "critical", "--fail-only-fixable"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("at or above --fail-on critical with a fix"),
        "{}",
        stderr(&out)
    );
    // Everything is still reported, highs included.
    assert!(String::from_utf8_lossy(&out.stdout).contains("RUSTSEC-2022-0013"));

    // Only highs left: the critical gate passes, a high gate does not.
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "Cargo.lock", &cargo_lock(&[("regex", "1.5.4")]));
    let out = scan(
        tmp.path(),
        &["--fail-on", "critical", "--fail-only-fixable"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = scan(tmp.path(), &["--fail-on", "high", "--exit-code", "3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // A gate without a database cannot be judged.
    let empty = tempfile::tempdir().unwrap();
    let target = format!("dir:{}", tmp.path().display());
    let out = run(empty.path(), &["scan", &target, "--fail-on", "critical"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no vulnerability database"),
        "{}",
        stderr(&out)
    );
    let out = run(empty.path(), &["scan", &target, "--fail-on", "severe"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--fail-on: unknown level"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_targets_and_flags_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(tmp.path(), &["scan", "dir:/no/such/dir"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/no/such/dir"), "{}", stderr(&out));
    let file = tmp.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let out = run(tmp.path(), &["scan", &format!("dir:{}", file.display())]);
    assert!(
        stderr(&out).contains("is not a directory"),
        "{}",
        stderr(&out)
    );
    let out = run(
        tmp.path(),
        &[
            "scan",
            &format!("dir:{}", tmp.path().display()),
            "--platform",
            "linux/amd64",
        ],
    );
    assert!(
        stderr(&out).contains("do not apply to dir:"),
        "{}",
        stderr(&out)
    );
    let out = run(tmp.path(), &["scan", "oci:/nowhere", "--exclude", "x"]);
    assert!(
        stderr(&out).contains("--exclude applies to dir:"),
        "{}",
        stderr(&out)
    );
}

/// A folder that cannot be listed and a file that cannot be opened are
/// named as incomplete; the rest is still cataloged. Root reads anything,
/// so under root the scan runs as `nobody`.
#[test]
fn unreadable_parts_are_named_incomplete() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("project");
    project(&root);
    write(
        &root,
        "locked/Cargo.lock",
        &cargo_lock(&[("time", "0.1.40")]),
    );
    write(
        &root,
        "secret/Cargo.lock",
        &cargo_lock(&[("time", "0.1.40")]),
    );
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    for d in [tmp.path(), root.as_path()] {
        mode(d, 0o755);
    }
    mode(&root.join("locked"), 0o000);
    mode(&root.join("secret/Cargo.lock"), 0o000);
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    mode(&data, 0o777);
    let target = format!("dir:{}", root.display());
    let mut cmd = drydock(&data, &["scan", &target, "--format", "json", "--no-cache"]);
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().unwrap();
    mode(&root.join("locked"), 0o755);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["images"][0]["complete"], false, "{:#}", r["images"]);
    let reasons = r["images"][0]["incomplete_reasons"].to_string();
    assert!(
        reasons.contains("/locked: cannot list the directory")
            && reasons.contains("/secret/Cargo.lock: cannot open"),
        "{reasons}"
    );
    assert!(
        stderr(&out).contains("INCOMPLETE: dir:"),
        "{}",
        stderr(&out)
    );
    let pkgs = package_set(&r, None);
    assert!(pkgs.iter().any(|(_, n, _)| n == "smallvec"), "{pkgs:?}");
    assert!(!pkgs.iter().any(|(_, n, _)| n == "time"), "{pkgs:?}");
}
