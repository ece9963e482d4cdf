//! The pull gate seen from the registry: a fake gate refuses chosen
//! digests in `team-a/*`; manifest GET and HEAD, by tag and by digest, are
//! refused with 403 `DENIED` and the gate's message, while referrers,
//! non-image manifests, blobs, other digests and exempt callers (admins
//! of the repository, identities the rule lists) are served.

mod common;

use auth::{AccessControl, Action, Binding, Principal, Settings, Subject};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use base64::Engine;
use common::{LAYER, OCI_CONFIG, OCI_MANIFEST, image_manifest};
use oci::{Digest, Name, Reference};
use registry::{Options, Origin, PullGate, PullRefusal, Registry};
use reqwest::{Client, RequestBuilder, StatusCode};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

const PASSWORD: &str = "correct horse battery";

/// Refuses the digests in `bad` when pulled from `team-a/*`, and records
/// every question it was asked.
#[derive(Default)]
struct FakeGate {
    bad: Mutex<HashSet<Digest>>,
    asked: Mutex<Vec<(String, Digest, String)>>,
}

impl PullGate for FakeGate {
    fn check(&self, repo: &Name, digest: &Digest, media_type: &str) -> Option<PullRefusal> {
        self.asked
            .lock()
            .unwrap()
            .push((repo.to_string(), digest.clone(), media_type.to_string()));
        if !repo.as_str().starts_with("team-a/") || !self.bad.lock().unwrap().contains(digest) {
            return None;
        }
        Some(PullRefusal {
            reason: "unhealthy".into(),
            message: format!(
                "pull refused by the pull gate for team-a/*: image {digest} is unhealthy"
            ),
            bypass: vec!["robot:scanner".into(), "user:bob".into()],
        })
    }
}

/// Basic credentials become a `Principal`; none leaves the request
/// without one (the registry then treats it as unrestricted).
async fn edge(State(ac): State<AccessControl>, mut req: Request, next: Next) -> Response {
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .map(|b| {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
        });
    if let Some(raw) = basic {
        let (user, pass) = raw.split_once(':').unwrap();
        let p: Principal = ac.login(user, pass, None).unwrap();
        req.extensions_mut().insert(p);
    }
    next.run(req).await
}

struct Fixture {
    base: String,
    client: Client,
    gate: Arc<FakeGate>,
    scanner_secret: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Fixture {
    fn req(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }
}

fn binding(subject: Subject, pattern: &str, actions: &[Action]) -> Binding {
    Binding {
        id: String::new(),
        subject,
        pattern: pattern.into(),
        actions: actions.to_vec(),
    }
}

async fn put(reg: &Registry, repo: &str, reference: &str, body: &str) -> Digest {
    let r = if reference.contains(':') {
        Reference::Digest(Digest::parse(reference).unwrap())
    } else {
        Reference::Tag(oci::Tag::parse(reference).unwrap())
    };
    reg.put_manifest(
        &Name::parse(repo).unwrap(),
        &r,
        body.as_bytes().to_vec().into(),
        Some(OCI_MANIFEST),
        Origin::Push,
    )
    .await
    .unwrap()
}

/// `repo:tag` holding a one-layer image whose content depends on `seed`.
async fn image(reg: &Registry, repo: &str, tag: &str, seed: &str) -> (Digest, String) {
    let n = Name::parse(repo).unwrap();
    let config = format!("{{\"seed\":\"{seed}\"}}");
    let layer = format!("layer {seed}");
    let (c, l) = (
        Digest::sha256_of(config.as_bytes()),
        Digest::sha256_of(layer.as_bytes()),
    );
    reg.put_blob(&n, &c, config.as_bytes()).await.unwrap();
    reg.put_blob(&n, &l, layer.as_bytes()).await.unwrap();
    let body = image_manifest(&c, config.len(), &l, layer.len());
    (put(reg, repo, tag, &body).await, body)
}

async fn fixture() -> Fixture {
    let (data, auth_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ac = AccessControl::open(
        auth_dir.path(),
        Settings {
            bindings: vec![
                binding(Subject::User("rita".into()), "team-a/*", &[Action::Pull]),
                binding(Subject::User("bob".into()), "team-a/*", &[Action::Pull]),
                binding(Subject::User("ada".into()), "team-a/*", &[Action::Admin]),
            ],
            ..Default::default()
        },
    )
    .unwrap();
    let op = Principal::unrestricted();
    for u in ["rita", "bob", "ada"] {
        ac.add_user(&op, u, PASSWORD, &[]).unwrap();
    }
    let scanner_secret = ac
        .add_robot(
            &op,
            "scanner",
            "",
            None,
            &[("team-a/*".to_string(), vec![Action::Pull])],
        )
        .unwrap();
    let registry = Registry::open(Options::new(data.path())).unwrap();
    let gate = Arc::new(FakeGate::default());
    assert!(registry.set_pull_gate(gate.clone()));
    assert!(!registry.set_pull_gate(Arc::new(FakeGate::default())));
    let app = registry
        .routes()
        .layer(middleware::from_fn_with_state(ac, edge))
        .layer(registry.observe_layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // team-a/app:bad is refused; team-a/app:good and team-b/app:bad are not.
    let (bad, bad_body) = image(&registry, "team-a/app", "bad", "bad").await;
    let (good, _) = image(&registry, "team-a/app", "good", "good").await;
    image(&registry, "team-b/app", "bad", "bad").await;
    gate.bad.lock().unwrap().insert(bad.clone());
    // A signature of the refused image: a manifest with a subject.
    let sig_layer = b"signature";
    let sig_layer_d = Digest::sha256_of(sig_layer);
    let n = Name::parse("team-a/app").unwrap();
    registry
        .put_blob(&n, &sig_layer_d, &sig_layer[..])
        .await
        .unwrap();
    let empty = b"{}";
    let empty_d = Digest::sha256_of(empty);
    registry.put_blob(&n, &empty_d, &empty[..]).await.unwrap();
    let sig = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sig","config":{{"mediaType":"{OCI_CONFIG}","digest":"{empty_d}","size":2}},"layers":[{{"mediaType":"{LAYER}","digest":"{sig_layer_d}","size":{}}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{bad}","size":{}}}}}"#,
        sig_layer.len(),
        bad_body.len()
    );
    let sig_d = Digest::sha256_of(sig.as_bytes());
    put(&registry, "team-a/app", &sig_d.to_string(), &sig).await;
    // Even if the gate would refuse the signature's digest, the registry
    // never asks about it.
    gate.bad.lock().unwrap().insert(sig_d);
    let _ = good;
    Fixture {
        base,
        client: Client::builder().no_proxy().build().unwrap(),
        gate,
        scanner_secret,
        _dirs: (data, auth_dir),
    }
}

