//! The HTTP layer: routes `/v2/…` (the repository name contains slashes,
//! so the tail is parsed here), `/healthz`, `/readyz`, `/metrics`, and the
//! per-request metrics and log line. Every handler calls the same
//! functions as the in-process API.

use crate::upload::range_error;
use crate::{ErrorCode, Origin, Registry, RegistryError};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::BodyExt;
use oci::{Digest, Name, Reference, Tag};
use std::io::Read;
use std::time::Instant;

const API_VERSION: &str = "registry/2.0";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Read size for blob downloads.
const READ_CHUNK: usize = 1 << 20;

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
            let r = reference(r)?;
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

// ---- listings -------------------------------------------------------------

/// `n` and `last` from the query; `n` absent means no limit.
fn paging(q: &[(String, String)]) -> Result<(Option<usize>, Option<String>), RegistryError> {
    let n = match query(q, "n") {
        Some(v) if !v.is_empty() => Some(v.parse::<usize>().map_err(|_| {
            RegistryError::new(ErrorCode::Unsupported, format!("n={v:?} is not a number"))
                .with_status(StatusCode::BAD_REQUEST)
        })?),
        _ => None,
    };
    Ok((n, query(q, "last").map(str::to_string)))
}

fn link_next(base: &str, n: usize, last: &str) -> HeaderValue {
    let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    hv(format!("<{base}?n={n}&last={last}>; rel=\"next\""))
}

fn tags_list(reg: &Registry, repo: &Name, req: &Request) -> Resp {
    let q = query_pairs(req);
    let (n, last) = paging(&q)?;
    let meta = &reg.inner.store.meta;
    if !meta.repo_exists(repo.as_str())? {
        return Err(RegistryError::new(
            ErrorCode::NameUnknown,
            format!("repository {repo} is unknown"),
        ));
    }
    let mut tags: Vec<String> = if n == Some(0) {
        Vec::new()
    } else {
        meta.tags(repo.as_str(), last.as_deref(), n.map(|n| n + 1))?
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    };
    let mut resp_headers = HeaderMap::new();
    if let Some(n) = n
        && tags.len() > n
    {
        tags.truncate(n);
        let base = format!("/v2/{repo}/tags/list");
        resp_headers.insert(header::LINK, link_next(&base, n, tags.last().unwrap()));
    }
    let body = serde_json::json!({ "name": repo.as_str(), "tags": tags }).to_string();
    resp_headers.insert(header::CONTENT_TYPE, hv("application/json"));
    Ok((resp_headers, body).into_response())
}

fn catalog(reg: &Registry, req: &Request) -> Resp {
    let q = query_pairs(req);
    let (n, last) = paging(&q)?;
    let mut repos = if n == Some(0) {
        Vec::new()
    } else {
        reg.inner
            .store
            .meta
            .repositories(last.as_deref(), n.map(|n| n + 1))?
    };
    let mut resp_headers = HeaderMap::new();
    if let Some(n) = n
        && repos.len() > n
    {
        repos.truncate(n);
        resp_headers.insert(
            header::LINK,
            link_next("/v2/_catalog", n, repos.last().unwrap()),
        );
    }
    resp_headers.insert(header::CONTENT_TYPE, hv("application/json"));
    let body = serde_json::json!({ "repositories": repos }).to_string();
    Ok((resp_headers, body).into_response())
}

fn referrers(reg: &Registry, repo: &Name, subject: &Digest, req: &Request) -> Resp {
    let q = query_pairs(req);
    let filter = query(&q, "artifactType").filter(|f| !f.is_empty());
    let list = reg.inner.store.meta.referrers(repo.as_str(), subject)?;
    let manifests: Vec<serde_json::Value> = list
        .into_iter()
        .filter(|r| filter.is_none() || r.artifact_type.as_deref() == filter)
        .map(|r| {
            let mut d = serde_json::json!({
                "mediaType": r.media_type,
                "digest": r.digest.to_string(),
                "size": r.size,
            });
            if let Some(a) = r.artifact_type {
                d["artifactType"] = a.into();
            }
            if let Some(a) = r
                .annotations
                .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
            {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    })
    .to_string();
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, hv(OCI_INDEX));
    if filter.is_some() {
        h.insert("OCI-Filters-Applied", hv("artifactType"));
    }
    Ok((h, body).into_response())
}

