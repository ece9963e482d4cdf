//! The worker fails closed but not at the first hiccup: a layer blob the
//! store cannot hand over (a transient `CatalogFailure`) is read again on
//! the retry schedule, up to the attempt cap; only then is the image
//! failed, with the last reason. A layer that is wrong is failed at once.
//! The real cataloger reads tar layers from a fake blob source that fails
//! a set number of times; no registry, no network.

use assess::live::CatalogCataloger;
use assess::ports::RegistryContent;
use assess::{
    Finding, FindingStatus, ManualClock, Options, Service, Severity, VulnDatabase, VulnSource,
};
use inventory::Inventory;
use oci::{BlobSource, Digest, Name, Tag};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use time::OffsetDateTime;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const REPO: &str = "team/app";
const OUTAGE: &str = "the store is unavailable";

/// Blobs in memory. Opening `flaky` fails as an outage would, as many
/// times as `failures` says, then works; every open of it is counted.
struct FlakyBlobs {
    data: HashMap<Digest, Vec<u8>>,
    flaky: Digest,
    failures: AtomicUsize,
    flaky_opens: AtomicUsize,
}

impl BlobSource for FlakyBlobs {
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>> {
        if digest == &self.flaky {
            self.flaky_opens.fetch_add(1, Ordering::SeqCst);
            let failing = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err(std::io::Error::other(OUTAGE));
            }
        }
        match self.data.get(digest) {
            Some(b) => Ok(Box::new(std::io::Cursor::new(b.clone()))),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "blob unknown",
            )),
        }
    }
}

/// One image: its manifest, and its blobs behind [`FlakyBlobs`].
struct Registry {
    manifest: (Digest, Vec<u8>),
    blobs: Arc<FlakyBlobs>,
}

impl RegistryContent for Registry {
    fn manifest(&self, _: &Name, digest: &Digest) -> anyhow::Result<Option<(Vec<u8>, String)>> {
        Ok((digest == &self.manifest.0).then(|| (self.manifest.1.clone(), OCI_MANIFEST.into())))
    }
    fn blob_source(&self) -> Arc<dyn BlobSource> {
        self.blobs.clone()
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

/// Every Debian package it is shown is vulnerable.
struct EveryDeb;

impl VulnDatabase for EveryDeb {
    fn version(&self) -> String {
        "v1".into()
    }
    fn match_inventory(&self, inv: &Inventory) -> Vec<Finding> {
        inv.packages
            .iter()
            .map(|p| Finding {
                id: format!("CVE-2099-{}", p.name).into(),
                aliases: Vec::new().into(),
                related: Vec::new().into(),
                ecosystem: p.ecosystem,
                distro: None,
                package: p.name.as_str().into(),
                source_package: None,
                purl: p.purl.as_str().into(),
                installed_version: p.version.as_str().into(),
                fixed_version: Some("1:9.9".into()),
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
        serde_json::json!({ "version": "v1" })
    }
}

impl VulnSource for EveryDeb {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        Some(Arc::new(EveryDeb))
    }
}

/// A plain tar layer declaring one Debian package.
fn layer() -> Vec<u8> {
    let status = b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13\nArchitecture: amd64\n\n";
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(status.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "var/lib/dpkg/status", &status[..])
        .unwrap();
    b.into_inner().unwrap()
}

struct Harness {
    _dir: tempfile::TempDir,
    blobs: Arc<FlakyBlobs>,
    service: Service,
    image: String,
    layer: Digest,
}

/// A started service whose one image's layer fails `failures` times
/// (`claimed`: the digest the manifest names, `None` for the layer's own).
async fn harness(failures: usize, claimed: Option<Digest>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let bytes = layer();
    let layer = claimed.unwrap_or_else(|| Digest::sha256_of(&bytes));
    let config = br#"{"os":"linux","architecture":"amd64"}"#.to_vec();
    let config_digest = Digest::sha256_of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": oci::OCI_CONFIG,
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": oci::OCI_LAYER_TAR,
            "digest": layer.to_string(),
            "size": bytes.len(),
        }],
    }))
    .unwrap();
    let image = Digest::sha256_of(&manifest);
    let blobs = Arc::new(FlakyBlobs {
        data: HashMap::from([(config_digest, config), (layer.clone(), bytes)]),
        flaky: layer.clone(),
        failures: AtomicUsize::new(failures),
        flaky_opens: AtomicUsize::new(0),
    });
    let mut opts = Options::new(dir.path());
    opts.workers = 1;
    opts.max_attempts = 3;
    opts.tick = Duration::from_secs(3600);
    opts.sbom.enabled = false;
    opts.catalog_on_upload = false;
    let service = Service::open(
        opts,
        Arc::new(Registry {
            manifest: (image.clone(), manifest),
            blobs: blobs.clone(),
        }),
        Arc::new(CatalogCataloger::default()),
        Arc::new(EveryDeb),
        Arc::new(ManualClock::new()),
    )
    .unwrap();
    service.start().await.unwrap();
    // Deliveries are only queued: the default outbound policy refuses
    // loopback, which is fine here.
    service
        .add_webhook("http://127.0.0.1:9/hook", "s3cret", None, None)
        .unwrap();
    Harness {
        _dir: dir,
        blobs,
        service,
        image: image.to_string(),
        layer,
    }
}

