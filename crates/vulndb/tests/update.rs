//! `update` against a loopback HTTP server serving tests/fixtures/vulndata.
//! The server listens on 127.0.0.1 only and serves a bounded number of
//! requests.

use inventory::{Distro, Ecosystem};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use vulndb::Database;

/// Slices of real vulnerability data kept in the repository
/// (`tests/fixtures/vulndata/README.md` says which records and from where).
fn vulndata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vulndata")
}

/// Serve files below `root` for up to `max` requests; returns the base URL.
fn serve(root: PathBuf, max: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let file = root.join(path.trim_start_matches('/'));
            let safe = !path.contains("..");
            match std::fs::read(&file) {
                Ok(body) if safe => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(&body);
                }
                _ => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_downloads_and_imports_then_a_failed_update_keeps_it() {
    let base = serve(vulndata(), 20);
    let dir = tempfile::tempdir().unwrap();
    let urls: Vec<String> = [
        "/osv/npm/all.zip",
        "/osv/Maven/all.zip",
        "/alpine/v3.20/main.json",
        "/debian/CVE-list.subset",
        "/nvd/api2.0/CVE-2024-7347.json",
    ]
    .iter()
    .map(|p| format!("{base}{p}"))
    .collect();
    let report = vulndb::update(dir.path(), &urls, |_| {}).await.unwrap();
    let names: Vec<&str> = report
        .status
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    for want in [
        "osv:npm",
        "osv:Maven",
        "alpine:v3.20/main",
        "debian-tracker:CVE",
        "nvd:api2",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(db.version(), report.version);
    // GHSA-35jh-r3h4-6jhm: lodash fixed 4.17.21.
    let r = db.query(Ecosystem::Npm, "lodash", "4.17.20", None);
    assert_eq!(
        r.findings
            .iter()
            .find(|f| &*f.id == "GHSA-35jh-r3h4-6jhm")
            .unwrap()
            .fixed_version
            .as_deref(),
        Some("4.17.21")
    );
    let alpine = Distro {
        id: "alpine".into(),
        version_id: "3.20.1".into(),
        codename: None,
        pretty_name: None,
    };
    assert!(
        db.query(Ecosystem::Apk, "zlib", "1.2.12-r1", Some(&alpine))
            .findings
            .iter()
            .any(|f| &*f.id == "CVE-2022-37434")
    );

    // A URL that 404s aborts the update; the current build stays.
    let mut bad = urls.clone();
    bad.push(format!("{base}/does/not/exist.json"));
    let err = vulndb::update(dir.path(), &bad, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    assert_eq!(
        Database::open(dir.path()).unwrap().version(),
        report.version
    );
}
