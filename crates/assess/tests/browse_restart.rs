//! A restart does not send the dashboard through a judging of every image:
//! the judging is kept on disk, the first view after a start is served
//! from it, and only the images whose inputs changed meanwhile are judged
//! again (bench/dashboard: 7.7 s at 10,000 images before).

mod common;

use assess::{
    Finding, FindingStatus, ManualClock, Options, Service, Severity, VulnDatabase, VulnSource,
};
use common::{TextCatalog, push};
use inventory::{Ecosystem, Inventory};
use std::sync::Arc;
use std::time::Duration;

/// Every package has one critical advisory (its own id) with a fix.
struct OneCritical;

fn critical(package: &str) -> Finding {
    Finding {
        id: format!("CVE-2099-{package}").into(),
        aliases: Vec::new().into(),
        related: Vec::new().into(),
        ecosystem: Ecosystem::Deb,
        distro: Some("debian:12".into()),
        package: package.into(),
        source_package: None,
        purl: format!("pkg:deb/debian/{package}@1.0-1").into(),
        installed_version: "1.0-1".into(),
        fixed_version: Some("1.0-2".into()),
        status: FindingStatus::Fixed,
        status_note: None,
        severity: Severity::Critical,
        severity_source: "test".into(),
        cvss: None,
        summary: "".into(),
        references: Vec::new().into(),
        informational: None,
        data_source: "test".into(),
    }
}

impl VulnDatabase for OneCritical {
    fn version(&self) -> String {
        "test-1".into()
    }
    fn match_inventory(&self, inventory: &Inventory) -> Vec<Finding> {
        inventory
            .packages
            .iter()
            .map(|p| critical(&p.name))
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

/// Each listed image's state, read off the async runtime (the read model
/// reads manifests through the registry).
async fn states(svc: &Service) -> std::collections::HashMap<String, String> {
    let svc = svc.clone();
    tokio::task::spawn_blocking(move || {
        let snap = svc.snapshot().unwrap();
        let q = assess::browse::ImageQuery::default();
        snap.images(&q, &|_| true, None, 500)
            .unwrap()
            .items
            .into_iter()
            .map(|e| (e.digest, e.state))
            .collect()
    })
    .await
    .unwrap()
}

async fn states_of(svc: Service) -> std::collections::HashMap<String, String> {
    states(&svc).await
}

/// `states` once `done` holds of them (a judging runs in the background
/// while the previous one is served), or a failure after a minute.
async fn states_once(
    svc: &Service,
    done: impl Fn(&std::collections::HashMap<String, String>) -> bool,
) -> std::collections::HashMap<String, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = states(svc).await;
        if done(&s) {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "never judged: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until the kept judging stopped changing (it is written after the
/// judging is served, on the judging's thread).
async fn kept_settles(path: &std::path::Path) {
    let stamp = || {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut last = stamp();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = stamp();
        if now == last && now.is_some() {
            return;
        }
        last = now;
    }
}

/// Another service on the same directory and registry, as after a restart
/// (its dashboard starts with nothing in memory). Not started: only read.
fn reopen(dir: &std::path::Path, registry: &registry::Registry, clock: &ManualClock) -> Service {
    Service::open(
        Options::new(dir),
        Arc::new(assess::live::RegistrySource(registry.clone())),
        Arc::new(TextCatalog),
        Arc::new(Db),
        Arc::new(clock.clone()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_restart_serves_the_kept_judging_and_judges_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
    let clock = ManualClock::new();
    let first = reopen(dir.path(), &registry, &clock);
    registry.add_sink(Arc::new(first.clone()));
    first.start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = registry.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let mut digests = Vec::new();
    for (tag, pkg) in [("v1", "openssl"), ("v2", "zlib"), ("v3", "curl")] {
        digests.push(push(&client, &base, "team/app", tag, pkg).await.to_string());
    }
    first.wait_idle(Duration::from_secs(60)).await.unwrap();
    states_once(&first, |s| {
        s.len() == 3 && s.values().all(|v| v == "unhealthy")
    })
    .await;
    assert!(first.dashboard_images_judged() >= 3);
    let kept = dir.path().join("dashboard-judged.json.zst");
    kept_settles(&kept).await;
    first.shutdown();

    // A start with nothing changed: the view is served, no image judged,
    // even to several first requests at once (those arriving while the
    // kept judging loads wait for it, not judge every image themselves).
    let second = reopen(dir.path(), &registry, &clock);
    assert_eq!(second.dashboard_images_judged(), 0);
    let first_readers: Vec<_> = (0..8)
        .map(|_| tokio::spawn(states_of(second.clone())))
        .collect();
    for r in first_readers {
        assert_eq!(r.await.unwrap().len(), 3);
    }
    assert_eq!(second.dashboard_images_judged(), 0);
    let s = states(&second).await;
    assert_eq!(s.len(), 3);
    assert!(s.values().all(|v| v == "unhealthy"), "{s:?}");
    // The background check after the load finds nothing to judge.
    tokio::time::sleep(Duration::from_millis(500)).await;
    states(&second).await;
    assert_eq!(second.dashboard_images_judged(), 0);

    // While "down", one image is matched again and now has no finding:
    // the next start judges that one again, and only it.
    second
        .store()
        .save_result(&digests[0], Some("test-1"), 1, &[])
        .unwrap();
    kept_settles(&kept).await;
    let third = reopen(dir.path(), &registry, &clock);
    let s = states_once(&third, |s| {
        s.get(&digests[0]).map(String::as_str) == Some("healthy")
    })
    .await;
    assert_eq!(s[&digests[1]], "unhealthy");
    assert_eq!(s[&digests[2]], "unhealthy");
    assert_eq!(third.dashboard_images_judged(), 1);

    // An exemption is read by every image's verdict: all judged again.
    third
        .add_exemption(
            Some("CVE-2099-zlib".into()),
            None,
            None,
            None,
            "accepted until the rebuild".into(),
            "test".into(),
            None,
        )
        .unwrap();
    let s = states_once(&third, |s| {
        s.get(&digests[1]).map(String::as_str) == Some("healthy")
    })
    .await;
    assert_eq!(s[&digests[2]], "unhealthy");
    assert_eq!(third.dashboard_images_judged(), 1 + 3);

    // A kept file that cannot be read is no verdict: everything is judged.
    kept_settles(&kept).await;
    std::fs::write(&kept, b"not a judging").unwrap();
    let fourth = reopen(dir.path(), &registry, &clock);
    let s = states(&fourth).await;
    assert_eq!(s[&digests[0]], "healthy");
    assert_eq!(s[&digests[2]], "unhealthy");
    assert_eq!(fourth.dashboard_images_judged(), 3);
}
