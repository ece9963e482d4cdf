//! What the image page and the webhooks page read beyond the lists, over
//! real HTTP on 127.0.0.1: an image's layers (size, the command from the
//! config history with `empty_layer` steps skipped, the packages each adds
//! from the stored inventory), its SBOM as CycloneDX and SPDX downloads
//! (pull needed), a webhook's test delivery (signed, retried, logged), and
//! list cursors that expire.
//!
//! The image is built here: two gzip layers with a dpkg database, Python
//! and npm packages, pushed through the registry's in-process API and
//! cataloged by the real cataloger. A small middleware stands in for the
//! edge: `x-test-user: NAME` makes the request that user's (absent: an
//! unrestricted caller, as in-process embedders are).

mod common;

use assess::{ManualClock, Service};
use auth::{AccessControl, Action, Binding, Principal, Subject};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STATUS: &str = "Package: aaa\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\nPackage: bbb\nStatus: install ok installed\nArchitecture: amd64\nSource: bsrc (0.9)\nVersion: 2.0\n";

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// A gzip tar layer of `files`.
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, *data).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    gz.finish().unwrap()
}

/// Stands in for the edge: the named user's principal, or none.
async fn test_user(State(ac): State<AccessControl>, mut req: Request, next: Next) -> Response {
    let user = req
        .headers()
        .get("x-test-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(name) = user {
        let p: Principal = ac.as_user(&name).unwrap();
        req.extensions_mut().insert(p);
    }
    next.run(req).await
}

struct Env {
    base: String,
    http: reqwest::Client,
    service: Service,
    clock: ManualClock,
    registry: registry::Registry,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let registry = registry::Registry::open(crate::common::registry_options(data)).unwrap();
        let handle = vulndb::Handle::open_with_interval(data, Duration::from_millis(100));
        let mut opts = crate::common::assess_options(data);
        opts.workers = 1;
        opts.tick = Duration::from_millis(200);
        opts.webhook_backoff = Duration::from_millis(50);
        // The webhook receiver listens on loopback.
        opts.outbound = assess::EgressPolicy::allow_all();
        let clock = ManualClock::new();
        let service = assess::start_with_registry(
            opts,
            registry.clone(),
            handle,
            catalog::Limits::default(),
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        let bind = |user: &str, actions: &[Action]| Binding {
            id: String::new(),
            subject: Subject::User(user.into()),
            pattern: "team/*".into(),
            actions: actions.to_vec(),
        };
        let ac = AccessControl::open(
            data,
            auth::Settings {
                bindings: vec![
                    bind("reader", &[Action::Pull]),
                    bind("pusher", &[Action::Push]),
                ],
                ..auth::Settings::default()
            },
        )
        .unwrap();
        ac.ensure_admin(Some("admin-password-1")).unwrap();
        let root = ac.as_user("admin").unwrap();
        for u in ["reader", "pusher", "stranger"] {
            ac.add_user(&root, u, "some-password-1", &[]).unwrap();
        }
        let app: Router = web::router(web::State::new(service.clone()).with_access(ac.clone()))
            .layer(middleware::from_fn_with_state(ac, test_user));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Env {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            service,
            clock,
            registry,
            _dir: dir,
        }
    }

    async fn get_as(&self, user: Option<&str>, path: &str) -> reqwest::Response {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(u) = user {
            r = r.header("x-test-user", u);
        }
        r.send().await.unwrap()
    }

