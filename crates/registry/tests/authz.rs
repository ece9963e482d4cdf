//! Authorization of every `/v2` route. A test-only edge middleware turns
//! `Authorization` headers into an `auth::Principal` (Basic → login,
//! Bearer → token, none → anonymous) and adds a `Challenge`, as the real
//! edge does; then a table of identities × actions × repositories asserts
//! the exact answer of each cell and, for refused writes, that nothing
//! changed.

mod common;

use auth::{AccessControl, Action, Binding, Challenge, Principal, Scope, Settings, Subject};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use common::{OCI_MANIFEST, image_manifest};
use oci::{Digest, Name, Reference};
use registry::{Options, Origin, Registry, RouteInfo};
use reqwest::{Client, RequestBuilder};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const A: &str = "team-a/app";
const B: &str = "team-b/app";
const P: &str = "public/base";
const REPOS: [&str; 3] = [A, B, P];
const PASSWORD: &str = "correct horse battery";
const REALM: &str = "http://127.0.0.1/token";

// --- the test edge ---

/// What the test edge middleware needs.
#[derive(Clone)]
struct Edge {
    ac: AccessControl,
    /// Insert a `Challenge` (the real edge always does; without one the
    /// registry uses its default).
    challenge: bool,
}

async fn edge(State(e): State<Edge>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let principal = match header.as_deref() {
        Some(h) if h.starts_with("Basic ") => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&h[6..])
                .unwrap();
            let raw = String::from_utf8(raw).unwrap();
            let (user, pass) = raw.split_once(':').unwrap();
            e.ac.login(user, pass, None)
        }
        Some(h) if h.starts_with("Bearer ") => e.ac.bearer(&h[7..], None),
        _ => Ok(e.ac.anonymous(None)),
    };
    let challenge = Challenge {
        realm: REALM.into(),
        service: "drydock".into(),
    };
    let mut resp = match principal {
        Ok(p) => {
            req.extensions_mut().insert(p);
            if e.challenge {
                req.extensions_mut().insert(challenge);
            }
            next.run(req).await
        }
        // Bad credentials: refused here, the registry never sees them.
        Err(_) => (
            axum::http::StatusCode::UNAUTHORIZED,
            [("www-authenticate", challenge.bearer(None, false))],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials","detail":null}]}"#,
        )
            .into_response(),
    };
    // Show the route information the registry attached (the real edge
    // writes its audit log from it).
    if let Some(i) = resp.extensions().get::<RouteInfo>().cloned() {
        let v = format!(
            "{} {} {}",
            i.route,
            i.repo.unwrap_or_default(),
            i.reference.unwrap_or_default()
        );
        resp.headers_mut()
            .insert("x-route-info", v.trim().parse().unwrap());
    }
    resp
}

// --- identities ---

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Anonymous,
    /// `rita`: pull on `team-a/*`.
    Reader,
    /// `walt`: pull and push on `team-a/*`.
    Writer,
    /// `ada`: admin on `**`.
    Admin,
    /// `robot$ci`: pull and push on `team-a/app` only.
    Robot,
    /// `robot$old`: as `ci`, expired (logs in with its secret).
    Expired,
    /// `robot$gone`: as `ci`, revoked (uses a token issued before).
    Revoked,
}

const EVERYONE: [Who; 7] = [
    Who::Anonymous,
    Who::Reader,
    Who::Writer,
    Who::Admin,
    Who::Robot,
    Who::Expired,
    Who::Revoked,
];

struct Access {
    ac: AccessControl,
    _dir: TempDir,
    ci_secret: String,
    old_secret: String,
    gone_token: String,
    /// When `robot$old` has expired.
    old_expired_at: Instant,
}

fn binding(subject: Subject, pattern: &str, actions: &[Action]) -> Binding {
    Binding {
        id: String::new(),
        subject,
        pattern: pattern.into(),
        actions: actions.to_vec(),
    }
}

