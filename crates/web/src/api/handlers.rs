//! Request handlers.

use super::ApiError;
use super::params::{
    FilterParams, FindingsQuery, ImageQuery, ImagesQuery, LimitQuery, PackagesQuery, PageQuery,
    Params, SbomQuery, UsageQuery,
};
use super::scope::{Body, Caller, Scope};
use crate::State;
use assess::views::{
    FindingFilter, ImageBrief, ImageView, QueueView, Recommendations, UsageReport,
};
use assess::{Exemption, Service, Severity};
use auth::Action;
use axum::Json;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use time::OffsetDateTime;
use utoipa::ToSchema;

type ApiResult<T> = Result<T, ApiError>;

/// Run store work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    state: &State,
    f: impl FnOnce(&Service) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let svc = state.assess.clone();
    tokio::task::spawn_blocking(move || f(&svc))
        .await
        .map_err(ApiError::internal)?
}

fn parse_bool(name: &str, v: &str) -> ApiResult<bool> {
    match v {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be true or false, not {v:?}"
        ))),
    }
}

fn parse_digest(s: &str) -> ApiResult<String> {
    oci::Digest::parse(s)
        .map(|d| d.to_string())
        .map_err(|e| ApiError::bad_request(format!("invalid digest {s:?}: {e}")))
}

pub(super) fn parse_json<T: for<'de> Deserialize<'de>>(body: &Body) -> ApiResult<T> {
    let body = &body.0;
    if body.is_empty() {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn month_of(name: &str, s: &str) -> ApiResult<String> {
    assess::clock::parse_month(s).map_err(|e| ApiError::bad_request(format!("{name} {e}")))
}

pub(super) fn parse_time(name: &str, s: &str) -> ApiResult<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| ApiError::bad_request(format!("{name} must be an RFC 3339 time: {e}")))
}

pub async fn openapi(AxState(state): AxState<State>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&*state.docs).unwrap_or_default(),
    )
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such API endpoint; see /api/v1/openapi.json")
}

// ---- repositories ----

/// A repository with a health roll-up.
#[derive(Serialize, ToSchema)]
pub struct RepositoryView {
    pub name: String,
    pub tags: usize,
    pub images: usize,
    pub unhealthy: usize,
}

#[derive(Serialize, ToSchema)]
pub struct TagView {
    pub tag: String,
    pub digest: String,
    pub status: Option<String>,
    pub healthy: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct RepositoryDetail {
    pub name: String,
    pub tags: Vec<TagView>,
    pub images: Vec<ImageBrief>,
}

#[utoipa::path(get, path = "/api/v1/repositories", responses((status = 200, body = Vec<RepositoryView>)))]
pub async fn list_repositories(
    AxState(state): AxState<State>,
    caller: Caller,
) -> ApiResult<Json<Vec<RepositoryView>>> {
    blocking(&state, move |svc| {
        let scope = Scope::new(&caller.principal);
        let mut out = Vec::new();
        for repo in svc.source().repositories()? {
            if !scope.repo(repo.as_str()) {
                continue;
            }
            let tags = svc.source().tags(&repo)?.len();
            let images = svc.list_images(Some(repo.as_str()))?;
            let top: Vec<&ImageBrief> = images
                .iter()
                .filter(|i| i.kind != "image" || !is_child(svc, &i.digest))
                .collect();
            out.push(RepositoryView {
                name: repo.as_str().to_string(),
                tags,
                images: top.len(),
                unhealthy: top
                    .iter()
                    .filter(|i| i.health.as_ref().is_some_and(|h| !h.healthy))
                    .count(),
            });
        }
        Ok(Json(out))
    })
    .await
}

fn is_child(svc: &Service, digest: &str) -> bool {
    svc.store()
        .image(digest)
        .ok()
        .flatten()
        .is_some_and(|r| r.parent.is_some())
}

/// Images of one repository the caller may read, their other
/// repositories' tags left out.
fn images_in(svc: &Service, scope: &Scope, repo: &str) -> ApiResult<Vec<ImageBrief>> {
    let mut list = svc.list_images(Some(repo))?;
    for i in &mut list {
        i.repository = repo.to_string();
        i.tags.retain(|t| scope.tag(t));
    }
    Ok(list)
}

fn tag_views(svc: &Service, repo: &oci::Name) -> ApiResult<Vec<TagView>> {
    let mut out = Vec::new();
    for (tag, digest) in svc.source().tags(repo)? {
        let d = digest.to_string();
        let row = svc.store().image(&d)?;
        let healthy = match &row {
            Some(r) => svc.verdict(r)?.map(|(h, _)| h.healthy),
            None => None,
        };
        out.push(TagView {
            tag: tag.as_str().to_string(),
            digest: d,
            status: row.map(|r| r.status),
            healthy,
        });
    }
    out.sort_by(|a, b| a.tag.cmp(&b.tag));
    Ok(out)
}

/// `GET /api/v1/repositories/{name}`, `.../{name}/tags`, `.../{name}/images`
/// (a repository name may contain slashes).
#[utoipa::path(get, path = "/api/v1/repositories/{name}", params(("name" = String, Path, description = "Repository name; append /tags or /images for those lists")),
    responses((status = 200, body = RepositoryDetail), (status = 404, body = super::ErrorBody)))]
