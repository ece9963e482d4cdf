//! Access control in the management API, over real HTTP on 127.0.0.1.
//!
//! A small middleware here does what the edge layer does in the server
//! (Basic → `login`, Bearer → `bearer`, the session cookie → `session`
//! with its CSRF token, else `anonymous`; CSRF checked on cookie writes),
//! so these tests also pin the contract the dashboard relies on.
//!
//! Users: `admin` (admin on `**`), `reader` (pull on `team-a/*`), `lead`
//! (admin on `team-a/**`). Images are pushed through the registry's
//! in-process API; the assessor has no workers, so they stay queued, which
//! is all the views need.

mod common;

use auth::{AccessControl, Action, Binding, Principal, Subject};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const ADMIN_PW: &str = "admin-password-1";
const READER_PW: &str = "reader-password-1";
const LEAD_PW: &str = "lead-password-1";
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Standard base64 (RFC 4648) decoding, for the Basic header.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn refuse(status: StatusCode, msg: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": "TEST_EDGE", "message": msg}})),
    )
        .into_response()
}

/// What the edge does: authenticate, put the principal (and challenge,
/// and session) into the request, refuse cookie writes without CSRF.
async fn edge(State(ac): State<AccessControl>, mut req: Request, next: Next) -> Response {
    let h = req.headers();
    let text = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut session = None;
    let principal: Principal = if let Some(authz) = text(header::AUTHORIZATION) {
        let result = if let Some(b) = authz.strip_prefix("Basic ") {
            let decoded = base64_decode(b.trim()).and_then(|d| String::from_utf8(d).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((u, p)) => ac.login(u, p, Some(LOCAL)),
                None => return refuse(StatusCode::BAD_REQUEST, "bad basic credentials"),
            }
        } else if let Some(t) = authz.strip_prefix("Bearer ") {
            ac.bearer(t.trim(), Some(LOCAL))
        } else {
            return refuse(StatusCode::BAD_REQUEST, "unknown scheme");
        };
        match result {
            Ok(p) => p,
            Err(_) => return refuse(StatusCode::UNAUTHORIZED, "bad credentials"),
        }
    } else if let Some(cookie) = text(header::COOKIE).and_then(|c| {
        c.split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == auth::SESSION_COOKIE)
            .map(|(_, v)| v.to_string())
    }) {
        match ac.session(&cookie, Some(LOCAL)) {
            Ok((p, csrf)) => {
                session = Some(csrf);
                p
            }
            Err(_) => ac.anonymous(Some(LOCAL)),
        }
    } else {
        ac.anonymous(Some(LOCAL))
    };
    if let Some(csrf) = &session {
        let safe = matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS");
        let sent = text(header::HeaderName::from_static(auth::CSRF_HEADER));
        if !safe && sent.as_deref() != Some(csrf.as_str()) {
            return refuse(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
        }
    }
    // The test says "this came over TLS" the way a proxy would.
    let scheme =
        if text(header::HeaderName::from_static("x-forwarded-proto")).as_deref() == Some("https") {
            "https"
        } else {
            "http"
        };
    let ext = req.extensions_mut();
    ext.insert(principal);
    ext.insert(auth::Challenge {
        realm: format!("{scheme}://127.0.0.1/token"),
        service: "drydock".into(),
    });
    if let Some(csrf) = session {
        ext.insert(auth::Session { csrf });
    }
    next.run(req).await
}

struct Env {
    base: String,
    http: reqwest::Client,
    ac: Option<AccessControl>,
    service: assess::Service,
    /// Digests: only in team-a/app, only in team-b/secret, in both
    /// team-a/shared and team-b/shared.
    a: String,
    b: String,
    shared: String,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy)]
enum Who {
    Anonymous,
    Reader,
    Lead,
    Admin,
}

impl Who {
    fn creds(self) -> Option<(&'static str, &'static str)> {
        match self {
            Who::Anonymous => None,
            Who::Reader => Some(("reader", READER_PW)),
            Who::Lead => Some(("lead", LEAD_PW)),
            Who::Admin => Some(("admin", ADMIN_PW)),
        }
    }
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Env {
    async fn call(&self, who: Who, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some((u, p)) = who.creds() {
            r = r.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.send(r).await
    }
    async fn send(&self, r: reqwest::RequestBuilder) -> Answer {
        let resp = r.send().await.unwrap();
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.unwrap(),
        }
    }
    async fn get(&self, who: Who, path: &str) -> Answer {
        self.call(who, Method::GET, path, None).await
    }
    fn ac(&self) -> &AccessControl {
        self.ac.as_ref().unwrap()
    }
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Push a one-layer image (distinct by `label`) into each of `repos`.
async fn push_image(registry: &registry::Registry, repos: &[&str], label: &str) -> String {
    let layer = vec![0u8; 1024]; // an empty tar archive
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"test": label}},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    for repo in repos {
        let name = oci::Name::parse(repo).unwrap();
        for (digest, body) in [(&config_digest, &config), (&layer_digest, &layer)] {
            registry
                .put_blob(&name, &oci::Digest::parse(digest).unwrap(), &body[..])
                .await
                .unwrap();
        }
        registry
            .put_manifest(
                &name,
                &oci::Reference::Tag(oci::Tag::parse("1").unwrap()),
                manifest.clone().into(),
                Some("application/vnd.oci.image.manifest.v1+json"),
                registry::Origin::Push,
            )
            .await
            .unwrap();
    }
    sha256(&manifest)
}