// ---- manifests ------------------------------------------------------------

/// Whether the client's `Accept` admits `media_type`. No `Accept`, or a
/// wildcard, admits everything.
fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut any_listed = false;
    for v in headers.get_all(header::ACCEPT) {
        let Ok(v) = v.to_str() else { return true };
        for item in v.split(',') {
            let t = item.split(';').next().unwrap_or("").trim();
            if t.is_empty() {
                continue;
            }
            any_listed = true;
            if t == media_type || t == "*/*" || t == "application/*" {
                return true;
            }
        }
    }
    !any_listed
}

fn get_manifest(reg: &Registry, repo: &Name, r: &Reference, req: &Request) -> Resp {
    let m = reg
        .get_manifest_cached(repo, r)?
        .ok_or_else(|| RegistryError::manifest_unknown(r))?;
    if !accepts(req.headers(), &m.media_type) {
        return Err(RegistryError::manifest_unknown(r).with_message(format!(
            "manifest {r} is a {}, which the request's Accept header does not allow",
            m.media_type
        )));
    }
    let etag = format!("\"{}\"", m.digest);
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, hv(&m.media_type));
    h.insert("Docker-Content-Digest", hv(m.digest.to_string()));
    h.insert(header::ETAG, hv(&etag));
    if let Some(s) = &m.subject {
        h.insert("OCI-Subject", hv(s.to_string()));
    }
    if header_str(req.headers(), "if-none-match") == Some(etag.as_str()) {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    h.insert(header::CONTENT_LENGTH, hv(m.bytes.len().to_string()));
    if req.method() == Method::HEAD {
        return Ok((h, Body::empty()).into_response());
    }
    reg.record_pull(repo, &m.digest);
    reg.inner.metrics.bytes_out.inc_by(m.bytes.len() as u64);
    Ok((h, Body::from(m.bytes.clone())).into_response())
}

async fn put_manifest(reg: &Registry, repo: &Name, r: &Reference, req: Request) -> Resp {
    let max = reg.inner.opts.max_manifest_size;
    let too_large = || {
        RegistryError::new(
            ErrorCode::SizeInvalid,
            format!("manifest larger than the {max} bytes allowed"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if content_length(req.headers()).is_some_and(|l| l > max as u64) {
        return Err(too_large());
    }
    let q = query_pairs(&req);
    let mut extra = Vec::new();
    for (k, v) in &q {
        if k == "tag" {
            extra.push(
                Tag::parse(v)
                    .map_err(|e| RegistryError::new(ErrorCode::ManifestInvalid, e.to_string()))?,
            );
        }
    }
    let content_type = header_str(req.headers(), "content-type").map(str::to_string);
    let body = http_body_util::Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                RegistryError::new(ErrorCode::ManifestInvalid, format!("reading body: {e}"))
            }
        })?
        .to_bytes();
    let (d, subject) = reg
        .put_manifest_tags(repo, r, &extra, body, content_type.as_deref(), Origin::Push)
        .await?;
    let mut h = HeaderMap::new();
    h.insert(header::LOCATION, hv(format!("/v2/{repo}/manifests/{d}")));
    h.insert("Docker-Content-Digest", hv(d.to_string()));
    h.insert(header::CONTENT_LENGTH, hv("0"));
    if let Some(s) = subject {
        h.insert("OCI-Subject", hv(s.to_string()));
    }
    for t in &extra {
        h.append("OCI-Tag", hv(t.as_str()));
    }
    Ok((StatusCode::CREATED, h).into_response())
}

// ---- blobs ----------------------------------------------------------------

enum RangeSpec {
    Full,
    Part(u64, u64),
    Unsatisfiable,
}

/// Parse a single `bytes=` range against a blob of `size` bytes. Anything
/// we do not understand (several ranges, other units) serves the whole.
fn parse_range(h: Option<&str>, size: u64) -> RangeSpec {
    let Some(h) = h else { return RangeSpec::Full };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last b bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeSpec::Unsatisfiable;
        };
        if n == 0 || size == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Part(size.saturating_sub(n), size - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeSpec::Unsatisfiable;
    };
    let end = if b.is_empty() {
        size.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) => e.min(size.saturating_sub(1)),
            Err(_) => return RangeSpec::Unsatisfiable,
        }
    };
    if start >= size || (!b.is_empty() && b.parse::<u64>().unwrap_or(0) < start) {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Part(start, end)
}