pub async fn get_repository(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(rest): Path<String>,
) -> ApiResult<axum::response::Response> {
    let (name, what) = if let Some(n) = rest.strip_suffix("/tags") {
        (n.to_string(), "tags")
    } else if let Some(n) = rest.strip_suffix("/images") {
        (n.to_string(), "images")
    } else {
        (rest.trim_end_matches('/').to_string(), "detail")
    };
    let repo = oci::Name::parse(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    blocking(&state, move |svc| {
        let scope = Scope::new(&caller.principal);
        // A repository the caller may not pull is answered like one that
        // does not exist.
        if !scope.repo(repo.as_str()) || !svc.source().repositories()?.iter().any(|r| r == &repo) {
            return Err(caller.hidden(format!("repository {name:?} not found")));
        }
        Ok(match what {
            "tags" => Json(tag_views(svc, &repo)?).into_response(),
            "images" => Json(images_in(svc, &scope, repo.as_str())?).into_response(),
            _ => Json(RepositoryDetail {
                name: repo.as_str().to_string(),
                tags: tag_views(svc, &repo)?,
                images: images_in(svc, &scope, repo.as_str())?,
            })
            .into_response(),
        })
    })
    .await
}

// ---- images ----

#[utoipa::path(get, path = "/api/v1/images",
    params(("repository" = Option<String>, Query, description = "Only this repository"),
           ("health" = Option<String>, Query, description = "healthy or unhealthy")),
    responses((status = 200, body = Vec<ImageBrief>), (status = 400, body = super::ErrorBody)))]
pub async fn list_images(
    AxState(state): AxState<State>,
    caller: Caller,
    Params(q): Params<ImagesQuery>,
) -> ApiResult<Json<Vec<ImageBrief>>> {
    let health = match q.health.as_deref() {
        None => None,
        Some("healthy") => Some(true),
        Some("unhealthy") => Some(false),
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "health must be healthy or unhealthy, not {v:?}"
            )));
        }
    };
    let repo = q.repository;
    if let Some(r) = &repo {
        oci::Name::parse(r).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    blocking(&state, move |svc| {
        let scope = Scope::new(&caller.principal);
        let mut out = Vec::new();
        if repo.as_deref().is_some_and(|r| !scope.repo(r)) {
            return Ok(Json(out));
        }
        for mut i in svc.list_images(repo.as_deref())? {
            let wanted =
                health.is_none_or(|want| i.health.as_ref().is_some_and(|h| h.healthy == want));
            if !wanted {
                continue;
            }
            let shown = repo.as_deref().unwrap_or(&i.repository).to_string();
            let Some(r) = scope.image(svc, &i.digest, &shown)? else {
                continue;
            };
            i.repository = r;
            i.tags.retain(|t| scope.tag(t));
            out.push(i);
        }
        Ok(Json(out))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/images/{digest}",
    params(("digest" = String, Path, description = "Manifest digest (image or index)"),
           ("severity" = Option<String>, Query, description = "Comma-separated severities (critical,high,medium,low,unknown), or `high+` for at or above"),
           ("status" = Option<String>, Query, description = "fixed, unfixed or wont_fix"),
           ("fixable" = Option<bool>, Query, description = "Only findings with (true) or without (false) a fix"),
           ("exempt" = Option<bool>, Query, description = "Only exempt (true) or not exempt (false) findings"),
           ("inventory" = Option<bool>, Query, description = "Include the package inventory")),
    responses((status = 200, body = ImageDetail), (status = 400, body = super::ErrorBody),
        (status = 401, description = "Anonymous, and the image is not public", body = super::ErrorBody),
        (status = 404, description = "Unknown, or in no repository the caller may pull", body = super::ErrorBody)))]
pub async fn get_image(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(digest): Path<String>,
    Params(q): Params<ImageQuery>,
) -> ApiResult<Json<ImageDetail>> {
    let digest = parse_digest(&digest)?;
    let filter = finding_filter(&q.filter())?;
    let with_inventory = match &q.inventory {
        Some(v) => parse_bool("inventory", v)?,
        None => false,
    };
    blocking(&state, move |svc| {
        let unknown = || caller.hidden(format!("image {digest} is not known to the assessor"));
        let scope = Scope::new(&caller.principal);
        let Some(mut view) = svc.image_view(&digest, &filter, with_inventory)? else {
            return Err(unknown());
        };
        let first = view.repositories.first().cloned().unwrap_or_default();
        if scope.image(svc, &digest, &first)?.is_none() {
            return Err(unknown());
        }
        // Leave out what names repositories the caller may not read.
        view.repositories.retain(|r| scope.repo(r));
        view.tags.retain(|t| scope.tag(t));
        view.diffs
            .previous_tag_digest
            .retain(|d| d.repository.as_deref().is_none_or(|r| scope.repo(r)));
        if let Some(rem) = &mut view.remediation {
            if let Some(b) = &mut rem.base_image
                && let Some(c) = b.base_image.take()
            {
                b.base_image = visible_candidate(svc, &scope, c)?;
            }
            if let Some(c) = rem.better_alternative.take() {
                rem.better_alternative = visible_candidate(svc, &scope, c)?;
            }
        }
        let all = svc.store().exemptions()?;
        let exemptions = all
            .into_iter()
            .filter(|e| {
                view.findings
                    .iter()
                    .any(|f| f.exempted_by.as_deref() == Some(&e.id))
            })
            .collect();
        Ok(Json(ImageDetail {
            image: view,
            exemptions,
        }))
    })
    .await
}

/// The findings filters `GET /api/v1/images/{digest}` and its findings
/// pages share.
fn finding_filter(q: &FilterParams<'_>) -> ApiResult<FindingFilter> {
    let mut filter = FindingFilter::default();
    if let Some(s) = q.severity {
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(min) = part.strip_suffix('+') {
                let min = Severity::parse(min).ok_or_else(|| bad_severity(part))?;
                for v in [
                    Severity::Critical,
                    Severity::High,
                    Severity::Medium,
                    Severity::Low,
                    Severity::Unknown,
                ] {
                    if v >= min && !filter.severities.contains(&v) {
                        filter.severities.push(v);
                    }
                }
            } else {
                filter
                    .severities
                    .push(Severity::parse(part).ok_or_else(|| bad_severity(part))?);
            }
        }
    }
    if let Some(s) = q.status {
        filter.status = Some(assess::vuln::parse_fix_status(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status must be fixed, unfixed or wont_fix, not {s:?}"
            ))
        })?);
    }
    if let Some(v) = q.fixable {
        filter.fixable = Some(parse_bool("fixable", v)?);
    }
    if let Some(v) = q.exempt {
        filter.exempt = Some(parse_bool("exempt", v)?);
    }
    Ok(filter)
}

