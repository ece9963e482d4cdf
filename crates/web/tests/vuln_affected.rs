//! `GET /api/v1/vulnerabilities/{id}` pages its `affected` repositories
//! (a vulnerability in thousands of images listed them all, with every
//! tag and digest: 826 kB at 8,200 images). Over real HTTP on 127.0.0.1:
//! walking `affected_next` at any `limit` gives every repository once,
//! with its tags, in the order of one unpaged read; `limit` is bounded
//! and a cursor the server did not give is a 400.
//!
//! Seven repositories hold images of one Python layer the fixture
//! vulnerability data (tests/fixtures/vulndata) has advisories for, each
//! image its own digest (a config of its own), tagged once or twice.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const REPOS: usize = 7;

/// A gzip tar layer with an old Django's metadata.
fn python_layer() -> Vec<u8> {
    gzip_layer(&[(
        "usr/lib/python3/dist-packages/django-1.2.dist-info/METADATA".to_string(),
        b"Metadata-Version: 2.1\nName: django\nVersion: 1.2\n\n".to_vec(),
    )])
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

#[tokio::test]
async fn a_vulnerabilitys_affected_repositories_are_paged() {
    let env = Env::start().await;
    let layer = python_layer();
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..REPOS {
        let repo = format!("team/app-{i}");
        let tags: &[&str] = if i % 2 == 0 { &["1", "2"] } else { &["1"] };
        env.push(&repo, &layer, tags).await;
        want.insert(repo, tags.iter().map(|t| t.to_string()).collect());
    }

    // The vulnerability in the most images, once every image is assessed.
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        let (st, v) = env.get("/api/v1/vulnerabilities?sort=images&limit=1").await;
        assert_eq!(st, 200, "{v}");
        if let Some(top) = v["items"].get(0)
            && top["images"].as_u64() == Some(REPOS as u64)
        {
            break top["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "never assessed: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let path = format!("/api/v1/vulnerabilities/{}", urlencode(&id));

    // One read of everything.
    let (st, all) = env.get(&format!("{path}?limit=500")).await;
    assert_eq!(st, 200, "{all}");
    assert_eq!(all["affected_total"], REPOS);
    assert!(all["affected_next"].is_null());
    assert!(all["as_of"].as_str().is_some_and(|s| !s.is_empty()));
    let got: BTreeMap<String, Vec<String>> = all["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let tags = a["tags"].as_array().unwrap();
            let tags = tags.iter().map(|t| t.as_str().unwrap().to_string());
            (
                a["repository"].as_str().unwrap().to_string(),
                tags.collect(),
            )
        })
        .collect();
    assert_eq!(got, want);

    // The default page holds them all here (50).
    let (_, first) = env.get(&path).await;
    assert_eq!(first["affected"], all["affected"]);

    // Walking the cursors at several limits: the same repositories, each
    // once, in the same order, the rest of the answer the same.
    for limit in [1, 2, 3, REPOS - 1, REPOS] {
        let mut walked = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..=REPOS {
            let mut url = format!("{path}?limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={}", urlencode(c)));
            }
            let (st, page) = env.get(&url).await;
            assert_eq!(st, 200, "{url}: {page}");
            let items = page["affected"].as_array().unwrap();
            assert!(!items.is_empty() && items.len() <= limit, "{url}: {page}");
            assert_eq!(page["affected_total"], REPOS);
            assert_eq!(page["id"], all["id"]);
            assert_eq!(page["images"], all["images"]);
            assert_eq!(page["fix"], all["fix"]);
            walked.extend(items.iter().cloned());
            match page["affected_next"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(
            Value::Array(walked),
            all["affected"],
            "limit {limit}: every repository once, in order"
        );
    }

    // Bounded limits, cursors only of the server's making, no unknown
    // parameter, an unknown vulnerability is a 404.
    for bad in [
        format!("{path}?limit=0"),
        format!("{path}?limit=501"),
        format!("{path}?limit=many"),
        format!("{path}?cursor=nonsense"),
        format!("{path}?cursor=0.zz"),
        format!("{path}?page=2"),
    ] {
        let (st, body) = env.get(&bad).await;
        assert_eq!(st, 400, "{bad}: {body}");
    }
    let (st, _) = env
        .get("/api/v1/vulnerabilities/CVE-0000-00000?limit=5")
        .await;
    assert_eq!(st, 404);
}
