//! Blob uploads over HTTP: monolithic and chunked pushes, resumption,
//! ranged pulls, cross-repository mounts and upload expiry, bad inputs
//! included.

mod common;

use common::*;
use oci::{Digest, Name};
use std::time::Duration;

#[tokio::test]
async fn monolithic_blob_push_and_ranged_pull() {
    let s = start().await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let d = s.push_blob("team/app", &data).await;

    let r = s.get(&format!("/v2/team/app/blobs/{d}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());
    assert_eq!(r.headers()["content-length"], "100000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);

    let r = s.head(&format!("/v2/team/app/blobs/{d}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "100000");

    let r = s
        .client
        .get(s.url(&format!("/v2/team/app/blobs/{d}")))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/100000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[10..20]);

    let r = s
        .client
        .get(s.url(&format!("/v2/team/app/blobs/{d}")))
        .header("range", "bytes=100000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */100000");

    // Not linked to another repository.
    let r = s.get(&format!("/v2/other/blobs/{d}")).await;
    assert_error(r, 404, "BLOB_UNKNOWN").await;

    // Wrong digest: rejected, nothing stored.
    let wrong = Digest::sha256_of(b"something else");
    let r = s
        .client
        .post(s.url(&format!("/v2/team/app/blobs/uploads/?digest={wrong}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "DIGEST_INVALID").await;
    assert!(!s.registry.has_blob(None, &wrong));
    assert_eq!(
        std::fs::read_dir(s.dir.path().join("tmp")).unwrap().count(),
        0
    );

    // Content-Length lies.
    let r = s
        .client
        .post(s.url(&format!("/v2/team/app/blobs/uploads/?digest={wrong}")))
        .header("content-length", "3")
        .body("abcdef")
        .send()
        .await;
    // hyper may refuse to send a mismatched body; if it went out, it failed.
    if let Ok(r) = r {
        assert!(r.status().is_client_error());
    }

    // Bad names and digests.
    let r = s.get(&format!("/v2/Team/blobs/{d}")).await;
    assert_error(r, 400, "NAME_INVALID").await;
    let r = s.get("/v2/team/app/blobs/sha256:abc").await;
    assert_error(r, 400, "DIGEST_INVALID").await;
    let r = s
        .client
        .post(s.url("/v2/team/app/blobs/uploads/?digest=md5:abc"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "DIGEST_INVALID").await;

    // sha512 works too.
    let mut h = oci::Digester::new(oci::Algorithm::Sha512);
    h.update(b"five!");
    let d512 = h.finish();
    let r = s
        .client
        .post(s.url(&format!("/v2/team/app/blobs/uploads/?digest={d512}")))
        .body("five!")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(
        s.registry
            .has_blob(Some(&Name::parse("team/app").unwrap()), &d512)
    );

    // Delete: 202 then 404.
    let r = s.delete(&format!("/v2/team/app/blobs/{d}")).await;
    assert_eq!(r.status(), 202);
    let r = s.get(&format!("/v2/team/app/blobs/{d}")).await;
    assert_error(r, 404, "BLOB_UNKNOWN").await;
    let r = s.delete(&format!("/v2/team/app/blobs/{d}")).await;
    assert_error(r, 404, "BLOB_UNKNOWN").await;
}

#[tokio::test]
async fn chunked_upload_with_resume_and_errors() {
    let s = start().await;
    let data: Vec<u8> = (0..30u8).collect();
    let d = Digest::sha256_of(&data);
    let r = s
        .client
        .post(s.url("/v2/r/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("/v2/r/blobs/uploads/"));
    assert_eq!(r.headers()["range"], "0-0");

    // Out of order first chunk: 416, nothing changes.
    let r = s
        .client
        .patch(s.url(&loc))
        .header("content-range", "10-19")
        .body(data[10..20].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);

    let r = s
        .client
        .patch(s.url(&loc))
        .header("content-range", "0-9")
        .body(data[0..10].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-9");
    let loc = r.headers()["location"].to_str().unwrap().to_string();

    // Overlapping chunk: 416, unchanged.
    let r = s
        .client
        .patch(s.url(&loc))
        .header("content-range", "5-14")
        .body(data[5..15].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    let r = s.client.get(s.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-9");

    // Streamed chunk without Content-Range.
    let r = s
        .client
        .patch(s.url(&loc))
        .body(data[10..20].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-19");

    // Wrong digest at close: 400, and the session is still resumable.
    let wrong = Digest::sha256_of(b"nope");
    let r = s
        .client
        .put(s.url(&format!("{loc}?digest={wrong}")))
        .header("content-range", "20-29")
        .body(data[20..30].to_vec())
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "DIGEST_INVALID").await;
    let r = s.client.get(s.url(&loc)).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-19");

    // Missing digest.
    let r = s.client.put(s.url(&loc)).send().await.unwrap();
    assert_error(r, 400, "DIGEST_INVALID").await;

    // Close with the final chunk.
    let r = s
        .client
        .put(s.url(&format!("{loc}?digest={d}")))
        .header("content-range", "20-29")
        .body(data[20..30].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], format!("/v2/r/blobs/{d}").as_str());
    let got = s.get(&format!("/v2/r/blobs/{d}")).await;
    assert_eq!(got.bytes().await.unwrap().as_ref(), &data[..]);
    // The session is gone.
    let r = s.client.get(s.url(&loc)).send().await.unwrap();
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN").await;

    // Unknown and malformed upload ids; a session used from another repo.
    let r = s
        .client
        .patch(s.url("/v2/r/blobs/uploads/7a4d1a1c-0000-4000-8000-000000000000"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN").await;
    let r = s.get("/v2/r/blobs/uploads/not-a-uuid").await;
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN").await;
    let r = s
        .client
        .post(s.url("/v2/r/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let other = loc.replace("/v2/r/", "/v2/q/");
    let r = s.client.get(s.url(&other)).send().await.unwrap();
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN").await;

    // Cancel.
    let r = s.client.delete(s.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = s.client.delete(s.url(&loc)).send().await.unwrap();
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN").await;

    // POST then monolithic PUT.
    let r = s
        .client
        .post(s.url("/v2/r/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let d2 = Digest::sha256_of(b"monolithic");
    let r = s
        .client
        .put(s.url(&format!("{loc}?digest={d2}")))
        .body("monolithic")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn mounts() {
    let s = start().await;
    let d = s.push_blob("src", b"shared layer").await;
    let r = s
        .client
        .post(s.url(&format!("/v2/dst/blobs/uploads/?mount={d}&from=src")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/dst/blobs/{d}").as_str()
    );
    assert_eq!(
        s.client
            .head(s.url(&format!("/v2/dst/blobs/{d}")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Unknown blob, or a source that does not have it: an upload session.
    let unknown = Digest::sha256_of(b"unknown");
    let r = s
        .client
        .post(s.url(&format!("/v2/dst2/blobs/uploads/?mount={unknown}&from=src")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.headers().contains_key("location"));
    let r = s
        .client
        .post(s.url(&format!("/v2/dst3/blobs/uploads/?mount={d}&from=nothere")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn upload_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = registry::Options::new(dir.path());
    opts.upload_expiry = Duration::from_millis(200);
    let reg = registry::Registry::open(opts).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = reg.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = c
        .post(format!("http://{addr}/v2/x/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    // The housekeeping thread expires idle sessions about once a second:
    // wait until it removed this one (watching the directory, not asking
    // the server, so the wait itself touches nothing), then it is gone.
    let uploads = dir.path().join("uploads");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&uploads).unwrap().count() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "an idle upload session was never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c.get(format!("http://{addr}{loc}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
