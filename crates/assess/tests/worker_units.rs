//! The assessor's worker, re-matching and notifications against fakes
//! behind its ports: an in-memory registry (manifests and blobs, counting
//! blob reads), a cataloger that reads "name@version" lines from layers, a
//! vulnerability database that can be swapped for a new version, and a
//! manual clock. No registry, no catalog, no network.

use assess::ports::{CatalogFailure, Cataloged, Cataloger, RegistryContent};
use assess::{
    Finding, FindingStatus, ManualClock, Options, Service, Severity, VulnDatabase, VulnSource,
};
use catalog::LayerCache;
use inventory::{Ecosystem, Inventory, Package};
use oci::{BlobSource, Digest, ImageManifest, Name, Tag};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use time::OffsetDateTime;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const REPO: &str = "team/app";

// ---- fakes ----

#[derive(Default)]
struct Blobs {
    data: Mutex<HashMap<Digest, Vec<u8>>>,
    opened: AtomicUsize,
}

impl BlobSource for Blobs {
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        match self.data.lock().unwrap().get(digest) {
            Some(b) => Ok(Box::new(std::io::Cursor::new(b.clone()))),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("blob {digest} unknown"),
            )),
        }
    }
}

#[derive(Default)]
struct FakeRegistry {
    manifests: Mutex<HashMap<Digest, Vec<u8>>>,
    blobs: Arc<Blobs>,
}

impl FakeRegistry {
    /// Store an image whose layers hold the given text (a missing layer
    /// is named in the manifest but never stored); returns its digest.
    fn image(&self, layers: &[Option<&str>]) -> String {
        let config = br#"{"os":"linux","architecture":"amd64"}"#.to_vec();
        let config_digest = Digest::sha256_of(&config);
        self.blobs
            .data
            .lock()
            .unwrap()
            .insert(config_digest.clone(), config.clone());
        let mut descs = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let bytes = match l {
                Some(text) => text.as_bytes().to_vec(),
                None => format!("missing layer {i}").into_bytes(),
            };
            let d = Digest::sha256_of(&bytes);
            if l.is_some() {
                self.blobs
                    .data
                    .lock()
                    .unwrap()
                    .insert(d.clone(), bytes.clone());
            }
            descs.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": d.to_string(),
                "size": bytes.len(),
            }));
        }
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.to_string(),
                "size": config.len(),
            },
            "layers": descs,
        }))
        .unwrap();
        let d = Digest::sha256_of(&m);
        self.manifests.lock().unwrap().insert(d.clone(), m);
        d.to_string()
    }
}

struct Source(Arc<FakeRegistry>);

impl RegistryContent for Source {
    fn manifest(&self, _: &Name, digest: &Digest) -> anyhow::Result<Option<(Vec<u8>, String)>> {
        Ok(self
            .0
            .manifests
            .lock()
            .unwrap()
            .get(digest)
            .map(|m| (m.clone(), OCI_MANIFEST.to_string())))
    }
    fn blob_source(&self) -> Arc<dyn BlobSource> {
        self.0.blobs.clone()
    }
    fn repositories(&self) -> anyhow::Result<Vec<Name>> {
        Ok(Vec::new())
    }
    fn tags(&self, _: &Name) -> anyhow::Result<Vec<(Tag, Digest)>> {
        Ok(Vec::new())
    }
    fn manifests(&self, _: &Name) -> anyhow::Result<Vec<(Digest, String)>> {
        Ok(Vec::new())
    }
    fn recent_pulls(&self, _: OffsetDateTime) -> Vec<(Name, Digest, OffsetDateTime)> {
        Vec::new()
    }
}

/// Layers are text: one `name@version` per line; a line `SKIP why` makes
/// the layer incomplete with that reason. A layer that cannot be read
/// fails the image, naming the layer.
struct LineCataloger;

