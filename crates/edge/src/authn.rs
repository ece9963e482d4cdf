//! Authentication, CSRF, limits and the audit hook.

use crate::Edge;
use auth::{AuthError, Challenge, Principal, Session};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tracing::Instrument;

pub(crate) struct EdgeState {
    pub(crate) edge: Edge,
    uploads: Arc<Semaphore>,
}

impl EdgeState {
    pub(crate) fn new(edge: Edge) -> EdgeState {
        EdgeState {
            uploads: Arc::new(Semaphore::new(edge.max_concurrent_uploads.max(1))),
            edge,
        }
    }

    pub(crate) fn challenge(&self, headers: &HeaderMap, uri: &http::Uri) -> Challenge {
        let service = self
            .edge
            .access
            .as_ref()
            .map_or_else(|| "drydock".to_string(), |a| a.settings().service.clone());
        let realm = self.edge.realm.clone().unwrap_or_else(|| {
            let host = uri
                .authority()
                .map(|a| a.as_str().to_string())
                .or_else(|| {
                    headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_string)
                })
                .filter(|h| valid_host(h))
                .unwrap_or_else(|| "localhost".into());
            let scheme = if self.edge.tls { "https" } else { "http" };
            format!("{scheme}://{host}/token")
        });
        Challenge { realm, service }
    }
}

/// A Host header fit to put into a URL: name or address, optional port.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// The client's address, when the server recorded it.
pub(crate) fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// A span carrying the request id, so every log line of the request
/// (the request line included) names it.
pub(crate) async fn span(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    next.run(req)
        .instrument(tracing::info_span!("req", id = %id))
        .await
}

/// Credentials a request carries.
pub(crate) enum Credentials {
    None,
    Basic(String, String),
    Bearer(String),
    Cookie(String),
    Malformed,
}

pub(crate) fn credentials(headers: &HeaderMap) -> Credentials {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let Ok(v) = v.to_str() else {
            return Credentials::Malformed;
        };
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            return match decoded.as_deref().and_then(|s| s.split_once(':')) {
                Some((u, p)) => Credentials::Basic(u.to_string(), p.to_string()),
                None => Credentials::Malformed,
            };
        }
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Credentials::Bearer(rest.to_string());
        }
        return Credentials::Malformed;
    }
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=')
                && k == auth::SESSION_COOKIE
                && !val.is_empty()
            {
                return Credentials::Cookie(val.to_string());
            }
        }
    }
    Credentials::None
}

/// Whether a path is served from the registry API (errors in its format).
fn is_registry(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/") || path == "/token"
}

/// Routes that run for as long as their data takes: blob and upload
/// transfers, and manifest reads, which a pull-through mirror may answer
/// by fetching the image upstream (bounded by its own timeout).
fn is_streaming(method: &Method, path: &str) -> bool {
    path.starts_with("/v2/")
        && (path.contains("/blobs/")
            || (matches!(*method, Method::GET | Method::HEAD) && path.contains("/manifests/")))
}

fn is_upload(method: &Method, path: &str) -> bool {
    path.starts_with("/v2/")
        && path.contains("/blobs/uploads")
        && matches!(*method, Method::PATCH | Method::PUT | Method::POST)
}

