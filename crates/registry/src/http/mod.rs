//! The HTTP layer: routes `/v2/…` (the repository name contains slashes,
//! so the tail is parsed here), `/healthz`, `/readyz`, `/metrics`, and the
//! per-request metrics and log line. Every handler calls the same
//! functions as the in-process API.
//!
//! Handlers by concern: [`discovery`] (tags, catalog, referrers),
//! [`manifests`], [`blobs`] (downloads) and [`uploads`].

mod blobs;
mod discovery;
mod manifests;
mod uploads;

use crate::{ErrorCode, Registry, RegistryError};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use oci::{Digest, Name, Reference, Tag};
use std::time::Instant;

use blobs::get_blob;
use discovery::{catalog, referrers, tags_list};
use manifests::{get_manifest, put_manifest};
use uploads::{patch_upload, put_upload, start_upload, upload_response};

const API_VERSION: &str = "registry/2.0";

/// The route a request matched, for metrics.
#[derive(Clone, Copy)]
struct RouteLabel(&'static str);

type Resp = Result<Response, RegistryError>;

impl Registry {
    /// The registry's HTTP routes: `/v2/…`, `/healthz`, `/readyz`,
    /// `/metrics`. Merge other routers into it.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2", any(dispatch))
            .route("/v2/", any(dispatch))
            .route("/v2/{*path}", any(dispatch))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .layer(middleware::from_fn_with_state(self.clone(), observe))
            .layer(DefaultBodyLimit::disable())
            .with_state(self.clone())
    }
}

async fn readyz(State(reg): State<Registry>) -> Response {
    let ok =
        reg.inner.store.meta.data_version().is_ok() && reg.inner.store.blobs.tmp_dir().is_dir();
    if ok {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(reg): State<Registry>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        reg.inner.metrics.render(),
    )
        .into_response()
}

/// Metrics and one log line per request.
async fn observe(State(reg): State<Registry>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = next.run(req).await;
    let route = resp
        .extensions()
        .get::<RouteLabel>()
        .map(|r| r.0)
        .unwrap_or(match path.as_str() {
            "/healthz" => "healthz",
            "/readyz" => "readyz",
            "/metrics" => "metrics",
            _ => "other",
        });
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
    if path.starts_with("/v2") {
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

fn query_pairs(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        })
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
    let Some(route) = parse_route(&path) else {
        let mut r = RegistryError::new(ErrorCode::NameUnknown, format!("no such endpoint {path}"))
            .into_response();
        r.extensions_mut().insert(RouteLabel("other"));
        return r;
    };
    let label = route.label();
    let result = handle(&reg, route, req).await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(RouteLabel(label));
    resp
}

async fn handle(reg: &Registry, route: Route<'_>, req: Request) -> Resp {
    let method = req.method().clone();
    match route {
        Route::Base => match method {
            Method::GET | Method::HEAD => {
                Ok(([(header::CONTENT_TYPE, "application/json")], "{}").into_response())
            }
            _ => Err(unsupported(&method)),
        },
        Route::Catalog => match method {
            Method::GET => catalog(reg, &req),
            _ => Err(unsupported(&method)),
        },
        Route::Tags(n) => {
            let n = name(n)?;
            match method {
                Method::GET => tags_list(reg, &n, &req),
                _ => Err(unsupported(&method)),
            }
        }
        Route::Manifest(n, r) => {
            let n = name(n)?;
            let r = match reference(r) {
                Ok(r) => r,
                // Nothing can be stored under an invalid tag, so reading or
                // deleting one finds nothing (the conformance suite wants
                // 404); storing under one is the client's error.
                Err(e)
                    if matches!(method, Method::GET | Method::HEAD | Method::DELETE)
                        && e.code == ErrorCode::ManifestInvalid =>
                {
                    return Err(RegistryError::new(ErrorCode::ManifestUnknown, e.message));
                }
                Err(e) => return Err(e),
            };
            match method {
                Method::GET | Method::HEAD => get_manifest(reg, &n, &r, &req),
                Method::PUT => put_manifest(reg, &n, &r, req).await,
                Method::DELETE => {
                    match &r {
                        Reference::Tag(t) => reg.delete_tag(&n, t)?,
                        Reference::Digest(d) => reg.delete_manifest(&n, d)?,
                    }
                    Ok(accepted())
                }
                _ => Err(unsupported(&method)),
            }
        }
        Route::Blob(n, d) => {
            let n = name(n)?;
            let d = digest(d)?;
            match method {
                Method::GET | Method::HEAD => get_blob(reg, &n, &d, &method, req.headers()).await,
                Method::DELETE => {
                    reg.delete_blob(&n, &d)?;
                    Ok(accepted())
                }
                _ => Err(unsupported(&method)),
            }
        }
        Route::UploadStart(n) => {
            let n = name(n)?;
            match method {
                Method::POST => start_upload(reg, &n, req).await,
                _ => Err(unsupported(&method)),
            }
        }
        Route::Upload(n, id) => {
            let n = name(n)?;
            match method {
                Method::GET | Method::HEAD => {
                    let info = reg.upload_info(&n, id)?;
                    Ok(upload_response(StatusCode::NO_CONTENT, &n, id, info.len))
                }
                Method::PATCH => patch_upload(reg, &n, id, req).await,
                Method::PUT => put_upload(reg, &n, id, req).await,
                Method::DELETE => {
                    reg.cancel_upload(&n, id).await?;
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                _ => Err(unsupported(&method)),
            }
        }
        Route::Referrers(n, d) => {
            let n = name(n)?;
            let d = digest(d)?;
            match method {
                Method::GET => referrers(reg, &n, &d, &req),
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
}
