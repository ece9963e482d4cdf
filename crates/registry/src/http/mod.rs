//! The HTTP layer: routes `/v2/…` (the repository name contains slashes,
//! so the tail is parsed here), `/healthz`, `/readyz`, `/metrics`, and the
//! per-request metrics and log line. Every handler calls the same
//! functions as the in-process API.
//!
//! Authorization happens in [`handle`], once per route and method, before
//! a handler runs (so before any body is read or any state changes): the
//! route names the action it needs on its repository and the caller's
//! [`Principal`] (put into the request by the edge layer; absent means
//! unrestricted) must allow it. Handlers then only filter what they list
//! (catalog) and choose mount sources the caller may read.
//!
//! Handlers by concern: [`discovery`] (tags, catalog, referrers),
//! [`manifests`], [`blobs`] (downloads) and [`uploads`].

mod blobs;
mod discovery;
mod manifests;
mod uploads;

use crate::upload::SessionKey;
use crate::{ErrorCode, Registry, RegistryError, RouteInfo};
use auth::{Action, Challenge, Principal};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::future::BoxFuture;
use oci::{Digest, Name, Reference, Tag};
use std::time::Instant;

use blobs::get_blob;
use discovery::{catalog, referrers, tags_list};
use manifests::{get_manifest, put_manifest};
use uploads::{patch_upload, put_upload, start_upload, upload_response};

const API_VERSION: &str = "registry/2.0";

type Resp = Result<Response, RegistryError>;

/// The `observe` middleware as a plain function pointer, so that its layer
/// has a type that can be named.
pub type ObserveFn = fn(State<Registry>, Request, Next) -> BoxFuture<'static, Response>;

/// The layer [`Registry::observe_layer`] returns.
pub type ObserveLayer = middleware::FromFnLayer<ObserveFn, Registry, (State<Registry>, Request)>;

impl Registry {
    /// The registry's HTTP routes: `/v2/…`, `/healthz`, `/readyz`,
    /// `/metrics`, without the per-request metrics and log line (the
    /// server adds [`Registry::observe_layer`] over everything it merges).
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/v2", any(dispatch))
            .route("/v2/", any(dispatch))
            .route("/v2/{*path}", any(dispatch))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .layer(DefaultBodyLimit::disable())
            .with_state(self.clone())
    }

    /// [`Registry::routes`] with [`Registry::observe_layer`]: a complete
    /// registry server (tests, standalone use). Merge other routers into it.
    pub fn router(&self) -> Router {
        self.routes().layer(self.observe_layer())
    }

    /// Metrics and one log line per request, for a whole application:
    /// `/v2` requests are labelled by their route ([`RouteInfo`]), others
    /// by path prefix (`api`, `ui`, `token`, `healthz`, …). Also sets
    /// `Docker-Distribution-API-Version` on every `/v2` response, including
    /// refusals made before the registry saw the request.
    pub fn observe_layer(&self) -> ObserveLayer {
        let f: ObserveFn = |state, req, next| Box::pin(observe(state, req, next));
        middleware::from_fn_with_state(self.clone(), f)
    }
}

async fn readyz(State(reg): State<Registry>) -> Response {
    let mut problems = Vec::new();
    if let Err(e) = reg.inner.store.meta.change_version().await {
        problems.push(format!("metadata database: {e}"));
    }
    if let Err(e) = reg.inner.store.blobs.ready().await {
        problems.push(format!("blob storage: {e}"));
    }
    match reg.storage_space() {
        Ok((free, total)) => {
            let min = reg.min_free_bytes(total);
            if free < min {
                problems.push(format!(
                    "storage: {free} bytes free of {total} on the data directory's filesystem, \
                     below the {min} bytes required"
                ));
            }
        }
        Err(e) => problems.push(format!("storage: cannot read free space: {e}")),
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let body = format!("not ready\n{}\n", problems.join("\n"));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics(State(reg): State<Registry>) -> Response {
    // Free space is read at scrape time: it changes with everything else
    // on the filesystem, not only with what the registry writes.
    if let Ok((free, total)) = reg.storage_space() {
        let m = &reg.inner.metrics;
        m.storage_free_bytes
            .set(i64::try_from(free).unwrap_or(i64::MAX));
        m.storage_total_bytes
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        reg.inner.metrics.render(),
    )
        .into_response()
}

impl Registry {
    /// Free and total bytes of the data directory's filesystem.
    fn storage_space(&self) -> std::io::Result<(u64, u64)> {
        storage::fs_space(&self.inner.opts.data_dir)
    }

    /// The free space below which the registry is not ready.
    fn min_free_bytes(&self, total: u64) -> u64 {
        self.inner
            .opts
            .min_free_bytes
            .unwrap_or_else(|| (1u64 << 30).min(total / 100))
    }
}

/// The metrics label of a request the registry did not route.
fn path_label(path: &str) -> &'static str {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    match path {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        _ if under("/v2") => parse_route(path).map_or("other", |r| r.label()),
        _ if under("/api/v1") => "api",
        _ if under("/ui") => "ui",
        _ if under("/token") => "token",
        _ => "other",
    }
}

