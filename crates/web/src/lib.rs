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

/// What the API serves from.
#[derive(Clone)]
pub struct State {
    pub assess: assess::Service,
    /// OpenAPI documents of endpoints other crates serve under `/api/v1`
    /// (imports), merged into `/api/v1/openapi.json`.
    pub extra_docs: Vec<utoipa::openapi::OpenApi>,
}

impl State {
    pub fn new(assess: assess::Service) -> State {
        State {
            assess,
            extra_docs: Vec::new(),
        }
    }

    /// Also document these endpoints in `/api/v1/openapi.json`.
    pub fn with_docs(mut self, doc: utoipa::openapi::OpenApi) -> State {
        self.extra_docs.push(doc);
        self
    }
}

/// The API and the dashboard.
pub fn router(state: State) -> axum::Router {
    api::router(state).merge(dashboard::router())
}
