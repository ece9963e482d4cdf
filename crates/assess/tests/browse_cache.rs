//! The dashboard's read model judges every image once and keeps that
//! judging until something it depends on changes: the store, the
//! database, or the clock passing an exemption's expiry. At 10,000 images
//! a judging takes seconds, so it must not be redone on a timer
//! (bench/dashboard measures the pages).

mod common;

use assess::{Finding, ManualClock, Options, Service, Severity, VulnDatabase, VulnSource};
use common::{OCI_MANIFEST, TextCatalog, fixable, push};
use inventory::Inventory;
use oci::Digest;
use std::sync::Arc;
use std::time::Duration;
use time::Duration as Span;

/// Every package has one critical advisory with a fix.
struct OneCritical;

impl VulnDatabase for OneCritical {
    fn version(&self) -> String {
        "test-1".into()
    }
    fn match_inventory(&self, inventory: &Inventory) -> Vec<Finding> {
        inventory
            .packages
            .iter()
            .map(|p| fixable("CVE-2099-0100", p, "1.0-2", Severity::Critical))
            .collect()
    }
    fn status(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

struct Db;
impl VulnSource for Db {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        Some(Arc::new(OneCritical))
    }
}

/// The overview's count of tagged images in `state`, read off the async
/// runtime (the read model reads manifests through the registry).
async fn count(svc: &Service, state: &str) -> usize {
    let svc = svc.clone();
    let state = state.to_string();
    tokio::task::spawn_blocking(move || {
        let o = svc.overview(&|_| true).unwrap();
        o.images.get(&state).copied().unwrap_or(0)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn images_are_judged_again_only_when_something_they_depend_on_changes() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
    let clock = ManualClock::new();
    let service = Service::open(
        Options::new(dir.path()),
        Arc::new(assess::live::RegistrySource(registry.clone())),
        Arc::new(TextCatalog),
        Arc::new(Db),
        Arc::new(clock.clone()),
    )
    .unwrap();
    registry.add_sink(Arc::new(service.clone()));
    service.start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = registry.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let d = push(&client, &base, "team/app", "v1", "openssl").await;
    service.wait_idle(Duration::from_secs(60)).await.unwrap();
    assert_eq!(count(&service, "unhealthy").await, 1);
    let before = service.findings_totals().unwrap();
    assert_eq!(before.get(&d.to_string()), Some(&Some(1)));

    // Nothing changed, minutes later: the same judging is served (it was
    // redone every minute and every two seconds).
    let day = |c: &ManualClock| assess::Clock::now(c).unix_timestamp().div_euclid(86_400);
    let d0 = day(&clock);
    clock.advance(Span::minutes(5));
    let again = service.findings_totals().unwrap();
    if day(&clock) == d0 {
        assert!(
            Arc::ptr_eq(&before, &again),
            "judged again with nothing changed"
        );
    }

    // A push changes the store: judged again, the new image is there.
    let d2 = push(&client, &base, "team/app", "v2", "zlib").await;
    service.wait_idle(Duration::from_secs(60)).await.unwrap();
    let after = service.findings_totals().unwrap();
    assert_eq!(after.get(&d2.to_string()), Some(&Some(1)));
    assert_eq!(count(&service, "unhealthy").await, 2);

    // An exemption that expires in ten minutes: both images healthy now.
    let until = assess::Clock::now(&clock) + Span::minutes(10);
    service
        .add_exemption(
            Some("CVE-2099-0100".into()),
            None,
            None,
            None,
            "accepted until the rebuild".into(),
            "test".into(),
            Some(until),
        )
        .unwrap();
    assert_eq!(count(&service, "healthy").await, 2);
    assert_eq!(
        service.findings_totals().unwrap().get(&d.to_string()),
        Some(&Some(0))
    );

    // Its expiry, with no write to the store in between: unhealthy again.
    clock.advance(Span::minutes(11));
    assert_eq!(count(&service, "unhealthy").await, 2);
    assert_eq!(
        service.findings_totals().unwrap().get(&d.to_string()),
        Some(&Some(1))
    );
}

/// The assessor's service on a registry served on loopback.
async fn serve(dir: &std::path::Path, clock: &ManualClock) -> (Service, String, reqwest::Client) {
    let registry = registry::Registry::open(registry::Options::new(dir)).unwrap();
    let service = Service::open(
        Options::new(dir),
        Arc::new(assess::live::RegistrySource(registry.clone())),
        Arc::new(TextCatalog),
        Arc::new(Db),
        Arc::new(clock.clone()),
    )
    .unwrap();
    registry.add_sink(Arc::new(service.clone()));
    service.start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = registry.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    (service, base, client)
}

/// The images list entry of `digest`, read off the async runtime.
async fn entry(svc: &Service, digest: &Digest) -> assess::browse::ImageEntry {
    let (svc, digest) = (svc.clone(), digest.to_string());
    tokio::task::spawn_blocking(move || {
        let snap = svc.snapshot().unwrap();
        let q = assess::browse::ImageQuery::default();
        let page = snap.images(&q, &|_| true, None, 500).unwrap();
        page.items
            .into_iter()
            .find(|e| e.digest == digest)
            .expect("image listed")
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn recorded_pulls_are_not_judged_again_but_a_push_is() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let (service, base, client) = serve(dir.path(), &clock).await;

    let d = push(&client, &base, "team/app", "v1", "openssl").await;
    service.wait_idle(Duration::from_secs(60)).await.unwrap();
    assert_eq!(count(&service, "unhealthy").await, 1);
    let before = service.findings_totals().unwrap();
    assert_eq!(entry(&service, &d).await.pulled_at, None);

    // Pulls, recorded in the store (they were a write like any other, and
    // each one sent the next dashboard request through a whole judging).
    let verdicts = service.store().verdict_generation();
    let written = service.store().generation();
    for _ in 0..3 {
        let r = client
            .get(format!("{base}/v2/team/app/manifests/v1"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while service.store().generation() == written {
        assert!(
            std::time::Instant::now() < deadline,
            "the pulls were never recorded"
        );
        service.poll_pulls().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(service.store().verdict_generation(), verdicts);
    let again = service.findings_totals().unwrap();
    assert!(
        Arc::ptr_eq(&before, &again),
        "judged again after recording pulls"
    );
    // The pull time is laid over the same judging once the tags are read
    // again (every two seconds; later on a loaded machine).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while entry(&service, &d).await.pulled_at.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pull time never reached the judging"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(Arc::ptr_eq(&before, &service.findings_totals().unwrap()));

    // A push still is judged, and appears.
    let d2 = push(&client, &base, "team/app", "v2", "zlib").await;
    service.wait_idle(Duration::from_secs(60)).await.unwrap();
    assert!(service.store().verdict_generation() > verdicts);
    let after = service.findings_totals().unwrap();
    assert!(!Arc::ptr_eq(&before, &after));
    assert_eq!(after.get(&d2.to_string()), Some(&Some(1)));
    assert_eq!(count(&service, "unhealthy").await, 2);
    let e2 = entry(&service, &d2).await;
    assert_eq!(e2.tags, vec!["team/app:v2".to_string()]);
    assert!(!e2.untagged);
}
