//! Authorization of every `/v2` route: behind the test edge
//! (`authz_support`), a table of identities × actions × repositories
//! asserts the exact answer of each cell and, for refused writes, that
//! nothing changed. Tokens and challenges: `authz_challenge.rs`; upload
//! sessions and mounts: `authz_uploads.rs`.

mod authz_support;
mod common;

use authz_support::*;
use common::{OCI_MANIFEST, image_manifest};
use oci::Digest;
use std::time::Instant;

/// The repository whose blob a cross-repository cell reaches for.
fn other(repo: &str) -> &'static str {
    if repo == A { B } else { A }
}

// --- expected answers ---

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// This success status.
    Ok(u16),
    /// 401 `UNAUTHORIZED` with a bearer challenge.
    Unauth,
    /// 403 `DENIED`.
    Denied,
    /// 404 with this code.
    NotFound(&'static str),
}

use Want::{Denied as D, Unauth as U};
const OK: Want = Want::Ok(200);
const BLOB_404: Want = Want::NotFound("BLOB_UNKNOWN");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    /// GET and HEAD the manifest `v1`, GET one of its layers.
    Pull,
    Tags,
    Referrers,
    /// GET and HEAD, through this repository, a blob linked only to
    /// another one.
    CrossBlob,
    /// `POST …/blobs/uploads/?mount=D&from=R` of a layer only R holds.
    Mount,
    /// A monolithic blob upload, a session start, and a manifest `PUT` to
    /// `v1` (201, 202, 201 when allowed).
    Push,
    /// DELETE the manifest `v1` pointed to, and a blob.
    Delete,
}

/// The matrix: per identity and action, the answer in `team-a/app`,
/// `team-b/app` and `public/base` (anonymous may pull `public/*`).
const MATRIX: &[(Who, Act, [Want; 3])] = &[
    (Who::Anonymous, Act::Pull, [U, U, OK]),
    (Who::Anonymous, Act::Tags, [U, U, OK]),
    (Who::Anonymous, Act::Referrers, [U, U, OK]),
    (Who::Anonymous, Act::CrossBlob, [U, U, BLOB_404]),
    (Who::Anonymous, Act::Mount, [U, U, U]),
    (Who::Anonymous, Act::Push, [U, U, U]),
    (Who::Anonymous, Act::Delete, [U, U, U]),
    (Who::Reader, Act::Pull, [OK, D, OK]),
    (Who::Reader, Act::Tags, [OK, D, OK]),
    (Who::Reader, Act::Referrers, [OK, D, OK]),
    (Who::Reader, Act::CrossBlob, [BLOB_404, D, BLOB_404]),
    (Who::Reader, Act::Mount, [D, D, D]),
    (Who::Reader, Act::Push, [D, D, D]),
    (Who::Reader, Act::Delete, [D, D, D]),
    (Who::Writer, Act::Pull, [OK, D, OK]),
    (Who::Writer, Act::Tags, [OK, D, OK]),
    (Who::Writer, Act::Referrers, [OK, D, OK]),
    (Who::Writer, Act::CrossBlob, [BLOB_404, D, BLOB_404]),
    // May push to team-a/app but not read team-b/app: a session, no mount.
    (Who::Writer, Act::Mount, [Want::Ok(202), D, D]),
    (Who::Writer, Act::Push, [Want::Ok(201), D, D]),
    (Who::Writer, Act::Delete, [D, D, D]),
    (Who::Admin, Act::Pull, [OK, OK, OK]),
    (Who::Admin, Act::Tags, [OK, OK, OK]),
    (Who::Admin, Act::Referrers, [OK, OK, OK]),
    // Even an administrator reads a blob only through a repository that
    // links it.
    (Who::Admin, Act::CrossBlob, [BLOB_404, BLOB_404, BLOB_404]),
    (
        Who::Admin,
        Act::Mount,
        [Want::Ok(201), Want::Ok(201), Want::Ok(201)],
    ),
    (
        Who::Admin,
        Act::Push,
        [Want::Ok(201), Want::Ok(201), Want::Ok(201)],
    ),
    (
        Who::Admin,
        Act::Delete,
        [Want::Ok(202), Want::Ok(202), Want::Ok(202)],
    ),
    (Who::Robot, Act::Pull, [OK, D, OK]),
    (Who::Robot, Act::Tags, [OK, D, OK]),
    (Who::Robot, Act::Referrers, [OK, D, OK]),
    (Who::Robot, Act::CrossBlob, [BLOB_404, D, BLOB_404]),
    (Who::Robot, Act::Mount, [Want::Ok(202), D, D]),
    (Who::Robot, Act::Push, [Want::Ok(201), D, D]),
    (Who::Robot, Act::Delete, [D, D, D]),
    (Who::Expired, Act::Pull, [U, U, U]),
    (Who::Expired, Act::Tags, [U, U, U]),
    (Who::Expired, Act::Referrers, [U, U, U]),
    (Who::Expired, Act::CrossBlob, [U, U, U]),
    (Who::Expired, Act::Mount, [U, U, U]),
    (Who::Expired, Act::Push, [U, U, U]),
    (Who::Expired, Act::Delete, [U, U, U]),
    (Who::Revoked, Act::Pull, [U, U, U]),
    (Who::Revoked, Act::Tags, [U, U, U]),
    (Who::Revoked, Act::Referrers, [U, U, U]),
    (Who::Revoked, Act::CrossBlob, [U, U, U]),
    (Who::Revoked, Act::Mount, [U, U, U]),
    (Who::Revoked, Act::Push, [U, U, U]),
    (Who::Revoked, Act::Delete, [U, U, U]),
];

