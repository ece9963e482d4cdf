//! Ingestion: archives, the tracker JSON export, malformed input, atomic
//! replacement and hot swapping.

use inventory::{Distro, Ecosystem};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vulndb::{Database, FindingStatus, Handle};

/// Slices of real vulnerability data kept in the repository
/// (`tests/fixtures/vulndata/README.md` says which records and from where).
fn vulndata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vulndata")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One member of a vulndata zip.
fn zip_member(zip: &str, name: &str) -> Vec<u8> {
    let f = std::fs::File::open(vulndata().join(zip)).unwrap();
    let mut z = zip::ZipArchive::new(f).unwrap();
    let mut buf = Vec::new();
    z.by_name(name).unwrap().read_to_end(&mut buf).unwrap();
    buf
}

fn debian12() -> Distro {
    Distro {
        id: "debian".into(),
        version_id: "12".into(),
        codename: Some("bookworm".into()),
        pretty_name: None,
    }
}

#[test]
fn tar_gz_of_osv_records_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("pypi.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&tgz).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        for id in ["PYSEC-2019-217", "PYSEC-2021-66"] {
            let data = zip_member("osv/PyPI/all.zip", &format!("{id}.json"));
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, format!("vulns/jinja2/{id}.json"), &data[..])
                .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
    let data = dir.path().join("data");
    let report = vulndb::import(&data, &[tgz], &mut |_| {}).unwrap();
    assert_eq!(report.status.advisories, 2);
    let db = Database::open(&data).unwrap();
    assert_eq!(db.version(), report.version);
    let r = db.query(Ecosystem::PyPI, "jinja2", "2.10", None);
    let ids: Vec<&str> = r.findings.iter().map(|f| &*f.id).collect();
    assert_eq!(ids, ["PYSEC-2019-217", "PYSEC-2021-66"]);
}

#[test]
fn tracker_json_export_statuses() {
    // tests/fixtures/debian-tracker.json restates, in the export's format,
    // entries of debian/CVE-list.subset (see the fixture's README).
    let dir = tempfile::tempdir().unwrap();
    vulndb::import(
        dir.path(),
        &[fixtures().join("debian-tracker.json")],
        &mut |_| {},
    )
    .unwrap();
    let db = Database::open(dir.path()).unwrap();
    let d = debian12();
    let one = |pkg: &str, ver: &str, id: &str| {
        db.query(Ecosystem::Deb, pkg, ver, Some(&d))
            .findings
            .into_iter()
            .find(|f| *f.id == *id)
    };
    // varnish: [bookworm] <ignored> (Minor issue, too intrusive to backport).
    let f = one("varnish", "7.1.1-1.1", "CVE-2023-44487").unwrap();
    assert_eq!(f.status, FindingStatus::WontFix);
    assert_eq!(
        f.status_note.as_deref(),
        Some("ignored: Minor issue, too intrusive to backport")
    );
    // pam: [bookworm] <no-dsa> (Minor issue).
    let f = one("pam", "1.5.2-6+deb12u1", "CVE-2024-22365").unwrap();
    assert_eq!(f.status, FindingStatus::Unfixed);
    assert_eq!(f.status_note.as_deref(), Some("no-dsa: Minor issue"));
    // openssl: [bookworm] 3.0.14-1~deb12u1.
    let f = one("openssl", "3.0.13-1~deb12u1", "CVE-2024-2511").unwrap();
    assert_eq!(f.fixed_version.as_deref(), Some("3.0.14-1~deb12u1"));
    assert!(one("openssl", "3.0.14-1~deb12u1", "CVE-2024-2511").is_none());
    // xz-utils: bookworm resolved with fixed_version "0" = not affected.
    assert!(one("xz-utils", "5.4.1-0.2", "CVE-2024-3094").is_none());
    // systemd: open, urgency unimportant → Low from the distribution.
    let f = one("systemd", "252.30-1~deb12u2", "CVE-2023-31437").unwrap();
    assert_eq!(f.severity, vulndb::Severity::Low);
    assert_eq!(&*f.severity_source, "debian");
}

