//! Correctness under misuse: deletes that would break an image, full
//! disks, failing databases, multi-tag pushes.

mod common;

use common::*;
use oci::Name;
use registry::ErrorCode;

/// A blob that a manifest of the repository references cannot be deleted
/// (the image could no longer be pulled): 405 `UNSUPPORTED`, naming the
/// manifest and a tag. Once the manifest is gone the delete succeeds.
#[tokio::test]
async fn blob_referenced_by_a_manifest_cannot_be_deleted() {
    let s = start().await;
    let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    let layer = b"layer bytes";
    let dc = s.push_blob("team/app", config).await;
    let dl = s.push_blob("team/app", layer).await;
    let body = image_manifest(&dc, config.len(), &dl, layer.len());
    let r = s.put_manifest("team/app", "v1", OCI_MANIFEST, &body).await;
    assert_eq!(r.status(), 201);
    let md = oci::Digest::sha256_of(body.as_bytes());

    let r = s.delete(&format!("/v2/team/app/blobs/{dl}")).await;
    assert_eq!(r.status().as_u16(), 405);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["errors"][0]["code"], "UNSUPPORTED", "{e}");
    let msg = e["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains(&format!("team/app@{md}")), "{msg}");
    assert!(msg.contains("v1"), "{msg}");
    // Nothing changed: the image still pulls.
    assert_eq!(
        s.get(&format!("/v2/team/app/blobs/{dl}")).await.status(),
        200
    );
    assert_eq!(s.get("/v2/team/app/manifests/v1").await.status(), 200);

    // An untagged manifest still in the repository protects it too.
    assert_eq!(s.delete("/v2/team/app/manifests/v1").await.status(), 202);
    let repo = Name::parse("team/app").unwrap();
    let err = s.registry.delete_blob(&repo, &dc).unwrap_err();
    assert_eq!(err.code, ErrorCode::Unsupported);
    assert!(err.message.contains("untagged"), "{}", err.message);
    assert!(err.message.contains(&md.to_string()), "{}", err.message);

    // Without the manifest, the blob goes (as the conformance suite does it).
    assert_eq!(
        s.delete(&format!("/v2/team/app/manifests/{md}"))
            .await
            .status(),
        202
    );
    assert_eq!(
        s.delete(&format!("/v2/team/app/blobs/{dl}")).await.status(),
        202
    );
    assert_eq!(
        s.get(&format!("/v2/team/app/blobs/{dl}")).await.status(),
        404
    );
    s.registry.delete_blob(&repo, &dc).unwrap();
}

/// A full disk (here: an upload whose data file is `/dev/full`, where
/// every write fails with ENOSPC) answers 507 with a message saying the
/// registry's storage is full, not 500, and the session is unchanged.
#[tokio::test]
async fn a_full_disk_is_reported_as_such() {
    if !backend::embedded_only("puts /dev/full under an upload session in the data directory") {
        return;
    }
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("no /dev/full here; skipped");
        return;
    }
    let s = start().await;
    let r = s
        .client
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let id = loc.rsplit('/').next().unwrap();
    let data = s.dir.path().join("uploads").join(id).join("data");
    std::fs::remove_file(&data).unwrap();
    std::os::unix::fs::symlink("/dev/full", &data).unwrap();
    let r = s
        .client
        .patch(s.url(&loc))
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 507);
    let e: serde_json::Value = r.json().await.unwrap();
    let msg = e["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("storage is full"), "{e}");
    assert_eq!(e["errors"][0]["code"], "UNKNOWN");
    let r = s.client.get(s.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 204, "the session is still there");
}

/// `/readyz` is not ready, saying why, when free space on the data
/// directory's filesystem is below the threshold; `/metrics` reports the
/// free and total bytes.
#[tokio::test]
async fn low_free_space_in_readyz_and_metrics() {
    let s = start().await;
    assert_eq!(s.get("/readyz").await.status(), 200);
    let metrics = s.get("/metrics").await.text().await.unwrap();
    let gauge = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    let (free, total) = (
        gauge("drydock_storage_free_bytes"),
        gauge("drydock_storage_total_bytes"),
    );
    assert!(total > 0 && free <= total, "{free} of {total}");

    let dir = tempfile::tempdir().unwrap();
    let mut opts = registry::Options::new(dir.path());
    opts.min_free_bytes = Some(u64::MAX);
    let registry = registry::Registry::open(opts).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = registry.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let r = s
        .client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("storage:") && body.contains("bytes free"),
        "{body}"
    );
}
