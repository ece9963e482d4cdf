//! Several registries ("nodes") sharing one PostgreSQL database and one
//! blob store (S3 when SeaweedFS is at hand, else one data directory),
//! as behind a round-robin balancer: an upload whose requests land on
//! different nodes, two requests of one session on two nodes at once,
//! and a GC on one node racing a push on another. The GC race runs on
//! SQLite too (two processes on one data directory). PostgreSQL cases
//! skip (naming what is missing) without PostgreSQL, except under CI.

mod common;

use bytes::Bytes;
use common::{image_manifest, s3};
use futures::StreamExt;
use oci::{Digest, Name, Reference, Tag};
use registry::{BlobStorage, GcOptions, MetadataStorage, Options, Origin, Registry};
use reqwest::Client;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use storage::{BlobDriver, BlobError, BlobStat, BlobStream, BlobWriter, Store, UploadInfo};
use uuid::Uuid;

/// Where the nodes keep their state, and the data directories they run in.
struct Shared {
    blobs: BlobStorage,
    metadata: MetadataStorage,
    /// One directory per node when blobs are on S3 (nothing is shared
    /// through it), else one for all.
    dirs: Vec<tempfile::TempDir>,
}

impl Shared {
    fn dir(&self, node: usize) -> &Path {
        self.dirs[node % self.dirs.len()].path()
    }
}

/// S3 (a fresh prefix) when a SeaweedFS can be had, else the filesystem.
fn blob_store() -> BlobStorage {
    if std::env::var("DRYDOCK_TEST_S3_ENDPOINT").is_ok() || s3::available() {
        let mut cfg = s3::config(s3::shared_endpoint());
        cfg.part_size = 5 << 20;
        BlobStorage::S3(cfg)
    } else {
        BlobStorage::Filesystem
    }
}

/// PostgreSQL and the blob store; `None` without PostgreSQL (outside CI).
fn on_postgres() -> Option<Shared> {
    let cluster = storage::testing::shared_cluster()?;
    let metadata = MetadataStorage::from_url(&cluster.fresh_database()).unwrap();
    let blobs = blob_store();
    let n = if matches!(blobs, BlobStorage::S3(_)) {
        3
    } else {
        1
    };
    Some(Shared {
        blobs,
        metadata,
        dirs: (0..n).map(|_| tempfile::tempdir().unwrap()).collect(),
    })
}

/// SQLite and the filesystem in one data directory.
fn on_sqlite() -> Shared {
    Shared {
        blobs: BlobStorage::Filesystem,
        metadata: MetadataStorage::Sqlite,
        dirs: vec![tempfile::tempdir().unwrap()],
    }
}

struct Node {
    base: String,
    registry: Registry,
}

async fn node(shared: &Shared, i: usize) -> Node {
    node_with(shared, i, |_| {}).await
}

/// A node that expires uploads idle for `expiry`.
async fn expiring_node(shared: &Shared, i: usize, expiry: Duration) -> Node {
    node_with(shared, i, |o| o.upload_expiry = expiry).await
}

