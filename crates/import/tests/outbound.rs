//! Import jobs and mirrors under the outbound policy: literal internal
//! sources are refused up front (400), names resolving to loopback and
//! redirects to refused addresses fail the job with the policy's message,
//! and the allow-list lets listed ranges through. Only loopback is ever
//! contacted: every other address is refused before a connection.

mod common;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use egress::EgressPolicy;
use import::{ImportConfig, ImportRequest, Importer, JobState, JobStatus};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use transport::testing::{self, MiniOptions, MiniRegistry};

struct Server {
    importer: Importer,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn server(outbound: EgressPolicy, mirrors: Vec<import::mirror::MirrorRule>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let reg = common::open_registry(dir.path());
    let config = ImportConfig {
        outbound,
        ..Default::default()
    };
    let importer = Importer::new(reg.clone(), config);
    let app = import::mirror::apply(
        reg.router(),
        importer.clone(),
        mirrors,
        Duration::from_secs(60),
    )
    .merge(import::router(importer.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        importer,
        addr,
        _dir: dir,
    }
}

fn policy(allow: &[&str]) -> EgressPolicy {
    EgressPolicy::parse_allow(&allow.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

/// The test images behind a mini registry, or `None` (the test skips)
/// when they cannot be built here.
async fn mini() -> Option<MiniRegistry> {
    Some(MiniRegistry::start(testing::test_images()?, MiniOptions::default()).await)
}

fn req(host: &str) -> ImportRequest {
    ImportRequest {
        source: format!("docker://{host}/team/py:python-app"),
        target: "copy/py:v1".into(),
        insecure: true,
        ..Default::default()
    }
}

async fn run(s: &Server, host: &str) -> JobStatus {
    s.importer.run(req(host)).await.unwrap()
}

fn failed_with(st: &JobStatus, want: &str) {
    assert_eq!(st.state, JobState::Failed, "{st:?}");
    let e = st.error.as_deref().unwrap_or_default();
    assert!(e.contains(want), "error {e:?} lacks {want:?}");
}

/// A server on `ip` that answers every request with a 307 to the same
/// path on `to`, counting requests.
async fn redirector(ip: &str, to: String) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().fallback(move |r: Request| {
        h.fetch_add(1, Ordering::SeqCst);
        let to = to.clone();
        async move {
            let mut headers = HeaderMap::new();
            let path = r.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            headers.insert(
                header::LOCATION,
                format!("http://{to}{path}").parse().unwrap(),
            );
            (StatusCode::TEMPORARY_REDIRECT, headers)
        }
    });
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

#[tokio::test]
async fn literal_internal_sources_are_refused_up_front() {
    let Some(upstream) = mini().await else {
        return;
    };
    let s = server(EgressPolicy::default(), vec![]).await;
    let http = reqwest::Client::new();
    for (host, why) in [
        (upstream.host(), "127.0.0.1 is a loopback address"),
        (
            "169.254.169.254".to_string(),
            "169.254.169.254 is a link-local address",
        ),
        ("10.0.0.1:5000".to_string(), "10.0.0.1 is a private address"),
        ("[::ffff:10.0.0.1]".to_string(), "it embeds 10.0.0.1"),
    ] {
        let r = http
            .post(format!("http://{}/api/v1/imports", s.addr))
            .json(&req(&host))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{host}");
        let body: serde_json::Value = r.json().await.unwrap();
        let e = body["error"].as_str().unwrap();
        assert!(
            e.starts_with(&format!(
                "docker://{host}/team/py:python-app: refused by the outbound policy: "
            )),
            "{e}"
        );
        assert!(
            e.contains(why) && e.ends_with("(allow it with outbound.allow)"),
            "{e}"
        );
    }
    assert!(s.importer.list().is_empty(), "no job was started");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_fails_the_job() {
    let Some(upstream) = mini().await else {
        return;
    };
    let s = server(EgressPolicy::default(), vec![]).await;
    let st = run(&s, &format!("localhost:{}", upstream.addr.port())).await;
    failed_with(
        &st,
        "refused by the outbound policy: localhost resolves to ",
    );
}

#[tokio::test]
async fn allowed_when_the_allow_list_covers_them() {
    let Some(upstream) = mini().await else {
        return;
    };
    let s = server(policy(&["127.0.0.0/8", "::1/128"]), vec![]).await;
    for host in [
        upstream.host(),
        format!("localhost:{}", upstream.addr.port()),
    ] {
        let st = run(&s, &host).await;
        assert_eq!(st.state, JobState::Succeeded, "{host}: {:?}", st.error);
    }
    // The list allows what it lists, no more.
    let r = s.importer.submit(req("10.0.0.1")).unwrap_err();
    assert!(
        r.to_string().contains("10.0.0.1 is a private address"),
        "{r}"
    );
}

#[tokio::test]
async fn every_redirect_is_checked() {
    let Some(upstream) = mini().await else {
        return;
    };
    // 127.0.0.1 → 127.0.0.2 → the registry on 127.0.0.1.
    let (second, second_hits) = redirector("127.0.0.2", upstream.host()).await;
    let (first, _) = redirector("127.0.0.1", second.to_string()).await;

    let only_first = server(policy(&["127.0.0.1/32"]), vec![]).await;
    let st = run(&only_first, &first.to_string()).await;
    failed_with(
        &st,
        "refused by the outbound policy: 127.0.0.2 is a loopback address (allow it with outbound.allow)",
    );
    assert_eq!(second_hits.load(Ordering::SeqCst), 0);

    let (to_private, _) = redirector("127.0.0.1", "10.0.0.1".into()).await;
    let st = run(&only_first, &to_private.to_string()).await;
    failed_with(
        &st,
        "refused by the outbound policy: 10.0.0.1 is a private address",
    );

    let all_loopback = server(policy(&["127.0.0.0/8"]), vec![]).await;
    let st = run(&all_loopback, &first.to_string()).await;
    assert_eq!(st.state, JobState::Succeeded, "{:?}", st.error);
    assert!(second_hits.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn mirrors_fetch_only_from_allowed_upstreams() {
    let Some(upstream) = mini().await else {
        return;
    };
    let rule = import::mirror::MirrorRule {
        prefix: "hub".into(),
        upstream: format!("localhost:{}", upstream.addr.port()),
        insecure: true,
        platforms: vec![],
    };
    let http = reqwest::Client::new();
    let pull = |s: &Server| {
        http.get(format!(
            "http://{}/v2/hub/team/py/manifests/python-app",
            s.addr
        ))
        .header(header::ACCEPT, "application/vnd.oci.image.manifest.v1+json")
        .send()
    };

    let refused = server(EgressPolicy::default(), vec![rule.clone()]).await;
    assert_eq!(pull(&refused).await.unwrap().status(), 404);
    let jobs = refused.importer.list();
    assert_eq!(jobs.len(), 1);
    failed_with(
        &jobs[0],
        "refused by the outbound policy: localhost resolves to ",
    );

    let allowed = server(policy(&["127.0.0.0/8", "::1/128"]), vec![rule]).await;
    assert_eq!(pull(&allowed).await.unwrap().status(), 200);
}
