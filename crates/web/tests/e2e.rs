//! End to end: a real registry, the assessor and the API on 127.0.0.1,
//! skopeo pushing real images, a vulnerability database built from real
//! advisory records, a webhook receiver on loopback, and a manual clock.
//!
//! Images: transport's test support (`$DRYDOCK_TEST_IMAGES/oci`, else
//! `target/test-images/oci`, built with `scripts/test-images.sh` when
//! missing). Advisory data: the repository's
//! `tests/fixtures/vulndata` (or `$DRYDOCK_VULNDATA`).

mod common;

use assess::{Clock, ManualClock, Service};
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "0123456789abcdef-secret";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vulndata() -> PathBuf {
    std::env::var_os("DRYDOCK_VULNDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("tests/fixtures/vulndata"))
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test-image layout (canonical: skopeo cleans paths lexically), or
/// `None` after `skipped: <what is missing>`: skopeo, or a tool the image
/// build needs. Under CI either is a failure. The advisory data is the
/// repository's own fixture, so its absence is always a failure.
fn prerequisites() -> Option<PathBuf> {
    if Command::new("skopeo").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "skopeo is required when CI is set (.ci/run installs it)"
        );
        eprintln!("skipped: skopeo is not installed (it pushes the test images)");
        return None;
    }
    let zip = vulndata().join("osv/Debian/all.zip");
    assert!(
        zip.exists(),
        "{} is missing (tests/fixtures/vulndata is part of the repository; \
         DRYDOCK_VULNDATA, when set, must hold the same layout)",
        zip.display()
    );
    let layout = transport::testing::test_images()?;
    Some(std::fs::canonicalize(&layout).expect("canonical test-image layout"))
}

fn import_db(data: &Path, zips: &[&str]) -> String {
    let paths: Vec<PathBuf> = zips.iter().map(|z| vulndata().join(z)).collect();
    vulndb::import(data, &paths, &mut |_| {})
        .expect("import")
        .version
}

