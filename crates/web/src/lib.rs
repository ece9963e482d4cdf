//! The management REST API under `/api/v1` (JSON; OpenAPI document at
//! `/api/v1/openapi.json`) and the dashboard at `/ui/`.
//!
//! # API
//! [`router`] takes a [`State`] (the running [`assess::Service`]) and
//! returns routes to merge into the server: repositories and tags, images
//! (status, health, summary, findings with filters, remediation, diffs,
//! inventory), recommendations, exemptions, webhooks and their delivery
//! log, usage, vulnerability database status and the scan queue; with
//! access control ([`State::with_access`]) also sign-in for the dashboard,
//! users, robots, bindings, API tokens and the audit log.
//!
//! # Invariants
//! - Bad input gets a 4xx with a JSON body `{"error": {"code", "message"}}`
//!   naming what was wrong; nothing changes.
//! - Every view is scoped by the request's [`auth::Principal`] (put there
//!   by the edge layer; unrestricted when absent or when access control is
//!   off): lists show only repositories the caller may pull, and an image
//!   is visible when any of its repositories is. A single object the
//!   caller may not see is a 404 (401 for an anonymous caller, with the
//!   bearer challenge), so its existence is not revealed.
//! - Request bodies are at most 1 MiB (a JSON 413 beyond).
//! - The API only reads the assessor's read models; the dashboard uses the
//!   same API, so the two never disagree.

pub mod api;
pub mod dashboard;

/// What the API serves from. Cloned for every request it handles, so
/// everything in it is cheap to clone.
#[derive(Clone)]
pub struct State {
    pub assess: assess::Service,
    /// The OpenAPI document served at `/api/v1/openapi.json`, built once.
    pub docs: std::sync::Arc<utoipa::openapi::OpenApi>,
    /// Access control; `None` when it is off (every caller unrestricted,
    /// the user, robot, binding, token and audit endpoints answer 404).
    pub access: Option<auth::AccessControl>,
    /// Days after its build at which the vulnerability database is called
    /// stale on the overview and in the settings.
    pub stale_days: i64,
}

impl State {
    pub fn new(assess: assess::Service) -> State {
        use utoipa::OpenApi;
        State {
            assess,
            docs: std::sync::Arc::new(api::ApiDoc::openapi()),
            access: None,
            stale_days: api::DEFAULT_STALE_DAYS,
        }
    }

    /// Call the vulnerability database stale `days` days after its build
    /// (the configuration's `vulndb.stale_days`); zero or less keeps the
    /// default.
    pub fn with_stale_days(mut self, days: i64) -> State {
        if days > 0 {
            self.stale_days = days;
        }
        self
    }

    /// Turn access control on: the management endpoints of users, robots,
    /// bindings, API tokens and the audit log, and dashboard sign-in.
    pub fn with_access(mut self, access: auth::AccessControl) -> State {
        self.access = Some(access);
        self
    }

    /// Also document endpoints another crate serves under `/api/v1`
    /// (imports) in `/api/v1/openapi.json`.
    pub fn with_docs(mut self, doc: utoipa::openapi::OpenApi) -> State {
        std::sync::Arc::make_mut(&mut self.docs).merge(doc);
        self
    }
}

/// The API and the dashboard.
pub fn router(state: State) -> axum::Router {
    // Lists and pages compress well (JSON, HTML, JS): gzip or brotli as
    // the client accepts.
    api::router(state)
        .merge(dashboard::router())
        .layer(tower_http::compression::CompressionLayer::new())
}
