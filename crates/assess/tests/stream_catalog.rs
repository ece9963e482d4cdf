//! Layers cataloged from their upload streams: a real registry served on
//! 127.0.0.1, the real catalog, pushes over HTTP. A layer pushed whole or
//! in three PATCHes is cataloged while it arrives (no blob is read back
//! afterwards: every read goes through a counting `BlobSource`); a digest
//! mismatch or a cancel leaves no cached result; a manifest's findings are
//! there right after its PUT; a reader that fell behind the client reads
//! the rest back once the upload commits; with the switch off, layers are
//! read back after their commit as before.

use assess::live::{CatalogCataloger, HandleSource, RegistrySource};
use assess::views::FindingFilter;
use assess::{Cataloger, Options, RegistryContent, Service};
use catalog::LayerCache;
use oci::{BlobSource, Digest, Name, Tag};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const STATUS: &str = "Package: aaa\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\nPackage: bbb\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.0\n";
const OS_RELEASE: &[u8] = b"ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Counts every blob read through it, by digest.
struct CountingSource {
    inner: RegistrySource,
    reads: Arc<std::sync::Mutex<Vec<Digest>>>,
}

struct CountingBlobs {
    inner: Arc<dyn BlobSource>,
    reads: Arc<std::sync::Mutex<Vec<Digest>>>,
}

impl BlobSource for CountingBlobs {
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>> {
        self.reads.lock().unwrap().push(digest.clone());
        self.inner.open_blob(digest)
    }
}

impl RegistryContent for CountingSource {
    fn manifest(&self, repo: &Name, digest: &Digest) -> anyhow::Result<Option<(Vec<u8>, String)>> {
        self.inner.manifest(repo, digest)
    }
    fn blob_source(&self) -> Arc<dyn BlobSource> {
        Arc::new(CountingBlobs {
            inner: self.inner.blob_source(),
            reads: self.reads.clone(),
        })
    }
    fn repositories(&self) -> anyhow::Result<Vec<Name>> {
        self.inner.repositories()
    }
    fn tags(&self, repo: &Name) -> anyhow::Result<Vec<(Tag, Digest)>> {
        self.inner.tags(repo)
    }
    fn manifests(&self, repo: &Name) -> anyhow::Result<Vec<(Digest, String)>> {
        self.inner.manifests(repo)
    }
    fn recent_pulls(&self, since: OffsetDateTime) -> Vec<(Name, Digest, OffsetDateTime)> {
        self.inner.recent_pulls(since)
    }
    fn attach(&self, repo: &Name, artifact: &assess::Artifact) -> anyhow::Result<Digest> {
        self.inner.attach(repo, artifact)
    }
    fn delete_manifest(&self, repo: &Name, digest: &Digest) -> anyhow::Result<()> {
        self.inner.delete_manifest(repo, digest)
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    base: String,
    http: reqwest::Client,
    service: Service,
    reads: Arc<std::sync::Mutex<Vec<Digest>>>,
}

async fn setup(while_uploading: bool) -> Setup {
    let cataloger = Arc::new(CatalogCataloger {
        limits: catalog::Limits {
            verify_digest: false,
            ..Default::default()
        },
    });
    setup_with(while_uploading, 16 << 20, cataloger).await
}

/// The real cataloger, but each upload stream's reader starts late: the
/// client is then always ahead of it.
struct LateReader(CatalogCataloger);

impl Cataloger for LateReader {
    fn version(&self) -> u32 {
        self.0.version()
    }
    fn catalog(
        &self,
        source: &dyn BlobSource,
        manifest: &oci::ImageManifest,
        cache: &dyn LayerCache,
    ) -> Result<inventory::Inventory, assess::CatalogFailure> {
        self.0.catalog(source, manifest, cache)
    }
    fn catalog_image(
        &self,
        source: &dyn BlobSource,
        manifest: &oci::ImageManifest,
        cache: &dyn LayerCache,
    ) -> Result<assess::Cataloged, assess::CatalogFailure> {
        self.0.catalog_image(source, manifest, cache)
    }
    fn prefetch_layer(
        &self,
        source: &dyn BlobSource,
        layer: &Digest,
        cache: &dyn LayerCache,
    ) -> bool {
        self.0.prefetch_layer(source, layer, cache)
    }
    fn catalog_upload(
        &self,
        reader: &mut dyn Read,
        placeholder: &Digest,
    ) -> Option<catalog::LayerInventory> {
        std::thread::sleep(Duration::from_millis(500));
        self.0.catalog_upload(reader, placeholder)
    }
}

async fn setup_with(
    while_uploading: bool,
    stream_buffer_bytes: usize,
    cataloger: Arc<dyn Cataloger>,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/vulndata/osv/Debian/all.zip");
    vulndb::import(dir.path(), &[fixture], &mut |_| {}).unwrap();
    let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
    let mut opts = Options::new(dir.path());
    opts.tick = Duration::from_millis(50);
    opts.catalog_while_uploading = while_uploading;
    opts.stream_buffer_bytes = stream_buffer_bytes;
    let reads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let service = Service::open(
        opts,
        Arc::new(CountingSource {
            inner: RegistrySource(registry.clone()),
            reads: reads.clone(),
        }),
        cataloger,
        Arc::new(HandleSource(vulndb::Handle::open(dir.path()))),
        Arc::new(assess::SystemClock),
    )
    .unwrap();
    registry.add_sink(Arc::new(service.clone()));
    registry.set_blob_observer(service.blob_observer());
    registry.register_metrics(service.metrics()).unwrap();
    service.start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = registry.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Setup {
        _dir: dir,
        base,
        http: reqwest::Client::new(),
        service,
        reads,
    }
}

/// A tar layer with a Debian package database and `pad` bytes of filler,
/// so that it spans several chunks.
fn layer(pad: usize, seed: u8) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("etc/os-release", OS_RELEASE.to_vec()),
        ("var/lib/dpkg/status", STATUS.as_bytes().to_vec()),
        (
            "opt/filler.bin",
            (0..pad).map(|i| (i as u8).wrapping_mul(seed)).collect(),
        ),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

impl Setup {
    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn monolithic(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        d
    }