/// `limit` of a page: 1 to 1000, 100 when absent.
fn page_limit(limit: Option<&str>) -> ApiResult<usize> {
    limit_param(limit, assess::views::DEFAULT_PAGE, assess::views::MAX_PAGE)
}

/// The `limit` parameter of a paged list: 1 to `max`, `default` when absent.
pub(super) fn limit_param(limit: Option<&str>, default: usize, max: usize) -> ApiResult<usize> {
    match limit {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit must be a number from 1 to {max}, not {v:?}"
            ))),
        },
    }
}

fn page_error(e: assess::views::PageError) -> ApiError {
    match e {
        assess::views::PageError::BadCursor(m) => ApiError::bad_request(m),
        assess::views::PageError::Store(e) => e.into(),
    }
}

/// May the caller see `digest`? Refused as unknown otherwise.
fn visible_image(svc: &Service, caller: &Caller, digest: &str) -> ApiResult<()> {
    let scope = Scope::new(&caller.principal);
    let first = svc.store().repos_of(digest)?.into_iter().next();
    let first = first.unwrap_or_default();
    if svc.store().image(digest)?.is_none() || scope.image(svc, digest, &first)?.is_none() {
        return Err(caller.hidden(format!("image {digest} is not known to the assessor")));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/images/{digest}/findings",
    params(("digest" = String, Path, description = "Manifest digest of a platform image"),
           ("limit" = Option<usize>, Query, description = "Findings per page, 1 to 1000 (default 100)"),
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the previous page, with the same filters and `q` (in any order). Refused (400) with other filters, and once the image was assessed again"),
           ("severity" = Option<String>, Query, description = "Comma-separated severities, or `high+` for at or above"),
           ("status" = Option<String>, Query, description = "fixed, unfixed or wont_fix"),
           ("fixable" = Option<bool>, Query, description = "Only findings with (true) or without (false) a fix"),
           ("exempt" = Option<bool>, Query, description = "Only exempt (true) or not exempt (false) findings"),
           ("q" = Option<String>, Query, description = "Only findings whose id, alias or package name contains this (ignoring case)")),
    responses((status = 200, body = assess::views::FindingsPage), (status = 400, body = super::ErrorBody),
        (status = 401, description = "Anonymous, and the image is not public", body = super::ErrorBody),
        (status = 404, description = "Unknown, not assessed yet, or in no repository the caller may pull", body = super::ErrorBody)))]