async fn node_with(shared: &Shared, i: usize, configure: impl FnOnce(&mut Options)) -> Node {
    let mut opts = Options::new(shared.dir(i));
    opts.blobs = shared.blobs.clone();
    opts.metadata = shared.metadata.clone();
    configure(&mut opts);
    let (addr, registry) = common::serve(opts).await;
    Node {
        base: format!("http://{addr}"),
        registry,
    }
}

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed as u32) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_started_on_one_node_continues_on_another_and_closes_on_the_first() {
    let Some(shared) = on_postgres() else {
        return;
    };
    let (a, b) = (node(&shared, 0).await, node(&shared, 1).await);
    let c = client();
    // Over one part (on S3): a part and a saved tail cross nodes.
    let blob = data((7 << 20) + 1234, 3);
    let d = Digest::sha256_of(&blob);
    let r = c
        .post(format!("{}/v2/team/app/blobs/uploads/", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let cut = 6 << 20;
    let r = c
        .patch(format!("{}{loc}", b.base))
        .header("content-range", format!("0-{}", cut - 1))
        .body(blob[..cut].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    // The first node sees where the second left it.
    let r = c.get(format!("{}{loc}", a.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["range"].to_str().unwrap(),
        format!("0-{}", cut - 1)
    );
    // A wrong digest at the close changes nothing.
    let wrong = Digest::sha256_of(b"not it");
    let r = c
        .put(format!("{}{loc}?digest={wrong}", a.base))
        .body(blob[cut..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .put(format!("{}{loc}?digest={d}", a.base))
        .body(blob[cut..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    for n in [&a, &b] {
        let got = c
            .get(format!("{}/v2/team/app/blobs/{d}", n.base))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        let bytes = got.bytes().await.unwrap();
        assert_eq!(bytes.len(), blob.len());
        assert_eq!(Digest::sha256_of(&bytes), d);
        let r = c.get(format!("{}{loc}", n.base)).send().await.unwrap();
        assert_eq!(r.status(), 404, "the session is gone on every node");
    }
}

/// A body that trickles out over about `pieces` × 80 ms.
fn slow_body(bytes: Vec<u8>, pieces: usize) -> reqwest::Body {
    let step = bytes.len().div_ceil(pieces);
    let chunks: Vec<Bytes> = bytes.chunks(step).map(Bytes::copy_from_slice).collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks).then(|c| async move {
        tokio::time::sleep(Duration::from_millis(80)).await;
        Ok::<_, std::io::Error>(c)
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_of_one_session_on_two_nodes_take_turns() {
    let Some(shared) = on_postgres() else {
        return;
    };
    let (a, b) = (node(&shared, 0).await, node(&shared, 1).await);
    let c = client();
    let r = c
        .post(format!("{}/v2/team/app/blobs/uploads/", a.base))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    // The same first chunk, different bytes, on both nodes at once (a
    // client's retry through a balancer while the first try still runs).
    let n = 256 << 10;
    let bodies = [data(n, 1), data(n, 2)];
    let send = |base: &str, body: Vec<u8>| {
        c.patch(format!("{base}{loc}"))
            .header("content-range", format!("0-{}", n - 1))
            .header("content-length", n.to_string())
            .body(slow_body(body, 10))
            .send()
    };
    let (ra, rb) = tokio::join!(
        send(&a.base, bodies[0].clone()),
        send(&b.base, bodies[1].clone())
    );
    let codes = [ra.unwrap().status().as_u16(), rb.unwrap().status().as_u16()];
    let mut sorted = codes;
    sorted.sort();
    // One resumed the saved state and moved it on; the other waited for
    // it and found the chunk no longer continues the upload.
    assert_eq!(sorted, [202, 416], "statuses {codes:?}");
    let winner = &bodies[if codes[0] == 202 { 0 } else { 1 }];
    let d = Digest::sha256_of(winner);
    let r = c
        .put(format!("{}{loc}?digest={d}", b.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let got = c
        .get(format!("{}/v2/team/app/blobs/{d}", a.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], &winner[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_busy_on_one_node_is_not_expired_by_another() {
    let Some(shared) = on_postgres() else {
        return;
    };
    // Node A expires uploads idle for a second (it looks every 250 ms);
    // node B runs a PATCH whose body stalls for longer than that.
    // Kept, not only its address: the node lives as long as its registry.
    let a_node = expiring_node(&shared, 0, Duration::from_secs(1)).await;
    let a = a_node.base.clone();
    let b = node(&shared, 1).await;
    let c = client();
    let r = c
        .post(format!("{}/v2/team/app/blobs/uploads/", b.base))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    // Over a part on each side of the stall (on S3): an expiry would
    // abort the multipart upload the second half goes on with.
    let blob = data(12 << 20, 5);
    let d = Digest::sha256_of(&blob);
    let halves: Vec<Bytes> = blob.chunks(6 << 20).map(Bytes::copy_from_slice).collect();
    let body = futures::stream::iter(halves.into_iter().enumerate()).then(|(i, h)| async move {
        if i == 1 {
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        Ok::<_, std::io::Error>(h)
    });
    let patch = c
        .patch(format!("{}{loc}", b.base))
        .header("content-range", format!("0-{}", blob.len() - 1))
        .header("content-length", blob.len().to_string())
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let patch = tokio::spawn(patch);
    // While it runs, node A must keep the session (a store that lets a
    // later save bring a cancelled session back would hide the loss at
    // the end).
    while !patch.is_finished() {
        let r = c.get(format!("{a}{loc}")).send().await.unwrap();
        assert_eq!(
            r.status(),
            204,
            "node A expired the session under the PATCH"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = patch.await.unwrap().unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let r = c.put(format!("{a}{loc}?digest={d}")).send().await.unwrap();
    assert_eq!(
        r.status(),
        201,
        "the upload was expired while its PATCH ran: {}",
        r.text().await.unwrap()
    );
}

/// A blob driver that, once GC has listed the store, waits for a push on
/// another node to finish (at most `wait`) before GC goes on to delete.
struct PauseAfterList {
    inner: Arc<dyn BlobDriver>,
    listed: tokio::sync::mpsc::UnboundedSender<()>,
    pushed: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    wait: Duration,
}

#[async_trait::async_trait]
impl BlobDriver for PauseAfterList {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn ready(&self) -> Result<(), BlobError> {
        self.inner.ready().await
    }
    async fn stat(&self, d: &Digest) -> Result<Option<BlobStat>, BlobError> {
        self.inner.stat(d).await
    }
    async fn read(&self, d: &Digest, o: u64, l: Option<u64>) -> Result<BlobStream, BlobError> {
        self.inner.read(d, o, l).await
    }
    async fn delete(&self, d: &Digest) -> Result<bool, BlobError> {
        self.inner.delete(d).await
    }
    async fn list(
        &self,
        visit: &mut (dyn FnMut(Digest, BlobStat) + Send),
    ) -> Result<(), BlobError> {
        self.inner.list(visit).await?;
        let _ = self.listed.send(());
        // GC drives the driver from a blocking thread.
        let _ = self.pushed.lock().unwrap().recv_timeout(self.wait);
        Ok(())
    }
    async fn put(&self, d: &Digest) -> Result<Box<dyn BlobWriter>, BlobError> {
        self.inner.put(d).await
    }
    async fn create_upload(&self, repo: &str, owner: &str) -> Result<UploadInfo, BlobError> {
        self.inner.create_upload(repo, owner).await
    }
    async fn upload_info(&self, id: &Uuid) -> Result<Option<UploadInfo>, BlobError> {
        self.inner.upload_info(id).await
    }
    async fn resume_upload(&self, id: &Uuid) -> Result<Box<dyn BlobWriter>, BlobError> {
        self.inner.resume_upload(id).await
    }
    async fn cancel_upload(&self, id: &Uuid) -> Result<bool, BlobError> {
        self.inner.cancel_upload(id).await
    }
    async fn list_uploads(&self) -> Result<Vec<UploadInfo>, BlobError> {
        self.inner.list_uploads().await
    }
}

/// A layer left behind (pushed, then unlinked: GC would remove it) is
/// pushed again on node B, with a manifest naming it, exactly while a GC
/// on node A has listed the store and is about to delete. B's commit
/// must wait for the whole GC, so the layer B's manifest names is there
/// afterwards.
async fn gc_racing_a_push(shared: Shared) {
    let repo = Name::parse("team/app").unwrap();
    let b = node(&shared, 1).await;
    let layer = data(100_000, 9);
    let ld = Digest::sha256_of(&layer);
    b.registry.put_blob(&repo, &ld, &layer[..]).await.unwrap();
    let r = b.registry.clone();
    let (repo2, ld2) = (repo.clone(), ld.clone());
    tokio::task::spawn_blocking(move || r.delete_blob(&repo2, &ld2).unwrap())
        .await
        .unwrap();
    // The grace period is zero: the layer is older than the GC's start.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let store = Store::open(shared.dir(0), &shared.blobs, &shared.metadata).unwrap();
    let (listed_tx, mut listed) = tokio::sync::mpsc::unbounded_channel();
    let (pushed, pushed_rx) = std::sync::mpsc::channel();
    let store = Arc::new(Store {
        root: store.root.clone(),
        blobs: Arc::new(PauseAfterList {
            inner: store.blobs.clone(),
            listed: listed_tx,
            pushed: std::sync::Mutex::new(pushed_rx),
            wait: Duration::from_secs(3),
        }),
        meta: store.meta.clone(),
    });
    let gc = tokio::spawn(registry::gc_store(
        store,
        GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
        },
    ));
    listed.recv().await.expect("GC lists the store");
    let config = b"{}";
    let cd = Digest::sha256_of(config);
    b.registry.put_blob(&repo, &ld, &layer[..]).await.unwrap();
    b.registry.put_blob(&repo, &cd, &config[..]).await.unwrap();
    let body = image_manifest(&cd, config.len(), &ld, layer.len());
    let md = b
        .registry
        .put_manifest(
            &repo,
            &Reference::Tag(Tag::parse("v1").unwrap()),
            Bytes::from(body),
            None,
            Origin::Push,
        )
        .await
        .unwrap();
    let _ = pushed.send(());
    let report = gc.await.unwrap().unwrap();
    assert_eq!(report.blobs_removed, 1, "{report:?}");

    // Everything the manifest names is stored and served, on both nodes.
    let a = node(&shared, 0).await;
    let c = client();
    for n in [&a, &b] {
        let r = c
            .get(format!("{}/v2/team/app/manifests/v1", n.base))
            .header("accept", common::OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["docker-content-digest"],
            md.to_string().as_str()
        );
        let got = c
            .get(format!("{}/v2/team/app/blobs/{ld}", n.base))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200, "the layer the manifest names is gone");
        assert_eq!(Digest::sha256_of(&got.bytes().await.unwrap()), ld);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gc_on_one_node_never_deletes_a_layer_a_push_on_another_references_postgres() {
    let Some(shared) = on_postgres() else {
        return;
    };
    gc_racing_a_push(shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gc_in_one_process_never_deletes_a_layer_a_push_in_another_references_sqlite() {
    gc_racing_a_push(on_sqlite()).await;
}

/// The upload keys left in the bucket for session `id` (none on the
/// filesystem, where sessions are each node's directory).
async fn session_objects(shared: &Shared, loc: &str) -> Vec<String> {
    let BlobStorage::S3(cfg) = &shared.blobs else {
        return Vec::new();
    };
    let id = loc.rsplit('/').next().unwrap();
    let d = storage::S3Blobs::new(cfg.clone()).unwrap();
    d.list_keys(&format!("_uploads/{id}/")).await.unwrap()
}

/// A DELETE on node A while node B still streams a PATCH of the same
/// session: A answers at once (it does not wait for B's request), and
/// when B's body ends its save finds the session gone: B answers 404
/// and the session does not come back on either node, nor can a PUT
/// finish it. Before the session state was a compare-and-swap in the
/// metadata store, B's save wrote it back (`_uploads/<id>/info`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cancelled_on_one_node_while_another_streams_a_patch_stays_cancelled() {
    let Some(shared) = on_postgres() else {
        return;
    };
    let (a, b) = (node(&shared, 0).await, node(&shared, 1).await);
    let c = client();
    let r = c
        .post(format!("{}/v2/team/app/blobs/uploads/", a.base))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    // A part and a tail saved first (on S3), so the cancel has a
    // multipart upload and objects to remove.
    let blob = data(9 << 20, 7);
    let cut = 6 << 20;
    let r = c
        .patch(format!("{}{loc}", a.base))
        .header("content-range", format!("0-{}", cut - 1))
        .body(blob[..cut].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    // B's PATCH streams a few pieces, then holds the rest until the DELETE
    // has answered: the request is mid-stream at the cancel however fast or
    // slow the machine, and a DELETE that waited for it would never answer.
    let rest = blob[cut..].to_vec();
    let step = rest.len().div_ceil(25);
    let pieces: Vec<Bytes> = rest.chunks(step).map(Bytes::copy_from_slice).collect();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (release, held) = tokio::sync::watch::channel(false);
    let body = {
        let sent = sent.clone();
        futures::stream::iter(pieces.into_iter().enumerate()).then(move |(i, piece)| {
            let (sent, mut held) = (sent.clone(), held.clone());
            async move {
                if i == 3 {
                    held.wait_for(|go| *go).await.ok();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, std::io::Error>(piece)
            }
        })
    };
    let patch = tokio::spawn(
        c.patch(format!("{}{loc}", b.base))
            .header("content-range", format!("{cut}-{}", blob.len() - 1))
            .header("content-length", rest.len().to_string())
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sent.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the PATCH never streamed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!patch.is_finished(), "the held PATCH ended early");
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        c.delete(format!("{}{loc}", a.base)).send(),
    )
    .await
    .expect("the DELETE waited for the PATCH on the other node")
    .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!patch.is_finished(), "the PATCH ended before the DELETE");
    for n in [&a, &b] {
        let r = c.get(format!("{}{loc}", n.base)).send().await.unwrap();
        assert_eq!(r.status(), 404, "cancelled, yet known at {}", n.base);
    }
    release.send(true).unwrap();
    let r = patch.await.unwrap().unwrap();
    assert_eq!(r.status(), 404, "{}", r.text().await.unwrap());
    assert!(
        r.text().await.unwrap().contains("BLOB_UPLOAD_UNKNOWN"),
        "the PATCH's error names the unknown upload"
    );
    for n in [&a, &b] {
        let r = c.get(format!("{}{loc}", n.base)).send().await.unwrap();
        assert_eq!(r.status(), 404, "the session came back at {}", n.base);
    }
    let d = Digest::sha256_of(&blob);
    let r = c
        .put(format!("{}{loc}?digest={d}", b.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "{}", r.text().await.unwrap());
    let r = c
        .get(format!("{}/v2/team/app/blobs/{d}", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a blob of the cancelled session");
    let left = session_objects(&shared, &loc).await;
    assert!(left.is_empty(), "left in the bucket: {left:?}");
}

/// Chunks of one upload alternate between two nodes, each crossing part
/// boundaries (on S3), and the PUT lands on a third request's node: the
/// blob is whole, and each node saw where the other left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_alternating_between_two_nodes_works() {
    let Some(shared) = on_postgres() else {
        return;
    };
    let (a, b) = (node(&shared, 0).await, node(&shared, 1).await);
    let c = client();
    let blob = data((13 << 20) + 777, 11);
    let d = Digest::sha256_of(&blob);
    let r = c
        .post(format!("{}/v2/team/app/blobs/uploads/", b.base))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let cuts = [0, 1 << 20, 4 << 20, (6 << 20) + 3, 11 << 20, blob.len() - 5];
    for (i, w) in cuts.windows(2).enumerate() {
        let (n, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let r = c
            .patch(format!("{}{loc}", n.base))
            .header("content-range", format!("{}-{}", w[0], w[1] - 1))
            .body(blob[w[0]..w[1]].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let r = c.get(format!("{}{loc}", other.base)).send().await.unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(
            r.headers()["range"].to_str().unwrap(),
            format!("0-{}", w[1] - 1)
        );
    }
    let last = cuts[cuts.len() - 1];
    let r = c
        .put(format!("{}{loc}?digest={d}", a.base))
        .body(blob[last..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    for n in [&a, &b] {
        let got = c
            .get(format!("{}/v2/team/app/blobs/{d}", n.base))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(Digest::sha256_of(&got.bytes().await.unwrap()), d);
        let r = c.get(format!("{}{loc}", n.base)).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
    let left = session_objects(&shared, &loc).await;
    assert!(left.is_empty(), "left in the bucket: {left:?}");
}

fn body(b: &[u8]) -> storage::ByteStream<'static> {
    let b = Bytes::copy_from_slice(b);
    Box::pin(futures::stream::iter([Ok(b)]))
}

/// The driver, beneath the registry's locks (as when a lock holder's
/// connection died and another node took the lock mid-request): two
/// writers resume one saved state on two nodes; the first save wins and
/// the second is refused (`UploadChanged`) without changing what was
/// saved. A writer whose session was cancelled meanwhile is refused
/// (`UploadUnknown`), and neither its save nor its commit brings the
/// session back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_from_a_stale_or_cancelled_state_changes_nothing() {
    let Some(shared) = on_postgres() else {
        return;
    };
    // The filesystem driver keeps its sessions in one host's directory.
    if !matches!(shared.blobs, BlobStorage::S3(_)) {
        eprintln!("no S3 server: skipped");
        return;
    }
    let one = Store::open(shared.dir(0), &shared.blobs, &shared.metadata).unwrap();
    let two = Store::open(shared.dir(1), &shared.blobs, &shared.metadata).unwrap();
    let (x, y) = (one.blobs.clone(), two.blobs.clone());
    let info = x.create_upload("team/app", "alice").await.unwrap();
    let mut w1 = x.resume_upload(&info.id).await.unwrap();
    let mut w2 = y.resume_upload(&info.id).await.unwrap();
    w1.append(body(b"first "), None).await.1.unwrap();
    w2.append(body(b"second, longer "), None).await.1.unwrap();
    w1.save().await.unwrap();
    match w2.save().await {
        Err(BlobError::UploadChanged) => {}
        other => panic!("a save from a stale state: {:?}", other.err()),
    }
    drop(w2);
    assert_eq!(y.upload_info(&info.id).await.unwrap().unwrap().len, 6);

    // Resumed afresh, the loser goes on from the winner's bytes.
    let mut w3 = y.resume_upload(&info.id).await.unwrap();
    assert_eq!(w3.offset(), 6);
    w3.append(body(b"third"), None).await.1.unwrap();
    let mut w4 = x.resume_upload(&info.id).await.unwrap();
    w4.append(body(b"third"), None).await.1.unwrap();
    assert!(x.cancel_upload(&info.id).await.unwrap());
    match w3.save().await {
        Err(BlobError::UploadUnknown) => {}
        other => panic!("a save after a cancel: {:?}", other.err()),
    }
    let want = Digest::sha256_of(b"first third");
    match w4.commit(&want).await {
        Err(BlobError::UploadUnknown) => {}
        other => panic!("a commit after a cancel: {other:?}"),
    }
    for s in [&x, &y] {
        assert!(s.upload_info(&info.id).await.unwrap().is_none());
        assert!(s.stat(&want).await.unwrap().is_none());
        assert!(
            s.list_uploads()
                .await
                .unwrap()
                .iter()
                .all(|u| u.id != info.id)
        );
    }
}

/// An idle session with a part and a tail (on S3) is expired by the
/// housekeeping of a node that never served it: gone on both nodes, and
/// nothing of it left in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_upload_is_expired_with_everything_it_stored() {
    let Some(shared) = on_postgres() else {
        return;
    };
    // Kept, not only its address: the node lives as long as its registry.
    let a_node = expiring_node(&shared, 0, Duration::from_secs(1)).await;
    let a = a_node.base.clone();
    let b = node(&shared, 1).await;
    let c = client();
    let r = c
        .post(format!("{}/v2/team/app/blobs/uploads/", b.base))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = c
        .patch(format!("{}{loc}", b.base))
        .body(data((5 << 20) + 100, 13))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    if matches!(shared.blobs, BlobStorage::S3(_)) {
        assert!(!session_objects(&shared, &loc).await.is_empty());
    }
    // A status GET reads, and does not keep the session alive.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.get(format!("{}{loc}", b.base)).send().await.unwrap();
        if r.status() == 404 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = c.get(format!("{a}{loc}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let left = session_objects(&shared, &loc).await;
    assert!(left.is_empty(), "left in the bucket: {left:?}");
}

/// Objects of a session whose row is gone (its node died between
/// removing the row and the objects, or a session kept as objects before
/// the metadata store held them) are swept by a node's housekeeping once
/// idle for the expiry; a live session's objects are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_ended_session_left_in_the_bucket_is_swept() {
    let Some(shared) = on_postgres() else {
        return;
    };
    if !matches!(shared.blobs, BlobStorage::S3(_)) {
        eprintln!("no S3 server: skipped");
        return;
    }
    let b = node(&shared, 1).await;
    let c = client();
    let mut locs = Vec::new();
    for seed in [21, 22] {
        let r = c
            .post(format!("{}/v2/team/app/blobs/uploads/", b.base))
            .send()
            .await
            .unwrap();
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let r = c
            .patch(format!("{}{loc}", b.base))
            .body(data((5 << 20) + 100, seed))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        assert!(!session_objects(&shared, &loc).await.is_empty());
        locs.push(loc);
    }
    // The first session's row goes, its objects stay (as after a crash).
    let (_, sessions) = shared
        .metadata
        .open_meta_and_uploads(shared.dir(2))
        .unwrap();
    let id: Uuid = locs[0].rsplit('/').next().unwrap().parse().unwrap();
    assert!(sessions.delete(&id).await.unwrap().is_some());
    // A node whose expiry is long enough for the live session to stay.
    let _a = expiring_node(&shared, 0, Duration::from_secs(2)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !session_objects(&shared, &locs[0]).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "never swept");
        // The live one is kept busy (an empty PATCH saves it), so it is
        // never idle for the expiry.
        let r = c
            .patch(format!("{}{}", b.base, locs[1]))
            .body(Vec::new())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "the live session was removed");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = c
        .get(format!("{}{}", b.base, locs[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "the live session was removed");
    assert!(!session_objects(&shared, &locs[1]).await.is_empty());
}
