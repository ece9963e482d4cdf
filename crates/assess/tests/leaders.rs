//! Two assessors (two nodes) on one PostgreSQL database share their state;
//! the singleton work runs on the node that leads its duty
//! (`Options::leads`, from each node's own metadata store): a webhook is
//! posted once, not by both, and a new database version is re-matched by
//! the scheduler's leader only. When the leader's store goes (its node's
//! connections die), the other node takes both duties over. Against a
//! throwaway cluster on loopback (`storage::testing`; skipped where no
//! PostgreSQL is installed).

mod common;

use assess::{Finding, Leads, Options, Service, Severity, VulnDatabase, VulnSource, WebhookConfig};
use common::{TextCatalog, fixable, push};
use inventory::Inventory;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a node that does not lead tries for the lead.
const RETRY: Duration = Duration::from_millis(200);

/// Packages named `openssl…` have a critical advisory with a fix, in
/// every version of the database; matching counts its calls per node and
/// is slow from version 2 on, so two nodes re-matching at once overlap.
struct Versioned {
    version: u32,
    matches: Arc<AtomicUsize>,
}

impl VulnDatabase for Versioned {
    fn version(&self) -> String {
        format!("test-{}", self.version)
    }
    fn match_inventory(&self, inventory: &Inventory) -> Vec<Finding> {
        self.matches.fetch_add(1, Ordering::SeqCst);
        if self.version > 1 {
            std::thread::sleep(Duration::from_millis(300));
        }
        inventory
            .packages
            .iter()
            .filter(|p| p.name.starts_with("openssl"))
            .map(|p| fixable("CVE-2099-0001", p, "1.0-2", Severity::Critical))
            .collect()
    }
    fn status(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

/// Each node's view of the one database version the test sets.
struct Db {
    version: Arc<AtomicU32>,
    matches: Arc<AtomicUsize>,
}

impl VulnSource for Db {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        Some(Arc::new(Versioned {
            version: self.version.load(Ordering::SeqCst),
            matches: self.matches.clone(),
        }))
    }
}

/// A webhook receiver on loopback counting posts per delivery id. It
/// answers only after 1.5 s: longer than a delivery loop's poll, so a
/// second node that also delivers finds the row still pending.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<HashMap<String, usize>>>);

impl Receiver {
    async fn start(&self) -> String {
        let seen = self.0.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let seen = seen.clone();
                async move {
                    let id = headers
                        .get(assess::notify::DELIVERY_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    *seen.lock().unwrap().entry(id).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn posts(&self) -> HashMap<String, usize> {
        self.0.lock().unwrap().clone()
    }
}

/// One node: its assessor, the metadata store its leads come from (None
/// once the node "died") and its count of matches.
struct Node {
    service: Service,
    meta: Option<Arc<dyn storage::Meta>>,
    matches: Arc<AtomicUsize>,
}

impl Node {
    /// The node's store closes, and with it the connection that holds its
    /// leads, as when its process dies.
    fn die(&mut self) {
        self.meta = None;
    }
}

struct Cluster {
    metadata: storage::MetadataStorage,
    registry: registry::Registry,
    base: String,
    client: reqwest::Client,
    hook: String,
    version: Arc<AtomicU32>,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn new(hook: String) -> Option<Cluster> {
        let cluster = storage::testing::shared_cluster()?;
        let metadata = storage::MetadataStorage::from_url(&cluster.fresh_database()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // The images live in one registry the nodes share (as a bucket).
        let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = registry.router();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Some(Cluster {
            metadata,
            registry,
            base,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            hook,
            version: Arc::new(AtomicU32::new(1)),
            dir,
        })
    }

    /// Start a node; the first one is also the registry's event sink (a
    /// push reaches one node; the job it queues is shared).
    async fn node(&self, sink: bool) -> Node {
        let meta = self.metadata.open_meta(self.dir.path()).unwrap();
        let weak = Arc::downgrade(&meta);
        let mut opts = Options::new(self.dir.path());
        opts.metadata = self.metadata.clone();
        opts.tick = Duration::from_millis(100);
        opts.webhook_attempts = 1;
        opts.outbound = assess::EgressPolicy::parse_allow(&["127.0.0.1/32".to_string()]).unwrap();
        opts.webhooks = vec![WebhookConfig {
            url: self.hook.clone(),
            secret: "s3cret".into(),
            repository: None,
            min_severity: None,
        }];
        opts.leads = Leads::new(move |duty| {
            weak.upgrade()
                .expect("the node's store is open while it starts")
                .lead(duty, RETRY)
        });
        let matches = Arc::new(AtomicUsize::new(0));
        let service = Service::open(
            opts,
            Arc::new(assess::live::RegistrySource(self.registry.clone())),
            Arc::new(TextCatalog),
            Arc::new(Db {
                version: self.version.clone(),
                matches: matches.clone(),
            }),
            Arc::new(assess::SystemClock),
        )
        .unwrap();
        if sink {
            self.registry.add_sink(Arc::new(service.clone()));
        }
        service.start().await.unwrap();
        Node {
            service,
            meta: Some(meta),
            matches,
        }
    }

    async fn push(&self, tag: &str, pkg: &str) -> String {
        push(&self.client, &self.base, "team/app", tag, pkg)
            .await
            .to_string()
    }
}

/// Wait until `f` holds, at most `within`.
async fn until(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The delivery queued for `digest`, once it is no longer pending.
async fn delivered(service: &Service, digest: &str) -> assess::store::Delivery {
    let mut found = None;
    until(Duration::from_secs(20), "the delivery is made", || {
        found = service
            .store()
            .deliveries(None, 100)
            .unwrap()
            .into_iter()
            .find(|d| d.digest.as_deref() == Some(digest) && d.state != "pending");
        found.is_some()
    })
    .await;
    found.unwrap()
}

/// Exactly one post of the delivery for `digest` reached the receiver and
/// the log shows one attempt, delivered; after waiting long enough for a
/// second node's loop (it polls at least every second) to post it too.
async fn delivered_once(service: &Service, receiver: &Receiver, digest: &str) {
    let first = delivered(service, digest).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let d = service
        .store()
        .deliveries(None, 100)
        .unwrap()
        .into_iter()
        .find(|d| d.id == first.id)
        .unwrap();
    assert_eq!(
        (d.state.as_str(), d.attempts),
        ("delivered", 1),
        "the deliveries log: {d:?}"
    );
    let posts = receiver.posts();
    assert_eq!(posts.get(&d.id), Some(&1), "posts received: {posts:?}");
    let all = service.store().deliveries(None, 100).unwrap();
    assert_eq!(
        all.iter()
            .filter(|d| d.digest.as_deref() == Some(digest))
            .count(),
        1,
        "one delivery queued for the event: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_posted_by_the_leader_only_and_by_the_next_when_it_dies() {
    let receiver = Receiver::default();
    let hook = receiver.start().await;
    let Some(cluster) = Cluster::new(hook).await else {
        eprintln!("skipped: no PostgreSQL here");
        return;
    };
    // Node A alone delivers the first event: it leads delivery.
    let mut a = cluster.node(true).await;
    let first = cluster.push("v0", "openssl-0").await;
    a.service.wait_idle(Duration::from_secs(60)).await.unwrap();
    delivered_once(&a.service, &receiver, &first).await;

    // With B beside it, the next event is still posted once.
    let b = cluster.node(false).await;
    let second = cluster.push("v1", "openssl-1").await;
    a.service.wait_idle(Duration::from_secs(60)).await.unwrap();
    delivered_once(&a.service, &receiver, &second).await;

    // A dies: B takes delivery over within its retry period and posts the
    // next event, once (A's loop no longer does).
    a.die();
    let third = cluster.push("v2", "openssl-2").await;
    a.service.wait_idle(Duration::from_secs(60)).await.unwrap();
    delivered_once(&b.service, &receiver, &third).await;
    assert_eq!(receiver.posts().len(), 3, "{:?}", receiver.posts());
    a.service.shutdown();
    b.service.shutdown();
}

/// The result of `digest` was matched against `version`.
async fn rematched(service: &Service, digest: &str, version: u32) {
    let want = format!("test-{version}");
    until(
        Duration::from_secs(20),
        &format!("re-matched on {want}"),
        || {
            service
                .store()
                .result(digest)
                .unwrap()
                .is_some_and(|r| r.db_version.as_deref() == Some(want.as_str()))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_scheduler_leader_rematches_after_a_new_database() {
    let receiver = Receiver::default();
    let hook = receiver.start().await;
    let Some(cluster) = Cluster::new(hook).await else {
        eprintln!("skipped: no PostgreSQL here");
        return;
    };
    let mut a = cluster.node(true).await;
    let image = cluster.push("v1", "openssl").await;
    a.service.wait_idle(Duration::from_secs(60)).await.unwrap();
    rematched(&a.service, &image, 1).await;
    // A alone re-matches version 2: it leads the scheduler.
    cluster.version.store(2, Ordering::SeqCst);
    rematched(&a.service, &image, 2).await;

    let b = cluster.node(false).await;
    // B's start matches nothing (the image is assessed); a round or two of
    // both schedulers on the same version re-matches nothing either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.matches.store(0, Ordering::SeqCst);
    b.matches.store(0, Ordering::SeqCst);
    cluster.version.store(3, Ordering::SeqCst);
    rematched(&a.service, &image, 3).await;
    // Long enough for B's scheduler (100 ms ticks) to have re-matched too.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        (
            a.matches.load(Ordering::SeqCst),
            b.matches.load(Ordering::SeqCst)
        ),
        (1, 0),
        "re-match runs on (A, B): only the leader's"
    );

    // A dies: B leads within its retry period and re-matches version 4.
    a.die();
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.matches.store(0, Ordering::SeqCst);
    cluster.version.store(4, Ordering::SeqCst);
    rematched(&b.service, &image, 4).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        (
            a.matches.load(Ordering::SeqCst),
            b.matches.load(Ordering::SeqCst)
        ),
        (0, 1),
        "re-match runs on (A, B) after A died: only B's"
    );
    a.service.shutdown();
    b.service.shutdown();
}
