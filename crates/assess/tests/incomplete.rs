//! Fail closed, end to end: images pushed into a real registry (in
//! process) and assessed by the real catalog. Whatever part of an image
//! cannot be read is named, the image is marked incomplete with the
//! reasons, and the default policy never calls it healthy.

use assess::policy::{PolicyRule, evaluate_image};
use assess::store::Store;
use assess::views::FindingFilter;
use assess::{Finding, FindingStatus, Health, Options, Service, Severity, health_status};
use axum::body::Bytes;
use inventory::Ecosystem;
use oci::{Digest, Name, Reference, Tag};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const STATUS_AB: &str = "Package: aaa\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\nPackage: bbb\nStatus: install ok installed\nArchitecture: amd64\nSource: bsrc (0.9)\nVersion: 2.0\n";
const OS_RELEASE: &[u8] = b"ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An uncompressed tar layer built in memory.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }
    fn file(mut self, path: &str, data: &[u8]) -> Layer {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }
    /// An entry whose name is written as given, unchecked (`../x`).
    fn raw_file(mut self, name: &[u8], data: &[u8]) -> Layer {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn base_layer() -> Vec<u8> {
    Layer::new()
        .file("etc/os-release", OS_RELEASE)
        .file("var/lib/dpkg/status", STATUS_AB.as_bytes())
        .bytes()
}

struct Setup {
    _dir: tempfile::TempDir,
    registry: registry::Registry,
    service: Service,
}

async fn setup(limits: catalog::Limits) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    // A real database: without one no image gets a verdict (it waits for a
    // vulnerability database), and these tests are about the verdict.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/vulndata/osv/Debian/all.zip");
    vulndb::import(dir.path(), &[fixture], &mut |_| {}).unwrap();
    let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
    let mut opts = Options::new(dir.path());
    opts.tick = Duration::from_millis(50);
    let service = assess::start_with_registry(
        opts,
        registry.clone(),
        vulndb::Handle::open(dir.path()),
        limits,
        Arc::new(assess::SystemClock),
    )
    .await
    .unwrap();
    Setup {
        _dir: dir,
        registry,
        service,
    }
}

impl Setup {
    async fn blob(&self, repo: &Name, data: &[u8]) -> (Digest, usize) {
        let d = Digest::sha256_of(data);
        self.registry.put_blob(repo, &d, data).await.unwrap();
        (d, data.len())
    }

    async fn manifest(
        &self,
        repo: &Name,
        tag: &str,
        media_type: &str,
        body: serde_json::Value,
    ) -> Digest {
        let bytes = serde_json::to_vec(&body).unwrap();
        self.registry
            .put_manifest(
                repo,
                &Reference::Tag(Tag::parse(tag).unwrap()),
                Bytes::from(bytes),
                Some(media_type),
                registry::Origin::Push,
            )
            .await
            .unwrap()
    }