impl Harness {
    async fn push_and_wait(&self) {
        self.service
            .manifest_pushed(REPO, &self.image, OCI_MANIFEST, &["latest"]);
        // Two waits on the retry schedule (1 s, 2 s) fit well inside.
        self.service
            .wait_idle(Duration::from_secs(60))
            .await
            .unwrap();
    }

    fn status(&self) -> (String, Option<String>, i64) {
        let row = self.service.store().image(&self.image).unwrap().unwrap();
        (row.status, row.error, row.attempts)
    }

    fn opens(&self) -> usize {
        self.blobs.flaky_opens.load(Ordering::SeqCst)
    }

    fn failed_deliveries(&self) -> usize {
        self.service
            .store()
            .deliveries(None, 100)
            .unwrap()
            .iter()
            .filter(|d| d.event == "assessment.failed")
            .count()
    }
}

#[tokio::test]
async fn a_blob_that_comes_back_within_the_cap_is_assessed_with_its_findings() {
    let h = harness(2, None).await;
    h.push_and_wait().await;
    let (status, error, attempts) = h.status();
    assert_eq!(status, "done", "{error:?}");
    assert_eq!(error, None);
    assert_eq!(attempts, 3);
    assert_eq!(h.opens(), 3);
    let result = h.service.store().result(&h.image).unwrap().unwrap();
    let ids: Vec<&str> = result.findings.iter().map(|f| &*f.id).collect();
    assert_eq!(ids, vec!["CVE-2099-zlib1g"]);
    assert_eq!(h.failed_deliveries(), 0);
}

#[tokio::test]
async fn a_blob_that_never_comes_back_fails_the_image_after_exactly_the_cap() {
    let h = harness(usize::MAX, None).await;
    h.push_and_wait().await;
    let (status, error, attempts) = h.status();
    assert_eq!(status, "failed");
    assert_eq!(
        error.as_deref(),
        Some(
            format!(
                "gave up after 3 attempts: cataloging failed: layer {}: cannot open blob: {OUTAGE}",
                h.layer
            )
            .as_str()
        )
    );
    assert_eq!(attempts, 3);
    assert_eq!(h.opens(), 3);
    assert!(h.service.store().result(&h.image).unwrap().is_none());
    // Told once, when it was given up, not at each attempt.
    assert_eq!(h.failed_deliveries(), 1);
}

#[tokio::test]
async fn a_layer_that_is_wrong_fails_at_once_without_a_retry() {
    // The manifest claims a digest the layer's bytes do not have.
    let h = harness(0, Some(Digest::sha256_of(b"something else"))).await;
    h.push_and_wait().await;
    let (status, error, attempts) = h.status();
    assert_eq!(status, "failed");
    let error = error.unwrap();
    assert!(
        error.starts_with(&format!(
            "cataloging failed: layer {}: content does not match its digest",
            h.layer
        )),
        "{error}"
    );
    assert_eq!(attempts, 1);
    assert_eq!(h.opens(), 1);
    assert_eq!(h.failed_deliveries(), 1);
}
