//! Import jobs on several nodes sharing one PostgreSQL database (and one
//! data directory for blobs): a job started on node 1 is followed to its
//! end on node 2, listed there, and its image served there; a job whose
//! node dies (its runtime shut down mid-copy: no more heartbeats) is
//! reported by the others as running at first, then failed (interrupted)
//! once its heartbeat is stale, never running for ever, and the stored
//! row itself is rewritten failed by another node's housekeeping. Sources are
//! loopback registries serving an OCI layout made here. Skips without
//! PostgreSQL, except under CI.

use import::{ImportConfig, ImportRequest, Importer, JobState, JobStatus};
use registry::{MetadataStorage, Options, Registry};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use transport::testing::{MiniOptions, MiniRegistry, write_one_layer_layout};

struct Node {
    base: String,
    importer: Importer,
    registry: Registry,
}

fn config() -> ImportConfig {
    ImportConfig {
        outbound: egress::EgressPolicy::parse_allow(&["127.0.0.0/8".into()]).unwrap(),
        heartbeat: Duration::from_millis(200),
        stale_after: Duration::from_secs(2),
        ..Default::default()
    }
}

fn open(dir: &std::path::Path, metadata: &MetadataStorage) -> Registry {
    let mut opts = Options::new(dir);
    opts.metadata = metadata.clone();
    Registry::open(opts).unwrap()
}

