//! The HTTP API under `/api/v1/imports` (see the crate docs): who may see,
//! start and stop which job, and the answers' shapes.

use super::{Caller, ImportRequest, ImportedManifest, Importer, JobState, JobStatus, authorize};
use axum::Json;
use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

/// The `/api/v1/imports` routes. Merge into the server's router.
pub fn router(importer: Importer) -> Router {
    Router::new()
        .route("/api/v1/imports", get(list_imports).post(create_import))
        .route(
            "/api/v1/imports/{id}",
            get(get_import).delete(cancel_import),
        )
        .with_state(importer)
}

/// The error body of the import endpoints.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ImportError {
    pub error: String,
}

/// The OpenAPI description of `/api/v1/imports`; merge it into the
/// server's document (`doc.merge(import::openapi())`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    #[derive(OpenApi)]
    #[openapi(
        paths(create_import, get_import, list_imports, cancel_import),
        components(schemas(ImportRequest, JobStatus, JobState, ImportedManifest, ImportError))
    )]
    struct ImportApi;
    ImportApi::openapi()
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ImportError { error: msg.into() })).into_response()
}

/// The request's caller: the principal the authentication layer put in.
/// Without that layer (the router used on its own, as in-process
/// embedders and tests do) nothing is authenticated, so the caller is
/// unrestricted, as when authentication is off.
fn caller_of(ext: Option<Extension<auth::Principal>>) -> auth::Principal {
    match ext {
        Some(Extension(p)) => p,
        None => auth::Principal::unrestricted(),
    }
}

/// The repository of a job's target (`REPO[:TAG]`).
fn target_repo(target: &str) -> &str {
    match target.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => r,
        _ => target,
    }
}

/// Whether `caller` may see job `s`: pull on its target.
fn visible(caller: &dyn Caller, s: &JobStatus) -> bool {
    caller.may_pull(target_repo(&s.target))
}

/// Start an import job.
#[utoipa::path(post, path = "/api/v1/imports", tag = "imports", request_body = ImportRequest,
    responses((status = 202, description = "Job started", body = JobStatus),
              (status = 400, description = "The request cannot work (syntax; a server-side path \
                  from a non-administrator or outside the import directories)", body = ImportError),
              (status = 401, description = "Anonymous, and push on the target is needed", body = ImportError),
              (status = 403, description = "No push on the target", body = ImportError)))]
pub async fn create_import(
    State(imp): State<Importer>,
    caller: Option<Extension<auth::Principal>>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/json"));
    if !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as application/json",
        );
    }
    let req: ImportRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid request: {e}")),
    };
    let caller = caller_of(caller);
    match imp.submit_as(&caller, req) {
        Ok(status) => {
            imp.save(status.id).await;
            let location = format!("/api/v1/imports/{}", status.id);
            (
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                Json(status),
            )
                .into_response()
        }
        Err(e) => error(e.status(), e.to_string()),
    }
}

/// An import job's progress and result.
#[utoipa::path(get, path = "/api/v1/imports/{id}", tag = "imports",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobStatus), (status = 404, body = ImportError)))]
pub async fn get_import(
    State(imp): State<Importer>,
    caller: Option<Extension<auth::Principal>>,
    Path(id): Path<String>,
) -> Response {
    match visible_job(&imp, &caller_of(caller), &id).await {
        Ok((_, s)) => Json(s).into_response(),
        Err(r) => r,
    }
}

/// The job `id` names, if the caller may see it; else the 404 an unknown
/// job gets.
async fn visible_job(
    imp: &Importer,
    caller: &auth::Principal,
    id: &str,
) -> Result<(uuid::Uuid, JobStatus), Response> {
    let unknown = || error(StatusCode::NOT_FOUND, "no such import");
    let id = uuid::Uuid::parse_str(id).map_err(|_| unknown())?;
    match imp.find(id).await {
        Some(s) if visible(caller, &s) => Ok((id, s)),
        _ => Err(unknown()),
    }
}

/// Cancel an import job (before it writes tags).
#[utoipa::path(delete, path = "/api/v1/imports/{id}", tag = "imports",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 202, body = JobStatus), (status = 404, body = ImportError),
              (status = 409, description = "Finished or writing tags", body = ImportError)))]
pub async fn cancel_import(
    State(imp): State<Importer>,
    caller: Option<Extension<auth::Principal>>,
    Path(id): Path<String>,
) -> Response {
    let caller = caller_of(caller);
    let (id, status) = match visible_job(&imp, &caller, &id).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if let Err(e) = authorize(&caller, target_repo(&status.target), false) {
        return error(e.status(), e.to_string());
    }
    if imp.status(id).is_none() {
        // Another node runs it: record the request for its next
        // heartbeat (which still refuses it once tags are being written).
        // The answer is the status as last stored.
        let too_late = status.state.is_finished() || status.phase == "tagging";
        let asked = if too_late {
            Ok(false)
        } else {
            imp.meta().request_import_cancel(id).await
        };
        return match asked {
            Ok(true) => (StatusCode::ACCEPTED, Json(status)).into_response(),
            Ok(false) => error(
                StatusCode::CONFLICT,
                "the import has finished or is writing tags; it cannot be cancelled now",
            ),
            Err(e) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot reach the metadata store: {e}"),
            ),
        };
    }
    match imp.cancel(id) {
        None => error(StatusCode::NOT_FOUND, "no such import"),
        Some(false) => error(
            StatusCode::CONFLICT,
            "the import has finished or is writing tags; it cannot be cancelled now",
        ),
        Some(true) => (
            StatusCode::ACCEPTED,
            Json(imp.status(id).expect("job exists")),
        )
            .into_response(),
    }
}

/// Recent import jobs, newest first.
#[utoipa::path(get, path = "/api/v1/imports", tag = "imports",
    responses((status = 200, body = Vec<JobStatus>)))]
pub async fn list_imports(
    State(imp): State<Importer>,
    caller: Option<Extension<auth::Principal>>,
) -> Response {
    let caller = caller_of(caller);
    let jobs: Vec<JobStatus> = imp
        .recent()
        .await
        .into_iter()
        .filter(|s| visible(&caller, s))
        .collect();
    Json(jobs).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_lists_the_endpoints() {
        let doc = super::openapi();
        for p in ["/api/v1/imports", "/api/v1/imports/{id}"] {
            assert!(doc.paths.paths.contains_key(p), "{p}");
        }
        let schemas = doc.components.expect("components").schemas;
        assert!(schemas.contains_key("JobStatus") && schemas.contains_key("ImportRequest"));
    }
}
