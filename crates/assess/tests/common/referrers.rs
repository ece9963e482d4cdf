//! A registry on loopback with an assessor beside it whose one catalog
//! and database find a fixable high CVE in openssl in every image, for the
//! referrer tests (SBOMs attached, VEX documents applied): pushes, the
//! settled image view, referrer listings, and (with access control) users
//! signed in by a header.

use super::OCI_MANIFEST;
use assess::{Cataloger, Finding, Options, Service, Severity, VulnDatabase, VulnSource};
use inventory::{Ecosystem, Inventory, Package};
use oci::{BlobSource, Digest, ImageManifest};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const PURL: &str = "pkg:deb/debian/openssl@3.0.11-1?distro=debian-12";
pub const CVE: &str = "CVE-2024-0727";

/// Every image holds openssl 3.0.11; the version can be bumped.
pub struct OneCatalog(pub AtomicU32);
impl Cataloger for OneCatalog {
    fn version(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
    fn catalog(
        &self,
        _: &dyn BlobSource,
        _: &ImageManifest,
        _: &dyn catalog::LayerCache,
    ) -> Result<Inventory, assess::CatalogFailure> {
        let p = Package {
            ecosystem: Ecosystem::Deb,
            name: "openssl".into(),
            version: "3.0.11-1".into(),
            source_name: None,
            source_version: None,
            purl: PURL.into(),
            location: "/var/lib/dpkg/status".into(),
            layer: String::new(),
        };
        Ok(Inventory {
            packages: vec![p],
            ..Default::default()
        })
    }
}

/// openssl below 3.0.13 has a fixable high finding.
struct OneDb;
impl VulnDatabase for OneDb {
    fn version(&self) -> String {
        "db1".into()
    }
    fn match_inventory(&self, inv: &Inventory) -> Vec<Finding> {
        inv.packages
            .iter()
            .filter(|p| p.name == "openssl")
            .map(|p| Finding {
                aliases: vec!["GHSA-9v9h-cgj8-h64p".to_string()].into(),
                ..super::fixable(CVE, p, "3.0.13-1", Severity::High)
            })
            .collect()
    }
    fn status(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
struct Db;
impl VulnSource for Db {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        Some(Arc::new(OneDb))
    }
}

/// The registry as the assessor sees it, with a latch on attaching: while
/// held, `attach` waits, as a slow referrer push would.
struct Latched {
    inner: assess::live::RegistrySource,
    latch: Arc<Latch>,
}

#[derive(Default)]
pub struct Latch {
    held: std::sync::Mutex<bool>,
    released: std::sync::Condvar,
    /// `attach` calls begun.
    pub entered: AtomicU32,
}

impl Latch {
    pub fn hold(&self, held: bool) {
        *self.held.lock().unwrap() = held;
        self.released.notify_all();
    }
}

impl assess::RegistryContent for Latched {
    fn manifest(
        &self,
        repo: &oci::Name,
        digest: &Digest,
    ) -> anyhow::Result<Option<(Vec<u8>, String)>> {
        self.inner.manifest(repo, digest)
    }
    fn blob_source(&self) -> Arc<dyn BlobSource> {
        self.inner.blob_source()
    }
    fn repositories(&self) -> anyhow::Result<Vec<oci::Name>> {
        self.inner.repositories()
    }
    fn tags(&self, repo: &oci::Name) -> anyhow::Result<Vec<(oci::Tag, Digest)>> {
        self.inner.tags(repo)
    }
    fn manifests(&self, repo: &oci::Name) -> anyhow::Result<Vec<(Digest, String)>> {
        self.inner.manifests(repo)
    }
    fn recent_pulls(
        &self,
        since: time::OffsetDateTime,
    ) -> Vec<(oci::Name, Digest, time::OffsetDateTime)> {
        self.inner.recent_pulls(since)
    }
    fn attach(&self, repo: &oci::Name, artifact: &assess::Artifact) -> anyhow::Result<Digest> {
        self.latch.entered.fetch_add(1, Ordering::SeqCst);
        let mut held = self.latch.held.lock().unwrap();
        while *held {
            held = self.latch.released.wait(held).unwrap();
        }
        drop(held);
        self.inner.attach(repo, artifact)
    }
    fn delete_manifest(&self, repo: &oci::Name, digest: &Digest) -> anyhow::Result<()> {
        self.inner.delete_manifest(repo, digest)
    }
}

pub struct Setup {
    _dir: tempfile::TempDir,
    pub catalog: Arc<OneCatalog>,
    pub latch: Arc<Latch>,
    pub service: Service,
    pub base: String,
    pub client: reqwest::Client,
}

pub async fn setup(opts: impl FnOnce(&mut Options)) -> Setup {
    setup_with(opts, None).await
}

const PASSWORD: &str = "correct horse battery";

/// Access control for the registry's routes: users `sec` (group
/// `security`) and `dev` (group `dev`), both with push on `team/*`.
fn access(dir: &std::path::Path) -> auth::AccessControl {
    let push = |subject| auth::Binding {
        id: String::new(),
        subject,
        pattern: "team/*".into(),
        actions: vec![auth::Action::Pull, auth::Action::Push],
    };
    let ac = auth::AccessControl::open(
        dir,
        auth::Settings {
            bindings: vec![
                push(auth::Subject::Group("security".into())),
                push(auth::Subject::Group("dev".into())),
            ],
            ..Default::default()
        },
    )
    .unwrap();
    let op = auth::Principal::unrestricted();
    ac.add_user(&op, "sec", PASSWORD, &["security".into()])
        .unwrap();
    ac.add_user(&op, "dev", PASSWORD, &["dev".into()]).unwrap();
    ac
}

/// A stand-in for the edge: `x-test-login: USER` signs the request in
/// as USER; without it the request is unrestricted (as with access
/// control off).
async fn test_edge(
    axum::extract::State(ac): axum::extract::State<auth::AccessControl>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let user = req
        .headers()
        .get("x-test-login")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(user) = user {
        // The slow check once, then the cached one.
        let p = ac
            .login_known(&user, PASSWORD, None)
            .or_else(|| ac.login(&user, PASSWORD, None).ok())
            .expect("a known user");
        req.extensions_mut().insert(p);
    }
    next.run(req).await
}

pub fn client_as(user: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("x-test-login", user.parse().unwrap());
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(h)
        .build()
        .unwrap()
}

pub async fn setup_with(opts: impl FnOnce(&mut Options), with_access: Option<()>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
    let mut o = Options::new(dir.path());
    o.tick = Duration::from_millis(50);
    o.webhook_attempts = 1;
    // Deliveries are queued whether or not they get through; nothing listens here.
    o.webhooks = vec![assess::WebhookConfig {
        url: "http://127.0.0.1:9/hook".into(),
        secret: "s".into(),
        repository: None,
        min_severity: None,
    }];
    opts(&mut o);
    let catalog = Arc::new(OneCatalog(AtomicU32::new(1)));
    let latch = Arc::new(Latch::default());
    let service = Service::open(
        o,
        Arc::new(Latched {
            inner: assess::live::RegistrySource(registry.clone()),
            latch: latch.clone(),
        }),
        catalog.clone(),
        Arc::new(Db),
        Arc::new(assess::SystemClock),
    )
    .unwrap();
    registry.add_sink(Arc::new(service.clone()));
    service.start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = match with_access {
        Some(()) => registry
            .router()
            .layer(axum::middleware::from_fn_with_state(
                access(&dir.path().join("access")),
                test_edge,
            )),
        None => registry.router(),
    };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Setup {
        _dir: dir,
        catalog,
        latch,
        service,
        base: format!("http://{addr}"),
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
    }
}

impl Setup {
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
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

