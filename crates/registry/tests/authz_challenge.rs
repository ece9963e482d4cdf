//! Authorization's answers beyond the matrix (`authz.rs`): a token lacking
//! a scope the identity has gets `insufficient_scope`, the base challenge
//! and the route information for the audit log, the observe layer over a
//! merged application, and refusals that do not wait for the body.

mod authz_support;
mod common;

use authz_support::*;
use axum::Router;
use axum::middleware;
use base64::Engine;
use common::OCI_MANIFEST;
use oci::Digest;
use registry::{Options, Registry};
use reqwest::Client;
use std::io::{Read, Write};
use std::time::Duration;

#[tokio::test]
async fn token_lacking_a_scope_gets_insufficient_scope() {
    let acc = access();
    let s = server(&acc, true).await;
    let c = &s.client;
    let pull_only = acc.token("walt", &["repository:team-a/app:pull"]);
    let get = |path: &str, token: &str| c.get(s.url(path)).bearer_auth(token).send();

    assert_eq!(get("/v2/", &pull_only).await.unwrap().status(), 200);
    assert_eq!(
        get("/v2/team-a/app/manifests/v1", &pull_only)
            .await
            .unwrap()
            .status(),
        200
    );
    let insufficient = |r: &reqwest::Response, scope: &str| {
        assert_eq!(r.status(), 401);
        let c = r.headers()["www-authenticate"].to_str().unwrap();
        assert_eq!(
            c,
            format!(
                "Bearer realm=\"{REALM}\",service=\"drydock\",scope=\"{scope}\",error=\"insufficient_scope\""
            )
        );
    };
    // The identity may push; the token does not say so: a new token.
    let d = Digest::sha256_of(b"pushed with a token");
    let r = c
        .post(s.url(&format!("/v2/{A}/blobs/uploads/?digest={d}")))
        .bearer_auth(&pull_only)
        .body("pushed with a token")
        .send()
        .await
        .unwrap();
    insufficient(&r, "repository:team-a/app:pull,push");
    assert!(!s.linked(A, &d));
    let r = c
        .post(s.url(&format!("/v2/{A}/blobs/uploads/")))
        .bearer_auth(&pull_only)
        .send()
        .await
        .unwrap();
    insufficient(&r, "repository:team-a/app:pull,push");
    assert_eq!(s.upload_sessions(), 0);
    // Another repository the identity may read, not in the token.
    let r = get("/v2/team-a/other/tags/list", &pull_only).await.unwrap();
    insufficient(&r, "repository:team-a/other:pull");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    // What the identity may not do at all: refused, no new token helps.
    let r = get(&format!("/v2/{B}/manifests/v1"), &pull_only)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("www-authenticate").is_none());
    let reader = acc.token("rita", &["repository:team-a/app:pull,push"]);
    let r = c
        .post(s.url(&format!("/v2/{A}/blobs/uploads/")))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("push") && msg.contains(A), "{msg}");
    // The catalog needs its own scope.
    let r = get("/v2/_catalog", &pull_only).await.unwrap();
    insufficient(&r, "registry:catalog:*");
    let listing = acc.token("walt", &["registry:catalog:*"]);
    let r = get("/v2/_catalog", &listing).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!([P, A]));
    // With the scope asked for, the push goes through.
    let push = acc.token("walt", &["repository:team-a/app:pull,push"]);
    let r = c
        .post(s.url(&format!("/v2/{A}/blobs/uploads/?digest={d}")))
        .bearer_auth(&push)
        .body("pushed with a token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(s.linked(A, &d));
}

#[tokio::test]
async fn base_challenge_and_route_info() {
    let acc = access();
    let s = server(&acc, true).await;
    let r = s.client.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        format!("Bearer realm=\"{REALM}\",service=\"drydock\"").as_str()
    );
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(r.headers()["x-route-info"], "base");
    // Refused or not, the route is described for the audit log.
    let r = s
        .client
        .delete(s.url(&format!("/v2/{A}/manifests/v1")))
        .basic_auth("walt", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-route-info"], "manifest team-a/app v1");
    let r = s
        .client
        .get(s.url(&format!("/v2/{P}/blobs/{}", s.seed(P).layer.0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-route-info"],
        format!("blob public/base {}", s.seed(P).layer.0).as_str()
    );
    let r = s.client.get(s.url("/v2/_catalog")).send().await.unwrap();
    assert_eq!(r.headers()["x-route-info"], "catalog");

    // Without a Challenge in the request the registry uses its default.
    let s = server(&acc, false).await;
    let r = s
        .client
        .get(s.url(&format!("/v2/{A}/tags/list")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"/token\",service=\"drydock\",scope=\"repository:team-a/app:pull\""
    );
}

#[tokio::test]
async fn observe_layer_over_a_merged_application() {
    let acc = access();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(Options::new(dir.path())).unwrap();
    let app = reg
        .routes()
        .merge(Router::new().route("/api/v1/ping", axum::routing::get(|| async { "pong" })))
        .layer(middleware::from_fn_with_state(
            Edge {
                ac: acc.ac.clone(),
                challenge: true,
            },
            edge,
        ))
        .layer(reg.observe_layer());
    let base = serve(app).await;
    let c = Client::builder().no_proxy().build().unwrap();
    assert_eq!(
        c.get(format!("{base}/api/v1/ping"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Refused by the edge before the registry saw it: still labelled by
    // route, still with the API version header.
    let r = c
        .get(format!("{base}/v2/{A}/manifests/v1"))
        .basic_auth("walt", Some("wrong password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    let m = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"drydock_http_requests_total{method="GET",route="api",status="200"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"drydock_http_requests_total{method="GET",route="manifest",status="401"} 1"#),
        "{m}"
    );
}

/// Send a request head announcing a large body, send none of it, and
/// return the status line that comes back.
fn status_without_body(base: &str, head: &str) -> String {
    let addr = base.strip_prefix("http://").unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        sock,
        "{head}\r\nHost: {addr}\r\nContent-Length: 1000000\r\nContent-Type: {OCI_MANIFEST}\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = sock
        .read(&mut buf)
        .expect("the refusal waited for the body");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_do_not_wait_for_the_body() {
    let acc = access();
    let s = server(&acc, true).await;
    let base = s.base.clone();
    let basic = |user: &str| {
        format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{PASSWORD}"))
        )
    };
    let (anon, reader) = (String::new(), basic("rita"));
    let cases = [
        (
            format!("PUT /v2/{A}/manifests/v1 HTTP/1.1"),
            anon.clone(),
            "401",
        ),
        (
            format!("PUT /v2/{A}/manifests/v1 HTTP/1.1"),
            reader.clone(),
            "403",
        ),
        (
            format!(
                "POST /v2/{A}/blobs/uploads/?digest=sha256:{} HTTP/1.1",
                "0".repeat(64)
            ),
            reader.clone(),
            "403",
        ),
    ];
    for (line, auth, want) in cases {
        let head = if auth.is_empty() {
            line.clone()
        } else {
            format!("{line}\r\n{auth}")
        };
        let b = base.clone();
        let status = tokio::task::spawn_blocking(move || status_without_body(&b, &head))
            .await
            .unwrap();
        assert!(status.contains(want), "{line}: {status}");
    }
    assert_eq!(s.tag_v1(A), Some(s.seed(A).manifest.clone()));
}
