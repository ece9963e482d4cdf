//! The S3 blob driver against a real SeaweedFS on loopback: chunked
//! uploads resumed by another registry process, verification before
//! visibility, cancel, GC by object time, presigned redirects.

mod common;

use common::{OCI_MANIFEST, image_manifest, s3};
use oci::Digest;
use registry::{BlobStorage, GcOptions, Options, Registry, S3Config};
use reqwest::{Client, StatusCode};
use std::time::Duration;
use storage::BlobDriver;

struct Node {
    base: String,
    registry: Registry,
}

async fn node(dir: &std::path::Path, cfg: &S3Config) -> Node {
    let mut opts = Options::new(dir);
    opts.blobs = BlobStorage::S3(cfg.clone());
    let (addr, registry) = common::serve(opts).await;
    Node {
        base: format!("http://{addr}"),
        registry,
    }
}

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Every blob under the test's prefix, through a driver of its own.
async fn keys(cfg: &S3Config) -> Vec<String> {
    let d = storage::S3Blobs::new(cfg.clone()).unwrap();
    let mut out = vec![];
    d.list(&mut |d, _| out.push(d.to_string())).await.unwrap();
    out
}

/// Every upload session, as the metadata store (the nodes' shared
/// `meta.db` in `dir`) keeps them.
async fn sessions(dir: &std::path::Path) -> Vec<String> {
    let (_, s) = storage::MetadataStorage::Sqlite
        .open_meta_and_uploads(dir)
        .unwrap();
    let all = s.list().await.unwrap();
    all.iter().map(|u| u.id.to_string()).collect()
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
async fn chunked_upload_moves_between_nodes_and_verifies_before_visible() {
    if !s3::available() {
        return;
    }
    let server = s3::start();
    let mut cfg = s3::config(server.endpoint.clone());
    cfg.part_size = 5 << 20;
    // Two registries on one bucket (and, for now, one metadata file).
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), &cfg).await;
    let b = node(dir.path(), &cfg).await;
    let c = client();
    // 12 MiB + a bit: two whole parts, and a tail saved between requests.
    let blob = data((12 << 20) + 12345, 1);
    let d = Digest::sha256_of(&blob);
    let r = c
        .post(format!("{}/v2/t/app/blobs/uploads/", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let cuts = [0usize, 3 << 20, 9 << 20, blob.len() - 100];
    for (i, w) in cuts.windows(2).enumerate() {
        let n = if i % 2 == 0 { &a } else { &b };
        let r = c
            .patch(format!("{}{loc}", n.base))
            .header("content-range", format!("{}-{}", w[0], w[1] - 1))
            .body(blob[w[0]..w[1]].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        assert_eq!(
            r.headers()["range"].to_str().unwrap(),
            format!("0-{}", w[1] - 1)
        );
    }
    // A wrong digest at the close: 400, nothing visible, session intact.
    let wrong = Digest::sha256_of(b"wrong");
    let last = cuts[3];
    let r = c
        .put(format!("{}{loc}?digest={wrong}", b.base))
        .body(blob[last..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(keys(&cfg).await.is_empty());
    let r = c.get(format!("{}{loc}", a.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["range"].to_str().unwrap(),
        format!("0-{}", last - 1)
    );
    // The right one, on the other node.
    let r = c
        .put(format!("{}{loc}?digest={d}", b.base))
        .body(blob[last..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(keys(&cfg).await, vec![d.to_string()]);
    assert!(sessions(dir.path()).await.is_empty());
    // Served from the store, whole and in part, by either node.
    let got = c
        .get(format!("{}/v2/t/app/blobs/{d}", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(Digest::sha256_of(&got.bytes().await.unwrap()), d);
    let part = c
        .get(format!("{}/v2/t/app/blobs/{d}", b.base))
        .header("range", "bytes=5242870-5242889")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), blob[5242870..5242890]);
    // Synchronous readers (the assessor's) read the same bytes.
    let src = a.registry.blob_source();
    let d2 = d.clone();
    let n = tokio::task::spawn_blocking(move || {
        let mut r = src.open_blob(&d2).unwrap();
        std::io::copy(&mut r, &mut std::io::sink()).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(n, blob.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monolithic_mismatch_and_cancel_leave_nothing() {
    if !s3::available() {
        return;
    }
    let server = s3::start();
    let mut cfg = s3::config(server.endpoint.clone());
    cfg.part_size = 5 << 20;
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), &cfg).await;
    let c = client();
    // Large enough for a multipart upload straight to the content address.
    let blob = data(11 << 20, 2);
    let wrong = Digest::sha256_of(b"not it");
    let r = c
        .post(format!("{}/v2/t/app/blobs/uploads/?digest={wrong}", a.base))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(keys(&cfg).await.is_empty());
    assert!(!a.registry.has_blob(None, &wrong));
    let d = Digest::sha256_of(&blob);
    let r = c
        .post(format!("{}/v2/t/app/blobs/uploads/?digest={d}", a.base))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(a.registry.has_blob(None, &d));

    // Cancel a session holding parts and a tail: every object goes.
    let r = c
        .post(format!("{}/v2/t/app/blobs/uploads/", a.base))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = c
        .patch(format!("{}{loc}", a.base))
        .body(data(7 << 20, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(sessions(dir.path()).await.len(), 1);
    let r = c.delete(format!("{}{loc}", a.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(sessions(dir.path()).await.is_empty());
    let d = storage::S3Blobs::new(cfg.clone()).unwrap();
    let left = d.list_keys("_uploads/").await.unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_on_s3_deletes_only_unreferenced_blobs_past_the_grace_period() {
    if !s3::available() {
        return;
    }
    let server = s3::start();
    let cfg = s3::config(server.endpoint.clone());
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), &cfg).await;
    let c = client();
    let push = |body: Vec<u8>| {
        let c = c.clone();
        let base = a.base.clone();
        async move {
            let d = Digest::sha256_of(&body);
            let r = c
                .post(format!("{base}/v2/t/app/blobs/uploads/?digest={d}"))
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            d
        }
    };
    let config = push(b"{}".to_vec()).await;
    let layer = push(data(1000, 4)).await;
    let orphan = push(data(1000, 5)).await;
    let m = image_manifest(&config, 2, &layer, 1000);
    let r = c
        .put(format!("{}/v2/t/app/manifests/v1", a.base))
        .header("content-type", OCI_MANIFEST)
        .body(m)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // The orphan is still linked: unlink it so only its age protects it.
    a.registry
        .delete_blob(&oci::Name::parse("t/app").unwrap(), &orphan)
        .unwrap();
    let storage = BlobStorage::S3(cfg.clone());
    let rep = registry::gc_with(
        dir.path(),
        &storage,
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(3600),
        },
    )
    .await
    .unwrap();
    assert_eq!(rep.blobs_removed, 0, "{rep:?}");
    assert_eq!(keys(&cfg).await.len(), 3);
    // SeaweedFS keeps times in seconds.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let rep = registry::gc_with(
        dir.path(),
        &storage,
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(1),
        },
    )
    .await
    .unwrap();
    assert_eq!(rep.blobs_removed, 1, "{rep:?}");
    let mut left = keys(&cfg).await;
    left.sort();
    let mut want = vec![config.to_string(), layer.to_string()];
    want.sort();
    assert_eq!(left, want);
    let r = c
        .get(format!("{}/v2/t/app/blobs/{layer}", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_hands_out_a_presigned_url() {
    if !s3::available() {
        return;
    }
    let server = s3::start();
    let mut cfg = s3::config(server.endpoint.clone());
    cfg.redirect = true;
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), &cfg).await;
    let c = client();
    let blob = data(5000, 6);
    let d = Digest::sha256_of(&blob);
    let r = c
        .post(format!("{}/v2/t/app/blobs/uploads/?digest={d}", a.base))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .get(format!("{}/v2/t/app/blobs/{d}", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let url = r.headers()["location"].to_str().unwrap().to_string();
    assert!(url.starts_with(&server.endpoint), "{url}");
    assert!(url.contains("X-Amz-Signature"), "{url}");
    assert!(!url.contains("testsecret"));
    let got = c.get(&url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), blob);
    // HEAD is answered by the registry itself.
    let r = c
        .head(format!("{}/v2/t/app/blobs/{d}", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "5000");
}
