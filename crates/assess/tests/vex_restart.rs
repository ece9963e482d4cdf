//! VEX trust survives a restart (issue #14): who pushed a VEX referrer is
//! stored with its job, so a job that outlives the assessor is judged by
//! its real pusher against `assess.vex.trusted`, not as "unknown". And an
//! `assess.db` from before the pusher was stored upgrades in place.

mod common;

use assess::vex::Pusher;
use assess::{Finding, ManualClock, Options, Service, Severity, VulnDatabase, VulnSource};
use common::{OCI_MANIFEST, TextCatalog, fixable, push};
use inventory::Inventory;
use oci::Digest;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const OPENVEX: &str = "application/vnd.openvex+json";

/// Every package has one high advisory (`CVE-2099-<package>`) with a fix.
struct OneHigh;

impl VulnDatabase for OneHigh {
    fn version(&self) -> String {
        "test-1".into()
    }
    fn match_inventory(&self, inventory: &Inventory) -> Vec<Finding> {
        inventory
            .packages
            .iter()
            .map(|p| fixable(&format!("CVE-2099-{}", p.name), p, "1.0-2", Severity::High))
            .collect()
    }
    fn status(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

struct Db;
impl VulnSource for Db {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        Some(Arc::new(OneHigh))
    }
}

/// The assessor on `dir` (its `assess.db`), trusting only the security
/// group for VEX referrers. Not a sink of the registry: the tests hand it
/// each push with the pusher the registry's event would name.
fn open(dir: &Path, registry: &registry::Registry) -> Service {
    let mut o = Options::new(dir);
    o.tick = Duration::from_millis(50);
    o.vex.trusted = Some(vec!["group:security".into()]);
    Service::open(
        o,
        Arc::new(assess::live::RegistrySource(registry.clone())),
        Arc::new(TextCatalog),
        Arc::new(Db),
        Arc::new(ManualClock::new()),
    )
    .unwrap()
}

struct World {
    dir: tempfile::TempDir,
    registry: registry::Registry,
    base: String,
    client: reqwest::Client,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = registry.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    World {
        dir,
        registry,
        base,
        client,
    }
}

impl World {
    async fn put_blob(&self, repo: &str, data: &[u8]) -> Digest {
        common::put_blob(&self.client, &self.base, repo, data).await
    }

    /// An OpenVEX document saying `image` is not affected by its openssl
    /// advisory, pushed as a referrer of it; returns the artifact digest.
    async fn push_vex(&self, repo: &str, image: &Digest, id: &str) -> Digest {
        let doc = serde_json::json!({
            "@context": "https://openvex.dev/ns/v0.2.0",
            "@id": id,
            "author": "Platform Security <security@example.com>",
            "timestamp": "2026-01-10T10:00:00Z",
            "version": 1,
            "statements": [{
                "vulnerability": {"name": "CVE-2099-openssl"},
                "products": [{"@id": image.to_string()}],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
            }],
        })
        .to_string();
        let subject = self.image_manifest(repo, image).await;
        let config = self.put_blob(repo, b"{}").await;
        let layer = self.put_blob(repo, doc.as_bytes()).await;
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": OPENVEX,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": OPENVEX, "digest": layer, "size": doc.len()}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": image, "size": subject.len()},
        })
        .to_string();
        let d = Digest::sha256_of(body.as_bytes());
        let r = self
            .client
            .put(format!("{}/v2/{repo}/manifests/{d}", self.base))
            .header("content-type", OCI_MANIFEST)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        d
    }

    async fn image_manifest(&self, repo: &str, digest: &Digest) -> Vec<u8> {
        let r = self
            .client
            .get(format!("{}/v2/{repo}/manifests/{digest}", self.base))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap().to_vec()
    }

    /// An image (one openssl package) and a VEX referrer of it pushed by
    /// `pusher`, both queued by an assessor that stops before either job
    /// runs; then the assessor started again on the same directory, once
    /// both jobs ran. Returns it with the image's and the referrer's
    /// digests.
    async fn queue_then_restart(&self, pusher: Pusher, id: &str) -> (Service, Digest, Digest) {
        let image = push(&self.client, &self.base, "team/app", "v1", "openssl").await;
        let vex = self.push_vex("team/app", &image, id).await;
        let before = open(self.dir.path(), &self.registry);
        before.manifest_pushed_by("team/app", &image.to_string(), OCI_MANIFEST, &["v1"], None);
        before.manifest_pushed_by(
            "team/app",
            &vex.to_string(),
            OCI_MANIFEST,
            &[],
            Some(pusher),
        );
        // Stopped before the jobs ran: never started, then gone.
        let queued = before.store().image(&vex.to_string()).unwrap().unwrap();
        assert_eq!(queued.status, "queued");
        drop(before);

        let after = open(self.dir.path(), &self.registry);
        self.registry.add_sink(Arc::new(after.clone()));
        after.start().await.unwrap();
        after.wait_idle(Duration::from_secs(60)).await.unwrap();
        (after, image, vex)
    }
}

