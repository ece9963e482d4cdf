//! Webhook deliveries under the outbound policy: literal internal
//! addresses, names that resolve to loopback and redirects. Only loopback
//! is ever contacted: every other address is refused before a connection.

use assess::store::Delivery;
use assess::{
    Cataloger, Options, RegistryContent, Service, VulnDatabase, VulnSource, WebhookConfig,
};
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use egress::EgressPolicy;
use inventory::Inventory;
use oci::{BlobSource, Digest, ImageManifest, Name, Tag};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// A registry with no manifests: every assessment fails, which notifies
/// every webhook (`assessment.failed`).
struct Empty;
impl RegistryContent for Empty {
    fn manifest(&self, _: &Name, _: &Digest) -> anyhow::Result<Option<(Vec<u8>, String)>> {
        Ok(None)
    }
    fn blob_source(&self) -> Arc<dyn BlobSource> {
        unreachable!("no manifest, no blob")
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

struct NoCatalog;
impl Cataloger for NoCatalog {
    fn version(&self) -> u32 {
        1
    }
    fn catalog(
        &self,
        _: &dyn BlobSource,
        _: &ImageManifest,
        _: &dyn catalog::LayerCache,
    ) -> Result<Inventory, assess::CatalogFailure> {
        Err("not reached".into())
    }
}

struct NoDb;
impl VulnSource for NoDb {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        None
    }
}

const SECRET: &str = "0123456789abcdef-secret";

/// A receiver on `ip` at `/hook`, answering `status` with `location`.
async fn receiver(
    ip: &str,
    status: StatusCode,
    location: Option<String>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            h.fetch_add(1, Ordering::SeqCst);
            let location = location.clone();
            async move {
                let mut headers = HeaderMap::new();
                if let Some(l) = location {
                    headers.insert(header::LOCATION, l.parse().unwrap());
                }
                (status, headers)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

fn policy(allow: &[&str]) -> EgressPolicy {
    EgressPolicy::parse_allow(&allow.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

/// Start a service with `outbound` and configured webhooks to `urls`, fail
/// one assessment, and return each URL's single delivery once attempted.
async fn deliver(
    outbound: EgressPolicy,
    urls: &[String],
) -> (Service, Vec<(String, Delivery)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.workers = 1;
    opts.webhook_attempts = 1;
    opts.webhook_timeout = Duration::from_secs(5);
    opts.outbound = outbound;
    opts.webhooks = urls
        .iter()
        .map(|u| WebhookConfig {
            url: u.clone(),
            secret: SECRET.into(),
            repository: None,
            min_severity: None,
        })
        .collect();
    let svc = assess::start(
        opts,
        Arc::new(Empty),
        Arc::new(NoCatalog),
        Arc::new(NoDb),
        Arc::new(assess::SystemClock),
    )
    .await
    .unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    svc.manifest_pushed(
        "team/app",
        &digest,
        "application/vnd.oci.image.manifest.v1+json",
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ds = svc.store().deliveries(None, 100).unwrap();
        if ds.len() == urls.len() && ds.iter().all(|d| d.attempts >= 1) {
            let hooks = svc.store().webhooks().unwrap();
            let by_url = ds
                .into_iter()
                .map(|d| {
                    let w = hooks.iter().find(|w| w.id == d.webhook_id).unwrap();
                    (w.url.clone(), d)
                })
                .collect();
            return (svc, by_url, dir);
        }
        assert!(
            Instant::now() < deadline,
            "deliveries not attempted: {ds:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn outcome<'a>(ds: &'a [(String, Delivery)], url: &str) -> &'a Delivery {
    &ds.iter().find(|(u, _)| u == url).unwrap().1
}

#[tokio::test]
async fn internal_addresses_are_refused_by_default() {
    let (addr, hits) = receiver("127.0.0.1", StatusCode::OK, None).await;
    let literal = format!("http://127.0.0.1:{}/hook", addr.port());
    let named = format!("http://localhost:{}/hook", addr.port());
    let metadata = "http://169.254.169.254/latest/meta-data/".to_string();
    let private = "http://10.0.0.1/hook".to_string();
    let urls = [
        literal.clone(),
        named.clone(),
        metadata.clone(),
        private.clone(),
    ];
    let (svc, ds, _dir) = deliver(EgressPolicy::default(), &urls).await;
    let expect = [
        (
            &literal,
            "refused by the outbound policy: 127.0.0.1 is a loopback address (allow it with outbound.allow)",
        ),
        (
            &metadata,
            "refused by the outbound policy: 169.254.169.254 is a link-local address (allow it with outbound.allow)",
        ),
        (
            &private,
            "refused by the outbound policy: 10.0.0.1 is a private address (allow it with outbound.allow)",
        ),
    ];
    for (url, msg) in expect {
        let d = outcome(&ds, url);
        assert_eq!(d.state, "failed", "{url}");
        assert_eq!(d.last_error.as_deref(), Some(msg), "{url}");
        assert!(
            svc.check_webhook_url(url)
                .unwrap_err()
                .to_string()
                .contains(msg)
        );
    }
    // A name is judged on the addresses it resolves to.
    let d = outcome(&ds, &named);
    assert_eq!(d.state, "failed");
    let err = d.last_error.as_deref().unwrap();
    assert!(
        err.starts_with("refused by the outbound policy: localhost resolves to "),
        "{err}"
    );
    assert!(err.contains("loopback address"), "{err}");
    assert!(
        svc.check_webhook_url(&named).is_ok(),
        "names pass until resolved"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the receiver"
    );
    svc.shutdown();
}

#[tokio::test]
async fn the_allow_list_lets_listed_ranges_through_only() {
    let (addr, hits) = receiver("127.0.0.1", StatusCode::OK, None).await;
    let literal = format!("http://127.0.0.1:{}/hook", addr.port());
    let named = format!("http://localhost:{}/hook", addr.port());
    let private = "http://10.0.0.1/hook".to_string();
    let urls = [literal.clone(), named.clone(), private.clone()];
    let (svc, ds, _dir) = deliver(policy(&["127.0.0.0/8", "::1/128"]), &urls).await;
    for url in [&literal, &named] {
        let d = outcome(&ds, url);
        assert_eq!(
            (d.state.as_str(), d.last_status),
            ("delivered", Some(200)),
            "{url}: {d:?}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let d = outcome(&ds, &private);
    assert_eq!(d.state, "failed");
    assert!(
        d.last_error
            .as_deref()
            .unwrap()
            .contains("10.0.0.1 is a private address")
    );
    svc.shutdown();

    // Other ranges are allowed the same way (checked without a request:
    // tests reach loopback only).
    let dir = tempfile::tempdir().unwrap();
    let wide = Service::open(
        {
            let mut o = Options::new(dir.path());
            o.outbound = policy(&["10.0.0.0/8", "169.254.169.254/32"]);
            o
        },
        Arc::new(Empty),
        Arc::new(NoCatalog),
        Arc::new(NoDb),
        Arc::new(assess::SystemClock),
    )
    .unwrap();
    assert!(wide.check_webhook_url("http://10.0.0.1/hook").is_ok());
    assert!(wide.check_webhook_url("http://169.254.169.254/x").is_ok());
    assert!(wide.check_webhook_url("http://169.254.169.253/x").is_err());
    assert!(wide.check_webhook_url("http://[::ffff:10.0.0.1]/x").is_ok());
}

/// Deliveries follow no redirect, so a receiver cannot bounce one to an
/// internal address; the delivery fails and says why.
#[tokio::test]
async fn redirects_are_not_followed() {
    let (inner, inner_hits) = receiver("127.0.0.2", StatusCode::OK, None).await;
    let (hop, hop_hits) = receiver(
        "127.0.0.1",
        StatusCode::TEMPORARY_REDIRECT,
        Some(format!("http://127.0.0.2:{}/hook", inner.port())),
    )
    .await;
    let (to_private, _) = receiver(
        "127.0.0.1",
        StatusCode::TEMPORARY_REDIRECT,
        Some("http://10.0.0.1/hook".into()),
    )
    .await;
    let first = format!("http://127.0.0.1:{}/hook", hop.port());
    let second = format!("http://127.0.0.1:{}/hook", to_private.port());
    for allow in [&["127.0.0.1/32"][..], &["127.0.0.0/8"][..]] {
        let (svc, ds, _dir) = deliver(policy(allow), &[first.clone(), second.clone()]).await;
        for url in [&first, &second] {
            let d = outcome(&ds, url);
            assert_eq!(d.state, "failed");
            assert_eq!(d.last_status, Some(307));
            assert_eq!(
                d.last_error.as_deref(),
                Some("HTTP 307 Temporary Redirect (webhook deliveries do not follow redirects)")
            );
        }
        svc.shutdown();
    }
    assert_eq!(hop_hits.load(Ordering::SeqCst), 2);
    assert_eq!(inner_hits.load(Ordering::SeqCst), 0);
}
