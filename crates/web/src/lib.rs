//! The management REST API under `/api/v1` (JSON; OpenAPI document at
//! `/api/v1/openapi.json`) and the dashboard at `/ui/`.
//!
//! # API
//! [`router`] takes a [`State`] (the running [`assess::Service`]) and
//! returns routes to merge into the server: repositories and tags, images
//! (status, health, summary, findings with filters, remediation, diffs,
//! inventory), recommendations, exemptions, webhooks and their delivery
//! log, usage, vulnerability database status and the scan queue.
//!
//! # Invariants
//! - Bad input gets a 4xx with a JSON body `{"error": {"code", "message"}}`
//!   naming what was wrong; nothing changes.
//! - Every path that concerns one repository's content carries the
//!   repository name or resolves to it (`repositories` on an image), so an
//!   authorization layer can scope access per repository later.
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
}

impl State {
    pub fn new(assess: assess::Service) -> State {
        use utoipa::OpenApi;
        State {
            assess,
            docs: std::sync::Arc::new(api::ApiDoc::openapi()),
        }
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
    api::router(state).merge(dashboard::router())
}