/// Metrics and one log line per request.
pub async fn observe(State(reg): State<Registry>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = next.run(req).await;
    let route = resp
        .extensions()
        .get::<RouteInfo>()
        .map(|r| r.route)
        .unwrap_or_else(|| path_label(&path));
    let status = resp.status();
    let elapsed = start.elapsed();
    let m = &reg.inner.metrics;
    let status_s = status.as_str();
    m.requests
        .with_label_values(&[route, method.as_str(), status_s])
        .inc();
    m.latency
        .with_label_values(&[route, method.as_str(), status_s])
        .observe(elapsed.as_secs_f64());
    if path == "/v2" || path.starts_with("/v2/") {
        resp.headers_mut().insert(
            "Docker-Distribution-API-Version",
            HeaderValue::from_static(API_VERSION),
        );
    }
    tracing::info!(
        method = %method,
        path = %path,
        status = status.as_u16(),
        route,
        micros = elapsed.as_micros() as u64,
        "request"
    );
    resp
}

enum Route<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    UploadStart(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

impl Route<'_> {
    fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags(_) => "tags",
            Route::Manifest(..) => "manifest",
            Route::Blob(..) => "blob",
            Route::UploadStart(_) | Route::Upload(..) => "upload",
            Route::Referrers(..) => "referrers",
        }
    }

    /// What the edge's audit log and metrics need to know.
    fn info(&self) -> RouteInfo {
        let (repo, reference) = match self {
            Route::Base | Route::Catalog => (None, None),
            Route::Tags(n) | Route::UploadStart(n) => (Some(*n), None),
            Route::Manifest(n, r)
            | Route::Blob(n, r)
            | Route::Upload(n, r)
            | Route::Referrers(n, r) => (Some(*n), Some(*r)),
        };
        RouteInfo {
            route: self.label(),
            repo: repo.map(str::to_string),
            reference: reference.map(str::to_string),
        }
    }
}

fn parse_route(path: &str) -> Option<Route<'_>> {
    let p = path.strip_prefix("/v2")?;
    let p = p.strip_prefix('/').unwrap_or(p);
    if p.is_empty() {
        return Some(Route::Base);
    }
    if p == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(n) = p.strip_suffix("/tags/list") {
        return Some(Route::Tags(n));
    }
    if let Some(n) = p
        .strip_suffix("/blobs/uploads/")
        .or_else(|| p.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::UploadStart(n));
    }
    let (head, last) = p.rsplit_once('/')?;
    if let Some(n) = head.strip_suffix("/blobs/uploads") {
        return Some(Route::Upload(n, last));
    }
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest(name, last)),
        "blobs" => Some(Route::Blob(name, last)),
        "referrers" => Some(Route::Referrers(name, last)),
        _ => None,
    }
}

fn name(s: &str) -> Result<Name, RegistryError> {
    Name::parse(s).map_err(|e| RegistryError::new(ErrorCode::NameInvalid, e.to_string()))
}

fn digest(s: &str) -> Result<Digest, RegistryError> {
    Digest::parse(s).map_err(|e| RegistryError::new(ErrorCode::DigestInvalid, e.to_string()))
}

fn reference(s: &str) -> Result<Reference, RegistryError> {
    if s.contains(':') {
        digest(s).map(Reference::Digest)
    } else {
        Tag::parse(s)
            .map(Reference::Tag)
            .map_err(|e| RegistryError::new(ErrorCode::ManifestInvalid, e.to_string()))
    }
}

/// The query string's pairs in order (`?tag=` may repeat), through the
/// same decoder as every other route: axum's `Query`. A string that does
/// not decode counts as none.
fn query_pairs(req: &Request) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default()
}

fn query<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    header_str(h, "content-length").and_then(|v| v.trim().parse().ok())
}

fn unsupported(method: &Method) -> RegistryError {
    RegistryError::new(
        ErrorCode::Unsupported,
        format!("method {method} is not supported here"),
    )
}

async fn dispatch(State(reg): State<Registry>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let (info, mut resp) = match parse_route(&path) {
        None => (
            RouteInfo {
                route: "other",
                repo: None,
                reference: None,
            },
            RegistryError::new(ErrorCode::NameUnknown, format!("no such endpoint {path}"))
                .into_response(),
        ),
        Some(route) => {
            let info = route.info();
            let resp = handle(&reg, route, req)
                .await
                .unwrap_or_else(|e| e.into_response());
            (info, resp)
        }
    };
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static(API_VERSION),
    );
    resp.extensions_mut().insert(info);
    resp
}