async fn get_blob(
    reg: &Registry,
    repo: &Name,
    d: &Digest,
    method: &Method,
    headers: &HeaderMap,
) -> Resp {
    // A manifest is content of its repository too: served here when no
    // blob of that digest is linked (as distribution does).
    let (size, manifest) = match reg.blob_size(repo, d)? {
        Some(size) => (size, None),
        None => match reg.get_manifest_cached(repo, &Reference::Digest(d.clone()))? {
            Some(m) => (m.bytes.len() as u64, Some(m)),
            None => return Err(RegistryError::blob_unknown(d)),
        },
    };
    let mut h = HeaderMap::new();
    h.insert("Docker-Content-Digest", hv(d.to_string()));
    h.insert(header::ETAG, hv(format!("\"{d}\"")));
    h.insert(header::ACCEPT_RANGES, hv("bytes"));
    h.insert(header::CONTENT_TYPE, hv("application/octet-stream"));
    let (status, start, len) = match parse_range(header_str(headers, "range"), size) {
        RangeSpec::Full => (StatusCode::OK, 0, size),
        RangeSpec::Part(s, e) => {
            h.insert(header::CONTENT_RANGE, hv(format!("bytes {s}-{e}/{size}")));
            (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
        }
        RangeSpec::Unsatisfiable => {
            h.insert(header::CONTENT_RANGE, hv(format!("bytes */{size}")));
            let e = RegistryError::new(
                ErrorCode::BlobUnknown,
                format!("range not satisfiable for a blob of {size} bytes"),
            )
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE);
            let mut resp = e.into_response();
            resp.headers_mut().extend(h);
            return Ok(resp);
        }
    };
    h.insert(header::CONTENT_LENGTH, hv(len.to_string()));
    if method == Method::HEAD {
        return Ok((status, h, Body::empty()).into_response());
    }
    if let Some(m) = manifest {
        let part = m.bytes.slice(start as usize..(start + len) as usize);
        reg.inner.metrics.bytes_out.inc_by(len);
        return Ok((status, h, Body::from(part)).into_response());
    }
    let reader = {
        let reg = reg.clone();
        let d = d.clone();
        tokio::task::spawn_blocking(move || reg.open_blob(&d, start))
            .await
            .map_err(RegistryError::internal)?
    }
    .map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            RegistryError::blob_unknown(d)
        } else {
            RegistryError::internal(e)
        }
    })?;
    let body = Body::from_stream(stream_reader(reg.clone(), reader, len));
    Ok((status, h, body).into_response())
}

/// Stream `len` bytes from a blocking reader: a blocking thread reads
/// large chunks into a small bounded channel.
fn stream_reader(
    reg: Registry,
    mut reader: storage::BlobReader,
    len: u64,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            let want = (left as usize).min(READ_CHUNK);
            let mut buf = BytesMut::zeroed(want);
            let mut filled = 0;
            while filled < want {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            if filled == 0 {
                let _ = tx.blocking_send(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "blob shorter than expected",
                )));
                return;
            }
            buf.truncate(filled);
            left -= filled as u64;
            reg.inner.metrics.bytes_out.inc_by(filled as u64);
            if tx.blocking_send(Ok(buf.freeze())).is_err() {
                return; // client went away
            }
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

// ---- uploads --------------------------------------------------------------

fn upload_response(status: StatusCode, repo: &Name, id: &str, len: u64) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        header::LOCATION,
        hv(format!("/v2/{repo}/blobs/uploads/{id}")),
    );
    h.insert(header::RANGE, hv(format!("0-{}", len.saturating_sub(1))));
    h.insert("Docker-Upload-UUID", hv(id));
    h.insert(header::CONTENT_LENGTH, hv("0"));
    (status, h).into_response()
}

fn created_blob(repo: &Name, d: &Digest) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::LOCATION, hv(format!("/v2/{repo}/blobs/{d}")));
    h.insert("Docker-Content-Digest", hv(d.to_string()));
    h.insert(header::CONTENT_LENGTH, hv("0"));
    (StatusCode::CREATED, h).into_response()
}