fn access() -> Access {
    let dir = tempfile::tempdir().unwrap();
    let ac = AccessControl::open(
        dir.path(),
        Settings {
            bindings: vec![
                binding(Subject::User("rita".into()), "team-a/*", &[Action::Pull]),
                binding(
                    Subject::User("walt".into()),
                    "team-a/*",
                    &[Action::Pull, Action::Push],
                ),
                binding(Subject::User("ada".into()), "**", &[Action::Admin]),
                binding(Subject::Anonymous, "public/*", &[Action::Pull]),
            ],
            ..Default::default()
        },
    )
    .unwrap();
    let op = Principal::unrestricted();
    let app_rw = vec![(A.to_string(), vec![Action::Pull, Action::Push])];
    // First, so that its expiry runs out while the rest is set up.
    let old_secret = ac
        .add_robot(
            &op,
            "old",
            "expires",
            Some(time::OffsetDateTime::now_utc() + time::Duration::seconds(2)),
            &app_rw,
        )
        .unwrap();
    let old_expired_at = Instant::now() + Duration::from_millis(2100);
    for u in ["rita", "walt", "ada"] {
        ac.add_user(&op, u, PASSWORD, &[]).unwrap();
    }
    let ci_secret = ac.add_robot(&op, "ci", "", None, &app_rw).unwrap();
    let gone_secret = ac.add_robot(&op, "gone", "", None, &app_rw).unwrap();
    let gone = ac.login("robot$gone", &gone_secret, None).unwrap();
    let gone_token = ac
        .issue(
            &gone,
            &[Scope::parse("repository:team-a/app:pull,push").unwrap()],
            false,
        )
        .unwrap()
        .token;
    ac.revoke_robot(&op, "gone").unwrap();
    Access {
        ac,
        _dir: dir,
        ci_secret,
        old_secret,
        gone_token,
        old_expired_at,
    }
}

impl Access {
    fn auth(&self, who: Who, rb: RequestBuilder) -> RequestBuilder {
        match who {
            Who::Anonymous => rb,
            Who::Reader => rb.basic_auth("rita", Some(PASSWORD)),
            Who::Writer => rb.basic_auth("walt", Some(PASSWORD)),
            Who::Admin => rb.basic_auth("ada", Some(PASSWORD)),
            Who::Robot => rb.basic_auth("robot$ci", Some(&self.ci_secret)),
            Who::Expired => rb.basic_auth("robot$old", Some(&self.old_secret)),
            Who::Revoked => rb.bearer_auth(&self.gone_token),
        }
    }

    /// An access token for `user` with `scopes`.
    fn token(&self, user: &str, scopes: &[&str]) -> String {
        let p = self.ac.login(user, PASSWORD, None).unwrap();
        let scopes: Vec<Scope> = scopes.iter().map(|s| Scope::parse(s).unwrap()).collect();
        self.ac.issue(&p, &scopes, false).unwrap().token
    }
}

// --- the registry under test ---

/// What each repository holds before a test.
#[derive(Clone)]
struct Seed {
    config: (Digest, usize),
    layer: (Digest, usize),
    manifest: Digest,
    referrer: Digest,
    /// A blob linked to this repository only.
    only: Digest,
}

struct Server {
    base: String,
    registry: Registry,
    dir: TempDir,
    client: Client,
    seeds: HashMap<&'static str, Seed>,
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

async fn put_blob(reg: &Registry, repo: &str, data: &[u8]) -> (Digest, usize) {
    let d = Digest::sha256_of(data);
    reg.put_blob(&name(repo), &d, data).await.unwrap();
    (d, data.len())
}

async fn put_manifest(reg: &Registry, repo: &str, reference: &str, body: &str) -> Digest {
    let r = if reference.contains(':') {
        Reference::Digest(Digest::parse(reference).unwrap())
    } else {
        Reference::Tag(oci::Tag::parse(reference).unwrap())
    };
    reg.put_manifest(
        &name(repo),
        &r,
        body.as_bytes().to_vec().into(),
        Some(OCI_MANIFEST),
        Origin::Import,
    )
    .await
    .unwrap()
}

async fn seed(reg: &Registry, repo: &'static str) -> Seed {
    let config = put_blob(reg, repo, format!("{{\"repo\":\"{repo}\"}}").as_bytes()).await;
    let layer = put_blob(reg, repo, format!("layer of {repo}").as_bytes()).await;
    let body = image_manifest(&config.0, config.1, &layer.0, layer.1);
    let manifest = put_manifest(reg, repo, "v1", &body).await;
    let referrer_body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sig","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{manifest}","size":{}}}}}"#,
        config.0,
        config.1,
        common::LAYER,
        layer.0,
        layer.1,
        body.len()
    );
    let referrer = Digest::sha256_of(referrer_body.as_bytes());
    put_manifest(reg, repo, &referrer.to_string(), &referrer_body).await;
    let only = put_blob(reg, repo, format!("only in {repo}").as_bytes())
        .await
        .0;
    Seed {
        config,
        layer,
        manifest,
        referrer,
        only,
    }
}

