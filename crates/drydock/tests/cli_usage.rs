//! End-to-end tests of `drydock usage`: metered images per repository and
//! month, read from the assessor's database in the data directory.

mod cli_support;

use cli_support::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn this_month() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:04}-{:02}", now.year(), u8::from(now.month()))
}

fn shift_month(m: &str, delta: i32) -> String {
    let (y, mo) = m.split_once('-').unwrap();
    let total = y.parse::<i32>().unwrap() * 12 + mo.parse::<i32>().unwrap() - 1 + delta;
    format!("{:04}-{:02}", total / 12, total % 12 + 1)
}

#[test]
fn options_are_validated_and_an_empty_data_dir_counts_nothing() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let v = json_ok(d, &["usage", "--json"]);
    assert_eq!(
        v,
        json!({"from": "0000-01", "to": "9999-12", "rows": [], "total": 0})
    );
    // A date counts as its month.
    let v = json_ok(
        d,
        &["usage", "--json", "--from", "2025-02-17", "--to", "2025-03"],
    );
    assert_eq!(v["from"], "2025-02");
    assert_eq!(v["to"], "2025-03");
    let text = run_ok(d, &["usage"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("MONTH") && lines[0].ends_with("IMAGES"));
    assert!(lines[1].starts_with("total") && lines[1].ends_with(" 0"));

    for (args, needle) in [
        (vec!["usage", "--from", "2025-13"], "--from"),
        (vec!["usage", "--to", "25-01"], "--to"),
        (vec!["usage", "--from", "2025-01-32"], "--from"),
        (
            vec!["usage", "--from", "2025-06", "--to", "2025-01"],
            "after",
        ),
    ] {
        let out = run(d, &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

/// Poll `drydock usage --json` until the total reaches `want`.
fn wait_total(data: &std::path::Path, want: u64, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let v = json_ok(data, &["usage", "--json"]);
        if v["total"].as_u64() == Some(want) || start.elapsed() > timeout {
            return v;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Poll the server's `/api/v1/queue` until no job is queued or running.
fn wait_queue_empty(port: u16, timeout: Duration) {
    let start = Instant::now();
    loop {
        let (code, v) = get_json(port, "/api/v1/queue");
        assert_eq!(code, 200, "{v}");
        if v["pending"].as_array().is_some_and(|p| p.is_empty()) {
            return;
        }
        assert!(start.elapsed() < timeout, "jobs still pending: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_assessed_image_is_counted_once_per_digest() {
    transport::require_test_images!(dir);
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    // With a database the assessor catalogs and matches the image.
    import(d, &[vulndata("osv/PyPI/all.zip")]);
    let server = Server::start(d);
    let addr = server.addr();
    let src = format!("oci:{}:python-app", oci_dir().display());
    let push = |dest: &str| {
        skopeo(&[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &src,
            &format!("docker://{addr}/{dest}"),
        ])
    };

    push("app:v1");
    let month = this_month();
    let v = wait_total(d, 1, Duration::from_secs(120));
    let want_rows = json!([{"repository": "app", "month": month, "images": 1}]);
    assert_eq!(v["rows"], want_rows, "{v:#}");
    assert_eq!(v["total"], 1);

    // The same digest again, under the same and another tag and in another
    // repository: re-scans are free, and the image stays counted for the
    // repository it was first assessed in.
    push("app:v1");
    push("app:v2");
    push("other/app:v1");
    // Each push queued its job before it returned: once the queue is
    // empty the re-scans are done (a fixed wait passed without them on a
    // slow machine, proving nothing).
    wait_queue_empty(server.port, Duration::from_secs(120));
    let v = json_ok(d, &["usage", "--json"]);
    assert_eq!(v["rows"], want_rows, "{v:#}");
    assert_eq!(v["total"], 1);

    // Month filters.
    let v = json_ok(d, &["usage", "--json", "--from", &month, "--to", &month]);
    assert_eq!(v["total"], 1);
    let v = json_ok(d, &["usage", "--json", "--from", &shift_month(&month, 1)]);
    assert_eq!(v["total"], 0);
    assert_eq!(v["rows"], json!([]));
    let v = json_ok(d, &["usage", "--json", "--to", &shift_month(&month, -1)]);
    assert_eq!(v["total"], 0);

    // The table.
    let text = run_ok(d, &["usage"]);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(rows[1], vec![month.as_str(), "app", "1"], "{text}");
    assert_eq!(rows[2], vec!["total", "1"], "{text}");

    // `usage` reads the database while the server runs, and after it stops.
    drop(server);
    let v = json_ok(d, &["usage", "--json"]);
    assert_eq!(v["rows"], want_rows);
}

#[test]
fn shift_month_wraps_years() {
    assert_eq!(shift_month("2025-12", 1), "2026-01");
    assert_eq!(shift_month("2025-01", -1), "2024-12");
    assert_eq!(shift_month("2025-06", 0), "2025-06");
}