/// An error in the format of the route: the registry's `errors` list or
/// the management API's `error` object.
pub(crate) fn error_response(
    path: &str,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    let body = if is_registry(path) {
        serde_json::json!({"errors": [{"code": code, "message": message, "detail": null}]})
    } else {
        serde_json::json!({"error": {"code": code, "message": message}})
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn refusal(path: &str, e: &AuthError, challenge: &Challenge) -> Response {
    match e {
        AuthError::RateLimited(wait) => {
            let mut r = error_response(
                path,
                StatusCode::TOO_MANY_REQUESTS,
                "TOOMANYREQUESTS",
                &e.to_string(),
            );
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        _ => {
            let mut r = error_response(
                path,
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                &e.to_string(),
            );
            if let Ok(v) = HeaderValue::from_str(&challenge.bearer(None, false)) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            r
        }
    }
}

/// Establish the principal; then limits, the request itself and the audit.
pub(crate) async fn authenticate(
    State(state): State<Arc<EdgeState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let challenge = state.challenge(req.headers(), req.uri());
    let ip = client_ip(&req);
    let principal = match &state.edge.access {
        None => Principal::unrestricted(),
        Some(ac) => {
            let creds = credentials(req.headers());
            // The token endpoint checks credentials itself (it must tell
            // a refused login from a missing one in its own way).
            if path == "/token" {
                ac.anonymous(ip)
            } else {
                match creds {
                    Credentials::None => ac.anonymous(ip),
                    Credentials::Malformed => {
                        return refusal(&path, &AuthError::BadCredentials, &challenge);
                    }
                    Credentials::Basic(u, p) => match login(ac, u, p, ip).await {
                        Ok(p) => p,
                        Err(e) => return refusal(&path, &e, &challenge),
                    },
                    Credentials::Bearer(t) => match ac.bearer(&t, ip) {
                        Ok(p) => p,
                        Err(e) => return refusal(&path, &e, &challenge),
                    },
                    Credentials::Cookie(c) => match ac.session(&c, ip) {
                        Ok((p, csrf)) => {
                            if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
                                let sent = req
                                    .headers()
                                    .get(auth::CSRF_HEADER)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("");
                                if csrf.is_empty() || !auth::secret::constant_time_eq(sent, &csrf) {
                                    return error_response(
                                        &path,
                                        StatusCode::FORBIDDEN,
                                        "DENIED",
                                        "missing or wrong X-CSRF-Token for this session",
                                    );
                                }
                            }
                            req.extensions_mut().insert(Session { csrf });
                            p
                        }
                        // An expired session is no session: the request
                        // goes on as anonymous and the routes ask for a
                        // login.
                        Err(_) => ac.anonymous(ip),
                    },
                }
            }
        }
    };
    req.extensions_mut().insert(principal.clone());
    req.extensions_mut().insert(challenge);

    let _upload_permit = if is_upload(&method, &path) {
        match state.uploads.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let mut r = error_response(
                    &path,
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOOMANYREQUESTS",
                    "too many uploads at once; retry shortly",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
        }
    } else {
        None
    };

    let resp = if is_streaming(&method, &path) {
        next.run(req).await
    } else {
        match tokio::time::timeout(state.edge.request_timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => error_response(
                &path,
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the request took too long",
            ),
        }
    };
    if let Some(ac) = &state.edge.access {
        audit(ac, &principal, &method, &resp);
    }
    resp
}

/// Pushes, deletes and pulls of the registry API, and refusals of
/// identified callers, go to the audit log.
fn audit(ac: &auth::AccessControl, who: &Principal, method: &Method, resp: &Response) {
    let Some(info) = resp.extensions().get::<registry::RouteInfo>() else {
        return;
    };
    let Some(repo) = info.repo.as_deref() else {
        return;
    };
    let status = resp.status();
    let target = match &info.reference {
        Some(r) => format!("{repo}:{r}").replace(":sha256:", "@sha256:"),
        None => repo.to_string(),
    };
    if status == StatusCode::FORBIDDEN
        || (status == StatusCode::UNAUTHORIZED && !who.is_anonymous())
    {
        let action = match *method {
            Method::GET | Method::HEAD => "pull",
            Method::DELETE => "delete",
            _ => "push",
        };
        ac.audit_by(who, action, &target, "denied", info.route);
        return;
    }
    if !status.is_success() {
        return;
    }
    match (info.route, method) {
        ("manifest", &Method::PUT) => ac.audit_by(who, "push", &target, "ok", ""),
        ("manifest" | "blob", &Method::DELETE) => ac.audit_by(who, "delete", &target, "ok", ""),
        ("manifest", &Method::GET) => ac.audit_pull(who, repo),
        _ => {}
    }
}

/// `AccessControl::login` off the async threads: a first login of a user
/// runs argon2 (tens of milliseconds of CPU).
pub(crate) async fn login(
    ac: &auth::AccessControl,
    user: String,
    password: String,
    ip: Option<IpAddr>,
) -> Result<Principal, AuthError> {
    // Known good (a robot's secret, a password verified minutes ago):
    // no thread hand-off, which would cost more than the request.
    if let Some(p) = ac.login_known(&user, &password, ip) {
        return Ok(p);
    }
    let ac = ac.clone();
    tokio::task::spawn_blocking(move || ac.login(&user, &password, ip))
        .await
        .unwrap_or(Err(AuthError::BadCredentials))
}
