//! The assessor over a real registry: what it learns from pushes (every
//! tag), from garbage collection in another "process" (a separate store
//! handle), and how it stops retrying a job that never finishes.

use assess::live::RegistrySource;
use assess::{Cataloger, Options, Service, VulnDatabase, VulnSource};
use inventory::Inventory;
use oci::{BlobSource, Digest, ImageManifest};
use std::sync::Arc;
use std::time::Duration;

/// Every image has no packages: these tests are about the job's life,
/// not its findings.
struct EmptyCatalog;
impl Cataloger for EmptyCatalog {
    fn version(&self) -> u32 {
        1
    }
    fn catalog(
        &self,
        _: &dyn BlobSource,
        _: &ImageManifest,
        _: &dyn catalog::LayerCache,
    ) -> Result<Inventory, assess::CatalogFailure> {
        Ok(Inventory::default())
    }
}

struct NoDb;
impl VulnSource for NoDb {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        None
    }
}

struct Setup {
    dir: tempfile::TempDir,
    registry: registry::Registry,
    service: Service,
    base: String,
    client: reqwest::Client,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
    let mut opts = Options::new(dir.path());
    opts.tick = Duration::from_millis(50);
    // These tests count manifests; attached SBOMs would be more of them.
    opts.sbom.enabled = false;
    let service = Service::open(
        opts,
        Arc::new(RegistrySource(registry.clone())),
        Arc::new(EmptyCatalog),
        Arc::new(NoDb),
        Arc::new(assess::SystemClock),
    )
    .unwrap();
    registry.add_sink(Arc::new(service.clone()));
    service.start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = registry.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Setup {
        dir,
        registry,
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

    /// Push a one-layer image whose layer holds `seed`, under `reference`
    /// (a tag, or `@` for its digest) with `?tag=` for each of `tags`.
    async fn push_image(&self, repo: &str, seed: &str, reference: &str, tags: &[&str]) -> Digest {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}");
        let layer = format!("layer {seed}");
        let dc = self.push_blob(repo, config.as_bytes()).await;
        let dl = self.push_blob(repo, layer.as_bytes()).await;
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{dc}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{dl}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        let md = Digest::sha256_of(body.as_bytes());
        let reference = if reference == "@" {
            md.to_string()
        } else {
            reference.to_string()
        };
        let query: Vec<String> = tags.iter().map(|t| format!("tag={t}")).collect();
        let r = self
            .client
            .put(format!(
                "{}/v2/{repo}/manifests/{reference}?{}",
                self.base,
                query.join("&")
            ))
            .header("content-type", OCI_MANIFEST)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        md
    }
}

/// `PUT …/manifests/<digest>?tag=a&tag=b` tells the assessor both tags:
/// re-pointing both at a new image finds the previous image under each.
#[tokio::test]
async fn every_tag_of_a_push_reaches_the_assessor() {
    let s = setup().await;
    let old = s.push_image("team/app", "one", "@", &["a", "b"]).await;
    let new = s.push_image("team/app", "two", "@", &["a", "b"]).await;
    s.service.wait_idle(Duration::from_secs(60)).await.unwrap();
    let mut prev = s
        .service
        .store()
        .previous_tag_digests(&new.to_string())
        .unwrap();
    prev.sort();
    let want: Vec<(String, String, String)> = ["a", "b"]
        .iter()
        .map(|t| ("team/app".to_string(), t.to_string(), old.to_string()))
        .collect();
    assert_eq!(prev, want);
}

/// A broken metadata database is an error for every listing, never an
/// empty registry (which the assessor would take as "nothing to assess",
/// and the API would show as no images).
#[tokio::test]
async fn listings_report_database_errors() {
    use assess::RegistryContent;
    let s = setup().await;
    s.push_image("team/app", "one", "v1", &[]).await;
    let source = RegistrySource(s.registry.clone());
    let repo = oci::Name::parse("team/app").unwrap();
    assert_eq!(source.repositories().unwrap(), vec![repo.clone()]);
    // A fault the registry cannot have caused: its tables vanish.
    storage::assess::sqlite_execute_for_tests(
        &s.dir.path().join("meta.db"),
        "ALTER TABLE repos RENAME TO repos_gone;
         ALTER TABLE tags RENAME TO tags_gone;
         ALTER TABLE manifests RENAME TO manifests_gone;",
    )
    .unwrap();
    assert!(source.repositories().is_err());
    assert!(source.tags(&repo).is_err());
    assert!(source.manifests(&repo).is_err());
    // Over HTTP too: 500, not an empty list.
    for path in ["/v2/_catalog", "/v2/team/app/tags/list"] {
        let r = s
            .client
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500, "{path}");
    }
}