    /// Push an image of uncompressed tar layers (bottom first).
    async fn push_image(&self, repo: &str, tag: &str, layers: Vec<Vec<u8>>) -> (Digest, usize) {
        let repo = Name::parse(repo).unwrap();
        let mut descs = Vec::new();
        for l in layers {
            let (d, size) = self.blob(&repo, &l).await;
            descs.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": d.to_string(),
                "size": size,
            }));
        }
        let (config, config_size) = self
            .blob(&repo, br#"{"os":"linux","architecture":"amd64"}"#)
            .await;
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config.to_string(),
                "size": config_size,
            },
            "layers": descs,
        });
        let size = serde_json::to_vec(&body).unwrap().len();
        (self.manifest(&repo, tag, OCI_MANIFEST, body).await, size)
    }

    /// Wait until `digest` (and, for an index, its children) is assessed.
    async fn assessed(&self, digest: &Digest) -> assess::views::ImageView {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Read as the API reads it: off the async threads (the view
            // may block on the registry).
            let (service, d) = (self.service.clone(), digest.to_string());
            let view = tokio::task::spawn_blocking(move || {
                service
                    .image_view(&d, &FindingFilter::default(), true)
                    .unwrap()
            })
            .await
            .unwrap();
            if let Some(v) = view {
                assert_ne!(v.status, "failed", "{:?}", v.error);
                // An image's "done" is final; an index's verdict waits for
                // its platforms. Without a database there is no verdict.
                if v.status == "done" && (v.health.is_some() || v.kind != "index") {
                    return v;
                }
            }
            assert!(Instant::now() < deadline, "{digest} not assessed in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn deb_names(view: &assess::views::ImageView) -> Vec<String> {
    let mut v: Vec<String> = view
        .inventory
        .as_ref()
        .unwrap()
        .packages
        .iter()
        .filter(|p| p.ecosystem == Ecosystem::Deb)
        .map(|p| format!("{}@{}", p.name, p.version))
        .collect();
    v.sort();
    v
}

/// A tar entry climbing out with `..` used to fail the whole image, which
/// then had no health at all. Now the rest is cataloged and the image has
/// a verdict: incomplete, naming the entry.
#[tokio::test]
async fn hostile_path_gives_an_incomplete_verdict_not_a_failure() {
    let s = setup(catalog::Limits::default()).await;
    let layer = Layer::new()
        .file("etc/os-release", OS_RELEASE)
        .raw_file(b"../../etc/passwd", b"root:x:0:0")
        .file("var/lib/dpkg/status", STATUS_AB.as_bytes())
        .bytes();
    let (digest, _) = s.push_image("team/app", "hostile", vec![layer]).await;
    let view = s.assessed(&digest).await;
    assert_eq!(deb_names(&view), ["aaa@1.0", "bbb@2.0"]);
    assert_eq!(view.complete, Some(false));
    assert_eq!(
        view.incomplete_reasons.len(),
        1,
        "{:?}",
        view.incomplete_reasons
    );
    assert!(view.incomplete_reasons[0].contains("../../etc/passwd"));
    let health = view.health.as_ref().unwrap();
    assert!(!health.healthy);
    assert_eq!(health.status, health_status::INCOMPLETE);
    assert!(!health.complete);
    assert!(
        health.reason.contains("could not be read completely"),
        "{}",
        health.reason
    );

    // What the API serializes.
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["complete"], false);
    assert_eq!(json["health"]["status"], "incomplete");
    assert_eq!(json["health"]["healthy"], false);
    assert!(
        json["incomplete_reasons"][0]
            .as_str()
            .unwrap()
            .contains("../../etc/passwd")
    );
    // Listings carry the verdict too.
    let briefs = s.service.list_images(Some("team/app")).unwrap();
    assert_eq!(briefs.len(), 1);
    assert_eq!(briefs[0].health.as_ref().unwrap().status, "incomplete");
}

/// The issue's case: a dpkg status with one field past the file cap,
/// stacked on a base, used to make the base's packages vanish and the
/// image `healthy`. Now the base's packages stay, and the image is
/// incomplete with the file and the limit named. The base alone is
/// healthy and complete.
#[tokio::test]
async fn oversized_dpkg_status_is_incomplete_and_keeps_the_base() {
    let s = setup(catalog::Limits {
        max_file_bytes: 4096,
        ..catalog::Limits::default()
    })
    .await;
    let (base, base_size) = s.push_image("team/app", "base", vec![base_layer()]).await;
    let mut evil = STATUS_AB.to_string();
    evil.push_str("\nPackage: evil\nStatus: install ok installed\nVersion: 1\nDescription: ");
    evil.push_str(&"x".repeat(8192));
    evil.push('\n');
    let upper = Layer::new()
        .file("var/lib/dpkg/status", evil.as_bytes())
        .bytes();
    let (app, app_size) = s
        .push_image("team/app", "app", vec![base_layer(), upper])
        .await;

    let view = s.assessed(&base).await;
    assert_eq!(view.complete, Some(true));
    assert!(view.incomplete_reasons.is_empty());
    assert_eq!(view.health.as_ref().unwrap().status, health_status::HEALTHY);

    let view = s.assessed(&app).await;
    assert_eq!(deb_names(&view), ["aaa@1.0", "bbb@2.0"]);
    assert_eq!(view.complete, Some(false));
    let reason = &view.incomplete_reasons[0];
    assert!(
        reason.contains("/var/lib/dpkg/status")
            && reason.contains("4096")
            && reason.contains("max_file_bytes"),
        "{reason}"
    );
    let health = view.health.as_ref().unwrap();
    assert_eq!(health.status, health_status::INCOMPLETE);
    assert!(!health.healthy);
    assert_eq!(&health.incomplete_reasons, &view.incomplete_reasons);

    // An index over both rolls up to incomplete, with the reasons.
    let repo = Name::parse("team/app").unwrap();
    let platform = |arch: &str| serde_json::json!({"os": "linux", "architecture": arch});
    let index = s
        .manifest(
            &repo,
            "multi",
            OCI_INDEX,
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {"mediaType": OCI_MANIFEST, "digest": base.to_string(), "size": base_size, "platform": platform("amd64")},
                    {"mediaType": OCI_MANIFEST, "digest": app.to_string(), "size": app_size, "platform": platform("arm64")},
                ],
            }),
        )
        .await;
    let view = s.assessed(&index).await;
    assert_eq!(view.kind, "index");
    assert_eq!(view.complete, Some(false));
    assert_eq!(view.incomplete_reasons.len(), 1);
    let health = view.health.unwrap();
    assert_eq!(health.status, health_status::INCOMPLETE);
    assert!(health.reason.contains("1 of 2"), "{}", health.reason);
}

