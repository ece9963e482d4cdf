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
