//! The pull gate over a real registry and the real assessor: images pushed
//! over HTTP are assessed (a cataloger that reads each layer's text, a
//! database with one critical fixable advisory) and the gate, set on the
//! registry, refuses manifest reads by their verdict. Cached verdicts
//! follow the store: a new result or an exemption is seen at the next pull.

mod common;

use assess::{
    Cataloger, Finding, Options, PullGateRule, Service, Severity, VerdictGate, VulnDatabase,
    VulnSource,
};
use common::fixable;
use inventory::{Ecosystem, Inventory, Package};
use oci::{BlobSource, Digest, ImageManifest};
use reqwest::StatusCode;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Each layer's text is a package name (`openssl`, `zlib`); a layer that
/// says `slow` waits until `release` is set.
struct TextCatalog {
    release: Arc<AtomicBool>,
}

impl Cataloger for TextCatalog {
    fn version(&self) -> u32 {
        1
    }
    fn catalog(
        &self,
        source: &dyn BlobSource,
        manifest: &ImageManifest,
        _: &dyn catalog::LayerCache,
    ) -> Result<Inventory, assess::CatalogFailure> {
        let mut inv = Inventory::default();
        for l in &manifest.layers {
            let mut text = String::new();
            source
                .open_blob(&l.digest)
                .and_then(|mut r| r.read_to_string(&mut text))
                .map_err(|e| e.to_string())?;
            if text == "slow" {
                while !self.release.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            inv.packages.push(Package {
                ecosystem: Ecosystem::Deb,
                name: text.clone(),
                version: "1.0-1".into(),
                source_name: None,
                source_version: None,
                purl: format!("pkg:deb/debian/{text}@1.0-1"),
                location: "var/lib/dpkg/status".into(),
                layer: l.digest.to_string(),
            });
        }
        Ok(inv)
    }
}

/// `openssl` has a critical advisory with a fix; nothing else has any.
struct OneAdvisory;
impl VulnDatabase for OneAdvisory {
    fn version(&self) -> String {
        "test-1".into()
    }
    fn match_inventory(&self, inventory: &Inventory) -> Vec<Finding> {
        inventory
            .packages
            .iter()
            .filter(|p| p.name == "openssl")
            .map(|p| fixable("CVE-2099-0001", p, "1.0-2", Severity::Critical))
            .collect()
    }
    fn status(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

struct Db;
impl VulnSource for Db {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        Some(Arc::new(OneAdvisory))
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    service: Service,
    base: String,
    client: reqwest::Client,
    release: Arc<AtomicBool>,
}

async fn setup(rules: Vec<PullGateRule>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let service = Service::open(
        Options::new(dir.path()),
        Arc::new(assess::live::RegistrySource(registry.clone())),
        Arc::new(TextCatalog {
            release: release.clone(),
        }),
        Arc::new(Db),
        Arc::new(assess::SystemClock),
    )
    .unwrap();
    registry.add_sink(Arc::new(service.clone()));
    service.start().await.unwrap();
    let gate = VerdictGate::new(service.clone(), rules).unwrap();
    assert!(registry.set_pull_gate(Arc::new(gate)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = registry.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Setup {
        _dir: dir,
        service,
        base: format!("http://{addr}"),
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        release,
    }
}

impl Setup {
    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self
            .client
            .post(format!("{}/v2/{repo}/blobs/uploads/?digest={d}", self.base))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        d
    }

    async fn put_manifest(&self, repo: &str, reference: &str, body: &str) {
        let r = self
            .client
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("content-type", OCI_MANIFEST)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    /// `repo:tag`, one layer holding `package`; returns digest and body.
    async fn push_image(&self, repo: &str, tag: &str, package: &str) -> (Digest, String) {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"p\":\"{package}\"}}");
        let dc = self.push_blob(repo, config.as_bytes()).await;
        let dl = self.push_blob(repo, package.as_bytes()).await;
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{dc}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{dl}","size":{}}}]}}"#,
            config.len(),
            package.len()
        );
        self.put_manifest(repo, tag, &body).await;
        (Digest::sha256_of(body.as_bytes()), body)
    }

    async fn status(&self, method: reqwest::Method, repo: &str, reference: &str) -> StatusCode {
        self.client
            .request(
                method,
                format!("{}/v2/{repo}/manifests/{reference}", self.base),
            )
            .send()
            .await
            .unwrap()
            .status()
    }

    /// GET's status and, when refused, the error's code and message.
    async fn get(&self, repo: &str, reference: &str) -> (StatusCode, String, String) {
        let r = self
            .client
            .get(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status();
        if status.is_success() {
            return (status, String::new(), String::new());
        }
        let v: serde_json::Value = r.json().await.unwrap();
        let e = &v["errors"][0];
        (
            status,
            e["code"].as_str().unwrap().to_string(),
            e["message"].as_str().unwrap().to_string(),
        )
    }

    async fn idle(&self) {
        self.service
            .wait_idle(Duration::from_secs(60))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn unhealthy_images_are_refused_until_exempted() {
    let s = setup(vec![PullGateRule::new("team-a/*")]).await;
    let (bad, bad_body) = s.push_image("team-a/app", "bad", "openssl").await;
    let (good, _) = s.push_image("team-a/app", "good", "zlib").await;
    s.push_image("team-b/app", "bad", "openssl").await;
    s.idle().await;

    let want = format!(
        "pull refused by the pull gate for team-a/*: image {bad} is unhealthy (1 violation); \
         see /ui/#/image/{bad} or GET /api/v1/images/{bad}"
    );
    for reference in ["bad".to_string(), bad.to_string()] {
        let (status, code, message) = s.get("team-a/app", &reference).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{reference}");
        assert_eq!(code, "DENIED");
        assert_eq!(message, want);
        assert_eq!(
            s.status(reqwest::Method::HEAD, "team-a/app", &reference)
                .await,
            StatusCode::FORBIDDEN
        );
    }
    // Healthy images, and the same image under a pattern no rule covers.
    for (repo, reference) in [
        ("team-a/app", "good".to_string()),
        ("team-a/app", good.to_string()),
        ("team-b/app", "bad".to_string()),
        ("team-b/app", bad.to_string()),
    ] {
        for m in [reqwest::Method::GET, reqwest::Method::HEAD] {
            assert_eq!(s.status(m, repo, &reference).await, StatusCode::OK);
        }
    }

    // A signature of the refused image stays pullable (a referrer is
    // never gated, assessed or not).
    let sig_layer = s.push_blob("team-a/app", b"a signature").await;
    let empty = s.push_blob("team-a/app", b"{}").await;
    let sig = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[{{"mediaType":"application/vnd.example.sig.v1","digest":"{sig_layer}","size":11}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{bad}","size":{}}}}}"#,
        bad_body.len()
    );
    let sig_d = Digest::sha256_of(sig.as_bytes());
    s.put_manifest("team-a/app", &sig_d.to_string(), &sig).await;
    assert_eq!(
        s.status(reqwest::Method::GET, "team-a/app", &sig_d.to_string())
            .await,
        StatusCode::OK
    );

    // An exemption is part of the verdict: the cached refusal goes.
    s.service
        .add_exemption(
            Some("CVE-2099-0001".into()),
            None,
            Some("team-a/*".into()),
            None,
            "not reachable in this image".into(),
            "alice".into(),
            None,
        )
        .unwrap();
    assert_eq!(
        s.status(reqwest::Method::GET, "team-a/app", "bad").await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn images_not_assessed_are_refused_only_where_configured() {
    let strict = PullGateRule {
        not_assessed: true,
        ..PullGateRule::new("strict/*")
    };
    let s = setup(vec![strict, PullGateRule::new("lenient/*")]).await;
    // The same image in both repositories, cataloged until released.
    let (d, _) = s.push_image("strict/app", "v1", "slow").await;
    s.push_image("lenient/app", "v1", "slow").await;

    let (status, code, message) = s.get("strict/app", "v1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code, "DENIED");
    assert!(
        message.starts_with(&format!(
            "pull refused by the pull gate for strict/*: image {d} is not assessed yet ("
        )),
        "{message}"
    );
    assert!(message.ends_with(&format!("see /ui/#/image/{d} or GET /api/v1/images/{d}")));
    assert_eq!(
        s.status(reqwest::Method::HEAD, "strict/app", &d.to_string())
            .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.status(reqwest::Method::GET, "lenient/app", "v1").await,
        StatusCode::OK
    );

    // Assessed healthy: the cached "not assessed" gives way at once.
    s.release.store(true, Ordering::Release);
    s.idle().await;
    for m in [reqwest::Method::GET, reqwest::Method::HEAD] {
        assert_eq!(s.status(m, "strict/app", "v1").await, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_rule_without_unhealthy_serves_unhealthy_images() {
    let rule = PullGateRule {
        unhealthy: false,
        not_assessed: true,
        ..PullGateRule::new("team-a/*")
    };
    let s = setup(vec![rule]).await;
    s.push_image("team-a/app", "bad", "openssl").await;
    s.idle().await;
    assert_eq!(
        s.status(reqwest::Method::GET, "team-a/app", "bad").await,
        StatusCode::OK
    );
}