/// The caller of a request, as the edge layer described it.
pub(super) struct Caller {
    pub principal: Principal,
    challenge: Challenge,
}

impl Caller {
    /// From the request's extensions; without a principal (no edge layer,
    /// as in the registry's own tests) everything is allowed.
    fn of(req: &Request) -> Caller {
        let ext = req.extensions();
        Caller {
            principal: ext
                .get::<Principal>()
                .cloned()
                .unwrap_or_else(Principal::unrestricted),
            challenge: ext
                .get::<Challenge>()
                .cloned()
                .unwrap_or_else(|| Challenge {
                    realm: "/token".into(),
                    service: "drydock".into(),
                }),
        }
    }

    /// 401 with a bearer challenge: the client should (re)authenticate,
    /// asking for `scope`.
    fn unauthorized(&self, scope: Option<&str>, insufficient_scope: bool, msg: String) -> Response {
        let mut r = RegistryError::new(ErrorCode::Unauthorized, msg).into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            hv(self.challenge.bearer(scope, insufficient_scope)),
        );
        r
    }

    /// `None` when the caller may do `action` on `repo`; else the refusal:
    /// anonymous → 401 with the scope to ask for; a token lacking a scope
    /// its identity has → 401 `insufficient_scope` (the client fetches a
    /// new token); otherwise 403 `DENIED`.
    fn refusal(&self, repo: &Name, action: Action) -> Option<Response> {
        let p = &self.principal;
        if p.may(repo.as_str(), action) {
            return None;
        }
        // Clients ask for pull with push, as docker does: a push reads too.
        let actions = match action {
            Action::Push => "pull,push",
            a => a.as_str(),
        };
        let scope = format!("repository:{repo}:{actions}");
        if p.is_anonymous() {
            return Some(self.unauthorized(
                Some(&scope),
                false,
                format!("authentication required to {action} repository {repo}"),
            ));
        }
        if p.token_limited() && p.identity_may(repo.as_str(), action) {
            return Some(self.unauthorized(
                Some(&scope),
                true,
                format!("the access token does not grant {action} on repository {repo}"),
            ));
        }
        Some(
            RegistryError::new(
                ErrorCode::Denied,
                format!("{} may not {action} repository {repo}", p.name()),
            )
            .into_response(),
        )
    }
}

/// Return the refusal from the enclosing handler unless the caller may do
/// `$action` on `$repo`.
macro_rules! require {
    ($caller:expr, $repo:expr, $action:expr) => {
        if let Some(refusal) = $caller.refusal(&$repo, $action) {
            return Ok(refusal);
        }
    };
}

