//! A manifest is content of its repository: GET/HEAD on the blobs
//! endpoint with a manifest's digest serves the manifest's bytes.

mod common;

use common::*;
use oci::Digest;

#[tokio::test]
async fn manifest_served_through_blobs_endpoint() {
    let s = start().await;
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"layer bytes";
    let dc = s.push_blob("team/app", config).await;
    let dl = s.push_blob("team/app", layer).await;
    let body = image_manifest(&dc, config.len(), &dl, layer.len());
    let dm = Digest::sha256_of(body.as_bytes());
    let r = s.put_manifest("team/app", "v1", OCI_MANIFEST, &body).await;
    assert_eq!(r.status(), 201);
    let url = s.url(&format!("/v2/team/app/blobs/{dm}"));

    let r = s.client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], body.len().to_string());
    assert_eq!(r.headers()["docker-content-digest"], dm.to_string());

    let r = s.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], body.len().to_string());
    assert_eq!(r.headers()["docker-content-digest"], dm.to_string());
    let got = r.bytes().await.unwrap();
    assert_eq!(got.as_ref(), body.as_bytes());
    assert_eq!(Digest::sha256_of(&got), dm);

    // Ranges work as for any blob.
    let r = s
        .client
        .get(&url)
        .header("range", "bytes=2-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 2-5/{}", body.len())
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &body.as_bytes()[2..6]);

    // Ordinary blobs are unchanged.
    let r = s.get(&format!("/v2/team/app/blobs/{dl}")).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), layer);

    // Only in the manifest's own repository.
    s.push_blob("other/repo", config).await;
    let r = s.get(&format!("/v2/other/repo/blobs/{dm}")).await;
    assert_error(r, 404, "BLOB_UNKNOWN").await;

    // Gone with the manifest.
    let r = s.delete(&format!("/v2/team/app/manifests/{dm}")).await;
    assert_eq!(r.status(), 202);
    let r = s.client.get(&url).send().await.unwrap();
    assert_error(r, 404, "BLOB_UNKNOWN").await;
    let r = s.client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
