//! The paged image endpoints over real HTTP on 127.0.0.1:
//! `GET /api/v1/images/{digest}/findings` and `/packages`. Walking the
//! `next_cursor`s visits every item once, in the order of one unpaged
//! read; `limit` is bounded; a cursor that is not one the server gave, or
//! one of the other list, is a 400.
//!
//! The image is one gzip layer with Python packages that the fixture
//! vulnerability data (tests/fixtures/vulndata) has advisories for, pushed
//! through the registry's in-process API and assessed by the real worker.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Old versions of packages the fixture has many advisories for, and
/// some without any.
fn python_layer() -> Vec<u8> {
    let mut files = Vec::new();
    let mut add = |name: &str, version: &str| {
        files.push((
            format!("usr/lib/python3/dist-packages/{name}-{version}.dist-info/METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n").into_bytes(),
        ));
    };
    for (n, v) in [
        ("django", "1.2"),
        ("pillow", "2.0.0"),
        ("jinja2", "2.0"),
        ("requests", "2.0.0"),
        ("urllib3", "1.20"),
        ("pyyaml", "3.10"),
        ("werkzeug", "0.10"),
    ] {
        add(n, v);
    }
    for i in 0..30 {
        add(&format!("quiet-package-{i:02}"), "1.0");
    }
    gzip_layer(&files)
}

