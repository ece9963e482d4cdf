//! `drydock import` against a running `drydock serve`: the image lands
//! byte for byte, and the assessment service assesses it on arrival.

mod cli_support;

use cli_support::*;
use std::time::{Duration, Instant};

/// The digest the layout's index gives a tag.
fn layout_digest(tag: &str) -> String {
    let layout = catalog::layout::OciLayout::open(oci_dir()).unwrap();
    layout.resolve(Some(tag)).unwrap().digest.to_string()
}

#[test]
fn imported_image_is_stored_and_assessed() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    import(d, &[vulndata("osv/PyPI/all.zip")]);
    let server = Server::start(d);
    let url = format!("http://{}", server.addr());

    let out = run(
        d,
        &[
            "import",
            &oci_target("python-app"),
            "team/imported:v1",
            "--server",
            &url,
        ],
    );
    assert!(out.status.success(), "import failed: {}", stderr(&out));

    // Stored under the new name with the layout's digest (nothing rewritten).
    let want = layout_digest("python-app");
    let (status, tags) = get_json(server.port, "/v2/team/imported/tags/list");
    assert_eq!(status, 200);
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));

    // Assessed on arrival: the API shows the finished assessment with the
    // PyPI finding the record gives for requests 2.19.1.
    let start = Instant::now();
    let image = loop {
        let (status, v) = get_json(server.port, &format!("/api/v1/images/{want}"));
        if status == 200 && v["status"] == "done" {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not assessed: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(image["repositories"], serde_json::json!(["team/imported"]));
    let ids: Vec<&str> = image["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["package"] == "requests")
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"PYSEC-2018-28"), "requests findings: {ids:?}");
    assert!(image["summary"]["total"].as_u64().unwrap() > 0);

    // A bad source fails with the reason and creates nothing.
    let out = run(
        d,
        &[
            "import",
            "oci:/nonexistent/layout:x",
            "team/bad:v1",
            "--server",
            &url,
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/layout"),
        "{}",
        stderr(&out)
    );
    let (status, _) = get_json(server.port, "/v2/team/bad/tags/list");
    assert_eq!(status, 404);
}