pub async fn image_findings(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(digest): Path<String>,
    Params(q): Params<FindingsQuery>,
) -> ApiResult<Json<assess::views::FindingsPage>> {
    let digest = parse_digest(&digest)?;
    let filter = finding_filter(&q.filter())?;
    let limit = page_limit(q.limit.as_deref())?;
    blocking(&state, move |svc| {
        visible_image(svc, &caller, &digest)?;
        let page = svc
            .image_findings(&digest, &filter, q.q.as_deref(), limit, q.cursor.as_deref())
            .map_err(page_error)?;
        page.map(Json)
            .ok_or_else(|| ApiError::not_found(format!("image {digest} has no assessment yet")))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/images/{digest}/packages",
    params(("digest" = String, Path, description = "Manifest digest of a platform image"),
           ("limit" = Option<usize>, Query, description = "Packages per page, 1 to 1000 (default 100)"),
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the previous page, with the same `q`. Refused (400) once the image was cataloged again"),
           ("q" = Option<String>, Query, description = "Only packages whose name or purl contains this (ignoring case)")),
    responses((status = 200, body = assess::views::PackagesPage), (status = 400, body = super::ErrorBody),
        (status = 401, description = "Anonymous, and the image is not public", body = super::ErrorBody),
        (status = 404, description = "Unknown, not cataloged yet, or in no repository the caller may pull", body = super::ErrorBody)))]
pub async fn image_packages(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(digest): Path<String>,
    Params(q): Params<PackagesQuery>,
) -> ApiResult<Json<assess::views::PackagesPage>> {
    let digest = parse_digest(&digest)?;
    let limit = page_limit(q.limit.as_deref())?;
    blocking(&state, move |svc| {
        visible_image(svc, &caller, &digest)?;
        let page = svc
            .image_packages(&digest, q.q.as_deref(), limit, q.cursor.as_deref())
            .map_err(page_error)?;
        page.map(Json)
            .ok_or_else(|| ApiError::not_found(format!("image {digest} has no inventory yet")))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/images/{digest}/layers",
    params(("digest" = String, Path, description = "Manifest digest of a platform image"),
           ("limit" = Option<usize>, Query, description = "Layers per page, 1 to 1000 (default 100)"),
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the previous page")),
    responses((status = 200, description = "Each layer's size, the command that made it (the config history, `empty_layer` steps skipped) and the packages it adds (from the stored inventory; at most 200 listed per layer)", body = assess::views::LayersPage),
        (status = 400, body = super::ErrorBody),
        (status = 401, description = "Anonymous, and the image is not public", body = super::ErrorBody),
        (status = 404, description = "Unknown, or in no repository the caller may pull", body = super::ErrorBody)))]
pub async fn image_layers(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(digest): Path<String>,
    Params(q): Params<PageQuery>,
) -> ApiResult<Json<assess::views::LayersPage>> {
    let digest = parse_digest(&digest)?;
    let limit = page_limit(q.limit.as_deref())?;
    blocking(&state, move |svc| {
        visible_image(svc, &caller, &digest)?;
        svc.image_layers(&digest, limit, q.cursor.as_deref())
            .map_err(page_error)?
            .map(Json)
            .ok_or_else(|| caller.hidden(format!("image {digest} is not known to the assessor")))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/images/{digest}/sbom",
    params(("digest" = String, Path, description = "Manifest digest of a platform image"),
           ("format" = Option<String>, Query, description = "cyclonedx (CycloneDX 1.6 JSON, the default) or spdx (SPDX 2.3 JSON)")),
    responses((status = 200, description = "The SBOM of the image's stored inventory, as an attachment", content_type = "application/json"),
        (status = 400, description = "Unknown format, or an index (ask for one of its platform images)", body = super::ErrorBody),
        (status = 401, description = "Anonymous, and the image is not public", body = super::ErrorBody),
        (status = 403, description = "The caller has rights on the image's repositories, but not pull", body = super::ErrorBody),
        (status = 404, description = "Unknown, not cataloged yet, or in no repository the caller may see", body = super::ErrorBody)))]
pub async fn image_sbom(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(digest): Path<String>,
    Params(q): Params<SbomQuery>,
) -> ApiResult<axum::response::Response> {
    let digest = parse_digest(&digest)?;
    let format = match q.format.as_deref() {
        None | Some("cyclonedx") => "cyclonedx",
        Some("spdx") => "spdx",
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "format must be cyclonedx or spdx, not {f:?}"
            )));
        }
    };
    blocking(&state, move |svc| {
        let unknown = || caller.hidden(format!("image {digest} is not known to the assessor"));
        let scope = Scope::new(&caller.principal);
        let Some(row) = svc.store().image(&digest)? else {
            return Err(unknown());
        };
        let repos = Scope::repos_of(svc, &digest)?;
        if !scope.all() && !repos.iter().any(|r| scope.repo(r)) {
            // Someone who may push or delete there knows the image
            // exists: tell them what is missing. Anyone else learns
            // nothing.
            let knows = repos.iter().any(|r| {
                [Action::Push, Action::Delete]
                    .into_iter()
                    .any(|a| caller.principal.may(r, a))
            });
            return Err(if knows {
                caller.forbidden(format!(
                    "downloading the SBOM of {digest} needs pull on one of its repositories"
                ))
            } else {
                unknown()
            });
        }
        if row.kind == "index" {
            return Err(ApiError::bad_request(format!(
                "{digest} is an index: download the SBOM of one of its platform images"
            )));
        }
        let Some((_, inventory)) = svc.store().inventory(&digest)? else {
            return Err(ApiError::not_found(format!(
                "image {digest} is not cataloged yet"
            )));
        };
        let repo = repos
            .iter()
            .find(|r| scope.repo(r))
            .cloned()
            .unwrap_or(row.repo);
        let mut meta = report::SbomMeta::new(format!("{repo}@{digest}"));
        meta.digest = Some(digest.clone());
        let body = if format == "spdx" {
            serde_json::to_vec_pretty(&report::spdx::document(&inventory, &meta))
        } else {
            serde_json::to_vec_pretty(&report::cyclonedx::bom(&inventory, &[], &meta))
        }
        .map_err(ApiError::internal)?;
        let (content_type, ext) = if format == "spdx" {
            ("application/spdx+json", "spdx.json")
        } else {
            ("application/vnd.cyclonedx+json", "cdx.json")
        };
        // A file name of plain characters: the repository's slashes and
        // the digest's colon become dashes.
        let file: String = format!("{repo}-{}.{ext}", digest.replace(':', "-"))
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        Ok((
            [
                (axum::http::header::CONTENT_TYPE, content_type.to_string()),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file}\""),
                ),
            ],
            body,
        )
            .into_response())
    })
    .await
}

/// An image's view and the exemptions its findings name.
#[derive(Serialize, ToSchema)]
pub struct ImageDetail {
    #[serde(flatten)]
    pub image: ImageView,
    /// The exemptions that the findings' `exempted_by` name (with their
    /// author and reason).
    pub exemptions: Vec<Exemption>,
}

fn visible_candidate(
    svc: &Service,
    scope: &Scope,
    mut c: assess::remediation::Candidate,
) -> ApiResult<Option<assess::remediation::Candidate>> {
    Ok(match scope.image(svc, &c.digest, &c.repository)? {
        Some(r) => {
            c.repository = r;
            c.tags.retain(|t| scope.tag(t));
            Some(c)
        }
        None => None,
    })
}

fn bad_severity(s: &str) -> ApiError {
    ApiError::bad_request(format!(
        "severity must be critical, high, medium, low or unknown (optionally with + for at or above), not {s:?}"
    ))
}

#[utoipa::path(post, path = "/api/v1/images/{digest}/rescan", params(("digest" = String, Path)),
    responses((status = 202, description = "Queued again"),
        (status = 401, body = super::ErrorBody),
        (status = 403, description = "No push on any of the image's repositories", body = super::ErrorBody),
        (status = 404, body = super::ErrorBody)))]
