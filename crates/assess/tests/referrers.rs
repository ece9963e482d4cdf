//! SBOMs attached as referrers and VEX documents (through the service's
//! API and pushed as referrers), over a real registry on loopback.

use assess::{
    Cataloger, Finding, FindingStatus, Options, Service, Severity, VulnDatabase, VulnSource,
};
use inventory::{Ecosystem, Inventory, Package};
use oci::{BlobSource, Digest, ImageManifest};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const PURL: &str = "pkg:deb/debian/openssl@3.0.11-1?distro=debian-12";
const CVE: &str = "CVE-2024-0727";

/// Every image holds openssl 3.0.11; the version can be bumped.
struct OneCatalog(AtomicU32);
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
                id: CVE.into(),
                aliases: vec!["GHSA-9v9h-cgj8-h64p".to_string()].into(),
                related: Vec::new().into(),
                ecosystem: Ecosystem::Deb,
                distro: Some("debian:12".into()),
                package: "openssl".into(),
                source_package: None,
                purl: p.purl.as_str().into(),
                installed_version: p.version.as_str().into(),
                fixed_version: Some("3.0.13-1".into()),
                status: FindingStatus::Fixed,
                status_note: None,
                severity: Severity::High,
                severity_source: "test".into(),
                cvss: None,
                summary: "".into(),
                references: Vec::new().into(),
                informational: None,
                data_source: "test".into(),
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
struct Latch {
    held: std::sync::Mutex<bool>,
    released: std::sync::Condvar,
    /// `attach` calls begun.
    entered: AtomicU32,
}