    async fn json(&self, path: &str) -> (u16, Value) {
        let r = self.get_as(None, path).await;
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, user: Option<&str>, path: &str, body: Value) -> (u16, Value) {
        let mut r = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(u) = user {
            r = r.header("x-test-user", u);
        }
        let r = r.send().await.unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    /// Push an image of `layers` with `history` as its config's history;
    /// returns the manifest digest.
    async fn push(&self, repo: &str, layers: &[Vec<u8>], history: Value) -> String {
        let name = oci::Name::parse(repo).unwrap();
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|l| {
                let mut raw = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&l[..]), &mut raw)
                    .unwrap();
                sha256(&raw)
            })
            .collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }))
        .unwrap();
        let mut descs = Vec::new();
        for l in layers {
            self.registry
                .put_blob(&name, &oci::Digest::parse(&sha256(l)).unwrap(), &l[..])
                .await
                .unwrap();
            descs.push(
                json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha256(l), "size": l.len()}),
            );
        }
        self.registry
            .put_blob(
                &name,
                &oci::Digest::parse(&sha256(&config)).unwrap(),
                &config[..],
            )
            .await
            .unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(&config), "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        self.registry
            .put_manifest(
                &name,
                &oci::Reference::Tag(oci::Tag::parse("1").unwrap()),
                manifest.clone().into(),
                Some("application/vnd.oci.image.manifest.v1+json"),
                registry::Origin::Push,
            )
            .await
            .unwrap();
        sha256(&manifest)
    }

    /// Wait until the image's inventory is stored (cataloged).
    async fn cataloged(&self, digest: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.service.store().inventory(digest).unwrap().is_none() {
            assert!(Instant::now() < deadline, "{digest} was never cataloged");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn two_layers() -> (Vec<u8>, Vec<u8>) {
    let base = layer(&[
        ("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
        ("var/lib/dpkg/status", STATUS.as_bytes()),
    ]);
    let app = layer(&[
        (
            "usr/lib/python3/dist-packages/foo-1.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n\n",
        ),
        (
            "app/node_modules/left-pad/package.json",
            br#"{"name":"left-pad","version":"1.3.0"}"#,
        ),
    ]);
    (base, app)
}

/// Each layer: its size, the command that made it (the `empty_layer`
/// steps between them skipped), and the packages it brought.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_show_size_command_and_the_packages_each_adds() {
    let env = Env::start().await;
    let (base, app) = two_layers();
    let history = json!([
        {"created_by": "/bin/sh -c #(nop) ADD file:base in /", "created": "2024-01-01T00:00:00Z"},
        {"created_by": "/bin/sh -c #(nop)  ENV LANG=C.UTF-8", "empty_layer": true},
        {"created_by": "/bin/sh -c #(nop)  WORKDIR /app", "empty_layer": true},
        {"created_by": "COPY app /app # buildkit", "comment": "buildkit.dockerfile.v0"},
        {"created_by": "/bin/sh -c #(nop)  CMD [\"node\"]", "empty_layer": true},
    ]);
    let digest = env
        .push("team/app", &[base.clone(), app.clone()], history)
        .await;
    env.cataloged(&digest).await;

    let (st, page) = env.json(&format!("/api/v1/images/{digest}/layers")).await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(page["total"], 2, "{page}");
    let layers = page["layers"].as_array().unwrap();
    assert_eq!(layers[0]["digest"], sha256(&base));
    assert_eq!(layers[0]["size"], base.len());
    assert_eq!(
        layers[0]["created_by"],
        "/bin/sh -c #(nop) ADD file:base in /"
    );
    assert_eq!(layers[0]["created"], "2024-01-01T00:00:00Z");
    assert_eq!(layers[1]["size"], app.len());
    assert_eq!(layers[1]["created_by"], "COPY app /app # buildkit");
    assert_eq!(layers[1]["comment"], "buildkit.dockerfile.v0");
    let names = |l: &Value| {
        let mut v: Vec<String> = l["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{}@{}",
                    p["name"].as_str().unwrap(),
                    p["version"].as_str().unwrap()
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&layers[0]), ["aaa@1.0", "bbb@2.0"]);
    assert_eq!(layers[0]["packages_total"], 2);
    assert_eq!(names(&layers[1]), ["foo@1.0", "left-pad@1.3.0"]);
    assert!(page["notes"].as_array().unwrap().is_empty(), "{page}");

    // Paged: one layer a page, the cursor walks to the second.
    let (_, first) = env
        .json(&format!("/api/v1/images/{digest}/layers?limit=1"))
        .await;
    assert_eq!(first["layers"].as_array().unwrap().len(), 1);
    let next = first["next_cursor"].as_str().unwrap();
    let (st, second) = env
        .json(&format!(
            "/api/v1/images/{digest}/layers?limit=1&cursor={next}"
        ))
        .await;
    assert_eq!(st, 200, "{second}");
    assert_eq!(second["layers"][0]["index"], 1);
    assert!(second["next_cursor"].is_null());

    // A history that does not list one step per layer names no command.
    let (base2, app2) = (
        layer(&[("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n")]),
        layer(&[("x", b"y")]),
    );
    let other = env
        .push(
            "team/other",
            &[base2, app2],
            json!([{"created_by": "ADD rootfs /"}]),
        )
        .await;
    env.cataloged(&other).await;
    let (_, page) = env.json(&format!("/api/v1/images/{other}/layers")).await;
    assert!(page["layers"][0]["created_by"].is_null(), "{page}");
    assert!(
        page["notes"][0]
            .as_str()
            .unwrap()
            .contains("one step per layer"),
        "{page}"
    );
}

/// The stored inventory as CycloneDX 1.6 and SPDX 2.3 attachments, one
/// component or package per inventory entry; pull is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sbom_downloads_in_both_formats_need_pull() {
    let env = Env::start().await;
    let (base, app) = two_layers();
    let digest = env.push("team/app", &[base, app], json!([])).await;
    env.cataloged(&digest).await;
    let packages = env
        .service
        .store()
        .inventory(&digest)
        .unwrap()
        .unwrap()
        .1
        .packages
        .len();
    assert_eq!(packages, 4);

    let r = env
        .get_as(
            Some("reader"),
            &format!("/api/v1/images/{digest}/sbom?format=cyclonedx"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cd.starts_with("attachment; filename=\""), "{cd}");
    assert!(cd.ends_with(".cdx.json\""), "{cd}");
    assert!(!cd.contains('/') && !cd.contains(':'), "{cd}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("cyclonedx")
    );
    let bom: Value = r.json().await.unwrap();
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.6");
    let libraries = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .count();
    assert_eq!(libraries, packages, "{bom}");

    let r = env
        .get_as(
            Some("reader"),
            &format!("/api/v1/images/{digest}/sbom?format=spdx"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .ends_with(".spdx.json\"")
    );
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["dataLicense"], "CC0-1.0");
    let pkgs = doc["packages"].as_array().unwrap();
    let found = pkgs
        .iter()
        .filter(|p| {
            p["SPDXID"]
                .as_str()
                .is_some_and(|id| id.starts_with("SPDXRef-Package-"))
        })
        .count();
    assert_eq!(found, packages, "{doc}");

    // Push without pull: the image is known to them, the SBOM is not theirs.
    let r = env
        .get_as(Some("pusher"), &format!("/api/v1/images/{digest}/sbom"))
        .await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("pull"),
        "{body}"
    );
    // No right there at all: as if it did not exist.
    let r = env
        .get_as(Some("stranger"), &format!("/api/v1/images/{digest}/sbom"))
        .await;
    assert_eq!(r.status(), 404);
    let (st, v) = env
        .json(&format!("/api/v1/images/{digest}/sbom?format=swid"))
        .await;
    assert_eq!(st, 400, "{v}");
}

struct Received {
    event: String,
    signature: String,
    body: Vec<u8>,
}

/// A test delivery goes through the normal path: signed with the
/// webhook's secret, retried after a failure, and logged with its status
/// and attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_delivery_is_signed_retried_and_logged() {
    let env = Env::start().await;
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    // The first attempt fails, so the log shows a retry.
    let receiver = Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let mut all = seen.lock().unwrap();
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    all.push(Received {
                        event: h("x-drydock-event"),
                        signature: h("x-drydock-signature"),
                        body: body.to_vec(),
                    });
                    if all.len() == 1 {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let secret = "a-webhook-secret-of-some-length";
    let (st, w) = env
        .post(
            None,
            "/api/v1/webhooks",
            json!({"url": format!("http://127.0.0.1:{port}/hook"), "secret": secret, "repository": "team/*"}),
        )
        .await;
    assert_eq!(st, 201, "{w}");
    let id = w["id"].as_str().unwrap();
    // Someone who may not administer it cannot trigger it.
    let (st, _) = env
        .post(
            Some("reader"),
            &format!("/api/v1/webhooks/{id}/test"),
            json!({}),
        )
        .await;
    assert_eq!(st, 404);
    assert!(got.lock().unwrap().is_empty());
    let (st, d) = env
        .post(None, &format!("/api/v1/webhooks/{id}/test"), json!({}))
        .await;
    assert_eq!(st, 202, "{d}");
    assert_eq!(d["event"], "webhook.test");

    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let (_, log) = env.json(&format!("/api/v1/webhooks/{id}/deliveries")).await;
        if log[0]["state"] == "delivered" {
            break log;
        }
        assert!(Instant::now() < deadline, "not delivered: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
    assert_eq!(log[0]["id"], d["id"]);
    assert_eq!(log[0]["event"], "webhook.test");
    assert_eq!(log[0]["attempts"], 2, "{log}");
    assert_eq!(log[0]["last_status"], 200, "{log}");

    let all = got.lock().unwrap();
    assert_eq!(all.len(), 2);
    for r in all.iter() {
        assert_eq!(r.event, "webhook.test");
        assert!(
            assess::notify::verify(secret, &r.body, &r.signature),
            "bad signature {}",
            r.signature
        );
        assert!(!String::from_utf8_lossy(&r.body).contains(secret));
    }
    let body: Value = serde_json::from_slice(&all[1].body).unwrap();
    assert_eq!(body["test"], true);
    assert_eq!(body["event"], "webhook.test");
    assert_eq!(body["webhook"], id);
    assert_eq!(body["id"], d["id"]);
}

/// A list cursor is good for an hour; an older one is refused with a
/// message saying to start again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_cursors_expire_after_an_hour() {
    let env = Env::start().await;
    let (base, app) = two_layers();
    env.push("team/a", std::slice::from_ref(&base), json!([]))
        .await;
    env.push("team/b", &[base, app], json!([])).await;
    let (st, first) = env.json("/api/v1/browse/repositories?limit=1").await;
    assert_eq!(st, 200, "{first}");
    assert_eq!(first["total"], 2, "{first}");
    let next = first["next"].as_str().unwrap().to_string();
    let (st, second) = env
        .json(&format!(
            "/api/v1/browse/repositories?limit=1&cursor={next}"
        ))
        .await;
    assert_eq!(st, 200, "{second}");
    assert_ne!(second["items"][0]["name"], first["items"][0]["name"]);

    // Cursors carry the minute they were made in: 58 minutes on, this
    // one is at most 59 minutes old.
    env.clock.advance(time::Duration::minutes(58));
    let (st, _) = env
        .json(&format!(
            "/api/v1/browse/repositories?limit=1&cursor={next}"
        ))
        .await;
    assert_eq!(st, 200, "still good after 58 minutes");
    env.clock.advance(time::Duration::minutes(3));
    for list in ["repositories", "images"] {
        let (st, v) = env
            .json(&format!("/api/v1/browse/{list}?limit=1&cursor={next}"))
            .await;
        assert_eq!(st, 400, "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("cursor expired"), "{msg}");
        assert!(msg.contains("first page"), "{msg}");
    }
    // A fresh one works again; a made-up one is refused.
    let (_, again) = env.json("/api/v1/browse/repositories?limit=1").await;
    let next = again["next"].as_str().unwrap();
    let (st, _) = env
        .json(&format!(
            "/api/v1/browse/repositories?limit=1&cursor={next}"
        ))
        .await;
    assert_eq!(st, 200);
    let (st, v) = env
        .json("/api/v1/browse/repositories?limit=1&cursor=zz")
        .await;
    assert_eq!(st, 400, "{v}");
}
