//! End-to-end tests of `drydock db`: import real advisory data from
//! `tests/fixtures/vulndata`, check `status` against counts worked out from
//! the files themselves, `query` known-vulnerable and fixed versions, and
//! a failed import that must leave the previous build in use.

mod cli_support;

use cli_support::*;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Counts of an OSV export: (records, entries for `ecosystem`, newest
/// `modified` truncated to the second).
fn osv_counts(zip: &Path, ecosystem: &str) -> (usize, usize, String) {
    let records = osv_records(zip);
    let entries = records
        .iter()
        .filter(|r| r.get("withdrawn").is_none_or(Value::is_null))
        .flat_map(|r| r["affected"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["package"]["ecosystem"] == ecosystem)
        .count();
    let newest = records
        .iter()
        .filter_map(|r| r["modified"].as_str())
        .map(|m| m[..19].to_string())
        .max()
        .unwrap();
    (records.len(), entries, newest)
}

fn source<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("source {name} not in {status:#}"))
}

fn findings(report: &Value) -> Vec<&Value> {
    report["findings"].as_array().unwrap().iter().collect()
}

fn finding<'a>(report: &'a Value, id: &str) -> Option<&'a Value> {
    findings(report).into_iter().find(|f| f["id"] == id)
}

#[test]
fn import_status_and_query_real_records() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let debian = vulndata("osv/Debian/all.zip");
    let pypi = vulndata("osv/PyPI/all.zip");
    let alpine = vulndata("alpine/v3.20/main.json");

    // Before any import, status is an error that says so, not a panic.
    let out = run(d, &["db", "status"]);
    assert!(!out.status.success(), "status without a database succeeded");

    let report = import(d, &[debian.clone(), pypi.clone(), alpine.clone()]);
    let version = report["version"].as_str().unwrap().to_string();
    assert_eq!(report["status"]["version"], version.as_str());

    // `status --json` is the import report's status.
    let status = json_ok(d, &["db", "status", "--json"]);
    assert_eq!(status, report["status"]);
    assert_eq!(
        std::fs::read_to_string(d.join("vulndb/CURRENT"))
            .unwrap()
            .trim(),
        version
    );

    // Expected counts, from the files.
    let (records, entries, newest) = osv_counts(&pypi, "PyPI");
    let s = source(&status, "osv:PyPI");
    assert_eq!(s["records"], records, "osv:PyPI records");
    assert_eq!(s["entries"], entries, "osv:PyPI entries (non-withdrawn)");
    assert!(
        s["snapshot"].as_str().unwrap().starts_with(&newest),
        "osv:PyPI snapshot {} is the newest `modified` {newest}",
        s["snapshot"]
    );
    let (drecords, dentries, dnewest) = osv_counts(&debian, "Debian:12");
    let s = source(&status, "osv:Debian:12");
    assert_eq!(s["records"], drecords, "osv:Debian:12 records");
    assert_eq!(s["entries"], dentries, "osv:Debian:12 entries");
    assert!(s["snapshot"].as_str().unwrap().starts_with(&dnewest));
    let secdb: Value = serde_json::from_slice(&std::fs::read(&alpine).unwrap()).unwrap();
    let pkgs = secdb["packages"].as_array().unwrap();
    let ids_fixed: usize = pkgs
        .iter()
        .flat_map(|p| {
            p["pkg"]["secfixes"]
                .as_object()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|(k, _)| k != "0")
        .map(|(_, v)| v.as_array().map_or(0, Vec::len))
        .sum();
    let s = source(&status, "alpine:v3.20/main");
    assert_eq!(s["records"], pkgs.len(), "alpine records = secdb packages");
    let e = s["entries"].as_u64().unwrap() as usize;
    assert!(
        e > 0 && e <= ids_fixed,
        "alpine entries {e} vs {ids_fixed} fixed ids"
    );
    assert!(s["snapshot"].is_null(), "secdb carries no date");
    assert!(s["file_date"].is_string(), "so the file date is shown");
    assert_eq!(status["sources"].as_array().unwrap().len(), 3);

    // Text status lists each source with its counts.
    let text = run_ok(d, &["db", "status"]);
    assert!(text.contains(&format!("version:    {version}")), "{text}");
    for (name, rec, ent) in [
        ("osv:PyPI", records, entries),
        ("osv:Debian:12", drecords, dentries),
        ("alpine:v3.20/main", pkgs.len(), e),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not in\n{text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], rec.to_string(), "{line}");
        assert_eq!(cols[2], ent.to_string(), "{line}");
    }

    // PyPI: PYSEC-2018-28 (osv/PyPI/all.zip!PYSEC-2018-28.json), requests
    // before 2.20.0. The fixed version comes from the record's ECOSYSTEM
    // range; 2.19.1 is in its `versions[]`.
    let rec = osv_record(&pypi, "PYSEC-2018-28");
    let aff = &rec["affected"][0];
    assert_eq!(aff["package"]["name"], "requests");
    let fixed = fixed_events(aff);
    assert_eq!(fixed.len(), 1, "{fixed:?}");
    let fixed = &fixed[0];
    assert!(
        aff["versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "2.19.1")
    );
    let q = json_ok(d, &["db", "query", "pypi", "requests", "2.19.1", "--json"]);
    let f = finding(&q, "PYSEC-2018-28").unwrap_or_else(|| panic!("{q:#}"));
    assert_eq!(f["fixed_version"], fixed.as_str());
    assert_eq!(f["status"], "fixed");
    assert_eq!(f["installed_version"], "2.19.1");
    assert_eq!(f["package"], "requests");
    assert_eq!(f["data_source"], "osv:PyPI");
    let mut aliases: Vec<&str> = f["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    aliases.sort();
    let mut want: Vec<&str> = rec["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    want.sort();
    assert_eq!(aliases, want);
    // The name is matched PEP 503-normalised.
    let q2 = json_ok(d, &["db", "query", "pypi", "Requests", "2.19.1", "--json"]);
    assert!(finding(&q2, "PYSEC-2018-28").is_some(), "{q2:#}");
    // The fixed version is not affected by it (nor by its aliases).
    let q = json_ok(d, &["db", "query", "pypi", "requests", fixed, "--json"]);
    for f in findings(&q) {
        assert_ne!(f["id"], "PYSEC-2018-28");
        for a in &want {
            assert!(!f["aliases"].as_array().unwrap().iter().any(|x| x == a));
        }
    }
    let text = run_ok(d, &["db", "query", "pypi", "requests", "2.19.1"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("PYSEC-2018-28 "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(fixed.as_str()) && line.contains("fixed"),
        "{line}"
    );

    // Debian: CVE-2024-45490 (osv/Debian/all.zip!CVE-2024-45490.json),
    // source package expat, Debian:12 fixed 2.5.0-1+deb12u1; versions[]
    // lists the affected bookworm versions.
    let rec = osv_record(&debian, "CVE-2024-45490");
    let aff = rec["affected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["package"]["ecosystem"] == "Debian:12")
        .unwrap();
    let pkg = aff["package"]["name"].as_str().unwrap();
    let fixed = fixed_events(aff).pop().expect("a fixed event");
    let vulnerable = aff["versions"][0].as_str().unwrap();
    for eco in ["debian:12", "debian:bookworm"] {
        let q = json_ok(d, &["db", "query", eco, pkg, vulnerable, "--json"]);
        let f = finding(&q, "CVE-2024-45490").unwrap_or_else(|| panic!("{eco}: {q:#}"));
        assert_eq!(f["fixed_version"], fixed.as_str(), "{eco}");
        assert_eq!(f["status"], "fixed");
        assert_eq!(f["data_source"], "osv:Debian:12");
    }
    let q = json_ok(d, &["db", "query", "debian:12", pkg, &fixed, "--json"]);
    assert!(finding(&q, "CVE-2024-45490").is_none(), "{q:#}");
    // Other releases are not matched against Debian 12's data.
    let q = json_ok(d, &["db", "query", "debian:11", pkg, vulnerable, "--json"]);
    assert!(finding(&q, "CVE-2024-45490").is_none(), "{q:#}");

    // Alpine: v3.20/main.json, zlib: the highest secfixes key is the first
    // fixed version of its identifiers (1.2.12-r2: CVE-2022-37434).
    let zlib = pkgs.iter().find(|p| p["pkg"]["name"] == "zlib").unwrap();
    let secfixes = zlib["pkg"]["secfixes"].as_object().unwrap();
    let ids = &secfixes["1.2.12-r2"];
    let id = ids[0].as_str().unwrap();
    assert_eq!(id, "CVE-2022-37434");
    let q = json_ok(
        d,
        &["db", "query", "alpine:3.20", "zlib", "1.2.12-r1", "--json"],
    );
    let f = finding(&q, id).unwrap_or_else(|| panic!("{q:#}"));
    assert_eq!(f["fixed_version"], "1.2.12-r2");
    // The "0" key lists identifiers that never affected the branch.
    for never in secfixes["0"].as_array().unwrap() {
        assert!(finding(&q, never.as_str().unwrap()).is_none(), "{q:#}");
    }
    // The fixed version is past every secfixes key: nothing at all.
    let q = json_ok(
        d,
        &["db", "query", "alpine:v3.20", "zlib", "1.2.12-r2", "--json"],
    );
    assert!(findings(&q).is_empty(), "{q:#}");
    let text = run_ok(d, &["db", "query", "alpine:3.20", "zlib", "1.2.12-r2"]);
    assert_eq!(text.trim(), "no known vulnerabilities");

    // OS packages need a release.
    let out = run(d, &["db", "query", "deb", "expat", "2.5.0-1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("debian:12"), "{}", stderr(&out));
}

#[test]
fn malformed_file_fails_the_import_and_keeps_the_previous_build() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let work = tempfile::tempdir().unwrap();

    import(d, &[vulndata("alpine/v3.20/main.json")]);
    let before = json_ok(d, &["db", "status", "--json"]);
    let before_query = json_ok(
        d,
        &["db", "query", "alpine:3.20", "zlib", "1.2.12-r1", "--json"],
    );
    assert!(!findings(&before_query).is_empty());

    // A truncated OSV record next to good data.
    let broken = work.path().join("PYSEC-0000-broken.json");
    std::fs::write(
        &broken,
        r#"{"schema_version":"1.6.0","id":"PYSEC-0000-1","affected":[{"package":{"ecosystem":"PyPI","name":"x""#,
    )
    .unwrap();
    let out = run(
        d,
        &[
            "db",
            "import",
            vulndata("osv/PyPI/all.zip").to_str().unwrap(),
            broken.to_str().unwrap(),
        ],
    );
    assert!(
        !out.status.success(),
        "import of a malformed file succeeded"
    );
    let err = stderr(&out);
    assert!(
        err.contains(broken.to_str().unwrap()),
        "names the file: {err}"
    );
    assert!(err.contains("unchanged"), "{err}");
    assert_eq!(json_ok(d, &["db", "status", "--json"]), before);

    // A JSON document that is not advisory data.
    let other = work.path().join("other.json");
    std::fs::write(&other, r#"{"hello": 1}"#).unwrap();
    let out = run(d, &["db", "import", other.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(other.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    assert_eq!(json_ok(d, &["db", "status", "--json"]), before);

    // A bad member inside an archive is named as `archive!member`.
    let zip_path = work.path().join("mixed.zip");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("good.json", opts).unwrap();
        z.write_all(&std::fs::read(vulndata("alpine/v3.21/main.json")).unwrap())
            .unwrap();
        z.start_file("bad.json", opts).unwrap();
        z.write_all(br#"{"packages": [ {"pkg": "#).unwrap();
        z.finish().unwrap();
    }
    let out = run(d, &["db", "import", zip_path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}!bad.json", zip_path.display())),
        "{err}"
    );
    assert_eq!(json_ok(d, &["db", "status", "--json"]), before);
    assert_eq!(
        json_ok(
            d,
            &["db", "query", "alpine:3.20", "zlib", "1.2.12-r1", "--json"]
        ),
        before_query
    );

    // A missing path.
    let out = run(d, &["db", "import", "/nonexistent/advisories.json"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/advisories.json"),
        "{}",
        stderr(&out)
    );
    assert_eq!(json_ok(d, &["db", "status", "--json"]), before);
}

/// docs/vulndb.md: "READMEs and `.tsv` provenance tables are skipped; any
/// other file that is not advisory data [...] fails the import with a
/// message naming the file".
#[test]
fn non_advisory_text_file_fails_the_import() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let notes = work.path().join("notes.txt");
    std::fs::write(&notes, "these are not advisories\n").unwrap();
    let out = run(
        data.path(),
        &[
            "db",
            "import",
            vulndata("alpine/v3.20/main.json").to_str().unwrap(),
            notes.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success(), "a text file was accepted");
    assert!(stderr(&out).contains(notes.to_str().unwrap()));
}

#[test]
fn readme_and_provenance_files_are_skipped() {
    let data = tempfile::tempdir().unwrap();
    // debian/ holds the tracker's DSA/DLA/CVE lists, OSV records, and
    // PROVENANCE*.tsv tables.
    let report = import(data.path(), &[vulndata("debian")]);
    let skipped: Vec<&str> = report["skipped_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for f in ["PROVENANCE.tsv", "PROVENANCE-osv.tsv"] {
        assert!(
            skipped.iter().any(|s| s.ends_with(f)),
            "{f} not in {skipped:?}"
        );
    }
    let names: Vec<&str> = report["status"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("debian-tracker")),
        "{names:?}"
    );
}

/// `drydock serve` with no database builds one by itself from its sources
/// (here one OSV export on a loopback HTTP server), and serves it.
#[test]
fn serve_builds_its_database_on_schedule() {
    let dir = vulndata("osv/PyPI");
    if !present_or_skip(tool_present("python3"), "python3 (its http.server)", "CI") {
        return;
    }
    let port = free_port();
    let mut files = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start python3 -m http.server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(port, "/all.zip") != Some(200) {
        assert!(Instant::now() < deadline, "file server not up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let data = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/all.zip");
    let server = Server::start_with_env(
        data.path(),
        &[
            ("DRYDOCK_VULNDB_UPDATE_HOURS", "24"),
            ("DRYDOCK_VULNDB_SOURCES", url.as_str()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        let (code, v) = get_json(server.port, "/api/v1/vulndb");
        assert_eq!(code, 200, "{v}");
        if v["available"] == true {
            break v;
        }
        assert!(Instant::now() < deadline, "no database built: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let (records, _, _) = osv_counts(&dir.join("all.zip"), "PyPI");
    let pypi = source(&status["status"], "osv:PyPI");
    assert_eq!(
        pypi["records"].as_u64().unwrap() as usize,
        records,
        "{pypi}"
    );
    let _ = files.kill();
    let _ = files.wait();
}
