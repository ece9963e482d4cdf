//! `/api/v1/patches`: start a patch of a Debian image (or a dry run that
//! only plans it) and follow it. Starting one needs push (or admin) on the
//! repository, since the result is pushed into it; reading a job needs
//! pull on its repository, as reading the image it patches does. `GET
//! /api/v1/patches?repository=` says whether patching is configured and
//! whether the caller may patch there (the dashboard's image page).

use super::{ApiError, Caller, ErrorBody};
use auth::Action;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// The body of `POST /api/v1/patches`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    /// Repository of the image.
    repository: String,
    /// Tag of the image (or index) to patch.
    tag: String,
    /// Plan only: push nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Whether patching is set up here, and for whom.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PatchInfo {
    /// Archives and a keyring are configured: patches can be made.
    pub configured: bool,
    /// A keyring is configured (`patch.debian.keyring`).
    pub keyring: bool,
    /// The configured suites (`bookworm-security`, …).
    pub suites: Vec<String>,
    /// The caller may start a patch of `repository` (push or admin).
    pub may_patch: bool,
    /// Continuous mode is on.
    pub continuous: bool,
}

#[derive(Deserialize)]
pub struct InfoQuery {
    repository: Option<String>,
}

/// The routes, with the patch service as their state.
pub fn router(patcher: patch::Patcher) -> Router {
    Router::new()
        .route("/api/v1/patches", post(create).get(info))
        .route("/api/v1/patches/{id}", get(status))
        .with_state(patcher)
}

fn may_patch(caller: &Caller, repo: &str) -> bool {
    caller.principal.may(repo, Action::Push) || caller.principal.may(repo, Action::Admin)
}

/// Whether patching is configured, and whether the caller may patch
/// `repository`.
#[utoipa::path(get, path = "/api/v1/patches", tag = "patches",
    params(("repository" = Option<String>, Query, description = "The repository the caller would patch")),
    responses((status = 200, body = PatchInfo), (status = 401, description = "Anonymous", body = ErrorBody)))]
pub async fn info(
    State(p): State<patch::Patcher>,
    caller: Caller,
    Query(q): Query<InfoQuery>,
) -> Result<Json<PatchInfo>, ApiError> {
    if caller.principal.is_anonymous() {
        return Err(caller.unauthorized("authentication required"));
    }
    let cfg = p.config();
    let keyring = cfg.debian.keyring.is_some();
    Ok(Json(PatchInfo {
        configured: keyring && !cfg.debian.archives.is_empty(),
        keyring,
        suites: cfg
            .debian
            .archives
            .iter()
            .map(|a| a.suite.clone())
            .collect(),
        may_patch: q.repository.is_some_and(|r| may_patch(&caller, &r)),
        continuous: cfg.enabled,
    }))
}

/// Start a patch (or a dry run) of `repository:tag`; follow it at the
/// `Location` given.
#[utoipa::path(post, path = "/api/v1/patches", tag = "patches", request_body = PatchRequest,
    responses((status = 202, description = "Job started", body = patch::JobView),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 401, description = "Anonymous", body = ErrorBody),
              (status = 403, description = "Pull but no push on the repository", body = ErrorBody),
              (status = 404, description = "No such repository the caller may see", body = ErrorBody)))]
pub async fn create(
    State(p): State<patch::Patcher>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: PatchRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))?;
    if !may_patch(&caller, &req.repository) {
        return Err(if caller.principal.may(&req.repository, Action::Pull) {
            caller.forbidden(format!("patching needs push on {}", req.repository))
        } else {
            caller.hidden(format!("no repository {}", req.repository))
        });
    }
    let id = p
        .submit(&req.repository, &req.tag, req.dry_run)
        .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    let job = p
        .job(&id)
        .ok_or_else(|| ApiError::internal("the job vanished"))?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/v1/patches/{id}"))],
        Json(job),
    )
        .into_response())
}

/// A patch job: `state` (`running`, `done`, `failed`), `error`, and
/// `result` with the plan per platform and the pushed tag. Jobs outlive a
/// restart; one running when the server stopped is `failed` with
/// "interrupted by restart".
#[utoipa::path(get, path = "/api/v1/patches/{id}", tag = "patches",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = patch::JobView),
              (status = 401, description = "Anonymous", body = ErrorBody),
              (status = 404, description = "No such job on a repository the caller may pull", body = ErrorBody)))]
pub async fn status(
    State(p): State<patch::Patcher>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match p.job(&id) {
        Some(j) if caller.principal.may(&j.repository, Action::Pull) => Ok(Json(j).into_response()),
        _ => Err(caller.hidden("no such patch job")),
    }
}