async fn digest_of(f: &Fixture, repo: &str, tag: &str) -> Digest {
    let r = f
        .req(
            reqwest::Method::HEAD,
            &format!("/v2/{repo}/manifests/{tag}"),
        )
        .basic_auth("ada", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    Digest::parse(r.headers()["docker-content-digest"].to_str().unwrap()).unwrap()
}

#[tokio::test]
async fn unhealthy_image_refused_by_get_and_head_by_tag_and_digest() {
    let f = fixture().await;
    let bad = digest_of(&f, "team-a/app", "bad").await;
    for reference in ["bad".to_string(), bad.to_string()] {
        let path = format!("/v2/team-a/app/manifests/{reference}");
        for who in [None, Some("rita")] {
            let mut rb = f.req(reqwest::Method::GET, &path);
            if let Some(u) = who {
                rb = rb.basic_auth(u, Some(PASSWORD));
            }
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} {who:?}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["errors"][0]["code"], "DENIED");
            assert_eq!(
                body["errors"][0]["message"],
                format!("pull refused by the pull gate for team-a/*: image {bad} is unhealthy")
            );
            let mut rb = f.req(reqwest::Method::HEAD, &path);
            if let Some(u) = who {
                rb = rb.basic_auth(u, Some(PASSWORD));
            }
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "HEAD {path} {who:?}");
            assert!(r.headers().get("docker-content-digest").is_none());
        }
    }
    // The gate was asked with the digest the tag resolved to.
    let asked = f.gate.asked.lock().unwrap().clone();
    assert!(asked.contains(&("team-a/app".into(), bad.clone(), OCI_MANIFEST.into())));
}

#[tokio::test]
async fn healthy_images_other_repositories_referrers_and_blobs_are_served() {
    let f = fixture().await;
    let bad = digest_of(&f, "team-a/app", "bad").await;
    for path in [
        "/v2/team-a/app/manifests/good".to_string(),
        // The same image in a repository no rule covers.
        "/v2/team-b/app/manifests/bad".to_string(),
        format!("/v2/team-b/app/manifests/{bad}"),
    ] {
        let r = f.req(reqwest::Method::GET, &path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    // The refused image's signature is discovered and pulled.
    let r = f
        .req(
            reqwest::Method::GET,
            &format!("/v2/team-a/app/referrers/{bad}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let index: serde_json::Value = r.json().await.unwrap();
    let sig = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let asked_before = f.gate.asked.lock().unwrap().len();
    for m in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = f
            .req(m, &format!("/v2/team-a/app/manifests/{sig}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(f.gate.asked.lock().unwrap().len(), asked_before);
    // Blobs are not gated: the refused image's layer stays readable.
    let r = f
        .req(
            reqwest::Method::GET,
            &format!("/v2/team-a/app/manifests/{bad}"),
        )
        .basic_auth("ada", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    let m: serde_json::Value = r.json().await.unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let r = f
        .req(
            reqwest::Method::GET,
            &format!("/v2/team-a/app/blobs/{layer}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "layer bad");
}

#[tokio::test]
async fn admins_and_listed_identities_bypass_the_gate() {
    let f = fixture().await;
    let path = "/v2/team-a/app/manifests/bad";
    let cases: [(&str, &str, StatusCode); 4] = [
        // admin on team-a/*
        ("ada", PASSWORD, StatusCode::OK),
        // listed as user:bob
        ("bob", PASSWORD, StatusCode::OK),
        // listed as robot:scanner
        ("robot$scanner", &f.scanner_secret, StatusCode::OK),
        // pull only, not listed
        ("rita", PASSWORD, StatusCode::FORBIDDEN),
    ];
    for (user, pass, want) in cases {
        for m in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let r = f
                .req(m.clone(), path)
                .basic_auth(user, Some(pass))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), want, "{m} as {user}");
        }
    }
}

/// Refusals are counted by the rule's reason in `/metrics`; pulls served,
/// and refusals an exempt caller bypasses, are not.
#[tokio::test]
async fn refusals_are_counted_by_reason_in_metrics() {
    let f = fixture().await;
    let refusals = || async {
        let text = f
            .req(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("drydock_pull_gate_refusals_total{reason=\"unhealthy\"} "))
            .map(|v| v.parse::<u64>().unwrap())
            .unwrap_or(0)
    };
    assert_eq!(refusals().await, 0);
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = f
            .req(method, "/v2/team-a/app/manifests/bad")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    // Served, and bypassed by an administrator: not refusals.
    let r = f
        .req(reqwest::Method::GET, "/v2/team-a/app/manifests/good")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = f
        .req(reqwest::Method::GET, "/v2/team-a/app/manifests/bad")
        .basic_auth("ada", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(refusals().await, 2);
}