    /// POST, one PATCH per part, then PUT with `digest`: the PUT's status.
    async fn chunked(&self, repo: &str, parts: &[&[u8]], digest: &Digest) -> reqwest::StatusCode {
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let mut location = r.headers()["location"].to_str().unwrap().to_string();
        let mut offset = 0usize;
        for part in parts {
            let r = self
                .http
                .patch(self.url(&location))
                .header(
                    "content-range",
                    format!("{}-{}", offset, offset + part.len() - 1),
                )
                .header("content-type", "application/octet-stream")
                .body(part.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
            location = r.headers()["location"].to_str().unwrap().to_string();
            offset += part.len();
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        self.http
            .put(self.url(&format!("{location}{sep}digest={digest}")))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// The cached layer result of `layer`, waiting up to 60 s for it.
    async fn cached(&self, layer: &Digest) -> Option<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(inv) = self.service.store().get(layer, catalog::CATALOG_VERSION) {
                return Some(serde_json::to_vec(&inv).unwrap());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn reads_of(&self, d: &Digest) -> usize {
        self.reads
            .lock()
            .unwrap()
            .iter()
            .filter(|r| *r == d)
            .count()
    }

    async fn push_manifest(&self, repo: &str, tag: &str, layers: &[(Digest, usize)]) -> Digest {
        let config = br#"{"os":"linux","architecture":"amd64"}"#;
        let config_d = self.monolithic(repo, config).await;
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_d.to_string(),
                "size": config.len(),
            },
            "layers": layers.iter().map(|(d, size)| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": d.to_string(),
                "size": size,
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        let r = self
            .http
            .put(self.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("content-type", OCI_MANIFEST)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        Digest::sha256_of(&body)
    }
}

fn names(cached: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(cached).unwrap();
    let mut out = Vec::new();
    for facts in v["files"].as_object().unwrap().values() {
        for p in facts["packages"].as_array().into_iter().flatten() {
            out.push(p["name"].as_str().unwrap().to_string());
        }
    }
    out.sort();
    out
}

fn layers_named(cached: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(cached).unwrap();
    let mut out: Vec<String> = v["files"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|f| f["packages"].as_array().cloned().unwrap_or_default())
        .map(|p| p["layer"].as_str().unwrap().to_string())
        .collect();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monolithic_and_chunked_uploads_are_cataloged_from_the_stream() {
    let s = setup(true).await;
    // Whole, in one POST.
    let whole = layer(3 << 20, 7);
    let d1 = s.monolithic("team/app", &whole).await;
    // In three PATCHes, then an empty PUT.
    let parts = layer(3 << 20, 11);
    let d2 = Digest::sha256_of(&parts);
    let third = parts.len() / 3;
    let chunks = [
        &parts[..third],
        &parts[third..2 * third],
        &parts[2 * third..],
    ];
    assert_eq!(s.chunked("team/app", &chunks, &d2).await, 201);

    for d in [&d1, &d2] {
        let cached = s.cached(d).await.expect("layer cataloged from its stream");
        assert_eq!(names(&cached), ["aaa", "bbb"]);
        // The placeholder the stream was read under is gone.
        assert_eq!(layers_named(&cached), [d.to_string()]);
        assert_eq!(s.reads_of(d), 0, "{d} was read back from the store");
    }
    let counts = s.service.upload_catalog_counts();
    assert_eq!(
        (counts.streamed, counts.spilled, counts.read_back),
        (2, 0, 0)
    );
    // The same counts in the registry's /metrics.
    assert_eq!(s.layers_counted("stream").await, Some(2));

    // The image's assessment finds both layers done: nothing is read.
    let image = s
        .push_manifest(
            "team/app",
            "v1",
            &[(d1.clone(), whole.len()), (d2.clone(), parts.len())],
        )
        .await;
    let view = assessed(&s.service, &image).await;
    assert_eq!(view.status, "done");
    assert_eq!(s.reads_of(&d1) + s.reads_of(&d2), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_mismatch_or_a_cancel_leaves_no_result() {
    let s = setup(true).await;
    let data = layer(1 << 20, 3);
    let real = Digest::sha256_of(&data);
    let wrong = Digest::sha256_of(b"something else");
    let half = data.len() / 2;
    let status = s
        .chunked("team/app", &[&data[..half], &data[half..]], &wrong)
        .await;
    assert_eq!(status, 400);
    // Monolithic with a wrong digest too.
    let r = s
        .http
        .post(s.url(&format!("/v2/team/app/blobs/uploads/?digest={wrong}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A cancelled session.
    let r = s
        .http
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let r = s
        .http
        .patch(s.url(&location))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = s.http.delete(s.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), 204);

    // Give the readers time to have stored something if they wrongly would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for d in [&real, &wrong] {
        assert!(
            s.service.store().get(d, catalog::CATALOG_VERSION).is_none(),
            "a result was kept for {d}"
        );
    }
    assert_eq!(s.service.upload_catalog_counts(), Default::default());

    // The same bytes pushed properly afterwards are cataloged.
    assert_eq!(s.chunked("team/app", &[&data[..]], &real).await, 201);
    assert!(s.cached(&real).await.is_some());
    assert_eq!(s.service.upload_catalog_counts().streamed, 1);
    assert_eq!(s.reads_of(&real), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_exist_right_after_the_manifest_put() {
    let s = setup(true).await;
    let base = layer(2 << 20, 5);
    let d = s.monolithic("team/web", &base).await;
    assert!(s.cached(&d).await.is_some());
    let start = Instant::now();
    let image = s.push_manifest("team/web", "v1", &[(d, base.len())]).await;
    let view = assessed(&s.service, &image).await;
    let took = start.elapsed();
    assert_eq!(view.status, "done");
    assert!(
        view.health.is_some(),
        "matched against the fixture database"
    );
    // Only matching remains: generous for a debug build on a loaded box,
    // far below reading the layer (the bench measures the release build).
    assert!(
        took < Duration::from_millis(500),
        "findings {took:?} after the manifest PUT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_switch_off_layers_are_read_after_their_commit() {
    let s = setup(false).await;
    let data = layer(1 << 20, 9);
    let d = s.monolithic("team/app", &data).await;
    let cached = s.cached(&d).await.expect("cataloged after its commit");
    assert_eq!(names(&cached), ["aaa", "bbb"]);
    assert!(s.reads_of(&d) >= 1, "read back from the store");
    let counts = s.service.upload_catalog_counts();
    assert_eq!((counts.streamed, counts.read_back), (0, 1));
    assert_eq!(s.layers_counted("readback").await, Some(1));
    assert_eq!(s.layers_counted("stream").await, Some(0));
}

impl Setup {
    /// `drydock_catalog_layers_total{source="…"}` as the registry's
    /// `/metrics` serves it (`None`: no such series yet).
    async fn layers_counted(&self, source: &str) -> Option<u64> {
        let r = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(
            text.contains("# TYPE drydock_catalog_layers_total counter"),
            "{text}"
        );
        let series = format!("drydock_catalog_layers_total{{source=\"{source}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map(|v| v.trim().parse().unwrap())
    }
}

async fn assessed(service: &Service, digest: &Digest) -> assess::views::ImageView {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Off the async threads, as the API reads it (it may block).
        let (svc, d) = (service.clone(), digest.to_string());
        let v = tokio::task::spawn_blocking(move || {
            svc.image_view(&d, &FindingFilter::default(), false)
                .unwrap()
        })
        .await
        .unwrap();
        if let Some(v) = v
            && v.status == "done"
        {
            return v;
        }
        assert!(Instant::now() < deadline, "{digest} not assessed in time");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_fell_behind_reads_the_rest_back_after_the_commit() {
    // A 64 KiB pipe and a reader that starts half a second late: the
    // client's 4 MiB are long past the pipe's room when it starts, so the
    // watch stops taking bytes and the reader takes the rest of the layer
    // from the store once the upload verified.
    let late = Arc::new(LateReader(CatalogCataloger {
        limits: catalog::Limits {
            verify_digest: false,
            ..Default::default()
        },
    }));
    let s = setup_with(true, 64 << 10, late).await;
    let data = layer(4 << 20, 5);
    let d = s.monolithic("team/app", &data).await;
    let cached = s.cached(&d).await.expect("layer cataloged");
    assert_eq!(names(&cached), ["aaa", "bbb"]);
    assert_eq!(layers_named(&cached), [d.to_string()]);
    let counts = s.service.upload_catalog_counts();
    assert_eq!(
        (counts.streamed, counts.spilled, counts.read_back),
        (0, 1, 0)
    );
    // Read back once (the tail), by the stream's reader: not whole again.
    assert_eq!(s.reads_of(&d), 1);
}