/// A cataloger that counts its calls and reports gaps or not.
struct Counting {
    calls: std::sync::atomic::AtomicUsize,
    gaps: bool,
}

impl assess::Cataloger for Counting {
    fn version(&self) -> u32 {
        1
    }
    fn catalog(
        &self,
        _: &dyn oci::BlobSource,
        _: &oci::ImageManifest,
        _: &dyn catalog::LayerCache,
    ) -> Result<inventory::Inventory, assess::CatalogFailure> {
        Err("the worker asks for catalog_image".into())
    }
    fn catalog_image(
        &self,
        _: &dyn oci::BlobSource,
        _: &oci::ImageManifest,
        _: &dyn catalog::LayerCache,
    ) -> Result<assess::Cataloged, assess::CatalogFailure> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(assess::Cataloged {
            inventory: inventory::Inventory::default(),
            incomplete: if self.gaps {
                vec!["/x: over the limit".into()]
            } else {
                Vec::new()
            },
        })
    }
}

struct NoDb;
impl assess::VulnSource for NoDb {
    fn current(&self) -> Option<Arc<dyn assess::VulnDatabase>> {
        None
    }
}

/// A stored complete inventory is reused when the image is queued again;
/// an incomplete one is cataloged again (so raised limits can close its
/// gaps).
#[tokio::test]
async fn an_incomplete_inventory_is_cataloged_again_on_rescan() {
    for gaps in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
        let counting = Arc::new(Counting {
            calls: Default::default(),
            gaps,
        });
        let mut opts = Options::new(dir.path());
        opts.tick = Duration::from_millis(50);
        opts.catalog_on_upload = false;
        let service = Service::open(
            opts,
            Arc::new(assess::live::RegistrySource(registry.clone())),
            counting.clone(),
            Arc::new(NoDb),
            Arc::new(assess::SystemClock),
        )
        .unwrap();
        registry.add_sink(Arc::new(service.clone()));
        service.start().await.unwrap();
        let s = Setup {
            _dir: dir,
            registry,
            service,
        };
        let (digest, _) = s.push_image("team/app", "v1", vec![base_layer()]).await;
        let view = s.assessed(&digest).await;
        assert_eq!(view.complete, Some(!gaps));
        // Queued again synchronously: wait for that job to finish.
        assert!(s.service.requeue(&digest.to_string()).unwrap());
        assert_eq!(
            s.service
                .store()
                .image(&digest.to_string())
                .unwrap()
                .unwrap()
                .status,
            "queued"
        );
        let view = s.assessed(&digest).await;
        assert_eq!(view.complete, Some(!gaps));
        let want = if gaps { 2 } else { 1 };
        assert_eq!(
            counting.calls.load(std::sync::atomic::Ordering::SeqCst),
            want,
            "gaps: {gaps}"
        );
    }
}