fn settings() -> auth::Settings {
    let bind = |subject: Subject, pattern: &str, actions: &[Action]| Binding {
        id: String::new(),
        subject,
        pattern: pattern.into(),
        actions: actions.to_vec(),
    };
    auth::Settings {
        bindings: vec![
            bind(Subject::User("reader".into()), "team-a/*", &[Action::Pull]),
            bind(Subject::User("lead".into()), "team-a/**", &[Action::Admin]),
        ],
        max_failed_logins: 5,
        ..auth::Settings::default()
    }
}

async fn start(with_access: bool) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let registry = registry::Registry::open(crate::common::registry_options(data)).unwrap();
    let handle = vulndb::Handle::open_with_interval(data, Duration::from_millis(100));
    let mut opts = crate::common::assess_options(data);
    opts.workers = 0; // images stay queued; the views need nothing more
    opts.tick = Duration::from_secs(3600);
    // Webhook receivers in these tests listen on loopback.
    opts.outbound = assess::EgressPolicy::allow_all();
    let service = assess::start_with_registry(
        opts,
        registry.clone(),
        handle,
        catalog::Limits::default(),
        Arc::new(assess::ManualClock::new()),
    )
    .await
    .unwrap();
    let a = push_image(&registry, &["team-a/app"], "a").await;
    let b = push_image(&registry, &["team-b/secret"], "b").await;
    let shared = push_image(&registry, &["team-a/shared", "team-b/shared"], "shared").await;

    let mut state = web::State::new(service.clone());
    let mut app: Router;
    let ac = if with_access {
        let ac = AccessControl::open(data, settings()).unwrap();
        ac.ensure_admin(Some(ADMIN_PW)).unwrap();
        let root = ac.as_user("admin").unwrap();
        ac.add_user(&root, "reader", READER_PW, &[]).unwrap();
        ac.add_user(&root, "lead", LEAD_PW, &[]).unwrap();
        state = state.with_access(ac.clone());
        app = web::router(state);
        app = app.layer(middleware::from_fn_with_state(ac.clone(), edge));
        Some(ac)
    } else {
        app = web::router(state);
        None
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    Env {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        ac,
        service,
        a,
        b,
        shared,
        _dir: dir,
    }
}