pub async fn rescan_image(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(digest): Path<String>,
) -> ApiResult<StatusCode> {
    let digest = parse_digest(&digest)?;
    blocking(&state, move |svc| {
        let unknown = || caller.hidden(format!("image {digest} is not known to the assessor"));
        let scope = Scope::new(&caller.principal);
        let repos = Scope::repos_of(svc, &digest)?;
        if !scope.all() {
            if !repos.iter().any(|r| scope.repo(r)) {
                return Err(unknown());
            }
            if !repos.iter().any(|r| caller.principal.may(r, Action::Push)) {
                return Err(caller.forbidden(format!(
                    "rescanning {digest} needs push on one of its repositories"
                )));
            }
        }
        if svc.requeue(&digest)? {
            Ok(StatusCode::ACCEPTED)
        } else {
            Err(unknown())
        }
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/recommendations",
    params(("limit" = Option<usize>, Query, description = "Most entries per list (default 100, at most 1000)")),
    responses((status = 200, body = Recommendations)))]
pub async fn recommendations(
    AxState(state): AxState<State>,
    caller: Caller,
    Params(q): Params<LimitQuery>,
) -> ApiResult<Json<Recommendations>> {
    let limit = limit_param(q.limit.as_deref(), 100, 1000)?;
    blocking(&state, move |svc| {
        let scope = Scope::new(&caller.principal);
        if scope.all() {
            return Ok(Json(svc.recommendations(limit)?));
        }
        // Everything, then only what the caller may read, then the limit:
        // limiting first could leave out the caller's own images.
        let mut rec = svc.recommendations(usize::MAX)?;
        let mut seen: HashMap<String, Option<String>> = HashMap::new();
        let mut visible = |digest: &str, repo: &str| -> ApiResult<Option<String>> {
            if let Some(v) = seen.get(digest) {
                return Ok(v.clone());
            }
            let v = scope.image(svc, digest, repo)?;
            seen.insert(digest.to_string(), v.clone());
            Ok(v)
        };
        let mut by_image = Vec::new();
        for mut b in std::mem::take(&mut rec.by_image) {
            if let Some(r) = visible(&b.digest, &b.repository)? {
                b.repository = r;
                b.tags.retain(|t| scope.tag(t));
                by_image.push(b);
            }
        }
        by_image.truncate(limit);
        let mut by_vulnerability = Vec::new();
        for mut v in std::mem::take(&mut rec.by_vulnerability) {
            let mut affected = Vec::new();
            for mut a in std::mem::take(&mut v.affected_images) {
                if let Some(r) = visible(&a.digest, &a.repository)? {
                    a.repository = r;
                    a.tags.retain(|t| scope.tag(t));
                    affected.push(a);
                }
            }
            if affected.is_empty() {
                continue;
            }
            // The fixes, from the affected images the caller may read.
            v.fix.clear();
            for a in &affected {
                if let Some(f) = &a.fixed_version {
                    let list = v.fix.entry(a.package.clone()).or_default();
                    if !list.contains(f) {
                        list.push(f.clone());
                    }
                }
            }
            v.affected_images = affected;
            by_vulnerability.push(v);
        }
        // Same order as the assessor's: severity, then images affected.
        let rank = |s: &str| Severity::parse(s).unwrap_or(Severity::Unknown);
        by_vulnerability.sort_by(|a, b| {
            rank(&b.severity)
                .cmp(&rank(&a.severity))
                .then(b.affected_images.len().cmp(&a.affected_images.len()))
                .then(a.id.cmp(&b.id))
        });
        by_vulnerability.truncate(limit);
        rec.by_image = by_image;
        rec.by_vulnerability = by_vulnerability;
        Ok(Json(rec))
    })
    .await
}

// ---- exemptions ----

/// A new exemption. At least one of `vulnerability`, `package`, `severity`.
///
/// With access control on, the author is the authenticated caller and an
/// `author` sent in the body is ignored. With it off, `author` is
/// required, as it names who decided.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExemption {
    pub vulnerability: Option<String>,
    pub package: Option<String>,
    /// Repository glob (`*` any characters).
    pub repository: Option<String>,
    /// Exempt findings at or below this severity.
    pub severity: Option<String>,
    pub reason: String,
    /// Only read when access control is off (then required).
    pub author: Option<String>,
    /// RFC 3339; absent for no expiry.
    pub expires_at: Option<String>,
}

/// Exemptions whose scope the caller may administer (those without a
/// repository pattern: administrators only).
#[utoipa::path(get, path = "/api/v1/exemptions", responses((status = 200, body = Vec<Exemption>)))]
pub async fn list_exemptions(
    AxState(state): AxState<State>,
    caller: Caller,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    blocking(&state, move |svc| {
        let now = svc.clock().now();
        Ok(Json(
            administered::<Exemption>(svc, &caller)?
                .into_iter()
                .map(|e| {
                    let active = e.is_active(now);
                    let mut v = serde_json::to_value(e).unwrap_or_default();
                    v["active"] = serde_json::Value::Bool(active);
                    v
                })
                .collect(),
        ))
    })
    .await
}

/// Create an exemption; needs admin on the repositories its pattern
/// covers (administrators only without a pattern).
#[utoipa::path(post, path = "/api/v1/exemptions", request_body = NewExemption,
    responses((status = 201, body = Exemption), (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody)))]
pub async fn create_exemption(
    AxState(state): AxState<State>,
    caller: Caller,
    body: Body,
) -> ApiResult<(StatusCode, Json<Exemption>)> {
    let n: NewExemption = parse_json(&body)?;
    let author = if *caller.principal.identity() == auth::Identity::Unrestricted {
        n.author
            .ok_or_else(|| ApiError::bad_request("author is required"))?
    } else {
        caller.principal.name()
    };
    let severity = match &n.severity {
        Some(s) => Some(Severity::parse(s).ok_or_else(|| bad_severity(s))?),
        None => None,
    };
    let expires_at = match &n.expires_at {
        Some(s) => Some(parse_time("expires_at", s)?),
        None => None,
    };
    let nonempty = |name: &str, v: Option<String>| -> ApiResult<Option<String>> {
        match v {
            Some(s) if s.trim().is_empty() => {
                Err(ApiError::bad_request(format!("{name} must not be empty")))
            }
            other => Ok(other),
        }
    };
    let vulnerability = nonempty("vulnerability", n.vulnerability)?;
    let package = nonempty("package", n.package)?;
    let repository = nonempty("repository", n.repository)?;
    require_admin_glob(
        &caller,
        repository.as_deref(),
        "exempting findings in",
        "an exemption for every repository",
    )?;
    let (status, e) = blocking(&state, move |svc| {
        svc.add_exemption(
            vulnerability,
            package,
            repository,
            severity,
            n.reason,
            author,
            expires_at,
        )
        .map(|e| (StatusCode::CREATED, Json(e)))
        .map_err(|e| match e {
            assess::views::ExemptionError::Store(e) => ApiError::internal(format!("{e:#}")),
            e => ApiError::bad_request(e.to_string()),
        })
    })
    .await?;
    audit_change(
        &state,
        &caller,
        "exemption.add",
        e.repository.as_deref(),
        &e.id,
    );
    Ok((status, e))
}

