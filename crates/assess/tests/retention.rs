//! Retention: rows of the tables that grow with every push and every
//! notification are pruned by age, and what is still needed stays.

use assess::clock::to_ms;
use assess::ports::{Cataloger, RegistryContent};
use assess::store::{Delivery, PruneBefore, Store};
use assess::{Clock, ManualClock, Options, Service, VulnDatabase, VulnSource};
use catalog::{LayerCache, LayerInventory};
use inventory::Inventory;
use oci::{BlobSource, Digest, ImageManifest, Name, Tag};
use std::sync::Arc;
use std::time::Duration;
use time::{Duration as Span, OffsetDateTime};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn delivery(id: &str, created_at: i64) -> Delivery {
    Delivery {
        id: id.into(),
        webhook_id: "w".into(),
        event: "image.unhealthy".into(),
        digest: Some("sha256:aa".into()),
        repository: Some("team/app".into()),
        state: "pending".into(),
        attempts: 0,
        last_status: None,
        last_error: None,
        created_at,
        next_attempt_at: created_at,
        delivered_at: None,
        payload: "{\"big\":\"payload\"}".into(),
    }
}

/// A layer digest for the layer cache's rows.
fn layer(name: &str) -> Digest {
    Digest::sha256_of(name.as_bytes())
}

fn tags(store: &Store, digest: &str) -> Vec<(String, String, String)> {
    let mut v = store.previous_tag_digests(digest).unwrap();
    v.sort();
    v
}

#[test]
fn rows_older_than_the_settings_go_and_newer_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("assess.db")).unwrap();
    let clock = ManualClock::new();
    store.set_clock(Arc::new(clock.clone()));
    let now = clock.now();
    let ago = |days: i64| to_ms(now - Span::days(days));

    // An assessed image whose one layer is L1.
    let live = "sha256:live";
    store
        .enqueue("team/app", live, OCI_MANIFEST, None, None, ago(1), true)
        .unwrap();
    store
        .set_shape(live, "image", &[layer("l1").to_string()], &[])
        .unwrap();

    // Deliveries: finished and old, pending and old, finished and recent.
    for (id, at) in [
        ("old-done", ago(40)),
        ("old-pending", ago(40)),
        ("new-done", ago(1)),
    ] {
        store.add_delivery(&delivery(id, at)).unwrap();
    }
    for id in ["old-done", "new-done"] {
        store
            .delivery_attempted(id, true, Some(200), None, None, ago(1))
            .unwrap();
    }

    // Notified: an old record, a recent one, and one of a forgotten image.
    store
        .mark_notified(live, &["old".into()], ago(400))
        .unwrap();
    store.mark_notified(live, &["new".into()], ago(1)).unwrap();
    store
        .mark_notified("sha256:forgotten", &["k".into()], ago(1))
        .unwrap();

    // Tag history: `latest` moved four times long ago; `edge` three times
    // recently.
    for (i, at) in [ago(300), ago(250), ago(200), ago(190)]
        .into_iter()
        .enumerate()
    {
        let d = if i == 3 {
            live.to_string()
        } else {
            format!("sha256:old{i}")
        };
        store.record_tag("team/app", "latest", &d, at).unwrap();
    }
    for (i, at) in [ago(3), ago(2), ago(1)].into_iter().enumerate() {
        store
            .record_tag("team/app", "edge", &format!("sha256:edge{i}"), at)
            .unwrap();
    }

    // Layer cache: L1 (named by the image) and L2 (named by nothing) two
    // days old; L3 (named by nothing) just stored; L1 of an older catalog
    // version.
    clock.advance(-Span::days(2));
    store.put(&layer("l1"), 2, &LayerInventory::new());
    store.put(&layer("l2"), 2, &LayerInventory::new());
    store.put(&layer("l1"), 1, &LayerInventory::new());
    clock.advance(Span::days(2));
    store.put(&layer("l3"), 2, &LayerInventory::new());
    assert_eq!(store.get(&layer("l2"), 2), Some(LayerInventory::new()));

    let pruned = store
        .prune(&PruneBefore {
            deliveries: ago(30),
            notified: ago(365),
            tag_history: ago(180),
            layer_cache: ago(1),
            catalog_version: 2,
        })
        .unwrap();
    assert_eq!(pruned.deliveries, 1);
    assert_eq!(pruned.notified, 2);
    assert_eq!(pruned.tag_history, 2);
    assert_eq!(pruned.layer_cache, 2);

    let mut left: Vec<String> = store
        .deliveries(None, 100)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    left.sort();
    assert_eq!(left, ["new-done", "old-pending"], "pending deliveries stay");

    let notified = store.notified_keys(live).unwrap();
    assert!(notified.contains("new") && !notified.contains("old"));
    assert!(store.notified_keys("sha256:forgotten").unwrap().is_empty());

    // The two newest moves of `latest` stay: the live digest still knows
    // what the tag pointed at before it.
    assert_eq!(
        tags(&store, live),
        [(
            "team/app".to_string(),
            "latest".to_string(),
            "sha256:old2".to_string()
        )]
    );
    assert_eq!(tags(&store, "sha256:edge2").len(), 1, "recent moves stay");
    assert_eq!(tags(&store, "sha256:edge1").len(), 1, "recent moves stay");

    assert!(store.get(&layer("l1"), 2).is_some(), "a layer in use stays");
    assert!(
        store.get(&layer("l2"), 2).is_none(),
        "an unused old layer goes"
    );
    assert!(
        store.get(&layer("l3"), 2).is_some(),
        "a new upload has its grace"
    );
    assert!(
        store.get(&layer("l1"), 1).is_none(),
        "old catalog versions go"
    );

    // A second pass finds nothing more.
    let again = store
        .prune(&PruneBefore {
            deliveries: ago(30),
            notified: ago(365),
            tag_history: ago(180),
            layer_cache: ago(1),
            catalog_version: 2,
        })
        .unwrap();
    assert_eq!(again.total(), 0);
}