/// The image's health and the VEX note on its one finding, read as the
/// API reads them (off the async threads).
async fn judged(svc: &Service, digest: &Digest) -> (String, Option<assess::vex::VexNote>) {
    let (svc, digest) = (svc.clone(), digest.to_string());
    tokio::task::spawn_blocking(move || {
        let v = svc
            .image_view(&digest, &Default::default(), false)
            .unwrap()
            .expect("the image is known");
        assert_eq!(v.status, "done");
        assert_eq!(v.findings.len(), 1, "{:?}", v.findings);
        (
            v.health.expect("judged").status,
            v.findings[0].not_affected_per_vex.clone(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_trusted_pushers_vex_queued_before_a_restart_is_applied_after_it() {
    let w = world().await;
    let sec = Pusher::User {
        name: "sec".into(),
        groups: vec!["security".into()],
    };
    let (svc, image, vex) = w
        .queue_then_restart(sec, "https://example.com/vex/by-sec")
        .await;

    let docs = svc.vex_documents().unwrap();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0].key, format!("referrer:{vex}"));
    assert_eq!(docs[0].recorded_by.as_deref(), Some("sec"));
    assert_eq!(docs[0].not_applied, None, "{docs:?}");
    let artifact = svc.store().image(&vex.to_string()).unwrap().unwrap();
    assert_eq!(artifact.status, "unsupported");
    let note = artifact.error.unwrap_or_default();
    assert!(
        note.contains("VEX document https://example.com/vex/by-sec applied")
            && note.contains("pushed by sec"),
        "{note}"
    );
    let (health, vex_note) = judged(&svc, &image).await;
    assert_eq!(health, "healthy");
    let vex_note = vex_note.expect("not affected per VEX");
    assert_eq!(vex_note.document, "https://example.com/vex/by-sec");
    assert_eq!(vex_note.recorded_by.as_deref(), Some("sec"));
    // Done: nothing is kept of who pushed it but the document's record.
    assert_eq!(svc.store().pusher(&vex.to_string()).unwrap(), None);

    // A rescan of the referrer (anyone with push may ask for one) runs it
    // without a pusher: the judgement made with sec known stands.
    assert!(svc.requeue(&vex.to_string()).unwrap());
    svc.wait_idle(Duration::from_secs(60)).await.unwrap();
    let artifact = svc.store().image(&vex.to_string()).unwrap().unwrap();
    // Re-queued as failed-then-queued: only running it makes it unsupported.
    assert_eq!(artifact.status, "unsupported", "ran again");
    let note = artifact.error.unwrap_or_default();
    assert!(
        note.contains("VEX document https://example.com/vex/by-sec applied")
            && note.contains("pushed by sec"),
        "{note}"
    );
    let docs = svc.vex_documents().unwrap();
    assert_eq!(docs[0].recorded_by.as_deref(), Some("sec"));
    assert_eq!(docs[0].not_applied, None, "{docs:?}");
    assert_eq!(judged(&svc, &image).await.0, "healthy");
    svc.shutdown();
}

#[tokio::test]
async fn an_untrusted_pushers_vex_queued_before_a_restart_is_stored_not_applied() {
    let w = world().await;
    let dev = Pusher::User {
        name: "dev".into(),
        groups: vec!["developers".into()],
    };
    let (svc, image, vex) = w
        .queue_then_restart(dev, "https://example.com/vex/by-dev")
        .await;

    let docs = svc.vex_documents().unwrap();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0].key, format!("referrer:{vex}"));
    assert_eq!(docs[0].recorded_by.as_deref(), Some("dev"));
    // The reason names the stored pusher, not an unknown one.
    assert_eq!(
        docs[0].not_applied.as_deref(),
        Some("pushed by dev, who is not trusted for VEX (assess.vex.trusted)"),
    );
    let artifact = svc.store().image(&vex.to_string()).unwrap().unwrap();
    let note = artifact.error.unwrap_or_default();
    assert!(
        note.contains("VEX document https://example.com/vex/by-dev stored, not applied")
            && note.contains("pushed by dev"),
        "{note}"
    );
    let (health, vex_note) = judged(&svc, &image).await;
    assert_eq!(health, "unhealthy");
    assert!(vex_note.is_none(), "{vex_note:?}");

    // Rescanned: still refused for the reason it had, not as unknown.
    assert!(svc.requeue(&vex.to_string()).unwrap());
    svc.wait_idle(Duration::from_secs(60)).await.unwrap();
    let docs = svc.vex_documents().unwrap();
    assert_eq!(
        docs[0].not_applied.as_deref(),
        Some("pushed by dev, who is not trusted for VEX (assess.vex.trusted)"),
    );
    svc.shutdown();
}

/// A referrer refused as dev's, pushed again (the same manifest) by sec:
/// its job runs again and the document is applied as sec's. dev pushing it
/// once more then withdraws nothing.
#[tokio::test]
async fn a_refused_vex_pushed_again_by_a_trusted_user_is_applied() {
    let w = world().await;
    let dev = Pusher::User {
        name: "dev".into(),
        groups: vec!["developers".into()],
    };
    let (svc, image, vex) = w
        .queue_then_restart(dev.clone(), "https://example.com/vex/shared")
        .await;
    assert!(svc.vex_documents().unwrap()[0].not_applied.is_some());
    assert_eq!(judged(&svc, &image).await.0, "unhealthy");

    let sec = Pusher::User {
        name: "sec".into(),
        groups: vec!["security".into()],
    };
    let again = |who: Pusher| {
        svc.manifest_pushed_by("team/app", &vex.to_string(), OCI_MANIFEST, &[], Some(who))
    };
    again(sec);
    svc.wait_idle(Duration::from_secs(60)).await.unwrap();
    let docs = svc.vex_documents().unwrap();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0].recorded_by.as_deref(), Some("sec"));
    assert_eq!(docs[0].not_applied, None, "{docs:?}");
    let (health, note) = judged(&svc, &image).await;
    assert_eq!(health, "healthy");
    assert_eq!(note.unwrap().recorded_by.as_deref(), Some("sec"));

    again(dev);
    svc.wait_idle(Duration::from_secs(60)).await.unwrap();
    // It ran (only a job that succeeded forgets the pusher it stored).
    assert_eq!(svc.store().pusher(&vex.to_string()).unwrap(), None);
    let docs = svc.vex_documents().unwrap();
    assert_eq!(docs[0].recorded_by.as_deref(), Some("sec"));
    assert_eq!(docs[0].not_applied, None, "{docs:?}");
    let artifact = svc.store().image(&vex.to_string()).unwrap().unwrap();
    assert!(
        artifact
            .error
            .unwrap_or_default()
            .contains("VEX document https://example.com/vex/shared applied"),
    );
    assert_eq!(judged(&svc, &image).await.0, "healthy");
    svc.shutdown();
}