impl Cataloger for LineCataloger {
    fn version(&self) -> u32 {
        1
    }
    fn catalog(
        &self,
        source: &dyn BlobSource,
        manifest: &ImageManifest,
        cache: &dyn LayerCache,
    ) -> Result<Inventory, CatalogFailure> {
        self.catalog_image(source, manifest, cache)
            .map(|c| c.inventory)
    }
    fn catalog_image(
        &self,
        source: &dyn BlobSource,
        manifest: &ImageManifest,
        _: &dyn LayerCache,
    ) -> Result<Cataloged, CatalogFailure> {
        let mut out = Cataloged::default();
        for l in &manifest.layers {
            let mut text = String::new();
            source
                .open_blob(&l.digest)
                .and_then(|mut r| r.read_to_string(&mut text))
                .map_err(|e| format!("layer {}: {e}", l.digest))?;
            for line in text.lines() {
                if let Some(why) = line.strip_prefix("SKIP ") {
                    out.incomplete.push(format!("layer {}: {why}", l.digest));
                } else if let Some((name, version)) = line.split_once('@') {
                    out.inventory.packages.push(Package {
                        ecosystem: Ecosystem::Npm,
                        name: name.into(),
                        version: version.into(),
                        source_name: None,
                        source_version: None,
                        purl: format!("pkg:npm/{name}@{version}"),
                        location: format!("node_modules/{name}/package.json"),
                        layer: l.digest.to_string(),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Advisories by package name: (id, severity, fixed version).
struct FakeDb {
    version: String,
    advisories: BTreeMap<&'static str, (&'static str, Severity)>,
    /// Images matched (by their first package), to see what re-matching reads.
    matched: Mutex<Vec<String>>,
}

impl VulnDatabase for FakeDb {
    fn version(&self) -> String {
        self.version.clone()
    }
    fn match_inventory(&self, inv: &Inventory) -> Vec<Finding> {
        if let Some(p) = inv.packages.first() {
            self.matched.lock().unwrap().push(p.name.clone());
        }
        inv.packages
            .iter()
            .filter_map(|p| {
                let (id, severity) = self.advisories.get(p.name.as_str())?;
                Some(finding(id, p, *severity))
            })
            .collect()
    }
    fn status(&self) -> serde_json::Value {
        serde_json::json!({ "version": self.version })
    }
}

fn finding(id: &str, p: &Package, severity: Severity) -> Finding {
    Finding {
        id: id.into(),
        aliases: Vec::new().into(),
        related: Vec::new().into(),
        ecosystem: p.ecosystem,
        distro: None,
        package: p.name.as_str().into(),
        source_package: None,
        purl: p.purl.as_str().into(),
        installed_version: p.version.as_str().into(),
        fixed_version: Some("99.0.0".into()),
        status: FindingStatus::Fixed,
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

#[derive(Default)]
struct Dbs(RwLock<Option<Arc<FakeDb>>>);

impl Dbs {
    fn install(&self, version: &str, advisories: &[(&'static str, &'static str, Severity)]) {
        *self.0.write().unwrap() = Some(Arc::new(FakeDb {
            version: version.into(),
            advisories: advisories
                .iter()
                .map(|(p, id, s)| (*p, (*id, *s)))
                .collect(),
            matched: Mutex::new(Vec::new()),
        }));
    }
    fn matched(&self) -> Vec<String> {
        let db = self.0.read().unwrap().clone().unwrap();
        let mut m = db.matched.lock().unwrap().clone();
        m.sort();
        m
    }
}

struct DbSource(Arc<Dbs>);

impl VulnSource for DbSource {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        self.0
            .0
            .read()
            .unwrap()
            .clone()
            .map(|d| d as Arc<dyn VulnDatabase>)
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    registry: Arc<FakeRegistry>,
    dbs: Arc<Dbs>,
    clock: ManualClock,
    service: Service,
}

async fn harness(tweak: impl FnOnce(&mut Options), start: bool) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(FakeRegistry::default());
    let dbs = Arc::new(Dbs::default());
    let clock = ManualClock::new();
    let mut opts = Options::new(dir.path());
    opts.workers = 1;
    // Long ticks: tests call re-matching themselves.
    opts.tick = Duration::from_secs(3600);
    opts.sbom.enabled = false;
    opts.catalog_on_upload = false;
    tweak(&mut opts);
    let service = Service::open(
        opts,
        Arc::new(Source(registry.clone())),
        Arc::new(LineCataloger),
        Arc::new(DbSource(dbs.clone())),
        Arc::new(clock.clone()),
    )
    .unwrap();
    if start {
        service.start().await.unwrap();
    }
    Harness {
        _dir: dir,
        registry,
        dbs,
        clock,
        service,
    }
}

impl Harness {
    async fn push(&self, digest: &str) {
        self.service
            .manifest_pushed(REPO, digest, OCI_MANIFEST, &["latest"]);
        self.service
            .wait_idle(Duration::from_secs(60))
            .await
            .unwrap();
    }

    fn status(&self, digest: &str) -> (String, Option<String>) {
        let row = self.service.store().image(digest).unwrap().unwrap();
        (row.status, row.error)
    }

    /// (event, digest) of every delivery queued, oldest first.
    fn deliveries(&self) -> Vec<(String, String)> {
        let mut d = self.service.store().deliveries(None, 1000).unwrap();
        d.sort_by_key(|d| d.created_at);
        d.into_iter()
            .map(|d| (d.event, d.digest.unwrap_or_default()))
            .collect()
    }

    fn finding_ids(&self, digest: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .service
            .store()
            .result(digest)
            .unwrap()
            .map(|r| {
                r.findings
                    .iter()
                    .map(|f| format!("{}:{}", f.id, f.package))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

fn webhook(h: &Harness) {
    // Deliveries are only queued here; the loopback address they would go
    // to is refused by the default outbound policy, which is fine.
    h.service
        .add_webhook("http://127.0.0.1:9/hook", "s3cret", None, None)
        .unwrap();
}

// ---- the worker ----

/// A layer that cannot be read fails the image with a reason naming the
/// layer (not a silent "done"), and the failure is notified once.
#[tokio::test]
async fn a_layer_that_cannot_be_read_fails_the_image_with_the_reason() {
    let h = harness(|_| {}, true).await;
    webhook(&h);
    h.dbs.install("v1", &[]);
    let d = h.registry.image(&[Some("a@1.0.0"), None]);
    h.push(&d).await;
    let (status, error) = h.status(&d);
    assert_eq!(status, "failed");
    let error = error.unwrap();
    assert!(error.contains("cataloging failed"), "{error}");
    assert!(error.contains("layer sha256:"), "{error}");
    assert!(error.contains("unknown"), "{error}");
    assert_eq!(
        h.deliveries(),
        vec![("assessment.failed".to_string(), d.clone())]
    );
    // The same failure again is not told twice.
    h.service.requeue(&d).unwrap();
    h.service.wait_idle(Duration::from_secs(60)).await.unwrap();
    assert_eq!(h.status(&d).0, "failed");
    assert_eq!(h.deliveries().len(), 1);
}

/// Parts the cataloger skipped are stored with the inventory; the image
/// is done but incomplete, and never healthy.
#[tokio::test]
async fn a_layer_read_in_part_makes_the_image_incomplete() {
    let h = harness(|_| {}, true).await;
    h.dbs.install("v1", &[]);
    let d = h
        .registry
        .image(&[Some("a@1.0.0\nSKIP package.json over its cap")]);
    h.push(&d).await;
    assert_eq!(h.status(&d).0, "done");
    let reasons = h.service.store().incomplete(&d).unwrap();
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].ends_with("package.json over its cap"),
        "{reasons:?}"
    );
    let view = h
        .service
        .image_view(&d, &Default::default(), false)
        .unwrap()
        .unwrap();
    assert_eq!(view.complete, Some(false));
    let health = view.health.unwrap();
    assert!(!health.healthy);
    assert_eq!(health.incomplete_reasons, reasons);
}

/// A job claimed `max_attempts` times without finishing (the process
/// died each time) is failed with the reason and told once, instead of
/// being claimed for ever.
#[tokio::test]
async fn attempts_are_capped() {
    let h = harness(|o| o.max_attempts = 2, false).await;
    webhook(&h);
    h.dbs.install("v1", &[]);
    let d = h.registry.image(&[Some("a@1.0.0")]);
    let store = h.service.store();
    store
        .enqueue(REPO, &d, OCI_MANIFEST, None, None, 1, true)
        .unwrap();
    for run in 0..2 {
        store.requeue_interrupted().unwrap();
        assert_eq!(store.claim(2 + run).unwrap().unwrap().digest, d);
    }
    h.service.start().await.unwrap();
    h.service.wait_idle(Duration::from_secs(60)).await.unwrap();
    let (status, error) = h.status(&d);
    assert_eq!(status, "failed");
    assert_eq!(
        error.as_deref(),
        Some("gave up after 2 attempts: the process stopped while assessing")
    );
    // Its layer was never read.
    assert_eq!(h.registry.blobs.opened.load(Ordering::SeqCst), 0);
    assert_eq!(
        h.deliveries(),
        vec![("assessment.failed".to_string(), d.clone())]
    );
}

// ---- re-matching ----

/// A new database version re-matches stored inventories without reading
/// a blob; only the image holding the newly affected package gains a
/// finding and a notification, the others keep their results as they were.
#[tokio::test]
async fn rematch_after_a_database_change_touches_only_affected_images() {
    let h = harness(|_| {}, true).await;
    webhook(&h);
    h.dbs
        .install("v1", &[("alpha", "GHSA-alpha", Severity::High)]);
    let a = h.registry.image(&[Some("alpha@1.0.0")]);
    let b = h.registry.image(&[Some("beta@1.0.0")]);
    let c = h.registry.image(&[Some("gamma@1.0.0")]);
    for d in [&a, &b, &c] {
        h.push(d).await;
    }
    assert_eq!(h.finding_ids(&a), ["GHSA-alpha:alpha"]);
    assert!(h.finding_ids(&b).is_empty());
    assert_eq!(
        h.deliveries(),
        vec![("image.unhealthy".to_string(), a.clone())],
        "only the unhealthy image is told about"
    );
    let reads = h.registry.blobs.opened.load(Ordering::SeqCst);

    h.clock.advance(time::Duration::hours(1));
    h.dbs.install(
        "v2",
        &[
            ("alpha", "GHSA-alpha", Severity::High),
            ("beta", "GHSA-beta", Severity::Critical),
        ],
    );
    assert_eq!(h.service.rematch_due().await.unwrap(), 3);
    assert_eq!(h.dbs.matched(), ["alpha", "beta", "gamma"]);
    assert_eq!(
        h.registry.blobs.opened.load(Ordering::SeqCst),
        reads,
        "re-matching reads stored inventories, never blobs"
    );
    assert_eq!(h.finding_ids(&a), ["GHSA-alpha:alpha"]);
    assert_eq!(h.finding_ids(&b), ["GHSA-beta:beta"]);
    assert!(h.finding_ids(&c).is_empty());
    let store = h.service.store();
    // Unchanged results only move their version: "same as before".
    for d in [&a, &c] {
        let r = store.result(d).unwrap().unwrap();
        assert_eq!(r.db_version.as_deref(), Some("v2"));
        assert_eq!(r.prev_keys, None, "{d} kept its findings");
    }
    let rb = store.result(&b).unwrap().unwrap();
    assert_eq!(rb.prev_keys, Some(Vec::new()), "beta's result changed");
    assert_eq!(
        h.deliveries(),
        vec![
            ("image.unhealthy".to_string(), a.clone()),
            ("image.unhealthy".to_string(), b.clone()),
        ],
        "alpha's known problem is not told again"
    );
    // Nothing is due any more: the same version does not re-match.
    assert_eq!(h.service.rematch_due().await.unwrap(), 0);
}

// ---- notifications ----

/// Only problems are told, and each (digest, vulnerability, package) once:
/// a healthy image is never notified, re-assessing an unhealthy image with
/// the same findings tells nothing new, and a new problem on it is told
/// alone.
#[tokio::test]
async fn notifications_only_for_problems_and_only_once() {
    let h = harness(|_| {}, true).await;
    webhook(&h);
    h.dbs
        .install("v1", &[("bad", "GHSA-bad", Severity::Critical)]);
    let healthy = h.registry.image(&[Some("fine@1.0.0")]);
    let low = h.registry.image(&[Some("meh@1.0.0")]);
    let sick = h.registry.image(&[Some("bad@1.0.0\nworse@2.0.0")]);
    h.push(&healthy).await;
    h.push(&sick).await;
    assert_eq!(h.deliveries().len(), 1);
    // Assessed again (re-pushed): same findings, nothing new to tell.
    h.service.requeue(&sick).unwrap();
    h.service.wait_idle(Duration::from_secs(60)).await.unwrap();
    h.service.requeue(&healthy).unwrap();
    h.service.wait_idle(Duration::from_secs(60)).await.unwrap();
    assert_eq!(h.deliveries().len(), 1);

    // A finding below the threshold (low) is no problem to tell.
    h.dbs.install(
        "v2",
        &[
            ("bad", "GHSA-bad", Severity::Critical),
            ("meh", "GHSA-meh", Severity::Low),
            ("worse", "GHSA-worse", Severity::High),
        ],
    );
    h.push(&low).await;
    assert_eq!(h.finding_ids(&low), ["GHSA-meh:meh"]);
    h.service.rematch_due().await.unwrap();
    let all = h.service.store().deliveries(None, 100).unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    let newest = all.iter().max_by_key(|d| d.created_at).unwrap();
    assert_eq!(newest.digest.as_deref(), Some(sick.as_str()));
    let payload: serde_json::Value = serde_json::from_str(&newest.payload).unwrap();
    let told: Vec<&str> = payload["new_findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(told, ["GHSA-worse"], "only the new problem is told");
    // The secret signs deliveries; it is never in what is stored to send.
    assert!(!newest.payload.contains("s3cret"));
}

// ---- paging ----

/// The image view carries counts and the first page; the findings pages
/// walk the rest exactly once, in the view's order; a cursor from before a
/// re-assessment that changed the findings is refused.
#[tokio::test]
async fn findings_are_paged_with_cursors() {
    use assess::views::{DEFAULT_PAGE, FindingFilter, PageError};
    let h = harness(|_| {}, true).await;
    h.dbs.install("v1", &[("vuln", "GHSA-v", Severity::High)]);
    // 250 installs of a vulnerable package at distinct versions, and one
    // harmless package.
    let mut text: String = (0..250).map(|i| format!("vuln@1.0.{i}\n")).collect();
    text.push_str("fine@1.0.0\n");
    let d = h.registry.image(&[Some(&text)]);
    h.push(&d).await;
    let none = FindingFilter::default();
    let view = h.service.image_view(&d, &none, false).unwrap().unwrap();
    assert_eq!(
        view.summary.as_ref().unwrap().high,
        250,
        "counts cover every finding"
    );
    assert_eq!(view.findings_total, 250);
    assert_eq!(view.findings.len(), DEFAULT_PAGE);
    let cursor = view.findings_next_cursor.clone().expect("more pages");

    let mut seen: Vec<String> = view
        .findings
        .iter()
        .map(|f| f.finding.installed_version.to_string())
        .collect();
    let mut next = Some(cursor.clone());
    let mut pages = 1;
    while let Some(c) = next {
        let page = h
            .service
            .image_findings(&d, &none, None, 100, Some(&c))
            .unwrap()
            .unwrap();
        assert_eq!(page.total, 250);
        seen.extend(
            page.findings
                .iter()
                .map(|f| f.finding.installed_version.to_string()),
        );
        next = page.next_cursor;
        pages += 1;
    }
    assert_eq!(pages, 3);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 250, "every finding once");
    // The first page from the endpoint is the view's first page.
    let first = h
        .service
        .image_findings(&d, &none, None, 100, None)
        .unwrap()
        .unwrap();
    let first: Vec<String> = first
        .findings
        .iter()
        .map(|f| f.finding.installed_version.to_string())
        .collect();
    assert_eq!(first, seen[..100]);

    // q narrows (package name or id), total follows.
    let q = h
        .service
        .image_findings(&d, &none, Some("1.0.7"), 100, None)
        .unwrap()
        .unwrap();
    assert_eq!(q.total, 0, "q does not look at versions");
    let q = h
        .service
        .image_findings(&d, &none, Some("ghsa-V"), 10, None)
        .unwrap()
        .unwrap();
    assert_eq!((q.total, q.findings.len()), (250, 10));

    // Garbage is refused as such.
    assert!(matches!(
        h.service.image_findings(&d, &none, None, 100, Some("zz")),
        Err(PageError::BadCursor(_))
    ));
    // New findings (another database) make old cursors stale.
    h.dbs.install(
        "v2",
        &[
            ("vuln", "GHSA-v", Severity::High),
            ("fine", "GHSA-f", Severity::Low),
        ],
    );
    h.service.rematch_due().await.unwrap();
    match h
        .service
        .image_findings(&d, &none, None, 100, Some(&cursor))
    {
        Err(PageError::BadCursor(m)) => assert!(m.contains("stale"), "{m}"),
        other => panic!(
            "stale cursor accepted: {:?}",
            other.map(|p| p.map(|p| p.total))
        ),
    }
}

/// Packages are paged from the stored (compressed) inventory.
#[tokio::test]
async fn packages_are_paged_from_the_stored_inventory() {
    let h = harness(|_| {}, true).await;
    h.dbs.install("v1", &[]);
    let text: String = (0..25).map(|i| format!("p{i:02}@1.0.0\n")).collect();
    let d = h.registry.image(&[Some(&text)]);
    h.push(&d).await;
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = h
            .service
            .image_packages(&d, None, 10, cursor.as_deref())
            .unwrap()
            .unwrap();
        assert_eq!(page.total, 25);
        names.extend(page.packages.into_iter().map(|p| p.name));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("p{i:02}")).collect();
    assert_eq!(names, expected);
    let q = h
        .service
        .image_packages(&d, Some("P1"), 3, None)
        .unwrap()
        .unwrap();
    assert_eq!(q.total, 10);
    assert_eq!(
        q.packages
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["p10", "p11", "p12"]
    );
    assert!(
        h.service
            .image_packages("sha256:0000", None, 10, None)
            .unwrap()
            .is_none()
    );
}