fn good_import(data: &Path) -> String {
    vulndb::import(
        data,
        &[vulndata().join("alpine/v3.20/main.json")],
        &mut |_| {},
    )
    .unwrap()
    .version
}

#[test]
fn malformed_input_names_file_and_record_and_keeps_the_old_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let v1 = good_import(&data);

    // A real record with one event value turned into a number.
    let bad_dir = dir.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let rec = String::from_utf8(zip_member("osv/PyPI/all.zip", "PYSEC-2019-217.json")).unwrap();
    let broken = rec.replacen("\"fixed\": \"2.10.1\"", "\"fixed\": 2101", 1);
    assert_ne!(rec, broken, "the fixture edit must apply");
    std::fs::write(bad_dir.join("PYSEC-2019-217.json"), broken).unwrap();
    std::fs::copy(
        vulndata().join("alpine/v3.21/main.json"),
        bad_dir.join("main.json"),
    )
    .unwrap();
    let err = vulndb::import(&data, std::slice::from_ref(&bad_dir), &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("PYSEC-2019-217.json"), "{msg}");
    assert!(msg.contains("record PYSEC-2019-217"), "{msg}");

    // Truncated JSON: named by file, with the parser's position.
    std::fs::write(bad_dir.join("PYSEC-2019-217.json"), &rec[..rec.len() / 2]).unwrap();
    let msg = vulndb::import(&data, &[bad_dir], &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("PYSEC-2019-217.json") && msg.contains("EOF"),
        "{msg}"
    );

    // The first build is still current and still answers.
    let db = Database::open(&data).unwrap();
    assert_eq!(db.version(), v1);
    let alpine = Distro {
        id: "alpine".into(),
        version_id: "3.20.3".into(),
        codename: None,
        pretty_name: None,
    };
    let r = db.query(Ecosystem::Apk, "zlib", "1.2.12-r1", Some(&alpine));
    assert!(r.findings.iter().any(|f| &*f.id == "CVE-2022-37434"));
    // No half-built directories are left behind by this process.
    let leftovers: Vec<_> = std::fs::read_dir(data.join("vulndb"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn unknown_json_is_an_error_not_silently_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mystery.json");
    std::fs::File::create(&f)
        .unwrap()
        .write_all(br#"{"hello": 1}"#)
        .unwrap();
    let msg = vulndb::import(&dir.path().join("data"), &[f], &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("mystery.json") && msg.contains("unrecognised"),
        "{msg}"
    );
}

#[test]
fn handle_swaps_in_new_builds() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let handle = Handle::open_with_interval(&data, Duration::from_millis(50));
    assert!(handle.current().is_none());

    let waiter = handle.clone();
    // `changed()` waits for a build newer than the one in use when it is
    // first polled: poll it once before the import, or the watcher thread
    // may load the build in between and the wait would be for another.
    let v1 = rt.block_on(async {
        let mut waiting = std::pin::pin!(waiter.changed());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(waiting.as_mut().poll(&mut cx).is_pending(), "no build yet");
        let v1 = good_import(&data);
        tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .expect("new version noticed");
        v1
    });
    let db1 = handle.current().unwrap();
    assert_eq!(db1.version(), v1);

    // A reader keeps its Arc while a newer build replaces it.
    std::thread::sleep(Duration::from_millis(1100)); // versions are per-second stamps
    let v2 = vulndb::import(
        &data,
        &[vulndata().join("alpine/v3.21/main.json")],
        &mut |_| {},
    )
    .unwrap()
    .version;
    assert_ne!(v1, v2);
    assert!(handle.reload().unwrap() || handle.version().as_deref() == Some(v2.as_str()));
    assert_eq!(handle.current().unwrap().version(), v2);
    assert_eq!(db1.version(), v1);
    assert!(
        db1.status()
            .sources
            .iter()
            .any(|s| s.name == "alpine:v3.20/main")
    );
}