fn finding(sev: Severity) -> Finding {
    Finding {
        id: "CVE-2024-0001".into(),
        aliases: Vec::new().into(),
        related: Vec::new().into(),
        ecosystem: Ecosystem::Deb,
        distro: Some("debian:12".into()),
        package: "aaa".into(),
        source_package: None,
        purl: "".into(),
        installed_version: "1.0".into(),
        fixed_version: Some("1.1".into()),
        status: FindingStatus::Fixed,
        status_note: None,
        severity: sev,
        severity_source: "none".into(),
        cvss: None,
        summary: "".into(),
        references: Vec::new().into(),
        informational: None,
        data_source: "test".into(),
    }
}

/// The state model: a violation makes an image unhealthy whether or not it
/// was read whole; without one, any gap makes it incomplete, never healthy.
#[test]
fn verdict_states() {
    let now = OffsetDateTime::now_utc();
    let rule: PolicyRule = assess::Policy::default().default;
    let gaps = vec!["/var/lib/dpkg/status: too large".to_string()];
    let bad = vec![finding(Severity::Critical)];
    let mild = vec![finding(Severity::Low)];

    let h = evaluate_image(&mild, "r", &rule, &[], &[], now).health;
    assert_eq!(
        (h.healthy, h.status.as_str(), h.complete),
        (true, "healthy", true)
    );
    let h = evaluate_image(&mild, "r", &rule, &[], &gaps, now).health;
    assert_eq!(
        (h.healthy, h.status.as_str(), h.complete),
        (false, "incomplete", false)
    );
    assert_eq!(h.incomplete_reasons, gaps);
    let h = evaluate_image(&bad, "r", &rule, &[], &gaps, now).health;
    assert_eq!((h.healthy, h.status.as_str()), (false, "unhealthy"));
    assert!(
        h.reason.contains("1 fixable finding") && h.reason.contains("could not be read"),
        "{}",
        h.reason
    );
    // Roll-up: unhealthy beats incomplete beats healthy.
    let healthy = evaluate_image(&mild, "r", &rule, &[], &[], now).health;
    let incomplete = evaluate_image(&mild, "r", &rule, &[], &gaps, now).health;
    let unhealthy = evaluate_image(&bad, "r", &rule, &[], &[], now).health;
    let up = |c: &[&Health]| Health::roll_up(&rule, c);
    assert_eq!(up(&[&healthy, &healthy]).status, "healthy");
    let r = up(&[&healthy, &incomplete]);
    assert_eq!(
        (r.status.as_str(), r.complete, r.healthy),
        ("incomplete", false, false)
    );
    assert_eq!(r.incomplete_reasons, gaps);
    assert_eq!(up(&[&incomplete, &unhealthy]).status, "unhealthy");
    // A Health stored before the field existed reads as complete.
    let mut old = serde_json::to_value(&healthy).unwrap();
    old.as_object_mut().unwrap().remove("complete");
    old.as_object_mut().unwrap().remove("incomplete_reasons");
    let back: Health = serde_json::from_value(old).unwrap();
    assert!(back.complete && back.incomplete_reasons.is_empty());
}

/// A database made before the `incomplete` column existed is upgraded in
/// place, and its inventories read as complete.
#[test]
fn store_adds_the_incomplete_column_to_an_old_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("assess.db");
    storage::assess::sqlite_execute_for_tests(
        &path,
        "CREATE TABLE inventories(digest TEXT PRIMARY KEY, catalog_version INTEGER NOT NULL, data BLOB NOT NULL);
         INSERT INTO inventories VALUES ('sha256:old', 3, '{\"packages\":[]}');",
    )
    .unwrap();
    let store = Store::open(&path).unwrap();
    assert!(store.incomplete("sha256:old").unwrap().is_empty());
    let reasons = vec!["x: skipped".to_string()];
    store
        .put_cataloged("sha256:new", 4, &inventory::Inventory::default(), &reasons)
        .unwrap();
    assert_eq!(store.incomplete("sha256:new").unwrap(), reasons);
    // Storing it again complete clears the reasons.
    store
        .put_inventory("sha256:new", 4, &inventory::Inventory::default())
        .unwrap();
    assert!(store.incomplete("sha256:new").unwrap().is_empty());
    drop(store);
    // Opening again does not try to add the column twice.
    Store::open(&path).unwrap();
}
