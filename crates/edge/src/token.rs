//! `/token`: the Docker token flow.
//!
//! - `GET /token?service=S&scope=…[&offline_token=true]` with HTTP Basic
//!   credentials (or none: an anonymous token, carrying only what
//!   anonymous callers may do).
//! - `POST /token` (OAuth2 form): `grant_type=password` with `username`
//!   and `password`, or `grant_type=refresh_token` with `refresh_token`;
//!   `access_type=offline` asks for a refresh token (docker and
//!   containerd keep it as the login's identity token).
//!
//! Each requested scope is granted only as far as the identity may; the
//! token says so in its `access` claim.

use crate::authn::{
    Credentials, EdgeState, client_ip, credentials, error_response, login, refusal,
};
use auth::{AuthError, Principal, Scope};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

pub(crate) fn router(state: Arc<EdgeState>) -> Router {
    Router::new()
        .route("/token", get(get_token).post(post_token))
        .layer(DefaultBodyLimit::max(64 << 10))
        .with_state(state)
}

fn pairs(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}

fn one<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn scopes(q: &[(String, String)]) -> Vec<Scope> {
    Scope::parse_all(
        q.iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    )
}

fn bad_request(message: &str) -> Response {
    error_response("/token", StatusCode::BAD_REQUEST, "UNSUPPORTED", message)
}

/// The refusal of a token for another service (the client followed
/// someone else's challenge), if it is one.
fn check_service(state: &EdgeState, q: &[(String, String)]) -> Option<Response> {
    let Some(ac) = &state.edge.access else {
        return Some(bad_request("access control is off: no tokens are needed"));
    };
    match one(q, "service") {
        Some(s) if s != ac.settings().service => Some(bad_request(&format!(
            "this server issues tokens for service {:?}, not {s:?}",
            ac.settings().service
        ))),
        _ => None,
    }
}

fn issue(state: &EdgeState, who: &Principal, scopes: &[Scope], offline: bool) -> Response {
    let Some(ac) = &state.edge.access else {
        return bad_request("access control is off");
    };
    match ac.issue(who, scopes, offline) {
        Ok(t) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            serde_json::to_string(&t).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot issue a token");
            error_response(
                "/token",
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "cannot issue a token",
            )
        }
    }
}

async fn get_token(State(state): State<Arc<EdgeState>>, req: Request) -> Response {
    let q = pairs(req.uri().query().unwrap_or(""));
    if let Some(r) = check_service(&state, &q) {
        return r;
    }
    let Some(ac) = state.edge.access.clone() else {
        return bad_request("access control is off");
    };
    let ip = client_ip(&req);
    let challenge = state.challenge(req.headers(), req.uri());
    // A session cookie does not log in here: no Authorization, anonymous.
    let who = match credentials(req.headers()) {
        Credentials::None | Credentials::Cookie(_) => ac.anonymous(ip),
        Credentials::Basic(u, p) => match login(&ac, u, p, ip).await {
            Ok(p) => p,
            Err(e) => return refusal("/token", &e, &challenge),
        },
        Credentials::Bearer(_) | Credentials::Malformed => {
            return refusal("/token", &AuthError::BadCredentials, &challenge);
        }
    };
    let offline = one(&q, "offline_token") == Some("true");
    issue(&state, &who, &scopes(&q), offline)
}

async fn post_token(State(state): State<Arc<EdgeState>>, req: Request) -> Response {
    let ip = client_ip(&req);
    let challenge = state.challenge(req.headers(), req.uri());
    let body: Bytes = match axum::body::to_bytes(req.into_body(), 64 << 10).await {
        Ok(b) => b,
        Err(_) => return bad_request("the form is larger than 64 KiB"),
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return bad_request("the form is not UTF-8");
    };
    let q = pairs(body);
    if let Some(r) = check_service(&state, &q) {
        return r;
    }
    let Some(ac) = state.edge.access.clone() else {
        return bad_request("access control is off");
    };
    let (who, offline) = match one(&q, "grant_type") {
        Some("password") => {
            let (Some(u), Some(p)) = (one(&q, "username"), one(&q, "password")) else {
                return bad_request("grant_type=password needs username and password");
            };
            match login(&ac, u.to_string(), p.to_string(), ip).await {
                Ok(p) => (p, one(&q, "access_type") == Some("offline")),
                Err(e) => return refusal("/token", &e, &challenge),
            }
        }
        Some("refresh_token") => {
            let Some(t) = one(&q, "refresh_token") else {
                return bad_request("grant_type=refresh_token needs refresh_token");
            };
            match ac.refresh(t, ip) {
                // A refresh keeps the client's refresh token as it is.
                Ok(p) => (p, false),
                Err(e) => return refusal("/token", &e, &challenge),
            }
        }
        Some(other) => {
            return bad_request(&format!(
                "unsupported grant_type {other:?} (password or refresh_token)"
            ));
        }
        None => return bad_request("missing grant_type"),
    };
    issue(&state, &who, &scopes(&q), offline)
}