/// A registry with the three repositories seeded, behind the test edge.
async fn server(access: &Access, challenge: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(Options::new(dir.path())).unwrap();
    let mut seeds = HashMap::new();
    for r in REPOS {
        seeds.insert(r, seed(&registry, r).await);
    }
    let base = serve(app(&registry, access, challenge)).await;
    Server {
        base,
        registry,
        dir,
        client: Client::builder().no_proxy().build().unwrap(),
        seeds,
    }
}

/// The registry's routes behind the test edge, observed as a whole (as
/// the server arranges them: edge refusals are counted and labelled too).
fn app(registry: &Registry, access: &Access, challenge: bool) -> Router {
    registry
        .routes()
        .layer(middleware::from_fn_with_state(
            Edge {
                ac: access.ac.clone(),
                challenge,
            },
            edge,
        ))
        .layer(registry.observe_layer())
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    fn seed(&self, repo: &str) -> &Seed {
        &self.seeds[repo]
    }
    fn linked(&self, repo: &str, d: &Digest) -> bool {
        self.registry.has_blob(Some(&name(repo)), d)
    }
    fn tag_v1(&self, repo: &str) -> Option<Digest> {
        self.registry
            .tags(&name(repo))
            .unwrap()
            .into_iter()
            .find(|(t, _)| t.as_str() == "v1")
            .map(|(_, d)| d)
    }
    async fn has_manifest(&self, repo: &str, d: &Digest) -> bool {
        self.registry
            .get_manifest(&name(repo), &Reference::Digest(d.clone()))
            .await
            .unwrap()
            .is_some()
    }
    fn upload_sessions(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("uploads"))
            .unwrap()
            .count()
    }
}

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

#[tokio::test]
async fn token_lacking_a_scope_gets_insufficient_scope() {
    let acc = access();
    let s = server(&acc, true).await;
    let c = &s.client;
    let pull_only = acc.token("walt", &["repository:team-a/app:pull"]);
    let get = |path: &str, token: &str| c.get(s.url(path)).bearer_auth(token).send();

    assert_eq!(get("/v2/", &pull_only).await.unwrap().status(), 200);
    assert_eq!(
        get("/v2/team-a/app/manifests/v1", &pull_only)
            .await
            .unwrap()
            .status(),
        200
    );
    let insufficient = |r: &reqwest::Response, scope: &str| {
        assert_eq!(r.status(), 401);
        let c = r.headers()["www-authenticate"].to_str().unwrap();
        assert_eq!(
            c,
            format!(
                "Bearer realm=\"{REALM}\",service=\"drydock\",scope=\"{scope}\",error=\"insufficient_scope\""
            )
        );
    };
    // The identity may push; the token does not say so: a new token.
    let d = Digest::sha256_of(b"pushed with a token");
    let r = c
        .post(s.url(&format!("/v2/{A}/blobs/uploads/?digest={d}")))
        .bearer_auth(&pull_only)
        .body("pushed with a token")
        .send()
        .await
        .unwrap();
    insufficient(&r, "repository:team-a/app:pull,push");
    assert!(!s.linked(A, &d));
    let r = c
        .post(s.url(&format!("/v2/{A}/blobs/uploads/")))
        .bearer_auth(&pull_only)
        .send()
        .await
        .unwrap();
    insufficient(&r, "repository:team-a/app:pull,push");
    assert_eq!(s.upload_sessions(), 0);
    // Another repository the identity may read, not in the token.
    let r = get("/v2/team-a/other/tags/list", &pull_only).await.unwrap();
    insufficient(&r, "repository:team-a/other:pull");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    // What the identity may not do at all: refused, no new token helps.
    let r = get(&format!("/v2/{B}/manifests/v1"), &pull_only)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("www-authenticate").is_none());
    let reader = acc.token("rita", &["repository:team-a/app:pull,push"]);
    let r = c
        .post(s.url(&format!("/v2/{A}/blobs/uploads/")))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("push") && msg.contains(A), "{msg}");
    // The catalog needs its own scope.
    let r = get("/v2/_catalog", &pull_only).await.unwrap();
    insufficient(&r, "registry:catalog:*");
    let listing = acc.token("walt", &["registry:catalog:*"]);
    let r = get("/v2/_catalog", &listing).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!([P, A]));
    // With the scope asked for, the push goes through.
    let push = acc.token("walt", &["repository:team-a/app:pull,push"]);
    let r = c
        .post(s.url(&format!("/v2/{A}/blobs/uploads/?digest={d}")))
        .bearer_auth(&push)
        .body("pushed with a token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(s.linked(A, &d));
}

