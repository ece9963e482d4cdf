//! The HTTP edge: the one middleware stack every route runs behind —
//! registry, management API and dashboard alike — and the token endpoint.
//!
//! Order, outermost first: request id (`X-Request-Id`, made when absent
//! and echoed back), a tracing span carrying it, the registry's request
//! metrics and log line, authentication (an [`auth::Principal`] and an
//! [`auth::Challenge`] in every request), CSRF for dashboard sessions,
//! limits (concurrent uploads, a time bound on non-streaming routes), and
//! the audit log of pushes, pulls, deletes and refusals.
//!
//! Routes decide what a principal may do; this layer only establishes who
//! it is. With access control off every request carries
//! [`auth::Principal::unrestricted`].

mod authn;
mod token;

use auth::AccessControl;
use axum::Router;
use axum::middleware;
use std::sync::Arc;
use std::time::Duration;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// Edge settings.
#[derive(Clone)]
pub struct Edge {
    /// Access control; `None` turns it off (every request unrestricted).
    pub access: Option<AccessControl>,
    /// Whether clients reach this server over TLS (the token realm's
    /// scheme, the session cookie's `Secure`).
    pub tls: bool,
    /// The token realm; by default `<scheme>://<Host>/token`.
    pub realm: Option<String>,
    /// Upload requests (PATCH/PUT/POST on `…/blobs/uploads`) served at
    /// once; more get 429 with `Retry-After`.
    pub max_concurrent_uploads: usize,
    /// Time bound of a request on a non-streaming route (everything but
    /// blob and upload transfers).
    pub request_timeout: Duration,
}

impl Edge {
    /// Defaults: no access control, plain HTTP, 256 uploads, 60 s.
    pub fn new(access: Option<AccessControl>) -> Edge {
        Edge {
            access,
            tls: false,
            realm: None,
            max_concurrent_uploads: 256,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Wrap the whole application (the registry's routes merged with the
/// API, the dashboard and the imports) in the one stack, and add `/token`.
pub fn wrap(app: Router, edge: Edge, registry: &registry::Registry) -> Router {
    let state = Arc::new(authn::EdgeState::new(edge));
    app.merge(token::router(state.clone()))
        .layer(middleware::from_fn_with_state(state, authn::authenticate))
        .layer(registry.observe_layer())
        .layer(middleware::from_fn(authn::span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}