// ---- VEX ----

/// Store a VEX document (OpenVEX, or CycloneDX with
/// `vulnerabilities[].analysis`); it applies at once: the images it names
/// are re-judged from their stored inventories. Needs admin on every
/// repository its products cover (a package purl covers all of them). A
/// document with the same id replaces the earlier one.
#[utoipa::path(post, path = "/api/v1/vex", request_body(content = Object, description = "An OpenVEX or CycloneDX VEX document"),
    responses((status = 201, body = assess::VexAdded),
        (status = 400, description = "Invalid document; the message starts with the JSON path of the problem", body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 403, description = "No admin on the repositories the document covers", body = super::ErrorBody)))]
pub async fn create_vex(
    AxState(state): AxState<State>,
    caller: Caller,
    body: Body,
) -> ApiResult<(StatusCode, Json<assess::VexAdded>)> {
    let doc = assess::vex::parse(&body.0).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Digests are checked against the repositories holding them.
    let scopes = doc.scopes();
    let svc = state.assess.clone();
    let repos_of = move |d: String| svc.store().repos_of(&d);
    for scope in &scopes {
        let ok = match scope {
            assess::vex::Scope::Everywhere => caller.may_admin_glob(None),
            assess::vex::Scope::Repository(g) => caller.may_admin_glob(Some(g)),
            assess::vex::Scope::Digest(d) => {
                let repos = repos_of(d.clone()).map_err(ApiError::internal)?;
                if repos.is_empty() {
                    caller.may_admin_glob(None)
                } else {
                    repos.iter().all(|r| caller.may_admin_glob(Some(r)))
                }
            }
        };
        if !ok {
            let what = match scope {
                assess::vex::Scope::Everywhere => "a package purl (every repository)".to_string(),
                assess::vex::Scope::Repository(g) => format!("repositories {g:?}"),
                assess::vex::Scope::Digest(d) => format!("image {d}"),
            };
            return Err(caller.forbidden(format!(
                "a VEX document about {what} needs admin on those repositories"
            )));
        }
    }
    let source = caller.principal.name();
    let bytes = body.0.clone();
    let added = blocking(&state, move |svc| {
        svc.add_vex(&bytes, &source)
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::bad_request(e.to_string()))
    })
    .await?;
    let repo = match scopes.as_slice() {
        [assess::vex::Scope::Repository(g)] => Some(g.clone()),
        _ => None,
    };
    audit_change(&state, &caller, "vex.add", repo.as_deref(), &added.key);
    Ok((StatusCode::CREATED, Json(added)))
}