    pub async fn push_manifest(&self, repo: &str, reference: &str, body: &str) -> Digest {
        let r = self
            .client
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("content-type", OCI_MANIFEST)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        Digest::sha256_of(body.as_bytes())
    }

    pub async fn push_image(&self, repo: &str, tag: &str) -> (Digest, usize) {
        let config = r#"{"architecture":"amd64","os":"linux"}"#;
        let layer = "layer";
        let dc = self.push_blob(repo, config.as_bytes()).await;
        let dl = self.push_blob(repo, layer.as_bytes()).await;
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{dc}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{dl}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        (self.push_manifest(repo, tag, &body).await, body.len())
    }

    /// Push `doc` as an artifact of `artifact_type` whose subject is `subject`.
    pub async fn push_referrer(
        &self,
        repo: &str,
        subject: &Digest,
        size: usize,
        artifact_type: &str,
        doc: &str,
    ) -> Digest {
        let dc = self.push_blob(repo, b"{}").await;
        let dl = self.push_blob(repo, doc.as_bytes()).await;
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{artifact_type}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{dc}","size":2}},"layers":[{{"mediaType":"{artifact_type}","digest":"{dl}","size":{}}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{size}}}}}"#,
            doc.len()
        );
        let d = Digest::sha256_of(body.as_bytes());
        self.push_manifest(repo, &d.to_string(), &body).await
    }

    /// The view of `digest` once assessed and its SBOM (attached after
    /// its findings are stored) is in place.
    pub async fn settled(&self, digest: &str) -> assess::views::ImageView {
        let deadline = Instant::now() + Duration::from_secs(30);
        self.service
            .wait_idle(Duration::from_secs(60))
            .await
            .unwrap();
        loop {
            let v = self.view(digest).await;
            if let Some(v) = v
                && (v.status == "done" || v.status == "unsupported" || v.status == "failed")
            {
                return v;
            }
            assert!(Instant::now() < deadline, "{digest} not assessed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The image view, read as the API reads it: off the async threads
    /// (it may block on the registry).
    pub async fn view(&self, digest: &str) -> Option<assess::views::ImageView> {
        let (service, digest) = (self.service.clone(), digest.to_string());
        tokio::task::spawn_blocking(move || {
            service
                .image_view(&digest, &Default::default(), false)
                .unwrap()
        })
        .await
        .unwrap()
    }

    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: &str,
    ) -> Vec<serde_json::Value> {
        let r = self
            .client
            .get(format!(
                "{}/v2/{repo}/referrers/{subject}?artifactType={}",
                self.base,
                artifact_type.replace('+', "%2B")
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        v["manifests"].as_array().unwrap().clone()
    }

    /// A referrer pulled like any artifact: its manifest and the bytes of
    /// its one layer (the document).
    pub async fn artifact(&self, repo: &str, digest: &str) -> (serde_json::Value, bytes::Bytes) {
        let m: serde_json::Value = self
            .get(format!("{}/v2/{repo}/manifests/{digest}", self.base))
            .await
            .json()
            .await
            .unwrap();
        let layer = m["layers"][0]["digest"].as_str().unwrap();
        let doc = self
            .get(format!("{}/v2/{repo}/blobs/{layer}", self.base))
            .await
            .bytes()
            .await
            .unwrap();
        (m, doc)
    }

    pub async fn get(&self, url: String) -> reqwest::Response {
        let r = self
            .client
            .get(url)
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r
    }
}

pub const CDX: &str = "application/vnd.cyclonedx+json";

pub fn health(v: &assess::views::ImageView) -> String {
    v.health.as_ref().unwrap().status.clone()
}