#[tokio::test]
async fn base_challenge_and_route_info() {
    let acc = access();
    let s = server(&acc, true).await;
    let r = s.client.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        format!("Bearer realm=\"{REALM}\",service=\"drydock\"").as_str()
    );
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(r.headers()["x-route-info"], "base");
    // Refused or not, the route is described for the audit log.
    let r = s
        .client
        .delete(s.url(&format!("/v2/{A}/manifests/v1")))
        .basic_auth("walt", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-route-info"], "manifest team-a/app v1");
    let r = s
        .client
        .get(s.url(&format!("/v2/{P}/blobs/{}", s.seed(P).layer.0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-route-info"],
        format!("blob public/base {}", s.seed(P).layer.0).as_str()
    );
    let r = s.client.get(s.url("/v2/_catalog")).send().await.unwrap();
    assert_eq!(r.headers()["x-route-info"], "catalog");

    // Without a Challenge in the request the registry uses its default.
    let s = server(&acc, false).await;
    let r = s
        .client
        .get(s.url(&format!("/v2/{A}/tags/list")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"/token\",service=\"drydock\",scope=\"repository:team-a/app:pull\""
    );
}

#[tokio::test]
async fn observe_layer_over_a_merged_application() {
    let acc = access();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(Options::new(dir.path())).unwrap();
    let app = reg
        .routes()
        .merge(Router::new().route("/api/v1/ping", axum::routing::get(|| async { "pong" })))
        .layer(middleware::from_fn_with_state(
            Edge {
                ac: acc.ac.clone(),
                challenge: true,
            },
            edge,
        ))
        .layer(reg.observe_layer());
    let base = serve(app).await;
    let c = Client::builder().no_proxy().build().unwrap();
    assert_eq!(
        c.get(format!("{base}/api/v1/ping"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Refused by the edge before the registry saw it: still labelled by
    // route, still with the API version header.
    let r = c
        .get(format!("{base}/v2/{A}/manifests/v1"))
        .basic_auth("walt", Some("wrong password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    let m = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"drydock_http_requests_total{method="GET",route="api",status="200"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"drydock_http_requests_total{method="GET",route="manifest",status="401"} 1"#),
        "{m}"
    );
}

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

/// Send a request head announcing a large body, send none of it, and
/// return the status line that comes back.
fn status_without_body(base: &str, head: &str) -> String {
    let addr = base.strip_prefix("http://").unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        sock,
        "{head}\r\nHost: {addr}\r\nContent-Length: 1000000\r\nContent-Type: {OCI_MANIFEST}\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = sock
        .read(&mut buf)
        .expect("the refusal waited for the body");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_do_not_wait_for_the_body() {
    let acc = access();
    let s = server(&acc, true).await;
    let base = s.base.clone();
    let basic = |user: &str| {
        format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{PASSWORD}"))
        )
    };
    let (anon, reader) = (String::new(), basic("rita"));
    let cases = [
        (
            format!("PUT /v2/{A}/manifests/v1 HTTP/1.1"),
            anon.clone(),
            "401",
        ),
        (
            format!("PUT /v2/{A}/manifests/v1 HTTP/1.1"),
            reader.clone(),
            "403",
        ),
        (
            format!(
                "POST /v2/{A}/blobs/uploads/?digest=sha256:{} HTTP/1.1",
                "0".repeat(64)
            ),
            reader.clone(),
            "403",
        ),
    ];
    for (line, auth, want) in cases {
        let head = if auth.is_empty() {
            line.clone()
        } else {
            format!("{line}\r\n{auth}")
        };
        let b = base.clone();
        let status = tokio::task::spawn_blocking(move || status_without_body(&b, &head))
            .await
            .unwrap();
        assert!(status.contains(want), "{line}: {status}");
    }
    assert_eq!(s.tag_v1(A), Some(s.seed(A).manifest.clone()));
}
