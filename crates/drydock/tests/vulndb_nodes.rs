//! The vulnerability database is built once and distributed: two
//! `drydock serve` nodes share one PostgreSQL database and one blob
//! directory (node 2's `blobs` is node 1's). The database is imported
//! into node 1's data directory only; node 1 leads the update duty and
//! publishes it, node 2 (which never builds) serves the same version
//! within seconds and the same findings for a pushed image. A newer
//! build whose stored bytes are damaged is refused by node 2, which
//! keeps its version; `drydock gc` keeps the published builds' blobs.
//!
//! Both nodes have a scheduled update (sources on a loopback port that
//! answers nothing), so a follower that built would show in its log.
//! Skips without PostgreSQL, skopeo or the test images, except under CI.

#[allow(dead_code)]
mod several_nodes_support;

use serde_json::Value;
use several_nodes_support::{Node, skopeo};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BUILDING: &str = "updating the vulnerability database";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vulndata")
}

/// `drydock --data DATA ARGS` with the cluster's metadata URL.
fn drydock(data: &Path, url: &str, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drydock"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env("DRYDOCK_METADATA_URL", url)
        .env_remove("DRYDOCK_CONFIG")
        .env_remove("DRYDOCK_DATA")
        .output()
        .expect("run drydock");
    assert!(
        out.status.success(),
        "drydock {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Import the fixtures into `data`; the new version.
fn import_db(data: &Path, url: &str) -> String {
    drydock(data, url, &["db", "import", fixtures().to_str().unwrap()]);
    std::fs::read_to_string(data.join("vulndb/CURRENT"))
        .unwrap()
        .trim()
        .to_string()
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = c.get(format!("{base}{path}")).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// The database version `node` serves (`/api/v1/vulndb`), if any.
async fn served_version(node: &Node) -> Option<String> {
    let (code, v) = get(&node.base(), "/api/v1/vulndb").await;
    (code == 200)
        .then(|| v["version"].as_str().map(str::to_string))
        .flatten()
}

async fn until_served(node: &Node, version: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if served_version(node).await.as_deref() == Some(version) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never served {version} (serves {:?}):\n{}",
            node.base(),
            served_version(node).await,
            log(node)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn log(node: &Node) -> String {
    std::fs::read_to_string(&node.log).unwrap_or_default()
}

async fn until_logged(node: &Node, line: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !log(node).contains(line) {
        assert!(
            Instant::now() < deadline,
            "{} never logged {line:?}:\n{}",
            node.base(),
            log(node)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Push the `python-app` test image to `node` as `repo:v1` and wait for
/// its assessment; the ids of its findings.
async fn push_and_assess(images: &Path, node: &Node, repo: &str) -> BTreeSet<String> {
    let out = skopeo(vec![
        "copy".into(),
        "--quiet".into(),
        "--dest-tls-verify=false".into(),
        format!("oci:{}:python-app", images.display()),
        format!("docker://127.0.0.1:{}/{repo}:v1", node.port),
    ])
    .await;
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = transport::testing::test_image_digest("python-app");
    let deadline = Instant::now() + Duration::from_secs(120);
    let image = loop {
        let (code, v) = get(&node.base(), &format!("/api/v1/images/{digest}")).await;
        if code == 200 && v["status"] == "done" && v["repositories"].to_string().contains(repo) {
            break v;
        }
        assert!(Instant::now() < deadline, "not assessed: {v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    image["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {}", f["package"], f["id"]))
        .collect()
}

fn blob_path(root: &Path, d: &oci::Digest) -> PathBuf {
    root.join("blobs/sha256").join(&d.hex()[..2]).join(d.hex())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_builds_and_every_node_serves_the_build() {
    let images = transport::require_test_images!();
    let Some(pg) = storage::testing::shared_cluster() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let url = pg.fresh_database();
    let config = tmp.path().join("drydock.toml");
    std::fs::write(&config, "[vulndb]\npoll_secs = 1\n").unwrap();
    let env = [
        ("DRYDOCK_METADATA_URL", url.as_str()),
        ("DRYDOCK_VULNDB_UPDATE_HOURS", "24"),
        (
            "DRYDOCK_VULNDB_SOURCES",
            "http://127.0.0.1:9/advisories.zip",
        ),
        ("RUST_LOG", "warn,drydock=info,dbsync=info"),
    ];
    let (d1, d2) = (tmp.path().join("n1"), tmp.path().join("n2"));
    let v1 = import_db(&d1, &url);

    // Node 1 alone: it leads the update, finds its build fresh (no
    // build), and publishes it.
    let n1 = Node::start(&d1, &config, &env).await;
    until_logged(
        &n1,
        "vulnerability database published",
        Duration::from_secs(30),
    )
    .await;
    until_served(&n1, &v1, Duration::from_secs(10)).await;

    // Node 2 shares node 1's blob directory and has no database.
    std::fs::create_dir_all(&d2).unwrap();
    std::os::unix::fs::symlink(d1.join("blobs"), d2.join("blobs")).unwrap();
    let started = Instant::now();
    let mut n2 = Node::start(&d2, &config, &env).await;
    until_served(&n2, &v1, Duration::from_secs(15)).await;
    eprintln!("node 2 serves {v1} {:?} after its start", started.elapsed());
    assert!(log(&n2).contains("vulnerability database fetched"));

    // The same findings on both for the same image, each assessed by
    // the node it was pushed to.
    let f1 = push_and_assess(&images, &n1, "team/one").await;
    let f2 = push_and_assess(&images, &n2, "team/two").await;
    assert!(
        f1.iter().any(|f| f.contains("PYSEC-")) && f1.iter().any(|f| f.contains("CVE-")),
        "node 1 findings: {f1:?}"
    );
    assert_eq!(f1, f2);

    // A newer build, published while node 2 is down, with its stored
    // bytes then damaged: node 2 refuses it and keeps v1.
    n2.kill9();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let v2 = import_db(&d1, &url);
    assert!(v2 > v1);
    until_served(&n1, &v2, Duration::from_secs(15)).await;
    let releases =
        storage::open_releases(&d1, &storage::MetadataStorage::from_url(&url).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let rel2 = loop {
        let newest = releases.newest_release().await.unwrap();
        if let Some(r) = newest.filter(|r| r.version == v2) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "v2 never published:\n{}",
            log(&n1)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let path = blob_path(&d1, &rel2.digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let n2 = Node::start(&d2, &config, &env).await;
    until_logged(
        &n2,
        "vulnerability database release refused",
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(served_version(&n2).await.as_deref(), Some(v1.as_str()));
    assert_eq!(
        std::fs::read_to_string(d2.join("vulndb/CURRENT"))
            .unwrap()
            .trim(),
        v1
    );
    assert!(!d2.join(format!("vulndb/{v2}.partial")).exists());

    // GC, with no grace period, keeps both published builds' blobs.
    let before = releases.releases().await.unwrap();
    assert_eq!(before.len(), 2);
    drydock(&d1, &url, &["gc", "--grace", "0"]);
    for r in &before {
        assert!(
            blob_path(&d1, &r.digest).exists(),
            "GC removed {}",
            r.version
        );
    }

    // Node 2 never built a database: it only fetched one.
    assert!(!log(&n2).contains(BUILDING), "node 2 built:\n{}", log(&n2));
    assert!(
        !log(&n1).contains(BUILDING),
        "node 1 rebuilt a fresh database"
    );
}
