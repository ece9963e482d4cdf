//! A remote source under an outbound policy (as a server's imports build
//! them): literal internal hosts, names resolving to loopback and token
//! realms at refused addresses. Only loopback is ever contacted.

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use egress::EgressPolicy;
use oci::ImageRef;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use transport::remote::{RemoteOptions, RetryPolicy};
use transport::testing::{self, MiniOptions, MiniRegistry};
use transport::{ImageSource, RemoteSource};

fn policy(allow: &[&str]) -> EgressPolicy {
    EgressPolicy::parse_allow(&allow.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

fn source(image: &str, outbound: EgressPolicy) -> Result<RemoteSource, transport::Error> {
    RemoteSource::with_options(
        ImageRef::parse(image).unwrap(),
        None,
        true,
        RemoteOptions {
            // Retries would hide a refusal that is retried instead of reported.
            retry: RetryPolicy {
                attempts: 3,
                base_delay: Duration::from_secs(2),
                max_delay: Duration::from_secs(2),
            },
            outbound,
            ..Default::default()
        },
    )
}

#[tokio::test]
async fn literal_internal_hosts_are_refused_before_any_request() {
    for (host, why) in [
        ("127.0.0.1:5000", "127.0.0.1 is a loopback address"),
        ("169.254.169.254", "169.254.169.254 is a link-local address"),
        ("10.0.0.1:5000", "10.0.0.1 is a private address"),
        ("[fd00:ec2::254]:80", "fd00:ec2::254 is a private address"),
        ("[::ffff:10.0.0.1]:80", "it embeds 10.0.0.1"),
    ] {
        let e = source(&format!("{host}/team/app:v1"), EgressPolicy::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("refused by the outbound policy"), "{msg}");
        assert!(msg.contains(why), "{host}: {msg}");
        assert!(msg.contains("outbound.allow"), "{msg}");
    }
    // The command line's constructor reaches anything.
    assert!(RemoteSource::new(ImageRef::parse("10.0.0.1/team/app").unwrap(), None, true).is_ok());
}

#[tokio::test]
async fn names_are_judged_when_resolved_and_refusals_are_not_retried() {
    let layout = transport::require_test_images!();
    let mini = MiniRegistry::start(layout, MiniOptions::default()).await;
    let port = mini.addr.port();
    let image = format!("localhost:{port}/tls/py:python-app");
    let src = source(&image, EgressPolicy::default()).unwrap();
    let t0 = Instant::now();
    let e = src.root().await.unwrap_err().to_string();
    assert!(
        e.contains("refused by the outbound policy: localhost resolves to "),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "retried: {e}");

    let allowed = source(&image, policy(&["127.0.0.0/8", "::1/128"])).unwrap();
    assert_eq!(
        allowed.root().await.unwrap().digest,
        testing::test_image_digest("python-app")
    );
}

#[tokio::test]
async fn a_token_realm_at_a_refused_address_is_not_contacted() {
    // A registry on 127.0.0.1 that sends clients for a token to 127.0.0.2.
    let token_hits = Arc::new(AtomicUsize::new(0));
    let t = token_hits.clone();
    let token_app = Router::new().fallback(move || {
        t.fetch_add(1, Ordering::SeqCst);
        async { r#"{"token":"t"}"# }
    });
    let token_listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let token_addr = token_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(token_listener, token_app).await.unwrap() });
    let realm = format!("http://{token_addr}/token");
    let app = Router::new().fallback(move || {
        let realm = realm.clone();
        async move {
            let mut h = HeaderMap::new();
            h.insert(
                header::WWW_AUTHENTICATE,
                format!("Bearer realm=\"{realm}\",service=\"x\"")
                    .parse()
                    .unwrap(),
            );
            (StatusCode::UNAUTHORIZED, h)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let src = source(&format!("{addr}/team/app:v1"), policy(&["127.0.0.1/32"])).unwrap();
    let e = src.root().await.unwrap_err().to_string();
    assert!(
        e.contains("refused by the outbound policy: 127.0.0.2 is a loopback address"),
        "{e}"
    );
    assert_eq!(token_hits.load(Ordering::SeqCst), 0);
}
