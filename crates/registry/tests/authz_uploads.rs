//! Authorization of what crosses requests and repositories: an upload
//! session belongs to whoever started it (across a restart too), and a
//! mount without `from` reaches only repositories the caller may read.

mod authz_support;
mod common;

use authz_support::*;
use oci::Digest;
use registry::{Options, Registry};
use reqwest::RequestBuilder;

#[tokio::test]
async fn upload_session_belongs_to_its_starter() {
    let acc = access();
    let s = server(&acc, true).await;
    let c = &s.client;
    let walt = |rb: RequestBuilder| rb.basic_auth("walt", Some(PASSWORD));
    let r = walt(c.post(s.url(&format!("/v2/{A}/blobs/uploads/"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = walt(c.patch(s.url(&loc)).body("hello "))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let data = b"hello world";
    let d = Digest::sha256_of(data);

    // Others, even with push on the repository (robot$ci) or admin, do
    // not see the session.
    for who in [Who::Robot, Who::Admin] {
        let tries = [
            c.get(s.url(&loc)),
            c.patch(s.url(&loc)).body("mallory"),
            c.put(s.url(&format!("{loc}?digest={d}"))).body("world"),
            c.delete(s.url(&loc)),
        ];
        for rb in tries {
            let r = acc.auth(who, rb).send().await.unwrap();
            common::assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN").await;
        }
    }
    // Who may not push is refused before the session is looked at.
    let r = acc
        .auth(Who::Reader, c.get(s.url(&loc)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The session is as walt left it, across a restart too (the owner is
    // on disk, not in memory).
    let id = loc.rsplit('/').next().unwrap();
    assert_eq!(
        std::fs::read_to_string(s.dir.path().join("uploads").join(id).join("owner")).unwrap(),
        "walt"
    );
    let reopened = Registry::open(Options::new(s.dir.path())).unwrap();
    let base2 = serve(app(&reopened, &acc, true)).await;
    let r = acc
        .auth(Who::Robot, c.get(format!("{base2}{loc}")))
        .send()
        .await
        .unwrap();
    common::assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN").await;
    let r = walt(c.get(format!("{base2}{loc}"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-5");
    let r = walt(c.put(format!("{base2}{loc}?digest={d}")).body("world"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(reopened.has_blob(Some(&name(A)), &d));
}

#[tokio::test]
async fn mount_without_from_uses_only_readable_repositories() {
    let acc = access();
    let s = server(&acc, true).await;
    let c = &s.client;
    // A blob in another team-a repository, which walt may pull.
    let (lib_blob, _) = put_blob(&s.registry, "team-a/lib", b"team-a library").await;
    let secret = s.seed(B).only.clone();
    let mount = |who: Who, d: &Digest| {
        acc.auth(
            who,
            c.post(s.url(&format!("/v2/{A}/blobs/uploads/?mount={d}"))),
        )
        .send()
    };
    // Only team-b/app has it, and walt may not read that: an upload.
    let r = mount(Who::Writer, &secret).await.unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.headers().contains_key("location"));
    assert!(!s.linked(A, &secret));
    let r = mount(Who::Writer, &lib_blob).await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(s.linked(A, &lib_blob));
    // A `from` the caller cannot read does not help either.
    let r = acc
        .auth(
            Who::Writer,
            c.post(s.url(&format!("/v2/{A}/blobs/uploads/?mount={secret}&from={B}"))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(!s.linked(A, &secret));
    // The administrator may read team-b/app.
    let r = mount(Who::Admin, &secret).await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(s.linked(A, &secret));
}