impl Env {
    /// Wait until the image has findings to page through.
    async fn assessed(&self, digest: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (st, v) = self.get(&format!("/api/v1/images/{digest}/findings")).await;
            if st == 200 && v["total"].as_u64().unwrap_or(0) > 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{digest} never assessed: {st} {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every page of `path` (which has a query string) at `limit`; the
    /// items under `key` in order, and the pages' totals.
    async fn walk(&self, path: &str, key: &str, limit: usize) -> (Vec<Value>, HashSet<u64>) {
        let mut items = Vec::new();
        let mut totals = HashSet::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let mut url = format!("{path}&limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={}", urlencode(c)));
            }
            let (st, page) = self.get(&url).await;
            assert_eq!(st, 200, "{url}: {page}");
            let got = page[key].as_array().unwrap();
            assert!(got.len() <= limit, "{url}: {} items", got.len());
            items.extend(got.iter().cloned());
            totals.insert(page["total"].as_u64().unwrap());
            match page["next_cursor"].as_str() {
                Some(c) => {
                    assert!(!got.is_empty(), "a page with a next cursor is not empty");
                    cursor = Some(c.to_string());
                }
                None => return (items, totals),
            }
        }
        panic!("{path}: the cursors never ended");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn finding_key(f: &Value) -> String {
    format!("{}|{}|{}", f["id"], f["package"], f["installed_version"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_and_packages_page_through_cursors() {
    let env = Env::start().await;
    let digest = env.push("team/py", &python_layer(), &["1"]).await;
    env.assessed(&digest).await;

    // Findings: one unpaged read (the largest page) is the reference.
    let base = format!("/api/v1/images/{digest}/findings");
    let (st, all) = env.get(&format!("{base}?limit=1000")).await;
    assert_eq!(st, 200, "{all}");
    let all: Vec<String> = all["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(finding_key)
        .collect();
    assert!(all.len() > 7, "enough findings to page: {}", all.len());
    for limit in [1, 3, 7] {
        let (items, totals) = env.walk(&format!("{base}?q="), "findings", limit).await;
        let keys: Vec<String> = items.iter().map(finding_key).collect();
        assert_eq!(keys, all, "limit {limit}: every finding once, in order");
        assert_eq!(totals, HashSet::from([all.len() as u64]));
    }
    // A filter pages within itself.
    let (high, totals) = env
        .walk(&format!("{base}?severity=high%2B"), "findings", 2)
        .await;
    assert_eq!(totals, HashSet::from([high.len() as u64]));
    assert!(high.len() < all.len(), "the filter drops some findings");

    // Packages.
    let pbase = format!("/api/v1/images/{digest}/packages");
    let (st, allp) = env.get(&format!("{pbase}?limit=1000")).await;
    assert_eq!(st, 200, "{allp}");
    let allp: Vec<Value> = allp["packages"].as_array().unwrap().clone();
    assert_eq!(
        allp.len(),
        37,
        "seven with advisories and thirty quiet ones"
    );
    let (items, totals) = env.walk(&format!("{pbase}?q="), "packages", 5).await;
    assert_eq!(items, allp, "every package once, in order");
    assert_eq!(totals, HashSet::from([37]));
    let (quiet, totals) = env.walk(&format!("{pbase}?q=QUIET"), "packages", 4).await;
    assert_eq!(quiet.len(), 30, "q ignores case");
    assert_eq!(totals, HashSet::from([30]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_bounded_and_bad_cursors_refused() {
    let env = Env::start().await;
    let digest = env.push("team/py", &python_layer(), &["1"]).await;
    env.assessed(&digest).await;
    for what in ["findings", "packages"] {
        let base = format!("/api/v1/images/{digest}/{what}");
        // Default page size, and the bounds.
        let (st, page) = env.get(&base).await;
        assert_eq!(st, 200, "{page}");
        assert!(page[what].as_array().unwrap().len() <= 100);
        let (st, page) = env.get(&format!("{base}?limit=1000")).await;
        assert_eq!(st, 200, "{page}");
        for bad in ["0", "1001", "-1", "ten", ""] {
            let (st, err) = env.get(&format!("{base}?limit={bad}")).await;
            assert_eq!(st, 400, "{what} limit={bad:?}: {err}");
            assert!(
                err.to_string().contains("limit"),
                "{what} limit={bad:?}: the error names the parameter: {err}"
            );
        }
        // Cursors the server never gave.
        for bad in ["garbage", "AAAA", "0", "%FF%FE"] {
            let (st, err) = env.get(&format!("{base}?cursor={bad}")).await;
            assert_eq!(st, 400, "{what} cursor={bad:?}: {err}");
        }
        // A cursor of the other list is not this list's.
        let other = if what == "findings" {
            "packages"
        } else {
            "findings"
        };
        let (_, page) = env
            .get(&format!("/api/v1/images/{digest}/{other}?limit=1"))
            .await;
        let c = page["next_cursor"].as_str().unwrap();
        let (st, err) = env
            .get(&format!("{base}?limit=1&cursor={}", urlencode(c)))
            .await;
        assert_eq!(st, 400, "{what} with a {other} cursor: {err}");
        // An unknown parameter is refused, not ignored.
        let (st, err) = env.get(&format!("{base}?limt=5")).await;
        assert_eq!(st, 400, "{what} ?limt: {err}");
    }
    // An unknown image is 404, not an empty page.
    let unknown = sha256(b"nothing");
    let (st, _) = env.get(&format!("/api/v1/images/{unknown}/findings")).await;
    assert_eq!(st, 404);
}

/// A findings cursor is a position in one filtered list: the same offset
/// in another (other filters, another search) would skip or repeat
/// findings without a word, so it is refused there with the API's error
/// body, and accepted with the filters it was made with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_findings_cursor_is_refused_with_other_filters() {
    let env = Env::start().await;
    let digest = env.push("team/py", &python_layer(), &["1"]).await;
    env.assessed(&digest).await;
    let base = format!("/api/v1/images/{digest}/findings");
    let made_with = "severity=unknown&fixable=true&q=django";
    let (st, first) = env.get(&format!("{base}?{made_with}&limit=1")).await;
    assert_eq!(st, 200, "{first}");
    let c = urlencode(
        first["next_cursor"]
            .as_str()
            .unwrap_or_else(|| panic!("more than one page: {first}")),
    );
    let (st, second) = env
        .get(&format!("{base}?{made_with}&limit=1&cursor={c}"))
        .await;
    assert_eq!(st, 200, "the filters it was made with: {second}");
    assert_ne!(second["findings"][0], first["findings"][0]);
    // The same filters in another order and spelling are the same list.
    let (st, again) = env
        .get(&format!(
            "{base}?q=DJANGO&fixable=true&severity=unknown&limit=1&cursor={c}"
        ))
        .await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["findings"], second["findings"]);
    for other in [
        "",
        "severity=unknown&fixable=true",
        "severity=high%2B&fixable=true&q=django",
        "severity=unknown&fixable=false&q=django",
        "severity=unknown&fixable=true&q=django&exempt=false",
        "severity=unknown&fixable=true&q=django&status=fixed",
        "severity=unknown&fixable=true&q=jinja2",
    ] {
        let (st, err) = env.get(&format!("{base}?{other}&limit=1&cursor={c}")).await;
        assert_eq!(st, 400, "?{other}: {err}");
        assert_eq!(err["error"]["code"], "BAD_REQUEST", "?{other}: {err}");
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.contains("other filters"), "?{other}: {msg}");
    }
}
