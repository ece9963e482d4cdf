//! The image view's advice and diffs, and the pull gate's words, over a
//! real registry (images pushed over HTTP on loopback) and the real
//! assessor: the diff since a tag's previous digest for single-platform
//! images, base-image and better-starting-point advice kept to what helps
//! (same platform, a fix in the base), and a gate refusal that says the
//! image waits for a vulnerability database.

use assess::{
    Cataloger, Finding, FindingStatus, Options, PullGateRule, Service, Severity, VerdictGate,
    VulnDatabase, VulnSource, views::FindingFilter,
};
use inventory::{Ecosystem, Inventory, Package};
use oci::{BlobSource, Digest, ImageManifest};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Each layer's text is one Debian package's name.
struct TextCatalog;

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

/// Packages named `openssl…` have a critical advisory with a fix;
/// `nofix…` a high one without; others none.
struct Advisories;

fn finding(p: &Package, id: &str, fixed: Option<&str>, severity: Severity) -> Finding {
    Finding {
        id: id.into(),
        aliases: Vec::new().into(),
        related: Vec::new().into(),
        ecosystem: Ecosystem::Deb,
        distro: Some("debian:12".into()),
        package: p.name.as_str().into(),
        source_package: None,
        purl: p.purl.as_str().into(),
        installed_version: p.version.as_str().into(),
        fixed_version: fixed.map(Into::into),
        status: if fixed.is_some() {
            FindingStatus::Fixed
        } else {
            FindingStatus::Unfixed
        },
        status_note: None,
        severity,
        severity_source: "test".into(),
        cvss: None,
        summary: "".into(),
        references: Vec::new().into(),
        informational: None,
        data_source: "test".into(),
    }
}

