//! The edge stack over a real registry on loopback: the token flow,
//! challenges, Basic auth, rate limiting, CSRF, request ids and the audit
//! log.

use auth::{AccessControl, Action, Binding, Principal, Settings, Subject};
use base64::Engine;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;

struct Server {
    base: String,
    ac: AccessControl,
    client: Client,
    _dir: tempfile::TempDir,
}

async fn start(settings: Settings) -> Server {
    start_with(settings, |_| {}).await
}

async fn start_with(settings: Settings, tune: impl FnOnce(&mut edge::Edge)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
    let ac = AccessControl::open(dir.path(), settings).unwrap();
    let op = Principal::unrestricted();
    ac.add_user(&op, "alice", "alice-password", &[]).unwrap();
    ac.add_user(&op, "root", "root-password", &[]).unwrap();
    ac.add_binding(
        &op,
        Binding {
            id: String::new(),
            subject: Subject::User("alice".into()),
            pattern: "team-a/**".into(),
            actions: vec![Action::Pull, Action::Push],
        },
    )
    .unwrap();
    ac.add_binding(
        &op,
        Binding {
            id: String::new(),
            subject: Subject::User("root".into()),
            pattern: "**".into(),
            actions: vec![Action::Admin],
        },
    )
    .unwrap();
    // A stand-in for the management API, to see that the one stack
    // covers routes beyond the registry's.
    let api = axum::Router::new()
        .route(
            "/api/v1/ping",
            axum::routing::get(|p: axum::Extension<Principal>| async move { p.name() }),
        )
        .route(
            "/api/v1/slow",
            axum::routing::get(|| async {
                // Far beyond any time bound a test sets, so that a late
                // answer on a loaded machine is not mistaken for this one.
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                "late"
            }),
        );
    let mut e = edge::Edge::new(Some(ac.clone()));
    tune(&mut e);
    let app = edge::wrap(registry.routes().merge(api), e, &registry);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Server {
        base: format!("http://{addr}"),
        ac,
        client: Client::builder().no_proxy().build().unwrap(),
        _dir: dir,
    }
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

impl Server {
    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    async fn token(&self, user: &str, pass: &str, scope: &str) -> reqwest::Response {
        self.client
            .get(self.url("/token"))
            .query(&[("service", "drydock"), ("scope", scope)])
            .header("authorization", basic(user, pass))
            .send()
            .await
            .unwrap()
    }

    /// Push a one-blob image with `auth` on every request; the manifest
    /// PUT's status.
    async fn push(&self, repo: &str, tag: &str, auth: &str) -> StatusCode {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let d = oci::Digest::sha256_of(config);
        let r = self
            .client
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .header("authorization", auth)
            .header("content-type", "application/octet-stream")
            .body(config.to_vec())
            .send()
            .await
            .unwrap();
        if r.status() != StatusCode::CREATED {
            return r.status();
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d.to_string(), "size": config.len()},
            "layers": []
        });
        self.client
            .put(self.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("authorization", auth)
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_string())
            .send()
            .await
            .unwrap()
            .status()
    }
}

#[tokio::test]
async fn anonymous_requests_are_challenged_to_the_token_flow() {
    let s = start(Settings::default()).await;
    let r = s.client.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        challenge,
        format!("Bearer realm=\"{}/token\",service=\"drydock\"", s.base)
    );
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");

    let r = s
        .client
        .get(s.url("/v2/team-a/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"repository:team-a/app:pull\"")
    );
}