fn names(v: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x[key].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// The state the management endpoints change, as the admin sees it.
async fn snapshot(env: &Env) -> Value {
    let mut out = json!({});
    for p in [
        "/api/v1/users",
        "/api/v1/robots",
        "/api/v1/bindings",
        "/api/v1/tokens?owner=reader",
    ] {
        let r = env.get(Who::Admin, p).await;
        assert_eq!(r.status, 200, "{p}: {}", r.text);
        out[p] = r.json();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_endpoints_refuse_anonymous_and_non_admins() {
    let env = start(true).await;
    let ac = env.ac();
    let root = ac.as_user("admin").unwrap();
    ac.add_robot(
        &root,
        "victim",
        "",
        None,
        &[("team-a/*".into(), vec![Action::Pull])],
    )
    .unwrap();
    let binding = ac
        .add_binding(
            &root,
            Binding {
                id: String::new(),
                subject: Subject::User("reader".into()),
                pattern: "team-c/*".into(),
                actions: vec![Action::Pull],
            },
        )
        .unwrap();
    let (token_id, _) = ac.add_api_token(&root, "reader", "ci", None).unwrap();
    let before = snapshot(&env).await;

    let new_user = json!({"name": "mallory", "password": "mallory-password"});
    let new_robot =
        json!({"name": "evil", "permissions": [{"pattern": "**", "actions": ["push"]}]});
    let new_binding = json!({"subject": {"kind": "user", "name": "reader"}, "pattern": "**", "actions": ["admin"]});
    let admin_only: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/users".into(), None),
        (Method::POST, "/api/v1/users".into(), Some(new_user.clone())),
        (Method::DELETE, "/api/v1/users/lead".into(), None),
        (
            Method::PUT,
            "/api/v1/users/admin/password".into(),
            Some(json!({"password": "hijacked-pw"})),
        ),
        (
            Method::PUT,
            "/api/v1/users/reader/groups".into(),
            Some(json!({"groups": ["admins"]})),
        ),
        (Method::GET, "/api/v1/robots".into(), None),
        (
            Method::POST,
            "/api/v1/robots".into(),
            Some(new_robot.clone()),
        ),
        (Method::POST, "/api/v1/robots/victim/revoke".into(), None),
        (Method::DELETE, "/api/v1/robots/victim".into(), None),
        (Method::GET, "/api/v1/bindings".into(), None),
        (
            Method::POST,
            "/api/v1/bindings".into(),
            Some(new_binding.clone()),
        ),
        (
            Method::DELETE,
            format!("/api/v1/bindings/{}", binding.id),
            None,
        ),
        (Method::GET, "/api/v1/audit".into(), None),
    ];
    for (m, path, body) in &admin_only {
        let anon = env
            .call(Who::Anonymous, m.clone(), path, body.clone())
            .await;
        assert_eq!(anon.status, 401, "anonymous {m} {path}: {}", anon.text);
        assert_eq!(anon.json()["error"]["code"], "UNAUTHORIZED", "{path}");
        assert!(
            anon.header("www-authenticate")
                .starts_with("Bearer realm=\"http://127.0.0.1/token\""),
            "{path}: {:?}",
            anon.headers
        );
        let reader = env.call(Who::Reader, m.clone(), path, body.clone()).await;
        assert_eq!(reader.status, 403, "reader {m} {path}: {}", reader.text);
        assert_eq!(reader.json()["error"]["code"], "FORBIDDEN");
        // An admin of one team is not an administrator of the server.
        let lead = env.call(Who::Lead, m.clone(), path, body.clone()).await;
        assert_eq!(lead.status, 403, "lead {m} {path}: {}", lead.text);
    }
    // Tokens: anonymous has none; a user may not touch another's.
    for (m, path, body) in [
        (Method::GET, "/api/v1/tokens".to_string(), None),
        (Method::POST, "/api/v1/tokens".to_string(), Some(json!({}))),
        (Method::DELETE, format!("/api/v1/tokens/{token_id}"), None),
    ] {
        let anon = env.call(Who::Anonymous, m.clone(), &path, body).await;
        assert_eq!(anon.status, 401, "anonymous {m} {path}: {}", anon.text);
    }
    let r = env.get(Who::Lead, "/api/v1/tokens?owner=reader").await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = env
        .call(
            Who::Lead,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"owner": "reader"})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = env
        .call(
            Who::Lead,
            Method::DELETE,
            &format!("/api/v1/tokens/{token_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "not the lead's token: {}", r.text);
    assert_eq!(
        snapshot(&env).await,
        before,
        "refused requests changed nothing"
    );
    // The refused password change did not take.
    assert!(ac.login("admin", ADMIN_PW, None).is_ok());

    // The administrator may do each.
    let ok = |r: &Answer, want: u16, what: &str| assert_eq!(r.status, want, "{what}: {}", r.text);
    let r = env.get(Who::Admin, "/api/v1/users").await;
    ok(&r, 200, "users");
    assert_eq!(names(&r.json(), "name"), ["admin", "lead", "reader"]);
    assert_eq!(r.json()[0]["admin"], true);
    let r = env
        .call(Who::Admin, Method::POST, "/api/v1/users", Some(new_user))
        .await;
    ok(&r, 201, "add user");
    assert_eq!(r.json()["name"], "mallory");
    assert!(r.json().get("password").is_none());
    let r = env
        .call(
            Who::Admin,
            Method::POST,
            "/api/v1/users",
            Some(json!({"name": "mallory", "password": "another-pw"})),
        )
        .await;
    ok(&r, 409, "duplicate user");
    let r = env
        .call(
            Who::Admin,
            Method::PUT,
            "/api/v1/users/mallory/groups",
            Some(json!({"groups": ["devs"]})),
        )
        .await;
    ok(&r, 200, "groups");
    assert_eq!(r.json()["groups"], json!(["devs"]));
    let r = env
        .call(
            Who::Admin,
            Method::PUT,
            "/api/v1/users/mallory/password",
            Some(json!({"password": "short"})),
        )
        .await;
    ok(&r, 400, "weak password");
    let r = env
        .call(
            Who::Admin,
            Method::PUT,
            "/api/v1/users/mallory/password",
            Some(json!({"password": "a-new-password"})),
        )
        .await;
    ok(&r, 204, "password");
    assert!(ac.login("mallory", "a-new-password", None).is_ok());
    let r = env
        .call(Who::Admin, Method::DELETE, "/api/v1/users/mallory", None)
        .await;
    ok(&r, 204, "remove user");
    let r = env
        .call(Who::Admin, Method::DELETE, "/api/v1/users/admin", None)
        .await;
    ok(&r, 400, "removing yourself");
    let r = env
        .call(Who::Admin, Method::DELETE, "/api/v1/users/nobody", None)
        .await;
    ok(&r, 404, "unknown user");

    let r = env
        .call(Who::Admin, Method::POST, "/api/v1/robots", Some(new_robot))
        .await;
    ok(&r, 201, "add robot");
    assert_eq!(r.json()["username"], "robot$evil");
    let r = env.get(Who::Admin, "/api/v1/robots").await;
    ok(&r, 200, "robots");
    assert_eq!(names(&r.json(), "name"), ["evil", "victim"]);
    let r = env
        .call(
            Who::Admin,
            Method::POST,
            "/api/v1/robots/victim/revoke",
            None,
        )
        .await;
    ok(&r, 204, "revoke");
    let r = env.get(Who::Admin, "/api/v1/robots").await;
    let victim = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "victim")
        .cloned()
        .unwrap();
    assert_eq!(victim["state"], "revoked");
    let r = env
        .call(Who::Admin, Method::DELETE, "/api/v1/robots/victim", None)
        .await;
    ok(&r, 204, "remove robot");

    let r = env
        .call(
            Who::Admin,
            Method::POST,
            "/api/v1/bindings",
            Some(new_binding),
        )
        .await;
    ok(&r, 201, "add binding");
    let added = r.json();
    assert_eq!(added["subject"], json!({"kind": "user", "name": "reader"}));
    assert_eq!(added["source"], "stored");
    let r = env.get(Who::Admin, "/api/v1/bindings").await;
    ok(&r, 200, "bindings");
    let list = r.json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|b| b["source"] == "config" && b["pattern"] == "team-a/*")
    );
    let r = env
        .call(
            Who::Admin,
            Method::DELETE,
            &format!("/api/v1/bindings/{}", binding.id),
            None,
        )
        .await;
    ok(&r, 204, "remove binding");
    let r = env
        .call(
            Who::Admin,
            Method::POST,
            "/api/v1/bindings",
            Some(json!({"subject": {"kind": "anonymous"}, "pattern": "**", "actions": ["push"]})),
        )
        .await;
    ok(&r, 400, "anonymous push");
    let r = env.call(Who::Admin, Method::POST, "/api/v1/bindings", Some(json!({"subject": {"kind": "user", "name": "x"}, "pattern": "**", "actions": ["fly"]}))).await;
    ok(&r, 400, "unknown action");

    // The audit log saw it all, refusals included; filters work.
    let r = env
        .get(Who::Admin, "/api/v1/audit?action=user.add&identity=admin")
        .await;
    ok(&r, 200, "audit");
    let targets = names(&r.json(), "target");
    assert!(targets.contains(&"mallory".to_string()), "{}", r.text);
    let r = env
        .get(
            Who::Admin,
            "/api/v1/audit?outcome=denied&identity=reader&limit=1000",
        )
        .await;
    ok(&r, 200, "audit denied");
    assert!(
        r.json().as_array().unwrap().len() >= admin_only.len(),
        "{}",
        r.text
    );
    let r = env.get(Who::Admin, "/api/v1/audit?limit=2").await;
    let page = r.json();
    assert_eq!(page.as_array().unwrap().len(), 2);
    let last = page[1]["id"].as_i64().unwrap();
    let r = env
        .get(Who::Admin, &format!("/api/v1/audit?limit=1&before={last}"))
        .await;
    assert!(r.json()[0]["id"].as_i64().unwrap() < last);
    let r = env.get(Who::Admin, "/api/v1/audit?repository=mall").await;
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["target"].as_str().unwrap().starts_with("mall"))
    );
    assert!(!r.json().as_array().unwrap().is_empty());
    let r = env
        .get(
            Who::Admin,
            "/api/v1/audit?since=2000-01-01T00:00:00Z&until=2001-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(r.json(), json!([]));
    for bad in [
        "limit=0",
        "limit=1001",
        "since=yesterday",
        "before=x",
        "bogus=1",
    ] {
        let r = env.get(Who::Admin, &format!("/api/v1/audit?{bad}")).await;
        ok(&r, 400, bad);
    }
    env.service.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_list_only_what_the_caller_may_pull() {
    let env = start(true).await;
    let (a, b, shared) = (&env.a, &env.b, &env.shared);

    let r = env.get(Who::Admin, "/api/v1/repositories").await;
    assert_eq!(
        names(&r.json(), "name"),
        [
            "team-a/app",
            "team-a/shared",
            "team-b/secret",
            "team-b/shared"
        ]
    );
    let r = env.get(Who::Reader, "/api/v1/repositories").await;
    assert_eq!(names(&r.json(), "name"), ["team-a/app", "team-a/shared"]);
    let r = env.get(Who::Anonymous, "/api/v1/repositories").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!([]), "nothing is public");

    // Images: an image is visible when any of its repositories is, and
    // only those repositories (and their tags) are named.
    let r = env.get(Who::Admin, "/api/v1/images").await;
    assert_eq!(r.json().as_array().unwrap().len(), 3, "{}", r.text);
    let r = env.get(Who::Reader, "/api/v1/images").await;
    let list = r.json();
    let mut digests = names(&list, "digest");
    let mut want = vec![a.clone(), shared.clone()];
    want.sort();
    digests.sort();
    assert_eq!(digests, want);
    assert!(!r.text.contains("team-b"), "{}", r.text);
    let r = env
        .get(Who::Reader, "/api/v1/images?repository=team-b/shared")
        .await;
    assert_eq!(r.json(), json!([]), "a hidden repository lists nothing");

    let r = env
        .get(Who::Reader, &format!("/api/v1/images/{shared}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["repositories"], json!(["team-a/shared"]));
    assert_eq!(r.json()["tags"], json!(["team-a/shared:1"]));
    let r = env
        .get(Who::Admin, &format!("/api/v1/images/{shared}"))
        .await;
    assert_eq!(
        r.json()["repositories"],
        json!(["team-a/shared", "team-b/shared"])
    );

    // One object the caller may not see: 404 like an unknown one, or 401
    // (with the challenge) when anonymous.
    let unknown = format!("sha256:{}", "0".repeat(64));
    for d in [b, &unknown] {
        let r = env.get(Who::Reader, &format!("/api/v1/images/{d}")).await;
        assert_eq!(r.status, 404, "{}", r.text);
        let r = env
            .get(Who::Anonymous, &format!("/api/v1/images/{d}"))
            .await;
        assert_eq!(r.status, 401, "{}", r.text);
        assert!(r.header("www-authenticate").starts_with("Bearer realm="));
    }
    let hidden = env.get(Who::Reader, &format!("/api/v1/images/{b}")).await;
    let missing = env
        .get(Who::Reader, &format!("/api/v1/images/{unknown}"))
        .await;
    assert_eq!(
        hidden.json()["error"]["code"],
        missing.json()["error"]["code"]
    );
    for path in [
        "team-b/secret",
        "team-b/secret/tags",
        "team-b/secret/images",
        "team-z/none",
    ] {
        let r = env
            .get(Who::Reader, &format!("/api/v1/repositories/{path}"))
            .await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        let r = env
            .get(Who::Anonymous, &format!("/api/v1/repositories/{path}"))
            .await;
        assert_eq!(r.status, 401, "{path}: {}", r.text);
    }
    let r = env
        .get(Who::Reader, "/api/v1/repositories/team-a/shared/images")
        .await;
    assert_eq!(r.status, 200);
    assert!(!r.text.contains("team-b"), "{}", r.text);
    let r = env
        .get(Who::Reader, "/api/v1/repositories/team-a/app")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["tags"][0]["digest"], a.as_str());

    // The queue (no workers: everything is pending) and recommendations.
    let r = env.get(Who::Reader, "/api/v1/queue").await;
    let q = r.json();
    let mut pending = names(&q["pending"], "digest");
    pending.sort();
    assert_eq!(pending, want, "{q}");
    assert_eq!(q["counts"]["queued"], 2, "{q}");
    assert!(!r.text.contains("team-b"), "{}", r.text);
    let r = env.get(Who::Admin, "/api/v1/queue").await;
    assert_eq!(r.json()["counts"]["queued"], 3);
    let r = env.get(Who::Reader, "/api/v1/recommendations").await;
    assert_eq!(r.status, 200);
    assert!(!r.text.contains("team-b"), "{}", r.text);
    let r = env.get(Who::Reader, "/api/v1/usage").await;
    assert_eq!(r.status, 200);
    assert!(!r.text.contains("team-b"), "{}", r.text);

    // Rescan needs push: the reader has pull only; the lead (admin on
    // team-a/**) may; nobody outside learns of team-b's image.
    let rescan = |d: &str| format!("/api/v1/images/{d}/rescan");
    let r = env.call(Who::Reader, Method::POST, &rescan(a), None).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = env.call(Who::Reader, Method::POST, &rescan(b), None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = env
        .call(Who::Anonymous, Method::POST, &rescan(a), None)
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = env
        .call(Who::Lead, Method::POST, &rescan(shared), None)
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let r = env.call(Who::Lead, Method::POST, &rescan(b), None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = env.call(Who::Admin, Method::POST, &rescan(b), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    env.service.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemptions_and_webhooks_follow_admin_scope_and_record_the_caller() {
    let env = start(true).await;
    let body = |repository: Option<&str>| {
        let mut v =
            json!({"severity": "critical", "reason": "accepted risk", "author": "someone-else"});
        if let Some(r) = repository {
            v["repository"] = json!(r);
        }
        v
    };
    // The lead administers team-a/**: team-a globs only.
    let r = env
        .call(
            Who::Lead,
            Method::POST,
            "/api/v1/exemptions",
            Some(body(Some("team-a/*"))),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.json()["author"],
        "lead",
        "the author is who signed in, not the body"
    );
    let lead_ex = r.json()["id"].as_str().unwrap().to_string();
    for scope in [Some("team-b/*"), Some("team-*"), Some("*"), None] {
        let r = env
            .call(
                Who::Lead,
                Method::POST,
                "/api/v1/exemptions",
                Some(body(scope)),
            )
            .await;
        assert_eq!(r.status, 403, "{scope:?}: {}", r.text);
    }
    let r = env
        .call(
            Who::Reader,
            Method::POST,
            "/api/v1/exemptions",
            Some(body(Some("team-a/app"))),
        )
        .await;
    assert_eq!(r.status, 403, "pull is not admin: {}", r.text);
    let r = env
        .call(
            Who::Anonymous,
            Method::POST,
            "/api/v1/exemptions",
            Some(body(Some("team-a/app"))),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = env
        .call(
            Who::Admin,
            Method::POST,
            "/api/v1/exemptions",
            Some(body(None)),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["author"], "admin");
    let global_ex = r.json()["id"].as_str().unwrap().to_string();

    let r = env.get(Who::Lead, "/api/v1/exemptions").await;
    assert_eq!(names(&r.json(), "id"), [lead_ex.as_str()]);
    let r = env.get(Who::Reader, "/api/v1/exemptions").await;
    assert_eq!(r.json(), json!([]));
    let r = env.get(Who::Admin, "/api/v1/exemptions").await;
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    let r = env
        .call(
            Who::Lead,
            Method::DELETE,
            &format!("/api/v1/exemptions/{global_ex}"),
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = env
        .call(
            Who::Lead,
            Method::DELETE,
            &format!("/api/v1/exemptions/{lead_ex}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);

    // Webhooks: the same rule.
    let hook = |repository: Option<&str>| {
        let mut v = json!({"url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef-secret"});
        if let Some(r) = repository {
            v["repository"] = json!(r);
        }
        v
    };
    let r = env
        .call(
            Who::Lead,
            Method::POST,
            "/api/v1/webhooks",
            Some(hook(None)),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = env
        .call(
            Who::Reader,
            Method::POST,
            "/api/v1/webhooks",
            Some(hook(Some("team-a/app"))),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = env
        .call(
            Who::Lead,
            Method::POST,
            "/api/v1/webhooks",
            Some(hook(Some("team-a/*"))),
        )
        .await;
    {
        assert_eq!(r.status, 201, "{}", r.text);
        assert!(r.json().get("secret").is_none());
        let id = r.json()["id"].as_str().unwrap().to_string();
        let r = env.get(Who::Lead, "/api/v1/webhooks").await;
        assert_eq!(names(&r.json(), "id"), [id.as_str()]);
        let r = env
            .get(Who::Reader, &format!("/api/v1/webhooks/{id}/deliveries"))
            .await;
        assert_eq!(r.status, 404, "{}", r.text);
        let r = env
            .get(Who::Lead, &format!("/api/v1/webhooks/{id}/deliveries"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let r = env
            .call(
                Who::Reader,
                Method::DELETE,
                &format!("/api/v1/webhooks/{id}"),
                None,
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.text);
        let r = env
            .call(
                Who::Lead,
                Method::DELETE,
                &format!("/api/v1/webhooks/{id}"),
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    // Every change is in the audit log, under the caller's name.
    let log = env
        .ac
        .as_ref()
        .unwrap()
        .query_audit(&auth::AuditQuery {
            identity: Some("lead".into()),
            outcome: Some("ok".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let actions: Vec<&str> = log.iter().rev().map(|e| e.action.as_str()).collect();
    for a in ["exemption.add", "exemption.rm", "webhook.add", "webhook.rm"] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    assert!(
        log.iter()
            .any(|e| e.action == "webhook.add" && e.target == "team-a/*")
    );
    env.service.shutdown();
}

/// `POST /api/v1/vex` needs admin on every repository the document's
/// products cover: an image digest (the repositories holding it), a
/// repository glob, a package purl (all of them); it is audited; an
/// invalid document is a 400 naming the JSON path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vex_documents_follow_admin_scope() {
    let env = start(true).await;
    let doc = |id: &str, product: &str| {
        json!({
            "@context": "https://openvex.dev/ns/v0.2.0",
            "@id": id,
            "author": "Team A",
            "timestamp": "2026-01-10T10:00:00Z",
            "version": 1,
            "statements": [{
                "vulnerability": {"name": "CVE-2024-0727"},
                "products": [{"@id": product}],
                "status": "not_affected",
                "justification": "component_not_present",
            }],
        })
    };
    for (who, product, want) in [
        (Who::Lead, "team-a/*".to_string(), 201),
        (Who::Lead, env.a.clone(), 201),
        (
            Who::Lead,
            format!("pkg:oci/app@{}", env.a.replace(':', "%3A")),
            201,
        ),
        (Who::Lead, "team-b/*".to_string(), 403),
        (Who::Lead, env.b.clone(), 403),
        (Who::Lead, env.shared.clone(), 403),
        (Who::Lead, "pkg:deb/debian/openssl".to_string(), 403),
        (Who::Reader, "team-a/*".to_string(), 403),
        (Who::Anonymous, "team-a/*".to_string(), 401),
        (Who::Admin, "pkg:deb/debian/openssl".to_string(), 201),
    ] {
        let r = env
            .call(
                who,
                Method::POST,
                "/api/v1/vex",
                Some(doc(&format!("urn:vex:{product}"), &product)),
            )
            .await;
        assert_eq!(r.status, want, "{product}: {}", r.text);
    }
    let mut bad = doc("urn:vex:bad", "team-a/*");
    bad["statements"][0]["justification"] = json!("trust_me");
    let r = env
        .call(Who::Lead, Method::POST, "/api/v1/vex", Some(bad))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("$.statements[0].justification: \"trust_me\" is not one of"),
        "{}",
        r.text
    );
    let r = env.get(Who::Lead, "/api/v1/vex").await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = env.get(Who::Admin, "/api/v1/vex").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json().as_array().unwrap().len(), 4);
    let log = env
        .ac
        .as_ref()
        .unwrap()
        .query_audit(&auth::AuditQuery {
            identity: Some("lead".into()),
            outcome: Some("ok".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "vex.add" && e.target == "team-a/*"),
        "{log:?}"
    );
    // Withdrawing: administrators only, API documents only, once.
    let key = "api:urn:vex:team-a/*";
    let path = format!(
        "/api/v1/vex/{}",
        key.replace('/', "%2F").replace('*', "%2A")
    );
    let r = env.call(Who::Lead, Method::DELETE, &path, None).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = env
        .call(Who::Admin, Method::DELETE, "/api/v1/vex/referrer:x", None)
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = env.call(Who::Admin, Method::DELETE, &path, None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = env.call(Who::Admin, Method::DELETE, &path, None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = env.get(Who::Admin, "/api/v1/vex").await;
    assert_eq!(r.json().as_array().unwrap().len(), 3);
    env.service.shutdown();
}

/// The dashboard's contract: sign in for an HttpOnly SameSite=Strict
/// cookie and a CSRF token; writes with the cookie need the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_login_csrf_and_logout() {
    let env = start(true).await;
    let url = |p: &str| format!("{}{p}", env.base);
    let login = |body: Value| env.http.post(url("/api/v1/auth/login")).json(&body);

    let r = env
        .send(login(
            json!({"username": "reader", "password": "wrong-password"}),
        ))
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "UNAUTHORIZED");
    assert!(r.headers.get("set-cookie").is_none());
    assert!(!r.text.contains("wrong-password"));
    let r = env
        .send(
            env.http
                .post(url("/api/v1/auth/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("username=reader&password=reader-password-1"),
        )
        .await;
    assert_eq!(r.status, 415, "a form post cannot sign in: {}", r.text);
    let r = env
        .send(login(json!({"username": "reader", "password": 12345678})))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        !r.text.contains("12345678"),
        "values are not echoed: {}",
        r.text
    );

    let r = env
        .send(login(json!({"username": "reader", "password": READER_PW})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let set_cookie = r.header("set-cookie");
    assert!(set_cookie.starts_with("drydock_session="), "{set_cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(
            set_cookie.contains(&format!("; {attr}")),
            "{attr}: {set_cookie}"
        );
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let logged = r.json();
    assert_eq!(logged["name"], "reader");
    assert_eq!(logged["admin"], false);
    let csrf = logged["csrf"].as_str().unwrap().to_string();
    assert!(csrf.len() >= 16);
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    // Who am I, by cookie: the same CSRF token, for a page reload.
    let r = env
        .send(
            env.http
                .get(url("/api/v1/auth/session"))
                .header("cookie", &cookie),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["name"], "reader");
    assert_eq!(r.json()["kind"], "user");
    assert_eq!(r.json()["method"], "session");
    assert_eq!(r.json()["csrf"], csrf.as_str());
    let r = env.get(Who::Anonymous, "/api/v1/auth/session").await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = env.get(Who::Admin, "/api/v1/auth/session").await;
    assert_eq!(r.json()["admin"], true);
    assert!(r.json().get("csrf").is_none(), "no session, no CSRF token");
    // Reads with the cookie are scoped like any other.
    let r = env
        .send(
            env.http
                .get(url("/api/v1/repositories"))
                .header("cookie", &cookie),
        )
        .await;
    assert_eq!(names(&r.json(), "name"), ["team-a/app", "team-a/shared"]);

    // A write with the cookie but without the token is refused; with it,
    // it goes through.
    let create = || {
        env.http
            .post(url("/api/v1/tokens"))
            .header("cookie", &cookie)
            .json(&json!({"description": "laptop"}))
    };
    let r = env.send(create()).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = env
        .send(create().header("x-csrf-token", "not-the-token"))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(env.ac().api_tokens(Some("reader")).unwrap().is_empty());
    let r = env.send(create().header("x-csrf-token", &csrf)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["owner"], "reader");

    // Changing one's own password needs the current one, ends the old
    // session and hands out a new one.
    let change = |body: Value, csrf: &str| {
        env.http
            .put(url("/api/v1/users/reader/password"))
            .header("cookie", &cookie)
            .header("x-csrf-token", csrf)
            .json(&body)
    };
    let r = env
        .send(change(json!({"password": "reader-password-2"}), &csrf))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = env
        .send(change(
            json!({"password": "reader-password-2", "current_password": "nope-nope"}),
            &csrf,
        ))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = env
        .send(change(
            json!({"password": "reader-password-2", "current_password": READER_PW}),
            &csrf,
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let renewed = r.header("set-cookie");
    assert!(renewed.starts_with("drydock_session=") && renewed.contains("HttpOnly"));
    let r = env
        .send(
            env.http
                .get(url("/api/v1/auth/session"))
                .header("cookie", &cookie),
        )
        .await;
    assert_eq!(r.status, 401, "the old session ended: {}", r.text);
    let cookie = renewed.split(';').next().unwrap().to_string();
    let r = env
        .send(
            env.http
                .get(url("/api/v1/auth/session"))
                .header("cookie", &cookie),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let csrf = r.json()["csrf"].as_str().unwrap().to_string();
    // Someone else's password: administrators only.
    let r = env
        .send(
            env.http
                .put(url("/api/v1/users/lead/password"))
                .header("cookie", &cookie)
                .header("x-csrf-token", &csrf)
                .json(&json!({"password": "hijacked-pw", "current_password": "reader-password-2"})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);

    // Logout clears the cookie (and needs the token like any write).
    let logout = || {
        env.http
            .post(url("/api/v1/auth/logout"))
            .header("cookie", &cookie)
    };
    let r = env.send(logout()).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = env.send(logout().header("x-csrf-token", &csrf)).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let cleared = r.header("set-cookie");
    assert!(cleared.starts_with("drydock_session=;"), "{cleared}");
    assert!(cleared.contains("; Max-Age=0"), "{cleared}");

    // Over TLS the cookie is Secure.
    let r = env
        .send(
            login(json!({"username": "admin", "password": ADMIN_PW}))
                .header("x-forwarded-proto", "https"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("set-cookie").ends_with("; Secure"),
        "{}",
        r.header("set-cookie")
    );
    assert_eq!(r.json()["admin"], true);

    // Too many failures: 429 with Retry-After.
    let mut last = None;
    for _ in 0..8 {
        let r = env
            .send(login(
                json!({"username": "lead", "password": "guess-guess"}),
            ))
            .await;
        last = Some(r);
        if last.as_ref().unwrap().status == 429 {
            break;
        }
    }
    let r = last.unwrap();
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.header("retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(r.json()["error"]["code"], "TOO_MANY_REQUESTS");
    env.service.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_appear_only_in_create_responses() {
    let env = start(true).await;
    let r = env
        .call(
            Who::Admin,
            Method::POST,
            "/api/v1/robots",
            Some(
                json!({"name": "ci", "description": "builds", "expires_at": "2999-01-01T00:00:00Z",
                        "permissions": [{"pattern": "team-a/*", "actions": ["pull", "push"]}]}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let robot = r.json();
    let secret = robot["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("ddr_"), "{secret}");
    assert_eq!(robot["username"], "robot$ci");
    assert_eq!(robot["state"], "active");
    assert_eq!(robot["permissions"][0]["actions"], json!(["pull", "push"]));
    let r = env
        .call(
            Who::Admin,
            Method::POST,
            "/api/v1/robots",
            Some(json!({"name": "old", "expires_at": "2000-01-01T00:00:00Z", "permissions": []})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = env
        .call(
            Who::Admin,
            Method::POST,
            "/api/v1/robots",
            Some(json!({"name": "ci", "permissions": []})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);

    // The robot signs in with it and sees what it was granted.
    let r = env
        .send(
            env.http
                .get(format!("{}/api/v1/repositories", env.base))
                .basic_auth("robot$ci", Some(&secret)),
        )
        .await;
    assert_eq!(names(&r.json(), "name"), ["team-a/app", "team-a/shared"]);

    let r = env
        .call(
            Who::Reader,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"description": "laptop"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let token = r.json()["secret"].as_str().unwrap().to_string();
    assert!(token.starts_with("ddk_"));
    let token_id = r.json()["id"].as_str().unwrap().to_string();
    let r = env
        .call(
            Who::Admin,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"owner": "lead"})),
        )
        .await;
    assert_eq!(
        r.status, 201,
        "an admin may make one for someone: {}",
        r.text
    );
    assert_eq!(r.json()["owner"], "lead");

    // The bearer token acts as its user.
    let bearer = |t: &str| {
        env.http
            .get(format!("{}/api/v1/auth/session", env.base))
            .bearer_auth(t)
    };
    let r = env.send(bearer(&token)).await;
    assert_eq!(r.json()["name"], "reader");
    assert_eq!(r.json()["method"], "api_token");

    // Lists, audit records and other views never carry a secret.
    env.ac().flush();
    for (who, path) in [
        (Who::Admin, "/api/v1/robots"),
        (Who::Reader, "/api/v1/tokens"),
        (Who::Admin, "/api/v1/tokens?owner=reader"),
        (Who::Admin, "/api/v1/audit?limit=1000"),
        (Who::Admin, "/api/v1/users"),
        (Who::Admin, "/api/v1/bindings"),
    ] {
        let r = env.get(who, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert!(
            !r.text.contains(&secret) && !r.text.contains(&token),
            "{path}: {}",
            r.text
        );
        assert!(!r.text.contains("\"secret\""), "{path}: {}", r.text);
        assert!(
            !r.text.contains(READER_PW) && !r.text.contains(ADMIN_PW),
            "{path}"
        );
    }
    let r = env.get(Who::Reader, "/api/v1/tokens").await;
    assert_eq!(names(&r.json(), "id"), [token_id.as_str()]);

    // Revoked, it stops working at once.
    let r = env
        .call(
            Who::Reader,
            Method::DELETE,
            &format!("/api/v1/tokens/{token_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = env.send(bearer(&token)).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = env.get(Who::Reader, "/api/v1/tokens").await;
    assert!(r.json()[0]["revoked_at"].is_string(), "{}", r.text);
    env.service.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_one_mib_get_a_json_413() {
    let env = start(true).await;
    let big = "x".repeat((1 << 20) + 1);
    for path in ["/api/v1/exemptions", "/api/v1/users", "/api/v1/auth/login"] {
        let r = env
            .send(
                env.http
                    .post(format!("{}{path}", env.base))
                    .basic_auth("admin", Some(ADMIN_PW))
                    .header("content-type", "application/json")
                    .body(format!("{{\"reason\": \"{big}\"}}")),
            )
            .await;
        assert_eq!(
            r.status,
            413,
            "{path}: {}",
            &r.text[..r.text.len().min(200)]
        );
        assert_eq!(r.json()["error"]["code"], "PAYLOAD_TOO_LARGE", "{path}");
    }
    let r = env.get(Who::Admin, "/api/v1/users").await;
    assert_eq!(r.json().as_array().unwrap().len(), 3, "nothing was added");
    env.service.shutdown();
}

/// With access control off everyone is unrestricted, the exemption's
/// author comes from the body, and the management endpoints do not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_access_control_off_nothing_is_scoped_and_management_is_absent() {
    let env = start(false).await;
    let r = env.get(Who::Anonymous, "/api/v1/auth/session").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["access_control"], false);
    assert_eq!(r.json()["admin"], true);
    for (m, path) in [
        (Method::POST, "/api/v1/auth/login"),
        (Method::POST, "/api/v1/auth/logout"),
        (Method::GET, "/api/v1/users"),
        (Method::GET, "/api/v1/robots"),
        (Method::GET, "/api/v1/bindings"),
        (Method::GET, "/api/v1/audit"),
        (Method::GET, "/api/v1/tokens"),
        (Method::POST, "/api/v1/tokens"),
    ] {
        let r = env
            .call(
                Who::Anonymous,
                m.clone(),
                path,
                Some(json!({"username": "a", "password": "b"})),
            )
            .await;
        assert_eq!(r.status, 404, "{m} {path}: {}", r.text);
        assert!(
            r.text.contains("access control is off"),
            "{path}: {}",
            r.text
        );
    }
    let r = env.get(Who::Anonymous, "/api/v1/repositories").await;
    assert_eq!(r.json().as_array().unwrap().len(), 4);
    let r = env
        .get(Who::Anonymous, &format!("/api/v1/images/{}", env.b))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = env
        .call(
            Who::Anonymous,
            Method::POST,
            "/api/v1/exemptions",
            Some(json!({"severity": "low", "reason": "r", "author": "sec-team"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["author"], "sec-team");
    let r = env
        .call(
            Who::Anonymous,
            Method::POST,
            "/api/v1/exemptions",
            Some(json!({"severity": "low", "reason": "r"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    env.service.shutdown();
}

#[test]
fn test_base64_decoder_round_trips() {
    assert_eq!(base64_decode("YWRtaW46cHc=").unwrap(), b"admin:pw");
    assert_eq!(base64_decode("cm9ib3QkY2k6eA==").unwrap(), b"robot$ci:x");
    assert!(base64_decode("!!").is_none());
}