// ---- the scheduler prunes ----

struct Nothing;

impl RegistryContent for Nothing {
    fn manifest(&self, _: &Name, _: &Digest) -> anyhow::Result<Option<(Vec<u8>, String)>> {
        Ok(None)
    }
    fn blob_source(&self) -> Arc<dyn BlobSource> {
        Arc::new(NoBlobs)
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

struct NoBlobs;
impl BlobSource for NoBlobs {
    fn open_blob(&self, d: &Digest) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        Err(std::io::Error::other(format!("no blob {d}")))
    }
}

impl Cataloger for Nothing {
    fn version(&self) -> u32 {
        1
    }
    fn catalog(
        &self,
        _: &dyn BlobSource,
        _: &ImageManifest,
        _: &dyn LayerCache,
    ) -> Result<Inventory, assess::CatalogFailure> {
        Ok(Inventory::default())
    }
}

impl VulnSource for Nothing {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        None
    }
}

#[tokio::test]
async fn the_scheduler_prunes_by_the_configured_retention() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let now = clock.now();
    {
        let store = Store::open(&dir.path().join("assess.db")).unwrap();
        for (id, days) in [("ten-days", 10), ("two-days", 2)] {
            let at = to_ms(now - Span::days(days));
            store.add_delivery(&delivery(id, at)).unwrap();
            store
                .delivery_attempted(id, false, Some(500), Some("HTTP 500"), None, at)
                .unwrap();
        }
    }
    let mut opts = Options::new(dir.path());
    opts.retention.deliveries = Span::days(7);
    let service = Service::open(
        opts,
        Arc::new(Nothing),
        Arc::new(Nothing),
        Arc::new(Nothing),
        Arc::new(clock),
    )
    .unwrap();
    service.start().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ids: Vec<String> = service
            .store()
            .deliveries(None, 10)
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        if ids == ["two-days"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not pruned at start: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.shutdown();
}