/// `drydock gc` runs beside the server (here: the library function, with
/// its own database handle, as the separate process has): an untagged
/// manifest it removes leaves the assessor's images too.
#[tokio::test]
async fn images_removed_by_gc_leave_the_assessor() {
    let s = setup().await;
    let md = s.push_image("team/app", "one", "v1", &[]).await;
    let kept = s.push_image("team/app", "two", "v2", &[]).await;
    s.service.wait_idle(Duration::from_secs(60)).await.unwrap();
    let listed = |s: &Setup| -> Vec<String> {
        let mut v: Vec<String> = s
            .service
            .list_images(None)
            .unwrap()
            .into_iter()
            .map(|i| i.digest)
            .collect();
        v.sort();
        v
    };
    let mut both = vec![md.to_string(), kept.to_string()];
    both.sort();
    assert_eq!(listed(&s), both);
    s.registry
        .delete_tag(
            &oci::Name::parse("team/app").unwrap(),
            &oci::Tag::parse("v1").unwrap(),
        )
        .unwrap();
    let report = registry::gc(
        s.dir.path(),
        registry::GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.manifests_removed, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while listed(&s) != vec![kept.to_string()] {
        assert!(
            std::time::Instant::now() < deadline,
            "the assessor still lists {:?}",
            listed(&s)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.service.store().image(&md.to_string()).unwrap().is_none());
}

/// A job started `max_attempts` times without finishing (the process
/// stopped each time, as a layer that crashes it would make it) is failed
/// with the reason instead of being started again for ever. Pushing it
/// again is a fresh request.
#[tokio::test]
async fn a_job_that_never_finishes_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
    let repo = oci::Name::parse("team/app").unwrap();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"a layer that crashes the cataloger";
    let (dc, dl) = (Digest::sha256_of(config), Digest::sha256_of(layer));
    registry.put_blob(&repo, &dc, &config[..]).await.unwrap();
    registry.put_blob(&repo, &dl, &layer[..]).await.unwrap();
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{dc}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{dl}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let md = registry
        .put_manifest(
            &repo,
            &oci::Reference::Tag(oci::Tag::parse("v1").unwrap()),
            body.into(),
            Some(OCI_MANIFEST),
            registry::Origin::Push,
        )
        .await
        .unwrap()
        .to_string();
    // Three runs of the server that each stopped while assessing it.
    {
        let store = assess::store::Store::open(&dir.path().join("assess.db")).unwrap();
        store
            .enqueue("team/app", &md, OCI_MANIFEST, None, None, 1, true)
            .unwrap();
        for run in 0..3 {
            store.requeue_interrupted().unwrap();
            let job = store.claim(2 + run).unwrap().unwrap();
            assert_eq!(job.digest, md);
        }
    }
    let service = Service::open(
        Options::new(dir.path()),
        Arc::new(RegistrySource(registry.clone())),
        Arc::new(EmptyCatalog),
        Arc::new(NoDb),
        Arc::new(assess::SystemClock),
    )
    .unwrap();
    registry.add_sink(Arc::new(service.clone()));
    service.start().await.unwrap();
    service.wait_idle(Duration::from_secs(60)).await.unwrap();
    let view = service.image_view_of(&md);
    assert_eq!(view.0, "failed");
    assert_eq!(
        view.1.as_deref(),
        Some("gave up after 3 attempts: the process stopped while assessing")
    );
    // A new push asks again, from zero attempts.
    service.manifest_pushed("team/app", &md, OCI_MANIFEST, &["v1"]);
    service.wait_idle(Duration::from_secs(60)).await.unwrap();
    assert_eq!(service.image_view_of(&md).0, "done");
}

trait ViewOf {
    /// Status and error as the API's image view shows them.
    fn image_view_of(&self, digest: &str) -> (String, Option<String>);
}

impl ViewOf for Service {
    fn image_view_of(&self, digest: &str) -> (String, Option<String>) {
        let v = self
            .image_view(digest, &assess::views::FindingFilter::default(), false)
            .unwrap()
            .unwrap();
        (v.status, v.error)
    }
}
