//! The assessor over PostgreSQL (`Options::metadata`), against a
//! throwaway cluster on loopback (`storage::testing`; skipped where no
//! PostgreSQL is installed): an image pushed to the registry is assessed,
//! its result is in the database, and another node's store (a second
//! handle on the same database) reads it, with no `assess.db` written.

mod common;

use assess::{Finding, Options, Service, Severity, VulnDatabase, VulnSource};
use common::{TextCatalog, fixable, push};
use inventory::Inventory;
use std::sync::Arc;
use std::time::Duration;

/// `openssl` has a critical advisory with a fix; nothing else has any.
struct OneAdvisory;
impl VulnDatabase for OneAdvisory {
    fn version(&self) -> String {
        "test-1".into()
    }
    fn match_inventory(&self, inventory: &Inventory) -> Vec<Finding> {
        inventory
            .packages
            .iter()
            .filter(|p| p.name == "openssl")
            .map(|p| fixable("CVE-2099-0001", p, "1.0-2", Severity::Critical))
            .collect()
    }
    fn status(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

struct Db;
impl VulnSource for Db {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        Some(Arc::new(OneAdvisory))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_assessed_into_postgresql_and_read_by_another_node() {
    let Some(cluster) = storage::testing::shared_cluster() else {
        eprintln!("skipped: no PostgreSQL here");
        return;
    };
    let metadata = storage::MetadataStorage::from_url(&cluster.fresh_database()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
    let mut opts = Options::new(dir.path());
    opts.metadata = metadata.clone();
    let service = Service::open(
        opts,
        Arc::new(assess::live::RegistrySource(registry.clone())),
        Arc::new(TextCatalog),
        Arc::new(Db),
        Arc::new(assess::SystemClock),
    )
    .unwrap();
    registry.add_sink(Arc::new(service.clone()));
    service.start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = registry.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let before = service.store().verdict_generation();
    let image = push(&client, &base, "team/app", "v1", "openssl").await;
    service.wait_idle(Duration::from_secs(60)).await.unwrap();

    let row = service.store().image(&image.to_string()).unwrap().unwrap();
    assert_eq!(row.status, "done", "{row:?}");
    let result = service.store().result(&image.to_string()).unwrap().unwrap();
    assert_eq!(result.findings.len(), 1);
    assert_eq!(&*result.findings[0].id, "CVE-2099-0001");
    assert_ne!(service.store().verdict_generation(), before);
    assert!(
        !dir.path().join("assess.db").exists(),
        "the state went to PostgreSQL, not to assess.db"
    );

    // Another node's view of the same database.
    let other = tokio::task::spawn_blocking({
        let (data, metadata) = (dir.path().to_path_buf(), metadata.clone());
        move || assess::store::Store::open_where(&data, &metadata).unwrap()
    })
    .await
    .unwrap();
    let seen = other.result(&image.to_string()).unwrap().unwrap();
    assert_eq!(seen.findings, result.findings);
    assert_eq!(other.repos_of(&image.to_string()).unwrap(), ["team/app"]);
    service.shutdown();
}
