//! Pull-through mirroring: a prefix fetches from an upstream that demands a
//! bearer token (credentials stored in the importer's configuration).

mod common;

use import::mirror::{self, MirrorRule};
use import::{ImportConfig, Importer, RemoteConfig};
use std::sync::atomic::Ordering;
use std::time::Duration;
use transport::testing::{MiniOptions, MiniRegistry};

#[tokio::test]
async fn fetches_on_a_miss_then_serves_locally() {
    let layout = transport::require_test_images!();
    let upstream = MiniRegistry::start(
        layout.clone(),
        MiniOptions {
            token_auth: Some(Some(("mirror".into(), "pw".into()))),
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let reg = common::open_registry(dir.path());
    let mut config = ImportConfig {
        // The upstream is on loopback, which the default outbound policy refuses.
        outbound: egress::EgressPolicy::parse_allow(&["127.0.0.0/8".into()]).unwrap(),
        ..Default::default()
    };
    config.remotes.insert(
        upstream.host(),
        RemoteConfig {
            username: Some("mirror".into()),
            password: Some("pw".into()),
            insecure: true,
            ca_file: None,
        },
    );
    let importer = Importer::new(reg.clone(), config);
    let app = mirror::apply(
        reg.router(),
        importer.clone(),
        vec![MirrorRule {
            prefix: "hub".into(),
            upstream: format!("{}/upstream-ns", upstream.host()),
            insecure: true,
            platforms: vec![],
        }],
        Duration::from_secs(120),
    )
    .merge(import::router(importer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let index: oci::ImageIndex =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let want = index
        .manifests
        .iter()
        .find(|d| {
            d.annotations.as_ref().unwrap()["org.opencontainers.image.ref.name"] == "multiarch"
        })
        .unwrap()
        .digest
        .to_string();
    let http = reqwest::Client::new();
    let get = |path: String| {
        http.get(format!("http://{addr}{path}"))
            .header(
                "accept",
                "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
            )
            .send()
    };
    let r = get("/v2/hub/team/multi/manifests/multiarch".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), want);
    let body = r.bytes().await.unwrap();
    assert_eq!(oci::Digest::sha256_of(&body).to_string(), want);
    let blob_requests = upstream.stats.blob_requests.load(Ordering::Relaxed);
    assert!(blob_requests >= 3);

    // Children and blobs are served locally now; the upstream is not asked again.
    let idx: oci::ImageIndex = serde_json::from_slice(&body).unwrap();
    let child = &idx.manifests[0].digest;
    assert_eq!(
        get(format!("/v2/hub/team/multi/manifests/{child}"))
            .await
            .unwrap()
            .status(),
        200
    );
    let again = get("/v2/hub/team/multi/manifests/multiarch".into())
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(
        upstream.stats.blob_requests.load(Ordering::Relaxed),
        blob_requests
    );

    // A miss upstream too: 404 from the registry. Outside the prefix: untouched.
    assert_eq!(
        get("/v2/hub/team/multi/manifests/nope".into())
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        get("/v2/local/multi/manifests/multiarch".into())
            .await
            .unwrap()
            .status(),
        404
    );
    server.abort();
}
