//! Import end to end: into a real registry (temp dir), from an OCI layout, a
//! docker-archive, Debian's docker-registry, a second drydock, and a mini
//! registry that demands a bearer token and cuts transfers. Loopback only.

mod common;

use import::{ImportConfig, ImportRequest, Importer, JobState, JobStatus, RemoteConfig};
use oci::{Digest, Name, Reference, Tag};
use registry::{Event, EventSink, Origin, Registry};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use transport::testing::{self, MiniOptions, MiniRegistry, PeerRegistry};

#[derive(Default)]
struct Events(Mutex<Vec<Event>>);
impl EventSink for Events {
    fn on_event(&self, e: &Event) {
        self.0.lock().unwrap().push(e.clone());
    }
}

struct Server {
    reg: Registry,
    importer: Importer,
    events: Arc<Events>,
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server(mut config: ImportConfig) -> Server {
    // Every source registry here is on loopback, which the default
    // outbound policy refuses.
    config.outbound =
        egress::EgressPolicy::parse_allow(&["127.0.0.0/8".into(), "::1/128".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = common::open_registry(dir.path());
    let events = Arc::new(Events::default());
    reg.add_sink(events.clone());
    let importer = Importer::new(reg.clone(), config);
    let app = reg.router().merge(import::router(importer.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server {
        reg,
        importer,
        events,
        addr,
        task,
        _dir: dir,
    }
}

/// Settings that let jobs read server-side paths inside `dirs`.
fn local(dirs: &[&std::path::Path]) -> ImportConfig {
    ImportConfig {
        local_dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
        ..Default::default()
    }
}

fn req(source: &str, target: &str) -> ImportRequest {
    ImportRequest {
        source: source.into(),
        target: target.into(),
        ..Default::default()
    }
}

async fn ok(s: &Server, r: ImportRequest) -> JobStatus {
    let st = s.importer.run(r).await.unwrap();
    assert_eq!(st.state, JobState::Succeeded, "{:?}", st.error);
    st
}

fn layout_bytes(layout: &std::path::Path, d: &Digest) -> Vec<u8> {
    std::fs::read(layout.join("blobs/sha256").join(d.hex())).unwrap()
}

async fn manifest(s: &Server, repo: &str, tag: &str) -> Option<registry::StoredManifest> {
    s.reg
        .get_manifest(
            &Name::parse(repo).unwrap(),
            &Reference::Tag(Tag::parse(tag).unwrap()),
        )
        .await
        .unwrap()
}

/// Every blob of the stored image(s) under `repo:tag` is present.
async fn assert_complete(s: &Server, repo: &str, tag: &str) {
    let name = Name::parse(repo).unwrap();
    let root = manifest(s, repo, tag).await.expect("tag present");
    let parsed = oci::Manifest::parse(&root.bytes, Some(&root.media_type)).unwrap();
    let mut images = vec![];
    if parsed.is_index() {
        for c in parsed.children() {
            let child = s
                .reg
                .get_manifest(&name, &Reference::Digest(c.digest.clone()))
                .await
                .unwrap()
                .expect("child present");
            images.push(oci::Manifest::parse(&child.bytes, Some(&child.media_type)).unwrap());
        }
    } else {
        images.push(parsed);
    }
    for i in images {
        for b in i.blobs() {
            assert!(s.reg.has_blob(Some(&name), &b.digest), "{}", b.digest);
        }
    }
}

#[tokio::test]
async fn from_oci_layout_and_docker_archive() {
    let dir = transport::require_test_images!();
    let tmp = tempfile::tempdir().unwrap();
    let s = server(local(&[&dir, tmp.path()])).await;
    let st = ok(
        &s,
        req(&format!("oci:{}:multiarch", dir.display()), "lib/multi"),
    )
    .await;
    let want = testing::test_image_digest("multiarch");
    let stored = manifest(&s, "lib/multi", "multiarch").await.unwrap();
    assert_eq!(stored.digest, want);
    assert_eq!(
        &stored.bytes[..],
        &layout_bytes(&dir, &want)[..],
        "byte for byte"
    );
    assert_complete(&s, "lib/multi", "multiarch").await;
    assert_eq!(st.manifests.len(), 3, "two platforms, then the index");
    assert_eq!(st.manifests[2].tag.as_deref(), Some("multiarch"));
    assert!(st.manifests[..2].iter().all(|m| m.platform.is_some()));
    assert!(st.bytes_total > 0 && st.bytes_done == st.bytes_total);
    assert_eq!(st.blobs_skipped, 0);
    // The tag's push event is raised as an import (the assessment trigger).
    assert!(s.events.0.lock().unwrap().iter().any(|e| matches!(e,
        Event::ManifestPushed { digest, origin: Origin::Import, tags, .. }
            if *digest == want && tags.iter().any(|t| t.as_str() == "multiarch"))));

    // Again: nothing transferred. Into another repository: linked.
    let again = ok(
        &s,
        req(&format!("oci:{}:multiarch", dir.display()), "lib/multi:v2"),
    )
    .await;
    assert_eq!(again.blobs_skipped, again.blobs_total);
    assert_eq!(again.bytes_total, 0);
    let other = ok(
        &s,
        req(&format!("oci:{}:multiarch", dir.display()), "team/multi:v1"),
    )
    .await;
    assert_eq!(other.blobs_skipped, other.blobs_total);
    assert_complete(&s, "team/multi", "v1").await;

    // docker-archive.
    let archive = tmp.path().join("py.tar");
    testing::skopeo_copy(
        &format!("oci:{}:python-app", dir.display()),
        &format!("docker-archive:{}:test/python:v1", archive.display()),
        &[],
    );
    let st = ok(
        &s,
        req(&format!("docker-archive:{}", archive.display()), "lib/py"),
    )
    .await;
    let root = st.manifests.last().unwrap();
    assert_eq!(root.tag.as_deref(), Some("v1"), "the archive's tag");
    assert_eq!(root.media_type, oci::DOCKER_MANIFEST);
    assert_complete(&s, "lib/py", "v1").await;
}

#[tokio::test]
async fn from_docker_registry_and_a_second_drydock() {
    let dir = transport::require_test_images!();
    let Some(peer) = PeerRegistry::start() else {
        return;
    };
    testing::skopeo_copy(
        &format!("oci:{}:multiarch", dir.display()),
        &format!("docker://{}/test/multi:v1", peer.host()),
        &["--all"],
    );
    for t in ["v1", "v2"] {
        testing::skopeo_copy(
            &format!("oci:{}:rust-app", dir.display()),
            &format!("docker://{}/test/rust:{t}", peer.host()),
            &[],
        );
    }
    let s = server(ImportConfig::default()).await;
    let remote = |path: &str| format!("docker://{}/{path}", peer.host());

    // Whole index, byte for byte.
    let mut r = req(&remote("test/multi:v1"), "mirror/multi");
    r.insecure = true;
    ok(&s, r.clone()).await;
    let stored = manifest(&s, "mirror/multi", "v1").await.unwrap();
    assert_eq!(stored.digest, testing::test_image_digest("multiarch"));
    assert_complete(&s, "mirror/multi", "v1").await;

    // One platform: that platform's manifest itself.
    let idx: oci::ImageIndex = serde_json::from_slice(&stored.bytes).unwrap();
    let arm = idx
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().unwrap().architecture == "arm64")
        .unwrap();
    let mut one = req(&remote("test/multi:v1"), "mirror/arm:v1");
    one.insecure = true;
    one.platforms = vec!["linux/arm64".into()];
    ok(&s, one).await;
    assert_eq!(
        manifest(&s, "mirror/arm", "v1").await.unwrap().digest,
        arm.digest
    );
    assert_complete(&s, "mirror/arm", "v1").await;

    // An unknown platform fails and says what there is.
    let mut none = req(&remote("test/multi:v1"), "mirror/none:v1");
    none.insecure = true;
    none.platforms = vec!["linux/s390x".into()];
    let st = s.importer.run(none).await.unwrap();
    assert_eq!(st.state, JobState::Failed);
    assert!(
        st.error.as_ref().unwrap().contains("linux/arm64"),
        "{:?}",
        st.error
    );
    assert!(manifest(&s, "mirror/none", "v1").await.is_none());

    // All tags.
    let mut all = req(&remote("test/rust"), "mirror/rust");
    all.insecure = true;
    all.all_tags = true;
    let st = ok(&s, all).await;
    assert_eq!(st.manifests.len(), 2);
    for t in ["v1", "v2"] {
        assert_eq!(
            manifest(&s, "mirror/rust", t).await.unwrap().digest,
            testing::test_image_digest("rust-app")
        );
    }

    // TLS by default: without --insecure the plain-HTTP peer is refused.
    let st = s
        .importer
        .run(req(&remote("test/multi:v1"), "mirror/tls:v1"))
        .await
        .unwrap();
    assert_eq!(st.state, JobState::Failed);

    // A second drydock as the source.
    let b = server(local(&[&dir])).await;
    let mut from_b = req(
        &format!("docker://{}/mirror/multi:v1", b.addr),
        "again/multi:v1",
    );
    from_b.insecure = true;
    ok(
        &b,
        req(
            &format!("oci:{}:multiarch", dir.display()),
            "mirror/multi:v1",
        ),
    )
    .await;
    ok(&s, from_b).await;
    assert_eq!(
        manifest(&s, "again/multi", "v1").await.unwrap().digest,
        testing::test_image_digest("multiarch")
    );
}

#[tokio::test]
async fn bearer_token_registry_with_cut_transfers() {
    let dir = transport::require_test_images!();
    let mini = MiniRegistry::start(
        dir,
        MiniOptions {
            token_auth: Some(Some(("alice".into(), "s3cret".into()))),
            cut_blobs_over: Some(1 << 20),
            ..Default::default()
        },
    )
    .await;
    let mut config = ImportConfig::default();
    config.remotes.insert(
        "stored.invalid:1".into(),
        RemoteConfig {
            username: Some("x".into()),
            password: Some("y".into()),
            insecure: true,
            ca_file: None,
        },
    );
    let s = server(config).await;
    let source = format!("docker://{}/src/py:python-app", mini.host());

    // Without credentials: a failed job that says why, and no tag.
    let mut anon = req(&source, "lib/py:v1");
    anon.insecure = true;
    let st = s.importer.run(anon).await.unwrap();
    assert_eq!(st.state, JobState::Failed);
    assert!(
        st.error.as_ref().unwrap().contains("--creds"),
        "{:?}",
        st.error
    );
    assert!(manifest(&s, "lib/py", "v1").await.is_none());

    let mut with = req(&source, "lib/py:v1");
    with.insecure = true;
    with.creds = Some("alice:s3cret".into());
    let st = ok(&s, with).await;
    assert!(!format!("{st:?}").contains("s3cret"));
    assert_eq!(
        manifest(&s, "lib/py", "v1").await.unwrap().digest,
        testing::test_image_digest("python-app")
    );
    assert_complete(&s, "lib/py", "v1").await;
    assert!(
        mini.stats.cuts.load(Ordering::Relaxed) >= 1,
        "a transfer was cut"
    );
    assert!(
        mini.stats.range_requests.load(Ordering::Relaxed) >= 1,
        "and resumed"
    );
    assert!(mini.stats.token_requests.load(Ordering::Relaxed) >= 1);

    // Credentials stored per remote in the server's configuration.
    let mut config = ImportConfig::default();
    config.remotes.insert(
        mini.host(),
        RemoteConfig {
            username: Some("alice".into()),
            password: Some("s3cret".into()),
            insecure: true,
            ca_file: None,
        },
    );
    let s2 = server(config).await;
    ok(&s2, req(&source, "lib/py:v1")).await;
}

#[tokio::test]
async fn over_tls_with_a_stored_private_ca() {
    let layout = transport::require_test_images!();
    let mini = MiniRegistry::start(
        layout,
        MiniOptions {
            tls: true,
            ..Default::default()
        },
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, mini.ca_pem.as_ref().unwrap()).unwrap();
    let source = format!("docker://{}/tls/py:python-app", mini.host());
    // Without the CA: refused, and the job says why.
    let s = server(ImportConfig::default()).await;
    let st = s.importer.run(req(&source, "lib/py:v1")).await.unwrap();
    assert_eq!(st.state, JobState::Failed);
    assert!(st.error.unwrap().to_lowercase().contains("certificate"));
    let mut config = ImportConfig::default();
    config.remotes.insert(
        mini.host(),
        RemoteConfig {
            ca_file: Some(ca),
            ..Default::default()
        },
    );
    let s = server(config).await;
    ok(&s, req(&source, "lib/py:v1")).await;
    assert_eq!(
        manifest(&s, "lib/py", "v1").await.unwrap().digest,
        testing::test_image_digest("python-app")
    );
}

#[tokio::test]
async fn bad_requests_and_failed_imports_change_nothing() {
    let s = server(ImportConfig::default()).await;
    for (src, tgt) in [
        ("ftp://x/y", "a:b"),
        ("oci:relative/dir:tag", "a:b"),
        ("oci:/abs:tag", "UPPER:case"),
        (
            "oci:/abs:tag",
            "a@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
    ] {
        assert!(s.importer.submit(req(src, tgt)).is_err(), "{src} {tgt}");
    }
    let mut all = req("oci:/abs", "a:tag");
    all.all_tags = true;
    assert!(s.importer.submit(all).is_err());
    let mut plat = req("oci:/abs:t", "a:tag");
    plat.platforms = vec!["linux".into()];
    assert!(s.importer.submit(plat).is_err());
    let mut creds = req("oci:/abs:t", "a:tag");
    creds.creds = Some("u:p".into());
    assert!(s.importer.submit(creds).is_err());
    // No import directories (the default): no server-side paths at all.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let local_off = Importer::new(s.reg.clone(), ImportConfig::default());
    let e = local_off
        .submit(req(&format!("oci:{}:t", dir.display()), "a:tag"))
        .unwrap_err();
    assert!(e.to_string().contains("import.local_dirs"), "{e}");
    let s = server(local(&[dir])).await;

    // A layout whose layer is corrupt: the job fails, no tag appears.
    let layer = vec![1u8; 100_000];
    let (m_d, _, layer_d) = transport::testing::write_one_layer_layout(dir, &layer, Some("v1"));
    let mut bad = layer.clone();
    bad[50_000] = 2;
    std::fs::write(dir.join("blobs/sha256").join(layer_d.hex()), &bad).unwrap();
    let st = s
        .importer
        .run(req(&format!("oci:{}:v1", dir.display()), "broken/app"))
        .await
        .unwrap();
    assert_eq!(st.state, JobState::Failed);
    let why = st.error.unwrap();
    assert!(
        why.contains("digest mismatch") && why.contains(&layer_d.to_string()),
        "{why}"
    );
    assert!(manifest(&s, "broken/app", "v1").await.is_none());
    assert!(!s.reg.has_blob(None, &layer_d));

    // Fixed, it goes through.
    std::fs::write(dir.join("blobs/sha256").join(layer_d.hex()), &layer).unwrap();
    ok(&s, req(&format!("oci:{}:v1", dir.display()), "broken/app")).await;
    assert_eq!(manifest(&s, "broken/app", "v1").await.unwrap().digest, m_d);
}

#[tokio::test]
async fn http_api_and_client() {
    let dir = transport::require_test_images!();
    let s = server(local(&[&dir])).await;
    let client = import::client::Client::new(&format!("http://{}", s.addr)).unwrap();
    let job = client
        .submit(&req(
            &format!("oci:{}:python-app", dir.display()),
            "api/py:v1",
        ))
        .await
        .unwrap();
    let mut seen = 0;
    let done = client
        .wait(job.id, std::time::Duration::from_millis(50), |_| seen += 1)
        .await
        .unwrap();
    assert!(seen >= 1);
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    assert_eq!(
        done.manifests.last().unwrap().digest,
        testing::test_image_digest("python-app")
    );
    let e = client
        .submit(&req("nope:x", "api/py:v1"))
        .await
        .unwrap_err();
    assert!(matches!(e, import::client::ClientError::Refused(_)), "{e}");
    let e = client.status(uuid::Uuid::new_v4()).await.unwrap_err();
    assert!(e.to_string().contains("no such import"), "{e}");
    // Listing.
    let list: Vec<JobStatus> = reqwest::get(format!("http://{}/api/v1/imports", s.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0].id, job.id);
    let gone = import::client::Client::new("http://127.0.0.1:1").unwrap();
    assert!(matches!(
        gone.status(job.id).await,
        Err(import::client::ClientError::Connect(..))
    ));
}

#[tokio::test]
async fn cancelling_stops_before_any_tag() {
    let layout = transport::require_test_images!();
    let mini = MiniRegistry::start(
        layout,
        MiniOptions {
            blob_delay: Some(std::time::Duration::from_secs(30)),
            ..Default::default()
        },
    )
    .await;
    let s = server(ImportConfig::default()).await;
    let client = import::client::Client::new(&format!("http://{}", s.addr)).unwrap();
    let mut r = req(
        &format!("docker://{}/slow/py:python-app", mini.host()),
        "slow/py:v1",
    );
    r.insecure = true;
    let job = client.submit(&r).await.unwrap();
    // Wait until it is copying (blocked on the slow upstream); a loaded
    // machine may take a while to get there, and cancelling earlier would
    // not test a stop in the middle of a copy.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let st = client.status(job.id).await.unwrap();
        if st.phase == "copying blobs" {
            break;
        }
        assert!(!st.state.is_finished(), "{st:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "never copying: {st:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    client.cancel(job.id).await.unwrap();
    let done = client
        .wait(job.id, std::time::Duration::from_millis(20), |_| {})
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Cancelled);
    // Well before the upstream's 30 s delay would have let the copy end.
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    assert!(manifest(&s, "slow/py", "v1").await.is_none());
    // A finished job cannot be cancelled.
    let e = client.cancel(job.id).await.unwrap_err();
    assert!(e.to_string().contains("cannot be cancelled"), "{e}");
    let e = client.cancel(uuid::Uuid::new_v4()).await.unwrap_err();
    assert!(e.to_string().contains("no such import"), "{e}");
}

/// `Importer::run` waits on its own job even when a later submission
/// pushes the finished job out of the list (`keep_finished`); it used to
/// look the job up by id and panic when it was gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_survives_its_job_leaving_the_list() {
    let dir = transport::require_test_images!();
    let s = server(ImportConfig {
        keep_finished: 1,
        ..local(&[&dir])
    })
    .await;
    let source = format!("oci:{}:multiarch", dir.display());
    let importer = s.importer.clone();
    let first = {
        let r = req(&source, "lib/first");
        tokio::spawn(async move { importer.run(r).await })
    };
    // As soon as the first job is finished, submit another: the first one
    // leaves the list before run() looks again.
    loop {
        let finished = s
            .importer
            .list()
            .iter()
            .any(|j| j.target.starts_with("lib/first") && j.state.is_finished());
        if finished {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    s.importer.submit(req(&source, "lib/second")).unwrap();
    assert!(
        s.importer
            .list()
            .iter()
            .all(|j| !j.target.starts_with("lib/first")),
        "the first job left the list"
    );
    let st = first.await.expect("run() did not panic").unwrap();
    assert_eq!(st.state, JobState::Succeeded, "{:?}", st.error);
}