struct Server {
    addr: SocketAddr,
    registry: registry::Registry,
    service: Service,
    handle: vulndb::Handle,
    clock: ManualClock,
    http: reqwest::Client,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    /// A webhook to a fresh loopback receiver: its id and what it received.
    async fn add_webhook(&self) -> (String, Received) {
        let (url, received) = receiver().await;
        let (st, hook) = self
            .post("/api/v1/webhooks", json!({"url": url, "secret": SECRET}))
            .await;
        assert_eq!(st, 201, "{hook}");
        assert!(hook.get("secret").is_none(), "the secret is never shown");
        (hook["id"].as_str().unwrap().to_string(), received)
    }
    /// Exempt critical-and-below findings in `repository` for an hour.
    async fn exempt_for_an_hour(&self, repository: &str) {
        let expires = self.clock.now() + time::Duration::hours(1);
        let (st, ex) = self
            .post(
                "/api/v1/exemptions",
                json!({
                    "severity": "critical", "repository": repository,
                    "reason": "accepted risk", "author": "sec-team",
                    "expires_at": assess::clock::rfc3339(expires),
                }),
            )
            .await;
        assert_eq!(st, 201, "{ex}");
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    fn push(&self, layout: &Path, tag: &str, dest: &str) {
        skopeo(&[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{}/{dest}", self.host()),
        ]);
    }
    async fn wait_done(&self, digest: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (s, v) = self.get(&format!("/api/v1/images/{digest}")).await;
            if s == 200
                && matches!(
                    v["status"].as_str(),
                    Some("done" | "failed" | "unsupported")
                )
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "image {digest} not assessed: {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn start(data: &Path, workers: usize) -> Server {
    let registry = registry::Registry::open(crate::common::registry_options(data)).unwrap();
    let handle = vulndb::Handle::open_with_interval(data, Duration::from_millis(100));
    let clock = ManualClock::new();
    let mut opts = crate::common::assess_options(data);
    opts.workers = workers;
    opts.tick = Duration::from_secs(3600); // the test drives re-matching itself
    opts.webhook_backoff = Duration::from_millis(50);
    // The receivers are on loopback, which the default policy refuses.
    opts.outbound =
        assess::EgressPolicy::parse_allow(&["127.0.0.0/8".into(), "::1/128".into()]).unwrap();
    let service = assess::start_with_registry(
        opts,
        registry.clone(),
        handle.clone(),
        catalog::Limits::default(),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let app: Router = registry
        .router()
        .merge(web::router(web::State::new(service.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        addr,
        registry,
        service,
        handle,
        clock,
        http: reqwest::Client::new(),
    }
}

type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A webhook receiver: records (event, signature, body).
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let g = got.clone();
    let app = Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let g = g.clone();
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    g.lock().unwrap().push((
                        h("x-drydock-event"),
                        h("x-drydock-signature"),
                        body.to_vec(),
                    ));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), got)
}

fn signature_ok(sig: &str, body: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    sig == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn wait_deliveries(s: &Server, webhook: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = s
            .get(&format!("/api/v1/webhooks/{webhook}/deliveries"))
            .await;
        let list = v.as_array().cloned().unwrap_or_default();
        if list.iter().all(|d| d["state"] != "pending") {
            return list;
        }
        assert!(Instant::now() < deadline, "deliveries still pending: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn manifest_digest(layout: &Path, tag: &str) -> String {
    let layout = oci::layout::OciLayout::open(layout).unwrap();
    layout.resolve(Some(tag)).unwrap().digest.to_string()
}

fn unhealthy(v: &Value) -> bool {
    v["health"]["healthy"] == false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assessment_end_to_end() {
    let Some(layout) = tokio::task::spawn_blocking(prerequisites).await.unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let d2 = data.clone();
    let v1 = tokio::task::spawn_blocking(move || import_db(&d2, &["osv/Debian/all.zip"]))
        .await
        .unwrap();
    let s = start(&data, 2).await;
    assert_eq!(s.handle.current().unwrap().version(), v1);

    // Webhook, and the API's answers to bad input.
    let (hook_id, received) = s.add_webhook().await;
    for (path, want) in [
        ("/api/v1/images/not-a-digest", 400),
        (
            "/api/v1/images/sha256:0000000000000000000000000000000000000000000000000000000000000000",
            404,
        ),
        ("/api/v1/usage?from=2024-13", 400),
        ("/api/v1/images?health=sick", 400),
        ("/api/v1/recommendations?bogus=1", 400),
        ("/api/v1/nothing", 404),
    ] {
        let (st, v) = s.get(path).await;
        assert_eq!(st, want, "{path}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{path}: {v}"
        );
    }
    let (st, v) = s
        .post("/api/v1/exemptions", json!({"reason": "x", "author": "me"}))
        .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = s
        .post(
            "/api/v1/webhooks",
            json!({"url": "ftp://x", "secret": SECRET}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    // Internal addresses outside the allow-list are refused up front.
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
    ] {
        let (st, v) = s
            .post("/api/v1/webhooks", json!({"url": url, "secret": SECRET}))
            .await;
        assert_eq!(st, 400, "{v}");
        assert!(
            v.to_string().contains("refused by the outbound policy"),
            "{v}"
        );
    }
    let (st, doc) = s.get("/api/v1/openapi.json").await;
    assert_eq!(st, 200);
    assert!(doc["paths"]["/api/v1/images/{digest}"].is_object(), "{doc}");

    // Push: findings within a second or so.
    let base = manifest_digest(&layout, "bookworm-base");
    let app = manifest_digest(&layout, "python-app");
    let t0 = Instant::now();
    s.push(&layout, "bookworm-base", "base:bookworm");
    let pushed = t0.elapsed();
    let vb = s.wait_done(&base).await;
    eprintln!(
        "bookworm-base: push {:?}, push-to-findings {:?}",
        pushed,
        t0.elapsed() - pushed
    );
    s.push(&layout, "python-app", "app:1");
    let va = s.wait_done(&app).await;
    for v in [&vb, &va] {
        assert_eq!(v["status"], "done", "{v}");
        // A single-platform image: its platform comes from its config.
        let config_platform = format!(
            "linux/{}",
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64")
        );
        assert_eq!(v["platform"], config_platform.as_str(), "{v}");
        assert_eq!(v["db_version"], v1.as_str());
        let findings = v["findings"].as_array().unwrap();
        assert!(
            !findings.is_empty(),
            "real Debian records must match bookworm packages"
        );
        assert!(
            findings.iter().all(|f| f["ecosystem"] == "deb"),
            "only Debian data is loaded"
        );
        assert!(v["summary"]["total"].as_u64().unwrap() > 0);
        assert!(matches!(
            v["health"]["status"].as_str(),
            Some("healthy" | "unhealthy")
        ));
        assert_eq!(v["stale"], false);
    }
    assert_eq!(va["tags"], json!(["app:1"]));
    // The app is built on the base: the advice names it when OS findings dominate.
    let rem = &va["remediation"];
    assert!(rem["upgrade_plan"].is_array());
    if let Some(advice) = rem.get("base_image") {
        assert_eq!(advice["base_image"]["repository"], "base", "{advice}");
    }
    // Filters.
    let (_, crit) = s
        .get(&format!(
            "/api/v1/images/{app}?severity=critical&fixable=true"
        ))
        .await;
    assert!(
        crit["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["severity"] == "critical" && f["fixable"] == true)
    );
    let (st, _) = s.get(&format!("/api/v1/images/{app}?severity=awful")).await;
    assert_eq!(st, 400);
    let (_, inv) = s.get(&format!("/api/v1/images/{app}?inventory=true")).await;
    assert!(inv["inventory"]["packages"].as_array().unwrap().len() > 50);

    // A multi-arch index: each platform assessed, rolled up on the index.
    let multi = manifest_digest(&layout, "multiarch");
    s.push(&layout, "multiarch", "multi:latest");
    s.service.wait_idle(Duration::from_secs(120)).await.unwrap();
    let vm = s.wait_done(&multi).await;
    assert_eq!(vm["kind"], "index");
    let children = vm["children"].as_array().unwrap();
    assert_eq!(children.len(), 2, "{vm}");
    assert!(children.iter().all(|c| c["status"] == "done"), "{vm}");
    assert!(vm["health"].is_object());

    // Notifications: exactly one per unhealthy image, none for healthy ones, signed.
    let deliveries = wait_deliveries(&s, &hook_id).await;
    let mut expected: Vec<String> = Vec::new();
    for d in [&base, &app] {
        let (_, v) = s.get(&format!("/api/v1/images/{d}")).await;
        if unhealthy(&v) {
            expected.push(d.clone());
        }
    }
    for c in children {
        if c["health"]["healthy"] == false {
            expected.push(c["digest"].as_str().unwrap().to_string());
        }
    }
    let got = received.lock().unwrap().clone();
    let mut got_digests: Vec<String> = got
        .iter()
        .map(|(event, sig, body)| {
            assert_eq!(event, "image.unhealthy");
            assert!(signature_ok(sig, body), "bad signature");
            let v: Value = serde_json::from_slice(body).unwrap();
            assert!(!v["new_findings"].as_array().unwrap().is_empty());
            v["digest"].as_str().unwrap().to_string()
        })
        .collect();
    got_digests.sort();
    expected.sort();
    assert_eq!(got_digests, expected);
    assert_eq!(deliveries.len(), expected.len());
    assert!(deliveries.iter().all(|d| d["state"] == "delivered"));

    // A daily re-match with the same database: nothing new, nothing sent twice.
    s.clock.advance(time::Duration::days(2));
    let n = s.service.rematch_due().await.unwrap();
    assert!(
        n >= 2,
        "images in the window are re-matched at least daily ({n})"
    );
    wait_deliveries(&s, &hook_id).await;
    assert_eq!(
        received.lock().unwrap().len(),
        expected.len(),
        "never twice"
    );
    let (_, va2) = s.get(&format!("/api/v1/images/{app}")).await;
    assert_eq!(va2["diffs"]["previous_assessment"]["new"], json!([]));

    // Exemptions change health and expire by themselves.
    s.exempt_for_an_hour("app").await;
    let (_, v) = s.get(&format!("/api/v1/images/{app}")).await;
    assert_eq!(v["health"]["healthy"], true, "{}", v["health"]);
    assert_eq!(v["summary"]["total"], 0);
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["exempt"] == true)
    );
    let (_, b) = s.get(&format!("/api/v1/images/{base}")).await;
    assert_eq!(
        b["summary"]["exempt"], 0,
        "the exemption is scoped to repository app"
    );
    s.clock.advance(time::Duration::hours(2));
    let (_, v) = s.get(&format!("/api/v1/images/{app}")).await;
    assert_eq!(
        v["summary"]["exempt"], 0,
        "expired exemptions stop applying"
    );
    assert_eq!(unhealthy(&v), unhealthy(&va));

    // Database update: images pulled inside the window are re-matched, others not.
    s.clock.advance(time::Duration::days(40));
    let pull_dir = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/app:1", s.host()),
        &format!("oci:{}:x", pull_dir.path().display()),
    ]);
    s.registry.flush();
    s.service.poll_pulls().await.unwrap();
    let d2 = data.clone();
    let v2 = tokio::task::spawn_blocking(move || {
        import_db(&d2, &["osv/Debian/all.zip", "osv/PyPI/all.zip"])
    })
    .await
    .unwrap();
    assert_ne!(v1, v2);
    s.handle.reload().unwrap();
    let n = s.service.rematch_due().await.unwrap();
    assert_eq!(n, 1, "only the pulled image is in the window");
    let (_, va3) = s.get(&format!("/api/v1/images/{app}")).await;
    let (_, vb3) = s.get(&format!("/api/v1/images/{base}")).await;
    assert_eq!(va3["db_version"], v2.as_str());
    assert_eq!(va3["stale"], false);
    assert_eq!(vb3["db_version"], v1.as_str(), "outside the window: kept");
    assert_eq!(vb3["stale"], true);
    assert!(vb3["assessed_at"].is_string());
    // New problems (if the PyPI data brings any) are told once, as new findings.
    let new_keys: Vec<String> = va3["diffs"]["previous_assessment"]["new"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let violating_new = va3["findings"].as_array().unwrap().iter().any(|f| {
        f["violates_policy"] == true
            && new_keys.contains(&format!(
                "{}|{}|{}",
                f["id"].as_str().unwrap(),
                f["ecosystem"].as_str().unwrap(),
                f["package"].as_str().unwrap()
            ))
    });
    wait_deliveries(&s, &hook_id).await;
    let got = received.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        expected.len() + usize::from(violating_new),
        "{new_keys:?}"
    );
    if violating_new {
        let want = if unhealthy(&va) {
            "image.new_findings"
        } else {
            "image.unhealthy"
        };
        assert_eq!(got.last().unwrap().0, want);
    }

    // Usage: each digest once, however often re-matched.
    let (st, u) = s.get("/api/v1/usage").await;
    assert_eq!(st, 200);
    let per_repo = |r: &str| -> u64 {
        u["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["repository"] == r)
            .map(|x| x["images"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(per_repo("base"), 1, "{u}");
    assert_eq!(per_repo("app"), 1, "{u}");
    assert_eq!(per_repo("multi"), 2, "{u}");
    assert_eq!(u["total"], 4);

    // Listings.
    let (_, repos) = s.get("/api/v1/repositories").await;
    assert_eq!(repos.as_array().unwrap().len(), 3, "{repos}");
    let (st, tags) = s.get("/api/v1/repositories/app/tags").await;
    assert_eq!(st, 200);
    assert_eq!(tags[0]["tag"], "1");
    let (_, rec) = s.get("/api/v1/recommendations").await;
    assert!(rec["by_image"].as_array().unwrap().len() >= 3);
    let (_, q) = s.get("/api/v1/queue").await;
    assert_eq!(q["pending"], json!([]));
    let (_, db) = s.get("/api/v1/vulndb").await;
    assert_eq!(db["version"], v2.as_str());
    s.service.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_queue_loses_no_job() {
    let Some(layout) = tokio::task::spawn_blocking(prerequisites).await.unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    // No workers: pushes are queued and stay queued.
    let s = start(&data, 0).await;
    let base = manifest_digest(&layout, "bookworm-base");
    let app = manifest_digest(&layout, "python-app");
    s.push(&layout, "bookworm-base", "base:bookworm");
    s.push(&layout, "python-app", "app:1");
    let (_, q) = s.get("/api/v1/queue").await;
    assert_eq!(q["pending"].as_array().unwrap().len(), 2, "{q}");
    // One job was being worked on when the process died.
    let claimed = s.service.store().claim(0).unwrap().unwrap();
    assert_eq!(claimed.status, "cataloging");
    s.service.shutdown();
    let registry = s.registry.clone();
    drop(s);

    // The restarted service picks both up.
    let handle = vulndb::Handle::open(&data);
    let mut opts = crate::common::assess_options(&data);
    opts.tick = Duration::from_secs(3600);
    let svc = assess::start_with_registry(
        opts,
        registry,
        handle,
        catalog::Limits::default(),
        Arc::new(ManualClock::new()),
    )
    .await
    .unwrap();
    svc.wait_idle(Duration::from_secs(120)).await.unwrap();
    for d in [&base, &app] {
        let row = svc.store().image(d).unwrap().unwrap();
        assert_eq!(row.status, "done", "{row:?}");
    }
    svc.shutdown();
}

/// Layers are cataloged as their uploads complete, before any manifest
/// names them; the manifest's assessment then only merges and matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_are_cataloged_as_they_are_uploaded() {
    use catalog::LayerCache;
    let Some(layout) = prerequisites() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let s = start(data.path(), 1).await;
    let manifest_digest = manifest_digest(&layout, "bookworm-base");
    let blob = |d: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let manifest: Value = serde_json::from_slice(&blob(&manifest_digest)).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap().to_string();
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    for d in std::iter::once(&config).chain(&layers) {
        let r = s
            .http
            .post(s.url(&format!("/v2/early/base/blobs/uploads/?digest={d}")))
            .body(blob(d))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{d}");
    }
    // No manifest yet: nothing is queued, yet every layer gets cataloged.
    let deadline = Instant::now() + Duration::from_secs(60);
    for layer in &layers {
        while s
            .service
            .store()
            .get(
                &oci::Digest::parse(layer).unwrap(),
                catalog::CATALOG_VERSION,
            )
            .is_none()
        {
            assert!(Instant::now() < deadline, "{layer} not cataloged on upload");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(s.service.store().image(&manifest_digest).unwrap().is_none());
    // The config is JSON, not a layer: never cataloged.
    assert!(
        s.service
            .store()
            .get(
                &oci::Digest::parse(&config).unwrap(),
                catalog::CATALOG_VERSION
            )
            .is_none()
    );
    // Now the manifest: its assessment uses those results.
    let r = s
        .http
        .put(s.url("/v2/early/base/manifests/v1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(blob(&manifest_digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v = s.wait_done(&manifest_digest).await;
    assert_eq!(v["status"], "done", "{v}");
    let (_, inv) = s
        .get(&format!("/api/v1/images/{manifest_digest}?inventory=true"))
        .await;
    assert!(
        inv.to_string().contains("\"libc6\""),
        "inventory without libc6: {inv}"
    );
}

/// An image kept healthy only by an exemption becomes unhealthy when the
/// exemption expires; webhooks hear it at the next scheduler tick, not at
/// the next re-match, and only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_exemption_notifies_without_a_rematch() {
    let Some(layout) = tokio::task::spawn_blocking(prerequisites).await.unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let d2 = data.clone();
    tokio::task::spawn_blocking(move || {
        import_db(&d2, &["osv/Debian/all.zip", "osv/PyPI/all.zip"])
    })
    .await
    .unwrap();
    let s = start(&data, 1).await;
    let (hook_id, received) = s.add_webhook().await;
    s.exempt_for_an_hour("held").await;

    // Old PyPI packages with fixed high-severity advisories.
    let app = manifest_digest(&layout, "python-app");
    s.push(&layout, "python-app", "held:v1");
    let v = s.wait_done(&app).await;
    assert_eq!(v["health"]["healthy"], true, "{}", v["health"]);
    assert!(wait_deliveries(&s, &hook_id).await.is_empty());

    let before = s.clock.now();
    s.clock.advance(time::Duration::hours(2));
    let (_, v) = s.get(&format!("/api/v1/images/{app}")).await;
    assert!(
        unhealthy(&v),
        "python-app has fixable high findings once unexempted: {}",
        v["health"]
    );
    for _ in 0..2 {
        let (svc, now) = (s.service.clone(), s.clock.now());
        tokio::task::spawn_blocking(move || svc.notify_expired(before, now))
            .await
            .unwrap()
            .unwrap();
        let deliveries = wait_deliveries(&s, &hook_id).await;
        assert_eq!(
            deliveries.len(),
            1,
            "exactly one notification: {deliveries:?}"
        );
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_slice(&got[0].2).unwrap();
    assert_eq!(got[0].0, "image.unhealthy");
    assert_eq!(body["digest"], app.as_str());
}
