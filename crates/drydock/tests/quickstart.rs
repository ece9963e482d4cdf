//! The README's quick start, followed as written, with the local
//! `bookworm-base` test image in place of the public Debian image (tests
//! speak only to loopback): `serve` on its defaults, then from a second
//! terminal `db import tests/fixtures/vulndata`, `db status`, a skopeo copy
//! into the registry, the dashboard, the images API and `scan --insecure`.

mod cli_support;

use cli_support::*;
use std::time::{Duration, Instant};

const README: &str = include_str!("../../../README.md");

#[test]
fn the_readme_first_session_works_as_written() {
    transport::require_test_images!(dir);
    // The commands this test runs are the README's.
    for line in [
        "cargo run --release -- serve",
        "drydock db import tests/fixtures/vulndata",
        "drydock db status",
        "skopeo copy --dest-tls-verify=false",
        "docker://127.0.0.1:5000/library/debian:bookworm",
        "http://127.0.0.1:5000/ui/",
        "curl -s 'http://127.0.0.1:5000/api/v1/images?repository=library/debian'",
        "drydock scan docker://127.0.0.1:5000/library/debian:bookworm --insecure",
        "cargo install --path crates/drydock",
        "bash .ci/run",
    ] {
        assert!(README.contains(line), "README no longer says {line:?}");
    }
    if !present_or_skip(tool_present("skopeo"), "skopeo", "CI") {
        return;
    }

    // The first terminal: serve on its defaults (on a free port).
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let server = Server::start(d);
    let addr = server.addr();

    // The second terminal, same data directory.
    let fixtures = format!("{ROOT}/tests/fixtures/vulndata");
    let text = run_ok(d, &["db", "import", &fixtures]);
    assert!(text.contains("imported in"), "{text}");
    let status = run_ok(d, &["db", "status"]);
    assert!(status.contains("osv:Debian:12"), "{status}");

    let image = format!("{addr}/library/debian:bookworm");
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &oci_target("bookworm-base"),
        &format!("docker://{image}"),
    ]);

    // The images API shows the assessed image and its findings.
    let deadline = Instant::now() + Duration::from_secs(120);
    let brief = loop {
        let (code, v) = get_json(server.port, "/api/v1/images?repository=library/debian");
        assert_eq!(code, 200, "{v}");
        let done = v
            .as_array()
            .and_then(|a| a.first())
            .filter(|i| i["summary"]["total"].as_u64().unwrap_or(0) > 0)
            .cloned();
        if let Some(i) = done {
            break i;
        }
        assert!(Instant::now() < deadline, "never assessed: {v}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(brief["repository"], "library/debian");
    assert!(
        brief["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.ends_with("bookworm"))),
        "{brief}"
    );

    // The dashboard answers.
    assert_eq!(http_status(server.port, "/ui/"), Some(200));

    // And `scan` of the pushed image finds Debian packages and advisories.
    let report = json_ok(
        d,
        &[
            "scan",
            &format!("docker://{image}"),
            "--insecure",
            "--format",
            "json",
        ],
    );
    let vulns = report["vulnerabilities"].as_array().unwrap();
    assert!(
        vulns.iter().any(|v| v["ecosystem"] == "deb"),
        "no Debian findings: {report:#}"
    );
    let table = run_ok(d, &["scan", &format!("docker://{image}"), "--insecure"]);
    assert!(table.contains("CVE-"), "{table}");
}