/// The `images` table as drydock created it before the pusher was stored.
const OLD_IMAGES: &str = "CREATE TABLE images(
  digest TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  media_type TEXT NOT NULL,
  kind TEXT NOT NULL DEFAULT 'unknown',
  parent TEXT,
  platform TEXT,
  status TEXT NOT NULL,
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  queued_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  last_pushed_at INTEGER,
  last_pulled_at INTEGER,
  layers TEXT,
  children TEXT
);
CREATE TABLE image_repos(repo TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY(repo, digest));";

/// A data directory whose `assess.db` predates the pusher column, holding
/// a job queued by that older version: opening adds the column in place,
/// the old job keeps its row (pusher unknown) and runs, and a VEX referrer
/// pushed afterwards by a trusted user is judged by that user across a
/// restart.
#[tokio::test]
async fn an_assess_db_from_before_the_pusher_column_upgrades_in_place() {
    let w = world().await;
    let image = push(&w.client, &w.base, "team/app", "v1", "openssl").await;
    let db = w.dir.path().join("assess.db");
    // A digest and a media type: no quoting needed.
    storage::assess::sqlite_execute_for_tests(
        &db,
        &format!(
            "{OLD_IMAGES}
             INSERT INTO images(digest, repo, media_type, status, queued_at, last_pushed_at)
               VALUES ('{image}', 'team/app', '{OCI_MANIFEST}', 'queued', 1, 1);
             INSERT INTO image_repos(repo, digest) VALUES ('team/app', '{image}');"
        ),
    )
    .unwrap();

    // The column is added (the pusher below is stored and read back).
    let first = open(w.dir.path(), &w.registry);
    let old = first.store().image(&image.to_string()).unwrap().unwrap();
    assert_eq!(
        (old.status.as_str(), old.repo.as_str()),
        ("queued", "team/app")
    );
    assert_eq!(first.store().pusher(&image.to_string()).unwrap(), None);

    let vex = w
        .push_vex("team/app", &image, "https://example.com/vex/upgraded")
        .await;
    let sec = Pusher::User {
        name: "sec".into(),
        groups: vec!["security".into()],
    };
    first.manifest_pushed_by(
        "team/app",
        &vex.to_string(),
        OCI_MANIFEST,
        &[],
        Some(sec.clone()),
    );
    assert_eq!(first.store().pusher(&vex.to_string()).unwrap(), Some(sec));
    drop(first);

    // Opening an upgraded database again changes nothing more.
    let svc = open(w.dir.path(), &w.registry);
    svc.start().await.unwrap();
    svc.wait_idle(Duration::from_secs(60)).await.unwrap();
    let docs = svc.vex_documents().unwrap();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0].recorded_by.as_deref(), Some("sec"));
    assert_eq!(docs[0].not_applied, None, "{docs:?}");
    let (health, note) = judged(&svc, &image).await;
    assert_eq!(health, "healthy");
    assert_eq!(note.unwrap().document, "https://example.com/vex/upgraded");
    svc.shutdown();
}