/// What `_catalog` lists for each identity (`None`: 401).
fn catalog_of(who: Who) -> Option<Vec<&'static str>> {
    match who {
        Who::Anonymous => Some(vec![P]),
        Who::Reader | Who::Writer | Who::Robot => Some(vec![P, A]),
        Who::Admin => Some(vec![P, A, B]),
        Who::Expired | Who::Revoked => None,
    }
}

/// The scope a refusal of `act` on `repo` asks the client to get.
fn scope_of(act: Act, repo: &str) -> String {
    let actions = match act {
        Act::Pull | Act::Tags | Act::Referrers | Act::CrossBlob => "pull",
        Act::Mount | Act::Push => "pull,push",
        Act::Delete => "delete",
    };
    format!("repository:{repo}:{actions}")
}

/// Assert one response against `want`. `scope`: the scope the challenge
/// of a 401 must name (`None`: it names none).
async fn check(r: reqwest::Response, want: Want, scope: Option<&str>, ctx: &str) {
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()
            .get("docker-distribution-api-version")
            .map(|v| v.to_str().unwrap()),
        Some("registry/2.0"),
        "{ctx}"
    );
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.text().await.unwrap();
    let code = || -> String {
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{ctx}: body {body:?} is not JSON: {e}"));
        v["errors"][0]["code"].as_str().unwrap_or("").to_string()
    };
    match want {
        Want::Ok(s) => assert_eq!(status, s, "{ctx}: {body}"),
        Want::Unauth => {
            assert_eq!(status, 401, "{ctx}: {body}");
            assert_eq!(code(), "UNAUTHORIZED", "{ctx}");
            let c = challenge.unwrap_or_else(|| panic!("{ctx}: 401 without a challenge"));
            assert!(
                c.starts_with(&format!("Bearer realm=\"{REALM}\",service=\"drydock\"")),
                "{ctx}: {c}"
            );
            match scope {
                Some(s) => assert!(c.contains(&format!(",scope=\"{s}\"")), "{ctx}: {c}"),
                None => assert!(!c.contains("scope="), "{ctx}: {c}"),
            }
            assert!(!c.contains("insufficient_scope"), "{ctx}: {c}");
        }
        Want::Denied => {
            assert_eq!(status, 403, "{ctx}: {body}");
            assert!(challenge.is_none(), "{ctx}");
            assert_eq!(code(), "DENIED", "{ctx}");
        }
        Want::NotFound(c) => {
            assert_eq!(status, 404, "{ctx}: {body}");
            assert_eq!(code(), c, "{ctx}");
        }
    }
}

