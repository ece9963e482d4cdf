//! A client built with `egress::apply` against loopback servers: names,
//! redirects to literal addresses and redirects to names. Every refused
//! address is refused before a connection is made; only loopback is ever
//! contacted.

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use egress::EgressPolicy;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn policy(allow: &[&str]) -> EgressPolicy {
    EgressPolicy::parse_allow(&allow.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

fn client(p: &EgressPolicy) -> reqwest::Client {
    egress::apply(reqwest::Client::builder(), p)
        .build()
        .unwrap()
}

/// A server on `ip` answering `body`, counting its requests.
async fn target(ip: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/",
        get(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async { "reached" }
        }),
    );
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

/// A server on 127.0.0.1 that redirects `/` to `to`.
async fn redirector(to: String) -> SocketAddr {
    let app = Router::new().route(
        "/",
        get(move || {
            let to = to.clone();
            async move {
                let mut h = HeaderMap::new();
                h.insert(header::LOCATION, to.parse().unwrap());
                (StatusCode::TEMPORARY_REDIRECT, h)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
    let (addr, hits) = target("127.0.0.1").await;
    let url = format!("http://localhost:{}/", addr.port());
    let e = client(&EgressPolicy::default())
        .get(&url)
        .send()
        .await
        .unwrap_err();
    let r = egress::refusal(&e).expect("refused by the policy");
    assert_eq!(r.host.as_deref(), Some("localhost"));
    assert!(
        egress::describe(&e).starts_with("refused by the outbound policy: localhost resolves to "),
        "{}",
        egress::describe(&e)
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    let ok = client(&policy(&["127.0.0.0/8", "::1/128"]))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "reached");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn every_redirect_target_is_checked() {
    let (second, hits) = target("127.0.0.2").await;
    let hop = redirector(format!("http://127.0.0.2:{}/", second.port())).await;
    let url = format!("http://127.0.0.1:{}/", hop.port());

    // Only the first server's address is allowed: the hop is refused.
    let only_first = policy(&["127.0.0.1/32"]);
    let e = client(&only_first).get(&url).send().await.unwrap_err();
    assert!(e.is_redirect(), "{e:?}");
    let msg = egress::describe(&e);
    assert_eq!(
        msg,
        "refused by the outbound policy: 127.0.0.2 is a loopback address (allow it with outbound.allow)"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // Allowed when the list covers it.
    let body = client(&policy(&["127.0.0.0/8"]))
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "reached");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // A redirect to a private address is refused before any connection.
    let private = redirector("http://10.0.0.1/".into()).await;
    let e = client(&only_first)
        .get(format!("http://127.0.0.1:{}/", private.port()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        egress::refusal(&e).map(|r| r.ip.to_string()).as_deref(),
        Some("10.0.0.1")
    );
    assert!(egress::describe(&e).contains("10.0.0.1 is a private address"));

    // A redirect to a name is judged on what the name resolves to. (The
    // client leaves the first URL to its caller, so the redirector itself
    // is reached even though only 127.0.0.2 is allowed.)
    let named = redirector(format!("http://localhost:{}/", second.port())).await;
    let e = client(&policy(&["127.0.0.2/32"]))
        .get(format!("http://127.0.0.1:{}/", named.port()))
        .send()
        .await
        .unwrap_err();
    assert!(
        egress::describe(&e).starts_with("refused by the outbound policy: localhost resolves to "),
        "{}",
        egress::describe(&e)
    );
}

#[tokio::test]
async fn allow_all_applies_nothing() {
    let (addr, _) = target("127.0.0.1").await;
    let body = client(&EgressPolicy::allow_all())
        .get(format!("http://localhost:{}/", addr.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "reached");
}