/// The action each route needs is checked here, before its handler runs.
async fn handle(reg: &Registry, route: Route<'_>, req: Request) -> Resp {
    let method = req.method().clone();
    let caller = Caller::of(&req);
    match route {
        Route::Base => match method {
            // Anonymous callers learn here where to get a token.
            Method::GET | Method::HEAD if caller.principal.is_anonymous() => {
                Ok(caller.unauthorized(None, false, "authentication required".into()))
            }
            Method::GET | Method::HEAD => {
                Ok(([(header::CONTENT_TYPE, "application/json")], "{}").into_response())
            }
            _ => Err(unsupported(&method)),
        },
        Route::Catalog => match method {
            Method::GET if !caller.principal.may_list_catalog() => Ok(caller.unauthorized(
                Some("registry:catalog:*"),
                caller.principal.token_limited(),
                "the access token does not grant listing the catalog".into(),
            )),
            Method::GET => catalog(reg, &req, &caller.principal),
            _ => Err(unsupported(&method)),
        },
        Route::Tags(n) => {
            let n = name(n)?;
            match method {
                Method::GET => {
                    require!(caller, n, Action::Pull);
                    tags_list(reg, &n, &req)
                }
                _ => Err(unsupported(&method)),
            }
        }
        Route::Manifest(n, r) => {
            let n = name(n)?;
            let action = match method {
                Method::GET | Method::HEAD => Action::Pull,
                Method::PUT => Action::Push,
                Method::DELETE => Action::Delete,
                _ => return Err(unsupported(&method)),
            };
            require!(caller, n, action);
            let r = match reference(r) {
                Ok(r) => r,
                // Nothing can be stored under an invalid tag, so reading or
                // deleting one finds nothing (the conformance suite wants
                // 404); storing under one is the client's error.
                Err(e) if action != Action::Push && e.code == ErrorCode::ManifestInvalid => {
                    return Err(RegistryError::new(ErrorCode::ManifestUnknown, e.message));
                }
                Err(e) => return Err(e),
            };
            match action {
                Action::Pull => get_manifest(reg, &n, &r, &req),
                Action::Push => put_manifest(reg, &n, &r, req).await,
                _ => {
                    match &r {
                        Reference::Tag(t) => reg.delete_tag(&n, t)?,
                        Reference::Digest(d) => reg.delete_manifest(&n, d)?,
                    }
                    Ok(accepted())
                }
            }
        }
        Route::Blob(n, d) => {
            let n = name(n)?;
            let action = match method {
                Method::GET | Method::HEAD => Action::Pull,
                Method::DELETE => Action::Delete,
                _ => return Err(unsupported(&method)),
            };
            require!(caller, n, action);
            let d = digest(d)?;
            if action == Action::Pull {
                // Serves only blobs linked to `n` (or its manifests), so
                // pull on `n` reveals nothing of other repositories.
                get_blob(reg, &n, &d, &method, req.headers()).await
            } else {
                reg.delete_blob(&n, &d)?;
                Ok(accepted())
            }
        }
        Route::UploadStart(n) => {
            let n = name(n)?;
            match method {
                Method::POST => {
                    require!(caller, n, Action::Push);
                    start_upload(reg, &n, &caller.principal, req).await
                }
                _ => Err(unsupported(&method)),
            }
        }
        Route::Upload(n, id) => {
            let n = name(n)?;
            if !matches!(
                method,
                Method::GET | Method::HEAD | Method::PATCH | Method::PUT | Method::DELETE
            ) {
                return Err(unsupported(&method));
            }
            require!(caller, n, Action::Push);
            let owner = caller.principal.name();
            let key = SessionKey {
                repo: &n,
                id,
                owner: &owner,
            };
            match method {
                Method::GET | Method::HEAD => {
                    let info = reg.upload_info(&key).await?;
                    Ok(upload_response(StatusCode::NO_CONTENT, &n, id, info.len))
                }
                Method::PATCH => patch_upload(reg, &key, req).await,
                Method::PUT => put_upload(reg, &key, req).await,
                _ => {
                    reg.cancel_upload(&key).await?;
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
            }
        }
        Route::Referrers(n, d) => {
            let n = name(n)?;
            match method {
                Method::GET => {
                    require!(caller, n, Action::Pull);
                    referrers(reg, &n, &digest(d)?, &req)
                }
                _ => Err(unsupported(&method)),
            }
        }
    }
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response()
}

fn hv(s: impl AsRef<str>) -> HeaderValue {
    HeaderValue::from_str(s.as_ref()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(parse_route("/v2/"), Some(Route::Base)));
        assert!(matches!(parse_route("/v2/_catalog"), Some(Route::Catalog)));
        assert!(matches!(
            parse_route("/v2/a/b/tags/list"),
            Some(Route::Tags("a/b"))
        ));
        assert!(matches!(
            parse_route("/v2/a/blobs/uploads/"),
            Some(Route::UploadStart("a"))
        ));
        assert!(matches!(
            parse_route("/v2/a/blobs/b/blobs/uploads/x"),
            Some(Route::Upload("a/blobs/b", "x"))
        ));
        assert!(matches!(
            parse_route("/v2/x/manifests/y/manifests/latest"),
            Some(Route::Manifest("x/manifests/y", "latest"))
        ));
        assert!(matches!(
            parse_route("/v2/x/referrers/sha256:00"),
            Some(Route::Referrers("x", "sha256:00"))
        ));
        assert!(parse_route("/v2/x").is_none());
    }

    #[test]
    fn labels_by_path() {
        assert_eq!(path_label("/api/v1/images"), "api");
        assert_eq!(path_label("/api/v1"), "api");
        assert_eq!(path_label("/api/v10"), "other");
        assert_eq!(path_label("/ui/"), "ui");
        assert_eq!(path_label("/uix"), "other");
        assert_eq!(path_label("/token"), "token");
        assert_eq!(path_label("/healthz"), "healthz");
        assert_eq!(path_label("/v2/a/b/manifests/latest"), "manifest");
        assert_eq!(path_label("/v2/"), "base");
        assert_eq!(path_label("/v2/x"), "other");
        assert_eq!(path_label("/"), "other");
    }

    #[test]
    fn route_info() {
        let i = parse_route("/v2/a/b/manifests/v1").unwrap().info();
        assert_eq!(i.route, "manifest");
        assert_eq!(i.repo.as_deref(), Some("a/b"));
        assert_eq!(i.reference.as_deref(), Some("v1"));
        let i = parse_route("/v2/_catalog").unwrap().info();
        assert_eq!((i.route, i.repo, i.reference), ("catalog", None, None));
        let i = parse_route("/v2/a/blobs/uploads/").unwrap().info();
        assert_eq!((i.route, i.repo.as_deref()), ("upload", Some("a")));
    }
}