#[tokio::test]
async fn the_token_flow_grants_what_the_identity_may() {
    let s = start(Settings::default()).await;
    let r = s
        .token(
            "alice",
            "alice-password",
            "repository:team-a/app:pull,push,delete",
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["token"], body["access_token"]);
    let token = body["token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    assert_eq!(
        s.push("team-a/app", "v1", &bearer).await,
        StatusCode::CREATED
    );
    // The token carries pull and push, not delete (alice may not).
    let r = s
        .client
        .delete(s.url("/v2/team-a/app/manifests/v1"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Another repository is not in the token: a new challenge, since
    // alice may push there.
    let r = s
        .client
        .get(s.url("/v2/team-a/other/tags/list"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    // Basic works on /v2/ too.
    let r = s
        .client
        .get(s.url("/v2/team-a/app/tags/list"))
        .header("authorization", basic("alice", "alice-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A bad password gets 401 with the challenge, from /token and /v2/.
    assert_eq!(
        s.token("alice", "nope", "repository:team-a/app:pull")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let r = s
        .client
        .get(s.url("/v2/"))
        .header("authorization", basic("alice", "nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A token for another service is refused.
    let r = s
        .client
        .get(s.url("/token"))
        .query(&[
            ("service", "elsewhere"),
            ("scope", "repository:team-a/app:pull"),
        ])
        .header("authorization", basic("alice", "alice-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn oauth2_password_and_refresh_grants() {
    let s = start(Settings::default()).await;
    let form = |pairs: &[(&str, &str)]| s.client.post(s.url("/token")).form(pairs).send();
    let r = form(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "alice-password"),
        ("service", "drydock"),
        ("scope", "repository:team-a/app:pull"),
        ("client_id", "docker"),
        ("access_type", "offline"),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let r = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh),
        ("service", "drydock"),
        ("scope", "repository:team-a/app:pull,push"),
        ("client_id", "docker"),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let bearer = format!("Bearer {}", body["access_token"].as_str().unwrap());
    assert_eq!(
        s.push("team-a/app", "v2", &bearer).await,
        StatusCode::CREATED
    );
    let r = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", "garbage"),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = form(&[("grant_type", "client_credentials")]).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn failed_logins_are_rate_limited_with_retry_after() {
    let s = start(Settings {
        max_failed_logins: 3,
        ..Settings::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            s.token("alice", "wrong", "").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = s.token("alice", "alice-password", "").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= 300);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    // The address is limited too: another identity from here waits.
    let r = s
        .client
        .get(s.url("/v2/"))
        .header("authorization", basic("root", "root-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn request_ids_are_made_or_echoed() {
    let s = start(Settings::default()).await;
    let r = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let id = r.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let r = s
        .client
        .get(s.url("/healthz"))
        .header("x-request-id", "my-id-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "my-id-1");
}

#[tokio::test]
async fn session_writes_need_the_csrf_token() {
    let s = start(Settings::default()).await;
    let alice = s.ac.login("alice", "alice-password", None).unwrap();
    let (cookie, csrf) = s.ac.start_session(&alice).unwrap();
    let cookie = format!("{}={cookie}", auth::SESSION_COOKIE);
    // A read needs no CSRF token.
    let r = s
        .client
        .get(s.url("/v2/team-a/app/tags/list"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::UNAUTHORIZED);
    // A write without it is refused before it reaches the route.
    let r = s
        .client
        .delete(s.url("/v2/team-a/app/manifests/v1"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("X-CSRF-Token"));
    let r = s
        .client
        .post(s.url("/v2/team-a/app/blobs/uploads/"))
        .header("cookie", &cookie)
        .header("x-csrf-token", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s
        .client
        .post(s.url("/v2/team-a/app/blobs/uploads/"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn pushes_pulls_and_refusals_are_audited() {
    let s = start(Settings::default()).await;
    let alice = basic("alice", "alice-password");
    assert_eq!(
        s.push("team-a/app", "v1", &alice).await,
        StatusCode::CREATED
    );
    assert_eq!(
        s.push("team-b/app", "v1", &alice).await,
        StatusCode::FORBIDDEN
    );
    for _ in 0..3 {
        let r = s
            .client
            .get(s.url("/v2/team-a/app/manifests/v1"))
            .header("authorization", &alice)
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let log =
        s.ac.query_audit(&auth::AuditQuery {
            identity: Some("alice".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let find = |action: &str, outcome: &str| {
        log.iter()
            .find(|e| e.action == action && e.outcome == outcome)
            .unwrap_or_else(|| panic!("no {action}/{outcome} in {log:#?}"))
    };
    assert_eq!(find("push", "ok").target, "team-a/app:v1");
    assert_eq!(find("push", "denied").target, "team-b/app");
    let pulls = find("pull", "ok");
    assert_eq!((pulls.target.as_str(), pulls.count), ("team-a/app", 3));
    assert_eq!(pulls.address, "127.0.0.1");
}

#[tokio::test]
async fn every_route_is_authenticated_logged_and_counted() {
    let s = start(Settings::default()).await;
    let r = s
        .client
        .get(s.url("/api/v1/ping"))
        .header("authorization", basic("alice", "alice-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "alice");
    let r = s.client.get(s.url("/api/v1/ping")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "anonymous");
    let _ = s.token("alice", "alice-password", "").await;
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for route in ["api", "token"] {
        assert!(
            metrics
                .lines()
                .any(|l| !l.starts_with('#') && l.contains(&format!("route=\"{route}\""))),
            "{route} requests are counted: {metrics}"
        );
    }
}

#[tokio::test]
async fn slow_requests_end_and_uploads_are_capped() {
    let s = start_with(Settings::default(), |e| {
        e.request_timeout = std::time::Duration::from_millis(300);
        e.max_concurrent_uploads = 1;
    })
    .await;
    let t = std::time::Instant::now();
    let r = s.client.get(s.url("/api/v1/slow")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        t.elapsed()
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAVAILABLE");

    // One upload request at a time: a second one while the first still
    // streams its body gets 429 with Retry-After.
    let alice = basic("alice", "alice-password");
    let r = s
        .client
        .post(s.url("/v2/team-a/app/blobs/uploads/"))
        .header("authorization", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let url = if location.starts_with('/') {
        s.url(&location)
    } else {
        location
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let slow_body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let client = s.client.clone();
    let auth2 = alice.clone();
    let first = tokio::spawn(async move {
        client
            .patch(url)
            .header("authorization", auth2)
            .header("content-type", "application/octet-stream")
            .body(slow_body)
            .send()
            .await
            .unwrap()
            .status()
    });
    tx.send(Ok(vec![1u8; 1024])).await.unwrap();
    // The first PATCH holds the one slot from when the server takes it up
    // until its body ends (held open here): ask until a second upload
    // request meets it, rather than guess how long that takes. Before,
    // the slot is free and a start is accepted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let r = loop {
        let r = s
            .client
            .post(s.url("/v2/team-a/app/blobs/uploads/"))
            .header("authorization", &alice)
            .send()
            .await
            .unwrap();
        if r.status() != StatusCode::ACCEPTED {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a second upload request was never refused"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(!first.is_finished(), "the first upload ended early");
    drop(tx);
    assert_eq!(first.await.unwrap(), StatusCode::ACCEPTED);
    // The slot is free again.
    let r = s
        .client
        .post(s.url("/v2/team-a/app/blobs/uploads/"))
        .header("authorization", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

/// A byte stream fed by a channel.
fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}