/// Withdraw a VEX document sent through the API (its key as listed, e.g.
/// `api:<document id>`); the images it named are re-judged. A document
/// pushed as a referrer is withdrawn by deleting that referrer.
#[utoipa::path(delete, path = "/api/v1/vex/{key}",
    params(("key" = String, Path, description = "The document's key as `GET /api/v1/vex` lists it")),
    responses((status = 204), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn delete_vex(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    if !caller.may_admin_glob(None) {
        return Err(caller.forbidden("withdrawing a VEX document needs administrator rights"));
    }
    if !key.starts_with("api:") {
        return Err(ApiError::bad_request(
            "only documents sent through the API are withdrawn here; withdraw a VEX referrer by deleting it",
        ));
    }
    let k = key.clone();
    let removed = blocking(&state, move |svc| {
        svc.delete_vex(&k).map_err(ApiError::internal)
    })
    .await?;
    match removed {
        Some(_) => {
            audit_change(&state, &caller, "vex.rm", None, &key);
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(caller.hidden(format!("no VEX document {key:?}"))),
    }
}

/// Stored VEX documents (administrators: they may speak of any repository).
#[utoipa::path(get, path = "/api/v1/vex", responses((status = 200, body = Vec<assess::store::VexRow>),
    (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
pub async fn list_vex(
    AxState(state): AxState<State>,
    caller: Caller,
) -> ApiResult<Json<Vec<assess::store::VexRow>>> {
    if !caller.may_admin_glob(None) {
        return Err(caller.forbidden("listing VEX documents needs administrator rights"));
    }
    blocking(&state, |svc| {
        svc.vex_documents().map(Json).map_err(ApiError::internal)
    })
    .await
}

/// Record a change of exemptions or webhooks in the audit log.
fn audit_change(state: &State, caller: &Caller, action: &str, repository: Option<&str>, id: &str) {
    if let Some(ac) = &state.access {
        ac.audit_by(
            &caller.principal,
            action,
            repository.unwrap_or("**"),
            "ok",
            id,
        );
    }
}

/// Exemptions and webhooks: each has an id and a repository glob that
/// decides who may see, create and remove it, so one list, check and
/// delete serve both.
trait Scoped: Sized + Send + 'static {
    /// In messages and audit actions (`exemption.rm`).
    const KIND: &'static str;
    fn id(&self) -> &str;
    fn repository(&self) -> Option<&str>;
    fn all(store: &assess::store::Store) -> anyhow::Result<Vec<Self>>;
    fn delete(store: &assess::store::Store, id: &str) -> anyhow::Result<bool>;
}

impl Scoped for Exemption {
    const KIND: &'static str = "exemption";
    fn id(&self) -> &str {
        &self.id
    }
    fn repository(&self) -> Option<&str> {
        self.repository.as_deref()
    }
    fn all(store: &assess::store::Store) -> anyhow::Result<Vec<Self>> {
        store.exemptions()
    }
    fn delete(store: &assess::store::Store, id: &str) -> anyhow::Result<bool> {
        store.delete_exemption(id)
    }
}

impl Scoped for assess::store::Webhook {
    const KIND: &'static str = "webhook";
    fn id(&self) -> &str {
        &self.id
    }
    fn repository(&self) -> Option<&str> {
        self.repository.as_deref()
    }
    fn all(store: &assess::store::Store) -> anyhow::Result<Vec<Self>> {
        store.webhooks()
    }
    fn delete(store: &assess::store::Store, id: &str) -> anyhow::Result<bool> {
        store.delete_webhook(id)
    }
}

/// The exemptions or webhooks whose repositories the caller administers
/// (those for every repository: administrators only).
fn administered<T: Scoped>(svc: &Service, caller: &Caller) -> ApiResult<Vec<T>> {
    Ok(T::all(svc.store())?
        .into_iter()
        .filter(|e| caller.may_admin_glob(e.repository()))
        .collect())
}

/// Refused unless the caller administers `glob`'s repositories (every
/// repository when `None`); `in_repo` and `everywhere` begin the refusal.
fn require_admin_glob(
    caller: &Caller,
    glob: Option<&str>,
    in_repo: &str,
    everywhere: &str,
) -> ApiResult<()> {
    if caller.may_admin_glob(glob) {
        return Ok(());
    }
    Err(caller.forbidden(match glob {
        Some(r) => format!("{in_repo} {r:?} needs admin on those repositories"),
        None => format!("{everywhere} needs administrator rights"),
    }))
}

/// Remove an exemption or webhook: one the caller does not administer is
/// refused, an unknown id is not found; audited as `<kind>.rm`.
async fn delete_scoped<T: Scoped>(
    state: State,
    caller: Caller,
    id: String,
) -> ApiResult<StatusCode> {
    let st = state.clone();
    blocking(&state, move |svc| {
        let kind = T::KIND;
        let found = T::all(svc.store())?.into_iter().find(|e| e.id() == id);
        if let Some(e) = &found
            && !caller.may_admin_glob(e.repository())
        {
            return Err(caller.forbidden(format!(
                "removing this {kind} needs admin on its repositories"
            )));
        }
        if T::delete(svc.store(), &id)? {
            let repo = found.as_ref().and_then(|e| e.repository());
            audit_change(&st, &caller, &format!("{kind}.rm"), repo, &id);
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(caller.hidden(format!("no {kind} {id:?}")))
        }
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/exemptions/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = super::ErrorBody),
        (status = 403, description = "No admin on the exemption's repositories", body = super::ErrorBody),
        (status = 404, body = super::ErrorBody)))]
pub async fn delete_exemption(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    delete_scoped::<Exemption>(state, caller, id).await
}

// ---- webhooks ----

/// A new webhook.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `http://` or `https://` URL receiving POSTs.
    pub url: String,
    /// HMAC-SHA256 key for the `X-Drydock-Signature` header (at least 16 characters).
    pub secret: String,
    /// Repository glob; absent for the whole registry.
    pub repository: Option<String>,
    /// Only tell about findings at or above this severity.
    pub min_severity: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: assess::store::Webhook,
}

/// Webhooks whose scope the caller may administer (those for the whole
/// registry: administrators only).
#[utoipa::path(get, path = "/api/v1/webhooks", responses((status = 200, body = Vec<assess::store::Webhook>)))]
pub async fn list_webhooks(
    AxState(state): AxState<State>,
    caller: Caller,
) -> ApiResult<Json<Vec<assess::store::Webhook>>> {
    blocking(&state, move |svc| {
        Ok(Json(administered::<assess::store::Webhook>(svc, &caller)?))
    })
    .await
}

/// Create a webhook; needs admin on the repositories its pattern covers
/// (administrators only without a pattern).
#[utoipa::path(post, path = "/api/v1/webhooks", request_body = NewWebhook,
    responses((status = 201, body = assess::store::Webhook), (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody)))]
pub async fn create_webhook(
    AxState(state): AxState<State>,
    caller: Caller,
    body: Body,
) -> ApiResult<(StatusCode, Json<assess::store::Webhook>)> {
    let n: NewWebhook = parse_json(&body)?;
    if let Some(r) = &n.repository
        && r.trim().is_empty()
    {
        return Err(ApiError::bad_request("repository must not be empty"));
    }
    require_admin_glob(
        &caller,
        n.repository.as_deref(),
        "a webhook for",
        "a webhook for every repository",
    )?;
    let url = n.url.trim().to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        return Err(ApiError::bad_request(format!(
            "url must be an http:// or https:// URL, not {url:?}"
        )));
    }
    if let Err(refused) = state.assess.check_webhook_url(&url) {
        return Err(ApiError::bad_request(refused.to_string()));
    }
    if let Some(r) = &n.repository
        && let Err(e) = oci::RepoPattern::new(r)
    {
        return Err(ApiError::bad_request(e.to_string()));
    }
    if n.secret.len() < 16 {
        return Err(ApiError::bad_request(
            "secret must be at least 16 characters",
        ));
    }
    if let Some(s) = &n.min_severity
        && Severity::parse(s).is_none()
    {
        return Err(bad_severity(s));
    }
    let (status, w) = blocking(&state, move |svc| {
        let w = svc.add_webhook(&url, &n.secret, n.repository, n.min_severity)?;
        Ok((StatusCode::CREATED, Json(w)))
    })
    .await?;
    audit_change(
        &state,
        &caller,
        "webhook.add",
        w.repository.as_deref(),
        &w.id,
    );
    Ok((status, w))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = super::ErrorBody),
        (status = 403, description = "No admin on the webhook's repositories", body = super::ErrorBody),
        (status = 404, body = super::ErrorBody)))]