/// `Content-Range: <first>-<last>` (inclusive; a `bytes ` prefix is
/// tolerated). Malformed is 416.
fn content_range(h: &HeaderMap) -> Result<Option<(u64, u64)>, RegistryError> {
    let Some(v) = header_str(h, "content-range") else {
        return Ok(None);
    };
    let s = v.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or("");
    let parsed = s
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    match parsed {
        Some(r) => Ok(Some(r)),
        None => Err(range_error(format!("malformed Content-Range {v:?}"))),
    }
}

fn body_stream(req: Request) -> impl futures::Stream<Item = Result<Bytes, axum::Error>> + Unpin {
    req.into_body()
        .into_data_stream()
        .map(|r: Result<Bytes, axum::Error>| r)
}

async fn start_upload(reg: &Registry, repo: &Name, req: Request) -> Resp {
    let q = query_pairs(&req);
    if let Some(m) = query(&q, "mount") {
        if let Ok(d) = Digest::parse(m) {
            let source_ok = match query(&q, "from") {
                Some(from) => match Name::parse(from) {
                    Ok(from) => reg.blob_size(&from, &d)?.is_some(),
                    Err(_) => false,
                },
                // No `from`: mount if the registry has the blob anywhere.
                None => reg.inner.store.meta.blob_linked_anywhere(&d)?.is_some(),
            };
            if source_ok && reg.link_blob(repo, &d).is_ok() {
                return Ok(created_blob(repo, &d));
            }
        }
        // Fall back to an ordinary upload session.
    } else if let Some(ds) = query(&q, "digest") {
        let d = digest(ds)?;
        let cl = content_length(req.headers());
        reg.ingest_blob(repo, &d, body_stream(req), cl).await?;
        return Ok(created_blob(repo, &d));
    }
    let id = reg.start_upload(repo).await?.to_string();
    Ok(upload_response(StatusCode::ACCEPTED, repo, &id, 0))
}

async fn patch_upload(reg: &Registry, repo: &Name, id: &str, req: Request) -> Resp {
    let range = content_range(req.headers())?;
    let cl = content_length(req.headers());
    match reg
        .patch_upload(repo, id, range, cl, body_stream(req))
        .await
    {
        Ok(len) => Ok(upload_response(StatusCode::ACCEPTED, repo, id, len)),
        Err(e) => Err(e),
    }
}

async fn put_upload(reg: &Registry, repo: &Name, id: &str, req: Request) -> Resp {
    let q = query_pairs(&req);
    let Some(ds) = query(&q, "digest") else {
        // Check the session exists first: an unknown one is 404.
        reg.upload_info(repo, id)?;
        return Err(RegistryError::new(
            ErrorCode::DigestInvalid,
            "the closing PUT needs ?digest=",
        ));
    };
    let d = digest(ds)?;
    let range = content_range(req.headers())?;
    let cl = content_length(req.headers());
    reg.finish_upload(repo, id, &d, range, cl, body_stream(req))
        .await?;
    Ok(created_blob(repo, &d))
}

impl RegistryError {
    fn with_message(mut self, m: String) -> RegistryError {
        self.message = m;
        self
    }
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
    fn ranges() {
        assert!(matches!(
            parse_range(Some("bytes=0-9"), 100),
            RangeSpec::Part(0, 9)
        ));
        assert!(matches!(
            parse_range(Some("bytes=90-"), 100),
            RangeSpec::Part(90, 99)
        ));
        assert!(matches!(
            parse_range(Some("bytes=-10"), 100),
            RangeSpec::Part(90, 99)
        ));
        assert!(matches!(
            parse_range(Some("bytes=95-200"), 100),
            RangeSpec::Part(95, 99)
        ));
        assert!(matches!(
            parse_range(Some("bytes=100-"), 100),
            RangeSpec::Unsatisfiable
        ));
        assert!(matches!(
            parse_range(Some("bytes=9-3"), 100),
            RangeSpec::Unsatisfiable
        ));
        assert!(matches!(parse_range(None, 100), RangeSpec::Full));
    }

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        assert!(accepts(&h, "x/y"));
        h.insert(header::ACCEPT, hv("a/b, x/y;q=0.5"));
        assert!(accepts(&h, "x/y"));
        assert!(!accepts(&h, "x/z"));
        h.insert(header::ACCEPT, hv("*/*"));
        assert!(accepts(&h, "x/z"));
    }
}