impl VulnDatabase for Advisories {
    fn version(&self) -> String {
        "test-1".into()
    }
    fn match_inventory(&self, inventory: &Inventory) -> Vec<Finding> {
        inventory
            .packages
            .iter()
            .filter_map(|p| {
                if p.name.starts_with("openssl") {
                    Some(finding(
                        p,
                        "CVE-2099-0001",
                        Some("1.0-2"),
                        Severity::Critical,
                    ))
                } else if p.name.starts_with("nofix") {
                    Some(finding(p, "CVE-2099-0002", None, Severity::High))
                } else {
                    None
                }
            })
            .collect()
    }
    fn status(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

/// A database only once `installed` is set.
struct Db {
    installed: Arc<AtomicBool>,
}
impl VulnSource for Db {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        self.installed
            .load(Ordering::Acquire)
            .then(|| Arc::new(Advisories) as Arc<dyn VulnDatabase>)
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    service: Service,
    base: String,
    client: reqwest::Client,
}

async fn setup(db: bool, rules: Vec<PullGateRule>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
    let service = Service::open(
        Options::new(dir.path()),
        Arc::new(assess::live::RegistrySource(registry.clone())),
        Arc::new(TextCatalog),
        Arc::new(Db {
            installed: Arc::new(AtomicBool::new(db)),
        }),
        Arc::new(assess::SystemClock),
    )
    .unwrap();
    registry.add_sink(Arc::new(service.clone()));
    service.start().await.unwrap();
    if !rules.is_empty() {
        let gate = VerdictGate::new(service.clone(), rules).unwrap();
        assert!(registry.set_pull_gate(Arc::new(gate)));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = registry.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Setup {
        _dir: dir,
        service,
        base: format!("http://{addr}"),
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
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

    /// `repo:tag` of `arch` (linux), one layer per package, in order.
    async fn push_image(&self, repo: &str, tag: &str, arch: &str, packages: &[&str]) -> Digest {
        let config = format!(
            "{{\"architecture\":\"{arch}\",\"os\":\"linux\",\"p\":\"{}\"}}",
            packages.join(",")
        );
        let dc = self.push_blob(repo, config.as_bytes()).await;
        let mut layers = Vec::new();
        for p in packages {
            let dl = self.push_blob(repo, p.as_bytes()).await;
            layers.push(format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{dl}","size":{}}}"#,
                p.len()
            ));
        }
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{dc}","size":{}}},"layers":[{}]}}"#,
            config.len(),
            layers.join(",")
        );
        let r = self
            .client
            .put(format!("{}/v2/{repo}/manifests/{tag}", self.base))
            .header("content-type", OCI_MANIFEST)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        Digest::sha256_of(body.as_bytes())
    }

    async fn idle(&self) {
        self.service
            .wait_idle(Duration::from_secs(60))
            .await
            .unwrap();
    }

    /// The image view, read as the API reads it: off the async threads
    /// (it may block on the registry).
    async fn view(&self, d: &Digest) -> assess::views::ImageView {
        let (service, d) = (self.service.clone(), d.to_string());
        tokio::task::spawn_blocking(move || {
            service
                .image_view(&d, &FindingFilter::default(), false)
                .unwrap()
                .unwrap()
        })
        .await
        .unwrap()
    }
}

/// A single-platform tag moved to a new digest: the new image's view has
/// the diff since the digest the tag pointed at before (resolved and new
/// findings), and none against an image of another platform.
#[tokio::test]
async fn single_platform_tag_diff_comes_from_the_tag_history() {
    let s = setup(true, Vec::new()).await;
    let old = s.push_image("team/app", "v1", "amd64", &["openssl"]).await;
    s.idle().await;
    let new = s.push_image("team/app", "v1", "amd64", &["nofix"]).await;
    s.idle().await;
    let v = s.view(&new).await;
    assert_eq!(v.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(v.diffs.previous_tag_digest.len(), 1, "{:?}", v.diffs);
    let d = &v.diffs.previous_tag_digest[0];
    assert_eq!(d.since, old.to_string());
    assert_eq!(d.repository.as_deref(), Some("team/app"));
    assert_eq!(d.tag.as_deref(), Some("v1"));
    let diff = serde_json::to_value(&d.diff).unwrap();
    let text = diff.to_string();
    assert!(
        text.contains("CVE-2099-0002"),
        "new finding missing: {text}"
    );
    assert!(
        text.contains("CVE-2099-0001"),
        "resolved finding missing: {text}"
    );

    // The tag moved to an arm64 image: nothing of amd64 to compare with.
    let arm = s
        .push_image("team/app", "v1", "arm64", &["openssl-arm"])
        .await;
    s.idle().await;
    assert!(s.view(&arm).await.diffs.previous_tag_digest.is_empty());
}

/// The better starting point and the base image are of the image's own
/// platform: an arm64 image with fewer findings is never proposed to an
/// amd64 one, an amd64 one is.
#[tokio::test]
async fn better_starting_point_is_of_the_same_platform() {
    let s = setup(true, Vec::new()).await;
    s.push_image("base", "old", "amd64", &["openssl"]).await;
    let app = s
        .push_image("team/app", "v1", "amd64", &["openssl", "app"])
        .await;
    // A newer base with no findings, but for arm64 only.
    s.push_image("base", "new-arm", "arm64", &["zlib-arm"])
        .await;
    s.idle().await;
    let rem = s.view(&app).await.remediation.unwrap();
    assert_eq!(rem.better_alternative, None, "{rem:?}");
    let base = rem.base_image.expect("base advice");
    assert_eq!(base.base_image.unwrap().repository, "base");

    let new_amd = s.push_image("base", "new", "amd64", &["zlib"]).await;
    s.idle().await;
    let rem = s.view(&app).await.remediation.unwrap();
    let alt = rem.better_alternative.expect("an amd64 alternative");
    assert_eq!(alt.digest, new_amd.to_string());
    assert_eq!(alt.findings, 0);
}

/// "Rebuild on a newer base" only when a base finding has a fix.
#[tokio::test]
async fn base_advice_needs_a_fix_in_the_base() {
    let s = setup(true, Vec::new()).await;
    let unfixed = s
        .push_image("team/a", "v1", "amd64", &["nofix", "app-a"])
        .await;
    let fixed = s
        .push_image("team/b", "v1", "amd64", &["openssl-b", "app-b"])
        .await;
    s.idle().await;
    let rem = s.view(&unfixed).await.remediation.unwrap();
    assert_eq!(rem.findings_without_fix, 1);
    assert!(rem.base_image.is_none(), "{rem:?}");
    let rem = s.view(&fixed).await.remediation.unwrap();
    let advice = rem.base_image.expect("advice when the base has a fix");
    assert_eq!(advice.os_findings_in_base_layers, 1);
    assert!(advice.advice.contains("rebuild on a newer base image"));
}

/// An image assessed before any database is refused by a strict gate
/// with a message naming the wait, not "not assessed yet (done)".
#[tokio::test]
async fn gate_names_the_wait_for_a_database() {
    let strict = PullGateRule {
        not_assessed: true,
        ..PullGateRule::new("strict/*")
    };
    let s = setup(false, vec![strict]).await;
    let d = s
        .push_image("strict/app", "v1", "amd64", &["openssl"])
        .await;
    s.idle().await;
    let r = s
        .client
        .get(format!("{}/v2/strict/app/manifests/v1", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    let message = v["errors"][0]["message"].as_str().unwrap().to_string();
    assert!(
        message.starts_with(&format!(
            "pull refused by the pull gate for strict/*: image {d} is not assessed yet \
             (waiting for a vulnerability database"
        )),
        "{message}"
    );
    assert!(message.ends_with(&format!("see /ui/#/image/{d} or GET /api/v1/images/{d}")));
}