pub async fn delete_webhook(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    delete_scoped::<assess::store::Webhook>(state, caller, id).await
}

/// Send a test delivery to a webhook now, through the normal delivery
/// path: signed like every delivery, retried on failure, and listed in the
/// webhook's delivery log (event `webhook.test`, `"test": true` in the
/// body). Needs admin on the webhook's repositories.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", params(("id" = String, Path)),
    responses((status = 202, description = "Queued; the delivery loop sends it within a second", body = assess::store::Delivery),
        (status = 401, body = super::ErrorBody),
        (status = 403, description = "No admin on the webhook's repositories", body = super::ErrorBody),
        (status = 404, body = super::ErrorBody)))]
pub async fn test_webhook(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<assess::store::Delivery>)> {
    let st = state.clone();
    blocking(&state, move |svc| {
        let found = svc.store().webhooks()?.into_iter().find(|w| w.id == id);
        let Some(w) = found else {
            return Err(caller.hidden(format!("no webhook {id:?}")));
        };
        if !caller.may_admin_glob(w.repository.as_deref()) {
            // Webhooks of repositories the caller does not administer are
            // not listed to them either.
            return Err(caller.hidden(format!("no webhook {id:?}")));
        }
        let d = svc
            .test_webhook(&id, &caller.principal.name())?
            .ok_or_else(|| caller.hidden(format!("no webhook {id:?}")))?;
        audit_change(&st, &caller, "webhook.test", w.repository.as_deref(), &id);
        Ok((StatusCode::ACCEPTED, Json(d)))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", params(("id" = String, Path)),
    responses((status = 200, body = Vec<assess::store::Delivery>), (status = 404, body = super::ErrorBody)))]
pub async fn webhook_deliveries(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<assess::store::Delivery>>> {
    blocking(&state, move |svc| {
        if !svc
            .store()
            .webhooks()?
            .iter()
            .any(|w| w.id == id && caller.may_admin_glob(w.repository.as_deref()))
        {
            return Err(caller.hidden(format!("no webhook {id:?}")));
        }
        Ok(Json(svc.store().deliveries(Some(&id), 500)?))
    })
    .await
}

// ---- usage, database, queue ----

#[utoipa::path(get, path = "/api/v1/usage",
    params(("from" = Option<String>, Query, description = "First month, YYYY-MM (or a date)"),
           ("to" = Option<String>, Query, description = "Last month, YYYY-MM (or a date)")),
    responses((status = 200, body = UsageReport), (status = 400, body = super::ErrorBody)))]
pub async fn usage(
    AxState(state): AxState<State>,
    caller: Caller,
    Params(q): Params<UsageQuery>,
) -> ApiResult<Json<UsageReport>> {
    let from = match &q.from {
        Some(v) => month_of("from", v)?,
        None => "0000-01".into(),
    };
    let to = match &q.to {
        Some(v) => month_of("to", v)?,
        None => "9999-12".into(),
    };
    if from > to {
        return Err(ApiError::bad_request(format!(
            "from ({from}) is after to ({to})"
        )));
    }
    blocking(&state, move |svc| {
        let scope = Scope::new(&caller.principal);
        let mut report = svc.usage(&from, &to)?;
        if !scope.all() {
            report.rows.retain(|r| scope.repo(&r.repository));
            report.total = report.rows.iter().map(|r| r.images).sum();
        }
        Ok(Json(report))
    })
    .await
}

/// Vulnerability database status.
#[derive(Serialize, ToSchema)]
pub struct DbStatus {
    pub available: bool,
    pub version: Option<String>,
    /// Sources, record counts, build time.
    #[schema(value_type = Object)]
    pub status: Option<serde_json::Value>,
    /// Re-scan window (days) and interval (hours).
    pub rescan_window_days: u32,
    pub rescan_interval_hours: i64,
}

#[utoipa::path(get, path = "/api/v1/vulndb", responses((status = 200, body = DbStatus)))]
pub async fn vulndb_status(AxState(state): AxState<State>) -> ApiResult<Json<DbStatus>> {
    blocking(&state, |svc| {
        let db = svc.database();
        Ok(Json(DbStatus {
            available: db.is_some(),
            version: db.as_ref().map(|d| d.version()),
            status: db.as_ref().map(|d| d.status()),
            rescan_window_days: svc.options().rescan_window_days,
            rescan_interval_hours: svc.options().rescan_interval.whole_hours(),
        }))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/queue", responses((status = 200, body = QueueView)))]
pub async fn queue(AxState(state): AxState<State>, caller: Caller) -> ApiResult<Json<QueueView>> {
    blocking(&state, move |svc| {
        let scope = Scope::new(&caller.principal);
        let mut view = svc.queue_view()?;
        if scope.all() {
            return Ok(Json(view));
        }
        let mut pending = Vec::new();
        for mut e in std::mem::take(&mut view.pending) {
            if let Some(r) = scope.image(svc, &e.digest, &e.repository)? {
                e.repository = r;
                pending.push(e);
            }
        }
        view.pending = pending;
        // Counts of the images the caller may read only.
        view.counts.clear();
        for row in svc.store().all_images()? {
            if scope.image(svc, &row.digest, &row.repo)?.is_some() {
                *view.counts.entry(row.status.clone()).or_default() += 1;
            }
        }
        Ok(Json(view))
    })
    .await
}