impl Latch {
    fn hold(&self, held: bool) {
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

struct Setup {
    _dir: tempfile::TempDir,
    catalog: Arc<OneCatalog>,
    latch: Arc<Latch>,
    service: Service,
    base: String,
    client: reqwest::Client,
}

async fn setup(opts: impl FnOnce(&mut Options)) -> Setup {
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

fn client_as(user: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("x-test-login", user.parse().unwrap());
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(h)
        .build()
        .unwrap()
}

async fn setup_with(opts: impl FnOnce(&mut Options), with_access: Option<()>) -> Setup {
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

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

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

    async fn push_manifest(&self, repo: &str, reference: &str, body: &str) -> Digest {
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

    async fn push_image(&self, repo: &str, tag: &str) -> (Digest, usize) {
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
    async fn push_referrer(
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
    async fn settled(&self, digest: &str) -> assess::views::ImageView {
        let deadline = Instant::now() + Duration::from_secs(30);
        self.service
            .wait_idle(Duration::from_secs(30))
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
    async fn view(&self, digest: &str) -> Option<assess::views::ImageView> {
        let (service, digest) = (self.service.clone(), digest.to_string());
        tokio::task::spawn_blocking(move || {
            service
                .image_view(&digest, &Default::default(), false)
                .unwrap()
        })
        .await
        .unwrap()
    }

    async fn referrers(
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
    async fn artifact(&self, repo: &str, digest: &str) -> (serde_json::Value, bytes::Bytes) {
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

    async fn get(&self, url: String) -> reqwest::Response {
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

const CDX: &str = "application/vnd.cyclonedx+json";

/// After a push the image's CycloneDX SBOM is a referrer of it, pullable,
/// annotated, unsupported to the assessor and not metered; an unchanged
/// re-assessment attaches nothing; a new catalog version replaces it.
#[tokio::test]
async fn sbom_is_attached_once_per_catalog_version() {
    let s = setup(|_| {}).await;
    let (digest, _) = s.push_image("team/app", "v1").await;
    let view = s.settled(&digest.to_string()).await;
    assert_eq!(view.status, "done");
    let refs = s.referrers("team/app", &digest, CDX).await;
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(refs[0]["artifactType"], CDX);
    let sbom = refs[0]["digest"].as_str().unwrap().to_string();
    let ann = &refs[0]["annotations"];
    assert!(ann["org.opencontainers.image.created"].is_string(), "{ann}");
    assert_eq!(ann[assess::CATALOG_VERSION_ANNOTATION], "1");
    // Pull it like any artifact.
    let (m, doc) = s.artifact("team/app", &sbom).await;
    assert_eq!(m["subject"]["digest"], digest.to_string());
    let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(doc["bomFormat"], "CycloneDX");
    assert_eq!(doc["specVersion"], "1.6");
    assert!(doc.to_string().contains(PURL), "{doc}");
    // The SBOM is an artifact: unsupported, never metered, no SBOM of its own.
    let v = s.settled(&sbom).await;
    assert_eq!(v.status, "unsupported");
    assert!(
        s.referrers("team/app", &Digest::parse(&sbom).unwrap(), CDX)
            .await
            .is_empty()
    );
    let usage = s.service.store().usage("2000-01", "2999-12").unwrap();
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(usage[0].images, 1);

    // Listings show the image, not drydock's own SBOM beside it.
    let listed = s.service.list_images(Some("team/app")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, digest.to_string());

    // A rescan that changes nothing attaches nothing new.
    assert!(s.service.requeue(&digest.to_string()).unwrap());
    s.settled(&digest.to_string()).await;
    let refs = s.referrers("team/app", &digest, CDX).await;
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0]["digest"], sbom.as_str());

    // A new catalog version replaces it; the old one is gone.
    s.catalog.0.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await; // a later created time
    assert!(s.service.requeue(&digest.to_string()).unwrap());
    s.settled(&digest.to_string()).await;
    let refs = s.referrers("team/app", &digest, CDX).await;
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_ne!(refs[0]["digest"], sbom.as_str());
    assert_eq!(
        refs[0]["annotations"][assess::CATALOG_VERSION_ANNOTATION],
        "2"
    );
    let r = s
        .client
        .get(format!("{}/v2/team/app/manifests/{sbom}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// `sbom.rules` turn attaching off per repository.
#[tokio::test]
async fn sbom_rules_turn_it_off_per_repository() {
    let s = setup(|o| {
        o.sbom.rules = vec![assess::SbomRule {
            repository: "quiet/*".parse().unwrap(),
            enabled: false,
            spdx: None,
        }]
    })
    .await;
    let (digest, _) = s.push_image("quiet/app", "v1").await;
    s.settled(&digest.to_string()).await;
    assert!(s.referrers("quiet/app", &digest, CDX).await.is_empty());
}

const SPDX: &str = "application/spdx+json";

/// Where a rule asks for it, an SPDX 2.3 document is attached beside the
/// CycloneDX one, and replaced with it when the catalog version changes.
#[tokio::test]
async fn spdx_is_attached_beside_cyclonedx_where_configured() {
    let s = setup(|o| {
        o.sbom.rules = vec![assess::SbomRule {
            repository: "spdx/*".parse().unwrap(),
            enabled: true,
            spdx: Some(true),
        }]
    })
    .await;
    let (digest, _) = s.push_image("spdx/app", "v1").await;
    s.settled(&digest.to_string()).await;
    let refs = s.referrers("spdx/app", &digest, SPDX).await;
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(refs[0]["artifactType"], SPDX);
    assert_eq!(
        refs[0]["annotations"][assess::CATALOG_VERSION_ANNOTATION],
        "1"
    );
    let spdx = refs[0]["digest"].as_str().unwrap().to_string();
    let (m, bytes) = s.artifact("spdx/app", &spdx).await;
    assert_eq!(m["subject"]["digest"], digest.to_string());
    assert_eq!(m["layers"][0]["mediaType"], SPDX);
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert!(doc.to_string().contains(PURL), "{doc}");
    validate_spdx(&bytes);
    assert_eq!(s.referrers("spdx/app", &digest, CDX).await.len(), 1);
    // The SPDX artifact is an artifact too, hidden from listings.
    assert_eq!(s.settled(&spdx).await.status, "unsupported");
    assert_eq!(s.service.list_images(Some("spdx/app")).unwrap().len(), 1);

    // Other repositories get CycloneDX only (SPDX is off by default). A
    // different image: the same digest is assessed once, in its first
    // repository.
    let config = r#"{"architecture":"arm64","os":"linux"}"#;
    let dc = s.push_blob("team/app", config.as_bytes()).await;
    let dl = s.push_blob("team/app", b"layer").await;
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{dc}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{dl}","size":5}}]}}"#,
        config.len()
    );
    let other = s.push_manifest("team/app", "v1", &body).await;
    s.settled(&other.to_string()).await;
    assert!(s.referrers("team/app", &other, SPDX).await.is_empty());
    assert_eq!(s.referrers("team/app", &other, CDX).await.len(), 1);

    // A rescan that changes nothing keeps it; a new catalog version
    // replaces it and deletes the old one.
    assert!(s.service.requeue(&digest.to_string()).unwrap());
    s.settled(&digest.to_string()).await;
    assert_eq!(
        s.referrers("spdx/app", &digest, SPDX).await[0]["digest"],
        spdx.as_str()
    );
    s.catalog.0.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(s.service.requeue(&digest.to_string()).unwrap());
    s.settled(&digest.to_string()).await;
    let refs = s.referrers("spdx/app", &digest, SPDX).await;
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_ne!(refs[0]["digest"], spdx.as_str());
    let r = s
        .client
        .get(format!("{}/v2/spdx/app/manifests/{spdx}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// An index gets SBOMs of its own: a CycloneDX document listing its
/// platform images by digest and platform and, with SPDX on, an SPDX one
/// whose index package contains a package per platform image (valid to
/// the reference SPDX tools); each image keeps its own.
#[tokio::test]
async fn an_index_sbom_names_its_platform_images() {
    let s = setup(|o| o.sbom.spdx = true).await;
    let layer = s.push_blob("multi/app", b"layer").await;
    let mut images = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = format!(r#"{{"architecture":"{arch}","os":"linux"}}"#);
        let dc = s.push_blob("multi/app", config.as_bytes()).await;
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{dc}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":5}}]}}"#,
            config.len()
        );
        let d = Digest::sha256_of(body.as_bytes());
        s.push_manifest("multi/app", &d.to_string(), &body).await;
        images.push((d, body.len(), arch));
    }
    let entries: Vec<String> = images
        .iter()
        .map(|(d, size, arch)| {
            format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{size},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#
            )
        })
        .collect();
    const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    let index_body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    );
    let r = s
        .client
        .put(format!("{}/v2/multi/app/manifests/v1", s.base))
        .header("content-type", OCI_INDEX)
        .body(index_body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let index = Digest::sha256_of(index_body.as_bytes());
    for (d, _, _) in &images {
        s.settled(&d.to_string()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let refs = loop {
        let refs = s.referrers("multi/app", &index, CDX).await;
        if !refs.is_empty() || Instant::now() > deadline {
            break refs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refs.len(), 1, "{refs:?}");
    let (m, doc) = s
        .artifact("multi/app", refs[0]["digest"].as_str().unwrap())
        .await;
    assert_eq!(m["subject"]["digest"], index.to_string());
    assert_eq!(m["subject"]["mediaType"], OCI_INDEX);
    let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(doc["specVersion"], "1.6");
    assert_eq!(doc["metadata"]["component"]["version"], index.to_string());
    let components = doc["components"].as_array().unwrap();
    assert_eq!(components.len(), 2, "{doc}");
    for (c, (d, _, arch)) in components.iter().zip(&images) {
        assert_eq!(c["type"], "container");
        assert_eq!(c["bom-ref"], d.to_string());
        let platform = c["properties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "drydock:platform")
            .unwrap();
        assert_eq!(platform["value"], format!("linux/{arch}"));
        // Each platform image has its own SBOM with its packages.
        assert_eq!(s.referrers("multi/app", d, CDX).await.len(), 1);
        assert_eq!(s.referrers("multi/app", d, SPDX).await.len(), 1);
    }

    // The index's SPDX document.
    s.service.wait_idle(Duration::from_secs(30)).await.unwrap();
    let refs = s.referrers("multi/app", &index, SPDX).await;
    assert_eq!(refs.len(), 1, "{refs:?}");
    let (m, bytes) = s
        .artifact("multi/app", refs[0]["digest"].as_str().unwrap())
        .await;
    assert_eq!(m["subject"]["digest"], index.to_string());
    assert_eq!(m["subject"]["mediaType"], OCI_INDEX);
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    let packages = doc["packages"].as_array().unwrap();
    assert_eq!(packages[0]["SPDXID"], "SPDXRef-Image");
    assert_eq!(packages[0]["versionInfo"], index.to_string());
    let platform_images: Vec<&serde_json::Value> = packages
        .iter()
        .filter(|p| p["SPDXID"] != "SPDXRef-Image")
        .collect();
    assert_eq!(platform_images.len(), 2, "{doc}");
    for (p, (d, _, arch)) in platform_images.iter().zip(&images) {
        assert_eq!(p["primaryPackagePurpose"], "CONTAINER");
        assert_eq!(p["versionInfo"], d.to_string());
        assert!(
            p["comment"]
                .as_str()
                .unwrap()
                .contains(&format!("linux/{arch}")),
            "{p}"
        );
        let id = p["SPDXID"].as_str().unwrap();
        assert!(
            doc["relationships"].as_array().unwrap().iter().any(|r| {
                r["spdxElementId"] == "SPDXRef-Image"
                    && r["relationshipType"] == "CONTAINS"
                    && r["relatedSpdxElement"] == id
            }),
            "{doc}"
        );
    }
    validate_spdx(&bytes);
}

/// Validate an SPDX document with the reference SPDX tools (.ci/venv).
fn validate_spdx(bytes: &[u8]) {
    let tools = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/venv/bin");
    if tools.join("pyspdxtools").exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.spdx.json");
        std::fs::write(&path, bytes).unwrap();
        let out = std::process::Command::new(tools.join("pyspdxtools"))
            .arg("-i")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.trim().is_empty(),
            "SPDX validation: {text}"
        );
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "pyspdxtools (.ci/venv) is needed in CI"
        );
        eprintln!("skipped: SPDX validation (no .ci/venv/bin/pyspdxtools)");
    }
}

/// An image's findings are stored, and told, before its SBOM is attached:
/// with the referrer push held back, the image is done and its findings
/// and webhook delivery are there; released, the SBOM follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_are_stored_before_the_sbom_is_attached() {
    let s = setup(|_| {}).await;
    s.latch.hold(true);
    // Released however the test ends: a failed assertion must not leave
    // the attaching thread blocked (the runtime waits for it).
    struct Release(Arc<Latch>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.hold(false);
        }
    }
    let _release = Release(s.latch.clone());
    let (digest, _) = s.push_image("team/app", "v1").await;
    let d = digest.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.latch.entered.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the SBOM was never attached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The attachment is blocked now.
    let v = s.view(&d).await.unwrap();
    assert_eq!(v.status, "done", "findings wait for the SBOM: {v:?}");
    assert_eq!(v.findings.len(), 1);
    assert_eq!(&*v.findings[0].finding.id, CVE);
    assert_eq!(health(&v), "unhealthy");
    assert_eq!(s.service.store().deliveries(None, 100).unwrap().len(), 1);
    assert!(s.referrers("team/app", &digest, CDX).await.is_empty());
    // Idle means the SBOM is attached too.
    assert!(
        s.service
            .wait_idle(Duration::from_millis(200))
            .await
            .is_err()
    );
    s.latch.hold(false);
    s.service.wait_idle(Duration::from_secs(30)).await.unwrap();
    assert_eq!(s.referrers("team/app", &digest, CDX).await.len(), 1);
}

fn openvex(id: &str, product: &str, status: &str, extra: &str) -> String {
    format!(
        r#"{{
  "@context": "https://openvex.dev/ns/v0.2.0",
  "@id": "{id}",
  "author": "Platform Security <security@example.com>",
  "timestamp": "2026-01-10T10:00:00Z",
  "version": 1,
  "statements": [{{
    "vulnerability": {{"name": "{CVE}"}},
    "products": [{{
      "@id": "{product}",
      "subcomponents": [{{"@id": "pkg:deb/debian/openssl@3.0.11-1?arch=amd64&distro=debian-12"}}]
    }}],
    "status": "{status}"{extra}
  }}]
}}"#
    )
}

fn health(v: &assess::views::ImageView) -> String {
    v.health.as_ref().unwrap().status.clone()
}

/// A VEX document through the service's API takes the finding out of the
/// verdict (re-judged from the stored inventory); the webhook says
/// nothing new; `affected` puts it back; invalid documents name the path.
#[tokio::test]
async fn vex_via_the_api_flips_health_without_a_notification() {
    let s = setup(|_| {}).await;
    let (digest, _) = s.push_image("team/app", "v1").await;
    let d = digest.to_string();
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "unhealthy");
    let told = s.service.store().deliveries(None, 100).unwrap().len();
    assert_eq!(told, 1);

    let purl = format!(
        "pkg:oci/app@{}?repository_url=registry.local/team/app",
        d.replace(':', "%3A")
    );
    let doc = openvex(
        "https://example.com/vex/app-1",
        &purl,
        "not_affected",
        r#", "justification": "vulnerable_code_not_in_execute_path""#,
    );
    let added = s.service.add_vex(doc.as_bytes(), "alice").unwrap().unwrap();
    assert_eq!(added.rejudged, 1);
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "healthy", "{:?}", v.health);
    assert_eq!(v.summary.as_ref().unwrap().not_affected, 1);
    let f = &v.findings[0];
    assert!(!f.violates_policy);
    let note = f.not_affected_per_vex.as_ref().unwrap();
    assert_eq!(note.document, "https://example.com/vex/app-1");
    assert_eq!(note.author, "Platform Security <security@example.com>");
    assert_eq!(
        note.justification.as_deref(),
        Some("vulnerable_code_not_in_execute_path")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.service.store().deliveries(None, 100).unwrap().len(), told);

    // The same document id, now affected: counted again.
    let doc = openvex(
        "https://example.com/vex/app-1",
        &purl,
        "affected",
        r#", "action_statement": "upgrade openssl""#,
    );
    let added = s.service.add_vex(doc.as_bytes(), "alice").unwrap().unwrap();
    assert!(added.replaced);
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "unhealthy");
    assert!(v.findings[0].not_affected_per_vex.is_none());

    // A statement for another image changes nothing here.
    let other = format!("sha256:{}", "0".repeat(64));
    let doc = openvex("https://example.com/vex/other", &other, "fixed", "");
    let added = s.service.add_vex(doc.as_bytes(), "alice").unwrap().unwrap();
    assert_eq!(added.rejudged, 0);
    assert_eq!(health(&s.settled(&d).await), "unhealthy");

    // Invalid documents: the JSON path of the problem.
    let bad = openvex("x", &d, "not_affected", "");
    let e = s
        .service
        .add_vex(bad.as_bytes(), "alice")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.path, "$.statements[0].justification");
    let bad = openvex("x", &d, "not_affected", r#", "justification": "trust_me""#);
    let e = s
        .service
        .add_vex(bad.as_bytes(), "alice")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.path, "$.statements[0].justification");
    assert!(e.message.contains("trust_me"), "{e}");
    let bad = openvex("x", &d, "maybe", "");
    let e = s
        .service
        .add_vex(bad.as_bytes(), "alice")
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "$.statements[0].status: \"maybe\" is not one of not_affected, affected, fixed, under_investigation"
    );
    let e = s
        .service
        .add_vex(b"{\"@context\":\"https://openvex.dev/ns/v0.2.0\"}", "a")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.path, "$.@id");
}

/// A VEX document pushed as a referrer of the image (OpenVEX, then
/// CycloneDX VEX) is applied to that image; deleting it takes it back.
#[tokio::test]
async fn vex_pushed_as_a_referrer_is_applied() {
    let s = setup(|_| {}).await;
    let (digest, size) = s.push_image("team/app", "v1").await;
    let d = digest.to_string();
    assert_eq!(health(&s.settled(&d).await), "unhealthy");
    // Product by digest; the fix shipped in a patched build of the library.
    let doc = openvex("https://example.com/vex/r1", &d, "fixed", "");
    let vd = s
        .push_referrer(
            "team/app",
            &digest,
            size,
            "application/vnd.openvex+json",
            &doc,
        )
        .await;
    let av = s.settled(&vd.to_string()).await;
    assert_eq!(av.status, "unsupported");
    assert!(
        av.error
            .as_deref()
            .unwrap_or("")
            .contains("VEX document https://example.com/vex/r1 applied"),
        "{:?}",
        av.error
    );
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "healthy");
    assert_eq!(
        v.findings[0]
            .not_affected_per_vex
            .as_ref()
            .unwrap()
            .status
            .as_str(),
        "fixed"
    );

    // Deleting the referrer takes its statements back.
    let r = s
        .client
        .delete(format!("{}/v2/team/app/manifests/{vd}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&s.settled(&d).await) != "unhealthy" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // CycloneDX VEX, the product the image's OCI purl, the component by bom-ref.
    let cdx = format!(
        r#"{{"bomFormat":"CycloneDX","specVersion":"1.6","version":1,
  "serialNumber":"urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
  "metadata":{{"timestamp":"2026-01-11T00:00:00Z","authors":[{{"name":"App Team"}}],
    "component":{{"type":"container","name":"app","bom-ref":"app","purl":"pkg:oci/app@{}"}}}},
  "components":[{{"type":"library","name":"openssl","bom-ref":"openssl","purl":"pkg:deb/debian/openssl@3.0.11-1?distro=debian-12"}}],
  "vulnerabilities":[{{"id":"{CVE}","analysis":{{"state":"not_affected","justification":"code_not_reachable","detail":"the TLS code path is unused"}},"affects":[{{"ref":"openssl"}}]}}]}}"#,
        d.replace(':', "%3A")
    );
    let cd = s.push_referrer("team/app", &digest, size, CDX, &cdx).await;
    s.settled(&cd.to_string()).await;
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "healthy", "{:?}", v.findings);
    let note = v.findings[0].not_affected_per_vex.as_ref().unwrap();
    assert_eq!(note.author, "App Team");
    assert_eq!(note.justification.as_deref(), Some("code_not_reachable"));
}

/// With `assess.vex.trusted` set, a VEX referrer pushed by an identity it
/// does not name is stored (listed with who pushed it and why) but not
/// applied; one pushed by a trusted identity is applied, and the finding
/// shows the authenticated pusher beside the document's own author.
#[tokio::test]
async fn vex_referrers_from_untrusted_pushers_are_stored_not_applied() {
    let mut s = setup_with(
        |o| o.vex.trusted = Some(vec!["group:security".into()]),
        Some(()),
    )
    .await;
    let (digest, size) = s.push_image("team/app", "v1").await;
    let d = digest.to_string();
    assert_eq!(health(&s.settled(&d).await), "unhealthy");
    let doc = |id: &str| {
        openvex(
            id,
            &d,
            "not_affected",
            r#", "justification": "vulnerable_code_not_present""#,
        )
    };

    // dev may push to team/app, but is not trusted for VEX.
    s.client = client_as("dev");
    let untrusted = s
        .push_referrer(
            "team/app",
            &digest,
            size,
            "application/vnd.openvex+json",
            &doc("https://example.com/vex/by-dev"),
        )
        .await;
    let av = s.settled(&untrusted.to_string()).await;
    assert_eq!(av.status, "unsupported");
    let note = av.error.as_deref().unwrap_or("");
    assert!(
        note.contains("VEX document https://example.com/vex/by-dev stored, not applied")
            && note.contains("pushed by dev, who is not trusted for VEX (assess.vex.trusted)"),
        "{note}"
    );
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "unhealthy");
    assert!(v.findings[0].not_affected_per_vex.is_none());
    let listed = s.service.vex_documents().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, format!("referrer:{untrusted}"));
    assert_eq!(listed[0].recorded_by.as_deref(), Some("dev"));
    assert!(
        listed[0]
            .not_applied
            .as_deref()
            .is_some_and(|w| w.contains("pushed by dev")),
        "{listed:?}"
    );

    // sec is in the security group: applied, and recorded as its pusher.
    s.client = client_as("sec");
    let trusted = s
        .push_referrer(
            "team/app",
            &digest,
            size,
            "application/vnd.openvex+json",
            &doc("https://example.com/vex/by-sec"),
        )
        .await;
    let av = s.settled(&trusted.to_string()).await;
    assert!(
        av.error
            .as_deref()
            .unwrap_or("")
            .contains("VEX document https://example.com/vex/by-sec applied"),
        "{:?}",
        av.error
    );
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "healthy", "{:?}", v.findings);
    let note = v.findings[0].not_affected_per_vex.as_ref().unwrap();
    assert_eq!(note.document, "https://example.com/vex/by-sec");
    assert_eq!(note.author, "Platform Security <security@example.com>");
    assert_eq!(note.recorded_by.as_deref(), Some("sec"));
    let listed = s.service.vex_documents().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|r| r.recorded_by.as_deref() == Some("sec") && r.not_applied.is_none())
    );

    // Deleting the untrusted one's referrer (as an operator) removes its
    // row too.
    s.client = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = s
        .client
        .delete(format!("{}/v2/team/app/manifests/{untrusted}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.service.vex_documents().unwrap().len() != 1 {
        assert!(Instant::now() < deadline, "the untrusted document stayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(health(&s.settled(&d).await), "healthy");
}