async fn serve(registry: Registry, importer: Importer) -> SocketAddr {
    let app = registry.router().merge(import::router(importer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

async fn node(dir: &std::path::Path, metadata: &MetadataStorage) -> Node {
    let registry = open(dir, metadata);
    let importer = Importer::new(registry.clone(), config());
    let addr = serve(registry.clone(), importer.clone()).await;
    Node {
        base: format!("http://{addr}"),
        importer,
        registry,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get_job(base: &str, id: &str) -> (u16, Option<JobStatus>) {
    let r = client()
        .get(format!("{base}/api/v1/imports/{id}"))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.ok())
}

/// A loopback registry serving a one-layer image as `src:v1`.
async fn source(dir: &std::path::Path, layer: &[u8], delay: Option<Duration>) -> MiniRegistry {
    write_one_layer_layout(dir, layer, Some("v1"));
    MiniRegistry::start(
        dir.to_path_buf(),
        MiniOptions {
            blob_delay: delay,
            ..Default::default()
        },
    )
    .await
}

fn request(mini: &MiniRegistry, target: &str) -> ImportRequest {
    ImportRequest {
        source: format!("docker://{}/src:v1", mini.host()),
        target: target.into(),
        insecure: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_started_on_one_node_is_followed_on_another() {
    let Some(cluster) = storage::testing::shared_cluster() else {
        return;
    };
    let metadata = MetadataStorage::from_url(&cluster.fresh_database()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let (n1, n2) = (
        node(data.path(), &metadata).await,
        node(data.path(), &metadata).await,
    );
    let layout = tempfile::tempdir().unwrap();
    let mini = source(
        layout.path(),
        b"layer bytes for the import",
        Some(Duration::from_millis(600)),
    )
    .await;

    let submitted = Instant::now();
    let r = client()
        .post(format!("{}/api/v1/imports", n1.base))
        .json(&request(&mini, "team/imported:v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let started: Value = r.json().await.unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    // Node 2 knows the job as soon as node 1 answered.
    let (code, st) = get_job(&n2.base, &id).await;
    assert_eq!(code, 200);
    // Each blob takes the source 600 ms: a job read back sooner than that
    // cannot have finished (a loaded machine may take longer to get here,
    // and then the job may be over, rightly).
    if submitted.elapsed() < Duration::from_millis(600) {
        assert!(!st.unwrap().state.is_finished(), "the source is slow");
    }
    assert!(n2.importer.list().is_empty(), "node 2 runs nothing");

    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let (code, st) = get_job(&n2.base, &id).await;
        assert_eq!(code, 200);
        let st = st.unwrap();
        if st.state.is_finished() {
            break st;
        }
        assert!(Instant::now() < deadline, "not finished: {st:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    assert_eq!(done.blobs_total, 2);
    assert_eq!(done.blobs_done, 2);
    let root = done.manifests.last().unwrap();
    assert_eq!(root.tag.as_deref(), Some("v1"));
    // As node 1 reports it, and listed on node 2.
    assert_eq!(
        serde_json::to_value(n1.importer.status(done.id).unwrap()).unwrap(),
        serde_json::to_value(&done).unwrap()
    );
    let list: Vec<JobStatus> = client()
        .get(format!("{}/api/v1/imports", n2.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, done.id);
    // And node 2 serves the image.
    let m = n2
        .registry
        .get_manifest(
            &oci::Name::parse("team/imported").unwrap(),
            &oci::Reference::Tag(oci::Tag::parse("v1").unwrap()),
        )
        .await
        .unwrap()
        .expect("tagged");
    assert_eq!(m.digest, root.digest);
    // An unknown id is unknown everywhere.
    let (code, _) = get_job(&n2.base, &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_node_died_is_reported_interrupted() {
    let Some(cluster) = storage::testing::shared_cluster() else {
        return;
    };
    let metadata = MetadataStorage::from_url(&cluster.fresh_database()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let survivor = node(data.path(), &metadata).await;
    // A source whose blobs never come: the job stays in its copy.
    let layout = tempfile::tempdir().unwrap();
    let mini = source(
        layout.path(),
        b"never sent",
        Some(Duration::from_secs(3600)),
    )
    .await;

    // The node that dies runs on a runtime of its own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let doomed = {
        let _in = rt.enter();
        Importer::new(open(data.path(), &metadata), config())
    };
    let st = {
        let _in = rt.enter();
        doomed.submit(request(&mini, "team/never:v1")).unwrap()
    };
    let id = st.id.to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, st) = get_job(&survivor.base, &id).await;
        if code == 200 && st.as_ref().unwrap().state == JobState::Running {
            break;
        }
        assert!(Instant::now() < deadline, "never seen running: {st:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The node dies: no shutdown, its tasks simply stop.
    rt.shutdown_background();
    let died = Instant::now();
    let (_, st) = get_job(&survivor.base, &id).await;
    assert_eq!(st.unwrap().state, JobState::Running, "not stale yet");
    let st = loop {
        let (code, st) = get_job(&survivor.base, &id).await;
        assert_eq!(code, 200);
        let st = st.unwrap();
        if st.state.is_finished() {
            break st;
        }
        assert!(
            died.elapsed() < Duration::from_secs(10),
            "still running long after its node died: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(died.elapsed() >= Duration::from_secs(1), "judged too early");
    assert_eq!(st.state, JobState::Failed);
    assert_eq!(st.phase, "interrupted");
    assert!(st.error.unwrap().contains("interrupted"));
    // Not only reported: the survivor's housekeeping writes the row
    // itself as failed, so lists, counts and filters see it too.
    let uuid = st.id;
    let row = loop {
        let row = survivor.registry.meta().import_job(uuid).await.unwrap();
        let row = row.expect("stored");
        if row.finished {
            break row;
        }
        assert!(
            died.elapsed() < Duration::from_secs(15),
            "the stored row still says running: {}",
            row.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stored: JobStatus = serde_json::from_str(&row.status).unwrap();
    assert_eq!(stored.state, JobState::Failed);
    assert_eq!(stored.phase, "interrupted");
    assert!(stored.error.unwrap().contains("interrupted"));
    assert!(
        survivor
            .registry
            .meta()
            .silent_import_jobs(i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    // A stop asked for now is refused: the job is over.
    let r = client()
        .delete(format!("{}/api/v1/imports/{id}", survivor.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_asked_on_another_node_stops_the_job() {
    let Some(cluster) = storage::testing::shared_cluster() else {
        return;
    };
    let metadata = MetadataStorage::from_url(&cluster.fresh_database()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let (n1, n2) = (
        node(data.path(), &metadata).await,
        node(data.path(), &metadata).await,
    );
    let layout = tempfile::tempdir().unwrap();
    let mini = source(layout.path(), b"slow", Some(Duration::from_secs(3600))).await;
    let st = n1
        .importer
        .submit(request(&mini, "team/stopped:v1"))
        .unwrap();
    let id = st.id.to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_job(&n2.base, &id).await.0 != 200 {
        assert!(Instant::now() < deadline, "node 2 never saw the job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client()
        .delete(format!("{}/api/v1/imports/{id}", n2.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, st) = get_job(&n2.base, &id).await;
        let st = st.unwrap();
        if st.state == JobState::Cancelled {
            break;
        }
        assert!(Instant::now() < deadline, "not stopped: {st:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        n1.importer.status(st.id).unwrap().state,
        JobState::Cancelled
    );
}