/// Run one cell and assert its answer and, for refusals, that nothing
/// changed.
async fn cell(s: &Server, acc: &Access, who: Who, act: Act, repo: &'static str, want: Want) {
    let ctx = format!("{who:?} {act:?} {repo}");
    // A 401 from the registry names the scope; one from the edge (bad
    // credentials) names none.
    let scope = (who == Who::Anonymous).then(|| scope_of(act, repo));
    let scope = scope.as_deref();
    let c = &s.client;
    let seed = s.seed(repo).clone();
    let refused = matches!(want, Want::Unauth | Want::Denied);
    match act {
        Act::Pull => {
            let path = format!("/v2/{repo}/manifests/v1");
            let r = acc
                .auth(who, c.get(s.url(&path)).header("accept", OCI_MANIFEST))
                .send()
                .await
                .unwrap();
            if want == OK {
                assert_eq!(
                    r.headers()["docker-content-digest"],
                    seed.manifest.to_string().as_str(),
                    "{ctx}"
                );
            }
            check(r, want, scope, &ctx).await;
            let r = acc.auth(who, c.head(s.url(&path))).send().await.unwrap();
            assert_eq!(r.status(), status_of(want), "{ctx} HEAD");
            let r = acc
                .auth(
                    who,
                    c.get(s.url(&format!("/v2/{repo}/blobs/{}", seed.layer.0))),
                )
                .send()
                .await
                .unwrap();
            if want == OK {
                assert_eq!(
                    r.headers()["content-length"],
                    seed.layer.1.to_string().as_str()
                );
            }
            check(r, want, scope, &format!("{ctx} layer")).await;
        }
        Act::Tags => {
            let r = acc
                .auth(who, c.get(s.url(&format!("/v2/{repo}/tags/list"))))
                .send()
                .await
                .unwrap();
            if want == OK {
                let v: serde_json::Value = r.json().await.unwrap();
                assert_eq!(v["tags"], serde_json::json!(["v1"]), "{ctx}");
            } else {
                check(r, want, scope, &ctx).await;
            }
        }
        Act::Referrers => {
            let r = acc
                .auth(
                    who,
                    c.get(s.url(&format!("/v2/{repo}/referrers/{}", seed.manifest))),
                )
                .send()
                .await
                .unwrap();
            if want == OK {
                let v: serde_json::Value = r.json().await.unwrap();
                assert_eq!(
                    v["manifests"][0]["digest"],
                    seed.referrer.to_string().as_str(),
                    "{ctx}"
                );
                assert_eq!(v["manifests"].as_array().unwrap().len(), 1, "{ctx}");
            } else {
                check(r, want, scope, &ctx).await;
            }
        }
        Act::CrossBlob => {
            let foreign = s.seed(other(repo)).only.clone();
            assert!(!s.linked(repo, &foreign));
            let path = format!("/v2/{repo}/blobs/{foreign}");
            let r = acc.auth(who, c.get(s.url(&path))).send().await.unwrap();
            check(r, want, scope, &ctx).await;
            let r = acc.auth(who, c.head(s.url(&path))).send().await.unwrap();
            assert_eq!(r.status(), status_of(want), "{ctx} HEAD");
        }
        Act::Mount => {
            let from = other(repo);
            let d = s.seed(from).layer.0.clone();
            let sessions = s.upload_sessions();
            let r = acc
                .auth(
                    who,
                    c.post(s.url(&format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}"))),
                )
                .send()
                .await
                .unwrap();
            let location = r.headers().get("location").cloned();
            check(r, want, scope, &ctx).await;
            match want {
                Want::Ok(201) => assert!(s.linked(repo, &d), "{ctx}: not mounted"),
                Want::Ok(202) => {
                    assert!(!s.linked(repo, &d), "{ctx}: mounted without pull on {from}");
                    assert!(location.is_some(), "{ctx}: no session");
                    assert_eq!(s.upload_sessions(), sessions + 1, "{ctx}");
                }
                _ => {
                    assert!(!s.linked(repo, &d), "{ctx}: mounted");
                    assert_eq!(s.upload_sessions(), sessions, "{ctx}: session started");
                }
            }
        }
        Act::Push => {
            let sessions = s.upload_sessions();
            let data = format!("pushed by {who:?} to {repo}");
            let d = Digest::sha256_of(data.as_bytes());
            let r = acc
                .auth(
                    who,
                    c.post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
                        .body(data.clone()),
                )
                .send()
                .await
                .unwrap();
            check(r, want, scope, &format!("{ctx} blob")).await;
            let r = acc
                .auth(who, c.post(s.url(&format!("/v2/{repo}/blobs/uploads/"))))
                .send()
                .await
                .unwrap();
            let session_want = if refused { want } else { Want::Ok(202) };
            check(r, session_want, scope, &format!("{ctx} session")).await;
            // Only blobs the repository has: without the check, this push
            // would succeed and move `v1`.
            let body = image_manifest(&seed.config.0, seed.config.1, &seed.layer.0, seed.layer.1)
                .replacen(
                    '{',
                    &format!("{{\"annotations\":{{\"by\":\"{who:?}\"}},"),
                    1,
                );
            let r = acc
                .auth(
                    who,
                    c.put(s.url(&format!("/v2/{repo}/manifests/v1")))
                        .header("content-type", OCI_MANIFEST)
                        .body(body.clone()),
                )
                .send()
                .await
                .unwrap();
            check(r, want, scope, &format!("{ctx} manifest")).await;
            if refused {
                assert!(!s.linked(repo, &d), "{ctx}: blob linked");
                assert_eq!(
                    s.tag_v1(repo),
                    Some(seed.manifest.clone()),
                    "{ctx}: v1 moved"
                );
                assert_eq!(s.upload_sessions(), sessions, "{ctx}: session started");
            } else {
                assert!(s.linked(repo, &d), "{ctx}");
                assert_eq!(
                    s.tag_v1(repo),
                    Some(Digest::sha256_of(body.as_bytes())),
                    "{ctx}"
                );
            }
        }
        Act::Delete => {
            let r = acc
                .auth(
                    who,
                    c.delete(s.url(&format!("/v2/{repo}/manifests/{}", seed.manifest))),
                )
                .send()
                .await
                .unwrap();
            check(r, want, scope, &format!("{ctx} manifest")).await;
            let r = acc
                .auth(
                    who,
                    c.delete(s.url(&format!("/v2/{repo}/blobs/{}", seed.only))),
                )
                .send()
                .await
                .unwrap();
            check(r, want, scope, &format!("{ctx} blob")).await;
            assert_eq!(s.has_manifest(repo, &seed.manifest).await, refused, "{ctx}");
            assert_eq!(s.linked(repo, &seed.only), refused, "{ctx}");
        }
    }
}

fn status_of(want: Want) -> u16 {
    match want {
        Want::Ok(s) => s,
        Want::Unauth => 401,
        Want::Denied => 403,
        Want::NotFound(_) => 404,
    }
}

/// Every repository `_catalog` lists, following `Link` pages of `n`.
async fn catalog_pages(s: &Server, acc: &Access, who: Who, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut path = format!("/v2/_catalog?n={n}");
    for _ in 0..10 {
        let r = acc
            .auth(who, s.client.get(s.url(&path)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let link = r
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string());
        let v: serde_json::Value = r.json().await.unwrap();
        let page: Vec<String> = serde_json::from_value(v["repositories"].clone()).unwrap();
        assert!(page.len() <= n);
        out.extend(page);
        match link {
            Some(l) => {
                path = l
                    .strip_prefix('<')
                    .and_then(|l| l.split_once('>'))
                    .unwrap()
                    .0
                    .to_string()
            }
            None => return out,
        }
    }
    panic!("catalog paging does not end");
}

#[tokio::test]
async fn matrix_of_identities_actions_and_repositories() {
    let acc = access();
    let mut servers = Vec::new();
    for who in EVERYONE {
        servers.push((who, server(&acc, true).await));
    }
    // `robot$old` must have expired before it is used.
    tokio::time::sleep(acc.old_expired_at.saturating_duration_since(Instant::now())).await;
    let mut cells = 0;
    for (who, s) in &servers {
        let who = *who;
        // The catalog first: later cells create repositories' content.
        let r = acc
            .auth(who, s.client.get(s.url("/v2/_catalog")))
            .send()
            .await
            .unwrap();
        match catalog_of(who) {
            Some(list) => {
                assert_eq!(r.status(), 200, "{who:?} catalog");
                let v: serde_json::Value = r.json().await.unwrap();
                assert_eq!(v["repositories"], serde_json::json!(list), "{who:?}");
                assert_eq!(catalog_pages(s, &acc, who, 1).await, list, "{who:?}");
                cells += 1;
            }
            None => check(r, Want::Unauth, None, &format!("{who:?} catalog")).await,
        }
        // `GET /v2/`: any authenticated identity; anonymous learns where
        // to get a token.
        let r = acc
            .auth(who, s.client.get(s.url("/v2/")))
            .send()
            .await
            .unwrap();
        let want = match who {
            Who::Anonymous | Who::Expired | Who::Revoked => Want::Unauth,
            _ => OK,
        };
        check(r, want, None, &format!("{who:?} base")).await;
        for &(w, act, wants) in MATRIX.iter().filter(|(w, ..)| *w == who) {
            for (repo, want) in REPOS.into_iter().zip(wants) {
                cell(s, &acc, w, act, repo, want).await;
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 5 + 7 * 7 * 3);
}
