//! What the `authz*` tests share: a test-only edge middleware that turns
//! `Authorization` headers into an `auth::Principal` (Basic → login,
//! Bearer → token, none → anonymous) and adds a `Challenge`, as the real
//! edge does; the identities and their access; a registry with three
//! repositories seeded, served behind that edge on loopback.
//!
//! Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use crate::common::{self, OCI_MANIFEST, image_manifest};
use auth::{AccessControl, Action, Binding, Challenge, Principal, Scope, Settings, Subject};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use oci::{Digest, Name, Reference};
use registry::{Options, Origin, Registry, RouteInfo};
use reqwest::{Client, RequestBuilder};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const A: &str = "team-a/app";
pub const B: &str = "team-b/app";
pub const P: &str = "public/base";
pub const REPOS: [&str; 3] = [A, B, P];
pub const PASSWORD: &str = "correct horse battery";
pub const REALM: &str = "http://127.0.0.1/token";

// --- the test edge ---

/// What the test edge middleware needs.
#[derive(Clone)]
pub struct Edge {
    pub ac: AccessControl,
    /// Insert a `Challenge` (the real edge always does; without one the
    /// registry uses its default).
    pub challenge: bool,
}

pub async fn edge(State(e): State<Edge>, mut req: Request, next: Next) -> Response {
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
pub enum Who {
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

pub const EVERYONE: [Who; 7] = [
    Who::Anonymous,
    Who::Reader,
    Who::Writer,
    Who::Admin,
    Who::Robot,
    Who::Expired,
    Who::Revoked,
];

pub struct Access {
    pub ac: AccessControl,
    pub _dir: TempDir,
    pub ci_secret: String,
    pub old_secret: String,
    pub gone_token: String,
    /// When `robot$old` has expired.
    pub old_expired_at: Instant,
}

pub fn binding(subject: Subject, pattern: &str, actions: &[Action]) -> Binding {
    Binding {
        id: String::new(),
        subject,
        pattern: pattern.into(),
        actions: actions.to_vec(),
    }
}

pub fn access() -> Access {
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
    pub fn auth(&self, who: Who, rb: RequestBuilder) -> RequestBuilder {
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
    pub fn token(&self, user: &str, scopes: &[&str]) -> String {
        let p = self.ac.login(user, PASSWORD, None).unwrap();
        let scopes: Vec<Scope> = scopes.iter().map(|s| Scope::parse(s).unwrap()).collect();
        self.ac.issue(&p, &scopes, false).unwrap().token
    }
}

// --- the registry under test ---

/// What each repository holds before a test.
#[derive(Clone)]
pub struct Seed {
    pub config: (Digest, usize),
    pub layer: (Digest, usize),
    pub manifest: Digest,
    pub referrer: Digest,
    /// A blob linked to this repository only.
    pub only: Digest,
}

pub struct Server {
    pub base: String,
    pub registry: Registry,
    pub dir: TempDir,
    pub client: Client,
    pub seeds: HashMap<&'static str, Seed>,
}

pub fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

pub async fn put_blob(reg: &Registry, repo: &str, data: &[u8]) -> (Digest, usize) {
    let d = Digest::sha256_of(data);
    reg.put_blob(&name(repo), &d, data).await.unwrap();
    (d, data.len())
}

pub async fn put_manifest(reg: &Registry, repo: &str, reference: &str, body: &str) -> Digest {
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

pub async fn seed(reg: &Registry, repo: &'static str) -> Seed {
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
pub async fn server(access: &Access, challenge: bool) -> Server {
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
pub fn app(registry: &Registry, access: &Access, challenge: bool) -> Router {
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

pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    pub fn seed(&self, repo: &str) -> &Seed {
        &self.seeds[repo]
    }
    pub fn linked(&self, repo: &str, d: &Digest) -> bool {
        self.registry.has_blob(Some(&name(repo)), d)
    }
    pub fn tag_v1(&self, repo: &str) -> Option<Digest> {
        self.registry
            .tags(&name(repo))
            .unwrap()
            .into_iter()
            .find(|(t, _)| t.as_str() == "v1")
            .map(|(_, d)| d)
    }
    pub async fn has_manifest(&self, repo: &str, d: &Digest) -> bool {
        self.registry
            .get_manifest(&name(repo), &Reference::Digest(d.clone()))
            .await
            .unwrap()
            .is_some()
    }
    pub fn upload_sessions(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("uploads"))
            .unwrap()
            .count()
    }
}
