//! `drydock import` of a local source, as a library: the client reads the
//! layout and pushes it over `/v2/` to a registry that demands a bearer
//! token from its realm (Docker token flow), skips blobs the registry has,
//! and never commits bytes that do not match their digest. Loopback only.

mod common;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use import::local::LocalPush;
use import::{ImportRequest, JobState, JobStatus};
use oci::{Name, Reference, Tag};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transport::Credentials;

const TOKEN: &str = "tok-1f2e3d";

/// A registry behind bearer auth, with its token endpoint.
struct Target {
    reg: registry::Registry,
    base: String,
    /// Scopes asked of the token endpoint.
    scopes: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn target() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let reg = common::open_registry(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let scopes = Arc::new(Mutex::new(Vec::new()));
    let realm = format!("http://{addr}/token");
    let seen = scopes.clone();
    let token = axum::routing::get(move |req: Request| {
        let seen = seen.clone();
        async move {
            let q = req.uri().query().unwrap_or("").to_string();
            let scope = q
                .split('&')
                .find_map(|kv| kv.strip_prefix("scope="))
                .unwrap_or("")
                .replace("%3A", ":")
                .replace("%2F", "/")
                .replace("%2C", ",");
            seen.lock().unwrap().push(scope);
            // alice:s3cret
            let ok = req
                .headers()
                .get(header::AUTHORIZATION)
                .is_some_and(|v| v == "Basic YWxpY2U6czNjcmV0");
            if !ok {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            axum::Json(serde_json::json!({ "access_token": TOKEN })).into_response()
        }
    });
    let gate = move |req: Request, next: Next| {
        let realm = realm.clone();
        async move {
            if !req.uri().path().starts_with("/v2") {
                return next.run(req).await;
            }
            let want = format!("Bearer {TOKEN}");
            if req
                .headers()
                .get(header::AUTHORIZATION)
                .is_some_and(|v| *v == *want)
            {
                return next.run(req).await;
            }
            let mut r: Response = StatusCode::UNAUTHORIZED.into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&format!(r#"Bearer realm="{realm}",service="test""#))
                    .unwrap(),
            );
            r
        }
    };
    let app = reg
        .router()
        .layer(axum::middleware::from_fn(gate))
        .route("/token", token);
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Target {
        reg,
        base: format!("http://{addr}"),
        scopes,
        task,
        _dir: dir,
    }
}

fn alice(password: &str) -> Option<Credentials> {
    Some(Credentials {
        username: "alice".into(),
        password: password.into(),
    })
}

async fn push(t: &Target, source: &str, target: &str, creds: Option<Credentials>) -> JobStatus {
    let req = ImportRequest {
        source: source.into(),
        target: target.into(),
        ..Default::default()
    };
    let mut p = LocalPush::start(&req, &t.base, creds).unwrap();
    tokio::time::timeout(
        Duration::from_secs(120),
        p.wait(Duration::from_millis(20), |_| {}),
    )
    .await
    .expect("push finishes")
}

async fn tagged(t: &Target, repo: &str, tag: &str) -> Option<oci::Digest> {
    t.reg
        .get_manifest(
            &Name::parse(repo).unwrap(),
            &Reference::Tag(Tag::parse(tag).unwrap()),
        )
        .await
        .unwrap()
        .map(|m| m.digest)
}

#[tokio::test]
async fn pushes_a_layout_through_the_token_flow_and_skips_present_blobs() {
    let t = target().await;
    let images = transport::require_test_images!();
    let source = format!("oci:{}:multiarch", images.display());
    let st = push(&t, &source, "team/app:v1", alice("s3cret")).await;
    assert_eq!(st.state, JobState::Succeeded, "{:?}", st.error);
    let want = transport::testing::test_image_digest("multiarch");
    assert_eq!(tagged(&t, "team/app", "v1").await, Some(want.clone()));
    assert!(st.blobs_total > 0 && st.blobs_skipped == 0);
    assert_eq!(st.bytes_done, st.bytes_total);
    // Every blob of every platform is there.
    let name = Name::parse("team/app").unwrap();
    for m in &st.manifests[..st.manifests.len() - 1] {
        let child = t
            .reg
            .get_manifest(&name, &Reference::Digest(m.digest.clone()))
            .await
            .unwrap()
            .expect("child manifest");
        let parsed = oci::Manifest::parse(&child.bytes, Some(&child.media_type)).unwrap();
        for b in parsed.blobs() {
            assert!(t.reg.has_blob(Some(&name), &b.digest), "{}", b.digest);
        }
    }
    // The token was asked for push on the target, with the credentials.
    assert!(
        t.scopes
            .lock()
            .unwrap()
            .iter()
            .all(|s| s == "repository:team/app:pull,push"),
        "{:?}",
        t.scopes.lock().unwrap()
    );

    // Again: the registry has every blob, nothing is sent.
    let again = push(&t, &source, "team/app:v2", alice("s3cret")).await;
    assert_eq!(again.state, JobState::Succeeded, "{:?}", again.error);
    assert_eq!(again.blobs_skipped, again.blobs_total);
    assert_eq!(again.bytes_total, 0);
    assert_eq!(tagged(&t, "team/app", "v2").await, Some(want));
}

#[tokio::test]
async fn refused_credentials_and_bad_bytes_leave_nothing_behind() {
    let t = target().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let layer = vec![3u8; 200_000];
    let (m, _, layer_d) = transport::testing::write_one_layer_layout(dir, &layer, Some("v1"));
    let source = format!("oci:{}:v1", dir.display());

    let st = push(&t, &source, "team/x:v1", alice("wrong-password")).await;
    assert_eq!(st.state, JobState::Failed);
    let e = st.error.unwrap();
    assert!(e.contains("token server"), "{e}");
    assert!(!e.contains("wrong-password"), "{e}");
    let st = push(&t, &source, "team/x:v1", None).await;
    assert_eq!(st.state, JobState::Failed);
    assert!(st.error.unwrap().contains("token server"));

    // A corrupt layer: the upload is aborted, nothing is committed.
    let mut bad = layer.clone();
    bad[100_000] = 4;
    std::fs::write(dir.join("blobs/sha256").join(layer_d.hex()), &bad).unwrap();
    let st = push(&t, &source, "team/x:v1", alice("s3cret")).await;
    assert_eq!(st.state, JobState::Failed);
    let e = st.error.unwrap();
    assert!(e.contains(&layer_d.to_string()), "{e}");
    assert!(!t.reg.has_blob(None, &layer_d));
    assert_eq!(tagged(&t, "team/x", "v1").await, None);

    // Fixed, it goes through.
    std::fs::write(dir.join("blobs/sha256").join(layer_d.hex()), &layer).unwrap();
    let st = push(&t, &source, "team/x:v1", alice("s3cret")).await;
    assert_eq!(st.state, JobState::Succeeded, "{:?}", st.error);
    assert_eq!(tagged(&t, "team/x", "v1").await, Some(m));
}

#[tokio::test]
async fn remote_sources_and_bad_servers_are_refused_up_front() {
    let req = |source: &str| ImportRequest {
        source: source.into(),
        target: "team/app:v1".into(),
        ..Default::default()
    };
    for (source, server) in [
        ("docker://127.0.0.1:1/a/b:c", "http://127.0.0.1:1"),
        ("oci:/x:v1", "ftp://127.0.0.1:1"),
        ("oci:/x:v1", "http://127.0.0.1:1/some/path"),
    ] {
        assert!(
            LocalPush::start(&req(source), server, None).is_err(),
            "{source} {server}"
        );
    }
}
