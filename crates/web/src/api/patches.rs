//! `/api/v1/patches`: start a patch of a Debian image (or a dry run that
//! only plans it) and follow it. Starting one needs push (or admin) on the
//! repository, since the result is pushed into it; a job is visible to the
//! same callers.

use super::{ApiError, Caller};
use auth::Action;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchRequest {
    repository: String,
    tag: String,
    #[serde(default)]
    dry_run: bool,
}

/// The routes, with the patch service as their state.
pub fn router(patcher: patch::Patcher) -> Router {
    Router::new()
        .route("/api/v1/patches", post(create))
        .route("/api/v1/patches/{id}", get(status))
        .with_state(patcher)
}

fn may_patch(caller: &Caller, repo: &str) -> bool {
    caller.principal.may(repo, Action::Push) || caller.principal.may(repo, Action::Admin)
}

async fn create(
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

async fn status(
    State(p): State<patch::Patcher>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match p.job(&id) {
        Some(j) if may_patch(&caller, &j.repository) => Ok(Json(j).into_response()),
        _ => Err(caller.hidden("no such patch job")),
    }
}
